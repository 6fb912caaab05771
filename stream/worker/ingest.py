"""The ingest agent: readings (and temperature samples) from any-keyed source topics,
validated, re-keyed by transformer area and published on the by-area topic; rejects to
the rejected topic with their reason.

Two ways to consume (``METERWATCH_INGEST``): ``direct`` (the default), a plain aiokafka
consumer that commits a poll only once the broker acknowledged everything it produced
and that keeps the assigned partitions at about the same point in time; or ``faust``, a
Faust agent. Either way a crash re-reads what was not committed, and the process agent
drops what it already applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from itertools import groupby

from stream import deadletter
from stream.app import heartbeat_interval_s, instance_id
from stream.worker import metrics as M
from stream.worker.processing import IngestResult, SourceMessage
from stream.worker.runtime import Runtime
from stream.worker.weather import ingest_weather

log = logging.getLogger("meterwatch.ingest")



def is_shutdown(app, exc: BaseException) -> bool:
    """The error is the worker's own shutdown (it stopped the producer under a send),
    not a failure: a producer that closes while the app runs still crashes it.

    Depending on where the shutdown has got to, a send meets aiokafka's closed producer
    (``ProducerClosed``) or Faust's stopped producer service (``NotReady``); a worker
    sent SIGTERM with a poll in flight exited 1 on the second before this knew it."""
    from aiokafka.errors import ProducerClosed
    from faust.exceptions import NotReady

    if not getattr(app, "should_stop", False):
        return False
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, (ProducerClosed, NotReady)):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _ingest(ingestor, msgs: list[SourceMessage]):
    """One poll's result: readings and, from the weather topic, temperature samples,
    their by-area messages in the order they were produced (a backlog poll holds many
    hours: each hour's temperature must reach its area before the readings after it)."""
    wt = ingestor.settings.weather_topic
    if not wt or not any(m.topic == wt for m in msgs):
        return ingestor.handle(msgs)
    # Producer time, a sample first at a tie (it stands for the hour it starts).
    ordered = sorted(msgs, key=lambda m: (m.timestamp_ms, m.topic != wt))
    res = None
    for weather, run in groupby(ordered, key=lambda m: m.topic == wt):
        run = list(run)
        if weather:
            res = res or IngestResult()
            ingest_weather(ingestor, run, res)
            continue
        r = ingestor.handle(run)
        if res is None:
            res = r
        else:
            res.area_batches += r.area_batches
            res.rejected += r.rejected
            res.readings += r.readings
            res.valid += r.valid
            res.reject_reasons.update(r.reject_reasons)
    return res


async def ingest_poll(ingestor, topics, msgs: list[SourceMessage]) -> list:
    """Validate a poll, re-key by area, publish; the futures of the broker's acks.

    A poll that fails as a whole (a bug on some input) is handled again one message at
    a time, so only a message that fails on its own goes to the dead-letter topic and
    the poll's other messages (up to thousands) are processed as usual."""
    try:
        results = [_ingest(ingestor, msgs)]
        failed: list = []
    except Exception as exc:  # noqa: BLE001 - find the culprit below
        log.warning("ingest failed on a poll of %d messages (%s: %s); handling them one by "
                    "one", len(msgs), type(exc).__name__, exc)
        results, failed = [], []
        for m in msgs:
            try:
                results.append(_ingest(ingestor, [m]))
            except Exception as exc1:  # a bug on this message: keep it for replay
                log.exception("ingest failed on %s:%d:%d", m.topic, m.partition, m.offset)
                failed.append((m, exc1))
    futs = []
    for res in results:
        futs += [await topics.by_area.send(key=area_id.encode(), value=batch)
                 for area_id, batch in res.area_batches]
        futs += [await topics.rejected.send(value=rec) for rec in res.rejected]
    for m, exc in failed:
        M.deadletter.labels(stage="ingest").inc()
        futs.append(await topics.deadletter.send(value=deadletter.from_source("ingest", m, exc)))
    return futs


def register(rt: Runtime) -> None:
    """The ingest agent of ``rt``'s settings, registered on its app."""
    async def ingest_batch(msgs: list[SourceMessage]) -> list:
        """Validate, re-key by area, publish; the futures of the broker's acks."""
        return await ingest_poll(rt.ingestor, rt.topics, msgs)

    if rt.settings.ingest == "direct":
        @rt.app.task
        async def ingest_direct():
            await _direct_ingest(rt, ingest_batch)
    else:
        register_faust_ingest(rt, ingest_batch)



def register_faust_ingest(rt: Runtime, ingest_batch) -> None:
    app, topics = rt.app, rt.topics

    sources = [topics.readings] + ([topics.weather] if topics.weather is not None else [])

    @app.agent(app.topic(*(t.get_topic_name() for t in sources), key_type=bytes,
                         value_type=bytes, key_serializer="raw", value_serializer="raw")
               if len(sources) > 1 else topics.readings, name="ingest")
    async def ingest(stream):
        # Batches of events: validation is vectorised over everything that arrived,
        # which is what makes one-reading-per-message input affordable.
        async for events in stream.take_events(2000, within=0.02):
            msgs = [SourceMessage(bytes(e.value or b""), e.message.topic, e.message.partition,
                                  e.message.offset, int((e.message.timestamp or time.time()) * 1000))
                    for e in events]
            await asyncio.gather(*await ingest_batch(msgs))


class AlignedPoller:
    """Polls of up to ``max_records`` records that hold the assigned partitions at about
    the same point in time.

    Reading a backlog of one-reading messages (keyed by meter, so an area's meters are
    on every partition), a plain ``getmany(max_records=N)`` drains whole fetches
    partition by partition: a poll held one partition's next few thousand messages and
    a few of another's, so each area batch spanned many intervals with few meters each,
    and the engine ran one round per interval. Equal shares per partition drift apart
    too: partitions hold unequal numbers of meters.

    So every partition offers up to an equal share (what it carried over from the last
    poll first), and a poll hands out of each only its records up to the earliest
    "last timestamp" among the partitions that offered a full share (those may have
    more); the rest is carried, and a partition holding a full share of carried records
    fetches nothing new. Records more than ``skew_ms`` past that point are handed out
    anyway: a producer whose clock runs ahead must not stall its partition. The caller
    commits only what was handed out, so a carried record is never lost; on a rebalance,
    the carried records of a partition this worker lost are dropped for its new owner
    to read again."""

    def __init__(self, consumer, max_records: int, skew_ms: int = 60_000) -> None:
        self.consumer = consumer
        self.max_records = max_records
        self.skew_ms = skew_ms
        self.carry: dict = {}  # tp -> records taken from the consumer, not handed out

    async def poll(self) -> dict:
        consumer = self.consumer
        assigned = consumer.assignment()
        offered = {}
        for tp, recs in self.carry.items():
            # A rebalance may have taken the partition away (or given it back, reset to
            # the last commit): then what was carried is read again from the log.
            if tp in assigned and await self._position(tp) == recs[-1].offset + 1:
                offered[tp] = recs
        self.carry = {}
        parts = sorted(assigned, key=lambda tp: (tp.topic, tp.partition))
        share = max(1, self.max_records // max(1, len(parts)))
        for tp in parts:
            room = share - len(offered.get(tp, ()))
            if room > 0:
                got = await self._getmany(tp, room)
                if got:
                    offered[tp] = offered[tp] + got if tp in offered else got
        if not offered:  # nothing buffered: wait for the next fetch
            return self._held(await consumer.getmany(timeout_ms=200, max_records=share))
        return self._held(self._cut(offered, share))

    def _held(self, batch: dict) -> dict:
        """Only the partitions still assigned: a rebalance during the poll's awaits may
        have revoked some, and their new owner reads those records again."""
        held = self.consumer.assignment()
        return {tp: recs for tp, recs in batch.items() if tp in held}

    async def _position(self, tp) -> int | None:
        from aiokafka.errors import IllegalStateError

        try:
            return await self.consumer.position(tp)
        except IllegalStateError:  # revoked while this poll ran
            return None

    async def _getmany(self, tp, room: int) -> list:
        from aiokafka.errors import IllegalStateError

        try:
            got = await self.consumer.getmany(tp, timeout_ms=0, max_records=room)
        except IllegalStateError:  # revoked while this poll ran
            return []
        return got.get(tp) or []

    def _cut(self, offered: dict, share: int) -> dict:
        full = [recs[-1].timestamp for recs in offered.values() if len(recs) >= share]
        if not full or len(offered) == 1:
            return offered
        cutoff, skewed = min(full), min(full) + self.skew_ms
        batch: dict = {}
        for tp, recs in offered.items():
            if cutoff < recs[-1].timestamp:
                # Keep the partition's order: hand out the prefix before the first record
                # that has to wait, carry the rest.
                i = next((k for k, r in enumerate(recs) if cutoff < r.timestamp <= skewed),
                         len(recs))
                if i < len(recs):
                    self.carry[tp] = recs[i:]
                    recs = recs[:i]
            if recs:
                batch[tp] = recs
        return batch


# Commit errors a rebalance explains: the group moved on (CommitFailedError wraps the
# broker's UnknownMemberId / IllegalGeneration / RebalanceInProgress) or the partition is
# no longer this consumer's (IllegalStateError). Whatever was not committed is read
# again by the partition's owner, and the process agent drops what it already applied.
def _rebalance_errors() -> tuple[type[BaseException], ...]:
    from aiokafka import errors as E

    return (E.CommitFailedError, E.IllegalStateError, E.RebalanceInProgressError,
            E.UnknownMemberIdError, E.IllegalGenerationError)


class IngestCommits:
    """The ingest polls out for acknowledgement, committed in order.

    A poll is committed only for the partitions the consumer still holds when its
    acks are in; on a rebalance, ``settle`` (called from the rebalance listener before
    partitions are revoked) waits for every poll out and commits it, so the new owner
    of a partition starts right after what this worker published."""

    def __init__(self, consumer) -> None:
        self.consumer = consumer
        self.in_flight: deque = deque()
        self.lock = asyncio.Lock()

    def add(self, acks, offsets: dict) -> None:
        self.in_flight.append((acks, offsets))

    async def commit_ready(self, limit: int) -> None:
        """Commit polls from the oldest while more than ``limit`` are out or the oldest
        is acknowledged."""
        async with self.lock:
            while self.in_flight and (len(self.in_flight) > limit or self.in_flight[0][0].done()):
                await self._commit(*self.in_flight.popleft())

    async def settle(self) -> None:
        async with self.lock:
            while self.in_flight:
                await self._commit(*self.in_flight.popleft())

    def cancel(self) -> None:
        for acks, _ in self.in_flight:
            acks.cancel()  # not committed: read again by the next start

    async def _commit(self, acks, offsets: dict) -> None:
        await acks
        held = self.consumer.assignment()
        mine = {tp: o for tp, o in offsets.items() if tp in held}
        if len(mine) < len(offsets):
            log.info("ingest: not committing %d partition(s) revoked since their poll; "
                     "their new owner reads them again", len(offsets) - len(mine))
        if not mine:
            return
        try:
            await self.consumer.commit(mine)
        except _rebalance_errors() as e:
            log.warning("ingest commit lost to a rebalance; the batch will be re-read: %r", e)


def rebalance_listener(commits: IngestCommits):
    from aiokafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked) -> None:
            # Still this generation: what was published from the revoked partitions
            # is committed before the new owner reads from the committed offset.
            await commits.settle()

        async def on_partitions_assigned(self, assigned) -> None:
            pass

    return Listener()


def _lag_gauges(consumer, batch: dict) -> None:
    """Lag as of this poll, set before the batch flows on (so it is never older than
    what downstream has applied)."""
    held = consumer.assignment()
    for tp, records in batch.items():
        hw = consumer.highwater(tp) if tp in held else None
        if hw is not None and records:
            M.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                max(0, hw - records[-1].offset - 1))


async def _direct_ingest(rt: Runtime, ingest_batch) -> None:
    """Stateless ingest on a plain consumer: poll a batch, publish the area batches and
    rejects, commit once the broker acknowledged them. A crash before the commit means
    the batch is read again; downstream drops what was already applied."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    s = rt.settings
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.broker, group_id=f"{s.app_id}-ingest",
        group_instance_id=instance_id(s), session_timeout_ms=int(s.session_timeout_s * 1000),
        heartbeat_interval_ms=int(heartbeat_interval_s(s) * 1000),
        enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=1024 * 1024, fetch_max_bytes=16 * 1024 * 1024)
    commits = IngestCommits(consumer)
    consumer.subscribe([s.readings_topic] + ([s.weather_topic] if s.weather_topic else []),
                       listener=rebalance_listener(commits))
    await consumer.start()
    poller = AlignedPoller(consumer, s.ingest_max_records)
    try:
        while True:
            batch = await poller.poll()
            if not batch:
                await commits.settle()  # quiet: settle what is out
                continue
            _lag_gauges(consumer, batch)
            msgs = [SourceMessage(m.value or b"", m.topic, m.partition, m.offset,
                                  m.timestamp or int(time.time() * 1000))
                    for records in batch.values() for m in records]
            # The next poll is read and validated while this one's acks are on their way
            # (the worker otherwise sat idle for each round trip to the broker); polls
            # are committed in order, each once its own records are acknowledged.
            acks = asyncio.gather(*await ingest_batch(msgs))
            commits.add(acks, {TopicPartition(tp.topic, tp.partition): records[-1].offset + 1
                               for tp, records in batch.items() if records})
            await commits.commit_ready(s.ingest_in_flight - 1)
    except asyncio.CancelledError:
        commits.cancel()
        raise
    except Exception as exc:
        if is_shutdown(rt.app, exc):
            # The worker is shutting down and Faust closed its producer under this
            # batch: nothing of it was committed, so the next start reads it again.
            log.info("ingest stopped with the worker; its last batch will be re-read")
            return
        # Nothing was committed past what was published: stop the worker rather than
        # carry on with a broken consumer or producer.
        log.exception("direct ingest failed; stopping the worker")
        await rt.app.crash(exc)
    finally:
        await consumer.stop()


