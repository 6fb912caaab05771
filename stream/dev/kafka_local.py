"""A local, single-node KRaft Kafka broker for development and tests.

No Docker and no Kafka tarball: the broker's jars are fetched from Maven Central
with ``mvn`` (see ``scripts/kafka/pom.xml``) into a cache folder, and the broker
is run straight from them with ``java -cp '<libs>/*' kafka.Kafka server.properties``.

Python API::

    from stream.dev.kafka_local import LocalKafka, ensure_kafka, wait_until_ready

    ensure_kafka()                          # fetch jars once (cached)
    with LocalKafka("/tmp/kafka-data") as kafka:   # free ports, formats storage once
        print(kafka.bootstrap)              # "127.0.0.1:<port>"
        # clients started now would log retries while leaders are elected: wait first
        asyncio.run(wait_until_ready(kafka.bootstrap, ["t1"], groups=["g1"]))

CLI (broker detached in the background, survives the command)::

    python -m stream.dev.kafka_local fetch
    python -m stream.dev.kafka_local start  [--data-dir DIR] [--port 9092] [--controller-port 9093]
    python -m stream.dev.kafka_local status [--data-dir DIR]
    python -m stream.dev.kafka_local stop   [--data-dir DIR]

Files kept in the data dir: ``server.properties``, ``log4j2.properties``,
``ports.json`` (reused on restart), ``kafka.pid``, ``server.log`` and the
KRaft/log storage in ``data/`` (formatted once, reused on restart).

Standard library, and aiokafka to ask the broker whether it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import contextvars
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable

__all__ = [
    "KAFKA_VERSION",
    "KafkaLocalError",
    "LocalKafka",
    "default_cache_dir",
    "ensure_kafka",
    "main",
    "wait_until_ready",
]

KAFKA_VERSION = "4.3.1"
MIN_JAVA = 17  # Kafka 4.x brokers require Java 17+

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POM_PATH = PROJECT_ROOT / "scripts" / "kafka" / "pom.xml"
DEFAULT_DATA_DIR = PROJECT_ROOT / ".data" / "kafka"
CLI_DEFAULT_PORT = 9092
CLI_DEFAULT_CONTROLLER_PORT = 9093

_MARKER = ".complete"
_PID_FILE = "kafka.pid"
_PORTS_FILE = "ports.json"
_LOG_FILE = "server.log"
_STORAGE_DIR = "data"


class KafkaLocalError(RuntimeError):
    """Fetching, formatting, starting or stopping the local broker failed."""


# --------------------------------------------------------------------------- jars


def default_cache_dir() -> Path:
    """``$METERWATCH_KAFKA_CACHE`` or ``<project>/.cache/kafka-<version>``."""
    env = os.environ.get("METERWATCH_KAFKA_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return PROJECT_ROOT / ".cache" / f"kafka-{KAFKA_VERSION}"


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise KafkaLocalError(f"`{name}` not found on PATH: {hint}")
    return path


def _java() -> str:
    return _require_tool(
        "java",
        f"the local Kafka broker needs a Java {MIN_JAVA}+ runtime "
        "(e.g. `apt-get install openjdk-17-jre-headless`).",
    )


@functools.lru_cache(maxsize=None)
def _check_java_version(java: str) -> None:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60
        ).stderr
    except (OSError, subprocess.SubprocessError) as exc:  # pragma: no cover
        raise KafkaLocalError(f"could not run `{java} -version`: {exc}") from exc
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return  # unknown format: let the JVM speak for itself later
    major = int(m.group(1))
    if major == 1 and m.group(2):  # "1.8.0_x"
        major = int(m.group(2))
    if major < MIN_JAVA:
        raise KafkaLocalError(
            f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+, but `{java}` is Java {major}"
        )


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def _cache_complete(cache: Path, digest: str) -> bool:
    marker = cache / _MARKER
    libs = cache / "libs"
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if info.get("pom_sha256") != digest:
        return False
    jars = info.get("jars") or []
    return bool(jars) and all((libs / j).is_file() for j in jars)


def ensure_kafka(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Make sure the Kafka jars are in the cache; return the folder holding them.

    The broker's classpath is ``<returned dir>/*``. Idempotent: a complete cache
    (marker file written only after a successful fetch, for the current pom) is
    reused without running Maven; an interrupted or stale fetch is redone.
    Safe against concurrent callers (file lock in the cache dir).
    """
    cache = Path(cache_dir).expanduser().resolve() if cache_dir else default_cache_dir()
    libs = cache / "libs"
    if not POM_PATH.is_file():
        raise KafkaLocalError(f"missing {POM_PATH}")
    digest = _pom_digest()
    if _cache_complete(cache, digest):
        return libs

    mvn = _require_tool(
        "mvn",
        "Maven is needed once to fetch the Kafka jars from Maven Central "
        "(e.g. `apt-get install maven`).",
    )
    _check_java_version(_java())
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching
        if _cache_complete(cache, digest):
            return libs
        with contextlib.suppress(FileNotFoundError):
            (cache / _MARKER).unlink()
        for stale in cache.glob("libs.partial-*"):  # left by an interrupted fetch
            shutil.rmtree(stale, ignore_errors=True)
        tmp = cache / f"libs.partial-{os.getpid()}"
        cmd = [
            mvn, "-B", "-q", "-f", str(POM_PATH),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
        ]
        try:
            res = subprocess.run(
                cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1800
            )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise KafkaLocalError(f"fetching Kafka jars timed out: {' '.join(cmd)}") from exc
        jars = sorted(p.name for p in tmp.glob("*.jar")) if tmp.is_dir() else []
        if res.returncode != 0 or not any(j.startswith("kafka_2.13-") for j in jars):
            shutil.rmtree(tmp, ignore_errors=True)
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-30:])
            raise KafkaLocalError(
                f"fetching Kafka jars failed (exit {res.returncode}): {' '.join(cmd)}\n{tail}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        marker_tmp = cache / (_MARKER + ".tmp")
        marker_tmp.write_text(
            json.dumps(
                {"kafka_version": KAFKA_VERSION, "pom_sha256": digest, "jars": jars},
                indent=1,
            )
        )
        marker_tmp.replace(cache / _MARKER)  # atomic: only a complete fetch is marked
    return libs


# --------------------------------------------------------------------------- helpers


def _free_port(host: str, avoid: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port
    raise KafkaLocalError("could not find a free port")  # pragma: no cover


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _random_cluster_id() -> str:
    # Same shape as Kafka's Uuid.randomUuid(): url-safe base64 of 16 random bytes,
    # never starting with '-' (it would look like a CLI flag).
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still "exists" for kill(0)
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


# aiokafka logs each refused connection and each empty answer while a broker boots.
# Inside a probe those are the expected "not yet", so the records logged from a probe's
# task (marked by this variable, which its child tasks inherit) are dropped; every
# other aiokafka client of the process keeps its logs.
_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("kafka_local_probing",
                                                                 default=False)


class _DropProbeLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _PROBING.get()


for _name in ("aiokafka", "aiokafka.conn", "aiokafka.cluster"):  # client.py logs on "aiokafka"
    logging.getLogger(_name).addFilter(_DropProbeLogs())


def _run_private(coro):
    """Run ``coro`` on an event loop of its own: LocalKafka's API is synchronous, and
    its caller may be inside a running loop (then the private loop runs in a thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _live_brokers(bootstrap: str, timeout: float) -> int:
    from aiokafka.client import AIOKafkaClient

    _PROBING.set(True)
    client = AIOKafkaClient(bootstrap_servers=bootstrap,
                            request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        # A broker that answers but has not registered yet sends no broker metadata.
        return len(client.cluster.brokers())
    finally:
        await client.close()


def probe_broker(host: str, port: int, timeout: float = 5.0) -> int:
    """Ask ``host:port`` for its metadata (aiokafka: ApiVersions, then Metadata).

    Returns the number of live brokers in the metadata (>= 1 once the broker is
    registered and serving). Raises OSError/ConnectionError if it isn't serving.
    """
    from aiokafka.errors import KafkaError

    # Plain TCP first: while the JVM starts nothing listens, and this costs no client.
    socket.create_connection((host, port), timeout=timeout).close()
    try:
        return _run_private(_live_brokers(f"{host}:{port}", timeout))
    except (KafkaError, asyncio.TimeoutError) as exc:
        raise ConnectionError(f"{host}:{port} is not serving Kafka yet: {exc!r}") from exc


async def wait_until_ready(bootstrap: str, topics: Iterable[str] = (),
                           groups: Iterable[str] = (), timeout: float = 60) -> None:
    """Wait until ``bootstrap`` serves ``topics`` and ``groups``: every partition of
    each topic has a leader, and a FindCoordinator for each group names one.

    A fresh broker elects the leaders of new topics, and creates its offsets topic at
    the first FindCoordinator, in the seconds after it starts; a client started before
    then logs NotLeaderForPartition, GroupCoordinatorNotAvailable and "Marking the
    coordinator dead" on every retry until it has. Raises KafkaLocalError after
    ``timeout`` seconds, naming what is still missing."""
    from aiokafka.client import AIOKafkaClient

    topics, groups = list(topics), list(groups)
    _PROBING.set(True)  # the retries of this wait are not news either
    deadline = time.monotonic() + timeout
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    try:
        await client.bootstrap()
        while missing := await _not_ready(client, topics, groups):
            if time.monotonic() > deadline:
                raise KafkaLocalError(f"{bootstrap} not ready after {timeout:.0f}s: "
                                      f"{', '.join(missing)}")
            await asyncio.sleep(0.2)
    finally:
        await client.close()


async def _not_ready(client, topics: list[str], groups: list[str]) -> list[str]:
    """What of ``topics`` and ``groups`` the broker does not serve yet."""
    from aiokafka.client import CoordinationType
    from aiokafka.errors import KafkaError
    from aiokafka.structs import TopicPartition

    try:
        cluster = await client.fetch_all_metadata()
    except KafkaError as exc:
        return [f"metadata ({exc!r})"]
    missing = []
    for t in topics:
        parts = cluster.partitions_for_topic(t)
        if not parts or any(cluster.leader_for_partition(TopicPartition(t, p)) in (None, -1)
                            for p in parts):
            missing.append(f"topic {t} (a partition without a leader)")
    for g in groups:
        try:
            await client.coordinator_lookup(CoordinationType.GROUP, g)
        except KafkaError as exc:
            missing.append(f"group {g} ({exc!r})")
    return missing


def _read_ports(data_dir: Path) -> dict[str, int]:
    """Ports recorded by an earlier start in ``data_dir/ports.json`` (may be empty)."""
    try:
        data = json.loads((Path(data_dir) / _PORTS_FILE).read_text())
        return {k: int(v) for k, v in data.items() if k in ("port", "controller_port")}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


# --------------------------------------------------------------------------- broker


_LOG4J2 = """\
# written by stream/dev/kafka_local.py
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class LocalKafka:
    """A single-node KRaft broker+controller for local use, run from cached jars.

    ``port``/``controller_port`` of ``None`` mean: the ports recorded in
    ``data_dir/ports.json`` by an earlier start, else free ports. Restarting
    with the same ``data_dir`` reuses the formatted storage (and its data).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        controller_port: int | None = None,
        host: str = "127.0.0.1",
        cache_dir: str | os.PathLike[str] | None = None,
        heap: str = "512m",
        extra_config: dict[str, object] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.host = host
        self.cache_dir = cache_dir
        self.heap = heap
        self.extra_config = dict(extra_config or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self.startup_seconds: float | None = None  # JVM launch -> serving, last start()
        recorded = self._recorded_ports()
        self.port = port or recorded.get("port") or _free_port(host)
        self.controller_port = (
            controller_port
            or recorded.get("controller_port")
            or _free_port(host, avoid={self.port})
        )
        if self.port == self.controller_port:
            raise KafkaLocalError("port and controller_port must differ")

    # ---- paths / properties
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / _PID_FILE

    @property
    def log_file(self) -> Path:
        return self.data_dir / _LOG_FILE

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / _STORAGE_DIR

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def pid(self) -> int | None:
        """Pid of the broker for this data dir (ours or from the pid file), if alive."""
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        pid = self._pid or self._read_pid()
        if pid and self._is_our_broker(pid):
            return pid
        return None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _recorded_ports(self) -> dict[str, int]:
        return _read_ports(self.data_dir)

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_our_broker(self, pid: int) -> bool:
        if not _pid_alive(pid):
            return False
        args = _cmdline(pid)
        if not args:  # no /proc: trust the pid file
            return True
        return "kafka.Kafka" in args and str(self.config_file) in args

    def config(self) -> dict[str, object]:
        h, p, c = self.host, self.port, self.controller_port
        cfg: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@{h}:{c}",
            "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "advertised.listeners": f"PLAINTEXT://{h}:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.storage_dir),
            "num.partitions": 4,
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
        }
        cfg.update(self.extra_config)
        return cfg

    def _write_files(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = ["# written by stream/dev/kafka_local.py; rewritten on every start"]
        lines += [f"{k}={v}" for k, v in self.config().items()]
        self.config_file.write_text("\n".join(lines) + "\n")
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2)
        (self.data_dir / _PORTS_FILE).write_text(
            json.dumps({"port": self.port, "controller_port": self.controller_port}) + "\n"
        )

    def _java_cmd(self, libs: Path, java: str, main: list[str]) -> list[str]:
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            *main,
        ]

    def _format_if_needed(self, libs: Path, java: str) -> None:
        if (self.storage_dir / "meta.properties").is_file():
            return  # already formatted: keep the data
        cmd = self._java_cmd(
            libs,
            java,
            [
                "kafka.tools.StorageTool", "format",
                "--cluster-id", _random_cluster_id(),
                "--config", str(self.config_file),
                "--ignore-formatted",
            ],
        )
        res = subprocess.run(
            cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300
        )
        with open(self.log_file, "a") as log:
            log.write(res.stdout + res.stderr)
        if res.returncode != 0 or not (self.storage_dir / "meta.properties").is_file():
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-20:])
            raise KafkaLocalError(f"formatting KRaft storage failed (exit {res.returncode}):\n{tail}")

    def _log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server.log)"

    # ---- lifecycle
    def start(self, timeout: float = 60, detach: bool = False,
              own_group: bool = False) -> "LocalKafka":
        """Start the broker and wait until it serves Kafka requests.

        ``detach=True`` starts it in its own session so it outlives this Python
        process (used by the CLI); otherwise it is tied to this process (killed
        if the parent dies, on Linux).
        """
        if self.running:
            return self
        existing = self._read_pid()
        if existing and self._is_our_broker(existing):
            raise KafkaLocalError(
                f"a broker for {self.data_dir} is already running (pid {existing})"
            )
        libs = ensure_kafka(self.cache_dir)
        java = _java()
        _check_java_version(java)
        for name, port in (("port", self.port), ("controller_port", self.controller_port)):
            if not _port_free(self.host, port):
                raise KafkaLocalError(f"{name} {self.host}:{port} is already in use")
        self._write_files()
        self._format_if_needed(libs, java)

        cmd = self._java_cmd(libs, java, ["kafka.Kafka", str(self.config_file)])
        t0 = time.monotonic()
        with open(self.log_file, "ab") as log:
            log.write(f"\n==== starting broker {time.strftime('%F %T')} ====\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=detach,
                # own_group: a terminal's Ctrl-C (sent to its foreground process group)
                # must not reach the broker, whose owner stops it after its clients.
                process_group=0 if own_group and not detach else None,
                # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only
                # tie the broker to us when starting from the main thread.
                preexec_fn=(
                    die_with_parent
                    if not detach and threading.current_thread() is threading.main_thread()
                    else None
                ),
            )
        self._pid = self._proc.pid
        self.pid_file.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(timeout, t0)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float, t0: float) -> None:
        assert self._proc is not None
        deadline = t0 + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                raise KafkaLocalError(
                    f"Kafka broker exited with code {rc} during startup; "
                    f"{self.log_file}:\n{self._log_tail()}"
                )
            try:
                if probe_broker(self.host, self.port, timeout=2) >= 1:
                    self.startup_seconds = time.monotonic() - t0
                    return
            except OSError as exc:  # ConnectionError included
                last = exc
            time.sleep(0.2)
        raise KafkaLocalError(
            f"Kafka broker not ready on {self.bootstrap} after {timeout:.0f}s "
            f"(last error: {last}); {self.log_file}:\n{self._log_tail()}"
        )

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the broker (controlled shutdown), SIGKILL after ``timeout``."""
        proc, pid = self._proc, self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(proc, pid, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_exit(proc, pid, 10)
        elif proc is not None:
            proc.poll()  # reap
        self._proc = None
        self._pid = None
        if self.pid_file.exists():
            recorded = self._read_pid()
            if recorded is None or recorded == pid or not _pid_alive(recorded):
                with contextlib.suppress(FileNotFoundError):
                    self.pid_file.unlink()

    @staticmethod
    def _wait_exit(proc: subprocess.Popen[bytes] | None, pid: int, timeout: float) -> bool:
        if proc is not None:
            try:
                proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return True
            time.sleep(0.1)
        return not _pid_alive(pid)

    def __enter__(self) -> "LocalKafka":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalKafka {self.bootstrap} {state} data_dir={self.data_dir}>"


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: have the child SIGTERMed if the Python process that started it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m stream.dev.kafka_local",
        description=f"Local single-node KRaft Kafka {KAFKA_VERSION} broker (jars from Maven Central).",
    )
    ap.add_argument("command", choices=["start", "stop", "status", "fetch"])
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="default: %(default)s")
    ap.add_argument("--port", type=int, default=None,
                    help=f"PLAINTEXT port (default: recorded in data dir, else {CLI_DEFAULT_PORT})")
    ap.add_argument("--controller-port", type=int, default=None,
                    help=f"CONTROLLER port (default: recorded, else {CLI_DEFAULT_CONTROLLER_PORT})")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--cache-dir", default=None,
                    help="jar cache (default: $METERWATCH_KAFKA_CACHE or <project>/.cache/kafka-VERSION)")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args(argv)

    try:
        if args.command == "fetch":
            t0 = time.monotonic()
            libs = ensure_kafka(args.cache_dir)
            print(f"kafka jars: {libs} ({time.monotonic() - t0:.1f}s)")
            return 0

        data_dir = Path(args.data_dir)
        ports = _read_ports(data_dir.expanduser().resolve())
        port = args.port or ports.get("port") or CLI_DEFAULT_PORT
        cport = args.controller_port or ports.get("controller_port") or CLI_DEFAULT_CONTROLLER_PORT
        kafka = LocalKafka(data_dir, port=port, controller_port=cport, host=args.host,
                           cache_dir=args.cache_dir)

        if args.command == "status":
            pid = kafka.pid
            if pid:
                print(f"running pid={pid} bootstrap={kafka.bootstrap} data_dir={kafka.data_dir}")
                return 0
            print(f"stopped data_dir={kafka.data_dir}")
            return 3

        if args.command == "stop":
            pid = kafka.pid
            if not pid:
                print(f"not running (data_dir={kafka.data_dir})")
                return 0
            kafka.stop()
            print(f"stopped pid={pid}")
            return 0

        # start
        pid = kafka.pid
        if pid:
            print(f"already running pid={pid} bootstrap={kafka.bootstrap}")
            return 0
        kafka.start(timeout=args.timeout, detach=True)
        print(f"started pid={kafka.pid} bootstrap={kafka.bootstrap} "
              f"({kafka.startup_seconds:.1f}s) log={kafka.log_file}")
        # the broker lives on after we exit; forget the Popen so it isn't reaped/killed
        kafka._proc = None
        return 0
    except KafkaLocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
