"""The outcome relay: inspection outcomes from the alert store to the theft model's
workers, through Kafka (a transactional outbox; what goes where: :mod:`stream.outcomes`).

The console records an outcome in the store and nothing else (it has no Kafka client):
the outcome is durable from that moment. Every ``notify_outcome_relay_s`` the relay
reads the outcomes not published yet, sends every copy of each, waits for the broker
to acknowledge them (acks=all) and only then marks the outcome published. So:

* nothing is lost while the notifier, Kafka or the console is down: what is not marked
  goes out at the next pass after they are back;
* an outcome may be published twice (a pass cut off between the acks and the mark, an
  acknowledgement that came too late, two notifier processes): workers ignore an
  outcome they have applied (alert id + outcome);
* a failure is logged (once a minute) and counted, and the pass is tried again; it
  never stops the notifier.

The relay has its own producer (idempotent, acks=all), started at the first outcome
to send; before it, the pipeline's topics are created if missing, with the pipeline's
partition count, so the by-area topic is never auto-created with the broker's default.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from stream import outcomes as O
from stream.notify import metrics as M
from stream.notify.scrub import one_line
from stream.settings import Settings
from stream.store import AlertStore

log = logging.getLogger("meterwatch.notify.outcomes")

BATCH = 200  # outcomes per read; a pass reads again while batches come back full
ACK_TIMEOUT_S = 30.0  # a copy not acknowledged by then is sent again next pass
CLOSE_TIMEOUT_S = 10.0


class OutcomeRelay:
    """Publishes the store's unpublished outcomes on the by-area topic.

    ``db(fn, *args, **kw)`` runs a store call off the event loop (the notifier's
    database thread); by default a worker thread.
    """

    def __init__(self, settings: Settings, store: AlertStore, *,
                 db: Callable[..., Awaitable[Any]] | None = None) -> None:
        self.s = settings
        self.store = store
        self.topic = settings.by_area_topic
        self._db = db
        self._producer = None
        self.ack_timeout_s = ACK_TIMEOUT_S
        self._last_log = float("-inf")

    async def db(self, fn, *args, **kw):
        if self._db is not None:
            return await self._db(fn, *args, **kw)
        return await asyncio.to_thread(fn, *args, **kw)

    async def run(self) -> None:
        """Relay every ``notify_outcome_relay_s`` until cancelled."""
        try:
            while True:
                await self.tick()
                await asyncio.sleep(self.s.notify_outcome_relay_s)
        finally:
            await self.close()

    async def tick(self) -> int:
        """One pass, errors logged and counted; outcomes published."""
        try:
            return await self.relay()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            M.outcome_relay_failures.labels(stage=_stage(e)).inc()
            self._log_failure("outcome relay pass failed, retrying in %g s: %s: %s",
                              self.s.notify_outcome_relay_s, type(e).__name__, e)
            return 0

    async def relay(self) -> int:
        """Publish what is waiting, batch by batch; outcomes published. Raises if the
        store or the broker is unavailable (nothing is marked then)."""
        total = 0
        while True:
            rows = await self.db(self.store.unpublished_outcomes, BATCH)
            if not rows:
                return total
            acked = await self.publish(rows)
            await self.db(self.store.mark_outcomes_published, acked)
            for _, outcome in acked:
                M.outcomes_relayed.labels(outcome=outcome).inc()
            if acked:
                log.info("published %d inspection outcome(s) to the theft model on %s",
                         len(acked), self.topic)
            total += len(acked)
            if len(acked) < len(rows) or len(rows) < BATCH:
                return total

    async def publish(self, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """Send every copy of each outcome; ``(alert id, outcome)`` of those whose every
        copy the broker acknowledged."""
        producer = await self.producer()
        partitions = len(await producer.partitions_for(self.topic))
        pending: dict[tuple[str, str], list[asyncio.Future]] = {}
        for row in rows:
            try:
                msg = O.from_row(row)
                sends = O.copies(msg, partitions)
            except (KeyError, TypeError, ValueError) as e:  # costs only this outcome
                M.outcome_relay_failures.labels(stage="encode").inc()
                self._log_failure("outcome of alert %s cannot be encoded, skipped: %s",
                                  one_line(str(row.get("id"))), e)
                continue
            pending[(msg.alert_id, msg.outcome)] = [
                await producer.send(self.topic, value, key=key, partition=p)
                for p, key, value in sends]
        if not pending:
            return []
        futs = [f for fs in pending.values() for f in fs]
        # asyncio.wait, not wait_for: a late acknowledgement must not be cancelled
        # inside the producer, it only means the outcome goes out again.
        await asyncio.wait(futs, timeout=self.ack_timeout_s)
        acked = [k for k, fs in pending.items()
                 if all(f.done() and not f.cancelled() and f.exception() is None for f in fs)]
        if len(acked) < len(pending):
            failed = [f for f in futs if f.done() and not f.cancelled() and f.exception()]
            why = (f"{type(failed[0].exception()).__name__}: {failed[0].exception()}" if failed
                   else f"not acknowledged within {self.ack_timeout_s:g} s")
            M.outcome_relay_failures.labels(stage="kafka").inc(len(pending) - len(acked))
            self._log_failure("%d of %d outcome(s) not acknowledged by the broker, sent "
                              "again next pass: %s", len(pending) - len(acked), len(pending), why)
        return acked

    async def producer(self):
        """The relay's producer, started (and the pipeline's topics made) if need be."""
        if self._producer is not None:
            return self._producer
        from aiokafka import AIOKafkaProducer

        from stream.app import MAX_MESSAGE_BYTES
        from stream.kafka_admin import ensure_topics

        await ensure_topics(self.s)
        p = AIOKafkaProducer(bootstrap_servers=self.s.broker, acks="all",
                             enable_idempotence=True, max_request_size=MAX_MESSAGE_BYTES,
                             client_id=f"{self.s.notify_group}-outcomes")
        try:
            await p.start()
        except BaseException:
            await p.stop()
            raise
        self._producer = p
        return p

    async def close(self) -> None:
        """Stop the producer. Copies still unacknowledged are given up after
        CLOSE_TIMEOUT_S (with Kafka down, stopping would wait for it): their outcomes are
        not marked, so they go out again after a restart."""
        p, self._producer = self._producer, None
        if p is None:
            return
        try:
            await asyncio.wait_for(p.stop(), CLOSE_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("outcome relay: Kafka did not take the last copies within %g s; "
                        "their outcomes go out again after a restart", CLOSE_TIMEOUT_S)

    def _log_failure(self, fmt: str, *args) -> None:
        # An outage fails every pass: once a minute is enough to say so.
        now = time.monotonic()
        if now - self._last_log >= 60.0:
            self._last_log = now
            log.error(fmt + " (logged once a minute)", *args)


def _stage(e: BaseException) -> str:
    """Where a pass failed: ``store`` (the database) or ``kafka`` (anything else)."""
    return "store" if type(e).__module__.startswith("sqlalchemy") else "kafka"
