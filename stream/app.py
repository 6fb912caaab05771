"""The Faust application and everything a worker holds: settings, registry, engine,
topics, tables. ``build(settings)`` wires it; the CLI runs it.

Data flow (see README for the diagram)::

    ami.readings (any key) --ingest--> meterwatch.readings.by-area (key: area_id)
        |                                   |
        +--> ami.readings.rejected          +--process--> meterwatch.alerts (key: customer)
                                            |              (state: table "areas",
                                            +--> meterwatch.deadletter   key area_id)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import faust

from models.config import DetectorConfig, load_config
from stream.registry import Registry
from stream.settings import Settings

log = logging.getLogger("meterwatch")

# One area's state blob is its meters' records back to back (~1.3 KB each): allow
# changelog messages well beyond Kafka's 1 MB default for large transformer areas.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
PRODUCER_BATCH_BYTES = 1024 * 1024
CONSUMER_FETCH_BYTES = 8 * 1024 * 1024


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    config: DetectorConfig
    app: faust.App
    topics: "object" = None
    tables: "object" = None
    processor: "object" = None
    ingestor: "object" = None
    extras: dict = field(default_factory=dict)


def instance_id(settings: Settings) -> str:
    """This worker's static member id in its consumer groups (``group.instance.id``).

    Stable across restarts, so a restarted worker takes its partitions back at once
    instead of the group waiting out the dead member's session; unique per worker (two
    workers on one host differ by web port, which they cannot share)."""
    import socket

    return settings.instance_id or f"{socket.gethostname()}-{settings.web_port}"


def heartbeat_interval_s(settings: Settings) -> float:
    # A member learns of a rebalance from its next heartbeat's answer, so the interval
    # bounds how long a join or leave waits for the others; at most a third of the
    # session keeps two missed heartbeats inside it.
    return min(1.0, settings.session_timeout_s / 3)


def create_app(settings: Settings, *, worker_id: str | None = None) -> faust.App:
    if not settings.broker:
        raise ValueError("no broker configured: set METERWATCH_BROKER (or run `meterwatch demo`, "
                         "which starts a local one)")
    datadir = Path(settings.data_dir) / "faust" / (worker_id or "worker")
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_url,
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(datadir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        web_enabled=True,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # web_host is only the advertised name
        web_port=settings.web_port,
        web_in_thread=False,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        # aiokafka keeps one produce request in flight per broker and puts one batch
        # per partition in each; with Faust's 16 KB default every area batch (~25 KB)
        # and area state (~300 KB) was a batch of its own, so a backlog of them went
        # out one round trip each. 1 MB batches: 90.7k -> 100.2k readings/s (bench A,
        # four runs each, same machine).
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        # Per-partition fetch size of the by-area (and changelog) consumer. Faust hands
        # fetched records from its consumer thread to the agents, and the process
        # agent sat waiting for the next fetch 60% of the time with 1 MB: by-area
        # messages from a backlog hold ~110 KB, so a 1 MB fetch was ~9 of them. With
        # 8 MB (bench phase A, two runs each): 100-reading concentrator messages
        # 58-59k -> 101-104k readings/s, 250-reading 112-113k -> 116-118k; one
        # reading per message 47k -> 56k. The largest message is still returned
        # whole by the broker (record batches beyond the limit come back alone).
        consumer_max_fetch_size=CONSUMER_FETCH_BYTES,
        producer_acks=-1,
        # Static membership and a session chosen on purpose (see Settings): with
        # Faust's 60 s session a killed worker's partitions stood still for a minute.
        consumer_group_instance_id=instance_id(settings),
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=heartbeat_interval_s(settings),
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        table_standby_replicas=0,
        # The agents handle every error themselves (dead-letter); an agent that still
        # raises has a bug and the worker should stop rather than ack past it.
        agent_supervisor="mode.CrashingSupervisor",
        logging_config=None,
    )
    return app


def build(settings: Settings, *, worker_id: str | None = None) -> Runtime:
    """A worker's runtime: the app with its topics, tables, agents and views."""
    from stream import agents, tables, topics, views
    from stream.processing import Ingestor, Processor

    if not settings.registry:
        raise ValueError("no meter registry configured: set METERWATCH_REGISTRY to a CSV file")
    registry = Registry.load(settings.registry)
    config = load_config(settings.detectors_config or None)
    app = create_app(settings, worker_id=worker_id)
    rt = Runtime(settings, registry, config, app)
    rt.topics = topics.declare(app, settings)
    rt.tables = tables.declare(app, settings)
    rt.processor = Processor(settings, registry, config)
    rt.ingestor = Ingestor(settings, registry)
    agents.register(rt)
    views.register(rt)
    return rt
