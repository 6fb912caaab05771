"""Threshold sweeps: one backtest per (parameter, value), the curves behind the defaults."""

from __future__ import annotations

import time
from typing import Any, Sequence


from models.backtest import run
from models.config import DetectorConfig
from models.evaluate.inject import VirtualSet
from models.evaluate.real import score_real
from models.evaluate.simulated import SimInput, score_sim


# The curves that explain the defaults: each family's false-alarm budget (expected false
# openings per clean customer-year) against the clean rate it gives and the recall it
# buys, and the smallest change worth reporting.
DEFAULT_SWEEP: list[tuple[str, str, list[float]]] = [
    ("budget", "surge_daily", [0.25, 0.5, 1.0, 2.0, 4.0]),
    ("budget", "surge_interval", [0.1, 0.25, 0.5, 1.0, 2.0]),
    ("budget", "habit_change", [0.15, 0.3, 0.6, 1.2, 2.4]),
    ("budget", "vacancy", [0.1, 0.2, 0.4, 0.8, 1.6]),
    ("habit", "change_min", [0.2, 0.3, 0.4]),
    ("physical", "mismatch_tol", [0.15, 0.2, 0.25, 0.3, 0.4]),
]
# Sections whose detectors see real (energy-only) readings; the others need voltage,
# current or an area meter, so their sweeps run on the simulated fleet.
REAL_SECTIONS = ("habit", "budget", "engine")


# -- sweep -------------------------------------------------------------------------------

_SWEEP_INPUT: dict[str, Any] = {}


def parse_sweep(specs: Sequence[str] | None) -> list[tuple[str, str, list[Any]]]:
    """``["habit.cusum_h=3,4,5"]`` -> [("habit", "cusum_h", [3.0, 4.0, 5.0])], typed by the
    config field; None -> :data:`DEFAULT_SWEEP`."""
    if not specs:
        return [(s, k, list(v)) for s, k, v in DEFAULT_SWEEP]
    base = DetectorConfig()
    out = []
    for spec in specs:
        try:
            name, vals = spec.split("=", 1)
            sec, key = name.strip().split(".", 1)
            cur = getattr(getattr(base, sec), key)
        except (ValueError, AttributeError):
            raise SystemExit(f"--sweep-param {spec!r}: expected section.key=v1,v2,... "
                             f"with a key of DetectorConfig") from None
        typ = type(cur)
        out.append((sec, key, [typ(float(v)) if typ is int else typ(v) for v in vals.split(",")]))
    return out


def _sweep_point(job: tuple[str, str, str, Any]) -> dict[str, Any]:
    target, sec, key, value = job
    base: DetectorConfig = _SWEEP_INPUT["config"]
    cfg = base.replace(**{sec: {key: value}})
    t0 = time.perf_counter()
    if target == "real":
        vs = _SWEEP_INPUT["real"]
        res = score_real(vs, run(vs.readings, vs.fleet, config=cfg, tz=vs.tz,
                                 country=_SWEEP_INPUT["country"]))
        pt = {"false_per_cm": res.clean["per_customer_month"], "theft_share": res.clean["theft_share"],
              **{f"recall_{g}": v["recall_window"] for g, v in res.groups.items()}}
    else:
        inp = _SWEEP_INPUT["sim"]
        res = score_sim(inp, run(inp.readings, inp.fleet, config=cfg, tz=inp.tz,
                                 country=inp.country, weather=inp.weather), cfg)
        pt = {"false_per_cm": res.false_per_customer_month, "voltage_f1": res.voltage["f1"],
              **{f"recall_{g}": v["recall_window"] for g, v in res.groups.items()}}
    return {"target": target, "param": f"{sec}.{key}", "value": value,
            "seconds": time.perf_counter() - t0, **pt}


def run_sweep(params: list[tuple[str, str, list[Any]]], *, config: DetectorConfig,
              real: VirtualSet | None, sim: SimInput | None, country: str | None = "GB",
              jobs: int = 1, log=print) -> list[dict[str, Any]]:
    """One backtest per (parameter, value); parameters of sections that need voltage,
    current or an area meter run on the simulated fleet, the others on the real data."""
    _SWEEP_INPUT.update(config=config, real=real, sim=sim, country=country)
    jobs_list = []
    for sec, key, values in params:
        target = "real" if sec in REAL_SECTIONS else "sim"
        if (target == "real" and real is None) or (target == "sim" and sim is None):
            log(f"sweep: skipping {sec}.{key} (no {target} input)")
            continue
        jobs_list += [(target, sec, key, v) for v in values]
    out: list[dict[str, Any]] = []
    if jobs > 1 and len(jobs_list) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # fork: workers inherit the prepared inputs instead of unpickling them.
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as ex:
            for pt in ex.map(_sweep_point, jobs_list):
                log(f"sweep {pt['param']}={pt['value']}: {pt['seconds']:.0f} s")
                out.append(pt)
    else:
        for j in jobs_list:
            pt = _sweep_point(j)
            log(f"sweep {pt['param']}={pt['value']}: {pt['seconds']:.0f} s")
            out.append(pt)
    _SWEEP_INPUT.clear()
    return out

