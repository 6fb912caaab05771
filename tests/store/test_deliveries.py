"""The delivery outbox: a delivery is enqueued once, retried until sent, and held until
its time. (The notifier's claims and digests: tests/notify/test_outbox.py.)"""

from __future__ import annotations


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
