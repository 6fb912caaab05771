"""Specification of the real-like low-voltage supply (models/evaluate/supply.py) and of the
simulator's voltage that carries it: the figures issue 15 gives for a real 230 V
supply, measured over a simulated year."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import models.evaluate.supply as supply
from models.evaluate.sim import FleetSimulator

MONTHS = 365 / (365.25 / 12)


def _starts(x: np.ndarray) -> int:
    """Separate runs of True (an episode or a dip counts once, however many readings)."""
    return int(np.count_nonzero(np.diff(np.r_[0, x.astype(int)]) == 1))


def _lengths(x: np.ndarray) -> np.ndarray:
    d = np.diff(np.r_[0, x.astype(int), 0])
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


@pytest.fixture(scope="module")
def year():
    """A year of 15-minute readings of 12 single-phase 230 V households in 2 areas (pu)."""
    sim = FleetSimulator(n_customers=12, n_areas=2, seed=4, nominal_voltage=230.0,
                         share_three_phase=0.0)
    mean, low = [], []
    for d in sim._iter_days(sim._end_epoch(365, None)):
        mean.append(d["V"][:12])
        low.append(d["voltage_min"][:12])
    return np.concatenate(mean, 1) / 230.0, np.concatenate(low, 1) / 230.0


def per_meter(f, x):
    return np.mean([f(row) for row in x])


def test_docstring_examples_run():
    assert doctest.testmod(supply).failed == 0


def test_minute_minima_fall_below_0_9_pu_about_28_times_a_month(year):
    _, low = year
    assert 22 <= per_meter(lambda r: _starts(r < 0.9), low) / MONTHS <= 34


def test_means_fall_below_0_9_pu_in_about_4_episodes_a_month_of_up_to_90_minutes(year):
    mean, _ = year
    assert 3.0 <= per_meter(lambda r: _starts(r < 0.9), mean) / MONTHS <= 5.5
    assert max(_lengths(r < 0.9).max() for r in mean) * 15 <= 105


def test_means_below_0_87_pu_come_well_under_once_a_month(year):
    mean, _ = year
    assert per_meter(lambda r: _starts(r < 0.87), mean) / MONTHS < 0.5


def test_minima_below_0_8_pu_come_about_twice_a_year_and_none_below_0_7(year):
    _, low = year
    assert 0.5 <= per_meter(lambda r: _starts(r < 0.8), low) <= 5
    assert (low >= 0.7).all()


def test_the_supply_is_en50160_compliant_every_week(year):
    mean, _ = year
    weeks = mean[:, : mean.shape[1] // 672 * 672].reshape(12, -1, 672)
    assert ((weeks >= 0.9) & (weeks <= 1.1)).mean(axis=2).min() >= 0.95
    assert (mean >= 0.85).all() and (mean <= 1.1).all()


def test_area_events_reach_every_meter_of_the_area_and_local_dips_only_one():
    rng = np.random.default_rng(1)
    area = np.repeat([0, 1], 5)
    ev = supply.draw_day(rng, area_of_row=area, local=np.ones(10, bool), S=96, interval_s=900,
                         hours=(np.arange(96) + 0.5) / 4, profile=supply.SupplyProfile(
                             dips_per_month=3000.0, shallow_dips_per_month=0.0, episodes_per_month=0.0))
    per_minute = {}
    for r, t in zip(ev.dip_row, ev.dip_minute):
        per_minute.setdefault((int(area[r]), int(t)), set()).add(int(r))
    sizes = [len(v) for v in per_minute.values()]
    assert 5 in sizes and 1 in sizes  # whole-area dips and one-meter dips


def test_apply_lowers_means_by_the_dip_share_of_the_interval_and_reports_the_minimum():
    ev = supply.DayEvents(np.array([0, 0]), np.array([3, 4]), np.array([0.85, 0.85]), [])
    mean, low = supply.apply(np.full((2, 4), 1.0), ev, interval_s=900)
    assert mean[0, 0] == pytest.approx(1.0 - 2 * 0.15 / 15)  # two minutes at 0.85 pu
    assert low[0, 0] == pytest.approx(0.85) and np.isinf(low[1]).all() and (mean[1] == 1.0).all()


def test_overlapping_episodes_do_not_stack_below_their_troughs():
    rows = np.arange(1)
    ep = (rows, 0, 120, np.array([0.88]), 4)
    ev = supply.DayEvents(np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0), [ep, ep])
    mean, low = supply.apply(np.full((1, 8), 1.0), ev, interval_s=900)
    assert mean.min() >= 0.88 - 1e-9 and low.min() >= 0.88 - 1e-9


def test_no_profile_gives_the_clean_load_flow_voltage():
    sim = FleetSimulator(n_customers=20, n_areas=2, seed=2, supply_profile=None)
    lows = [r["voltage_min"] for b in sim.iter_batches(days=7) for r in b["readings"]]
    assert min(lows) > 0.9 * sim.nominal_voltage


def test_the_supply_does_not_change_the_rest_of_the_simulation():
    a = FleetSimulator(n_customers=20, n_areas=2, seed=2)
    b = FleetSimulator(n_customers=20, n_areas=2, seed=2, supply_profile=None)
    ka = [r["kwh"] for x in a.iter_batches(days=2) for r in x["readings"]]
    kb = [r["kwh"] for x in b.iter_batches(days=2) for r in x["readings"]]
    assert ka == kb
