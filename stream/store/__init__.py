"""The alert store: what happened to each alert after the pipeline raised it.

The notifier writes alerts into it as they arrive on ``meterwatch.alerts`` and keeps its
delivery outbox here; the console reads alerts from it and records what people did
(acknowledged, resolved with an outcome, notes), with an audit log of who did what. The
outcomes the theft model learns from wait here until the notifier has published them
(an outbox too: :meth:`AlertStore.unpublished_outcomes`).

One schema (:mod:`stream.store.schema`), two databases through SQLAlchemy Core: SQLite
by default (a file under the data folder, WAL mode so the notifier and the console can
share it) and PostgreSQL when ``METERWATCH_DB_URL`` says so. Opening the store brings
the database's schema to the current revision (:mod:`stream.store.migrate`).

The queries live in one repository per concern, each usable alone over an engine:

- :class:`~stream.store.alerts.AlertRepository`: alerts, their messages, people's
  actions on them, notes;
- :class:`~stream.store.users.UserRepository`: accounts, sessions, the audit log;
- :class:`~stream.store.outbox.OutboxRepository` and
  :class:`~stream.store.outbox.OutcomeOutbox`: what the notifier sends and relays;
- :class:`~stream.store.notifier.NotifierRepository`: the notifier's routing, digest,
  escalation and Alertmanager bookkeeping.

:class:`AlertStore` is all of them over one connection pool, which is what the console
and the notifier each open.

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

import sqlalchemy as sa

from stream.store.alerts import AlertRepository, Ingested, alert_filters, iso_to_epoch
from stream.store.db import NotFound, default_url, open_engine
from stream.store.migrate import upgrade
from stream.store.notifier import NotifierRepository
from stream.store.outbox import OutboxRepository, OutcomeOutbox
from stream.store.schema import OUTCOMES, ROLES, STATES
from stream.store.users import UserRepository

__all__ = ["AlertStore", "Ingested", "NotFound", "OUTCOMES", "ROLES", "STATES",
           "alert_filters", "default_url", "iso_to_epoch"]


class AlertStore(AlertRepository, UserRepository, OutboxRepository, OutcomeOutbox,
                 NotifierRepository):
    """Every repository over one database, its schema brought up to date on opening.

    Parameters
    ----------
    url
        SQLAlchemy database URL (``sqlite:///file.db``, ``sqlite://`` in memory,
        ``postgresql+psycopg://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        engine = open_engine(url)
        upgrade(engine)
        super().__init__(engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Raise unless the database answers (the console's health check)."""
        with self.engine.connect() as c:
            c.execute(sa.text("SELECT 1"))
