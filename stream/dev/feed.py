"""Readings onto the broker for ``simulate``, ``replay`` and the demo: a simulated fleet
or a file of historic readings, published in time order at a chosen rate."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

from stream.settings import Settings

# The weather topic `simulate --weather` and the demo use when none is configured.
DEMO_WEATHER_TOPIC = "ami.weather"


def simulator(args, start: datetime):
    """The fleet simulator ``args`` (see stream/dev/cli.py's ``sim_args``) describe."""
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


def sim_start(args) -> datetime:
    if getattr(args, "start", None):
        return datetime.fromisoformat(args.start)
    # Simulated time must not run ahead of the wall clock (future readings are rejected):
    # start far enough back that the whole run ends before now.
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    start = now - timedelta(days=args.days)
    return start.replace(hour=0, minute=0, second=0, microsecond=0)


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
