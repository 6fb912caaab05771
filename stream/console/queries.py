"""Queries the console needs beyond :class:`stream.store.AlertStore`'s methods.

Written against the store's engine and table objects (the store module itself is shared
with the notifier and not edited here). Synchronous like the store: the web handlers
run them in a thread (``asyncio.to_thread``) so the event loop never waits on the
database.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable

import sqlalchemy as sa

from stream.store import AlertStore, alert_filters, alerts, audit, users


def _scoped(q, manager_id: str | None):
    return alert_filters(q, manager_id=manager_id)


def count_alerts(store: AlertStore, *, manager_id: str | None = None,
                 states: Iterable[str] | None = None, type: str | None = None,
                 area_id: str | None = None) -> int:
    """How many alerts ``list_alerts`` would page through with these filters."""
    q = alert_filters(sa.select(sa.func.count()).select_from(alerts), manager_id=manager_id,
                      states=states, type=type, area_id=area_id)
    with store.engine.connect() as c:
        return int(c.execute(q).scalar() or 0)


def areas(store: AlertStore, *, manager_id: str | None = None) -> list[str]:
    """Areas that have alerts this user may see (for the inbox's area filter)."""
    q = _scoped(sa.select(alerts.c.area_id).where(alerts.c.area_id.is_not(None)).distinct(),
                manager_id).order_by(alerts.c.area_id)
    with store.engine.connect() as c:
        return [r for (r,) in c.execute(q)]


def customer_alert_count(store: AlertStore, customer_id: str, *,
                         manager_id: str | None = None) -> int:
    q = _scoped(sa.select(sa.func.count()).select_from(alerts)
                .where(alerts.c.customer_id == customer_id), manager_id)
    with store.engine.connect() as c:
        return int(c.execute(q).scalar() or 0)


def latest_context(store: AlertStore, customer_id: str, *, manager_id: str | None = None,
                   scan: int = 50) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest alert of a customer whose record has a chart ``context``: (alert, context)."""
    q = _scoped(sa.select(alerts.c.id, alerts.c.type, alerts.c.subtype, alerts.c.meter_id,
                          alerts.c.detected_ts, alerts.c.record)
                .where(alerts.c.customer_id == customer_id), manager_id
                ).order_by(alerts.c.detected_ts.desc(), alerts.c.id).limit(scan)
    with store.engine.connect() as c:
        for r in c.execute(q).mappings():
            rec = json.loads(r["record"])
            ctx = rec.get("context")
            if isinstance(ctx, dict) and ctx.get("expected_kwh"):
                return dict(r, record=rec), ctx
    return None


def session_user(store: AlertStore, username: str) -> dict[str, Any] | None:
    """The account behind a session, with its password hash (for the session's
    password fingerprint) and session generation; None if unknown."""
    with store.engine.connect() as c:
        r = c.execute(sa.select(users.c.username, users.c.password_hash, users.c.role,
                                users.c.manager_id, users.c.disabled, users.c.session_gen)
                      .where(users.c.username == username)).mappings().first()
    return dict(r) if r is not None else None


def list_users(store: AlertStore) -> list[dict[str, Any]]:
    q = sa.select(users.c.username, users.c.role, users.c.manager_id, users.c.created_at,
                  users.c.disabled).order_by(users.c.username)
    with store.engine.connect() as c:
        return [dict(r) for r in c.execute(q).mappings()]


def set_disabled(store: AlertStore, username: str, disabled: bool, *, actor: str,
                 now: float | None = None) -> bool:
    """Disable (or re-enable) an account, audited; False if there is no such user.
    Either way its sessions end (a new generation)."""
    now = time.time() if now is None else now
    with store.engine.begin() as c:
        r = c.execute(users.update().where(users.c.username == username)
                      .values(disabled=bool(disabled), session_gen=users.c.session_gen + 1))
        if r.rowcount == 0:
            return False
        c.execute(audit.insert().values(at=now, actor=actor,
                                        action="disable_user" if disabled else "enable_user",
                                        target=username, detail=None))
    return True


def ping(store: AlertStore) -> None:
    with store.engine.connect() as c:
        c.execute(sa.text("SELECT 1"))
