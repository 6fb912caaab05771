"""The demo's final score (stream/dev/demo_score.py): the alerts a worker published against
the simulator's ground truth, scored by models/evaluate.py's matcher, no Kafka needed."""

from __future__ import annotations

import re
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from models.backtest import load_readings, run
from models.base import Fleet
from models.evaluate import SimInput
from stream.dev.demo_score import report, score_demo, simulation_input
from models.evaluate.sim import FleetSimulator

TZ = "Asia/Shanghai"
DAY = 86400


def _t(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def _truth(kind: str, typ: str, sub: str, meter: str | None, start: str, *, area: str = "A000",
           end: str | None = None, scope: str = "meter") -> dict:
    return {"type": typ, "subtype": sub, "meter_id": meter, "area_id": area, "start": start,
            "end": end, "params": {"kind": kind, "scope": scope}}


def _alert(id_: str, typ: str, sub: str, meter: str | None, at: str, status: str = "open",
           area: str = "A000") -> dict:
    return {"id": id_, "type": typ, "subtype": sub, "status": status,
            "scope": "meter" if meter else "area", "meter_id": meter, "area_id": area,
            "start": at, "detected_at": at}


def _input(truth: list[dict], *, start="2026-01-01T00:00:00+08:00", days=30, n=4) -> SimInput:
    t0 = _t(start)
    return SimInput(pd.DataFrame(), Fleet.simple(n), truth, TZ, "CN", 900, t0, t0 + days * DAY, n)


BYPASS = _truth("bypass", "theft", "energy_mismatch", "M00001", "2026-01-20T00:00:00+08:00")
TAMPER = _truth("tamper", "theft", "tamper_event", "M00002", "2026-01-10T12:00:00+08:00",
                end="2026-01-10T12:15:00+08:00")


def test_an_alert_id_is_one_opening_whatever_its_reopenings_updates_and_closes():
    a = "2026-01-20T06:00:00+08:00"
    def msg(at: str, status: str = "open") -> dict:
        return _alert("x", "theft", "energy_mismatch", "M00001", at, status)
    msgs = [msg(a), msg("2026-01-20T07:00:00+08:00", "update"),
            msg("2026-01-20T08:00:00+08:00", "closed"),
            # the condition came back within its cool-down: the same alert reopened
            msg("2026-01-21T06:00:00+08:00"),
            # a message delivered twice
            msg(a)]
    sc = score_demo(msgs, _input([BYPASS]))
    assert len(sc.openings) == 1
    assert sc.precision == 1.0 and sc.recall == 1.0
    assert "alert openings: 1 " in report(sc)


def test_precision_is_matching_openings_over_all_openings_and_recall_found_over_injected():
    msgs = [_alert("a", "theft", "energy_mismatch", "M00001", "2026-01-20T06:00:00+08:00"),
            # a later, separate alert (new id) on the same bypass: matches it, a repeat
            _alert("b", "theft", "energy_mismatch", "M00001", "2026-01-22T06:00:00+08:00"),
            # alerts no injected anomaly explains
            _alert("c", "surge", "interval", "M00000", "2026-01-25T19:00:00+08:00"),
            _alert("d", "surge", "interval", "M00003", "2026-01-26T19:00:00+08:00")]
    sc = score_demo(msgs, _input([BYPASS, TAMPER]))
    assert len(sc.openings) == 4
    assert sc.precision == 0.5  # a and b of four
    assert sc.recall == 0.5  # the tamper was not found
    assert not sc.target_met
    text = report(sc)
    assert re.search(r"found  theft/energy_mismatch \(bypass\) C00001/M00001, onset "
                     r"2026-01-20 00:00: theft/energy_mismatch opened 2026-01-20 06:00, "
                     r"delay 6\.0 h \(alert a; 2 openings in all\)", text), text
    assert re.search(r"MISSED theft/tamper_event \(tamper\) C00002/M00002, onset "
                     r"2026-01-10 12:00: no theft/\* opened", text), text
    assert re.search(r"surge/interval\s+2 openings, 2 customers", text), text
    assert "precision 0.50 = 2 of 4 openings match an injected anomaly" in text
    assert "recall    0.50 = 1 of 2 injected anomalies found" in text
    assert "target (every injected anomaly found, precision >= 0.9): NOT met" in text


def test_the_target_is_met_only_when_all_are_found_and_precision_reaches_0_9():
    hits = [_alert("a", "theft", "energy_mismatch", "M00001", "2026-01-20T06:00:00+08:00"),
            _alert("t", "theft", "tamper_event", "M00002", "2026-01-10T12:15:00+08:00")]
    assert score_demo(hits, _input([BYPASS, TAMPER])).target_met
    noise = [_alert(f"n{i}", "surge", "interval", "M00000", f"2026-01-2{i}T19:00:00+08:00")
             for i in range(1, 3)]
    sc = score_demo(hits + noise, _input([BYPASS, TAMPER]))
    assert sc.recall == 1.0 and sc.precision == 0.5 and not sc.target_met
    assert "): met" in report(score_demo(hits, _input([BYPASS, TAMPER])))


def test_an_alert_before_the_onset_or_of_another_type_does_not_find_an_anomaly():
    msgs = [_alert("early", "theft", "energy_mismatch", "M00001", "2026-01-19T06:00:00+08:00"),
            _alert("other", "voltage", "sag", "M00001", "2026-01-20T06:00:00+08:00")]
    sc = score_demo(msgs, _input([BYPASS]))
    assert sc.recall == 0.0 and sc.precision == 0.0


def test_a_run_stopped_early_is_scored_on_the_anomalies_already_due():
    later = _truth("bypass", "theft", "energy_mismatch", "M00003", "2026-01-28T00:00:00+08:00")
    inp = _input([BYPASS, later])
    inp.end = _t("2026-01-25T00:00:00+08:00")
    sc = score_demo([_alert("a", "theft", "energy_mismatch", "M00001",
                            "2026-01-20T06:00:00+08:00")], inp, complete=False)
    assert [tg.meter_id for tg in sc.targets] == ["M00001"]
    assert sc.recall == 1.0
    assert "stopped before the worker had caught up" in report(sc)


@pytest.fixture(scope="module")
def fleet_run():
    """A small simulated fleet with anomalies the physical checks see from the first
    reading, run through the real engine (the backtest: the worker's engine, no Kafka)."""
    sim = FleetSimulator(n_customers=24, n_areas=2, seed=4,
                         start=datetime(2026, 3, 2, tzinfo=ZoneInfo(TZ)))
    sim.inject("tamper", "M000003", "2026-03-03T10:00:00+08:00")
    sim.inject("bypass", "M000007", "2026-03-04T00:00:00+08:00", factor=0.3)
    sim.inject("sag", "A002", "2026-03-04T15:00:00+08:00")
    # 2 % low: inside the standard's limits, so nothing to find
    sim.inject("undervoltage", "M000011", "2026-03-03T08:00:00+08:00",
               "2026-03-03T12:00:00+08:00", pct=-0.02)
    days = 4
    inp = simulation_input(sim, days)
    with tempfile.TemporaryDirectory() as d:
        sim.write_readings(Path(d) / "r.parquet", days=days)
        df = load_readings(Path(d) / "r.parquet")
    alerts = run(df, inp.fleet, tz=TZ, country="CN").alerts
    return sim, inp, alerts


def test_simulation_input_carries_the_ground_truth_fleet_and_readings(fleet_run):
    sim, inp, _ = fleet_run
    assert [r["params"]["kind"] for r in inp.truth] == ["tamper", "bypass", "sag", "undervoltage"]
    assert inp.end - inp.start == 4 * DAY
    assert "M000003" in inp.fleet.index and len(inp.readings) > 0


def test_the_engines_own_alerts_find_the_simulated_anomalies(fleet_run):
    _, inp, alerts = fleet_run
    sc = score_demo(alerts, inp)
    by_kind = {tg.params["kind"]: tg for tg in sc.targets}
    assert by_kind["tamper"].first_alert == "theft/tamper_event"
    assert by_kind["bypass"].first_alert == "theft/energy_mismatch"
    assert by_kind["sag"].detected
    assert not by_kind["undervoltage"].valid  # within limits: listed, not counted
    assert sc.recall == 1.0 and len(sc.scored) == 3
    ids = {a["id"] for a in alerts}
    assert {tg.first_id for tg in sc.found} <= ids
    text = report(sc)
    assert re.search(r"n/a    voltage/undervoltage \(undervoltage\) C000011/M000011, .*within "
                     r"the standard's limits", text), text
    assert len(re.findall(r"^  found  ", text, re.M)) == 3
    # every opening is in the precision, whatever it matched
    n = len({a["id"] for a in alerts if a["status"] == "open"})
    assert f"alert openings: {n} " in text


def test_the_module_example_holds():
    import doctest

    import stream.dev.demo_score

    assert doctest.testmod(stream.dev.demo_score).failed == 0
