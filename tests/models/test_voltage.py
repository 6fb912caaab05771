"""Specification of the voltage detector (models/voltage.py)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import models.voltage as voltage
from models.base import AreaView, Batch, Fleet, compose_dtype
from models.voltage import STANDARDS, VoltageDetector, classify_ieee1159, limits

T0 = 1_700_000_000 - 1_700_000_000 % 604_800 + 3600  # an hour into an epoch week


class Rig:
    """Holds meter and area state like the engine does and feeds one batch at a time."""

    def __init__(self, fleet: Fleet, policy: bool = False, **params):
        # The band, area and budget mechanics are specified at a one-reading sustain;
        # the alert policy's own defaults (policy=True) are specified further down.
        if not policy:
            params.setdefault("min_duration_s", 900)
        self.fleet, self.det = fleet, VoltageDetector(**params)
        self.st = np.zeros(len(fleet), compose_dtype(self.det.fields))
        self.det.init(self.st, fleet, np.arange(len(fleet)))
        self.ast = np.zeros(len(fleet.area_id), compose_dtype(self.det.area_fields))
        self.det.init_area(self.ast, fleet, np.arange(len(fleet.area_id)))

    def feed(self, ts, interval_s=900, meters=None, **cols):
        meters = np.arange(len(self.fleet)) if meters is None else np.asarray(meters)
        n = len(meters)
        cols = {k: np.broadcast_to(np.asarray(v, float), (n,)) for k, v in cols.items()}
        b = Batch.from_columns(n, meter=meters, ts=np.full(n, ts), interval_s=np.full(n, interval_s), **cols)
        area, pos = np.unique(self.fleet.area[meters], return_inverse=True)
        rows, arows = self.st[meters], self.ast[area]
        out = []
        self.det.step(rows, b, self.fleet, AreaView(area, pos, arows), out)
        self.st[meters], self.ast[area] = rows, arows
        return out

    def series(self, volts, interval_s=900, t0=T0, **kw):
        """One reading per interval for all meters; returns the findings per interval."""
        return [self.feed(t0 + i * interval_s, interval_s, voltage=v, **kw) for i, v in enumerate(volts)]


def flat(found):
    return [f for fs in found for f in fs]


def test_docstring_examples_run():
    assert doctest.testmod(voltage).failed == 0


def test_params_are_stored_under_their_names():
    d = VoltageDetector(standard="en50160", min_duration_s=600, area_share=0.6, area_min_meters=4, clear_intervals=3)
    assert (d.standard, d.min_duration_s, d.area_share, d.area_min_meters, d.clear_intervals) == (
        "en50160", 600, 0.6, 4, 3)
    with pytest.raises(ValueError):
        VoltageDetector(standard="iec_whatever")


# -- limits per standard ------------------------------------------------------------

def test_gbt12325_single_phase_is_plus7_minus10():
    assert limits("gbt12325", 220, 1)[:2] == (198.0, 235.4)


def test_gbt12325_three_phase_is_plus_minus7_on_phase_voltage():
    assert limits("gbt12325", 220, 3)[:2] == (204.6, 235.4)


def test_en50160_is_plus_minus10_with_hard_minus15_plus10():
    assert limits("en50160", 230, 1) == (207.0, 253.0, 195.5, 253.0)
    assert STANDARDS["en50160"].budget == 0.05


def test_ansi_c84_1_range_a_and_b_at_120_and_scaled():
    assert limits("ansi_c84_1", 120) == (114.0, 126.0, 110.0, 127.0)
    assert limits("ansi_c84_1", 240) == (228.0, 252.0, 220.0, 254.0)


def test_gbt_limit_itself_is_compliant_and_just_beyond_is_not():
    r = Rig(Fleet.simple(2), area_min_meters=5)
    found = r.feed(T0, voltage=[198.0, 197.99])
    assert [(f.subject, f.subtype) for f in found] == [(1, "undervoltage")]


def test_three_phase_meter_uses_the_tighter_band():
    r = Rig(Fleet.simple(2, phases=[1, 3]), area_min_meters=5)
    found = r.feed(T0, voltage=[202.0, 202.0])  # 0.918 pu: fine at -10%, low at -7%
    assert [(f.subject, f.subtype, f.evidence["limit_v"]) for f in found] == [(1, "undervoltage", 204.6)]


# -- steady-state duration and clearing ---------------------------------------------

def test_undervoltage_shorter_than_min_duration_does_not_open():
    r = Rig(Fleet.simple(1), min_duration_s=900)
    assert flat(r.series([190, 190, 220, 190, 190, 220], interval_s=300)) == []


def test_undervoltage_opens_once_it_lasted_min_duration_with_start_at_first_interval():
    r = Rig(Fleet.simple(1), min_duration_s=900)
    found = r.series([220, 190, 190, 190, 190], interval_s=300)
    assert [len(f) for f in found] == [0, 0, 0, 1, 0]
    f = found[3][0]
    assert (f.type, f.subtype, f.action, f.scope, f.subject) == ("voltage", "undervoltage", "open", "meter", 0)
    assert f.start == T0 + 300 and f.ts == T0 + 900
    assert f.severity == "warning" and f.score == pytest.approx((198 - 190) / 220 * 100)
    ev = f.evidence
    assert (ev["observed_v"], ev["limit_v"], ev["nominal_v"], ev["standard"], ev["duration_s"], ev["scope"]) == (
        190.0, 198.0, 220.0, "gbt12325", 900, "meter")


def test_closes_after_clear_intervals_consecutive_clean_intervals():
    r = Rig(Fleet.simple(1), min_duration_s=900, clear_intervals=2)
    found = r.series([190, 220, 190, 220, 220, 220])
    assert [[f.action for f in fs] for fs in found] == [["open"], [], [], [], ["close"], []]
    close = found[4][0]
    assert close.start == T0 and close.evidence["duration_s"] == 3 * 900  # to the end of the last low interval


def test_overvoltage_beyond_outer_band_is_critical_and_warning_escalates_with_update():
    r = Rig(Fleet.simple(1))
    found = r.series([240, 240, 270])
    assert [(f.subtype, f.action, f.severity) for f in flat(found)] == [
        ("overvoltage", "open", "warning"), ("overvoltage", "update", "critical")]
    assert found[2][0].start == T0


# -- IEEE 1159 ----------------------------------------------------------------------

@pytest.mark.parametrize("pu,dur,expected", [
    (0.5, 0.1, ("instantaneous", "sag")),  # 5 cycles at 50 Hz
    (0.5, 1.0, ("momentary", "sag")),
    (0.5, 10.0, ("temporary", "sag")),
    (1.5, 0.2, ("instantaneous", "swell")),
    (1.3, 2.0, ("momentary", "swell")),
    (1.15, 30.0, ("temporary", "swell")),
    (0.05, 0.1, ("momentary", "interruption")),  # 1159 has no instantaneous interruption
    (0.05, 30.0, ("temporary", "interruption")),
    (0.0, 120.0, ("long_duration", "interruption")),
    (0.85, 120.0, ("long_duration", "undervoltage")),
    (1.15, 120.0, ("long_duration", "overvoltage")),
    (0.5, 0.005, ("transient", None)),  # under half a cycle
    (0.9, 1.0, (None, None)),
    (1.1, 1.0, (None, None)),
    (0.5, None, ("instantaneous", "sag")),  # no duration: shortest category
    (0.05, float("nan"), ("momentary", "interruption")),
])
def test_ieee1159_table(pu, dur, expected):
    assert classify_ieee1159(pu, dur) == expected


def test_ieee1159_cycles_follow_the_grid_frequency():
    assert classify_ieee1159(0.5, 0.55, freq_hz=50) == ("instantaneous", "sag")  # 30 cycles = 0.6 s
    assert classify_ieee1159(0.5, 0.55, freq_hz=60) == ("momentary", "sag")  # 30 cycles = 0.5 s


def test_deep_dip_swell_interruption_open_at_once_with_severity_by_depth():
    r = Rig(Fleet.simple(6), min_duration_s=3600, area_min_meters=10)
    found = r.feed(T0, voltage=[220] * 6, voltage_min=[110, 210, 5, 170, 80, 220],
                   voltage_max=[225, 244.2, 225, 241, 225, 264])
    got = {(f.subject, f.subtype): f for f in found}
    # 170 V = 0.77 pu is a shallow dip: counted by the statistics, not alerted
    assert set(got) == {(0, "sag"), (1, "swell"), (2, "interruption"), (4, "sag"), (5, "swell")}
    assert all(f.action == "open" and f.start == T0 for f in found)
    assert got[0, "sag"].severity == "warning"  # 0.5 pu: EN 50160's 70-40 % row
    assert got[4, "sag"].severity == "critical"  # 0.36 pu: the 40-5 % row
    assert got[1, "swell"].severity == "warning" and got[5, "swell"].severity == "critical"  # 1.11 / 1.2 pu
    assert got[1, "swell"].score == pytest.approx(1.0) and got[1, "swell"].evidence["ieee1159"] == "instantaneous"
    assert got[2, "interruption"].severity == "critical"
    assert got[2, "interruption"].evidence["ieee1159"] == "momentary"


def test_interruption_from_mean_while_meter_reports_is_not_undervoltage():
    r = Rig(Fleet.simple(1))
    found = r.series([10.0, 0.0])
    assert [(f.subtype, f.action, f.severity) for f in flat(found)] == [("interruption", "open", "critical")]
    assert found[0][0].evidence["ieee1159"] == "long_duration"


def test_low_mean_is_undervoltage_not_a_sag():
    r = Rig(Fleet.simple(1))
    assert [f.subtype for f in r.feed(T0, voltage=190, voltage_min=185)] == ["undervoltage"]


# -- EN 50160 -----------------------------------------------------------------------

def en_rig():
    # the budget rule alone: no sustained or deep rule
    return Rig(Fleet.simple(1, nominal_voltage=230.0), standard="en50160", min_duration_s=60 * 86400,
               deep_low_pu=0.85)


def test_en50160_within_minus15_opens_only_when_over_5pct_of_the_week():
    r = en_rig()
    # 200 V = -13%: outside +-10%, inside -15%. 5% of a week is 8.4 h.
    found = r.series([200.0] * 9, interval_s=3600)
    assert [len(f) for f in found] == [0] * 8 + [1]
    f = found[8][0]
    assert (f.subtype, f.action, f.severity) == ("undervoltage", "open", "warning")
    assert f.evidence["week_outside_s"] == 9 * 3600 and f.evidence["week_share"] > 0.05


def test_en50160_budget_accumulates_over_separate_excursions():
    r = en_rig()
    assert flat(r.series([200.0] * 4 + [230.0] * 10 + [200.0] * 4, interval_s=3600)) == []
    assert [f.action for f in r.feed(T0 + 18 * 3600, 3600, voltage=200.0)] == ["open"]


def test_en50160_budget_is_a_trailing_week():
    r = en_rig()
    r.series([200.0] * 8, interval_s=3600)
    later = T0 + 14 * 86400  # two weeks on: the earlier 8 h no longer count
    assert r.feed(later, 3600, voltage=200.0) == []


def test_en50160_outside_minus15_opens_regardless_of_budget_as_critical():
    r = en_rig()
    found = r.series([190.0, 190.0], interval_s=600)  # -17%: one reading
    assert [len(f) for f in found] == [1, 0]
    assert (found[0][0].severity, found[0][0].evidence["limit_v"], found[0][0].evidence["critical_limit_v"]) == (
        "critical", 207.0, 195.5)
    assert found[0][0].evidence["rule"] == "absolute_band"


def test_en50160_state_is_bounded():
    names = dict(VoltageDetector.fields)
    assert {n: names[n] for n in ("v_wk", "v_wk_out", "v_wk_prev")} == {"v_wk": "u2", "v_wk_out": "u4", "v_wk_prev": "u4"}


# -- ANSI C84.1 ---------------------------------------------------------------------

@pytest.mark.parametrize("v,subtype,severity", [
    (112.0, "undervoltage", "warning"),  # outside Range A, inside B
    (108.0, "undervoltage", "critical"),  # outside Range B
    (126.5, "overvoltage", "warning"),
    (127.5, "overvoltage", "critical"),
])
def test_ansi_range_a_is_warning_range_b_is_critical(v, subtype, severity):
    r = Rig(Fleet.simple(1, nominal_voltage=120.0), standard="ansi_c84_1")
    assert [(f.subtype, f.severity) for f in r.feed(T0, voltage=v)] == [(subtype, severity)]


def test_ansi_inside_range_a_is_quiet():
    r = Rig(Fleet.simple(1, nominal_voltage=120.0), standard="ansi_c84_1")
    assert r.series([114.0, 126.0, 120.0]) == [[], [], []]


# -- area scope ---------------------------------------------------------------------

def test_whole_area_low_at_once_is_one_area_finding_and_no_meter_findings():
    r = Rig(Fleet.simple(10))
    found = r.series([190.0, 190.0, 190.0, 220.0, 220.0])
    allf = flat(found)
    assert all(f.scope == "area" for f in allf)
    assert [(f.action, f.subject) for f in allf] == [("open", 0), ("close", 0)]
    ev = allf[0].evidence
    assert (ev["meters_affected"], ev["meters_reporting"], ev["scope"], ev["observed_v"]) == (10, 10, "area", 190.0)
    assert allf[0].start == T0 and allf[1].start == T0


def test_one_meter_low_in_an_area_of_ten_is_a_meter_finding_only():
    r = Rig(Fleet.simple(10))
    v = np.full(10, 220.0)
    v[3] = 190.0
    found = r.feed(T0, voltage=v)
    assert [(f.scope, f.subject, f.action) for f in found] == [("meter", 3, "open")]


def test_area_needs_the_share_of_reporting_meters_and_the_minimum_count():
    r = Rig(Fleet.simple(10))
    v = np.full(10, 220.0)
    v[:4] = 190.0  # 4 of 10 < 50%
    assert {f.scope for f in r.feed(T0, voltage=v)} == {"meter"}
    r = Rig(Fleet.simple(10))
    v = np.full(10, np.nan)
    v[:2] = 190.0  # 2 of 2 reporting, but fewer than area_min_meters
    assert {f.scope for f in r.feed(T0, voltage=v)} == {"meter"}


def test_meters_open_before_the_area_are_closed_as_covered():
    r = Rig(Fleet.simple(10))
    v = np.full(10, 220.0)
    v[:2] = 190.0
    first = r.feed(T0, voltage=v)
    assert [(f.subject, f.action) for f in first] == [(0, "open"), (1, "open")]
    second = r.feed(T0 + 900, voltage=190.0)
    area = [f for f in second if f.scope == "area"]
    meters = [f for f in second if f.scope == "meter"]
    assert [(f.action, f.subject) for f in area] == [("open", 0)]
    assert [(f.subject, f.action, f.start, f.evidence["covered_by_area"]) for f in meters] == [
        (0, "close", T0, 0), (1, "close", T0, 0)]
    assert r.feed(T0 + 1800, voltage=190.0) == []  # covered: nothing more from the meters


def test_meter_still_bad_after_area_clears_opens_its_own_finding():
    r = Rig(Fleet.simple(10))
    r.series([190.0, 190.0])
    v = np.full(10, 220.0)
    v[0] = 190.0
    a = r.feed(T0 + 1800, voltage=v)
    b = r.feed(T0 + 2700, voltage=v)
    assert a == []
    assert [(f.scope, f.subject, f.action, f.start) for f in b] == [
        ("area", 0, "close", T0), ("meter", 0, "open", T0 + 2700)]


def test_area_condition_only_suppresses_its_own_subtype():
    r = Rig(Fleet.simple(10))
    found = r.feed(T0, voltage=190.0, voltage_max=np.r_[250.0, np.full(9, 200.0)])
    assert sorted((f.scope, f.subject, f.subtype) for f in found) == [
        ("area", 0, "undervoltage"), ("meter", 0, "swell")]


# -- missing measurements and state -------------------------------------------------

def test_nan_voltage_changes_nothing():
    r = Rig(Fleet.simple(3))
    r.feed(T0, voltage=[190.0, 220.0, 240.0], voltage_min=[150.0, 210.0, 230.0])
    before = r.st.tobytes(), r.ast.tobytes()
    assert r.feed(T0 + 900, voltage=np.nan) == []
    assert (r.st.tobytes(), r.ast.tobytes()) == before


def test_nan_interval_neither_breaks_nor_closes_a_run():
    r = Rig(Fleet.simple(1), min_duration_s=900)
    found = r.series([190.0, np.nan, 190.0], interval_s=300)
    assert [len(f) for f in found] == [0, 0, 1] and found[2][0].start == T0
    r = Rig(Fleet.simple(1), clear_intervals=2)
    found = r.series([190.0, 220.0, np.nan, 190.0, 220.0, np.nan, 220.0])
    assert [[f.action for f in fs] for fs in found] == [["open"], [], [], [], [], [], ["close"]]


def test_state_is_small(capsys):
    det = VoltageDetector()
    meter, area = compose_dtype(det.fields), compose_dtype(det.area_fields)
    assert all(n.startswith("v_") for n, _ in det.fields)
    assert all(n.startswith("va_") for n, _ in det.area_fields)
    # 38 B/meter before the alert policy (issue 15), which may add at most 40
    assert meter.itemsize <= 78 and area.itemsize <= 64
    with capsys.disabled():
        print(f"\nvoltage state: {meter.itemsize} B/meter, {area.itemsize} B/area")


def test_vectorised_over_a_large_batch():
    n = 20_000
    r = Rig(Fleet.simple(n, areas=100))
    v = np.full(n, 220.0)
    v[::1000] = 190.0  # 20 meters, scattered over areas
    found = r.feed(T0, voltage=v)
    assert sorted(f.subject for f in found) == list(range(0, n, 1000))


# -- the alert policy: only when someone must act (issue 15) -----------------------------

def en(n=1, **kw):
    """EN 50160, 230 V single-phase, the policy's defaults."""
    return Rig(Fleet.simple(n, nominal_voltage=230.0), policy=True, standard="en50160", **kw)


def opens(found):
    return [(f.subject, f.subtype, f.start, f.severity, f.evidence.get("rule")) for f in flat(found)
            if f.action == "open"]


def test_policy_defaults_are_the_config_defaults_and_the_documented_edges():
    from models.config import VoltageConfig

    d, c = VoltageDetector(), VoltageConfig()
    assert VoltageDetector.from_config(c).__dict__.keys() == d.__dict__.keys()
    for k in ("min_duration_s", "deep_low_pu", "deep_high_pu", "deep_duration_s", "dip_pu",
              "swell_pu", "cool_down_s", "clear_intervals", "area_share", "area_min_meters"):
        assert getattr(d, k) == getattr(c, k), k
    assert (d.min_duration_s, d.deep_low_pu, d.deep_duration_s, d.dip_pu) == (7200, 0.87, 1800, 0.7)
    assert tuple(c.alerts) == voltage.SUBTYPES == d.alerts
    g1, g3 = VoltageDetector("gbt12325").thresholds(1), VoltageDetector("gbt12325").thresholds(3)
    assert (g1.low, g1.high, g1.abs_low, g1.abs_high, g1.deep_high, g3.low) == (0.9, 1.07, 0.8, 1.2, 1.1, 0.93)


def test_config_chooses_which_subtypes_alert():
    r = en(alerts=["undervoltage"])
    assert r.feed(T0, voltage=230.0, voltage_min=100.0, voltage_max=260.0) == []
    with pytest.raises(ValueError):
        VoltageDetector(alerts=["flicker"])


def test_absolute_band_edge_is_compliant_and_just_beyond_opens_at_once_as_critical():
    r = en(2)
    found = r.feed(T0, voltage=[195.5, 195.45])  # -15% exactly / just below
    assert opens([found]) == [(1, "undervoltage", T0, "critical", "absolute_band")]
    r = en(2)
    found = r.feed(T0, voltage=[253.0, 253.05])  # +10%
    assert opens([found]) == [(1, "overvoltage", T0, "critical", "absolute_band")]


def test_absolute_low_edge_is_never_above_the_deep_band():
    # ANSI Range B ends at 0.917 pu, GB/T's band at 0.90 pu: normal low episodes reach
    # 0.87-0.90 pu every month, so one reading opens only below 0.87 pu
    r = Rig(Fleet.simple(2, nominal_voltage=120.0), policy=True, standard="ansi_c84_1")
    assert opens([r.feed(T0, voltage=[0.871 * 120, 0.869 * 120])]) == [
        (1, "undervoltage", T0, "critical", "absolute_band")]


def test_deep_deviation_opens_after_two_readings_with_its_first_as_start():
    r = en(2)
    found = r.series([[0.86 * 230, 0.8705 * 230]] * 4)
    assert opens(found) == [(0, "undervoltage", T0, "warning", "deep")]
    assert [len(f) for f in found] == [0, 1, 0, 0]


def test_deep_run_must_be_consecutive():
    r = en()
    assert flat(r.series([0.86 * 230, 0.88 * 230, 0.86 * 230, 0.88 * 230])) == []


def test_deep_overvoltage_under_gbt_opens_after_two_readings():
    r = Rig(Fleet.simple(2), policy=True, standard="gbt12325")
    found = r.series([[1.101 * 220, 1.099 * 220]] * 2)
    assert opens(found) == [(0, "overvoltage", T0, "warning", "deep")]


def test_deviation_beyond_the_normal_band_opens_once_it_lasted_two_hours():
    r = en()
    found = r.series([0.89 * 230] * 9)  # within the deep band, outside +-10%
    assert [len(f) for f in found] == [0] * 7 + [1, 0]  # the 8th quarter hour ends 2 h
    assert opens(found) == [(0, "undervoltage", T0, "warning", "sustained")]


def test_shallow_dips_do_not_alert_deep_dips_do_by_depth():
    r = en(4)
    found = r.feed(T0, voltage=230.0, voltage_min=[0.75 * 230, 0.7 * 230, 0.699 * 230, 0.39 * 230])
    assert [(s, k, sev, rule) for s, k, _, sev, rule in opens([found])] == [
        (2, "sag", "warning", "event"), (3, "sag", "critical", "event")]


def test_oscillating_input_opens_once():
    r = en()
    found = r.series([0.84 * 230, 0.95 * 230] * 12)
    assert [f.action for f in flat(found)] == ["open"]


def test_recurrence_within_the_cool_down_reopens_the_same_alert():
    r = en()
    found = r.series([0.84 * 230] + [230.0] * 24 + [0.84 * 230])  # back 6 h later
    acts = [(f.action, f.start, f.evidence.get("recurrence")) for f in flat(found)]
    assert acts == [("open", T0, None), ("close", T0, None), ("open", T0, True)]


def test_recurrence_after_the_cool_down_is_a_new_alert():
    r = en(cool_down_s=3 * 3600)
    t2 = T0 + 4 * 3600
    found = r.series([0.84 * 230] + [230.0] * 15 + [0.84 * 230])
    assert [(f.action, f.start) for f in flat(found)] == [("open", T0), ("close", T0), ("open", t2)]


def test_a_dip_recurring_within_the_cool_down_reuses_the_id():
    r = en()
    mins = [0.5 * 230] + [228.0] * 8 + [0.6 * 230]
    found = [r.feed(T0 + i * 900, voltage=230.0, voltage_min=v) for i, v in enumerate(mins)]
    assert [(f.action, f.start) for f in flat(found)] == [("open", T0), ("close", T0), ("open", T0)]


def test_area_wide_deep_episode_is_one_area_alert():
    r = en(10, area_min_meters=3)
    found = flat(r.series([0.86 * 230] * 3))
    assert [(f.scope, f.subtype, f.action, f.start, f.evidence["rule"]) for f in found] == [
        ("area", "undervoltage", "open", T0, "deep")]
    assert found[0].evidence["meters_affected"] == 10


def test_a_realistic_month_of_supply_raises_no_voltage_alert():
    """A real European 230 V supply is EN 50160- and GB/T 12325-compliant: no alert at
    all. ANSI C84.1's Range B ends at 0.917 pu, which its normal low episodes cross, so
    under ANSI the one alert is the month's compliance verdict, for the whole area."""
    from models.backtest import run
    from models.evaluate.voltage import supply_input

    df, fleet, _, _ = supply_input(5, meters=6, months=1, per_meter=0)
    for std in ("en50160", "gbt12325", "ansi_c84_1"):
        res = run(df, fleet, tz="Europe/London", country="GB", voltage_standard=std)
        got = [a for a in res.alerts if a["type"] == "voltage"]
        if std != "ansi_c84_1":
            assert got == [], std
            continue
        assert {(a["subtype"], a["scope"]) for a in got} == {("noncompliant_period", "area")}
        assert all(a["evidence"]["outside_b_share"] > 0 for a in got)


def test_a_swell_during_an_overvoltage_is_not_a_second_alert():
    r = Rig(Fleet.simple(1), policy=True, standard="gbt12325")
    found = r.series([1.14 * 220] * 3, voltage_max=1.18 * 220)
    assert [(f.subtype, f.action) for f in flat(found)] == [("overvoltage", "open")]


def test_an_area_alert_says_which_rule_opened_it():
    r = en(5, area_min_meters=3)
    found = r.feed(T0, voltage=0.84 * 230)
    assert [(f.scope, f.evidence["rule"], f.severity) for f in found] == [("area", "absolute_band", "critical")]
