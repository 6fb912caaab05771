"""The worker's agents and timers, registered on its app: ingest
(:mod:`stream.worker.ingest`), process (:mod:`stream.worker.process`) and the timers
(:mod:`stream.worker.timers`), sharing the process agent's area cache and its progress
protocol (:mod:`stream.worker.progress`)."""

from __future__ import annotations

from stream.worker import ingest, process, timers
from stream.worker.runtime import Runtime


def register(rt: Runtime) -> None:
    cache: dict[bytes, tuple[bytes, object]] = {}  # area key -> (state blob, its state)
    progress = process.progress_of(rt)
    ingest.register(rt)
    process.register(rt, cache, progress)
    timers.register(rt, cache, progress)
