"""The queries the console's handlers name, each a method of the store.

The SQL lives in the store's repositories (:mod:`stream.store.alerts`,
:mod:`stream.store.users`), beside the rest of the store's queries on the same tables;
these names stay so the handlers read as before. Synchronous like the store: the web
handlers run them in a thread (``asyncio.to_thread``) so the event loop never waits on
the database.
"""

from __future__ import annotations

from typing import Any, Iterable

from stream.store import AlertStore


def count_alerts(store: AlertStore, *, manager_id: str | None = None,
                 states: Iterable[str] | None = None, type: str | None = None,
                 area_id: str | None = None) -> int:
    """How many alerts ``list_alerts`` would page through with these filters."""
    return store.count_alerts(manager_id=manager_id, states=states, type=type,
                              area_id=area_id)


def areas(store: AlertStore, *, manager_id: str | None = None) -> list[str]:
    """Areas that have alerts this user may see (for the inbox's area filter)."""
    return store.areas(manager_id=manager_id)


def customer_alert_count(store: AlertStore, customer_id: str, *,
                         manager_id: str | None = None) -> int:
    return store.customer_alert_count(customer_id, manager_id=manager_id)


def latest_context(store: AlertStore, customer_id: str, *, manager_id: str | None = None,
                   scan: int = 50) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest alert of a customer whose record has a chart ``context``: (alert, context)."""
    return store.latest_context(customer_id, manager_id=manager_id, scan=scan)


def session_user(store: AlertStore, username: str) -> dict[str, Any] | None:
    """The account behind a session, with its password hash and session generation."""
    return store.session_user(username)


def list_users(store: AlertStore) -> list[dict[str, Any]]:
    return store.list_users()


def set_disabled(store: AlertStore, username: str, disabled: bool, *, actor: str,
                 now: float | None = None) -> bool:
    """Disable (or re-enable) an account, audited; False if there is no such user."""
    return store.set_disabled(username, disabled, actor=actor, now=now)


def ping(store: AlertStore) -> None:
    store.ping()
