"""Transformer-area checks: line loss against the area's total meter, and outages that
hit many meters of an area at once (the transformer's or feeder's problem, told to the
control room once, not as fifty customer alerts).

Line loss per local day = (area meter energy - sum of customer meters) / area energy.
Technical loss is a steady few percent; a rise above the area's own normal, day after
day, is energy taken around a meter. The alert ranks the area's meters by how much
energy their own sustained fall (the habit model's downward CUSUM) would explain.

Runs after :class:`models.habit.HabitDetector` in the same step and reads its state
fields for the ranking.
"""

from __future__ import annotations

import numpy as np

from models.base import AreaView, Batch, BitConditions, Condition, Finding, Fleet
from models.config import AreaConfig
from models.localtime import LocalCalendar


class AreaDetector(BitConditions):
    area_conditions = (
        Condition("al_open", 0, "theft", "area_loss", "warning"),
        Condition("ao_open", 0, "outage", "area", "critical"),
    )
    fields = ()
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
    )

    def __init__(self, config: AreaConfig | None = None, calendar: LocalCalendar | None = None,
                 customers_per_area: np.ndarray | None = None) -> None:
        self.config = config or AreaConfig()
        self.calendar = calendar or LocalCalendar()
        self.customers_per_area = customers_per_area

    def init(self, st, fleet, meters) -> None:
        pass

    def init_area(self, ast: np.ndarray, fleet: Fleet, areas: np.ndarray) -> None:
        ast["al_mu"] = np.nan

    def _customers(self, fleet: Fleet) -> np.ndarray:
        if self.customers_per_area is None or len(self.customers_per_area) != len(fleet.area_id):
            self.customers_per_area = np.bincount(fleet.area[~fleet.is_area_meter],
                                                  minlength=len(fleet.area_id))
        return self.customers_per_area

    def step(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView,
             out: list[Finding]) -> None:
        if len(batch) == 0 or len(areas.area) == 0:
            return
        is_tx = fleet.is_area_meter[batch.meter]
        if is_tx.any():
            self._loss(st, batch, fleet, areas, is_tx, out)

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
        day_start = self.calendar.day_start_ts(int(ast["al_day"][a]))
        if not ast["al_open"][a] and ast["al_run"][a] >= cfg.loss_days:
            start = day_start - (int(ast["al_run"][a]) - 1) * 86400
            ranking = self._rank(st, batch, fleet, areas, a, area)
            missing = float(ast["al_area_kwh"][a]) * rise
            out.append(Finding("theft", "area_loss", "open", "area", area, start, ts,
                               "warning", min(1.0, rise * 5), {
                                   "risk": round(min(1.0, rise * 5), 3),
                                   "loss_rate": round(loss, 4), "normal_loss_rate": round(mu, 4),
                                   "area_kwh": round(float(ast["al_area_kwh"][a]), 2),
                                   "customers_kwh": round(float(ast["al_cust_kwh"][a]), 2),
                                   "missing_kwh_per_day": round(missing, 2),
                                   "days": int(ast["al_run"][a]),
                                   "suspects": ranking}))
            ast["al_open"][a] = 1
            ast["al_start"][a] = start
        elif ast["al_open"][a] and rise < cfg.loss_rise / 2:
            out.append(Finding("theft", "area_loss", "close", "area", area,
                               int(ast["al_start"][a]), ts, "warning", 0.0,
                               {"loss_rate": round(loss, 4), "normal_loss_rate": round(mu, 4)}))
            ast["al_open"][a] = 0
        if not high and not ast["al_open"][a]:
            alpha = max(1.0 / (n + 1), cfg.loss_alpha)
            ast["al_mu"][a] = mu + alpha * (loss - mu)
            ast["al_ndays"][a] = min(n + 1, 30000)

    def _rank(self, st, batch, fleet, areas, a, area, top: int = 10) -> list[dict]:
        """Meters of the area by the energy their own sustained fall accounts for."""
        rows = np.flatnonzero((areas.pos == a) & ~fleet.is_area_meter[batch.meter])
        if len(rows) == 0 or "h_ref" not in st.dtype.names:
            return []
        ref = st["h_ref"][rows].mean(axis=1).astype(np.float64)
        n = np.maximum(st["h_cunn"][rows], 1)
        ratio = np.exp(np.minimum(st["h_cunsum"][rows] / n, 0))
        fall = np.where(st["h_cun"][rows] > 0, ref * (1 - ratio), 0.0)
        order = np.argsort(-fall)[:top]
        return [{"meter_id": fleet.meter_id[int(batch.meter[rows[k]])],
                 "drop_kwh_per_day": round(float(fall[k]), 2),
                 "usual_day_kwh": round(float(ref[k]), 2)} for k in order if fall[k] > 0.05]


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
