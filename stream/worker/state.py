"""The changelogged state of one transformer area: its meters' fixed-size records.

The area is the unit of processing (readings are partitioned by area) and so the unit of
state: one table key per area holding the records of its meters and the area's own
record. A changelog write is then one message per area per interval instead of one per
meter, which is what keeps the state cost per reading near a memcpy. Each meter's record
is still the bounded, fixed-size row the engine defines (~1.3 KB); the blob is those rows
back to back.

Records carry their dtype description, so a new release whose detectors add or drop
fields migrates old state by field name instead of misreading it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache

import msgspec
import numpy as np


class _Blob(msgspec.Struct, array_like=True):
    version: int
    area_id: str
    meter_ids: list[str]
    dtype_key: str
    dtype_descr: str
    records: bytes
    area_dtype_key: str
    area_dtype_descr: str
    area_record: bytes


@lru_cache(maxsize=64)
def _descr(dt: np.dtype) -> str:
    return json.dumps(dt.descr)


@lru_cache(maxsize=64)
def _key(descr: str) -> str:
    return hashlib.blake2b(descr.encode(), digest_size=8).hexdigest()


def _migrate(raw: bytes, descr: str, dt: np.dtype, n: int) -> np.ndarray:
    old_dt = np.dtype([tuple(x) if len(x) == 2 else (x[0], x[1], tuple(x[2]))
                       for x in json.loads(descr)])
    old = np.frombuffer(raw, old_dt, count=n)
    new = np.zeros(n, dt)
    for name in dt.names:
        if name in old_dt.names and old_dt[name] == dt[name]:
            new[name] = old[name]
    return new


@dataclass
class AreaState:
    area_id: str
    meter_ids: list[str]
    records: np.ndarray  # engine meter dtype, aligned with meter_ids
    area_record: np.ndarray  # engine area dtype, shape (1,)
    _pos: dict[str, int] | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, area_id: str, dtype: np.dtype, area_dtype: np.dtype) -> "AreaState":
        return cls(area_id, [], np.zeros(0, dtype), np.zeros(1, area_dtype))

    def positions(self, meter_ids: list[str]) -> np.ndarray:
        """Record positions of meters, adding fresh (zero) records for new ones."""
        pos = self._pos
        if pos is None:
            pos = self._pos = {m: i for i, m in enumerate(self.meter_ids)}
        missing = [m for m in dict.fromkeys(meter_ids) if m not in pos]
        if missing:
            start = len(self.meter_ids)
            self.meter_ids = self.meter_ids + missing
            for k, m in enumerate(missing):
                pos[m] = start + k
            self.records = np.concatenate([self.records, np.zeros(len(missing), self.records.dtype)])
        return np.fromiter(map(pos.__getitem__, meter_ids), np.int64, len(meter_ids))

    def to_bytes(self) -> bytes:
        d, ad = _descr(self.records.dtype), _descr(self.area_record.dtype)
        return _encoder.encode(_Blob(1, self.area_id, self.meter_ids, _key(d), d,
                                     self.records.tobytes(), _key(ad), ad,
                                     self.area_record.tobytes()))

    @classmethod
    def from_bytes(cls, data: bytes, dtype: np.dtype, area_dtype: np.dtype) -> "AreaState":
        b = _decoder.decode(data)
        n = len(b.meter_ids)
        if b.dtype_key == _key(_descr(dtype)):
            rec = np.frombuffer(b.records, dtype, count=n).copy()
        else:
            rec = _migrate(b.records, b.dtype_descr, dtype, n)
        if b.area_dtype_key == _key(_descr(area_dtype)):
            arec = np.frombuffer(b.area_record, area_dtype, count=1).copy()
        else:
            arec = _migrate(b.area_record, b.area_dtype_descr, area_dtype, 1)
        return cls(b.area_id, b.meter_ids, rec, arec)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Blob)


# Keys of the areas table that are not areas start with a byte no area id starts with
# (the registry refuses such ids): the process agent's progress per partition
# (stream.worker.progress.PROGRESS_PREFIX) and each partition's theft model (THEFT_PREFIX).
INTERNAL_PREFIX = b"\x00"
THEFT_PREFIX = b"\x00theft:"


def theft_key(partition: int) -> bytes:
    """The table key of by-area partition ``partition``'s theft model (models.theft),
    written to that partition of the changelog like the partition's areas."""
    return THEFT_PREFIX + str(partition).encode()


def is_internal_key(key: bytes) -> bool:
    """A table key that is not an area's (progress, a theft model): skip it wherever
    area states are read."""
    return key.startswith(INTERNAL_PREFIX)
