#!/usr/bin/env python
"""How long a two-worker group stalls when one worker dies, stops, or restarts.

    .venv/bin/python bench/recovery.py                  # every scenario once, ~4 min
    .venv/bin/python bench/recovery.py --runs 2 kill9-restart
    .venv/bin/python bench/recovery.py --code /other/checkout   # workers run that code

Broker: ``METERWATCH_BROKER`` if set, else a private LocalKafka (free loopback ports, temp
dir) stopped at the end. Each run has its own app id and topics.

A run: two workers (``python -m stream.cli worker`` subprocesses) and a live feed of one
simulated interval for every area (15 areas, one message each) every 0.25 s. A tail of the
areas table's changelog says when each area's state first shows an interval: that is the
moment it was applied. Once both workers apply everything within a second, for 5 s,
worker 2 is disturbed at t0:

  kill9-restart   SIGKILL, and started again at once (same port, data dir, instance id)
  kill9           SIGKILL, not restarted: the survivor must take its partitions
  stop            SIGTERM (graceful), not restarted
  stop-restart    SIGTERM, and started again once it has exited

Recovery = the longest wait from publishing an interval to an area applying it, over
every area and every interval published in the 20 s after t0 (steady state: ~0.1 s). It
is how long the partitions of the disturbed worker (or, in a rebalance, of the whole
group) stood still, whenever in that window it happened: both consumer groups must own
every partition again and any table recovery must be done. Areas are spread over the 4 by-area partitions (checked: the run is
refused otherwise). Also printed: whether any worker crashed ("stopping the worker" in its
log, or a process that exited on its own).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENARIOS = ("kill9-restart", "kill9", "stop", "stop-restart")
PERIOD_S = 0.25
WINDOW_S = 20.0
START = datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Shanghai"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    def __init__(self, bootstrap: str, tmp: Path, code: Path, n_areas: int) -> None:
        from models.evaluate.sim import FleetSimulator

        self.bootstrap, self.tmp, self.code = bootstrap, tmp, code
        tag = uuid.uuid4().hex[:8]
        self.app_id = f"rec-{tag}"
        self.topics = {k: f"{k}-{tag}" for k in ("readings", "rejected", "byarea", "alerts",
                                                   "dead")}
        self.sim = FleetSimulator(n_customers=8 * n_areas, n_areas=n_areas, seed=3,
                                  start=START, interval_s=900)
        self.registry = tmp / f"registry-{tag}.csv"
        self.sim.write_registry_csv(self.registry)
        self.procs: dict[int, subprocess.Popen] = {}  # web port -> process
        self.published: list[float] = []  # interval index -> time published
        self.applied: dict[str, tuple[int, float]] = {}  # area -> (interval, when seen)
        # area -> [(interval, when first seen)], intervals increasing
        self.seen: dict[str, list[tuple[int, float]]] = {a: [] for a in self.sim.area_ids}

    def env(self, port: int) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
        e.update(PYTHONPATH=str(self.code), METERWATCH_BROKER=self.bootstrap,
                 METERWATCH_APP_ID=self.app_id, METERWATCH_READINGS_TOPIC=self.topics["readings"],
                 METERWATCH_REJECTED_TOPIC=self.topics["rejected"],
                 METERWATCH_BY_AREA_TOPIC=self.topics["byarea"],
                 METERWATCH_ALERTS_TOPIC=self.topics["alerts"],
                 METERWATCH_DEADLETTER_TOPIC=self.topics["dead"],
                 METERWATCH_REGISTRY=str(self.registry), METERWATCH_DATA_DIR=str(self.tmp / "data"),
                 METERWATCH_WEB_PORT=str(port), METERWATCH_LOG_LEVEL="warning",
                 METERWATCH_MAX_FUTURE_S=str(10 * 365 * 86400.0))
        return e

    def start(self, port: int) -> None:
        log = open(self.tmp / f"{self.app_id}-{port}.log", "ab")
        self.procs[port] = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"], env=self.env(port), cwd=self.code,
            stdout=log, stderr=subprocess.STDOUT)

    def crashed(self) -> list[str]:
        out = []
        for port in self.procs:
            text = (self.tmp / f"{self.app_id}-{port}.log").read_text(errors="replace")
            if "stopping the worker" in text:
                out.append(f"worker :{port} crashed (stopping the worker)")
            elif "Traceback" in text:
                out.append(f"worker :{port} logged a traceback")
        return out

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


async def feed(run: Run, intervals: list[list[tuple[bytes, bytes]]], stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=run.bootstrap, linger_ms=2)
    await prod.start()
    try:
        for msgs in intervals:
            if stop.is_set():
                return
            t = time.monotonic()
            await asyncio.gather(*[await prod.send(run.topics["readings"], key=k, value=v)
                                   for k, v in msgs])
            run.published.append(time.monotonic())
            await asyncio.sleep(max(0.0, PERIOD_S - (time.monotonic() - t)))
    finally:
        await prod.stop()


async def watch(run: Run, stop: asyncio.Event) -> None:
    """Tail the areas changelog: when each area first shows each interval applied."""
    import numpy as np
    from aiokafka import AIOKafkaConsumer

    from models.engine import Engine
    from stream.worker.state import is_internal_key
    from stream.registry import Registry
    from stream.worker.state import AreaState

    eng = Engine(Registry.load(run.registry).fleet)
    t_start = int(START.timestamp())
    c = AIOKafkaConsumer(f"{run.app_id}-areas-changelog", bootstrap_servers=run.bootstrap,
                         group_id=None, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=32 * 1024 * 1024)
    await c.start()
    try:
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=100)
            now = time.monotonic()
            for recs in batch.values():
                for r in recs:
                    if r.key is None or is_internal_key(r.key):
                        continue
                    st = AreaState.from_bytes(r.value, eng.dtype, eng.area_dtype)
                    # A reading's ts is the END of its interval: interval i ends at
                    # START + (i + 1) * 900.
                    i = (int(np.max(st.records["e_last_ts"])) - t_start) // 900 - 1
                    prev = run.applied.get(st.area_id)
                    if prev is None or i > prev[0]:
                        run.applied[st.area_id] = (i, now)
                        run.seen[st.area_id].append((i, now))
    finally:
        await c.stop()


def stall_after(run: Run, t0: float, window_s: float) -> float | None:
    """The longest wait, over every area and every interval published in the window_s
    after t0, from an interval's publication to the area applying it (None: some are
    not applied yet)."""
    ks = [k for k, t in enumerate(run.published) if t0 <= t <= t0 + window_s]
    if not ks or run.published[-1] < t0 + window_s:
        return None
    worst = 0.0
    for area in run.sim.area_ids:
        seen = run.seen[area]
        for k in ks:
            j = bisect.bisect_left(seen, (k, 0.0))
            if j == len(seen):
                return None
            worst = max(worst, seen[j][1] - run.published[k])
    return worst


async def steady(run: Run, timeout_s: float = 120.0) -> bool:
    """Every area applies what is published within 1 s, 5 s in a row."""
    t_end = time.monotonic() + timeout_s
    good_since = None
    while time.monotonic() < t_end:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        ok = len(run.published) > 8 and all(
            run.applied.get(a, (-1, 0))[0] >= len(run.published) - 1 - int(1 / PERIOD_S)
            for a in run.sim.area_ids)
        if not ok:
            good_since = None
        elif good_since is None:
            good_since = now
        elif now - good_since >= 5:
            return True
    return False


def by_area_partitions(area_ids: list[str], n: int) -> set[int]:
    from aiokafka.partitioner import DefaultPartitioner

    return {DefaultPartitioner()(a.encode(), list(range(n)), list(range(n))) for a in area_ids}


async def one(scenario: str, bootstrap: str, tmp: Path, code: Path, n_areas: int,
              timeout_s: float) -> dict:
    run = Run(bootstrap, tmp, code, n_areas)
    parts = by_area_partitions(run.sim.area_ids, 4)
    if len(parts) < 4:
        raise SystemExit(f"areas cover by-area partitions {sorted(parts)} only: pick --areas")
    msgs = list(run.sim.iter_messages(days=30))
    per = len(run.sim.area_ids)
    intervals = [msgs[i:i + per] for i in range(0, len(msgs), per)]
    from stream.kafka_admin import ensure_topics
    from stream.settings import load_settings

    await ensure_topics(load_settings(env=run.env(0)))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(feed(run, intervals, stop)),
             asyncio.create_task(watch(run, stop))]
    p1, p2 = free_port(), free_port()
    try:
        run.start(p1)
        run.start(p2)
        if not await steady(run):
            return {"scenario": scenario, "error": "never steady", "crashes": run.crashed()}
        t0 = time.monotonic()
        victim = run.procs[p2]
        if scenario.startswith("kill9"):
            victim.send_signal(signal.SIGKILL)
        else:
            victim.send_signal(signal.SIGTERM)
        if scenario.endswith("restart"):
            await asyncio.get_running_loop().run_in_executor(None, victim.wait)
            run.start(p2)
        stall = None
        while time.monotonic() - t0 < timeout_s:
            await asyncio.sleep(0.25)
            stall = stall_after(run, t0, WINDOW_S)
            if stall is not None:
                break
        alive = run.procs[p1].poll() is None
        return {"scenario": scenario, "recovery_s": None if stall is None else round(stall, 1),
                "survivor_alive": alive, "crashes": run.crashed()}
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        run.stop_all()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", default=list(SCENARIOS),
                    help=f"any of {', '.join(SCENARIOS)} (default: all)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--areas", type=int, default=15)
    ap.add_argument("--timeout", type=float, default=150.0)
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout the workers run")
    args = ap.parse_args()
    if set(args.scenarios) - set(SCENARIOS):
        ap.error(f"unknown scenario: {sorted(set(args.scenarios) - set(SCENARIOS))}")
    tmp = Path(tempfile.mkdtemp(prefix="mw-recovery-"))
    broker = os.environ.get("METERWATCH_BROKER")
    kafka = None
    if not broker:
        from stream.dev.kafka_local import LocalKafka, ensure_kafka

        ensure_kafka()
        kafka = LocalKafka(tmp / "kafka")
        kafka.start(timeout=120)
        broker = kafka.bootstrap
    try:
        results = []
        for scenario in args.scenarios:
            for _ in range(args.runs):
                r = asyncio.run(one(scenario, broker, tmp, args.code.resolve(), args.areas,
                                    args.timeout))
                results.append(r)
                print(r, flush=True)
        print(f"\nworkers ran {args.code.resolve()}; logs in {tmp}")
        print(f"{'scenario':<15} {'recovery (s)':>12}  crashes")
        for r in results:
            rec = r.get("recovery_s")
            rec = "timeout" if rec is None else f"{rec:.1f}"
            print(f"{r['scenario']:<15} {rec:>12}  {'; '.join(r.get('crashes', [])) or '-'}")
    finally:
        if kafka is not None:
            kafka.stop()


if __name__ == "__main__":
    main()
