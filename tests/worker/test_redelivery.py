"""Redelivery after a restart, on the real broker with real workers: readings a worker
reads again are duplicates (dropped and counted), never ``too_late`` rejects; a reading
never seen that is older than the dedupe window still is one."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.worker.test_pipeline import Env, _scenario, reference

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _rewind_ingest_group(env: Env) -> None:
    """Set the ingest consumer group back to the start of every input partition, as
    if the worker had died before committing anything."""
    async def go():
        c = AIOKafkaConsumer(bootstrap_servers=env.bootstrap, group_id=f"{env.app_id}-ingest",
                             enable_auto_commit=False)
        await c.start()
        try:
            parts = c.partitions_for_topic(env.topics["readings"]) or set()
            if not parts:
                await c._client.force_metadata_update()  # noqa: SLF001
                parts = c.partitions_for_topic(env.topics["readings"])
            tps = [TopicPartition(env.topics["readings"], p) for p in sorted(parts)]
            c.assign(tps)
            await c.commit({tp: 0 for tp in tps})
        finally:
            await c.stop()

    # The stopped worker is a static member: the group keeps it until its session ends
    # (METERWATCH_SESSION_TIMEOUT_S), and a commit before then is refused.
    from aiokafka.errors import CommitFailedError, UnknownMemberIdError

    deadline = time.monotonic() + 60
    while True:
        try:
            asyncio.run(go())
            return
        except (CommitFailedError, UnknownMemberIdError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _too_late(env: Env) -> list[dict]:
    recs = [json.loads(m.value) for m in env.read(env.topics["rejected"], idle_s=4)]
    return [r for r in recs if r["reason"] == "too_late"]


def test_readings_read_again_after_a_restart_are_duplicates_not_too_late(kafka_bootstrap,
                                                                        tmp_path):
    env = Env(kafka_bootstrap, tmp_path)
    _scenario(env.sim)
    days = 3  # 288 intervals: most of a replay is far beyond the 64-interval bitmap
    _, expected, reg, n = reference(env, days)
    try:
        p, port = env.start_worker()
        env.publish(env.messages(days))
        assert env.wait_applied([port], n) == n
        first_alerts = env.read(env.topics["alerts"], min_count=len(expected))
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        _rewind_ingest_group(env)
        _, port2 = env.start_worker()
        deadline = time.monotonic() + 240
        while (time.monotonic() < deadline  # (NaN until the worker serves /metrics)
               and not env.metric(port2, "meterwatch_readings_duplicate_total") >= n):
            time.sleep(1)
        assert env.metric(port2, "meterwatch_readings_duplicate_total") == n
        assert env.metric(port2, "meterwatch_readings_applied_total") == 0
        assert _too_late(env) == []
        # A reading never sent before, a day older than anything the meter applied:
        # a genuinely late reading, rejected as such, citing its own source message.
        mid = env.sim.meter_ids[4]
        late = json.dumps({"meter_id": mid, "ts": "2026-03-01T00:15:00+08:00",
                           "kwh": 0.1}).encode()
        env.publish([(b"late", late)])
        deadline = time.monotonic() + 60
        while (time.monotonic() < deadline and not env.metric(
                port2, 'meterwatch_readings_rejected_total{reason="too_late"}') >= 1):
            time.sleep(1)
        [rej] = _too_late(env)
        assert rej["meter_id"] == mid and rej["source"]["topic"] == env.topics["readings"]
        # Nothing was applied twice: the same alerts as the first run, no new ones.
        assert {m.value for m in env.read(env.topics["alerts"], idle_s=3)} == {
            m.value for m in first_alerts}
        assert env.read(env.topics["dead"], idle_s=1) == []
    finally:
        env.stop_all()
