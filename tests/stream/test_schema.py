"""stream.schema: decode reading messages, validate them against physics and the
registry, and carry the valid ones as columnar per-area batches."""

from __future__ import annotations

import base64
import json
import math

import msgspec
import numpy as np
import pytest

from models.base import EVENT_BITS, READING_DTYPE
from stream.registry import Registry
from stream.schema import (REASONS, AreaReadings, Decoded, Reject, area_decoder, area_encoder,
                           decode_message, rejected_record, split_by_area, validate)

NOW = 1_700_000_100.0  # 2023-11-14T22:15:00Z, a 15-minute boundary
TS = 1_700_000_100

REGISTRY = """meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar,care,role
M1,C1,A1,A,220,am,residential,false,false,customer
M2,C2,A1,B,220,am,residential,false,false,customer
M3,C3,A2,ABC,380,am,small_business,false,false,customer
M4,C4,A2,C,220,am,residential,false,false,customer
TX1,,A1,ABC,380,am,small_business,false,false,area
"""


@pytest.fixture(scope="module")
def reg() -> Registry:
    return Registry.from_csv_text(REGISTRY, "reg.csv")


def rd(meter_id: str = "M1", **kw) -> dict:
    return {"meter_id": meter_id, "ts": TS, "kwh": 0.25, **kw}


def enc(obj) -> bytes:
    return json.dumps(obj).encode()


def check(reg: Registry, value: bytes, now: float = NOW, **kw):
    return validate(decode_message(value), reg, now, **kw)


def reasons(v) -> list[str]:
    return [r.reason for r in v.rejects]


# -- decode_message: the three message shapes ------------------------------------------

def test_decode_single_reading_object():
    d = decode_message(enc(rd("M1", kwh=0.5)))
    assert [r.meter_id for r in d.readings] == ["M1"]
    assert d.readings[0].kwh == 0.5 and d.readings[0].interval_s == 900
    assert d.rejects == []


def test_decode_json_array_of_readings():
    d = decode_message(enc([rd("M1"), rd("M2"), rd("M3")]))
    assert [r.meter_id for r in d.readings] == ["M1", "M2", "M3"]
    assert d.rejects == []


def test_decode_envelope_with_readings():
    d = decode_message(enc({"concentrator_id": "DC7", "area_id": "A1",
                            "readings": [rd("M1"), rd("M2")]}))
    assert [r.meter_id for r in d.readings] == ["M1", "M2"]
    assert d.rejects == []


def test_decode_ignores_unknown_fields():
    d = decode_message(enc(rd("M1", firmware="1.2.3")))
    assert len(d.readings) == 1 and d.rejects == []


def test_decode_tolerates_leading_whitespace():
    d = decode_message(b"  \n" + enc([rd("M1")]))
    assert len(d.readings) == 1


def test_optional_measurements_default_to_nan():
    r = decode_message(enc(rd("M1"))).readings[0]
    assert math.isnan(r.voltage) and math.isnan(r.current) and math.isnan(r.kwh_export)
    assert r.events == [] and r.unit == "kWh"


# -- one bad reading rejects only itself -----------------------------------------------

@pytest.mark.parametrize("wrap", [lambda rs: rs, lambda rs: {"readings": rs}], ids=["array", "envelope"])
def test_bad_reading_in_batch_rejects_only_that_reading_with_index_and_meter_id(wrap):
    batch = [rd("M1"), rd("M2", kwh="lots"), rd("M4")]
    d = decode_message(enc(wrap(batch)))
    assert [r.meter_id for r in d.readings] == ["M1", "M4"]
    assert d.positions == [0, 2]
    [rej] = d.rejects
    assert (rej.reason, rej.index, rej.meter_id) == ("schema", 1, "M2")
    assert "$[1].kwh" in rej.detail


def test_bad_reading_positions_carry_through_validation(reg):
    # The decode-failed reading is index 1; a validation failure at index 2 keeps its
    # position in the original message, not in the decoded list.
    batch = [rd("M1"), rd("M2", kwh="x"), rd("M4", kwh=-1), rd("M2")]
    v = check(reg, enc(batch))
    assert sorted((r.reason, r.index, r.meter_id) for r in v.rejects) == [
        ("negative_energy", 2, "M4"), ("schema", 1, "M2")]
    assert v.meter_ids == ["M1", "M2"] and v.total == 4


def test_non_finite_reading_in_batch_keeps_its_meter_id():
    d = decode_message(b'[{"meter_id":"M1","ts":1700000100,"kwh":0.1},'
                       b'{"meter_id":"M2","ts":1700000100,"kwh":1e999}]')
    [rej] = d.rejects
    assert (rej.reason, rej.index, rej.meter_id) == ("non_finite", 1, "M2")


# -- reject reasons ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [b'{"meter_id": "M1", "ts": ', b"hello", b"", b"42",
                                   b'[{"meter_id":"M1"}'])
def test_malformed_json_rejects_the_whole_message(value):
    d = decode_message(value)
    assert d.readings == []
    [rej] = d.rejects
    assert rej.reason == "malformed_json" and rej.index is None


def test_wrong_type_is_a_schema_reject():
    [rej] = decode_message(enc(rd("M1", kwh="0.2"))).rejects
    assert rej.reason == "schema" and "kwh" in rej.detail


def test_missing_kwh_is_a_schema_reject():
    [rej] = decode_message(b'{"meter_id":"M1","ts":1700000100}').rejects
    assert rej.reason == "schema" and "kwh" in rej.detail


def test_empty_meter_id_is_a_schema_reject():
    [rej] = decode_message(enc(rd(""))).rejects
    assert rej.reason == "schema" and "meter_id" in rej.detail


def test_unknown_unit_is_a_schema_reject():
    [rej] = decode_message(enc(rd("M1", unit="MWh"))).rejects
    assert rej.reason == "schema"


@pytest.mark.parametrize("value", [
    b'{"meter_id":"M1","ts":1700000100,"kwh":1e999}',
    b'[{"meter_id":"M1","ts":1700000100,"kwh":0.1,"voltage":-1e999}]',
])
def test_overflowing_number_is_non_finite(value):
    [rej] = decode_message(value).rejects
    assert rej.reason == "non_finite"


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_bare_nan_or_infinity_token_is_non_finite_naming_the_field(token):
    d = decode_message(b'[{"meter_id":"M1","ts":1700000100,"kwh":' + token + b'}]')
    assert d.readings == []
    [rej] = d.rejects
    assert (rej.reason, rej.index, rej.meter_id) == ("non_finite", 0, "M1")
    assert rej.detail.startswith("kwh")


def test_negative_energy_is_rejected(reg):
    v = check(reg, enc([rd("M1", kwh=-0.1), rd("M2", kwh_export=-0.5)]))
    assert reasons(v) == ["negative_energy", "negative_energy"]
    assert v.meter_ids == []


def test_zero_energy_is_valid(reg):
    assert check(reg, enc(rd("M1", kwh=0.0))).rejects == []


@pytest.mark.parametrize("extra,fragment", [
    ({"current": 72.1}, "current"),  # 60 A rated, limit 1.2x = 72 A
    ({"current": [10.0, 200.0, 10.0]}, "current"),  # mean of phases 73.3 A
    ({"neutral_current": 80.0}, "neutral_current"),
    ({"voltage": 441.0}, "voltage"),  # > 2x 220 V
    ({"voltage_max": 551.0}, "voltage_min/max"),  # > 2.5x 220 V
    ({"voltage_min": -1.0}, "voltage_min/max"),
    ({"power_factor": 1.01}, "power_factor"),
    ({"power_factor": -1.01}, "power_factor"),
    ({"kwh": 3.97}, "kwh"),  # 220 V * 60 A * 900 s * 1.2 = 3.96 kWh
])
def test_out_of_range_values_are_rejected_with_detail(reg, extra, fragment):
    v = check(reg, enc(rd("M1", **extra)))
    [rej] = v.rejects
    assert rej.reason == "out_of_range" and rej.meter_id == "M1"
    assert fragment in rej.detail


@pytest.mark.parametrize("extra", [
    {"current": 72.0}, {"voltage": 440.0}, {"power_factor": 1.0}, {"power_factor": -1.0},
    {"kwh": 3.95},
])
def test_values_at_the_limits_are_valid(reg, extra):
    assert check(reg, enc(rd("M1", **extra))).rejects == []


def test_energy_limit_scales_with_interval_and_phases(reg):
    # M3: three phases of 100 A at 219.4 V, 20% margin: 19.75 kWh in 15 minutes.
    assert check(reg, enc(rd("M3", kwh=19.5))).rejects == []
    assert reasons(check(reg, enc(rd("M3", kwh=20.0)))) == ["out_of_range"]
    v = check(reg, enc(rd("M1", kwh=7.0, interval_s=1800)))
    assert v.rejects == []  # 7.92 kWh allowed in 30 min
    assert reasons(check(reg, enc(rd("M1", kwh=7.0, interval_s=900)))) == ["out_of_range"]


@pytest.mark.parametrize("ts,fragment", [
    ("2023-11-14T22:15:00", "ISO 8601"),  # naive: no offset
    ("yesterday", "ISO 8601"),
    ("1700000100", "ISO 8601"),
    (946_684_799, "before 2000"),
    ("1999-12-31T23:59:59+00:00", "before 2000"),
])
def test_bad_timestamps_are_rejected(reg, ts, fragment):
    [rej] = check(reg, enc(rd("M1", ts=ts))).rejects
    assert rej.reason == "bad_timestamp" and fragment in rej.detail


def test_timestamp_beyond_max_future_is_rejected(reg):
    v = check(reg, enc([rd("M1", ts=TS), rd("M2", ts=TS + 301)]), max_future_s=300.0)
    [rej] = v.rejects
    assert (rej.reason, rej.meter_id) == ("future_timestamp", "M2")
    assert "limit 300 s" in rej.detail
    v = check(reg, enc([rd("M1", ts=TS + 300)]), max_future_s=300.0)
    assert v.rejects == []


def test_max_future_s_is_honoured(reg):
    assert reasons(check(reg, enc(rd("M1", ts=TS + 900)), max_future_s=60)) == ["future_timestamp"]


@pytest.mark.parametrize("iv", [7, 0, -900, 70, 86401, 172800])
def test_interval_that_does_not_divide_a_day_is_rejected(reg, iv):
    [rej] = check(reg, enc(rd("M1", interval_s=iv))).rejects
    assert rej.reason == "bad_interval" and str(iv) in rej.detail


@pytest.mark.parametrize("iv", [60, 300, 900, 3600, 86400])
def test_intervals_dividing_a_day_are_valid(reg, iv):
    assert check(reg, enc(rd("M1", interval_s=iv, kwh=0.01))).rejects == []


def test_interval_beyond_int32_is_rejected_not_wrapped(reg):
    assert reasons(check(reg, enc(rd("M1", interval_s=2**32 + 900)))) == ["bad_interval"]


def test_interval_beyond_int64_is_rejected_not_a_crash(reg):
    assert reasons(check(reg, enc(rd("M1", interval_s=2**64 - 1)))) == ["bad_interval"]


def test_a_timestamp_too_large_for_a_float_rejects_that_reading_only(reg):
    # 400 digits: valid JSON, beyond any float; once an OverflowError for the whole poll.
    value = b'[{"meter_id":"M1","ts":' + b"9" * 400 + b',"kwh":0.2},' + enc(rd("M2"))[:] + b"]"
    v = check(reg, value)
    assert [(r.reason, r.meter_id) for r in v.rejects] == [("non_finite", "M1")]
    assert len(v.rows) == 1


def test_unknown_meter_is_rejected(reg):
    v = check(reg, enc([rd("M1"), rd("NOPE")]))
    [rej] = v.rejects
    assert (rej.reason, rej.index, rej.meter_id) == ("unknown_meter", 1, "NOPE")
    assert v.meter_ids == ["M1"]


def test_clock_invalid_event_quarantines_the_reading(reg):
    v = check(reg, enc(rd("M1", events=["clock_invalid"])))
    assert reasons(v) == ["clock_invalid"]


def test_unknown_events_are_ignored_and_known_ones_become_bits(reg):
    v = check(reg, enc(rd("M1", events=["cover_open", "vendor_xyz", "power_fail"])))
    assert v.rejects == []
    assert v.cols["events"][0] == EVENT_BITS["cover_open"] | EVENT_BITS["power_fail"]


def test_first_failed_check_names_the_reason(reg):
    # Unknown meter wins over everything; negative energy over a bad interval.
    assert reasons(check(reg, enc(rd("NOPE", kwh=-1, interval_s=7)))) == ["unknown_meter"]
    assert reasons(check(reg, enc(rd("M1", kwh=-1, interval_s=7)))) == ["negative_energy"]


def test_every_reason_used_is_in_the_closed_set(reg):
    v = check(reg, enc([rd("M1", kwh=-1), rd("M2", interval_s=7), rd("X"), rd("M4", ts="x")]))
    assert {r.reason for r in v.rejects} <= set(REASONS)


# -- conversions ------------------------------------------------------------------------

def test_wh_energies_are_converted_to_kwh(reg):
    v = check(reg, enc([rd("M1", unit="Wh", kwh=500, kwh_export=100, register_kwh=1_234_567),
                        rd("M2", kwh=0.5, kwh_export=0.1, register_kwh=1234.567)]))
    assert v.rejects == []
    c = v.cols
    assert c["kwh"][0] == pytest.approx(0.5) and c["kwh"][1] == 0.5
    assert c["kwh_export"][0] == pytest.approx(0.1)
    assert c["register_kwh"][0] == pytest.approx(1234.567)


def test_wh_conversion_happens_before_the_energy_limit(reg):
    # 3000 Wh = 3 kWh is within a 60 A meter's 3.96 kWh; 3000 kWh would not be.
    assert check(reg, enc(rd("M1", unit="Wh", kwh=3000))).rejects == []


def test_per_phase_voltage_list_gives_mean_and_extremes(reg):
    v = check(reg, enc(rd("M3", voltage=[210.0, 220.0, 233.0])))
    c = v.cols[0]
    assert c["voltage"] == pytest.approx(221.0)
    assert c["voltage_min"] == 210.0 and c["voltage_max"] == 233.0


def test_reported_extremes_beyond_the_phase_values_are_kept(reg):
    v = check(reg, enc(rd("M3", voltage=[210.0, 220.0, 233.0], voltage_min=180.0,
                          voltage_max=250.0)))
    c = v.cols[0]
    assert c["voltage_min"] == 180.0 and c["voltage_max"] == 250.0


def test_per_phase_current_list_gives_the_mean(reg):
    v = check(reg, enc(rd("M3", current=[10.0, 20.0, 30.0])))
    assert v.cols["current"][0] == pytest.approx(20.0)


@pytest.mark.parametrize("iso", ["2023-11-15T06:15:00+08:00", "2023-11-14T22:15:00Z",
                                 "2023-11-14T22:15:00+00:00"])
def test_epoch_seconds_and_iso_with_offset_give_the_same_ts(reg, iso):
    v = check(reg, enc([rd("M1", ts=TS), rd("M2", ts=iso), rd("M4", ts=float(TS))]))
    assert v.rejects == []
    assert v.cols["ts"].tolist() == [TS, TS, TS]


def test_valid_columns_have_the_reading_dtype_and_fleet_rows(reg):
    v = check(reg, enc([rd("M2"), rd("M4")]))
    assert v.cols.dtype == READING_DTYPE
    assert v.rows.tolist() == [1, 3] and v.meter_ids == ["M2", "M4"]
    assert math.isnan(v.cols["voltage"][0])


# -- dead-letter records ----------------------------------------------------------------

def test_rejected_record_keeps_utf8_payload_source_reason_and_detail():
    value = '{"meter_id":"电表1","kwh":"x"}'.encode()
    rec = json.loads(rejected_record(value, Reject("schema", "bad kwh", 3, "电表1"),
                                     topic="ami.readings", partition=2, offset=41, at=123.5))
    assert rec["payload_encoding"] == "utf-8"
    assert rec["payload"].encode() == value
    assert rec["source"] == {"topic": "ami.readings", "partition": 2, "offset": 41}
    assert (rec["reason"], rec["detail"], rec["index"], rec["meter_id"]) == (
        "schema", "bad kwh", 3, "电表1")
    assert rec["rejected_at"] == 123.5


def test_rejected_record_base64_encodes_non_utf8_bytes():
    value = b"\xff\xfe\x00garbage"
    rec = json.loads(rejected_record(value, Reject("malformed_json", "x"),
                                     topic="t", partition=0, offset=7, at=0.0))
    assert rec["payload_encoding"] == "base64"
    assert base64.b64decode(rec["payload"]) == value
    assert rec["index"] is None and rec["meter_id"] is None


# -- per-area split and the internal message --------------------------------------------

def test_split_by_area_groups_valid_positions_by_area(reg):
    v = check(reg, enc([rd("M3"), rd("M1"), rd("M4"), rd("M2")]))
    groups = split_by_area(v, reg)
    assert set(groups) == {0, 1}
    assert [v.meter_ids[i] for i in groups[0]] == ["M1", "M2"]
    assert [v.meter_ids[i] for i in groups[1]] == ["M3", "M4"]


def test_split_by_area_single_area_and_empty(reg):
    v = check(reg, enc([rd("M1"), rd("M2")]))
    groups = split_by_area(v, reg)
    assert list(groups) == [0] and groups[0].tolist() == [0, 1]
    assert split_by_area(check(reg, enc(rd("NOPE"))), reg) == {}


def test_area_readings_round_trip_keeps_columns_bit_exact():
    rng = np.random.default_rng(3)
    cols = np.frombuffer(rng.bytes(READING_DTYPE.itemsize * 4), READING_DTYPE).copy()
    cols["voltage"][1] = np.nan
    cols["current"][2] = -0.0
    msg = AreaReadings("A1", ["M1", "M2", "M3", "M4"], cols.tobytes(), 1_700_000_100_123,
                       "ami.readings:3:99")
    back = area_decoder.decode(area_encoder.encode(msg))
    assert back == msg
    assert back.columns().tobytes() == cols.tobytes()
    assert back.columns().dtype == READING_DTYPE
    assert (back.area_id, back.meter_ids, back.produced_ms, back.src) == (
        "A1", ["M1", "M2", "M3", "M4"], 1_700_000_100_123, "ami.readings:3:99")


def test_validate_of_nothing_decoded_returns_the_decode_rejects(reg):
    v = validate(Decoded([], [Reject("malformed_json", "x")]), reg, NOW)
    assert len(v.rows) == 0 and v.cols.dtype == READING_DTYPE
    assert reasons(v) == ["malformed_json"] and v.total == 1


def test_area_decoder_rejects_garbage():
    with pytest.raises(msgspec.DecodeError):
        area_decoder.decode(b"\x00\x01")


# -- hostile input costs only the reading that holds it ---------------------------------

DEEP = b"[" * 1000 + b"]" * 1000  # ~2 KB; msgspec recurses once per level


def test_json_nested_too_deeply_is_malformed_json_not_an_exception():
    d = decode_message(b'{"meter_id":"M1","ts":1700000100,"kwh":0.2,"extra":' + DEEP + b"}")
    assert d.readings == []
    [rej] = d.rejects
    assert rej.reason == "malformed_json" and "nested" in rej.detail


@pytest.mark.parametrize("wrap", [lambda rs: b"[" + rs + b"]",
                                  lambda rs: b'{"area_id":"A1","readings":[' + rs + b"]}"],
                         ids=["array", "envelope"])
def test_a_deeply_nested_reading_in_a_batch_rejects_only_itself(wrap):
    d = decode_message(wrap(b'{"meter_id":"M1","ts":1700000100,"kwh":0.2,"x":' + DEEP + b"},"
                            b'{"meter_id":"M2","ts":1700000100,"kwh":0.3}'))
    assert [r.meter_id for r in d.readings] == ["M2"] and d.positions == [1]
    [rej] = d.rejects
    assert (rej.reason, rej.index) == ("malformed_json", 0)


@pytest.mark.parametrize("wrap", [lambda rs: b"[" + rs + b"]",
                                  lambda rs: b'{"concentrator_id":"DC","readings":[' + rs + b"]}"],
                         ids=["array", "envelope"])
@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_a_nan_literal_rejects_only_its_reading_and_names_the_field(wrap, token):
    d = decode_message(wrap(b'{"meter_id":"M1","ts":1700000100,"kwh":0.1},'
                            b'{"meter_id":"M2","ts":1700000100,"kwh":0.2,"voltage":[230,' + token
                            + b',231]},{"meter_id":"M3","ts":"2023-11-14T22:15:00Z","kwh":0.3}'))
    assert [r.meter_id for r in d.readings] == ["M1", "M3"] and d.positions == [0, 2]
    [rej] = d.rejects
    assert (rej.reason, rej.index, rej.meter_id) == ("non_finite", 1, "M2")
    assert rej.detail.startswith("voltage")


def test_a_nan_literal_and_a_wrong_type_in_one_batch_each_reject_only_themselves():
    d = decode_message(b'[{"meter_id":"M1","ts":1700000100,"kwh":NaN},'
                       b'{"meter_id":"M2","ts":1700000100,"kwh":"x"},'
                       b'{"meter_id":"M3","ts":1700000100,"kwh":0.3}]')
    assert [r.meter_id for r in d.readings] == ["M3"]
    assert [(r.reason, r.index) for r in d.rejects] == [("non_finite", 0), ("schema", 1)]


def test_brackets_and_commas_inside_strings_do_not_split_readings():
    d = decode_message(b'[{"meter_id":"M1","ts":1700000100,"kwh":NaN,"note":"a],{b"},'
                       b'{"meter_id":"M2","ts":1700000100,"kwh":0.3,"note":"[,}\\""}]')
    assert [r.meter_id for r in d.readings] == ["M2"]
    assert [(r.reason, r.index) for r in d.rejects] == [("non_finite", 0)]


def test_invalid_utf8_in_one_reading_rejects_only_it():
    d = decode_message(b'[{"meter_id":"M1\xff","ts":1700000100,"kwh":0.1},'
                       b'{"meter_id":"M2","ts":1700000100,"kwh":NaN},'
                       b'{"meter_id":"M3","ts":1700000100,"kwh":0.3}]')
    assert [r.meter_id for r in d.readings] == ["M3"]
    assert [(r.reason, r.index) for r in d.rejects] == [("malformed_json", 0), ("non_finite", 1)]


@pytest.mark.parametrize("extra,fragment", [
    ({"kwh_export": 1e300}, "kwh_export"),
    ({"kwh_export": 3.97}, "kwh_export"),  # same limit as kwh: 3.96 kWh in 900 s
    ({"register_kwh": -1e300}, "register_kwh"),
    ({"register_kwh": -0.5}, "register_kwh"),
    ({"register_kwh": 1e300}, "register_kwh"),
    ({"current": [30.0, -30.0]}, "current"),  # the mean (0 A) hid a negative phase
    ({"voltage": [230.0, -230.0]}, "voltage"),
    ({"current": [1.0, 1.0, 1.0]}, "3 per-phase values on a 1-phase meter"),
])
def test_every_numeric_field_is_bounded_by_physics_and_the_rating(reg, extra, fragment):
    v = check(reg, enc([rd("M1", **extra), rd("M2")]))
    [rej] = v.rejects
    assert (rej.reason, rej.index, rej.meter_id) == ("out_of_range", 0, "M1")
    assert fragment in rej.detail
    assert v.meter_ids == ["M2"]


def test_per_phase_currents_are_each_checked_against_the_rating(reg):
    # M3: three-phase, 100 A rated (the default): 120 A per phase at most.
    v = check(reg, enc([rd("M3", current=[1000.0, -1000.0, 0.0]),
                        rd("M3", ts=TS - 900, current=[119.0, 0.0, 120.0])]))
    [rej] = v.rejects
    assert (rej.reason, rej.index) == ("out_of_range", 0) and "current" in rej.detail
    assert len(v.rows) == 1


def test_a_register_within_a_century_at_rating_is_valid(reg):
    assert check(reg, enc(rd("M1", register_kwh=123456.7))).rejects == []


# -- the weather feed ----------------------------------------------------------------------

def weather(**kw) -> bytes:
    return enc({"area_id": "A1", "ts": "2023-11-14T22:00:00+00:00", "temperature_c": 7.5, **kw})


@pytest.mark.parametrize("value", [
    weather(), weather(ts=TS - 100), weather(ts=float(TS)), weather(temperature_c=-12),
    weather(station="EGLL"),  # fields we do not use are ignored
], ids=["iso_offset", "epoch_int", "epoch_float", "negative", "extra_field"])
def test_a_weather_sample_with_area_time_and_temperature_is_valid(reg, value):
    from stream.schema import WeatherSample, validate_weather

    w = validate_weather(value, reg, NOW, max_future_s=300)
    assert isinstance(w, WeatherSample) and w.area_id == "A1" and isinstance(w.ts, int)


@pytest.mark.parametrize("value, reason", [
    (b'{"area_id": "A1", "ts": ', "malformed_json"),
    (enc({"area_id": "A1", "ts": TS}), "schema"),
    (weather(temperature_c="warm"), "schema"),
    (weather(ts="2023-11-14T22:00:00"), "bad_timestamp"),  # no offset: which zone?
    (weather(ts="yesterday"), "bad_timestamp"),
    (weather(ts=NOW + 3600), "future_timestamp"),
    (weather(temperature_c=150.0), "out_of_range"),
    (b'{"area_id": "A1", "ts": 1700000000, "temperature_c": NaN}', "malformed_json"),
    (weather(area_id="A9"), "unknown_area"),
])
def test_a_bad_weather_message_is_rejected_whole_with_its_reason(reg, value, reason):
    from stream.schema import validate_weather

    r = validate_weather(value, reg, NOW, max_future_s=300)
    assert isinstance(r, Reject) and r.reason == reason and r.reason in REASONS and r.detail
