"""A throwaway PostgreSQL server from Debian's package, on a free loopback port.

PostgreSQL refuses to run as root, so when the tests run as root (CI does) the server
runs as the ``postgres`` system user the package creates, in a data folder it owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server not installed (Debian package 'postgresql'); "
                           "`make test` installs it")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    def __init__(self) -> None:
        self.bin = _bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="meterwatch-pg-"))
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        full = list(cmd)
        if self.as_root:
            full = ["runuser", "-u", "postgres", "--"] + full
        return subprocess.run(full, check=check, capture_output=True, text=True, cwd="/")

    @property
    def url(self) -> str:
        user = "postgres" if self.as_root else os.environ.get("USER", "postgres")
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/meterwatch"

    def start(self, timeout: float = 60) -> "LocalPostgres":
        data = self.dir / "data"
        user = "postgres" if self.as_root else os.environ.get("USER", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", user, "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w",
                  "-t", str(int(timeout)), "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} "
                  f"-c unix_socket_directories={self.dir} -c fsync=off", "start")
        deadline = time.monotonic() + timeout
        while True:
            r = self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                          "-U", user, "meterwatch", check=False)
            if r.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {r.stderr}")
            time.sleep(0.3)

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w",
                  "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
