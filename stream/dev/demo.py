"""``meterwatch demo``: everything on this machine, for a first look.

A local broker (unless one is configured), a worker subprocess, a simulated fleet
published at a chosen speed, the alerts printed as they arrive, and at the end their
score against the simulator's ground truth (stream/dev/demo_score.py).
"""

from __future__ import annotations

import asyncio
import json
import logging.config
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from stream import logsplit
from stream.cliparse import settings
from stream.dev.feed import DEMO_WEATHER_TOPIC, publish, sim_start, simulator
from stream.kafka_admin import ensure_topics, pipeline_topics
from stream.settings import PROJECT_ROOT, Settings


@dataclass
class _DemoState:
    """What the demo learns as it runs, for its final score."""

    alerts: list[dict] = field(default_factory=list)  # every alert message received
    read: dict = field(default_factory=dict)  # alerts partition -> next offset handled
    reached: int = 0  # latest reading time published (epoch s)
    published: bool = False  # all days published
    complete: bool = False  # ... and the worker caught up, its alerts all received
    scored: bool = False


def cmd_demo(args) -> None:
    """Everything on this machine: broker (if none configured), worker, simulator, alerts;
    scored against the simulator's ground truth at the end."""
    s = settings(args)
    data = Path(s.data_dir) / "demo"
    data.mkdir(parents=True, exist_ok=True)
    # What the Kafka libraries say while they work (each retry while a fresh broker
    # settles, a warning) means nothing to someone trying the demo: it goes to this
    # file, which the banner names; their errors and this project's warnings still show.
    log_file = data / "demo.log"
    logging.config.dictConfig(logsplit.config(log_file, "INFO", mode="w"))
    kafka = None
    procs: list[subprocess.Popen] = []
    broker = s.broker
    sim = None
    state = _DemoState()
    try:
        if not broker:
            kafka = _start_local_kafka(data)
            broker = kafka.bootstrap
        args.days = float(args.days)
        start = sim_start(args)
        sim = simulator(args, start)
        sim.write_registry_csv(data / "registry.csv")
        weather = {"weather_topic": (s.weather_topic or DEMO_WEATHER_TOPIC) if args.weather else ""}
        s2 = settings(args, broker=broker, registry=str(data / "registry.csv"), **weather)
        asyncio.run(_broker_ready(s2))
        # Ctrl-C reaches only this process (the worker and the broker are in their own
        # process groups): the worker is stopped first, then the broker, so the worker
        # does not spend its shutdown on a broker that is already gone. Both still die
        # with this process if it is killed.
        procs.append(_start_worker(args, _worker_env(s, s2, data), log_file))
        _demo_banner(args, s, broker, data, log_file, kafka)
        asyncio.run(_demo_run(s2, sim, args, data, state, procs[0]))
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if kafka is not None:
            kafka.stop()
        if sim is not None and state.reached and not state.scored:
            _print_score(sim, args, state)  # Ctrl-C: what was received so far
        print("demo stopped.", flush=True)


def _start_local_kafka(data: Path):
    from stream.dev.kafka_local import LocalKafka, ensure_kafka

    print("meterwatch demo: no broker configured; starting the local Kafka "
          "(first run fetches it from Maven Central)...", flush=True)
    ensure_kafka()
    # A fresh broker and worker state each run: the fleet is simulated anew, and a
    # broker restarted on old data keeps the last run's worker in the consumer
    # group until its session expires, holding the new worker back a minute.
    import shutil

    for old in ("kafka", "faust"):
        shutil.rmtree(data / old, ignore_errors=True)
    kafka = LocalKafka(data / "kafka")
    kafka.start(own_group=True)
    return kafka


def _groups(s: Settings) -> tuple[str, str]:
    """The worker's consumer groups: the ingest stage's, the process stage's."""
    return (f"{s.app_id}-ingest" if s.ingest == "direct" else s.app_id), s.app_id


async def _broker_ready(s: Settings) -> None:
    """Create the pipeline's topics, then wait until the broker serves them and the
    worker's groups: a worker (or this process's clients) started earlier would fill
    the log with retries while a fresh broker elects leaders and creates its offsets
    topic."""
    from stream.dev.kafka_local import wait_until_ready

    await ensure_topics(s)
    await wait_until_ready(s.broker, pipeline_topics(s), set(_groups(s)))


def _worker_env(s: Settings, s2: Settings, data: Path) -> dict[str, str]:
    """The worker's settings: the demo's broker, registry, port, data and weather."""
    return dict(os.environ, METERWATCH_BROKER=s2.broker, METERWATCH_REGISTRY=s2.registry,
                METERWATCH_WEB_PORT=str(s.web_port), METERWATCH_DATA_DIR=str(data),
                # info: the log file tells what the worker did (the screen shows warnings)
                METERWATCH_LOG_LEVEL="info", METERWATCH_WEATHER_TOPIC=s2.weather_topic)


def _demo_banner(args, s: Settings, broker: str, data: Path, log_file: Path,
                 kafka) -> None:
    ending = ("when the simulation has been published and the worker has caught up, the "
              "alerts are scored against the ground truth; the worker then keeps running "
              "until Ctrl-C" if args.keep_running else
              "when the simulation has been published and the worker has caught up, the "
              "alerts are scored against the ground truth and everything stops; Ctrl-C "
              "stops (and scores) earlier")
    broker_log = f" (the broker's: {kafka.log_file})" if kafka is not None else ""
    print(f"""
meterwatch demo
  broker          {broker}
  worker metrics  http://{s.web_host}:{s.web_port}/metrics
  registry        {data / 'registry.csv'}  ({args.customers} customers, {args.areas} areas)
  ground truth    {data / 'ground_truth.jsonl'} (written when the simulation ends)
  log             {log_file}{broker_log}
  simulating {args.days:g} days at {args.speed:g}x ({args.speed / 86400:.2f} days/s); alerts below.
  {ending}.
""", flush=True)


def _start_worker(args, env: dict[str, str], log_file: Path) -> subprocess.Popen:
    """The demo's worker, in its own process group, dying with this process."""
    from stream.dev.kafka_local import die_with_parent

    config = ["--config", args.config] if args.config else []
    return subprocess.Popen([sys.executable, "-m", "stream.cli", *config, "worker",
                             "--log-file", str(log_file)], env=env,
                            cwd=PROJECT_ROOT, process_group=0, preexec_fn=die_with_parent)


async def _demo_run(s: Settings, sim, args, data: Path, state: _DemoState,
                    worker: subprocess.Popen) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=s.broker)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=s.broker, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    task = None
    try:
        await _alerts_from_end(admin, consumer, s.alerts_topic, state)
        task = asyncio.create_task(_print_alerts(consumer, state))
        await asyncio.sleep(3)
        rate = args.areas * args.speed / args.interval
        msgs = sim.iter_feed(days=args.days) if args.weather else sim.iter_messages(days=args.days)
        n = await publish(s, _tracking(msgs, state), rate=rate)
        state.published = True
        state.reached = int(sim.start.timestamp() + args.days * 86400)
        sim.write_ground_truth(data / "ground_truth.jsonl")
        print(f"simulation done: {n} messages; waiting for the worker to catch up...", flush=True)
        state.complete = await _caught_up(s, admin, consumer, state, worker)
        _print_score(sim, args, state)
        if args.keep_running:
            print("Worker keeps running; Ctrl-C to stop.", flush=True)
            await task
    finally:
        if task is not None:
            task.cancel()
        await consumer.stop()
        await admin.close()


async def _print_alerts(consumer, state: _DemoState) -> None:
    from aiokafka import TopicPartition

    seen = set()
    async for m in consumer:
        a = json.loads(m.value)
        state.alerts.append(a)
        state.read[TopicPartition(m.topic, m.partition)] = m.offset + 1
        k = (a["id"], a["status"], a["detected_at"])
        if k in seen:
            continue
        seen.add(k)
        who = a["customer_id"] or f"area {a['area_id']}"
        print(f"{a['detected_at'][:16]}  {a['severity']:8s} {a['status']:6s} "
              f"{a['type']}/{a['subtype']:18s} {who:10s} {a['message']['en']}", flush=True)


def _tracking(messages, state: _DemoState):
    """Pass the messages on, noting the simulated time published so far (for a score
    after Ctrl-C): the first reading time of each batch, ignoring the simulator's bad
    input (unparsable, or future times the worker rejects)."""
    for item in messages:
        value = item[-1]
        if len(item) == 3 and item[0] == "weather":
            yield item
            continue
        i = value.find(b'"ts":"')
        if i >= 0:
            try:
                t = int(datetime.fromisoformat(value[i + 6:i + 31].decode()).timestamp())
            except (ValueError, UnicodeDecodeError):
                t = 0
            if state.reached < t <= time.time():
                state.reached = t
        yield item


async def _alerts_from_end(admin, consumer, topic: str, state: _DemoState) -> None:
    """Read the alerts topic from its end as it is now: every alert of this run, none of
    an earlier one."""
    tps = await _partitions(admin, topic)
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    for tp, end in ends.items():
        consumer.seek(tp, end)
        state.read[tp] = end


async def _partitions(admin, topic: str) -> list:
    """The topic's partitions, once each has a leader."""
    from aiokafka import TopicPartition

    for _ in range(100):
        (desc,) = await admin.describe_topics([topic])
        parts = desc["partitions"]
        if parts and all(p["leader"] >= 0 and not p["error_code"] for p in parts):
            break
        await asyncio.sleep(0.1)
    return [TopicPartition(topic, p["partition"]) for p in parts]


async def _caught_up(s: Settings, admin, consumer, state: _DemoState,
                     worker: subprocess.Popen, stall_s: float = 120.0) -> bool:
    """Wait until the worker has handled every published reading and the alerts it raised
    for them have been received; False if it died or stalled for ``stall_s`` first.

    Stage by stage, by the broker's committed offsets: the ingest commits a poll once
    its area batches are acknowledged, and the process stage commits a batch only after
    the alerts it raised are acknowledged, so when its group has committed the by-area
    topic's end, those alerts are on the alerts topic; they are received when this
    consumer has read to that topic's end."""
    ingest_group, process_group = _groups(s)
    for topic, group in ((s.readings_topic, ingest_group), (s.by_area_topic, process_group)):
        end = await consumer.end_offsets(await _partitions(admin, topic))

        async def behind(group=group, end=end) -> int:
            done = await admin.list_consumer_group_offsets(group, partitions=list(end))
            # -1: nothing committed (yet, or ever on an empty partition)
            return sum(max(0, e - max(0, done[tp].offset if tp in done else 0))
                       for tp, e in end.items())
        if not await _wait_down(behind, worker, stall_s):
            return False
    end = await consumer.end_offsets(list(state.read))

    async def unread() -> int:
        return sum(max(0, e - state.read.get(tp, 0)) for tp, e in end.items())
    return await _wait_down(unread, worker, stall_s)


async def _wait_down(count, worker: subprocess.Popen, stall_s: float) -> bool:
    """Poll ``count()`` until it is 0 (True); False if the worker exits, or the count
    does not fall for ``stall_s`` seconds."""
    best, since = None, time.monotonic()
    while True:
        n = await count()
        if n == 0:
            return True
        if worker.poll() is not None:
            print(f"meterwatch demo: the worker exited ({worker.returncode}) before catching up",
                  flush=True)
            return False
        if best is None or n < best:
            best, since = n, time.monotonic()
        elif time.monotonic() - since > stall_s:
            print(f"meterwatch demo: the worker made no progress for {stall_s:.0f} s "
                  f"({n} messages behind); scoring what arrived", flush=True)
            return False
        await asyncio.sleep(0.5)


def _print_score(sim, args, state: _DemoState) -> None:
    from stream.dev.demo_score import report, score_demo, simulation_input

    state.scored = True
    until = None if state.published else state.reached
    inp = simulation_input(sim, args.days, until=until)
    cfg = _demo_detectors(args)
    sc = score_demo(state.alerts, inp, config=cfg, complete=state.complete, tz=sim.tz)
    print(report(sc), flush=True)


def _demo_detectors(args):
    """The worker's detector configuration (its voltage limits decide which injected
    voltage events are beyond the standard)."""
    from models.config import load_config

    s = settings(args)
    cfg = load_config(s.detectors_config or None)
    return cfg.replace(voltage={"standard": s.voltage_standard}) if s.voltage_standard else cfg
