"""From a false-alarm budget to a limit: the tail models behave as stated."""

import doctest

import numpy as np
import pytest

import models.calibrate
from models.calibrate import arl0, cusum_h, exp_tail_limit, long_run_scale, run_length_for


def test_doctests_run():
    assert doctest.testmod(models.calibrate).failed == 0


@pytest.mark.parametrize("k", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("arl", [100.0, 730.0, 5000.0])
def test_cusum_h_gives_the_wanted_run_length(k, arl):
    assert arl0(cusum_h(k, arl), k) == pytest.approx(arl, rel=1e-6)


def test_a_cusum_on_independent_days_raises_false_alarms_at_about_its_budget():
    """Simulated in-control N(0, 1) days: the measured run length is near the promise
    (Siegmund's approximation is within ~10-20 % here)."""
    rng = np.random.default_rng(0)
    k, want = 0.5, 200.0
    h = float(cusum_h(k, want))
    runs, c, t = [], 0.0, 0
    for z in rng.standard_normal(400_000):
        t += 1
        c = max(0.0, c + z - k)
        if c > h:
            runs.append(t)
            c, t = 0.0, 0
    assert 0.75 * want <= np.mean(runs) <= 1.25 * want


def test_an_exponential_tail_limit_is_exceeded_as_often_as_budgeted():
    rng = np.random.default_rng(1)
    x = rng.exponential(2.0, 2_000_000)
    u = np.quantile(x, 0.98)
    sigma = float(np.mean(x[x > u] - u))
    lim = exp_tail_limit(u, sigma, 0.02, 1e-4)
    assert np.mean(x > lim) == pytest.approx(1e-4, rel=0.2)


def test_persistent_days_need_longer_runs_and_wider_spreads():
    assert run_length_for(0.1, 0.4, lo=2, hi=30, q_stay=0.7) > run_length_for(0.1, 0.4, lo=2, hi=30)
    assert long_run_scale(0.2, 0.5) > long_run_scale(0.2, 0.0) == pytest.approx(0.2)
    assert long_run_scale(0.2, -0.5) == pytest.approx(0.2)  # negative persistence: no credit
