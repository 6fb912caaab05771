"""Isolation for tests that run the Processor in this process: the worker's metrics are
process-wide, and the area gauges and the voltage histogram they fill would otherwise
leak into later tests that count them (tests/dashboards/test_metrics.py)."""

from __future__ import annotations

import pytest

from stream.worker import metrics as M


@pytest.fixture(autouse=True)
def _clean_area_metrics():
    yield
    M.AREAS.clear()
    with M.VOLTAGE_HIST._lock:  # noqa: SLF001
        M.VOLTAGE_HIST.counts.clear()
        M.VOLTAGE_HIST.sums.clear()
