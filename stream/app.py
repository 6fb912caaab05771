"""The Faust applications' common ground: the wire limits and the client configuration
shared by the worker (:mod:`stream.worker`) and the notifier (:mod:`stream.notify`).

This module is at the bottom of the house, as ``app.py`` is in Faust's own project
layout: everything may import it and it imports nothing of the project's, so no
wiring can come back to it in a cycle. (Settings are duck-typed here; the annotation
is for readers and type checkers.)
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - annotations only
    import faust

    from stream.settings import Settings

# One area's state blob is its meters' records back to back (~2 KB each): allow
# changelog messages well beyond Kafka's 1 MB default for large transformer areas.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
PRODUCER_BATCH_BYTES = 1024 * 1024
CONSUMER_FETCH_BYTES = 8 * 1024 * 1024


def instance_id(settings: Settings) -> str:
    """This worker's static member id in its consumer groups (``group.instance.id``).

    Stable across restarts, so a restarted worker takes its partitions back at once
    instead of the group waiting out the dead member's session; unique per worker (two
    workers on one host differ by web port, which they cannot share)."""
    return settings.instance_id or f"{socket.gethostname()}-{settings.web_port}"


def heartbeat_interval_s(settings: Settings) -> float:
    # A member learns of a rebalance from its next heartbeat's answer, so the interval
    # bounds how long a join or leave waits for the others; at most a third of the
    # session keeps two missed heartbeats inside it.
    return min(1.0, settings.session_timeout_s / 3)


def faust_app(settings: Settings, app_id: str, *, web_port: int, datadir_name: str,
              **options: Any) -> faust.App:
    """A Faust app on the configured broker with what every meterwatch process wants:
    acks from all replicas, a web server on the configured host, a supervisor that stops
    the process rather than ack past an agent's unhandled error (the agents handle their
    errors themselves; one that still raises has a bug), and logging left to the CLI.
    ``options`` are the process's own (store, batch sizes, sessions)."""
    import faust

    if not settings.broker:
        raise ValueError("no broker configured: set METERWATCH_BROKER (or run `meterwatch demo`, "
                         "which starts a local one)")
    datadir = Path(settings.data_dir) / "faust" / datadir_name
    datadir.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = dict(
        broker=settings.kafka_url,
        datadir=str(datadir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        web_enabled=True,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # web_host is only the advertised name
        web_port=web_port,
        web_in_thread=False,
        producer_acks=-1,
        agent_supervisor="mode.CrashingSupervisor",
        logging_config=None,
    )
    return faust.App(app_id, **(base | options))


def create_app(settings: Settings, *, worker_id: str | None = None) -> faust.App:
    """The worker's app (consumer group ``app_id``)."""
    return faust_app(
        settings, settings.app_id, web_port=settings.web_port,
        datadir_name=worker_id or "worker",
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        producer_max_request_size=MAX_MESSAGE_BYTES,
        # aiokafka keeps one produce request in flight per broker and puts one batch
        # per partition in each; with Faust's 16 KB default every area batch (~25 KB)
        # and area state (~300 KB) was a batch of its own, so a backlog of them went
        # out one round trip each (measured: bench/README.md, "Settings chosen by
        # measurement").
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        # Per-partition fetch size of the by-area (and changelog) consumer. Faust hands
        # fetched records from its consumer thread to the agents, and with 1 MB the
        # process agent sat waiting for the next fetch most of the time: by-area
        # messages from a backlog hold ~110 KB, so a 1 MB fetch was ~9 of them. The
        # largest message is still returned whole by the broker (record batches beyond
        # the limit come back alone). Measured: bench/README.md.
        consumer_max_fetch_size=CONSUMER_FETCH_BYTES,
        # Static membership and a session chosen on purpose (see Settings): with
        # Faust's 60 s session a killed worker's partitions stood still for a minute.
        consumer_group_instance_id=instance_id(settings),
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=heartbeat_interval_s(settings),
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        table_standby_replicas=0,
    )
