"""Voltage compliance statistics against values computed by hand on fixed series."""

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from models.base import AreaView, Batch, Fleet, compose_dtype
from models.compliance import (ComplianceDetector, ansi_c84_1_periods, en50160_weeks,
                               gbt12325_months, ieee1159_counts)
from models.engine import Engine
from models.localtime import LocalCalendar


def series(start: str, tz: str, n: int, interval_s: int = 900) -> np.ndarray:
    """Interval ends of ``n`` readings from a local start time."""
    t0 = int(datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(tz)).timestamp())
    return t0 + interval_s * np.arange(1, n + 1)


LON = "Europe/London"


def test_en50160_a_week_at_95_percent_within_10_percent_and_within_minus_15_complies():
    ts = series("2013-05-06T00:00", LON, 672)  # a Monday, a whole week of quarter hours
    v = np.full(672, 230.0)
    v[:33] = 200.0  # below -10 % (207 V), above -15 % (195.5 V): 639 / 672 = 95.09 % within
    (w,) = en50160_weeks(ts, 900, v, 230.0, tz=LON)
    assert w["week_start"] == "2013-05-06"
    assert w["within_share"] == pytest.approx(639 / 672)
    assert w["all_within_extremes"] and w["complies"] and w["coverage"] == pytest.approx(1.0)


def test_en50160_fails_below_95_percent_or_on_one_reading_beyond_the_extremes():
    ts = series("2013-05-06T00:00", LON, 672)
    v = np.full(672, 230.0)
    v[:34] = 200.0  # 638 / 672 = 94.94 %
    assert not en50160_weeks(ts, 900, v, 230.0, tz=LON)[0]["complies"]
    v = np.full(672, 230.0)
    v[5] = 195.0  # one quarter hour below -15 %: 99.85 % within, still not compliant
    (w,) = en50160_weeks(ts, 900, v, 230.0, tz=LON)
    assert w["within_share"] == pytest.approx(671 / 672) and not w["all_within_extremes"]
    assert not w["complies"]


def test_en50160_values_on_the_limits_are_within():
    ts = series("2013-05-06T00:00", LON, 4)
    (w,) = en50160_weeks(ts, 900, np.array([207.0, 253.0, 195.5, 230.0]), 230.0, tz=LON)
    assert w["within_share"] == pytest.approx(3 / 4) and w["all_within_extremes"]


def test_en50160_a_daylight_saving_week_is_167_hours_long():
    ts = series("2013-03-25T00:00", LON, 167 * 4)  # clocks go forward on Sunday 31 March
    (w,) = en50160_weeks(ts, 900, np.full(167 * 4, 230.0), 230.0, tz=LON)
    assert w["week_start"] == "2013-03-25" and w["coverage"] == pytest.approx(1.0)
    assert w["measured_s"] == 167 * 3600


def test_gaps_are_not_time_within_the_limits_and_lower_the_coverage():
    ts = series("2013-05-06T00:00", LON, 672)
    v = np.full(672, 230.0)
    v[:96] = np.nan  # a day without measurements
    v[96:100] = 260.0  # an hour above the limits
    (w,) = en50160_weeks(ts, 900, v, 230.0, tz=LON)
    assert w["coverage"] == pytest.approx(576 / 672)
    assert w["within_share"] == pytest.approx(572 / 576)


def test_gbt12325_monthly_compliance_rate_by_voltage_class():
    sh = "Asia/Shanghai"
    ts = series("2026-02-01T00:00", sh, 28 * 48, 1800)  # February: 28 days of half hours
    v = np.full(28 * 48, 220.0)
    v[:100] = 240.0  # above +7 % (235.4 V)
    v[100:144] = 190.0  # below -10 % (198 V)
    v[144:150] = 200.0  # within -10 % for single phase, below -7 % (204.6 V) for three phase
    (m,) = gbt12325_months(ts, 1800, v, 220.0, tz=sh)
    assert m["month"] == "2026-02" and m["coverage"] == pytest.approx(1.0)
    assert m["compliance_rate"] == pytest.approx(1200 / 1344)
    assert m["above_s"] == 100 * 1800 and m["below_s"] == 44 * 1800
    (m3,) = gbt12325_months(ts, 1800, v, 220.0, phases=3, tz=sh)
    assert m3["compliance_rate"] == pytest.approx(1194 / 1344)


def test_gbt12325_splits_readings_into_local_months():
    sh = "Asia/Shanghai"
    ts = series("2026-01-31T23:00", sh, 4, 1800)  # two half hours in January, two in February
    months = gbt12325_months(ts, 1800, np.array([220.0, 240.0, 220.0, 220.0]), 220.0, tz=sh)
    assert [(m["month"], m["compliance_rate"]) for m in months] == [("2026-01", 0.5), ("2026-02", 1.0)]


def test_ansi_c84_1_time_in_range_a_range_b_only_and_outside_b():
    ny = "America/New_York"
    v = np.array([120.0] * 8 + [114.0, 126.0]  # Range A, its limits included
                 + [112.0] * 4 + [110.0]  # Range B only, its lower limit included
                 + [126.5, 127.0]  # Range B only, above A
                 + [108.0] * 4 + [127.5])  # outside Range B
    ts = series("2026-06-01T00:00", ny, len(v))
    (p,) = ansi_c84_1_periods(ts, 900, v, 120.0, tz=ny)
    n = len(v)
    assert p["range_a_share"] == pytest.approx(10 / n)
    assert p["range_b_only_share"] == pytest.approx(7 / n)
    assert p["outside_b_share"] == pytest.approx(5 / n)


# -- the dip and swell table ------------------------------------------------------------

def test_dips_and_swells_are_counted_in_the_rows_their_extremes_fall_in():
    ts = series("2013-05-06T00:00", LON, 12)
    v = np.full(12, 230.0)
    vmin = np.array([207.0, 206.9, 184.0, 183.9, 92.0, 23.0, 11.5, 11.4, 0.0, 150.0, 230, 230])
    v[9] = 200.0  # its minimum is low but so is its mean: an undervoltage, not a dip
    vmax = np.array([230.0] * 9 + [230, 253.0, 276.0])
    vmax[0], vmax[1] = 253.5, 280.0
    (w,) = en50160_weeks(ts, 900, v, 230.0, tz=LON, voltage_min=vmin, voltage_max=vmax)
    # 207 V is on 0.9 Un (no dip), 184 V on 0.8 Un (in 90 > u >= 80), 0 V in the last row
    assert w["dips"] == {"80-90": 2, "70-80": 1, "40-70": 1, "10-40": 1, "5-10": 1, "0-5": 2}
    # 253.0 is on the +10 % limit (no swell); 276.0 is on 120 %
    assert w["swells"] == {"110-120": 1, "120+": 2}
    assert ieee1159_counts(w) == {"sag": 5, "interruption": 3, "swell": 3}


# -- the online accumulator against the batch figures -----------------------------------

def feed(det, ts, v, vmin=None, vmax=None, *, nominal=230.0, phases=1, interval=900,
         st=None, ast=None, fleet=None):
    """Readings of one meter, one step each, as the engine hands them."""
    fleet = fleet or Fleet.simple(1, nominal_voltage=nominal, phases=[phases])
    if st is None:
        st = np.zeros(1, compose_dtype(det.fields))
        det.init(st, fleet, np.arange(1))
        ast = np.zeros(1, compose_dtype(det.area_fields))
        det.init_area(ast, fleet, np.arange(1))
    nan = np.full(len(ts), np.nan)
    vmin = nan if vmin is None else vmin
    vmax = nan if vmax is None else vmax
    out = []
    for k in range(len(ts)):
        b = Batch.from_columns(1, meter=[0], ts=[ts[k]], interval_s=[interval], voltage=[v[k]],
                               voltage_min=[vmin[k]], voltage_max=[vmax[k]])
        det.step(st, b, fleet, AreaView(np.array([0]), np.zeros(1, np.int64), ast), out)
    return st, ast, out


def same(online: dict, batch: dict) -> None:
    for k, want in batch.items():
        if k in ("min_v", "max_v"):
            continue
        got = online[k]
        assert got == (pytest.approx(want, abs=1e-12) if isinstance(want, float) else want), k


def test_online_en50160_week_equals_the_batch_figures_on_the_boundaries_and_gaps():
    ts = series("2013-05-06T00:00", LON, 672 + 4)  # a week and the next week's first hour
    v = np.full(672 + 4, 230.0)
    v[:96] = np.nan  # a day without measurements
    v[96:100] = [207.0, 253.0, 195.5, 206.99]  # on the limits, on -15 %, just below -10 %
    vmin, vmax = v - 30.0, v + 5.0
    det = ComplianceDetector("en50160", LocalCalendar(LON, None))
    st, _, _ = feed(det, ts, v, vmin, vmax)
    w0, w1 = en50160_weeks(ts, 900, v, 230.0, tz=LON, voltage_min=vmin, voltage_max=vmax)
    same(det.meter_figures(st[0], previous=True), w0)
    same(det.meter_figures(st[0]), w1)
    assert w0["within_share"] == pytest.approx(574 / 576) and w0["all_within_extremes"]
    assert w0["coverage"] == pytest.approx(576 / 672)


def test_online_en50160_daylight_saving_weeks_are_167_and_169_hours():
    for start, hours in (("2013-03-25T00:00", 167), ("2013-10-21T00:00", 169)):
        n = hours * 4
        ts = series(start, LON, n)
        v = np.full(n, 230.0)
        v[-40:] = 200.0  # 10 h below -10 %: 5.92 % of 169 h, 5.99 % of 167 h
        det = ComplianceDetector("en50160", LocalCalendar(LON, None))
        st, _, out = feed(det, ts, v)
        f = det.meter_figures(st[0])
        (w,) = en50160_weeks(ts, 900, v, 230.0, tz=LON)
        same(f, w)
        assert f["week_start"] == start[:10] and f["period_s"] == hours * 3600
        assert f["coverage"] == pytest.approx(1.0) and f["within_share"] == pytest.approx(1 - 40 / n)
        assert [x.evidence["verdict"] for x in out] == ["certain"]


def test_online_gbt12325_month_equals_the_batch_rate_for_each_voltage_class():
    sh = "Asia/Shanghai"
    n = 28 * 48
    ts = series("2026-02-01T00:00", sh, n + 1, 1800)  # February and March's first half hour
    v = np.full(n + 1, 220.0)
    v[:100], v[100:144], v[144:150] = 240.0, 190.0, 200.0
    v[150:152] = [235.4, 198.0]  # on the single-phase limits
    for phases, rate in ((1, 1200 / 1344), (3, 1193 / 1344)):  # 198 V is below -7 % too
        det = ComplianceDetector("gbt12325", LocalCalendar(sh, None))
        st, _, out = feed(det, ts, v, nominal=220.0, phases=phases, interval=1800)
        m0, m1 = gbt12325_months(ts, 1800, v, 220.0, phases=phases, tz=sh)
        f = det.meter_figures(st[0], previous=True)
        same(f, m0)
        same(det.meter_figures(st[0]), m1)
        assert f["month"] == "2026-02" and f["compliance_rate"] == pytest.approx(rate)
        assert f["above_s"] == 100 * 1800 and not f["complies"]
        # certain to fail once over 5 % of February (67.2 half hours) was outside the limits
        (x,) = out
        assert x.evidence["verdict"] == "certain" and x.ts == ts[67]


def test_online_ansi_c84_1_ranges_equal_the_batch_shares():
    ny = "America/New_York"
    v = np.array([120.0] * 8 + [114.0, 126.0] + [112.0] * 4 + [110.0] + [126.5, 127.0]
                 + [108.0] * 4 + [127.5])
    ts = series("2026-06-01T00:00", ny, len(v))
    det = ComplianceDetector("ansi_c84_1", LocalCalendar(ny, None))
    st, _, out = feed(det, ts, v, nominal=120.0)
    (p,) = ansi_c84_1_periods(ts, 900, v, 120.0, tz=ny)
    same(det.meter_figures(st[0]), p)
    # outside Range B at the 18th reading: the month cannot comply, reported at once
    (x,) = out
    assert x.ts == ts[17] and x.evidence["verdict"] == "certain"


# -- the period-failure finding -----------------------------------------------------------

def test_an_en50160_week_is_reported_once_when_it_can_no_longer_comply():
    ts = series("2013-05-06T00:00", LON, 672)
    v = np.full(672, 230.0)
    v[100:140] = 200.0  # below -10 %: the 34th such quarter hour passes 5 % of the week
    det = ComplianceDetector("en50160", LocalCalendar(LON, None))
    _, _, out = feed(det, ts, v)
    (f,) = out
    assert (f.type, f.subtype, f.action, f.scope) == ("voltage", "noncompliant_period", "point", "meter")
    assert f.ts == ts[133] and f.start == ts[0] - 900  # the week's start: Monday 00:00
    assert f.evidence["period"] == "2013-05-06" and f.evidence["all_within_extremes"]


def test_an_en50160_week_with_33_quarter_hours_outside_complies_and_raises_nothing():
    ts = series("2013-05-06T00:00", LON, 673)
    v = np.full(673, 230.0)
    v[:33] = 200.0
    det = ComplianceDetector("en50160", LocalCalendar(LON, None))
    st, _, out = feed(det, ts, v)
    assert out == [] and det.meter_figures(st[0], previous=True)["complies"]


def test_a_thin_week_is_judged_when_it_ends_only_if_enough_of_it_was_measured():
    ts = series("2013-05-06T00:00", LON, 673)
    v = np.full(673, np.nan)
    v[:340] = 230.0
    v[:20] = 200.0  # 20 of 340 measured quarter hours outside: 94.1 %, 3 % of the week
    for measured, found in ((340, True), (330, False)):  # 50.6 % / 49.1 % of the week
        w = v.copy()
        w[measured:672] = np.nan
        det = ComplianceDetector("en50160", LocalCalendar(LON, None))
        _, _, out = feed(det, ts, w)
        assert [(f.evidence["verdict"], f.ts) for f in out] == ([("final", ts[672])] if found else [])


def test_many_meters_of_an_area_failing_together_raise_one_area_finding():
    fleet = Fleet.simple(5, nominal_voltage=230.0)
    det = ComplianceDetector("en50160", LocalCalendar(LON, None))
    st = np.zeros(5, compose_dtype(det.fields))
    det.init(st, fleet, np.arange(5))
    ast = np.zeros(1, compose_dtype(det.area_fields))
    det.init_area(ast, fleet, np.arange(1))
    ts = series("2013-05-06T00:00", LON, 3)
    out = []
    for k, v in enumerate(([230.0] * 5, [190.0] * 4 + [230.0], [230.0] * 4 + [190.0])):
        b = Batch.from_columns(5, meter=np.arange(5), ts=[ts[k]] * 5, voltage=v)
        det.step(st, b, fleet, AreaView(np.array([0]), np.zeros(5, np.int64), ast), out)
    (f,) = out  # the fifth meter failing later in the week is covered by the area's
    assert f.scope == "area" and f.subject == 0 and f.evidence["meters_affected"] == 4
    a = det.area_figures(ast[0])
    assert a["meters"] == 5 and a["meters_failing"] == 5
    assert a["within_share"] == pytest.approx(10 / 15) and not a["all_within_extremes"]


def test_a_late_reading_counts_in_its_period():
    ts = series("2013-05-06T00:00", LON, 3)
    det = ComplianceDetector("en50160", LocalCalendar(LON, None))
    fleet = Fleet.simple(1, nominal_voltage=230.0)
    st, ast, _ = feed(det, ts[[0, 2]], np.array([230.0, 230.0]), fleet=fleet)
    b = Batch.from_columns(1, meter=[0], ts=[ts[1]], voltage=[200.0])
    det.late(st, b, fleet, AreaView(np.array([0]), np.zeros(1, np.int64), ast))
    assert det.meter_figures(st[0])["within_share"] == pytest.approx(2 / 3)
    assert det.area_figures(ast[0])["within_share"] == pytest.approx(2 / 3)


def test_the_engine_reports_a_failing_period_once_and_a_replay_reports_nothing_again():
    from models.base import READING_DTYPE

    fleet = Fleet.simple(1, nominal_voltage=230.0)
    eng = Engine(fleet, tz=LON, country=None, voltage_standard="en50160")
    ts = series("2013-05-06T00:00", LON, 200)
    cols = np.zeros(200, READING_DTYPE)
    cols["ts"], cols["interval_s"], cols["voltage"] = ts, 900, 230.0
    cols["voltage"][50:100] = 200.0
    for c in ("kwh_export", "register_kwh", "current", "neutral_current", "power_factor",
              "voltage_min", "voltage_max"):
        cols[c] = np.nan
    cols["kwh"] = 0.1
    st, ast = eng.new_state(1), eng.new_area_state(1)
    one = np.array([0])
    found = []
    for k in range(200):
        found += eng.process(one, cols[k:k + 1], st, ast, one, one).findings
    again = eng.process(np.zeros(10, np.int64), cols[150:160], st, ast, one, one)
    comp = [f for f in found if f.subtype == "noncompliant_period"]
    assert len(comp) == 1 and not [f for f in again.findings if f.subtype == "noncompliant_period"]
    assert compose_dtype(eng.compliance.fields).itemsize <= 70  # of the ~200 B allowed


def test_state_migrated_from_a_release_without_these_fields_starts_counting_at_once():
    """Old changelogged state gains the fields zero-filled, without ``init`` (the meter
    is initialised already): the detector takes it as nothing counted yet, as it does
    the counters of another standard after the configuration changed."""
    ts = series("2013-05-06T00:00", LON, 4)
    det = ComplianceDetector("en50160", LocalCalendar(LON, None))
    fleet = Fleet.simple(1, nominal_voltage=230.0)
    st = np.zeros(1, compose_dtype(det.fields))  # all zero: no init ran
    ast = np.zeros(1, compose_dtype(det.area_fields))
    st, ast, _ = feed(det, ts, np.array([230.0, 200.0, 230.0, 230.0]), st=st, ast=ast, fleet=fleet)
    assert det.meter_figures(st[0])["within_share"] == pytest.approx(3 / 4)
    assert det.area_figures(ast[0])["within_share"] == pytest.approx(3 / 4)
    other = ComplianceDetector("gbt12325", LocalCalendar(LON, None))
    st, ast, _ = feed(other, ts[3:] + 900, np.array([230.0]), st=st, ast=ast, fleet=fleet)
    f = other.meter_figures(st[0])
    assert f["measured_s"] == 900 and other.meter_figures(st[0], previous=True) is None
