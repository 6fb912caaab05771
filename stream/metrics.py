"""Prometheus metrics of a worker (one registry per process).

Naming: one ``meterwatch_`` prefix, base units (seconds, bytes), ``_total`` on counters.
Labels stay low-cardinality: reasons, alert types, severities, partitions, and areas
only where the number of areas is bounded (``METERWATCH_METRICS_AREAS_MAX``; beyond it,
per-area series are aggregated under ``area="other"``). Never a meter or customer id.
"""

from __future__ import annotations

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)

# The *_created series double the exposition for no dashboard use.
disable_created_metrics()

from models.base import ALERT_TYPES, SEVERITIES
from stream.schema import REASONS

REGISTRY = CollectorRegistry(auto_describe=True)
P = "meterwatch_"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

messages_consumed = Counter(P + "messages_consumed_total", "Messages read from the readings topic",
                            registry=REGISTRY)
message_bytes = Counter(P + "message_bytes_total", "Bytes of reading messages consumed",
                        registry=REGISTRY)
readings_consumed = Counter(P + "readings_consumed_total", "Readings decoded from messages",
                            registry=REGISTRY)
readings_rejected = Counter(P + "readings_rejected_total", "Readings or messages rejected, by reason",
                            ["reason"], registry=REGISTRY)
readings_applied = Counter(P + "readings_applied_total", "Readings applied to meter state",
                           registry=REGISTRY)
readings_duplicate = Counter(P + "readings_duplicate_total",
                             "Readings dropped as already applied (redelivery, resent batches)",
                             registry=REGISTRY)
readings_late = Counter(P + "readings_late_total", "Readings that arrived after a later one",
                        registry=REGISTRY)
comm_gaps = Counter(P + "comm_gaps_total", "Gaps in a meter's readings (comm_gap)", registry=REGISTRY)
alerts = Counter(P + "alerts_total", "Alert messages published, by type, subtype, severity, status",
                 ["type", "subtype", "severity", "status"], registry=REGISTRY)
alerts_open = Gauge(P + "alerts_open", "Alerts open now, by type, subtype and severity",
                    ["type", "subtype", "severity"], registry=REGISTRY)
deadletter = Counter(P + "deadletter_total", "Messages sent to the dead-letter topic after an error",
                     ["stage"], registry=REGISTRY)
latency_applied = Histogram(P + "produce_to_applied_seconds",
                            "Delay from a reading message's produce time to its state update",
                            buckets=LATENCY_BUCKETS, registry=REGISTRY)
latency_alert = Histogram(P + "produce_to_alert_seconds",
                          "Delay from a reading message's produce time to the alert it raised",
                          buckets=LATENCY_BUCKETS, registry=REGISTRY)
detector_seconds = Counter(P + "detector_seconds_total", "CPU time spent in the detectors",
                           registry=REGISTRY)
batch_seconds = Histogram(P + "area_batch_seconds", "Time to process one area batch",
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
                          registry=REGISTRY)
consumer_lag = Gauge(P + "consumer_lag_messages", "Messages behind the partition's end",
                     ["topic", "partition"], registry=REGISTRY)
meters_tracked = Gauge(P + "meters_tracked", "Meters with state on this worker", registry=REGISTRY)
areas_tracked = Gauge(P + "areas_tracked", "Transformer areas with state on this worker",
                      registry=REGISTRY)
meters_reporting = Gauge(P + "area_meters_reporting_ratio",
                         "Share of an area's registered meters in its latest interval batch",
                         ["area"], registry=REGISTRY)
registry_meters = Gauge(P + "registry_meters", "Meters in the loaded registry", registry=REGISTRY)
registry_reloads = Counter(P + "registry_reloads_total", "Registry reloads, by result", ["result"],
                           registry=REGISTRY)
voltage_compliance = Gauge(P + "voltage_compliance_ratio",
                           "Share of an area's meters within the standard's limits (latest interval)",
                           ["area"], registry=REGISTRY)
area_loss_rate = Gauge(P + "area_line_loss_ratio", "Latest daily line-loss rate of an area",
                       ["area"], registry=REGISTRY)
theft_open = Gauge(P + "theft_suspicions_open", "Meters with an open theft alert, by area",
                   ["area"], registry=REGISTRY)
worker_up = Gauge(P + "worker_info", "Worker identity", ["app", "standard"], registry=REGISTRY)


def prime(reasons=REASONS) -> None:
    """Create every labelled series at zero so dashboards and rate() see them from the start."""
    for r in reasons:
        readings_rejected.labels(reason=r)
    for t, subs in ALERT_TYPES.items():
        for s in subs:
            for sev in SEVERITIES:
                alerts_open.labels(type=t, subtype=s, severity=sev)
    for stage in ("ingest", "process"):
        deadletter.labels(stage=stage)


class AreaLabels:
    """Area label values bounded at ``limit``; later areas share ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.known: set[str] = set()

    def __call__(self, area: str) -> str:
        if area in self.known:
            return area
        if len(self.known) < self.limit:
            self.known.add(area)
            return area
        return "other"


def exposition() -> bytes:
    return generate_latest(REGISTRY)
