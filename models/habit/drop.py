"""A fall in use, told once: ``theft/consumption_drop`` or ``habit_change/decrease``,
whichever of the two hypotheses the days make likelier, with both scored in the
evidence.

The theft test: the recent days' energy AND low (base) power both well below the
meter's own reference, while the area's peers did not fall. A lower level alone is what
every holiday, mild week and frugal month looks like; the attacks that remove energy
(h1 scaling, h3 random factors, a slowed or bypassed meter) lower the base load too,
which people going out, away or saving do not: a fridge and standby keep running. The
reference here is the theft test's own and is not re-baselined when a habit change is
reported, or a drop would be absorbed as the customer's new habit the day it is noticed.

One story: when the level CUSUM reports a fall (:mod:`models.habit.level`), the fall
opens as theft if the base load fell with it, else as changed habits; while that story
is open, the other test does not open a second alert: it updates the story's alert
(a habit story whose base load then falls too is updated to say theft is now likelier).
A theft story closes after a few ordinary days (or is accepted as the new level a month
on); a habit story closes when the level is back or after the same month.

State: ``h_tlv``/``h_tbase`` (reference day kWh and low kW), ``h_trlv``/``h_trbase`` (the
same over the last few days, EW), ``h_tdays``, ``h_tcnt``/``h_tclr`` (days meeting / not
meeting the test); the story's start in ``h_start[DROP]``, its kind in the DROP / FALL
bits, ``h_peak[DROP]`` 1 once a habit story was updated to theft.
"""

from __future__ import annotations

import math

import numpy as np

from models.habit.common import DROP, FALL, DayClose, iso_day, peer_median, is_open


class DropFamily:
    """Mixin of :class:`models.habit.HabitDetector`: a fall in use as one story."""

    def _drop_measure(self, d: DayClose) -> None:
        """The recent days' level and base against the theft reference, net of peers
        (before the day's learning: the level family reads them when a fall is
        reported). Sets ``found["drop"]`` and ``found["trlv_prev"]``."""
        s, cfg = d.s, self.config
        c, eps, ra = cfg.cusum_c_kwh, cfg.drop_base_eps_kw, cfg.drop_alpha
        E, low, complete = d.E, d.found["low"], d.complete
        d.found["trlv_prev"] = s["h_trlv"].copy()
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
        d.found["drop"] = dict(lr=lr, br=br, tlv=tlv, tbase=tbase, ready=ready,
                               lr_adj=lr - peer_median(lr, ready, pos, cfg.peer_min),
                               br_adj=br - peer_median(br, ready, pos, cfg.peer_min))
        self._weather_drop(d)  # net of the home's temperature response (weather feed)

    def _fall_hypotheses(self, d: DayClose, j: int) -> dict:
        """Both readings of meter ``j``'s fall, and which is likelier and why."""
        m = d.found["drop"]
        base, level = math.exp(m["br"][j]), math.exp(m["lr"][j])
        # The theft test's own rule, on today's figures: the level fallen beyond its
        # spreads and the base load with it, net of the peers.
        theft = bool(m["ready"][j] and m["br_adj"][j] < -self.config.drop_base
                     and self._drop_z(d)[j] < -self.config.drop_z)
        why = (f"the base load fell with the level (to {base:.0%} of its usual) while the "
               "area's peers did not: a fridge and standby keep running whatever the habits"
               if theft else
               f"the base load held ({base:.0%} of its usual): less use on top of an "
               "unchanged standby, as changed habits give")
        return {"likelier": "theft" if theft else "habit", "why": why,
                "level_ratio": round(level, 3), "base_ratio": round(base, 3),
                "peers_level_log_ratio": round(float(m["lr"][j] - m["lr_adj"][j]), 3),
                "peers_base_log_ratio": round(float(m["br"][j] - m["br_adj"][j]), 3)}

    def _tell_fall(self, d: DayClose, j: int, since_ts: int, score: float, evd: dict,
                   out) -> None:
        """The level CUSUM reports a fall: open the story as the likelier hypothesis, or,
        with a story already open, update it."""
        s = d.s
        hyp = self._fall_hypotheses(d, j)
        theft = hyp["likelier"] == "theft"
        if theft:
            evd = {**self._theft_evidence(d, j, self._drop_z(d), evd["since_day"], evd["days"]),
                   "level_change": evd}
            score = evd["risk"]
        else:
            evd = {**evd, "hypotheses": hyp}
        if is_open(s[j:j + 1], DROP)[0] or is_open(s[j:j + 1], FALL)[0]:
            self._update_fall(d, j, evd, out)
            return
        typ, sub = ("theft", "consumption_drop") if theft else ("habit_change", "decrease")
        self._emit(s, j, d.rows, d.batch, typ, sub, "open", since_ts, out, score=score,
                   severity="warning" if theft else "info", evidence=evd)
        s["h_open"][j] |= 1 << (DROP if theft else FALL)
        s["h_start"][j, DROP] = since_ts
        s["h_peak"][j, DROP] = 0
        s["h_tclr"][j] = 0

    def _drop_z(self, d: DayClose) -> np.ndarray:
        """The recent level's fall, net of peers, in the meter's daily spreads."""
        sd = np.maximum(1.25 * d.s["h_rdev"].astype(np.float64), self.config.rdev_floor)
        return d.found["drop"]["lr_adj"] / sd

    def _theft_evidence(self, d: DayClose, j: int, z: np.ndarray, since_day: str,
                        days: int) -> dict:
        s, cfg, m = d.s, self.config, d.found["drop"]
        base = math.exp(m["br"][j])
        risk = float(min(1.0, max(0.0, 0.4 + 0.1 * (-z[j] - cfg.drop_z) + 0.5 * (1 - base))))
        return {"risk": round(risk, 3), "indicators": {
            "recent_day_kwh": round(float(s["h_trlv"][j]), 2),
            "usual_day_kwh": round(float(m["tlv"][j]), 2),
            "level_ratio": round(math.exp(m["lr"][j]), 3),
            "recent_base_kw": round(float(s["h_trbase"][j]), 3),
            "usual_base_kw": round(float(m["tbase"][j]), 3), "base_ratio": round(base, 3),
            "level_z": round(float(z[j]), 2),
            "peers_level_log_ratio": round(float(m["lr"][j] - m["lr_adj"][j]), 3),
            "peers_base_log_ratio": round(float(m["br"][j] - m["br_adj"][j]), 3),
            "since_day": since_day, "days": days},
            "hypotheses": self._fall_hypotheses(d, j)}

    def _update_fall(self, d: DayClose, j: int, evd: dict, out) -> None:
        s = d.s
        theft = bool(is_open(s[j:j + 1], DROP)[0])
        typ, sub = ("theft", "consumption_drop") if theft else ("habit_change", "decrease")
        severity = "warning" if theft or evd["hypotheses"]["likelier"] == "theft" else "info"
        self._emit(s, j, d.rows, d.batch, typ, sub, "update", int(s["h_start"][j, DROP]), out,
                   score=float(evd.get("risk", 0.0)), severity=severity, evidence=evd)

    def _drop_test(self, d: DayClose, teach: np.ndarray, out) -> None:
        """The theft test on the day (after its learning: judged in today's spread)."""
        s, cfg, m = d.s, self.config, d.found["drop"]
        z = self._drop_z(d)
        ready = m["ready"]
        hit = ready & (z < -cfg.drop_z) & (m["br_adj"] < -cfg.drop_base)
        s["h_tcnt"] = np.where(hit, np.minimum(s["h_tcnt"] + 1, 100),
                               np.where(ready, 0, s["h_tcnt"]))
        was_open = is_open(s, DROP)
        s["h_tclr"] = np.where(was_open & ready & ~hit, s["h_tclr"] + 1,
                               np.where(was_open & hit, 0, s["h_tclr"]))
        for j in np.flatnonzero(hit & ~was_open & (s["h_tcnt"] >= cfg.drop_days)):
            self._theft_found(d, j, z, out)
        self._close_drop(d, was_open, out)
        self._close_habit_fall(d, out)
        self._learn_drop_ref(d, teach & ~hit)

    def _theft_found(self, d: DayClose, j: int, z: np.ndarray, out) -> None:
        """The theft test holds for ``drop_days``: a new theft story, or, within a story
        told as changed habits, one update saying theft is now likelier."""
        s = d.s
        since = int(d.day[j]) - int(s["h_tcnt"][j]) + 1
        evd = self._theft_evidence(d, j, z, iso_day(since), int(s["h_tcnt"][j]))
        if is_open(s[j:j + 1], FALL)[0]:
            if s["h_peak"][j, DROP] == 0:
                self._update_fall(d, j, evd, out)
                s["h_peak"][j, DROP] = 1
            return
        since_ts = d.since_ts(self.calendar, since)
        self._emit(s, j, d.rows, d.batch, "theft", "consumption_drop", "open", since_ts, out,
                   score=evd["risk"], severity="warning", evidence=evd)
        s["h_open"][j] |= 1 << DROP
        s["h_start"][j, DROP] = since_ts
        s["h_tclr"][j] = 0

    def _close_drop(self, d: DayClose, was_open, out) -> None:
        """A theft story closes after a few ordinary days; or, a month on, the lower
        level is accepted as the reference (inspected by then, or the customer's new
        normal)."""
        s, cfg, m = d.s, self.config, d.found["drop"]
        stale = was_open & (self._story_days(d) >= cfg.drop_accept_days)
        done = was_open & ((s["h_tclr"] >= cfg.clear_days) | stale)
        for j in np.flatnonzero(done):
            self._emit(s, j, d.rows, d.batch, "theft", "consumption_drop", "close",
                       int(s["h_start"][j, DROP]), out,
                       evidence={"level_ratio": round(math.exp(m["lr"][j]), 3),
                                 "base_ratio": round(math.exp(m["br"][j]), 3),
                                 "accepted_as_new_level": bool(stale[j])})
            s["h_open"][j] &= ~(1 << DROP) & 0xFFFF
            s["h_tcnt"][j] = 0
            if stale[j]:
                s["h_tlv"][j], s["h_tbase"][j] = s["h_trlv"][j], s["h_trbase"][j]

    def _close_habit_fall(self, d: DayClose, out) -> None:
        """A fall told as changed habits closes when the level is back where it was
        (:meth:`_settle_runs` clears ``h_fallref``) or a month on (the new level is the
        habit by then)."""
        s, cfg, m = d.s, self.config, d.found["drop"]
        told = is_open(s, FALL)
        stale = told & (self._story_days(d) >= cfg.drop_accept_days)
        for j in np.flatnonzero(told & ((s["h_fallref"] == 0) | stale)):
            self._emit(s, j, d.rows, d.batch, "habit_change", "decrease", "close",
                       int(s["h_start"][j, DROP]), out, severity="info",
                       evidence={"level_ratio": round(math.exp(m["lr"][j]), 3),
                                 "back_to_usual": not bool(stale[j])})
            s["h_open"][j] &= ~(1 << FALL) & 0xFFFF

    def _story_days(self, d: DayClose) -> np.ndarray:
        start_day = (d.s["h_start"][:, DROP] - 1) // 86400
        return (d.batch.ts[d.rows] - 1) // 86400 - start_day

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
        self._weather_follow_drop_ref(d, np.where(quiet_ref, a, 0.0))
