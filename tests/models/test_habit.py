"""Habits and departures from them, on hand-built households run through the engine."""

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from models.attacks import h5, h6
from models.backtest import run
from models.base import Fleet

TZ = "Asia/Shanghai"
DAY0 = int(datetime(2026, 3, 2, tzinfo=ZoneInfo(TZ)).timestamp())  # a Monday
SLOT_H = np.arange(48) / 2


def household(days: int, seed: int = 0, level: float = 1.0) -> np.ndarray:
    """(days, 48) kWh per half hour: base load, morning and evening peaks, noise."""
    rng = np.random.default_rng(seed)
    shape = 0.12 + 0.25 * np.exp(-((SLOT_H - 7.5) / 1.2) ** 2) + 0.6 * np.exp(-((SLOT_H - 19.5) / 2) ** 2)
    daily = rng.lognormal(0, 0.12, (days, 1))
    noise = rng.lognormal(0, 0.25, (days, 48))
    return shape[None, :] * daily * noise * level


def frame(series: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = []
    for mid, x in series.items():
        flat = x.ravel()
        ts = DAY0 + 1800 * (np.arange(len(flat)) + 1)
        rows.append(pd.DataFrame({"meter_id": mid, "ts": ts, "interval_s": 1800, "kwh": flat}))
    return pd.concat(rows).sort_values(["ts", "meter_id"]).reset_index(drop=True)


def alerts(series, fleet=None, closed=False, **kw):
    """Alert openings (and with ``closed``, every message) of a backtest."""
    fleet = fleet or Fleet.simple(len(series))
    fleet.meter_id = list(series)
    fleet.index = {m: i for i, m in enumerate(fleet.meter_id)}
    res = run(frame(series), fleet, tz=TZ, country="CN", **kw)
    return [a for a in res.alerts if closed or a["status"] == "open"]


def day_of(a) -> int:
    return (int(datetime.fromisoformat(a["detected_at"]).timestamp()) - DAY0 - 1) // 86400


def test_a_regular_household_raises_no_habit_alerts_in_four_months():
    got = alerts({"M0": household(120)})
    assert [a for a in got if a["type"] in ("habit_change", "surge", "theft")] == []


def test_no_habit_alert_before_the_profile_has_two_weeks_of_history():
    x = household(30)
    x[5] *= 4  # a huge day on day 5: too early to judge
    got = alerts({"M0": x})
    assert not [a for a in got if a["type"] == "surge" and day_of(a) < 14]


def test_an_hour_far_above_the_slot_is_an_interval_surge_at_the_end_of_that_hour():
    x = household(40)
    x[30, 20:22] += 4.0  # +8 kW for an hour from 10:00
    got = [a for a in alerts({"M0": x}) if a["subtype"] == "interval"]
    assert len(got) == 1
    t = int(datetime.fromisoformat(got[0]["detected_at"]).timestamp())
    assert t == DAY0 + 30 * 86400 + 22 * 1800  # the END of that hour
    start = int(datetime.fromisoformat(got[0]["start"]).timestamp())
    assert start == DAY0 + 30 * 86400 + 21 * 1800  # its first half hour
    assert got[0]["evidence"]["observed_kw"] == pytest.approx(2 * x[30, 21], rel=1e-3)


def test_one_odd_half_hour_is_not_an_interval_surge():
    x = household(40)
    x[30, 20] += 4.0  # +8 kW for one half hour: a kettle and an oven, not a surge
    assert [a for a in alerts({"M0": x}) if a["subtype"] == "interval"] == []


def test_a_day_at_three_times_the_usual_energy_is_a_daily_surge_the_same_day():
    x = household(40)
    x[32] *= 3.0
    got = [a for a in alerts({"M0": x}) if a["subtype"] == "daily"]
    assert len(got) == 1 and day_of(got[0]) == 32
    assert got[0]["evidence"]["ratio"] >= 2.0
    assert "usually" in got[0]["message"]["en"] and "通常" in got[0]["message"]["zh-CN"]


def test_a_transformer_areas_own_meter_raises_no_habit_alerts():
    x = household(40, level=20.0)
    x[32] *= 3.0  # would be a daily surge on a customer's meter
    fleet = Fleet.simple(1, is_area_meter=[True])
    assert [a for a in alerts({"T0": x}, fleet=fleet)
            if a["type"] in ("surge", "habit_change", "theft")] == []


def test_a_vacancy_is_reported_once_within_a_week():
    x = household(70)
    base = x[:30].min(axis=1).mean()
    x[40:60] = base * np.random.default_rng(2).uniform(0.9, 1.1, (20, 48))
    got = [a for a in alerts({"M0": x}) if a["type"] == "habit_change"]
    vac = [a for a in got if a["subtype"] in ("vacancy", "decrease")]
    assert vac and 40 <= day_of(vac[0]) <= 47
    assert len([a for a in got if a["subtype"] == "vacancy"]) == 1


def test_a_vacancy_on_a_large_base_load_closes_when_the_household_is_back():
    # 0.9 kW around the clock (storage heating, a server) under an ordinary household.
    x = household(80) + 0.45
    x[40:50] = 0.45 * np.random.default_rng(4).uniform(0.97, 1.03, (10, 48))
    got = [a for a in alerts({"M0": x}, closed=True) if a["subtype"] == "vacancy"]
    opened = [a for a in got if a["status"] == "open"]
    closed = [a for a in got if a["status"] == "closed"]
    assert len(opened) == 1 and 40 <= day_of(opened[0]) <= 47  # within the week
    assert closed and day_of(closed[0]) <= 52  # back on day 50


def test_an_almost_empty_property_gets_no_vacancy_alerts_as_it_idles_on_and_off():
    # A meter that draws ~0.3 kWh on a day someone calls in and nothing otherwise.
    rng = np.random.default_rng(3)
    x = np.zeros((120, 48))
    visit = rng.random(120) < 0.5
    x[visit, 36:40] = rng.uniform(0.05, 0.12, (int(visit.sum()), 4))
    got = [a for a in alerts({"M0": x}) if a["subtype"] == "vacancy"]
    assert got == []


def test_a_lasting_increase_is_reported_once_with_since_when_and_how_much():
    x = household(80)
    x[40:] *= 1.8
    got = [a for a in alerts({"M0": x}) if a["type"] == "habit_change"]
    inc = [a for a in got if a["subtype"] == "increase"]
    assert len(inc) == 1 and 40 <= day_of(inc[0]) <= 47
    ev = inc[0]["evidence"]
    assert ev["since_day"] >= "2026-04-10" and ev["ratio"] == pytest.approx(1.8, rel=0.35)


def test_a_new_load_that_recurs_in_the_same_hours_is_reported_once_on_its_second_day():
    x = household(80)
    x[50:, 38:42] += 1.5  # a 3 kW load, 19:00-21:00, every day from day 50: +6 kWh/day
    got = [a for a in alerts({"M0": x}) if a["type"] in ("habit_change", "surge")
           and a["subtype"] in ("increase", "daily")]
    assert len(got) == 1
    inc = got[0]
    assert inc["subtype"] == "increase" and day_of(inc) == 51
    ev = inc["evidence"]
    assert ev["kind"] == "new_load" and ev["since_day"] == "2026-04-21"
    assert ev["new_load_kwh_per_day"] == pytest.approx(6.0, rel=0.35)


@pytest.mark.parametrize("attack", [h5, h6], ids=["h5_flat", "h6_reversed"])
def test_a_distorted_daily_shape_is_a_theft_indicator_within_a_week(attack):
    x = household(90)
    for d in range(60, 90):
        x[d] = attack(x[d], np.random.default_rng(d))
    got = [a for a in alerts({"M0": x}) if a["type"] == "theft"]
    assert got and 60 <= day_of(got[0]) <= 67
    assert 0 < got[0]["evidence"]["risk"] <= 1 and got[0]["evidence"]["indicators"]


def street(n: int = 6, days: int = 90) -> dict[str, np.ndarray]:
    """Neighbours in one transformer area, each with its own noise and level."""
    return {f"M{i}": household(days, seed=10 + i, level=0.8 + 0.1 * i) for i in range(n)}


def test_a_meter_slowed_to_half_while_its_peers_are_not_is_a_consumption_drop_within_a_week():
    homes = street()
    homes["M0"][60:] *= 0.5  # h1 with a = 0.5: the meter records half of what flows
    got = [a for a in alerts(homes) if a["type"] == "theft"]
    assert [a["meter_id"] for a in got] == ["M0"]
    drop = got[0]
    assert drop["subtype"] == "consumption_drop" and 60 <= day_of(drop) <= 67
    ind = drop["evidence"]["indicators"]
    assert ind["level_ratio"] == pytest.approx(0.5, abs=0.15)
    assert ind["base_ratio"] < 0.8  # the base load fell with it: the tell-tale
    assert 0 < drop["evidence"]["risk"] <= 1


def test_a_whole_area_using_less_at_once_is_not_theft():
    homes = street()
    for x in homes.values():
        x[60:] *= 0.5  # a mild spell, a holiday week: everyone falls together
    assert [a for a in alerts(homes) if a["type"] == "theft"] == []


def test_a_home_left_at_its_base_load_is_a_vacancy_not_a_consumption_drop():
    homes = street()
    x = homes["M0"]
    base = np.quantile(x[:30], 0.1, axis=1).mean()
    x[60:80] = base * np.random.default_rng(3).uniform(0.95, 1.3, (20, 48))
    got = [a for a in alerts(homes) if a["meter_id"] == "M0"]
    assert any(a["subtype"] == "vacancy" for a in got)
    assert [a for a in got if a["type"] == "theft"] == []


def test_a_care_customer_idle_through_normally_active_hours_raises_inactivity():
    x = household(40)
    base = x[:20].min()
    x[30, 14:] = base  # from 07:00 on day 30: nothing but base load
    x[31:] = base
    fleet = Fleet.simple(1, care=[True])
    got = [a for a in alerts({"M0": x}, fleet) if a["type"] == "inactivity"]
    assert got and day_of(got[0]) in (30, 31)
    assert got[0]["severity"] == "critical"


def test_area_loss_rises_when_a_customer_takes_energy_around_the_meter_and_is_ranked_first():
    n = 6
    series = {f"M{i}": household(50, seed=i) for i in range(n)}
    true_total = sum(series.values())
    thief = "M3"
    series[thief] = series[thief].copy()
    series[thief][30:] *= 0.3  # metered energy falls; the area meter still sees it all
    series["TX"] = true_total * 1.03  # 3% technical loss
    fleet = Fleet.simple(n + 1, is_area_meter=[False] * n + [True])
    got = [a for a in alerts(series, fleet) if a["subtype"] == "area_loss"]
    assert len(got) == 1 and 30 <= day_of(got[0]) <= 33
    ev = got[0]["evidence"]
    assert ev["loss_rate"] > ev["normal_loss_rate"] + 0.05
    assert got[0]["scope"] == "area"
    assert ev["suspects"] and ev["suspects"][0]["meter_id"] == thief


def test_a_schedule_moved_by_three_hours_is_reported_once_with_the_shift():
    x = household(80)
    # From day 40 everything happens three hours later (the small hours keep the night's
    # base load; what ran after 21:00 now runs past midnight, into the next day).
    late = np.concatenate([x[39:-1, -6:], x[40:, :-6]], axis=1)
    # Each day's total as usual: the test is about the hours, not a level change.
    x[40:] = late * (x[:40].sum(axis=1).mean() / late.sum(axis=1))[:, None]
    got = [a for a in alerts({"M0": x}) if a["type"] in ("habit_change", "theft")]
    # Not a new load, not a change of level, not a tampered meter.
    assert [a["subtype"] for a in got] == ["schedule"]
    assert 40 <= day_of(got[0]) <= 47
    assert got[0]["evidence"]["shift_hours"] == 3.0


def test_a_dip_that_ends_does_not_make_the_ordinary_days_after_it_surges():
    # Half the usual use for ten days, then back (told as one fall, whichever reading).
    x = household(90, seed=5, level=2.0)
    x[40:50] *= 0.45
    got = alerts({"M0": x})
    dec = [a for a in got if a["subtype"] in ("decrease", "consumption_drop")]
    assert len(dec) == 1 and 40 <= day_of(dec[0]) <= 47
    after = [a for a in got if day_of(a) >= 50 and a["type"] == "surge"]
    assert after == []


def away_like(x: np.ndarray, start: int, share: float) -> None:
    """Use above the base load cut to ``share`` from ``start`` on; the base load (fridge,
    standby) runs on as before: what a household that changed its habits shows."""
    base = np.quantile(x[:start], 0.1, axis=1).mean()
    x[start:] = base + np.maximum(x[start:] - base, 0) * share


def fall_story(got: list[dict], meter: str) -> list[dict]:
    return [a for a in got if a["meter_id"] == meter
            and a["subtype"] in ("decrease", "consumption_drop")]


def test_a_fall_with_the_base_load_running_on_is_one_habit_alert_saying_habits_are_likelier():
    homes = street()
    away_like(homes["M0"], 60, 0.2)  # use ~47 % lower
    got = fall_story(alerts(homes), "M0")
    assert [(a["type"], a["subtype"]) for a in got] == [("habit_change", "decrease")]
    hyp = got[0]["evidence"]["hypotheses"]
    assert hyp["likelier"] == "habit" and hyp["base_ratio"] > 0.8 and "base load held" in hyp["why"]
    assert 60 <= day_of(got[0]) <= 67


def test_a_fall_that_takes_the_base_load_with_it_is_one_theft_alert_saying_theft_is_likelier():
    homes = street()
    homes["M0"][60:] *= 0.4  # every reading scaled: a slowed meter (h1)
    every = [a for a in alerts(homes, closed=True) if a["meter_id"] == "M0"]
    got = fall_story([a for a in every if a["status"] == "open"], "M0")
    assert [(a["type"], a["subtype"]) for a in got] == [("theft", "consumption_drop")]
    hyp = got[0]["evidence"]["hypotheses"]
    assert hyp["likelier"] == "theft" and hyp["base_ratio"] < 0.8
    # The level CUSUM's report of the same fall is an update of that alert, not a second
    # alert.
    assert not [a for a in every if a["subtype"] == "decrease"]


def steady_and_noisy(days: int = 120, change_day: int = 80, factor: float = 1.8):
    """Two homes with the same usual day, one steady and one whose days vary a lot,
    both with the same lasting relative increase from ``change_day``."""
    rng = np.random.default_rng(3)
    shape = household(1, seed=3)[0]
    out = {}
    for name, sd in (("STEADY", 0.05), ("NOISY", 0.35)):
        daily = rng.lognormal(0, sd, (days, 1))
        x = shape[None, :] * daily * rng.lognormal(0, 0.1, (days, 48))
        x[change_day:] *= factor
        out[name] = x
    return out


def test_each_home_is_judged_against_its_own_spread_the_steady_one_sooner():
    got = alerts(steady_and_noisy())
    first = {m: min((day_of(a) for a in got if a["meter_id"] == m and a["subtype"] == "increase"),
                    default=None) for m in ("STEADY", "NOISY")}
    assert first["STEADY"] is not None and 80 <= first["STEADY"] <= 84
    assert first["NOISY"] is None or first["NOISY"] >= first["STEADY"]


def test_a_small_lasting_drift_is_not_a_habit_change():
    """15 % more from day 60: below change_min (30 %), not worth a call."""
    x = household(120, seed=4)
    x[60:] *= 1.15
    got = alerts({"M0": x})
    assert [a for a in got if a["type"] == "habit_change"] == []


def test_surge_days_within_the_cool_down_reopen_one_alert():
    """Three surge days a few days apart are one alert (one id), opened and reopened."""
    x = household(60, seed=6)
    for d in (30, 33, 36):
        x[d, 30:40] += 2.0  # +4 kW for five hours: a day far above the usual
    got = [a for a in alerts({"M0": x}, closed=True) if a["subtype"] == "daily"]
    opens = [a for a in got if a["status"] == "open"]
    assert len(opens) >= 2 and len({a["id"] for a in opens}) == 1
    assert {a["start"] for a in got} == {opens[0]["start"]}
