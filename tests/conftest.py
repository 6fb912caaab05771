"""Shared pytest fixtures.

``kafka_bootstrap``: ONE real single-node KRaft Kafka broker (stream/kafka_local.py)
for the whole test session, on free 127.0.0.1 ports in a temp dir. The first run
fetches the broker jars with Maven into the jar cache (~45 MB, see
``stream.kafka_local.default_cache_dir``); later runs reuse it.
Tests create their own topics (AIOKafkaAdminClient or auto-creation).
"""

from __future__ import annotations

import pytest

from stream.kafka_local import LocalKafka, ensure_kafka


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory):
    ensure_kafka()
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"))
    kafka.start(timeout=120)
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()
