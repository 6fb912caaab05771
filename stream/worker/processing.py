"""What the agents do, as plain objects: testable without Kafka, and timed by the
benchmark without Faust in the way.

``Ingestor`` turns raw reading messages into per-area batches plus dead-letter records.
``Processor`` applies one area batch to that area's state and returns the alerts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter
from zoneinfo import ZoneInfo

import msgspec
import numpy as np

from models.alerts import enc_hook, new_alert, record
from models.config import DetectorConfig
from models.engine import Engine, Outcome
from stream.worker import metrics as M
from stream.registry import Registry
from stream.schema import (SOURCE_DTYPE, AreaReadings, Decoded, Reject, Validated,
                           area_decoder, area_encoder, decode_message, rejected_record, split_by_area,
                           validate)
from stream.settings import Settings
from stream.worker.state import AreaState

json_encode = msgspec.json.Encoder(enc_hook=enc_hook).encode
log = logging.getLogger("meterwatch.processing")

# Readings per validation pass (see Ingestor.handle): small enough that the decoded
# readings are still in the CPU cache for the column passes (bench/README.md).
VALIDATE_CHUNK = 4096


@dataclass(slots=True)
class SourceMessage:
    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # producer timestamp


@dataclass
class IngestResult:
    area_batches: list[tuple[str, bytes]] = field(default_factory=list)  # (area_id, AreaReadings)
    rejected: list[bytes] = field(default_factory=list)
    readings: int = 0
    valid: int = 0
    reject_reasons: Counter = field(default_factory=Counter)


class Ingestor:
    """Decode and validate a batch of source messages, group valid readings by area."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry

    def handle(self, msgs: list[SourceMessage], now: float | None = None) -> IngestResult:
        """The area batches and rejects of one poll. Metrics are counted only once the
        whole poll is handled: a poll that fails is handled again message by message
        (see stream/worker/ingest.py) and must not be counted twice."""
        now = time.time() if now is None else now
        res = IngestResult()
        parts, kept_src = self._decode_and_validate(msgs, res, now)
        M.messages_consumed.inc(len(msgs))
        M.message_bytes.inc(sum(len(m.value) for m in msgs))
        M.readings_consumed.inc(res.readings)
        for reason, k in res.reject_reasons.items():
            M.readings_rejected.labels(reason=reason).inc(k)
        if parts:
            self._area_batches(msgs, parts, kept_src, res)
        return res

    def _decode_and_validate(self, msgs: list[SourceMessage], res: IngestResult,
                             now: float) -> tuple[list[Validated], list[np.ndarray]]:
        """Valid readings in chunks, and the message index of each valid reading."""
        limit = self.settings.max_message_bytes
        # Readings are validated in chunks of about VALIDATE_CHUNK, each right after
        # its messages are decoded: validation reads every decoded reading once per
        # column, and a whole poll's readings (tens of thousands) no longer fit in
        # the CPU's cache by then.
        readings: list = []
        src: list[int] = []  # message index per reading
        pos: list[int] = []  # position within its message
        parts: list[Validated] = []
        kept_src: list[np.ndarray] = []
        for k, m in enumerate(msgs):
            if len(m.value) > limit:
                self._reject(res, m, Reject("payload_too_large",
                                            f"{len(m.value)} bytes > limit {limit}"), now)
                continue
            d = decode_message(m.value)
            rs = d.readings
            if d.rejects:
                for rj in d.rejects:
                    self._reject(res, m, rj, now)
            if len(rs) == 1 and d.positions is None:  # one reading per message
                readings.append(rs[0])
                src.append(k)
                pos.append(0)
            else:
                readings.extend(rs)
                src.extend([k] * len(rs))
                pos.extend(d.positions if d.positions is not None else range(len(rs)))
            if len(readings) >= VALIDATE_CHUNK:
                self._validate(res, msgs, readings, src, pos, parts, kept_src, now)
                readings, src, pos = [], [], []
        if readings:
            self._validate(res, msgs, readings, src, pos, parts, kept_src, now)
        return parts, kept_src

    def _area_batches(self, msgs: list[SourceMessage], parts: list[Validated],
                      kept_src: list[np.ndarray], res: IngestResult) -> None:
        """One AreaReadings per area of the poll's valid readings."""
        if len(parts) == 1:
            v = parts[0]
        else:
            ids: list[str] = []
            for p in parts:
                ids += p.meter_ids  # a C-level extend, not a Python loop per reading
            v = Validated(ids, np.concatenate([p.rows for p in parts]),
                          np.concatenate([p.cols for p in parts]))
        res.valid = len(v.rows)
        # Each reading's source partition and offset, for replay detection downstream.
        which = kept_src[0] if len(kept_src) == 1 else np.concatenate(kept_src)
        sources = np.empty(len(which), SOURCE_DTYPE)
        for name in ("partition", "offset"):  # C-level maps, not a tuple per message
            sources[name] = np.fromiter(map(attrgetter(name), msgs), np.int64, len(msgs))[which]
        reg = self.registry
        # Produce timestamps travel with the batch for end-to-end latency.
        produced = max(m.timestamp_ms for m in msgs)
        first = msgs[0]
        srcdesc = f"{first.topic}:{first.partition}:{first.offset}"
        ids = v.meter_ids
        groups = split_by_area(v, reg)
        for area, idx in groups.items():
            if len(groups) == 1:  # idx is every position, in order
                batch_ids, raw, srcs = ids, v.cols.tobytes(), sources.tobytes()
            else:
                batch_ids, raw = [ids[i] for i in idx.tolist()], v.cols[idx].tobytes()
                srcs = sources[idx].tobytes()
            batch = AreaReadings(reg.fleet.area_id[area], batch_ids, raw, produced, srcdesc,
                                 srcs)
            res.area_batches.append((batch.area_id, area_encoder.encode(batch)))

    def _validate(self, res: IngestResult, msgs: list[SourceMessage], readings: list,
                  src: list[int], pos: list[int], parts: list[Validated],
                  kept_src: list[np.ndarray], now: float) -> None:
        """Validate one chunk of decoded readings; keep the valid, reject the rest."""
        res.readings += len(readings)
        # positions=None: rejects index the chunk's list; mapped back to the message.
        v = validate(Decoded(readings, []), self.registry, now,
                     max_future_s=self.settings.max_future_s)
        for rj in v.rejects:
            i = rj.index
            rj.index = pos[i]
            self._reject(res, msgs[src[i]], rj, now)
        if len(v.rows):
            parts.append(v)
            s = np.fromiter(src, np.int64, len(src))
            kept_src.append(s if v.kept is None else s[v.kept])

    def _reject(self, res: IngestResult, m: SourceMessage, rj: Reject, now: float) -> None:
        res.reject_reasons[rj.reason] += 1
        # Always the whole source message: with its offset and the reading's index a
        # reading can be re-sent exactly as it came.
        value = m.value
        res.rejected.append(rejected_record(value, rj, topic=m.topic, partition=m.partition,
                                            offset=m.offset, at=now))


def _sources(msg: AreaReadings) -> np.ndarray:
    """Each reading's source (partition, offset); partition -1 where the by-area
    message does not say (an older producer): those are deduplicated by the bitmap."""
    src = msg.source_positions()
    if src is None:
        src = np.zeros(len(msg.meter_ids), SOURCE_DTYPE)
        src["partition"] = -1
    return src


class TheftShards:
    """The theft models (models.theft, one per by-area partition) as the worker's state
    table holds them: the process agent ``load``s partition p's model before it applies
    p's messages, writes ``changed`` bytes before the area state of the apply that
    changed it, and ``forget``s it when the apply fails (its in-memory copy may hold
    half of that apply: the next ``load`` takes the table's again).

    A model is loaded again only when the table's value is not the one it was loaded
    from or written as (a rebalance or a restart restored another), as the area cache."""

    def __init__(self, detector) -> None:
        self.detector = detector  # the engine's TheftDetector, None when the model is off
        self.source: dict[int, bytes | None] = {}  # partition -> table value of its model

    def load(self, partition: int, blob: bytes | None) -> int:
        """Make the detector's model of ``partition`` the table's ``blob`` (None: none
        stored yet, a fresh model); its revision, to tell later whether it changed."""
        from models.theft import FleetTheftModel

        det = self.detector
        if partition in self.source and partition in det.models:
            have = self.source[partition]
            if have is blob or (have is not None and blob is not None and have == blob):
                return det.models[partition].revision
        det.models[partition] = (FleetTheftModel.from_bytes(blob) if blob is not None
                                 else det.new_model())
        self.source[partition] = blob
        return 0

    def changed(self, partition: int, revision: int) -> bytes | None:
        """The model's bytes if it changed since ``load`` said ``revision``."""
        m = self.detector.models.get(partition)
        return None if m is None or m.revision == revision else m.to_bytes()

    def written(self, partition: int, blob: bytes) -> None:
        self.source[partition] = blob

    def forget(self, partition: int) -> None:
        self.source.pop(partition, None)
        self.detector.models.pop(partition, None)


@dataclass
class ProcessResult:
    alerts: list[tuple[str, bytes, dict]] = field(default_factory=list)  # (key, json, alert)
    outcome: Outcome | None = None
    rejected: list[bytes] = field(default_factory=list)


class Processor:
    """Apply area batches to area state with the detection engine."""

    def __init__(self, settings: Settings, registry: Registry,
                 config: DetectorConfig | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.engine = Engine(registry.fleet, config, tz=settings.timezone,
                             country=settings.holidays_country or None,
                             voltage_standard=settings.voltage_standard,
                             partitions=settings.topic_partitions)
        self.zone = ZoneInfo(settings.timezone)
        self.metrics = M.AreaMetrics(self.engine, settings.metrics_areas_max,
                                     self.engine.voltage.standard)
        self._customers_per_area = self._count_customers(registry)
        self._ar = np.arange(0, dtype=np.int64)
        self.theft = TheftShards(self.engine.theft) if self.engine.theft else None

    @staticmethod
    def _count_customers(registry: Registry) -> np.ndarray:
        f = registry.fleet
        return np.bincount(f.area[~f.is_area_meter], minlength=len(f.area_id))

    def _arange(self, n: int) -> np.ndarray:
        a = self._ar
        if len(a) < n:
            a = self._ar = np.arange(max(n, 2 * len(a)), dtype=np.int64)
        return a[:n]

    def _reject_too_late(self, res: "ProcessResult", too_late: list[int], rows: np.ndarray,
                         cols: np.ndarray, source: np.ndarray) -> None:
        """Readings never seen before and older than the meter's dedupe window: not
        applied, and kept for reconciliation rather than dropped. (A replayed reading
        is a duplicate: the engine recognises it by its source offset.)"""
        M.readings_rejected.labels(reason="too_late").inc(len(too_late))
        tol = self.engine.config.engine.late_tolerance_s
        fleet = self.registry.fleet
        for i in too_late:
            rec = {k: (None if isinstance(v, float) and v != v else v)
                   for k, v in zip(cols.dtype.names, cols[i].tolist())}
            rec["meter_id"] = fleet.meter_id[int(rows[i])]
            part, off = int(source["partition"][i]), int(source["offset"][i])
            where = (dict(topic=self.settings.readings_topic, partition=part, offset=off)
                     if part >= 0 else dict(topic="(by-area)", partition=-1, offset=-1))
            res.rejected.append(rejected_record(
                json_encode(rec), Reject("too_late", f"reading older than the meter's last "
                                         f"applied interval by more than {tol} s or beyond "
                                         f"its dedupe window", None, rec["meter_id"]),
                at=time.time(), **where))

    def set_registry(self, registry: Registry) -> None:
        self.registry = registry
        self.engine.set_fleet(registry.fleet)
        self._customers_per_area = self._count_customers(registry)

    def _place(self, area: int, partition: int) -> None:
        theft, fleet = self.engine.theft, self.registry.fleet
        want = int(theft.area_shards(fleet)[area])
        if want != partition:
            log.warning("area %r arrives on by-area partition %d, not %d as %d partitions "
                        "would place it: its theft model is partition %d's (is the topic's "
                        "partition count topic_partitions?)", fleet.area_id[area], partition,
                        want, theft.partitions, partition)
            theft.place(fleet, area, partition)

    def new_state(self, area_id: str) -> AreaState:
        return AreaState.empty(area_id, self.engine.dtype, self.engine.area_dtype)

    def load_state(self, blob: bytes | None, area_id: str) -> AreaState:
        if blob is None:
            return self.new_state(area_id)
        return AreaState.from_bytes(blob, self.engine.dtype, self.engine.area_dtype)

    def handle(self, raw: bytes, state: AreaState, now: float | None = None) -> ProcessResult:
        return self.handle_many([raw], state, now)

    def handle_many(self, raws: list[bytes], state: AreaState, now: float | None = None,
                    partition: int | None = None) -> ProcessResult:
        """Apply consecutive by-area messages of ONE area (in their log order) in one
        engine call: what one message holding all their readings would do, which is
        what ingest makes of the same readings when they arrive in one poll (the engine
        applies each meter's readings in time order, an area's intervals in rounds).

        ``partition``: the by-area partition the messages came from, whose theft
        model the area's meters use (the partitioner's choice for the area, unless the
        topic was made with another partition count than ``topic_partitions``)."""
        t0 = time.perf_counter()
        msgs: list[AreaReadings] = [area_decoder.decode(r) for r in raws]
        msg = msgs[0]
        cols, meter_ids, source = _columns(msgs)
        fleet = self.registry.fleet
        res = ProcessResult()
        area = self.registry.area_index.get(msg.area_id)
        rows = np.fromiter(map(fleet.index.get, meter_ids, repeat(-1)), np.int64, len(meter_ids))
        ok = rows >= 0
        if area is None:  # the area itself left the registry
            ok[:] = False
        else:
            ok &= fleet.area[np.where(ok, rows, 0)] == area
        if not ok.all():
            # The registry changed between ingest and here (meter removed or moved area).
            res.rejected += _unregistered(raws, msgs, meter_ids, ok)
            rows, cols, source = rows[ok], cols[ok], source[ok]
        if len(rows) == 0:
            return res
        if partition is not None and self.engine.theft is not None:
            self._place(area, partition)
        before = self.metrics.before(state.area_record)
        out = res.outcome = self._run_engine(state, area, rows, cols, source)
        if out.too_late:
            self._reject_too_late(res, out.too_late, rows, cols, source)
        now = time.time() if now is None else now
        if out.applied:
            for m in msgs:
                M.latency_applied.observe(max(0.0, now - m.produced_ms / 1000.0))
        label = self.metrics.label(msg.area_id)
        self.metrics.after(msg.area_id, state, fleet, cols, rows,
                           int(self._customers_per_area[area]), before, label,
                           findings=bool(out.findings))
        self._alerts(res, out.findings, label)
        if res.alerts:
            # Each message's own delay to its state update; an alert cannot be traced to
            # one of several messages, so it counts from the oldest (an upper bound).
            M.latency_alert.observe(max(0.0, now - min(m.produced_ms for m in msgs) / 1000.0))
        M.batch_seconds.observe(time.perf_counter() - t0)
        return res

    def _run_engine(self, state: AreaState, area: int, rows, cols, source):
        """The engine over the area's state; its outcome, counted."""
        meters = np.unique(rows)
        mpos = state.positions([self.registry.fleet.meter_id[r] for r in meters.tolist()])
        # An area's batch usually covers all its meters in state order: then the engine
        # updates the records in place (no gather and scatter of the area's records).
        # On an error the agent discards the in-memory state either way.
        whole = len(mpos) == len(state.records) and bool((mpos == self._arange(len(mpos))).all())
        st = state.records if whole else state.records[mpos]
        areas = np.array([area], np.int64)
        t1 = time.perf_counter()
        out = self.engine.process(rows, cols, st, state.area_record, meters, areas, source)
        M.detector_seconds.inc(time.perf_counter() - t1)
        M.detector_readings.inc(len(rows))
        M.detector_rounds.inc(out.rounds)
        if not whole:
            state.records[mpos] = st
        M.readings_applied.inc(out.applied)
        M.readings_duplicate.inc(out.duplicates)
        M.readings_late.inc(out.late)
        M.comm_gaps.inc(out.gaps)
        return out

    def _alerts(self, res: ProcessResult, findings, label: str) -> None:
        fleet = self.registry.fleet
        for f in findings:
            a = new_alert(f, fleet, self.zone)
            res.alerts.append((a.customer_id or a.area_id, json_encode(a), record(a)))
            M.alerts.labels(type=a.type, subtype=a.subtype, severity=a.severity,
                            status=a.status).inc()
            if a.type == "theft" and a.status == "open":
                M.theft_alerts.labels(area=label, indicator=a.subtype).inc()


def _columns(msgs: list[AreaReadings]):
    """The readings of consecutive messages of one area as one set of columns: (columns,
    meter ids, source marks)."""
    msg = msgs[0]
    if len(msgs) == 1:
        return msg.columns(), msg.meter_ids, _sources(msg)
    if any(m.area_id != msg.area_id for m in msgs):
        raise ValueError("handle_many: messages of different areas")
    return (np.concatenate([m.columns() for m in msgs]),
            [i for m in msgs for i in m.meter_ids],
            np.concatenate([_sources(m) for m in msgs]))


def _unregistered(raws: list[bytes], msgs: list[AreaReadings], meter_ids: list[str],
                  ok: np.ndarray) -> list[bytes]:
    """Reject records for the readings whose meter is no longer in the area."""
    out = []
    area_id = msgs[0].area_id
    starts = np.cumsum([0] + [len(m.meter_ids) for m in msgs])
    for i in np.flatnonzero(~ok):
        k = int(np.searchsorted(starts, i, side="right")) - 1  # which message
        j = int(i - starts[k])  # index within it
        M.readings_rejected.labels(reason="unknown_meter").inc()
        out.append(rejected_record(
            raws[k], Reject("unknown_meter", f"meter {meter_ids[i]!r} is no longer in "
                            f"area {area_id!r} of the registry", j, meter_ids[i]),
            topic="(by-area)", partition=-1, offset=-1, at=time.time()))
    return out
