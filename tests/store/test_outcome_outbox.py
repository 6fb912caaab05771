"""Outcomes the theft model learns from wait in the store until the notifier has
published them: which wait, in what order, and what publishing them ends."""

from __future__ import annotations

import sqlalchemy as sa

from stream.store import AlertStore
from tests.store.store_data import alert, model_alert


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
