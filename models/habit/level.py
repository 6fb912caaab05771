"""A lasting change of level (``habit_change/increase`` / ``decrease``): a two-sided
CUSUM on the daily log ratio to the slow reference, net of the area's peers, in units
of the meter's own day-to-day spread (widened by its persistence), tuned to the
smallest change worth a call (``change_min``) with the decision interval that the
family's budget (``[budget] habit_change``) allows.

State: ``h_ref`` (the reference day), ``h_rdev`` (spread of the daily log ratio on
ordinary days), ``h_rprev``/``h_rcov`` (lag-1 covariance: persistence),
``h_cup``/``h_cun`` and their runs (``h_cupday``, ``h_cupsum``, ``h_cupn``, ...),
``h_settle`` (days of re-learning after a report), ``h_fallref`` (the level before the
last reported fall).
"""

from __future__ import annotations

import math

import numpy as np

from models.calibrate import DAYS_PER_YEAR, cusum_h, long_run_scale
from models.habit.common import VACANT, DayClose, iso_day, peer_median


class LevelFamily:
    """Mixin of :class:`models.habit.HabitDetector`: the level CUSUMs and their reports."""

    def _cusum_kh(self, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference ``k`` and decision interval ``h`` of the level CUSUMs, per meter:
        ``k`` is half the smallest change worth reporting (``change_min``, as a log
        ratio) in units of the meter's own daily spread ``sd``; ``h`` makes chance runs
        reach it once per the budget's interval on each side."""
        k = 0.5 * math.log(1 + self.config.change_min) / sd
        arl_days = DAYS_PER_YEAR / max(0.5 * self.budget.habit_change, 1e-6)
        return k, cusum_h(k, arl_days)

    def _level_ratio(self, d: DayClose) -> None:
        """The day's log ratio to the reference, net of the area's peers (weather,
        holidays and seasons move the whole area's use together; a habit change or a
        theft moves one home against its peers) and, with a weather feed, of the home's
        own temperature response; and the spread it is judged in. Sets
        ``found``: ``r``, ``peer_r``, ``rdev``, ``h``, ``calm``, ``z``."""
        s, cfg, c = d.s, self.config, self.config.cusum_c_kwh
        r_own = np.log((d.E + c) / (np.maximum(d.ref, 0.0) + c))
        # Surge days count too (winsorised below): a lasting rise starts with days that
        # look like surges, and leaving them out would understate "how much".
        r_own = np.where(d.ev, r_own, 0.0)
        peer_r = peer_median(r_own, d.ev, d.areas.pos[d.rows] if len(d.areas.area) else None,
                              cfg.peer_min)
        r = r_own - peer_r
        # ... and net of the home's own response to the day's weather, when the area
        # has a temperature for it (models/habit/weather.py; None: no feed).
        w = self._weather_adjust(d)
        if w is not None:
            r = r - w
        # In units of the meter's own day-to-day variability: a steady home's 30% drop
        # is as telling as an erratic home's halving.
        # h_rdev is a mean absolute deviation; x1.25 makes it a standard deviation.
        rdev = np.maximum(1.25 * s["h_rdev"].astype(np.float64), cfg.rdev_floor)
        # The CUSUM adds days up: judged on the spread of sums, which the home's own
        # day-to-day persistence widens (a cold spell, a busy month).
        rho = s["h_rcov"].astype(np.float64) / (rdev * rdev)
        if cfg.long_run_spread:
            rdev = long_run_scale(rdev, rho)
        # The spread and persistence are the meter's in-control normal: learned on days
        # when no run is building (half way to the limit), so a change under way does
        # not widen its own yardstick and slow its own detection.
        k, h = self._cusum_kh(rdev)
        calm = (s["h_cup"] < 0.5 * h) & (s["h_cun"] < 0.5 * h)
        self._learn_persistence(s, r, d.ev & calm, rdev)
        d.found.update(r=r, peer_r=peer_r, rdev=rdev, h=h, k=k, calm=calm)
        self._weather_learn(d)

    def _level_cusum(self, d: DayClose) -> None:
        """Both CUSUMs take the day in, and their runs (first day, sum, length)."""
        s, cfg, f, ev = d.s, self.config, d.found, d.ev
        # Winsorised, so that one extreme day cannot make a "lasting" change alone.
        z = np.clip(f["r"] / f["rdev"], -cfg.z_cap, cfg.z_cap)
        # After a reported change the habit re-learns for a few days (held CUSUM) so that
        # the tail of the same change is not reported again.
        z = np.where(s["h_settle"] != 0, 0.0, z)
        # Tuned to the smallest change worth a call (change_min) in this meter's own
        # spreads; the decision interval gives the budget's false-alarm rate per side
        # (Siegmund's approximation). Capped a little above it, so that a run held back
        # by the effect gate below still ends soon after the days return to normal.
        k, h = f["k"], f["h"]
        up_prev, dn_prev = s["h_cup"].copy(), s["h_cun"].copy()
        s["h_cup"] = np.minimum(np.maximum(0, s["h_cup"] + z - k), h + cfg.z_cap) * ev + s["h_cup"] * ~ev
        s["h_cun"] = np.minimum(np.maximum(0, s["h_cun"] - z - k), h + cfg.z_cap) * ev + s["h_cun"] * ~ev
        for key, prev in (("up", up_prev), ("un", dn_prev)):
            cu = s[f"h_c{key}"]
            started = (prev == 0) & (cu > 0)
            s[f"h_c{key}day"] = np.where(started, d.day, s[f"h_c{key}day"])
            s[f"h_c{key}sum"] = np.where(cu > 0, np.where(started, 0, s[f"h_c{key}sum"]) + f["r"], 0)
            s[f"h_c{key}n"] = np.where(cu > 0, np.where(started, 0, s[f"h_c{key}n"]) + 1, 0)

    def _level_decide(self, d: DayClose) -> None:
        """The runs to report: over the limit for ``min_run_days``, not during a vacancy,
        and an effect that matters held over the run and over the last few days (not one
        extreme day lifting a run's mean): a level moved by change_min for days. Sets
        ``found``: ``up``, ``dn``."""
        s, cfg, f, ev, c = d.s, self.config, d.found, d.ev, self.config.cusum_c_kwh
        h, vacant = f["h"], f["vacant"]
        mean_up = np.where(s["h_cupn"] > 0, s["h_cupsum"] / np.maximum(s["h_cupn"], 1), 0.0)
        mean_dn = np.where(s["h_cunn"] > 0, s["h_cunsum"] / np.maximum(s["h_cunn"], 1), 0.0)
        ra = cfg.drop_alpha
        trlv = f["trlv_prev"]  # the theft test's recent level, before today
        recent = np.where(trlv > 0, (1 - ra) * trlv + ra * d.E, d.E)
        rr = np.log((recent + c) / (np.maximum(d.ref, 0.0) + c)) - f["peer_r"]
        up = (ev & (s["h_cup"] > h) & (s["h_cupn"] >= cfg.min_run_days) & ~vacant
              & (np.minimum(mean_up, rr) >= math.log(1 + cfg.change_min)))
        dn = (ev & (s["h_cun"] > h) & (s["h_cunn"] >= cfg.min_run_days) & ~vacant
              & (np.maximum(mean_dn, rr) <= math.log(1 - cfg.change_min)))
        f["up"] = self._settle_runs(s, ev, up, dn, h, mean_up, mean_dn, recent, vacant)
        f["dn"] = dn

    def _settle_runs(self, s: np.ndarray, ev: np.ndarray, up: np.ndarray, dn: np.ndarray,
                     h: np.ndarray, mean_up: np.ndarray, mean_dn: np.ndarray,
                     recent: np.ndarray, vacant: np.ndarray) -> np.ndarray:
        """Level runs that end without a report; the rises still to report.

        A rise back to where the home was before its last reported fall, or to its slow
        long-run usual day (learned over weeks of ordinary days: a summer low ending),
        is the end of a story, not a new habit. A run that reached its limit with a
        change too small to report (under change_min) is the new normal. Either way the
        reference takes the run's level in and the run starts afresh, so a later, real
        change is judged on its own days, not diluted in a months-long run."""
        cfg, c = self.config, self.config.cusum_c_kwh
        near = lambda lvl: np.abs(np.log((recent + c) / (lvl + c))) < math.log(1 + cfg.change_min)  # noqa: E731
        fall = s["h_fallref"].astype(np.float64)
        long_run = np.where(s["h_tdays"] >= cfg.min_days, s["h_tlv"], -1.0).astype(np.float64)
        back = up & (((fall > 0) & near(fall)) | ((long_run >= 0) & near(np.maximum(long_run, 0))))
        for j in np.flatnonzero(back):
            self._rebase_ref(s, j, mean_up[j])
            s["h_cup"][j] = s["h_cun"][j] = 0
            s["h_fallref"][j] = 0
        up = up & ~back
        small_up = ev & (s["h_cup"] > h) & (s["h_cupn"] >= cfg.min_run_days) & ~up & ~vacant
        small_dn = ev & (s["h_cun"] > h) & (s["h_cunn"] >= cfg.min_run_days) & ~dn & ~vacant
        for key, small, mean in (("up", small_up, mean_up), ("un", small_dn, mean_dn)):
            for j in np.flatnonzero(small):
                self._rebase_ref(s, j, mean[j])
                s[f"h_c{key}"][j], s[f"h_c{key}n"][j], s[f"h_c{key}sum"][j] = 0, 0, 0
        return up

    def _rebase_ref(self, s: np.ndarray, j: int, log_ratio: float) -> None:
        """Move meter ``j``'s reference by a log ratio of (level + c), as the CUSUM
        measures it (a near-zero reference still reaches the new level)."""
        c = self.config.cusum_c_kwh
        s["h_ref"][j] = np.maximum((s["h_ref"][j] + c) * math.exp(log_ratio) - c, 0.05)

    def _learn_persistence(self, s: np.ndarray, r: np.ndarray, ev: np.ndarray,
                           sd: np.ndarray) -> None:
        """Lag-1 covariance of the daily log ratio (winsorised at 3 spreads), learned on
        days with a day before them."""
        rc = np.clip(r, -3 * sd, 3 * sd)
        a = np.where(ev, 0.02, 0.0)
        s["h_rcov"] = s["h_rcov"] + a * (rc * s["h_rprev"] - s["h_rcov"])
        s["h_rprev"] = np.where(ev, rc, 0.0)

    def _change_evidence(self, d: DayClose, j: int, since: int, level: float) -> dict:
        ref = d.ref
        change = level / max(ref[j], 0.05)
        return {"since_day": iso_day(since), "usual_day_kwh": round(ref[j], 2),
                "recent_day_kwh": round(level, 2), "ratio": round(change, 3),
                "change_pct": round((change - 1) * 100, 1),
                "days": int(d.day[j]) - since + 1, "peers_log_ratio": round(d.found["peer_r"][j], 3)}

    def _open_change(self, d: DayClose, j: int, sub: str, since: int, ratio: float,
                     level: float, out) -> int:
        """Report a ``habit_change`` opening (a rise or a vacancy); its start."""
        s = d.s
        since_ts = d.since_ts(self.calendar, since)
        if sub == "vacancy":
            since_ts = self._start(s, j, VACANT, since_ts, int(d.batch.ts[d.rows[j]]))
        self._emit(s, j, d.rows, d.batch, "habit_change", sub, "open", since_ts, out,
                   score=abs(math.log(max(ratio, 1e-3))), severity="info",
                   evidence=self._change_evidence(d, j, since, level))
        return since_ts

    def _report_level(self, d: DayClose, j: int, out) -> None:
        """Report meter ``j``'s level change (a fall as one story with the theft test,
        :mod:`models.habit.drop`), then move its habit to the new level."""
        s, c = d.s, self.config.cusum_c_kwh
        key, sub = ("up", "increase") if d.found["up"][j] else ("un", "decrease")
        since, n_, tot = int(s[f"h_c{key}day"][j]), int(s[f"h_c{key}n"][j]), float(s[f"h_c{key}sum"][j])
        ratio = math.exp(tot / max(n_, 1))
        level = (d.ref[j] + c) * ratio - c
        if sub == "increase":
            self._open_change(d, j, sub, since, ratio, level, out)
        else:
            self._tell_fall(d, j, d.since_ts(self.calendar, since), abs(math.log(max(ratio, 1e-3))),
                            self._change_evidence(d, j, since, level), out)
        self._follow_change(d, j, sub, ratio, level)

    def _follow_change(self, d: DayClose, j: int, sub: str, ratio: float, level: float) -> None:
        """The change is reported once: the whole habit (reference, usual day, slot
        profile) moves to the new level, or surges would keep firing against the old."""
        s, cfg, c = d.s, self.config, self.config.cusum_c_kwh
        change = level / max(d.ref[j], 0.05)
        # ratio is of (level + c): re-baseline the reference in that space so a
        # near-zero reference (a meter idle in its first days) reaches the new level.
        ratio_c = min(max(ratio, 0.02), 50.0)
        s["h_ref"][j] = np.maximum((s["h_ref"][j] + c) * ratio_c - c, 0.05)
        # A rise moves the habit at once (or every day at the new level would be a
        # surge). A fall moves it only part of the way (change ** fall_follow; by
        # default not at all) and the days teach the rest at the usual pace: scaled
        # down all the way, a fall that soon ended made each day back at the old level
        # look like a surge or a new load.
        follow = 1.0 if sub == "increase" else cfg.fall_follow
        scale = np.float32(min(max(change, 0.05), 20.0) ** follow)
        for f in ("h_lv", "h_lvdev", "h_mu", "h_dev"):
            s[f][j] = s[f][j] * scale
        s["h_cup"][j] = s["h_cun"][j] = 0
        # Negative after a fall: the reference settles, the usual day does not chase
        # the low days (see the day's learning).
        s["h_settle"][j] = cfg.settle_days if sub == "increase" else -cfg.settle_days
        # Where the home was before a fall: a return there ends the story.
        s["h_fallref"][j] = d.ref[j] if sub == "decrease" else 0
