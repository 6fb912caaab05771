"""Alembic's environment for the alert store's migrations.

Run by :func:`stream.store.migrate.upgrade`, which passes the connection (already
holding the migration lock, in its transaction) in ``config.attributes``. From the
``alembic`` command line, an ini's ``sqlalchemy.url`` is used instead.
"""

from alembic import context
import sqlalchemy as sa

from stream.store.schema import metadata


def run_migrations(conn: sa.Connection) -> None:
    # Batch mode on SQLite: it cannot ALTER most things in place, so later revisions'
    # column changes are done by copying the table (Alembic's "move and copy").
    context.configure(connection=conn, target_metadata=metadata,
                      render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


conn = context.config.attributes.get("connection")
if conn is not None:
    run_migrations(conn)
else:
    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as c:
        run_migrations(c)
        c.commit()
