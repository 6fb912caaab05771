"""The database connection the repositories share, and the SQL helpers they have in
common.

SQLite by default (a file under the data folder) and PostgreSQL when
``METERWATCH_DB_URL`` says so; SQLAlchemy renders the same statements for both (upserts,
autoincrement, types), which hand-written SQL would fork.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa


class NotFound(KeyError):
    pass


class Conflict(Exception):
    """Another process changed the rows a transaction was about to claim: roll back."""


class Repository:
    """What every repository is: queries over one engine (the store's)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine


def default_url(data_dir: str | Path) -> str:
    p = Path(data_dir)
    p.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p / 'meterwatch.db'}"


def open_engine(url: str) -> sa.Engine:
    """An engine for ``url``, set up so the notifier and the console can share it."""
    kw: dict[str, Any] = {}
    sqlite = url.startswith("sqlite")
    if sqlite:
        # Notifier and console are separate processes on one file: wait for a lock
        # rather than fail, and let readers proceed while one writes (WAL).
        kw["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kw["poolclass"] = sa.pool.StaticPool
    engine = sa.create_engine(url, **kw)
    if sqlite:
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    _wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _wal(cur, timeout_s: float = 30.0) -> None:
    """Switch the file to WAL, waiting out another process's write.

    Leaving rollback-journal mode needs the file's exclusive lock, and SQLite answers
    "database is locked" at once, without its busy handler, while another connection
    holds a write lock (it would deadlock otherwise): a database made by an old release
    being migrated by the console while the notifier opens it is exactly that. The
    migration commits in well under a second, so try again until the timeout."""
    import sqlite3

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def now_or(now: float | None) -> float:
    """``now`` if the caller fixed the time (tests, replays), else the clock."""
    return time.time() if now is None else now


def insert_ignore(c, table: sa.Table, values: dict[str, Any]) -> bool:
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


def decoded(rows, *json_cols: str) -> list[dict[str, Any]]:
    """Result rows as dicts with their JSON text columns parsed (None stays None)."""
    out = []
    for r in rows:
        d = dict(r)
        for k in json_cols:
            if d[k] is not None:
                d[k] = json.loads(d[k])
        out.append(d)
    return out


def to_json(value: Any) -> str:
    """How the store writes JSON text: sorted keys (stable), UTF-8 kept readable."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
