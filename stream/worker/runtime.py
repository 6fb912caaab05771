"""What a running worker holds, in one typed record the agents, timers and views share."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from models.config import DetectorConfig
from stream.registry import Registry
from stream.settings import Settings
from stream.worker.processing import Ingestor, Processor
from stream.worker.tables import Tables
from stream.worker.topics import Topics


@dataclass
class Runtime:
    settings: Settings
    registry: Registry  # replaced in place when the registry file changes
    config: DetectorConfig
    app: faust.App
    topics: Topics
    tables: Tables
    processor: Processor
    ingestor: Ingestor
