"""Jokar et al. (2016) theft attacks h1-h6, and their application to multi-day series."""

from __future__ import annotations

import doctest
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

import models.attacks as attacks
from models.attacks import ALERT_SUBTYPE, KINDS, Attack, apply_attack, h1, h2, h3, h4, h5, h6

SH = ZoneInfo("Asia/Shanghai")
T0 = int(datetime(2026, 1, 5, tzinfo=SH).timestamp())


def household_day(rng: np.random.Generator, n: int = 48) -> np.ndarray:
    h = (np.arange(n) + 0.5) * 24 / n
    return 0.1 + 0.5 * np.exp(-0.5 * ((h - 7.5) / 1.0) ** 2) + \
        1.2 * np.exp(-0.5 * ((h - 19.5) / 2.0) ** 2) + rng.uniform(0, 0.05, n)


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def test_doctests_run():
    assert doctest.testmod(attacks).failed == 0


def test_h1_scales_the_whole_day_by_one_factor_in_0_1_to_0_8(rng):
    x = household_day(rng)
    for _ in range(50):
        ratio = h1(x, rng) / x
        assert np.allclose(ratio, ratio[0])
        assert 0.1 <= ratio[0] <= 0.8


def test_h2_zeroes_one_window_of_4_to_12_hours_and_leaves_the_rest(rng):
    for n in (24, 48, 96):
        x = household_day(rng, n) + 1.0
        for _ in range(50):
            y = h2(x, rng)
            zero = np.flatnonzero(y == 0)
            hours = len(zero) * 24 / n
            assert 4 - 24 / n <= hours <= 12 + 24 / n
            assert np.all(np.diff(zero) == 1), "one contiguous window"
            keep = y != 0
            assert np.array_equal(y[keep], x[keep])


def test_h3_scales_each_reading_by_its_own_factor(rng):
    x = household_day(rng, 96)
    g = h3(x, rng) / x
    assert ((g >= 0.1) & (g <= 0.8)).all()
    assert g.std() > 0.1  # per-reading, not one factor


def test_h4_is_the_mean_times_a_per_reading_factor(rng):
    x = household_day(rng, 96)
    g = h4(x, rng) / x.mean()
    assert ((g >= 0.1) & (g <= 0.8)).all()
    assert g.std() > 0.1
    # The household's shape is gone: no correlation with the original day.
    assert abs(np.corrcoef(x, g)[0, 1]) < 0.4


def test_h5_is_flat_at_the_mean_and_keeps_the_total(rng):
    x = household_day(rng)
    y = h5(x)
    assert np.allclose(y, x.mean())
    assert np.isclose(y.sum(), x.sum())


def test_h6_reverses_the_day_and_keeps_the_total(rng):
    x = household_day(rng)
    y = h6(x)
    assert np.array_equal(y, x[::-1])
    assert np.isclose(y.sum(), x.sum())
    assert np.argmax(y) == len(x) - 1 - np.argmax(x)


def test_attacks_return_copies_and_reject_non_1d(rng):
    x = household_day(rng)
    before = x.copy()
    for k in KINDS:
        Attack(k, rng).apply(x)
    assert np.array_equal(x, before)
    with pytest.raises(ValueError):
        h5(np.ones((2, 3)))
    with pytest.raises(ValueError):
        Attack("h7", rng)


def test_attack_fixes_h1_and_h2_parameters_across_days(rng):
    a1 = Attack("h1", rng)
    a2 = Attack("h2", rng)
    d1, d2 = household_day(rng), household_day(rng)
    assert np.allclose(a1.apply(d1) / d1, a1.params["a"])
    assert np.allclose(a1.apply(d2) / d2, a1.params["a"])
    assert np.array_equal(a2.apply(d1) == 0, a2.apply(d2) == 0)
    assert 4 <= a2.params["duration_h"] <= 12
    assert a2.params["start_h"] + a2.params["duration_h"] <= 24


def test_attack_takes_given_parameters_and_labels_its_alert(rng):
    a = Attack("h1", rng, a=0.3)
    assert a.params == {"attack": "h1", "a": 0.3}
    b = Attack("h2", rng, start_h=0, duration_h=6)
    assert (b.apply(np.ones(24))[:6] == 0).all() and (b.apply(np.ones(24))[6:] == 1).all()
    assert {Attack(k, rng).subtype for k in KINDS} == {"consumption_drop", "profile_distortion"}
    assert ALERT_SUBTYPE["h5"] == "profile_distortion"


def test_same_seed_same_attack():
    x = household_day(np.random.default_rng(0), 96)
    for k in KINDS:
        y1 = Attack(k, np.random.default_rng(5)).apply(x)
        y2 = Attack(k, np.random.default_rng(5)).apply(x)
        assert np.array_equal(y1, y2)


# -- apply_attack ------------------------------------------------------------------------

def series(days: int, n: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([household_day(rng, n) for _ in range(days)])
    ts = T0 + (86400 // n) * np.arange(1, days * n + 1)  # interval ends
    return x, ts


def test_apply_attack_leaves_days_before_start_and_transforms_each_day_after():
    x, ts = series(4)
    y = apply_attack(x, ts, "h6", T0 + 2 * 86400, np.random.default_rng(1), "Asia/Shanghai")
    assert np.array_equal(y[:96], x[:96])
    for d in (2, 3):
        day = slice(48 * d, 48 * (d + 1))
        assert np.array_equal(y[day], x[day][::-1])


def test_apply_attack_days_are_local_days():
    # In UTC the same readings straddle two days; reversing local days must match the
    # reversal of each block of 48 that starts at Shanghai midnight.
    x, ts = series(3)
    y = apply_attack(x, ts, "h6", T0, None, SH)
    assert np.array_equal(y[:48], x[:48][::-1])
    z = apply_attack(x, ts, "h6", T0, None, "UTC")
    assert not np.array_equal(z[:48], x[:48][::-1])


def test_apply_attack_with_a_fixed_attack_object_applies_the_same_factor():
    x, ts = series(5, n=96)
    atk = Attack("h1", np.random.default_rng(3))
    y = apply_attack(x, ts, atk, T0 + 86400)
    assert np.array_equal(y[:96], x[:96])
    assert np.allclose(y[96:] / x[96:], atk.params["a"])


def test_apply_attack_mid_day_start_replaces_only_later_readings():
    x, ts = series(2)
    start = T0 + 12 * 3600  # noon, first day
    y = apply_attack(x, ts, "h5", start, np.random.default_rng(0), SH)
    assert np.array_equal(y[:24], x[:24])
    assert np.allclose(y[24:48], x[:48].mean())  # the whole day's mean


def test_apply_attack_tolerates_missing_readings():
    x, ts = series(2)
    keep = np.ones(len(x), bool)
    keep[[50, 51, 70]] = False
    y = apply_attack(x[keep], ts[keep], "h2", T0, np.random.default_rng(0), SH, interval_s=1800)
    assert len(y) == keep.sum()
    assert (y == 0).any() and np.isfinite(y).all()


def test_apply_attack_accepts_datetime64_and_iso_timestamps():
    x, ts = series(2)
    as_dt64 = ts.astype("datetime64[s]")
    iso = [datetime.fromtimestamp(int(t), SH).isoformat() for t in ts]
    a = apply_attack(x, ts, "h6", T0, None, SH)
    assert np.array_equal(apply_attack(x, as_dt64, "h6", T0, None, SH), a)
    assert np.array_equal(apply_attack(x, iso, "h6", datetime(2026, 1, 5, tzinfo=SH), None, SH), a)
