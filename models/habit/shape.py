"""The day's shape: ``theft/profile_distortion`` (the flattened, reversed, zeroed,
constant and randomised days of Jokar et al.'s attacks h2-h6) and
``habit_change/schedule`` (the day fits the usual shape better shifted in time, day
after day).

State: ``h_recent`` (EW of recent days' slot power), ``h_dcu``/``h_dcuday`` (distorted
days in a row, first day), ``h_dclr`` (normal days since an open distortion alert),
``h_cor``/``h_cordev`` (the usual recent-shape correlation and its spread, learned with
the day), ``h_shift`` (best shift of the last five days).
"""

from __future__ import annotations

import numpy as np

from models.habit.common import (DISTORT, HOURS_PER_SLOT, DayClose, iso_day, longest_run,
                                 rowcorr, is_open)

SHIFTS = np.array([-8, -6, -4, -3, -2, 2, 3, 4, 6, 8])  # slots a routine may move by


class ShapeFamily:
    """Mixin of :class:`models.habit.HabitDetector`: shape distortion and schedule."""

    def _judge_shape(self, d: DayClose, out) -> None:
        """Shape scores of the finished day, and the distortion alert. Sets ``found``:
        ``low`` (10th-percentile power), ``distorted``, ``cor0``, ``rev``, ``best``,
        ``best_gain``, ``cor_day``."""
        f = d.found
        quiet, shape_ev = self._quiet_days(d)
        rec = self._recent_shape(d, quiet)
        s, cfg = d.s, self.config
        mix = (5 * s["h_mu"][:, 0] + 2 * s["h_mu"][:, 1]).astype(np.float64) / 7
        cor0, cor_rev = rowcorr(rec, mix), rowcorr(rec, mix[:, ::-1])
        cv_rec = rec.std(axis=1) / np.maximum(rec.mean(axis=1), 1e-6)
        cv_usual = mix.std(axis=1) / np.maximum(mix.mean(axis=1), 1e-6)
        active = d.mu > np.maximum(2 * d.base[:, None], d.base[:, None] + 0.1)
        zrun = longest_run((d.vec <= 1e-9) & active) * HOURS_PER_SLOT
        # Spread floored in correlation units: a home whose shape has been steady for
        # weeks is not 'six spreads off' on an ordinary odd week.
        corz = (s["h_cor"] - cor0) / np.maximum(1.25 * s["h_cordev"], cfg.cor_spread_floor)
        corz = np.where(s["h_cor"] - cor0 >= cfg.cor_drop_min, corz, 0.0)
        flat = np.clip(1 - cv_rec / np.maximum(cv_usual, 1e-3), 0, 1)
        rev = (cor_rev - cor0 > cfg.reversal_gain) & (cor_rev > 0.3)
        # Constant readings (h5) need no few-day average to be certain: no home's
        # half-hours stay within a few percent of each other all day while its usual day
        # has a shape; this day alone counts.
        # (The usual profile is an average of days, so smoother than any one day.)
        cv_day = d.vec.std(axis=1) / np.maximum(d.vec.mean(axis=1), 1e-6)
        const = (cv_day < cfg.const_cv) & (cv_usual > 2 * cfg.const_cv) & (d.vec.mean(axis=1) > 0.01)
        self._best_shift(d)
        # A day that fits the usual shape well once shifted is a routine moved in time
        # (a new job, a new term), not a tampered meter: the schedule check reports it.
        moved = ((f["best_gain"] > cfg.schedule_gain)
                 & (f["cor_day"] + f["best_gain"] >= cfg.moved_fit) & ~rev)
        distorted = shape_ev & ~moved & (
            const | (corz > cfg.distort_z) | rev | ((flat > cfg.flat_share) & (cv_usual > 0.3))
            | (zrun >= cfg.zero_run_h))
        f.update(distorted=distorted, cor0=cor0, rev=rev)
        ind = dict(cor0=cor0, cor_rev=cor_rev, corz=corz, flat=flat, cv_day=cv_day,
                   zrun=zrun, rev=rev, const=const)
        self._distortion_alert(d, shape_ev, distorted, ind, out)

    def _quiet_days(self, d: DayClose) -> tuple[np.ndarray, np.ndarray]:
        """A quiet day (the home at its base load: out, asleep, away) has no shape to
        judge, and it is not an attack: its readings stay near the base load, where the
        attacks push readings well below it (zeroed windows, random factors). It neither
        counts as distorted nor as normal, and leaves the recent shape alone. A home too
        small to have a shape (usual day under a kWh) is not judged at all."""
        cfg = self.config
        low = np.quantile(d.vec, 0.1, axis=1)
        d.found["low"] = low
        # Well below the usual day too: a flattened day (h5) keeps the usual total, and
        # a home whose usual day is barely above its base load has no quiet days.
        quiet = ((d.E <= cfg.quiet_factor * d.base * 24 + 0.3) & (d.E <= 0.6 * d.lv)
                 & (low >= cfg.quiet_low * d.base))
        return quiet, d.ev & ~quiet & (d.lv >= cfg.min_home_day_kwh)

    def _recent_shape(self, d: DayClose, quiet: np.ndarray) -> np.ndarray:
        """Judged on the last few days' shape (EW of day vectors), not one noisy day.
        Attacks h4-h6 randomise, flatten or reverse the day every day, which a few-day
        average makes unmistakable; h2 zeroes a window of every day."""
        s, a = d.s, self.config.recent_alpha
        rec = np.where((d.complete & ~quiet)[:, None], (1 - a) * s["h_recent"] + a * d.vec,
                       s["h_recent"]).astype(np.float64)
        fresh_rec = (s["h_recent"].sum(axis=1) == 0) & d.complete & ~quiet
        rec[fresh_rec] = d.vec[fresh_rec]
        s["h_recent"] = rec
        return rec

    def _best_shift(self, d: DayClose) -> None:
        """How much better today fits the usual shape shifted by a few hours. (Today's
        own fit, not the recent few-day shape's: that one moves to a new schedule over
        days, and compared against it a shifted day never gained.)"""
        cor_day = rowcorr(d.vec, d.mu)
        best_gain = np.full(len(d.rows), -np.inf)
        best = np.zeros(len(d.rows), np.int64)
        for sh in SHIFTS:
            g = rowcorr(d.vec, np.roll(d.mu, sh, axis=1)) - cor_day
            better = g > best_gain
            best_gain = np.where(better, g, best_gain)
            best = np.where(better, sh, best)
        d.found.update(cor_day=cor_day, best_gain=best_gain, best=best)

    def _distortion_alert(self, d: DayClose, shape_ev, distorted, ind, out) -> None:
        """Open after ``distort_days`` distorted days in a row; close after
        ``clear_days`` normal ones."""
        s, cfg = d.s, self.config
        s["h_dcuday"] = np.where(distorted & (s["h_dcu"] == 0), d.day, s["h_dcuday"])
        s["h_dcu"] = np.where(distorted, s["h_dcu"] + 1, np.where(shape_ev, 0, s["h_dcu"]))
        was_open = is_open(s, DISTORT)
        for j in np.flatnonzero(shape_ev & (s["h_dcu"] >= cfg.distort_days) & ~was_open):
            self._open_distortion(d, j, ind, out)
        s["h_dclr"] = np.where(was_open & shape_ev & ~distorted, s["h_dclr"] + 1,
                               np.where(was_open & distorted, 0, s["h_dclr"]))
        for j in np.flatnonzero(was_open & (s["h_dclr"] >= cfg.clear_days)):
            self._emit(s, j, d.rows, d.batch, "theft", "profile_distortion", "close",
                       int(s["h_start"][j, DISTORT]), out,
                       evidence={"shape_correlation": round(float(ind["cor0"][j]), 3)})
            s["h_open"][j] &= ~(1 << DISTORT) & 0xFFFF

    def _open_distortion(self, d: DayClose, j: int, ind: dict, out) -> None:
        s = d.s
        corz, rev, flat, zrun, const = (ind[k] for k in ("corz", "rev", "flat", "zrun", "const"))
        risk = float(min(1.0, 0.4 + 0.1 * max(corz[j], 0) + 0.3 * rev[j] + 0.3 * flat[j]
                         + 0.05 * zrun[j] + 0.4 * const[j]))
        indicators = {"shape_correlation": round(float(ind["cor0"][j]), 3),
                      "usual_correlation": round(float(s["h_cor"][j]), 3),
                      "correlation_drop_z": round(float(corz[j]), 2),
                      "reversed_correlation": round(float(ind["cor_rev"][j]), 3),
                      "flatness": round(float(flat[j]), 3),
                      "day_variation": round(float(ind["cv_day"][j]), 3),
                      "zero_hours_when_active": round(float(zrun[j]), 1),
                      "day_kwh": round(float(d.E[j]), 2), "usual_day_kwh": round(float(d.lv[j]), 2),
                      "days": int(s["h_dcu"][j])}
        st_day = int(s["h_dcuday"][j]) or int(d.day[j])
        start = d.since_ts(self.calendar, st_day)
        self._emit(s, j, d.rows, d.batch, "theft", "profile_distortion", "open", start, out,
                   score=risk, severity="warning",
                   evidence={"risk": round(risk, 3), "indicators": indicators})
        s["h_open"][j] |= 1 << DISTORT
        s["h_start"][j, DISTORT] = start
        s["h_dclr"][j] = 0

    def _schedule(self, d: DayClose, out) -> None:
        """``habit_change/schedule``: the day fits the usual shape better shifted (the
        best shift found with the shape checks), the same way, day after day."""
        s, cfg, f, ev = d.s, self.config, d.found, d.ev
        vote = np.where(ev & (f["best_gain"] > cfg.schedule_gain) & (np.abs(f["r"]) < 0.4)
                        & ~f["rev"], f["best"], 0)
        s["h_shift"] = np.where(ev[:, None], np.concatenate([s["h_shift"][:, 1:], vote[:, None]], axis=1),
                                s["h_shift"])
        # The most common nonzero shift of each row's last votes (the smallest on a tie),
        # for all rows at once rather than a np.unique per meter and day.
        h = s["h_shift"].astype(np.int64)
        nz = h != 0
        votes = ((h[:, :, None] == h[:, None, :]) & nz[:, None, :]).sum(axis=2) * nz
        top = votes.max(axis=1)
        mode = np.where(nz & (votes == top[:, None]), h, np.iinfo(np.int64).max).min(
            axis=1, initial=np.iinfo(np.int64).max)
        for j in np.flatnonzero(ev & (top >= max(cfg.schedule_votes, 1))):
            sh = int(mode[j])
            gain, cor_day = f["best_gain"][j], f["cor_day"][j]
            self._emit(s, j, d.rows, d.batch, "habit_change", "schedule", "open",
                       int(d.start_ts[j]) - 4 * 86400, out, score=float(gain),
                       severity="info",
                       evidence={"shift_hours": sh * HOURS_PER_SLOT,
                                 "shape_correlation": round(cor_day, 3),
                                 "shifted_correlation": round(cor_day + gain, 3),
                                 "since_day": iso_day(int(d.day[j]) - 4)})
            s["h_shift"][j] = 0
            # Learn the new schedule at once rather than alert again tomorrow.
            s["h_mu"][j] = np.roll(s["h_mu"][j], sh, axis=1)
            s["h_dev"][j] = np.roll(s["h_dev"][j], sh, axis=1)
