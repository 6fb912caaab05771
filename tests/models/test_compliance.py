"""Voltage compliance statistics against values computed by hand on fixed series."""

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from models.compliance import ansi_c84_1_periods, en50160_weeks, gbt12325_months


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
