"""Alerts as the pipeline raised them, and what people did about them.

The notifier ingests each alert message (idempotently: redelivery is a no-op); the
console lists, counts and reads alerts, and records acknowledgements, resolutions with
their outcome, and notes, each audited in the same transaction.

Times the store creates are epoch seconds (floats, sortable in both databases); the
alert record itself keeps its ISO timestamps as the pipeline wrote them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from stream.store.db import NotFound, Repository, now_or, to_json
from stream.store.schema import OUTCOMES, SEVERITY_RANK, alert_messages, alerts, notes
from stream.store.users import write_audit


def iso_to_epoch(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


@dataclass(frozen=True)
class Ingested:
    """What an arriving alert message was to the store."""

    kind: str  # new | update | close | duplicate | stale
    alert: dict[str, Any] | None  # the stored row after the message (None if duplicate)


def alert_filters(q, *, manager_id: str | None = None, states: Iterable[str] | None = None,
                  type: str | None = None, area_id: str | None = None,
                  customer_id: str | None = None, status: str | None = None):
    """``q`` narrowed to the alerts matching the inbox filters (None = any)."""
    if manager_id is not None:
        q = q.where(alerts.c.manager_id == manager_id)
    if states:
        q = q.where(alerts.c.state.in_(list(states)))
    if type:
        q = q.where(alerts.c.type == type)
    if area_id:
        q = q.where(alerts.c.area_id == area_id)
    if customer_id:
        q = q.where(alerts.c.customer_id == customer_id)
    if status:
        q = q.where(alerts.c.status == status)
    return q


class AlertRepository(Repository):
    """Alerts, their message log, people's actions on them and notes."""

    # ---- alerts from the pipeline -----------------------------------------------------

    def ingest(self, alert: dict[str, Any], *, manager_id: str | None,
               now: float | None = None) -> Ingested:
        """Record one alert message; idempotent on ``(id, status, detected_at)``.

        A message older than the stored one (by ``detected_at``) is kept in the message
        log but does not roll the alert back ("stale"): redelivery after a rebalance can
        reorder an alert's messages.
        """
        now = now_or(now)
        record = to_json(alert)
        with self.engine.begin() as c:
            try:
                c.execute(alert_messages.insert().values(
                    alert_id=alert["id"], status=alert["status"],
                    detected_at=alert["detected_at"], received_at=now, record=record))
            except IntegrityError:
                return Ingested("duplicate", None)
            row = c.execute(sa.select(alerts).where(alerts.c.id == alert["id"])).mappings().first()
            if row is None:
                kind = _insert_alert(c, alert, record, manager_id, now)
            else:
                kind = _update_alert(c, row, alert, record, now)
            return Ingested(kind, _row(c, alert["id"]))

    def get_alert(self, alert_id: str, *, manager_id: str | None = None) -> dict[str, Any] | None:
        """The alert, or None; with ``manager_id``, None unless it is that manager's."""
        q = sa.select(alerts).where(alerts.c.id == alert_id)
        if manager_id is not None:
            q = q.where(alerts.c.manager_id == manager_id)
        with self.engine.connect() as c:
            r = c.execute(q).mappings().first()
        return _alert_dict(r) if r is not None else None

    def list_alerts(self, *, manager_id: str | None = None, states: Iterable[str] | None = None,
                    type: str | None = None, area_id: str | None = None,
                    customer_id: str | None = None, status: str | None = None,
                    limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Alerts, most severe then newest first, filtered as asked."""
        q = alert_filters(sa.select(alerts), manager_id=manager_id, states=states, type=type,
                          area_id=area_id, customer_id=customer_id, status=status)
        q = q.order_by(alerts.c.severity_rank.desc(), alerts.c.detected_ts.desc(),
                       alerts.c.id).limit(limit).offset(offset)
        with self.engine.connect() as c:
            return [_alert_dict(r) for r in c.execute(q).mappings()]

    def count_alerts(self, *, manager_id: str | None = None,
                     states: Iterable[str] | None = None, type: str | None = None,
                     area_id: str | None = None) -> int:
        """How many alerts ``list_alerts`` would page through with these filters."""
        q = alert_filters(sa.select(sa.func.count()).select_from(alerts), manager_id=manager_id,
                          states=states, type=type, area_id=area_id)
        with self.engine.connect() as c:
            return int(c.execute(q).scalar() or 0)

    def areas(self, *, manager_id: str | None = None) -> list[str]:
        """Areas that have alerts this user may see (for the inbox's area filter)."""
        q = alert_filters(sa.select(alerts.c.area_id).where(alerts.c.area_id.is_not(None))
                          .distinct(), manager_id=manager_id).order_by(alerts.c.area_id)
        with self.engine.connect() as c:
            return [r for (r,) in c.execute(q)]

    def customer_alert_count(self, customer_id: str, *, manager_id: str | None = None) -> int:
        q = alert_filters(sa.select(sa.func.count()).select_from(alerts)
                          .where(alerts.c.customer_id == customer_id), manager_id=manager_id)
        with self.engine.connect() as c:
            return int(c.execute(q).scalar() or 0)

    def latest_context(self, customer_id: str, *, manager_id: str | None = None,
                       scan: int = 50) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The newest alert of a customer whose record has a chart ``context``:
        (alert, context), looking at the newest ``scan`` alerts."""
        q = alert_filters(sa.select(alerts.c.id, alerts.c.type, alerts.c.subtype,
                                    alerts.c.meter_id, alerts.c.detected_ts, alerts.c.record)
                          .where(alerts.c.customer_id == customer_id), manager_id=manager_id
                          ).order_by(alerts.c.detected_ts.desc(), alerts.c.id).limit(scan)
        with self.engine.connect() as c:
            for r in c.execute(q).mappings():
                rec = json.loads(r["record"])
                ctx = rec.get("context")
                if isinstance(ctx, dict) and ctx.get("expected_kwh"):
                    return dict(r, record=rec), ctx
        return None

    def open_theft_alerts(self, *, manager_id: str | None = None) -> list[dict[str, Any]]:
        """Theft alerts nobody has resolved yet (new or acknowledged, whether or not the
        pipeline cleared the condition since): the field crews' work list, unranked
        (``stream.console.worklist`` ranks them from their evidence)."""
        q = alert_filters(sa.select(alerts), manager_id=manager_id,
                          states=("new", "acknowledged"), type="theft").order_by(alerts.c.id)
        with self.engine.connect() as c:
            return [_alert_dict(r) for r in c.execute(q).mappings()]

    def messages_of(self, alert_id: str) -> list[dict[str, Any]]:
        """Every distinct message received for an alert, oldest first."""
        q = (sa.select(alert_messages.c.record).where(alert_messages.c.alert_id == alert_id)
             .order_by(alert_messages.c.received_at, alert_messages.c.detected_at))
        with self.engine.connect() as c:
            return [json.loads(r) for (r,) in c.execute(q)]

    def counts(self) -> list[dict[str, Any]]:
        """Alert counts by workflow state, type and severity (for metrics)."""
        q = (sa.select(alerts.c.state, alerts.c.type, alerts.c.severity,
                       sa.func.count().label("n"))
             .group_by(alerts.c.state, alerts.c.type, alerts.c.severity))
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    # ---- people's actions -------------------------------------------------------------

    def acknowledge(self, alert_id: str, actor: str, *, now: float | None = None) -> dict[str, Any]:
        now = now_or(now)
        with self.engine.begin() as c:
            row = _existing(c, alert_id)
            if row["state"] == "new":
                c.execute(alerts.update().where(alerts.c.id == alert_id).values(
                    state="acknowledged", acknowledged_by=actor, acknowledged_at=now))
                write_audit(c, actor, "acknowledge", alert_id, None, now)
            return _row(c, alert_id)

    def resolve(self, alert_id: str, actor: str, outcome: str, note: str = "", *,
                now: float | None = None) -> dict[str, Any]:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r}: must be one of {', '.join(OUTCOMES)}")
        now = now_or(now)
        with self.engine.begin() as c:
            row = _existing(c, alert_id)
            vals: dict[str, Any] = dict(state="resolved", resolved_by=actor, resolved_at=now,
                                        outcome=outcome)
            if row["acknowledged_at"] is None:
                vals.update(acknowledged_by=actor, acknowledged_at=now)
            c.execute(alerts.update().where(alerts.c.id == alert_id).values(**vals))
            if note.strip():
                c.execute(notes.insert().values(alert_id=alert_id, customer_id=row["customer_id"],
                                                manager_id=row["manager_id"], author=actor,
                                                text=note.strip(), created_at=now))
            write_audit(c, actor, "resolve", alert_id, {"outcome": outcome}, now)
            return _row(c, alert_id)

    def add_note(self, actor: str, text: str, *, alert_id: str | None = None,
                 customer_id: str | None = None, manager_id: str | None = None,
                 now: float | None = None) -> int:
        """A note on an alert (it belongs to the alert's manager) or on a customer (it
        belongs to ``manager_id``: who may read it on the customer's page)."""
        now = now_or(now)
        if not text.strip():
            raise ValueError("a note needs text")
        with self.engine.begin() as c:
            if alert_id is not None:
                row = _existing(c, alert_id)
                customer_id = row["customer_id"] if customer_id is None else customer_id
                manager_id = row["manager_id"]
            r = c.execute(notes.insert().values(alert_id=alert_id, customer_id=customer_id,
                                                manager_id=manager_id, author=actor,
                                                text=text.strip(), created_at=now))
            write_audit(c, actor, "note", alert_id or customer_id, None, now)
            return int(r.inserted_primary_key[0])

    def notes_for(self, *, alert_id: str | None = None, customer_id: str | None = None,
                  manager_id: str | None = None) -> list[dict[str, Any]]:
        """Notes of an alert or a customer; with ``manager_id``, only that manager's."""
        q = sa.select(notes).order_by(notes.c.created_at, notes.c.id)
        if manager_id is not None:
            q = q.where(notes.c.manager_id == manager_id)
        if alert_id is not None:
            q = q.where(notes.c.alert_id == alert_id)
        if customer_id is not None:
            q = q.where(notes.c.customer_id == customer_id)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def outcomes(self) -> list[dict[str, Any]]:
        """Resolved alerts with their outcome: labels for measuring precision on real cases."""
        q = (sa.select(alerts.c.id, alerts.c.type, alerts.c.subtype, alerts.c.meter_id,
                       alerts.c.customer_id, alerts.c.area_id, alerts.c.start_ts,
                       alerts.c.detected_ts, alerts.c.outcome, alerts.c.resolved_at)
             .where(alerts.c.outcome.is_not(None)).order_by(alerts.c.resolved_at))
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]


def _insert_alert(c, alert: dict[str, Any], record: str, manager_id: str | None,
                  now: float) -> str:
    """The first message of an alert: its row. Returns the ingest kind."""
    status = "closed" if alert["status"] == "closed" else "open"
    c.execute(alerts.insert().values(
        id=alert["id"], type=alert["type"], subtype=alert["subtype"],
        severity=alert["severity"], severity_rank=SEVERITY_RANK.get(alert["severity"], 0),
        scope=alert.get("scope", "meter"), meter_id=alert.get("meter_id"),
        customer_id=alert.get("customer_id"), area_id=alert.get("area_id"),
        manager_id=manager_id, status=status, state="new",
        start_ts=iso_to_epoch(alert["start"]), detected_ts=iso_to_epoch(alert["detected_at"]),
        first_seen_at=now, updated_at=now, score=alert.get("score"),
        messages=1, record=record))
    return "new" if status == "open" else "close"


def _update_alert(c, row, alert: dict[str, Any], record: str, now: float) -> str:
    """A later message of a stored alert; an older one only counts (stale)."""
    status = "closed" if alert["status"] == "closed" else "open"
    detected_ts = iso_to_epoch(alert["detected_at"])
    where = alerts.c.id == alert["id"]
    if detected_ts < row["detected_ts"] or (
            detected_ts == row["detected_ts"] and row["status"] == "closed"):
        c.execute(alerts.update().where(where).values(messages=row["messages"] + 1))
        return "stale"
    c.execute(alerts.update().where(where).values(
        severity=alert["severity"], severity_rank=SEVERITY_RANK.get(alert["severity"], 0),
        status=status, detected_ts=detected_ts, updated_at=now,
        score=alert.get("score"), messages=row["messages"] + 1, record=record))
    return "close" if status == "closed" else "update"


def _row(c, alert_id: str) -> dict[str, Any] | None:
    r = c.execute(sa.select(alerts).where(alerts.c.id == alert_id)).mappings().first()
    return _alert_dict(r) if r is not None else None


def _existing(c, alert_id: str) -> dict[str, Any]:
    row = _row(c, alert_id)
    if row is None:
        raise NotFound(alert_id)
    return row


def _alert_dict(r) -> dict[str, Any]:
    d = dict(r)
    d["record"] = json.loads(d["record"])
    return d
