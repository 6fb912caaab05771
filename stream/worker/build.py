"""The worker's wiring, at the top of the house: ``build(settings)`` makes the app
(:mod:`stream.app`), declares its topics and tables, and registers the agents, timers
and views on it. Nothing in the worker imports this module; the CLI runs what it builds.

Data flow (see README for the diagram)::

    ami.readings (any key) --ingest--> meterwatch.readings.by-area (key: area_id)
        |                                   |
        +--> ami.readings.rejected          +--process--> meterwatch.alerts (key: customer)
                                            |              (state: table "areas",
                                            +--> meterwatch.deadletter   key area_id)
"""

from __future__ import annotations

from models.config import load_config
from stream.app import create_app
from stream.registry import Registry
from stream.settings import Settings
from stream.worker import agents, tables, topics, views
from stream.worker.processing import Ingestor, Processor
from stream.worker.runtime import Runtime


def build(settings: Settings, *, worker_id: str | None = None) -> Runtime:
    """A worker's runtime: the app with its topics, tables, agents and views."""
    if not settings.registry:
        raise ValueError("no meter registry configured: set METERWATCH_REGISTRY to a CSV file")
    registry = Registry.load(settings.registry)
    config = load_config(settings.detectors_config or None)
    app = create_app(settings, worker_id=worker_id)
    rt = Runtime(settings, registry, config, app,
                 topics=topics.declare(app, settings), tables=tables.declare(app, settings),
                 processor=Processor(settings, registry, config),
                 ingestor=Ingestor(settings, registry))
    agents.register(rt)
    views.register(rt)
    return rt
