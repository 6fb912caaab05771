"""What every test that runs real meterwatch processes needs: free loopback ports, a
worker environment isolated on the shared broker by its own app id and topic names, and
(``Env``) a pipeline of worker processes with its input, its backtest reference and
readers of its output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models.backtest import load_readings, run
from stream.registry import Registry
from models.evaluate.sim import FleetSimulator
from stream.worker.state import AreaState

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Shanghai"))

TOPIC_KINDS = ("readings", "rejected", "byarea", "alerts", "dead", "weather")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_names() -> tuple[str, dict[str, str]]:
    """A fresh app id and topic names, so tests share one broker without meeting."""
    tag = uuid.uuid4().hex[:8]
    return f"mw-{tag}", {k: f"{k}-{tag}" for k in TOPIC_KINDS}


def worker_env(*, bootstrap: str, app_id: str, topics: dict[str, str], registry: Path,
               data_dir: Path, web_port: int, **extra: str) -> dict[str, str]:
    """The process environment of a worker: none of the caller's METERWATCH_* settings."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
    e.update(METERWATCH_BROKER=bootstrap, METERWATCH_APP_ID=app_id,
             METERWATCH_READINGS_TOPIC=topics["readings"],
             METERWATCH_REJECTED_TOPIC=topics["rejected"],
             METERWATCH_BY_AREA_TOPIC=topics["byarea"],
             METERWATCH_ALERTS_TOPIC=topics["alerts"],
             METERWATCH_DEADLETTER_TOPIC=topics["dead"],
             METERWATCH_REGISTRY=str(registry), METERWATCH_DATA_DIR=str(data_dir),
             METERWATCH_WEB_PORT=str(web_port), METERWATCH_LOG_LEVEL="warning", **extra)
    return e


class Env:
    """One isolated pipeline: its own app id and topic names on the shared broker."""

    def __init__(self, bootstrap: str, tmp: Path, store: str = "memory", weather: bool = False,
                 **sim_kw) -> None:
        self.bootstrap = bootstrap
        self.store = store
        self.weather = weather  # the workers read the weather topic
        self.tmp = tmp
        self.app_id, self.topics = isolated_names()
        kw = dict(n_customers=40, n_areas=3, seed=7, start=START, interval_s=900)
        kw.update(sim_kw)
        self.sim = FleetSimulator(**kw)
        self.registry_path = tmp / "registry.csv"
        self.sim.write_registry_csv(self.registry_path)
        self.workers: list[subprocess.Popen] = []

    def env(self, web_port: int) -> dict[str, str]:
        return worker_env(bootstrap=self.bootstrap, app_id=self.app_id, topics=self.topics,
                          registry=self.registry_path, data_dir=self.tmp / "data",
                          web_port=web_port, METERWATCH_STORE=self.store,
                          METERWATCH_MAX_FUTURE_S=str(10 * 365 * 86400.0),
                          METERWATCH_WEATHER_TOPIC=self.topics["weather"] if self.weather else "")

    def ensure_topics(self) -> None:
        from stream.kafka_admin import ensure_topics
        from stream.settings import load_settings

        asyncio.run(ensure_topics(load_settings(env=self.env(0))))

    def start_worker(self, port: int | None = None) -> tuple[subprocess.Popen, int]:
        """A worker process; ``port`` again restarts that worker (same web port, data
        dir and group instance id), its log appended to."""
        self.ensure_topics()
        port = port or free_port()
        log = open(self.tmp / f"worker-{port}.log", "ab")
        p = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env=self.env(port),
                             cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(p)
        return p, port

    def crashes(self) -> list[str]:
        """Log lines of every worker so far that say it crashed (stopped on an error)."""
        out = []
        for log in sorted(self.tmp.glob("worker-*.log")):
            out += [f"{log.name}: {line}" for line in log.read_text(errors="replace").splitlines()
                    if "stopping the worker" in line or "Crashed reason" in line]
        return out

    def stop_all(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.workers:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    def messages(self, days: float) -> list[tuple[bytes, bytes]]:
        if not hasattr(self, "_msgs"):
            self._msgs = list(self.sim.iter_messages(days=days))
        return self._msgs

    def publish(self, messages) -> int:
        async def go():
            prod = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5,
                                    max_request_size=16 * 1024 * 1024)
            await prod.start()
            n = 0
            try:
                futs = []
                for k, v in messages:
                    futs.append(await prod.send(self.topics["readings"], value=v, key=k))
                    n += 1
                await asyncio.gather(*futs)
            finally:
                await prod.stop()
            return n
        return asyncio.run(go())

    def publish_paced(self, messages: list, seconds: float) -> threading.Thread:
        """Publish ``messages`` evenly over about ``seconds`` from a background thread
        (live load while workers come and go); join the thread to wait for the end."""
        def go():
            async def send():
                prod = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5,
                                        max_request_size=16 * 1024 * 1024)
                await prod.start()
                try:
                    step = max(1, len(messages) // int(seconds * 10))
                    t0 = time.monotonic()
                    for i in range(0, len(messages), step):
                        await asyncio.gather(*[await prod.send(self.topics["readings"], key=k,
                                                               value=v)
                                               for k, v in messages[i:i + step]])
                        ahead = t0 + seconds * (i + step) / len(messages) - time.monotonic()
                        await asyncio.sleep(max(0.0, ahead))
                finally:
                    await prod.stop()
            asyncio.run(send())

        t = threading.Thread(target=go, name="publish-paced", daemon=True)
        t.start()
        return t

    def read(self, topic: str, *, idle_s: float = 8.0, min_count: int = 0,
             timeout_s: float = 240.0) -> list:
        """All records of a topic, waiting until nothing new arrives for idle_s."""
        async def go():
            c = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap,
                                 auto_offset_reset="earliest", group_id=None,
                                 max_partition_fetch_bytes=32 * 1024 * 1024,
                                 fetch_max_bytes=64 * 1024 * 1024)
            await c.start()
            out = []
            t0 = last = time.monotonic()
            try:
                while time.monotonic() - t0 < timeout_s:
                    batch = await c.getmany(timeout_ms=1000)
                    got = [m for msgs in batch.values() for m in msgs]
                    if got:
                        out.extend(got)
                        last = time.monotonic()
                    elif time.monotonic() - last > idle_s and len(out) >= min_count:
                        break
            finally:
                await c.stop()
            return out
        return asyncio.run(go())

    def metric(self, port: int, name: str) -> float:
        import urllib.request

        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            return float("nan")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_applied(self, ports: list[int], expected: int, timeout_s: float = 240) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            got = sum(self.metric(p, "meterwatch_readings_applied_total") for p in ports)
            if got >= expected:
                return got
            time.sleep(1)
        return got


def alert_keys(records) -> set[tuple[str, str, str]]:
    out = set()
    for m in records:
        a = json.loads(m.value)
        out.add((a["id"], a["status"], a["detected_at"]))
    return out


def got_records(records) -> list[dict]:
    return [json.loads(m.value) for m in records]


def reference(env: Env, days: float):
    """The backtest over exactly the readings the simulator publishes."""
    path = env.tmp / "readings.parquet"
    env.sim.write_readings(path, days=days)
    df = load_readings(path)
    reg = Registry.load(env.registry_path)
    res = run(df, reg.fleet, tz="Asia/Shanghai", country="CN")
    keys = {(a["id"], a["status"], a["detected_at"]) for a in res.alerts}
    return res, keys, reg, len(df)


def final_states(env: Env, engine_dtype, area_dtype) -> dict[str, np.void]:
    """Each meter's record as the table's changelog holds it last."""
    recs = env.read(f"{env.app_id}-areas-changelog", idle_s=4)
    last: dict[bytes, bytes] = {}
    from stream.worker.state import is_internal_key

    for m in recs:
        if not is_internal_key(m.key):  # the agent's per-partition progress, theft models
            last[m.key] = m.value
    out = {}
    for blob in last.values():
        st = AreaState.from_bytes(blob, engine_dtype, area_dtype)
        for mid, rec in zip(st.meter_ids, st.records):
            out[mid] = rec
    return out


def scenario(sim: FleetSimulator) -> None:
    """Anomalies of every family, on a few meters and one area."""
    m = sim.meter_ids
    # A magnetic tamper is critical (the control room's path); terminal_cover_open is a
    # name that contains another (cover_open): the stream and the backtest must both see
    # only the event the meter sent, in the alert's evidence.
    sim.inject("tamper", m[1], "2026-03-05T10:00:00+08:00", event="magnetic_tamper")
    sim.inject("tamper", m[1], "2026-03-06T10:00:00+08:00", event="terminal_cover_open")
    sim.inject("bypass", m[2], "2026-03-06T00:00:00+08:00", "2026-03-08T00:00:00+08:00")
    sim.inject("reverse_flow", m[3], "2026-03-04T12:00:00+08:00", "2026-03-04T14:00:00+08:00")
    sim.inject("undervoltage", sim.area_ids[0], "2026-03-05T18:00:00+08:00", "2026-03-05T21:00:00+08:00")
    sim.inject("undervoltage", m[5], "2026-03-06T08:00:00+08:00", "2026-03-06T11:00:00+08:00")
    sim.inject("current_imbalance", m[6], "2026-03-07T00:00:00+08:00", "2026-03-07T06:00:00+08:00")
    sim.inject("comm_gap", m[7], "2026-03-05T00:00:00+08:00", "2026-03-05T06:00:00+08:00")
