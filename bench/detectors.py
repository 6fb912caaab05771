"""Detector cost and state size at fleet scale, without Kafka.

Feeds a simulated fleet to the engine the way the stream does (one transformer area's
interval per call) and the way the backtest does (one timestamp of the fleet per call),
and prints microseconds per reading and bytes of state per meter.

    python bench/detectors.py [--meters 100000] [--area-size 250] [--days 2]

Figures are wall-clock on a shared machine: compare the two modes of one run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from models.base import READING_DTYPE, Fleet
from models.config import load_config
from models.engine import Engine

ROOT = Path(__file__).resolve().parent.parent


def synthetic_columns(fleet: Fleet, ts: int, rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
    """One interval of plausible readings (energy, voltage, current, pf) for ``rows``."""
    n = len(rows)
    c = np.zeros(n, READING_DTYPE)
    hour = (ts // 3600) % 24
    level = 0.3 + 0.7 * (7 <= hour <= 22)
    kwh = rng.gamma(2.0, 0.08 * level, n)
    v = 220 + rng.normal(0, 2.5, n)
    pf = rng.uniform(0.88, 0.99, n)
    c["ts"], c["interval_s"], c["kwh"] = ts, 900, kwh
    c["voltage"], c["voltage_min"], c["voltage_max"] = v, v - 3, v + 3
    c["current"] = kwh * 4 / (v * pf) * 1000
    c["neutral_current"] = c["current"]
    c["power_factor"] = pf
    c["register_kwh"] = 1000.0 + ts / 1e5
    c["kwh_export"] = np.nan
    return c


def _time_detectors(eng: Engine) -> dict[str, float]:
    """Seconds each detector's ``step`` takes, accumulated while the bench runs (the
    stream-shaped pass only: the dict is read before the fleet-shaped one)."""
    spent: dict[str, float] = {}
    for d in eng.detectors:
        name = type(d).__name__
        spent[name] = 0.0

        def timed(*args, _step=d.step, _name=name):
            t = time.perf_counter()
            _step(*args)
            spent[_name] += time.perf_counter() - t
        d.step = timed
    return spent


def _learned(st: np.ndarray, rows: np.ndarray, days: int, ast: np.ndarray | None = None) -> None:
    """Mark meters (initialised by their first reading) as having ``days`` of history,
    and their area's loss balance as learned (so the area-loss hook scores)."""
    st["h_ndays"][rows] = (days - days // 2, days // 2)
    if "t_ln" in st.dtype.names:
        st["t_ln"][rows] = days
    if ast is not None:
        ast["al_ndays"] = days
        ast["al_tech"][:, 0] = np.maximum(ast["al_tech"][:, 0], 1.0)


def _with_area_meters(fleet: Fleet, area_rows: list[np.ndarray]) -> None:
    """The last meter of each area becomes its area meter."""
    fleet.is_area_meter[[rows[-1] for rows in area_rows]] = True


def _stream_pass(eng: Engine, fleet: Fleet, area_rows, intervals: int, seed: int,
                 history_days: int) -> tuple[float, int, int]:
    """Per interval, per area, one engine call with that area's state (an area meter's
    reading is the area's customers' sum plus 3 %). (engine s, readings, findings)."""
    st_all = eng.new_state(len(fleet))
    ast_all = eng.new_area_state(len(area_rows))
    rng = np.random.default_rng(seed)
    t0_ts = 1_767_196_800 + 900  # 2026-01-01 00:15 +08:00 (end of the first interval)
    t_engine, n, findings = 0.0, 0, 0
    for i in range(intervals):
        ts = t0_ts + i * 900
        for k, rows in enumerate(area_rows):
            cols = synthetic_columns(fleet, ts, rng, rows)
            tx = fleet.is_area_meter[rows]
            if tx.any():
                cols["kwh"][tx] = cols["kwh"][~tx].sum() * 1.03 / tx.sum()
            st = st_all[rows]
            ast = ast_all[k:k + 1]
            t = time.perf_counter()
            out = eng.process(rows, cols, st, ast, rows, np.array([k]))
            t_engine += time.perf_counter() - t
            st_all[rows] = st
            ast_all[k:k + 1] = ast
            if i == 0 and history_days:
                _learned(st_all, rows, history_days, ast_all[k:k + 1])
            n += len(rows)
            findings += len(out.findings)
    return t_engine, n, findings


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", type=int, default=100_000)
    ap.add_argument("--area-size", type=int, default=250)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--out", default=str(ROOT / "out" / "bench" / "detectors.json"))
    ap.add_argument("--config", help="detector thresholds TOML (e.g. [theft] model = true)")
    ap.add_argument("--history-days", type=int, default=0,
                    help="start every meter as if it had this many days learned, so the "
                         "day closes run the habit and theft checks as in steady state")
    ap.add_argument("--area-meters", action="store_true",
                    help="each area's last meter is its area meter; the area step is timed "
                         "twice, without and with the area-loss ranking hook")
    a = ap.parse_args(argv)
    n_areas = max(1, a.meters // a.area_size)
    fleet = Fleet.simple(a.meters, areas=n_areas)
    # Contiguous areas, as a registry lists them.
    fleet.area = (np.arange(a.meters) // a.area_size).clip(max=n_areas - 1).astype(np.int32)
    intervals = int(a.days * 96)
    area_rows = [np.flatnonzero(fleet.area == k) for k in range(n_areas)]
    if a.area_meters:
        _with_area_meters(fleet, area_rows)
    eng = Engine(fleet, load_config(a.config) if a.config else None)
    spent = _time_detectors(eng)
    hook = {}
    if a.area_meters:
        # The same readings without the hook first: the area step's cost before/after.
        eng.area.live_rank = False
        _t, n0, _f = _stream_pass(eng, fleet, area_rows, intervals, 0, a.history_days)
        hook["off"] = spent["AreaDetector"] / n0 * 1e6
        eng.area.live_rank = True
        for k in spent:
            spent[k] = 0.0
    wall0 = time.perf_counter()
    # Stream-shaped: per interval, per area, one engine call with that area's state.
    t_engine, n, findings = _stream_pass(eng, fleet, area_rows, intervals, 0, a.history_days)
    wall = time.perf_counter() - wall0
    if a.area_meters:
        hook["on"] = spent["AreaDetector"] / n * 1e6
    rng = np.random.default_rng(1)
    t0_ts = 1_767_196_800 + 900
    per_area = t_engine / n * 1e6
    shares = {k: round(v / n * 1e6, 3) for k, v in spent.items()}

    # Backtest-shaped: one call per timestamp for the whole fleet (state gathered once).
    st2 = eng.new_state(a.meters)
    ast2 = eng.new_area_state(n_areas)
    all_rows = np.arange(a.meters)
    areas = np.arange(n_areas)
    t_fleet = 0.0
    n2 = 0
    for i in range(min(intervals, 48)):
        ts = t0_ts + i * 900
        cols = synthetic_columns(fleet, ts, rng, all_rows)
        t = time.perf_counter()
        eng.process(all_rows, cols, st2, ast2, all_rows, areas)
        t_fleet += time.perf_counter() - t
        n2 += a.meters
    per_fleet = t_fleet / n2 * 1e6

    res = {
        "meters": a.meters, "area_size": a.area_size, "intervals": intervals,
        "readings": n, "findings": findings,
        "us_per_reading_area_batches": round(per_area, 2),
        "us_per_reading_fleet_batches": round(per_fleet, 2),
        "state_bytes_per_meter": eng.state_bytes,
        "theft_model": eng.theft is not None, "history_days": a.history_days,
        "area_state_bytes": eng.area_dtype.itemsize,
        "state_mb_total": round(eng.state_bytes * a.meters / 1e6, 1),
        "wall_s": round(wall, 1),
        "us_per_reading_by_detector_area_batches": shares,
        "area_meters": a.area_meters,
        "area_step_us_per_reading_without_hook": round(hook["off"], 3) if hook else None,
        "area_step_us_per_reading_with_hook": round(hook["on"], 3) if hook else None,
    }
    print(f"engine over {n:,} readings of {a.meters:,} meters in {n_areas} areas of {a.area_size}:")
    print(f"  area batches  (stream shape)  : {per_area:6.2f} us/reading")
    print(f"  fleet batches (backtest shape): {per_fleet:6.2f} us/reading")
    print("  of which, per detector (stream shape): "
          + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()) + " us/reading")
    if hook:
        print(f"  area step with area meters: {hook['off']:.3f} us/reading without the "
              f"area-loss ranking hook, {hook['on']:.3f} with it")
    print(f"  state: {eng.state_bytes} B/meter ({res['state_mb_total']} MB for the fleet), "
          f"{eng.area_dtype.itemsize} B/area; {findings} findings")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
