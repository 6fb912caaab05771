"""The notifier's outboxes: deliveries waiting to be sent, and inspection outcomes
waiting to be published to the theft model.

Both follow the transactional-outbox pattern: what must go out is written in the same
transaction as what caused it, and a sender marks it done only after it went out, so a
crash resends rather than loses. Deliveries are claimed with a lease before sending, so
two notifier processes (or two passes of one) never send a row at the same time.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from stream.store.db import Repository, decoded, insert_ignore, now_or, to_json
from stream.store.schema import (RELAYED_OUTCOMES, THEFT_MODEL, alerts, deliveries,
                                 digest_items)


class OutboxRepository(Repository):
    """Deliveries (email, webhook, Alertmanager posts): enqueue, claim, mark, purge."""

    def enqueue(self, *, key: str, alert_id: str | None, kind: str, channel: str,
                recipient: str, payload: dict[str, Any], due_at: float,
                now: float | None = None) -> bool:
        """Add a delivery; False (and nothing written) if one with this key exists."""
        now = now_or(now)
        with self.engine.begin() as c:
            try:
                with c.begin_nested():
                    c.execute(deliveries.insert().values(
                        key=key, alert_id=alert_id, kind=kind, channel=channel,
                        recipient=recipient, payload=to_json(payload),
                        state="pending" if due_at <= now else "held",
                        created_at=now, due_at=due_at))
            except IntegrityError:
                return False
        return True

    def due(self, now: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Deliveries whose time has come, oldest due first."""
        now = now_or(now)
        q = (sa.select(deliveries).where(deliveries.c.state.in_(("pending", "held")))
             .where(deliveries.c.due_at <= now).order_by(deliveries.c.due_at, deliveries.c.id)
             .limit(limit))
        with self.engine.connect() as c:
            return decoded(c.execute(q).mappings(), "payload")

    def next_due_at(self) -> float | None:
        q = sa.select(sa.func.min(deliveries.c.due_at)).where(
            deliveries.c.state.in_(("pending", "held")))
        with self.engine.connect() as c:
            return c.execute(q).scalar()

    def mark_sent(self, delivery_id: int, *, now: float | None = None) -> None:
        now = now_or(now)
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
            return decoded(c.execute(q).mappings(), "payload")

    def claim_due(self, owner: str, *, now: float | None = None, lease_s: float = 60.0,
                  limit: int = 50, channel: str | None = None) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due deliveries (of ``channel``, or any) for ``owner`` for
        ``lease_s`` seconds.

        A row claimed by someone else whose lease has not expired is skipped, so every
        row has one sender at a time; :meth:`mark_sent`/:meth:`mark_failed` end a claim.
        """
        now = now_or(now)
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
            return decoded(rows, "payload")

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

class OutcomeOutbox(Repository):
    """Outcomes the theft model learns from, waiting to be published (they are columns
    of the alert: the outcome, and the outcome last published)."""

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
                    evidence_model(self.engine.dialect.name) == THEFT_MODEL)
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
        now = now_or(now)
        n = 0
        with self.engine.begin() as c:
            for alert_id, outcome in sent:
                n += c.execute(alerts.update()
                               .where(alerts.c.id == alert_id, alerts.c.outcome == outcome)
                               .values(outcome_published=outcome,
                                       outcome_published_at=now)).rowcount
        return n


def insert_delivery(c, d: dict[str, Any], alert_id: str | None, recipient: str,
                    now: float) -> int:
    """Enqueue one delivery inside the caller's transaction (1), unless its key exists (0).
    Due now: pending; due later: held until then."""
    return int(insert_ignore(c, deliveries, dict(
        key=d["key"], alert_id=d.get("alert_id", alert_id), kind=d["kind"],
        channel=d["channel"], recipient=d.get("recipient", recipient),
        payload=to_json(d["payload"]),
        state="pending" if d["due_at"] <= now else "held", created_at=now,
        due_at=d["due_at"])))


def evidence_model(dialect: str):
    """SQL for ``record.evidence.model`` (the alert record is JSON text)."""
    if dialect == "sqlite":
        return sa.func.json_extract(alerts.c.record, "$.evidence.model")
    from sqlalchemy.dialects.postgresql import JSONB

    return sa.func.jsonb_extract_path_text(sa.cast(alerts.c.record, JSONB), "evidence", "model")
