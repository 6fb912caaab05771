"""The optional weather feed through the worker: validated at ingest, re-keyed by area
onto the by-area topic like readings, applied by the process agent to the area's
changelogged state in log order with the area's readings.

A sample is applied to the area record once: the record keeps the hours of the day it
has seen (:mod:`models.weather`), so a message the ingest publishes again after a crash,
or the process agent reads again, changes nothing. Nothing here is per-meter.
"""

from __future__ import annotations

import time

from stream.worker import metrics as M
from stream.schema import (WEATHER_PREFIX, AreaTemperature, Reject, rejected_record,
                           validate_weather, weather_decoder, weather_encoder)


def is_weather(value: bytes) -> bool:
    """A by-area message that carries a temperature sample (not readings)."""
    return value[:len(WEATHER_PREFIX)] == WEATHER_PREFIX


def ingest_weather(ingestor, msgs, res, now: float | None = None) -> None:
    """Validate weather messages; add their by-area messages and rejects to ``res``
    (an :class:`stream.worker.processing.IngestResult`)."""
    now = time.time() if now is None else now
    s = ingestor.settings
    for m in msgs:
        if len(m.value) > s.max_message_bytes:
            w = Reject("payload_too_large", f"{len(m.value)} bytes > limit {s.max_message_bytes}")
        else:
            w = validate_weather(m.value, ingestor.registry, now, max_future_s=s.max_future_s)
        if isinstance(w, Reject):
            M.readings_rejected.labels(reason=w.reason).inc()
            res.rejected.append(rejected_record(m.value, w, topic=m.topic, partition=m.partition,
                                                offset=m.offset, at=now))
            continue
        msg = AreaTemperature(w.area_id, int(w.ts), float(w.temperature_c),
                              f"{m.topic}:{m.partition}:{m.offset}")
        res.area_batches.append((w.area_id, WEATHER_PREFIX + weather_encoder.encode(msg)))


def apply_weather(processor, raws: list[bytes], state) -> tuple[int, int, int]:
    """Apply consecutive weather messages of ONE area to its state; (applied, stale,
    duplicate). Samples of an area that left the registry are dropped (stale)."""
    import numpy as np

    msgs = [weather_decoder.decode(r[len(WEATHER_PREFIX):]) for r in raws]
    area = processor.registry.area_index.get(msgs[0].area_id)
    if area is None or any(m.area_id != msgs[0].area_id for m in msgs):
        if area is None:
            return 0, len(msgs), 0
        raise ValueError("apply_weather: messages of different areas")
    ts = np.array([m.ts for m in msgs], np.int64)
    temp = np.array([m.temperature_c for m in msgs], np.float64)
    areas = np.array([area], np.int64)
    return processor.engine.apply_weather(np.full(len(msgs), area, np.int64), ts, temp,
                                          state.area_record, areas)
