"""Vacancy (``habit_change/vacancy``): days of nothing but base load, in a row, for as
many days as make a chance run of this home's quiet days rarer than the family's budget
(``[budget] vacancy``); closed when the home is clearly occupied again, reopened as the
same alert within ``vacancy_cool_days``.

State: ``h_vac`` (vacancy-like days in a row), ``h_pvac`` (share of such days, learned
outside open vacancies, with a prior worth ``VAC_PRIOR_DAYS``), ``h_qvac`` (the share of
them that follow another: persistence).
"""

from __future__ import annotations

import numpy as np

from models.calibrate import run_length_for
from models.habit.common import VAC_PRIOR_DAYS, VACANT, DayClose, is_open


class VacancyFamily:
    """Mixin of :class:`models.habit.HabitDetector`: vacancy runs, openings, closes."""

    def _vacancy_run(self, d: DayClose) -> None:
        """Measured on the home's active energy (above its base load): a home on a large
        base load (storage heating, a server) that uses little on top of it is not
        "vacant" on an ordinary day, and once vacant it must be able to close again.
        Sets ``found``: ``vacant`` (open or a run under way), ``vac`` (to open now)."""
        s, cfg, ev = d.s, self.config, d.ev
        base_day = d.base * 24
        active_day = np.maximum(d.lv - base_day, 0.0)
        vac_day = ev & (d.E <= base_day + np.maximum(cfg.vacancy_active_share * active_day, 0.3))
        vac_prev = s["h_vac"].copy()
        s["h_vac"] = np.where(vac_day, s["h_vac"] + 1, np.where(ev, 0, s["h_vac"]))
        # Days in a row this home needs: its own share of such days (learned outside
        # open vacancies) makes a chance run that long rarer than the budget.
        need = run_length_for(s["h_pvac"], self.budget.vacancy, lo=cfg.vacancy_days_min,
                              hi=cfg.vacancy_days_max, q_stay=s["h_qvac"])
        vac_open = is_open(s, VACANT)
        av = np.where(ev & ~vac_open,
                      np.maximum(1.0 / (s["h_ndays"].sum(axis=1) + VAC_PRIOR_DAYS), 1 / 90), 0)
        s["h_pvac"] = s["h_pvac"] + av * (vac_day - s["h_pvac"])
        after = vac_prev > 0
        s["h_qvac"] = s["h_qvac"] + np.where(after, np.maximum(av, 0.05 * (av > 0)), 0) * (
            vac_day - s["h_qvac"])
        d.found["vacant"] = vac_open | (s["h_vac"] > 0)
        d.found["vac"] = ev & (s["h_vac"] >= need) & ~vac_open & (d.lv >= cfg.min_home_day_kwh)

    def _open_vacancy(self, d: DayClose, j: int, out) -> None:
        s, c = d.s, self.config.cusum_c_kwh
        since = int(d.day[j]) - int(s["h_vac"][j]) + 1
        ratio = (d.E[j] + c) / (max(d.ref[j], 0) + c)
        since_ts = self._open_change(d, j, "vacancy", since, ratio, d.E[j], out)
        s["h_open"][j] |= 1 << VACANT
        s["h_start"][j, VACANT] = since_ts

    def _close_vacancy(self, d: DayClose, out) -> None:
        """Occupied again: clearly above the vacancy level (hysteresis against
        flapping)."""
        s, cfg = d.s, self.config
        base_day = d.base * 24
        active_day = np.maximum(d.lv - base_day, 0.0)
        occupied = d.E > base_day + np.maximum(cfg.occupied_active_share * active_day, 0.6)
        for j in np.flatnonzero(is_open(s, VACANT) & d.ev & occupied):
            self._emit(s, j, d.rows, d.batch, "habit_change", "vacancy", "close",
                       int(s["h_start"][j, VACANT]), out, evidence={"day_kwh": round(d.E[j], 2)})
            s["h_open"][j] &= ~(1 << VACANT) & 0xFFFF
            s["h_closed"][j, VACANT] = d.batch.ts[d.rows[j]]
            s["h_cup"][j] = s["h_cun"][j] = 0
