"""The dead-letter record every process writes for a message it could not handle: the
original bytes (UTF-8, or base64 when they are not text), where they came from, and the
error with its traceback, so an operator can see what failed and replay it."""

from __future__ import annotations

import base64
import time
import traceback

import msgspec

_enc = msgspec.json.Encoder()


def record(stage: str, value: bytes, *, topic: str, partition: int, offset: int,
           exc: BaseException, key: bytes | None = None) -> bytes:
    """The dead-letter record of one message that failed at ``stage``."""
    try:
        payload, enc = value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, enc = base64.b64encode(value).decode("ascii"), "base64"
    return _enc.encode({
        "stage": stage, "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc))[-8000:],
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "key": key.decode("utf-8", "replace") if isinstance(key, bytes) else None,
        "payload_encoding": enc, "payload": payload, "at": time.time(),
    })


def from_event(stage: str, event, exc: BaseException) -> bytes:
    """The dead-letter record of a Faust event."""
    m = event.message
    value = event.value if isinstance(event.value, (bytes, bytearray)) else b""
    return record(stage, bytes(value), topic=m.topic, partition=m.partition, offset=m.offset,
                  exc=exc, key=event.key)


def from_source(stage: str, m, exc: BaseException, key: bytes | None = None) -> bytes:
    """The dead-letter record of a :class:`stream.worker.processing.SourceMessage`."""
    return record(stage, m.value, topic=m.topic, partition=m.partition, offset=m.offset,
                  exc=exc, key=key)
