"""Hourly temperature per area: the day's mean, once per hour however often it comes."""

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from models.base import Fleet
from models.engine import Engine
from models.weather import MIN_HOURS, day_degree_days, degree_days

TZ = "Europe/London"
DAY0 = int(datetime(2026, 1, 5, tzinfo=ZoneInfo(TZ)).timestamp())


def engine_and_area():
    eng = Engine(Fleet.simple(2), tz=TZ, country=None)
    return eng, eng.new_area_state(1), np.array([0])


def hours(day: int, temps) -> tuple[np.ndarray, np.ndarray]:
    ts = DAY0 + 86400 * day + 3600 * np.arange(len(temps))
    return ts, np.asarray(temps, float)


def test_degree_days_count_below_15_5_and_above_22_degrees():
    assert degree_days(np.array([5.0, 15.5, 18.0, 22.0, 25.0])).tolist() == [10.5, 0, 0, 0, 3.0]


def test_a_finished_days_mean_temperature_is_kept_for_the_area_when_the_next_day_begins():
    eng, ast, areas = engine_and_area()
    ts, t = hours(0, np.linspace(0, 10, 24))
    assert eng.apply_weather(np.zeros(24, np.int64), ts, t, ast, areas) == (24, 0, 0)
    day1, _ = hours(1, [3.0])
    eng.apply_weather(np.array([0]), day1, np.array([3.0]), ast, areas)
    assert ast["wa_pmean"][0] == pytest.approx(5.0)
    d0 = eng.calendar.lookup(np.array([DAY0 + 1]), np.array([1]))[0]
    assert day_degree_days(ast, np.array([0]), d0)[0] == pytest.approx(10.5)


def test_a_redelivered_hour_counts_once_and_an_hour_of_a_finished_day_not_at_all():
    eng, ast, areas = engine_and_area()
    ts, t = hours(0, np.full(24, 4.0))
    eng.apply_weather(np.zeros(24, np.int64), ts, t, ast, areas)
    # The whole day again, with other values (a replay, a resent message): nothing moves.
    assert eng.apply_weather(np.zeros(24, np.int64), ts, t + 10, ast, areas) == (0, 0, 24)
    day1, _ = hours(1, [3.0])
    eng.apply_weather(np.array([0]), day1, np.array([3.0]), ast, areas)
    before = ast.copy()
    assert eng.apply_weather(np.zeros(24, np.int64), ts, t, ast, areas) == (0, 24, 0)
    assert ast.tobytes() == before.tobytes()
    assert ast["wa_pmean"][0] == pytest.approx(4.0)


def test_a_day_with_too_few_hours_has_no_mean_temperature():
    eng, ast, areas = engine_and_area()
    ts, t = hours(0, np.full(MIN_HOURS - 1, 4.0))
    eng.apply_weather(np.zeros(len(ts), np.int64), ts, t, ast, areas)
    day1, _ = hours(1, [3.0])
    eng.apply_weather(np.array([0]), day1, np.array([3.0]), ast, areas)
    d0 = eng.calendar.lookup(np.array([DAY0 + 1]), np.array([1]))[0]
    assert np.isnan(day_degree_days(ast, np.array([0]), d0)[0])


def test_the_day_being_accumulated_counts_once_enough_hours_are_in():
    eng, ast, areas = engine_and_area()
    ts, t = hours(0, np.full(MIN_HOURS, 5.0))
    eng.apply_weather(np.zeros(len(ts), np.int64), ts, t, ast, areas)
    d0 = eng.calendar.lookup(np.array([DAY0 + 1]), np.array([1]))[0]
    assert day_degree_days(ast, np.array([0]), d0)[0] == pytest.approx(10.5)


def test_a_feed_a_week_ahead_of_the_readings_still_has_each_days_figure():
    eng, ast, areas = engine_and_area()
    for day, t in enumerate([0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 3.0]):
        ts, temps = hours(day, np.full(24, t))
        eng.apply_weather(np.zeros(24, np.int64), ts, temps, ast, areas)
    days = eng.calendar.lookup(DAY0 + 1 + 86400 * np.arange(6), np.ones(6, np.int64))[0]
    got = day_degree_days(ast, np.zeros(6, np.int64), days)
    assert got.tolist() == pytest.approx([15.5, 10.5, 5.5, 0.5, 0.0, 3.0])
