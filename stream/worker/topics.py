"""Topics: names from settings, raw bytes on the wire (we decode with msgspec)."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from stream.app import MAX_MESSAGE_BYTES
from stream.kafka_admin import topic_names
from stream.settings import Settings


@dataclass
class Topics:
    readings: faust.TopicT
    by_area: faust.TopicT
    rejected: faust.TopicT
    alerts: faust.TopicT
    deadletter: faust.TopicT
    weather: faust.TopicT | None = None  # the optional weather feed


def declare(app: faust.App, s: Settings) -> Topics:
    def topic(name: str, *, internal: bool = True, **kw) -> faust.TopicT:
        # internal=True: the worker creates the topic if missing. Faust otherwise ignores
        # a source topic that does not exist yet and never notices it appear.
        kw.setdefault("config", {"max.message.bytes": str(MAX_MESSAGE_BYTES)})
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=s.topic_partitions,
                         internal=internal, **kw)

    return Topics(**{role: topic(name) for role, name in topic_names(s).items()})
