"""Bring a database's schema to the current revision, with Alembic.

The migrations ship inside the package (``stream/store/migrations/``) and Alembic is
configured here in code, so a deployed store needs no ``alembic.ini``: opening the
store upgrades its database to head, as creating the tables did before.

The console and the notifier may open the store at the same moment. Only one of them
may run the DDL: the upgrade holds a database-wide lock for its transaction (a
transaction-level advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), and the
second reads the version table only after the first has committed, so it finds the
database at head and does nothing.

For developers, the same migrations work from the command line with an ini that points
``script_location`` at ``stream/store/migrations`` (``alembic revision --autogenerate``
compares against :data:`stream.store.schema.metadata`).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"
# Any 64-bit number the application's other advisory locks do not use (there are none);
# this one spells "mwstore" in ASCII, so it is recognisable in pg_locks.
ADVISORY_LOCK_KEY = 0x6D7773746F7265


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision``, one process at a time."""
    cfg = config()
    with engine.connect() as conn, _exclusive(conn):
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current(engine: sa.Engine) -> str | None:
    """The revision the database is at (None: no schema yet, or made before Alembic)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str:
    return ScriptDirectory.from_config(config()).get_current_head()


@contextmanager
def _exclusive(conn: sa.Connection):
    """One transaction on ``conn`` that holds the database's migration lock, committed
    at the end (rolled back on error)."""
    if conn.dialect.name == "postgresql":
        conn.begin()
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        # pysqlite opens no transaction before DDL by itself; an immediate one takes
        # the file's write lock now, so a second upgrader waits (busy_timeout) here.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
