"""Labels as scoring targets: what each injected kind must raise, in which window."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo


from models.evaluate.inject import DAY_S, Label


PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_READINGS = PROJECT_ROOT.parent / "shared" / "data" / "london_lcl" / "lcl_50_households_2013.csv.gz"
WARMUP_S = 14 * DAY_S
MONTH_S = 30.4375 * DAY_S
INTERVAL = -1  # window "one interval of the label's meter"

# kind -> (group, expected, related, window_s, window counted from "onset" | "end")
SPEC: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], int, str]] = {
    **{h: ("theft", ("theft/*",), ("habit_change/*",), 7 * DAY_S, "onset")
       for h in ("h1", "h2", "h3", "h4", "h5", "h6")},
    "surge_daily": ("surge", ("surge/daily",), ("surge/interval", "surge/bill_projection"),
                    2 * DAY_S, "onset"),
    # Not one of the definitions (+3-5 kWh a day is neither a 2x day nor, on most
    # homes, a 30 % change): reported, in no target.
    "new_load": ("habit", ("surge/daily", "habit_change/increase"),
                 ("surge/interval", "surge/bill_projection", "habit_change/*"), 2 * DAY_S, "onset"),
    # "within two intervals of the end" of the surge (the window)
    "surge_interval": ("surge", ("surge/interval",), ("surge/daily", "surge/bill_projection"),
                       2 * INTERVAL, "end"),
    "vacancy": ("vacancy/increase", ("habit_change/vacancy", "habit_change/decrease"),
                ("habit_change/*", "inactivity/*"), 7 * DAY_S, "onset"),
    "increase": ("vacancy/increase", ("habit_change/increase",),
                 ("habit_change/*", "surge/daily", "surge/bill_projection"), 7 * DAY_S, "onset"),
    "decrease": ("decrease", ("habit_change/decrease", "theft/consumption_drop"),
                 ("habit_change/*",), 7 * DAY_S, "onset"),
    # simulator-only kinds
    "schedule_shift": ("habit", ("habit_change/schedule",), ("habit_change/*",), 7 * DAY_S, "onset"),
    "inactivity": ("care", ("inactivity/care",), ("habit_change/*",), DAY_S, "onset"),
    "bypass": ("theft", ("theft/*",), ("habit_change/*",), 7 * DAY_S, "onset"),
    "reverse_flow": ("theft", ("theft/*",), ("habit_change/*",), 7 * DAY_S, "onset"),
    "current_imbalance": ("theft", ("theft/*",), ("habit_change/*",), 7 * DAY_S, "onset"),
    "tamper": ("theft", ("theft/*",), (), DAY_S, "onset"),
    **{v: ("voltage", (f"voltage/{v}",), ("voltage/*",), 2 * INTERVAL, "end")
       for v in ("undervoltage", "overvoltage", "sag", "swell", "interruption")},
    "outage": ("outage", ("outage/*",), ("voltage/*", "comm_gap/*", "outage/*", "data_quality/*"),
               2 * INTERVAL, "end"),
    "comm_gap": ("comm_gap", ("comm_gap/meter",), ("data_quality/*",), 2 * INTERVAL, "end"),
}
SIM_ALIAS = {"habit_increase": "increase", "habit_decrease": "decrease"}
GROUP_ORDER = ("theft", "surge", "vacancy/increase", "decrease", "habit", "care", "voltage",
               "outage", "comm_gap")

# Scenarios judged on whole local days from a local midnight: the reading that closes the
# day before the onset (00:30 on the onset day) cannot have been caused by them, so the
# earliest alert that counts comes one reading later.
DAY_SCALE = frozenset({"h1", "h2", "h3", "h4", "h5", "h6", "surge_daily", "new_load", "vacancy",
                       "increase", "decrease", "schedule_shift"})


# -- labels as scoring targets ---------------------------------------------------------------

@dataclass
class Target:
    """A label with its scoring rules, and (after :func:`match`) what was found."""

    id: int
    kind: str
    group: str
    type: str
    subtype: str
    scope: str  # meter | area
    meter_id: str | None
    area_id: str | None
    onset: int
    end: int | None
    deadline: int
    late_until: int
    related_until: int
    expected: tuple[str, ...]
    related: tuple[str, ...]
    interval_s: int
    params: dict[str, Any] = field(default_factory=dict)
    valid: bool = True  # the injected event really is one (voltage: beyond limits)
    expected_scope: str = "meter"
    household: str | None = None
    active_until: int | None = None
    earliest: int | None = None  # first moment an alert can be caused by the anomaly
    open_at_onset: list = field(default_factory=list)  # expected types already open (earlier alerts)
    # filled by match()
    first_t: int | None = None
    first_alert: str | None = None  # type/subtype of the first expected opening
    first_id: str | None = None
    scopes: set = field(default_factory=set)
    hits: int = 0

    def __post_init__(self) -> None:
        if self.earliest is None:
            self.earliest = self.onset + self.interval_s * (2 if self.kind in DAY_SCALE else 1)

    @property
    def detected(self) -> bool:
        return self.first_t is not None

    @property
    def delay(self) -> int | None:
        return None if self.first_t is None else self.first_t - self.onset

    @property
    def in_window(self) -> bool:
        return self.first_t is not None and self.first_t <= self.deadline

    def within(self, seconds: int) -> bool:
        return self.first_t is not None and self.first_t <= self.onset + seconds

    @property
    def scope_ok(self) -> bool | None:
        if not self.detected:
            return None
        if self.expected_scope == "area":
            return "area" in self.scopes
        return "meter" in self.scopes and "area" not in self.scopes

    def to_dict(self, tz: str | None = None) -> dict[str, Any]:
        z = ZoneInfo(tz) if tz else None
        iso = (lambda t: None if t is None else datetime.fromtimestamp(int(t), z).isoformat())
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "scopes"}
        d["scopes"] = sorted(self.scopes)
        for k in ("onset", "end", "deadline", "first_t"):
            d[f"{k}_iso"] = iso(d[k])
        d["delay_s"] = self.delay
        d["in_window"] = self.in_window
        return d


LATE_CAP_S = 30 * DAY_S  # open-ended changes: a detection counts up to 30 days after onset


def target_windows(kind: str, onset: int, end: int | None, data_end: int, interval_s: int
             ) -> tuple[int, int, int, int]:
    """(deadline, late_until, related_until, active_until) of a label.

    ``deadline``: end of the recall window. ``late_until``: last moment an expected alert
    still counts as a (late) detection -- open-ended changes are capped at 30 days, as
    later alerts on a year of data are as likely chance. ``related_until``: side-effect
    alerts are excused until then (30 days after an open-ended onset; 14 days after the
    end of a day-scale scenario, e.g. the return from a vacancy). ``active_until``:
    expected alerts after ``late_until`` but while the anomaly lasts are duplicates
    (a still-running theft), not false alerts.
    """
    _, _, _, w, frm = SPEC[kind]
    w = w if w > 0 else -w * interval_s
    if frm == "end":
        stop = data_end if end is None else end
        deadline = max(stop, onset) + w
        return deadline, deadline, deadline + 2 * interval_s, deadline
    deadline = onset + w
    grace = DAY_S if w >= DAY_S else interval_s
    if end is None:
        late = max(deadline, min(data_end, onset + LATE_CAP_S))
        return deadline, late, late, data_end + grace
    late = max(deadline, end + grace)
    return deadline, late, late + (14 * DAY_S if w >= DAY_S else 2 * interval_s), late


def targets_from_labels(labels: Iterable[Label], fleet=None) -> list[Target]:
    """Scoring targets for the labels of :func:`models.evaluate.inject.build_virtual`."""
    out = []
    for i, lb in enumerate(labels):
        group, exp, rel, _, _ = SPEC[lb.kind]
        dl, late, relu, act = target_windows(lb.kind, lb.onset, lb.end, lb.data_end, lb.interval_s)
        area_id = None
        if fleet is not None and lb.meter_id in fleet.index:
            area_id = fleet.area_id[int(fleet.area[fleet.index[lb.meter_id]])]
        t, s = exp[0].split("/")
        out.append(Target(i, lb.kind, group, t, s, "meter", lb.meter_id, area_id, lb.onset, lb.end,
                          dl, late, relu, exp, rel, lb.interval_s, dict(lb.params),
                          household=lb.household, active_until=act))
    return out

