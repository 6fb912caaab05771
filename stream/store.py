"""The alert store: what happened to each alert after the pipeline raised it.

The notifier writes alerts into it as they arrive on ``meterwatch.alerts`` and keeps its
delivery outbox here; the console reads alerts from it and records what people did
(acknowledged, resolved with an outcome, notes), with an audit log of who did what. The
outcomes the theft model learns from wait here until the notifier has published them
(an outbox too: :meth:`AlertStore.unpublished_outcomes`).

One schema, two databases through SQLAlchemy Core: SQLite by default (a file under the
data folder, WAL mode so the notifier and the console can share it) and PostgreSQL when
``METERWATCH_DB_URL`` says so. SQLAlchemy is used because it renders the same statements
for both dialects (upserts, autoincrement, types), which hand-written SQL would fork.

Times the store creates are epoch seconds (floats, sortable in both databases); the
alert record itself keeps its ISO timestamps as the pipeline wrote them.

>>> s = AlertStore("sqlite://")
>>> a = {"id": "a1", "type": "surge", "subtype": "daily", "status": "open",
...      "severity": "warning", "scope": "meter", "meter_id": "m1", "customer_id": "c1",
...      "area_id": "A", "start": "2026-01-05T00:00:00+00:00",
...      "detected_at": "2026-01-05T18:00:00+00:00", "score": 3.1, "evidence": {},
...      "message": {"en": "Today 38 kWh", "zh-CN": "今日 38 kWh"}}
>>> s.ingest(a, manager_id="mgr1", now=100.0).kind
'new'
>>> s.ingest(a, manager_id="mgr1", now=101.0).kind  # redelivered: nothing changes
'duplicate'
>>> s.get_alert("a1")["state"]
'new'
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
STATES = ("new", "acknowledged", "resolved")
ROLES = ("manager", "control_room", "engineer", "admin")
# What a person found when they followed an alert up; `meterwatch evaluate` reads these
# back as labels (confirmed_* are true positives, false_alarm a false one).
OUTCOMES = ("confirmed_theft", "confirmed_fault", "confirmed_usage_change",
            "customer_contacted", "site_visit_done", "false_alarm", "duplicate", "other")
DELIVERY_STATES = ("pending", "held", "sent", "dead")
# Outcomes the theft model learns from, on its own alerts only (type theft, evidence
# model THEFT_MODEL): they are relayed to the workers (stream/notify/outcomes.py). Other
# outcomes and other alerts' outcomes stay in the store; they teach no model.
RELAYED_OUTCOMES = ("confirmed_theft", "false_alarm")
THEFT_MODEL = "fleet_self_supervised"

metadata = sa.MetaData()

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("subtype", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("severity_rank", sa.Integer, nullable=False),
    sa.Column("scope", sa.String(8), nullable=False),
    sa.Column("meter_id", sa.String(64)),
    sa.Column("customer_id", sa.String(64)),
    sa.Column("area_id", sa.String(64)),
    # The account manager responsible (from the registry at first sight); None for
    # subjects no manager looks after. Console isolation filters on it.
    sa.Column("manager_id", sa.String(64)),
    # Condition as the pipeline reports it: open until a "closed" message arrives.
    sa.Column("status", sa.String(8), nullable=False),
    # Workflow: new -> acknowledged -> resolved (by people, in the console).
    sa.Column("state", sa.String(16), nullable=False, server_default="new"),
    sa.Column("start_ts", sa.Float, nullable=False),
    sa.Column("detected_ts", sa.Float, nullable=False),
    sa.Column("first_seen_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("messages", sa.Integer, nullable=False, server_default="1"),
    sa.Column("record", sa.Text, nullable=False),  # latest alert message, JSON
    sa.Column("acknowledged_by", sa.String(64)),
    sa.Column("acknowledged_at", sa.Float),
    sa.Column("resolved_by", sa.String(64)),
    sa.Column("resolved_at", sa.Float),
    sa.Column("outcome", sa.String(32)),
    # The outcome last published to the theft model's topic (stream/notify/outcomes.py)
    # and when: an outcome that differs from the one published is waiting to go out.
    sa.Column("outcome_published", sa.String(32)),
    sa.Column("outcome_published_at", sa.Float),
    sa.Index("ix_alerts_manager_state", "manager_id", "state"),
    sa.Index("ix_alerts_outcome", "outcome"),
    sa.Index("ix_alerts_customer", "customer_id"),
    sa.Index("ix_alerts_detected", "detected_ts"),
)

# One row per distinct alert message (id, status, detected_at): redelivery is a no-op.
alert_messages = sa.Table(
    "alert_messages", metadata,
    sa.Column("alert_id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(8), primary_key=True),
    sa.Column("detected_at", sa.String(40), primary_key=True),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
)

users = sa.Table(
    "users", metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("manager_id", sa.String(64)),  # for role=manager: whose customers
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # Console sessions carry the generation they were issued in; bumping it (logout,
    # password change, disabling) ends every session of the account at once.
    sa.Column("session_gen", sa.Integer, nullable=False, server_default="0"),
)

notes = sa.Table(
    "notes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(40)),
    sa.Column("customer_id", sa.String(64)),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # Whose the note is, for console isolation: the alert's manager for a note on an
    # alert; for a customer note, the writer's manager id (or the customer's only
    # manager when someone who sees everything wrote it). None: only they see it.
    sa.Column("manager_id", sa.String(64)),
    sa.Index("ix_notes_alert", "alert_id"),
    sa.Index("ix_notes_customer", "customer_id"),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(80)),
    sa.Column("detail", sa.Text),
)

# The notifier's outbox. `key` makes a delivery unique (alert id + what + channel +
# recipient), so re-running the routing of a redelivered alert enqueues nothing new.
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(255), nullable=False, unique=True),
    sa.Column("alert_id", sa.String(40)),
    sa.Column("kind", sa.String(16), nullable=False),  # alert|digest|escalation|...
    sa.Column("channel", sa.String(16), nullable=False),  # email|webhook|alertmanager
    sa.Column("recipient", sa.String(64), nullable=False),  # manager id or control_room
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("state", sa.String(8), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("due_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float),
    sa.Column("last_error", sa.Text),
    # A sender claims a row before sending it (owner/claim id, until when), so two
    # notifier processes, or two passes of one, never send a row at the same time. A
    # claim of a process that died expires; a restarted process releases its own.
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_until", sa.Float),
    sa.Index("ix_deliveries_due", "state", "due_at"),
)

# -- the notifier's bookkeeping beside the outbox (stream/notify/) ------------------------

# The first notification of an alert to a recipient, and which message it carried
# ("status|detected_at"). Later messages of the alert go into that recipient's digest;
# the first message redelivered does not.
notified = sa.Table(
    "notified", metadata,
    sa.Column("alert_id", sa.String(40), primary_key=True),
    sa.Column("recipient", sa.String(64), primary_key=True),
    sa.Column("message_key", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

# Alert messages waiting to go out in a digest: "update" (later messages of an alert a
# recipient was told about) or "daily" (a manager's daily digest). `digest_key` is set,
# in the same transaction that enqueues the digest's deliveries, when the item goes out.
digest_items = sa.Table(
    "digest_items", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recipient", sa.String(64), nullable=False),
    sa.Column("bucket", sa.String(8), nullable=False),
    sa.Column("alert_id", sa.String(40), nullable=False),
    sa.Column("message_key", sa.String(64), nullable=False),
    sa.Column("severity_rank", sa.Integer, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("added_at", sa.Float, nullable=False),
    sa.Column("due_at", sa.Float, nullable=False),
    sa.Column("digest_key", sa.String(255)),
    sa.UniqueConstraint("recipient", "bucket", "alert_id", "message_key",
                        name="uq_digest_items_message"),
    sa.Index("ix_digest_items_open", "digest_key", "due_at"),
)

# Critical alerts watched for acknowledgement: watching -> escalated | settled.
escalations = sa.Table(
    "escalations", metadata,
    sa.Column("alert_id", sa.String(40), primary_key=True),
    sa.Column("critical_at", sa.Float, nullable=False),
    sa.Column("state", sa.String(10), nullable=False, server_default="watching"),
    sa.Column("changed_at", sa.Float),
    sa.Index("ix_escalations_state", "state", "critical_at"),
)

# Alerts posted to Prometheus Alertmanager, re-posted while active (Alertmanager
# resolves an alert nobody re-posts) and resolved once: the label set last posted.
am_alerts = sa.Table(
    "am_alerts", metadata,
    sa.Column("key", sa.String(120), primary_key=True),  # alert id | alertname
    sa.Column("alert_id", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # alert | escalation
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("state", sa.String(8), nullable=False, server_default="firing"),
    sa.Column("posted_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float),
    sa.Index("ix_am_alerts_state", "state"),
)


def iso_to_epoch(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def default_url(data_dir: str | Path) -> str:
    p = Path(data_dir)
    p.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p / 'meterwatch.db'}"


@dataclass(frozen=True)
class Ingested:
    """What an arriving alert message was to the store."""

    kind: str  # new | update | close | duplicate | stale
    alert: dict[str, Any] | None  # the stored row after the message (None if duplicate)


class NotFound(KeyError):
    pass


class AlertStore:
    """Alerts, people's actions on them, users, notes, audit log and delivery outbox.

    Parameters
    ----------
    url
        SQLAlchemy database URL (``sqlite:///file.db``, ``sqlite://`` in memory,
        ``postgresql+psycopg://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        kw: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # Notifier and console are separate processes on one file: wait for a lock
            # rather than fail, and let readers proceed while one writes (WAL).
            kw["connect_args"] = {"timeout": 30, "check_same_thread": False}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kw["poolclass"] = sa.pool.StaticPool
        self.engine = sa.create_engine(url, **kw)
        if url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
        metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        _add_missing_indexes(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- alerts from the pipeline -----------------------------------------------------

    def ingest(self, alert: dict[str, Any], *, manager_id: str | None,
               now: float | None = None) -> Ingested:
        """Record one alert message; idempotent on ``(id, status, detected_at)``.

        A message older than the stored one (by ``detected_at``) is kept in the message
        log but does not roll the alert back ("stale"): redelivery after a rebalance can
        reorder an alert's messages.
        """
        now = time.time() if now is None else now
        record = json.dumps(alert, sort_keys=True, ensure_ascii=False)
        status = "closed" if alert["status"] == "closed" else "open"
        detected_ts = iso_to_epoch(alert["detected_at"])
        with self.engine.begin() as c:
            try:
                c.execute(alert_messages.insert().values(
                    alert_id=alert["id"], status=alert["status"],
                    detected_at=alert["detected_at"], received_at=now, record=record))
            except IntegrityError:
                return Ingested("duplicate", None)
            row = c.execute(sa.select(alerts).where(alerts.c.id == alert["id"])).mappings().first()
            if row is None:
                c.execute(alerts.insert().values(
                    id=alert["id"], type=alert["type"], subtype=alert["subtype"],
                    severity=alert["severity"], severity_rank=SEVERITY_RANK.get(alert["severity"], 0),
                    scope=alert.get("scope", "meter"), meter_id=alert.get("meter_id"),
                    customer_id=alert.get("customer_id"), area_id=alert.get("area_id"),
                    manager_id=manager_id, status=status, state="new",
                    start_ts=iso_to_epoch(alert["start"]), detected_ts=detected_ts,
                    first_seen_at=now, updated_at=now, score=alert.get("score"),
                    messages=1, record=record))
                kind = "new" if status == "open" else "close"
            else:
                if detected_ts < row["detected_ts"] or (
                        detected_ts == row["detected_ts"] and row["status"] == "closed"):
                    c.execute(alerts.update().where(alerts.c.id == alert["id"])
                              .values(messages=row["messages"] + 1))
                    return Ingested("stale", self._row(c, alert["id"]))
                c.execute(alerts.update().where(alerts.c.id == alert["id"]).values(
                    severity=alert["severity"],
                    severity_rank=SEVERITY_RANK.get(alert["severity"], 0),
                    status=status, detected_ts=detected_ts, updated_at=now,
                    score=alert.get("score"), messages=row["messages"] + 1, record=record))
                kind = "close" if status == "closed" else "update"
            return Ingested(kind, self._row(c, alert["id"]))

    @staticmethod
    def _row(c, alert_id: str) -> dict[str, Any] | None:
        r = c.execute(sa.select(alerts).where(alerts.c.id == alert_id)).mappings().first()
        return _alert_dict(r) if r is not None else None

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
        now = time.time() if now is None else now
        with self.engine.begin() as c:
            row = self._row(c, alert_id)
            if row is None:
                raise NotFound(alert_id)
            if row["state"] == "new":
                c.execute(alerts.update().where(alerts.c.id == alert_id).values(
                    state="acknowledged", acknowledged_by=actor, acknowledged_at=now))
                self._audit(c, actor, "acknowledge", alert_id, None, now)
            return self._row(c, alert_id)

    def resolve(self, alert_id: str, actor: str, outcome: str, note: str = "", *,
                now: float | None = None) -> dict[str, Any]:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r}: must be one of {', '.join(OUTCOMES)}")
        now = time.time() if now is None else now
        with self.engine.begin() as c:
            row = self._row(c, alert_id)
            if row is None:
                raise NotFound(alert_id)
            vals: dict[str, Any] = dict(state="resolved", resolved_by=actor, resolved_at=now,
                                        outcome=outcome)
            if row["acknowledged_at"] is None:
                vals.update(acknowledged_by=actor, acknowledged_at=now)
            c.execute(alerts.update().where(alerts.c.id == alert_id).values(**vals))
            if note.strip():
                c.execute(notes.insert().values(alert_id=alert_id, customer_id=row["customer_id"],
                                                manager_id=row["manager_id"], author=actor,
                                                text=note.strip(), created_at=now))
            self._audit(c, actor, "resolve", alert_id, {"outcome": outcome}, now)
            return self._row(c, alert_id)

    def add_note(self, actor: str, text: str, *, alert_id: str | None = None,
                 customer_id: str | None = None, manager_id: str | None = None,
                 now: float | None = None) -> int:
        """A note on an alert (it belongs to the alert's manager) or on a customer (it
        belongs to ``manager_id``: who may read it on the customer's page)."""
        now = time.time() if now is None else now
        if not text.strip():
            raise ValueError("a note needs text")
        with self.engine.begin() as c:
            if alert_id is not None:
                row = self._row(c, alert_id)
                if row is None:
                    raise NotFound(alert_id)
                customer_id = row["customer_id"] if customer_id is None else customer_id
                manager_id = row["manager_id"]
            r = c.execute(notes.insert().values(alert_id=alert_id, customer_id=customer_id,
                                                manager_id=manager_id, author=actor,
                                                text=text.strip(), created_at=now))
            self._audit(c, actor, "note", alert_id or customer_id, None, now)
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

    # ---- outcomes for the theft model (relayed by the notifier) -------------------------

    def unpublished_outcomes(self, limit: int = 100) -> list[dict[str, Any]]:
        """Outcomes waiting to be published to the theft model, oldest resolution first:
        :data:`RELAYED_OUTCOMES` on the model's own alerts (type ``theft``, evidence
        model :data:`THEFT_MODEL`, with a meter and an area) whose outcome is not the one
        last published. Each: id, meter_id, area_id, type, subtype, evidence (the latest
        message's), outcome, resolved_at."""
        c_ = alerts.c
        q = (sa.select(c_.id, c_.meter_id, c_.area_id, c_.type, c_.subtype, c_.outcome,
                       c_.resolved_at, c_.record)
             .where(c_.outcome.in_(RELAYED_OUTCOMES), c_.type == "theft",
                    c_.meter_id.is_not(None), c_.area_id.is_not(None),
                    sa.or_(c_.outcome_published.is_(None), c_.outcome_published != c_.outcome),
                    _evidence_model(self.engine.dialect.name) == THEFT_MODEL)
             .order_by(c_.resolved_at, c_.id).limit(limit))
        with self.engine.connect() as c:
            rows = c.execute(q).mappings().all()
        out = []
        for r in rows:
            d = dict(r)
            d["evidence"] = json.loads(d.pop("record")).get("evidence") or {}
            out.append(d)
        return out

    def mark_outcomes_published(self, sent: Iterable[tuple[str, str]], *,
                                now: float | None = None) -> int:
        """Record ``(alert id, outcome)`` pairs as published; how many were marked.

        The outcome is part of the condition: an alert resolved again with another
        outcome while the previous one was being sent stays unpublished, so the new
        outcome goes out too."""
        now = time.time() if now is None else now
        n = 0
        with self.engine.begin() as c:
            for alert_id, outcome in sent:
                n += c.execute(alerts.update()
                               .where(alerts.c.id == alert_id, alerts.c.outcome == outcome)
                               .values(outcome_published=outcome,
                                       outcome_published_at=now)).rowcount
        return n

    # ---- audit ------------------------------------------------------------------------

    @staticmethod
    def _audit(c, actor: str, action: str, target: str | None, detail: Any, now: float) -> None:
        c.execute(audit.insert().values(
            at=now, actor=actor, action=action, target=target,
            detail=None if detail is None else json.dumps(detail, sort_keys=True)))

    def audit(self, actor: str, action: str, target: str | None = None, detail: Any = None, *,
              now: float | None = None) -> None:
        with self.engine.begin() as c:
            self._audit(c, actor, action, target, detail, time.time() if now is None else now)

    def audit_log(self, *, limit: int = 200, actor: str | None = None,
                  target: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if actor is not None:
            q = q.where(audit.c.actor == actor)
        if target is not None:
            q = q.where(audit.c.target == target)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    # ---- users ------------------------------------------------------------------------

    def create_user(self, username: str, password: str, role: str, *,
                    manager_id: str | None = None, actor: str = "system",
                    now: float | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: must be one of {', '.join(ROLES)}")
        if role == "manager" and not manager_id:
            raise ValueError("a manager account needs the manager id it looks after")
        if len(password) < 8:
            raise ValueError("password: at least 8 characters")
        now = time.time() if now is None else now
        with self.engine.begin() as c:
            c.execute(users.insert().values(username=username, password_hash=_hasher().hash(password),
                                            role=role, manager_id=manager_id, created_at=now))
            self._audit(c, actor, "create_user", username, {"role": role}, now)

    def set_password(self, username: str, password: str, *, actor: str = "system") -> None:
        if len(password) < 8:
            raise ValueError("password: at least 8 characters")
        with self.engine.begin() as c:
            r = c.execute(users.update().where(users.c.username == username)
                          .values(password_hash=_hasher().hash(password),
                                  session_gen=users.c.session_gen + 1))
            if r.rowcount == 0:
                raise NotFound(username)
            self._audit(c, actor, "set_password", username, None, time.time())

    def end_sessions(self, username: str) -> bool:
        """End every console session of an account (logout, disabling); False if there
        is no such user."""
        with self.engine.begin() as c:
            r = c.execute(users.update().where(users.c.username == username)
                          .values(session_gen=users.c.session_gen + 1))
        return r.rowcount > 0

    def get_user(self, username: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(users).where(users.c.username == username)).mappings().first()
        if r is None:
            return None
        d = dict(r)
        d.pop("password_hash")
        return d

    def verify_user(self, username: str, password: str) -> dict[str, Any] | None:
        """The user if the password matches and the account is enabled, else None.

        Hashes a dummy password for an unknown user so timing does not reveal which
        usernames exist.
        """
        from argon2.exceptions import VerificationError, InvalidHashError

        with self.engine.connect() as c:
            r = c.execute(sa.select(users).where(users.c.username == username)).mappings().first()
        h = _hasher()
        if r is None:
            try:
                h.verify(_DUMMY_HASH(), password)
            except (VerificationError, InvalidHashError):
                pass
            return None
        try:
            h.verify(r["password_hash"], password)
        except (VerificationError, InvalidHashError):
            return None
        if r["disabled"]:
            return None
        if h.check_needs_rehash(r["password_hash"]):
            with self.engine.begin() as c:
                c.execute(users.update().where(users.c.username == username)
                          .values(password_hash=h.hash(password)))
        d = dict(r)
        d.pop("password_hash")
        return d

    # ---- delivery outbox --------------------------------------------------------------

    def enqueue(self, *, key: str, alert_id: str | None, kind: str, channel: str,
                recipient: str, payload: dict[str, Any], due_at: float,
                now: float | None = None) -> bool:
        """Add a delivery; False (and nothing written) if one with this key exists."""
        now = time.time() if now is None else now
        with self.engine.begin() as c:
            try:
                with c.begin_nested():
                    c.execute(deliveries.insert().values(
                        key=key, alert_id=alert_id, kind=kind, channel=channel,
                        recipient=recipient, payload=json.dumps(payload, sort_keys=True,
                                                                ensure_ascii=False),
                        state="pending" if due_at <= now else "held",
                        created_at=now, due_at=due_at))
            except IntegrityError:
                return False
        return True

    def due(self, now: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Deliveries whose time has come, oldest due first."""
        now = time.time() if now is None else now
        q = (sa.select(deliveries).where(deliveries.c.state.in_(("pending", "held")))
             .where(deliveries.c.due_at <= now).order_by(deliveries.c.due_at, deliveries.c.id)
             .limit(limit))
        with self.engine.connect() as c:
            return _decoded(c.execute(q).mappings(), "payload")

    def next_due_at(self) -> float | None:
        q = sa.select(sa.func.min(deliveries.c.due_at)).where(
            deliveries.c.state.in_(("pending", "held")))
        with self.engine.connect() as c:
            return c.execute(q).scalar()

    def mark_sent(self, delivery_id: int, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.engine.begin() as c:
            c.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(
                state="sent", sent_at=now, attempts=deliveries.c.attempts + 1, last_error=None,
                lease_owner=None, lease_until=None))

    def mark_failed(self, delivery_id: int, error: str, *, retry_at: float | None) -> None:
        """Record a failed attempt; ``retry_at=None`` gives up (state ``dead``)."""
        with self.engine.begin() as c:
            vals: dict[str, Any] = dict(attempts=deliveries.c.attempts + 1, last_error=error[:2000],
                                        lease_owner=None, lease_until=None)
            if retry_at is None:
                vals["state"] = "dead"
            else:
                vals.update(state="pending", due_at=retry_at)
            c.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(**vals))

    def deliveries_for(self, *, alert_id: str | None = None, state: str | None = None
                       ) -> list[dict[str, Any]]:
        q = sa.select(deliveries).order_by(deliveries.c.id)
        if alert_id is not None:
            q = q.where(deliveries.c.alert_id == alert_id)
        if state is not None:
            q = q.where(deliveries.c.state == state)
        with self.engine.connect() as c:
            return _decoded(c.execute(q).mappings(), "payload")


    # ---- the notifier (stream/notify/): routing, claims, digests, escalation -----------

    def apply_routing(self, *, alert_id: str, message_key: str, status: str,
                      record: dict[str, Any], severity_rank: int, targets: list[dict[str, Any]],
                      watch_critical: bool = False, now: float | None = None) -> dict[str, Any]:
        """Record what one alert message means for its recipients, in one transaction.

        ``message_key`` is ``"status|detected_at"`` (with the alert id, one message).
        Each target is a dict: ``recipient``; ``first_deliveries`` (dicts with key, kind,
        channel, payload, due_at) and ``first_digest`` (``{bucket, due_at}`` or None)
        apply if this is the first message of the alert the recipient hears of (never a
        closed one); ``update_digest`` (``{bucket, due_at}`` or None) applies to any later
        message. ``watch_critical`` starts the acknowledgement watch of the alert.
        Idempotent: applying the same message again adds nothing. Returns counts and
        ``created``: (channel, kind) of each delivery enqueued.
        """
        now = time.time() if now is None else now
        out: dict[str, Any] = {"first": 0, "deliveries": 0, "digest_items": 0, "created": []}
        rec = json.dumps(record, sort_keys=True, ensure_ascii=False)

        def item(c, recipient: str, spec: dict[str, Any]) -> None:
            out["digest_items"] += _insert_ignore(c, digest_items, dict(
                recipient=recipient, bucket=spec["bucket"], alert_id=alert_id,
                message_key=message_key, severity_rank=severity_rank, record=rec,
                added_at=now, due_at=spec["due_at"]))

        with self.engine.begin() as c:
            for t in targets:
                r = t["recipient"]
                first = False
                if status != "closed":
                    first = _insert_ignore(c, notified, dict(
                        alert_id=alert_id, recipient=r, message_key=message_key, at=now))
                if first:
                    out["first"] += 1
                    for d in t.get("first_deliveries") or ():
                        if _insert_delivery(c, d, alert_id, r, now):
                            out["deliveries"] += 1
                            out["created"].append((d["channel"], d["kind"]))
                    if t.get("first_digest"):
                        item(c, r, t["first_digest"])
                    continue
                prev = c.execute(sa.select(notified.c.message_key).where(
                    notified.c.alert_id == alert_id, notified.c.recipient == r)).scalar()
                if prev is None or prev == message_key:
                    continue  # never told (a close first), or this very message told it
                if t.get("update_digest"):
                    item(c, r, t["update_digest"])
            if watch_critical:
                _insert_ignore(c, escalations, dict(alert_id=alert_id, critical_at=now,
                                                    state="watching", changed_at=now))
        return out

    def claim_due(self, owner: str, *, now: float | None = None, lease_s: float = 60.0,
                  limit: int = 50, channel: str | None = None) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due deliveries (of ``channel``, or any) for ``owner`` for
        ``lease_s`` seconds.

        A row claimed by someone else whose lease has not expired is skipped, so every
        row has one sender at a time; :meth:`mark_sent`/:meth:`mark_failed` end a claim.
        """
        import uuid

        now = time.time() if now is None else now
        claim = f"{owner}/{uuid.uuid4().hex[:12]}"
        free = sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
        q = (sa.select(deliveries.c.id)
             .where(deliveries.c.state.in_(("pending", "held")), deliveries.c.due_at <= now, free)
             .order_by(deliveries.c.due_at, deliveries.c.id).limit(limit))
        if channel is not None:
            q = q.where(deliveries.c.channel == channel)
        with self.engine.begin() as c:
            ids = [i for (i,) in c.execute(q)]
            if not ids:
                return []
            c.execute(deliveries.update().where(deliveries.c.id.in_(ids), free,
                                                deliveries.c.state.in_(("pending", "held")))
                      .values(lease_owner=claim, lease_until=now + lease_s))
        with self.engine.connect() as c:
            rows = c.execute(sa.select(deliveries).where(deliveries.c.lease_owner == claim)
                             .order_by(deliveries.c.due_at, deliveries.c.id)).mappings()
            return [_delivery_dict(r) for r in rows]

    def release_leases(self, owner: str) -> int:
        """Drop the claims ``owner`` held (a restarted process resumes its own at once)."""
        with self.engine.begin() as c:
            return c.execute(deliveries.update()
                             .where(deliveries.c.lease_owner.startswith(owner + "/", autoescape=True))
                             .values(lease_owner=None, lease_until=None)).rowcount

    def purge_outbox(self, before: float) -> dict[str, int]:
        """Delete what the outbox is done with from before ``before`` (epoch s): sent and
        dead deliveries, and digest items that went out in a digest. Pending and held
        rows stay whatever their age, and so do the alerts, their notes and the
        first-notification records (a months-old alert's next update still goes to
        the digest, not out as a new alert)."""
        with self.engine.begin() as c:
            d = c.execute(deliveries.delete()
                          .where(deliveries.c.state.in_(("sent", "dead")))
                          .where(deliveries.c.created_at < before)).rowcount
            i = c.execute(digest_items.delete()
                          .where(digest_items.c.digest_key.is_not(None))
                          .where(digest_items.c.added_at < before)).rowcount
        return {"deliveries": d, "digest_items": i}

    def outbox_stats(self) -> list[dict[str, Any]]:
        """Deliveries by channel and state, with the oldest creation time of each group."""
        q = (sa.select(deliveries.c.channel, deliveries.c.state, sa.func.count().label("n"),
                       sa.func.min(deliveries.c.created_at).label("oldest"))
             .group_by(deliveries.c.channel, deliveries.c.state))
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def digests_due(self, now: float | None = None) -> list[tuple[str, str]]:
        """(recipient, bucket) pairs with a digest item whose time has come."""
        now = time.time() if now is None else now
        q = (sa.select(digest_items.c.recipient, digest_items.c.bucket).distinct()
             .where(digest_items.c.digest_key.is_(None), digest_items.c.due_at <= now)
             .order_by(digest_items.c.recipient, digest_items.c.bucket))
        with self.engine.connect() as c:
            return [(r, b) for r, b in c.execute(q)]

    def form_digest(self, recipient: str, bucket: str, build, *,
                    now: float | None = None) -> tuple[str, int] | None:
        """Put a recipient's waiting items of a bucket into one digest, in one transaction.

        Takes every waiting item of an ``update`` bucket, and the due ones of a ``daily``
        bucket. ``build(items)`` returns ``(digest_key, deliveries)``; the deliveries are
        enqueued and the items marked with the key together, so a crash leaves either
        both or neither. Returns ``(digest_key, deliveries enqueued)``, or None.
        """
        now = time.time() if now is None else now
        try:
            with self.engine.begin() as c:
                q = (sa.select(digest_items).where(digest_items.c.recipient == recipient,
                                                   digest_items.c.bucket == bucket,
                                                   digest_items.c.digest_key.is_(None))
                     .order_by(digest_items.c.added_at, digest_items.c.id))
                if bucket != "update":
                    q = q.where(digest_items.c.due_at <= now)
                items = _decoded(c.execute(q).mappings(), "record")
                if not items:
                    return None
                key, dels = build(items)
                ids = [i["id"] for i in items]
                done = c.execute(digest_items.update().where(
                    digest_items.c.id.in_(ids), digest_items.c.digest_key.is_(None))
                    .values(digest_key=key)).rowcount
                if done != len(ids):
                    raise _Conflict  # another process formed it meanwhile
                n = sum(_insert_delivery(c, d, None, recipient, now) for d in dels)
                return key, n
        except _Conflict:
            return None

    def digest_items_for(self, *, recipient: str | None = None,
                         digest_key: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(digest_items).order_by(digest_items.c.id)
        if recipient is not None:
            q = q.where(digest_items.c.recipient == recipient)
        if digest_key is not None:
            q = q.where(digest_items.c.digest_key == digest_key)
        with self.engine.connect() as c:
            return _decoded(c.execute(q).mappings(), "record")

    def escalations_due(self, cutoff: float) -> list[dict[str, Any]]:
        """Watched critical alerts critical since ``cutoff`` or before, with the alert."""
        q = (sa.select(escalations.c.alert_id, escalations.c.critical_at, alerts.c.state,
                       alerts.c.status, alerts.c.severity, alerts.c.manager_id, alerts.c.record)
             .join(alerts, alerts.c.id == escalations.c.alert_id)
             .where(escalations.c.state == "watching", escalations.c.critical_at <= cutoff)
             .order_by(escalations.c.critical_at))
        with self.engine.connect() as c:
            return _decoded(c.execute(q).mappings(), "record")

    def escalate(self, alert_id: str, dels: list[dict[str, Any]], *,
                 now: float | None = None) -> bool:
        """Mark a watched alert escalated and enqueue its deliveries, once."""
        now = time.time() if now is None else now
        with self.engine.begin() as c:
            r = c.execute(escalations.update().where(escalations.c.alert_id == alert_id,
                                                     escalations.c.state == "watching")
                          .values(state="escalated", changed_at=now))
            if r.rowcount != 1:
                return False
            for d in dels:
                _insert_delivery(c, d, alert_id, d["recipient"], now)
            return True

    def settle_escalation(self, alert_id: str, *, now: float | None = None) -> None:
        """Stop watching an alert (acknowledged, resolved, closed or no longer critical)."""
        now = time.time() if now is None else now
        with self.engine.begin() as c:
            c.execute(escalations.update().where(escalations.c.alert_id == alert_id,
                                                 escalations.c.state == "watching")
                      .values(state="settled", changed_at=now))

    def escalation_state(self, alert_id: str) -> str | None:
        with self.engine.connect() as c:
            return c.execute(sa.select(escalations.c.state)
                             .where(escalations.c.alert_id == alert_id)).scalar()

    def am_track(self, *, key: str, alert_id: str, kind: str, labels: dict[str, str],
                 now: float | None = None) -> None:
        """Remember an alert as firing in Alertmanager with these labels."""
        now = time.time() if now is None else now
        lab = json.dumps(labels, sort_keys=True)
        with self.engine.begin() as c:
            r = c.execute(am_alerts.update().where(am_alerts.c.key == key).values(
                labels=lab, state="firing", posted_at=now, resolved_at=None))
            if r.rowcount == 0:
                _insert_ignore(c, am_alerts, dict(key=key, alert_id=alert_id, kind=kind,
                                                  labels=lab, state="firing", posted_at=now))

    def am_firing(self) -> list[dict[str, Any]]:
        """Alerts firing in Alertmanager, with the alert's condition and workflow state."""
        q = (sa.select(am_alerts, alerts.c.status, alerts.c.state.label("alert_state"),
                       alerts.c.record)
             .join(alerts, alerts.c.id == am_alerts.c.alert_id, isouter=True)
             .where(am_alerts.c.state == "firing").order_by(am_alerts.c.key))
        with self.engine.connect() as c:
            return _decoded(c.execute(q).mappings(), "labels", "record")

    def am_posted(self, keys: Iterable[str], *, resolved: bool = False,
                  now: float | None = None) -> None:
        now = time.time() if now is None else now
        keys = list(keys)
        if not keys:
            return
        vals: dict[str, Any] = dict(posted_at=now)
        if resolved:
            vals.update(state="resolved", resolved_at=now)
        with self.engine.begin() as c:
            c.execute(am_alerts.update().where(am_alerts.c.key.in_(keys)).values(**vals))


class _Conflict(Exception):
    pass


def _insert_ignore(c, table: sa.Table, values: dict[str, Any]) -> bool:
    """INSERT unless the row exists (ON CONFLICT DO NOTHING); True if it was inserted.

    Unlike catching IntegrityError, this leaves a PostgreSQL transaction usable. RETURNING
    tells whether a row went in (psycopg's rowcount is -1 for this statement here).
    """
    if c.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    pk = list(table.primary_key.columns)[0]
    stmt = insert(table).values(**values).on_conflict_do_nothing().returning(pk)
    return c.execute(stmt).first() is not None


def _insert_delivery(c, d: dict[str, Any], alert_id: str | None, recipient: str,
                     now: float) -> int:
    return int(_insert_ignore(c, deliveries, dict(
        key=d["key"], alert_id=d.get("alert_id", alert_id), kind=d["kind"],
        channel=d["channel"], recipient=d.get("recipient", recipient),
        payload=json.dumps(d["payload"], sort_keys=True, ensure_ascii=False),
        state="pending" if d["due_at"] <= now else "held", created_at=now,
        due_at=d["due_at"])))


def _delivery_dict(r) -> dict[str, Any]:
    d = dict(r)
    d["payload"] = json.loads(d["payload"])
    return d


def _add_missing_columns(engine: sa.Engine) -> None:
    """Add columns that a table gained after a database was created, so a store made
    by an earlier version keeps working: nullable ones as they are, NOT NULL ones with
    their server default (which fills the existing rows)."""
    insp = sa.inspect(engine)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name in have:
                continue
            ddl = (f"ALTER TABLE {table.name} ADD COLUMN {col.name} "
                   f"{col.type.compile(dialect=engine.dialect)}")
            if not col.nullable:
                default = _server_default_sql(col, engine.dialect)
                if default is None:
                    continue  # cannot fill existing rows: left for a manual migration
                ddl += f" NOT NULL DEFAULT {default}"
            with engine.begin() as c:
                c.execute(sa.text(ddl))
                if (table.name, col.name) == ("notes", "manager_id"):
                    _backfill_note_scope(c)


def _add_missing_indexes(engine: sa.Engine) -> None:
    """Create the indexes a table gained after a database was created."""
    for table in metadata.sorted_tables:
        for ix in table.indexes:
            ix.create(engine, checkfirst=True)


def _evidence_model(dialect: str):
    """SQL for ``record.evidence.model`` (the alert record is JSON text)."""
    if dialect == "sqlite":
        return sa.func.json_extract(alerts.c.record, "$.evidence.model")
    from sqlalchemy.dialects.postgresql import JSONB

    return sa.func.jsonb_extract_path_text(sa.cast(alerts.c.record, JSONB), "evidence", "model")


def _server_default_sql(col: sa.Column, dialect) -> str | None:
    sd = col.server_default
    arg = getattr(sd, "arg", None)
    if arg is None:
        return None
    if isinstance(arg, str):
        return "'" + arg.replace("'", "''") + "'"
    return str(arg.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _backfill_note_scope(c) -> None:
    """Notes written before notes had a manager id: an alert's note is its alert's
    manager's; a customer note is its author's manager's (None for other roles)."""
    c.execute(notes.update().where(notes.c.alert_id.is_not(None)).values(
        manager_id=sa.select(alerts.c.manager_id).where(alerts.c.id == notes.c.alert_id)
        .scalar_subquery()))
    c.execute(notes.update().where(notes.c.alert_id.is_(None)).values(
        manager_id=sa.select(users.c.manager_id).where(users.c.username == notes.c.author)
        .scalar_subquery()))


def _decoded(rows, *json_cols: str) -> list[dict[str, Any]]:
    """Result rows as dicts with their JSON text columns parsed (None stays None)."""
    out = []
    for r in rows:
        d = dict(r)
        for k in json_cols:
            if d[k] is not None:
                d[k] = json.loads(d[k])
        out.append(d)
    return out


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


def _alert_dict(r) -> dict[str, Any]:
    d = dict(r)
    d["record"] = json.loads(d["record"])
    return d


_HASHER = None
_DUMMY: str | None = None


def _hasher():
    global _HASHER
    if _HASHER is None:
        from argon2 import PasswordHasher

        _HASHER = PasswordHasher()
    return _HASHER


def _DUMMY_HASH() -> str:
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = _hasher().hash("not-a-real-password")
    return _DUMMY
