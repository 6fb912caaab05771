"""Outdoor temperature per transformer area, from an optional hourly feed.

Each area record keeps the local day being accumulated (sum of its hourly samples and a
bitmask of the hours seen, so a redelivered or resent sample is recognised and counts
once), the last finished day's mean temperature, the degree-days of the last
``KEEP_DAYS`` finished days, and of the last few (EW). The habit level test (:mod:`models.habit.weather`) reads
that to take the meter's own temperature response out of the day's ratio.

Degree-days follow the UK Met Office / CIBSE TM41 convention: heating degree-days below
a 15.5 degC base, cooling degree-days above 22 degC, from the day's mean temperature.
A home's use moves with whichever applies, so one "degree-days from comfort" figure,
``HDD + CDD``, carries both (the per-meter response is learned online and follows the
season).

>>> import numpy as np
>>> from models.localtime import LocalCalendar
>>> from models.base import compose_dtype
>>> ast = np.zeros(1, compose_dtype(WEATHER_AREA_FIELDS))
>>> w = AreaWeather(LocalCalendar("UTC", None))
>>> day0 = 1_767_225_600  # 2026-01-01 00:00 UTC
>>> ts = np.array([day0 + 3600 * h for h in range(24)] + [day0 + 86400])
>>> w.apply(ast, np.zeros(25, np.int64), ts, np.full(25, 5.0))
(25, 0, 0)
>>> w.apply(ast, np.zeros(2, np.int64), ts[-2:], np.array([9.0, 9.0]))  # replayed
(0, 1, 1)
>>> float(ast["wa_pmean"][0]), float(degree_days(np.array([5.0]))[0])
(5.0, 10.5)
"""

from __future__ import annotations

import numpy as np

HDD_BASE_C = 15.5  # UK Met Office / CIBSE TM41 heating base
CDD_BASE_C = 22.0  # CIBSE cooling base
MIN_HOURS = 18  # hours of a local day needed for its mean to stand for the day

# Finished days kept per area: a feed running ahead of the readings (a backlog whose
# temperatures were read first) still has each day's figure when its meters close it.
KEEP_DAYS = 8

WEATHER_AREA_FIELDS = (
    ("wa_day", "<i4"),  # local day ordinal being accumulated (0: none)
    ("wa_hours", "<u4"),  # bit h: local hour h of that day seen
    ("wa_sum", "<f4"),  # sum of its hourly temperatures (degC)
    ("wa_pday", "<i4"),  # the last finished day (0: none)
    ("wa_pmean", "<f4"),  # its mean temperature (degC)
    ("wa_ddday", "<i4", (KEEP_DAYS,)),  # finished days by ordinal % KEEP_DAYS ...
    ("wa_dd", "<f4", (KEEP_DAYS,)),  # ... and their degree-days
    ("wa_ddr", "<f4"),  # the last few finished days' degree-days (EW, RECENT_ALPHA)
)
# Weight of the newest day in wa_ddr: the theft test's recent level's own
# (HabitConfig.drop_alpha), so both see the same few days.
RECENT_ALPHA = 0.4


def degree_days(mean_c: np.ndarray) -> np.ndarray:
    """Degree-days from comfort of a day with mean temperature ``mean_c``: HDD + CDD."""
    return np.maximum(HDD_BASE_C - mean_c, 0.0) + np.maximum(mean_c - CDD_BASE_C, 0.0)


class AreaWeather:
    """Applies hourly temperature samples to area records (``WEATHER_AREA_FIELDS``)."""

    def __init__(self, calendar) -> None:
        self.calendar = calendar

    def apply(self, ast: np.ndarray, pos: np.ndarray, ts: np.ndarray,
              temp_c: np.ndarray) -> tuple[int, int, int]:
        """Samples (area position in ``ast``, epoch s, degC), in any order; returns
        (applied, stale, duplicate). A sample is for the local hour that contains
        ``ts``. Applied in time order; a sample of a day before the one being
        accumulated is stale (its day is finished), a second sample of an hour already
        seen is a duplicate: both are dropped, so replays are harmless."""
        applied = stale = dup = 0
        if len(ts) == 0:
            return 0, 0, 0
        day, slot, *_ = self.calendar.lookup(np.asarray(ts, np.int64) + 3600,
                                             np.full(len(ts), 3600, np.int64))
        for k in np.lexsort((np.asarray(pos), np.asarray(ts))).tolist():
            a, d, h = int(pos[k]), int(day[k]), int(slot[k]) // 2
            rec = ast[a:a + 1]
            cur = int(rec["wa_day"][0])
            if d < cur:
                stale += 1
                continue
            if d > cur:
                self._finish(rec)
                rec["wa_day"], rec["wa_hours"], rec["wa_sum"] = d, 0, 0.0
            bit = np.uint32(1 << min(h, 31))
            if rec["wa_hours"][0] & bit:
                dup += 1
                continue
            rec["wa_hours"] |= bit
            rec["wa_sum"] += np.float32(temp_c[k])
            applied += 1
        return applied, stale, dup

    @staticmethod
    def _finish(rec: np.ndarray) -> None:
        """The accumulated day is over: its mean and degree-days become the last
        finished day's, when enough hours were seen."""
        n = int(rec["wa_hours"][0]).bit_count()
        if rec["wa_day"][0] <= 0 or n < MIN_HOURS:
            return
        mean = float(rec["wa_sum"][0]) / n
        day = int(rec["wa_day"][0])
        dd = degree_days(np.array([mean]))[0]
        first = rec["wa_pday"][0] == 0
        rec["wa_pday"], rec["wa_pmean"] = day, mean
        rec["wa_ddday"][0, day % KEEP_DAYS] = day
        rec["wa_dd"][0, day % KEEP_DAYS] = dd
        rec["wa_ddr"] = dd if first else rec["wa_ddr"][0] + RECENT_ALPHA * (dd - rec["wa_ddr"][0])


def day_degree_days(ast: np.ndarray, apos: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Per row: the degree-days of local day ``day`` in its area (row's area position
    ``apos``); NaN where the area has no mean temperature for that day (no feed, or
    too few hours seen)."""
    out = np.full(len(day), np.nan)
    if len(day) == 0 or "wa_ddday" not in (ast.dtype.names or ()):
        return out
    rec = ast[apos]
    k = (np.asarray(day, np.int64) % KEEP_DAYS)[:, None]
    fin = np.take_along_axis(rec["wa_ddday"], k, axis=1)[:, 0] == day
    out[fin] = np.take_along_axis(rec["wa_dd"], k, axis=1)[fin, 0].astype(np.float64)
    # The day being accumulated, when a meter closes it before the next day's first
    # sample arrives: its mean so far, if enough hours are in.
    hours = np.array([int(x).bit_count() for x in rec["wa_hours"].tolist()], np.int64)
    acc = ~fin & (rec["wa_day"] == day) & (hours >= MIN_HOURS)
    if acc.any():
        out[acc] = degree_days(rec["wa_sum"][acc].astype(np.float64) / hours[acc])
    return out


def recent_degree_days(ast: np.ndarray, apos: np.ndarray) -> np.ndarray:
    """Per row: its area's degree-days of the last few finished days (EW)."""
    return ast["wa_ddr"][apos].astype(np.float64)
