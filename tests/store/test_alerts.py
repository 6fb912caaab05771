"""Alerts are kept once however often they are delivered, follow their messages, and
record what people did about them (audited); on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from stream.store import NotFound
from tests.store.store_data import alert


def test_a_redelivered_message_changes_nothing(store):
    assert store.ingest(alert(), manager_id="mgr1", now=1.0).kind == "new"
    assert store.ingest(alert(), manager_id="mgr1", now=2.0).kind == "duplicate"
    a = store.get_alert("a1")
    assert a["messages"] == 1 and a["first_seen_at"] == 1.0 and a["updated_at"] == 1.0


def test_updates_and_close_follow_the_alert(store):
    store.ingest(alert(), manager_id="mgr1", now=1.0)
    up = store.ingest(alert(status="update", detected="2026-01-05T19:00:00+00:00",
                            severity="critical"), manager_id="mgr1", now=2.0)
    assert up.kind == "update" and up.alert["severity"] == "critical"
    cl = store.ingest(alert(status="closed", detected="2026-01-06T00:00:00+00:00"),
                      manager_id="mgr1", now=3.0)
    assert cl.kind == "close" and cl.alert["status"] == "closed"
    assert [m["status"] for m in store.messages_of("a1")] == ["open", "update", "closed"]


def test_an_older_message_arriving_late_does_not_reopen_a_closed_alert(store):
    store.ingest(alert(), manager_id="m", now=1.0)
    store.ingest(alert(status="closed", detected="2026-01-06T00:00:00+00:00"), manager_id="m")
    late = store.ingest(alert(status="update", detected="2026-01-05T19:00:00+00:00"),
                        manager_id="m")
    assert late.kind == "stale" and store.get_alert("a1")["status"] == "closed"


def test_a_manager_sees_only_their_own_alerts(store):
    store.ingest(alert(id="a1"), manager_id="mgr1")
    store.ingest(alert(id="a2", customer_id="c2"), manager_id="mgr2")
    assert store.get_alert("a2", manager_id="mgr1") is None
    assert [a["id"] for a in store.list_alerts(manager_id="mgr1")] == ["a1"]
    assert {a["id"] for a in store.list_alerts()} == {"a1", "a2"}


def test_inbox_puts_the_most_severe_then_newest_first(store):
    store.ingest(alert(id="old", detected="2026-01-05T10:00:00+00:00"), manager_id="m")
    store.ingest(alert(id="new", detected="2026-01-05T20:00:00+00:00"), manager_id="m")
    store.ingest(alert(id="crit", severity="critical", detected="2026-01-05T09:00:00+00:00"),
                 manager_id="m")
    assert [a["id"] for a in store.list_alerts(manager_id="m")] == ["crit", "new", "old"]


def test_acknowledge_resolve_and_notes_are_audited(store):
    store.ingest(alert(), manager_id="mgr1")
    a = store.acknowledge("a1", "alice", now=10.0)
    assert a["state"] == "acknowledged" and a["acknowledged_by"] == "alice"
    a = store.resolve("a1", "alice", "customer_contacted", "Called; new heat pump.", now=20.0)
    assert a["state"] == "resolved" and a["outcome"] == "customer_contacted"
    assert [n["text"] for n in store.notes_for(alert_id="a1")] == ["Called; new heat pump."]
    assert [n["text"] for n in store.notes_for(customer_id="c1")] == ["Called; new heat pump."]
    log = store.audit_log()
    assert [(e["actor"], e["action"], e["target"]) for e in log][:2] == [
        ("alice", "resolve", "a1"), ("alice", "acknowledge", "a1")]
    assert store.outcomes()[0]["outcome"] == "customer_contacted"


def test_a_resolution_needs_a_known_outcome_and_a_known_alert(store):
    store.ingest(alert(), manager_id="m")
    with pytest.raises(ValueError, match="outcome"):
        store.resolve("a1", "alice", "it_was_fine")
    with pytest.raises(NotFound):
        store.acknowledge("nope", "alice")


def test_the_inbox_counts_and_areas_follow_the_same_filters_as_the_list(store):
    store.ingest(alert(id="a1"), manager_id="mgr1")
    store.ingest(alert(id="a2", area_id="B", customer_id="c2"), manager_id="mgr2")
    store.ingest(alert(id="a3", area_id="B", type="theft"), manager_id="mgr1")
    assert store.count_alerts() == 3 and store.areas() == ["A", "B"]
    assert store.count_alerts(manager_id="mgr1", type="theft") == 1
    assert store.areas(manager_id="mgr2") == ["B"]
    assert store.customer_alert_count("c1") == 2
    assert store.customer_alert_count("c1", manager_id="mgr2") == 0


def test_a_customers_latest_chart_comes_from_their_newest_alert_that_has_one(store):
    ctx = {"expected_kwh": [1.0, 2.0], "actual_kwh": [1.0, 4.0]}
    store.ingest(alert(id="old", detected="2026-01-05T10:00:00+00:00", context=ctx),
                 manager_id="m")
    store.ingest(alert(id="new", detected="2026-01-05T20:00:00+00:00"), manager_id="m")
    a, got = store.latest_context("c1")
    assert a["id"] == "old" and got == ctx and a["record"]["context"] == ctx
    assert store.latest_context("c1", manager_id="other") is None
