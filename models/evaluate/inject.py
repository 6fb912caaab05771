"""Labelled anomalies injected into real readings, for measuring the detectors.

Every household of a readings file becomes several *virtual meters* that run side by
side in one backtest: its clean copy (``<id>``) and one copy per scenario
(``<id>~h3``, ``<id>~vacancy``, ...), each carrying exactly ONE injected anomaly with a
known onset. Before the onset a copy is byte-identical to the clean one.

Scenario kinds (:data:`KINDS`):

==============  ===========================================================================
h1 ... h6       Jokar et al. (2016) theft shapes (:mod:`models.attacks`), applied to every
                local day from the onset (a local midnight) to the end of the data
surge_daily     one day with an added block of a few kW over a few hours, so the day is
                2.2-3x the household's median day of the previous 4 weeks (>= +3 kWh)
new_load        a new appliance from the onset on: +3-5 kWh every day, as a 1.5-3 kW block
                in the evening (a lasting increase of >= 3 kWh/day)
surge_interval  1-3 hours at >= 3-4x each slot's median power of the previous 4 weeks and
                >= 2-3 kW above it (the issue's "3x the slot and +2 kW for an hour or more")
vacancy         14-28 days at base load: the 5th-percentile night (01-05 h) power of the
                previous 4 weeks, with 10 % multiplicative noise
increase        all readings x U(1.6, 2.0) from the onset on (a lasting increase of >= 60 %)
decrease        all readings x U(0.4, 0.6) from the onset on
==============  ===========================================================================

Onsets are drawn per (household, kind) from an independent seeded stream, on a local day
with >= 60 days of the household's history before it and >= 14 days (or the scenario's
length) after it. Households whose median day is below ``min_day_kwh`` (near-empty
premises: scaling nothing changes nothing) only contribute their clean copy.

Times follow the project's convention: reading ``ts`` is the END of its interval; a
label's ``onset`` is the START of the first affected interval (epoch seconds).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from models.attacks import KINDS as ATTACK_KINDS
from models.attacks import Attack, apply_attack, local_midnight
from models.backtest import synthetic_fleet
from models.base import Fleet

KINDS: tuple[str, ...] = (*ATTACK_KINDS, "surge_daily", "new_load", "surge_interval", "vacancy",
                          "increase", "decrease")
# Kinds that lower the household's energy (they pull the area's peer trend down).
LOWERING = frozenset({"h1", "h2", "h3", "h4", "vacancy", "decrease"})
SEP = "~"  # virtual meter id = <household><SEP><kind>

DAY_S = 86400
MIN_HISTORY_DAYS = 60
MIN_AFTER_DAYS = 14


@dataclass
class Label:
    """One injected anomaly on one virtual meter."""

    kind: str
    meter_id: str  # the virtual meter
    household: str
    onset: int  # epoch s: start of the first affected interval
    end: int | None  # epoch s: end of the last affected interval; None = until data ends
    data_end: int  # epoch s: the household's last reading (END of its interval)
    interval_s: int
    tz: str
    params: dict[str, Any] = field(default_factory=dict)

    def iso(self, t: int | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(int(t), ZoneInfo(self.tz)).isoformat()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["onset_iso"] = self.iso(self.onset)
        d["end_iso"] = self.iso(self.end)
        return d


@dataclass
class VirtualSet:
    """Readings of all virtual meters, their fleet, and the labels."""

    readings: pd.DataFrame  # meter_id, ts (END, epoch s), kwh, interval_s; sorted by ts
    fleet: Fleet
    labels: list[Label]
    clean_ids: list[str]  # the clean copies (= household ids)
    skipped: dict[str, str]  # household or virtual id -> why no scenario was injected
    tz: str
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False, default_factory=dict)

    def household_of(self, meter_id: str) -> str:
        return meter_id.split(SEP, 1)[0]


# -- local time --------------------------------------------------------------------------

def local_clock(ts_end: np.ndarray, interval_s: int, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """(local day number since 1970-01-01, second of the local day) of each interval START."""
    t0 = np.asarray(ts_end, np.int64) - int(interval_s)
    loc = pd.to_datetime(t0, unit="s", utc=True).tz_convert(tz).tz_localize(None)
    sec = np.asarray((loc - pd.Timestamp(0)) // pd.Timedelta(seconds=1), np.int64)
    return sec // DAY_S, sec % DAY_S


def weekend(day_no: np.ndarray) -> np.ndarray:
    """Saturday/Sunday for local day numbers (1970-01-01 was a Thursday)."""
    return ((np.asarray(day_no) + 3) % 7) >= 5


def daily_energy(day_no: np.ndarray, kwh: np.ndarray, interval_s: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(days, energy per day, complete?) for one meter's readings."""
    days, inv = np.unique(day_no, return_inverse=True)
    e = np.bincount(inv, weights=kwh, minlength=len(days))
    n = np.bincount(inv, minlength=len(days))
    return days, e, n >= 0.85 * DAY_S / interval_s


def _usual_day(days: np.ndarray, e: np.ndarray, complete: np.ndarray, d: int,
               lookback: int = 28) -> float:
    sel = complete & (days < d) & (days >= d - lookback)
    return float(np.median(e[sel])) if sel.any() else float("nan")


def _usual_slot_kw(x: np.ndarray, day_no: np.ndarray, sod: np.ndarray, d: int,
                   blk: np.ndarray, h: float) -> np.ndarray:
    """Median power (kW) of each of ``blk``'s slots over the 4 weeks before day ``d``."""
    before = (day_no >= d - 28) & (day_no < d)
    out = np.empty(len(blk))
    for k, i in enumerate(blk):
        same = before & (sod == sod[i])
        out[k] = float(np.median(x[same])) / h if same.any() else 0.0
    return out


def _pick_day(days: np.ndarray, rng: np.random.Generator, *, after: int,
              history: int = MIN_HISTORY_DAYS) -> int | None:
    """A local day with >= ``history`` days before it and >= ``after`` days of data after."""
    if len(days) == 0:
        return None
    lo, hi = int(days[0]) + history, int(days[-1]) - after
    cand = days[(days >= lo) & (days <= hi)]
    return int(rng.choice(cand)) if len(cand) else None


def _rng(seed: int, household: str, kind: str) -> np.random.Generator:
    # Independent, order-free streams: adding a household or a kind changes nothing else.
    return np.random.default_rng([seed, zlib.crc32(household.encode()), zlib.crc32(kind.encode())])


# -- one scenario on one household ----------------------------------------------------------

@dataclass
class _Series:
    """One household's series as every scenario reads it: readings, local clock, daily
    energies, and the copy the scenario changes (``y``)."""

    ts: np.ndarray  # interval ends
    x: np.ndarray  # kWh as read
    y: np.ndarray  # the copy to inject into
    day_no: np.ndarray
    sod: np.ndarray
    days: np.ndarray  # local days with readings, their energy, and complete?
    e: np.ndarray
    complete: np.ndarray
    interval_s: int
    h: float  # interval in hours
    tz: str
    zone: ZoneInfo

    def usual_day(self, d: int) -> float:
        return _usual_day(self.days, self.e, self.complete, d)

    def midnight(self, d: int) -> int:
        return local_midnight(d, self.zone)


Injected = tuple[np.ndarray, int, int | None, dict]  # (new kwh, onset, end, params)


def inject(kind: str, ts: np.ndarray, kwh: np.ndarray, interval_s: int, tz: str,
           rng: np.random.Generator, *, day_no: np.ndarray | None = None,
           sod: np.ndarray | None = None) -> tuple[np.ndarray, int, int | None, dict] | None:
    """One scenario on one household's series (``ts`` = interval ends, sorted).

    Returns ``(new kwh, onset, end, params)`` or None when the series is too short.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown scenario kind {kind!r}: one of {', '.join(KINDS)}")
    ts = np.asarray(ts, np.int64)
    x = np.asarray(kwh, np.float64)
    if day_no is None or sod is None:
        day_no, sod = local_clock(ts, interval_s, tz)
    days, e, complete = daily_energy(day_no, x, interval_s)
    s = _Series(ts=ts, x=x, y=x.copy(), day_no=day_no, sod=sod, days=days, e=e,
                complete=complete, interval_s=interval_s, h=interval_s / 3600.0, tz=tz,
                zone=ZoneInfo(tz))
    if kind in ATTACK_KINDS:
        return _theft(s, kind, rng)
    if kind in ("increase", "decrease"):
        return _level(s, kind, rng)
    return _SCENARIOS[kind](s, rng)


def _theft(s: _Series, kind: str, rng: np.random.Generator) -> Injected | None:
    """A Jokar shape on every local day from a midnight to the end of the data."""
    d = _pick_day(s.days, rng, after=MIN_AFTER_DAYS)
    if d is None:
        return None
    ts, x, y, iv = s.ts, s.x, s.y, s.interval_s
    onset = s.midnight(d)
    atk = Attack(kind, rng)
    i0 = int(np.searchsorted(ts - iv, onset))
    y[i0:] = apply_attack(x[i0:], ts[i0:], atk, onset, tz=s.tz, interval_s=iv)
    P: dict[str, Any] = {}
    P.update(atk.params)
    wk = (ts - iv >= onset) & (ts - iv < onset + 7 * DAY_S)
    P["energy_ratio_7d"] = round(float(y[wk].sum() / max(x[wk].sum(), 1e-9)), 3)
    return y, onset, None, P


def _surge_daily(s: _Series, rng: np.random.Generator) -> Injected | None:
    """One day with an added block of a few kW, 2.2-3x the usual day."""
    d = _pick_day(s.days, rng, after=MIN_AFTER_DAYS)
    if d is None:
        return None
    x, h = s.x, s.h
    usual = s.usual_day(d)
    day = s.day_no == d
    actual = float(x[day].sum())
    f = float(rng.uniform(2.2, 3.0))
    added = max(f * usual - actual, 3.0) if np.isfinite(usual) else 3.0 * f
    kw_target = float(rng.uniform(2.5, 5.0))
    n_slots = int(np.clip(round(added / kw_target / h), 3, round(14 / h)))
    slots = np.flatnonzero(day)
    first = int(rng.integers(round(6 / h), max(round(6 / h) + 1, len(slots) - n_slots + 1)))
    first = min(first, max(len(slots) - n_slots, 0))
    blk = slots[first:first + n_slots]
    s.y[blk] += added / len(blk)
    P = dict(usual_day_kwh=round(usual, 3), day_kwh=round(actual, 3),
             added_kwh=round(added, 3), kw=round(added / len(blk) / h, 3),
             start_h=round(float(s.sod[blk[0]]) / 3600, 2), hours=round(len(blk) * h, 2),
             ratio=round((actual + added) / max(usual, 1e-9), 3))
    return s.y, s.midnight(d), s.midnight(d + 1), P


def _new_load(s: _Series, rng: np.random.Generator) -> Injected | None:
    """A new evening appliance block every day from the onset on."""
    d = _pick_day(s.days, rng, after=MIN_AFTER_DAYS)
    if d is None:
        return None
    h, iv = s.h, s.interval_s
    per_day = round(float(rng.uniform(3.0, 5.0)), 3)
    kw = float(rng.uniform(1.5, 3.0))
    n_slots = max(1, int(round(per_day / kw / h)))
    start_s = int(rng.integers(round(16 / h), round(24 / h) - n_slots + 1)) * iv
    blk = (s.day_no >= d) & (s.sod >= start_s) & (s.sod < start_s + n_slots * iv)
    s.y[blk] += per_day / n_slots
    usual = s.usual_day(d)
    P = dict(kwh_per_day=round(per_day, 3), kw=round(per_day / n_slots / h, 3),
             start_h=round(start_s / 3600, 2), hours=round(n_slots * h, 2),
             usual_day_kwh=round(usual, 3),
             ratio=round((usual + per_day) / max(usual, 1e-9), 3))
    return s.y, s.midnight(d), None, P


def _surge_interval(s: _Series, rng: np.random.Generator) -> Injected | None:
    """The issue's interval surge: for an hour or more, >= 3x the slot's usual power
    and >= 2 kW above it (a heater, an oven, a charger left on), not one odd reading."""
    d = _pick_day(s.days, rng, after=MIN_AFTER_DAYS)
    if d is None:
        return None
    x, h, iv = s.x, s.h, s.interval_s
    n_int = int(rng.integers(round(1 / h), round(3 / h) + 1))
    slots = np.flatnonzero(s.day_no == d)
    if len(slots) < n_int:
        return None
    first = int(rng.integers(0, len(slots) - n_int + 1))
    blk = slots[first:first + n_int]
    usual = _usual_slot_kw(x, s.day_no, s.sod, d, blk, h)
    ratio, extra = float(rng.uniform(3.0, 4.0)), float(rng.uniform(2.0, 3.0))
    target = np.maximum(ratio * usual, usual + extra)
    s.y[blk] = np.maximum(x[blk], target * h)
    onset = int(s.ts[blk[0]]) - iv
    P = dict(kw=round(float(target.mean()), 3), usual_kw=round(float(usual.mean()), 3),
             hours=round(n_int * h, 2), hour=round(float(s.sod[blk[0]] - iv) / 3600, 2))
    return s.y, onset, int(s.ts[blk[-1]]), P


def _vacancy(s: _Series, rng: np.random.Generator) -> Injected | None:
    """14-28 days at the night base load."""
    n_days = int(rng.integers(14, 29))
    d = _pick_day(s.days, rng, after=max(MIN_AFTER_DAYS, n_days))
    if d is None:
        return None
    x, h, day_no, sod = s.x, s.h, s.day_no, s.sod
    before = (day_no >= d - 28) & (day_no < d)
    night = before & (sod >= 3600) & (sod < 5 * 3600)
    base_kw = float(np.quantile(x[night] / h, 0.05)) if night.any() else 0.0
    m = (day_no >= d) & (day_no < d + n_days)
    s.y[m] = base_kw * h * np.exp(rng.normal(0.0, 0.1, int(m.sum())) - 0.005)
    P = dict(days=n_days, base_kw=round(base_kw, 4), usual_day_kwh=round(s.usual_day(d), 3),
             vacant_day_kwh=round(base_kw * 24, 3))
    return s.y, s.midnight(d), s.midnight(d + n_days), P


def _level(s: _Series, kind: str, rng: np.random.Generator) -> Injected | None:
    """Every reading from the onset on scaled up (increase) or down (decrease)."""
    d = _pick_day(s.days, rng, after=MIN_AFTER_DAYS)
    if d is None:
        return None
    # Drawn values are rounded before use so that the label states them exactly.
    f = round(float(rng.uniform(1.6, 2.0) if kind == "increase" else rng.uniform(0.4, 0.6)), 4)
    s.y[s.day_no >= d] *= f
    P = dict(factor=round(f, 4), usual_day_kwh=round(s.usual_day(d), 3))
    return s.y, s.midnight(d), None, P


_SCENARIOS = {"surge_daily": _surge_daily, "new_load": _new_load,
              "surge_interval": _surge_interval, "vacancy": _vacancy}


# -- areas -------------------------------------------------------------------------------

def assign_areas(meter_ids: list[str], *, area_size: int = 10, seed: int = 0) -> np.ndarray:
    """Area index per meter: areas of ~``area_size`` meters, each holding distinct
    households where possible and a balanced mix of scenario kinds.

    The consumption-drop test compares a meter with its area's peers; copies of one
    household in one area would be peers that fall together (holidays), and an area
    full of attacked copies would look like a falling area.

    >>> a = assign_areas(["A", "A~h1", "B", "B~h1", "C", "C~h1"], area_size=2)
    >>> sorted(np.bincount(a).tolist())
    [2, 2, 2]
    """
    n = len(meter_ids)
    if n == 0:
        return np.zeros(0, np.int32)
    n_areas = max(1, -(-n // area_size))
    rng = np.random.default_rng([seed, 11])
    hh = [m.split(SEP, 1)[0] for m in meter_ids]
    kind = [m.split(SEP, 1)[1] if SEP in m else "clean" for m in meter_ids]
    kinds = sorted(set(kind))
    rng.shuffle(kinds)
    rank = {k: i for i, k in enumerate(kinds)}
    order = sorted(range(n), key=lambda i: (rank[kind[i]], rng.random()))
    size = np.zeros(n_areas, np.int64)
    lowering = np.zeros(n_areas, np.int64)
    members: list[dict[str, int]] = [dict() for _ in range(n_areas)]
    out = np.empty(n, np.int32)
    tie = rng.random(n_areas)
    for i in order:
        same = np.array([members[a].get(hh[i], 0) for a in range(n_areas)])
        low = lowering if kind[i] in LOWERING else np.zeros(n_areas, np.int64)
        a = int(np.lexsort((tie, low, size, same))[0])
        out[i] = a
        size[a] += 1
        lowering[a] += kind[i] in LOWERING
        members[a][hh[i]] = members[a].get(hh[i], 0) + 1
    return out


# -- the virtual fleet -------------------------------------------------------------------

def build_virtual(df: pd.DataFrame, *, kinds: Iterable[str] = KINDS, seed: int = 0,
                  tz: str = "Europe/London", households: Iterable[str] | None = None,
                  area_size: int = 10, min_day_kwh: float = 1.0,
                  nominal_voltage: float = 230.0) -> VirtualSet:
    """Clean copies plus one copy per (household, scenario kind), as one backtest input.

    ``df``: readings as from :func:`models.backtest.load_readings` (``ts`` = END epoch s).
    """
    kinds = tuple(kinds)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown scenario kind {k!r}: one of {', '.join(KINDS)}")
    want = None if households is None else set(households)
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    labels: list[Label] = []
    skipped: dict[str, str] = {}
    clean: list[str] = []
    iv_of: dict[str, int] = {}
    for mid, g in df.sort_values(["meter_id", "ts"], kind="stable").groupby("meter_id", sort=True):
        mid = str(mid)
        if want is not None and mid not in want:
            continue
        ts = g["ts"].to_numpy(np.int64)
        x = g["kwh"].to_numpy(np.float64)
        iv = int(g["interval_s"].iloc[0]) if "interval_s" in g else int(np.median(np.diff(ts)))
        series[mid] = (ts, x)
        iv_of[mid] = iv
        clean.append(mid)
        day_no, sod = local_clock(ts, iv, tz)
        _, e, complete = daily_energy(day_no, x, iv)
        med = float(np.median(e[complete])) if complete.any() else 0.0
        if med < min_day_kwh:
            skipped[mid] = f"median day {med:.2f} kWh < {min_day_kwh} kWh: no scenario injected"
            continue
        for kind in kinds:
            vid = f"{mid}{SEP}{kind}"
            got = inject(kind, ts, x, iv, tz, _rng(seed, mid, kind), day_no=day_no, sod=sod)
            if got is None:
                skipped[vid] = "too little data for >= 60 days of history and 14 days after"
                continue
            y, onset, end, params = got
            series[vid] = (ts, y)
            iv_of[vid] = iv
            labels.append(Label(kind, vid, mid, int(onset), None if end is None else int(end),
                                int(ts[-1]), iv, tz, params))
    ids = list(series)
    n = np.array([len(series[m][0]) for m in ids], np.int64)
    if len(ids):
        meter = np.repeat(np.arange(len(ids)), n)
        ts_all = np.concatenate([series[m][0] for m in ids])
        kwh_all = np.concatenate([series[m][1] for m in ids])
        ivs = np.repeat(np.array([iv_of[m] for m in ids], np.int64), n)
        order = np.lexsort((meter, ts_all))
        names = np.array(ids, dtype=object)
        readings = pd.DataFrame({"meter_id": names[meter[order]], "ts": ts_all[order],
                                 "kwh": kwh_all[order], "interval_s": ivs[order]})
    else:
        readings = pd.DataFrame({"meter_id": pd.Series([], dtype=object),
                                 "ts": pd.Series([], dtype=np.int64),
                                 "kwh": pd.Series([], dtype=np.float64),
                                 "interval_s": pd.Series([], dtype=np.int64)})
    fleet = synthetic_fleet(ids, nominal_voltage=nominal_voltage, area_size=area_size, seed=seed)
    area = assign_areas(fleet.meter_id, area_size=area_size, seed=seed)
    fleet.area = area
    fleet.area_id = [f"AREA{j:03d}" for j in range(int(area.max()) + 1 if len(area) else 0)]
    return VirtualSet(readings, fleet, labels, clean, skipped, tz, series)
