"""Contracts shared by every detector: columnar batches, fleet facts, findings.

The detectors run over *columnar* batches so that the per-reading Python work stays
near zero: the stream hands one transformer area's interval at a time (100-500 meters),
the backtest hands one timestamp of the whole fleet. Both go through the same code.

Per-meter state is one row of a numpy structured array whose dtype is composed from the
fields each detector declares (see :func:`compose_dtype`). A row is a fixed-size record,
so it serialises with ``tobytes`` and is what the Faust table stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, NamedTuple, Protocol

import numpy as np

# Event flags a meter may report, as bits so a batch carries them in one uint32 column.
EVENT_BITS: dict[str, int] = {
    "cover_open": 1 << 0,
    "terminal_cover_open": 1 << 1,
    "magnetic_tamper": 1 << 2,
    "power_fail": 1 << 3,
    "power_restore": 1 << 4,
    "reverse_flow": 1 << 5,
    "clock_invalid": 1 << 6,
    "last_gasp": 1 << 7,
    "phase_loss": 1 << 8,
    "low_battery": 1 << 9,
    "self_check_error": 1 << 10,
}
TAMPER_BITS = EVENT_BITS["cover_open"] | EVENT_BITS["terminal_cover_open"] | EVENT_BITS["magnetic_tamper"]
OUTAGE_BITS = EVENT_BITS["power_fail"] | EVENT_BITS["last_gasp"]


def any_(x: np.ndarray) -> bool:
    """``x.any()``, for the hot paths: on the few hundred rows of a batch the any()
    reduction costs several times what np.count_nonzero does, and a detector step makes
    dozens of such checks."""
    return np.count_nonzero(x) > 0


def event_mask(events: Iterable[str]) -> int:
    """Bitmask for a list of event names; unknown names are ignored by design
    (meters report vendor-specific flags we neither need nor reject)."""
    m = 0
    for e in events:
        m |= EVENT_BITS.get(e, 0)
    return m


def event_names(mask: int) -> list[str]:
    return [name for name, bit in EVENT_BITS.items() if mask & bit]


# Columns of a validated reading, as carried between agents and fed to the engine (one packed record each).
READING_DTYPE = np.dtype([
    ("ts", "<i8"), ("interval_s", "<i4"), ("events", "<u4"), ("kwh", "<f8"),
    ("kwh_export", "<f8"), ("register_kwh", "<f8"), ("voltage", "<f8"),
    ("voltage_min", "<f8"), ("voltage_max", "<f8"), ("current", "<f8"),
    ("neutral_current", "<f8"), ("power_factor", "<f8"),
])

# Closed alert vocabulary: type -> allowed subtypes.
ALERT_TYPES: dict[str, tuple[str, ...]] = {
    "surge": ("interval", "daily", "bill_projection"),
    "habit_change": ("increase", "decrease", "vacancy", "schedule"),
    "theft": (
        "consumption_drop",
        "profile_distortion",
        "energy_mismatch",
        "zero_with_voltage",
        "tamper_event",
        "reverse_flow",
        "current_imbalance",
        "area_loss",
    ),
    "voltage": ("undervoltage", "overvoltage", "sag", "swell", "interruption",
                "noncompliant_period"),
    "outage": ("power_fail", "area"),
    "comm_gap": ("meter",),
    "data_quality": ("late", "register_reset", "quarantine", "stuck"),
    "inactivity": ("care",),
}
SEVERITIES = ("info", "warning", "critical")


@dataclass(slots=True)
class Batch:
    """Readings, at most one per meter, as equal-length columns.

    ``meter`` indexes the fleet arrays (:class:`Fleet`); state rows handed to a detector
    are aligned with the batch positions. Missing optional measurements are NaN.
    """

    meter: np.ndarray  # int64, row in Fleet
    ts: np.ndarray  # int64 epoch seconds, END of the interval
    interval_s: np.ndarray  # int32
    kwh: np.ndarray  # float64, import energy in the interval (kWh)
    kwh_export: np.ndarray  # float64
    register_kwh: np.ndarray  # float64, cumulative import register
    voltage: np.ndarray  # float64, interval mean over phases (V)
    voltage_min: np.ndarray  # float64, lowest over the interval and phases (V)
    voltage_max: np.ndarray  # float64, highest over the interval and phases (V)
    current: np.ndarray  # float64 (A), mean over phases
    neutral_current: np.ndarray  # float64 (A)
    power_factor: np.ndarray  # float64
    events: np.ndarray  # uint32 bitmask of EVENT_BITS

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "meter", "ts", "interval_s", "kwh", "kwh_export", "register_kwh", "voltage",
        "voltage_min", "voltage_max", "current", "neutral_current", "power_factor", "events",
    )

    def __len__(self) -> int:
        return len(self.meter)

    def take(self, idx: np.ndarray) -> "Batch":
        return Batch(*(getattr(self, c)[idx] for c in self.COLUMNS))

    @classmethod
    def empty(cls, n: int) -> "Batch":
        nan = lambda: np.full(n, np.nan)  # noqa: E731
        return cls(
            meter=np.zeros(n, np.int64), ts=np.zeros(n, np.int64),
            interval_s=np.full(n, 900, np.int32), kwh=nan(), kwh_export=nan(),
            register_kwh=nan(), voltage=nan(), voltage_min=nan(), voltage_max=nan(),
            current=nan(), neutral_current=nan(), power_factor=nan(),
            events=np.zeros(n, np.uint32),
        )

    @classmethod
    def from_columns(cls, n: int, **cols: Any) -> "Batch":
        """A batch from the given columns; any column not given is NaN/zero/default."""
        b = cls.empty(n)
        for k, v in cols.items():
            cur = getattr(b, k)
            setattr(b, k, np.asarray(v, dtype=cur.dtype).reshape(n))
        return b


@dataclass
class Fleet:
    """Static facts about meters (from the registry), as arrays indexed by fleet row."""

    meter_id: list[str]
    customer_id: list[str]
    area: np.ndarray  # int32 index into area_id
    area_id: list[str]
    nominal_voltage: np.ndarray  # float64, phase-to-neutral nominal (V)
    phases: np.ndarray  # int8: 1 or 3
    solar: np.ndarray  # bool
    care: np.ndarray  # bool
    tariff: np.ndarray  # int8: 0 residential, 1 small business
    rated_current: np.ndarray  # float64 (A)
    is_area_meter: np.ndarray  # bool: the transformer-area total meter
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {m: i for i, m in enumerate(self.meter_id)}

    def __len__(self) -> int:
        return len(self.meter_id)

    @classmethod
    def simple(cls, n: int, *, areas: int = 1, nominal_voltage: float = 220.0, **over: Any) -> "Fleet":
        """A homogeneous fleet of ``n`` residential meters, for tests and examples."""
        f = cls(
            meter_id=[f"M{i:05d}" for i in range(n)],
            customer_id=[f"C{i:05d}" for i in range(n)],
            area=(np.arange(n) % areas).astype(np.int32),
            area_id=[f"A{j:03d}" for j in range(areas)],
            nominal_voltage=np.full(n, nominal_voltage),
            phases=np.ones(n, np.int8),
            solar=np.zeros(n, bool),
            care=np.zeros(n, bool),
            tariff=np.zeros(n, np.int8),
            rated_current=np.full(n, 60.0),
            is_area_meter=np.zeros(n, bool),
        )
        for k, v in over.items():
            setattr(f, k, np.asarray(v, dtype=getattr(f, k).dtype))
        return f


@dataclass(slots=True)
class Finding:
    """What a detector concluded about one meter (or one area) at one interval.

    ``action`` is ``open`` when a condition starts, ``update`` when an open condition
    worsens materially, ``close`` when it clears, ``point`` for one-off events that
    open and close at once (a tamper flag). The alert id derives from
    (subject, type, subtype, start) so a replay reproduces it.
    """

    type: str
    subtype: str
    action: str  # open | update | close | point
    scope: str  # meter | area
    subject: int  # fleet row (scope=meter) or area index (scope=area)
    start: int  # epoch s: first anomalous interval end
    ts: int  # epoch s: the interval that triggered this finding
    severity: str = "warning"
    score: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)
    # For people: the customer's day against their habit band at this step (engine).
    context: dict[str, Any] | None = None


@dataclass(slots=True)
class AreaView:
    """The transformer areas present in a batch and their state rows.

    ``area``: unique area indices (into ``Fleet.area_id``); ``pos``: for each batch row,
    its area's position in ``area``; ``st``: area state rows aligned with ``area``,
    mutated in place like meter state.
    """

    area: np.ndarray
    pos: np.ndarray
    st: np.ndarray


class Condition(NamedTuple):
    """An alert a detector keeps open in its state: bit ``bit`` of the integer field
    ``field`` of the meter (or area) record. ``severity`` None: ``critical`` where the
    same bit of ``crit_field`` is set, else ``warning``."""

    field: str
    bit: int
    type: str
    subtype: str
    severity: str | None
    crit_field: str | None = None


#: (rows, type, subtype, severity) of alerts open in a state record, as
#: :meth:`Detector.open_alerts` reports them.
OpenAlerts = list[tuple[np.ndarray, str, str, str]]


def open_by_conditions(rec: np.ndarray, conditions: Iterable[Condition]) -> OpenAlerts:
    """The rows of ``rec`` with each condition open. Open alerts are rare: only the
    non-zero flag words are looked at, so a record with nothing open costs one
    ``flatnonzero`` per field.

    >>> rec = np.zeros(3, [("x_open", "u1"), ("x_crit", "u1")])
    >>> rec["x_open"] = [0, 2, 2]; rec["x_crit"] = [0, 2, 0]
    >>> [(r.tolist(), t, s, v) for r, t, s, v in open_by_conditions(
    ...     rec, [Condition("x_open", 1, "voltage", "sag", None, "x_crit")])]
    [([1], 'voltage', 'sag', 'critical'), ([2], 'voltage', 'sag', 'warning')]
    """
    out: OpenAlerts = []
    names = rec.dtype.names or ()
    nz_of: dict[str, np.ndarray] = {}
    for c in conditions:
        if c.field not in names:
            continue
        if c.field not in nz_of:
            nz_of[c.field] = np.flatnonzero(rec[c.field])
        nz = nz_of[c.field]
        if not len(nz):
            continue
        rows = nz[(rec[c.field][nz] & (1 << c.bit)) != 0]
        if not len(rows):
            continue
        if c.severity is not None:
            out.append((rows, c.type, c.subtype, c.severity))
            continue
        crit = (rec[c.crit_field][rows] & (1 << c.bit)) != 0
        for sel, sev in ((crit, "critical"), (~crit, "warning")):
            if np.count_nonzero(sel):
                out.append((rows[sel], c.type, c.subtype, sev))
    return out


class BitConditions:
    """``open_alerts`` / ``open_area_alerts`` for a detector whose open alerts are the
    bits its ``conditions`` / ``area_conditions`` declare (none by default: a detector
    whose findings are one-off points keeps nothing open)."""

    conditions: ClassVar[tuple[Condition, ...]] = ()
    area_conditions: ClassVar[tuple[Condition, ...]] = ()

    def open_alerts(self, st: np.ndarray) -> OpenAlerts:
        return open_by_conditions(st, self.conditions)

    def open_area_alerts(self, ast: np.ndarray) -> OpenAlerts:
        return open_by_conditions(ast, self.area_conditions)


class Detector(Protocol):
    """A detector owns some per-meter state fields and turns batches into findings.

    ``fields``: (name, numpy dtype str[, shape]) tuples it owns in the meter record; names must be
    unique across detectors (prefix them). ``area_fields``: the same for the per-area
    record. ``init`` fills fresh rows for new meters (``init_area`` for new areas).
    ``step`` sees meter state rows aligned with the batch and the areas' rows, mutates
    them in place, and appends findings. The engine guarantees each (meter, interval)
    reaches ``step`` at most once, in time order per meter. ``open_alerts`` /
    ``open_area_alerts`` say which of its alerts a meter or area record holds open (the
    metrics read state through them, never through field names); a detector whose open
    alerts are bits of a flag field declares them as ``conditions`` /
    ``area_conditions`` and answers with :func:`open_by_conditions`.
    """

    fields: tuple[tuple[str, str], ...]
    area_fields: tuple[tuple[str, str], ...]

    def open_alerts(self, st: np.ndarray) -> OpenAlerts: ...

    def open_area_alerts(self, ast: np.ndarray) -> OpenAlerts: ...

    def init(self, st: np.ndarray, fleet: Fleet, meters: np.ndarray) -> None: ...

    def init_area(self, ast: np.ndarray, fleet: Fleet, areas: np.ndarray) -> None: ...

    def step(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView,
             out: list[Finding]) -> None: ...


def compose_dtype(*groups: Iterable[tuple[str, str]]) -> np.dtype:
    """One packed structured dtype from several detectors' field lists."""
    seen: dict[str, tuple] = {}
    for g in groups:
        for f in g:
            if f[0] in seen:
                raise ValueError(f"state field {f[0]!r} declared twice")
            seen[f[0]] = tuple(f)
    return np.dtype(list(seen.values()))
