"""Inspection outcomes on the by-area topic: how the theft model hears what inspections
found on its alerts.

The console records an outcome in the alert store; the notifier publishes each
``confirmed_theft`` or ``false_alarm`` on one of the theft model's own alerts (type
``theft``, evidence model ``fleet_self_supervised``; every other outcome and alert stays
in the store) as an :class:`stream.schema.OutcomeMessage`, msgpack behind
:data:`stream.schema.OUTCOME_PREFIX`. By-area messages thus carry readings, temperature
samples (:mod:`stream.worker.weather`) and outcomes, told apart by their first bytes.

Where the copies go. The theft model is sharded by by-area partition, and every shard
learns from every outcome, while only the shard owning the meter changes the meter's
state. So an outcome goes to EVERY partition of the by-area topic, one copy each:

* the area's own partition, keyed by the area id (``key=area_id.encode()``, where
  Kafka's default partitioner puts the area's readings): ordered with the area's
  readings, this copy also applies to the meter;
* each other partition, keyed :data:`OUTCOME_KEY` with an explicit partition: this copy
  only teaches that shard's model.

A worker tells the two apart by the key. Delivery is at least once (the notifier marks
an outcome published only after the broker acknowledged every copy, and sends it again
otherwise), so a worker ignores an outcome it has applied already: the alert id and the
outcome identify it. An alert resolved again with another outcome is published again.
"""

from __future__ import annotations

from typing import Any

from stream.schema import OUTCOME_PREFIX, OutcomeMessage, outcome_decoder, outcome_encoder

OUTCOME_KEY = b"\x00outcome"  # the copies on partitions other than the area's


def is_outcome(value: bytes) -> bool:
    """A by-area message that carries an inspection outcome (not readings)."""
    return value[:len(OUTCOME_PREFIX)] == OUTCOME_PREFIX


def encode(msg: OutcomeMessage) -> bytes:
    return OUTCOME_PREFIX + outcome_encoder.encode(msg)


def decode(value: bytes) -> OutcomeMessage:
    """The outcome of a by-area message for which :func:`is_outcome` holds."""
    return outcome_decoder.decode(value[len(OUTCOME_PREFIX):])


def from_row(row: dict[str, Any]) -> OutcomeMessage:
    """The message of an outcome as :meth:`stream.store.AlertStore.unpublished_outcomes`
    returns it."""
    return OutcomeMessage(alert_id=row["id"], meter_id=row["meter_id"], area_id=row["area_id"],
                          outcome=row["outcome"], type=row["type"], subtype=row["subtype"],
                          evidence=row["evidence"], resolved_at=float(row["resolved_at"]))


def area_partition(area_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``area_id`` (where the
    area's readings are, and whose theft model its meters use)."""
    from models.theft import area_partitions

    return int(area_partitions([area_id], partitions)[0]) if partitions > 1 else 0


def copies(msg: OutcomeMessage, partitions: int) -> list[tuple[int, bytes, bytes]]:
    """``(partition, key, value)`` of each copy of an outcome on a topic of
    ``partitions`` partitions: the area's own first."""
    value = encode(msg)
    own = area_partition(msg.area_id, partitions)
    return [(own, msg.area_id.encode(), value)] + [
        (p, OUTCOME_KEY, value) for p in range(partitions) if p != own]
