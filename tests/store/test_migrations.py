"""The store's schema is versioned with Alembic: a new database is created at head, a
database made before migrations (by any earlier release) is brought to head with its
rows, and several processes opening one database at once upgrade it once. On SQLite and
on a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from stream.store import AlertStore, migrate
from stream.store.schema import metadata


def first_release_schema() -> sa.MetaData:
    """The tables as the store's first release created them (commit ca58976): no
    notifier bookkeeping tables yet, and none of the columns added since
    (users.session_gen, notes.manager_id, deliveries' lease, alerts' published outcome),
    nor the index on alerts.outcome."""
    m = sa.MetaData()
    sa.Table("alerts", m,
             sa.Column("id", sa.String(40), primary_key=True),
             *[sa.Column(n, sa.String(32), nullable=False) for n in ("type", "subtype")],
             sa.Column("severity", sa.String(16), nullable=False),
             sa.Column("severity_rank", sa.Integer, nullable=False),
             sa.Column("scope", sa.String(8), nullable=False),
             *[sa.Column(n, sa.String(64))
               for n in ("meter_id", "customer_id", "area_id", "manager_id")],
             sa.Column("status", sa.String(8), nullable=False),
             sa.Column("state", sa.String(16), nullable=False, server_default="new"),
             *[sa.Column(n, sa.Float, nullable=False)
               for n in ("start_ts", "detected_ts", "first_seen_at", "updated_at")],
             sa.Column("score", sa.Float),
             sa.Column("messages", sa.Integer, nullable=False, server_default="1"),
             sa.Column("record", sa.Text, nullable=False),
             sa.Column("acknowledged_by", sa.String(64)), sa.Column("acknowledged_at", sa.Float),
             sa.Column("resolved_by", sa.String(64)), sa.Column("resolved_at", sa.Float),
             sa.Column("outcome", sa.String(32)),
             sa.Index("ix_alerts_manager_state", "manager_id", "state"),
             sa.Index("ix_alerts_customer", "customer_id"),
             sa.Index("ix_alerts_detected", "detected_ts"))
    sa.Table("alert_messages", m,
             sa.Column("alert_id", sa.String(40), primary_key=True),
             sa.Column("status", sa.String(8), primary_key=True),
             sa.Column("detected_at", sa.String(40), primary_key=True),
             sa.Column("received_at", sa.Float, nullable=False),
             sa.Column("record", sa.Text, nullable=False))
    sa.Table("users", m,
             sa.Column("username", sa.String(64), primary_key=True),
             sa.Column("password_hash", sa.String(255), nullable=False),
             sa.Column("role", sa.String(16), nullable=False),
             sa.Column("manager_id", sa.String(64)),
             sa.Column("created_at", sa.Float, nullable=False),
             sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
    sa.Table("notes", m,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("alert_id", sa.String(40)), sa.Column("customer_id", sa.String(64)),
             sa.Column("author", sa.String(64), nullable=False),
             sa.Column("text", sa.Text, nullable=False),
             sa.Column("created_at", sa.Float, nullable=False),
             sa.Index("ix_notes_alert", "alert_id"),
             sa.Index("ix_notes_customer", "customer_id"))
    sa.Table("audit", m,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("at", sa.Float, nullable=False),
             sa.Column("actor", sa.String(64), nullable=False),
             sa.Column("action", sa.String(32), nullable=False),
             sa.Column("target", sa.String(80)), sa.Column("detail", sa.Text))
    sa.Table("deliveries", m,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("key", sa.String(255), nullable=False, unique=True),
             sa.Column("alert_id", sa.String(40)),
             sa.Column("kind", sa.String(16), nullable=False),
             sa.Column("channel", sa.String(16), nullable=False),
             sa.Column("recipient", sa.String(64), nullable=False),
             sa.Column("payload", sa.Text, nullable=False),
             sa.Column("state", sa.String(8), nullable=False, server_default="pending"),
             sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
             sa.Column("created_at", sa.Float, nullable=False),
             sa.Column("due_at", sa.Float, nullable=False),
             sa.Column("sent_at", sa.Float), sa.Column("last_error", sa.Text),
             sa.Index("ix_deliveries_due", "state", "due_at"))
    return m


def fill_first_release(url: str) -> None:
    """A first-release database with a row in each table (two notes: one on an alert,
    one on a customer), written as that release wrote them."""
    old = first_release_schema()
    eng = sa.create_engine(url)
    old.create_all(eng)
    t = old.tables
    record = ('{"evidence": {"model": "fleet_self_supervised"}, "id": "t1", '
              '"type": "theft"}')
    with eng.begin() as c:
        c.execute(t["alerts"].insert().values(
            id="t1", type="theft", subtype="fleet", severity="warning", severity_rank=1,
            scope="meter", meter_id="m1", customer_id="c1", area_id="A", manager_id="mgr1",
            status="open", state="resolved", start_ts=1.0, detected_ts=2.0,
            first_seen_at=3.0, updated_at=3.0, messages=1, record=record,
            resolved_by="carol", resolved_at=4.0, outcome="confirmed_theft"))
        c.execute(t["alert_messages"].insert().values(
            alert_id="t1", status="open", detected_at="x", received_at=3.0, record=record))
        c.execute(t["users"].insert().values(username="alice", password_hash="h",
                                             role="manager", manager_id="mgr2",
                                             created_at=1.0))
        c.execute(t["notes"].insert().values(alert_id="t1", customer_id="c1", author="carol",
                                             text="on the alert", created_at=5.0))
        c.execute(t["notes"].insert().values(customer_id="c9", author="alice",
                                             text="on the customer", created_at=6.0))
        c.execute(t["audit"].insert().values(at=5.0, actor="carol", action="resolve",
                                             target="t1"))
        c.execute(t["deliveries"].insert().values(
            key="k1", alert_id="t1", kind="alert", channel="email", recipient="mgr1",
            payload="{}", state="pending", created_at=3.0, due_at=3.0))
    eng.dispose()


def schema_differences(engine: sa.Engine) -> list:
    """What Alembic's autogenerate would change to make the database match schema.py."""
    with engine.connect() as c:
        return compare_metadata(MigrationContext.configure(c), metadata)


def test_a_new_database_is_created_at_head_matching_the_schema(db_url):
    s = AlertStore(db_url)
    try:
        assert migrate.current(s.engine) == migrate.head()
        assert schema_differences(s.engine) == []
    finally:
        s.close()


def test_opening_a_store_at_head_again_changes_nothing(db_url):
    AlertStore(db_url).close()
    s = AlertStore(db_url)
    try:
        with s.engine.connect() as c:
            assert c.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (migrate.head(),)]
    finally:
        s.close()


def test_a_first_release_database_is_brought_to_head_with_its_rows(db_url):
    fill_first_release(db_url)
    s = AlertStore(db_url)
    try:
        assert migrate.current(s.engine) == migrate.head()
        assert schema_differences(s.engine) == []
        # the rows are there, and the columns added since hold what they mean for them
        assert s.get_alert("t1")["outcome"] == "confirmed_theft"
        assert s.session_user("alice")["session_gen"] == 0
        assert [n["text"] for n in s.notes_for(customer_id="c1", manager_id="mgr1")] == [
            "on the alert"]  # the alert's manager's
        assert [n["text"] for n in s.notes_for(customer_id="c9", manager_id="mgr2")] == [
            "on the customer"]  # its author's manager's
        assert [a["action"] for a in s.audit_log()] == ["resolve"]
        assert [d["key"] for d in s.claim_due("n", now=10.0)] == ["k1"]
        # an outcome recorded before outcomes were published was never published
        assert [o["id"] for o in s.unpublished_outcomes()] == ["t1"]
        s.apply_routing(alert_id="t1", message_key="open|x", status="open", record={},
                        severity_rank=1, targets=[{"recipient": "mgr1"}], watch_critical=True)
        assert s.escalation_state("t1") == "watching"  # a table the first release lacked
    finally:
        s.close()


OPEN_AT = """
import sys, time
from stream.store import AlertStore
url, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
AlertStore(url).close()
"""


@pytest.mark.parametrize("first_release", [False, True], ids=["new", "first_release"])
def test_processes_opening_a_database_at_once_upgrade_it_once(db_url, first_release):
    """The console and the notifier starting together: each process opens the store at
    the same instant; one runs the DDL, the others wait for it and find it done."""
    if first_release:
        fill_first_release(db_url)
    start = time.time() + 3.0  # after every process has imported the store
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, db_url, str(start)],
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
    s = AlertStore(db_url)
    try:
        with s.engine.connect() as c:
            assert c.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (migrate.head(),)]
        assert schema_differences(s.engine) == []
        if first_release:
            assert s.get_alert("t1")["outcome"] == "confirmed_theft"
    finally:
        s.close()
