"""The local KRaft broker (stream/dev/kafka_local.py) and aiokafka 0.14 against Kafka 4.3.1."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.dev import kafka_local
from stream.dev.kafka_local import KafkaLocalError, LocalKafka, ensure_kafka


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def _create_topic(bootstrap: str, name: str, partitions: int = 4) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futs = [
            await producer.send(topic, key=str(i % 17).encode(), value=json.dumps({"i": i}).encode())
            for i in range(n)
        ]
        await producer.flush()
        for f in futs:
            await f  # raises if a send failed
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, n: int, timeout: float = 60) -> list[int]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=_topic("g"),
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    await consumer.start()
    got: list[int] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for msgs in batches.values():
                got.extend(json.loads(m.value)["i"] for m in msgs)
    finally:
        await consumer.stop()
    return got


def test_aiokafka_roundtrip_1000(kafka_bootstrap: str) -> None:
    topic = _topic("roundtrip")

    async def run() -> list[int]:
        await _create_topic(kafka_bootstrap, topic, partitions=4)
        await _produce(kafka_bootstrap, topic, 1000)
        return await _consume(kafka_bootstrap, topic, 1000)

    got = asyncio.run(run())
    assert len(got) == 1000
    assert sorted(got) == list(range(1000))


def test_ensure_kafka_is_idempotent(kafka_bootstrap: str) -> None:
    first = ensure_kafka()  # the session fixture already fetched
    t0 = time.monotonic()
    second = ensure_kafka()
    elapsed = time.monotonic() - t0
    assert first == second
    assert elapsed < 2.0
    assert any(p.name.startswith("kafka_2.13-4.3.1") for p in second.glob("*.jar"))
    assert (second.parent / ".complete").is_file()


def test_missing_mvn_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(KafkaLocalError, match="mvn"):
        ensure_kafka(tmp_path / "cache")  # empty cache -> must fetch -> needs mvn
    assert not (tmp_path / "cache" / ".complete").exists()


def test_restart_keeps_data_and_ports(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    topic = _topic("persist")

    kafka = LocalKafka(data_dir)
    with kafka:
        assert kafka.running
        assert kafka.pid_file.is_file()
        asyncio.run(_create_topic(kafka.bootstrap, topic, partitions=2))
        asyncio.run(_produce(kafka.bootstrap, topic, 200))
    assert not kafka.running
    assert not kafka.pid_file.exists()
    meta = (data_dir / "data" / "meta.properties").read_text()

    again = LocalKafka(data_dir)  # ports come from ports.json
    assert (again.port, again.controller_port) == (kafka.port, kafka.controller_port)
    with again:
        got = asyncio.run(_consume(again.bootstrap, topic, 200))
    assert sorted(got) == list(range(200))
    # same storage, not reformatted
    assert (data_dir / "data" / "meta.properties").read_text() == meta
    assert json.loads((data_dir / "ports.json").read_text())["port"] == kafka.port


def test_cli_status_when_stopped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kafka_local.main(["status", "--data-dir", str(tmp_path / "none")]) == 3
    assert "stopped" in capsys.readouterr().out


def test_probe_counts_the_serving_broker_also_from_inside_a_running_loop(
        kafka_bootstrap: str) -> None:
    host, port = kafka_bootstrap.rsplit(":", 1)
    assert kafka_local.probe_broker(host, int(port)) == 1

    async def inside() -> int:  # a caller with its own loop: the probe's runs beside it
        return kafka_local.probe_broker(host, int(port))

    assert asyncio.run(inside()) == 1


def test_a_port_that_does_not_speak_kafka_is_not_ready_and_the_probe_logs_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def hang_up() -> None:  # accepts, then closes: a port open before the broker serves
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(ConnectionError):
            kafka_local.probe_broker("127.0.0.1", port, timeout=2)
    finally:
        server.close()
    assert [r for r in caplog.records if r.name.startswith("aiokafka")] == []
    with pytest.raises(OSError):  # nothing listening at all
        kafka_local.probe_broker("127.0.0.1", port, timeout=2)
