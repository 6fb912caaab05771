"""``meterwatch``: the command line, one argparse tree (see stream/cliparse.py).

    meterwatch [--config FILE] COMMAND ...
    meterwatch demo                 local broker + worker + simulated fleet + live alerts
    meterwatch worker               a Faust worker (broker from METERWATCH_BROKER)
    meterwatch simulate             publish a simulated fleet to ami.readings
    meterwatch replay FILE          publish historic readings (CSV/Parquet) in time order
    meterwatch backtest ...         run the detectors over a file, no Kafka
    meterwatch evaluate ...         measure detection quality (report with plots)
    meterwatch voltage-report ...   voltage compliance per area and period (Markdown/CSV)
    meterwatch kafka start|stop|status   the local single-node KRaft broker
    meterwatch notify [run|check|send-test]   the notifier (stream/notify/cli.py)
    meterwatch console [export-outcomes]      the web console (stream/console/cli.py)
    meterwatch users add|passwd|list|disable|enable   console accounts
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from stream.cliparse import passthrough, root_parser
from stream.console import cli as console_cli
from stream.kafka_admin import ensure_topics  # noqa: F401  (the commands' helper, re-exported)
from stream.notify import cli as notify_cli
from stream.settings import PROJECT_ROOT, Settings, SettingsError, load_settings


def _settings(args, **over) -> Settings:
    try:
        return load_settings(config_file=getattr(args, "config", None), **over)
    except SettingsError as e:
        sys.exit(f"meterwatch: configuration error: {e}")


# -- worker --------------------------------------------------------------------------------
def cmd_worker(args) -> None:
    from faust.worker import Worker

    from stream.worker.build import build

    s = _settings(args, registry=args.registry, broker=args.broker,
                  web_port=args.web_port)
    asyncio.run(ensure_topics(s))
    rt = build(s, worker_id=args.worker_id or f"w{s.web_port}")
    worker = Worker(rt.app, loglevel=s.log_level, quiet=True, redirect_stdouts=False)
    # Faust's spinner sets the root logger to DEBUG whatever the level asked for, and
    # every debug call in faust/mode/aiokafka then builds a record (~3% of CPU).
    worker.spinner = None
    # What exists now (registry, fleet index, engine, app) lives as long as the process:
    # frozen, the collector stops re-scanning it. A poll allocates thousands of
    # short-lived objects, so young collections run every 10,000 allocations rather
    # than 700. In-process ingest+process over a simulated day: GC time 0.9-1.4 s ->
    # 0.3-0.7 s.
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    worker.execute_from_commandline()


# -- simulate --------------------------------------------------------------------------------
# The weather topic `simulate --weather` and the demo use when none is configured.
DEMO_WEATHER_TOPIC = "ami.weather"

def _simulator(args, start: datetime):
    from models.evaluate.sim import FleetSimulator

    sim = FleetSimulator(n_customers=args.customers, n_areas=args.areas, seed=args.seed,
                         start=start, interval_s=args.interval, bad_rate=args.bad_rate)
    if args.scenario_rate > 0:
        # Anomalies judged against learnt habits start once the habits are learnt: one
        # injected before then is a miss by design, not a finding about the detectors.
        from models.config import HabitConfig

        sim.random_scenario(rate=args.scenario_rate, days=max(int(args.days), 1),
                            warmup_days=HabitConfig().min_days + 1)
    return sim


async def publish(settings: Settings, messages, *, rate: float | None = None,
                  progress=None) -> int:
    """Send (key, value) pairs to the readings topic, at most ``rate`` messages/s;
    (kind, key, value) triples of kind ``"weather"`` go to the weather topic (not
    counted in the rate: the pace is the readings')."""
    from aiokafka import AIOKafkaProducer

    from stream.app import MAX_MESSAGE_BYTES

    producer = AIOKafkaProducer(bootstrap_servers=settings.broker, linger_ms=5,
                                max_request_size=MAX_MESSAGE_BYTES, acks="all")
    await producer.start()
    n = 0
    t0 = time.monotonic()
    try:
        pending = []
        for item in messages:
            if len(item) == 3 and item[0] == "weather":
                pending.append(await producer.send(settings.weather_topic, value=item[2],
                                                   key=item[1]))
                continue
            key, value = item[-2:]
            pending.append(await producer.send(settings.readings_topic, value=value, key=key))
            n += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
            if progress:
                progress(1)
            if rate:
                ahead = n / rate - (time.monotonic() - t0)
                if ahead > 0.005:
                    await asyncio.sleep(ahead)
        if pending:
            await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return n


def cmd_simulate(args) -> None:
    s = _settings(args, broker=args.broker)
    if not s.broker:
        sys.exit("meterwatch simulate: no broker (set METERWATCH_BROKER or --broker)")
    start = _sim_start(args)
    sim = _simulator(args, start)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sim.write_registry_csv(out / "registry.csv")
    rate = None
    if args.speed > 0:
        per_interval = args.areas
        rate = per_interval * args.speed / args.interval
    if args.weather and not s.weather_topic:
        s = _settings(args, broker=args.broker, weather_topic=DEMO_WEATHER_TOPIC)
    asyncio.run(ensure_topics(s))
    msgs = sim.iter_feed(days=args.days) if args.weather else sim.iter_messages(days=args.days)
    n = asyncio.run(publish(s, msgs, rate=rate))
    sim.write_ground_truth(out / "ground_truth.jsonl")
    print(f"published {n} messages ({sim.emitted.get('readings', 0)} readings) to "
          f"{s.readings_topic}; registry and ground truth in {out}"
          + (f"; hourly temperature per area to {s.weather_topic}" if args.weather else ""))


def _sim_start(args) -> datetime:
    if getattr(args, "start", None):
        return datetime.fromisoformat(args.start)
    # Simulated time must not run ahead of the wall clock (future readings are rejected):
    # start far enough back that the whole run ends before now.
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    start = now - timedelta(days=args.days)
    return start.replace(hour=0, minute=0, second=0, microsecond=0)


# -- replay --------------------------------------------------------------------------------
def replay_messages(df, registry, batch_size: int = 500):
    """Concentrator-like batches: per interval, per area, time order."""
    import msgspec

    enc = msgspec.json.encode
    area_of = {m: registry.fleet.area_id[registry.fleet.area[i]]
               for m, i in registry.fleet.index.items()}
    cols = [c for c in ("kwh", "kwh_export", "register_kwh", "voltage", "voltage_min",
                        "voltage_max", "current", "neutral_current", "power_factor")
            if c in df.columns]
    df = df.assign(area_id=df["meter_id"].map(area_of).fillna("?"))
    for (ts, area), g in df.groupby(["ts", "area_id"], sort=True):
        recs = []
        for row in g.itertuples(index=False):
            r = {"meter_id": row.meter_id, "ts": int(ts), "interval_s": int(row.interval_s)}
            for c in cols:
                v = getattr(row, c)
                if v == v:  # not NaN
                    r[c] = float(v)
            if "events" in g.columns and isinstance(row.events, str) and row.events:
                r["events"] = row.events.split("|")
            recs.append(r)
        for k in range(0, len(recs), batch_size):
            yield area.encode(), enc({"area_id": area, "readings": recs[k:k + batch_size]})


def cmd_replay(args) -> None:
    from tqdm import tqdm

    from models.backtest import load_readings
    from stream.registry import Registry

    s = _settings(args, broker=args.broker, registry=args.registry)
    if not s.broker or not s.registry:
        sys.exit("meterwatch replay: needs a broker and a registry (METERWATCH_BROKER, "
                 "METERWATCH_REGISTRY or --broker/--registry)")
    try:
        df = load_readings(args.file, tz=args.tz, ts_mark=args.ts_mark)
    except ValueError as e:
        sys.exit(f"meterwatch replay: {e}")
    reg = Registry.load(s.registry)
    asyncio.run(ensure_topics(s))
    with tqdm(total=len(df), unit="reading",
              disable=args.quiet) as bar:
        def counting():
            for key, value in replay_messages(df, reg):
                yield key, value
                bar.update(value.count(b'"meter_id"'))
        n = asyncio.run(publish(s, counting(), rate=args.rate or None))
    print(f"replayed {len(df)} readings in {n} messages")


# -- backtest / evaluate ------------------------------------------------------------------
def cmd_backtest(args) -> None:
    import msgspec

    from models.backtest import load_readings, load_weather, run, synthetic_fleet
    from models.config import ConfigError, load_config
    from stream.registry import Registry, RegistryError

    s = _settings(args)
    try:
        cfg = load_config(args.detectors or s.detectors_config or None)
        df = load_readings(args.readings, tz=args.tz, ts_mark=args.ts_mark)
        fleet = (Registry.load(args.registry).fleet if args.registry
                 else synthetic_fleet(df["meter_id"].unique()))
        weather = load_weather(args.weather, fleet, tz=args.tz) if args.weather else None
    except (ConfigError, RegistryError, ValueError) as e:
        sys.exit(f"meterwatch backtest: {e}")
    tz = args.local_tz or args.tz or s.timezone
    res = run(df, fleet, config=cfg, tz=tz, country=args.country or s.holidays_country or None,
              voltage_standard=args.standard or s.voltage_standard, weather=weather,
              partitions=s.topic_partitions)  # the stream's theft model shards
    from models.alerts import enc_hook

    enc = msgspec.json.Encoder(enc_hook=enc_hook)
    with open(args.out, "wb") as f:
        for a in res.alerts:
            f.write(enc.encode(a) + b"\n")
    print(f"{res.readings} readings, {res.applied} applied, {len(res.alerts)} alert messages "
          f"-> {args.out} in {res.seconds:.1f} s ({res.readings / max(res.seconds, 1e-9):,.0f} "
          f"readings/s; state {res.state_bytes} B/meter)")


def run_evaluate(argv: list[str]) -> int:
    from models import evaluate

    return evaluate.main(argv)


def run_voltage_report(argv: list[str]) -> int:
    from models import voltage_report

    return voltage_report.main(argv)


# -- kafka -----------------------------------------------------------------------------------
def run_kafka(argv: list[str]) -> int:
    from stream import kafka_local

    return kafka_local.main(argv)


# -- demo ------------------------------------------------------------------------------------
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
    s = _settings(args)
    data = Path(s.data_dir) / "demo"
    data.mkdir(parents=True, exist_ok=True)
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
        start = _sim_start(args)
        sim = _simulator(args, start)
        sim.write_registry_csv(data / "registry.csv")
        weather = {"weather_topic": (s.weather_topic or DEMO_WEATHER_TOPIC) if args.weather else ""}
        env = dict(os.environ, METERWATCH_BROKER=broker, METERWATCH_REGISTRY=str(data / "registry.csv"),
                   METERWATCH_WEB_PORT=str(s.web_port), METERWATCH_DATA_DIR=str(data),
                   METERWATCH_LOG_LEVEL="warning",
                   METERWATCH_WEATHER_TOPIC=weather["weather_topic"])
        s2 = _settings(args, broker=broker, registry=str(data / "registry.csv"), **weather)
        asyncio.run(ensure_topics(s2))
        # Ctrl-C reaches only this process (the worker and the broker are in their own
        # process groups): the worker is stopped first, then the broker, so the worker
        # does not spend its shutdown on a broker that is already gone. Both still die
        # with this process if it is killed.
        procs.append(_start_worker(args, env))
        _demo_banner(args, s, broker, data)
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
    from stream.kafka_local import LocalKafka, ensure_kafka

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


def _demo_banner(args, s: Settings, broker: str, data: Path) -> None:
    ending = ("when the simulation has been published and the worker has caught up, the "
              "alerts are scored against the ground truth; the worker then keeps running "
              "until Ctrl-C" if args.keep_running else
              "when the simulation has been published and the worker has caught up, the "
              "alerts are scored against the ground truth and everything stops; Ctrl-C "
              "stops (and scores) earlier")
    print(f"""
meterwatch demo
  broker          {broker}
  worker metrics  http://{s.web_host}:{s.web_port}/metrics
  registry        {data / 'registry.csv'}  ({args.customers} customers, {args.areas} areas)
  ground truth    {data / 'ground_truth.jsonl'} (written when the simulation ends)
  simulating {args.days:g} days at {args.speed:g}x ({args.speed / 86400:.2f} days/s); alerts below.
  {ending}.
""", flush=True)


def _start_worker(args, env: dict[str, str]) -> subprocess.Popen:
    """The demo's worker, in its own process group, dying with this process."""
    from stream.kafka_local import die_with_parent

    config = ["--config", args.config] if args.config else []
    return subprocess.Popen([sys.executable, "-m", "stream.cli", *config, "worker"], env=env,
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
    import logging

    tps = await _partitions(admin, topic)
    consumer.assign(tps)
    # Just created, a partition's leader may still be loading: aiokafka retries the
    # offset request, logging each refusal as an error the user need not see.
    fetcher_log = logging.getLogger("aiokafka.consumer.fetcher")
    level = fetcher_log.level
    fetcher_log.setLevel(logging.CRITICAL)
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        fetcher_log.setLevel(level)
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
    ingest_group = f"{s.app_id}-ingest" if s.ingest == "direct" else s.app_id
    for topic, group in ((s.readings_topic, ingest_group), (s.by_area_topic, s.app_id)):
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
    from stream.demo_score import report, score_demo, simulation_input

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

    s = _settings(args)
    cfg = load_config(s.detectors_config or None)
    return cfg.replace(voltage={"standard": s.voltage_standard}) if s.voltage_standard else cfg


# -- parser ----------------------------------------------------------------------------------
def _sim_args(sp, customers=200, areas=10, days=30.0, speed=86400.0,
              weather: bool = True) -> None:
    sp.add_argument("--customers", type=int, default=customers)
    sp.add_argument("--areas", type=int, default=areas)
    sp.add_argument("--days", type=float, default=days)
    sp.add_argument("--interval", type=int, default=900)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--speed", type=float, default=speed,
                    help="simulated seconds per wall second (86400 = a day per second; "
                         "0 = as fast as possible)")
    sp.add_argument("--bad-rate", type=float, default=0.001)
    sp.add_argument("--scenario-rate", type=float, default=0.05,
                    help="share of customers given an injected anomaly")
    sp.add_argument("--start", help="first interval (ISO 8601); default: days before now")
    sp.add_argument("--weather", action=argparse.BooleanOptionalAction, default=weather,
                    help="also publish the hourly temperature per area the simulation "
                         f"used (METERWATCH_WEATHER_TOPIC, else {DEMO_WEATHER_TOPIC})")


def _run_core(args) -> None:
    # looked up when called (not bound at parser build), so a caller may replace one
    {"demo": cmd_demo, "worker": cmd_worker, "simulate": cmd_simulate, "replay": cmd_replay,
     "backtest": cmd_backtest}[args.cmd](args)


def _add_pipeline(sub) -> None:
    d = sub.add_parser("demo", help="local broker, worker, simulated fleet, live alerts, "
                       "scored against the ground truth")
    _sim_args(d)
    d.add_argument("--keep-running", action="store_true",
                   help="after the score, keep the worker running until Ctrl-C")
    w = sub.add_parser("worker", help="run a Faust worker")
    w.add_argument("--broker")
    w.add_argument("--registry")
    w.add_argument("--web-port", type=int)
    w.add_argument("--worker-id")
    sm = sub.add_parser("simulate", help="publish a simulated fleet")
    _sim_args(sm, speed=0.0, weather=False)
    sm.add_argument("--broker")
    sm.add_argument("--out", default=str(PROJECT_ROOT / ".data" / "sim"))
    r = sub.add_parser("replay", help="publish historic readings in time order")
    r.add_argument("file")
    r.add_argument("--tz", help="zone of timestamps that have none (e.g. UTC, Europe/London)")
    r.add_argument("--ts-mark", choices=("start", "end"), default="end")
    r.add_argument("--registry")
    r.add_argument("--broker")
    r.add_argument("--rate", type=float, default=0, help="max messages/s (0 = unthrottled)")
    r.add_argument("--quiet", action="store_true")
    for p in (d, w, sm, r):
        p.set_defaults(func=_run_core)


def _add_backtest(sub) -> None:
    b = sub.add_parser("backtest", help="run the detectors over a file, no Kafka")
    b.add_argument("--readings", required=True)
    b.add_argument("--registry", help="registry CSV (default: one synthetic customer per meter)")
    b.add_argument("--out", required=True)
    b.add_argument("--detectors", help="detector thresholds TOML (config/detectors.toml)")
    b.add_argument("--tz", help="zone of timestamps that have none (e.g. UTC)")
    b.add_argument("--local-tz", help="the customers' zone for days and holidays "
                   "(default: --tz, else the METERWATCH_TIMEZONE setting)")
    b.add_argument("--country")
    b.add_argument("--standard")
    b.add_argument("--ts-mark", choices=("start", "end"), default="end")
    b.add_argument("--weather", help="hourly temperature per area, CSV: area_id, ts, "
                   "temperature_c (what a worker reads from METERWATCH_WEATHER_TOPIC)")
    b.set_defaults(func=_run_core)


def add_parser(sub) -> None:
    """The pipeline's commands; evaluate and kafka parse their own arguments."""
    _add_pipeline(sub)
    _add_backtest(sub)
    passthrough(sub, "evaluate", "measure detection quality (see `meterwatch evaluate -h`)",
                lambda argv: run_evaluate(argv))
    passthrough(sub, "voltage-report", "voltage compliance per area and period of the "
                "standard, Markdown or CSV (see `meterwatch voltage-report -h`)",
                lambda argv: run_voltage_report(argv))
    passthrough(sub, "kafka", "local broker: start|stop|status|fetch "
                "(see `meterwatch kafka -h`)", lambda argv: run_kafka(argv))


def build_parser() -> argparse.ArgumentParser:
    """The whole tree: every service registers its commands."""
    p, sub = root_parser()
    for register in (add_parser, notify_cli.add_parser, console_cli.add_parser):
        register(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    args.func(args)


if __name__ == "__main__":
    main()
