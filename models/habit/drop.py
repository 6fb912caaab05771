"""``theft/consumption_drop``: the recent days' energy AND low (base) power both well
below the meter's own reference, while the area's peers did not fall.

A lower level alone is what every holiday, mild week and frugal month looks like; the
attacks that remove energy (h1 scaling, h3 random factors, a slowed or bypassed meter)
lower the base load too, which people going out, away or saving do not: a fridge and
standby keep running. The reference here is the theft test's own and is not
re-baselined when a habit change is reported, or a drop would be absorbed as the
customer's new habit the day it is noticed.

State: ``h_tlv``/``h_tbase`` (reference day kWh and low kW), ``h_trlv``/``h_trbase`` (the
same over the last few days, EW), ``h_tdays``, ``h_tcnt``/``h_tclr`` (days meeting / not
meeting the test).
"""

from __future__ import annotations

import math

import numpy as np

from models.habit.common import DROP, DayClose, _iso_day, _peer_median, is_open


class DropFamily:
    """Mixin of :class:`models.habit.HabitDetector`: the consumption drop."""

    def _drop_test(self, d: DayClose, teach: np.ndarray, out) -> None:
        s, cfg = d.s, self.config
        c, eps, ra = cfg.cusum_c_kwh, cfg.drop_base_eps_kw, cfg.drop_alpha
        E, low, complete = d.E, d.found["low"], d.complete
        fresh = s["h_trlv"] <= 0
        s["h_trlv"] = np.where(complete, np.where(fresh, E, (1 - ra) * s["h_trlv"] + ra * E),
                               s["h_trlv"])
        s["h_trbase"] = np.where(complete, np.where(fresh, low, (1 - ra) * s["h_trbase"] + ra * low),
                                 s["h_trbase"])
        tlv, tbase = s["h_tlv"].astype(np.float64), s["h_tbase"].astype(np.float64)
        lr = np.log((s["h_trlv"] + c) / (tlv + c))
        br = np.log((s["h_trbase"] + eps) / (tbase + eps))
        ready = d.ev & (s["h_tdays"] >= cfg.min_days) & (tlv >= cfg.min_home_day_kwh)
        pos = d.areas.pos[d.rows] if len(d.areas.area) else None
        lr_adj = lr - _peer_median(lr, ready, pos, cfg.peer_min)
        br_adj = br - _peer_median(br, ready, pos, cfg.peer_min)
        sd = np.maximum(1.25 * s["h_rdev"].astype(np.float64), cfg.rdev_floor)
        z = lr_adj / sd
        hit = ready & (z < -cfg.drop_z) & (br_adj < -cfg.drop_base)
        s["h_tcnt"] = np.where(hit, np.minimum(s["h_tcnt"] + 1, 100),
                               np.where(ready, 0, s["h_tcnt"]))
        was_open = is_open(s, DROP)
        s["h_tclr"] = np.where(was_open & ready & ~hit, s["h_tclr"] + 1,
                               np.where(was_open & hit, 0, s["h_tclr"]))
        ind = dict(lr=lr, br=br, lr_adj=lr_adj, br_adj=br_adj, z=z, tlv=tlv, tbase=tbase)
        for j in np.flatnonzero(hit & ~was_open & (s["h_tcnt"] >= cfg.drop_days)):
            self._open_drop(d, j, ind, out)
        self._close_drop(d, was_open, lr, br, out)
        self._learn_drop_ref(d, teach & ~hit)

    def _open_drop(self, d: DayClose, j: int, ind: dict, out) -> None:
        s, cfg = d.s, self.config
        lr, br, z = ind["lr"], ind["br"], ind["z"]
        since = int(d.day[j]) - int(s["h_tcnt"][j]) + 1
        since_ts = d.since_ts(self.calendar, since)
        level, base = math.exp(lr[j]), math.exp(br[j])
        risk = float(min(1.0, 0.4 + 0.1 * (-z[j] - cfg.drop_z) + 0.5 * (1 - base)))
        evd = {"risk": round(risk, 3), "indicators": {
            "recent_day_kwh": round(float(s["h_trlv"][j]), 2),
            "usual_day_kwh": round(float(ind["tlv"][j]), 2), "level_ratio": round(level, 3),
            "recent_base_kw": round(float(s["h_trbase"][j]), 3),
            "usual_base_kw": round(float(ind["tbase"][j]), 3), "base_ratio": round(base, 3),
            "level_z": round(float(z[j]), 2),
            "peers_level_log_ratio": round(float(lr[j] - ind["lr_adj"][j]), 3),
            "peers_base_log_ratio": round(float(br[j] - ind["br_adj"][j]), 3),
            "since_day": _iso_day(since), "days": int(s["h_tcnt"][j])}}
        self._emit(s, j, d.rows, d.batch, "theft", "consumption_drop", "open", since_ts, out,
                   score=risk, severity="warning", evidence=evd)
        s["h_open"][j] |= 1 << DROP
        s["h_start"][j, DROP] = since_ts
        s["h_tclr"][j] = 0

    def _close_drop(self, d: DayClose, was_open, lr, br, out) -> None:
        """Closes after a few ordinary days; or, a month on, the lower level is accepted
        as the reference (inspected by then, or the customer's new normal)."""
        s, cfg = d.s, self.config
        start_day = (s["h_start"][:, DROP] - 1) // 86400
        end_day = (d.batch.ts[d.rows] - 1) // 86400
        stale = was_open & ((end_day - start_day) >= cfg.drop_accept_days)
        done = was_open & ((s["h_tclr"] >= cfg.clear_days) | stale)
        for j in np.flatnonzero(done):
            self._emit(s, j, d.rows, d.batch, "theft", "consumption_drop", "close",
                       int(s["h_start"][j, DROP]), out,
                       evidence={"level_ratio": round(math.exp(lr[j]), 3),
                                 "base_ratio": round(math.exp(br[j]), 3),
                                 "accepted_as_new_level": bool(stale[j])})
            s["h_open"][j] &= ~(1 << DROP) & 0xFFFF
            s["h_tcnt"][j] = 0
            if stale[j]:
                s["h_tlv"][j], s["h_tbase"][j] = s["h_trlv"][j], s["h_trbase"][j]

    def _learn_drop_ref(self, d: DayClose, teach: np.ndarray) -> None:
        """The reference learns from ordinary days only (fast while it is new)."""
        s, low, E = d.s, d.found["low"], d.E
        nd = s["h_tdays"].astype(np.float64)
        quiet_ref = teach & ~is_open(s, DROP) & (s["h_tcnt"] == 0)
        a = np.maximum(1.0 / (nd + 1), self.config.drop_ref_alpha)
        # Current values: a drop accepted as the new level just re-baselined them.
        tlv, tbase = s["h_tlv"].astype(np.float64), s["h_tbase"].astype(np.float64)
        s["h_tlv"] = np.where(quiet_ref, np.where(nd == 0, E, tlv + a * (E - tlv)), tlv)
        s["h_tbase"] = np.where(quiet_ref, np.where(nd == 0, low, tbase + a * (low - tbase)), tbase)
        s["h_tdays"] = np.where(quiet_ref, np.minimum(nd + 1, 30000), nd)
