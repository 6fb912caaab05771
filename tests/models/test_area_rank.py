"""The live area-loss ranking (issue 14): the area_loss alert names the meter whose
deficit explains the area's unaccounted energy, slot by slot, by the likelihood ratio
of models/theft_area.py accumulated in the stream (models/area.py)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from models.area import AreaDetector
from models.backtest import run, to_columns
from models.base import Fleet
from models.config import DetectorConfig
from models.engine import Engine

TZ = "Asia/Shanghai"
DAY0 = int(datetime(2026, 3, 2, tzinfo=ZoneInfo(TZ)).timestamp())  # a Monday
SLOT_H = np.arange(48) / 2
N, ONSET, DAYS = 8, 30, 45
THIEF, OTHER = "M3", "M5"


def household(days: int, seed: int, level: float) -> np.ndarray:
    """(days, 48) kWh per half hour: base load, morning and evening peaks, noise."""
    rng = np.random.default_rng(seed)
    shape = (0.12 + 0.25 * np.exp(-((SLOT_H - 7.5) / 1.2) ** 2)
             + 0.6 * np.exp(-((SLOT_H - 19.5) / 2) ** 2))
    return shape * rng.lognormal(0, 0.12, (days, 1)) * rng.lognormal(0, 0.25, (days, 48)) * level


def street(days: int = DAYS, thief_keeps: float = 0.4, other=None) -> dict[str, np.ndarray]:
    """Eight homes and their area meter ("TX": their true use plus 3 % technical loss);
    the thief's meter reports ``thief_keeps`` of its use from ONSET; ``other(x)``
    rewrites another home's true use (an honest change the area meter sees too)."""
    true = {f"M{i}": household(days, i, 1 + 0.3 * i) for i in range(N)}
    if other is not None:
        true[OTHER] = other(true[OTHER].copy())
    told = dict(true)
    told[THIEF] = true[THIEF].copy()
    told[THIEF][ONSET:] *= thief_keeps
    told["TX"] = sum(true.values()) * 1.03
    return told


def frame(series: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = []
    for mid, x in series.items():
        ts = DAY0 + 1800 * (np.arange(x.size) + 1)
        rows.append(pd.DataFrame({"meter_id": mid, "ts": ts, "interval_s": 1800, "kwh": x.ravel()}))
    return pd.concat(rows).sort_values(["ts", "meter_id"]).reset_index(drop=True)


def area_fleet(series) -> Fleet:
    fleet = Fleet.simple(len(series), is_area_meter=[m == "TX" for m in series])
    fleet.meter_id = list(series)
    fleet.index = {m: i for i, m in enumerate(fleet.meter_id)}
    return fleet


def area_alerts(series, **kw) -> list[dict]:
    res = run(frame(series), area_fleet(series), tz=TZ, country="CN", **kw)
    return [a for a in res.alerts if a["subtype"] == "area_loss"]


def suspects(alert: dict) -> list[str]:
    return [s["meter_id"] for s in alert["evidence"]["suspects"]]


def day_of(a) -> int:
    return (int(datetime.fromisoformat(a["detected_at"]).timestamp()) - DAY0 - 1) // 86400


def test_a_meter_reporting_part_of_its_use_ranks_first_with_its_likelihood_ratio():
    got = area_alerts(street())
    opening = got[0]
    assert opening["status"] == "open" and ONSET <= day_of(opening) <= ONSET + 3
    first = opening["evidence"]["suspects"][0]
    assert first["meter_id"] == THIEF and first["rank"] == 1
    assert first["log_lr"] > np.log(100)  # decisive, from two days of slots
    # its deficit: what it no longer reports, a share of its usual day
    assert 0 < first["deficit_kwh_per_day"] < first["usual_day_kwh"]
    # every customer, best first, the next a long way behind
    rest = opening["evidence"]["suspects"][1:]
    assert len(rest) == N - 1 and [s["rank"] for s in rest] == list(range(2, N + 1))
    assert rest[0]["log_lr"] < first["log_lr"] - np.log(100)


def test_a_customer_whose_use_fell_while_the_balance_did_not_move_is_not_ranked_above_the_thief():
    def away_then_less(x):
        x[20:] *= 0.5  # a big home halves its use ten days before the theft, for good
        return x

    got = area_alerts(street(other=away_then_less))
    assert got and all(suspects(a)[0] == THIEF for a in got if a["status"] != "closed")
    # ... where the old ranking (by each meter's own fall) put the bigger fall first
    fell = next(a for a in got if a["status"] == "open")["evidence"]["suspects"]
    assert OTHER not in [s["meter_id"] for s in fell][:1]


def test_a_week_away_before_the_theft_earns_no_suspicion():
    def away(x):
        x[20:27] *= 0.3
        return x

    got = area_alerts(street(other=away))
    opening = next(a for a in got if a["status"] == "open")
    ev = {s["meter_id"]: s["log_lr"] for s in opening["evidence"]["suspects"]}
    assert suspects(opening)[0] == THIEF and ev[OTHER] < 0 < ev[THIEF]
    assert ev[OTHER] < ev[THIEF] - np.log(100)


def test_the_ranking_is_refreshed_while_the_alert_is_open_and_keeps_its_id():
    got = area_alerts(street(days=50))
    assert [a["status"] for a in got][0] == "open"
    assert {a["id"] for a in got} == {got[0]["id"]}
    last = [a for a in got if day_of(a) <= ONSET + 14][-1]
    assert suspects(last)[0] == THIEF


def test_the_per_meter_state_is_eight_bytes_and_the_area_state_small():
    det = AreaDetector()
    assert np.dtype([f for f in det.fields]).itemsize == 8
    assert np.dtype([f for f in det.area_fields]).itemsize <= 400
    eng = Engine(Fleet.simple(3), DetectorConfig().replace(theft={"model": True}))
    assert eng.state_bytes <= 2048


def test_the_evidence_stays_bounded_over_a_long_theft():
    series = street(days=90)
    fleet = area_fleet(series)
    res = run(frame(series), fleet, tz=TZ, country="CN")
    llr = res.state["al_llr"]
    assert np.isfinite(llr).all() and np.isfinite(res.state["al_def"]).all()
    # EW with a 7-day horizon: at most ~10 days' worth of the thief's best slots
    per_slot = np.abs(series["TX"] - sum(series[m] for m in fleet.meter_id if m != "TX")).max()
    assert llr.max() < 48 * 11 * per_slot / 0.01
    assert np.isfinite(res.area_state["al_coef"]).all()


@pytest.mark.parametrize("chunk_s", [1800, 3 * 3600, 7 * 86400])
def test_the_backtest_ranks_the_same_whatever_its_calls(chunk_s):
    series = street(days=40)
    assert area_alerts(series, chunk_s=chunk_s) == area_alerts(series)


def stream_shaped(series, split_area_meter: bool = False):
    """One engine call per interval, as a data concentrator sends an area's readings
    (with ``split_area_meter``, the area meter's reading in a call of its own)."""
    fleet = area_fleet(series)
    eng = Engine(fleet, tz=TZ, country="CN")
    st, ast = eng.new_state(len(fleet)), eng.new_area_state(1)
    rows, cols = to_columns(frame(series), fleet)
    meters, areas = np.arange(len(fleet)), np.array([0])
    found = []
    tx = fleet.is_area_meter[rows]
    for ts in np.unique(cols["ts"]):
        at = cols["ts"] == ts
        parts = [at & ~tx, at & tx] if split_area_meter else [at]
        for sel in parts:
            found += eng.process(rows[sel], cols[sel], st, ast, meters, areas).findings
    return [f for f in found if f.subtype == "area_loss"], st, fleet


def test_the_stream_ranks_as_the_backtest():
    series = street(days=40)
    live, _, fleet = stream_shaped(series)
    back = area_alerts(series)
    assert [(f.action, [s["meter_id"] for s in f.evidence["suspects"]],
             [s["log_lr"] for s in f.evidence["suspects"]]) for f in live if f.action != "close"] \
        == [(a["status"], suspects(a), [s["log_lr"] for s in a["evidence"]["suspects"]])
            for a in back if a["status"] != "closed"]


def test_readings_that_come_apart_from_their_area_meters_count_for_nothing():
    series = street(days=40)
    found, st, _ = stream_shaped(series, split_area_meter=True)
    assert (st["al_llr"] == 0).all() and (st["al_def"] == 0).all()
    assert [f for f in found if f.action == "open"] == []  # nor in the daily balance


def test_a_slot_with_a_customer_missing_has_no_balance():
    series = street(days=40)
    df = frame(series)
    gone = (df["meter_id"] == "M1") & ((df["ts"] - DAY0) % 86400 == 6 * 1800)  # 03:00 daily
    fleet = area_fleet(series)
    full = run(df, fleet, tz=TZ, country="CN").area_state
    holed = run(df[~gone], fleet, tz=TZ, country="CN").area_state
    # the last day's balanced slots (the technical-loss statistics' count) ...
    assert full["al_tday"][0, 0] == 48 and holed["al_tday"][0, 0] == 47
    # ... and the day balance still judges the day (99.7 % coverage): the meters scored
    assert holed["al_ndays"][0] == full["al_ndays"][0] and holed["al_w"][0] > 0


def test_the_technical_loss_is_learned_on_normal_days_only():
    series = street(days=45)
    fleet = area_fleet(series)
    res = run(frame(series), fleet, tz=TZ, country="CN")
    coef = res.area_state["al_coef"][0]
    A = series["TX"][:ONSET].ravel()
    y = A - sum(series[m][:ONSET] for m in fleet.meter_id if m != "TX").ravel()
    tech = coef[0] + coef[1] * A + coef[2] * A * A
    # the fit is the 3 % loss of the normal days, not pulled up by the stolen energy
    assert np.abs(y - tech).max() < 0.002 * A.max()
    assert res.area_state["al_open"][0] == 1


def test_with_the_theft_model_each_suspect_adds_its_own_evidence_with_weight_one():
    config = DetectorConfig().replace(theft={"model": True})
    got = area_alerts(street(), config=config)
    opening = next(a for a in got if a["status"] == "open")
    for s in opening["evidence"]["suspects"]:
        assert s["own_evidence"] >= 0
        assert s["log_lr"] == pytest.approx(s["area_log_lr"] + s["own_evidence"], abs=0.02)
    assert suspects(opening)[0] == THIEF


def test_state_is_the_same_byte_for_byte_whether_areas_come_together_or_one_by_one():
    """The stream applies one area's interval per call, in its message's order; the
    backtest a day of every area per call: the meter records (the slot sums included)
    must not depend on it (the pipeline tests compare them byte for byte)."""
    from models.evaluate import prepare_sim

    sim = prepare_sim(customers=30, areas=3, days=20, seed=7, rate=0.0, extra_voltage=0,
                      interval_s=1800)
    fleet = sim.fleet
    back = run(sim.readings, fleet, tz=sim.tz, country=sim.country)
    eng = Engine(fleet, tz=sim.tz, country=sim.country)
    st, ast = eng.new_state(len(fleet)), eng.new_area_state(len(fleet.area_id))
    rows, cols = to_columns(sim.readings, fleet)
    rng = np.random.default_rng(0)
    for ts in np.unique(cols["ts"]):
        at = np.flatnonzero(cols["ts"] == ts)
        for a in np.unique(fleet.area[rows[at]]):
            sel = rng.permutation(at[fleet.area[rows[at]] == a])  # a message's own order
            meters = np.unique(rows[sel])
            s, sa = st[meters], ast[[a]]
            eng.process(rows[sel], cols[sel], s, sa, meters, np.array([a]))
            st[meters], ast[[a]] = s, sa
    assert (fleet.is_area_meter.sum() > 0) and (back.state["al_llr"] != 0).any()
    assert st.tobytes() == back.state.tobytes()
