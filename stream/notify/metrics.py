"""Prometheus metrics of the notifier (its own registry, served on its /metrics).

Labels are channels, kinds, results, buckets and reasons: never a customer, meter or
manager id, an address or a URL.
"""

from __future__ import annotations

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)

disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
P = "meterwatch_notify_"
CHANNELS = ("email", "webhook", "alertmanager")

messages = Counter(P + "alert_messages_total",
                   "Alert messages consumed, by what they were to the store "
                   "(new, update, close, duplicate, stale)", ["result"], registry=REGISTRY)
unrouted = Counter(P + "unrouted_total",
                   "Customer alerts with no manager to notify (no_manager: none in the "
                   "registry; unknown_manager: not in the managers file)", ["reason"],
                   registry=REGISTRY)
historic = Counter(P + "historic_total",
                   "Alert messages produced too long ago to notify (stored, not sent)",
                   registry=REGISTRY)
enqueued = Counter(P + "enqueued_total", "Deliveries added to the outbox", ["channel", "kind"],
                   registry=REGISTRY)
deliveries = Counter(P + "deliveries_total",
                     "Delivery attempts by outcome: sent (the channel accepted), retry "
                     "(transient failure, will retry), dead (permanent failure or too old)",
                     ["channel", "kind", "result"], registry=REGISTRY)
purged = Counter(P + "purged_total",
                 "Outbox rows deleted as done and older than notify_keep_days, by what "
                 "(deliveries, digest_items)", ["what"], registry=REGISTRY)
delivery_seconds = Histogram(P + "delivery_seconds", "Time one send took, by channel",
                             ["channel"], registry=REGISTRY,
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
delivery_delay = Histogram(P + "delivery_delay_seconds",
                           "From a delivery's due time to the channel accepting it "
                           "(retries and outages show here)", ["channel"], registry=REGISTRY,
                           buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 600, 1800, 3600, 14400))
outbox = Gauge(P + "outbox_deliveries",
               "Deliveries in the outbox by channel and state (pending, held, sent, dead)",
               ["channel", "state"], registry=REGISTRY)
outbox_oldest = Gauge(P + "outbox_oldest_pending_seconds",
                      "Age of the oldest delivery still pending or held, by channel",
                      ["channel"], registry=REGISTRY)
digests = Counter(P + "digests_total", "Digests formed, by bucket (update, daily)", ["bucket"],
                  registry=REGISTRY)
escalations = Counter(P + "escalations_total",
                      "Critical alerts escalated to the control room unacknowledged",
                      registry=REGISTRY)
am_posts = Counter(P + "alertmanager_posts_total",
                   "Re-posts of open alerts and resolutions to Alertmanager, by result",
                   ["result"], registry=REGISTRY)
deadletter = Counter(P + "deadletter_total",
                     "Alert messages the notifier could not handle (sent to the dead-letter topic)",
                     registry=REGISTRY)
outcomes_relayed = Counter(P + "outcomes_relayed_total",
                           "Inspection outcomes published to the theft model on the by-area "
                           "topic (every copy acknowledged by the broker), by outcome",
                           ["outcome"], registry=REGISTRY)
outcome_relay_failures = Counter(P + "outcome_relay_failures_total",
                                 "Outcome relay failures, retried at the next pass, by stage "
                                 "(store: the database; kafka: a pass or an outcome the "
                                 "broker did not acknowledge; encode: an outcome that cannot "
                                 "be encoded)", ["stage"], registry=REGISTRY)
reloads = Counter(P + "reloads_total", "Reloads of the managers file or registry, by result",
                  ["file", "result"], registry=REGISTRY)
managers = Gauge(P + "managers", "Account managers configured", registry=REGISTRY)
up = Gauge(P + "up", "1 while the notifier runs", registry=REGISTRY)


def prime() -> None:
    """Create the series dashboards expect, at 0, before the first event."""
    for ch in CHANNELS:
        for st in ("pending", "held", "sent", "dead"):
            outbox.labels(channel=ch, state=st).set(0)
        outbox_oldest.labels(channel=ch).set(0)
        for res in ("sent", "retry", "dead"):
            deliveries.labels(channel=ch, kind="alert", result=res)
    for r in ("new", "update", "close", "duplicate", "stale"):
        messages.labels(result=r)
    for w in ("deliveries", "digest_items"):
        purged.labels(what=w)
    for o in ("confirmed_theft", "false_alarm"):
        outcomes_relayed.labels(outcome=o)
    for st in ("store", "kafka", "encode"):
        outcome_relay_failures.labels(stage=st)
    up.set(1)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
