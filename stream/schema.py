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
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from operator import attrgetter
from typing import Annotated, Any, Callable, Literal

import msgspec
import numpy as np

from models.base import EVENT_BITS, READING_DTYPE, event_mask as _event_mask
from stream.registry import Registry

# Reject reasons: a closed set, used as a metric label and in dead-letter records.
REASONS = (
    "payload_too_large", "malformed_json", "schema", "non_finite", "negative_energy",
    "out_of_range", "bad_timestamp", "future_timestamp", "bad_interval", "unknown_meter",
    "clock_invalid", "too_late", "empty_batch", "internal_error", "unknown_area",
)

# Parsed by us (see _parse_ts), not msgspec: a batch repeats a handful of timestamps,
# and parsing each distinct string once is 5x cheaper than a datetime per reading.
Timestamp = str | int | float


NAN = math.nan


# gc=False on the decoded structs: a poll decodes hundreds of thousands of them, and as
# GC-tracked objects they set off collections that walk them all (bench/README.md).
# They hold strings, numbers and lists of those, so they cannot be part of a reference
# cycle.
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
    kept: np.ndarray | None = None  # input positions of the valid; None = all of them


class AreaReadings(msgspec.Struct, array_like=True, gc=False):
    """The internal, re-keyed message: one area's validated readings from one source
    message, columns packed as READING_DTYPE bytes (cheap to make and to read)."""

    area_id: str
    meter_ids: list[str]
    cols: bytes
    produced_ms: int  # source message timestamp, for end-to-end latency
    src: str  # topic:partition:offset of the source message
    # Each reading's source partition and offset in ami.readings (SOURCE_DTYPE), so the
    # process side tells a replayed reading from a late one. Empty from older producers.
    sources: bytes = b""

    def columns(self) -> np.ndarray:
        return np.frombuffer(self.cols, dtype=READING_DTYPE)

    def source_positions(self) -> np.ndarray | None:
        """(partition, offset) per reading, or None when the producer sent none."""
        if len(self.sources) != len(self.meter_ids) * SOURCE_DTYPE.itemsize:
            return None
        return np.frombuffer(self.sources, dtype=SOURCE_DTYPE)


SOURCE_DTYPE = np.dtype([("partition", "<i4"), ("offset", "<i8")])


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
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
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
        return _decode_error(value, msgspec.DecodeError("expected a JSON object or array"))
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as e:
        # RecursionError: msgspec recurses once per nesting level, and JSON nested
        # ~1,000 deep (2 KB) reaches the interpreter's limit. Like any other bad
        # input it must cost its own reading, never the poll it came in.
        return _decode_each(value, head, e)


def _decode_each(value: bytes, head: bytes, err: Exception) -> Decoded:
    """The slow path of a message that did not decode whole: its readings one by one,
    so one bad reading (wrong type, NaN literal, nesting too deep) rejects only itself."""
    if head == b"[":
        raws = _raw_elements(value)
    else:
        raws = _raw_envelope(value)
        if raws is _NOT_ENVELOPE:  # a single reading that is itself bad
            return Decoded([], [_reading_reject(value, err, None)])
        if isinstance(raws, Reject):
            return Decoded([], [raws])
    if raws is None:  # no element boundaries to be found: unreadable as a whole
        return _decode_error(value, err)
    good: list[Reading] = []
    pos: list[int] = []
    bad: list[Reject] = []
    for i, raw in enumerate(raws):
        try:
            good.append(_dec_one.decode(raw))
            pos.append(i)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as e2:
            bad.append(_reading_reject(raw, e2, i))
    if not good and not bad:
        bad.append(Reject("empty_batch", "no readings"))
    return Decoded(good, bad, pos)


def _reading_reject(raw, err: Exception, index: int | None) -> Reject:
    """Why one reading's JSON did not decode, naming the field when it can."""
    if isinstance(err, msgspec.ValidationError):
        detail = str(err) if index is None else str(err).replace("$", f"$[{index}]", 1)
        return Reject(_error_reason(str(err)), detail, index, _peek_meter_id(raw))
    if isinstance(err, RecursionError):
        return Reject("malformed_json", f"JSON nested too deeply ({err})", index,
                      _peek_meter_id(raw))
    fields, mid = _non_finite_fields(bytes(raw))
    if fields:
        return Reject("non_finite", f"{', '.join(fields)}: NaN/Infinity is not a number "
                      f"(not valid JSON)", index, mid)
    if _NON_FINITE_TOKEN.search(bytes(raw)):
        return Reject("non_finite", f"NaN/Infinity is not valid JSON: {err}", index, mid)
    return Reject("malformed_json", str(err), index, mid)


def _decode_error(value: bytes, e: Exception) -> Decoded:
    if isinstance(e, RecursionError):
        return Decoded([], [Reject("malformed_json", f"JSON nested too deeply ({e})")])
    text = bytes(value[:65536])
    if b"NaN" in text or b"Infinity" in text:
        return Decoded([], [Reject("non_finite", f"NaN/Infinity is not valid JSON: {e}")])
    return Decoded([], [Reject("malformed_json", str(e))])


# -- element boundaries of a message msgspec cannot decode whole ----------------------

_NOT_ENVELOPE = object()
# Strings (so brackets and commas inside them do not count) and the structural
# characters; everything else (numbers, literals, whitespace) is skipped by the regex
# engine. Tolerant by design: NaN, nesting depth and bad UTF-8 do not stop it.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[][{},:]', re.S)
_KEY = re.compile(rb'\s*("[^"\\]*(?:\\.[^"\\]*)*")\s*:', re.S)
_NON_FINITE_TOKEN = re.compile(rb'(?<![\w"])-?(?:NaN|Infinity)(?![\w"])')


def _children(value: bytes, at: int) -> tuple[list[bytes], int] | None:
    """The direct children of the array or object opening at ``at`` (raw bytes, an
    object's as ``"key": value``) and the offset past its close; None if it never
    closes."""
    depth = 0
    out: list[bytes] = []
    start = at + 1
    for m in _TOKEN.finditer(value, at):
        c = value[m.start()]
        if c == 0x5B or c == 0x7B:  # [ {
            depth += 1
        elif c == 0x5D or c == 0x7D:  # ] }
            depth -= 1
            if depth == 0:
                last = value[start:m.start()]
                if out or last.strip():
                    out.append(last)
                return out, m.end()
        elif c == 0x2C and depth == 1:  # ,
            out.append(value[start:m.start()])
            start = m.end()
    return None


def _raw_elements(value: bytes) -> list | None:
    """The readings of a top-level array, raw; None if no boundaries can be found."""
    try:
        return _dec_raw_list.decode(value)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        pass
    return _top_children(value)


def _top_children(value: bytes) -> list[bytes] | None:
    """The raw children of the document's top-level array or object, found by a scan
    that only minds strings and brackets; None if it is not one whole container."""
    value = bytes(value)
    got = _children(value, len(value) - len(value.lstrip()))
    if got is None or value[got[1]:].strip():
        return None
    return got[0]


def _raw_envelope(value: bytes):
    """The raw readings of an envelope; _NOT_ENVELOPE for a single reading; a Reject
    when ``readings`` is not an array; None if no boundaries can be found."""
    try:
        env = _dec_raw_env.decode(value)
        return _NOT_ENVELOPE if env.readings is None else env.readings
    except msgspec.ValidationError as e:  # "readings" is there but not an array
        return Reject(_error_reason(str(e)), str(e))
    except (msgspec.DecodeError, RecursionError):
        pass
    children = _top_children(value)
    if children is None:
        return None
    arr = None
    for child in children:  # the last "readings" wins, as in a normal decode
        k = _KEY.match(child)
        if k is not None and k.group(1) == b'"readings"':
            arr = child[k.end():]
    if arr is None:
        return _NOT_ENVELOPE
    lead = len(arr) - len(arr.lstrip())
    if arr[lead:lead + 1] != b"[":
        return Reject("schema", "readings: expected an array")
    inner = _children(arr, lead)
    if inner is None or arr[inner[1]:].strip():
        return None
    return inner[0]


def _non_finite_fields(raw: bytes) -> tuple[list[str], str | None]:
    """Fields of a reading holding NaN/Infinity literals (the stdlib parser accepts
    them), and its meter id."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return [], None
    if not isinstance(obj, dict):
        return [], None
    bad = [str(k) for k, v in obj.items() if _non_finite(v)]
    mid = obj.get("meter_id")
    return bad, mid if isinstance(mid, str) else None


def _non_finite(v: Any) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, list):
        return any(isinstance(x, float) and not math.isfinite(x) for x in v)
    return False


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
        if not v:
            return math.nan
        m = sum(v) / len(v)
        # Large but finite phase values must not overflow into a "non-finite" mean.
        return m if not math.isinf(m) else sum(x / len(v) for x in v)
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


@dataclass
class _Phases:
    """Per-phase extremes and phase counts of the list-valued fields, for the range
    checks: a mean hides a phase at -1000 A behind another at +1000 A."""

    v_lo: np.ndarray
    v_hi: np.ndarray
    i_lo: np.ndarray
    i_hi: np.ndarray
    count: np.ndarray  # most values given for one field (1 for scalars)


def _columns(readings: list[Reading], n: int) -> tuple[np.ndarray, _Phases]:
    """READING_DTYPE columns of decoded readings (ts and interval_s are the caller's
    to fill) and their per-phase extremes."""
    cols = np.empty(n, READING_DTYPE)
    evs = list(map(_get["events"], readings))
    cols["events"] = (np.fromiter(map(event_mask, evs), np.uint32, n) if any(evs)
                      else 0)
    for c in ("kwh", "kwh_export", "register_kwh", "voltage_min", "voltage_max",
              "neutral_current", "power_factor"):
        cols[c] = _column(readings, c, n)
    cols["current"], imulti = _phases_column(readings, "current", n)
    cols["voltage"], vmulti = _phases_column(readings, "voltage", n)
    ph = _Phases(cols["voltage"].copy(), cols["voltage"].copy(), cols["current"].copy(),
                 cols["current"].copy(), np.ones(n, np.int64))
    for i in imulti:
        cs = readings[i].current
        if cs:
            ph.i_lo[i], ph.i_hi[i] = min(cs), max(cs)
            ph.count[i] = len(cs)
    for i in vmulti:
        # Per-phase voltages: the extremes across phases matter for sags and swells.
        vs = readings[i].voltage
        if vs:
            lo, hi = min(vs), max(vs)
            ph.v_lo[i], ph.v_hi[i] = lo, hi
            ph.count[i] = max(ph.count[i], len(vs))
            if not lo >= cols["voltage_min"][i]:
                cols["voltage_min"][i] = lo
            if not hi <= cols["voltage_max"][i]:
                cols["voltage_max"][i] = hi
    units = list(map(_get["unit"], readings))
    if units.count("kWh") != n:
        wh = np.fromiter((u == "Wh" for u in units), bool, n)
        for c in ("kwh", "kwh_export", "register_kwh"):
            cols[c][wh] /= 1000.0
    return cols, ph


def validate(decoded: Decoded, registry: Registry, now: float, *,
             max_future_s: float = 300.0) -> Validated:
    """Check decoded readings against physics and the registry; columns for the valid.

    The first failed check (in the order of ``_checks``) names the reason. Energies in
    Wh are converted to kWh.
    """
    readings, positions = decoded.readings, decoded.positions
    rejects = list(decoded.rejects)
    n = len(readings)
    total = n + len(rejects)
    if n == 0:
        return Validated([], np.zeros(0, np.int64), np.zeros(0, READING_DTYPE), rejects, total)
    meter_ids = list(map(_get["meter_id"], readings))
    rows = np.fromiter(map(registry.fleet.index.get, meter_ids, repeat(-1)), np.int64, n)
    cols, ph = _columns(readings, n)
    ts_raw = list(map(_get["ts"], readings))
    tsf = _ts_column(ts_raw, n)
    # Beyond year ~33000 an epoch no longer fits the int64 column: treat as non-finite.
    ok_ts = np.abs(tsf) < 1e11
    cols["ts"] = np.round(np.where(ok_ts, tsf, 0.0))
    # Absurd integers must not wrap in the int32 column: map them to -1 (bad_interval).
    # (Each distinct value mapped once: a batch has one or two intervals.)
    ivs = list(map(_get["interval_s"], readings))
    iv_map = {x: (x if -(2 ** 31) < x < 2 ** 31 else -1) for x in dict.fromkeys(ivs)}
    cols["interval_s"] = np.fromiter(map(iv_map.__getitem__, ivs), np.int64, n)
    masks = _checks(cols, ph, rows, registry, tsf, ts_raw, meter_ids, now, max_future_s)
    bad = np.logical_or.reduce([m for _, m, _ in masks])
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
    return Validated([m for m, k in zip(meter_ids, ok) if k], rows[ok], cols[ok], rejects,
                     total, np.flatnonzero(ok))


# Margins on the meter's rating: what a healthy meter may report above it.
CURRENT_MARGIN = 1.2  # x rated current, per phase and neutral
ENERGY_MARGIN = 1.2  # x phases x V_nominal x I_rated x interval
VOLTAGE_MEAN_MAX = 2.0  # x nominal, an interval's (per-phase) mean
VOLTAGE_PEAK_MAX = 2.5  # x nominal, an interval's extremes
REGISTER_YEARS = 100  # a register cannot hold more than a century at full rating


def _checks(cols: np.ndarray, ph: _Phases, rows: np.ndarray, registry: Registry,
            tsf: np.ndarray, ts_raw: list, meter_ids: list[str], now: float,
            max_future_s: float) -> list[tuple[str, np.ndarray, Callable[[int], str]]]:
    """(reason, failing mask, detail of one failing reading) per check, in order."""
    fleet = registry.fleet
    r = np.where(rows >= 0, rows, 0)
    vnom, irated, phases = fleet.nominal_voltage[r], fleet.rated_current[r], fleet.phases[r]
    iv = cols["interval_s"]
    ts, vmin, vmax = cols["ts"], cols["voltage_min"], cols["voltage_max"]
    ncur, pf, kwh, exp, reg = (cols["neutral_current"], cols["power_factor"], cols["kwh"],
                               cols["kwh_export"], cols["register_kwh"])
    bad_ts = np.isnan(tsf)
    ok_ts = np.abs(tsf) < 1e11
    fin_ts = ok_ts | bad_ts
    imax = CURRENT_MARGIN * irated
    # The most energy the meter can pass at its rating in the interval, in kWh.
    pmax_kw = vnom * irated * phases * ENERGY_MARGIN / 1000.0
    emax = pmax_kw * iv / 3600.0
    regmax = pmax_kw * 24 * 365.25 * REGISTER_YEARS
    lim = _Limits(vnom, irated, phases, emax, regmax)
    return [
        ("unknown_meter", rows < 0, lambda i: f"meter {meter_ids[i]!r} is not in the registry"),
        ("non_finite", np.logical_or.reduce(
            [~fin_ts & ~np.isfinite(tsf)] + [np.isinf(cols[c]) for c in _FLOAT_COLS]),
         lambda i: "a value is not finite: " + ", ".join(
             ["ts"] * (not fin_ts[i]) + [c for c in _FLOAT_COLS if math.isinf(cols[c][i])])),
        ("negative_energy", (kwh < 0) | (exp < 0),
         lambda i: f"kwh {kwh[i]} / kwh_export {exp[i]}: energy cannot be negative"),
        ("bad_interval", (iv < 60) | (iv > 86400) | (86400 % np.maximum(iv, 1) != 0),
         lambda i: f"interval_s {iv[i]} must divide a day (60-86400 s)"),
        ("bad_timestamp", bad_ts | (ts < 946684800) | (~ok_ts & np.isfinite(tsf)),
         lambda i: f"ts {ts_raw[i]!r} is not ISO 8601 with a UTC offset" if bad_ts[i]
         else f"ts {ts_raw[i]!r} is not epoch seconds (milliseconds?)" if not ok_ts[i]
         else f"ts {ts_raw[i]!r} is before 2000-01-01"),
        ("future_timestamp", ts > now + max_future_s,
         lambda i: f"ts {datetime.fromtimestamp(float(ts[i])).isoformat()} is "
                   f"{ts[i] - now:.0f} s in the future (limit {max_future_s:.0f} s)"),
        ("out_of_range", (ph.v_lo < 0) | (ph.v_hi > VOLTAGE_MEAN_MAX * vnom)
         | (vmax > VOLTAGE_PEAK_MAX * vnom) | (vmin < 0)
         | (ph.i_lo < 0) | (ph.i_hi > imax) | (ncur < 0) | (ncur > imax)
         | (pf < -1) | (pf > 1) | (kwh > emax) | (exp > emax) | (reg < 0) | (reg > regmax)
         | (ph.count > phases),
         lambda i: _range_detail(cols[i], ph, i, lim)),
        ("clock_invalid", (cols["events"] & EVENT_BITS["clock_invalid"]) != 0,
         lambda i: "meter flagged its clock invalid: reading quarantined"),
    ]


@dataclass
class _Limits:
    vnom: np.ndarray
    irated: np.ndarray
    phases: np.ndarray
    emax: np.ndarray
    regmax: np.ndarray


def _range_detail(c: np.void, ph: _Phases, i: int, lim: _Limits) -> str:
    """Every out-of-range field of reading ``i``, named, with the limit it broke."""
    vnom, irated, emax = float(lim.vnom[i]), float(lim.irated[i]), float(lim.emax[i])
    probs = []
    if not (0 <= ph.v_lo[i] and ph.v_hi[i] <= VOLTAGE_MEAN_MAX * vnom) and not math.isnan(c["voltage"]):
        probs.append(f"voltage {ph.v_lo[i]:g}..{ph.v_hi[i]:g} V is impossible on a "
                     f"{vnom:.0f} V meter")
    if c["voltage_max"] > VOLTAGE_PEAK_MAX * vnom or c["voltage_min"] < 0:
        probs.append(f"voltage_min/max {c['voltage_min']}/{c['voltage_max']} V beyond physics")
    if ph.i_lo[i] < 0 or ph.i_hi[i] > CURRENT_MARGIN * irated:
        probs.append(f"current {ph.i_lo[i]:g}..{ph.i_hi[i]:g} A per phase: must be 0 to "
                     f"{CURRENT_MARGIN:g}x the meter's {irated:.0f} A rating")
    if c["neutral_current"] < 0 or c["neutral_current"] > CURRENT_MARGIN * irated:
        probs.append(f"neutral_current {c['neutral_current']} A exceeds the {irated:.0f} A rating")
    if c["power_factor"] < -1 or c["power_factor"] > 1:
        probs.append(f"power_factor {c['power_factor']} outside [-1, 1]")
    for f in ("kwh", "kwh_export"):
        if c[f] > emax:
            probs.append(f"{f} {c[f]:g} exceeds what a {irated:.0f} A meter passes in "
                         f"{c['interval_s']} s ({emax:.2f} kWh)")
    if c["register_kwh"] < 0 or c["register_kwh"] > lim.regmax[i]:
        probs.append(f"register_kwh {c['register_kwh']:g} must be 0 to {lim.regmax[i]:.3g} kWh "
                     f"(a century at the meter's rating)")
    if ph.count[i] > lim.phases[i]:
        probs.append(f"{ph.count[i]} per-phase values on a {lim.phases[i]}-phase meter")
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


# -- weather ---------------------------------------------------------------------------
# The optional weather feed (METERWATCH_WEATHER_TOPIC): hourly temperature per area,
# one sample per message: {"area_id": "A001", "ts": <ISO 8601 with offset | epoch s>,
# "temperature_c": 7.5}. Validated here like readings; bad messages are rejected whole.
TEMPERATURE_RANGE_C = (-90.0, 60.0)  # beyond what any surface station has recorded


class WeatherSample(msgspec.Struct, forbid_unknown_fields=False):
    area_id: str
    ts: str | int | float
    temperature_c: float


_weather_decoder = msgspec.json.Decoder(WeatherSample)


class AreaTemperature(msgspec.Struct, array_like=True):
    """The internal, re-keyed weather message on the by-area topic (with
    :data:`WEATHER_PREFIX` before it, so the process agent tells it from readings)."""

    area_id: str
    ts: int  # epoch s: the local hour containing it
    temperature_c: float
    src: str  # topic:partition:offset of the source message


WEATHER_PREFIX = b"\x00weather\x00"  # a msgpack AreaReadings never starts with 0x00
weather_encoder = msgspec.msgpack.Encoder()
weather_decoder = msgspec.msgpack.Decoder(AreaTemperature)


def validate_weather(value: bytes, registry: Registry, now: float, *,
                     max_future_s: float) -> WeatherSample | Reject:
    """The sample of one weather message, or why it is rejected (the whole message)."""
    try:
        w = _weather_decoder.decode(value)
    except msgspec.ValidationError as e:
        return Reject("schema", f"weather message: {e}")
    except msgspec.DecodeError as e:
        return Reject("malformed_json", f"weather message: {e}")
    ts = _parse_ts(w.ts) if isinstance(w.ts, str) else _epoch_number(w.ts)
    if not math.isfinite(ts):
        return Reject("bad_timestamp", f"ts {w.ts!r}: not ISO 8601 with an offset, nor epoch seconds")
    if ts > now + max_future_s:
        return Reject("future_timestamp", f"ts {w.ts!r} is more than {max_future_s:.0f} s ahead")
    lo, hi = TEMPERATURE_RANGE_C
    if not (math.isfinite(w.temperature_c) and lo <= w.temperature_c <= hi):
        return Reject("out_of_range", f"temperature_c {w.temperature_c!r} outside {lo}..{hi} degC")
    if w.area_id not in registry.area_index:
        return Reject("unknown_area", f"area {w.area_id!r} is not in the registry")
    w.ts = int(ts)
    return w


# -- inspection outcomes ---------------------------------------------------------------
# What an inspection found on one of the theft model's alerts, published by the notifier
# on the by-area topic for the workers' theft model (stream/outcomes.py says where).

class OutcomeMessage(msgspec.Struct, forbid_unknown_fields=False):
    """An outcome on the by-area topic (with :data:`OUTCOME_PREFIX` before it). A map,
    not an array: fields added later do not break an older worker."""

    alert_id: str
    meter_id: str
    area_id: str
    outcome: str  # confirmed_theft | false_alarm
    type: str
    subtype: str
    evidence: dict[str, Any]  # the alert's evidence, as the model wrote it
    resolved_at: float  # epoch s, when it was resolved in the console


OUTCOME_PREFIX = b"\x00outcome\x00"  # neither AreaReadings nor WEATHER_PREFIX start so
outcome_encoder = msgspec.msgpack.Encoder()
outcome_decoder = msgspec.msgpack.Decoder(OutcomeMessage)
