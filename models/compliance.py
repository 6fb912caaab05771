"""Voltage compliance the way each standard states it, over one meter's interval means.

Alerts say when someone must act; these figures say whether the supply met the standard
over the standard's own period, which is what a utility reports and a control room
watches (issue 15). Each function takes one meter's readings: ``ts`` (interval END,
epoch s), ``interval_s`` and ``voltage`` (the interval's mean, V; NaN where not
measured). Every reading is weighted by its duration, so a daylight-saving week (167 or
169 hours) and gaps in the readings are counted as they are: a missing reading is not
time within the limits, and each period reports its ``coverage`` (measured time over the
period's length) so a thin period can be told apart from a compliant one.

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

>>> import numpy as np
>>> ts = 1_700_006_400 + 900 * np.arange(1, 5)        # four quarter-hours
>>> v = np.array([230.0, 253.0, 260.0, np.nan])       # on the +10 % limit, above it, a gap
>>> w = en50160_weeks(ts, 900, v, 230.0, tz="UTC")[0]
>>> round(w["within_share"], 4), w["all_within_extremes"], round(w["coverage"], 6)
(0.6667, False, 0.004464)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.voltage import limits

_EPS_V = 1e-6  # limits are rounded to the microvolt (models.voltage.limits)


def _local(ts: np.ndarray, interval_s: np.ndarray, tz: str) -> pd.DatetimeIndex:
    """Local start time of each interval."""
    start = np.asarray(ts, np.int64) - np.asarray(interval_s, np.int64)
    return pd.to_datetime(start, unit="s", utc=True).tz_convert(tz)


def _periods(ts, interval_s, voltage, tz: str, freq: str) -> tuple[pd.DatetimeIndex, np.ndarray,
                                                                     np.ndarray, np.ndarray]:
    ts = np.asarray(ts, np.int64)
    iv = np.broadcast_to(np.asarray(interval_s, np.int64), ts.shape)
    v = np.asarray(voltage, np.float64)
    loc = _local(ts, iv, tz)
    key = loc.tz_localize(None).to_period(freq).start_time
    return key, iv, v, ~np.isnan(v)


def _length_s(start: pd.Timestamp, freq: str, tz: str) -> float:
    """Seconds in the local period starting at ``start`` (DST weeks are 167/169 h)."""
    nxt = (pd.Period(start, freq) + 1).start_time
    return float((nxt.tz_localize(tz) - start.tz_localize(tz)).total_seconds())


def _share_within(v: np.ndarray, w: np.ndarray, lo: float, hi: float) -> float:
    inside = (v >= lo - _EPS_V) & (v <= hi + _EPS_V)
    return float(w[inside].sum() / w.sum()) if w.sum() > 0 else float("nan")


def en50160_weeks(ts, interval_s, voltage, nominal: float, *, tz: str,
                  share_required: float = 0.95) -> list[dict[str, Any]]:
    """EN 50160 weekly compliance: share of measured time within Un +-10 %, whether all
    of it was within +10 % / -15 %, and whether the week complies (both)."""
    lim = limits("en50160", nominal, 1)
    key, iv, v, ok = _periods(ts, interval_s, voltage, tz, "W-SUN")
    out = []
    for start in sorted(set(key[ok])):
        sel = ok & (key == start)
        vv, w = v[sel], iv[sel].astype(np.float64)
        share = _share_within(vv, w, lim.low, lim.high)
        extremes = bool(np.all((vv >= lim.crit_low - _EPS_V) & (vv <= lim.crit_high + _EPS_V)))
        out.append({"week_start": start.date().isoformat(), "within_share": share,
                    "all_within_extremes": extremes,
                    "complies": share >= share_required and extremes,
                    "measured_s": float(w.sum()),
                    "coverage": float(w.sum()) / _length_s(start, "W-SUN", tz),
                    "min_v": float(vv.min()), "max_v": float(vv.max())})
    return out


def gbt12325_months(ts, interval_s, voltage, nominal: float, *, phases: int = 1,
                    tz: str) -> list[dict[str, Any]]:
    """GB/T 12325 monthly voltage compliance rate: time within the class's deviation
    limits over monitored time, with the time above and below them."""
    lim = limits("gbt12325", nominal, phases)
    key, iv, v, ok = _periods(ts, interval_s, voltage, tz, "M")
    out = []
    for start in sorted(set(key[ok])):
        sel = ok & (key == start)
        vv, w = v[sel], iv[sel].astype(np.float64)
        total = float(w.sum())
        out.append({"month": start.strftime("%Y-%m"),
                    "compliance_rate": _share_within(vv, w, lim.low, lim.high),
                    "above_s": float(w[vv > lim.high + _EPS_V].sum()),
                    "below_s": float(w[vv < lim.low - _EPS_V].sum()),
                    "measured_s": total, "coverage": total / _length_s(start, "M", tz)})
    return out


def ansi_c84_1_periods(ts, interval_s, voltage, nominal: float, *, tz: str,
                       freq: str = "M") -> list[dict[str, Any]]:
    """ANSI C84.1 per period (``freq``: a pandas period, monthly by default): shares of
    measured time in Range A, in Range B only, and outside Range B."""
    lim = limits("ansi_c84_1", nominal, 1)
    key, iv, v, ok = _periods(ts, interval_s, voltage, tz, freq)
    out = []
    for start in sorted(set(key[ok])):
        sel = ok & (key == start)
        vv, w = v[sel], iv[sel].astype(np.float64)
        a = _share_within(vv, w, lim.low, lim.high)
        b = _share_within(vv, w, lim.crit_low, lim.crit_high)
        out.append({"period_start": start.date().isoformat(), "range_a_share": a,
                    "range_b_only_share": b - a, "outside_b_share": 1.0 - b,
                    "measured_s": float(w.sum()), "coverage": float(w.sum()) / _length_s(start, freq, tz)})
    return out
