"""The usual day every family judges against: expected power per half-hour slot for
workdays and off-days with its spread (learned per interval), and per finished day the
daily level, its spread and median, the slow reference, the base load and the usual
shape correlation.

Learning is robust: residuals are clipped to a few spreads, and an interval or a day
that is itself an anomaly (a surge, a vacancy, a distorted day) does not teach.

State: ``h_mu``/``h_dev``, ``h_ndays``, ``h_lv``/``h_lvdev``/``h_lvmed``, ``h_ref``,
``h_base``, ``h_rdev``, the day's and month's accumulators.
"""

from __future__ import annotations

import numpy as np

from models.habit.common import DISTORT, VACANT, DayClose, uclip, is_open


class ProfileFamily:
    """Mixin of :class:`models.habit.HabitDetector`: learning the usual day."""

    def _learn_interval(self, st, p, mu, dev, at_dt, at_cell, n) -> None:
        """Residuals are clipped to a few spreads, so one surge barely moves the profile,
        while a new load that recurs every evening becomes habit within weeks instead of
        alerting every evening. A vacant home does not teach its profile."""
        cfg = self.config
        learn = ~is_open(st, VACANT)
        nd = st["h_ndays"][at_dt].astype(np.float64)
        # Learn faster while a slot has little history (first weeks), then alpha_min.
        a = np.maximum(1.0 / (nd + 1.0), cfg.alpha_min)
        # No vacancy open (the usual batch): masking by ``learn`` would change nothing.
        if np.count_nonzero(learn) != n:
            a = a * learn
        scale = np.maximum(dev, 0.05 + 0.1 * mu)
        r = uclip(p - mu, -3 * scale, 3 * scale)
        st["h_mu"][at_cell] = np.maximum(mu + a * r, 0.0)
        st["h_dev"][at_cell] = dev + a * (np.abs(r) - dev)

    def _learn_day(self, d: DayClose) -> np.ndarray:
        """Learn the finished day unless anomalous; the rows that learned.

        The usual day learns fast, and from surge-sized days, only after a rise: the new
        level is the habit at once. After a fall it learns at its usual pace, so a fall
        that soon ends leaves it near the old level and the days back there are not
        surges; the reference (the CUSUM's baseline) settles fast either way."""
        s, cfg, f = d.s, self.config, d.found
        settle = s["h_settle"].astype(np.float64)
        fast_ref = np.where(settle != 0, 1.0 / (cfg.settle_days - np.abs(settle) + 2), 0.0)
        learn = (d.complete & (~f["surge_day"] | (settle > 0)) & (s["h_vac"] == 0)
                 & ~f["distorted"])
        nd = s["h_ndays"][d.ri, d.dt].astype(np.float64)
        self._learn_level(d, learn, nd, np.where(settle > 0, fast_ref, 0.0), settle > 0)
        self._learn_day_tail(s, d.E, d.ev & d.complete & (s["h_vac"] == 0) & ~f["distorted"], nd)
        self._learn_reference(d, learn, nd, settle, fast_ref)
        dmin = np.where(d.complete, d.vec.min(axis=1), d.base)
        s["h_base"] = d.base + np.where(learn, np.maximum(1 / (nd + 1), 0.1), 0) * (dmin - d.base)
        normal_shape = learn & ~f["distorted"] & ~is_open(s, DISTORT)
        ac = np.where(normal_shape, np.maximum(1 / (nd + 1), 0.05), 0)
        s["h_cordev"] = s["h_cordev"] + ac * (np.abs(f["cor0"] - s["h_cor"]) - s["h_cordev"])
        s["h_cor"] = s["h_cor"] + ac * (f["cor0"] - s["h_cor"])
        s["h_ndays"][d.ri, d.dt] = np.where(d.complete, np.minimum(nd + 1, 30000), nd)
        s["h_settle"] = np.where(d.complete & ~(f["up"] | f["dn"]),
                                 s["h_settle"] - np.sign(s["h_settle"]), s["h_settle"])
        return learn

    def _learn_level(self, d: DayClose, learn, nd, fast, rising) -> None:
        """The usual day (clipped residuals, unclipped while settling after a rise), its
        median and spread, and the spread of the daily log ratio (on calm days)."""
        s, ri, dt, E, f = d.s, d.ri, d.dt, d.E, d.found
        a = np.maximum(np.maximum(1.0 / (nd + 1), 0.1), fast) * learn
        # Current values: a reported change may have just re-baselined them.
        lv = s["h_lv"][ri, dt].astype(np.float64)
        lvdev = s["h_lvdev"][ri, dt].astype(np.float64)
        resid = np.clip(E - lv, -3 * np.maximum(lvdev, 0.5), 3 * np.maximum(lvdev, 0.5))
        resid = np.where(rising, E - lv, resid)
        s["h_lv"][ri, dt] = lv + a * resid
        # The typical day: a stochastic-approximation median (steps of a fifth of the
        # day's spread), from every complete day (the median needs no clipping).
        med = s["h_lvmed"][ri, dt].astype(np.float64)
        step = np.where(d.complete, 0.2 * np.maximum(lvdev, 0.1), 0.0)
        s["h_lvmed"][ri, dt] = np.where(nd < 3, np.where(d.complete, lv + a * resid, med),
                                        np.maximum(med + step * np.sign(E - med), 0.0))
        s["h_lvdev"][ri, dt] = lvdev + a * (np.abs(resid) - lvdev)
        s["h_rdev"] = s["h_rdev"] + np.where(learn & f["calm"], np.maximum(1 / (nd + 1), 0.05), 0) * (
            np.minimum(np.abs(f["r"]), 3 * f["rdev"]) - s["h_rdev"])

    def _learn_reference(self, d: DayClose, learn, nd, settle, fast_ref) -> None:
        """The CUSUM's slow reference learns on quiet days (no run building); settling
        after a report re-learns it whatever the CUSUMs hold meanwhile."""
        s, cfg = d.s, self.config
        quiet = learn & (s["h_cup"] == 0) & (s["h_cun"] == 0)
        ar = np.maximum(np.where(nd < 28, np.maximum(1.0 / (nd + 1), cfg.ref_alpha), cfg.ref_alpha),
                        fast_ref) * quiet
        ar = np.where(settle != 0, fast_ref * learn, ar)
        cur = s["h_ref"][d.ri, d.dt].astype(np.float64)  # re-baselined above, maybe
        s["h_ref"][d.ri, d.dt] = cur + ar * (d.E - cur)
        self._weather_follow_ref(d, ar)  # the degree-days the reference has seen
