"""The engine's meter-data validation: each reading's effect happens exactly once."""

import numpy as np
import pytest

from models.base import READING_DTYPE, Fleet
from models.config import DetectorConfig
from models.engine import Engine

T0 = 1_767_200_400  # an interval end (15-min grid)


def cols(ts, kwh=0.2, register=np.nan, n=1):
    c = np.zeros(n, READING_DTYPE)
    c["ts"], c["interval_s"], c["kwh"] = ts, 900, kwh
    for f in ("kwh_export", "voltage", "voltage_min", "voltage_max", "current",
              "neutral_current", "power_factor"):
        c[f] = np.nan
    c["register_kwh"] = register
    return c


class One:
    """One meter in one area, state kept across calls like a table would."""

    def __init__(self, **cfg):
        self.fleet = Fleet.simple(1)
        self.eng = Engine(self.fleet, DetectorConfig().replace(**cfg) if cfg else None)
        self.st = self.eng.new_state(1)
        self.ast = self.eng.new_area_state(1)

    def feed(self, c):
        return self.eng.process(np.zeros(len(c), np.int64), c, self.st, self.ast,
                                np.array([0]), np.array([0]))


def test_a_reading_applied_twice_counts_once():
    m = One()
    assert m.feed(cols(T0)).applied == 1
    again = m.feed(cols(T0))
    assert (again.applied, again.duplicates) == (0, 1)
    assert m.st["e_n"][0] == 1


def test_a_resent_older_reading_within_the_window_is_a_duplicate():
    m = One()
    for k in range(5):
        m.feed(cols(T0 + 900 * k))
    out = m.feed(cols(T0 + 900 * 2))
    assert (out.applied, out.duplicates, out.late) == (0, 1, 0)


def test_a_reading_that_fills_a_gap_after_a_later_one_is_late_not_applied_twice():
    m = One()
    m.feed(cols(T0))
    m.feed(cols(T0 + 900 * 2))  # T0+900 missing
    late = m.feed(cols(T0 + 900))
    assert (late.applied, late.late) == (0, 1)
    assert m.feed(cols(T0 + 900)).duplicates == 1  # and now it is known


def test_a_late_reading_still_counts_in_the_days_energy():
    m = One()
    m.feed(cols(T0, kwh=0.2))
    m.feed(cols(T0 + 900 * 2, kwh=0.3))
    before = float(m.st["h_dkwh"][0]), int(m.st["h_dsec"][0])
    m.feed(cols(T0 + 900, kwh=0.5))  # the missing interval, after the later one
    assert float(m.st["h_dkwh"][0]) == pytest.approx(before[0] + 0.5)
    assert int(m.st["h_dsec"][0]) == before[1] + 900
    m.feed(cols(T0 + 900, kwh=0.5))  # sent again: a duplicate, not counted twice
    assert float(m.st["h_dkwh"][0]) == pytest.approx(before[0] + 0.5)


def test_a_late_customer_reading_still_counts_in_the_areas_energy_balance():
    fleet = Fleet.simple(2, is_area_meter=[True, False])  # the area's meter, a customer
    eng = Engine(fleet)
    st, ast = eng.new_state(2), eng.new_area_state(1)
    feed = lambda r, c: eng.process(np.array(r), c, st, ast, np.array([0, 1]), np.array([0]))  # noqa: E731
    feed([0, 1], cols(T0, kwh=1.0, n=2))
    feed([0, 1], cols(T0 + 1800, kwh=1.0, n=2))  # the customer's T0+900 is missing
    before = float(ast["al_cust_kwh"][0]), float(ast["al_cust_s"][0])
    out = feed([1], cols(T0 + 900, kwh=0.4))
    assert out.late == 1
    assert float(ast["al_cust_kwh"][0]) == pytest.approx(before[0] + 0.4)
    assert float(ast["al_cust_s"][0]) == before[1] + 900


def test_readings_older_than_the_tolerance_are_too_late():
    m = One(engine={"late_tolerance_s": 3600})
    m.feed(cols(T0))
    m.feed(cols(T0 + 900 * 8))
    out = m.feed(cols(T0 + 900 * 2))
    assert out.too_late == [0] and out.applied == 0


def test_several_readings_of_one_meter_in_one_call_apply_in_time_order():
    m = One()
    c = np.concatenate([cols(T0 + 900 * 2), cols(T0), cols(T0 + 900), cols(T0)])
    out = m.feed(c)
    assert (out.applied, out.duplicates) == (3, 1)
    assert m.st["e_last_ts"][0] == T0 + 900 * 2


def test_a_gap_of_several_intervals_is_a_comm_gap_not_theft():
    m = One()
    m.feed(cols(T0))
    out = m.feed(cols(T0 + 900 * 10))
    kinds = {(f.type, f.subtype, f.action) for f in out.findings}
    assert kinds == {("comm_gap", "meter", "open"), ("comm_gap", "meter", "close")}
    assert out.findings[0].evidence["missing_intervals"] == 9
    assert out.findings[0].start == T0 + 900


def test_a_register_that_drops_to_near_zero_is_a_meter_exchange_not_theft():
    m = One()
    m.feed(cols(T0, register=51234.5))
    out = m.feed(cols(T0 + 900, register=0.3))
    f = [f for f in out.findings if f.type == "data_quality"]
    assert len(f) == 1 and f[0].evidence["detail"] == "meter_exchange"
    assert not [f for f in out.findings if f.type == "theft"]


def test_a_register_rollover_is_recognised():
    m = One()
    m.feed(cols(T0, register=99999.8))
    out = m.feed(cols(T0 + 900, register=20.1))
    assert [f.evidence["detail"] for f in out.findings if f.type == "data_quality"] == ["rollover"]


def test_state_is_a_fixed_record_under_two_kilobytes():
    eng = Engine(Fleet.simple(1))
    assert eng.state_bytes <= 2048
    assert eng.new_state(3).tobytes().__len__() == 3 * eng.state_bytes


def test_same_input_same_output():
    def once():
        m = One()
        outs = []
        rng = np.random.default_rng(1)
        for k in range(96 * 20):
            outs += m.feed(cols(T0 + 900 * k, kwh=float(rng.gamma(2, 0.1)))).findings
        return [(f.type, f.subtype, f.action, f.start, f.ts) for f in outs], m.st.tobytes()
    assert once() == once()


def test_a_new_customer_starts_from_its_area_peers_habits_not_the_generic_shape():
    fleet = Fleet.simple(5)
    eng = Engine(fleet)
    st = eng.new_state(5)
    ast = eng.new_area_state(1)
    # Four customers with a month of history using ~20 kWh on workdays, 25 on off-days.
    eng._init_new(st[:4], np.arange(4))  # as if seen before
    st["h_ndays"][:4] = (22, 8)
    st["h_lv"][:4] = (20.0, 25.0)
    st["h_mu"][:4] = 0.8
    c = cols(T0, n=5)
    eng.process(np.arange(5), c, st, ast, np.arange(5), np.array([0]))
    assert st["h_lv"][4] == pytest.approx([20.0, 25.0])
    assert st["h_mu"][4].mean() == pytest.approx(0.8, rel=0.05)
    # The generic residential seed would have been far smaller.
    fresh = eng.new_state(1)
    eng._init_new(fresh, np.array([0]))
    assert fresh["h_lv"][0][0] < 15
