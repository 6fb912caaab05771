"""The self-supervised theft model in the live stream: one model per by-area partition,
kept in the worker's state table next to the areas' state, so that the stream raises
exactly the backtest's alerts (the model's included) and a worker killed with SIGKILL
carries on from the changelog to the same model, byte for byte.

The reference is the backtest with the stream's partition count (``topic_partitions``),
which builds one model per partition from that partition's areas, as the workers do.
The test fleet learns for 20 days, two meters tampered from day 12 (h5 flattened, h1
scaled down); to open model alerts in so short a run the test config trusts a home
after 5 days of history (``[habit] min_days``, default 14), counts evidence after 3
scored calm days (``[theft] min_days``, default 14) and alerts at 4 (``[theft] limit``,
default 8). Habit's rule-based drop and distortion findings are off (``[theft] rules``):
with both on, a rule's and the model's alert of one meter, subtype and start share an id
and a detection time, which these tests (as consumers) take for one record.
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

from models.backtest import load_readings, run
from models.config import DetectorConfig, to_toml
from models.engine import Engine
from models.theft import FleetTheftModel, TheftDetector
from stream.worker.processing import TheftShards
from stream.registry import Registry
from stream.worker.state import THEFT_PREFIX, theft_key
from tests.support.pipeline import Env, alert_keys, final_states, got_records

DAYS = 20
CONFIG = DetectorConfig().replace(theft={"model": True, "rules": False, "min_days": 3,
                                         "limit": 4.0}, habit={"min_days": 5})


class TheftEnv(Env):
    """A pipeline whose workers run the theft model (the test config above)."""

    def __init__(self, bootstrap, tmp):
        super().__init__(bootstrap, tmp, interval_s=1800)
        self.config_path = tmp / "detectors.toml"
        self.config_path.write_text(to_toml(CONFIG))
        m = self.sim.meter_ids
        self.sim.inject("h5", m[4], "2026-03-14T00:00:00+08:00")
        self.sim.inject("h1", m[12], "2026-03-14T00:00:00+08:00")

    def env(self, web_port: int) -> dict[str, str]:
        return super().env(web_port) | {"METERWATCH_DETECTORS_CONFIG": str(self.config_path)}

    def partitions(self) -> int:
        from stream.settings import load_settings

        return load_settings(env=self.env(0)).topic_partitions

    def reference(self):
        """The backtest of exactly the published readings, sharded as the stream."""
        path = self.tmp / "readings.parquet"
        self.sim.write_readings(path, days=DAYS)
        df = load_readings(path)
        reg = Registry.load(self.registry_path)
        eng = Engine(reg.fleet, CONFIG, tz="Asia/Shanghai", country="CN",
                     partitions=self.partitions())
        res = run(df, reg.fleet, engine=eng)
        models = {q: m.to_bytes() for q, m in eng.theft.models.items() if m.days_learned}
        return res, reg, len(df), models

    def stream_models(self) -> dict[int, bytes]:
        """Each partition's theft model as the changelog holds it last."""
        last = {}
        for m in self.read(f"{self.app_id}-areas-changelog", idle_s=4):
            if m.key.startswith(THEFT_PREFIX):
                assert m.key == theft_key(m.partition)  # on its own partition
                last[m.partition] = m.value
        return last


def _check_reference(res, models) -> set:
    opened = [a for a in res.alerts if a["evidence"].get("model") == "fleet_self_supervised"]
    assert {a["meter_id"] for a in opened} >= {"M000005", "M000013"}
    assert len(models) >= 2  # the areas are spread over several partitions, one model each
    return {(a["id"], a["status"], a["detected_at"]) for a in res.alerts}


def _wait_models(env: TheftEnv, want: dict, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        got = env.stream_models()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(2)


def _same_state(env: TheftEnv, res, reg) -> None:
    eng = Engine(reg.fleet, CONFIG)
    want = {m: res.state[reg.fleet.index[m]].tobytes() for m in reg.fleet.meter_id}
    deadline = time.monotonic() + 120
    while True:
        states = {m: r.tobytes() for m, r in final_states(env, eng.dtype, eng.area_dtype).items()}
        if states == want or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert states == want


def _no_misplaced_area(env: TheftEnv) -> None:
    for log in env.tmp.glob("worker-*.log"):
        assert "arrives on by-area partition" not in log.read_text(errors="replace")


@pytest.mark.kafka
@pytest.mark.slow
def test_the_stream_with_the_theft_model_raises_exactly_the_backtests_alerts(kafka_bootstrap,
                                                                              tmp_path):
    env = TheftEnv(kafka_bootstrap, tmp_path)
    res, reg, n_readings, models = env.reference()
    expected = _check_reference(res, models)
    try:
        _, port = env.start_worker()
        env.publish(env.messages(DAYS))
        assert env.wait_applied([port], n_readings, timeout_s=400) == n_readings
        got = env.read(env.topics["alerts"], min_count=len(expected))
        assert alert_keys(got) == expected
        import msgspec

        from models.alerts import enc_hook

        # Same id, status and time: the same record, the model's evidence and all.
        want = {(a["id"], a["status"], a["detected_at"]): json.loads(
            msgspec.json.encode(a, enc_hook=enc_hook)) for a in res.alerts}
        records = got_records(got)
        for a in records:
            assert a == want[(a["id"], a["status"], a["detected_at"])]
        assert any(a["evidence"].get("model") == "fleet_self_supervised" for a in records)
        assert _wait_models(env, models) == models
        _same_state(env, res, reg)
        assert env.read(env.topics["dead"], idle_s=1) == []
        _no_misplaced_area(env)
    finally:
        env.stop_all()


@pytest.mark.kafka
@pytest.mark.slow
def test_kill_9_mid_stream_restarts_to_the_same_model_and_alerts(kafka_bootstrap, tmp_path):
    env = TheftEnv(kafka_bootstrap, tmp_path)
    res, reg, n_readings, models = env.reference()
    expected = _check_reference(res, models)
    try:
        p, port = env.start_worker()
        env.publish(env.messages(DAYS))
        # Killed hard about halfway: the models have learned days, and queued some.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if env.metric(port, "meterwatch_readings_applied_total") >= n_readings / 2:
                break
            time.sleep(0.2)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert env.stream_models()  # the models had learned: the restart has some to load
        env.start_worker()
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            got = alert_keys(env.read(env.topics["alerts"], idle_s=6))
            if got >= expected:
                break
        assert got == expected
        # The restarted worker carried on from the changelog: the models it ends with
        # are those of a run without a crash (the backtest's, byte for byte).
        assert _wait_models(env, models) == models
        _same_state(env, res, reg)
    finally:
        env.stop_all()


# -- the worker's handle on the partitions' models (no broker) ---------------------------------

def _examples(model: FleetTheftModel, day: int, n: int = 6) -> None:
    rng = np.random.default_rng(day)
    model.add_examples(day, np.arange(n, dtype=np.uint64), rng.normal(size=(n, 17)),
                       np.arange(n) % 3)


def test_a_partitions_model_is_the_tables_and_a_failed_apply_goes_back_to_it():
    det = TheftDetector(partitions=4)
    shards = TheftShards(det)
    rev = shards.load(2, None)  # nothing stored: a fresh seeded model
    assert det.models[2].to_bytes() == det.new_model().to_bytes()
    assert shards.changed(2, rev) is None  # unchanged: nothing to write
    _examples(det.models[2], 10)
    blob = shards.changed(2, rev)
    assert blob is not None
    shards.written(2, blob)
    kept = det.models[2]
    assert shards.load(2, bytes(blob)) == kept.revision  # the same value: not reloaded
    assert det.models[2] is kept
    # An apply that changed the model, then failed: it is dropped, and the table's
    # bytes (what was last written) come back on the next load.
    _examples(det.models[2], 11)
    shards.forget(2)
    shards.load(2, blob)
    assert det.models[2].to_bytes() == blob and 11 not in det.models[2].pending
    # Another value in the table (a rebalance restored another worker's): reloaded.
    other = FleetTheftModel.from_bytes(blob)
    _examples(other, 12)
    shards.load(2, other.to_bytes())
    assert det.models[2].to_bytes() == other.to_bytes()
    assert set(det.models) == {2}  # the other partitions' models untouched: not made


def test_area_ids_that_would_be_the_workers_own_table_keys_are_refused():
    from stream.registry import RegistryError

    head = ("meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,"
            "solar,care\n")
    with pytest.raises(RegistryError, match="NUL"):
        Registry.from_csv_text(head + "M1,C1,\x00theft:0,A,220,am,residential,no,no\n")


@pytest.mark.kafka
@pytest.mark.slow
def test_an_outcome_entered_for_a_model_alert_teaches_every_partitions_model_and_ends_it(
        kafka_bootstrap, tmp_path):
    """console -> store -> the notifier's relay -> every by-area partition -> worker: a
    false alarm on the h1 meter's alert reaches each partition's model once (one copy
    per partition, read again after a restart without being learned twice) and ends
    the meter's suspicion in its area's state."""
    import asyncio

    from stream.notify.outcomes import OutcomeRelay
    from stream.settings import load_settings
    from stream.store import AlertStore

    env = TheftEnv(kafka_bootstrap, tmp_path)
    path = tmp_path / "readings.parquet"
    env.sim.write_readings(path, days=DAYS)
    n_readings = len(load_readings(path))
    eng = Engine(Registry.load(env.registry_path).fleet, CONFIG)
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    try:
        _, port = env.start_worker()
        env.publish(env.messages(DAYS))
        assert env.wait_applied([port], n_readings, timeout_s=400) == n_readings
        alert = next(a for a in got_records(env.read(env.topics["alerts"], idle_s=6))
                     if a["meter_id"] == "M000013" and a["status"] == "open"
                     and a["evidence"].get("model"))
        assert final_states(env, eng.dtype, eng.area_dtype)["M000013"]["t_open"] > 0
        store.ingest(alert, manager_id="mgr-01", now=time.time())
        store.resolve(alert["id"], "crew", "false_alarm", now=time.time())
        s = load_settings(env=env.env(0))

        async def relay_once():
            relay = OutcomeRelay(s, store)
            try:
                return await relay.tick()
            finally:
                await relay.close()

        assert asyncio.run(relay_once()) == 1
        learned = 'meterwatch_theft_outcomes_total{result="learned"}'
        deadline = time.monotonic() + 60
        while env.metric(port, learned) < env.partitions() and time.monotonic() < deadline:
            time.sleep(1)
        assert env.metric(port, learned) == env.partitions()

        def cases(blob: bytes) -> int:
            m = FleetTheftModel.from_bytes(blob)
            return len(m.outcomes_learned) + sum(len(q) for q in m.outcomes.values())

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            models = env.stream_models()
            if len(models) == env.partitions() and all(cases(v) == 1 for v in models.values()):
                break
            time.sleep(2)
        assert len(models) == env.partitions() and all(cases(v) == 1 for v in models.values())
        assert final_states(env, eng.dtype, eng.area_dtype)["M000013"]["t_open"] == 0
        assert env.read(env.topics["dead"], idle_s=1) == []
    finally:
        env.stop_all()
        store.close()
