"""Hostile input on the ingest path costs only the message (or reading) that holds it:
never the poll it arrived in. On the real broker, through the real ingest code."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import stream.worker.processing as processing
from stream.worker.processing import Ingestor, SourceMessage
from stream.settings import load_settings
from tests.worker.test_pipeline import Env

DEEP = b"[" * 1000 + b"]" * 1000  # ~2 KB of JSON that msgspec cannot decode recursively


def test_a_deeply_nested_message_in_a_poll_is_rejected_alone_and_the_poll_is_applied(
        kafka_bootstrap, tmp_path):
    env = Env(kafka_bootstrap, tmp_path)
    days = 1
    msgs = env.messages(days)
    n = sum(len(json.loads(v)["readings"]) for _, v in msgs)
    nested = (b'{"meter_id":"%s","ts":"2026-03-02T00:15:00+08:00","kwh":0.1,"vendor":'
              % env.sim.meter_ids[0].encode() + DEEP + b"}")
    env.ensure_topics()
    # Published before the worker starts, so its first polls hold the nested message
    # among hundreds of valid ones.
    half = len(msgs) // 2
    env.publish(msgs[:half] + [(b"k", nested)] + msgs[half:])
    try:
        _, port = env.start_worker()
        assert env.wait_applied([port], n) == n
        rej = [json.loads(m.value) for m in env.read(env.topics["rejected"], min_count=1)]
        assert [(x["reason"], x["payload"].encode()) for x in rej] == [("malformed_json", nested)]
        assert "nested" in rej[0]["detail"]
        assert env.read(env.topics["dead"], idle_s=1) == []
        assert env.metric(port, 'meterwatch_readings_rejected_total{reason="malformed_json"}') == 1
    finally:
        env.stop_all()


class _Topic:
    """What ingest_poll needs of a Faust topic (``send`` returning the ack future),
    over a real producer to the real broker."""

    def __init__(self, prod: AIOKafkaProducer, name: str) -> None:
        self.prod, self.name = prod, name

    async def send(self, key: bytes | None = None, value: bytes = b""):
        return await self.prod.send(self.name, value=value, key=key)


class _Topics:
    def __init__(self, prod: AIOKafkaProducer, tag: str) -> None:
        self.by_area = _Topic(prod, f"byarea-{tag}")
        self.rejected = _Topic(prod, f"rejected-{tag}")
        self.deadletter = _Topic(prod, f"dead-{tag}")


async def _read_all(bootstrap: str, topic: str, idle_s: float = 3.0) -> list:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         group_id=None)
    await c.start()
    out, last = [], time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            got = [m for ms in (await c.getmany(timeout_ms=500)).values() for m in ms]
            if got:
                out += got
                last = time.monotonic()
    finally:
        await c.stop()
    return out


def test_a_poll_that_fails_is_handled_message_by_message_and_only_the_culprit_dead_letters(
        kafka_bootstrap, tmp_path, monkeypatch):
    from stream.worker.ingest import ingest_poll
    from stream.registry import Registry

    env = Env(kafka_bootstrap, tmp_path)
    reg = Registry.load(env.registry_path)
    ing = Ingestor(load_settings(env={}, max_future_s=10 * 365 * 86400.0), reg)
    msgs = [SourceMessage(v, "ami.readings", 0, i, int(time.time() * 1000))
            for i, (_, v) in enumerate(env.messages(0.25))]
    culprit = b'{"meter_id":"%s","ts":"2026-03-02T00:15:00+08:00","kwh":0.1,"trip":1}' % (
        env.sim.meter_ids[0].encode())
    msgs.insert(3, SourceMessage(culprit, "ami.readings", 0, 999, int(time.time() * 1000)))
    n = sum(len(json.loads(m.value)["readings"]) for m in msgs if m.offset != 999)
    real_validate = processing.validate

    def buggy_validate(decoded, *a, **kw):  # a validation bug one payload sets off
        if any(r.meter_id == env.sim.meter_ids[0] and r.kwh == 0.1 for r in decoded.readings):
            raise ZeroDivisionError("a bug in validation")
        return real_validate(decoded, *a, **kw)

    monkeypatch.setattr(processing, "validate", buggy_validate)
    tag = uuid.uuid4().hex[:8]

    async def go():
        prod = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=16 << 20)
        await prod.start()
        try:
            await asyncio.gather(*await ingest_poll(ing, _Topics(prod, tag), msgs))
        finally:
            await prod.stop()
        return [await _read_all(kafka_bootstrap, f"{k}-{tag}") for k in ("byarea", "dead")]

    by_area, dead = asyncio.run(go())
    from stream.schema import area_decoder

    assert sum(len(area_decoder.decode(m.value).meter_ids) for m in by_area) == n
    [d] = [json.loads(m.value) for m in dead]
    assert d["stage"] == "ingest" and d["source"]["offset"] == 999
    assert d["payload"].encode() == culprit and "ZeroDivisionError" in d["error"]


@pytest.mark.parametrize("bad", [b'{"readings": [{"meter_id": "M1", "x": ' + DEEP + b"}]}",
                                 b'{"x": ' + DEEP + b"}", b"[{\"x\": " + DEEP + b"}]"])
def test_handle_never_raises_on_deep_nesting(bad):
    from tests.worker.test_processing import REGISTRY

    from stream.registry import Registry

    reg = Registry.from_csv_text(REGISTRY)
    res = Ingestor(load_settings(env={}), reg).handle([SourceMessage(bad, "t", 0, 0, 0)])
    assert [json.loads(r)["reason"] for r in res.rejected] == ["malformed_json"]
