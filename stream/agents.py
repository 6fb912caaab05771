"""The agents. Each guards its own errors: Faust acks an event even when the agent
raises, so an unguarded error would lose the message. Here a failure sends the original
bytes and the traceback to the dead-letter topic (and counts it) before the event is
acked; nothing is dropped silently.

Ordering that keeps alerts at-least-once across a crash: an area's alerts are published
and acknowledged by the broker *before* the state that reflects them is written to the
table. A crash in between replays the batch, which reproduces the same alerts (same ids,
same status, same detected_at: consumers dedupe on that) and then writes the state.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import deque
from itertools import groupby

import msgspec

from stream import metrics as M
from stream.app import MAX_MESSAGE_BYTES, Runtime, heartbeat_interval_s, instance_id
from stream.processing import IngestResult, SourceMessage
from stream.registry import RegistryError
from stream.state import is_internal_key, theft_key
from stream.bykind import OUTCOME, READINGS, WEATHER, runs_by_kind
from stream.outcomes import OUTCOME_KEY, apply_outcomes, learn_outcomes
from stream.weather import apply_weather, ingest_weather

log = logging.getLogger("meterwatch.agents")
_enc = msgspec.json.Encoder()


def _deadletter(stage: str, event, exc: BaseException) -> bytes:
    m = event.message
    value = event.value if isinstance(event.value, (bytes, bytearray)) else b""
    return _deadletter_raw(stage, SourceMessage(bytes(value), m.topic, m.partition, m.offset, 0),
                           exc, key=event.key)


def _deadletter_raw(stage: str, m: SourceMessage, exc: BaseException, key=None) -> bytes:
    """The dead-letter record: the original bytes, where they came from, and the error."""
    try:
        payload, enc = m.value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        import base64

        payload, enc = base64.b64encode(m.value).decode("ascii"), "base64"
    return _enc.encode({
        "stage": stage, "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc))[-8000:],
        "source": {"topic": m.topic, "partition": m.partition, "offset": m.offset},
        "key": key.decode("utf-8", "replace") if isinstance(key, bytes) else None,
        "payload_encoding": enc, "payload": payload, "at": time.time(),
    })


def _stopping(app, exc: BaseException) -> bool:
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
        futs.append(await topics.deadletter.send(value=_deadletter_raw("ingest", m, exc)))
    return futs


def register(rt: Runtime) -> None:
    app, topics = rt.app, rt.topics
    s = rt.settings
    cache: dict[bytes, tuple[bytes, object]] = {}

    async def ingest_batch(msgs: list[SourceMessage]) -> list:
        """Validate, re-key by area, publish; the futures of the broker's acks."""
        return await ingest_poll(rt.ingestor, topics, msgs)

    if s.ingest == "direct":
        @app.task
        async def ingest_direct():
            await _direct_ingest(rt, ingest_batch)
    else:
        register_faust_ingest(rt, ingest_batch)

    _register_process(rt, cache)
    _register_timers(rt, cache)


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


class _AlignedPoller:
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


class _IngestCommits:
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


def _ingest_listener(commits: _IngestCommits):
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
    commits = _IngestCommits(consumer)
    consumer.subscribe([s.readings_topic] + ([s.weather_topic] if s.weather_topic else []),
                       listener=_ingest_listener(commits))
    await consumer.start()
    poller = _AlignedPoller(consumer, s.ingest_max_records)
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
        if _stopping(rt.app, exc):
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




# Progress of the process agent, kept in the areas table itself under one key per
# partition: the offset of the last by-area message handled (applied or dead-lettered).
# The table, not the consumer group's committed offset, says where to resume. Kill -9
# tests showed a restarted worker's Faust consumer start a partition past a message
# whose state had never reached the changelog, with no commit of ours covering it
# (traced: the skip happens inside Faust's fetch loop around recovery), so that
# message's effect was lost. With progress in the changelog, the agent sees the gap
# between it and the next message and reads the missing messages itself, in order,
# before going on. Re-processing is harmless: every meter ignores intervals it has
# applied.
PROGRESS_PREFIX = b"\x00progress:"


# A message with this key carries nothing: a worker sends it to a by-area partition
# whose recorded progress stopped short of the log's end while its consumer sits at
# that end (a skipped last message has no successor to reveal the gap); the agent then
# sees the gap and reads the missing messages back.
NUDGE_KEY = b"\x00nudge"


# The process agent's event buffer: up to this many by-area messages, waiting at most
# this long for them (the added delay when messages trickle in live).
PROCESS_TAKE = 64
PROCESS_WITHIN_S = 0.005


def _set_current_event(event) -> None:
    """What Faust's ``Stream.events()`` does for each event it yields: make ``event``
    the one ``faust.streams.current_event()`` returns in this task."""
    import weakref

    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


def progress_key(partition: int) -> bytes:
    return PROGRESS_PREFIX + str(partition).encode()


def is_progress_key(key: bytes) -> bool:
    return key.startswith(PROGRESS_PREFIX)


def _register_process(rt: Runtime, cache: dict) -> None:
    app, topics, tables = rt.app, rt.topics, rt.tables
    s = rt.settings

    async def changelog(key: bytes, value: bytes, partition: int) -> None:
        # Not `areas[key] = value`: that hands the record to Faust's producer buffer,
        # and the offset commit's flush stops waiting for that buffer after 0.1 s
        # (ProducerBuffer.flush_atmost), so a commit could cover an event whose record
        # was still buffered. Sent here, the record is in aiokafka's accumulator before
        # the event is acknowledged, and the commit's flush does wait for that.
        await tables.areas.changelog_topic.send(
            key=key, value=value, partition=partition, key_serializer="raw",
            value_serializer="raw", force=True)
        tables.areas.data[key] = value

    async def expected_offset(tp) -> int:
        done = tables.areas.get(progress_key(tp.partition))
        if done is not None:
            return int(done) + 1
        # Nothing handled on this partition yet: everything the topic still holds.
        try:
            return int((await app.consumer.earliest_offsets(tp))[tp])
        except Exception:  # noqa: BLE001 - no answer: take the stream as it comes
            log.warning("earliest offset of %s unknown; not checking for a gap", tp)
            return -1

    theft = rt.processor.theft  # the partitions' theft models; None when it is off

    async def apply(key: bytes, values: list[bytes], srcs: list[SourceMessage]) -> None:
        """Apply consecutive by-area messages of one area (log order) in one engine call,
        then write the area's state. Progress is the caller's to write, after this."""
        part = srcs[-1].partition
        try:
            if key == OUTCOME_KEY:
                await learn_foreign(part, values)
                return
            if is_internal_key(key):
                raise ValueError(f"by-area key {key!r} is reserved for the worker's own state")
            if theft is not None:
                revision = theft.load(part, tables.areas.get(theft_key(part)))
            blob = tables.areas.get(key)
            hit = cache.get(key)
            if hit is not None and blob is not None and hit[0] is blob:
                state = hit[1]
            else:
                state = rt.processor.load_state(blob, key.decode())
            res, moved = _apply_runs(rt.processor, values, srcs, state)
            t_applied = time.monotonic()
            M.AREAS.place(key.decode(), srcs[-1].partition)
            for rec in res.rejected:
                await topics.rejected.send(value=rec)
            if res.alerts:
                futs = [await topics.alerts.send(key=k.encode(), value=v)
                        for k, v, _ in res.alerts]
                await asyncio.gather(*futs)
                M.applied_to_alert.observe(time.monotonic() - t_applied)
            # Written whenever the state moved: applied or late readings, or source
            # marks that a too_late reading advanced (else a replay would reject it again).
            o = res.outcome
            if theft is not None:
                await write_theft(part, revision)
            if moved or o is not None and (o.applied or o.late or o.too_late):
                new = state.to_bytes()
                await changelog(key, new, srcs[-1].partition)
                cache[key] = (new, state)
        except Exception as exc:
            cache.pop(key, None)  # the in-memory state may be half-updated
            if theft is not None:
                theft.forget(part)  # and so may the model: the table's, next time
            if len(srcs) > 1:
                # Find the culprit: the messages one by one from the state in the table
                # (not written since), so only a failing message is dead-lettered.
                log.warning("processing area %r failed on %d messages together (%s: %s); "
                            "applying them one by one", key, len(srcs), type(exc).__name__, exc)
                for value, src in zip(values, srcs):
                    await apply(key, [value], [src])
                return
            log.exception("processing area %r failed", key)
            M.deadletter.labels(stage="process").inc()
            await topics.deadletter.send(value=_deadletter_raw("process", srcs[0], exc, key=key))

    async def learn_foreign(part: int, values: list[bytes]) -> None:
        """Outcomes on other partitions' alerts: this partition's model learns them."""
        if theft is None:
            learn_outcomes(rt.processor, values, part)  # counted as ignored
            return
        revision = theft.load(part, tables.areas.get(theft_key(part)))
        learn_outcomes(rt.processor, values, part)
        await write_theft(part, revision)

    async def write_theft(part: int, revision: int) -> None:
        """The partition's theft model, if this apply changed it: before the area's
        state (same partition, same producer), so any area state in the changelog comes
        after a model holding the examples its day close queued. (A model written without
        the state after it is harmless: the replayed day close queues the same examples,
        which the model already has.)"""
        new = theft.changed(part, revision)
        if new is not None:
            await changelog(theft_key(part), new, part)
            theft.written(part, new)

    async def handle(key: bytes, value: bytes, src: SourceMessage) -> None:
        """Apply one by-area message; its effect and the partition's progress."""
        await apply(key, [value], [src])
        # After the state: same partition, same producer, so it lands after it.
        await changelog(progress_key(src.partition), str(src.offset).encode(), src.partition)

    async def handle_run(tp, run: list) -> None:
        """Handle a run of by-area messages of ONE partition with consecutive offsets
        (``(key, value, src)``, NUDGE_KEY for a nudge): the messages of each area in one
        engine call, areas in the order they first appear, then the partition's
        progress once, past the last. Areas are independent, so only each area's own
        order matters; a crash before the progress write replays the whole run, and
        what was applied is recognised and dropped."""
        if not run:
            return
        groups: dict[bytes, tuple[list, list]] = {}
        for key, value, src in run:
            if key != NUDGE_KEY:  # a nudge only moves the progress
                g = groups.setdefault(key, ([], []))
                g[0].append(value)
                g[1].append(src)
        for key, (values, srcs) in groups.items():
            await apply(key, values, srcs)
        last = run[-1][2]
        await changelog(progress_key(tp.partition), str(last.offset).encode(), tp.partition)

    async def backfill(tp, first: int, upto: int) -> None:
        """Read offsets first..upto-1 of the by-area partition and handle them in order."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = AIOKafkaConsumer(bootstrap_servers=s.broker, group_id=None,
                             enable_auto_commit=False, max_partition_fetch_bytes=MAX_MESSAGE_BYTES)
        ktp = TopicPartition(tp.topic, tp.partition)
        await c.start()
        try:
            c.assign([ktp])
            c.seek(ktp, first)
            nxt = first
            while nxt < upto:
                batch = await c.getmany(ktp, timeout_ms=1000)
                for r in batch.get(ktp, []):
                    if r.offset >= upto:
                        return
                    if r.offset < nxt:
                        continue
                    if r.key == NUDGE_KEY:
                        nxt = r.offset + 1
                        continue
                    await handle(r.key, r.value, SourceMessage(
                        r.value, tp.topic, tp.partition, r.offset, r.timestamp))
                    M.process_backfilled.inc()
                    nxt = r.offset + 1
                if not batch and (await c.end_offsets([ktp]))[ktp] <= nxt:
                    log.error("%s: offsets %d..%d are gone from the log; continuing without "
                              "them", tp, nxt, upto - 1)
                    return
        finally:
            await c.stop()

    @app.agent(topics.by_area, name="process")
    async def process(stream):
        # Events come in buffers (at most PROCESS_TAKE, waiting at most
        # PROCESS_WITHIN_S for more): each partition's consecutive messages are
        # handled as one run, so an area's messages of a backlog make one engine call
        # and one state write instead of one each. Faust acks the buffer's events
        # after the loop body, as it acked each event after it before.
        async for events in stream.take_events(PROCESS_TAKE, within=PROCESS_WITHIN_S):
            by_tp: dict = {}
            for event in events:
                by_tp.setdefault(event.message.tp, []).append(event)
            for tp, evs in by_tp.items():
                await process_partition(tp, evs)

    async def process_partition(tp, events) -> None:
        # Faust's stores read "the current event" for the partition a table key lives
        # in (RocksDB keeps one database per partition) and take_events does not set
        # it in this task: set it to an event of the partition handled here.
        _set_current_event(events[0])
        want = await expected_offset(tp)
        run: list = []
        for event in events:
            msg = event.message
            if want >= 0 and msg.offset < want:
                M.process_skipped.labels(why="already_handled").inc()
                continue
            if want >= 0 and msg.offset > want:
                log.warning("%s: message %d arrived but %d..%d were never handled; reading "
                            "them first", msg.tp, msg.offset, want, msg.offset - 1)
                await handle_run(tp, run)
                run = []
                await backfill(msg.tp, want, msg.offset)
            want = msg.offset + 1
            if event.key == NUDGE_KEY:
                run.append((NUDGE_KEY, None, SourceMessage(b"", msg.topic, msg.partition,
                                                           msg.offset, 0)))
                continue
            run.append((event.key, event.value, SourceMessage(
                event.value, msg.topic, msg.partition, msg.offset,
                int((msg.timestamp or time.time()) * 1000))))
        await handle_run(tp, run)


def _apply_runs(processor, values: list[bytes], srcs: list, state):
    """Apply an area's by-area messages in log order: each run of readings in one engine
    call, each run of temperature samples into the area record, each run of inspection
    outcomes into its meters' records and the partition's theft model. (The readings'
    result, merged over the runs; whether a sample or an outcome moved the state.)"""
    from stream.processing import ProcessResult

    runs = runs_by_kind(values, srcs)
    part = srcs[-1].partition
    if len(runs) == 1 and runs[0][0] == READINGS:
        return processor.handle_many(values, state, partition=part), False
    res, moved = ProcessResult(), False
    for kind, vals, _ in runs:
        if kind == OUTCOME:
            moved = apply_outcomes(processor, vals, state, part) or moved
            continue
        if kind == WEATHER:
            # A replayed or stale sample changes nothing (stale, dup: not written).
            applied, _stale, _dup = apply_weather(processor, vals, state)
            moved = moved or applied > 0
            continue
        r = processor.handle_many(vals, state, partition=part)
        res.alerts += r.alerts
        res.rejected += r.rejected
        if r.outcome is not None:
            if res.outcome is None:
                res.outcome = r.outcome
            else:
                o = res.outcome
                o.applied += r.outcome.applied
                o.late += r.outcome.late
                o.too_late += r.outcome.too_late
                o.findings += r.outcome.findings
    return res, moved


def _register_timers(rt: Runtime, cache: dict) -> None:
    app = rt.app
    s = rt.settings

    @app.timer(s.registry_reload_s)
    async def reload_registry():
        try:
            new = rt.registry.reload_if_changed()
        except (RegistryError, OSError) as e:
            M.registry_reloads.labels(result="error").inc()
            log.error("registry reload failed, keeping the previous one: %s", e)
            return
        if new is not rt.registry:
            rt.registry = new
            rt.ingestor.registry = new
            rt.processor.set_registry(new)
            M.registry_reloads.labels(result="ok").inc()
            M.registry_meters.set(len(new))
            log.info("registry reloaded: %d meters", len(new))

    seen_stall: dict[int, tuple] = {}  # partition -> (progress, end) at the last check

    @app.timer(5.0)
    async def gauges():
        consumer = app.consumer
        try:
            assigned = consumer.assignment()
        except Exception:
            return
        for tp in assigned:
            if tp.topic not in (s.readings_topic, s.by_area_topic):
                continue
            try:
                hw = consumer.highwater(tp)
                pos = await consumer.position(tp)
            except Exception:
                continue
            if hw is not None and pos is not None:
                M.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, hw - pos))
                if tp.topic == s.by_area_topic and not getattr(app, "rebalancing", False):
                    try:
                        await _nudge_if_stalled(tp, hw, pos)
                    except Exception:  # a timer that raises stops the worker
                        log.exception("%s: stall check failed", tp)
        # Areas whose by-area partition moved to another worker leave this worker's
        # area gauges (the new owner reports them from the state it restores).
        if not getattr(app, "rebalancing", False):
            owned = {tp.partition for tp in assigned if tp.topic == s.by_area_topic}
            for area_id in M.AREAS.retain(owned):
                cache.pop(area_id.encode(), None)

    async def _nudge_if_stalled(tp, end: int, pos: int) -> None:
        done = rt.tables.areas.get(progress_key(tp.partition))
        progress = -1 if done is None else int(done)
        stall = (progress, end)
        if pos < end or progress + 1 >= end:
            seen_stall.pop(tp.partition, None)  # consuming, or nothing missing
            return
        # The consumer has read to the end, yet the agent's progress stops short: the
        # same for two checks in a row is a skipped tail, not a message in flight.
        if seen_stall.get(tp.partition) == stall:
            log.warning("%s: consumer at offset %d but messages after %d were never handled; "
                        "nudging the agent to read them back", tp, pos, progress)
            await rt.topics.by_area.send(key=NUDGE_KEY, value=b"", partition=tp.partition,
                                         force=True)
            seen_stall[tp.partition] = (progress, end + 1)  # the nudge moves the end
        else:
            seen_stall[tp.partition] = stall

    M.registry_meters.set(len(rt.registry))
    M.worker_info.labels(app=s.app_id, standard=s.voltage_standard).set(1)
    M.prime()
