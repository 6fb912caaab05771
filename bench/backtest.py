#!/usr/bin/env python
"""``meterwatch backtest`` end to end on a year of 200 half-hourly meters (~3.5M readings).

    .venv/bin/python bench/backtest.py            # CSV and Parquet, ~1-2 min
    .venv/bin/python bench/backtest.py --copies 8 # 400 meters

The input is the 50 London households of ``../shared/data/london_lcl/`` (2013), each
copied ``--copies`` times (4 = 200 meters) under new meter ids with its readings scaled
by a per-copy factor, so the copies are not identical. It is written in the reading
format to a temporary CSV and Parquet file, and the CLI is run on each in a subprocess:
the wall time includes Python start-up, reading and parsing the file, the detectors
and writing the alerts. Prints readings/s and the split that the backtest itself
reports; writes ``out/bench/backtest.json``.

The issue's target: "well under a minute". No assertion: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
LCL = ROOT.parent / "shared" / "data" / "london_lcl" / "lcl_50_households_2013.csv.gz"


def build(copies: int, out_dir: Path) -> tuple[Path, Path, int, int]:
    raw = pd.read_csv(LCL)
    cols = {c.lower(): c for c in raw.columns}
    # The shared file is already in the reading format (meter_id, ts, kwh), stamped at
    # the start of each half hour in UK local time.
    df = raw.rename(columns={cols.get("meter_id", "meter_id"): "meter_id"})
    rng = np.random.default_rng(0)
    parts = []
    for k in range(copies):
        f = rng.uniform(0.8, 1.25, df["meter_id"].nunique())
        scale = dict(zip(sorted(df["meter_id"].unique()), f))
        parts.append(df.assign(meter_id=df["meter_id"] + f"-{k}",
                               kwh=df["kwh"] * df["meter_id"].map(scale)))
    big = pd.concat(parts, ignore_index=True)
    csv, pq = out_dir / "readings.csv", out_dir / "readings.parquet"
    big.to_csv(csv, index=False)
    big.to_parquet(pq, index=False)
    return csv, pq, len(big), big["meter_id"].nunique()


def run_cli(path: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "stream.cli", "backtest", "--readings", str(path),
           "--out", str(out), "--tz", "UTC", "--local-tz", "Europe/London", "--country", "GB", "--ts-mark", "start"]
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"backtest failed ({p.returncode}):\n{p.stderr[-3000:]}")
    alerts = sum(1 for _ in out.open())
    return {"wall_s": round(wall, 2), "alerts": alerts, "stderr_tail": p.stderr.strip()[-400:]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "out" / "bench" / "backtest.json"))
    a = ap.parse_args(argv)
    if not LCL.exists():
        raise SystemExit(f"{LCL} not found: the bench needs ../shared/ beside the project")
    with tempfile.TemporaryDirectory(prefix="mwbt-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        csv, pq, n, meters = build(a.copies, tmp)
        prep = time.perf_counter() - t
        res = {"meters": meters, "readings": n, "prepare_s": round(prep, 1),
               "csv_mb": round(csv.stat().st_size / 1e6, 1),
               "parquet_mb": round(pq.stat().st_size / 1e6, 1)}
        for kind, path in (("csv", csv), ("parquet", pq)):
            r = run_cli(path, tmp / f"alerts-{kind}.jsonl")
            r["readings_per_s"] = round(n / r["wall_s"])
            res[kind] = r
        same = (tmp / "alerts-csv.jsonl").read_bytes() == (tmp / "alerts-parquet.jsonl").read_bytes()
        res["csv_and_parquet_alerts_identical"] = same
    print(f"backtest CLI, {meters} meters, {n:,} readings (a year, half-hourly):")
    for kind in ("csv", "parquet"):
        r = res[kind]
        print(f"  {kind:8s} {res[kind + '_mb'] if kind == 'csv' else res['parquet_mb']:6.1f} MB: "
              f"{r['wall_s']:6.1f} s wall = {r['readings_per_s']:,} readings/s, {r['alerts']} alert messages")
    print(f"  same alerts from both files: {same}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
