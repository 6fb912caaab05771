"""Bring a database's schema up to date when the store opens.

Creates the tables a database lacks, and adds the columns and indexes a table gained
after a database was created, so a store made by an earlier version keeps working.
"""

from __future__ import annotations

import sqlalchemy as sa

from stream.store.schema import alerts, metadata, notes, users


def upgrade(engine: sa.Engine) -> None:
    metadata.create_all(engine)
    _add_missing_columns(engine)
    _add_missing_indexes(engine)


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
