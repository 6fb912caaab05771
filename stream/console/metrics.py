"""Prometheus metrics of the console (its own registry, on the console's ``/metrics``).

* ``meterwatch_console_alerts{state, type, severity}`` -- alerts in the store by workflow
  state, read from ``store.counts()`` at each scrape. Every state x type x severity
  series is exported (0 when empty) so a series does not vanish when its count drops to 0.
* ``meterwatch_console_time_to_acknowledge_seconds`` -- observed when someone
  acknowledges an alert (or resolves one nobody had acknowledged):
  ``acknowledged_at - first_seen_at``.
* ``meterwatch_console_logins_total{result}`` -- ok | failed | throttled.
* ``meterwatch_console_theft_worklist_suspicions{estimated}`` -- open theft suspicions
  on the field crews' work list (``stream.console.worklist``), ``estimated="true"`` for
  those with an unbilled-energy estimate, ``"false"`` for the others (rule-based).
* ``meterwatch_console_theft_worklist_unbilled_energy_joules`` -- the sum of their
  estimates of energy not billed since onset, and
  ``meterwatch_console_theft_worklist_expected_recovery_joules`` the sum of risk x
  estimate (what the ranking orders by). Joules, Prometheus' base unit of energy:
  1 kWh = 3.6e6 J (dashboards divide by 3.6e6 to show kWh).

No customer, meter or user identifiers in labels.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from models.base import ALERT_TYPES, SEVERITIES
from stream.console import worklist as W
from stream.store import STATES, AlertStore

try:  # the *_created series double the exposition for no dashboard use
    from prometheus_client import disable_created_metrics

    disable_created_metrics()
except ImportError:  # pragma: no cover - older prometheus_client
    pass

log = logging.getLogger("meterwatch.console")

ALERTS = "meterwatch_console_alerts"
TTA = "meterwatch_console_time_to_acknowledge_seconds"
WL = "meterwatch_console_theft_worklist_"
J_PER_KWH = 3.6e6
TTA_BUCKETS = (60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 24 * 3600,
               3 * 86400, 7 * 86400)


class _AlertCounts:
    def __init__(self, store: AlertStore) -> None:
        self.store = store

    def describe(self):
        return [GaugeMetricFamily(ALERTS, "Alerts in the store by workflow state, type and "
                                  "severity", labels=["state", "type", "severity"])]

    def collect(self):
        g = GaugeMetricFamily(ALERTS, "Alerts in the store by workflow state, type and severity",
                              labels=["state", "type", "severity"])
        n: dict[tuple[str, str, str], int] = {
            (st, t, sv): 0 for st in STATES for t in ALERT_TYPES for sv in SEVERITIES}
        try:
            for r in self.store.counts():
                key = (r["state"], r["type"], r["severity"])
                n[key] = n.get(key, 0) + int(r["n"])
        except Exception as e:  # a scrape must not fail because the database hiccups
            log.warning("metrics: alert counts unavailable (%s)", type(e).__name__)
            return
        for (st, t, sv), v in sorted(n.items()):
            g.add_metric([st, t, sv], v)
        yield g


class _Worklist:
    """The work list's size and estimates, read from the store at each scrape."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store

    @staticmethod
    def _families():
        return (GaugeMetricFamily(WL + "suspicions", "Open theft suspicions on the field "
                                  "crews' work list, with or without an unbilled estimate",
                                  labels=["estimated"]),
                GaugeMetricFamily(WL + "unbilled_energy_joules", "Estimated energy not "
                                  "billed since onset, summed over the work list"),
                GaugeMetricFamily(WL + "expected_recovery_joules", "Risk x estimated "
                                  "unbilled energy, summed over the work list"))

    def describe(self):
        return list(self._families())

    def collect(self):
        try:
            t = W.totals(W.load(self.store))
        except Exception as e:  # a scrape must not fail because the database hiccups
            log.warning("metrics: work list unavailable (%s)", type(e).__name__)
            return
        n, unbilled, expected = self._families()
        n.add_metric(["true"], t.estimated)
        n.add_metric(["false"], t.suspicions - t.estimated)
        unbilled.add_metric([], t.unbilled_kwh * J_PER_KWH)
        expected.add_metric([], t.expected_kwh * J_PER_KWH)
        yield from (n, unbilled, expected)


class ConsoleMetrics:
    """One registry per console app (tests build several apps in one process)."""

    def __init__(self, store: AlertStore) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_AlertCounts(store))
        self.registry.register(_Worklist(store))
        self.time_to_ack = Histogram(TTA, "Time from an alert reaching the store to its "
                                     "acknowledgement", buckets=TTA_BUCKETS,
                                     registry=self.registry)
        self.logins = Counter("meterwatch_console_logins_total", "Console login attempts by result",
                              ["result"], registry=self.registry)
        for r in ("ok", "failed", "throttled"):
            self.logins.labels(r)

    def acknowledged(self, before: dict, after: dict) -> None:
        """Observe time-to-acknowledge if this action is what acknowledged the alert."""
        if before.get("acknowledged_at") is None and after.get("acknowledged_at") is not None:
            self.time_to_ack.observe(max(after["acknowledged_at"] - after["first_seen_at"], 0.0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
