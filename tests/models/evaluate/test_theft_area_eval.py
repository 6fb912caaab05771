"""The area-loss measurement of issue 14: areas built from real households and from the
fleet simulator, one thief each, the thief's rank in its area. The figure itself is not
asserted here (the README quotes it); these tests pin down what the cases are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluate.real import load_real
from models.evaluate.targets import DEFAULT_READINGS
from models.evaluate.theft_area import (HORIZONS, SHAPES, Households, area_meter, attacked,
                                        case_frame, live_case_rows, summarize_live,
                                        households_array, london_cases, main, make_case,
                                        simulated_cases, summarize)


@pytest.fixture(scope="module")
def design() -> Households:
    if not DEFAULT_READINGS.exists():
        pytest.skip(f"{DEFAULT_READINGS} not present")
    return households_array(load_real(DEFAULT_READINGS, tz="UTC", half="design"))


def test_readings_pivot_to_days_and_half_hour_slots():
    ts = np.array([1800, 3600, 86400 + 1800])  # interval ends: slot 0 and 1 of day 0, slot 0 of day 1
    df = pd.DataFrame({"meter_id": ["b", "b", "a"], "ts": ts, "kwh": [1.0, 2.0, 3.0]})
    hh = households_array(df)
    assert hh.ids == ["a", "b"] and hh.X.shape == (2, 2, 48) and hh.day0 == 0
    assert hh.X[1, 0, :2].tolist() == [1.0, 2.0] and hh.X[0, 1, 0] == 3.0
    assert np.isnan(hh.X[0, 0]).all()


def test_the_area_meter_sees_the_true_use_plus_a_few_percent_of_technical_loss():
    rng = np.random.default_rng(0)
    C = rng.gamma(2.0, 0.15, (10, 30, 48))
    A = area_meter(C, rng)
    share = A.sum() / C.sum() - 1
    assert 0.015 < share < 0.06


def test_attacks_keep_their_parameters_for_the_whole_theft():
    x = np.tile(np.linspace(0.1, 1.0, 48), (5, 1))
    y = attacked(x, "h1", np.random.default_rng(3))
    ratio = y.sum(axis=1) / x.sum(axis=1)
    assert np.allclose(ratio, ratio[0]) and 0.1 <= ratio[0] <= 0.8
    assert np.allclose(attacked(x, "h6", np.random.default_rng(0)), x[:, ::-1])
    b = attacked(x, "bypass", np.random.default_rng(1)).sum() / x.sum()
    assert 0.2 <= b <= 0.6


def test_a_case_is_one_area_one_thief_reporting_less_from_its_onset(design):
    case = make_case(design, "h1", np.random.default_rng(5))
    assert case is not None and 8 <= len(case.R) <= 12
    k = case.thief
    before = np.nansum(case.R[k, :case.onset]) / np.nansum(case.clean[k, :case.onset])
    after = np.nansum(case.R[k, case.onset:]) / np.nansum(case.clean[k, case.onset:])
    assert before == pytest.approx(1.0) and after < 0.81
    others = np.arange(len(case.R)) != k
    assert np.allclose(np.nan_to_num(case.R[others]), np.nan_to_num(case.clean[others]))


def test_cases_are_deterministic_by_seed(design):
    a = london_cases(design, 4, 7)
    assert a == london_cases(design, 4, 7)
    assert a != london_cases(design, 5, 7)
    assert {r["shape"] for r in a} == set(SHAPES)
    assert {r["horizon"] for r in a} == set(HORIZONS)


def test_a_small_run_summarises_ranks_per_seed_horizon_and_shape(design):
    rows = london_cases(design, 0, 14)
    assert len(rows) == 14 * len(HORIZONS)
    assert all(1 <= r["rank"] <= r["meters"] for r in rows)
    s = summarize(rows)
    al = s[(0, 7, "all")]
    assert al["cases"] == 14 and 0 <= al["top1"] <= al["top3"] <= 1
    assert s[(0, 14, "h6")]["cases"] == 2
    # far better than chance (3 of ~10 meters)
    assert al["top3"] > 0.5


def test_simulated_areas_use_the_simulators_own_area_meter():
    rows = simulated_cases(0, areas=3, per_area=6)
    assert len(rows) == 3 * len(HORIZONS)
    assert [r["confounder"] for r in rows[::2]] == [False, True, False]
    assert all(1 <= r["rank"] <= r["meters"] for r in rows)


def test_the_command_prints_each_half_and_the_simulator(design, capsys):
    assert main(["--seeds", "0", "--half", "design", "--cases", "7", "--sim-areas", "2"]) == 0
    out = capsys.readouterr().out
    assert "design half" in out and "Simulated fleet" in out and "top 3" in out


def test_a_case_becomes_readings_of_one_area_with_its_area_meter(design):
    case = make_case(design, "bypass", np.random.default_rng(2))
    df, fleet = case_frame(case)
    n, D, S = case.R.shape
    assert list(fleet.is_area_meter) == [False] * n + [True]
    assert len(df) == np.isfinite(case.R).sum() + np.isfinite(case.A).sum()
    first = df[df["meter_id"] == "TX"].iloc[0]
    assert first["ts"] == case.day0 * 86400 + 1800 and first["kwh"] == case.A[0, 0]


def test_the_live_run_finds_where_the_thief_stands_in_the_area_loss_alert(design):
    case = make_case(design, "bypass", np.random.default_rng(2))
    rows = live_case_rows(case, 0)
    assert [r["horizon"] for r in rows] == list(HORIZONS)
    for r in rows:
        assert r["alert"] and r["alert_rank"] is not None and r["alert_rank"] <= 3
        assert r["state_rank"] <= 3
    s = summarize_live([r | {"offline_rank": 1} for r in rows])
    assert s[(0, 7)]["alerted"] == 1.0 and s[(0, 7)]["top3"] == 1.0
