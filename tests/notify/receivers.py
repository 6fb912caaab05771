"""Real receivers for the notifier's channels, each on a free loopback port.

* :class:`SmtpReceiver`: an aiosmtpd SMTP server (its own thread) keeping every message.
* :class:`WebhookReceiver`: an aiohttp server (its own thread) that checks each request's
  HMAC signature itself (not with the notifier's code) and keeps what it got.
* :class:`Alertmanager`: Debian's ``prometheus-alertmanager`` binary.

Each receiver keeps *every* arrival (``raw``) and can say which distinct ones it has by
the idempotency key the notifier sends (Message-ID, Idempotency-Key): "exactly once from
the recipient's view" is ``len(raw) >= len(distinct)`` with every expected key present
once in ``distinct``. Each can go down and come back on the same port (an outage), or
answer slowly (a notifier killed mid-send).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float = 30.0, every: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class _Slow:
    """Answer the first ``n`` arrivals after ``delay_s`` (they are recorded first)."""

    def __init__(self) -> None:
        self.n = 0
        self.delay_s = 0.0
        self.started = threading.Event()

    def take(self) -> float:
        if self.n > 0:
            self.n -= 1
            self.started.set()
            return self.delay_s
        return 0.0


# -- SMTP ------------------------------------------------------------------------------------

@dataclass
class Mail:
    msg: email.message.EmailMessage
    rcpt: list[str]
    at: float

    @property
    def message_id(self) -> str:
        return self.msg["Message-ID"]

    def part(self, subtype: str) -> str:
        body = self.msg.get_body(preferencelist=(subtype,))
        return body.get_content() if body is not None else ""


class SmtpReceiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.raw: list[Mail] = []
        self.refuse: dict[str, str] = {}  # recipient -> SMTP reply (e.g. "550 no such user")
        self.slow = _Slow()
        self._lock = threading.Lock()
        self._ctl = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.raw.append(Mail(msg, list(envelope.rcpt_tos), time.time()))
        delay = self.slow.take()
        if delay:
            await asyncio.sleep(delay)
        return "250 Message accepted for delivery"

    def start(self) -> "SmtpReceiver":
        from aiosmtpd.controller import Controller

        self._ctl = Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self._ctl.start()
        return self

    def stop(self) -> None:
        if self._ctl is not None:
            self._ctl.stop()
            self._ctl = None

    @property
    def up(self) -> bool:
        return self._ctl is not None

    def distinct(self) -> dict[str, Mail]:
        with self._lock:
            out: dict[str, Mail] = {}
            for m in self.raw:
                out.setdefault(m.message_id, m)
            return out

    def for_alert(self, alert_id: str, kind: str = "alert") -> list[Mail]:
        return [m for m in self.distinct().values()
                if m.msg["X-Meterwatch-Alert-Id"] == alert_id and m.msg["X-Meterwatch-Kind"] == kind]


# -- webhook ---------------------------------------------------------------------------------

@dataclass
class Hook:
    key: str
    kind: str
    body: dict[str, Any]
    raw_body: bytes
    path: str
    at: float
    headers: dict[str, str] = field(repr=False, default_factory=dict)


class WebhookReceiver:
    """Checks ``X-Meterwatch-Signature = sha256=HMAC(secret, ts + "." + body)`` and a
    fresh timestamp; a request failing either is answered 401 and counted in ``bad``."""

    def __init__(self, secret: str, port: int | None = None) -> None:
        self.secret = secret.encode()
        self.port = port or free_port()
        self.raw: list[Hook] = []
        self.bad: list[str] = []
        self.status = 200  # what to answer (503: "down" while listening)
        self.reply = "unavailable"  # the body of a non-200 answer
        self.slow = _Slow()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request):
        from aiohttp import web

        body = await request.read()
        ts = request.headers.get("X-Meterwatch-Timestamp", "")
        sig = request.headers.get("X-Meterwatch-Signature", "")
        want = "sha256=" + hmac.new(self.secret, ts.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
        if not (hmac.compare_digest(want, sig) and fresh):
            with self._lock:
                self.bad.append(sig)
            return web.Response(status=401, text="bad signature")
        if self.status != 200:
            return web.Response(status=self.status, text=self.reply)
        h = Hook(request.headers.get("Idempotency-Key", ""),
                 request.headers.get("X-Meterwatch-Kind", ""), json.loads(body), body,
                 request.path, time.time(), dict(request.headers))
        with self._lock:
            self.raw.append(h)
        delay = self.slow.take()
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=200, text="ok")

    def start(self) -> "WebhookReceiver":
        from aiohttp import web

        ready = threading.Event()

        def run():
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            # A slow handler still sleeping is cut off at shutdown, as in a real outage.
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
            loop.run_until_complete(site.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("webhook receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop = None

    def distinct(self, path: str | None = None) -> dict[tuple[str, str], Hook]:
        """First arrival per (endpoint path, Idempotency-Key): a key is scoped to the
        endpoint receiving it (a manager's and the control room's are different)."""
        with self._lock:
            out: dict[tuple[str, str], Hook] = {}
            for h in self.raw:
                if path is None or h.path == path:
                    out.setdefault((h.path, h.key), h)
            return out


# -- Alertmanager ----------------------------------------------------------------------------

AM_CONFIG = """\
route:
  receiver: "null"
  group_by: ["alertname", "area"]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


class Alertmanager:
    """The real Alertmanager binary on a free loopback port, clustering off."""

    def __init__(self, port: int | None = None) -> None:
        if not Path(ALERTMANAGER_BIN).exists():
            raise RuntimeError(f"{ALERTMANAGER_BIN} missing: apt-get install prometheus-alertmanager")
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="meterwatch-am-"))
        (self.dir / "am.yml").write_text(AM_CONFIG)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "Alertmanager":
        self.log = open(self.dir / "am.log", "ab")
        self.proc = subprocess.Popen(
            [ALERTMANAGER_BIN, f"--config.file={self.dir / 'am.yml'}",
             f"--storage.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--cluster.listen-address=", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited: {(self.dir / 'am.log').read_text()[-2000:]}")
            try:
                return urllib.request.urlopen(self.url + "/-/ready", timeout=1).status == 200
            except OSError:
                return False
        wait_for(ready, timeout, what="alertmanager ready")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def alerts(self, **filters) -> list[dict[str, Any]]:
        q = "&".join(f"{k}={str(v).lower()}" for k, v in filters.items())
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{q}", timeout=5) as r:
            return json.loads(r.read())

    def by_alert_id(self, **filters) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list] = {}
        for a in self.alerts(**filters):
            out.setdefault(a["labels"].get("alert_id", "?"), []).append(a)
        return out

    def silence(self, matchers: dict[str, str], minutes: float = 60) -> str:
        from datetime import datetime, timedelta, timezone

        now = datetime.now(timezone.utc)
        body = json.dumps({
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                         for k, v in matchers.items()],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=minutes)).isoformat(),
            "createdBy": "test", "comment": "maintenance"}).encode()
        req = urllib.request.Request(self.url + "/api/v2/silences", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())["silenceID"]
