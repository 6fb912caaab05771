"""A new load that recurs (``habit_change/increase``, kind ``new_load``): power well above
habit in the same hours today as yesterday (an EV charger, a heater, a new tenant's
appliance), reported the second day while it runs, rather than after the days a level
CUSUM needs; the profile then takes the load in at once.

State: ``h_xmask``/``h_xprev`` (slots with new-load power today, yesterday),
``h_xtot``/``h_xprevkwh`` (their energy above habit), ``h_xkwh`` (today's, in yesterday's
slots), ``h_xcool`` (days before a new load can be reported again).
"""

from __future__ import annotations

import numpy as np

from models.base import Finding, any_
from models.habit.common import HOURS_PER_SLOT, iso_day


class NewLoadFamily:
    """Mixin of :class:`models.habit.HabitDetector`: the recurring new load."""

    def _new_load(self, st, batch, p, mu, dev, slot, dtype, hours, trusted, out) -> None:
        """Track today's new-load hours and energy; report the load the second day it
        recurs, adding up to ``newload_kwh`` on both days."""
        cfg = self.config
        ex = trusted & (p >= mu + np.maximum(cfg.newload_kw, 3 * dev))
        if not any_(ex) and not any_(st["h_xkwh"] > 0):
            return
        bit = np.left_shift(np.uint64(1), slot.astype(np.uint64))
        near = bit | (bit << np.uint64(1)) | (bit >> np.uint64(1))  # +-1 slot of jitter
        xk = np.where(ex, (p - mu) * hours, 0.0)
        st["h_xmask"] = np.where(ex, st["h_xmask"] | bit, st["h_xmask"])
        st["h_xtot"] += xk
        again = ex & ((st["h_xprev"] & near) != 0)
        st["h_xkwh"] += np.where(again, xk, 0.0)
        fire = (again & (st["h_xkwh"] >= cfg.newload_kwh) & (st["h_xprevkwh"] >= cfg.newload_kwh)
                & (st["h_xcool"] == 0))
        if not any_(fire):
            return
        # A new appliance adds energy; a routine moved to other hours does not (its old
        # hours fall short by what the new ones gain): the day so far, this reading
        # included, must be above habit by a good part of the new load's energy.
        net = st["h_dkwh"] + batch.kwh - (st["h_dexp"] + mu * hours)
        fire &= net >= cfg.newload_net_share * st["h_xkwh"]
        # ... and a change that matters: at least change_min of the usual day.
        usual_now = st["h_lv"][np.arange(len(st)), dtype].astype(np.float64)
        fire &= np.minimum(st["h_xkwh"], st["h_xprevkwh"]) >= cfg.change_min * usual_now
        for j in np.flatnonzero(fire):
            self._report_new_load(st, j, batch, p, mu, dtype, out)

    def _report_new_load(self, st, j, batch, p, mu, dtype, out) -> None:
        cfg = self.config
        since_day = int(st["h_day"][j]) - 1
        since = self.calendar.day_start_ts(since_day)
        kwh = float(min(st["h_xkwh"][j], st["h_xprevkwh"][j]))
        usual = float(st["h_lv"][j, dtype[j]])
        hrs = int(st["h_xmask"][j] & st["h_xprev"][j]).bit_count() * HOURS_PER_SLOT
        out.append(Finding("habit_change", "increase", "open", "meter", int(batch.meter[j]),
                           since, int(batch.ts[j]), "info", float(kwh / max(usual, 1.0)),
                           {"since_day": iso_day(since_day), "new_load_kwh_per_day": round(kwh, 2),
                            "new_load_kw": round(float(p[j] - mu[j]), 2),
                            "hours_seen_both_days": hrs, "usual_day_kwh": round(usual, 2),
                            "recent_day_kwh": round(usual + kwh, 2),
                            "ratio": round((usual + kwh) / max(usual, 0.05), 3),
                            "change_pct": round(kwh / max(usual, 0.05) * 100, 1),
                            "days": 2, "kind": "new_load"}))
        # The load is habit from now on: the day level, the reference and the slots
        # seen so far take it in; no second report while it settles.
        st["h_xcool"][j] = cfg.newload_cool_days
        st["h_lv"][j] += np.float32(kwh)
        st["h_ref"][j] += np.float32(kwh)
        seen = st["h_dvec"][j] / HOURS_PER_SLOT
        st["h_mu"][j] = np.maximum(st["h_mu"][j], seen[None, :])
        st["h_settle"][j] = cfg.settle_days
        st["h_cup"][j] = 0
