"""Voltage quality: limits by standard, IEEE 1159 events, alerts only when someone must act.

Two kinds of condition come out of the same interval readings:

* **steady state** (``undervoltage`` / ``overvoltage``) from the interval *mean*,
  judged against the selected standard (:data:`STANDARDS`): beyond its absolute band
  at once, beyond a deep band for ``deep_duration_s``, beyond its normal band for
  ``min_duration_s`` (the rules and why each default: :class:`VoltageDetector`);
* **events** (``sag`` / ``swell`` / ``interruption``) from the interval extremes
  ``voltage_min`` / ``voltage_max``: a deep dip below ``dip_pu`` (0.7), a swell above
  ``swell_pu`` (1.1), an interruption below 0.1 pu, opened at once. ``interruption``
  also comes from a mean below 0.1 pu while the meter still reports (battery-backed or
  measuring on a live phase). Shallow dips (0.7-0.9 pu) are normal on a real supply
  and are left to the compliance statistics (:mod:`models.compliance`).

Each condition alerts once per episode: it closes after clean readings, and a
recurrence within ``cool_down_s`` reopens the same alert (same start, same id).

When enough of an area's meters share a condition at once it is the transformer's or
feeder's problem: one area-scope finding replaces the meter findings (see
:class:`VoltageDetector`).

Example
-------
>>> import numpy as np
>>> from models.base import BitConditions, Condition, AreaView, Batch, Fleet, compose_dtype
>>> fleet = Fleet.simple(3)
>>> det = VoltageDetector(min_duration_s=900)
>>> st = np.zeros(3, compose_dtype(det.fields)); det.init(st, fleet, np.arange(3))
>>> ast = np.zeros(1, compose_dtype(det.area_fields)); det.init_area(ast, fleet, np.arange(1))
>>> b = Batch.from_columns(3, meter=[0, 1, 2], ts=[1_700_000_100] * 3, voltage=[221.0, 190.0, 222.0])
>>> out = []
>>> det.step(st, b, fleet, AreaView(np.array([0]), np.zeros(3, np.int64), ast), out)
>>> [(f.subtype, f.action, f.subject, f.severity, round(f.score, 2)) for f in out]
[('undervoltage', 'open', 1, 'warning', 3.64)]
>>> out[0].evidence["limit_v"], out[0].evidence["observed_v"]
(198.0, 190.0)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from models.base import AreaView, Batch, BitConditions, Condition, Finding, Fleet, any_

WEEK_S = 7 * 86400

# IEEE 1159 rms-variation magnitudes (per unit of nominal).
SAG_PU = 0.9
SWELL_PU = 1.1
INTERRUPTION_PU = 0.1


class Standard(NamedTuple):
    """Steady-state limits in per unit of the meter's phase-to-neutral nominal.

    ``low``/``high`` are (single-phase, three-phase). With ``budget`` set (EN 50160) they
    are not hard limits: only a share of the trailing week above ``budget`` outside them
    is a violation; ``crit_low``/``crit_high`` are hard limits and mark severity
    ``critical``.
    """

    low: tuple[float, float]
    high: tuple[float, float]
    crit_low: float
    crit_high: float
    budget: float | None
    source: str


#: Per-standard limits, per unit of nominal (the table the detector runs on).
#:
#: ============  ==================  ==================  ================  ===========
#: standard      low (1ph / 3ph)     high (1ph / 3ph)    critical band     week budget
#: ============  ==================  ==================  ================  ===========
#: gbt12325      0.90 / 0.93         1.07 / 1.07         0.80 - 1.20 (*)   -
#: en50160       0.90                1.10                0.85 - 1.10       5 %
#: ansi_c84_1    114/120 (Range A)   126/120 (Range A)   110/120 - 127/120 -
#: ============  ==================  ==================  ================  ===========
#:
#: (*) GB/T 12325 has a single band; beyond IEEE 1159's long-duration under/overvoltage
#: bounds (0.8 / 1.2 pu) is called critical here. ANSI is kept as exact fractions of its
#: 120 V base so that 120 V gives 114/126/110/127 V exactly and other nominals scale.
STANDARDS: dict[str, Standard] = {
    "gbt12325": Standard(
        low=(0.90, 0.93), high=(1.07, 1.07), crit_low=0.80, crit_high=1.20, budget=None,
        source="GB/T 12325-2008: 220 V single-phase +7%/-10%; <=20 kV three-phase +-7%",
    ),
    "en50160": Standard(
        low=(0.90, 0.90), high=(1.10, 1.10), crit_low=0.85, crit_high=1.10, budget=0.05,
        source="EN 50160: 95% of 10-min means in a week within +-10%, all within +10%/-15%",
    ),
    "ansi_c84_1": Standard(
        low=(114 / 120, 114 / 120), high=(126 / 120, 126 / 120),
        crit_low=110 / 120, crit_high=127 / 120, budget=None,
        source="ANSI C84.1 service voltage: Range A 114-126 V, Range B 110-127 V (120 V base)",
    ),
}


class Limits(NamedTuple):
    low: float
    high: float
    crit_low: float
    crit_high: float


def _standard(name: str) -> Standard:
    try:
        return STANDARDS[name]
    except KeyError:
        raise ValueError(f"unknown voltage standard {name!r}; one of {sorted(STANDARDS)}") from None


def limits(standard: str = "gbt12325", nominal: float = 220.0, phases: int = 1) -> Limits:
    """The standard's limits in volts for a meter of this nominal (phase-to-neutral).

    Rounded to the microvolt so that decimal limits read as written in the standard.

    >>> limits("gbt12325", 220, 1)
    Limits(low=198.0, high=235.4, crit_low=176.0, crit_high=264.0)
    >>> limits("gbt12325", 220, 3).low
    204.6
    >>> limits("en50160", 230)
    Limits(low=207.0, high=253.0, crit_low=195.5, crit_high=253.0)
    >>> limits("ansi_c84_1", 120)
    Limits(low=114.0, high=126.0, crit_low=110.0, crit_high=127.0)
    """
    s = _standard(standard)
    if phases not in (1, 3):
        raise ValueError(f"phases must be 1 or 3, not {phases!r}")
    j = 0 if phases == 1 else 1
    r = lambda pu: round(nominal * pu, 6)  # noqa: E731
    return Limits(r(s.low[j]), r(s.high[j]), r(s.crit_low), r(s.crit_high))


def classify_ieee1159(
    magnitude_pu: float, duration_s: float | None = None, *, freq_hz: float = 50.0
) -> tuple[str | None, str | None]:
    """IEEE 1159 (Table 2) rms-variation category of a magnitude held for a duration.

    ===============  ===========================  ================  ==================
    category         duration                     subtype           typical magnitude
    ===============  ===========================  ================  ==================
    instantaneous    0.5 - 30 cycles              sag / swell       0.1-0.9 / 1.1-1.8
    momentary        30 cycles - 3 s              interruption      < 0.1
                                                  sag / swell       0.1-0.9 / 1.1-1.4
                     (also 0.5-30 cycles for an interruption: 1159 has no
                     instantaneous interruption)
    temporary        3 s - 1 min                  interruption      < 0.1
                                                  sag / swell       0.1-0.9 / 1.1-1.2
    long_duration    > 1 min                      interruption      0.0 (sustained)
                                                  undervoltage      0.8-0.9
                                                  overvoltage       1.1-1.2
    ===============  ===========================  ================  ==================

    The subtype follows from the magnitude thresholds (< 0.1, < 0.9, > 1.1 pu) and the
    category from the duration; the standard's magnitude columns are *typical*, so a
    long 0.7 pu is still an undervoltage. Duration bounds include their upper end.
    ``duration_s`` None/NaN (readings only give interval extremes) means the shortest
    category the magnitude allows: instantaneous, momentary for an interruption.
    Under half a cycle an rms value is not defined: ``("transient", None)``.
    Within 0.9-1.1 pu (or NaN magnitude): ``(None, None)``.

    >>> classify_ieee1159(0.5, 0.1)
    ('instantaneous', 'sag')
    >>> classify_ieee1159(0.05, 10.0)
    ('temporary', 'interruption')
    >>> classify_ieee1159(0.85, 3600)
    ('long_duration', 'undervoltage')
    >>> classify_ieee1159(1.3)
    ('instantaneous', 'swell')
    """
    m = float(magnitude_pu)
    if math.isnan(m) or SAG_PU <= m <= SWELL_PU:
        return (None, None)
    interruption = m < INTERRUPTION_PU
    low = m < SAG_PU
    d = None if duration_s is None or math.isnan(float(duration_s)) else float(duration_s)
    cycle = 1.0 / freq_hz
    if d is not None and d < 0.5 * cycle:
        return ("transient", None)
    if d is None or d <= 30 * cycle:
        cat = "momentary" if interruption else "instantaneous"
    elif d <= 3.0:
        cat = "momentary"
    elif d <= 60.0:
        cat = "temporary"
    else:
        return ("long_duration", "interruption" if interruption else "undervoltage" if low else "overvoltage")
    return (cat, "interruption" if interruption else "sag" if low else "swell")


SUBTYPES = ("undervoltage", "overvoltage", "sag", "swell", "interruption")
UV, OV, SAG, SWL, INT = range(len(SUBTYPES))
_K = len(SUBTYPES)
_SHORT = ("uv", "ov", "sag", "swl", "int")
_BITS = (1 << np.arange(_K)).astype(np.uint8)
_LOWSIDE = np.array([True, False, True, False, True])  # score = limit - observed

# EN 50160 (Table 1 of its dip and swell classification): residual voltage rows
# 90-70 %, 70-40 %, 40-5 %, < 5 % (an interruption); swell rows 110-120 %, >= 120 %.
DIP_CRITICAL_PU = 0.4
SWELL_CRITICAL_PU = 1.2
_CLEAN_MAX = 65535  # minutes (u2): 45 days


def _fields(p: str) -> tuple[tuple[str, str], ...]:
    return (
        (f"{p}_open", "u1"),  # bit k: SUBTYPES[k] open
        (f"{p}_crit", "u1"),  # bit k: open as / escalated to critical
        # end ts of the condition's first anomalous interval (0 = no run); u4 epoch s
        # holds until 2106 at half the bytes of int64
        *((f"{p}_start_{s}", "u4") for s in _SHORT),
        # minutes of clean readings since the last anomalous one, while open or cooling
        *((f"{p}_clean_{s}", "u2") for s in _SHORT),
        # the run beyond the deep band (under/overvoltage only)
        *((f"{p}_deep_{s}", "u4") for s in _SHORT[:2]),
        # start of the last closed episode while it cools down: a recurrence reopens it
        *((f"{p}_prev_{s}", "u4") for s in _SHORT),
    )


class Thresholds(NamedTuple):
    """Edges in per unit for one meter class: the normal band (a deviation beyond it
    must last ``min_duration_s``), the deep band (``deep_duration_s``), the absolute
    band (one reading), the standard's critical band, and the event magnitudes."""

    low: float
    high: float
    deep_low: float
    deep_high: float
    abs_low: float
    abs_high: float
    crit_low: float
    crit_high: float
    dip: float
    swell: float


class VoltageDetector(BitConditions):
    """Voltage alerts only when someone must act (issue 15), with area roll-up.

    A real LV supply dips below 0.9 pu for a minute ~28 times a month and has ~4
    episodes a month with 15-minute means below 0.9 pu lasting up to 90 minutes, all
    normal and compliant (:mod:`models.evaluate.supply`). So a condition opens only when:

    * **absolute band**: one interval mean beyond the standard's absolute band
      (EN 50160 -15 % / +10 %; ANSI C84.1 outside Range B; GB/T 12325's critical band
      0.8 / 1.2 pu), with its low edge no higher than ``deep_low_pu`` (GB/T's and
      ANSI's low edges, 0.90 and 0.917 pu, are crossed by every normal episode);
    * **deep deviation**: the mean beyond ``deep_low_pu`` / ``deep_high_pu`` (capped
      by the absolute high edge) for ``deep_duration_s`` consecutively: means below
      0.87 pu come well under once a month on a real supply;
    * **sustained deviation**: the mean beyond the standard's normal band (EN 50160
      +-10 %, GB/T 12325 +7 % / -10 % (three-phase +-7 %), ANSI Range A) for
      ``min_duration_s`` (default 2 h: the normal low episodes last up to 90 min);
    * **EN 50160 week**: the trailing week has spent its 5 % outside +-10 %, so the
      week fails the standard: each further interval outside +-10 % opens at once;
    * **deep dip** (``sag``): an interval's 1-minute minimum below ``dip_pu``
      (0.7: EN 50160's dip-table row; real minima below 0.8 come twice a year),
      critical below 0.4; **swell**: maximum above ``swell_pu``, critical from 1.2;
      **interruption**: below 0.1 pu (IEEE 1159), critical.

    Shallow short dips (0.7-0.9 pu) never alert: the compliance statistics count them.
    ``alerts`` lists the subtypes that alert at all.

    Once per episode: an open condition closes after ``clear_intervals`` consecutive
    clean intervals (a run's clean reading is one within the normal band, or no event:
    the hysteresis between the deep and the normal band), and a recurrence within
    ``cool_down_s`` of its last anomalous reading reopens it with the same start (the
    same alert id), ``evidence["recurrence"]`` set.

    Area coverage: when at least ``area_share`` of an area's reporting meters, and at
    least ``area_min_meters``, are in a condition at once (and, for the timed rules,
    long enough), one area-scope finding replaces the meter findings; meters already
    open are **closed with** ``evidence["covered_by_area"]``, and their runs restart.

    Severity is ``critical`` beyond the standard's critical band (EN 50160 -15 %/+10 %,
    ANSI Range B, GB/T 0.8/1.2 pu), for dips below 0.4, swells from 1.2 and
    interruptions; else ``warning``. ``update`` is emitted once when an open warning
    turns critical. ``score`` is how far beyond the normal band (or the event
    magnitude), in % of nominal.

    A sag is read from ``voltage_min`` only when the interval mean is not itself beyond
    the absolute band, a swell from ``voltage_max`` only when the mean is not beyond the
    deep band (then the voltage held low or high for most of the interval: an
    under/overvoltage, not a second alert for it). The sag's edge is the lower one
    because a deep dip of a few minutes pulls a 15-minute mean down to ~0.88 pu, where a
    swell rarely lifts it past 1.1. An interruption takes precedence.
    """

    conditions = tuple(Condition("v_open", k, "voltage", sub, None, "v_crit")
                       for k, sub in enumerate(SUBTYPES))
    area_conditions = tuple(Condition("va_open", k, "voltage", sub, None, "va_crit")
                            for k, sub in enumerate(SUBTYPES))
    fields: tuple[tuple[str, str], ...] = (
        *_fields("v"),
        ("v_wk", "u2"),  # epoch week of v_wk_out
        ("v_wk_out", "u4"),  # s outside the EN 50160 +-10% band, this week
        ("v_wk_prev", "u4"),  # same, previous week
    )
    area_fields: tuple[tuple[str, str], ...] = _fields("va")

    def __init__(
        self,
        standard: str = "gbt12325",
        min_duration_s: int = 7200,
        area_share: float = 0.5,
        area_min_meters: int = 3,
        clear_intervals: int = 2,
        *,
        deep_low_pu: float = 0.87,
        deep_high_pu: float = 1.10,
        deep_duration_s: int = 1800,
        dip_pu: float = 0.7,
        swell_pu: float = 1.1,
        cool_down_s: int = 86400,
        alerts: tuple[str, ...] | list[str] = SUBTYPES,
    ) -> None:
        self.standard = standard
        self.min_duration_s = min_duration_s
        self.area_share = area_share
        self.area_min_meters = area_min_meters
        self.clear_intervals = clear_intervals
        self.deep_low_pu, self.deep_high_pu = deep_low_pu, deep_high_pu
        self.deep_duration_s = deep_duration_s
        self.dip_pu, self.swell_pu = dip_pu, swell_pu
        self.cool_down_s = cool_down_s
        self.alerts = tuple(alerts)
        self._std = _standard(standard)
        if not 0 < area_share <= 1:
            raise ValueError("area_share must be in (0, 1]")
        if not 1 <= clear_intervals <= 255:
            raise ValueError("clear_intervals must be in 1..255")
        if not 0 <= cool_down_s <= _CLEAN_MAX * 60:
            raise ValueError(f"cool_down_s must be in 0..{_CLEAN_MAX * 60} (a u2 minute count)")
        if not INTERRUPTION_PU <= dip_pu <= SAG_PU or swell_pu < SWELL_PU:
            raise ValueError("dip_pu must be in 0.1..0.9 and swell_pu >= 1.1")
        bad = set(self.alerts) - set(SUBTYPES)
        if bad:
            raise ValueError(f"unknown voltage alert subtypes {sorted(bad)}; of {SUBTYPES}")
        self._alerting = np.array([k in self.alerts for k in SUBTYPES])

    @classmethod
    def from_config(cls, vc: Any, standard: str | None = None) -> "VoltageDetector":
        """From a :class:`models.config.VoltageConfig` (``standard`` overrides its own)."""
        kw = {f: getattr(vc, f) for f in (
            "min_duration_s", "area_share", "area_min_meters", "clear_intervals", "deep_low_pu",
            "deep_high_pu", "deep_duration_s", "dip_pu", "swell_pu", "cool_down_s", "alerts")}
        return cls(standard=standard or vc.standard, **kw)

    def thresholds(self, phases: int = 1) -> Thresholds:
        """The edges this detector judges a meter of ``phases`` by, in per unit.

        >>> VoltageDetector("en50160").thresholds()
        Thresholds(low=0.9, high=1.1, deep_low=0.87, deep_high=1.1, abs_low=0.85, abs_high=1.1, crit_low=0.85, crit_high=1.1, dip=0.7, swell=1.1)
        >>> t = VoltageDetector("ansi_c84_1").thresholds()
        >>> t.abs_low, round(t.abs_high, 4), round(t.deep_high, 4)
        (0.87, 1.0583, 1.0583)
        """
        s, j = self._std, 0 if phases == 1 else 1
        lo, hi = s.low[j], s.high[j]
        abs_hi = s.crit_high
        return Thresholds(lo, hi, min(self.deep_low_pu, lo), max(hi, min(self.deep_high_pu, abs_hi)),
                          min(s.crit_low, self.deep_low_pu), abs_hi, s.crit_low, s.crit_high,
                          self.dip_pu, self.swell_pu)

    # -- state ---------------------------------------------------------------------

    def init(self, st: np.ndarray, fleet: Fleet, meters: np.ndarray) -> None:
        for name, _ in self.fields:
            st[name] = 0

    def init_area(self, ast: np.ndarray, fleet: Fleet, areas: np.ndarray) -> None:
        for name, _ in self.area_fields:
            ast[name] = 0

    # -- step ----------------------------------------------------------------------

    def _edges(self, three: np.ndarray) -> Thresholds:
        t1, t3 = self.thresholds(1), self.thresholds(3)
        return Thresholds(*(np.where(three, b, a) for a, b in zip(t1, t3)))

    def step(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView,
             out: list[Finding]) -> None:
        n = len(batch)
        if n == 0:
            return
        s = self._std
        m = batch.meter
        nom = fleet.nominal_voltage[m].astype(np.float64)
        e = self._edges(fleet.phases[m] == 3)
        with np.errstate(invalid="ignore", divide="ignore"):
            pu = batch.voltage / nom
            pmin = batch.voltage_min / nom
            pmax = batch.voltage_max / nom
        ok_mean = np.isfinite(pu)
        intr_mean = pu < INTERRUPTION_PU
        under_in, over_in = (pu < e.low) & ~intr_mean, pu > e.high
        under_abs, over_abs = (pu < e.abs_low) & ~intr_mean, pu > e.abs_high
        week = None
        spent = np.zeros(n, bool)
        if s.budget is not None:
            week = self._week_budget(st, batch, ok_mean, under_in | over_in)
            spent = week > s.budget * WEEK_S
        # Fast path: a clean interval with nothing open or counting changes no state.
        # Most intervals of most meters are clean, so this is most calls (and what only
        # the slow path needs is computed after it).
        anything = any_(under_in | over_in | (pmin < e.dip) | (pmax > e.swell) | intr_mean)
        if not anything and not self._busy(st) and not self._busy(areas.st, "va"):
            return
        ok_min, ok_max = np.isfinite(pmin), np.isfinite(pmax)
        yes, no = np.ones(n, bool), np.zeros(n, bool)
        valid = np.stack([ok_mean, ok_mean, ok_min, ok_max, ok_min | ok_mean], 1)
        act = np.stack([
            under_in, over_in,
            (pmin < e.dip) & (pmin >= INTERRUPTION_PU) & ~under_abs & ~intr_mean,
            (pmax > e.swell) & ~(pu > e.deep_high),
            (pmin < INTERRUPTION_PU) | intr_mean,
        ], 1) & self._alerting
        deep = np.stack([(pu < e.deep_low) & ~intr_mean, pu > e.deep_high, no, no, no], 1)
        imm = np.stack([under_abs | (under_in & spent), over_abs | (over_in & spent), yes, yes, yes], 1)
        crit = np.stack([(pu < e.crit_low) & ~intr_mean, pu > e.crit_high, pmin < DIP_CRITICAL_PU,
                         pmax >= SWELL_CRITICAL_PU, yes], 1)
        obs = np.stack([pu, pu, pmin, pmax, np.fmin(pmin, pu)], 1)
        ones = np.ones(n)
        lim = np.stack([e.low, e.high, e.dip, e.swell, INTERRUPTION_PU * ones], 1)
        clim = np.stack([e.crit_low, e.crit_high, DIP_CRITICAL_PU * ones,
                         SWELL_CRITICAL_PU * ones, INTERRUPTION_PU * ones], 1)
        why = np.stack([np.where(under_abs, 1, 2), np.where(over_abs, 1, 2), yes, yes, yes], 1)
        self._step_rest(st, batch, fleet, areas, out, valid, act, deep, imm, crit, obs, lim, clim,
                        why, nom, intr_mean, week)

    def _step_rest(self, st, batch, fleet, areas, out, valid, act, deep, imm, crit, obs, lim, clim,
                   why, nom, intr_mean, week) -> None:
        """Advance area and meter state machines, emit their findings."""
        m = batch.meter
        # Areas first: their open conditions decide which meter findings are covered.
        pos = np.asarray(areas.pos, dtype=np.intp)
        na = len(areas.area)
        per_area = lambda x: np.bincount(  # noqa: E731
            (pos[:, None] * _K + np.arange(_K)).ravel(), weights=np.asarray(x, float).ravel(),
            minlength=na * _K).reshape(na, _K)
        on = valid & act
        rep, aff = per_area(valid), per_area(on)
        qual = lambda c: (c >= self.area_min_meters) & (c >= self.area_share * rep)  # noqa: E731
        a_ts = np.zeros(na, np.int64)
        np.maximum.at(a_ts, pos, batch.ts)
        a_isec = np.zeros(na, np.int64)
        np.maximum.at(a_isec, pos, batch.interval_s.astype(np.int64))
        ar = _advance(
            _load(areas.st, "va"), rep >= self.area_min_meters, qual(aff), qual(per_area(on & deep)),
            qual(per_area(on & imm)), qual(per_area(on & crit)), a_ts, a_isec, self, np.zeros((na, _K), bool),
        )
        _store(areas.st, "va", ar)
        a_why = np.where(qual(per_area(on & (why == 1))), 1, 2)  # opened at once: which rule
        isec = batch.interval_s.astype(np.int64)
        mr = _advance(_load(st, "v"), valid, act, deep, imm, crit, batch.ts, isec, self, ar.open[pos])
        _store(st, "v", mr)

        if ar.any:
            clean_obs = np.where(valid, np.nan_to_num(obs), 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                a_obs_aff = per_area(np.where(on, obs, 0.0)) / aff
                a_obs_rep = per_area(clean_obs) / rep
                a_nom = per_area(valid * nom[:, None]) / rep
                a_lim = per_area(valid * lim) / rep
                a_clim = per_area(valid * clim) / rep
            for a, k, action in ar.findings():
                o = a_obs_rep[a, k] if action == "close" else a_obs_aff[a, k]
                ev = self._evidence(k, action, o, a_lim[a, k], a_clim[a, k], a_nom[a, k],
                                    ar.duration(a, k, action, a_isec[a]), "area", mean_based=False)
                ev["meters_affected"] = int(aff[a, k])
                ev["meters_reporting"] = int(rep[a, k])
                ar.annotate(ev, a, k, action, a_why)
                out.append(ar.finding(a, k, action, "area", int(areas.area[a]), int(a_ts[a]),
                                      o, a_lim[a, k], ev))
        if mr.any:
            for i, k, action in mr.findings():
                ev = self._evidence(k, action, obs[i, k], lim[i, k], clim[i, k], nom[i],
                                    mr.duration(i, k, action, isec[i]), "meter",
                                    mean_based=bool(intr_mean[i]))
                ev["phases"] = int(fleet.phases[m[i]])
                if week is not None:
                    ev["week_outside_s"] = float(week[i])
                    ev["week_share"] = round(float(week[i]) / WEEK_S, 6)
                if mr.cover_close[i, k]:
                    ev["covered_by_area"] = int(areas.area[pos[i]])
                mr.annotate(ev, i, k, action, why)
                out.append(mr.finding(i, k, action, "meter", int(m[i]), int(batch.ts[i]),
                                      obs[i, k], lim[i, k], ev))

    @staticmethod
    def _busy(st: np.ndarray, p: str = "v") -> bool:
        """Any condition open or cooling down, or a run or a clear-count in progress."""
        if len(st) == 0:
            return False
        spans = _busy_spans(st.dtype, p)
        if spans is not None and st.flags.c_contiguous:
            # Checked as raw bytes: the fields are adjacent in the record, so a few
            # byte-span checks replace many per-field ones (any nonzero byte is a
            # nonzero field). Mostly all clean, so this runs on nearly every call.
            raw = st.view(np.uint8).reshape(len(st), st.dtype.itemsize)
            return any(np.count_nonzero(raw[:, a:b]) > 0 for a, b in spans)
        return any(st[f].any() for f in _busy_names(p))

    def _week_budget(self, st: np.ndarray, batch: Batch, ok: np.ndarray, outside: np.ndarray) -> np.ndarray:
        """Roll the two weekly counters, add this interval, return trailing-week seconds.

        The EN 50160 week budget: seconds outside +-10% are counted in the current and
        the previous epoch week; the trailing week is estimated as ``current + previous
        * (1 - elapsed share of current week)``, spent beyond 5 % of a full week (8.4 h):
        unreported intervals count as compliant, and a new meter cannot breach on its
        first bad hours."""
        ts = batch.ts.astype(np.int64)
        wk = ts // WEEK_S
        cur = st["v_wk_out"].astype(np.int64)
        prev = st["v_wk_prev"].astype(np.int64)
        d = wk - st["v_wk"].astype(np.int64)
        prev = np.where(d == 1, cur, np.where(d > 1, 0, prev))
        cur = np.where(d >= 1, 0, cur) + np.where(outside, batch.interval_s.astype(np.int64), 0)
        # NaN mean: no measurement, so the counters stay as they were
        st["v_wk_out"] = np.where(ok, cur, st["v_wk_out"])
        st["v_wk_prev"] = np.where(ok, prev, st["v_wk_prev"])
        st["v_wk"] = np.where(ok & (d >= 1), wk, st["v_wk"])
        return cur + prev * (1.0 - (ts % WEEK_S) / WEEK_S)

    def _evidence(self, k: int, action: str, o: float, lim_pu: float, clim_pu: float,
                  nom: float, dur: int, scope: str, mean_based: bool) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "observed_v": round(float(o * nom), 3),
            "limit_v": round(float(lim_pu * nom), 3),
            "critical_limit_v": round(float(clim_pu * nom), 3),
            "nominal_v": round(float(nom), 3),
            "standard": self.standard,
            "duration_s": int(dur),
            "scope": scope,
        }
        if action != "close":
            # extremes carry no duration; a mean-based condition lasted its run
            timed = k in (UV, OV) or (k == INT and mean_based)
            cat, _ = classify_ieee1159(o, dur if timed else None)
            if cat is not None:
                ev["ieee1159"] = cat
        return ev


def _busy_names(p: str) -> list[str]:
    return [f"{p}_open", *(f"{p}_start_{x}" for x in _SHORT), *(f"{p}_clean_{x}" for x in _SHORT),
            *(f"{p}_deep_{x}" for x in _SHORT[:2]), *(f"{p}_prev_{x}" for x in _SHORT)]


_SPANS: dict[tuple[np.dtype, str], list[tuple[int, int]] | None] = {}
_SPANS_BY_ID: dict[tuple[int, str], tuple[np.dtype, list[tuple[int, int]] | None]] = {}


def _busy_spans(dtype: np.dtype, p: str) -> list[tuple[int, int]] | None:
    """Byte ranges of the record holding the fields :func:`_busy_names` lists
    (``{p}_crit`` left out), merged where adjacent; None if a field is missing or not a
    plain integer."""
    # Hashing a record dtype of a hundred fields costs ~20 us, more than the check it
    # serves: look the dtype object up by identity first (it is almost always the
    # engine's own), keeping it referenced so its id cannot be reused.
    hit = _SPANS_BY_ID.get((id(dtype), p))
    if hit is not None and hit[0] is dtype:
        return hit[1]
    key = (dtype, p)
    if key not in _SPANS:
        names = _busy_names(p)
        fl = dtype.fields or {}
        if not all(n in fl and fl[n][0].kind in "ui" and fl[n][0].shape == () for n in names):
            _SPANS[key] = None
        else:
            spans: list[tuple[int, int]] = []
            for a, b in sorted((fl[n][1], fl[n][1] + fl[n][0].itemsize) for n in names):
                if spans and spans[-1][1] == a:
                    spans[-1] = (spans[-1][0], b)
                else:
                    spans.append((a, b))
            _SPANS[key] = spans
    if len(_SPANS_BY_ID) > 64:  # a few engines' dtypes at most; bound it anyway
        _SPANS_BY_ID.clear()
    _SPANS_BY_ID[(id(dtype), p)] = (dtype, _SPANS[key])
    return _SPANS[key]


def _load(st: np.ndarray, p: str) -> tuple[np.ndarray, ...]:
    open_ = (st[f"{p}_open"][:, None] & _BITS) != 0
    crit_ = (st[f"{p}_crit"][:, None] & _BITS) != 0
    col = lambda name, keys: np.stack([st[f"{p}_{name}_{s}"].astype(np.int64) for s in keys], 1)  # noqa: E731
    deep = np.zeros((len(st), _K), np.int64)
    deep[:, :2] = col("deep", _SHORT[:2])
    return open_, crit_, col("start", _SHORT), col("clean", _SHORT), deep, col("prev", _SHORT)


def _store(st: np.ndarray, p: str, r: "_Advance") -> None:
    st[f"{p}_open"] = (r.open * _BITS).sum(1)
    st[f"{p}_crit"] = (r.crit * _BITS).sum(1)
    for k, s in enumerate(_SHORT):
        st[f"{p}_start_{s}"] = r.start[:, k]
        st[f"{p}_clean_{s}"] = r.clean[:, k]
        st[f"{p}_prev_{s}"] = r.prev[:, k]
        if k < 2:
            st[f"{p}_deep_{s}"] = r.deep[:, k]


_RULES = ("event", "absolute_band", "sustained", "deep", "week_budget")


class _Advance:
    """One interval of the open/close state machine for N subjects x K conditions."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)
        self.any = bool(self.opening.any() or self.closing.any() or self.cover_close.any()
                        or self.escalate.any())

    def findings(self):
        for action, mask in (("close", self.closing | self.cover_close),
                             ("open", self.opening), ("update", self.escalate)):
            for i, k in zip(*np.nonzero(mask)):
                yield int(i), int(k), action

    def duration(self, i: int, k: int, action: str, isec: int) -> int:
        end = self.ts[i]
        if action == "close" and not self.cover_close[i, k]:
            end -= self.clean_f[i, k] * 60  # back to the end of the last bad interval
        return int(end - self.start_f[i, k] + isec)

    def annotate(self, ev: dict[str, Any], i: int, k: int, action: str, why: np.ndarray) -> None:
        """Which rule opened it, and whether it is a recurrence within the cool-down."""
        if action != "open":
            return
        if k in (UV, OV):
            if self.imm[i, k]:
                rule = 1 if why[i, k] == 1 else 4
            else:
                rule = 3 if self.deep_long[i, k] else 2
        else:
            rule = 0
        ev["rule"] = _RULES[rule]
        if self.reopened[i, k]:
            ev["recurrence"] = True

    def finding(self, i: int, k: int, action: str, scope: str, subject: int, ts: int,
                o: float, lim_pu: float, ev: dict[str, Any]) -> Finding:
        if action == "close":
            sev, score = ("critical" if self.crit_f[i, k] else "warning"), 0.0
        else:
            sev = "critical" if (action == "update" or self.crit[i, k]) else "warning"
            score = float((lim_pu - o) if _LOWSIDE[k] else (o - lim_pu)) * 100.0
        return Finding(type="voltage", subtype=SUBTYPES[k], action=action, scope=scope,
                       subject=subject, start=int(self.start_f[i, k]), ts=ts, severity=sev,
                       score=score, evidence=ev)


def _advance(state: tuple[np.ndarray, ...], valid: np.ndarray, act: np.ndarray, deep: np.ndarray,
             imm: np.ndarray, crit: np.ndarray, ts: np.ndarray, isec: np.ndarray,
             det: VoltageDetector, covered: np.ndarray) -> _Advance:
    open_, crit_, start, clean, dstart, prev = state
    t = np.asarray(ts, np.int64)[:, None]
    dt = np.asarray(isec, np.int64)[:, None]
    dmin = np.maximum(dt // 60, 1)
    on, off = valid & act, valid & ~act  # invalid (NaN / too few meters): no change
    cooling = prev > 0
    start = np.where(on & (start == 0), t, start)
    start = np.where(off & ~open_, 0, start)  # a pending run must be consecutive
    # the deep run is strict: every reading of it beyond the deep band
    dstart = np.where(on & deep, np.where(dstart == 0, t, dstart), np.where(valid, 0, dstart))
    clean = np.where(on, 0, np.where(off & (open_ | cooling), np.minimum(clean + dmin, _CLEAN_MAX), clean))
    dur = np.where(start > 0, t - start + dt, 0)
    deep_long = (dstart > 0) & (t - dstart + dt >= det.deep_duration_s)
    cov = covered & valid
    opening = on & ~open_ & (imm | (dur >= det.min_duration_s) | deep_long) & ~cov
    closing = open_ & off & (clean >= det.clear_intervals * dmin) & ~cov
    cover_close = open_ & cov
    escalate = open_ & on & crit & ~crit_ & ~cov
    reopened = opening & cooling
    start = np.where(reopened, prev, start)  # the same episode: the same alert id
    new_open = (open_ | opening) & ~closing & ~cover_close
    new_crit = (crit_ | ((opening | escalate) & crit)) & new_open
    # a closed episode cools down until cool_down_s after its last anomalous reading
    new_prev = np.where(closing, start, np.where(opening | cov, 0, prev))
    expired = ~new_open & (new_prev > 0) & (clean * 60 >= det.cool_down_s)
    new_prev = np.where(expired, 0, new_prev)
    # a covered subject's run restarts: the area owns the condition meanwhile
    reset = closing | cover_close | cov
    new_clean = np.where(cover_close | cov | expired | (~new_open & (new_prev == 0)), 0, clean)
    return _Advance(
        open=new_open, crit=new_crit, start=np.where(reset, 0, start),
        clean=new_clean, deep=np.where(reset, 0, dstart), prev=new_prev, opening=opening,
        closing=closing, cover_close=cover_close, escalate=escalate, start_f=start, clean_f=clean,
        crit_f=crit_, ts=np.asarray(ts, np.int64), imm=imm, deep_long=deep_long, reopened=reopened,
    )
