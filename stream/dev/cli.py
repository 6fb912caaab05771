"""The development tools' commands on ``meterwatch``'s tree.

    meterwatch demo                 local broker + worker + simulated fleet + live alerts
    meterwatch simulate             publish a simulated fleet to ami.readings
    meterwatch replay FILE          publish historic readings (CSV/Parquet) in time order
    meterwatch kafka start|stop|status|fetch   the local single-node KRaft broker
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from stream.cliparse import passthrough, settings
from stream.dev import demo
from stream.dev.feed import DEMO_WEATHER_TOPIC, publish, replay_messages, sim_start, simulator
from stream.kafka_admin import ensure_topics
from stream.settings import PROJECT_ROOT


def cmd_simulate(args) -> None:
    s = settings(args, broker=args.broker)
    if not s.broker:
        sys.exit("meterwatch simulate: no broker (set METERWATCH_BROKER or --broker)")
    sim = simulator(args, sim_start(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sim.write_registry_csv(out / "registry.csv")
    rate = None
    if args.speed > 0:
        per_interval = args.areas
        rate = per_interval * args.speed / args.interval
    if args.weather and not s.weather_topic:
        s = settings(args, broker=args.broker, weather_topic=DEMO_WEATHER_TOPIC)
    asyncio.run(ensure_topics(s))
    msgs = sim.iter_feed(days=args.days) if args.weather else sim.iter_messages(days=args.days)
    n = asyncio.run(publish(s, msgs, rate=rate))
    sim.write_ground_truth(out / "ground_truth.jsonl")
    print(f"published {n} messages ({sim.emitted.get('readings', 0)} readings) to "
          f"{s.readings_topic}; registry and ground truth in {out}"
          + (f"; hourly temperature per area to {s.weather_topic}" if args.weather else ""))


def cmd_replay(args) -> None:
    from tqdm import tqdm

    from models.backtest import load_readings
    from stream.registry import Registry

    s = settings(args, broker=args.broker, registry=args.registry)
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


def run_kafka(argv: list[str]) -> int:
    from stream.dev import kafka_local

    return kafka_local.main(argv)


def sim_args(sp, customers=200, areas=10, days=30.0, speed=86400.0,
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


def _run(args) -> None:
    # looked up when called (not bound at parser build), so a caller may replace one
    {"demo": demo.cmd_demo, "simulate": cmd_simulate, "replay": cmd_replay}[args.cmd](args)


def add_parser(sub) -> None:
    """demo, simulate, replay; kafka parses its own arguments."""
    d = sub.add_parser("demo", help="local broker, worker, simulated fleet, live alerts, "
                       "scored against the ground truth")
    sim_args(d)
    d.add_argument("--keep-running", action="store_true",
                   help="after the score, keep the worker running until Ctrl-C")
    sm = sub.add_parser("simulate", help="publish a simulated fleet")
    sim_args(sm, speed=0.0, weather=False)
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
    for p in (d, sm, r):
        p.set_defaults(func=_run)
    passthrough(sub, "kafka", "local broker: start|stop|status|fetch "
                "(see `meterwatch kafka -h`)", lambda argv: run_kafka(argv))
