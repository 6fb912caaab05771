"""The notifier's bookkeeping beside the outbox (``stream/notify/``): who was told
about which alert first, digest items, the acknowledgement watch of critical alerts
(escalation), and the alerts posted to Prometheus Alertmanager.

Each operation is one transaction, and idempotent: a redelivered alert message, or two
notifier processes doing the same step, enqueue nothing twice.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import sqlalchemy as sa

from stream.store.db import Conflict, Repository, decoded, insert_ignore, now_or, to_json
from stream.store.outbox import insert_delivery
from stream.store.schema import alerts, am_alerts, digest_items, escalations, notified


class NotifierRepository(Repository):
    """Routing of alert messages to recipients, digests, escalations, Alertmanager."""

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
        now = now_or(now)
        out: dict[str, Any] = {"first": 0, "deliveries": 0, "digest_items": 0, "created": []}
        rec = to_json(record)

        def item(c, recipient: str, spec: dict[str, Any]) -> None:
            out["digest_items"] += insert_ignore(c, digest_items, dict(
                recipient=recipient, bucket=spec["bucket"], alert_id=alert_id,
                message_key=message_key, severity_rank=severity_rank, record=rec,
                added_at=now, due_at=spec["due_at"]))

        with self.engine.begin() as c:
            for t in targets:
                r = t["recipient"]
                first = False
                if status != "closed":
                    first = insert_ignore(c, notified, dict(
                        alert_id=alert_id, recipient=r, message_key=message_key, at=now))
                if first:
                    out["first"] += 1
                    for d in t.get("first_deliveries") or ():
                        if insert_delivery(c, d, alert_id, r, now):
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
                insert_ignore(c, escalations, dict(alert_id=alert_id, critical_at=now,
                                                    state="watching", changed_at=now))
        return out

    def digests_due(self, now: float | None = None) -> list[tuple[str, str]]:
        """(recipient, bucket) pairs with a digest item whose time has come."""
        now = now_or(now)
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
        now = now_or(now)
        try:
            with self.engine.begin() as c:
                q = (sa.select(digest_items).where(digest_items.c.recipient == recipient,
                                                   digest_items.c.bucket == bucket,
                                                   digest_items.c.digest_key.is_(None))
                     .order_by(digest_items.c.added_at, digest_items.c.id))
                if bucket != "update":
                    q = q.where(digest_items.c.due_at <= now)
                items = decoded(c.execute(q).mappings(), "record")
                if not items:
                    return None
                key, dels = build(items)
                ids = [i["id"] for i in items]
                done = c.execute(digest_items.update().where(
                    digest_items.c.id.in_(ids), digest_items.c.digest_key.is_(None))
                    .values(digest_key=key)).rowcount
                if done != len(ids):
                    raise Conflict  # another process formed it meanwhile
                n = sum(insert_delivery(c, d, None, recipient, now) for d in dels)
                return key, n
        except Conflict:
            return None

    def digest_items_for(self, *, recipient: str | None = None,
                         digest_key: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(digest_items).order_by(digest_items.c.id)
        if recipient is not None:
            q = q.where(digest_items.c.recipient == recipient)
        if digest_key is not None:
            q = q.where(digest_items.c.digest_key == digest_key)
        with self.engine.connect() as c:
            return decoded(c.execute(q).mappings(), "record")

    def escalations_due(self, cutoff: float) -> list[dict[str, Any]]:
        """Watched critical alerts critical since ``cutoff`` or before, with the alert."""
        q = (sa.select(escalations.c.alert_id, escalations.c.critical_at, alerts.c.state,
                       alerts.c.status, alerts.c.severity, alerts.c.manager_id, alerts.c.record)
             .join(alerts, alerts.c.id == escalations.c.alert_id)
             .where(escalations.c.state == "watching", escalations.c.critical_at <= cutoff)
             .order_by(escalations.c.critical_at))
        with self.engine.connect() as c:
            return decoded(c.execute(q).mappings(), "record")

    def escalate(self, alert_id: str, dels: list[dict[str, Any]], *,
                 now: float | None = None) -> bool:
        """Mark a watched alert escalated and enqueue its deliveries, once."""
        now = now_or(now)
        with self.engine.begin() as c:
            r = c.execute(escalations.update().where(escalations.c.alert_id == alert_id,
                                                     escalations.c.state == "watching")
                          .values(state="escalated", changed_at=now))
            if r.rowcount != 1:
                return False
            for d in dels:
                insert_delivery(c, d, alert_id, d["recipient"], now)
            return True

    def settle_escalation(self, alert_id: str, *, now: float | None = None) -> None:
        """Stop watching an alert (acknowledged, resolved, closed or no longer critical)."""
        now = now_or(now)
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
        now = now_or(now)
        lab = json.dumps(labels, sort_keys=True)
        with self.engine.begin() as c:
            r = c.execute(am_alerts.update().where(am_alerts.c.key == key).values(
                labels=lab, state="firing", posted_at=now, resolved_at=None))
            if r.rowcount == 0:
                insert_ignore(c, am_alerts, dict(key=key, alert_id=alert_id, kind=kind,
                                                  labels=lab, state="firing", posted_at=now))

    def am_firing(self) -> list[dict[str, Any]]:
        """Alerts firing in Alertmanager, with the alert's condition and workflow state."""
        q = (sa.select(am_alerts, alerts.c.status, alerts.c.state.label("alert_state"),
                       alerts.c.record)
             .join(alerts, alerts.c.id == am_alerts.c.alert_id, isouter=True)
             .where(am_alerts.c.state == "firing").order_by(am_alerts.c.key))
        with self.engine.connect() as c:
            return decoded(c.execute(q).mappings(), "labels", "record")

    def am_posted(self, keys: Iterable[str], *, resolved: bool = False,
                  now: float | None = None) -> None:
        now = now_or(now)
        keys = list(keys)
        if not keys:
            return
        vals: dict[str, Any] = dict(posted_at=now)
        if resolved:
            vals.update(state="resolved", resolved_at=now)
        with self.engine.begin() as c:
            c.execute(am_alerts.update().where(am_alerts.c.key.in_(keys)).values(**vals))
