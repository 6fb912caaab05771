"""The self-supervised fleet theft model: its day features, its examples, that it learns
to tell tampered days from normal ones, its evidence and alerts, determinism and state."""

import numpy as np
import pandas as pd
import pytest

from models.attacks import h2, h5, h6
from models.backtest import run
from models.config import DetectorConfig
from models.engine import Engine
from models.evaluate.theft import _auc
from models.theft import (FEATURES, MODEL_COLUMNS, SHAPES, DayRef, FleetTheftModel,
                          TheftDetector, attacked_days, day_features, expand, uniforms)

F = {name: i for i, name in enumerate(FEATURES)}
MODEL_ON = DetectorConfig().replace(theft={"model": True, "rules": False})


def usual_day() -> np.ndarray:
    """A home's usual day (kW per half hour): a low night, a morning and a larger
    evening peak, so reversing it moves the peaks."""
    t = np.arange(48) / 2.0
    return 0.15 + 0.5 * np.exp(-((t - 7.5) / 1.2) ** 2) + 1.2 * np.exp(-((t - 19.5) / 1.8) ** 2)


def feats(day: np.ndarray) -> np.ndarray:
    return day_features(day[None, :], DayRef.simple(usual_day()[None, :]))[0]


# -- features on hand-built days ----------------------------------------------------------------

def test_the_usual_day_itself_fits_its_shape_at_its_level():
    f = feats(usual_day())
    assert f[F["shape_cor"]] == pytest.approx(1.0)
    assert abs(f[F["level"]]) < 1e-9 and abs(f[F["flatness"]]) < 1e-9
    assert f[F["reversal_gain"]] < 0 and f[F["zero_active"]] == 0


def test_a_flat_day_keeps_its_level_but_has_no_shape():
    f = feats(h5(usual_day()))
    assert abs(f[F["level"]]) < 1e-9  # the daily total is the usual one
    assert f[F["flatness"]] < -2.5  # no spread against a peaky usual day
    assert f[F["const_run"]] > 0.95  # one value all day long
    assert f[F["shape_cor"]] == 0.0


def test_a_reversed_day_fits_the_reversed_usual_shape_better():
    f = feats(h6(usual_day()))
    assert f[F["shape_cor"]] < 0.2
    assert f[F["reversed_cor"]] == pytest.approx(1.0)
    assert f[F["reversal_gain"]] > 0.8


def test_a_day_with_usually_active_hours_zeroed_shows_the_zero_run():
    day = h2(usual_day(), None, start_h=16, duration_h=6)  # the evening peak
    f = feats(day)
    assert f[F["zero_run"]] == pytest.approx(6 / 24)
    assert f[F["zero_active"]] > 0.4
    assert f[F["level"]] < -0.3 and f[F["minimum"]] < -1.0


def test_expanded_columns_are_the_features_and_their_pairwise_products():
    x = np.arange(1.0, len(FEATURES) + 1)[None, :]
    e = expand(x)
    assert e.shape == (1, len(MODEL_COLUMNS))
    i, j = F["level"], F["flatness"]
    assert e[0, MODEL_COLUMNS.index("level*flatness")] == x[0, i] * x[0, j]


# -- examples ----------------------------------------------------------------------------------

def test_the_random_draws_depend_only_on_seed_day_and_meter():
    keys = np.array([11, 22, 33], np.uint64)
    a = uniforms(0, 739000, keys, 5)
    assert np.array_equal(a[1:], uniforms(0, 739000, keys[1:], 5))  # not on the batch
    assert not np.array_equal(a, uniforms(1, 739000, keys, 5))
    assert not np.array_equal(a, uniforms(0, 739001, keys, 5))
    assert ((a >= 0) & (a < 1)).all()


def test_attacked_examples_are_the_attack_functions_of_models_attacks():
    day = np.tile(usual_day(), (700, 1))
    u = uniforms(0, 1, np.arange(700, dtype=np.uint64), 52)
    out, shape = attacked_days(day, u)
    assert set(shape.tolist()) == set(range(len(SHAPES)))  # every shape is drawn
    for k, name in enumerate(SHAPES):
        got = out[shape == k]
        if name == "h5":
            assert np.allclose(got, h5(usual_day()))
        elif name == "h6":
            assert np.allclose(got, h6(usual_day()))
        elif name in ("h1", "bypass"):
            ratio = got / usual_day()
            assert np.allclose(ratio, ratio[:, :1])  # one factor per day
            lo, hi = (0.1, 0.8) if name == "h1" else (0.2, 0.6)
            assert (ratio >= lo - 1e-9).all() and (ratio <= hi + 1e-9).all()
        elif name == "h2":
            zeros = (got == 0).sum(axis=1) / 2.0
            assert (zeros >= 4 - 0.5).all() and (zeros <= 12 + 0.5).all()


# -- the fleet model ------------------------------------------------------------------------------

def test_scores_use_the_river_models_arithmetic():
    rng = np.random.default_rng(0)
    m = FleetTheftModel(seed=0)
    X = rng.normal(size=(400, len(FEATURES)))
    lab = rng.integers(0, len(SHAPES) + 1, 400)
    m.add_examples(10, np.arange(400, dtype=np.uint64), X, lab)
    m.flush(11)
    frame = m.scaler.transform_many(pd.DataFrame(expand(X[:20]), columns=list(MODEL_COLUMNS)))
    for k, clf in enumerate(m.clfs):
        p = clf.predict_proba_many(frame)[True].to_numpy()
        assert np.allclose(m.shape_log_odds(X[:20])[:, k], np.log(p / (1 - p)), atol=1e-9)


def test_a_day_is_learned_only_once_a_later_day_closes():
    m = FleetTheftModel(seed=0)
    X = np.ones((4, len(FEATURES)))
    m.add_examples(5, np.arange(4, dtype=np.uint64), X, np.array([0, 1, 0, 2]))
    m.flush(5)
    assert m.examples == 0 and 5 in m.pending
    m.flush(6)
    assert m.examples == 4 and not m.pending and m.days_learned == 1


def test_a_big_fleets_day_teaches_a_canonical_subset_of_its_examples():
    rng = np.random.default_rng(2)
    X, lab = rng.normal(size=(60, len(FEATURES))), rng.integers(0, 8, 60)
    keys = np.arange(60, dtype=np.uint64)
    a, b = FleetTheftModel(seed=1, max_examples=10), FleetTheftModel(seed=1, max_examples=10)
    a.add_examples(4, keys, X, lab)
    for part in (slice(40, 60), slice(0, 40)):  # the same day arriving in other calls
        b.add_examples(4, keys[part], X[part], lab[part])
    a.flush(5), b.flush(5)
    assert a.examples == b.examples == 10
    assert a.to_bytes() == b.to_bytes()


def test_a_days_queue_is_the_same_whatever_calls_and_replays_brought_it():
    """The stream queues a day area by area, and a worker restarted between a model
    write and an area's state write replays that area's day close: the queue, the
    bytes and the subset the day will teach are those of the whole day at once."""
    rng = np.random.default_rng(4)
    X, lab = rng.normal(size=(60, len(FEATURES))), rng.integers(0, 8, 60)
    keys = rng.permutation(60).astype(np.uint64)
    whole, parts = FleetTheftModel(seed=2, max_examples=16), FleetTheftModel(seed=2, max_examples=16)
    whole.add_examples(7, keys, X, lab)
    moved = []
    for part in (slice(30, 60), slice(0, 10), slice(10, 30), slice(0, 10)):  # a replay
        before = parts.revision
        parts.add_examples(7, keys[part], X[part], lab[part])
        moved.append(parts.revision > before)
    assert moved[0] and not moved[-1]  # the replay changed nothing
    assert parts.to_bytes() == whole.to_bytes()
    # the 16 smallest hashes of the whole day, as flush would choose from it all
    u = uniforms(2 + 1, 7, keys * np.uint64(16) + lab.astype(np.uint64), 1)[:, 0]
    assert sorted(parts.pending[7][0].tolist()) == sorted(keys[np.argsort(u)[:16]].tolist())
    assert len(whole.to_bytes()) < 16_000 + len(FleetTheftModel(seed=2).to_bytes())


def test_revision_counts_changes_and_is_not_state():
    m = FleetTheftModel(seed=0)
    blank = m.to_bytes()
    m.flush(10)  # nothing queued: nothing learned
    assert m.revision == 0 and m.to_bytes() == blank
    m.add_examples(3, np.arange(4, dtype=np.uint64), np.ones((4, len(FEATURES))),
                   np.array([0, 1, 0, 2]))
    m.flush(4)
    assert m.revision == 2
    assert FleetTheftModel.from_bytes(m.to_bytes()).revision == 0
    assert FleetTheftModel.from_bytes(m.to_bytes()).to_bytes() == m.to_bytes()


def test_an_areas_shard_is_the_by_area_partition_kafkas_default_partitioner_gives_it():
    from aiokafka.partitioner import DefaultPartitioner

    from models.theft import area_partitions

    ids = [f"AREA{i:03d}" for i in range(50)]
    got = area_partitions(ids, 4)
    assert got.tolist() == [DefaultPartitioner()(a.encode(), [0, 1, 2, 3], [0, 1, 2, 3])
                            for a in ids]
    assert set(got.tolist()) == {0, 1, 2, 3}
    assert area_partitions(ids, 1).tolist() == [0] * 50


def test_the_model_state_round_trips_through_bytes_exactly():
    rng = np.random.default_rng(1)
    m = FleetTheftModel(seed=3)
    for d in range(3):
        m.add_examples(d, np.arange(50, dtype=np.uint64), rng.normal(size=(50, len(FEATURES))),
                       rng.integers(0, 8, 50))
    m.flush(2)  # day 2 still queued
    data = m.to_bytes()
    back = FleetTheftModel.from_bytes(data)
    assert back.to_bytes() == data
    X = rng.normal(size=(10, len(FEATURES)))
    assert np.array_equal(back.score(X)[0], m.score(X)[0])
    back.flush(3), m.flush(3)
    assert back.to_bytes() == m.to_bytes()


def test_state_of_another_version_is_refused():
    import pickle

    with pytest.raises(ValueError, match="version"):
        FleetTheftModel.from_bytes(pickle.dumps((99, {})))


# -- through the engine, on a simulated fleet ---------------------------------------------------------

@pytest.fixture(scope="module")
def sim():
    """40 simulated customers for 45 days of half hours, no anomalies: the fleet the
    model learns from."""
    from models.evaluate import prepare_sim

    return prepare_sim(customers=40, areas=4, days=45, seed=5, rate=0.0, extra_voltage=0,
                       interval_s=1800)


def _run(sim, config=MODEL_ON, df=None, partitions=1, **kw):
    eng = Engine(sim.fleet, config, tz=sim.tz, country=sim.country, partitions=partitions)
    res = run(sim.readings if df is None else df, sim.fleet, engine=eng, **kw)
    return eng, res


def test_the_model_learns_to_separate_tampered_days_from_normal_ones(sim):
    """Trained on the fleet's own days through day 40, it scores the fleet's day 41
    and the same day rewritten by each attack: tampered days score higher."""
    end = int(sim.readings["ts"].min()) - 1800 + 41 * 86400
    eng, res = _run(sim, df=sim.readings[sim.readings["ts"] <= end])
    model = eng.theft.model
    assert model.days_learned >= 20 and model.examples > 1000
    st = res.state
    assert (st["h_dsec"] == 86400).all()  # day 41 complete, not closed yet
    det = eng.theft
    vec = st["h_dvec"].astype(np.float64) * 2
    E = vec.sum(axis=1) / 2
    ref = det._reference(st, np.arange(len(st)), _areas(sim, eng), E, np.ones(len(st), bool))
    normal = model.score(day_features(vec, ref))[0]
    u = uniforms(99, 1, np.arange(len(st), dtype=np.uint64), 52)
    for k, name in enumerate(SHAPES):
        uk = u.copy()
        uk[:, 0] = (k + 0.5) / len(SHAPES)  # this shape for every meter
        tampered = model.score(day_features(attacked_days(vec, uk)[0], ref))[0]
        assert _auc(tampered, normal) >= 0.85, name
    untrained = FleetTheftModel().score(day_features(vec, ref))[0]
    assert (untrained == 0).all()


def _areas(sim, eng):
    from models.base import AreaView

    n = len(sim.fleet)
    areas = np.arange(len(sim.fleet.area_id))
    return AreaView(areas, sim.fleet.area[np.arange(n)], eng.new_area_state(len(areas)))


def _flattened(sim, meter: str, onset_day: int) -> tuple[pd.DataFrame, int]:
    from models.attacks import apply_attack

    df = sim.readings.copy()
    t0 = int(df["ts"].min()) - 1800
    onset = t0 + onset_day * 86400
    sel = (df["meter_id"] == meter).to_numpy()
    x = apply_attack(df.loc[sel, "kwh"].to_numpy(), df.loc[sel, "ts"].to_numpy(), "h5", onset,
                     np.random.default_rng(0), sim.tz, interval_s=1800)
    df.loc[sel, "kwh"] = x
    return df, onset


def test_a_flattened_meter_raises_a_model_theft_alert_that_names_the_shape_and_onset(sim):
    meter = sim.fleet.meter_id[7]
    df, onset = _flattened(sim, meter, 33)
    _, res = _run(sim, df=df)
    found = [a for a in res.alerts if a["type"] == "theft" and a["status"] == "open"
             and a["meter_id"] == meter and a["evidence"].get("model")]
    assert found, "the flattened meter is reported by the model"
    others = {a["meter_id"] for a in res.alerts if a["evidence"].get("model")} - {meter}
    assert len(others) <= 2  # of the 39 clean meters
    a = found[0]
    ev = a["evidence"]
    assert ev["model"] == "fleet_self_supervised" and ev["attack_shape"] in SHAPES
    assert a["subtype"] in ("consumption_drop", "profile_distortion")
    detected = pd.Timestamp(a["detected_at"]).timestamp()
    assert onset < detected <= onset + 7 * 86400
    assert pd.Timestamp(a["start"]).timestamp() >= onset - 86400  # since when: the onset


def test_same_input_same_model_same_alerts_however_the_readings_are_batched(sim):
    meter = sim.fleet.meter_id[7]
    df, _ = _flattened(sim, meter, 33)
    e1, r1 = _run(sim, df=df)
    e2, r2 = _run(sim, df=df, chunk_s=3 * 3600)
    assert r1.alerts == r2.alerts
    assert e1.fleet_state() == e2.fleet_state()


def _shards(sim, partitions):
    from models.theft import area_partitions

    return area_partitions(sim.fleet.area_id, partitions)[sim.fleet.area]


def test_each_shard_learns_exactly_what_its_meters_alone_would_teach(sim):
    """Two shards (2 by-area partitions): shard q's model is, byte for byte, the model
    of a one-shard run over shard q's meters only; its alerts are theirs."""
    meter = sim.fleet.meter_id[7]
    df, _ = _flattened(sim, meter, 33)
    shard = _shards(sim, 2)
    assert set(shard.tolist()) == {0, 1}
    both, res = _run(sim, df=df, partitions=2)
    assert sorted(both.theft.models) == [0, 1]
    for q in (0, 1):
        mine = {sim.fleet.meter_id[i] for i in np.flatnonzero(shard == q)}
        alone, res_q = _run(sim, df=df[df["meter_id"].isin(mine)])
        assert alone.theft.models[0].to_bytes() == both.theft.models[q].to_bytes(), q
        model_alerts = lambda r: [a for a in r.alerts if a["evidence"].get("model")]  # noqa: E731
        assert model_alerts(res_q) == [a for a in model_alerts(res) if a["meter_id"] in mine]
    one = _run(sim, df=df)[0]
    assert one.theft.models[0].to_bytes() not in (both.theft.models[0].to_bytes(),
                                                   both.theft.models[1].to_bytes())


def test_same_input_and_seed_give_the_same_shard_models_byte_for_byte(sim):
    meter = sim.fleet.meter_id[7]
    df, _ = _flattened(sim, meter, 33)
    e1, r1 = _run(sim, df=df, partitions=2)
    e2, r2 = _run(sim, df=df, partitions=2, chunk_s=5 * 3600)
    assert r1.alerts == r2.alerts
    assert {q: m.to_bytes() for q, m in e1.theft.models.items()} == {
        q: m.to_bytes() for q, m in e2.theft.models.items()}
    assert e1.fleet_state() == e2.fleet_state()


def test_the_rules_switch_says_which_theft_checks_report(sim):
    meter = sim.fleet.meter_id[7]
    df, _ = _flattened(sim, meter, 33)
    rules_only = DetectorConfig()
    _, both = _run(sim, DetectorConfig().replace(theft={"model": True, "rules": True}), df=df)
    _, model_only = _run(sim, df=df)
    _, rules = _run(sim, rules_only, df=df)
    sources = lambda res: {a["evidence"].get("model", "rules") for a in res.alerts  # noqa: E731
                           if a["type"] == "theft" and a["status"] == "open"
                           and a["subtype"] in ("consumption_drop", "profile_distortion")}
    assert sources(both) == {"rules", "fleet_self_supervised"}
    assert sources(model_only) == {"fleet_self_supervised"}
    assert sources(rules) == {"rules"}


def test_the_model_off_adds_no_state_and_on_stays_within_its_share():
    from models.base import Fleet

    f = Fleet.simple(2)
    off, on = Engine(f), Engine(f, MODEL_ON)
    assert off.theft is None and off.fleet_state() == b""
    assert not any(name.startswith("t_") for name in off.dtype.names)
    extra = on.state_bytes - off.state_bytes
    # the model's per-meter statistics (~50 B) and the evidence pack's 14 days (~64 B)
    assert 0 < extra <= 128 and on.state_bytes <= 2048
    assert isinstance(on.theft, TheftDetector)


# -- the evaluation's daily-score AUC ------------------------------------------------------------

def test_the_daily_score_auc_counts_attacked_days_from_onset_against_clean_days():
    from datetime import date

    from models.base import Fleet
    from models.evaluate.theft import theft_day_auc
    from models.evaluate.inject import Label, VirtualSet

    fleet = Fleet.simple(2)
    fleet.meter_id = ["H1", "H1~h5"]
    fleet.index = {"H1": 0, "H1~h5": 1}
    d0 = date(2013, 3, 1).toordinal()
    onset = (d0 - date(1970, 1, 1).toordinal()) * 86400
    lab = Label("h5", "H1~h5", "H1", onset, None, onset + 30 * 86400, 1800, "UTC")
    vs = VirtualSet(pd.DataFrame(), fleet, [lab], ["H1"], {}, "UTC")
    record = [(0, d0 + i, -1.0 - 0.01 * i) for i in range(-10, 20)]  # the clean copy
    record += [(1, d0 - 1, 50.0)]  # before onset: the clean copy's day, left out
    record += [(1, d0 + i, 2.0 if i < 7 else -1.5) for i in range(20)]  # adapted later
    auc = theft_day_auc(vs, record)
    assert auc["first_week"] == 1.0
    assert auc["attacked_days"] == 20 and auc["clean_days"] == 30
    assert 0.3 < auc["all"] < 1.0 and auc["by_shape"] == {"h5": auc["all"]}
    assert _auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5  # ties count half


# -- the evidence an alert carries (what the work list ranks and shows) ---------------------

def _scaled(sim, meter: str, onset_day: int, share: float) -> tuple[pd.DataFrame, int]:
    """The meter reports only ``share`` of its load from ``onset_day`` (a bypass)."""
    df = sim.readings.copy()
    onset = int(df["ts"].min()) - 1800 + onset_day * 86400
    sel = ((df["meter_id"] == meter) & (df["ts"] > onset)).to_numpy()
    df.loc[sel, "kwh"] *= share
    return df, onset


def test_an_alert_says_the_unbilled_energy_since_onset_and_shows_the_days_around_it(sim):
    meter = sim.fleet.meter_id[3]
    df, onset = _scaled(sim, meter, 30, 0.3)
    _, res = _run(sim, df=df)
    mine = [a for a in res.alerts if a["meter_id"] == meter and a["evidence"].get("model")]
    opened = [a for a in mine if a["status"] == "open"]
    assert opened, "the bypassed meter is reported by the model"
    ev = opened[0]["evidence"]
    days = ev["daily"]
    assert 7 <= len(days) <= 14 and days == sorted(days, key=lambda d: d["day"])
    before = [d for d in days if d["day"] < ev["since_day"]]
    after = [d for d in days if d["day"] >= ev["since_day"]]
    assert before and after  # the evidence pack shows both sides of the onset
    assert all(d["kwh"] < 0.5 * d["usual_kwh"] for d in after[1:])
    # what the meter did not see since onset, against what the days themselves say
    missing = sum(d["usual_kwh"] - d["kwh"] for d in after)
    assert ev["unbilled_kwh"] == pytest.approx(missing, rel=0.25)
    # the simulated meter's V x I still sees the whole load, and its area meter the loss
    assert ev["corroboration"] == ["theft/area_loss", "theft/energy_mismatch"]
    assert 0 < ev["risk"] <= 1


def test_an_open_alert_is_refreshed_weekly_under_its_opening_id(sim):
    meter = sim.fleet.meter_id[3]
    df, _ = _scaled(sim, meter, 30, 0.3)
    _, res = _run(sim, df=df)
    mine = [a for a in res.alerts if a["meter_id"] == meter and a["evidence"].get("model")]
    assert [a["status"] for a in mine][:2] == ["open", "update"]
    assert len({a["id"] for a in mine}) == 1  # updates (and a close) keep the opening's id
    first, later = mine[0]["evidence"], mine[1]["evidence"]
    assert later["days"] % 7 == 1 and later["days"] > first["days"]  # weekly from onset
    assert later["unbilled_kwh"] > first["unbilled_kwh"]


def test_the_rules_and_the_model_reporting_the_same_day_raise_two_alerts_not_one_id(sim):
    meter = sim.fleet.meter_id[7]
    df, _ = _flattened(sim, meter, 33)
    _, both = _run(sim, DetectorConfig().replace(theft={"model": True, "rules": True}), df=df)
    opens = [a for a in both.alerts if a["status"] == "open"]
    assert len({a["id"] for a in opens}) == len(opens)  # no open shares another's id
    model = {a["id"] for a in both.alerts if a["evidence"].get("model")}
    rules = {a["id"] for a in both.alerts if a["type"] == "theft"
             and not a["evidence"].get("model")}
    assert model and rules and not model & rules
