"""Shared pytest fixtures.

``kafka_bootstrap``: ONE real single-node KRaft Kafka broker (stream/dev/kafka_local.py)
for the whole test session, on free 127.0.0.1 ports in a temp dir. The first run
fetches the broker jars with Maven into the jar cache (~45 MB, see
``stream.dev.kafka_local.default_cache_dir``); later runs reuse it.
Tests create their own topics (AIOKafkaAdminClient or auto-creation).
"""

from __future__ import annotations

import pytest

from stream.dev.kafka_local import LocalKafka, ensure_kafka


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory):
    ensure_kafka()
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"))
    kafka.start(timeout=120)
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (Debian's package) for the session; yields its URL."""
    from tests.support.postgres import LocalPostgres

    pg = LocalPostgres().start()
    try:
        yield pg.url
    finally:
        pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each database the alert store supports: a SQLite file and a fresh PostgreSQL db."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meterwatch.db'}"
        return
    import uuid

    import sqlalchemy as sa

    base = request.getfixturevalue("postgres_url")
    name = "t_" + uuid.uuid4().hex[:12]
    eng = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    eng.dispose()
    yield base.rsplit("/", 1)[0] + "/" + name
