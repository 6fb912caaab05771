"""The weather feed through a real worker on a real broker: hourly temperatures reach
each area's state in order with its readings, once, however often they are delivered;
a bad weather message is rejected and costs only itself."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from models.backtest import load_readings, run
from models.engine import Engine
from models.weather import WEATHER_AREA_FIELDS
from stream.registry import Registry
from stream.worker.state import AreaState
from tests.support.pipeline import Env, alert_keys, final_states

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
DAYS = 4
WX_FIELDS = [f[0] for f in WEATHER_AREA_FIELDS]


def publish(env: Env, items) -> None:
    """(kind, key, value) to the readings or the weather topic, in order."""
    async def go():
        prod = AIOKafkaProducer(bootstrap_servers=env.bootstrap, linger_ms=5)
        await prod.start()
        try:
            futs = [await prod.send(env.topics["weather" if kind == "weather" else "readings"],
                                    key=k, value=v) for kind, k, v in items]
            await asyncio.gather(*futs)
        finally:
            await prod.stop()
    asyncio.run(go())


def reference(env: Env):
    """The backtest over the same readings and the same weather, as a file."""
    from models.backtest import load_weather

    env.sim.write_readings(env.tmp / "r.parquet", days=DAYS)
    env.sim.weather_frame(days=DAYS).to_csv(env.tmp / "w.csv", index=False)
    reg = Registry.load(env.registry_path)
    res = run(load_readings(env.tmp / "r.parquet"), reg.fleet, tz="Asia/Shanghai", country="CN",
              weather=load_weather(env.tmp / "w.csv", reg.fleet))
    return res, reg


def area_records(env: Env, eng: Engine) -> dict[str, np.void]:
    """Each area's record as the table's changelog holds it last."""
    from stream.worker.state import is_internal_key

    last = {m.key: m.value for m in env.read(f"{env.app_id}-areas-changelog", idle_s=4)
            if not is_internal_key(m.key)}
    return {k.decode(): AreaState.from_bytes(v, eng.dtype, eng.area_dtype).area_record[0]
            for k, v in last.items()}


def test_temperatures_reach_each_area_once_and_each_homes_days_as_in_the_backtest(kafka_bootstrap, tmp_path):
    env = Env(kafka_bootstrap, tmp_path, weather=True, n_customers=24)
    res, reg = reference(env)
    expected = {(a["id"], a["status"], a["detected_at"]) for a in res.alerts}
    feed = list(env.sim.iter_feed(days=DAYS))
    wx = [x for x in feed if x[0] == "weather"]
    assert len(wx) == DAYS * 24 * 3 and feed[0][0] == "weather"
    n_readings = int(env.sim.emitted["readings"])
    try:
        _, port = env.start_worker()
        # The temperatures first, all of them (a feed read ahead of a backlog of
        # readings: each area keeps its last days' figures), then the readings.
        eng = Engine(reg.fleet)
        publish(env, wx)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            recs = area_records(env, eng)
            if len(recs) == 3 and all(r["wa_pday"] > 0 and bin(int(r["wa_hours"])).count("1") == 24
                                      for r in recs.values()):
                break
        publish(env, [x for x in feed if x[0] == "readings"])
        assert env.wait_applied([port], n_readings) == n_readings
        # Every temperature again (a restarted ingest, a producer's retry), then the
        # last hours' readings again behind them on the same partitions: once those are
        # seen as duplicates, the resent temperatures were handled before them.
        tail = [x for x in feed[-len(feed) // (DAYS * 4):] if x[0] == "readings"]
        publish(env, wx + tail)
        resent = sum(len(json.loads(v)["readings"]) for _, _, v in tail)
        deadline = time.monotonic() + 120
        while (env.metric(port, "meterwatch_readings_duplicate_total") < resent
               and time.monotonic() < deadline):
            time.sleep(1)
        assert env.metric(port, "meterwatch_readings_duplicate_total") == resent
        assert env.metric(port, "meterwatch_readings_applied_total") == n_readings
        got = area_records(env, eng)
        assert set(got) == set(reg.fleet.area_id)
        for area_id, rec in got.items():
            want = res.area_state[reg.area_index[area_id]]
            assert rec["wa_pday"] > 0 and rec["wa_hours"] != 0
            for f in WX_FIELDS:  # applied once, as the backtest applied it
                assert rec[f].tobytes() == want[f].tobytes(), (area_id, f)
        # Each home learned its temperature response from the same days as the backtest's
        # (a temperature arriving after its day closed would leave it unlearned).
        states = final_states(env, eng.dtype, eng.area_dtype)
        assert (res.state["hw_dd0"] >= 0).all()
        for mid, rec in states.items():
            assert rec.tobytes() == res.state[reg.fleet.index[mid]].tobytes(), mid
        assert alert_keys(env.read(env.topics["alerts"], min_count=len(expected))) == expected
        assert env.read(env.topics["dead"], idle_s=1) == []
    finally:
        env.stop_all()


def test_a_bad_weather_message_is_rejected_and_costs_only_itself(kafka_bootstrap, tmp_path):
    env = Env(kafka_bootstrap, tmp_path, weather=True, n_customers=12)
    feed = list(env.sim.iter_feed(days=1))
    bad = [("weather", b"A001", b'{"area_id": "A001", "ts": "soon", "temperature_c": 3}'),
           ("weather", b"A009", b'{"area_id": "A009", "ts": 1772380800, "temperature_c": 3}'),
           ("weather", b"A001", b"\xff not json")]
    n_readings = int(env.sim.emitted["readings"])
    try:
        _, port = env.start_worker()
        publish(env, bad + feed)
        assert env.wait_applied([port], n_readings) == n_readings
        rejected = [json.loads(m.value) for m in env.read(env.topics["rejected"], idle_s=3)]
        assert sorted(r["reason"] for r in rejected) == ["bad_timestamp", "malformed_json",
                                                         "unknown_area"]
        assert all(r["source"]["topic"] == env.topics["weather"] for r in rejected)
        assert env.read(env.topics["dead"], idle_s=1) == []
    finally:
        env.stop_all()
