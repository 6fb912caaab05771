"""Property: whatever hostile JSON arrives mixed with valid readings, the real
``Ingestor.handle`` raises nothing, loses no valid reading, and gives every reject a
reason from the closed set.

Hostile readings are self-delimited (a bad reading inside a batch must cost only
itself): deep nesting, huge and non-finite numbers, NaN/Infinity literals, wrong
types, invalid UTF-8 and huge strings, duplicate keys, unknown fields, odd timestamps.
Whole hostile messages (truncated or garbage bytes) hold no valid reading."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.worker.processing import Ingestor, SourceMessage
from stream.registry import Registry
from stream.schema import REASONS, area_decoder
from stream.settings import load_settings

NOW = 1_767_200_400  # a 15-minute boundary
REGISTRY = """meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar,care,role
M1,C1,A1,A,220,am,residential,false,false,customer
M2,C2,A1,B,220,am,residential,false,false,customer
M3,C3,A2,ABC,380,am,small_business,false,false,customer
M4,C4,A2,C,230,am,residential,true,false,customer
TX1,,A1,ABC,380,am,small_business,false,false,area
"""
REG = Registry.from_csv_text(REGISTRY)
METERS = ["M1", "M2", "M3", "M4", "TX1"]
SETTINGS = load_settings(env={})
EVENTS = ["cover_open", "terminal_cover_open", "magnetic_tamper", "power_fail",
          "power_restore", "reverse_flow", "vendor_flag_17"]


@st.composite
def valid_reading(draw, k: int) -> dict:
    """A reading every check accepts; ``k`` makes its (meter, ts) unique in the poll."""
    r = {"meter_id": METERS[k % len(METERS)], "ts": NOW - 900 * (k // len(METERS)),
         "kwh": draw(st.floats(0, 1.5))}
    if draw(st.booleans()):
        r["ts"] = _iso(r["ts"])
    opt = {"voltage": st.floats(200, 240), "current": st.floats(0, 50),
           "power_factor": st.floats(-1, 1), "register_kwh": st.floats(0, 1e6),
           "neutral_current": st.floats(0, 50), "kwh_export": st.floats(0, 1.0),
           "events": st.lists(st.sampled_from(EVENTS), max_size=3),
           "firmware": st.text(max_size=20)}
    for name in draw(st.lists(st.sampled_from(sorted(opt)), unique=True, max_size=4)):
        r[name] = draw(opt[name])
    return r


def _iso(ts: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


BASE = b'{"meter_id":"M1","ts":%d,"kwh":0.1' % NOW
hostile_reading = st.one_of(
    st.integers(500, 3000).map(lambda d: BASE + b',"x":' + b"[" * d + b"]" * d + b"}"),
    st.integers(500, 3000).map(lambda d: BASE + b',"x":' + b'{"a":' * d + b"1" + b"}" * d + b"}"),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1e300",
                     b"-1e300", b"10" * 200, b'"NaN"', b"[NaN,1]", b"[1000,-1000,0]"]).flatmap(
        lambda tok: st.sampled_from(["kwh", "kwh_export", "register_kwh", "voltage", "current",
                                     "power_factor", "ts", "interval_s", "unknown"]).map(
            lambda f: b'{"meter_id":"M2","ts":%d,"kwh":0.1,"%s":%s}'
            % (NOW, f.encode(), tok) if f not in ("kwh", "ts")
            else b'{"meter_id":"M2","ts":%d,"%s":%s}' % (NOW, f.encode(), tok) if f == "kwh"
            else b'{"meter_id":"M2","kwh":0.1,"ts":%s}' % tok)),
    st.sampled_from([b'{"meter_id":5,"ts":1,"kwh":0.1}', b'{"meter_id":"M1","ts":[],"kwh":{}}',
                     b'{"meter_id":"M1","ts":1767200400,"kwh":"0.2"}', b'"M1"', b"42", b"null",
                     b"[]", b"{}", b'{"meter_id":"M1","events":"none","kwh":1,"ts":1}']),
    st.binary(min_size=1, max_size=40).map(
        lambda b: BASE + b',"note":"' + b.replace(b'"', b"").replace(b"\\", b"") + b'\xff"}'),
    st.integers(1, 200_000).map(lambda n: b'{"meter_id":"%s","ts":%d,"kwh":0.1}'
                                % (b"M" * n, NOW)),
    st.sampled_from([b'{"meter_id":"M1","meter_id":"NOPE","ts":%d,"kwh":0.1}' % NOW,
                     b'{"meter_id":"M1","ts":%d,"kwh":0.1,"kwh":-5}' % NOW,
                     b'{"meter_id":"M1","ts":%d,"kwh":0.1,"readings":[1]}' % NOW]),
    st.sampled_from(["2026-13-45T00:00:00+00:00", "2026-01-01T00:00:00", "", "yesterday",
                     "1767200400", "99999-01-01T00:00:00+00:00", "2026-01-01T00:00:00+25:00"]).map(
        lambda t: b'{"meter_id":"M3","kwh":0.1,"ts":%s}' % json.dumps(t).encode()),
    st.sampled_from([-1, 0, 1e20, 1767200400123, 1767200400.5, 2 ** 70]).map(
        lambda t: b'{"meter_id":"M3","kwh":0.1,"ts":%s}' % json.dumps(t).encode()),
)
garbage_message = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b'{"meter_id": "M1", "ts": ', b'[{"meter_id":"M1"}', b"[1,2", b"]",
                     b'{"readings": {"a": 1}}', b'{"readings": []}', b"[" * 5000]),
)


@st.composite
def poll(draw):
    """Messages of one poll, and the (meter_id, ts) of every valid reading in them."""
    msgs, valid, k = [], set(), 0
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["single", "array", "envelope", "hostile", "garbage"]))
        if kind == "garbage":
            msgs.append(draw(garbage_message))
            continue
        if kind == "hostile":
            msgs.append(draw(hostile_reading))
            continue
        n = 1 if kind == "single" else draw(st.integers(0, 6))
        elems = []
        for _ in range(n):
            if kind != "single" and draw(st.booleans()):
                elems.append(draw(hostile_reading))
            else:
                r = draw(valid_reading(k))
                k += 1
                valid.add((r["meter_id"], NOW - 900 * ((k - 1) // len(METERS))))
                elems.append(json.dumps(r).encode())
        body = b"[" + b", ".join(elems) + b"]"
        if kind == "single":
            msgs.append(elems[0])
        elif kind == "array":
            msgs.append(body)
        else:
            msgs.append(b'{"area_id":"A1","concentrator_id":"DC1","readings":' + body + b"}")
    return msgs, valid


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(poll())
def test_hostile_input_never_escapes_loses_no_valid_reading_and_rejects_with_a_known_reason(p):
    values, valid = p
    msgs = [SourceMessage(v, "ami.readings", 0, i, NOW * 1000) for i, v in enumerate(values)]
    res = Ingestor(SETTINGS, REG).handle(msgs, now=NOW)
    got = set()
    for area_id, raw in res.area_batches:
        b = area_decoder.decode(raw)
        assert b.area_id == area_id
        got |= set(zip(b.meter_ids, b.columns()["ts"].tolist()))
    assert valid <= got, sorted(valid - got)
    for rec in res.rejected:
        r = json.loads(rec)
        assert r["reason"] in REASONS and r["detail"]
