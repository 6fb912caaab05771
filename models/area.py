"""Transformer-area checks: line loss against the area's total meter, and outages that
hit many meters of an area at once (the transformer's or feeder's problem, told to the
control room once, not as fifty customer alerts).

Line loss per local day = (area meter energy - sum of customer meters) / area energy.
Technical loss is a steady few percent; a rise above the area's own normal, day after
day, is energy taken around a meter.

**Who takes it** (the live form of :mod:`models.theft_area`). Per interval, in an area
whose area meter and every customer meter reported in the same round (a data
concentrator's per-area batch), the unaccounted energy ``L = A - sum R - tech(A)`` is
set against each customer's deficit ``d`` from its usual slot energy (the habit's
``h_mu`` at the area's common level so far today) and each meter adds the slot's log
likelihood ratio ``(|d| - |d - L|) / b`` (:func:`models.theft_area.slot_log_lr`) to an
exponentially weighted sum with a 7-day horizon (``al_llr``; its deficit likewise,
``al_def``). EW rather than "reset when the loss run ends": each meter's sum decays
on its own readings, so nothing has to visit every meter of the area when a run ends,
the result does not depend on which round closes the day, and evidence from a loss
that has gone fades in a week instead of staying on a meter forever. The technical
loss is a least-squares fit on ``1, A, A^2`` kept as sufficient statistics per area,
learned at the day close from days judged normal with no loss alert open (forgetting
1/90 per learned day: customers come and go, seasons move the load). Readings that do
not come in the same round as their area meter's (late, split batches, a missing
meter) count for nothing: their slot has no balance. The alert ranks the area's meters
by that log LR plus the theft model's own evidence (``t_cu``) when it runs, each with
weight one (independent evidence adds in log-odds), and refreshes the ranking at each
day close while open (an ``update`` when the top three change).

Runs after :class:`models.habit.HabitDetector` in the same step and reads its state
fields (usual slot energy and spread, today's energy so far) and the theft model's.
"""

from __future__ import annotations

import numpy as np

from models.base import AreaView, Batch, BitConditions, Condition, Finding, Fleet
from models.config import AreaConfig
from models.localtime import LocalCalendar
from models.theft_area import (N_TECH_STATS, common_level, common_level_by, fit_technical, laplace_scale,
                               slot_log_lr)

RANK_HORIZON_S = 7 * 86400  # e-folding time of the per-meter evidence
TECH_FORGET = 1.0 / 90  # per learned day: the technical-loss fit's forgetting
MIN_TECH_DAYS = 7  # normal days learned before the balance scores anyone
TOP_TOLD = 3  # an open alert is updated when its first TOP_TOLD suspects change


class AreaDetector(BitConditions):
    area_conditions = (
        Condition("al_open", 0, "theft", "area_loss", "warning"),
        Condition("ao_open", 0, "outage", "area", "critical"),
    )
    fields = (
        ("al_llr", "<f4"),  # EW sum of slot log LRs "this meter takes the area's loss"
        ("al_def", "<f4"),  # EW sum of its slot deficits (kWh)
    )
    area_fields = (
        ("al_day", "<i4"),
        ("al_area_kwh", "<f8"), ("al_cust_kwh", "<f8"),
        ("al_area_s", "<i4"),  # seconds of the day the area meter covered
        ("al_cust_s", "<f8"),  # meter-seconds the customers covered
        ("al_mu", "<f4"),  # normal loss rate (EW over days)
        ("al_ndays", "<i2"),
        ("al_run", "<i2"),  # consecutive days with loss above normal
        ("al_open", "<u1"), ("al_start", "<i8"),
        ("ao_open", "<u1"), ("ao_start", "<i8"),  # area outage
        ("al_tech", "<f8", (N_TECH_STATS,)),  # technical-loss fit: sufficient statistics
        ("al_tday", "<f8", (N_TECH_STATS,)),  # ... of the day being accumulated
        ("al_coef", "<f8", (4,)),  # its coefficients on 1, A, A^2 and residual variance
        ("al_w", "<f8"),  # EW count of scored intervals (al_def's denominator)
        ("al_top", "<i4", (TOP_TOLD,)),  # fleet rows + 1 of the suspects last told
    )

    def __init__(self, config: AreaConfig | None = None, calendar: LocalCalendar | None = None,
                 customers_per_area: np.ndarray | None = None) -> None:
        self.config = config or AreaConfig()
        self.calendar = calendar or LocalCalendar()
        self.customers_per_area = customers_per_area
        self.area_meters_per_area: np.ndarray | None = None
        self.live_rank = True  # the slot balance hook (off: only for measuring its cost)

    def init(self, st, fleet, meters) -> None:
        pass

    def init_area(self, ast: np.ndarray, fleet: Fleet, areas: np.ndarray) -> None:
        ast["al_mu"] = np.nan

    def _customers(self, fleet: Fleet) -> np.ndarray:
        if self.customers_per_area is None or len(self.customers_per_area) != len(fleet.area_id):
            self.customers_per_area = np.bincount(fleet.area[~fleet.is_area_meter],
                                                  minlength=len(fleet.area_id))
            self.area_meters_per_area = None
        return self.customers_per_area

    def _area_meters(self, fleet: Fleet) -> np.ndarray:
        self._customers(fleet)  # a reloaded registry resets both counts
        if self.area_meters_per_area is None:
            self.area_meters_per_area = np.bincount(fleet.area[fleet.is_area_meter],
                                                    minlength=len(fleet.area_id))
        return self.area_meters_per_area

    def step(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView,
             out: list[Finding]) -> None:
        if len(batch) == 0 or len(areas.area) == 0:
            return
        is_tx = fleet.is_area_meter[batch.meter]
        if is_tx.any():
            self._loss(st, batch, fleet, areas, is_tx, out)
            if self.live_rank and "h_mu" in st.dtype.names:
                self._score_slot(st, batch, fleet, areas, is_tx)

    def late(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView) -> None:
        """Late readings of the area's day being accumulated still count in its energy
        balance; missing, they would leave the day short of coverage (and unjudged)."""
        if len(batch) == 0 or len(areas.area) == 0:
            return
        ast = areas.st
        day, *_ = self.calendar.lookup(batch.ts, batch.interval_s)
        apos = areas.pos
        cur = (ast["al_day"][apos] == day) & (day > 0)
        tx = fleet.is_area_meter[batch.meter]
        for sel, kwh_f, s_f in ((cur & tx, "al_area_kwh", "al_area_s"),
                                (cur & ~tx, "al_cust_kwh", "al_cust_s")):
            if sel.any():
                np.add.at(ast[kwh_f], apos[sel], batch.kwh[sel])
                np.add.at(ast[s_f], apos[sel], batch.interval_s[sel])

    def _loss(self, st, batch, fleet, areas, is_tx, out) -> None:
        cfg = self.config
        ast = areas.st
        tx = np.flatnonzero(is_tx)
        day, *_ = self.calendar.lookup(batch.ts[tx], batch.interval_s[tx])
        apos = areas.pos[tx]
        # A new day at the area meter closes the previous one.
        for k, a in enumerate(apos):
            if ast["al_day"][a] and ast["al_day"][a] != day[k]:
                self._close_day(a, areas, st, batch, fleet, int(batch.ts[tx[k]]), out)
            if ast["al_day"][a] != day[k]:
                ast["al_day"][a] = day[k]
                ast["al_area_kwh"][a] = ast["al_cust_kwh"][a] = 0
                ast["al_area_s"][a] = 0
                ast["al_cust_s"][a] = 0
                ast["al_tday"][a] = 0
        ast["al_area_kwh"][apos] += batch.kwh[tx]
        ast["al_area_s"][apos] += batch.interval_s[tx]
        cust = ~is_tx
        has_tx = np.zeros(len(areas.area), bool)
        has_tx[apos] = True
        c = cust & has_tx[areas.pos]
        if c.any():
            ast["al_cust_kwh"] += np.bincount(areas.pos[c], weights=batch.kwh[c],
                                              minlength=len(areas.area))
            ast["al_cust_s"] += np.bincount(areas.pos[c], weights=batch.interval_s[c],
                                            minlength=len(areas.area))

    # -- the slot balance: who takes the area's loss -------------------------------------
    def _whole_areas(self, batch, fleet, areas, is_tx) -> np.ndarray:
        """Areas of this round whose area meter(s) and every customer meter reported."""
        n = len(areas.area)
        ok = np.isfinite(batch.kwh)
        have_tx = np.bincount(areas.pos[is_tx & ok], minlength=n)
        have_c = np.bincount(areas.pos[~is_tx & ok], minlength=n)
        need_c = self._customers(fleet)[areas.area]
        return (have_tx == self._area_meters(fleet)[areas.area]) & (have_c == need_c) & (need_c > 0)

    def _score_slot(self, st, batch, fleet, areas, is_tx) -> None:
        """This interval's unaccounted energy per whole area: its slot statistics for
        the technical-loss fit, and each customer's log LR of taking it (areas whose
        fit has learned enough normal days)."""
        whole = self._whole_areas(batch, fleet, areas, is_tx)
        if not whole.any():
            return
        ast, n, pos = areas.st, len(areas.area), areas.pos
        kwh = batch.kwh  # a NaN only spoils its own area's sums, and that area is not whole
        # Summed in meter order within each area: the same bits whether the call holds
        # one area's message (the stream, in its own order) or every area (backtest).
        o = np.lexsort((batch.meter, pos))
        po, ko, to = pos[o], kwh[o], is_tx[o]
        A = np.bincount(po[to], weights=ko[to], minlength=n)
        y = A - np.bincount(po[~to], weights=ko[~to], minlength=n)
        A2 = A * A
        ast["al_tday"][whole] += np.stack([np.ones(n), A, A2, A2 * A, A2 * A2, y, y * A,
                                           y * A2, y * y], axis=1)[whole]
        coef = ast["al_coef"]
        ready = whole & (ast["al_ndays"] >= MIN_TECH_DAYS) & (ast["al_tech"][:, 0] > 0)
        if not ready.any():
            return
        L = y - (coef[:, 0] + coef[:, 1] * A + coef[:, 2] * A2)
        rows = np.flatnonzero(~is_tx & ready[pos])
        p = pos[rows]
        iv = batch.interval_s[rows]
        hours = iv / 3600.0
        _, slot, dtype, *_ = self.calendar.lookup(batch.ts[rows], iv)
        # Field by field: a copy of the rows' whole records would cost more than the rest.
        mu = st["h_mu"][rows, dtype, slot] * hours
        dev = st["h_dev"][rows, dtype, slot] * hours
        # The common level so far today, shrunk by two usual hours towards 1 (a day's
        # first slots alone would make it a coin toss).
        prior = st["h_lv"][rows, dtype] / 12.0
        got, used = st["h_dkwh"][rows] + prior, st["h_dexp"][rows] + prior
        level = (common_level_by(got, used, p, n)[p] if np.count_nonzero(ready) > 1 else
                 common_level(got, used))  # one area (the stream's call): a plain median
        d = mu * level - kwh[rows]
        term = slot_log_lr(d, L[p], laplace_scale(dev * level, coef[p, 3]))
        keep = np.exp(-iv / RANK_HORIZON_S)
        st["al_llr"][rows] = st["al_llr"][rows] * keep + term
        st["al_def"][rows] = st["al_def"][rows] * keep + d
        # al_def's denominator decays as the customers' sums do (their mean interval)
        c_iv = np.bincount(p, weights=iv, minlength=n) / np.maximum(np.bincount(p, minlength=n), 1)
        ast["al_w"][ready] = ast["al_w"][ready] * np.exp(-c_iv[ready] / RANK_HORIZON_S) + 1

    def _learn_technical(self, a: int, ast: np.ndarray) -> None:
        """A normal day (no loss alert open) joins the technical-loss fit."""
        if ast["al_tday"][a, 0] <= 0:
            return
        ast["al_tech"][a] = ast["al_tech"][a] * (1 - TECH_FORGET) + ast["al_tday"][a]
        coef, tau2 = fit_technical(ast["al_tech"][a])
        ast["al_coef"][a] = (*coef, tau2)

    # -- the day's verdict -----------------------------------------------------------------
    def _close_day(self, a, areas, st, batch, fleet, ts, out) -> None:
        cfg = self.config
        ast = areas.st
        area = int(areas.area[a])
        n_cust = int(self._customers(fleet)[area])
        coverage = ast["al_cust_s"][a] / max(n_cust * 86400.0, 1.0)
        if ast["al_area_s"][a] < 0.97 * 86400 or coverage < cfg.min_coverage or ast["al_area_kwh"][a] <= 0:
            return  # an incomplete day would show its gaps as loss
        loss = float((ast["al_area_kwh"][a] - ast["al_cust_kwh"][a]) / ast["al_area_kwh"][a])
        mu = float(ast["al_mu"][a])
        n = int(ast["al_ndays"][a])
        if np.isnan(mu):
            mu = loss
        rise = loss - mu
        high = n >= 7 and rise >= cfg.loss_rise
        ast["al_run"][a] = ast["al_run"][a] + 1 if high else 0
        if not ast["al_open"][a] and ast["al_run"][a] >= cfg.loss_days:
            day_start = self.calendar.day_start_ts(int(ast["al_day"][a]))
            ast["al_start"][a] = day_start - (int(ast["al_run"][a]) - 1) * 86400
            self._tell(a, area, areas, st, batch, fleet, ts, loss, mu, "open", out)
            ast["al_open"][a] = 1
        elif ast["al_open"][a] and rise < cfg.loss_rise / 2:
            out.append(Finding("theft", "area_loss", "close", "area", area,
                               int(ast["al_start"][a]), ts, "warning", 0.0,
                               {"loss_rate": round(loss, 4), "normal_loss_rate": round(mu, 4)}))
            ast["al_open"][a] = 0
            ast["al_top"][a] = 0
        elif ast["al_open"][a]:
            self._tell(a, area, areas, st, batch, fleet, ts, loss, mu, "update", out)
        if not high and not ast["al_open"][a]:
            alpha = max(1.0 / (n + 1), cfg.loss_alpha)
            ast["al_mu"][a] = mu + alpha * (loss - mu)
            ast["al_ndays"][a] = min(n + 1, 30000)
            self._learn_technical(a, ast)

    def _tell(self, a, area, areas, st, batch, fleet, ts, loss, mu, action, out) -> None:
        """The alert's opening, or an update when its first suspects changed."""
        ast = areas.st
        suspects, rows = self._rank(st, batch, fleet, areas, a)
        top = np.zeros(TOP_TOLD, np.int32)
        top[:min(len(rows), TOP_TOLD)] = rows[:TOP_TOLD] + 1
        told = ast["al_top"][a]
        # Told again when the first suspect or the first three change, not when two of
        # them swap places behind the first.
        if action == "update" and top[0] == told[0] and set(top) == set(told):
            return
        ast["al_top"][a] = top
        rise = loss - mu
        risk = min(1.0, rise * 5)
        out.append(Finding("theft", "area_loss", action, "area", area, int(ast["al_start"][a]), ts,
                           "warning", max(risk, 0.0), {
                               "risk": round(max(risk, 0.0), 3),
                               "loss_rate": round(loss, 4), "normal_loss_rate": round(mu, 4),
                               "area_kwh": round(float(ast["al_area_kwh"][a]), 2),
                               "customers_kwh": round(float(ast["al_cust_kwh"][a]), 2),
                               "missing_kwh_per_day": round(float(ast["al_area_kwh"][a]) * rise, 2),
                               "days": int(ast["al_run"][a]),
                               "suspects": suspects}))

    def _rank(self, st, batch, fleet, areas, a, top: int = 10) -> tuple[list[dict], np.ndarray]:
        """The area's customer meters by the log LR that each takes the loss (the slot
        balance's plus, with the theft model, the meter's own evidence), best first, and
        their fleet rows. Not only those above even odds: against "honest" every meter
        of a noisy area can score below zero, and the one the loss fits least badly is
        still the likeliest to take it (the posterior over "which meter" goes as
        exp(log LR)). An area whose balance never scored
        (its area meter's readings come apart from the customers') falls back to the
        energy each meter's own sustained fall accounts for."""
        rows = np.flatnonzero((areas.pos == a) & ~fleet.is_area_meter[batch.meter])
        names = st.dtype.names
        if len(rows) == 0 or "h_ref" not in names:
            return [], np.zeros(0, np.int64)
        if areas.st["al_w"][a] <= 0:
            return self._rank_by_fall(st, batch, fleet, rows, top)
        s = st[rows]
        area_llr = s["al_llr"].astype(np.float64)
        own = np.maximum(s["t_cu"].astype(np.float64), 0.0) if "t_cu" in names else None
        score = area_llr + (own if own is not None else 0.0)
        meters = batch.meter[rows]
        order = np.lexsort((meters, -score))
        order = order[:top]
        per_day = float(areas.st["al_w"][a]) * batch.interval_s[rows] / 86400.0
        deficit = s["al_def"] / np.maximum(per_day, 1e-9)
        usual = s["h_lv"].mean(axis=1) if "h_lv" in names else s["h_ref"].mean(axis=1)
        out = []
        for r, k in enumerate(order, 1):
            e = {"meter_id": fleet.meter_id[int(meters[k])], "rank": r,
                 "log_lr": round(float(score[k]), 2),
                 "deficit_kwh_per_day": round(float(deficit[k]), 2),
                 "usual_day_kwh": round(float(usual[k]), 2)}
            if own is not None:
                e["area_log_lr"], e["own_evidence"] = round(float(area_llr[k]), 2), round(float(own[k]), 2)
            out.append(e)
        return out, meters[order]

    def _rank_by_fall(self, st, batch, fleet, rows, top) -> tuple[list[dict], np.ndarray]:
        ref = st["h_ref"][rows].mean(axis=1).astype(np.float64)
        n = np.maximum(st["h_cunn"][rows], 1)
        ratio = np.exp(np.minimum(st["h_cunsum"][rows] / n, 0))
        fall = np.where(st["h_cun"][rows] > 0, ref * (1 - ratio), 0.0)
        order = [k for k in np.argsort(-fall, kind="stable")[:top] if fall[k] > 0.05]
        return ([{"meter_id": fleet.meter_id[int(batch.meter[rows[k]])], "rank": r,
                  "drop_kwh_per_day": round(float(fall[k]), 2),
                  "usual_day_kwh": round(float(ref[k]), 2)} for r, k in enumerate(order, 1)],
                batch.meter[rows[np.array(order, np.int64)]])


def rollup_outages(findings: list[Finding], batch: Batch, fleet: Fleet, areas: AreaView,
                   share: float, min_meters: int = 3) -> list[Finding]:
    """Many meters of one area failing in the same batch -> one area outage finding."""
    fails = [f for f in findings if f.type == "outage" and f.scope == "meter"]
    if not fails or len(areas.area) == 0:
        return findings
    ast = areas.st
    reporting = np.bincount(areas.pos, minlength=len(areas.area))
    by_area: dict[int, list[Finding]] = {}
    pos_of = {int(m): int(p) for m, p in zip(batch.meter, areas.pos)}
    for f in fails:
        by_area.setdefault(pos_of[f.subject], []).append(f)
    drop: set[int] = set()
    extra: list[Finding] = []
    for a, fs in by_area.items():
        opens = [f for f in fs if f.action == "open"]
        closes = [f for f in fs if f.action == "close"]
        if len(opens) >= max(min_meters, share * reporting[a]) and not ast["ao_open"][a]:
            start = min(f.start for f in opens)
            extra.append(Finding("outage", "area", "open", "area", int(areas.area[a]), start,
                                 max(f.ts for f in opens), "critical", len(opens) / reporting[a],
                                 {"meters_affected": len(opens), "meters_reporting": int(reporting[a])}))
            ast["ao_open"][a] = 1
            ast["ao_start"][a] = start
            drop.update(id(f) for f in opens)
        elif ast["ao_open"][a] and closes:
            drop.update(id(f) for f in fs)
            if len(closes) >= max(min_meters, share * reporting[a]):
                extra.append(Finding("outage", "area", "close", "area", int(areas.area[a]),
                                     int(ast["ao_start"][a]), max(f.ts for f in closes), "critical",
                                     0.0, {"meters_restored": len(closes)}))
                ast["ao_open"][a] = 0
        elif ast["ao_open"][a]:
            drop.update(id(f) for f in opens)
    return [f for f in findings if id(f) not in drop] + extra
