"""The alert store keeps each alert once, records what people did, and behaves the same
on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import pytest

from stream.store import AlertStore, NotFound


def alert(id="a1", status="open", detected="2026-01-05T18:00:00+00:00", severity="warning",
          **kw):
    a = {"id": id, "type": "surge", "subtype": "daily", "status": status,
         "severity": severity, "scope": "meter", "meter_id": "m1", "customer_id": "c1",
         "area_id": "A", "start": "2026-01-05T00:00:00+00:00", "detected_at": detected,
         "score": 3.1, "evidence": {"today_kwh": 38.2},
         "message": {"en": "Today 38.2 kWh", "zh-CN": "今日 38.2 kWh"}}
    a.update(kw)
    return a


@pytest.fixture
def store(db_url):
    s = AlertStore(db_url)
    yield s
    s.close()


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


def test_passwords_are_hashed_and_verified(store):
    store.create_user("alice", "correct horse", "manager", manager_id="mgr1")
    assert store.verify_user("alice", "correct horse")["manager_id"] == "mgr1"
    assert store.verify_user("alice", "wrong password") is None
    assert store.verify_user("mallory", "correct horse") is None
    with pytest.raises(ValueError, match="manager id"):
        store.create_user("bob", "long enough", "manager")
    from stream.store import users
    import sqlalchemy as sa
    with store.engine.connect() as c:
        h = c.execute(sa.select(users.c.password_hash)).scalar()
    assert h.startswith("$argon2") and "correct horse" not in h


def test_outbox_enqueues_once_and_retries_until_sent(store):
    args = dict(alert_id="a1", kind="alert", channel="email", recipient="mgr1",
                payload={"to": "x@example.org"})
    assert store.enqueue(key="a1|alert|email|mgr1", due_at=100.0, now=100.0, **args)
    assert not store.enqueue(key="a1|alert|email|mgr1", due_at=100.0, now=100.0, **args)
    (d,) = store.due(now=100.0)
    store.mark_failed(d["id"], "connection refused", retry_at=160.0)
    assert store.due(now=150.0) == []
    (d,) = store.due(now=160.0)
    assert d["attempts"] == 1 and d["last_error"] == "connection refused"
    store.mark_sent(d["id"], now=161.0)
    assert store.due(now=1e12) == []
    (d,) = store.deliveries_for(alert_id="a1")
    assert d["state"] == "sent" and d["attempts"] == 2


def test_a_held_delivery_waits_for_its_time(store):
    store.enqueue(key="k", alert_id="a1", kind="alert", channel="email", recipient="m",
                  payload={}, due_at=500.0, now=100.0)
    assert store.deliveries_for()[0]["state"] == "held"
    assert store.due(now=499.0) == [] and len(store.due(now=500.0)) == 1
    assert store.next_due_at() == 500.0
