"""The meter's own temperature response, taken out of the level test's daily ratio.

The area's peers' median removes what moves everyone; a home heated (or cooled) by
electricity moves further with the weather than its area's median, and a cold spell
then reads as a lasting rise. When the area has a mean temperature for the finished
day (:mod:`models.weather`), the day's log ratio to the reference (net of peers) is
regressed online, per meter, on the day's degree-days less those of the days its
reference learned from (``hw_dd0``, which learns at the reference's own pace, on the
same days): ``r = b * x``, with
``b = Sxy / (Sxx + S0)`` from exponentially weighted sums learned on calm complete days
(no level run building, no surge, vacancy or distortion), from the first day, so the
response is known by the time habits are judged. The level test then judges
``r - b * x``. Days without a temperature, and areas without a feed, are judged as
before: without a weather feed every result is the same as without this module.

The theft test's fall in use (:mod:`models.habit.drop`: the recent days against its own
slow reference) is taken net of the same response: the area's recent degree-days against
those its reference learned from (``hw_ddt``, at that reference's pace) times ``b``; a
heated home's spring is not a slowed meter.

State: ``hw_sxx``, ``hw_sxy``, ``hw_dd0``, ``hw_ddt`` (16 bytes per meter).
"""

from __future__ import annotations

import numpy as np

from models.habit.common import DayClose, peer_median
from models.weather import day_degree_days, recent_degree_days

ALPHA = 0.1  # per learning day: about ten days' memory, follows the season
S0 = 1.0  # degree-days^2: shrinks the slope while the weather has hardly varied
B_MAX = 0.2  # log ratio per degree-day: a home's use at most ~doubles over 3.5 dd


class WeatherFamily:
    """Mixin of :class:`models.habit.HabitDetector`: the temperature-adjusted level ratio."""

    # hw_dd0 / hw_ddt < 0: no day with a temperature learned yet (set by init).
    weather_fields = (("hw_sxx", "<f4"), ("hw_sxy", "<f4"), ("hw_dd0", "<f4"),
                      ("hw_ddt", "<f4"))

    def _weather_anomaly(self, d: DayClose) -> np.ndarray | None:
        """Per row, the day's degree-days less the reference's (NaN: unknown); None when
        no row's area has a temperature for its day (then nothing here runs). Keeps
        the day's degree-days for :meth:`_weather_follow_ref`."""
        if not len(d.areas.area) or "wa_ddday" not in (d.areas.st.dtype.names or ()):
            return None
        dd = day_degree_days(d.areas.st, d.areas.pos[d.rows], d.day)
        if not np.isfinite(dd).any():
            return None
        d.found["weather_day_dd"] = dd
        base = d.s["hw_dd0"].astype(np.float64)
        return np.where(base >= 0, dd - base, np.nan)

    def _weather_follow_ref(self, d: DayClose, ar: np.ndarray) -> None:
        """The reference learned the day at rate ``ar``: so does its degree-day level
        (the first day with a temperature sets it)."""
        self._follow_degree_days(d, "hw_dd0", ar, first_needs_rate=False)

    def _weather_adjust(self, d: DayClose) -> np.ndarray | None:
        """The meter's learned response to the day's weather (log ratio), to take out of
        the day's ratio; None when no row's area has a temperature for its day. Keeps
        the day's degree-day anomaly for :meth:`_weather_learn`."""
        x = self._weather_anomaly(d)
        d.found["weather_dd"] = x
        if x is None:
            return None
        have = np.isfinite(x)
        return np.where(have & d.ev, self._weather_slope(d.s) * np.where(have, x, 0.0), 0.0)

    def _weather_learn(self, d: DayClose) -> None:
        """Learn the response from the day, on calm complete days with a temperature
        (after the level ratio, which judged the day with the response as it was)."""
        x = d.found.get("weather_dd")
        if x is None:
            return
        s, f, c = d.s, d.found, self.config.cusum_c_kwh
        have = np.isfinite(x)
        x = np.where(have, x, 0.0)
        # The ratio on every complete day (habits are judged only once trusted, but the
        # response is learned from the start), net of the complete peers' median.
        r_all = np.where(d.complete, np.log((d.E + c) / (np.maximum(d.ref, 0.0) + c)), 0.0)
        pos = d.areas.pos[d.rows]
        r_net = r_all - peer_median(r_all, d.complete, pos, self.config.peer_min)
        r_net = np.clip(r_net, -3 * f["rdev"], 3 * f["rdev"])
        learn = (have & d.complete & f["calm"] & ~f["surge_day"] & ~f["distorted"]
                 & (s["h_vac"] == 0) & (s["h_settle"] == 0))
        a = np.where(learn, ALPHA, 0.0)
        s["hw_sxx"] = s["hw_sxx"] + a * (x * x - s["hw_sxx"])
        s["hw_sxy"] = s["hw_sxy"] + a * (x * r_net - s["hw_sxy"])

    @staticmethod
    def _weather_slope(s: np.ndarray) -> np.ndarray:
        """The meter's log-ratio response per degree-day, as learned before today."""
        b = s["hw_sxy"].astype(np.float64) / (s["hw_sxx"].astype(np.float64) + S0)
        return np.clip(b, -B_MAX, B_MAX)

    def _weather_drop(self, d: DayClose) -> None:
        """Take the response out of the theft test's recent level against its reference
        (``found["drop"]["lr_adj"]``), where the area has a temperature for the day."""
        if d.found.get("weather_day_dd") is None:
            return
        base = d.s["hw_ddt"].astype(np.float64)
        ddr = recent_degree_days(d.areas.st, d.areas.pos[d.rows])
        ok = (base >= 0) & np.isfinite(d.found["weather_day_dd"])
        x = np.where(ok, ddr - base, 0.0)
        d.found["drop"]["lr_adj"] = d.found["drop"]["lr_adj"] - self._weather_slope(d.s) * x


    def _weather_follow_drop_ref(self, d: DayClose, a: np.ndarray) -> None:
        """The theft reference learned the day at rate ``a``: so does its degree-day level
        (set by the first day with a temperature that it learned)."""
        self._follow_degree_days(d, "hw_ddt", a, first_needs_rate=True)

    def _follow_degree_days(self, d: DayClose, field: str, rate: np.ndarray, *,
                            first_needs_rate: bool) -> None:
        dd = d.found.get("weather_day_dd")
        if dd is None:
            return
        have = np.isfinite(dd)
        base = d.s[field].astype(np.float64)
        dd = np.where(have, dd, 0.0)
        first = have & (base < 0) & ((rate > 0) if first_needs_rate else True)
        d.s[field] = np.where(first, dd,
                              np.where(have & (base >= 0), base + rate * (dd - base), base))
