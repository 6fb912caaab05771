"""The outcome relay: inspection outcomes of the theft model's alerts go from the alert
store (where the console records them) to every partition of the by-area topic, through
a real Kafka broker, on SQLite and a real PostgreSQL server; marked published only once
the broker acknowledged every copy, so a Kafka outage or a database error loses nothing.
Read back with a plain consumer."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream import outcomes as O
from stream.notify import metrics as M
from stream.notify.outcomes import CLOSE_TIMEOUT_S, OutcomeRelay
from stream.schema import OutcomeMessage
from stream.settings import load_settings
from stream.store import AlertStore

pytestmark = pytest.mark.kafka
PARTITIONS = 3  # not the broker's default (4): the relay must use the topic's own count
EVIDENCE = {"model": "fleet_self_supervised", "attack_shape": "h2", "risk": 0.82,
            "log_odds": 3.4, "usual_log_odds": -1.2, "since_day": "2026-03-01",
            "unbilled_kwh": 41.5, "corroboration": ["theft/energy_balance"],
            "indicators": {"level": -0.61, "shape_cor": 0.42, "night_share": 0.07},
            "daily": [{"day": "2026-03-01", "kwh": 3.2, "usual_kwh": 9.8}]}


def theft_alert(id: str, meter: str = "M001", area: str = "A1", **kw) -> dict:
    """A theft alert of the fleet model as the pipeline writes it."""
    a = {"id": id, "type": "theft", "subtype": "consumption_drop", "status": "open",
         "severity": "warning", "scope": "meter", "meter_id": meter, "customer_id": "C" + meter,
         "area_id": area, "start": "2026-03-01T00:00:00+08:00",
         "detected_at": "2026-03-05T10:00:00+08:00", "score": 0.82, "evidence": EVIDENCE,
         "message": {"en": "Consumption dropped", "zh-CN": "用电量下降"}}
    a.update(kw)
    return a


def settings_for(bootstrap: str, **kw):
    tag = uuid.uuid4().hex[:8]
    return load_settings(
        env={}, broker=bootstrap, topic_partitions=PARTITIONS, by_area_topic=f"byarea-{tag}",
        readings_topic=f"readings-{tag}", rejected_topic=f"rejected-{tag}",
        alerts_topic=f"alerts-{tag}", deadletter_topic=f"dead-{tag}",
        notify_group=f"notify-{tag}", **kw)


async def read_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes]]:
    """Every message of ``topic``: (partition, key, value), by partition then offset."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        if topic not in await c.topics():
            return []
        tps = [TopicPartition(topic, p) for p in sorted(await partitions(bootstrap, topic))]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        end = await c.end_offsets(tps)
        out = []
        while any([await c.position(tp) < end[tp] for tp in tps]):
            for tp, recs in (await c.getmany(timeout_ms=1000)).items():
                out += [(tp.partition, r.key, r.value) for r in recs]
        return sorted(out, key=lambda m: m[0])
    finally:
        await c.stop()


async def partitions(bootstrap: str, topic: str) -> set[int]:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    try:
        return await p.partitions_for(topic)
    finally:
        await p.stop()


async def partition_of_key(bootstrap: str, key: bytes) -> int:
    """Where a plain producer with Kafka's default partitioner puts ``key`` on a topic of
    PARTITIONS partitions (as the worker publishes an area's readings)."""
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    try:
        return (await p.send_and_wait(topic, b"probe", key=key)).partition
    finally:
        await p.stop()


def relayed(outcome: str) -> float:
    return M.REGISTRY.get_sample_value("meterwatch_notify_outcomes_relayed_total",
                                       {"outcome": outcome}) or 0.0


def failures(stage: str) -> float:
    return M.REGISTRY.get_sample_value("meterwatch_notify_outcome_relay_failures_total",
                                       {"stage": stage}) or 0.0


def waiting(store: AlertStore) -> list[tuple[str, str]]:
    return [(o["id"], o["outcome"]) for o in store.unpublished_outcomes()]


@pytest.fixture
def store(db_url):
    s = AlertStore(db_url)
    yield s
    s.close()


def test_an_outcome_reaches_every_partition_once_keyed_as_specified_and_is_marked_published(
        kafka_bootstrap, store):
    s = settings_for(kafka_bootstrap)
    store.ingest(theft_alert("t1", "M001", "A1"), manager_id="mgr-01", now=1.0)
    store.ingest(theft_alert("t2", "M002", "A2"), manager_id="mgr-02", now=1.0)
    store.resolve("t1", "alice", "confirmed_theft", now=1_772_700_000.25)
    store.resolve("t2", "bob", "false_alarm", now=1_772_700_100.5)
    before = relayed("confirmed_theft"), relayed("false_alarm")

    async def go():
        relay = OutcomeRelay(s, store)
        try:
            assert await relay.tick() == 2
            assert await relay.tick() == 0  # published: not sent again
        finally:
            await relay.close()
        return (await read_topic(kafka_bootstrap, s.by_area_topic),
                {a: await partition_of_key(kafka_bootstrap, a.encode()) for a in ("A1", "A2")})

    msgs, own = asyncio.run(go())
    want = {
        "t1": OutcomeMessage(alert_id="t1", meter_id="M001", area_id="A1",
                             outcome="confirmed_theft", type="theft", subtype="consumption_drop",
                             evidence=EVIDENCE, resolved_at=1_772_700_000.25),
        "t2": OutcomeMessage(alert_id="t2", meter_id="M002", area_id="A2", outcome="false_alarm",
                             type="theft", subtype="consumption_drop", evidence=EVIDENCE,
                             resolved_at=1_772_700_100.5)}
    assert len(msgs) == 2 * PARTITIONS
    for alert_id, m in want.items():
        copies = sorted((p, k) for p, k, v in msgs if O.is_outcome(v) and O.decode(v) == m)
        # one copy on each partition: the area's own keyed by the area, the others not
        assert copies == sorted(
            (p, m.area_id.encode() if p == own[m.area_id] else O.OUTCOME_KEY)
            for p in range(PARTITIONS)), alert_id
    assert all(v.startswith(b"\x00outcome\x00") for _, _, v in msgs)
    assert waiting(store) == []
    a = store.get_alert("t1")
    assert a["outcome_published"] == "confirmed_theft" and a["outcome_published_at"] > 0
    assert (relayed("confirmed_theft") - before[0], relayed("false_alarm") - before[1]) == (1, 1)


def test_an_outcome_changed_after_it_was_published_goes_out_again(kafka_bootstrap, store):
    s = settings_for(kafka_bootstrap)
    store.ingest(theft_alert("t1"), manager_id="mgr-01", now=1.0)
    store.resolve("t1", "alice", "confirmed_theft", now=10.0)

    async def go():
        relay = OutcomeRelay(s, store)
        try:
            assert await relay.tick() == 1
            store.resolve("t1", "carol", "false_alarm", now=20.0)  # the verdict changes
            assert await relay.tick() == 1
            assert await relay.tick() == 0
        finally:
            await relay.close()
        return await read_topic(kafka_bootstrap, s.by_area_topic)

    msgs = asyncio.run(go())
    got = sorted((p, O.decode(v).outcome, O.decode(v).resolved_at) for p, _, v in msgs)
    assert got == sorted([(p, "confirmed_theft", 10.0) for p in range(PARTITIONS)]
                         + [(p, "false_alarm", 20.0) for p in range(PARTITIONS)])


def test_other_outcomes_and_other_alerts_are_never_relayed(kafka_bootstrap, store):
    s = settings_for(kafka_bootstrap)
    rules = theft_alert("r1", subtype="tamper_event", evidence={"events": ["cover_open"]})
    surge = theft_alert("s1", type="surge", subtype="daily", evidence={"today_kwh": 38.2})
    for a in (theft_alert("t1"), theft_alert("t2"), theft_alert("t3"), rules, surge):
        store.ingest(a, manager_id="mgr-01", now=1.0)
    store.resolve("t1", "alice", "customer_contacted")  # no verdict the model learns from
    store.resolve("r1", "alice", "confirmed_theft")  # the tamper rules, not the model
    store.resolve("s1", "alice", "false_alarm")  # not a theft alert
    store.acknowledge("t2", "alice")  # not resolved
    store.resolve("t3", "alice", "false_alarm")  # the one that goes

    async def go():
        relay = OutcomeRelay(s, store)
        try:
            assert await relay.tick() == 1
            assert await relay.tick() == 0
        finally:
            await relay.close()
        return await read_topic(kafka_bootstrap, s.by_area_topic)

    msgs = asyncio.run(go())
    assert {(O.decode(v).alert_id, O.decode(v).outcome) for _, _, v in msgs} == {
        ("t3", "false_alarm")}
    assert len(msgs) == PARTITIONS


def test_nothing_to_relay_touches_no_broker(store):
    # No outcome waiting: no producer, no topic creation, no failure, even without Kafka.
    s = settings_for("127.0.0.1:9")  # nothing listens there
    before = failures("kafka")
    relay = OutcomeRelay(s, store)
    assert asyncio.run(relay.tick()) == 0
    assert relay._producer is None and failures("kafka") == before


def test_a_database_error_is_counted_and_the_next_pass_publishes(kafka_bootstrap, tmp_path):
    store = AlertStore(f"sqlite:///{tmp_path / 'meterwatch.db'}")
    s = settings_for(kafka_bootstrap)
    store.ingest(theft_alert("t1"), manager_id="mgr-01", now=1.0)
    store.resolve("t1", "alice", "confirmed_theft", now=10.0)
    before = failures("store")

    async def go():
        relay = OutcomeRelay(s, store)
        try:
            with store.engine.begin() as c:  # the store breaks under the relay
                c.execute(sa.text("ALTER TABLE alerts RENAME TO alerts_away"))
            assert await relay.tick() == 0  # logged and counted, not raised
            with store.engine.begin() as c:
                c.execute(sa.text("ALTER TABLE alerts_away RENAME TO alerts"))
            assert await relay.tick() == 1
        finally:
            await relay.close()
        return await read_topic(kafka_bootstrap, s.by_area_topic)

    try:
        msgs = asyncio.run(go())
    finally:
        store.close()
    assert failures("store") == before + 1
    assert sorted(p for p, _, _ in msgs) == list(range(PARTITIONS))


@pytest.mark.slow
def test_outcomes_resolved_while_the_broker_is_down_go_out_when_it_is_back(tmp_path):
    """A broker of its own, stopped and started: before the relay ever reached it, and
    again after the relay's producer was running (the relay is also stopped during that
    outage, and stops without waiting for Kafka). Nothing is marked while the broker is
    down; everything goes out (at least once, on every partition) when it is back."""
    from stream.dev.kafka_local import LocalKafka, ensure_kafka

    ensure_kafka()
    kafka = LocalKafka(tmp_path / "kafka")  # ports fixed now, broker not started yet
    store = AlertStore(f"sqlite:///{tmp_path / 'meterwatch.db'}")
    s = settings_for(kafka.bootstrap)
    for t in ("t1", "t2"):
        store.ingest(theft_alert(t), manager_id="mgr-01", now=1.0)
    before = failures("kafka")

    async def until_published(relay, n: int) -> None:
        deadline = time.monotonic() + 90
        done = 0
        while done < n:
            assert time.monotonic() < deadline, "not published after the broker came back"
            done += await relay.tick()
            await asyncio.sleep(0.5)

    async def go():
        relay = OutcomeRelay(s, store)
        relay.ack_timeout_s = 3.0
        try:
            store.resolve("t1", "alice", "confirmed_theft", now=10.0)
            assert await relay.tick() == 0  # no broker at all yet
            assert waiting(store) == [("t1", "confirmed_theft")]
            await asyncio.to_thread(kafka.start, 120)
            await until_published(relay, 1)
            await asyncio.to_thread(kafka.stop)
            store.resolve("t2", "alice", "false_alarm", now=20.0)  # while Kafka is down
            assert await relay.tick() == 0  # sent, never acknowledged: not marked
            assert waiting(store) == [("t2", "false_alarm")]
            t0 = time.monotonic()
            await relay.close()  # the notifier stops meanwhile: it does not wait for Kafka
            assert time.monotonic() - t0 < CLOSE_TIMEOUT_S + 5
            await asyncio.to_thread(kafka.start, 120)
            await until_published(relay, 1)
            assert waiting(store) == []
        finally:
            await relay.close()
        return await read_topic(kafka.bootstrap, s.by_area_topic)

    try:
        msgs = asyncio.run(go())
    finally:
        kafka.stop()
        store.close()
    assert failures("kafka") >= before + 2
    got = {(p, O.decode(v).alert_id, O.decode(v).outcome) for p, _, v in msgs}
    assert got == {(p, t, o) for p in range(PARTITIONS)
                   for t, o in (("t1", "confirmed_theft"), ("t2", "false_alarm"))}


def test_an_outcome_resolved_in_the_console_waits_in_the_store_then_goes_out(
        kafka_bootstrap, tmp_path, monkeypatch):
    """The console's resolve form, over a real HTTP server, records the outcome and
    nothing else (the console has no Kafka client); the relay takes it from there."""
    import stream.store.users
    from aiohttp import CookieJar
    from aiohttp.test_utils import TestClient, TestServer
    from argon2 import PasswordHasher

    from stream.console.app import make_app
    from stream.registry import Registry
    from tests.console.console_data import REGISTRY_CSV, SECRET, login, page_csrf

    # real argon2id, test-sized cost (as the console tests)
    monkeypatch.setattr(stream.store.users, "_HASHER",
                        PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    (tmp_path / "registry.csv").write_text(REGISTRY_CSV)
    db = f"sqlite:///{tmp_path / 'meterwatch.db'}"
    s = settings_for(kafka_bootstrap, db_url=db, registry=str(tmp_path / "registry.csv"),
                     session_secret=SECRET, cookie_secure=False, worker_url="http://127.0.0.1:9")
    store = AlertStore(db)
    store.create_user("alice", "alice-pw-123", "manager", manager_id="mgr1")
    store.ingest(theft_alert("t1", "MTR-A1-0001", "A1", customer_id="C1001"),
                 manager_id="mgr1", now=1.0)

    async def resolve_in_console():
        server = TestServer(make_app(s, store, Registry.load(tmp_path / "registry.csv")),
                            host="127.0.0.1")
        async with TestClient(server, cookie_jar=CookieJar(unsafe=True)) as c:
            assert (await login(c, "alice")).status == 303
            token = await page_csrf(c, "/alerts")
            r = await c.post("/alerts/t1/resolve", data={"csrf_token": token,
                                                         "outcome": "confirmed_theft"},
                             allow_redirects=False)
            assert r.status == 303, await r.text()

    async def relay_it():
        relay = OutcomeRelay(s, store)
        try:
            return await relay.tick()
        finally:
            await relay.close()

    try:
        asyncio.run(resolve_in_console())
        resolved_at = store.get_alert("t1")["resolved_at"]
        assert store.unpublished_outcomes() == [{
            "id": "t1", "meter_id": "MTR-A1-0001", "area_id": "A1", "type": "theft",
            "subtype": "consumption_drop", "outcome": "confirmed_theft",
            "resolved_at": resolved_at, "evidence": EVIDENCE}]
        assert asyncio.run(relay_it()) == 1
        assert waiting(store) == []
    finally:
        store.close()
    msgs = asyncio.run(read_topic(kafka_bootstrap, s.by_area_topic))
    assert {(p, O.decode(v).alert_id, O.decode(v).outcome) for p, _, v in msgs} == {
        (p, "t1", "confirmed_theft") for p in range(PARTITIONS)}


@pytest.mark.slow
def test_the_notifier_process_relays_outcomes_on_its_timer(kafka_bootstrap, tmp_path):
    """`meterwatch notify` as a subprocess: an outcome recorded in the store while it
    runs reaches the by-area topic, and its /metrics counts it."""
    from tests.notify.receivers import wait_for
    from tests.notify.test_e2e_notify import Rig

    db = f"sqlite:///{tmp_path / 'meterwatch.db'}"
    rig = Rig(kafka_bootstrap, tmp_path, db, notify_outcome_relay_s=0.3,
              topic_partitions=PARTITIONS)
    store = AlertStore(db)
    try:
        rig.start_notifier()
        by_area = rig.env["METERWATCH_BY_AREA_TOPIC"]
        store.ingest(theft_alert("t1", "M001", "A2"), manager_id="mgr-02", now=1.0)
        store.resolve("t1", "ann", "false_alarm")
        wait_for(lambda: rig.metric("meterwatch_notify_outcomes_relayed_total",
                                    outcome="false_alarm") == 1, 60, 0.3, "outcome relayed")
        assert waiting(store) == []
        msgs = asyncio.run(read_topic(kafka_bootstrap, by_area))
        assert sorted((p, O.decode(v).alert_id) for p, _, v in msgs) == [
            (p, "t1") for p in range(PARTITIONS)]
        assert rig.metric("meterwatch_notify_outcome_relay_failures_total") == 0
    finally:
        rig.stop()
        store.close()
