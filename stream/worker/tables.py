"""Tables: the per-area state (meter records + area record) as one changelogged blob
per transformer area. See stream/worker/state.py for why the area is the key."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from stream.app import MAX_MESSAGE_BYTES
from stream.settings import Settings


@dataclass
class Tables:
    areas: faust.Table


def declare(app: faust.App, s: Settings) -> Tables:
    areas = app.Table(
        # key_type/value_type bytes is what makes Faust use the raw codec, for writes
        # and for changelog recovery alike.
        "areas", default=None, partitions=s.topic_partitions, key_type=bytes,
        value_type=bytes,
        extra_topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES),
                             "cleanup.policy": "compact"},
    )
    return Tables(areas=areas)
