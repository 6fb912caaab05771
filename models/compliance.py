"""Voltage compliance the way each standard states it, over one meter's interval means.

Alerts say when someone must act; these figures say whether the supply met the standard
over the standard's own period, which is what a utility reports and a control room
watches (issue 15). Each function takes one meter's readings: ``ts`` (interval END,
epoch s), ``interval_s`` and ``voltage`` (the interval's mean, V; NaN where not
measured), and optionally ``voltage_min`` / ``voltage_max`` (the interval's extremes,
for the dip and swell table). Every reading is weighted by its duration, so a
daylight-saving week (167 or 169 hours) and gaps in the readings are counted as they
are: a missing reading is not time within the limits, and each period reports its
``coverage`` (measured time over the period's length) so a thin period can be told
apart from a compliant one.

* :func:`en50160_weeks` -- EN 50160: per week (Monday 00:00 local), the share of
  measured time within Un +-10 % (>= 95 % required) and whether all of it stayed within
  +10 % / -15 %. The standard asks for 10-minute means; 15-minute meter means are used
  as given (they smooth excursions a little, which the report says).
* :func:`gbt12325_months` -- GB/T 12325: per calendar month, the voltage compliance rate
  (电压合格率 = time within the class's deviation limits / monitored time) that utilities
  report: 220 V single-phase +7 % / -10 %, three-phase +-7 %.
* :func:`ansi_c84_1_periods` -- ANSI C84.1: per period, time in Range A, in Range B only,
  and outside Range B.

A value exactly on a limit is within it, as the standards write their ranges.

**Dips and swells** (:data:`DIP_ROWS`, :data:`SWELL_ROWS`): an interval whose minimum
fell below 0.9 Un while its mean did not is one dip, counted in the row of EN 50160's
residual-voltage table its minimum falls in (the 5-40 % row split at IEEE 1159's 10 %
interruption bound, so the table also reads as IEEE 1159 sag / interruption counts); the
same for swells above 1.1 Un. A mean below 0.9 Un is a long-duration undervoltage, not a
dip. Interval extremes resolve the residual voltage but not the duration (under an
interval), nor more than one dip per interval: the table's duration columns stay empty.

**Online** (:class:`ComplianceDetector`): the same figures accumulated per reading in a
few integer counters per meter and per transformer area for the configured standard's
current and last completed period, and a ``voltage/noncompliant_period`` finding once
per period that fails the standard's test (see the class).

>>> import numpy as np
>>> ts = 1_700_006_400 + 900 * np.arange(1, 5)        # four quarter-hours
>>> v = np.array([230.0, 253.0, 260.0, np.nan])       # on the +10 % limit, above it, a gap
>>> w = en50160_weeks(ts, 900, v, 230.0, tz="UTC")[0]
>>> round(w["within_share"], 4), w["all_within_extremes"], round(w["coverage"], 6)
(0.6667, False, 0.004464)
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from models.base import AreaView, Batch, BitConditions, Finding, Fleet, any_
from models.localtime import LocalCalendar
from models.voltage import INTERRUPTION_PU, SAG_PU, STANDARDS, SWELL_PU

_EPS_V = 1e-6  # limits are rounded to the microvolt (models.voltage.limits)

#: Standards whose compliance is accumulated online, with their period and code in state.
PERIOD_FREQ = {"en50160": "W-SUN", "gbt12325": "M", "ansi_c84_1": "M"}
_CODE = {"en50160": 1, "gbt12325": 2, "ansi_c84_1": 3}
#: Residual voltage rows (% of Un, low <= u < high) of the dip table, and of the swell
#: table (high > u > low; ``120+``: u >= 120).
DIP_ROWS = ("80-90", "70-80", "40-70", "10-40", "5-10", "0-5")
SWELL_ROWS = ("110-120", "120+")
EVENT_ROWS = len(DIP_ROWS) + len(SWELL_ROWS)
_DIP_EDGES = (0.05, INTERRUPTION_PU, 0.40, 0.70, 0.80, SAG_PU)  # ascending; the last: no dip
_SWELL_EDGE = 1.2
#: EN 50160's own rows (its 40 > u >= 5 row is our 10-40 and 5-10 together).
EN50160_DIP_ROWS = {"90>u>=80": ("80-90",), "80>u>=70": ("70-80",), "70>u>=40": ("40-70",),
                    "40>u>=5": ("10-40", "5-10"), "5>u": ("0-5",)}


# -- one period's figures from its counters (shared by the batch and online paths) ----

def figures(standard: str, start: pd.Timestamp, length_s: float, meas: float, b1: float,
            b2: float, events: np.ndarray | None = None, *,
            required: float = 0.95) -> dict[str, Any]:
    """One period's figures from its counters: ``meas`` measured seconds, ``b1`` seconds
    within the inner band (EN 50160 +-10 %, GB/T 12325's class limits, ANSI Range A),
    ``b2`` within the outer one (EN 50160 +10/-15 %, GB/T: not above the upper limit,
    ANSI Range B); ``events`` the dip and swell table counts."""
    meas, b1, b2 = float(meas), float(b1), float(b2)
    share = b1 / meas if meas > 0 else float("nan")
    ok_share = meas > 0 and b1 >= required * meas - 1e-9
    cov = meas / length_s
    if standard == "en50160":
        out = {"week_start": start.date().isoformat(), "within_share": share,
               "all_within_extremes": b2 >= meas, "complies": ok_share and b2 >= meas}
    elif standard == "gbt12325":
        out = {"month": start.strftime("%Y-%m"), "compliance_rate": share,
               "above_s": meas - b2, "below_s": b2 - b1, "complies": ok_share}
    elif standard == "ansi_c84_1":
        out = {"period_start": start.date().isoformat(), "range_a_share": share,
               "range_b_only_share": (b2 - b1) / meas if meas > 0 else float("nan"),
               "outside_b_share": (meas - b2) / meas if meas > 0 else float("nan"),
               "complies": ok_share and b2 >= meas}
    else:
        raise ValueError(f"unknown voltage standard {standard!r}; one of {sorted(PERIOD_FREQ)}")
    out |= {"outside_outer_share": (meas - b2) / meas if meas > 0 else float("nan"),
            "measured_s": meas, "coverage": cov}
    if events is not None:
        ev = [int(x) for x in events]
        out["dips"] = dict(zip(DIP_ROWS, ev[:len(DIP_ROWS)]))
        out["swells"] = dict(zip(SWELL_ROWS, ev[len(DIP_ROWS):]))
    return out


def ieee1159_counts(fig: dict[str, Any]) -> dict[str, int]:
    """IEEE 1159 sag / swell / interruption counts from a period's dip and swell table
    (an interruption is below 10 % of Un)."""
    d, s = fig.get("dips", {}), fig.get("swells", {})
    return {"sag": sum(d.get(r, 0) for r in DIP_ROWS[:4]),
            "interruption": sum(d.get(r, 0) for r in DIP_ROWS[4:]),
            "swell": sum(s.values())}


def band_limits(standard: str, nominal, phases) -> tuple[np.ndarray, ...]:
    """Per meter (arrays broadcast): the low and the high bounds in volts of the three
    counters (measured: any number; b1; b2) as (..., 3) arrays, then the dip and swell
    thresholds (0.9 / 1.1 Un); each with the tolerance applied (a value on a limit is
    within it)."""
    s = STANDARDS[standard]
    nom = np.asarray(nominal, np.float64)
    three = np.asarray(phases) == 3
    r = lambda pu: np.round(nom * pu, 6)  # noqa: E731  (as models.voltage.limits rounds)
    lo1, hi1 = r(np.where(three, s.low[1], s.low[0])), r(np.where(three, s.high[1], s.high[0]))
    lo2, hi2 = r(s.crit_low + 0 * nom), r(s.crit_high + 0 * nom)
    if standard == "gbt12325":  # b2: not above the upper limit
        lo2, hi2 = np.full_like(lo1, -np.inf), hi1
    inf = np.full_like(lo1, np.inf)
    # columns: measured (any number), b1, b2
    lo = np.stack([-inf, lo1 - _EPS_V, lo2 - _EPS_V], -1)
    hi = np.stack([inf, hi1 + _EPS_V, hi2 + _EPS_V], -1)
    return lo, hi, r(SAG_PU + 0 * nom) - _EPS_V, r(SWELL_PU + 0 * nom) + _EPS_V


def interval_counters(v, vmin, vmax, w, nom, lim) -> tuple[np.ndarray, ...]:
    """Per reading: its seconds counted as (measured, within b1, within b2), shape
    (n, 3), and the event row of its dip and swell (-1: none; both None when there is
    none at all), from mean ``v``, extremes, duration ``w`` and :func:`band_limits`."""
    lo, hi, sag, swl = lim
    vv = v[:, None]
    # one pass for the three counters; NaN compares False: not measured, in no band
    cnt = np.where((vv >= lo) & (vv <= hi), w[:, None], 0)
    dip_row = swell_row = None
    if not any_((vmin < sag) | (vmax > swl)):  # the usual interval: no dip, no swell
        return cnt, dip_row, swell_row
    dip_row = np.full(len(v), -1, np.int64)
    swell_row = dip_row.copy()
    dip, swell = (vmin < sag) & ~(v < sag), (vmax > swl) & ~(v > swl)
    if any_(dip):  # classify those rows only
        i = np.flatnonzero(dip)
        nom_i = np.asarray(nom, np.float64)[i]
        edges = np.round(nom_i[:, None] * np.asarray(_DIP_EDGES), 6) - _EPS_V
        dip_row[i] = len(_DIP_EDGES) - 1 - (vmin[i][:, None] >= edges).sum(-1)
    if any_(swell):
        i = np.flatnonzero(swell)
        high = vmax[i] >= np.round(np.asarray(nom, np.float64)[i] * _SWELL_EDGE, 6) - _EPS_V
        swell_row[i] = len(DIP_ROWS) + high
    return cnt, dip_row, swell_row


def _event_table(dip_row: np.ndarray | None, swell_row: np.ndarray | None) -> np.ndarray:
    if dip_row is None:
        return np.zeros(EVENT_ROWS, np.int64)
    rows = np.concatenate([dip_row[dip_row >= 0], swell_row[swell_row >= 0]])
    return np.bincount(rows, minlength=EVENT_ROWS)


# -- batch: one meter's series --------------------------------------------------------

def _local(ts: np.ndarray, interval_s: np.ndarray, tz: str) -> pd.DatetimeIndex:
    """Local start time of each interval."""
    start = np.asarray(ts, np.int64) - np.asarray(interval_s, np.int64)
    return pd.to_datetime(start, unit="s", utc=True).tz_convert(tz)


def _length_s(start: pd.Timestamp, freq: str, tz: str) -> float:
    """Seconds in the local period starting at ``start`` (DST weeks are 167/169 h)."""
    nxt = (pd.Period(start, freq) + 1).start_time
    return float((nxt.tz_localize(tz) - start.tz_localize(tz)).total_seconds())


def periods(standard: str, ts, interval_s, voltage, nominal: float, *, tz: str,
            phases: int = 1, voltage_min=None, voltage_max=None, freq: str | None = None,
            required: float = 0.95) -> list[dict[str, Any]]:
    """Figures per local period of the standard (``freq`` overrides it: a pandas period)
    for one meter's series; the events table when extremes are given."""
    freq = freq or PERIOD_FREQ[standard]
    ts = np.asarray(ts, np.int64)
    iv = np.broadcast_to(np.asarray(interval_s, np.int64), ts.shape)
    v = np.asarray(voltage, np.float64)
    nan = np.full(len(v), np.nan)
    vmin = nan if voltage_min is None else np.asarray(voltage_min, np.float64)
    vmax = nan if voltage_max is None else np.asarray(voltage_max, np.float64)
    nom = np.full(len(v), float(nominal))
    lim = band_limits(standard, nom, np.full(len(v), phases))
    cnt, dip_row, swell_row = interval_counters(v, vmin, vmax, iv, nom, lim)
    if dip_row is None:  # no dip or swell anywhere in the series
        dip_row = swell_row = np.full(len(v), -1, np.int64)
    key = _local(ts, iv, tz).tz_localize(None).to_period(freq).start_time
    out = []
    for start in sorted(set(key[~np.isnan(v)])):
        sel = key == start
        ev = _event_table(dip_row[sel], swell_row[sel]) if voltage_min is not None or \
            voltage_max is not None else None
        f = figures(standard, start, _length_s(start, freq, tz), *cnt[sel].sum(0), ev,
                    required=required)
        if standard == "en50160":
            vv = v[sel & ~np.isnan(v)]
            f |= {"min_v": float(vv.min()), "max_v": float(vv.max())}
        out.append(f)
    return out


def en50160_weeks(ts, interval_s, voltage, nominal: float, *, tz: str,
                  share_required: float = 0.95, **extremes) -> list[dict[str, Any]]:
    """EN 50160 weekly compliance: share of measured time within Un +-10 %, whether all
    of it was within +10 % / -15 %, and whether the week complies (both)."""
    return periods("en50160", ts, interval_s, voltage, nominal, tz=tz,
                   required=share_required, **extremes)


def gbt12325_months(ts, interval_s, voltage, nominal: float, *, phases: int = 1,
                    tz: str, required: float = 0.95, **extremes) -> list[dict[str, Any]]:
    """GB/T 12325 monthly voltage compliance rate: time within the class's deviation
    limits over monitored time, with the time above and below them. ``complies``: the
    rate reaches ``required`` (the utility's target; the standard sets none)."""
    return periods("gbt12325", ts, interval_s, voltage, nominal, tz=tz, phases=phases,
                   required=required, **extremes)


def ansi_c84_1_periods(ts, interval_s, voltage, nominal: float, *, tz: str,
                       freq: str = "M", required: float = 0.95, **extremes) -> list[dict[str, Any]]:
    """ANSI C84.1 per period (``freq``: a pandas period, monthly by default): shares of
    measured time in Range A, in Range B only, and outside Range B. ``complies``: no
    time outside Range B and at least ``required`` in Range A (the utility's target)."""
    return periods("ansi_c84_1", ts, interval_s, voltage, nominal, tz=tz, freq=freq,
                   required=required, **extremes)


# -- online: the configured standard's counters per meter and per area ----------------

def _slot_fields(p: str, count: str, evc: str) -> tuple[tuple, ...]:
    # cnt: seconds measured, within the inner band (b1), within the outer band (b2)
    return ((f"{p}key", "<u4"), (f"{p}cnt", count, (3,)), (f"{p}ev", evc, (EVENT_ROWS,)))


class ComplianceDetector(BitConditions):
    """The configured standard's compliance, accumulated per reading.

    Per meter (66 bytes): the current and the last completed local period (EN 50160:
    the week from Monday 00:00; GB/T 12325 and ANSI C84.1: the month), each as its key
    (Monday's date ordinal / ``yyyymm``), measured seconds, seconds within the inner
    and the outer band (as :func:`figures` reads them) and the dip and swell table.
    Per transformer area: the same summed over its customer meters (meter-seconds),
    with the meters measured and the meters failing in the period. Late readings count
    in the period they belong to when it is the current or the last one.

    **Finding** ``voltage/noncompliant_period`` (action ``point``, ``start`` = the
    period's start, so its alert id is one per meter and period): as soon as the period
    cannot comply any more, whatever the rest of it brings (time beyond the outer band
    for EN 50160 and ANSI; time outside the inner band over ``1 - required`` of the
    period's whole length), else when the next period starts if the completed one
    failed with at least ``min_coverage`` of it measured. When at least
    ``area_min_meters`` and ``area_share`` of an area's reporting meters fail in one
    step, or the area has already failed in that period, one area finding replaces
    theirs.

    >>> import numpy as np
    >>> from models.base import AreaView, Batch, Fleet, compose_dtype
    >>> fleet = Fleet.simple(1, nominal_voltage=230.0)
    >>> det = ComplianceDetector("en50160", LocalCalendar("UTC", None))
    >>> st = np.zeros(1, compose_dtype(det.fields)); det.init(st, fleet, np.arange(1))
    >>> ast = np.zeros(1, compose_dtype(det.area_fields)); det.init_area(ast, fleet, np.arange(1))
    >>> out = []
    >>> for k, v in enumerate([230.0, 190.0]):   # 190 V: below -15 %, the week has failed
    ...     b = Batch.from_columns(1, meter=[0], ts=[1_700_006_400 + 900 * (k + 1)], voltage=[v])
    ...     det.step(st, b, fleet, AreaView(np.array([0]), np.zeros(1, np.int64), ast), out)
    >>> [(f.subtype, f.action, f.evidence["verdict"], f.evidence["all_within_extremes"]) for f in out]
    [('noncompliant_period', 'point', 'certain', False)]
    >>> det.meter_figures(st[0])["within_share"]
    0.5
    """

    fields: tuple[tuple, ...] = (("cp_std", "u1"), ("cp_flag", "u1"),
                                 *_slot_fields("cp_", "<u4", "<u2"),
                                 *_slot_fields("cp_p", "<u4", "<u2"))
    area_fields: tuple[tuple, ...] = (("ca_std", "u1"), ("ca_flag", "u1"), ("ca_pflag", "u1"),
                                      *_slot_fields("ca_", "<u8", "<u4"),
                                      ("ca_meters", "<u2"), ("ca_fail", "<u2"),
                                      *_slot_fields("ca_p", "<u8", "<u4"),
                                      ("ca_pmeters", "<u2"), ("ca_pfail", "<u2"))

    def __init__(self, standard: str = "gbt12325", calendar: LocalCalendar | None = None, *,
                 required: float = 0.95, min_coverage: float = 0.5, area_share: float = 0.5,
                 area_min_meters: int = 3) -> None:
        if standard not in PERIOD_FREQ:
            raise ValueError(f"unknown voltage standard {standard!r}; one of {sorted(PERIOD_FREQ)}")
        if not 0 < required <= 1 or not 0 <= min_coverage <= 1:
            raise ValueError("required must be in (0, 1] and min_coverage in [0, 1]")
        self.standard, self.code = standard, _CODE[standard]
        self.weekly = PERIOD_FREQ[standard] == "W-SUN"
        self.calendar = calendar or LocalCalendar("UTC", None)
        self.required, self.min_coverage = required, min_coverage
        self.area_share, self.area_min_meters = area_share, area_min_meters
        self._lim: tuple | None = None  # (fleet, band limits per fleet row)
        self._periods: dict[int, tuple[int, int, pd.Timestamp]] = {}
        self._keys: dict[tuple[int, int], int] = {}

    # -- state ---------------------------------------------------------------------
    def init(self, st: np.ndarray, fleet: Fleet, meters: np.ndarray) -> None:
        for f in self.fields:
            st[f[0]] = 0
        st["cp_std"] = self.code

    def init_area(self, ast: np.ndarray, fleet: Fleet, areas: np.ndarray) -> None:
        for f in self.area_fields:
            ast[f[0]] = 0
        ast["ca_std"] = self.code

    # -- periods -------------------------------------------------------------------
    def key(self, ts: np.ndarray, interval_s: np.ndarray) -> np.ndarray:
        """The local period of each interval (by its start): Monday's ordinal or yyyymm."""
        ts, iv = np.asarray(ts, np.int64), np.asarray(interval_s, np.int64)
        if len(ts) and not np.count_nonzero(ts != ts[0]) and not np.count_nonzero(iv != iv[0]):
            # the usual batch: one interval end (the calendar caches it, but builds arrays)
            k = self._keys.get((int(ts[0]), int(iv[0])))
            if k is None:
                if len(self._keys) > 100_000:
                    self._keys.clear()
                k = self._keys[(int(ts[0]), int(iv[0]))] = int(self._key(ts[:1], iv[:1])[0])
            return np.full(len(ts), k, np.int64)
        return self._key(ts, iv)

    def _key(self, ts: np.ndarray, iv: np.ndarray) -> np.ndarray:
        day, _, _, month, _ = self.calendar.lookup(ts, iv)
        return day - (day - 1) % 7 if self.weekly else month

    def period(self, key: int) -> tuple[int, int, pd.Timestamp]:
        """(start epoch s, length s, local start) of a period key."""
        hit = self._periods.get(key)
        if hit is None:
            if self.weekly:
                d0, d1 = key, key + 7
            else:
                y, m = divmod(key, 100)
                d0 = date(y, m, 1).toordinal()
                d1 = date(y + m // 12, m % 12 + 1, 1).toordinal()
            t0, t1 = self.calendar.day_start_ts(d0), self.calendar.day_start_ts(d1)
            hit = self._periods[key] = (t0, t1 - t0, pd.Timestamp(date.fromordinal(d0)))
        return hit

    def _figures(self, rec, p: str) -> dict[str, Any] | None:
        key = int(rec[p + "key"])
        if key == 0 or int(rec[p[:3] + "std"]) != self.code:
            return None
        t0, length, start = self.period(key)
        f = figures(self.standard, start, length, *(int(x) for x in rec[p + "cnt"]),
                    rec[p + "ev"], required=self.required)
        return f | {"standard": self.standard, "period_start_ts": t0, "period_s": length}

    def meter_figures(self, rec, previous: bool = False) -> dict[str, Any] | None:
        """A meter's figures (a state record) for its current or last completed period."""
        return self._figures(rec, "cp_p" if previous else "cp_")

    def area_figures(self, rec, previous: bool = False) -> dict[str, Any] | None:
        """An area's pooled figures (an area state record), with its meters measured
        and failing in the period."""
        p = "ca_p" if previous else "ca_"
        f = self._figures(rec, p)
        if f is not None:
            n = int(rec[p + "meters"])
            # meter-seconds over the period of each meter measured in it
            f |= {"meters": n, "meters_failing": int(rec[p + "fail"]),
                  "coverage": f["measured_s"] / (n * f["period_s"]) if n else 0.0}
        return f

    # -- step ----------------------------------------------------------------------
    def _counters(self, batch: Batch, fleet: Fleet) -> tuple:
        """Per reading: measured s, s within b1 and b2, and its dip/swell table row
        counts (None when the batch holds no dip or swell: the usual case)."""
        if self._lim is None or self._lim[0] is not fleet:
            lo, hi, sag, swl = band_limits(self.standard, fleet.nominal_voltage, fleet.phases)
            # one row per fleet meter, so a batch gathers its limits in one take
            self._lim = (fleet, np.concatenate([lo, hi, sag[:, None], swl[:, None]], 1))
        m = batch.meter
        t = self._lim[1][m]
        lim = (t[:, 0:3], t[:, 3:6], t[:, 6], t[:, 7])
        cnt, dip, swell = interval_counters(
            batch.voltage, batch.voltage_min, batch.voltage_max,
            batch.interval_s.astype(np.uint32), fleet.nominal_voltage[m], lim)
        ev = None
        if dip is not None and (any_(dip >= 0) or any_(swell >= 0)):
            ev = np.zeros((len(m), EVENT_ROWS), np.int64)
            for row in (dip, swell):
                i = np.flatnonzero(row >= 0)
                ev[i, row[i]] += 1
        return cnt, ev

    @staticmethod
    def _add(st: np.ndarray, p: str, c: tuple, sel: np.ndarray | None, cap: int) -> None:
        """Add counters ``c`` (uint32 seconds) to slot ``p`` of the rows ``sel`` (None: all)."""
        cnt, ev = c
        st[p + "cnt"] += cnt if sel is None else np.where(sel[:, None], cnt, np.uint32(0))
        if ev is not None:
            add = ev if sel is None else ev * sel[:, None]
            st[p + "ev"] = np.minimum(st[p + "ev"] + add, cap)

    def _fails(self, cnt, length, final: bool) -> np.ndarray:
        """Periods that fail (counters ``cnt``, (n, 3)): ``final`` judged on what was
        measured (with enough of the period measured), else certain to fail whatever the
        rest brings."""
        meas, b1, b2 = np.asarray(cnt, np.float64).T
        outer = (b2 < meas) if self.standard != "gbt12325" else np.zeros(meas.shape, bool)
        if final:
            enough = (meas > 0) & (meas >= self.min_coverage * length)
            return enough & (outer | (b1 < self.required * meas - 1e-9))
        return outer | (meas - b1 > (1.0 - self.required) * length + 1e-9)

    def _lengths(self, keys: np.ndarray) -> np.ndarray:
        return np.array([self.period(int(k))[1] if k else 1 for k in keys], np.float64)

    def _roll(self, st: np.ndarray, key: np.ndarray) -> list[tuple[int, int, str]]:
        """Meters entering a new period: judge the completed one if not yet reported,
        make it the last period and start the new one from zero."""
        cur = st["cp_key"].astype(np.int64)
        reset = st["cp_std"] != self.code  # a new standard: what was counted is not its
        new = (key != cur) | reset
        if not any_(new):
            return []
        done = np.flatnonzero(new & ~reset & (cur > 0) & ((st["cp_flag"] & 1) == 0))
        cands = []
        if len(done):
            sub = st[done]
            bad = self._fails(sub["cp_cnt"], self._lengths(cur[done]), final=True)
            cands = [(int(i), int(cur[i]), "final") for i in done[bad]]
        keep = new & ~reset
        for f in ("key", "cnt", "ev"):
            k = (keep, reset, new) if f == "key" else (keep[:, None], reset[:, None], new[:, None])
            st["cp_p" + f] = np.where(k[0], st["cp_" + f], np.where(k[1], 0, st["cp_p" + f]))
            st["cp_" + f] = np.where(k[2], 0, st["cp_" + f])
        st["cp_key"] = np.where(new, key, cur)
        st["cp_flag"] = np.where(new, 0, st["cp_flag"])
        st["cp_std"] = self.code
        return cands

    def _roll_areas(self, ast: np.ndarray, a_key: np.ndarray) -> None:
        cur = ast["ca_key"].astype(np.int64)
        reset = ast["ca_std"] != self.code
        roll = (a_key > cur) | reset
        if not any_(roll):
            return
        keep = roll & ~reset
        for f in ("key", "cnt", "ev", "meters", "fail", "flag"):
            k = (keep[:, None], roll[:, None], reset[:, None]) if f in ("cnt", "ev") else (keep, roll, reset)
            ast["ca_p" + f] = np.where(k[0], ast["ca_" + f], np.where(k[2], 0, ast["ca_p" + f]))
            ast["ca_" + f] = np.where(k[1], 0, ast["ca_" + f])
        ast["ca_key"] = np.where(roll, a_key, cur)
        ast["ca_std"] = self.code

    def _area_add(self, areas: AreaView, key: np.ndarray, c: tuple, sel: np.ndarray,
                  fresh: np.ndarray) -> None:
        """Add customer meters' counters to their area's period (current or last)."""
        ast, pos, na = areas.st, np.asarray(areas.pos, np.intp), len(areas.area)
        cnt, ev = c
        for p in ("ca_", "ca_p"):
            # the stream's case, one area per call: no gather of the area's key
            s = sel & (key == (int(ast[p + "key"][0]) if na == 1 else ast[p + "key"][pos]))
            if not any_(s):
                continue
            if na == 1:
                one = s.astype(np.uint64)  # a product sums the rows: 10x a masked sum
                ast[p + "cnt"] += one @ cnt
                ast[p + "meters"] += np.uint16(np.count_nonzero(fresh & s))
                if ev is not None:
                    ast[p + "ev"] += (one.astype(np.int64) @ ev).astype(np.uint32)
                continue
            tot = lambda x: np.bincount(pos, weights=np.where(s, x, 0), minlength=na)  # noqa: E731
            for j in range(3):
                ast[p + "cnt"][:, j] += tot(cnt[:, j]).astype(np.uint64)
            ast[p + "meters"] += tot(fresh).astype(np.uint16)
            if ev is not None:
                for r in range(EVENT_ROWS):
                    ast[p + "ev"][:, r] += tot(ev[:, r]).astype(np.uint32)

    def step(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView,
             out: list[Finding]) -> None:
        if len(batch) == 0:
            return
        key = self.key(batch.ts, batch.interval_s)
        cands = self._roll(st, key)
        c = self._counters(batch, fleet)
        fresh = (st["cp_cnt"][:, 0] == 0) & (c[0][:, 0] > 0)
        self._add(st, "cp_", c, None, 0xFFFF)
        if len(areas.area):
            if len(areas.area) == 1:  # the stream's case (ufunc.at costs ~10 us)
                a_key = key.max(keepdims=True)
            else:
                a_key = np.zeros(len(areas.area), np.int64)
                np.maximum.at(a_key, np.asarray(areas.pos, np.intp), key)
            self._roll_areas(areas.st, a_key)
            self._area_add(areas, key, c, ~fleet.is_area_meter[batch.meter], fresh)
        # A period only gets closer to failing with a reading outside the inner band (a
        # late one is judged with the next such reading, or when the period ends).
        if any_(c[0][:, 1] < c[0][:, 0]):
            open_ = (st["cp_flag"] & 1) == 0
            bad = open_ & self._fails(st["cp_cnt"], self._lengths(key), final=False)
            cands += [(int(i), int(key[i]), "certain") for i in np.flatnonzero(bad)]
            st["cp_flag"] |= bad.astype(np.uint8)
        if cands:
            self._emit(cands, st, batch, fleet, areas, out)

    def late(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView) -> None:
        """A late reading counts in its period if that is the meter's current or last."""
        if len(batch) == 0:
            return
        key = self.key(batch.ts, batch.interval_s)
        c = self._counters(batch, fleet)
        ok = st["cp_std"] == self.code
        for p in ("cp_", "cp_p"):
            self._add(st, p, c, ok & (key == st[p + "key"]), 0xFFFF)
        if len(areas.area):
            self._area_add(areas, key, c, ok & ~fleet.is_area_meter[batch.meter],
                           np.zeros(len(batch), bool))

    # -- findings ------------------------------------------------------------------
    def _emit(self, cands: list[tuple[int, int, str]], st: np.ndarray, batch: Batch,
              fleet: Fleet, areas: AreaView, out: list[Finding]) -> None:
        """Meter findings, or one area finding for an area whose meters fail together."""
        na = len(areas.area)
        rep = np.bincount(np.asarray(areas.pos, np.intp), minlength=na) if na else None
        groups: dict[tuple[int, int], list[tuple[int, str]]] = {}
        for i, key, kind in cands:
            groups.setdefault((int(areas.pos[i]) if na else -1, key), []).append((i, kind))
        for (a, key), items in groups.items():
            p = None
            if a >= 0:
                ast = areas.st
                p = "ca_" if key == ast["ca_key"][a] else "ca_p" if key == ast["ca_pkey"][a] else None
            if p is not None:
                ast[p + "fail"][a] = min(int(ast[p + "fail"][a]) + len(items), 0xFFFF)
                flag = p + "flag"
                done = bool(ast[flag][a] & 1)
                many = len(items) >= max(self.area_min_meters, self.area_share * rep[a])
                if done or many:
                    if not done:
                        ast[flag][a] |= 1
                        out.append(self._area_finding(areas, a, p, items, rep[a], batch))
                    continue  # the area's finding covers its meters
            for i, kind in items:
                out.append(self._meter_finding(st[i], i, kind, batch, fleet))

    def _evidence(self, fig: dict[str, Any], kind: str) -> dict[str, Any]:
        share = fig.get("within_share", fig.get("compliance_rate", fig.get("range_a_share")))
        ev = {k: v for k, v in fig.items() if k not in ("period_start_ts", "period_s")}
        return ev | {"verdict": kind, "required_share": self.required,
                     "share_within": round(float(share), 6),
                     "period": fig.get("week_start", fig.get("month", fig.get("period_start")))}

    def _meter_finding(self, rec, i: int, kind: str, batch: Batch, fleet: Fleet) -> Finding:
        fig = self.meter_figures(rec, previous=kind == "final")
        ev = self._evidence(fig, kind) | {"nominal_v": float(fleet.nominal_voltage[batch.meter[i]]),
                                          "scope": "meter"}
        return Finding("voltage", "noncompliant_period", "point", "meter", int(batch.meter[i]),
                       int(fig["period_start_ts"]), int(batch.ts[i]), "warning",
                       max(0.0, (self.required - ev["share_within"]) * 100.0), ev)

    def _area_finding(self, areas: AreaView, a: int, p: str, items: list, rep: int,
                      batch: Batch) -> Finding:
        fig = self.area_figures(areas.st[a], previous=p == "ca_p")
        kind = "final" if all(k == "final" for _, k in items) else "certain"
        ev = self._evidence(fig, kind) | {"scope": "area", "meters_affected": len(items),
                                          "meters_reporting": int(rep)}
        ts = int(batch.ts[np.asarray(areas.pos) == a].max())
        return Finding("voltage", "noncompliant_period", "point", "area", int(areas.area[a]),
                       int(fig["period_start_ts"]), ts, "warning",
                       max(0.0, (self.required - ev["share_within"]) * 100.0), ev)


# -- documents for the console (the worker's web views) -------------------------------

def _json_safe(fig: dict[str, Any] | None) -> dict[str, Any] | None:
    """NaN (a period without measured time) is not JSON: None instead."""
    if fig is None:
        return None
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in fig.items()}


def meter_doc(det: ComplianceDetector, rec) -> dict[str, Any]:
    """A meter's compliance as the worker serves it: the standard, the current and the
    last completed period's figures (None when there is none), and whether the current
    period has already failed (reported)."""
    return {"standard": det.standard, "required_share": det.required,
            "current": _json_safe(det.meter_figures(rec)),
            "previous": _json_safe(det.meter_figures(rec, previous=True)),
            "current_failed": bool(int(rec["cp_flag"]) & 1)}


def area_doc(det: ComplianceDetector, area_rec, meters: list[tuple[str, str | None, Any]]
             ) -> dict[str, Any]:
    """An area's pooled compliance and its customer meters' (``meters``: (meter id,
    customer id, state record)), worst current share first."""
    rows = []
    for mid, cid, rec in meters:
        d = meter_doc(det, rec)
        rows.append({"meter_id": mid, "customer_id": cid, "current": d["current"],
                     "current_failed": d["current_failed"]})
    share = SHARE_OF[det.standard]
    rows.sort(key=lambda r: (r["current"] is None, (r["current"] or {}).get(share) or 0.0))
    return {"standard": det.standard, "required_share": det.required, "share_key": share,
            "current": _json_safe(det.area_figures(area_rec)),
            "previous": _json_safe(det.area_figures(area_rec, previous=True)),
            "meters": rows}


#: The figure each standard's compliance is read from (its inner-band share).
SHARE_OF = {"en50160": "within_share", "gbt12325": "compliance_rate", "ansi_c84_1": "range_a_share"}
