"""The worker's timers, one concern each: reloading the meter registry when its file
changes; consumer-lag gauges; the stall check of the progress protocol (a skipped tail
of a by-area partition, see :mod:`stream.worker.progress`); and forgetting the areas of
partitions that moved to another worker. A timer that raises stops the worker, so each
guards its own errors. (Reading positions is local to the consumer: each timer reads
its own.)"""

from __future__ import annotations

import logging

from stream.registry import RegistryError
from stream.worker import metrics as M
from stream.worker.progress import Progress
from stream.worker.runtime import Runtime

log = logging.getLogger("meterwatch.timers")

WATCH_S = 5.0


def register(rt: Runtime, cache: dict, progress: Progress) -> None:
    app, s = rt.app, rt.settings

    @app.timer(s.registry_reload_s)
    async def reload_registry():
        _reload_registry(rt)

    @app.timer(WATCH_S)
    async def lag_gauges():
        for tp, (hw, pos) in (await _positions(rt)).items():
            M.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, hw - pos))

    @app.timer(WATCH_S)
    async def stall_check():
        if getattr(app, "rebalancing", False):
            return  # assignments are moving: look again next time
        for tp, (hw, pos) in (await _positions(rt, s.by_area_topic)).items():
            try:
                await progress.check_stall(tp.partition, hw, pos)
            except Exception:  # noqa: BLE001
                log.exception("%s: stall check failed", tp)

    @app.timer(WATCH_S)
    async def forget_moved_areas():
        if not getattr(app, "rebalancing", False):
            _forget_moved_areas(rt, cache)

    M.registry_meters.set(len(rt.registry))
    M.worker_info.labels(app=s.app_id, standard=s.voltage_standard).set(1)
    M.prime()


def _reload_registry(rt: Runtime) -> None:
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


async def _positions(rt: Runtime, *topics: str) -> dict:
    """(high watermark, position) of each assigned partition of ``topics`` (default: the
    readings and by-area topics) that the consumer can answer for."""
    consumer, s = rt.app.consumer, rt.settings
    topics = topics or (s.readings_topic, s.by_area_topic)
    try:
        assigned = consumer.assignment()
    except Exception:  # noqa: BLE001 - not started or closing
        return {}
    out = {}
    for tp in assigned:
        if tp.topic not in topics:
            continue
        try:
            hw = consumer.highwater(tp)
            pos = await consumer.position(tp)
        except Exception:  # noqa: BLE001 - revoked meanwhile
            continue
        if hw is not None and pos is not None:
            out[tp] = (hw, pos)
    return out


def _forget_moved_areas(rt: Runtime, cache: dict) -> None:
    """Areas whose by-area partition moved to another worker leave this worker's area
    gauges (the new owner reports them from the state it restores) and its cache."""
    try:
        assigned = rt.app.consumer.assignment()
    except Exception:  # noqa: BLE001
        return
    owned = {tp.partition for tp in assigned if tp.topic == rt.settings.by_area_topic}
    for area_id in M.AREAS.retain(owned):
        cache.pop(area_id.encode(), None)
