"""Surges: an hour far above the slot's habit (``surge/interval``) and a day far above
the usual day (``surge/daily``), each beyond the customer's own calibrated tail, so
that the family's false openings stay within its budget (``[budget] surge_interval``,
``surge_daily``, per customer-year).

State: ``h_hq``/``h_hx`` (tail of the power held over two intervals), ``h_pprev``,
``h_srun`` (seconds in a row at surge level), ``h_rup``/``h_pup`` (tail of the daily log
ratio), read with ``h_lvmed`` (the typical day) from the profile.
"""

from __future__ import annotations

import numpy as np

from models.calibrate import DAYS_PER_YEAR, exp_tail_limit
from models.habit.common import SURGE_D, SURGE_I, DayClose, is_open


class SurgeFamily:
    """Mixin of :class:`models.habit.HabitDetector`: the surge checks."""

    def _interval_surge(self, st, batch, p, mu, dev, trusted, out) -> None:
        """``surge/interval``: for ``surge_hold_s`` (an hour), power at least
        ``surge_ratio`` x the slot's usual and ``surge_floor_kw`` above it (what a
        customer would notice), and the power held over the last two intervals beyond
        this customer's own calibrated tail.

        The tail is learned online as peaks over a threshold: ``h_hq`` is the level the
        held power exceeds in a share ``surge_tail_share`` of intervals (stochastic
        approximation), the excesses over it are taken as exponential with mean
        ``h_hx``, and the limit is the level exceeded with the probability per interval
        that ``budget.surge_interval`` allows (:func:`models.calibrate.exp_tail_limit`).
        A home that runs an oven or a heater for an hour most evenings has a high limit;
        a steady home a low one."""
        cfg = self.config
        held = np.minimum(p, st["h_pprev"])
        u = st["h_hq"].astype(np.float64)
        sx = np.maximum(st["h_hx"].astype(np.float64), 0.05)
        per_year = DAYS_PER_YEAR * 86400.0 / batch.interval_s
        limit = exp_tail_limit(u, sx, cfg.surge_tail_share, self.budget.surge_interval / per_year)
        floor = np.maximum(cfg.surge_ratio * mu, mu + cfg.surge_floor_kw)
        hot = p >= floor
        st["h_srun"] = np.where(hot, st["h_srun"] + batch.interval_s, 0)
        active = trusted & (((st["h_srun"] >= cfg.surge_hold_s) & (held >= limit))
                            | (is_open(st, SURGE_I) & hot))
        thr = np.maximum(floor, limit)
        self._track(st, SURGE_I, active, batch, "surge", "interval", out,
                    magnitude=p, start=batch.ts - st["h_srun"].astype(np.int64) + batch.interval_s,
                    evidence=lambda i: {"observed_kw": round(p[i], 3),
                                        "expected_kw": round(mu[i], 3),
                                        "spread_kw": round(dev[i], 3),
                                        "threshold_kw": round(thr[i], 3),
                                        "held_hours": round(float(st["h_srun"][i]) / 3600, 2),
                                        "ratio": round(p[i] / max(mu[i], 1e-3), 2),
                                        "interval_s": int(batch.interval_s[i])},
                    score=lambda i: p[i] / max(thr[i], 1e-3), severity="warning")
        self._learn_power_tail(st, held, u, sx)
        st["h_pprev"] = p

    def _learn_power_tail(self, st, held, u, sx) -> None:
        """The tail learns from every interval but those of an open surge; an excess
        counts at most a few tail scales (one odd evening does not lift the limit)."""
        share = self.config.surge_tail_share
        teach = ~is_open(st, SURGE_I)
        above = held > u
        st["h_hq"] = np.where(teach, u + 0.05 * np.maximum(u, 0.05) * ((1.0 - share) - ~above), u)
        exc = np.minimum(held - u, 5.0 * sx)
        st["h_hx"] = np.where(teach & above, sx + 0.05 * (exc - sx), st["h_hx"])

    def _day_bar(self, st: np.ndarray, usual: np.ndarray) -> np.ndarray:
        """The day energy (kWh) a surge day reaches: ``day_ratio`` x the usual day and
        ``day_floor_kwh`` above it, and beyond this customer's calibrated tail of daily
        log ratios (positive ratios taken as exponential with mean ``h_rup``, on a share
        ``h_pup`` of days; exceeded on ``budget.surge_daily`` days a year)."""
        cfg, c = self.config, self.config.cusum_c_kwh
        t = exp_tail_limit(0.0, np.maximum(st["h_rup"].astype(np.float64), 0.02),
                           np.clip(st["h_pup"].astype(np.float64), 0.05, 0.95),
                           self.budget.surge_daily / DAYS_PER_YEAR)
        tail = (usual + c) * np.exp(t) - c
        return np.maximum(np.maximum(cfg.day_ratio * usual, usual + cfg.day_floor_kwh), tail)

    def _day_surge_so_far(self, st, batch, day, at_dt, trusted, out) -> None:
        """A daily surge as soon as today's energy so far already exceeds the bar for
        the whole day: no need to wait for midnight."""
        usual_day = st["h_lvmed"][at_dt].astype(np.float64)
        lvdev = st["h_lvdev"][at_dt].astype(np.float64)
        day_bar = self._day_bar(st, usual_day)
        dsurge = trusted & (st["h_dkwh"] >= day_bar) & ~is_open(st, SURGE_D)
        if not np.count_nonzero(dsurge):
            return
        js = np.flatnonzero(dsurge)
        day0 = np.array([self.calendar.day_start_ts(int(d)) for d in day[dsurge]])
        self._open(st, SURGE_D, js, batch, "surge", "daily", out,
                   start=dict(zip(js.tolist(), day0.tolist())),
                   magnitude=st["h_dkwh"],
                   evidence=lambda i: {"today_kwh": round(float(st["h_dkwh"][i]), 2),
                                       "usual_day_kwh": round(usual_day[i], 2),
                                       "spread_kwh": round(lvdev[i], 2),
                                       "ratio": round(float(st["h_dkwh"][i]) / max(usual_day[i], 1e-3), 2),
                                       "day_complete": False,
                                       "weekday": int(day[i] % 7)},
                   score=lambda i: float(st["h_dkwh"][i]) / max(day_bar[i], 1e-3))

    def _close_day_surge(self, d: DayClose, out) -> None:
        """At the day's close: a surge day that did not open during the day opens now;
        every surge day closes. Sets ``found["surge_day"]``."""
        s, E, ri, dt, rows, batch = d.s, d.E, d.ri, d.dt, d.rows, d.batch
        med = s["h_lvmed"][ri, dt].astype(np.float64)
        bar = self._day_bar(s, med)
        was_open = is_open(s, SURGE_D)
        late_surge = d.ev & (E >= bar) & ~was_open
        now = batch.ts[rows]
        for j in np.flatnonzero(late_surge):
            s["h_start"][j, SURGE_D] = self._start(s, j, SURGE_D, int(d.start_ts[j]), int(now[j]))
            self._emit(s, j, rows, batch, "surge", "daily", "open", int(s["h_start"][j, SURGE_D]), out,
                       score=E[j] / max(bar[j], 1e-3),
                       evidence={"today_kwh": round(E[j], 2), "usual_day_kwh": round(med[j], 2),
                                 "spread_kwh": round(d.lvdev[j], 2),
                                 "ratio": round(E[j] / max(med[j], 1e-3), 2), "day_complete": True,
                                 "weekday": int(d.day[j] % 7)})
        for j in np.flatnonzero(was_open | late_surge):
            self._emit(s, j, rows, batch, "surge", "daily", "close",
                       int(s["h_start"][j, SURGE_D]), out,
                       evidence={"day_kwh": round(E[j], 2), "usual_day_kwh": round(d.lv[j], 2)})
            s["h_closed"][j, SURGE_D] = now[j]
        s["h_open"] &= np.uint16(~(1 << SURGE_D) & 0xFFFF)
        d.found["surge_day"] = was_open | late_surge

    def _learn_day_tail(self, s: np.ndarray, E: np.ndarray, teach: np.ndarray,
                        nd: np.ndarray) -> None:
        """The daily-surge tail: share of days above the usual day, and their mean log
        ratio; a day beyond the current limit teaches as if at it (a surge does not
        raise the customer's bar)."""
        c = self.config.cusum_c_kwh
        dt = s["h_dtype"].astype(np.int64)
        usual = s["h_lvmed"][np.arange(len(s)), dt].astype(np.float64)
        r = np.log((E + c) / (np.maximum(usual, 0.0) + c))
        limit = np.log((self._day_bar(s, usual) + c) / (usual + c))
        a = np.where(teach, np.maximum(1.0 / (nd + 1.0), 0.02), 0.0)
        pos = r > 0
        s["h_pup"] = s["h_pup"] + a * (pos - s["h_pup"])
        s["h_rup"] = np.where(pos, s["h_rup"] + a * (np.minimum(r, limit) - s["h_rup"]), s["h_rup"])
