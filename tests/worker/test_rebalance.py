"""Workers come and go under load: the group rebalances, and nothing is lost, doubled or
crashed.

Two worker processes on the real broker while input is being produced: a second worker
joins mid-stream, one is killed with SIGKILL and restarted, one leaves gracefully. Every
rebalance takes partitions away from a worker with polls still in flight; a worker must
neither commit them as its own nor stop on the commit error the rebalance causes. The
reference for "right" is the backtest over the same readings.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from models.backtest import load_readings
from models.engine import Engine
from tests.support.pipeline import Env, alert_keys, final_states, reference, scenario

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

APPLIED = "meterwatch_readings_applied_total"


def wait_for(what: str, cond, timeout_s: float) -> float:
    """Seconds until ``cond()`` held; fails the test naming ``what`` after the timeout."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout_s, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.25)
    return time.monotonic() - t0


def per_meter_input(env: Env) -> dict[str, tuple[int, int]]:
    """Each meter's number of readings and its last reading's ts, from the input."""
    df = load_readings(env.tmp / "readings.parquet")  # written by reference()
    g = df.groupby("meter_id")["ts"].agg(["count", "max"])
    return {m: (int(r["count"]), int(r["max"])) for m, r in g.iterrows()}


def test_workers_joining_killed_and_leaving_under_load_stay_up_and_apply_every_reading_once(
        kafka_bootstrap, tmp_path):
    # 15 areas: their keys hash to all 4 partitions, so every worker holds some.
    env = Env(kafka_bootstrap, tmp_path, n_areas=15, n_customers=300)
    scenario(env.sim)
    days = 16
    res, expected, reg, n_readings = reference(env, days)
    try:
        a, port_a = env.start_worker()
        wait_for("worker A serves metrics", lambda: env.metric(port_a, APPLIED) == 0, 60)
        feed = env.publish_paced(env.messages(days), seconds=60)
        wait_for("worker A applies", lambda: env.metric(port_a, APPLIED) > 0, 60)

        # A second worker joins mid-stream: A loses partitions with polls in flight.
        b, port_b = env.start_worker()
        wait_for("worker B takes a share", lambda: env.metric(port_b, APPLIED) > 0, 60)
        assert a.poll() is None, env.crashes()

        # A is killed and restarted as the same member (same instance id): it takes its
        # partitions back at once, instead of the group waiting out A's old session.
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        a, _ = env.start_worker(port_a)
        back = wait_for("restarted worker A applies again",
                        lambda: env.metric(port_a, APPLIED) > 0, 45)
        assert b.poll() is None, env.crashes()

        # B leaves gracefully: A takes every partition and finishes the stream.
        b.send_signal(signal.SIGTERM)
        assert b.wait(timeout=60) == 0
        feed.join(timeout=120)
        assert not feed.is_alive()

        eng = Engine(reg.fleet)
        want = {m: res.state[reg.fleet.index[m]].tobytes() for m in reg.fleet.meter_id}
        states: dict = {}

        def final() -> bool:
            nonlocal states
            states = {m: r.tobytes() for m, r in
                      final_states(env, eng.dtype, eng.area_dtype).items()}
            return states == want
        wait_for("the state of every meter", final, 120)
        assert a.poll() is None and env.crashes() == []
        # Every reading applied exactly once: each meter's applied count and last
        # reading are the input's.
        for m, (count, last_ts) in per_meter_input(env).items():
            rec = np.frombuffer(states[m], eng.dtype)[0]
            assert (int(rec["e_n"]), int(rec["e_last_ts"])) == (count, last_ts), m
        assert alert_keys(env.read(env.topics["alerts"], min_count=len(expected))) == expected
        assert env.read(env.topics["dead"], idle_s=1) == []
        print(f"restarted worker applied again {back:.1f} s after its start")
    finally:
        env.stop_all()
    assert env.crashes() == []


def test_ingest_commits_what_is_in_flight_before_a_revoke_and_never_a_partition_it_lost(
        kafka_bootstrap):
    """The ingest's commits across a rebalance, on real consumers of one group: a poll
    still out when partitions are revoked is committed (its acks awaited) before the new
    owner starts, and a poll taken before a rebalance but acknowledged after it is
    committed only for the partitions this consumer still holds, without an error."""
    import asyncio
    import uuid

    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from stream.worker.ingest import IngestCommits, rebalance_listener

    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    tps = [TopicPartition(topic, p) for p in range(4)]

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                                enable_auto_commit=False, heartbeat_interval_ms=500)

    async def assigned(c: AIOKafkaConsumer, n: int) -> set:
        while len(c.assignment()) != n:
            await asyncio.sleep(0.1)  # the coordinator task rejoins in the background
        return c.assignment()

    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 4, 1)])
        await admin.close()
        c1 = member()
        commits = IngestCommits(c1)
        c1.subscribe([topic], listener=rebalance_listener(commits))
        await c1.start()
        c2 = member()
        try:
            await asyncio.wait_for(assigned(c1, 4), 30)
            acks = asyncio.get_running_loop().create_future()
            commits.add(acks, {tp: 5 for tp in tps})  # out when the group rebalances
            asyncio.get_running_loop().call_later(0.5, acks.set_result, [])
            c2.subscribe([topic])
            await c2.start()
            held = await asyncio.wait_for(assigned(c1, 2), 30)
            # Settled in the old generation, every partition: the new owner starts at 5.
            assert {tp: await c1.committed(tp) for tp in tps} == {tp: 5 for tp in tps}
            # A poll acknowledged after the rebalance: only what c1 still holds.
            done = asyncio.get_running_loop().create_future()
            done.set_result([])
            commits.add(done, {tp: 9 for tp in tps})
            await commits.commit_ready(0)
            assert {tp: await c1.committed(tp) for tp in tps} == {
                tp: 9 if tp in held else 5 for tp in tps}
        finally:
            await c2.stop()
            await c1.stop()

    asyncio.run(go())
