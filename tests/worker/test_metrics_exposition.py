"""The worker's /metrics text is prometheus_client's own, byte for byte."""

from __future__ import annotations

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Info,
                               generate_latest)

from stream.worker import metrics as M


def test_cached_exposition_is_generate_latest_byte_for_byte():
    reg = CollectorRegistry()
    c = Counter("x_things_total", "Things\nwith a \\ newline", ["reason", "area"], registry=reg)
    c.labels(reason="a", area='q"uo\\te\n').inc(3)
    c.labels(reason="b", area="z").inc(1e-7)
    g = Gauge("x_level", "Level", registry=reg)
    g.set(1234567890123.0)
    h = Histogram("x_seconds", "Time", ["stage"], buckets=(0.001, 0.5, 1, 2.5), registry=reg)
    h.labels(stage="s").observe(0.3)
    h.labels(stage="t").observe(float("inf"))
    Info("x_build", "Build", registry=reg).info({"version": "1"})
    for _ in range(2):  # the second pass reads the caches
        assert M.generate(reg) == generate_latest(reg)
        c.labels(reason="a", area="new").inc()


def test_worker_registry_exposition_matches_generate_latest():
    # Only series no other test counts: the worker's registry is process-wide.
    M.prime()
    M.consumer_lag.labels(topic="exposition-test", partition="0").set(5)
    for _ in range(2):
        assert M.exposition() == generate_latest(M.REGISTRY)
    M.consumer_lag.remove("exposition-test", "0")


def test_restricted_exposition_has_only_the_named_series():
    names = ["meterwatch_readings_applied_total", "meterwatch_detector_seconds_total"]
    text = M.exposition(names).decode()
    assert text == generate_latest(M.REGISTRY.restricted_registry(names)).decode()
    got = {line.split(" ")[0].split("{")[0] for line in text.splitlines() if line[:1] != "#"}
    assert got == set(names)
