"""``meterwatch``: the command line, one argparse tree (see stream/cliparse.py).

    meterwatch [--config FILE] COMMAND ...
    meterwatch demo                 local broker + worker + simulated fleet + live alerts
    meterwatch worker               a Faust worker (broker from METERWATCH_BROKER)
    meterwatch simulate             publish a simulated fleet to ami.readings
    meterwatch replay FILE          publish historic readings (CSV/Parquet) in time order
    meterwatch backtest ...         run the detectors over a file, no Kafka
    meterwatch evaluate ...         measure detection quality (report with plots)
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

    from stream.app import build

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
def _simulator(args, start: datetime):
    from stream.sim import FleetSimulator

    sim = FleetSimulator(n_customers=args.customers, n_areas=args.areas, seed=args.seed,
                         start=start, interval_s=args.interval, bad_rate=args.bad_rate)
    if args.scenario_rate > 0:
        sim.random_scenario(rate=args.scenario_rate, days=max(int(args.days), 1))
    return sim


async def publish(settings: Settings, messages, *, rate: float | None = None,
                  progress=None) -> int:
    """Send (key, value) pairs to the readings topic, at most ``rate`` messages/s."""
    from aiokafka import AIOKafkaProducer

    from stream.app import MAX_MESSAGE_BYTES

    producer = AIOKafkaProducer(bootstrap_servers=settings.broker, linger_ms=5,
                                max_request_size=MAX_MESSAGE_BYTES, acks="all")
    await producer.start()
    n = 0
    t0 = time.monotonic()
    try:
        pending = []
        for key, value in messages:
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
    asyncio.run(ensure_topics(s))
    rate = None
    if args.speed > 0:
        per_interval = args.areas
        rate = per_interval * args.speed / args.interval
    n = asyncio.run(publish(s, sim.iter_messages(days=args.days), rate=rate))
    sim.write_ground_truth(out / "ground_truth.jsonl")
    print(f"published {n} messages ({sim.emitted.get('readings', 0)} readings) to "
          f"{s.readings_topic}; registry and ground truth in {out}")


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
    with tqdm(total=df.groupby(["ts"]).ngroups * 0 + len(df), unit="reading",
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

    from models.backtest import load_readings, run, synthetic_fleet
    from models.config import ConfigError, load_config
    from stream.registry import Registry, RegistryError

    s = _settings(args)
    try:
        cfg = load_config(args.detectors or s.detectors_config or None)
        df = load_readings(args.readings, tz=args.tz, ts_mark=args.ts_mark)
        fleet = (Registry.load(args.registry).fleet if args.registry
                 else synthetic_fleet(df["meter_id"].unique()))
    except (ConfigError, RegistryError, ValueError) as e:
        sys.exit(f"meterwatch backtest: {e}")
    tz = args.local_tz or args.tz or s.timezone
    res = run(df, fleet, config=cfg, tz=tz, country=args.country or s.holidays_country or None,
              voltage_standard=args.standard or s.voltage_standard)
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


# -- kafka -----------------------------------------------------------------------------------
def run_kafka(argv: list[str]) -> int:
    from stream import kafka_local

    return kafka_local.main(argv)


# -- demo ------------------------------------------------------------------------------------
def cmd_demo(args) -> None:
    """Everything on this machine: broker (if none configured), worker, simulator, alerts."""
    from stream.kafka_local import LocalKafka, ensure_kafka

    s = _settings(args)
    data = Path(s.data_dir) / "demo"
    data.mkdir(parents=True, exist_ok=True)
    kafka = None
    procs: list[subprocess.Popen] = []
    broker = s.broker
    try:
        if not broker:
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
            broker = kafka.bootstrap
        args.days = float(args.days)
        start = _sim_start(args)
        sim = _simulator(args, start)
        sim.write_registry_csv(data / "registry.csv")
        env = dict(os.environ, METERWATCH_BROKER=broker, METERWATCH_REGISTRY=str(data / "registry.csv"),
                   METERWATCH_WEB_PORT=str(s.web_port), METERWATCH_DATA_DIR=str(data),
                   METERWATCH_LOG_LEVEL="warning")
        s2 = _settings(args, broker=broker, registry=str(data / "registry.csv"))
        asyncio.run(ensure_topics(s2))
        # Ctrl-C reaches only this process (the worker and the broker are in their own
        # process groups): the worker is stopped first, then the broker, so the worker
        # does not spend its shutdown on a broker that is already gone. Both still die
        # with this process if it is killed.
        procs.append(_start_worker(args, env))
        print(f"""
meterwatch demo
  broker          {broker}
  worker metrics  http://{s.web_host}:{s.web_port}/metrics
  registry        {data / 'registry.csv'}  ({args.customers} customers, {args.areas} areas)
  ground truth    {data / 'ground_truth.jsonl'} (written when the simulation ends)
  simulating {args.days:g} days at {args.speed:g}x ({args.speed / 86400:.2f} days/s); alerts below.
  Ctrl-C stops everything.
""", flush=True)
        asyncio.run(_demo_run(s2, sim, args, data))
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
        print("demo stopped.", flush=True)


def _start_worker(args, env: dict[str, str]) -> subprocess.Popen:
    """The demo's worker, in its own process group, dying with this process."""
    from stream.kafka_local import die_with_parent

    config = ["--config", args.config] if args.config else []
    return subprocess.Popen([sys.executable, "-m", "stream.cli", *config, "worker"], env=env,
                            cwd=PROJECT_ROOT, process_group=0, preexec_fn=die_with_parent)


async def _demo_run(s: Settings, sim, args, data: Path) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(s.alerts_topic, bootstrap_servers=s.broker,
                                auto_offset_reset="latest", group_id=None)
    await consumer.start()
    rate = args.areas * args.speed / args.interval

    async def printer():
        seen = set()
        async for m in consumer:
            a = json.loads(m.value)
            k = (a["id"], a["status"], a["detected_at"])
            if k in seen:
                continue
            seen.add(k)
            who = a["customer_id"] or f"area {a['area_id']}"
            print(f"{a['detected_at'][:16]}  {a['severity']:8s} {a['status']:6s} "
                  f"{a['type']}/{a['subtype']:18s} {who:10s} {a['message']['en']}", flush=True)

    task = asyncio.create_task(printer())
    try:
        await asyncio.sleep(3)
        n = await publish(s, sim.iter_messages(days=args.days), rate=rate)
        sim.write_ground_truth(data / "ground_truth.jsonl")
        print(f"simulation done: {n} messages. Worker keeps running; Ctrl-C to stop.", flush=True)
        await task
    finally:
        task.cancel()
        await consumer.stop()


# -- parser ----------------------------------------------------------------------------------
def _sim_args(sp, customers=200, areas=10, days=30.0, speed=86400.0) -> None:
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


def _run_core(args) -> None:
    # looked up when called (not bound at parser build), so a caller may replace one
    {"demo": cmd_demo, "worker": cmd_worker, "simulate": cmd_simulate, "replay": cmd_replay,
     "backtest": cmd_backtest}[args.cmd](args)


def _add_pipeline(sub) -> None:
    d = sub.add_parser("demo", help="local broker, worker, simulated fleet, live alerts")
    _sim_args(d)
    w = sub.add_parser("worker", help="run a Faust worker")
    w.add_argument("--broker")
    w.add_argument("--registry")
    w.add_argument("--web-port", type=int)
    w.add_argument("--worker-id")
    sm = sub.add_parser("simulate", help="publish a simulated fleet")
    _sim_args(sm, speed=0.0)
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
    b.set_defaults(func=_run_core)


def add_parser(sub) -> None:
    """The pipeline's commands; evaluate and kafka parse their own arguments."""
    _add_pipeline(sub)
    _add_backtest(sub)
    passthrough(sub, "evaluate", "measure detection quality (see `meterwatch evaluate -h`)",
                lambda argv: run_evaluate(argv))
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
