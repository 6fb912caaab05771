"""The store's notifier side on SQLite and a real PostgreSQL: routing applied once per
message, first notification versus digest, claims (one sender per row), digests formed
atomically, escalation once, Alertmanager bookkeeping, and an older store file gaining
the new columns."""

from __future__ import annotations

import sqlalchemy as sa
import pytest

from stream.store import AlertStore
from stream.store.schema import deliveries


@pytest.fixture
def store(db_url):
    s = AlertStore(db_url)
    yield s
    s.close()


ALERT = {"id": "a1", "type": "theft", "subtype": "tamper_event", "status": "open",
         "severity": "critical", "scope": "meter", "meter_id": "m", "customer_id": "c",
         "area_id": "A", "start": "2026-03-05T10:00:00+08:00",
         "detected_at": "2026-03-05T10:00:00+08:00", "score": 1, "evidence": {},
         "message": {"en": "x", "zh-CN": "x"}}


def target(recipient="mgr-01", channels=("email", "webhook"), due=100.0, daily=False):
    dels = [] if daily else [
        {"key": f"a1|alert|{ch}|{recipient}", "kind": "alert", "channel": ch,
         "payload": {"address": f"{ch}-addr"}, "due_at": due} for ch in channels]
    spec = {"bucket": "daily" if daily else "update", "due_at": due + 3600}
    return {"recipient": recipient, "first_deliveries": dels,
            "first_digest": spec if daily else None, "update_digest": spec}


def apply(store, status="open", detected="2026-03-05T10:00:00+08:00", targets=None, now=100.0,
          critical=False):
    return store.apply_routing(
        alert_id="a1", message_key=f"{status}|{detected}", status=status,
        record={"id": "a1", "status": status, "detected_at": detected},
        severity_rank=2 if critical else 1, targets=targets or [target()],
        watch_critical=critical, now=now)


def test_the_first_message_notifies_later_ones_go_to_the_digest_each_once(store):
    r = apply(store)
    assert r["first"] == 1 and r["deliveries"] == 2 and r["digest_items"] == 0
    assert sorted(r["created"]) == [("email", "alert"), ("webhook", "alert")]
    r = apply(store)  # redelivered
    assert r == {"first": 0, "deliveries": 0, "digest_items": 0, "created": []}
    r = apply(store, "update", "2026-03-05T11:00:00+08:00")
    assert r["digest_items"] == 1 and r["deliveries"] == 0
    assert apply(store, "update", "2026-03-05T11:00:00+08:00")["digest_items"] == 0
    assert apply(store, "closed", "2026-03-05T12:00:00+08:00")["digest_items"] == 1
    items = store.digest_items_for(recipient="mgr-01")
    assert [(i["bucket"], i["message_key"]) for i in items] == [
        ("update", "update|2026-03-05T11:00:00+08:00"), ("update", "closed|2026-03-05T12:00:00+08:00")]
    assert len(store.deliveries_for(alert_id="a1")) == 2


def test_an_alert_first_seen_as_an_update_notifies_once_and_digests_nothing(store):
    r = apply(store, "update", "2026-03-05T11:00:00+08:00")
    assert r["first"] == 1 and r["deliveries"] == 2
    r = apply(store, "update", "2026-03-05T11:00:00+08:00")  # redelivered after a crash
    assert r["digest_items"] == 0 and r["deliveries"] == 0


def test_a_close_of_an_alert_never_notified_tells_nobody(store):
    r = apply(store, "closed", "2026-03-05T12:00:00+08:00")
    assert r == {"first": 0, "deliveries": 0, "digest_items": 0, "created": []}


def test_a_recipient_added_later_gets_a_first_notification(store):
    apply(store)
    r = apply(store, "update", "2026-03-05T11:00:00+08:00",
              targets=[target(), target("control_room", ("alertmanager",))])
    assert r["first"] == 1 and r["created"] == [("alertmanager", "alert")]
    assert r["digest_items"] == 1  # for mgr-01


def test_a_daily_digest_manager_gets_items_not_deliveries(store):
    r = apply(store, targets=[target(daily=True)])
    assert r["deliveries"] == 0 and r["digest_items"] == 1
    assert store.digest_items_for()[0]["bucket"] == "daily"


def test_held_deliveries_wait_and_critical_alerts_are_watched_once(store):
    store.ingest(ALERT, manager_id="mgr-01", now=100.0)
    apply(store, targets=[target(due=500.0)], critical=True)
    apply(store, targets=[target(due=500.0)], critical=True, now=200.0)  # redelivered
    assert {d["state"] for d in store.deliveries_for()} == {"held"}
    assert store.claim_due("me", now=499.0) == []
    assert len(store.claim_due("me", now=500.0)) == 2
    (e,) = store.escalations_due(cutoff=1000.0)
    assert e["alert_id"] == "a1" and e["critical_at"] == 100.0


def test_a_claimed_row_has_one_sender_until_sent_failed_or_expired(store):
    apply(store)
    (a,) = store.claim_due("host-a", now=100.0, lease_s=60.0, limit=1, channel="email")
    assert a["channel"] == "email" and a["lease_owner"].startswith("host-a/")
    (b,) = store.claim_due("host-b", now=110.0, lease_s=60.0)
    assert b["channel"] == "webhook"  # the email row is host-a's
    assert store.claim_due("host-b", now=150.0) == []
    store.mark_failed(b["id"], "HTTP 503", retry_at=200.0)  # ends host-b's claim
    (c,) = store.claim_due("host-b", now=161.0)
    assert c["id"] == a["id"]  # host-a's claim expired (it died mid-send)
    store.mark_sent(c["id"], now=162.0)
    (w,) = store.claim_due("host-c", now=200.0)
    assert w["id"] == b["id"] and w["attempts"] == 1 and w["last_error"] == "HTTP 503"
    assert store.release_leases("host-c") == 1  # host-c restarted: resumes at once
    (w2,) = store.claim_due("host-c", now=201.0)
    assert w2["id"] == b["id"]
    (sent,) = store.deliveries_for(state="sent")
    assert sent["lease_owner"] is None and sent["lease_until"] is None


def test_release_leases_touches_only_its_own_owner(store):
    apply(store)
    store.claim_due("host_a", now=100.0, limit=1)  # "_" is a LIKE wildcard: escaped
    store.claim_due("hostXa", now=100.0, limit=1)
    assert store.release_leases("host_a") == 1
    assert len(store.claim_due("other", now=101.0)) == 1


def test_a_digest_is_formed_once_and_takes_every_waiting_item(store):
    apply(store)
    apply(store, "update", "2026-03-05T11:00:00+08:00", now=110.0)
    apply(store, "update", "2026-03-05T11:30:00+08:00", now=120.0)
    assert store.digests_due(now=3699.0) == []
    assert store.digests_due(now=3700.0) == [("mgr-01", "update")]

    def build(items):
        assert [i["record"]["detected_at"] for i in items] == [
            "2026-03-05T11:00:00+08:00", "2026-03-05T11:30:00+08:00"]
        return "digest:1", [{"key": "digest:1|email|mgr-01", "kind": "digest", "channel": "email",
                             "payload": {"n": len(items)}, "due_at": 3710.0}]

    assert store.form_digest("mgr-01", "update", build, now=3710.0) == ("digest:1", 1)
    assert store.form_digest("mgr-01", "update", build, now=3711.0) is None
    assert store.digests_due(now=1e9) == []
    assert len(store.digest_items_for(digest_key="digest:1")) == 2
    (d,) = [d for d in store.deliveries_for(state="pending") if d["kind"] == "digest"]
    assert d["key"] == "digest:1|email|mgr-01" and d["alert_id"] is None


def test_a_failed_build_forms_nothing(store):
    apply(store)
    apply(store, "update", "2026-03-05T11:00:00+08:00")

    def boom(items):
        raise RuntimeError("template bug")

    with pytest.raises(RuntimeError):
        store.form_digest("mgr-01", "update", boom, now=1e6)
    assert store.digests_due(now=1e6) == [("mgr-01", "update")]


def test_escalation_happens_once_and_settled_alerts_are_not_watched(store):
    store.ingest(ALERT, manager_id="mgr-01", now=100.0)
    apply(store, critical=True)
    assert store.escalations_due(cutoff=99.0) == []
    (e,) = store.escalations_due(cutoff=100.0)
    assert (e["state"], e["status"], e["manager_id"]) == ("new", "open", "mgr-01")
    dels = [{"key": "a1|escalation|webhook|control_room", "kind": "escalation",
             "channel": "webhook", "recipient": "control_room", "payload": {}, "due_at": 5000.0}]
    assert store.escalate("a1", dels, now=5000.0)
    assert not store.escalate("a1", dels, now=5001.0)
    assert store.escalations_due(cutoff=1e9) == [] and store.escalation_state("a1") == "escalated"
    assert len(store.deliveries_for(alert_id="a1")) == 3
    store.settle_escalation("a1")
    assert store.escalation_state("a1") == "escalated"  # settling only stops a watch


def test_alertmanager_bookkeeping(store):
    store.ingest({"id": "a1", "type": "voltage", "subtype": "undervoltage", "status": "open",
                  "severity": "warning", "scope": "area", "meter_id": None, "customer_id": None,
                  "area_id": "A", "start": "2026-03-05T10:00:00+08:00",
                  "detected_at": "2026-03-05T10:00:00+08:00", "score": 1, "evidence": {},
                  "message": {"en": "x", "zh-CN": "x"}}, manager_id=None, now=100.0)
    store.am_track(key="a1|alert", alert_id="a1", kind="alert", labels={"alertname": "x"}, now=1.0)
    store.am_track(key="a1|alert", alert_id="a1", kind="alert", labels={"alertname": "y"}, now=2.0)
    (r,) = store.am_firing()
    assert r["labels"] == {"alertname": "y"} and r["status"] == "open" and r["alert_state"] == "new"
    assert r["posted_at"] == 2.0 and r["record"]["id"] == "a1"
    store.am_posted(["a1|alert"], now=3.0)
    assert store.am_firing()[0]["posted_at"] == 3.0
    store.am_posted(["a1|alert"], resolved=True, now=4.0)
    assert store.am_firing() == []


def test_outbox_stats(store):
    apply(store)
    (d, _) = store.claim_due("x", now=100.0)
    store.mark_sent(d["id"], now=101.0)
    stats = {(r["channel"], r["state"]): r["n"] for r in store.outbox_stats()}
    assert stats == {("email", "sent"): 1, ("webhook", "pending"): 1}


def test_a_store_made_before_the_lease_columns_gains_them(db_url):
    s = AlertStore(db_url)
    with s.engine.begin() as c:
        c.execute(sa.text("ALTER TABLE deliveries DROP COLUMN lease_owner"))
        c.execute(sa.text("ALTER TABLE deliveries DROP COLUMN lease_until"))
        c.execute(sa.text("DROP TABLE alembic_version"))  # made before migrations
    s.close()
    s = AlertStore(db_url)
    try:
        cols = {c["name"] for c in sa.inspect(s.engine).get_columns("deliveries")}
        assert {"lease_owner", "lease_until"} <= cols and set(deliveries.c.keys()) <= cols
        apply(s)
        assert len(s.claim_due("x", now=100.0)) == 2
    finally:
        s.close()


def test_the_outbox_purges_what_it_is_done_with_and_keeps_what_is_still_to_send(store):
    apply(store, now=100.0)  # email + webhook deliveries, created at 100
    apply(store, "update", "2026-03-05T11:00:00+08:00", now=110.0)  # a digest item
    email, webhook = sorted(store.claim_due("x", now=100.0), key=lambda d: d["channel"])
    store.mark_sent(email["id"], now=101.0)
    store.mark_failed(webhook["id"], "HTTP 503", retry_at=500.0)  # still to send

    def build(items):
        return "digest:1", [{"key": "digest:1|email|mgr-01", "kind": "digest", "channel": "email",
                             "payload": {}, "due_at": 3710.0}]

    store.form_digest("mgr-01", "update", build, now=3710.0)
    assert store.purge_outbox(before=100.0) == {"deliveries": 0, "digest_items": 0}
    assert store.purge_outbox(before=5000.0) == {"deliveries": 1, "digest_items": 1}
    left = store.deliveries_for()
    assert sorted((d["channel"], d["kind"], d["state"]) for d in left) == [
        ("email", "digest", "pending"), ("webhook", "alert", "pending")]
    # The first-notification record stays: the redelivered first message enqueues
    # nothing, a later update still goes to the digest.
    assert apply(store, now=6000.0)["deliveries"] == 0
    assert apply(store, "update", "2026-03-05T13:00:00+08:00", now=6000.0)["digest_items"] == 1
