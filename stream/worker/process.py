"""The process agent: each area's by-area messages through the detectors, its alerts to
the alerts topic, its state to the changelogged areas table.

Each failure is guarded here: Faust acks an event even when the agent raises, so an
unguarded error would lose the message. A failing message goes to the dead-letter topic
with its bytes and traceback (and is counted) before its event is acked; a failure on
several messages together is retried one message at a time, so only the culprit goes.

Ordering that keeps alerts at-least-once across a crash: an area's alerts are published
and acknowledged by the broker *before* the state that reflects them is written to the
table, and the partition's progress (:mod:`stream.worker.progress`) after that. A crash
in between replays the batch, which reproduces the same alerts (same ids, same status,
same detected_at: consumers dedupe on that) and then writes the state.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

from stream import deadletter
from stream.app import MAX_MESSAGE_BYTES
from stream.worker import metrics as M
from stream.worker.bykind import OUTCOME, READINGS, WEATHER, runs_by_kind
from stream.worker.outcomes import OUTCOME_KEY, apply_outcomes, learn_outcomes
from stream.worker.processing import ProcessResult, SourceMessage
from stream.worker.progress import NUDGE_KEY, Message, Progress
from stream.worker.runtime import Runtime
from stream.worker.state import is_internal_key, theft_key
from stream.worker.weather import apply_weather

log = logging.getLogger("meterwatch.process")

# The agent's event buffer: up to this many by-area messages, waiting at most this long
# for them (the added delay when messages trickle in live).
PROCESS_TAKE = 64
PROCESS_WITHIN_S = 0.005


def register(rt: Runtime, cache: dict, progress: Progress) -> None:
    """The process agent on ``rt``'s app. ``cache`` holds each area's last state blob
    with its decoded state (the timers evict areas that moved to another worker)."""
    areas = AreaApplier(rt, cache)

    @rt.app.agent(rt.topics.by_area, name="process")
    async def process(stream):
        # Events come in buffers: each partition's consecutive messages are handled as
        # one run, so an area's messages of a backlog make one engine call and one state
        # write instead of one each. Faust acks the buffer's events after the loop body.
        async for events in stream.take_events(PROCESS_TAKE, within=PROCESS_WITHIN_S):
            by_tp: dict = {}
            for event in events:
                by_tp.setdefault(event.message.tp, []).append(event)
            for tp, evs in by_tp.items():
                # Faust's stores read "the current event" for the partition a table key
                # lives in (RocksDB keeps one database per partition) and take_events
                # does not set it in this task: set it to an event of this partition.
                _set_current_event(evs[0])
                await progress.feed(tp, tp.partition, [_message(e) for e in evs],
                                    areas.handle_run)


def _message(event) -> Message:
    m = event.message
    if event.key == NUDGE_KEY:
        return Message(NUDGE_KEY, None, m.offset,
                       SourceMessage(b"", m.topic, m.partition, m.offset, 0))
    return Message(event.key, event.value, m.offset, SourceMessage(
        event.value, m.topic, m.partition, m.offset, int((m.timestamp or time.time()) * 1000)))


def _set_current_event(event) -> None:
    """What Faust's ``Stream.events()`` does for each event it yields: make ``event`` the
    one ``faust.streams.current_event()`` returns in this task.

    This reaches into Faust's private ``_current_event`` on purpose: it is the only way
    to tell a RocksDB-backed table which partition's database a key is in when events
    come from ``take_events`` (which batches events but does not set it), and batching
    is what makes a backlog affordable (see PROCESS_TAKE)."""
    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


def changelog_writer(rt: Runtime):
    """Write a key of the areas table through its changelog, then into the table.

    Not ``areas[key] = value``: that hands the record to Faust's producer buffer, and the
    offset commit's flush stops waiting for that buffer after 0.1 s
    (ProducerBuffer.flush_atmost), so a commit could cover an event whose record was
    still buffered. Sent here, the record is in aiokafka's accumulator before the event
    is acknowledged, and the commit's flush does wait for that."""
    areas = rt.tables.areas

    async def write(key: bytes, value: bytes, partition: int) -> None:
        await areas.changelog_topic.send(key=key, value=value, partition=partition,
                                         key_serializer="raw", value_serializer="raw",
                                         force=True)
        areas.data[key] = value

    return write


def kafka_range_reader(rt: Runtime):
    """Read a by-area partition's messages from ``first`` up to ``upto`` on a consumer of
    its own (the agent's consumer is where it is; this goes back for what it skipped)."""
    async def read(tp, first: int, upto: int):
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = AIOKafkaConsumer(bootstrap_servers=rt.settings.broker, group_id=None,
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
                    if r.offset >= nxt:
                        nxt = r.offset + 1
                        yield Message(r.key, r.value, r.offset, SourceMessage(
                            r.value, tp.topic, tp.partition, r.offset, r.timestamp))
                if not batch and (await c.end_offsets([ktp]))[ktp] <= nxt:
                    log.error("%s: offsets %d..%d are gone from the log; continuing without "
                              "them", tp, nxt, upto - 1)
                    return
        finally:
            await c.stop()

    return read


def progress_of(rt: Runtime) -> Progress:
    """The progress protocol on ``rt``'s areas table, consumer and by-area topic."""
    async def earliest(tp) -> int:
        return int((await rt.app.consumer.earliest_offsets(tp))[tp])

    async def nudge(partition: int) -> None:
        await rt.topics.by_area.send(key=NUDGE_KEY, value=b"", partition=partition, force=True)

    return Progress(rt.tables.areas, changelog_writer(rt), earliest, kafka_range_reader(rt),
                    nudge)


class AreaApplier:
    """Applies runs of by-area messages to the areas' states, publishing what they
    produce and writing the states (and the partitions' theft models) back."""

    def __init__(self, rt: Runtime, cache: dict) -> None:
        self.rt = rt
        self.cache = cache
        self.table = rt.tables.areas
        self.changelog = changelog_writer(rt)
        self.theft = rt.processor.theft  # the partitions' theft models; None when off

    async def handle_run(self, tp, run: list[Message]) -> None:
        """A run of one partition's messages with consecutive offsets: the messages of
        each area in one engine call, areas in the order they first appear. Areas are
        independent, so only each area's own order matters."""
        groups: dict[bytes, tuple[list, list]] = {}
        for m in run:
            g = groups.setdefault(m.key, ([], []))
            g[0].append(m.value)
            g[1].append(m.src)
        for key, (values, srcs) in groups.items():
            await self.apply(key, values, srcs)

    async def apply(self, key: bytes, values: list[bytes], srcs: list[SourceMessage]) -> None:
        """Apply consecutive by-area messages of one area (log order) in one engine call,
        then write the area's state. Progress is the caller's to write, after this."""
        part = srcs[-1].partition
        try:
            if key == OUTCOME_KEY:
                await self.learn_foreign(part, values)
            elif is_internal_key(key):
                raise ValueError(f"by-area key {key!r} is reserved for the worker's own state")
            else:
                await self._apply(key, values, srcs, part)
        except Exception as exc:
            await self._failed(key, values, srcs, part, exc)

    async def _apply(self, key: bytes, values: list[bytes], srcs: list, part: int) -> None:
        rt, theft = self.rt, self.theft
        if theft is not None:
            revision = theft.load(part, self.table.get(theft_key(part)))
        state = self._state(key)
        res, moved = apply_runs(rt.processor, values, srcs, state)
        t_applied = time.monotonic()
        M.AREAS.place(key.decode(), part)
        for rec in res.rejected:
            await rt.topics.rejected.send(value=rec)
        if res.alerts:
            futs = [await rt.topics.alerts.send(key=k.encode(), value=v)
                    for k, v, _ in res.alerts]
            await asyncio.gather(*futs)
            M.applied_to_alert.observe(time.monotonic() - t_applied)
        if theft is not None:
            await self.write_theft(part, revision)
        # Written whenever the state moved: applied or late readings, or source marks
        # that a too_late reading advanced (else a replay would reject it again).
        o = res.outcome
        if moved or o is not None and (o.applied or o.late or o.too_late):
            new = state.to_bytes()
            await self.changelog(key, new, part)
            self.cache[key] = (new, state)

    def _state(self, key: bytes):
        blob = self.table.get(key)
        hit = self.cache.get(key)
        if hit is not None and blob is not None and hit[0] is blob:
            return hit[1]
        return self.rt.processor.load_state(blob, key.decode())

    async def _failed(self, key: bytes, values: list, srcs: list, part: int,
                      exc: Exception) -> None:
        self.cache.pop(key, None)  # the in-memory state may be half-updated
        if self.theft is not None:
            self.theft.forget(part)  # and so may the model: the table's, next time
        if len(srcs) > 1:
            # Find the culprit: the messages one by one from the state in the table (not
            # written since), so only a failing message is dead-lettered.
            log.warning("processing area %r failed on %d messages together (%s: %s); "
                        "applying them one by one", key, len(srcs), type(exc).__name__, exc)
            for value, src in zip(values, srcs):
                await self.apply(key, [value], [src])
            return
        log.exception("processing area %r failed", key)
        M.deadletter.labels(stage="process").inc()
        await self.rt.topics.deadletter.send(
            value=deadletter.from_source("process", srcs[0], exc, key=key))

    async def learn_foreign(self, part: int, values: list[bytes]) -> None:
        """Outcomes on other partitions' alerts: this partition's model learns them."""
        if self.theft is None:
            learn_outcomes(self.rt.processor, values, part)  # counted as ignored
            return
        revision = self.theft.load(part, self.table.get(theft_key(part)))
        learn_outcomes(self.rt.processor, values, part)
        await self.write_theft(part, revision)

    async def write_theft(self, part: int, revision: int) -> None:
        """The partition's theft model, if this apply changed it: before the area's state
        (same partition, same producer), so any area state in the changelog comes after a
        model holding the examples its day close queued. (A model written without the
        state after it is harmless: the replayed day close queues the same examples,
        which the model already has.)"""
        new = self.theft.changed(part, revision)
        if new is not None:
            await self.changelog(theft_key(part), new, part)
            self.theft.written(part, new)


def apply_runs(processor, values: list[bytes], srcs: list, state):
    """Apply an area's by-area messages in log order: each run of readings in one engine
    call, each run of temperature samples into the area record, each run of inspection
    outcomes into its meters' records and the partition's theft model. (The readings'
    result, merged over the runs; whether a sample or an outcome moved the state.)"""
    runs = runs_by_kind(values, srcs)
    part = srcs[-1].partition
    if len(runs) == 1 and runs[0][0] == READINGS:
        return processor.handle_many(values, state, partition=part), False
    res, moved = ProcessResult(), False
    for kind, vals, _ in runs:
        if kind == OUTCOME:
            moved = apply_outcomes(processor, vals, state, part) or moved
        elif kind == WEATHER:
            # A replayed or stale sample changes nothing (stale, dup: not written).
            applied, _stale, _dup = apply_weather(processor, vals, state)
            moved = moved or applied > 0
        else:
            _merge(res, processor.handle_many(vals, state, partition=part))
    return res, moved


def _merge(res: ProcessResult, r: ProcessResult) -> None:
    res.alerts += r.alerts
    res.rejected += r.rejected
    if r.outcome is None:
        return
    if res.outcome is None:
        res.outcome = r.outcome
        return
    o = res.outcome
    o.applied += r.outcome.applied
    o.late += r.outcome.late
    o.too_late += r.outcome.too_late
    o.findings += r.outcome.findings
