"""The simulated-fleet test bed: a random scenario plus extra voltage events, scored
against the simulator's ground truth (voltage labels checked against the readings)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.backtest import BacktestResult, load_readings, load_weather, run
from models.config import DetectorConfig
from models.evaluate.inject import DAY_S
from models.evaluate.scoring import (Matching, to_epoch, alert_rows, detection_rows,
                                     mark_open_at_onset, match, pooled)
from models.evaluate.targets import (GROUP_ORDER, MONTH_S, SIM_ALIAS, SPEC, Target, WARMUP_S,
                                     target_windows)


# -- simulated fleet ---------------------------------------------------------------------

@dataclass
class SimInput:
    readings: pd.DataFrame
    fleet: Any
    truth: list[dict[str, Any]]
    tz: str
    country: str
    interval_s: int
    start: int
    end: int
    customers: int
    meta: dict[str, Any] = field(default_factory=dict)
    weather: pd.DataFrame | None = None  # the hourly temperature per area the sim used


@dataclass
class SimEval:
    inp: SimInput
    backtest: BacktestResult
    matching: Matching
    detection: list[dict[str, Any]]
    by_type: list[dict[str, Any]]
    groups: dict[str, dict[str, Any]]
    alerts: list[dict[str, Any]]
    voltage: dict[str, Any]
    false_per_customer_month: float | None
    meta: dict[str, Any]


def prepare_sim(*, customers: int = 300, areas: int = 20, days: int = 120, seed: int = 0,
                rate: float = 0.2, extra_voltage: int = 40, interval_s: int = 900,
                weather: bool = True) -> SimInput:
    """A simulated fleet with a random scenario plus ``extra_voltage`` meter-level voltage
    events, written to Parquet and read back the way a user's file would be; with
    ``weather``, the hourly temperature per area too (a CSV, as `backtest --weather`)."""
    from stream.registry import Registry
    from models.evaluate.sim import FleetSimulator

    t0 = time.perf_counter()
    sim = FleetSimulator(n_customers=customers, n_areas=areas, seed=seed, interval_s=interval_s)
    sim.random_scenario(rate, days=days)
    rng = np.random.default_rng([seed, 17])
    start = int(sim.start.timestamp())
    n_int = days * DAY_S // interval_s
    for _ in range(extra_voltage):
        kind = str(rng.choice(["undervoltage", "overvoltage", "sag", "swell", "interruption"]))
        meter = sim.meter_ids[int(rng.integers(customers))]
        t = start + int(rng.integers(n_int // 10, n_int - 8)) * interval_s
        sim.inject(kind, meter, t, rng=rng)
    with tempfile.TemporaryDirectory(prefix="mw-eval-") as tmp:
        pq, reg = Path(tmp) / "readings.parquet", Path(tmp) / "registry.csv"
        sim.write_readings(pq, days=days)
        sim.write_registry_csv(reg)
        fleet = Registry.load(reg).fleet
        df = load_readings(pq)
        wx = None
        if weather:
            sim.weather_frame(days=days).to_csv(Path(tmp) / "weather.csv", index=False)
            wx = load_weather(Path(tmp) / "weather.csv", fleet)
    tz = str(sim.tz)
    truth = [r for r in sim.ground_truth() if r["type"] != "bad_input"]
    return SimInput(df, fleet, truth, tz, "CN", interval_s, start, start + days * DAY_S, customers,
                    {"customers": customers, "areas": areas, "days": days, "seed": seed,
                     "rate": rate, "extra_voltage": extra_voltage, "interval_s": interval_s,
                     "readings": len(df), "labels": len(truth), "weather": weather,
                     "prepare_seconds": time.perf_counter() - t0}, wx)


def _voltage_truth(inp: SimInput, tg: Target, by_meter: dict[str, pd.DataFrame],
                   cfg: DetectorConfig) -> tuple[bool, str]:
    """(event one the voltage alert policy must raise, which scope qualifies): see
    :func:`models.evaluate.voltage.voltage_truth`."""
    from models.evaluate.voltage import voltage_truth

    return voltage_truth(inp, tg, by_meter, cfg)


def sim_targets(inp: SimInput, cfg: DetectorConfig) -> list[Target]:
    by_meter = None
    out = []
    for i, r in enumerate(inp.truth):
        P = r.get("params") or {}
        kind = SIM_ALIAS.get(P.get("kind"), P.get("kind"))
        if kind not in SPEC:
            continue
        group, exp, rel, _, _ = SPEC[kind]
        if kind == "outage":
            exp = (f"outage/{r['subtype']}",)
        onset = to_epoch(r["start"])
        end = None if r.get("end") is None else to_epoch(r["end"])
        dl, late, relu, act = target_windows(kind, onset, end, inp.end, inp.interval_s)
        tg = Target(i, kind, group, r["type"], r["subtype"], P.get("scope", "meter"), r.get("meter_id"),
                    r.get("area_id"), onset, end, dl, late, relu, exp, rel, inp.interval_s,
                    dict(P), expected_scope=P.get("scope", "meter"), active_until=act)
        if group == "voltage":
            if by_meter is None:
                by_meter = dict(tuple(inp.readings.groupby("meter_id")))
            tg.valid, tg.expected_scope = _voltage_truth(inp, tg, by_meter, cfg)
        out.append(tg)
    return out


def score_sim(inp: SimInput, bt: BacktestResult, cfg: DetectorConfig | None = None) -> SimEval:
    cfg = cfg or DetectorConfig()
    targets = sim_targets(inp, cfg)
    mt = match(bt.alerts, targets, area_warmup_until=inp.start + WARMUP_S,
               warmup_until={m: inp.start + WARMUP_S for m in inp.fleet.meter_id})
    mark_open_at_onset(bt.alerts, targets)
    groups = {g: pooled(targets, lambda tg, g=g: tg.group == g)
              for g in GROUP_ORDER if any(tg.group == g for tg in targets)}
    groups["all"] = pooled(targets, lambda tg: True)
    alerts = alert_rows(mt.rows)
    # Voltage: F1 of openings vs labels, and meter-vs-area scope.
    v_tg = [tg for tg in targets if tg.group == "voltage" and tg.valid]
    v_rows = [r for r in mt.rows if r["type"] == "voltage" and r["cls"] != "warmup"]
    tp = sum(r["cls"] == "tp" for r in v_rows)
    fp = sum(r["cls"] == "fp" for r in v_rows)
    rec = (sum(tg.in_window for tg in v_tg) / len(v_tg)) if v_tg else None
    prec = tp / (tp + fp) if tp + fp else None
    f1 = 2 * prec * rec / (prec + rec) if prec is not None and rec and prec + rec > 0 else None
    det = [tg for tg in v_tg if tg.detected]
    scope = (sum(bool(tg.scope_ok) for tg in det) / len(det)) if det else None
    voltage = {"labels": len([tg for tg in targets if tg.group == "voltage"]), "valid": len(v_tg),
               "invalid": [tg.to_dict(inp.tz) for tg in targets if tg.group == "voltage" and not tg.valid],
               "tp": tp, "fp": fp, "recall": rec, "precision": prec, "f1": f1, "scope_ok": scope,
               "area_labels": sum(tg.scope == "area" for tg in v_tg),
               "area_expected": sum(tg.expected_scope == "area" for tg in v_tg),
               "scope_misses": [tg.to_dict(inp.tz) for tg in det if not tg.scope_ok]}
    cust = [m for m, am in zip(inp.fleet.meter_id, inp.fleet.is_area_meter) if not am]
    cm = len(cust) * max(0.0, (inp.end - inp.start - WARMUP_S) / MONTH_S)
    cset = set(cust)
    nfp = sum(r["cls"] == "fp" for r in mt.rows if r["meter_id"] in cset)
    meta = dict(inp.meta, backtest_seconds=bt.seconds, alerts=len(bt.alerts), tz=inp.tz)
    return SimEval(inp, bt, mt, detection_rows(targets),
                   detection_rows(targets, key=lambda tg: f"{tg.type}/{tg.subtype}"
                                  + (" (area)" if tg.scope == "area" else "")),
                   groups, alerts, voltage, nfp / cm if cm else None, meta)


def evaluate_sim(*, config: DetectorConfig | None = None, inp: SimInput | None = None,
                 **kw: Any) -> SimEval:
    """Simulate (or reuse ``inp``), run the backtest with the registry's fleet, score."""
    t0 = time.perf_counter()
    inp = inp or prepare_sim(**kw)
    bt = run(inp.readings, inp.fleet, config=config, tz=inp.tz, country=inp.country,
             weather=inp.weather)
    res = score_sim(inp, bt, config)
    res.meta["seconds"] = time.perf_counter() - t0
    return res

