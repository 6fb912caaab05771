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
    from stream.store.schema import users
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


# ---- outcomes for the theft model: an outbox the notifier relays ---------------------

def model_alert(id="t1", **kw):
    """A theft alert of the fleet model, with the evidence the model writes."""
    ev = {"model": "fleet_self_supervised", "attack_shape": "h2", "risk": 0.82,
          "log_odds": 3.4, "indicators": {"level": -0.61, "shape_cor": 0.42}}
    return alert(id=id, type="theft", subtype="consumption_drop", evidence=ev, **kw)


def waiting(store):
    return [(o["id"], o["outcome"]) for o in store.unpublished_outcomes()]


def test_an_outcome_on_a_model_alert_waits_with_what_the_model_needs(store):
    a = model_alert(meter_id="m7", area_id="A7")
    store.ingest(a, manager_id="mgr1", now=1.0)
    assert store.unpublished_outcomes() == []  # not resolved yet
    store.acknowledge("t1", "alice", now=2.0)
    assert store.unpublished_outcomes() == []
    store.resolve("t1", "alice", "confirmed_theft", now=3.5)
    assert store.unpublished_outcomes() == [{
        "id": "t1", "meter_id": "m7", "area_id": "A7", "type": "theft",
        "subtype": "consumption_drop", "outcome": "confirmed_theft", "resolved_at": 3.5,
        "evidence": a["evidence"]}]


def test_only_confirmed_theft_and_false_alarm_on_the_models_own_alerts_wait(store):
    rules = alert(id="r1", type="theft", subtype="tamper_event",
                  evidence={"events": ["cover_open"], "risk": 0.9})
    for a in (model_alert("t1"), model_alert("t2"), model_alert("t3"), rules,
              alert(id="s1"), model_alert("t4", meter_id=None, scope="area")):
        store.ingest(a, manager_id="mgr1", now=1.0)
    store.resolve("t1", "alice", "false_alarm", now=2.0)
    store.resolve("t2", "alice", "customer_contacted", now=3.0)  # teaches no model
    store.resolve("t3", "alice", "duplicate", now=4.0)
    store.resolve("r1", "alice", "confirmed_theft", now=5.0)  # the rules' alert
    store.resolve("s1", "alice", "false_alarm", now=6.0)  # a surge alert
    store.resolve("t4", "alice", "confirmed_theft", now=7.0)  # no meter to learn on
    assert waiting(store) == [("t1", "false_alarm")]


def test_a_published_outcome_waits_no_more_until_it_changes(store):
    for i, t in enumerate(("t1", "t2", "t3")):
        store.ingest(model_alert(t), manager_id="mgr1", now=1.0)
        store.resolve(t, "alice", "confirmed_theft", now=10.0 - i)
    assert waiting(store) == [("t3", "confirmed_theft"), ("t2", "confirmed_theft"),
                              ("t1", "confirmed_theft")]  # oldest resolution first
    assert [o["id"] for o in store.unpublished_outcomes(limit=2)] == ["t3", "t2"]
    assert store.mark_outcomes_published([("t1", "confirmed_theft"), ("t2", "confirmed_theft")],
                                         now=20.0) == 2
    assert waiting(store) == [("t3", "confirmed_theft")]
    a = store.get_alert("t1")
    assert (a["outcome_published"], a["outcome_published_at"]) == ("confirmed_theft", 20.0)
    store.resolve("t1", "bob", "confirmed_theft", now=30.0)  # the same verdict again
    assert waiting(store) == [("t3", "confirmed_theft")]
    store.resolve("t1", "bob", "false_alarm", now=31.0)  # a changed verdict goes out again
    assert waiting(store) == [("t3", "confirmed_theft"), ("t1", "false_alarm")]


def test_an_outcome_changed_while_the_previous_one_was_sent_stays_waiting(store):
    store.ingest(model_alert("t1"), manager_id="mgr1", now=1.0)
    store.resolve("t1", "alice", "confirmed_theft", now=2.0)
    sent = waiting(store)  # the relay reads it and sends it ...
    store.resolve("t1", "bob", "false_alarm", now=3.0)  # ... while it is resolved again
    assert store.mark_outcomes_published(sent, now=4.0) == 0
    assert waiting(store) == [("t1", "false_alarm")]


def test_a_store_made_before_outcomes_were_published_gains_the_columns(db_url):
    import sqlalchemy as sa

    s = AlertStore(db_url)
    s.ingest(model_alert("t1"), manager_id="mgr1", now=1.0)
    s.resolve("t1", "alice", "confirmed_theft", now=2.0)
    with s.engine.begin() as c:
        c.execute(sa.text("DROP INDEX ix_alerts_outcome"))
        c.execute(sa.text("ALTER TABLE alerts DROP COLUMN outcome_published"))
        c.execute(sa.text("ALTER TABLE alerts DROP COLUMN outcome_published_at"))
        c.execute(sa.text("DROP TABLE alembic_version"))  # made before migrations
    s.close()
    s = AlertStore(db_url)
    try:
        insp = sa.inspect(s.engine)
        cols = {c["name"] for c in insp.get_columns("alerts")}
        assert {"outcome_published", "outcome_published_at"} <= cols
        assert "ix_alerts_outcome" in {i["name"] for i in insp.get_indexes("alerts")}
        # an outcome recorded before the upgrade was never published: it goes out
        assert waiting(s) == [("t1", "confirmed_theft")]
        assert s.mark_outcomes_published(waiting(s)) == 1 and waiting(s) == []
    finally:
        s.close()
