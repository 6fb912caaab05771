"""The contract every detector keeps, checked over all of them at once (as river checks
every estimator): declared state, no findings from nothing, findings only from the
closed vocabulary, and through the engine: a replayed batch changes nothing and a state
that went through bytes carries on exactly as the one that did not."""

import numpy as np
import pytest

from models.backtest import run, to_columns
from models.base import ALERT_TYPES, SEVERITIES, AreaView, Batch, Fleet, compose_dtype
from models.config import DetectorConfig
from models.engine import Engine
from models.evaluate import prepare_sim

ACTIONS = {"open", "update", "close", "point"}


@pytest.fixture(scope="module")
def sim():
    """A small simulated fleet with anomalies of every family (voltage, theft, outages,
    habits), 30 days of quarter hours."""
    return prepare_sim(customers=40, areas=4, days=30, seed=3, rate=0.3, extra_voltage=10)


# Every detector on: the fleet theft model too (off by default), next to the rules.
ALL_ON = DetectorConfig().replace(theft={"model": True})


@pytest.fixture(scope="module")
def engine(sim):
    return Engine(sim.fleet, ALL_ON, tz=sim.tz, country=sim.country)


def detectors(engine):
    return {type(d).__name__: d for d in engine.detectors}


# Every detector the engine runs with everything on, so a newly registered one is covered
# without a change here.
ALL_DETECTORS = [type(d).__name__ for d in Engine(Fleet.simple(1), ALL_ON).detectors]


@pytest.mark.parametrize("name", ALL_DETECTORS)
def test_a_detector_declares_its_state_and_finds_nothing_in_an_empty_batch(engine, sim, name):
    det = detectors(engine)[name]
    others = {f[0] for d in engine.detectors if d is not det for f in (*d.fields, *d.area_fields)}
    for group in (det.fields, det.area_fields):
        names = [f[0] for f in group]
        assert len(set(names)) == len(names) and not set(names) & others  # its own fields
    st = np.zeros(len(sim.fleet), compose_dtype(det.fields))
    det.init(st, sim.fleet, np.arange(len(sim.fleet)))
    ast = np.zeros(len(sim.fleet.area_id), compose_dtype(det.area_fields))
    det.init_area(ast, sim.fleet, np.arange(len(sim.fleet.area_id)))
    before, out = st.tobytes(), []
    det.step(st[:0], Batch.empty(0), sim.fleet, AreaView(np.zeros(0, int), np.zeros(0, int), ast[:0]), out)
    assert out == [] and st.tobytes() == before


def test_every_finding_is_in_the_closed_vocabulary(sim, engine):
    res = run(sim.readings, sim.fleet, config=ALL_ON, tz=sim.tz, country=sim.country)
    assert res.alerts, "the scenario raises alerts"
    seen = set()
    for a in res.alerts:
        assert a["subtype"] in ALERT_TYPES[a["type"]]
        assert a["severity"] in SEVERITIES and a["scope"] in ("meter", "area")
        assert a["status"] in ("open", "update", "closed")
        seen.add(a["type"])
    assert {"theft", "voltage"} <= seen


@pytest.mark.parametrize("name", ALL_DETECTORS)
def test_a_detector_says_which_alerts_its_state_holds_open_from_its_own_fields(engine, name):
    det = detectors(engine)[name]
    for conds, group in ((det.conditions, det.fields), (det.area_conditions, det.area_fields)):
        own = {f[0] for f in group}
        for c in conds:
            assert c.field in own and (c.crit_field is None or c.crit_field in own)
            assert c.subtype in ALERT_TYPES[c.type]
    empty = np.zeros(3, compose_dtype(det.fields))
    assert det.open_alerts(empty) == [] and det.open_area_alerts(
        np.zeros(1, compose_dtype(det.area_fields))) == []


def test_the_open_alerts_the_state_holds_are_those_opened_and_not_closed(sim):
    """After a run, what the detectors report open (through their contract, as the
    metrics read it) is each meter's alerts opened and not yet closed."""
    eng = Engine(sim.fleet, ALL_ON, tz=sim.tz, country=sim.country)
    res = run(sim.readings, sim.fleet, config=ALL_ON, tz=sim.tz, country=sim.country,
              engine=eng)
    last: dict = {}
    for a in res.alerts:
        if a["scope"] == "meter" and a["status"] in ("open", "closed"):
            last[(a["meter_id"], a["type"], a["subtype"])] = a["status"]
    want = {k for k, v in last.items() if v == "open"}
    got = {(sim.fleet.meter_id[int(j)], t, s) for d in eng.detectors
           for rows, t, s, _ in d.open_alerts(res.state) for j in rows}
    assert got == want and want


def test_a_replayed_day_changes_no_state_and_finds_nothing(sim):
    """Read again from the same source messages (as after a restart), a whole day of
    readings is recognised as duplicates: nothing applied, found or changed."""
    eng = Engine(sim.fleet, ALL_ON, tz=sim.tz, country=sim.country)
    rows, cols = to_columns(sim.readings, sim.fleet)
    st = eng.new_state(len(sim.fleet))
    ast = eng.new_area_state(len(sim.fleet.area_id))
    meters, areas = np.arange(len(sim.fleet)), np.arange(len(sim.fleet.area_id))
    day = cols["ts"] < cols["ts"][0] + 86400
    source = np.zeros(int(day.sum()), [("partition", "<i4"), ("offset", "<i8")])
    source["offset"] = np.arange(len(source))
    eng.process(rows[day], cols[day], st, ast, meters, areas, source=source)
    st_bytes, ast_bytes, model_bytes = st.tobytes(), ast.tobytes(), eng.fleet_state()
    again = eng.process(rows[day], cols[day], st, ast, meters, areas, source=source)
    assert eng.fleet_state() == model_bytes
    assert again.findings == [] and again.applied == 0
    assert again.duplicates == int(day.sum())
    assert st.tobytes() == st_bytes and ast.tobytes() == ast_bytes


def test_a_state_round_trip_through_bytes_is_exact_and_carries_on_identically(sim):
    eng = Engine(sim.fleet, ALL_ON, tz=sim.tz, country=sim.country)
    rows, cols = to_columns(sim.readings, sim.fleet)
    meters, areas = np.arange(len(sim.fleet)), np.arange(len(sim.fleet.area_id))
    st = eng.new_state(len(sim.fleet))
    ast = eng.new_area_state(len(sim.fleet.area_id))
    half = cols["ts"] < cols["ts"][0] + 15 * 86400
    eng.process(rows[half], cols[half], st, ast, meters, areas)
    st2 = np.frombuffer(st.tobytes(), eng.dtype).copy()
    ast2 = np.frombuffer(ast.tobytes(), eng.area_dtype).copy()
    fleet_bytes = eng.fleet_state()  # the fleet-level model's state goes along
    assert st2.tobytes() == st.tobytes() and ast2.tobytes() == ast.tobytes() and fleet_bytes
    rest = ~half
    a = eng.process(rows[rest], cols[rest], st, ast, meters, areas)
    eng2 = Engine(sim.fleet, ALL_ON, tz=sim.tz, country=sim.country)
    eng2.load_fleet_state(fleet_bytes)
    b = eng2.process(rows[rest], cols[rest], st2, ast2, meters, areas)
    key = lambda f: (f.type, f.subtype, f.action, f.subject, f.start, f.ts)  # noqa: E731
    assert [key(f) for f in a.findings] == [key(f) for f in b.findings] and a.findings
    assert st.tobytes() == st2.tobytes() and ast.tobytes() == ast2.tobytes()
    assert eng.fleet_state() == eng2.fleet_state()
