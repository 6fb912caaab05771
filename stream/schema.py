"""Reading messages: decode, validate, and turn into columnar area batches.

A message on ``ami.readings`` is one reading, a JSON array of readings, or an object
with a ``readings`` array (a data concentrator's upload for its transformer area).

Decoding is msgspec (typed, precise error paths, ~1 us per reading). The common case,
a clean batch, decodes in one call; only a batch with a bad reading falls back to
decoding its readings one by one, so one bad reading rejects that reading only. The
semantic checks (finite, non-negative, within the meter's rating, not in the future,
known meter) run vectorised over the batch.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from models.base import EVENT_BITS, READING_DTYPE, event_mask as _event_mask
from stream.registry import Registry

# Reject reasons: a closed set, used as a metric label and in dead-letter records.
REASONS = (
    "payload_too_large", "malformed_json", "schema", "non_finite", "negative_energy",
    "out_of_range", "bad_timestamp", "future_timestamp", "bad_interval", "unknown_meter",
    "clock_invalid", "too_late", "empty_batch", "internal_error",
)

# Parsed by us (see _parse_ts), not msgspec: a batch repeats a handful of timestamps,
# and parsing each distinct string once is 5x cheaper than a datetime per reading.
Timestamp = str | int | float


NAN = math.nan


# gc=False on the decoded structs: a poll decodes hundreds of thousands of them, and as
# GC-tracked objects they set off collections that walk them all (measured 1.9-2.4 ->
# 1.2-1.4 us per reading to decode a concentrator batch). They hold strings, numbers
# and lists of those, so they cannot be part of a reference cycle.
class Reading(msgspec.Struct, forbid_unknown_fields=False, gc=False):
    # Optional measurements default to NaN, not None, so columns build without branches.
    meter_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ts: Timestamp
    kwh: float
    interval_s: int = 900
    kwh_export: float = NAN
    register_kwh: float = NAN
    voltage: float | list[float] = NAN
    voltage_min: float = NAN
    voltage_max: float = NAN
    current: float | list[float] = NAN
    neutral_current: float = NAN
    power_factor: float = NAN
    events: list[str] = []
    unit: Literal["kWh", "Wh"] = "kWh"


class Envelope(msgspec.Struct, forbid_unknown_fields=False, gc=False):
    readings: list[Reading] | None = None
    area_id: str | None = None
    concentrator_id: str | None = None


class RawEnvelope(msgspec.Struct, forbid_unknown_fields=False):
    readings: list[msgspec.Raw] | None = None


_dec_list = msgspec.json.Decoder(list[Reading])
_dec_env = msgspec.json.Decoder(Envelope)
_dec_one = msgspec.json.Decoder(Reading)
_dec_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_dec_raw_env = msgspec.json.Decoder(RawEnvelope)

_FLOAT_COLS = ("kwh", "kwh_export", "register_kwh", "voltage", "voltage_min", "voltage_max",
               "current", "neutral_current", "power_factor")


class Reject(msgspec.Struct):
    reason: str
    detail: str
    index: int | None = None  # position in the batch; None = the whole message
    meter_id: str | None = None


@dataclass
class Validated:
    """Valid readings of one message, as columns, plus what was rejected."""

    meter_ids: list[str]
    rows: np.ndarray  # int64 fleet rows
    cols: np.ndarray  # READING_DTYPE
    rejects: list[Reject] = field(default_factory=list)
    total: int = 0  # readings in the message (valid + rejected)


class AreaReadings(msgspec.Struct, array_like=True, gc=False):
    """The internal, re-keyed message: one area's validated readings from one source
    message, columns packed as READING_DTYPE bytes (cheap to make and to read)."""

    area_id: str
    meter_ids: list[str]
    cols: bytes
    produced_ms: int  # source message timestamp, for end-to-end latency
    src: str  # topic:partition:offset of the source message

    def columns(self) -> np.ndarray:
        return np.frombuffer(self.cols, dtype=READING_DTYPE)


area_encoder = msgspec.msgpack.Encoder()
area_decoder = msgspec.msgpack.Decoder(AreaReadings)


def _error_reason(msg: str) -> str:
    if "out of range" in msg:
        return "non_finite"  # 1e999 and friends decode to inf
    if "timezone" in msg or "datetime" in msg:
        return "bad_timestamp"
    return "schema"


class Decoded(msgspec.Struct, gc=False):
    readings: list[Reading]
    rejects: list[Reject]
    positions: list[int] | None = None  # batch position of each reading; None = 0..n-1


def decode_message(value: bytes) -> Decoded:
    """Readings of a message and the per-reading decode failures.

    >>> d = decode_message(b'[{"meter_id":"M1","ts":1700000100,"kwh":0.2},'
    ...                          b' {"meter_id":"M2","ts":1700000100,"kwh":"x"}]')
    >>> [r.meter_id for r in d.readings], [(b.reason, b.index) for b in d.rejects], d.positions
    (['M1'], [('schema', 1)], [0])
    """
    if (value[:1] == b"{" and b'"readings"' not in value and b"\\" not in value
            and b'"area_id"' not in value and b'"concentrator_id"' not in value):
        # One reading (one-reading-per-message input): one decode instead of an
        # envelope decode and then this one. Without those keys the envelope decode
        # would find no readings and end here; any error takes the full path below.
        try:
            return Decoded([_dec_one.decode(value)], [])
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
    head = value.lstrip()[:1]
    try:
        if head == b"[":
            rs = _dec_list.decode(value)
            if not rs:
                return Decoded([], [Reject("empty_batch", "no readings")])
            return Decoded(rs, [])
        if head == b"{":
            env = _dec_env.decode(value)
            if env.readings is not None:
                if not env.readings:
                    return Decoded([], [Reject("empty_batch", "no readings")])
                return Decoded(env.readings, [])
            return Decoded([_dec_one.decode(value)], [])
        raise msgspec.DecodeError("expected a JSON object or array")
    except msgspec.ValidationError as e:
        try:
            if head == b"{":
                try:
                    raws = _dec_raw_env.decode(value).readings
                except msgspec.ValidationError:
                    raws = None
                if raws is None:  # a single reading that is itself invalid
                    return Decoded([], [Reject(_error_reason(str(e)), str(e))])
            else:
                raws = _dec_raw_list.decode(value)
        except msgspec.DecodeError as e2:
            # A typed error first, then invalid JSON further on (a bare NaN): the
            # message as a whole is unreadable.
            return _decode_error(value, e2)
        good: list[Reading] = []
        pos: list[int] = []
        bad: list[Reject] = []
        for i, raw in enumerate(raws):
            try:
                good.append(_dec_one.decode(raw))
                pos.append(i)
            except msgspec.ValidationError as e2:
                mid = _peek_meter_id(raw)
                bad.append(Reject(_error_reason(str(e2)), str(e2).replace("$", f"$[{i}]", 1),
                                  i, mid))
        if not good and not bad:
            bad.append(Reject("empty_batch", "no readings"))
        return Decoded(good, bad, pos)
    except msgspec.DecodeError as e:
        return _decode_error(value, e)


def _decode_error(value: bytes, e: Exception) -> Decoded:
    text = bytes(value[:65536])
    if b"NaN" in text or b"Infinity" in text:
        return Decoded([], [Reject("non_finite", f"NaN/Infinity is not valid JSON: {e}")])
    return Decoded([], [Reject("malformed_json", str(e))])


class _Peek(msgspec.Struct):
    meter_id: object = None


_peek = msgspec.json.Decoder(_Peek)


def _peek_meter_id(raw: msgspec.Raw) -> str | None:
    """The meter id of a reading that failed to decode (other fields are skipped
    unchecked, so an out-of-range number elsewhere does not hide it)."""
    try:
        v = _peek.decode(raw).meter_id
        return v if isinstance(v, str) else None
    except Exception:
        return None


def _parse_ts(ts: str) -> float:
    """Epoch seconds of an ISO 8601 timestamp with offset; NaN if naive or malformed."""
    try:
        d = datetime.fromisoformat(ts)
    except ValueError:
        return math.nan
    return math.nan if d.tzinfo is None else d.timestamp()


def _epoch_number(t: int | float) -> float:
    # An integer too large for a float (JSON allows any number of digits) must become a
    # non-finite timestamp of its own reading, not an OverflowError for the whole poll.
    try:
        return float(t)
    except OverflowError:
        return math.inf


def _ts_column(values: list[Any], n: int) -> np.ndarray:
    # A batch repeats a handful of timestamps: each distinct value is converted once
    # and the column is filled by a C-level map over the lookup table.
    table: dict = {}
    for t in dict.fromkeys(values):  # distinct, in first-seen order
        table[t] = _parse_ts(t) if type(t) is str else _epoch_number(t)
    if len(table) == 1:
        return np.full(n, next(iter(table.values())), np.float64)
    return np.fromiter(map(table.__getitem__, values), np.float64, n)


def _scalar_or_mean(v: Any) -> float:
    if isinstance(v, list):
        return sum(v) / len(v) if v else math.nan
    return v


def event_mask(events: list[str]) -> int:
    return _event_mask(events) if events else 0


_get = {name: attrgetter(name) for name in Reading.__struct_fields__}


def _column(readings: list[Reading], name: str, n: int) -> np.ndarray:
    return np.fromiter(map(_get[name], readings), np.float64, n)


def _phases_column(readings: list[Reading], name: str, n: int) -> tuple[np.ndarray, list[int]]:
    """A column that may hold per-phase lists; the list rows are returned for extremes."""
    g = _get[name]
    vals = list(map(g, readings))
    if list not in set(map(type, vals)):  # the common case, checked at C speed
        return np.fromiter(vals, np.float64, n), []
    multi = [i for i, x in enumerate(vals) if type(x) is list]
    for i in multi:
        vals[i] = _scalar_or_mean(vals[i])
    return np.fromiter(vals, np.float64, n), multi


def validate(decoded: Decoded, registry: Registry, now: float, *,
             max_future_s: float = 300.0) -> Validated:
    """Check decoded readings against physics and the registry; columns for the valid.

    The first failed check (in the order below) names the reason. Energies in Wh are
    converted to kWh.
    """
    readings, positions = decoded.readings, decoded.positions
    rejects = list(decoded.rejects)
    n = len(readings)
    total = n + len(rejects)
    if n == 0:
        return Validated([], np.zeros(0, np.int64), np.zeros(0, READING_DTYPE), rejects, total)
    fleet = registry.fleet
    meter_ids = list(map(_get["meter_id"], readings))
    index = fleet.index
    rows = np.fromiter(map(index.get, meter_ids, repeat(-1)), np.int64, n)
    cols = np.empty(n, READING_DTYPE)
    ts_raw = list(map(_get["ts"], readings))
    tsf = _ts_column(ts_raw, n)
    bad_ts = np.isnan(tsf)
    # Beyond year ~33000 an epoch no longer fits the int64 column: treat as non-finite.
    ok_ts = np.abs(tsf) < 1e11
    fin_ts = ok_ts | bad_ts
    cols["ts"] = np.round(np.where(ok_ts, tsf, 0.0))
    # Absurd integers must not wrap in the int32 column: map them to -1 (bad_interval).
    # (Each distinct value mapped once: a batch has one or two intervals.)
    ivs = list(map(_get["interval_s"], readings))
    iv_map = {x: (x if -(2 ** 31) < x < 2 ** 31 else -1) for x in dict.fromkeys(ivs)}
    cols["interval_s"] = np.fromiter(map(iv_map.__getitem__, ivs), np.int64, n)
    evs = list(map(_get["events"], readings))
    cols["events"] = (np.fromiter(map(event_mask, evs), np.uint32, n) if any(evs)
                      else 0)
    for c in ("kwh", "kwh_export", "register_kwh", "voltage_min", "voltage_max",
              "neutral_current", "power_factor"):
        cols[c] = _column(readings, c, n)
    cols["current"], _ = _phases_column(readings, "current", n)
    cols["voltage"], vmulti = _phases_column(readings, "voltage", n)
    for i in vmulti:
        # Per-phase voltages: the extremes across phases matter for sags and swells.
        vs = readings[i].voltage
        if vs:
            lo, hi = min(vs), max(vs)
            if not lo >= cols["voltage_min"][i]:
                cols["voltage_min"][i] = lo
            if not hi <= cols["voltage_max"][i]:
                cols["voltage_max"][i] = hi
    units = list(map(_get["unit"], readings))
    if units.count("kWh") != n:
        wh = np.fromiter((u == "Wh" for u in units), bool, n)
        for c in ("kwh", "kwh_export", "register_kwh"):
            cols[c][wh] /= 1000.0

    r = np.where(rows >= 0, rows, 0)
    vnom = fleet.nominal_voltage[r]
    irated = fleet.rated_current[r]
    iv = cols["interval_s"]
    ts, v, vmin, vmax = cols["ts"], cols["voltage"], cols["voltage_min"], cols["voltage_max"]
    cur, ncur, pf, kwh, exp = (cols["current"], cols["neutral_current"], cols["power_factor"],
                               cols["kwh"], cols["kwh_export"])
    # The most energy the meter can pass at its rating, with 20% margin for voltage.
    emax = vnom * irated * fleet.phases[r] * iv / 3.6e6 * 1.2
    checks = (
        ("unknown_meter", lambda: rows < 0, lambda i: f"meter {meter_ids[i]!r} is not in the registry"),
        ("non_finite", lambda: np.logical_or.reduce(
            [~fin_ts & ~np.isfinite(tsf)] + [np.isinf(cols[c]) for c in _FLOAT_COLS]),
         lambda i: "a value is not finite: " + ", ".join(
             ["ts"] * (not fin_ts[i]) + [c for c in _FLOAT_COLS if math.isinf(cols[c][i])])),
        ("negative_energy", lambda: (kwh < 0) | (exp < 0),
         lambda i: f"kwh {kwh[i]} / kwh_export {exp[i]}: energy cannot be negative"),
        ("bad_interval", lambda: (iv < 60) | (iv > 86400) | (86400 % np.maximum(iv, 1) != 0),
         lambda i: f"interval_s {iv[i]} must divide a day (60-86400 s)"),
        ("bad_timestamp", lambda: bad_ts | (ts < 946684800) | (~ok_ts & np.isfinite(tsf)),
         lambda i: f"ts {ts_raw[i]!r} is not ISO 8601 with a UTC offset" if bad_ts[i]
         else f"ts {ts_raw[i]!r} is not epoch seconds (milliseconds?)" if not ok_ts[i]
         else f"ts {ts_raw[i]!r} is before 2000-01-01"),
        ("future_timestamp", lambda: ts > now + max_future_s,
         lambda i: f"ts {datetime.fromtimestamp(float(ts[i])).isoformat()} is "
                   f"{ts[i] - now:.0f} s in the future (limit {max_future_s:.0f} s)"),
        ("out_of_range", lambda: (v < 0) | (v > 2.0 * vnom) | (vmax > 2.5 * vnom) | (vmin < 0)
         | (cur < 0) | (cur > 1.2 * irated) | (ncur < 0) | (ncur > 1.2 * irated)
         | (pf < -1) | (pf > 1) | (kwh > emax),
         lambda i: _range_detail(cols[i], vnom[i], irated[i], emax[i])),
        ("clock_invalid", lambda: (cols["events"] & EVENT_BITS["clock_invalid"]) != 0,
         lambda i: "meter flagged its clock invalid: reading quarantined"),
    )
    masks = [(code, m(), why) for code, m, why in checks]
    bad = np.logical_or.reduce([m for _, m, _ in masks]) if masks else np.zeros(n, bool)
    if not bad.any():
        return Validated(meter_ids, rows, cols, rejects, total)
    taken = np.zeros(n, bool)
    for code, m, why in masks:
        new = m & ~taken
        for i in np.flatnonzero(new):
            at = positions[i] if positions is not None else int(i)
            rejects.append(Reject(code, why(int(i)), at, meter_ids[i]))
        taken |= new
    ok = ~bad
    return Validated([m for m, k in zip(meter_ids, ok) if k], rows[ok], cols[ok], rejects, total)


def _range_detail(c: np.void, vnom: float, irated: float, emax: float) -> str:
    probs = []
    if not (0 <= c["voltage"] <= 2 * vnom) and not math.isnan(c["voltage"]):
        probs.append(f"voltage {c['voltage']} V is impossible on a {vnom:.0f} V meter")
    if c["voltage_max"] > 2.5 * vnom or c["voltage_min"] < 0:
        probs.append(f"voltage_min/max {c['voltage_min']}/{c['voltage_max']} V beyond physics")
    if c["current"] < 0 or c["current"] > 1.2 * irated:
        probs.append(f"current {c['current']} A exceeds the meter's {irated:.0f} A rating")
    if c["neutral_current"] < 0 or c["neutral_current"] > 1.2 * irated:
        probs.append(f"neutral_current {c['neutral_current']} A exceeds the {irated:.0f} A rating")
    if c["power_factor"] < -1 or c["power_factor"] > 1:
        probs.append(f"power_factor {c['power_factor']} outside [-1, 1]")
    if c["kwh"] > emax:
        probs.append(f"kwh {c['kwh']} exceeds what a {irated:.0f} A meter passes in "
                     f"{c['interval_s']} s ({emax:.2f} kWh)")
    return "; ".join(probs) or "value out of range"


def rejected_record(
    value: bytes, rej: Reject, *, topic: str, partition: int, offset: int, at: float,
) -> bytes:
    """The dead-letter record for ``ami.readings.rejected``: the original bytes and why."""
    try:
        payload, enc = value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, enc = base64.b64encode(value).decode("ascii"), "base64"
    return msgspec.json.encode({
        "reason": rej.reason, "detail": rej.detail, "index": rej.index,
        "meter_id": rej.meter_id, "source": {"topic": topic, "partition": partition,
                                             "offset": offset},
        "rejected_at": at, "payload_encoding": enc, "payload": payload,
    })


def split_by_area(v: Validated, registry: Registry) -> dict[int, np.ndarray]:
    """Positions of the valid readings per area index (one message may span areas)."""
    if len(v.rows) == 0:
        return {}
    areas = registry.fleet.area[v.rows]
    first = areas[0]
    if (areas == first).all():
        return {int(first): np.arange(len(areas))}
    order = np.argsort(areas, kind="stable")
    sa = areas[order]
    cuts = np.flatnonzero(np.diff(sa)) + 1
    return {int(g[0]): order[s:e] for g, s, e in
            zip(np.split(sa, cuts), np.r_[0, cuts], np.r_[cuts, len(sa)])}
