"""Detector thresholds: one place, one file (``config/detectors.toml``) engineers edit.

Defaults here equal the shipped file; ``load_config(path)`` overrides any subset and
rejects unknown keys so a typo can't silently keep a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "config" / "detectors.toml"


@dataclass
class HabitConfig:
    min_days: int = 14  # complete days of history before habit alerts (trust)
    # a home whose usual day is under this (an almost empty property) has no shape,
    # no level to drop from and no occupancy to lose: no distortion, consumption-drop
    # or vacancy alerts
    min_home_day_kwh: float = 1.0
    alpha_min: float = 0.05  # slowest per-day learning rate of the slot profile
    ref_alpha: float = 0.07  # learning rate of the reference level (CUSUM), per day
    # interval surge: for surge_hold_s, power >= ratio x the slot's usual and >= usual
    # + floor (what a customer notices), and beyond the customer's own calibrated tail
    # of power held that long (budget.surge_interval)
    surge_ratio: float = 3.0
    surge_floor_kw: float = 2.0
    surge_hold_s: int = 3600
    # the tail model's threshold: the power held for an interval pair that this share
    # of pairs exceeds (peaks over it are taken as exponential)
    surge_tail_share: float = 0.02
    surge_cool_days: int = 1  # an interval surge again within this reopens the same alert
    # new recurring load: power >= usual + max(newload_kw, 3 spreads) in the same hours
    # two days running, >= newload_kwh above habit on each day
    newload_kw: float = 1.0
    newload_kwh: float = 2.5
    # ... and the day so far above habit by at least this share of it (a moved routine
    # shifts energy between hours without adding any)
    newload_net_share: float = 0.25
    newload_cool_days: int = 14
    # daily surge: day energy >= ratio x usual day and >= usual + floor, and beyond the
    # customer's own calibrated tail of daily log ratios (budget.surge_daily)
    day_ratio: float = 2.0
    day_floor_kwh: float = 3.0
    day_cool_days: int = 7  # a surge day again within this reopens the same alert
    # bill projection (from this day of the month on)
    bill_ratio: float = 1.5
    bill_floor_kwh: float = 60.0
    bill_min_day: int = 7
    # a habit change is a level moved by at least this share (up or down): the CUSUM on
    # the daily log ratio is tuned to it (k = half of it, in the meter's own spreads),
    # its decision interval follows from budget.habit_change, and a run whose mean
    # change is smaller is not reported
    change_min: float = 0.3
    # judge the CUSUM's days on their long-run spread (widened for the home's own lag-1
    # persistence, models.calibrate.long_run_scale): the budget then holds for homes
    # whose days drift in spells, at the price of slower detection there
    long_run_spread: bool = True
    rdev_floor: float = 0.12
    z_cap: float = 3.0  # one day adds at most this much to a CUSUM
    min_run_days: int = 3  # a lasting change spans at least this many days
    settle_days: int = 7  # after a reported change, days of fast re-learning
    cusum_c_kwh: float = 1.0  # stabiliser added to both levels (tiny homes)
    # after a reported fall, the usual day and slot profile move this far towards the
    # new level at once, as a power of the ratio (0: not at all, 1: all the way)
    fall_follow: float = 0.0
    # vacancy: for N days, the day's energy above the base load (the home's active use)
    # at most this share of its usual active use (or 0.3 kWh, whichever is more);
    # occupied again when the active use is back above occupied_active_share of usual
    # (or 0.6 kWh, whichever is more)
    vacancy_active_share: float = 0.25
    occupied_active_share: float = 0.5
    # days in a row: the fewest that the home's own share of such days makes rarer than
    # budget.vacancy, within [min, max] (max: a vacancy is reported within a week)
    vacancy_days_min: int = 3
    vacancy_days_max: int = 6
    vacancy_cool_days: int = 14
    # schedule: best time shift of the daily shape beats no shift by this much,
    # the same shift on >= schedule_votes of the last 5 days
    schedule_gain: float = 0.35
    schedule_votes: int = 4
    # a day whose shifted fit to the usual shape reaches this correlation is a moved
    # routine, not a distorted shape (no theft evidence that day)
    moved_fit: float = 0.7
    # shape distortion (theft h2-h6), judged on the recent few days' shape
    recent_alpha: float = 0.4  # weight of the newest day in the recent shape
    distort_z: float = 5.0  # recent-shape correlation below usual by this many spreads
    cor_spread_floor: float = 0.1  # ... with the spread at least this (correlation units)
    cor_drop_min: float = 0.35  # ... and at least this much lower in absolute terms
    reversal_gain: float = 0.3  # reversed usual shape fits better by this much
    flat_share: float = 0.85  # recent shape this much flatter than usual
    zero_run_h: float = 3.0  # hours of exact zeros in normally active hours
    const_cv: float = 0.05  # a day whose readings vary less than this (std/mean) is constant
    distort_days: int = 2  # consecutive distorted days before alerting
    # a quiet day (energy <= quiet_factor x base-load energy, nothing below the base
    # load) is not judged
    quiet_factor: float = 1.6
    quiet_low: float = 0.8  # ... and its 10th-percentile power >= this x the base load
    clear_days: int = 3  # consecutive normal days that close it
    # consumption drop (theft): the recent days' energy below the meter's reference by
    # drop_z of its daily variability AND its low (base) power below reference by
    # drop_base (log ratio), both net of the area's peers, for drop_days days in a row
    drop_z: float = 2.0
    drop_base: float = 0.3
    drop_days: int = 2
    drop_alpha: float = 0.4  # weight of the newest day in the recent level and base
    drop_base_eps_kw: float = 0.04  # added to both base powers (homes with ~0 base)
    drop_ref_alpha: float = 0.04  # learning rate of its reference, per ordinary day
    drop_accept_days: int = 30  # an open drop this old becomes the new reference
    peer_min: int = 4  # meters reporting in an area for its median to count
    # inactivity (care customers): hours at base load during normally active hours
    inactivity_h: float = 6.0


@dataclass
class BudgetConfig:
    """False-alarm budgets: expected openings per clean customer-year, per alert family.

    Each family's decision limit follows from its budget and the customer's own learned
    distribution of its statistic (:mod:`models.calibrate`); together the defaults stay
    within 0.3 openings per clean customer-month (3.65 a year), leaving room for the
    families not budgeted here (theft, bill projection, data gaps)."""

    # the daily tail model counts surge days; openings come out near half of it (surge
    # days cluster, and a surge within the cool-down reopens the same alert). The design
    # half's curve, budget 1 / 2 / 4: 0.70 / 0.95 / 1.74 openings a year, recall of the
    # injected 2.2-3x days 0.68 / 0.76 / 0.88, surge precision 0.94 / 0.92 / 0.89: 2 is
    # the largest budget that keeps precision >= 0.9
    surge_daily: float = 2.0
    surge_interval: float = 0.5
    habit_change: float = 0.6  # increases and decreases together
    vacancy: float = 0.4
    # the fleet theft model's evidence (models.theft): chance runs of its CUSUM
    theft: float = 0.05


@dataclass
class TheftConfig:
    """The self-supervised fleet theft model (:mod:`models.theft`)."""

    model: bool = False  # run the fleet model and its evidence CUSUM
    # habit's rule-based theft/consumption_drop and theft/profile_distortion findings
    # (habit keeps its state either way; this says whether its findings are raised)
    rules: bool = True
    seed: int = 0  # examples' sampling and attack parameters
    sample_share: float = 0.5  # share of calm meter-days that teach the model each day
    learning_rate: float = 0.05
    # examples learned per day at most (a seeded subset of a big fleet's), which keeps
    # learning at ~0.5 s a day whatever the fleet's size
    max_examples: int = 1024
    k: float = 2.0  # CUSUM reference, in the meter's own calm-day spreads of log-odds
    # the CUSUM's decision interval; 0: from budget.theft and the meter's own calm days
    # (Siegmund), which under-states real homes' false alarms (heavy-tailed days): on
    # the design half budget 0.05 still alerted 0.96 of clean homes. 8 is the design
    # half's choice (see README)
    limit: float = 8.0
    z_cap: float = 6.0  # one day adds at most this much evidence
    sd_floor: float = 1.0  # log-odds spread floor (a steady meter's tiny spread)
    min_days: int = 14  # calm days scored before a meter's evidence counts
    alpha: float = 0.05  # slowest learning rate of the meter's calm-day statistics
    clip_learning: bool = True  # clip a day's residual at 3 spreads while learning
    clear_days: int = 3  # calm days in a row that close an open alert
    # copies of an inspected case (an outcome entered in the console) the model learns:
    # one minibatch, as much as the synthetic examples of one learning step
    outcome_weight: int = 32


@dataclass
class PhysicalConfig:
    mismatch_tol: float = 0.25  # metered energy below (1 - tol) x V*I*pf*dt
    mismatch_min_kwh: float = 0.1
    mismatch_intervals: int = 2
    zero_voltage_intervals: int = 8  # consecutive zero readings with voltage and current
    zero_current_a: float = 0.5
    imbalance_a: float = 1.0
    imbalance_share: float = 0.25
    imbalance_intervals: int = 2
    reverse_min_kwh: float = 0.01
    # energy mismatch, zero with voltage and current imbalance flicker with the load: an
    # open one closes after this long unseen, and one back within cool_days reopens the
    # same alert
    clear_s: int = 86400
    cool_days: int = 7


@dataclass
class VoltageConfig:
    """Voltage alert policy (models/voltage.py; why each default: config/detectors.toml)."""

    standard: str = "gbt12325"
    min_duration_s: int = 7200  # beyond the normal band this long
    area_share: float = 0.5
    area_min_meters: int = 3
    clear_intervals: int = 2
    deep_low_pu: float = 0.87
    deep_high_pu: float = 1.10
    deep_duration_s: int = 1800
    dip_pu: float = 0.7
    swell_pu: float = 1.1
    cool_down_s: int = 86400
    alerts: list[str] = field(default_factory=lambda: ["undervoltage", "overvoltage", "sag", "swell",
                                                  "interruption"])


@dataclass
class ComplianceConfig:
    # a period complies when this share of its measured time is within the standard's
    # inner band (EN 50160 sets 95 %; GB/T 12325 and ANSI C84.1 leave the target to
    # the utility), and, for EN 50160 and ANSI C84.1, none of it beyond the outer band
    required_share: float = 0.95
    # a completed period is judged on what was measured only if at least this share of
    # it was (a period certain to fail is reported whatever its coverage)
    min_coverage: float = 0.5


@dataclass
class AreaConfig:
    loss_alpha: float = 0.05  # learning rate of the area's normal loss rate (per day)
    loss_rise: float = 0.05  # loss rate above normal by this share of area energy
    loss_days: int = 2
    min_coverage: float = 0.97  # share of meter-intervals present for a loss day to count
    outage_share: float = 0.5


@dataclass
class EngineConfig:
    late_tolerance_s: int = 6 * 3600
    comm_gap_intervals: int = 4


@dataclass
class DetectorConfig:
    habit: HabitConfig = field(default_factory=HabitConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    physical: PhysicalConfig = field(default_factory=PhysicalConfig)
    voltage: VoltageConfig = field(default_factory=VoltageConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    area: AreaConfig = field(default_factory=AreaConfig)
    theft: TheftConfig = field(default_factory=TheftConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    def replace(self, **sections: dict[str, Any]) -> "DetectorConfig":
        """A copy with some values changed: ``cfg.replace(habit={"cusum_h": 3})``."""
        new = dataclasses.replace(self)
        for name, changes in sections.items():
            setattr(new, name, dataclasses.replace(getattr(self, name), **changes))
        return new


class ConfigError(ValueError):
    pass


def read_toml(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The TOML document at ``path``; a missing or malformed file raises ``error``
    naming ``what`` it is and where (the one TOML reader: settings use it too)."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{what} {path}: {e}") from None


def load_config(path: str | Path | None = None) -> DetectorConfig:
    """Defaults overridden by a TOML file (sections [habit], [physical], ...)."""
    cfg = DetectorConfig()
    if not path:
        return cfg
    p = Path(path)
    doc = read_toml(p, "detector config", ConfigError)
    sections = {f.name: f for f in fields(DetectorConfig)}
    changes: dict[str, dict[str, Any]] = {}
    for sec, body in doc.items():
        if sec not in sections:
            raise ConfigError(f"{p}: unknown section [{sec}] (known: {', '.join(sections)})")
        known = {f.name: f for f in fields(getattr(cfg, sec))}
        for k, v in body.items():
            if k not in known:
                raise ConfigError(f"{p}: unknown key {sec}.{k}")
            want = type(getattr(getattr(cfg, sec), k))
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, want) or isinstance(v, bool) != (want is bool):
                raise ConfigError(f"{p}: {sec}.{k} = {v!r} must be {want.__name__}")
            changes.setdefault(sec, {})[k] = v
    return cfg.replace(**changes)


def to_toml(cfg: DetectorConfig) -> str:
    """The configuration as the TOML engineers edit (comments come from the file)."""
    lines = ["# meterwatch detector thresholds. Every key is optional: a missing one keeps",
             "# the built-in default (models/config.py). Unknown keys are an error.", ""]
    for sec in fields(DetectorConfig):
        lines.append(f"[{sec.name}]")
        for f in fields(getattr(cfg, sec.name)):
            v = getattr(getattr(cfg, sec.name), f.name)
            lines.append(f"{f.name} = {str(v).lower() if isinstance(v, bool) else repr(v)}"
                         .replace("'", '"'))
        lines.append("")
    return "\n".join(lines)
