"""``surge/bill_projection``: this month's use projected from month-to-date plus the
usual rest of the month, so the customer hears of a big bill before it arrives.

State: ``h_month``, ``h_mkwh``, ``h_msec`` (the month's accumulators) and ``h_mref`` (the
usual day as the month began).
"""

from __future__ import annotations

from calendar import monthrange
from datetime import date

import numpy as np

from models.habit.common import BILL, DayClose, is_open


class BillFamily:
    """Mixin of :class:`models.habit.HabitDetector`: the bill projection."""

    def _check_bill(self, d: DayClose, out) -> None:
        s, cfg = d.s, self.config
        dates = [date.fromordinal(int(x)) for x in d.day]
        dim = np.array([monthrange(x.year, x.month)[1] for x in dates], np.float64)
        mday = s["h_msec"] / 86400.0
        # Against the habit as the month began: a level re-baselined mid-month (a drop)
        # must not make the early, higher days look like a coming big bill.
        usual_daily = np.where(s["h_mref"] > 0, s["h_mref"], s["h_ref"].mean(axis=1)).astype(np.float64)
        # ... and never below the slow, long-run usual day (a fall reported last month
        # does not make this month's ordinary days look like a big bill).
        long_run = np.where(s["h_tdays"] >= cfg.min_days, s["h_tlv"], 0.0).astype(np.float64)
        usual_daily = np.maximum(usual_daily, long_run)
        usual_month = usual_daily * dim
        proj = s["h_mkwh"] + usual_daily * np.maximum(dim - mday, 0)
        trusted = s["h_ndays"].sum(axis=1) >= max(cfg.min_days, 28)
        hit = (d.ev & trusted & (mday >= cfg.bill_min_day) & (proj >= cfg.bill_ratio * usual_month)
               & (proj - usual_month >= cfg.bill_floor_kwh) & ~is_open(s, BILL))
        for j in np.flatnonzero(hit):
            x = dates[j]
            mstart = self.calendar.day_start_ts(x.replace(day=1).toordinal())
            ratio = float(proj[j] / max(usual_month[j], 1e-3))
            self._emit(s, j, d.rows, d.batch, "surge", "bill_projection", "open", mstart, out,
                       score=ratio, severity="info",
                       evidence={"month_to_date_kwh": round(float(s["h_mkwh"][j]), 1),
                                 "projected_kwh": round(float(proj[j]), 1),
                                 "usual_month_kwh": round(float(usual_month[j]), 1),
                                 "ratio": round(ratio, 2), "days_elapsed": round(float(mday[j]), 1),
                                 "month": f"{x.year}-{x.month:02d}"})
            s["h_open"][j] |= 1 << BILL
            s["h_start"][j, BILL] = mstart

    def _close_months(self, st: np.ndarray, rows: np.ndarray, batch, out) -> None:
        for j in rows[is_open(st[rows], BILL)]:
            self._emit(st, j, np.arange(len(st)), batch, "surge", "bill_projection", "close",
                       int(st["h_start"][j, BILL]), out,
                       evidence={"month_kwh": round(float(st["h_mkwh"][j]), 1)})
            st["h_open"][j] &= ~(1 << BILL) & 0xFFFF
