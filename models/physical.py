"""Physical checks: the meter's own measurements contradict each other, or it says so.

These need no habit history, so they run from a meter's first reading:

- ``theft/energy_mismatch``: metered energy well below what voltage x current x power
  factor x duration implies (a bypassed or slowed meter still sees the load's current
  on its voltage and current channels), for consecutive intervals.
- ``theft/zero_with_voltage``: zero energy for hours while voltage is present and the
  meter measures current.
- ``theft/tamper_event``: cover / terminal cover open, magnetic tamper flags.
- ``theft/reverse_flow``: export energy or a reverse-flow flag on a customer without
  solar (a reversed meter connection runs the register backwards).
- ``theft/current_imbalance``: live and neutral current differ (single phase), the
  classic sign of a load connected around the meter to another return path.
- ``outage/power_fail``: power-fail / last-gasp flags, closed by the restore flag.

>>> import numpy as np
>>> from models.base import BitConditions, Condition, Batch, Fleet, AreaView
>>> from models.base import compose_dtype
>>> det = PhysicalDetector()
>>> st = np.zeros(1, compose_dtype(det.fields))
>>> b = Batch.from_columns(1, meter=[0], ts=[1_700_000_100], events=[1])  # cover_open
>>> out = []
>>> det.step(st, b, Fleet.simple(1), AreaView(np.zeros(0, int), np.zeros(1, int), np.zeros(0)), out)
>>> [(f.type, f.subtype, f.action) for f in out]
[('theft', 'tamper_event', 'point')]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.base import (EVENT_BITS, OUTAGE_BITS, TAMPER_BITS, AreaView, Batch, BitConditions,
                         Condition, Finding, Fleet, any_, event_names)
from models.config import PhysicalConfig

MISMATCH, ZERO_V, REVERSE, IMBALANCE, OUTAGE = range(5)
# Checks that come and go with the load: judged over a day, and one back within the
# cool-down is the same story (physical.clear_s, physical.cool_days).
_FLICKERS = frozenset({MISMATCH, ZERO_V, IMBALANCE})


def _nan_to_num(x: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(x)`` for float arrays, in fewer numpy calls when x has no infinities
    (the usual case: an absent export register is NaN)."""
    if any_(np.isinf(x)):
        return np.nan_to_num(x)
    return np.where(np.isnan(x), 0.0, x)


@dataclass(slots=True)
class _Readings:
    """One batch's columns as the checks share them, with what more than one check
    derives from them (computed once per batch)."""

    batch: Batch
    m: np.ndarray  # fleet rows
    ts: np.ndarray
    hours: np.ndarray  # interval length
    v: np.ndarray
    i: np.ndarray
    pf: np.ndarray
    kwh: np.ndarray
    exp: np.ndarray  # export, 0 where absent
    through: np.ndarray  # import plus export: the energy the current carried
    phases: np.ndarray  # float64
    customer: np.ndarray  # not an area meter
    i_nan: np.ndarray
    strong: np.ndarray  # current measured
    any_events: bool
    # A condition's bit is set only by its own _track, so if no bit is set now none
    # is open when each _track looks: they can skip testing for open ones.
    none_open: bool

    @classmethod
    def of(cls, batch: Batch, fleet: Fleet, *, none_open: bool) -> "_Readings":
        m = batch.meter
        i = batch.current
        kwh = batch.kwh
        # The current flows both ways: a solar customer exporting shows current with
        # zero import. Metered throughput is import plus export.
        exp = _nan_to_num(batch.kwh_export)
        i_nan = np.isnan(i)
        return cls(batch, m, batch.ts, batch.interval_s / 3600.0, batch.voltage, i,
                   batch.power_factor, kwh, exp, kwh + exp,
                   fleet.phases[m].astype(np.float64), ~fleet.is_area_meter[m],
                   i_nan, ~i_nan, any_(batch.events), none_open)


class PhysicalDetector(BitConditions):
    """Cross-checks of one meter's measurements and its event flags."""

    conditions = (
        Condition("x_open", MISMATCH, "theft", "energy_mismatch", "warning"),
        Condition("x_open", ZERO_V, "theft", "zero_with_voltage", "warning"),
        Condition("x_open", REVERSE, "theft", "reverse_flow", "warning"),
        Condition("x_open", IMBALANCE, "theft", "current_imbalance", "warning"),
        Condition("x_open", OUTAGE, "outage", "power_fail", "warning"),
    )
    fields = (
        ("x_em_run", "<i2"),  # consecutive intervals of energy mismatch
        ("x_zv_run", "<i2"),  # consecutive zero-energy intervals with voltage and current
        ("x_ci_run", "<i2"),  # consecutive current-imbalance intervals
        ("x_open", "<u1"),
        ("x_start", "<i8", (5,)),
        ("x_missing", "<f4"),  # energy unaccounted for during an open mismatch (kWh)
        ("x_last", "<i8", (5,)),  # last interval each condition was seen (its end, epoch s)
        ("x_closed", "<i8", (5,)),  # when each condition last closed (cool-down)
    )
    area_fields = ()

    def __init__(self, config: PhysicalConfig | None = None) -> None:
        self.config = config or PhysicalConfig()

    def init(self, st: np.ndarray, fleet: Fleet, meters: np.ndarray) -> None:
        pass

    def init_area(self, ast: np.ndarray, fleet: Fleet, areas: np.ndarray) -> None:
        pass

    def step(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView,
             out: list[Finding]) -> None:
        if len(batch) == 0:
            return
        r = _Readings.of(batch, fleet, none_open=not any_(st["x_open"]))
        # The order matters only for the findings' order in ``out``: each check reads
        # and writes its own state fields.
        self._energy_mismatch(st, r, out)
        self._zero_with_voltage(st, r, fleet, out)
        self._tamper(r, out)
        self._reverse_flow(st, r, fleet, out)
        self._current_imbalance(st, r, out)
        self._power_fail(st, r, out)

    def _energy_mismatch(self, st: np.ndarray, r: _Readings, out: list[Finding]) -> None:
        """Metered energy well below what the meter's own V and I imply."""
        cfg = self.config
        batch, ts, kwh, v, i, pf = r.batch, r.ts, r.kwh, r.v, r.i, r.pf
        # Energy the meter's own V and I imply (unknown pf: assume 0.9, the usual
        # residential figure, so a missing pf never inflates the expectation).
        pf_used = np.where(np.isnan(pf), 0.9, np.abs(pf))
        implied = v * i * pf_used * r.phases * r.hours / 1000.0
        have = ~np.isnan(implied) & r.customer
        through = r.through
        told = have & (implied >= cfg.mismatch_min_kwh)  # enough current to tell
        mism = told & (through < (1 - cfg.mismatch_tol) * implied)
        st["x_em_run"] = np.where(mism, st["x_em_run"] + 1, np.where(told, 0, st["x_em_run"]))
        st["x_missing"] += np.where(mism, implied - through, 0.0)
        # A bypassed meter only shows while the load draws current: a night at low load
        # tells nothing, and a measured interval is "fine" only when it could have shown.
        fine = told & ~mism
        self._track(st, MISMATCH, st["x_em_run"] >= cfg.mismatch_intervals, fine, batch,
                    "theft", "energy_mismatch", out,
                    none_open=r.none_open,
                    start=lambda: ts - (st["x_em_run"].astype(np.int64) - 1) * batch.interval_s,
                    evidence=lambda j: {
                        "metered_kwh": round(float(kwh[j]), 4),
                        "implied_kwh": round(float(implied[j]), 4),
                        "voltage": round(float(v[j]), 1), "current": round(float(i[j]), 2),
                        "power_factor": None if np.isnan(pf[j]) else round(float(pf[j]), 3),
                        "ratio": round(float(kwh[j] / max(implied[j], 1e-9)), 3),
                        "intervals": int(st["x_em_run"][j]),
                        "unbilled_kwh": round(float(st["x_missing"][j]), 3)},
                    risk=lambda j: min(1.0, 0.5 + 0.5 * (1 - kwh[j] / max(implied[j], 1e-9))))
        st["x_missing"][fine & ((st["x_open"] & np.uint8(1 << MISMATCH)) == 0)] = 0

    def _zero_with_voltage(self, st: np.ndarray, r: _Readings, fleet: Fleet,
                           out: list[Finding]) -> None:
        """Zero energy while the meter sees voltage and current."""
        cfg = self.config
        batch, ts, v, i, hours = r.batch, r.ts, r.v, r.i, r.hours
        zv = r.customer & (r.through == 0) & ~np.isnan(v) & (
            v > 0.5 * fleet.nominal_voltage[r.m]) & (r.i_nan | (i >= cfg.zero_current_a))
        st["x_zv_run"] = np.where(zv, st["x_zv_run"] + 1, 0)
        self._track(st, ZERO_V, (st["x_zv_run"] >= cfg.zero_voltage_intervals) & r.strong,
                    r.kwh > 0, batch, "theft", "zero_with_voltage", out,
                    none_open=r.none_open,
                    start=lambda: ts - (st["x_zv_run"].astype(np.int64) - 1) * batch.interval_s,
                    evidence=lambda j: {"intervals": int(st["x_zv_run"][j]),
                                        "voltage": round(float(v[j]), 1),
                                        "current": round(float(i[j]), 2),
                                        "hours": round(float(st["x_zv_run"][j] * hours[j]), 2)},
                    risk=lambda j: 0.8)

    @staticmethod
    def _tamper(r: _Readings, out: list[Finding]) -> None:
        """Tamper flags: one point alert per flagged interval (each is a site visit)."""
        if not r.any_events:
            return  # most batches carry no event flag at all
        batch, m, ts = r.batch, r.m, r.ts
        for j in ((batch.events & TAMPER_BITS) != 0).nonzero()[0]:
            names = event_names(int(batch.events[j] & TAMPER_BITS))
            sev = "critical" if "magnetic_tamper" in names else "warning"
            out.append(Finding("theft", "tamper_event", "point", "meter", int(m[j]), int(ts[j]),
                               int(ts[j]), sev, 0.9, {"risk": 0.9, "events": names,
                                                       "indicators": {"events": names}}))

    def _reverse_flow(self, st: np.ndarray, r: _Readings, fleet: Fleet,
                      out: list[Finding]) -> None:
        """Export energy or a reverse-flow flag on a customer without solar."""
        cfg = self.config
        batch, exp = r.batch, r.exp
        rev = r.customer & ~fleet.solar[r.m] & (
            ((exp >= cfg.reverse_min_kwh) | ((batch.events & EVENT_BITS["reverse_flow"]) != 0))
            if r.any_events else exp >= cfg.reverse_min_kwh)
        self._track(st, REVERSE, rev, ~rev, batch, "theft", "reverse_flow", out,
                    none_open=r.none_open, start=r.ts,
                    evidence=lambda j: {"export_kwh": round(float(exp[j]), 4),
                                        "flag": bool(batch.events[j] & EVENT_BITS["reverse_flow"]),
                                        "solar": False},
                    risk=lambda j: 0.85)

    def _current_imbalance(self, st: np.ndarray, r: _Readings, out: list[Finding]) -> None:
        """Live vs neutral current on single-phase meters."""
        cfg = self.config
        batch, ts, i = r.batch, r.ts, r.i
        ni = batch.neutral_current
        hv = r.customer & (r.phases == 1) & r.strong & ~np.isnan(ni)
        diff = np.abs(i - ni)
        imb = hv & (diff >= cfg.imbalance_a) & (diff >= cfg.imbalance_share * np.maximum(i, ni))
        st["x_ci_run"] = np.where(imb, st["x_ci_run"] + 1, np.where(hv, 0, st["x_ci_run"]))
        self._track(st, IMBALANCE, st["x_ci_run"] >= cfg.imbalance_intervals, hv & ~imb, batch,
                    "theft", "current_imbalance", out,
                    none_open=r.none_open,
                    start=lambda: ts - (st["x_ci_run"].astype(np.int64) - 1) * batch.interval_s,
                    evidence=lambda j: {"live_a": round(float(i[j]), 2),
                                        "neutral_a": round(float(ni[j]), 2),
                                        "difference_a": round(float(diff[j]), 2),
                                        "intervals": int(st["x_ci_run"][j])},
                    risk=lambda j: min(1.0, 0.5 + float(diff[j]) / max(float(max(i[j], ni[j])), 1e-6) / 2))

    def _power_fail(self, st: np.ndarray, r: _Readings, out: list[Finding]) -> None:
        """Outage flags: power_fail/last gasp opens, power_restore closes."""
        batch = r.batch
        if r.any_events:
            fail = (batch.events & OUTAGE_BITS) != 0
            restore = ((batch.events & EVENT_BITS["power_restore"]) != 0) & ~fail
        else:
            fail = restore = np.zeros(len(batch), bool)
        self._track(st, OUTAGE, fail, restore, batch, "outage", "power_fail", out,
                    none_open=r.none_open, start=r.ts,
                    evidence=lambda j: {"events": event_names(int(batch.events[j]))},
                    risk=None, severity="warning")

    def _track(self, st, cond, active, clear, batch, type_, sub, out, *, start, evidence, risk,
               severity="warning", none_open=False) -> None:
        """Open where ``active`` and not open; close where open, ``clear`` and the
        condition unseen for ``clear_s`` (a day: interval checks that flicker with the
        load are judged over a day); a recurrence within ``cool_days`` of the close
        reopens the same alert (same start, same id). Flags and export say it outright:
        they close at once, and each outage or reversal is an alert of its own."""
        if none_open and not any_(active):
            return
        bit = np.uint8(1 << cond)
        is_open = (st["x_open"] & bit) != 0
        if not any_(active) and not any_(is_open):
            return
        ts = batch.ts
        st["x_last"][:, cond] = np.where(active, ts, st["x_last"][:, cond])
        opening = (active & ~is_open).nonzero()[0]
        if len(opening) and callable(start):
            start = start()  # run lengths as of this call: _track changes only x_open, x_start
        cool = self.config.cool_days * 86400
        for j in opening:
            ev = evidence(j)
            score = float(risk(j)) if risk else 1.0
            if risk:
                ev = {"risk": round(score, 3), "indicators": ev}
            s0 = int(start[j])
            closed = int(st["x_closed"][j, cond])
            if (cond in _FLICKERS and closed > 0 and int(ts[j]) - closed <= cool
                    and st["x_start"][j, cond] > 0):
                s0 = int(st["x_start"][j, cond])  # the same story: reopened
            out.append(Finding(type_, sub, "open", "meter", int(batch.meter[j]), s0,
                               int(ts[j]), severity, score, ev))
            st["x_open"][j] |= bit
            st["x_start"][j, cond] = s0
        quiet = ts - st["x_last"][:, cond] >= self._clear_s(cond)
        for j in (is_open & clear & quiet).nonzero()[0]:
            out.append(Finding(type_, sub, "close", "meter", int(batch.meter[j]),
                               int(st["x_start"][j, cond]), int(ts[j]), severity, 0.0,
                               evidence(j)))
            st["x_open"][j] &= ~bit
            st["x_closed"][j, cond] = ts[j]

    def _clear_s(self, cond: int) -> int:
        """How long a condition must stay unseen before it closes: a day for the checks
        that flicker with the load; at once for flags and export (they say it outright)."""
        return self.config.clear_s if cond in _FLICKERS else 0
