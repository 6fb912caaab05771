"""Issue 14's area-loss target: with an area meter, is the thief in the top 3 of its area?

Areas are built from real households (the London sample, one half of it): each case
draws 8-12 households with readings over the case's span, one of them the thief, an
attack (h1-h6 of :mod:`models.attacks` or a bypass keeping U(0.2, 0.6) of the load,
as the simulator's) and an onset day. The households' readings are their true use;
the area meter sees their sum plus a technical loss (a no-load part of 0.5-1.5 % and a
load part growing with the square of the load, 1.5-3.5 % of the energy, each slot's
loss with 10 % noise) through a class 0.2 meter (a fixed error of sd 0.2 % and 0.2 %
noise per reading); each customer meter reports its use with a fixed error of sd 0.5 %
(class 1), the thief from the onset on its attacked use. The readings are rounded to
Wh, as meters report them.

:func:`models.theft_area.rank_area` then ranks the area's meters ``k`` = 7 and 14 days
after the onset, without being told the onset: its window is always the 14 days before
"now" and its baseline the 28 days before that (at ``k`` = 7 the window still holds 7
days before the onset). Reported: the share of cases with the thief first and in the
top 3, per attack shape, per seed and per half (design the method on ``design``, quote
``holdout``). :func:`simulated_cases` does the same on the fleet simulator's areas,
whose area meters the simulator already computes (customers' true net flow plus the
transformer's losses).

**Live** (``--live N``): the first ``N`` cases of each seed and half also go through
the engine (:func:`models.backtest.run`, the area meter in the registry, readings per
timestamp as a data concentrator sends an area's interval), and the row records where
the thief stands in the latest ``theft/area_loss`` message's suspects (open or update,
by the horizon; no alert or not named: a miss), in the streaming score's own order
(the state, alert or not), and offline on the same case.

Run ``python -m models.evaluate.theft_area --seeds 0 1 2`` (``--half``, ``--cases``,
``--sim-areas``, ``--live``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from models.attacks import Attack
from models.base import Fleet
from models.evaluate.inject import weekend
from models.theft_area import AreaRanking, rank_area

SHAPES = ("h1", "h2", "h3", "h4", "h5", "h6", "bypass")
HORIZONS = (7, 14)  # days after the onset at which the area is ranked
WINDOW_DAYS = 14
BASE_DAYS = 28
SPAN_DAYS = BASE_DAYS + WINDOW_DAYS + max(HORIZONS) - min(HORIZONS)  # days a case needs
MIN_COVER = 0.95  # share of a case's slots a member must have reported
MIN_THIEF_DAY_KWH = 1.0  # as inject's: scaling a near-empty home changes nothing
DAY_S = 86400


# -- households as (days, slots) -----------------------------------------------------------

@dataclass
class Households:
    """Readings as an array: ``X`` (households, days, slots) kWh, NaN where missing;
    ``day0`` the first day's number since 1970-01-01 (UTC: the sample's clock)."""

    ids: list[str]
    X: np.ndarray
    day0: int


def households_array(df: pd.DataFrame, slots: int = 48) -> Households:
    """Pivot readings (``meter_id, ts`` = interval END epoch s, ``kwh``) to days x slots."""
    iv = DAY_S // slots
    t0 = df["ts"].to_numpy(np.int64) - iv
    day = t0 // DAY_S
    day0 = int(day.min())
    n_days = int(day.max()) - day0 + 1
    codes, ids = pd.factorize(df["meter_id"], sort=True)
    X = np.full((len(ids), n_days, slots), np.nan)
    X[codes, day - day0, (t0 % DAY_S) // iv] = df["kwh"].to_numpy(np.float64)
    return Households([str(m) for m in ids], X, day0)


# -- one case ------------------------------------------------------------------------------

@dataclass
class Case:
    shape: str
    thief: int  # index into the area's meters
    households: list[str]
    R: np.ndarray  # (n, SPAN_DAYS, S) what the customer meters report
    A: np.ndarray  # (SPAN_DAYS, S) what the area meter reports
    onset: int  # day index of the onset within the span
    weekend: np.ndarray
    clean: np.ndarray | None = None  # R without the attack (the same area, no thief)
    day0: int = 0  # the span's first day, days since 1970-01-01 (UTC: the sample's clock)


def attacked(x: np.ndarray, shape: str, rng: np.random.Generator) -> np.ndarray:
    """Days ``x`` (D, S) as the thief's meter reports them: each day rewritten by one
    attack whose parameters are fixed for its life (h3/h4 draw per reading each day)."""
    if shape == "bypass":
        return x * float(rng.uniform(0.2, 0.6))
    atk = Attack(shape, rng)
    return np.stack([atk.apply(day) for day in x])


def area_meter(C: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The area meter's readings (D, S) for the members' true use ``C`` (n, D, S)."""
    P = C.sum(axis=0)
    mean = float(P.mean())
    core = float(rng.uniform(0.005, 0.015)) * mean
    load = float(rng.uniform(0.015, 0.035)) * mean / max(float((P * P).mean()), 1e-12)
    tech = (core + load * P * P) * np.maximum(rng.normal(1.0, 0.1, P.shape), 0.0)
    A = (P + tech) * (1.0 + rng.normal(0.0, 0.002)) * (1.0 + rng.normal(0.0, 0.002, P.shape))
    return np.round(A, 3)


def _covered(hh: Households, lo: int, hi: int) -> np.ndarray:
    return np.isfinite(hh.X[:, lo:hi]).mean(axis=(1, 2)) >= MIN_COVER


def make_case(hh: Households, shape: str, rng: np.random.Generator,
              sizes: tuple[int, int] = (8, 12)) -> Case | None:
    """One area, one thief, one onset (None when too few households cover a span)."""
    first = BASE_DAYS + WINDOW_DAYS - min(HORIZONS)  # the onset's index in the span
    n_days = hh.X.shape[1]
    lo = int(rng.integers(0, n_days - SPAN_DAYS + 1))
    hi = lo + SPAN_DAYS
    ok = np.flatnonzero(_covered(hh, lo, hi))
    daily = np.nanmedian(np.nansum(hh.X[:, lo:lo + first], axis=2), axis=1)
    thieves = ok[daily[ok] >= MIN_THIEF_DAY_KWH]
    if len(ok) < sizes[0] or not len(thieves):
        return None
    n = int(rng.integers(sizes[0], min(sizes[1], len(ok)) + 1))
    thief = int(rng.choice(thieves))
    others = rng.choice(ok[ok != thief], n - 1, replace=False)
    members = np.r_[thief, others]
    rng.shuffle(members)
    C = np.nan_to_num(hh.X[members, lo:hi])  # a missing reading: treated as no use
    gap = ~np.isfinite(hh.X[members, lo:hi])
    A = area_meter(C, rng)
    bias = 1.0 + rng.normal(0.0, 0.005, len(members))
    clean = C * bias[:, None, None]
    R = clean.copy()
    k = int(np.flatnonzero(members == thief)[0])
    R[k, first:] = attacked(C[k, first:], shape, rng) * bias[k]
    R, clean = (np.where(gap, np.nan, np.round(x, 3)) for x in (R, clean))
    days = hh.day0 + lo + np.arange(SPAN_DAYS)
    return Case(shape, k, [hh.ids[m] for m in members], R, A, first, weekend(days), clean,
                int(days[0]))


def rank_case(case: Case, horizon: int, *, clean: bool = False) -> AreaRanking:
    """The area ranked ``horizon`` days after the onset (window: the 14 days before);
    with ``clean``, the same area and days without the attack."""
    now = case.onset + horizon
    d = np.arange(case.R.shape[1])
    window = (d >= now - WINDOW_DAYS) & (d < now)
    base = (d >= now - WINDOW_DAYS - BASE_DAYS) & (d < now - WINDOW_DAYS)
    return rank_area(case.clean if clean else case.R, case.A, base=base, window=window,
                     weekend=case.weekend)


def case_row(case: Case, seed: int, horizon: int, **extra: Any) -> dict[str, Any]:
    r = rank_case(case, horizon)
    row = {"seed": seed, "shape": case.shape, "horizon": horizon, "meters": len(case.R),
           "rank": r.rank_of(case.thief), "thief_suspect": bool(r.suspect[case.thief]),
           **extra}
    if case.clean is not None:
        row["clean_suspects"] = int(rank_case(case, horizon, clean=True).suspect.sum())
    return row


# -- many cases --------------------------------------------------------------------------------

def london_cases(hh: Households, seed: int, n_cases: int) -> list[dict[str, Any]]:
    """``n_cases`` cases (shapes in turn), each ranked at every horizon."""
    rng = np.random.default_rng([seed, 14, 3])
    rows: list[dict[str, Any]] = []
    tries = 0
    while len(rows) < n_cases * len(HORIZONS) and tries < 20 * n_cases:
        tries += 1
        shape = SHAPES[(len(rows) // len(HORIZONS)) % len(SHAPES)]
        case = make_case(hh, shape, rng)
        if case is None:
            continue
        rows.extend(case_row(case, seed, h) for h in HORIZONS)
    return rows


def summarize(rows: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, float]]:
    """(seed, horizon, shape or "all") -> cases, share top 1, share top 3, mean meters."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["seed"], r["horizon"], r["shape"])].append(r)
        groups[(r["seed"], r["horizon"], "all")].append(r)
    out = {}
    for key, rs in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1], kv[0][2])):
        rank = np.array([r["rank"] for r in rs])
        clean = [r["clean_suspects"] for r in rs if "clean_suspects" in r]
        out[key] = {"cases": len(rs), "top1": float((rank == 1).mean()),
                    "top3": float((rank <= 3).mean()),
                    "meters": float(np.mean([r["meters"] for r in rs])),
                    "suspect": float(np.mean([r["thief_suspect"] for r in rs])),
                    "clean_any_suspect": float(np.mean([c > 0 for c in clean])) if clean else None}
    return out


def summary_text(summary: dict[tuple, dict[str, float]], title: str) -> str:
    lines = [title]
    keys = sorted({(s, h) for s, h, _ in summary}, key=lambda k: (str(k[0]), k[1]))
    for s, h in keys:
        a = summary[(s, h, "all")]
        per = " ".join(f"{sh} {summary[(s, h, sh)]['top3']:.2f}" for sh in SHAPES
                       if (s, h, sh) in summary)
        clean = ("" if a["clean_any_suspect"] is None else
                 f"; without the thief, areas with a suspect {a['clean_any_suspect']:.3f}")
        lines.append(f"  seed {s}, {h:2d} d after onset: top 3 {a['top3']:.3f}, top 1 "
                     f"{a['top1']:.3f} ({a['cases']} cases, {a['meters']:.1f} meters/area); "
                     f"top 3 by shape: {per}; thief a suspect {a['suspect']:.3f}{clean}")
    return "\n".join(lines)


# -- the live ranking: the same cases through the engine ------------------------------------

LIVE_IDS = "H"  # customer meters H0.., the area meter TX


def case_frame(case: Case, slots: int = 48) -> tuple[pd.DataFrame, Fleet]:
    """The case as readings (``meter_id, ts`` = interval end, ``interval_s, kwh``; a
    missing reading is left out) and a registry of one area with its area meter."""
    n, D, S = case.R.shape
    iv = DAY_S // slots
    ids = [f"{LIVE_IDS}{j}" for j in range(n)] + ["TX"]
    X = np.concatenate([case.R, case.A[None]])
    ts = (case.day0 * DAY_S + iv * (np.arange(D * S) + 1))[None].repeat(n + 1, axis=0)
    ok = np.isfinite(X.reshape(n + 1, -1))
    df = pd.DataFrame({"meter_id": np.repeat(ids, D * S)[ok.ravel()], "ts": ts[ok],
                       "interval_s": iv, "kwh": X.reshape(n + 1, -1)[ok]})
    df = df.sort_values(["ts", "meter_id"], kind="stable").reset_index(drop=True)
    fleet = Fleet.simple(n + 1, is_area_meter=[False] * n + [True])
    fleet.meter_id, fleet.index = ids, {m: i for i, m in enumerate(ids)}
    return df, fleet


def live_case_rows(case: Case, seed: int, config=None, **extra: Any) -> list[dict[str, Any]]:
    """Run the case through the engine (:func:`models.backtest.run`, the area meter in
    the registry) and, at each horizon, where the thief stands in the area_loss alert's
    latest suspects (open or update; ``alert_rank`` None: no alert, or the thief not
    named) and in the hook's own ranking of the state (``state_rank``: the order the
    alert would carry, raised or not)."""
    from models.backtest import run

    df, fleet = case_frame(case)
    onset_ts = (case.day0 + case.onset) * DAY_S
    due = {h: onset_ts + h * DAY_S for h in HORIZONS}
    ranks: dict[int, int] = {}

    def at_horizon(last_ts: int, st: np.ndarray, _new: list[dict]) -> None:
        for h, t in due.items():
            if h not in ranks and last_ts >= t - DAY_S // 48:
                ranks[h] = _state_rank(st, case.thief, len(case.R))

    res = run(df, fleet, config=config, tz="UTC", country=None, after_call=at_horizon)
    told = [(int(pd.Timestamp(a["detected_at"]).timestamp()), a) for a in res.alerts
            if a["subtype"] == "area_loss" and a["status"] in ("open", "update")]
    thief = fleet.meter_id[case.thief]
    rows = []
    for h, t in due.items():
        # the day closes with the first reading after midnight
        last = [a for ts, a in told if ts <= t + DAY_S // 48]
        names = [s["meter_id"] for s in last[-1]["evidence"]["suspects"]] if last else []
        rows.append({"seed": seed, "shape": case.shape, "horizon": h, "meters": len(case.R),
                     "alert": bool(last), "alert_rank": names.index(thief) + 1 if thief in names else None,
                     "state_rank": ranks.get(h), **extra})
    return rows


def _state_rank(st: np.ndarray, thief: int, n: int) -> int:
    score = st["al_llr"][:n].astype(np.float64)
    if "t_cu" in st.dtype.names:
        score = score + np.maximum(st["t_cu"][:n], 0.0)
    order = np.lexsort((np.arange(n), -score))
    return int(np.flatnonzero(order == thief)[0]) + 1


def london_live(hh: Households, seed: int, n_cases: int, config=None) -> list[dict[str, Any]]:
    """:func:`london_cases`' cases (the same draws: the first ``n_cases``), through the
    engine; each row also carries the offline rank of the same case and horizon."""
    rng = np.random.default_rng([seed, 14, 3])
    rows: list[dict[str, Any]] = []
    done = tries = 0
    while done < n_cases and tries < 20 * n_cases:
        tries += 1
        shape = SHAPES[done % len(SHAPES)]
        case = make_case(hh, shape, rng)
        if case is None:
            continue
        done += 1
        offline = {h: rank_case(case, h).rank_of(case.thief) for h in HORIZONS}
        for r in live_case_rows(case, seed, config):
            rows.append(r | {"offline_rank": offline[r["horizon"]]})
    return rows


def summarize_live(rows: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, float]]:
    """(seed, horizon) -> cases, share with an alert, thief top 3 / top 1 of the alert's
    suspects (no alert: a miss), the same among alerted cases, the hook's own ranking
    of the state, and the offline ranking of the same cases."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["seed"], r["horizon"])].append(r)
        groups[("all", r["horizon"])].append(r)
        groups[("all", r["horizon"], r["shape"])].append(r)
    out = {}
    for key, rs in groups.items():
        al = np.array([r["alert_rank"] or 10 ** 6 for r in rs])
        has = np.array([r["alert"] for r in rs])
        sr = np.array([r["state_rank"] or 10 ** 6 for r in rs])
        off = np.array([r["offline_rank"] for r in rs])
        out[key] = {"cases": len(rs), "alerted": float(has.mean()),
                    "top3": float((al <= 3).mean()), "top1": float((al == 1).mean()),
                    "top3_alerted": float((al[has] <= 3).mean()) if has.any() else float("nan"),
                    "top1_alerted": float((al[has] == 1).mean()) if has.any() else float("nan"),
                    "state_top3": float((sr <= 3).mean()), "state_top1": float((sr == 1).mean()),
                    "offline_top3": float((off <= 3).mean()), "offline_top1": float((off == 1).mean())}
    return out


def live_text(summary: dict[tuple, dict[str, float]], title: str) -> str:
    lines = [title]
    for key, v in sorted(summary.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        if len(key) == 3:
            continue
        s, h = key
        lines.append(
            f"  seed {s}, {h:2d} d after onset ({v['cases']} cases): alert raised {v['alerted']:.2f}; "
            f"thief in the alert's top 3 {v['top3']:.2f} (top 1 {v['top1']:.2f}), among alerted "
            f"{v['top3_alerted']:.2f} ({v['top1_alerted']:.2f}); live score top 3 "
            f"{v['state_top3']:.2f} ({v['state_top1']:.2f}); offline top 3 "
            f"{v['offline_top3']:.2f} ({v['offline_top1']:.2f})")
        if s == "all":
            lines.append("    by shape, alert raised / thief in its top 3 / live score top 3: " + ", ".join(
                f"{sh} {summary[k]['alerted']:.2f}/{summary[k]['top3']:.2f}/{summary[k]['state_top3']:.2f}"
                for sh in SHAPES if (k := ("all", h, sh)) in summary))
    return "\n".join(lines)


# -- the simulator's areas -------------------------------------------------------------------

def simulated_cases(seed: int, areas: int = 10, per_area: int = 10,
                    interval_s: int = 1800) -> list[dict[str, Any]]:
    """One thief per area of the fleet simulator (shapes in turn, onset at a local
    midnight 35-41 days in) and, in every other area, an honest customer whose use falls
    to 0.4-0.65 of it from the same day (a confounder: a fall the loss does not follow);
    each area ranked at every horizon. The area meter is the simulator's own."""
    from models.evaluate.sim import FleetSimulator

    sim = FleetSimulator(n_customers=areas * per_area, n_areas=areas, seed=seed,
                         interval_s=interval_s, share_solar=0.05)
    rng = np.random.default_rng([seed, 14, 5])
    first = BASE_DAYS + WINDOW_DAYS - min(HORIZONS)
    onset = first + rng.integers(0, 7, areas)
    thieves = []
    for a in range(areas):
        rows = np.flatnonzero(sim.area == a)
        pick = rng.choice(rows, 2, replace=False)
        shape = SHAPES[(a + seed) % len(SHAPES)]
        t0 = sim._local_midnight_after(int(onset[a]))
        sim.inject(shape, sim.meter_ids[pick[0]], t0, rng=rng)
        if a % 2:
            sim.inject("habit_decrease", sim.meter_ids[pick[1]], t0, rng=rng)
        thieves.append((int(pick[0]), shape))
    net = _simulated_net(sim, int(onset.max()) + max(HORIZONS))
    days = np.arange(net.shape[1])
    wkend = (sim.start.weekday() + days) % 7 >= 5
    n = sim.n_customers
    out = []
    for a, (thief, shape) in enumerate(thieves):
        rows = np.flatnonzero(sim.area == a)
        case = Case(shape, int(np.flatnonzero(rows == thief)[0]), [sim.meter_ids[r] for r in rows],
                    net[rows], net[n + a], int(onset[a]), wkend)
        out.extend(case_row(case, seed, h, confounder=bool(a % 2)) for h in HORIZONS)
    return out


def _simulated_net(sim, n_days: int) -> np.ndarray:
    """(meters, days, slots) net kWh (import - export) as the meters report it."""
    out = []
    for day in sim._iter_days(sim._local_midnight_after(n_days)):
        exp = np.where(day["has_exp"], day["kwh_export"], 0.0)
        out.append(np.where(day["present"], day["kwh"] - exp, np.nan))
    return np.stack(out, axis=1)


# -- the command -------------------------------------------------------------------------------

def london(path: str, half: str, seeds: Iterable[int], n_cases: int) -> list[dict[str, Any]]:
    from models.evaluate.real import load_real

    hh = households_array(load_real(path, tz="UTC", half=half))
    return [r for s in seeds for r in london_cases(hh, s, n_cases)]


def london_live_run(path: str, half: str, seeds: Iterable[int], n_cases: int,
                    config_path: str | None = None) -> list[dict[str, Any]]:
    from models.config import load_config
    from models.evaluate.real import load_real

    hh = households_array(load_real(path, tz="UTC", half=half))
    config = load_config(config_path) if config_path else None
    return [r for s in seeds for r in london_live(hh, s, n_cases, config)]


def main(argv: list[str] | None = None) -> int:
    from models.evaluate.targets import DEFAULT_READINGS

    ap = argparse.ArgumentParser(prog="python -m models.evaluate.theft_area", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--readings", default=str(DEFAULT_READINGS))
    ap.add_argument("--half", nargs="+", default=["holdout", "design"],
                    choices=["holdout", "design", "all"])
    ap.add_argument("--cases", type=int, default=210, help="cases per seed and half")
    ap.add_argument("--sim-areas", type=int, default=14,
                    help="simulated areas per seed (0: no simulator run)")
    ap.add_argument("--live", type=int, default=0,
                    help="cases per seed and half run through the engine as well (the "
                         "area_loss alert's ranking; ~2-3 s a case)")
    ap.add_argument("--config", help="detector thresholds TOML for the live run")
    a = ap.parse_args(argv)
    for half in a.half:
        t0 = time.perf_counter()
        rows = london(a.readings, half, a.seeds, a.cases)
        print(summary_text(summarize(rows), f"London households, {half} half "
                           f"({time.perf_counter() - t0:.0f} s):"), flush=True)
        if a.live:
            t0 = time.perf_counter()
            rows = london_live_run(a.readings, half, a.seeds, a.live, a.config)
            print(live_text(summarize_live(rows), f"The same cases through the engine, {half} "
                            f"half, first {a.live} per seed ({time.perf_counter() - t0:.0f} s):"),
                  flush=True)
    if a.sim_areas:
        t0 = time.perf_counter()
        rows = [r for s in a.seeds for r in simulated_cases(s, a.sim_areas)]
        print(summary_text(summarize(rows), f"Simulated fleet, one thief per area, a confounder "
                           f"in every other ({time.perf_counter() - t0:.0f} s):"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
