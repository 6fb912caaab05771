"""`meterwatch replay` publishes historic readings like concentrators do: in time order,
one batch per transformer area per interval, every reading once, zone-less timestamps
read in the zone given."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaConsumer

ROOT = Path(__file__).resolve().parents[2]
LCL = ROOT.parent / "shared" / "data" / "london_lcl" / "lcl_50_households_2013.csv.gz"
pytestmark = [pytest.mark.kafka]


def _subset(path: Path, meters: int = 6, rows_per_meter: int = 96) -> list[str]:
    """The first two days of a few real London households (zone-less GMT times)."""
    out, seen = [], {}
    with gzip.open(LCL, "rt") as f:
        out.append(next(f))
        for line in f:
            m = line.split(",", 1)[0]
            if m not in seen and len(seen) >= meters:
                continue
            seen[m] = seen.get(m, 0) + 1
            if seen[m] <= rows_per_meter:
                out.append(line)
    path.write_text("".join(out))
    return sorted(seen)


def test_replay_publishes_every_reading_once_in_time_order_batched_per_area(
        kafka_bootstrap, tmp_path):
    csv = tmp_path / "readings.csv"
    meters = _subset(csv)
    reg = tmp_path / "registry.csv"
    lines = ["meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar,care"]
    for i, m in enumerate(meters):
        lines.append(f"{m},C{i},{'A1' if i % 2 else 'A2'},A,230,mgr1,residential,false,false")
    reg.write_text("\n".join(lines) + "\n")
    topic = f"readings-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
    env.update(METERWATCH_READINGS_TOPIC=topic)
    r = subprocess.run([sys.executable, "-m", "stream.cli", "replay", str(csv), "--tz",
                        "UTC", "--ts-mark", "start", "--registry", str(reg),
                        "--broker", kafka_bootstrap, "--quiet"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    n_rows = len(csv.read_text().splitlines()) - 1
    assert f"replayed {n_rows} readings" in r.stdout

    async def read_all():
        c = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", group_id=None)
        await c.start()
        out = []
        try:
            while True:
                batch = await c.getmany(timeout_ms=3000)
                if not batch:
                    return out
                for msgs in batch.values():
                    out.extend(msgs)
        finally:
            await c.stop()

    msgs = asyncio.run(read_all())
    seen = []
    for m in msgs:
        body = json.loads(m.value)
        area = body["area_id"]
        assert m.key == area.encode()  # keyed by area, like a concentrator's upload
        ts = {x["ts"] for x in body["readings"]}
        assert len(ts) == 1  # one interval per batch
        for x in body["readings"]:
            assert ("A1" if meters.index(x["meter_id"]) % 2 else "A2") == area
            seen.append((x["meter_id"], x["ts"], x["kwh"], m.partition, m.offset))
    assert len(seen) == n_rows == len({(s[0], s[1]) for s in seen})  # every reading once
    # Time order within each area's partition (the order detectors need).
    by_part: dict[int, list[tuple[int, int]]] = {}
    for mid, ts, _, p, off in seen:
        by_part.setdefault(p, []).append((off, ts))
    for rows in by_part.values():
        ts_in_offset_order = [t for _, t in sorted(rows)]
        assert ts_in_offset_order == sorted(ts_in_offset_order)
    # Zone-less GMT times, interval starts: 00:00-00:30 ends at 00:30.
    first = min(s[1] for s in seen)
    assert datetime.fromtimestamp(first, ZoneInfo("UTC")).strftime("%H:%M") == "00:30"
    # The real energy values arrive unchanged.
    src = {(l.split(",")[0], l.split(",")[1]): float(l.split(",")[2])
           for l in csv.read_text().splitlines()[1:]}
    tz = ZoneInfo("UTC")
    for mid, ts, kwh, *_ in seen[:50]:
        start = datetime.fromtimestamp(ts - 1800, tz).strftime("%Y-%m-%dT%H:%M:%S")
        assert kwh == src[(mid, start)]
