"""Physical checks: the meter's own measurements contradict each other, or it says so."""

import numpy as np
import pytest

from models.base import EVENT_BITS, AreaView, Batch, Fleet, compose_dtype
from models.config import PhysicalConfig
from models.physical import PhysicalDetector

T0 = 1_767_200_400


def run(det, fleet, intervals):
    """Feed [(columns dict)] interval by interval to meter 0; collect findings."""
    st = np.zeros(len(fleet), compose_dtype(det.fields))
    det.init(st, fleet, np.arange(len(fleet)))
    out = []
    for k, cols in enumerate(intervals):
        b = Batch.from_columns(1, meter=[0], ts=[T0 + 900 * k], interval_s=[900], **cols)
        det.step(st[:1], b, fleet, AreaView(np.zeros(0, int), np.zeros(1, int), np.zeros(0)), out)
    return out


def kinds(out):
    return [(f.subtype, f.action) for f in out]


NORMAL = dict(kwh=[0.45], voltage=[220.0], current=[9.0], power_factor=[0.92])  # ~0.455 kWh
IDLE = dict(kwh=[0.001], voltage=[220.0], current=[0.02], power_factor=[0.92])  # tells nothing
DAY = 96  # 15-minute intervals


def test_a_bypassed_meter_that_sees_the_current_but_registers_little_energy_is_flagged():
    bypass = dict(NORMAL, kwh=[0.1])
    out = run(PhysicalDetector(), Fleet.simple(1), [NORMAL, bypass, bypass, bypass] + [NORMAL] * (DAY + 1))
    assert kinds(out) == [("energy_mismatch", "open"), ("energy_mismatch", "close")]
    assert out[1].ts - out[0].ts > 86400  # closed after a day without it
    f = out[0]
    assert f.type == "theft" and f.start == T0 + 900  # first mismatching interval
    assert f.evidence["indicators"]["implied_kwh"] == pytest.approx(220 * 9 * 0.92 * 0.25 / 1000, rel=1e-3)
    assert 0 < f.evidence["risk"] <= 1


def test_one_mismatching_interval_is_not_enough():
    out = run(PhysicalDetector(), Fleet.simple(1), [NORMAL, dict(NORMAL, kwh=[0.1]), NORMAL])
    assert out == []


def test_energy_consistent_with_voltage_current_and_pf_raises_nothing():
    assert run(PhysicalDetector(), Fleet.simple(1), [NORMAL] * 10) == []


def test_zero_energy_for_hours_with_voltage_and_current_is_flagged():
    zero = dict(NORMAL, kwh=[0.0])
    cfg = PhysicalConfig(zero_voltage_intervals=4)
    out = run(PhysicalDetector(cfg), Fleet.simple(1), [zero] * 5 + [NORMAL] * (DAY + 1))
    assert ("zero_with_voltage", "open") in kinds(out)
    assert kinds(out)[-1] == ("zero_with_voltage", "close")


def test_tamper_flags_raise_a_one_off_alert_per_interval_and_magnetic_is_critical():
    ev = EVENT_BITS["cover_open"] | EVENT_BITS["magnetic_tamper"]
    out = run(PhysicalDetector(), Fleet.simple(1), [dict(NORMAL, events=[ev])])
    assert kinds(out) == [("tamper_event", "point")]
    assert out[0].severity == "critical"
    assert set(out[0].evidence["events"]) == {"cover_open", "magnetic_tamper"}


def test_reverse_flow_on_a_customer_without_solar_is_theft_but_not_with_solar():
    rev = dict(NORMAL, kwh_export=[0.3])
    assert kinds(run(PhysicalDetector(), Fleet.simple(1), [rev, NORMAL])) == [
        ("reverse_flow", "open"), ("reverse_flow", "close")]
    solar = Fleet.simple(1, solar=[True])
    assert run(PhysicalDetector(), solar, [rev, NORMAL]) == []


def test_live_and_neutral_current_that_disagree_on_a_single_phase_meter_are_flagged():
    imb = dict(NORMAL, neutral_current=[3.0])
    out = run(PhysicalDetector(), Fleet.simple(1), [imb, imb] + [dict(NORMAL, neutral_current=[9.0])] * (DAY + 1))
    assert kinds(out) == [("current_imbalance", "open"), ("current_imbalance", "close")]
    assert out[0].evidence["indicators"]["difference_a"] == pytest.approx(6.0)


def test_three_phase_meters_are_not_judged_on_neutral_current():
    # Three phases at 9 A each: three times the single-phase energy.
    imb = dict(NORMAL, kwh=[1.37], neutral_current=[3.0])
    assert run(PhysicalDetector(), Fleet.simple(1, phases=[3]), [imb, imb, imb]) == []


def test_power_fail_opens_an_outage_and_power_restore_closes_it():
    fail = dict(NORMAL, events=[EVENT_BITS["power_fail"]])
    back = dict(NORMAL, events=[EVENT_BITS["power_restore"]])
    out = run(PhysicalDetector(), Fleet.simple(1), [fail, NORMAL, back])
    assert kinds(out) == [("power_fail", "open"), ("power_fail", "close")]
    assert out[0].type == "outage"


def test_missing_measurements_never_raise_physical_alerts():
    out = run(PhysicalDetector(), Fleet.simple(1), [dict(kwh=[0.0])] * 20)
    assert out == []


def test_a_bypass_that_shows_only_under_load_is_one_alert_not_one_a_day():
    """Days with load (mismatch) and idle nights (nothing to tell): the alert opens once
    and stays open; the nights neither close it nor make it reopen under a new id."""
    bypass = dict(NORMAL, kwh=[0.1])
    day = [bypass] * 40 + [IDLE] * 56
    out = run(PhysicalDetector(), Fleet.simple(1), day * 5)
    assert kinds(out) == [("energy_mismatch", "open")]


def test_a_mismatch_back_within_the_cool_down_reopens_the_same_alert():
    bypass = dict(NORMAL, kwh=[0.1])
    out = run(PhysicalDetector(), Fleet.simple(1),
              [bypass] * 3 + [NORMAL] * (DAY + 1) + [bypass] * 3 + [NORMAL] * (2 * DAY))
    opens = [f for f in out if f.action == "open"]
    assert len(opens) == 2 and opens[0].start == opens[1].start  # one alert id, reopened
    late = run(PhysicalDetector(), Fleet.simple(1),
               [bypass] * 3 + [NORMAL] * (8 * DAY + 1) + [bypass] * 3)
    opens = [f for f in late if f.action == "open"]
    assert len(opens) == 2 and opens[0].start != opens[1].start  # a week on: a new story


def test_each_outage_is_an_alert_of_its_own_even_within_the_cool_down():
    fail = dict(NORMAL, events=[EVENT_BITS["power_fail"]])
    back = dict(NORMAL, events=[EVENT_BITS["power_restore"]])
    out = run(PhysicalDetector(), Fleet.simple(1), [fail, back] + [NORMAL] * 10 + [fail, back])
    opens = [f for f in out if f.action == "open"]
    assert len(opens) == 2 and opens[0].start != opens[1].start
