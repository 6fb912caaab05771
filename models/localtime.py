"""Local calendar facts for interval timestamps: day, half-hour slot, day type, month.

Habits are local: a customer's evening peak is at 19:00 local time whatever the UTC
offset, and a public holiday looks like a Sunday. Timestamps mark the END of an
interval, so the slot and the day are those of the interval's start.

A batch repeats a few timestamps (one interval of an area), so the conversion runs once
per distinct (timestamp, interval) and is cached.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

SLOTS = 48  # half-hour slots of a day: the profile's resolution
SLOT_S = 86400 // SLOTS
WORKDAY, OFFDAY = 0, 1


class LocalCalendar:
    """Maps interval-end timestamps to local (day, slot, day type, month).

    ``day`` is the local date's proleptic ordinal; ``daytype`` is ``OFFDAY`` on
    weekends and public holidays of ``country`` (the ``holidays`` package).

    >>> cal = LocalCalendar("Asia/Shanghai", "CN")
    >>> ts = int(datetime(2026, 10, 1, 8, 30, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp())
    >>> day, slot, daytype, month, dim = cal.lookup(np.array([ts]), np.array([1800]))
    >>> int(slot[0]), int(daytype[0]), int(month[0]), int(dim[0])  # 08:00-08:30, National Day
    (16, 1, 202610, 31)
    """

    def __init__(self, tz: str = "Asia/Shanghai", country: str | None = "CN",
                 subdiv: str | None = None) -> None:
        self.tz = tz
        self.country = country
        self.subdiv = subdiv
        self._zone = ZoneInfo(tz)
        self._holidays = None
        if country:
            import holidays

            self._holidays = holidays.country_holidays(country, subdiv=subdiv)
        self._cache: dict[tuple[int, int], tuple[int, int, int, int, int]] = {}

    def _one(self, ts: int, interval_s: int) -> tuple[int, int, int, int, int]:
        start = datetime.fromtimestamp(ts - interval_s, timezone.utc).astimezone(self._zone)
        d = start.date()
        slot = (start.hour * 3600 + start.minute * 60 + start.second) // SLOT_S
        off = d.weekday() >= 5 or (self._holidays is not None and d in self._holidays)
        month = d.year * 100 + d.month
        return d.toordinal(), slot, OFFDAY if off else WORKDAY, month, _days_in_month(d.year, d.month)

    def lookup(self, ts: np.ndarray, interval_s: np.ndarray):
        """Arrays (day, slot, daytype, yyyymm, days_in_month) for each timestamp."""
        return self.lookup_same(ts, interval_s)[:5]

    def lookup_same(self, ts: np.ndarray, interval_s: np.ndarray):
        """:meth:`lookup`, plus whether all rows share one (timestamp, interval)."""
        n = len(ts)
        same = False
        out = np.empty((n, 5), np.int64)
        cache = self._cache
        if len(cache) > 200_000:  # a year of 15-min intervals is 35k keys; bound anyway
            cache.clear()
        # (count_nonzero: much cheaper than .all() on a batch's few hundred rows)
        if (n and not np.count_nonzero(ts != ts[0])
                and not np.count_nonzero(interval_s != interval_s[0])):
            key = (int(ts[0]), int(interval_s[0]))
            v = cache.get(key) or cache.setdefault(key, self._one(*key))
            out[:] = v
            same = True
        else:
            for i, key in enumerate(zip(ts.tolist(), interval_s.tolist())):
                v = cache.get(key)
                if v is None:
                    v = cache[key] = self._one(*key)
                out[i] = v
        return out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4], same

    def day_start_ts(self, day: int) -> int:
        """Epoch seconds of local midnight starting ``day`` (an ordinal)."""
        d = datetime.fromordinal(day)
        return int(d.replace(tzinfo=self._zone).timestamp())


@lru_cache(maxsize=None)
def _days_in_month(y: int, m: int) -> int:
    import calendar

    return calendar.monthrange(y, m)[1]
