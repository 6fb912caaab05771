#!/usr/bin/env python
"""End-to-end pipeline benchmark: one Faust worker on a real Kafka broker.

    .venv/bin/python bench/pipeline.py            # default, ~3-4 min on 2 cores
    .venv/bin/python bench/pipeline.py --quick    # ~1 min
    .venv/bin/python bench/pipeline.py --profile  # + a cProfiled worker on the 1-per-message topic
    .venv/bin/python bench/pipeline.py --help     # sizes, rates, --skip

Broker: ``METERWATCH_BROKER`` if set, else a private LocalKafka (free loopback ports,
temp dir) that is stopped at the end. Every phase has its own app id and topics.

Phases (each with ONE worker subprocess, ``python -m stream.cli worker``):

A. batched   a simulated fleet (concentrator batches, ~250 readings per message) is
             published BEFORE the worker starts, then drained by --repeat fresh workers
             in turn (default 3; the median run is reported, every run listed: the
             co-located broker's JIT warms up during the first); readings/s = applied
             readings / time from the first applied reading to the last (worker /metrics
             polled every 0.25 s, so +-0.25 s on the window). Also "whole pass": from the first
             CONSUMED reading to the last applied one, because the ingest agent can run
             ahead of the process agent (with one reading per message it ingests the
             whole backlog before the first area batch is applied, so the first-applied
             window leaves the ingest time out). Ratios use the whole pass. Worker CPU
             (user+sys from /proc) over the same windows.
B. single    the same readings, one reading per message (~100k messages).
R. raw       aiokafka ``getmany`` over the topics of A and B (fresh consumer group,
             partitions assigned manually so no rebalance delay is timed): messages/s
             and readings/s, readings counted as ``b'"meter_id"'`` occurrences (no
             decoding); also the same with ``stream.schema.decode_message`` (the
             worker's msgspec decoder) to show what decoding alone costs.
C. live      live data at a steady rate to an already running worker (default
             METERWATCH_MAX_FUTURE_S, reading timestamps in the recent past, tamper
             events injected so alerts happen); p50/p99 of produce->applied and
             produce->alert, ESTIMATED from the Prometheus histogram buckets by linear
             interpolation inside the bucket.

No assertions on speed: the machine is noisy, compare the ratios measured in the same
run. The summary is printed and written to ``out/bench/pipeline.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from models.evaluate.sim import FleetSimulator  # noqa: E402

if TYPE_CHECKING:
    from stream.dev.kafka_local import LocalKafka

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 1, 5, tzinfo=TZ)
INTERVAL_S = 900
P = "meterwatch_"


# Producing right after creating a topic logs NotLeaderForPartition retries: harmless.
logging.basicConfig(level=logging.WARNING)
logging.getLogger("aiokafka").setLevel(logging.ERROR)


def log(*a) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- metrics


def scrape(port: int, timeout: float = 5.0, names: list[str] | None = None
           ) -> dict[str, float] | None:
    """``{"name{labels}": value}`` from the worker's /metrics (only the series ``names``
    when given: the whole exposition 4 times a second cost the worker measurable CPU);
    None if not answering."""
    query = "?" + "&".join(f"name[]={n}" for n in names) if names else ""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}",
                                      timeout=timeout).read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, val = line.rpartition(" ")
        try:
            out[name] = float(val)
        except ValueError:
            pass
    return out


def msum(m: dict[str, float] | None, name: str) -> float:
    """Sum of a metric over its label sets."""
    if not m:
        return math.nan
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def buckets(m: dict[str, float], name: str) -> list[tuple[float, float]]:
    """Cumulative (le, count) of a histogram, sorted, +Inf last."""
    out = []
    for k, v in m.items():
        if k.startswith(name + "_bucket{"):
            le = k.split('le="', 1)[1].split('"', 1)[0]
            out.append((math.inf if le == "+Inf" else float(le), v))
    return sorted(out)


def bucket_diff(after: list, before: list) -> list[tuple[float, float]]:
    b = dict(before)
    return [(le, c - b.get(le, 0.0)) for le, c in after]


def bucket_quantile(cum: list[tuple[float, float]], q: float) -> float | None:
    """Quantile estimated from cumulative buckets, linear inside the bucket (like
    Prometheus' histogram_quantile). None without samples; the last finite bound if
    the quantile falls in +Inf."""
    if not cum or cum[-1][1] <= 0:
        return None
    total = cum[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in cum:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


# --------------------------------------------------------------------------- pipeline


class Pipeline:
    """One isolated pipeline on the broker: own app id, topics, worker, metrics port."""

    def __init__(self, bootstrap: str, tmp: Path, name: str, registry: Path,
                 readings_topic: str | None = None, **extra_env: str) -> None:
        tag = f"{name}-{uuid.uuid4().hex[:6]}"
        self.name = name
        self.bootstrap = bootstrap
        self.tmp = tmp
        self.app_id = f"mwbench-{tag}"
        self.topics = {k: f"bench-{k}-{tag}" for k in
                       ("readings", "rejected", "byarea", "alerts", "dead")}
        if readings_topic:
            self.topics["readings"] = readings_topic
        self.registry = registry
        self.port = free_port()
        self.extra_env = extra_env
        self.proc: subprocess.Popen | None = None
        self.logfile = tmp / f"worker-{tag}.log"

    def env(self) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
        e.update(METERWATCH_BROKER=self.bootstrap, METERWATCH_APP_ID=self.app_id,
                 METERWATCH_READINGS_TOPIC=self.topics["readings"],
                 METERWATCH_REJECTED_TOPIC=self.topics["rejected"],
                 METERWATCH_BY_AREA_TOPIC=self.topics["byarea"],
                 METERWATCH_ALERTS_TOPIC=self.topics["alerts"],
                 METERWATCH_DEADLETTER_TOPIC=self.topics["dead"],
                 METERWATCH_REGISTRY=str(self.registry),
                 METERWATCH_DATA_DIR=str(self.tmp / "data"),
                 METERWATCH_WEB_PORT=str(self.port), METERWATCH_LOG_LEVEL="warning")
        e.update(self.extra_env)
        return e

    def settings(self):
        from stream.settings import load_settings

        return load_settings(env=self.env())

    def ensure_topics(self) -> None:
        from stream.kafka_admin import ensure_topics

        asyncio.run(ensure_topics(self.settings()))

    def start(self) -> None:
        cmd = [sys.executable, "-m", "stream.cli", "worker"]
        self.proc = subprocess.Popen(cmd, env=self.env(), cwd=ROOT,
                                     stdout=open(self.logfile, "wb"), stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_web(self, timeout: float = 120) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited:\n{self.log_tail()}")
            if scrape(self.port, timeout=1) is not None:
                return
            time.sleep(0.25)
        raise RuntimeError(f"worker {self.name} web not up after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def metrics(self, names: list[str] | None = None) -> dict[str, float] | None:
        return scrape(self.port, names=names)

    def cpu_seconds(self) -> float:
        """user+system CPU of the worker process so far (Linux /proc)."""
        if self.proc is None:
            return math.nan
        return proc_cpu(self.proc.pid)


BROKER_PID: int | None = None  # the private LocalKafka's JVM, when this script started it


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]  # idle + iowait
        tck = os.sysconf("SC_CLK_TCK")
        return (sum(v[:8]) - idle) / tck, sum(v[:8]) / tck
    except (OSError, IndexError, ValueError):
        return math.nan, math.nan


def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


async def _produce(bootstrap: str, topic: str, messages, rate: float | None = None) -> float:
    """Send all (key, value); return seconds taken. ``rate`` in messages/s (steady)."""
    from aiokafka import AIOKafkaProducer

    from stream.app import MAX_MESSAGE_BYTES

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                            max_request_size=MAX_MESSAGE_BYTES,
                            max_batch_size=256 * 1024)
    await prod.start()
    t0 = time.monotonic()
    try:
        futs = []
        for n, (k, v) in enumerate(messages, 1):
            futs.append(await prod.send(topic, value=v, key=k))
            if len(futs) >= 5000:
                await asyncio.gather(*futs)
                futs.clear()
            if rate:
                ahead = n / rate - (time.monotonic() - t0)
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*futs)
        await prod.flush()
    finally:
        await prod.stop()
    return time.monotonic() - t0


def produce(bootstrap: str, topic: str, messages, rate: float | None = None) -> float:
    return asyncio.run(_produce(bootstrap, topic, messages, rate))


# --------------------------------------------------------------------------- phases A/B


POLLED = [P + "readings_applied_total", P + "readings_consumed_total"]
FULL_SCRAPES = False  # --full-scrapes: poll the whole exposition, as before


def drain(pipe: Pipeline, expected: int, *, timeout: float, poll: float = 0.25,
          idle_s: float = 10.0) -> dict:
    """Poll the worker until ``expected`` readings are applied (or progress stops);
    readings/s over the window first applied reading -> last."""
    # (t, applied, consumed, worker cpu, broker cpu, machine busy, machine total)
    samples: list[tuple[float, ...]] = []
    t0 = time.monotonic()
    last_change = t0
    last_applied = -1.0
    while True:
        ts = time.monotonic()
        m = pipe.metrics(None if FULL_SCRAPES else POLLED)
        if m is not None:
            a = msum(m, P + "readings_applied_total")
            c = msum(m, P + "readings_consumed_total")
            samples.append((ts, a, c, pipe.cpu_seconds(),
                            proc_cpu(BROKER_PID) if BROKER_PID else math.nan, *machine_busy()))
            if a != last_applied:
                last_applied, last_change = a, ts
            if a >= expected:
                break
            if a > 0 and ts - last_change > idle_s:
                log(f"  {pipe.name}: no progress for {idle_s:.0f}s at {a:.0f}/{expected} applied")
                break
        if not pipe.alive():
            raise RuntimeError(f"worker {pipe.name} died:\n{pipe.log_tail()}")
        if ts - t0 > timeout:
            log(f"  {pipe.name}: timeout after {timeout:.0f}s")
            break
        time.sleep(max(0.0, poll - (time.monotonic() - ts)))
    final = pipe.metrics() or {}
    applied = [s for s in samples if s[1] > 0]
    out: dict = {"expected_readings": expected, "samples": len(samples)}
    if applied:
        first = applied[0]
        a_last = applied[-1][1]
        last = next(s for s in applied if s[1] >= a_last)
        window = last[0] - first[0]
        n = a_last - first[1]
        cpu = last[3] - first[3]
        # When the ingest agent had consumed everything (readings decoded+validated).
        ingest_done = next((s[0] for s in samples if s[2] >= expected), None)
        # First sample with anything consumed: the ingest agent may run far ahead of the
        # process agent (with one reading per message it ingests the whole backlog
        # before the first area batch is applied), so also time the whole pass.
        c_first = next(s for s in samples if s[2] > 0)
        whole = last[0] - c_first[0]
        out.update(
            window_s=round(window, 3),
            readings_in_window=n,
            readings_per_s=n / window if window > 0 else None,
            whole_window_s=round(whole, 3),
            readings_per_s_whole=(a_last - c_first[1]) / whole if whole > 0 else None,
            worker_cpu_s_whole=round(last[3] - c_first[3], 2),
            worker_cpu_us_per_reading_whole=((last[3] - c_first[3]) / (a_last - c_first[1]) * 1e6
                                             if a_last > c_first[1] else None),
            worker_cpu_s=round(cpu, 2),
            worker_cpu_util=cpu / window if window > 0 else None,
            worker_cpu_us_per_reading=cpu / n * 1e6 if n > 0 else None,
            # Is the worker waiting for the broker, or is the machine simply full?
            broker_cpu_util=((last[4] - first[4]) / window
                             if window > 0 and not math.isnan(last[4]) else None),
            machine_busy_share=((last[5] - first[5]) / (last[6] - first[6])
                                if last[6] > first[6] else None),
            ingest_done_after_first_applied_s=(round(ingest_done - first[0], 2)
                                               if ingest_done is not None else None),
        )
    applied_total = msum(final, P + "readings_applied_total")
    det = msum(final, P + "detector_seconds_total")
    rounds = msum(final, P + "detector_rounds_total")
    nb = final.get(P + "area_batch_seconds_count") or 0
    out.update(
        readings_consumed=msum(final, P + "readings_consumed_total"),
        readings_applied=applied_total,
        readings_rejected=msum(final, P + "readings_rejected_total"),
        messages_consumed=msum(final, P + "messages_consumed_total"),
        detector_seconds_total=det,
        readings_per_detector_round=(msum(final, P + "detector_readings_total") / rounds
                                     if rounds else None),
        detector_us_per_reading=det / applied_total * 1e6 if applied_total else None,
        area_batches=nb,
        readings_per_area_batch=applied_total / nb if nb else None,
        area_batch_ms_mean=final.get(P + "area_batch_seconds_sum", 0) / nb * 1e3 if nb else None,
    )
    if out.get("readings_per_s") and out.get("messages_consumed"):
        out["messages_per_s"] = out["readings_per_s"] * out["messages_consumed"] / max(applied_total, 1)
    return out


def single_messages(batches: list[tuple[bytes, bytes]], limit: int) -> list[tuple[bytes, bytes]]:
    """Each reading of the batches as its own message (key = meter id), in order."""
    dec = msgspec.json.Decoder()
    enc = msgspec.json.Encoder()
    out: list[tuple[bytes, bytes]] = []
    for _, v in batches:
        for r in dec.decode(v)["readings"]:
            out.append((r["meter_id"].encode(), enc.encode(r)))
            if len(out) >= limit:
                return out
    return out


# --------------------------------------------------------------------------- raw


async def _raw(bootstrap: str, topic: str, n_messages: int, decode: bool,
               timeout: float = 300) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream.schema import decode_message

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:8]}",
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         max_partition_fetch_bytes=16 * 1024 * 1024,
                         fetch_max_bytes=64 * 1024 * 1024)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic) or set()
        if not parts:
            await c._client.force_metadata_update()  # noqa: SLF001
            parts = c.partitions_for_topic(topic) or set()
        n = readings = 0
        t0 = time.perf_counter()
        c.assign([TopicPartition(topic, p) for p in sorted(parts)])
        while n < n_messages and time.perf_counter() - t0 < timeout:
            batch = await c.getmany(timeout_ms=1000)
            for msgs in batch.values():
                n += len(msgs)
                if decode:
                    for m in msgs:
                        readings += len(decode_message(m.value).readings)
                else:
                    for m in msgs:
                        readings += m.value.count(b'"meter_id"')
        dt = time.perf_counter() - t0
    finally:
        await c.stop()
    return {"messages": n, "readings": readings, "seconds": round(dt, 3),
            "messages_per_s": n / dt, "readings_per_s": readings / dt}


def raw(bootstrap: str, topic: str, n_messages: int, decode: bool = False) -> dict:
    return asyncio.run(_raw(bootstrap, topic, n_messages, decode))


# --------------------------------------------------------------------------- phase C


def live_phase(bootstrap: str, tmp: Path, args) -> dict:
    rate = args.live_rate  # messages/s
    n_msgs = int(rate * args.live_seconds)
    n_intervals = max(4, n_msgs // args.areas)
    span = n_intervals * INTERVAL_S
    # Whole local days, ending in the recent past (readings > 300 s ahead are rejected).
    now = datetime.now(TZ)
    start = (now - timedelta(seconds=span + INTERVAL_S)).replace(hour=0, minute=0, second=0,
                                                                 microsecond=0)
    sim = FleetSimulator(n_customers=args.customers, n_areas=args.areas, seed=args.seed,
                         start=start, interval_s=INTERVAL_S)
    # Tamper flags: point alerts raised by the very batch that carries them.
    t_first = int(start.timestamp()) + 2 * INTERVAL_S
    n_tamper = max(10, min(len(sim.meter_ids) // 2, n_intervals // 2))
    step = max(1, (n_intervals - 3) * INTERVAL_S // n_tamper)
    customers = [m for m in sim.meter_ids if m.startswith("M")]
    for i in range(n_tamper):
        sim.inject("tamper", customers[(i * 37) % len(customers)], t_first + i * step)
    days = (n_intervals * INTERVAL_S) / 86400.0
    msgs = list(sim.iter_messages(days=days))
    last_ts = int(start.timestamp()) + n_intervals * INTERVAL_S
    registry = tmp / "registry-live.csv"
    sim.write_registry_csv(registry)
    # Default max_future_s (300 s): live rules.
    pipe = Pipeline(bootstrap, tmp, "live", registry)
    warm, main = msgs[:args.areas], msgs[args.areas:]
    warm_readings = sum(v.count(b'"meter_id"') for _, v in warm)
    total = sum(v.count(b'"meter_id"') for _, v in msgs)
    log(f"C live: {len(msgs)} messages ({total} readings, {n_tamper} tamper events) at "
        f"{rate:g} msg/s; reading timestamps {start:%m-%d %H:%M} .. "
        f"{datetime.fromtimestamp(last_ts, TZ):%m-%d %H:%M} (now {now:%m-%d %H:%M})")
    pipe.ensure_topics()
    pipe.start()
    try:
        pipe.wait_web()
        # Warm-up: one interval, wait until applied (the group has joined and assigned).
        produce(bootstrap, pipe.topics["readings"], warm)
        drain(pipe, warm_readings, timeout=120, idle_s=30)
        m0 = pipe.metrics() or {}
        t0, cpu0 = time.monotonic(), pipe.cpu_seconds()
        pub_s = produce(bootstrap, pipe.topics["readings"], main, rate=rate)
        cpu_pub = pipe.cpu_seconds() - cpu0
        r = drain(pipe, total, timeout=120, idle_s=10)
        m1 = pipe.metrics() or {}
        wall = time.monotonic() - t0
    finally:
        pipe.stop()
    nb = (m1.get(P + "area_batch_seconds_count", 0) - m0.get(P + "area_batch_seconds_count", 0))
    bs = (m1.get(P + "area_batch_seconds_sum", 0) - m0.get(P + "area_batch_seconds_sum", 0))
    out = {"messages": len(main), "readings": total - warm_readings,
           "rate_msgs_per_s": rate, "rate_readings_per_s": rate * (total / len(msgs)),
           "publish_seconds": round(pub_s, 3), "wall_seconds": round(wall, 3),
           "readings_applied": r["readings_applied"] - msum(m0, P + "readings_applied_total"),
           "readings_rejected": msum(m1, P + "readings_rejected_total")
           - msum(m0, P + "readings_rejected_total"),
           "alerts": msum(m1, P + "alerts_total") - msum(m0, P + "alerts_total"),
           "tamper_injected": n_tamper,
           # Worker CPU while the publisher ran: headroom at this rate (1.0 = saturated).
           "worker_cpu_util_while_publishing": cpu_pub / pub_s if pub_s > 0 else None,
           "area_batches": nb, "area_batch_ms_mean": bs / nb * 1e3 if nb else None,
           "readings_per_area_batch": (r["readings_applied"] - msum(m0, P + "readings_applied_total"))
           / nb if nb else None,
           "catch_up_after_publish_s": round(wall - pub_s, 2)}
    for key, metric in (("applied", P + "produce_to_applied_seconds"),
                        ("alert", P + "produce_to_alert_seconds")):
        cum = bucket_diff(buckets(m1, metric), buckets(m0, metric))
        n = cum[-1][1] if cum else 0
        s = m1.get(metric + "_sum", 0.0) - m0.get(metric + "_sum", 0.0)
        out[f"produce_to_{key}"] = {
            "samples": n, "mean_s": s / n if n else None,
            "p50_s": bucket_quantile(cum, 0.5), "p99_s": bucket_quantile(cum, 0.99),
            "buckets": [[("+Inf" if math.isinf(le) else le), c] for le, c in cum]}
    return out


# --------------------------------------------------------------------------- profile


PROFILED_WORKER = "_profiled_worker"


def profiled_worker(out: str, lo: int, hi: int) -> None:
    """``stream.cli worker`` in this process, cProfile on from ``lo`` readings consumed
    to ``hi`` readings applied (start-up and the idle tail stay out of the profile)."""
    import cProfile

    import stream.worker.agents as agents
    from stream.worker import metrics as M

    orig = agents.register

    def register(rt) -> None:
        orig(rt)
        # Thread CPU time, not wall: waits (epoll) and time the machine gave to other
        # processes stay out, so the shares hold on a loaded machine.
        prof = cProfile.Profile(time.thread_time)
        st: dict = {"on": False, "done": False}
        get = M.REGISTRY.get_sample_value

        @rt.app.timer(0.02)
        async def _bench_profile_window() -> None:
            c = get(P + "readings_consumed_total") or 0.0
            a = get(P + "readings_applied_total") or 0.0
            if not st["on"] and not st["done"] and c >= lo:
                st.update(on=True, t=time.perf_counter(), cpu=time.process_time(), c=c, a=a)
                prof.enable()
            elif st["on"] and a >= hi:
                prof.disable()
                st.update(on=False, done=True)
                prof.dump_stats(out)
                Path(out + ".json").write_text(json.dumps({
                    "wall_s": time.perf_counter() - st["t"], "cpu_s": time.process_time() - st["cpu"],
                    "consumed_at_start": st["c"], "applied_at_start": st["a"], "applied": a}))

    agents.register = register
    from stream.cli import main as cli_main

    cli_main(["worker"])


def _group(file: str, fn: str) -> str:
    f = file.replace("\\", "/")
    if "/stream/" in f or "/models/" in f or "/bench/" in f:
        return "meterwatch code (stream/, models/)"
    for key, label in (("/faust/", "faust"), ("/mode/", "mode (faust's service/queue lib)"),
                       ("/aiokafka/", "aiokafka (client, protocol)"), ("/numpy/", "numpy"),
                       ("/logging/", "logging"), ("prometheus_client", "prometheus_client"),
                       ("/asyncio/", "asyncio (loop, tasks, futures, queues)"),
                       ("selectors.py", "asyncio (loop, tasks, futures, queues)")):
        if key in f:
            return label
    if f == "~":
        if "msgspec" in fn:
            return "msgspec (C)"
        if "numpy" in fn or "ufunc" in fn:
            return "numpy"
        if "socket" in fn or "epoll" in fn:
            return "socket / epoll syscalls"
        if "_asyncio" in fn or "Context" in fn:
            return "asyncio (loop, tasks, futures, queues)"
        return "builtins (C)"
    return "other stdlib"


KEY_FUNCS = (
    ("faust/transport/consumer.py", "_drain_messages", "faust consumer loop (per message: wait_first)"),
    ("mode/services.py", "wait_first", "  mode wait_first (4 tasks + asyncio.wait per message)"),
    ("faust/transport/conductor.py", "on_message", "faust conductor.on_message (decode, queue put)"),
    ("faust/streams.py", "_c_aiter", "faust Stream._c_aiter (queue get, sensors, processors)"),
    ("faust/streams.py", "take_events", "faust take_events buffer"),
    ("stream/worker/processing.py", "handle", "meterwatch Ingestor.handle (+ Processor.handle, old agents)"),
    ("stream/worker/processing.py", "handle_many", "meterwatch Processor.handle_many"),
    ("models/engine.py", "process", "  of which Engine.process (detectors)"),
    ("stream/worker/state.py", "to_bytes", "meterwatch AreaState.to_bytes (state blob)"),
    ("faust/topics.py", "send", "faust Topic.send (by-area, alerts, changelog)"),
    ("aiokafka/producer/sender.py", "_send_produce_req", "aiokafka produce requests"),
    ("logging/__init__.py", "debug", "logging .debug() calls that build records"),
)


def profile_report(path: Path, n: float, top: int = 20) -> tuple[str, dict]:
    """Own time (tottime) grouped by package, key functions' cumulative time, top
    functions; per message = divided by ``n``."""
    import io

    st = pstats.Stats(str(path))
    groups: dict[str, float] = {}
    for (file, _line, fn), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        g = _group(file, fn)
        groups[g] = groups.get(g, 0.0) + tt
    total = sum(groups.values())
    lines = [f"cProfile own time by package ({total:.2f}s thread CPU profiled, {n:.0f} messages; "
             "cProfile inflates call-heavy Python code, read shares, not absolutes):"]
    out: dict = {"total_s": total, "groups": {}, "key_functions": {}}
    for g, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {t / total * 100:5.1f}%  {t / n * 1e6:7.1f} us/msg  {g}")
        out["groups"][g] = t
    lines.append("key functions, cumulative (time inside the call, waits excluded):")
    for file, fn, label in KEY_FUNCS:
        ct = sum(v[3] for (f, _l, name), v in st.stats.items()  # type: ignore[attr-defined]
                 if name == fn and f.replace("\\", "/").endswith(file))
        lines.append(f"  {ct / total * 100:5.1f}%  {ct / n * 1e6:7.1f} us/msg  {label}")
        out["key_functions"][label.strip()] = ct
    # Inside the detectors: models/ functions by cumulative time (for their owners).
    eng = sum(v[3] for (f, _l, name), v in st.stats.items()  # type: ignore[attr-defined]
              if name == "process" and f.replace("\\", "/").endswith("models/engine.py"))
    mods = sorted(((v[3], v[2], v[1], f.replace("\\", "/").split("/models/")[-1], line, name)
                   for (f, line, name), v in st.stats.items()  # type: ignore[attr-defined]
                   if "/models/" in f.replace("\\", "/")), reverse=True)
    lines.append(f"models/ functions by cumulative time (share of Engine.process = {eng:.2f}s):")
    out["models_cumulative"] = []
    for ct, tt, ncalls, f, line, name in mods[:top]:
        lines.append(f"  {ct / max(eng, 1e-9) * 100:5.1f}%  cum {ct:6.2f}s  own {tt:6.2f}s  "
                     f"{ncalls:7d} calls  models/{f}:{line}({name})")
        out["models_cumulative"].append({"function": f"models/{f}:{line}({name})",
                                         "cumulative_s": ct, "own_s": tt, "calls": ncalls})
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).sort_stats("tottime").print_stats(top)
    body = buf.getvalue()
    body = body[body.find("   ncalls"):] if "   ncalls" in body else body
    lines.append(f"top {top} by own time:")
    lines.append(body.rstrip())
    return "\n".join(lines), out


# --------------------------------------------------------------------------- main


def fmt(v, spec=",.0f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def ms(v) -> str:
    return "-" if v is None else f"{v * 1000:.1f} ms"


def summary_table(res: dict) -> str:
    A, B, C = res.get("batched", {}), res.get("single", {}), res.get("live", {})
    RA, RB = res.get("raw_batched", {}), res.get("raw_single", {})
    RAd, RBd = res.get("raw_batched_decode", {}), res.get("raw_single_decode", {})
    ra = res.get("ratios", {})

    def counts(x: dict) -> str:
        return (f"{fmt(x.get('readings_consumed'))} / {fmt(x.get('readings_applied'))} / "
                f"{fmt(x.get('readings_rejected'))}")

    def machine(x: dict) -> str:
        return (f"{fmt(x.get('broker_cpu_util'), '.2f')} cores / "
                f"{fmt(x.get('machine_busy_share'), '.0%')} of all cores")

    def cpu(x: dict) -> str:
        return (f"{fmt(x.get('worker_cpu_util'), '.2f')} cores, "
                f"{fmt(x.get('worker_cpu_us_per_reading'), '.1f')} us CPU/reading")

    def batches(x: dict) -> str:
        return (f"{fmt(x.get('area_batches'))} batches, {fmt(x.get('readings_per_area_batch'), ',.1f')}"
                f" readings each, {fmt(x.get('area_batch_ms_mean'), '.2f')} ms each")

    rows = [
        (f"A batched (~{A['readings'] / A['messages']:.0f} readings/msg): readings/s"
         if A.get("messages") else "A batched: readings/s", fmt(A.get("readings_per_s"))
         + (" (median)" if len(A.get("runs_readings_per_s") or ()) > 1 else "")),
        ("A   each run (readings/s)", " / ".join(fmt(x) for x in A.get("runs_readings_per_s") or ())
         or "-"),
        ("A   readings/s whole pass (first consumed->last)", fmt(A.get("readings_per_s_whole"))),
        ("A   messages/s", fmt(A.get("messages_per_s"), ",.1f")),
        ("A   readings consumed / applied / rejected", counts(A)),
        ("A   worker CPU in window", cpu(A)),
        ("A   broker CPU / machine busy in window", machine(A)),
        ("A   detector us/reading (detector_seconds_total)", fmt(A.get("detector_us_per_reading"), ".2f")),
        ("A   readings per detector round", fmt(A.get("readings_per_detector_round"), ".0f")),
        ("A   area batches (process agent)", batches(A)),
        ("B single (1 reading/msg): messages/s", fmt(B.get("readings_per_s"))),
        ("B   messages/s whole pass (first consumed->last)", fmt(B.get("readings_per_s_whole"))),
        ("B   us per message, whole pass (wall / CPU)",
         f"{fmt(1e6 / B['readings_per_s_whole'] if B.get('readings_per_s_whole') else None, '.0f')}"
         f" / {fmt(B.get('worker_cpu_us_per_reading_whole'), '.0f')}"),
        ("B   readings consumed / applied / rejected", counts(B)),
        ("B   worker CPU in window", cpu(B)),
        ("B   broker CPU / machine busy in window", machine(B)),
        ("B   detector us/reading", fmt(B.get("detector_us_per_reading"), ".2f")),
        ("B   readings per detector round", fmt(B.get("readings_per_detector_round"), ".0f")),
        ("B   area batches (process agent)", batches(B)),
        ("B   whole pass / applying window / ingest done at",
         f"{fmt(B.get('whole_window_s'), '.1f')} s / {fmt(B.get('window_s'), '.1f')} s / "
         f"{fmt(B.get('ingest_done_after_first_applied_s'), '+.1f')} s rel. to first applied"),
        ("R raw getmany batched: messages/s", fmt(RA.get("messages_per_s"), ",.1f")),
        ("R   readings/s (count b'\"meter_id\"', no decode)", fmt(RA.get("readings_per_s"))),
        ("R   readings/s with msgspec decode_message", fmt(RAd.get("readings_per_s"))),
        ("R raw getmany single: messages/s (count)", fmt(RB.get("messages_per_s"))),
        ("R   messages/s with msgspec decode_message", fmt(RBd.get("messages_per_s"))),
        ("ratio A worker (whole pass) / raw (readings/s)", fmt(ra.get("batched_worker_over_raw"), ".3f")),
        ("ratio B worker (whole pass) / raw (messages/s)", fmt(ra.get("single_worker_over_raw"), ".4f")),
        ("ratio B / A worker, whole pass (readings/s)", fmt(ra.get("single_over_batched"), ".3f")),
        ("C live rate", f"{fmt(C.get('rate_msgs_per_s'), ',.0f')} msg/s = "
                        f"{fmt(C.get('rate_readings_per_s'))} readings/s for "
                        f"{fmt(C.get('publish_seconds'), '.0f')} s"),
        ("C   worker CPU while publishing", f"{fmt(C.get('worker_cpu_util_while_publishing'), '.2f')} cores"),
        ("C   readings applied / alert messages", f"{fmt(C.get('readings_applied'))} / {fmt(C.get('alerts'))}"),
        ("C   area batches", batches(C)),
    ]
    for key in ("applied", "alert"):
        h = C.get(f"produce_to_{key}") or {}
        rows.append((f"C   produce->{key} p50 / p99 (bucket-estimated)",
                     f"{ms(h.get('p50_s'))} / {ms(h.get('p99_s'))}  (n={fmt(h.get('samples'))}, "
                     f"mean {ms(h.get('mean_s'))})"))
    for key in ("batched", "single"):
        Pf = res.get(f"{key}_profiled")
        if Pf:
            rows.append((f"P   cProfiled {key} worker CPU/message, /reading",
                         f"{fmt(Pf.get('cpu_us_per_message'), '.0f')} us, "
                         f"{fmt(Pf.get('cpu_us_per_reading'), '.1f')} us (profiler-inflated)"))
    w = max(len(r[0]) for r in rows)
    lines = ["", "meterwatch pipeline benchmark (" + res["meta"].get("broker_kind", "?") + " broker, "
             + res["meta"]["machine"] + ")", "-" * (w + 50)]
    lines += [f"{k:<{w}}  {v}" for k, v in rows]
    return "\n".join(lines)


def profiled_phase(broker: str, tmp: Path, pipes: list, args, key: str, src: "Pipeline",
                   registry: Path, env: dict, n_msgs: int, n_readings: int) -> dict:
    """A cProfiled worker over ``src``'s readings topic (not timed): where the time per
    message goes. The profile covers first consumed -> last applied reading."""
    prof = Path(args.out).with_suffix(f".{key}.prof")
    prof.parent.mkdir(parents=True, exist_ok=True)
    Bp = Pipeline(broker, tmp, f"{key}-prof", registry, readings_topic=src.topics["readings"],
                  **env)
    pipes.append(Bp)
    Bp.ensure_topics()
    Bp.proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), PROFILED_WORKER, str(prof),
         "1", str(n_readings)], env=Bp.env(), cwd=ROOT,
        stdout=open(Bp.logfile, "wb"), stderr=subprocess.STDOUT)
    Bp.wait_web()
    r = drain(Bp, n_readings, timeout=900)
    deadline = time.monotonic() + 30
    while not Path(str(prof) + ".json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    Bp.stop()
    info = json.loads(Path(str(prof) + ".json").read_text())
    # Messages profiled: all of them less those consumed before the profile started
    # (counted in readings; with ~250 per message that is a few messages at most).
    per_msg = n_readings / max(n_msgs, 1)
    n_prof = (n_readings - info["consumed_at_start"]) / per_msg
    text, groups = profile_report(prof, max(n_prof, 1))
    print(f"== profile, phase {key} ({per_msg:.0f} readings/message) ==")
    print(text)
    log(f"profiled {key} worker: {info['cpu_s']:.1f}s CPU for {n_prof:.0f} messages "
        f"under cProfile; stats in {prof}")
    return {"messages_profiled": n_prof, "readings_per_message": per_msg,
            "wall_s": info["wall_s"], "cpu_s": info["cpu_s"],
            "cpu_us_per_message": info["cpu_s"] / max(n_prof, 1) * 1e6,
            "cpu_us_per_reading": info["cpu_s"] / max(n_prof * per_msg, 1) * 1e6,
            "readings_per_s_under_profiler": r.get("readings_per_s"),
            "profile": str(prof), **groups}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options, with the sizes --quick shrinks filled in."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~1 minute: smaller sizes")
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--areas", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--days", type=float, default=None,
                    help="simulated days for phase A (default 8 = ~1.5M readings, a 15-20 s window; "
                         "quick 1)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="phase A runs over the same backlog, median reported (default 3; quick 1)")
    ap.add_argument("--single", type=int, default=None,
                    help="messages in phase B (default 300000; quick 20000)")
    ap.add_argument("--live-rate", type=float, default=40.0,
                    help="phase C messages/s (area batches of ~250 readings; default "
                         "%(default)s = one every 25 ms)")
    ap.add_argument("--live-seconds", type=float, default=None,
                    help="phase C duration (default 40; quick 12)")
    ap.add_argument("--skip", default="", help="comma list of phases to skip: A,B,R,C")
    ap.add_argument("--profile", action="store_true",
                    help="also run cProfiled workers over the topics of A and B (not timed)")
    ap.add_argument("--full-scrapes", action="store_true",
                    help="poll the worker's whole /metrics while draining (older workers "
                         "ignore ?name[] and always get this)")
    ap.add_argument("--worker-env", action="append", default=[], metavar="METERWATCH_X=V",
                    help="a setting for every worker (repeatable), to compare settings")
    ap.add_argument("--broker-pid", type=int, default=None,
                    help="with METERWATCH_BROKER: the broker's pid, to report its CPU")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench" / "pipeline.json"))
    args = ap.parse_args(argv)
    if args.days is None:
        args.days = 1.0 if args.quick else 8.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    if args.single is None:
        args.single = 20_000 if args.quick else 300_000
    if args.live_seconds is None:
        args.live_seconds = 12.0 if args.quick else 40.0
    return args


@dataclass
class Run:
    """What the phases share: the options, the broker, the simulated backlog, the
    workers started (stopped at the end whatever happens) and the results."""

    args: argparse.Namespace
    skip: set[str]
    tmp: Path
    res: dict
    pipes: list[Pipeline] = field(default_factory=list)
    broker: str = ""
    registry: Path | None = None
    batches: list[tuple[bytes, bytes]] = field(default_factory=list)
    n_readings: int = 0
    env: dict[str, str] = field(default_factory=dict)  # every worker's settings


def start_broker(run: Run) -> LocalKafka | None:
    """METERWATCH_BROKER's broker, or a private LocalKafka (returned, to stop)."""
    global BROKER_PID
    meta = run.res["meta"]
    broker = os.environ.get("METERWATCH_BROKER", "")
    kafka = None
    if broker:
        meta["broker_kind"] = "external"
        BROKER_PID = run.args.broker_pid
    else:
        from stream.dev.kafka_local import LocalKafka, ensure_kafka

        ensure_kafka()
        kafka = LocalKafka(run.tmp / "kafka")
        kafka.start(timeout=120)
        broker = kafka.bootstrap
        BROKER_PID = kafka.pid
        meta["broker_kind"] = f"LocalKafka (started in {kafka.startup_seconds:.1f}s)"
    meta["broker"] = broker
    run.broker = broker
    log(f"broker {broker}; temp dir {run.tmp}")
    return kafka


def simulate(run: Run) -> None:
    """The registry and the backlog of area batches, and the workers' settings."""
    args = run.args
    sim = FleetSimulator(n_customers=args.customers, n_areas=args.areas, seed=args.seed,
                         start=START, interval_s=INTERVAL_S)
    run.registry = run.tmp / "registry.csv"
    sim.write_registry_csv(run.registry)
    t = time.monotonic()
    run.batches = list(sim.iter_messages(days=args.days))
    run.n_readings = sim.emitted["readings"]
    log(f"simulated {len(run.batches)} messages, {run.n_readings} readings "
        f"({run.n_readings / len(run.batches):.0f}/message) in {time.monotonic() - t:.1f}s")
    run.env = {"METERWATCH_MAX_FUTURE_S": str(10 * 365 * 86400.0)}
    for kv in args.worker_env:
        k, _, v = kv.partition("=")
        if not k.startswith("METERWATCH_") or not _:
            raise SystemExit(f"--worker-env {kv!r}: expected METERWATCH_NAME=VALUE")
        run.env[k] = v


def phase_batched(run: Run) -> Pipeline:
    """A: the backlog of area batches; its topic is published even when A is skipped
    (R and the profile read it)."""
    batches, n_readings, big = run.batches, run.n_readings, run.env
    A = Pipeline(run.broker, run.tmp, "batched", run.registry, **big)
    run.pipes.append(A)
    A.ensure_topics()
    pub = produce(run.broker, A.topics["readings"], batches)
    log(f"A batched: published {len(batches)} messages in {pub:.1f}s; starting worker")
    if "A" in run.skip:
        return A
    # The same backlog through fresh workers (own app id, group and by-area
    # topics) --repeat times; the median run is reported. The co-located
    # broker swings single runs by +-8% (its JIT warms up during the first).
    runs = []
    for k in range(run.args.repeat):
        pipe = A
        if k:
            pipe = Pipeline(run.broker, run.tmp, f"batched{k + 1}", run.registry,
                            readings_topic=A.topics["readings"], **big)
            run.pipes.append(pipe)
            pipe.ensure_topics()
        pipe.start()
        pipe.wait_web()
        r = drain(pipe, n_readings, timeout=600)
        r.update(messages=len(batches), readings=n_readings, publish_seconds=round(pub, 3))
        runs.append(r)
        log(f"A batched run {k + 1}/{run.args.repeat}: {fmt(r.get('readings_per_s'))} readings/s "
            f"over {r.get('window_s')}s; detector "
            f"{fmt(r.get('detector_us_per_reading'), '.2f')} us/reading")
        pipe.stop()
    by_rate = sorted(runs, key=lambda x: x.get("readings_per_s") or 0.0)
    run.res["batched"] = dict(by_rate[len(by_rate) // 2])
    run.res["batched"]["runs_readings_per_s"] = [x.get("readings_per_s") for x in runs]
    return A


def phase_single(run: Run) -> tuple[Pipeline, int]:
    """B: one reading per message; (its pipeline, messages published)."""
    singles = single_messages(run.batches, run.args.single)
    n_single = len(singles)
    B = Pipeline(run.broker, run.tmp, "single", run.registry, **run.env)
    run.pipes.append(B)
    B.ensure_topics()
    pub = produce(run.broker, B.topics["readings"], singles)
    log(f"B single: published {n_single} messages in {pub:.1f}s; starting worker")
    del singles
    if "B" not in run.skip:
        B.start()
        B.wait_web()
        r = drain(B, n_single, timeout=600)
        r.update(messages=n_single, readings=n_single, publish_seconds=round(pub, 3))
        run.res["single"] = r
        log(f"B single: {fmt(r.get('readings_per_s'))} messages/s over {r.get('window_s')}s")
        B.stop()
    return B, n_single


def phase_raw(run: Run, A: Pipeline, B: Pipeline, n_single: int) -> None:
    """R: raw aiokafka baseline over the same topics."""
    res, broker = run.res, run.broker
    res["raw_batched"] = raw(broker, A.topics["readings"], len(run.batches))
    res["raw_batched_decode"] = raw(broker, A.topics["readings"], len(run.batches), decode=True)
    res["raw_single"] = raw(broker, B.topics["readings"], n_single)
    res["raw_single_decode"] = raw(broker, B.topics["readings"], n_single, decode=True)
    for k in ("raw_batched", "raw_batched_decode", "raw_single", "raw_single_decode"):
        log(f"R {k}: {fmt(res[k]['messages_per_s'])} messages/s, "
            f"{fmt(res[k]['readings_per_s'])} readings/s")


def ratios(res: dict) -> dict:
    """Workers against the raw consumer, and single against batched."""
    ra = {}
    # Ratios use the whole pass (first consumed -> last applied): see drain().
    a_r = res.get("batched", {}).get("readings_per_s_whole")
    b_r = res.get("single", {}).get("readings_per_s_whole")
    if a_r and res.get("raw_batched"):
        ra["batched_worker_over_raw"] = a_r / res["raw_batched"]["readings_per_s"]
    if b_r and res.get("raw_single"):
        ra["single_worker_over_raw"] = b_r / res["raw_single"]["messages_per_s"]
    if a_r and b_r:
        ra["single_over_batched"] = b_r / a_r
    return ra


def phase_live(run: Run) -> None:
    """C: live delay."""
    run.res["live"] = live_phase(run.broker, run.tmp, run.args)
    C = run.res["live"]
    log(f"C live: applied p50/p99 {ms(C['produce_to_applied']['p50_s'])}/"
        f"{ms(C['produce_to_applied']['p99_s'])}; alert p50/p99 "
        f"{ms(C['produce_to_alert']['p50_s'])}/{ms(C['produce_to_alert']['p99_s'])} "
        f"(n={C['produce_to_alert']['samples']:.0f})")


def profiles(run: Run, A: Pipeline, B: Pipeline, n_single: int) -> None:
    """Where the worker spends its time, on the topics of A and of B."""
    for key, phase, src, n_msgs, n_read in (("batched", "A", A, len(run.batches), run.n_readings),
                                            ("single", "B", B, n_single, n_single)):
        if phase in run.skip:
            continue
        run.res[f"{key}_profiled"] = profiled_phase(run.broker, run.tmp, run.pipes, run.args,
                                                    key, src, run.registry, run.env, n_msgs,
                                                    n_read)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [PROFILED_WORKER]:
        profiled_worker(argv[1], int(argv[2]), int(argv[3]))
        return 0
    args = parse_args(argv)
    global FULL_SCRAPES
    FULL_SCRAPES = args.full_scrapes
    t_start = time.monotonic()
    run = Run(args=args, skip={s.strip().upper() for s in args.skip.split(",") if s.strip()},
              tmp=Path(tempfile.mkdtemp(prefix="mwbench-")),
              res={"meta": {
                  "started": datetime.now().astimezone().isoformat(timespec="seconds"),
                  "machine": f"{platform.machine()}, {os.cpu_count()} cpu, "
                             f"Python {platform.python_version()}",
                  "args": vars(args)}})
    kafka = None
    try:
        kafka = start_broker(run)
        simulate(run)
        A = phase_batched(run)
        B, n_single = phase_single(run)
        if "R" not in run.skip:
            phase_raw(run, A, B, n_single)
        run.res["ratios"] = ratios(run.res)
        if "C" not in run.skip:
            phase_live(run)
        if args.profile:
            profiles(run, A, B, n_single)
    finally:
        for p in run.pipes:
            p.stop()
        if kafka is not None:
            kafka.stop()
        shutil.rmtree(run.tmp, ignore_errors=True)

    res = run.res
    res["meta"]["seconds"] = round(time.monotonic() - t_start, 1)
    print(summary_table(res))
    print(f"total {res['meta']['seconds']:.0f}s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
