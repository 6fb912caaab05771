"""False-data theft attacks on daily load profiles (Jokar et al., 2016).

P. Jokar, N. Arianpoo, V. C. M. Leung, "Electricity Theft Detection in AMI Using
Customers' Consumption Patterns", IEEE Trans. Smart Grid 7(1), 2016, define six ways a
dishonest customer (or a hacked meter) can rewrite one day of interval readings
``x = (x_1, ..., x_T)``:

====  ===============================  =========================================
h1    ``a * x_t``                      a ~ U(0.1, 0.8), one value per attack
h2    ``0`` inside ``[t_s, t_e)``       window fixed per attack, 4-12 h long
h3    ``g_t * x_t``                    g_t ~ U(0.1, 0.8) drawn per reading
h4    ``g_t * mean(x)``                g_t ~ U(0.1, 0.8) drawn per reading
h5    ``mean(x)``                      flat: same daily total, no shape
h6    ``x_{T-t}``                      the day reversed: same total, peaks moved
====  ===============================  =========================================

h1-h4 lower the billed energy; h5 and h6 keep the daily total and only move energy to
cheaper hours (they pay off under time-of-use tariffs). A persistent thief applies the
same attack day after day, so :class:`Attack` draws the per-attack parameters once and
:meth:`Attack.apply` reuses them; the per-reading factors of h3/h4 are drawn anew each
day, as in the paper.

Pure numpy: used both by the fleet simulator (models/evaluate/sim.py) and by offline backtests.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Callable
from zoneinfo import ZoneInfo

import numpy as np

KINDS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Which alert a detector should raise for each attack: h1-h3 mostly remove energy,
# h4-h6 mostly reshape the day (h5/h6 keep its total exactly).
ALERT_SUBTYPE = {
    "h1": "consumption_drop", "h2": "consumption_drop", "h3": "consumption_drop",
    "h4": "profile_distortion", "h5": "profile_distortion", "h6": "profile_distortion",
}

LOW, HIGH = 0.1, 0.8  # the paper's range for the scaling factors
MIN_OFF_H, MAX_OFF_H = 4.0, 12.0  # h2 window length, hours


def _day(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"one day of readings must be 1-D, got shape {x.shape}")
    return x


def h1(x: Any, rng: np.random.Generator, a: float | None = None) -> np.ndarray:
    """Scale the whole day by one factor ``a`` ~ U(0.1, 0.8).

    >>> import numpy as np
    >>> y = h1(np.ones(4), np.random.default_rng(0), a=0.5)
    >>> y.tolist()
    [0.5, 0.5, 0.5, 0.5]
    """
    if a is None:
        a = rng.uniform(LOW, HIGH)
    return _day(x) * a


def h2_window(n: int, start_h: float, duration_h: float) -> slice:
    """The slots of an ``n``-slot day covered by ``[start_h, start_h + duration_h)``."""
    slot_h = 24.0 / n
    i0 = int(round(start_h / slot_h))
    i1 = int(round((start_h + duration_h) / slot_h))
    return slice(max(i0, 0), min(i1, n))


def h2_draw(rng: np.random.Generator, min_h: float = MIN_OFF_H,
            max_h: float = MAX_OFF_H) -> tuple[float, float]:
    """(start_h, duration_h) of an h2 window; the window always fits inside the day."""
    duration = rng.uniform(min_h, max_h)
    start = rng.uniform(0.0, 24.0 - duration)
    return float(start), float(duration)


def h2(x: Any, rng: np.random.Generator, start_h: float | None = None,
       duration_h: float | None = None) -> np.ndarray:
    """Zero the readings inside a window of 4-12 hours.

    >>> import numpy as np
    >>> h2(np.ones(24), np.random.default_rng(0), start_h=2, duration_h=4).tolist()[:8]
    [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    """
    x = _day(x).copy()
    if start_h is None or duration_h is None:
        start_h, duration_h = h2_draw(rng)
    x[h2_window(len(x), start_h, duration_h)] = 0.0
    return x


def h3(x: Any, rng: np.random.Generator) -> np.ndarray:
    """Scale each reading by its own factor ``g_t`` ~ U(0.1, 0.8).

    >>> import numpy as np
    >>> y = h3(np.full(48, 2.0), np.random.default_rng(0))
    >>> bool(((y >= 0.2) & (y <= 1.6)).all())
    True
    """
    x = _day(x)
    return x * rng.uniform(LOW, HIGH, size=len(x))


def h4(x: Any, rng: np.random.Generator) -> np.ndarray:
    """Each reading becomes ``g_t * mean(x)``, ``g_t`` ~ U(0.1, 0.8).

    >>> import numpy as np
    >>> y = h4(np.arange(48.0), np.random.default_rng(0))
    >>> bool(((y >= 0.1 * 23.5) & (y <= 0.8 * 23.5)).all())
    True
    """
    x = _day(x)
    return x.mean() * rng.uniform(LOW, HIGH, size=len(x))


def h5(x: Any, rng: np.random.Generator | None = None) -> np.ndarray:
    """The day's mean at every reading (the daily total is unchanged).

    >>> import numpy as np
    >>> h5(np.array([0.0, 1.0, 2.0, 5.0])).tolist()
    [2.0, 2.0, 2.0, 2.0]
    """
    x = _day(x)
    return np.full(len(x), x.mean())


def h6(x: Any, rng: np.random.Generator | None = None) -> np.ndarray:
    """The day reversed: evening peaks move to the (cheap) early morning.

    >>> import numpy as np
    >>> h6(np.array([0.0, 1.0, 2.0, 5.0])).tolist()
    [5.0, 2.0, 1.0, 0.0]
    """
    return _day(x)[::-1].copy()


ATTACKS: dict[str, Callable[..., np.ndarray]] = {
    "h1": h1, "h2": h2, "h3": h3, "h4": h4, "h5": h5, "h6": h6}


class Attack:
    """One theft attack with its parameters fixed for its whole life.

    Parameters
    ----------
    kind
        ``h1`` ... ``h6``.
    rng
        Draws the fixed parameters now and the per-reading factors (h3, h4) on each
        :meth:`apply`; the attack keeps using it, so one seed gives one attack.
    a
        h1's factor; drawn from U(0.1, 0.8) when not given.
    start_h, duration_h
        h2's window (hours after local midnight); drawn when not given, duration
        U(4, 12) h and start so that the window ends by midnight.

    Examples
    --------
    >>> import numpy as np
    >>> atk = Attack("h1", np.random.default_rng(7))
    >>> day = np.ones(48)
    >>> bool(np.allclose(atk.apply(day), atk.apply(day)))  # same factor every day
    True
    >>> 0.1 <= atk.params["a"] <= 0.8
    True
    >>> atk = Attack("h2", np.random.default_rng(7), start_h=20, duration_h=4)
    >>> atk.apply(np.ones(48))[38:].tolist()
    [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """

    def __init__(self, kind: str, rng: np.random.Generator, *, a: float | None = None,
                 start_h: float | None = None, duration_h: float | None = None) -> None:
        if kind not in ATTACKS:
            raise ValueError(f"unknown attack {kind!r}: expected one of {', '.join(KINDS)}")
        self.kind = kind
        self.rng = rng
        self.a = a
        self.start_h = start_h
        self.duration_h = duration_h
        # Drawn values are rounded so the ground truth states them exactly.
        if kind == "h1" and self.a is None:
            self.a = round(float(rng.uniform(LOW, HIGH)), 4)
        if kind == "h2" and (self.start_h is None or self.duration_h is None):
            s, d = h2_draw(rng)
            self.start_h = round(s, 3) if self.start_h is None else self.start_h
            self.duration_h = round(d, 3) if self.duration_h is None else self.duration_h

    @property
    def params(self) -> dict[str, Any]:
        """The fixed parameters, for ground truth records."""
        p: dict[str, Any] = {"attack": self.kind}
        if self.kind == "h1":
            p["a"] = self.a
        elif self.kind == "h2":
            p["start_h"] = self.start_h
            p["duration_h"] = self.duration_h
        elif self.kind in ("h3", "h4"):
            p["low"], p["high"] = LOW, HIGH
        return p

    @property
    def subtype(self) -> str:
        return ALERT_SUBTYPE[self.kind]

    def apply(self, day: Any) -> np.ndarray:
        """The attacked copy of one full day of readings (midnight to midnight)."""
        if self.kind == "h1":
            return h1(day, self.rng, a=self.a)
        if self.kind == "h2":
            return h2(day, self.rng, start_h=self.start_h, duration_h=self.duration_h)
        return ATTACKS[self.kind](day, self.rng)

    def __repr__(self) -> str:
        return f"Attack({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


# -- multi-day series -------------------------------------------------------------------

def _tz(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return timezone.utc
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def _epoch(v: Any) -> int:
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime: give a timezone")
        return int(v.timestamp())
    if isinstance(v, str):
        return _epoch(datetime.fromisoformat(v))
    if isinstance(v, np.datetime64):
        return int(v.astype("datetime64[s]").astype(np.int64))
    if hasattr(v, "timestamp"):  # pandas.Timestamp
        return int(v.timestamp())
    return int(v)


def as_epoch_array(ts: Any) -> np.ndarray:
    """Epoch seconds (int64) from ints, numpy datetime64 (UTC), datetimes or ISO strings."""
    a = np.asarray(ts)
    if np.issubdtype(a.dtype, np.datetime64):
        return a.astype("datetime64[s]").astype(np.int64)
    if np.issubdtype(a.dtype, np.number):
        return a.astype(np.int64)
    return np.fromiter((_epoch(v) for v in a.ravel()), np.int64, a.size)


def _utc_offsets(t: np.ndarray, tz: tzinfo) -> np.ndarray:
    # Offsets only change on (at least) half-hour boundaries; one lookup per half hour.
    hh, inv = np.unique(t // 1800, return_inverse=True)
    offs = np.fromiter(
        (datetime.fromtimestamp(int(h) * 1800, tz).utcoffset().total_seconds() for h in hh),
        np.int64, len(hh))
    return offs[inv]


def local_midnight(day_number: int, tz: tzinfo) -> int:
    """Epoch seconds of local midnight of the day ``day_number`` days after 1970-01-01."""
    d = date(1970, 1, 1) + timedelta(days=int(day_number))
    return int(datetime.combine(d, time(0), tzinfo=tz).timestamp())


def apply_attack(series: Any, ts: Any, kind: str | Attack, start: Any,
                 rng: np.random.Generator | None = None, tz: str | tzinfo | None = "UTC", *,
                 interval_s: int | None = None) -> np.ndarray:
    """One meter's series with every local day from ``start`` on replaced by its attacked day.

    ``ts`` are interval END times (the project's convention), so the reading stamped
    00:00 belongs to the previous day. Each local day is attacked as a whole (h4/h5 use
    the whole day's mean, h6 reverses the whole day) but only readings of intervals
    starting at or after ``start`` are replaced. Missing readings of a day are filled
    with the day's mean for the attack and stay missing in the result. ``kind`` may be
    an :class:`Attack` (to reuse fixed parameters) or a name, then drawn from ``rng``.

    Examples
    --------
    >>> import numpy as np
    >>> t0 = 1767542400  # 2026-01-05 00:00 Asia/Shanghai
    >>> ts = t0 + 3600 * np.arange(1, 49)  # two days of hourly readings
    >>> x = np.tile(np.arange(24.0), 2)
    >>> y = apply_attack(x, ts, "h6", t0 + 86400, np.random.default_rng(0), "Asia/Shanghai")
    >>> y[:3].tolist(), y[24:27].tolist()
    ([0.0, 1.0, 2.0], [23.0, 22.0, 21.0])
    >>> bool(np.isclose(y.sum(), x.sum()))
    True
    """
    x = np.array(series, dtype=np.float64, copy=True)
    t = as_epoch_array(ts)
    if x.shape != t.shape or x.ndim != 1:
        raise ValueError("series and ts must be 1-D and of equal length")
    if len(x) == 0:
        return x
    z = _tz(tz)
    if interval_s is None:
        d = np.diff(np.unique(t))
        if len(d) == 0:
            raise ValueError("interval_s is needed for a single reading")
        interval_s = int(np.median(d))
    if isinstance(kind, Attack):
        attack = kind
    else:
        attack = Attack(kind, rng if rng is not None else np.random.default_rng())
    st = _epoch(start)
    t0 = t - interval_s  # interval starts decide the day
    dayno = (t0 + _utc_offsets(t0, z)) // 86400
    hit = t0 >= st
    for dn in np.unique(dayno[hit]):
        idx = np.flatnonzero(dayno == dn)
        mid = local_midnight(dn, z)
        n_slots = (local_midnight(dn + 1, z) - mid) // interval_s
        slot = (t0[idx] - mid) // interval_s
        ok = (slot >= 0) & (slot < n_slots)
        idx, slot = idx[ok], slot[ok]
        day = np.full(n_slots, np.nan)
        day[slot] = x[idx]
        miss = np.isnan(day)
        if miss.all():
            continue
        if miss.any():
            day[miss] = np.nanmean(day)
        out = attack.apply(day)
        sel = hit[idx]
        x[idx[sel]] = out[slot[sel]]
    return x
