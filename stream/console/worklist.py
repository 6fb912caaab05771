"""The field crews' work list: open theft suspicions, ranked for inspection.

Every theft alert nobody has resolved yet (new or acknowledged) is an item. The theft
model's alerts (``evidence.model == "fleet_self_supervised"``) carry a risk (0..1) and an
estimate of the energy not billed since the onset (``unbilled_kwh``); their product is
the energy an inspection is expected to recover, and it ranks them. Rule-based theft
alerts (energy mismatch, tamper flags, reverse flow, ...) carry no estimate: they follow
all the estimated ones, by severity, then risk. See :data:`RULE`.

Records come from the alerts topic, so every field is read defensively: a missing,
mistyped or non-finite value is "unknown", never an error, and strings are bounded.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any, Iterable, TextIO
from urllib.parse import quote

from stream.console.cells import text_cell
from stream.console.charts import daily_chart
from stream.store import AlertStore

MODEL = "fleet_self_supervised"
RULE = ("Suspicions with an estimate come first, largest expected recovery first: risk × "
        "estimated unbilled energy since onset (kWh). Those without an estimate (rule-based "
        "indicators) follow, by severity, then risk, then the newest detection first.")
# |peers' median daily log ratio| from which the area's peers "moved too" (about ±20 %):
# a drop the whole area shares points at weather, a holiday or supply, not at this meter.
PEER_MOVED = 0.2
# The model's figures, as the evidence pack names them.
FIGURES = {"log_odds": "log odds of tampering, latest day", "usual_log_odds":
           "usual log odds of this meter", "evidence": "evidence accumulated over the run",
           "limit": "evidence needed to raise the alert"}
MAX_KWH = 1e9
MAX_DAYS = 60
MAX_TEXT = 120
MAX_LIST = 20
COLUMNS = ("rank", "alert_id", "state", "condition", "severity", "subtype", "customer_id",
           "meter_id", "area_id", "attack_shape", "attack_shape_words", "since_day", "days",
           "risk", "unbilled_kwh", "expected_recovery_kwh", "unbilled_money", "currency",
           "corroboration_count", "corroboration", "peer_level", "detected_at", "evidence_pack")


@dataclass(frozen=True)
class Day:
    day: date
    kwh: float | None
    usual_kwh: float | None


@dataclass(frozen=True)
class WorkItem:
    """One open theft suspicion as the work list shows it (None = unknown)."""

    alert: dict[str, Any]
    risk: float | None
    unbilled_kwh: float | None
    shape: str | None = None
    shape_words: str | None = None
    shape_shares: list[tuple[str, float]] = field(default_factory=list)
    since_day: date | None = None
    days: int | None = None
    daily: list[Day] = field(default_factory=list)
    corroboration: list[str] = field(default_factory=list)
    peer_level: float | None = None
    indicators: list[tuple[str, float]] = field(default_factory=list)
    figures: list[tuple[str, float]] = field(default_factory=list)  # (FIGURES label, value)
    model: bool = False
    money: float | None = None
    rank: int = 0

    @property
    def id(self) -> str:
        return self.alert["id"]

    @property
    def expected_kwh(self) -> float | None:
        """risk × unbilled kWh: what the ranking orders by (None: no estimate)."""
        if self.risk is None or self.unbilled_kwh is None:
            return None
        return self.risk * self.unbilled_kwh

    @property
    def peers_moved(self) -> bool | None:
        return None if self.peer_level is None else abs(self.peer_level) >= PEER_MOVED


# ---- reading a record -------------------------------------------------------------------

def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def _text(v: Any) -> str | None:
    if not isinstance(v, str) or not v.strip():
        return None
    return v[:MAX_TEXT]


def _day(v: Any) -> date | None:
    try:
        return date.fromisoformat(v[:10]) if isinstance(v, str) else None
    except ValueError:
        return None


def _daily(v: Any) -> list[Day]:
    out: dict[date, Day] = {}
    for p in v[-MAX_DAYS:] if isinstance(v, list) else []:
        d = _day(p.get("day")) if isinstance(p, dict) else None
        if d is not None:
            out[d] = Day(d, _num(p.get("kwh")), _num(p.get("usual_kwh")))
    return [out[d] for d in sorted(out)]


def _pairs(v: Any) -> list[tuple[str, float]]:
    if not isinstance(v, dict):
        return []
    items = [(str(k)[:MAX_TEXT], _num(x)) for k, x in list(v.items())[:50]]
    return [(k, x) for k, x in items if x is not None]


def _risk(ev: dict[str, Any]) -> float | None:
    r = _num(ev.get("risk"))
    return None if r is None else min(max(r, 0.0), 1.0)


def work_item(alert: dict[str, Any], *, tariff_per_kwh: float = 0.0) -> WorkItem:
    """The work-list view of a stored theft alert (its latest record)."""
    rec = alert.get("record") if isinstance(alert.get("record"), dict) else {}
    ev = rec.get("evidence") if isinstance(rec.get("evidence"), dict) else {}
    unbilled = _num(ev.get("unbilled_kwh"))
    # Beyond a TWh it is not a meter's: unknown (and sums and money stay finite).
    unbilled = None if unbilled is None or unbilled > MAX_KWH else max(unbilled, 0.0)
    days = _num(ev.get("days"))
    corr = ev.get("corroboration")
    return WorkItem(
        alert=alert, risk=_risk(ev), unbilled_kwh=unbilled,
        shape=_text(ev.get("attack_shape")), shape_words=_text(ev.get("attack_shape_words")),
        shape_shares=sorted(((k, v) for k, v in _pairs(ev.get("shape_shares")) if v > 0),
                            key=lambda p: (-p[1], p[0])),
        since_day=_day(ev.get("since_day")),
        days=int(days) if days is not None and 0 <= days < 100_000 else None,
        daily=_daily(ev.get("daily")),
        corroboration=[t for t in map(_text, corr[:MAX_LIST] if isinstance(corr, list) else [])
                       if t],
        peer_level=_num(ev.get("peer_level")), indicators=_pairs(ev.get("indicators")),
        figures=[(label, v) for k, label in FIGURES.items() if (v := _num(ev.get(k))) is not None],
        model=ev.get("model") == MODEL,
        money=unbilled * tariff_per_kwh if unbilled is not None and tariff_per_kwh > 0 else None)


# ---- ranking ------------------------------------------------------------------------------

def _key(it: WorkItem) -> tuple:
    a, risk = it.alert, -1.0 if it.risk is None else it.risk
    tail = (-risk, -float(a.get("detected_ts") or 0.0), str(a.get("id")))
    if it.expected_kwh is not None:
        return (0, -it.expected_kwh, *tail)
    return (1, -int(a.get("severity_rank") or 0), *tail)


def rank(items: Iterable[WorkItem]) -> list[WorkItem]:
    """``items`` in work-list order (:data:`RULE`), numbered from 1."""
    return [replace(it, rank=i) for i, it in enumerate(sorted(items, key=_key), 1)]


def load(store: AlertStore, *, manager_id: str | None = None,
         tariff_per_kwh: float = 0.0) -> list[WorkItem]:
    """The ranked work list of the alerts ``manager_id`` may see (None: all)."""
    return rank(work_item(a, tariff_per_kwh=tariff_per_kwh)
                for a in store.open_theft_alerts(manager_id=manager_id))


@dataclass(frozen=True)
class Totals:
    suspicions: int
    estimated: int
    unbilled_kwh: float
    expected_kwh: float
    money: float | None


def totals(items: list[WorkItem], tariff_per_kwh: float = 0.0) -> Totals:
    est = [it for it in items if it.unbilled_kwh is not None]
    kwh = sum(it.unbilled_kwh or 0.0 for it in est)
    return Totals(len(items), len(est), kwh, sum(it.expected_kwh or 0.0 for it in items),
                  kwh * tariff_per_kwh if tariff_per_kwh > 0 else None)


# ---- CSV ----------------------------------------------------------------------------------

def _iso(t: Any) -> str:
    t = _num(t)
    return "" if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


def _n(v: float | None, digits: int) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def csv_row(it: WorkItem, currency: str) -> list[str]:
    a = it.alert
    texts = (a.get("id"), a.get("state"), "cleared" if a.get("status") == "closed" else "ongoing",
             a.get("severity"), a.get("subtype"), a.get("customer_id"), a.get("meter_id"),
             a.get("area_id"), it.shape, it.shape_words)
    return [str(it.rank), *map(text_cell, texts),
            it.since_day.isoformat() if it.since_day else "",
            "" if it.days is None else str(it.days), _n(it.risk, 3), _n(it.unbilled_kwh, 2),
            _n(it.expected_kwh, 2), _n(it.money, 2), text_cell(currency if it.money is not None else ""),
            str(len(it.corroboration)), text_cell("; ".join(it.corroboration)),
            _n(it.peer_level, 3), _iso(a.get("detected_ts")),
            "/worklist/" + quote(str(a.get("id")), safe="")]  # starts with "/": inert


def write_csv(items: list[WorkItem], out: TextIO, currency: str) -> int:
    """The ranked items as CSV (:data:`COLUMNS`) into a text stream; the count. Text
    cells come from alert records and are neutralised (:func:`text_cell`)."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for it in items:
        w.writerow(csv_row(it, currency))
    return len(items)


# ---- the evidence pack ----------------------------------------------------------------------

@dataclass(frozen=True)
class PackChart:
    title: str
    svg: str
    note: str


def pack_chart(it: WorkItem) -> PackChart | None:
    """The days before and after onset against the usual, or None without daily energy."""
    days = [d for d in it.daily if d.kwh is not None or d.usual_kwh is not None]
    if not days:
        return None
    title = "Daily energy against the usual" + (
        f", onset {it.since_day.isoformat()}" if it.since_day else "")
    before = sum(1 for d in days if it.since_day and d.day < it.since_day)
    note = (f"{len(days)} days: {before} before the onset, {len(days) - before} since. Bars: "
            f"energy reported; dashed: the usual for that day. Red: below the usual since "
            f"the onset, what the unbilled estimate adds up over the whole run.")
    return PackChart(title, daily_chart([(d.day, d.kwh, d.usual_kwh) for d in days],
                                        it.since_day, title=title), note)
