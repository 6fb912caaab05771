"""The habit level test with a weather feed: a home heated by electricity whose use
follows the cold is not a habit change; a real change still is."""

import numpy as np
import pandas as pd
import pytest

from models.backtest import run
from models.base import Fleet
from tests.models.test_habit import DAY0, TZ, frame, household

DAYS = 70
COOL = (6, 12)  # a cool snap while habits are still being learned: days 6..11
COLD = (40, 52)  # a cold spell: days 40..51, ten degrees below the days before


def temperatures(seed: int = 1) -> np.ndarray:
    """Daily mean temperature (degC): about 9 degC with mild day-to-day weather, a cool
    snap in the first weeks and a cold spell."""
    rng = np.random.default_rng(seed)
    w, out = 0.0, []
    for _ in range(DAYS):
        w = 0.7 * w + rng.normal(0, 1.0)
        out.append(9.0 + w)
    t = np.array(out)
    t[COOL[0]:COOL[1]] -= 6.0
    t[COLD[0]:COLD[1]] -= 10.0
    return t


def heated(x: np.ndarray, temp: np.ndarray, per_dd: float) -> np.ndarray:
    """``x`` with electric heating: use up by ``per_dd`` per heating degree-day."""
    hdd = np.maximum(15.5 - temp, 0.0)
    return x * (1.0 + per_dd * hdd)[:, None]


def street(temp: np.ndarray, change_day: int | None = None) -> dict[str, np.ndarray]:
    """Eight homes of one area: seven heated with gas (use hardly moves with the cold),
    and H0, heated electrically (its use up ~8 % per heating degree-day: +80 % in the
    cold spell), with an optional real rise of 60 % from ``change_day``."""
    homes = {f"M{i}": heated(household(DAYS, seed=10 + i), temp, 0.005) for i in range(1, 8)}
    h0 = heated(household(DAYS, seed=3), temp, 0.08)
    if change_day is not None:
        h0[change_day:] *= 1.6
    return {"H0": h0, **homes}


def weather_frame(temp: np.ndarray) -> pd.DataFrame:
    """Hourly samples of the area (a daily cycle around each day's mean), as
    :func:`models.backtest.load_weather` returns them."""
    hours = np.arange(DAYS * 24)
    t = np.repeat(temp, 24) + 3.0 * np.cos(2 * np.pi * ((hours % 24) - 15) / 24)
    return pd.DataFrame({"area": 0, "ts": DAY0 + 3600 * hours, "temperature_c": t})


def openings(series, weather=None) -> list[dict]:
    fleet = Fleet.simple(len(series))
    fleet.meter_id = list(series)
    fleet.index = {m: i for i, m in enumerate(fleet.meter_id)}
    res = run(frame(series), fleet, tz=TZ, country="CN", weather=weather)
    return [a for a in res.alerts if a["status"] == "open"]


def rises(got: list[dict], meter: str = "H0") -> list[dict]:
    return [a for a in got if a["meter_id"] == meter
            and (a["type"], a["subtype"]) == ("habit_change", "increase")]


def test_without_weather_a_cold_spell_reads_as_a_habit_increase_of_the_electrically_heated_home():
    temp = temperatures()
    assert rises(openings(street(temp)))


def test_with_weather_the_heated_homes_cold_spell_is_no_habit_change():
    temp = temperatures()
    got = openings(street(temp), weather_frame(temp))
    assert rises(got) == []
    assert [a for a in got if a["type"] == "habit_change"] == []


@pytest.mark.parametrize("change_day", [30, 44], ids=["mild_weeks", "in_the_cold_spell"])
def test_with_weather_a_real_rise_of_the_heated_home_still_opens_within_a_week(change_day):
    temp = temperatures()
    got = rises(openings(street(temp, change_day=change_day), weather_frame(temp)))
    assert len(got) == 1
    day = (pd.Timestamp(got[0]["detected_at"]).timestamp() - DAY0) // 86400
    assert change_day <= day <= change_day + 7
