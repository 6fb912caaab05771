"""The worker's metrics without Kafka: the simulator's messages through the Ingestor and
the Processor in this process, then the exposition read as Prometheus would.

The area gauges are read from detector state, so the central check is that they agree
with the alert stream itself: every condition the state says is open is an alert that
was opened and not yet closed, with the same type, subtype and severity.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.base import ALERT_TYPES, Fleet
from models.engine import Engine
from stream.worker import metrics as M
from stream.worker.processing import Ingestor, Processor, SourceMessage
from stream.registry import Registry
from stream.settings import load_settings, replace
from models.evaluate.sim import FleetSimulator

START = datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Shanghai"))
# Alerts a detector keeps open in its state (the others are one-off points).
TRACKED = {(c.type, c.subtype) for d in Engine(Fleet.simple(1)).detectors
           for c in (*d.conditions, *d.area_conditions)}


def scenario(sim: FleetSimulator) -> None:
    m = sim.meter_ids
    # Lasting to the end of the run, so they are open when the run stops.
    sim.inject("bypass", m[2], "2026-03-06T00:00:00+08:00", "2026-03-20T00:00:00+08:00")
    sim.inject("reverse_flow", m[3], "2026-03-07T12:00:00+08:00", "2026-03-20T00:00:00+08:00")
    sim.inject("current_imbalance", m[6], "2026-03-08T00:00:00+08:00", "2026-03-20T00:00:00+08:00")
    sim.inject("undervoltage", m[5], "2026-03-09T08:00:00+08:00", "2026-03-20T00:00:00+08:00")
    sim.inject("overvoltage", m[8], "2026-03-09T08:00:00+08:00", "2026-03-20T00:00:00+08:00")
    # Opened and closed during the run.
    sim.inject("tamper", m[1], "2026-03-05T10:00:00+08:00")
    sim.inject("undervoltage", sim.area_ids[0], "2026-03-05T18:00:00+08:00", "2026-03-05T21:00:00+08:00")
    sim.inject("outage", m[9], "2026-03-06T10:00:00+08:00", "2026-03-06T12:00:00+08:00")
    sim.inject("comm_gap", m[7], "2026-03-05T00:00:00+08:00", "2026-03-05T06:00:00+08:00")


class Run:
    """The pipeline's two stages in this process, over the simulator's messages."""

    def __init__(self, tmp_path, days: float = 9, limit: int = 500, n_areas: int = 3, **sim_kw):
        M.AREAS.clear()
        self.sim = FleetSimulator(n_customers=40, n_areas=n_areas, seed=7, start=START,
                                  interval_s=900, bad_rate=0.002, **sim_kw)
        scenario(self.sim)
        path = tmp_path / "registry.csv"
        self.sim.write_registry_csv(path)
        self.registry = Registry.load(path)
        s = load_settings(env={})
        s = replace(s, metrics_areas_max=limit)  # METERWATCH_METRICS_AREAS_MAX
        self.ingestor = Ingestor(s, self.registry)
        self.processor = Processor(s, self.registry)
        self.states: dict[str, object] = {}
        self.open: dict[str, tuple[str, str, str, str]] = {}  # alert id -> (type, sub, sev, area)
        self.stats: dict[str, M.AreaStats] = {}
        now = START.timestamp() + (days + 1) * 86400  # the sim's bad future readings stay out
        for off, (key, value) in enumerate(self.sim.iter_messages(days=days)):
            res = self.ingestor.handle([SourceMessage(value, "ami.readings", 0, off, 0)], now=now)
            for area_id, raw in res.area_batches:
                st = self.states.get(area_id) or self.processor.new_state(area_id)
                self.states[area_id] = st
                pr = self.processor.handle(raw, st, now=now)
                for _, _, a in pr.alerts:
                    if (a["type"], a["subtype"]) not in TRACKED:
                        continue
                    if a["status"] == "open" and not a["transient"]:
                        self.open[a["id"]] = (a["type"], a["subtype"], a["severity"], a["area_id"])
                    elif a["status"] == "update" and a["id"] in self.open:
                        t, s_, _, ar = self.open[a["id"]]
                        self.open[a["id"]] = (t, s_, a["severity"], ar)
                    elif a["status"] == "closed":
                        self.open.pop(a["id"], None)

    def families(self) -> dict:
        text = M.exposition().decode()
        return {f.name: f for f in text_string_to_metric_families(text)}, text


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return Run(tmp_path_factory.mktemp("metrics"))


def samples(fams, name, **labels):
    fam = fams[name] if name in fams else fams[name.removesuffix("_total")]
    return [s for s in fam.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def test_open_conditions_in_state_are_exactly_the_alerts_opened_and_not_closed(run):
    expected = Counter((t, s, sev) for t, s, sev, _ in run.open.values())
    got = Counter()
    for st in M.AREAS.snapshot():
        got.update(st.open)
    got = Counter({k: v for k, v in got.items() if v})
    assert got == expected
    # The scenario's lasting conditions are among them.
    kinds = {(t, s) for t, s, _ in got}
    assert {("theft", "energy_mismatch"), ("theft", "reverse_flow"),
            ("voltage", "undervoltage"), ("voltage", "overvoltage")} <= kinds


def test_alerts_open_series_sum_the_areas_and_cover_the_whole_vocabulary(run):
    fams, _ = run.families()
    ss = samples(fams, "meterwatch_alerts_open")
    assert len(ss) == sum(len(v) for v in ALERT_TYPES.values()) * 3
    by = Counter()
    for t, s, sev, _ in run.open.values():
        by[(t, s, sev)] += 1
    for smp in ss:
        key = (smp.labels["type"], smp.labels["subtype"], smp.labels["severity"])
        assert smp.value == by.get(key, 0), key


def test_theft_suspicions_by_area_and_indicator_match_open_theft_alerts(run):
    fams, _ = run.families()
    want = Counter((ar, s) for t, s, _, ar in run.open.values() if t == "theft")
    for smp in samples(fams, "meterwatch_area_theft_suspicions_open"):
        assert smp.value == want.get((smp.labels["area"], smp.labels["indicator"]), 0)
    meters = {smp.labels["area"]: smp.value for smp in samples(fams, "meterwatch_area_theft_suspected_meters")}
    # bypass and reverse flow (an imbalance comes and goes with the load)
    assert 2 <= sum(meters.values()) <= 3
    # Raised theft alerts by area and indicator (tamper points included).
    raised = {(s.labels["area"], s.labels["indicator"]): s.value
              for s in samples(fams, "meterwatch_theft_alerts_total")}
    assert raised[(run.registry.fleet.area_id[run.registry.fleet.area[1]], "tamper_event")] >= 1


def test_meters_reporting_and_expected_per_area(run):
    fams, _ = run.families()
    exp = {s.labels["area"]: s.value for s in samples(fams, "meterwatch_area_meters_expected")}
    rep = {s.labels["area"]: s.value for s in samples(fams, "meterwatch_area_meters_reporting")}
    fleet = run.registry.fleet
    counts = Counter(fleet.area_id[int(a)] for a, tx in zip(fleet.area, fleet.is_area_meter) if not tx)
    assert exp == dict(counts)
    assert set(rep) == set(exp)
    # The simulator drops no readings: every meter reported the last complete interval,
    # save a few bad-input casualties.
    for a in exp:
        assert exp[a] - 2 <= rep[a] <= exp[a], a
    assert sum(s.value for s in samples(fams, "meterwatch_meters_tracked")) == len(fleet)
    assert samples(fams, "meterwatch_areas_tracked")[0].value == 3


def test_voltage_compliance_counts_and_histogram(run):
    fams, _ = run.families()
    bands = Counter()
    for s in samples(fams, "meterwatch_area_voltage_meters"):
        bands[s.labels["band"]] += s.value
    assert bands["under"] >= 1 and bands["over"] >= 1  # the two lasting injections
    assert bands["within"] >= 30
    for s in samples(fams, "meterwatch_area_voltage_compliance_ratio"):
        assert 0.5 < s.value <= 1.0
    for s in samples(fams, "meterwatch_area_voltage_mean_volts"):
        assert 190 < s.value < 250
    h = fams["meterwatch_meter_voltage_nominal_ratio"]
    inf = [s for s in h.samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"]
    cnt = [s for s in h.samples if s.name.endswith("_count")]
    assert len(inf) == 3 and sum(s.value for s in cnt) > 1000
    under_09 = sum(s.value for s in h.samples if s.name.endswith("_bucket") and s.labels["le"] == "0.9")
    assert under_09 >= 150  # the undervolted meter, from day 8 08:00 on


def test_period_compliance_by_area_pools_its_meters_and_counts_the_failing_ones(run):
    """The area's figures over the standard's period are its customer meters' own
    accumulators pooled (meter-time), and the meters whose period failed are counted:
    here the two meters under and over the limits for the last 40 h of March's first
    nine days (over 5 % of the month: certain to fail the monthly compliance rate)."""
    fams, _ = run.families()
    det = run.processor.engine.compliance
    fleet = run.registry.fleet
    got = {s.labels["area"]: s for s in samples(
        fams, "meterwatch_area_voltage_period_compliance_ratio", period="current")}
    assert set(got) == set(run.states)
    failing_total = 0
    for area_id, st in run.states.items():
        assert got[area_id].labels["standard"] == det.standard == "gbt12325"
        cust = [i for i, m in enumerate(st.meter_ids) if not fleet.is_area_meter[fleet.index[m]]]
        figs = [det.meter_figures(st.records[i]) for i in cust]
        assert {f["month"] for f in figs} == {"2026-03"}
        meas = sum(f["measured_s"] for f in figs)
        within = sum(f["compliance_rate"] * f["measured_s"] for f in figs)
        assert got[area_id].value == pytest.approx(within / meas)
        m = {s.labels["state"]: s.value for s in samples(
            fams, "meterwatch_area_voltage_period_meters", area=area_id, period="current")}
        failing = sum(not f["complies"] and f["coverage"] > 0 for f in figs
                      if (f["measured_s"] - f["compliance_rate"] * f["measured_s"]) > 0.05 * f["period_s"])
        assert m == {"measured": len(cust), "failing": failing}
        failing_total += failing
        cov = samples(fams, "meterwatch_area_voltage_period_coverage_ratio", area=area_id)[0].value
        assert 0.2 < cov < 0.35  # nine and a bit days of March's 31
        rows = samples(fams, "meterwatch_area_voltage_period_dips", area=area_id, period="current")
        assert [s.labels["residual"] for s in rows] == ["80-90", "70-80", "40-70", "10-40", "5-10", "0-5"]
    assert failing_total == 2
    assert not samples(fams, "meterwatch_area_voltage_period_compliance_ratio", period="previous")


def test_line_loss_of_each_closed_day_and_the_learned_normal(run):
    fams, _ = run.families()
    loss = {s.labels["area"]: s.value for s in samples(fams, "meterwatch_area_line_loss_ratio")}
    normal = {s.labels["area"]: s.value for s in samples(fams, "meterwatch_area_normal_line_loss_ratio")}
    assert len(loss) == 3 and len(normal) == 3
    for a, v in loss.items():
        assert -0.05 < v < 0.5, (a, v)
    # The bypassed meter's area loses more than its normal (energy taken around the meter).
    fleet = run.registry.fleet
    bypass_area = fleet.area_id[int(fleet.area[fleet.index[run.sim.meter_ids[2]]])]
    assert loss[bypass_area] > normal[bypass_area]


def test_every_name_follows_the_conventions(run):
    fams, text = run.families()
    for name, fam in fams.items():
        assert name.startswith("meterwatch_"), name
        assert not re.search(r"_(ms|milliseconds|kb|mb|percent)(_|$)", name), name
        if fam.type == "counter":
            assert any(s.name == name + "_total" for s in fam.samples) or not fam.samples, name
        if name.endswith("_ratio") and fam.type == "gauge":
            assert all(0 <= s.value <= 1 or s.value != s.value for s in fam.samples
                       if "line_loss" not in name), name
        for s in fam.samples:
            assert not {"meter", "meter_id", "customer", "customer_id"} & set(s.labels), name
    # Histograms in base units.
    assert "meterwatch_produce_to_applied_seconds_bucket" in text
    assert "meterwatch_applied_to_alert_seconds_bucket" in text


def test_areas_beyond_the_limit_are_aggregated_under_other(tmp_path):
    r = Run(tmp_path, days=2, limit=1)
    fams, _ = r.families()
    areas = {s.labels["area"] for s in samples(fams, "meterwatch_area_meters_expected")}
    assert len(areas) == 2 and M.OTHER in areas
    exp = {s.labels["area"]: s.value for s in samples(fams, "meterwatch_area_meters_expected")}
    assert sum(exp.values()) == 40
    for s in samples(fams, "meterwatch_area_voltage_compliance_ratio"):
        assert 0 <= s.value <= 1
    r0 = Run(tmp_path, days=1, limit=0)
    fams, _ = r0.families()
    assert {s.labels["area"] for s in samples(fams, "meterwatch_area_meters_expected")} == {M.OTHER}


def test_retain_drops_areas_of_partitions_this_worker_no_longer_owns():
    M.AREAS.clear()
    for a, p in (("A1", 0), ("A2", 1), ("A3", 2)):
        M.AREAS.put(a, M.AreaStats(label=a, meters=10, expected=10,
                                   open=Counter({("theft", "reverse_flow", "warning"): 1})))
        M.AREAS.place(a, p)
    assert M.AREAS.retain({0, 2}) == ["A2"]
    fams = {f.name: f for f in text_string_to_metric_families(M.exposition().decode())}
    assert samples(fams, "meterwatch_meters_tracked")[0].value == 20
    assert samples(fams, "meterwatch_alerts_open", type="theft", subtype="reverse_flow",
                   severity="warning")[0].value == 2
    M.AREAS.clear()


def test_area_stats_cost_stays_small_per_batch(tmp_path):
    """The area gauges must not cost more than a fraction of an area batch."""
    import time

    r = Run(tmp_path, days=1, n_areas=1)
    st = next(iter(r.states.values()))
    area_id = st.area_id
    fleet = r.registry.fleet
    rows = np.array([fleet.index[m] for m in st.meter_ids], np.int64)
    cols = np.zeros(len(rows), dtype=__import__("models.base", fromlist=["x"]).READING_DTYPE)
    cols["ts"] = int(START.timestamp()) + 86400
    cols["interval_s"] = 900
    cols["voltage"] = 221.0
    before = r.processor.metrics.before(st.area_record)
    t0 = time.perf_counter()
    for _ in range(200):
        r.processor.metrics.after(area_id, st, fleet, cols, rows, 40, before)
    per = (time.perf_counter() - t0) / 200
    assert per < 0.002, per  # 41 meters; O(area), vectorised

