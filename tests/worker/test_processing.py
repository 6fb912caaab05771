"""stream.worker.processing without Kafka: the Ingestor turns source messages into per-area
batches and dead-letter records; the Processor applies an area batch to its state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream.worker.processing import Ingestor, Processor, SourceMessage
from stream.registry import Registry
from stream.schema import AreaReadings, area_decoder, area_encoder
from stream.settings import load_settings

NOW = 1_767_200_400.0  # 2025-12-31T17:00:00Z, a 15-minute boundary
TS = int(NOW)
TOPIC = "ami.readings"

HEADER = "meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar,care,role"
REGISTRY = HEADER + """
M1,C1,A1,A,220,am,residential,false,false,customer
M2,C2,A1,B,220,am,residential,false,false,customer
M3,C3,A1,C,220,am,residential,false,false,customer
M4,C4,A2,A,220,bm,residential,false,false,customer
M5,C5,A2,B,220,bm,residential,false,false,customer
TX1,,A1,ABC,380,am,small_business,false,false,area
TX2,,A2,ABC,380,bm,small_business,false,false,area
"""


@pytest.fixture
def reg(tmp_path) -> Registry:
    p = tmp_path / "registry.csv"
    p.write_text(REGISTRY)
    return Registry.load(p)


@pytest.fixture
def settings():
    return load_settings(env={})


def rd(meter_id: str, ts: int = TS, **kw) -> dict:
    return {"meter_id": meter_id, "ts": ts, "kwh": 0.2, "voltage": 221.0, "current": 4.0, **kw}


def msg(payload, offset: int, partition: int = 0, ts_ms: int = TS * 1000) -> SourceMessage:
    value = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return SourceMessage(value, TOPIC, partition, offset, ts_ms)


def dead(res) -> list[dict]:
    return [json.loads(r) for r in res.rejected]


def batches(res) -> dict[str, AreaReadings]:
    out = {}
    for area_id, raw in res.area_batches:
        b = area_decoder.decode(raw)
        assert b.area_id == area_id
        out[area_id] = b
    return out


# -- Ingestor ---------------------------------------------------------------------------

def test_ingest_returns_one_batch_per_area_with_its_meters(reg, settings):
    res = Ingestor(settings, reg).handle(
        [msg([rd("M1"), rd("M4"), rd("M2")], 10), msg({"readings": [rd("M5"), rd("M3")]}, 11)],
        now=NOW)
    b = batches(res)
    assert set(b) == {"A1", "A2"} and len(res.area_batches) == 2
    assert sorted(b["A1"].meter_ids) == ["M1", "M2", "M3"]
    assert sorted(b["A2"].meter_ids) == ["M4", "M5"]
    assert res.rejected == [] and res.readings == 5 and res.valid == 5


def test_ingest_batch_columns_line_up_with_meter_ids(reg, settings):
    res = Ingestor(settings, reg).handle(
        [msg([rd("M1", kwh=0.1), rd("M4", kwh=0.4), rd("M2", kwh=0.2)], 1)], now=NOW)
    for b in batches(res).values():
        cols = b.columns()
        for m, kwh in zip(b.meter_ids, cols["kwh"]):
            assert kwh == {"M1": 0.1, "M2": 0.2, "M4": 0.4}[m]
        assert (cols["ts"] == TS).all()


def test_ingest_batch_carries_source_and_latest_produce_time(reg, settings):
    res = Ingestor(settings, reg).handle(
        [msg(rd("M1"), 40, partition=3, ts_ms=1000), msg(rd("M2"), 41, partition=3, ts_ms=5000)],
        now=NOW)
    [b] = batches(res).values()
    assert b.src == f"{TOPIC}:3:40"
    assert b.produced_ms == 5000


def test_reject_cites_its_own_message_and_index_among_single_reading_messages(reg, settings):
    bad = rd("M4", kwh=-1.0)
    payloads = [rd("M1"), rd("M2"), rd("M3"), bad, rd("M5")]
    msgs = [msg(p, 100 + k, partition=2) for k, p in enumerate(payloads)]
    res = Ingestor(settings, reg).handle(msgs, now=NOW)
    [rec] = dead(res)
    assert rec["reason"] == "negative_energy"
    assert rec["source"] == {"topic": TOPIC, "partition": 2, "offset": 103}
    assert rec["index"] == 0 and rec["meter_id"] == "M4"
    assert json.loads(rec["payload"]) == bad
    b = batches(res)
    assert sorted(b["A1"].meter_ids) == ["M1", "M2", "M3"]
    assert b["A2"].meter_ids == ["M5"]
    assert res.readings == 5 and res.valid == 4


def test_undecodable_single_reading_message_cites_its_own_message(reg, settings):
    bad = rd("M4", kwh="x")
    msgs = [msg(p, 100 + k) for k, p in enumerate([rd("M1"), rd("M2"), rd("M3"), bad, rd("M5")])]
    res = Ingestor(settings, reg).handle(msgs, now=NOW)
    [rec] = dead(res)
    assert rec["reason"] == "schema" and rec["source"]["offset"] == 103
    assert json.loads(rec["payload"]) == bad
    assert res.valid == 4


def test_reject_index_is_the_position_within_its_own_message(reg, settings):
    msgs = [msg([rd("M1"), rd("M2")], 7),
            msg([rd("M3"), rd("M4"), rd("M5", interval_s=7), rd("NOPE")], 8)]
    res = Ingestor(settings, reg).handle(msgs, now=NOW)
    got = sorted((r["source"]["offset"], r["index"], r["reason"], r["meter_id"]) for r in dead(res))
    assert got == [(8, 2, "bad_interval", "M5"), (8, 3, "unknown_meter", "NOPE")]
    assert res.readings == 6 and res.valid == 4


def test_a_poll_validated_in_chunks_gives_what_one_pass_gives(reg, settings, monkeypatch):
    import stream.worker.processing as processing

    # Chunks end inside messages and between them; rejects fall in the second and third.
    msgs = [msg([rd("M1", kwh=0.1), rd("M4", kwh=0.4)], 7),
            msg([rd("M3"), rd("M2", kwh=-1.0), rd("M5", interval_s=7), rd("NOPE")], 8),
            msg(rd("M2", kwh=0.2), 9), msg({"readings": [rd("M5", kwh=0.5), rd("M1", ts=TS + 900)]}, 10)]

    def run(chunk):
        monkeypatch.setattr(processing, "VALIDATE_CHUNK", chunk)
        res = Ingestor(settings, reg).handle(msgs, now=NOW + 900)
        cut = sorted((r["source"]["offset"], r["index"], r["reason"], r["meter_id"]) for r in dead(res))
        return res, cut, {a: (b.meter_ids, b.cols) for a, b in batches(res).items()}

    whole, whole_rejects, whole_batches = run(10_000)
    chunked, chunked_rejects, chunked_batches = run(3)
    assert chunked_rejects == whole_rejects == [(8, 1, "negative_energy", "M2"),
                                                (8, 2, "bad_interval", "M5"),
                                                (8, 3, "unknown_meter", "NOPE")]
    assert chunked_batches == whole_batches
    assert whole_batches["A1"][0] == ["M1", "M3", "M2", "M1"]
    assert chunked.readings == whole.readings == 9 and chunked.valid == whole.valid == 6


def test_malformed_message_is_rejected_whole_and_others_go_on(reg, settings):
    res = Ingestor(settings, reg).handle([msg(b"{oops", 5), msg(rd("M1"), 6)], now=NOW)
    [rec] = dead(res)
    assert rec["reason"] == "malformed_json" and rec["index"] is None
    assert rec["source"]["offset"] == 5 and rec["payload"] == "{oops"
    assert batches(res)["A1"].meter_ids == ["M1"]


def test_message_over_max_message_bytes_is_rejected_as_payload_too_large(reg):
    s = load_settings(env={"METERWATCH_MAX_MESSAGE_BYTES": "200"})
    big = msg([rd(m) for m in ("M1", "M2", "M3", "M4")], 9)
    small = msg(rd("M5"), 10)
    assert len(big.value) > 200 >= len(small.value)
    res = Ingestor(s, reg).handle([big, small], now=NOW)
    [rec] = dead(res)
    assert rec["reason"] == "payload_too_large" and rec["source"]["offset"] == 9
    assert "200" in rec["detail"]
    assert list(batches(res)) == ["A2"] and res.readings == 1


def test_message_at_max_message_bytes_is_accepted(reg):
    m = msg(rd("M1"), 1)
    s = load_settings(env={"METERWATCH_MAX_MESSAGE_BYTES": str(len(m.value))})
    res = Ingestor(s, reg).handle([m], now=NOW)
    assert res.rejected == [] and res.valid == 1


def test_ingest_uses_max_future_s_from_settings(reg):
    s = load_settings(env={"METERWATCH_MAX_FUTURE_S": "60"})
    res = Ingestor(s, reg).handle([msg(rd("M1", ts=TS + 900), 1)], now=NOW)
    assert [r["reason"] for r in dead(res)] == ["future_timestamp"]
    assert res.area_batches == []


def test_all_rejected_gives_no_batches_and_an_empty_batch_is_itself_rejected(reg, settings):
    res = Ingestor(settings, reg).handle([msg(rd("NOPE"), 1), msg(b"[]", 2)], now=NOW)
    assert res.area_batches == [] and res.valid == 0
    assert sorted(r["reason"] for r in dead(res)) == ["empty_batch", "unknown_meter"]


# -- Processor --------------------------------------------------------------------------

def area_batch(reg, settings, readings: list[dict], area_id: str) -> bytes:
    res = Ingestor(settings, reg).handle([msg(readings, 1)], now=NOW)
    return dict(res.area_batches)[area_id]


def test_second_delivery_of_a_batch_is_all_duplicates_and_raises_no_alerts(reg, settings):
    p = Processor(settings, reg)
    raw = area_batch(reg, settings, [rd("M1", events=["cover_open"]), rd("M2"), rd("M3")], "A1")
    state = p.new_state("A1")
    first = p.handle(raw, state, now=NOW)
    assert first.outcome.applied == 3 and first.outcome.duplicates == 0
    assert first.alerts  # the tamper flag
    snapshot = state.to_bytes()
    second = p.handle(raw, state, now=NOW)
    assert second.outcome.applied == 0 and second.outcome.duplicates == 3
    assert second.alerts == [] and second.rejected == []
    assert state.to_bytes() == snapshot


def test_duplicates_are_recognised_after_a_state_round_trip(reg, settings):
    p = Processor(settings, reg)
    raw = area_batch(reg, settings, [rd("M4"), rd("M5")], "A2")
    state = p.new_state("A2")
    p.handle(raw, state, now=NOW)
    reloaded = p.load_state(state.to_bytes(), "A2")
    again = p.handle(raw, reloaded, now=NOW)
    assert again.outcome.duplicates == 2 and again.outcome.applied == 0


def test_tamper_event_produces_an_alert_keyed_by_the_customer(reg, settings):
    p = Processor(settings, reg)
    raw = area_batch(reg, settings, [rd("M1"), rd("M2", events=["magnetic_tamper"])], "A1")
    res = p.handle(raw, p.new_state("A1"), now=NOW)
    tamper = [(k, body, a) for k, body, a in res.alerts if a["subtype"] == "tamper_event"]
    assert len(tamper) == 1
    key, body, alert = tamper[0]
    assert key == "C2"
    doc = json.loads(body)
    assert doc == json.loads(json.dumps(alert))
    assert (doc["type"], doc["meter_id"], doc["customer_id"], doc["area_id"]) == (
        "theft", "M2", "C2", "A1")
    assert doc["severity"] == "critical" and doc["status"] == "open"


def test_state_gains_records_for_the_meters_applied(reg, settings):
    p = Processor(settings, reg)
    state = p.new_state("A1")
    p.handle(area_batch(reg, settings, [rd("M3"), rd("M1")], "A1"), state, now=NOW)
    assert sorted(state.meter_ids) == ["M1", "M3"]
    assert (state.records["e_last_ts"] == TS).all()


def moved_registry(tmp_path) -> Registry:
    # M2 moved from A1 to A2 after the batch was ingested.
    p = tmp_path / "registry2.csv"
    p.write_text(REGISTRY.replace("M2,C2,A1,", "M2,C2,A2,"))
    return Registry.load(p)


def test_meter_no_longer_in_the_message_area_is_rejected_not_applied(reg, settings, tmp_path):
    raw = area_batch(reg, settings, [rd("M1"), rd("M2"), rd("M3")], "A1")
    p = Processor(settings, reg)
    p.set_registry(moved_registry(tmp_path))
    state = p.new_state("A1")
    res = p.handle(raw, state, now=NOW)
    [rec] = dead(res)
    assert rec["reason"] == "unknown_meter" and rec["meter_id"] == "M2"
    assert "'A1'" in rec["detail"]
    assert rec["index"] == area_decoder.decode(raw).meter_ids.index("M2")
    assert res.outcome.applied == 2
    assert "M2" not in state.meter_ids and sorted(state.meter_ids) == ["M1", "M3"]


def test_meter_removed_from_the_registry_is_rejected_not_applied(reg, settings, tmp_path):
    raw = area_batch(reg, settings, [rd("M1"), rd("M3")], "A1")
    p2 = tmp_path / "registry3.csv"
    p2.write_text(REGISTRY.replace("M3,C3,A1,C,220,am,residential,false,false,customer\n", ""))
    p = Processor(settings, Registry.load(p2))
    state = p.new_state("A1")
    res = p.handle(raw, state, now=NOW)
    assert [(r["reason"], r["meter_id"]) for r in dead(res)] == [("unknown_meter", "M3")]
    assert state.meter_ids == ["M1"]


def test_batch_whose_meters_are_all_gone_applies_nothing(reg, settings, tmp_path):
    raw = area_batch(reg, settings, [rd("M2")], "A1")
    p = Processor(settings, moved_registry(tmp_path))
    state = p.new_state("A1")
    res = p.handle(raw, state, now=NOW)
    assert res.outcome is None and res.alerts == []
    assert [r["reason"] for r in dead(res)] == ["unknown_meter"]
    assert state.meter_ids == []


def test_batch_for_an_area_no_longer_in_the_registry_is_rejected_not_a_crash(reg, settings, tmp_path):
    raw = area_batch(reg, settings, [rd("M1"), rd("M2")], "A1")
    p2 = tmp_path / "renamed.csv"
    p2.write_text(REGISTRY.replace(",A1,", ",A9,"))
    p = Processor(settings, Registry.load(p2))
    res = p.handle(raw, p.new_state("A1"), now=NOW)
    assert sorted(r["meter_id"] for r in dead(res)) == ["M1", "M2"]
    assert all(r["reason"] == "unknown_meter" for r in dead(res))


def test_load_state_of_none_is_a_fresh_state(reg, settings):
    p = Processor(settings, reg)
    s = p.load_state(None, "A2")
    assert s.area_id == "A2" and s.meter_ids == []
    assert s.records.dtype == p.engine.dtype


def test_area_readings_built_by_hand_are_processed(reg, settings):
    # The by-area message contract: any producer of AreaReadings is accepted.
    from models.base import READING_DTYPE

    cols = np.zeros(2, READING_DTYPE)
    cols["ts"], cols["interval_s"], cols["kwh"] = TS, 900, 0.3
    for c in ("kwh_export", "register_kwh", "voltage", "voltage_min", "voltage_max", "current",
              "neutral_current", "power_factor"):
        cols[c] = np.nan
    raw = area_encoder.encode(AreaReadings("A2", ["M4", "M5"], cols.tobytes(), TS * 1000, "x:0:0"))
    res = Processor(settings, reg).handle(raw, Processor(settings, reg).new_state("A2"), now=NOW)
    assert res.outcome.applied == 2 and res.rejected == []


# -- replays: recognised by source offset, however old ------------------------------------

def _apply(p, ing, state, msgs):
    out = []
    for _, raw in ing.handle(msgs, now=NOW).area_batches:
        out.append(p.handle(raw, state, now=NOW))
    return out


def test_a_replayed_reading_is_a_duplicate_however_old_not_too_late(reg, settings):
    p, ing = Processor(settings, reg), Ingestor(settings, reg)
    # 100 intervals of one meter, one message each (offsets 0..99): the first ones are
    # far beyond the meter's 64-interval dedupe bitmap once the last is applied.
    msgs = [msg(rd("M4", ts=TS - 900 * (99 - k)), k) for k in range(100)]
    state = p.new_state("A2")
    [first] = _apply(p, ing, state, msgs)
    assert first.outcome.applied == 100
    # A restarted ingest reads the partition again from its last commit (offset 0),
    # after the state went through the changelog.
    state = p.load_state(state.to_bytes(), "A2")
    [again] = _apply(p, ing, state, msgs)
    assert (again.outcome.applied, again.outcome.duplicates) == (0, 100)
    assert again.outcome.too_late == [] and again.rejected == []


def test_a_reading_never_seen_and_older_than_the_window_is_too_late_citing_its_source(
        reg, settings):
    p, ing = Processor(settings, reg), Ingestor(settings, reg)
    state = p.new_state("A2")
    _apply(p, ing, state, [msg(rd("M4", ts=TS - 900 * (99 - k)), k) for k in range(100)])
    old = msg(rd("M4", ts=TS - 900 * 120), 100, partition=0)
    [res] = _apply(p, ing, state, [old])
    assert res.outcome.too_late == [0] and res.outcome.duplicates == 0
    [rej] = dead(res)
    assert rej["reason"] == "too_late" and rej["meter_id"] == "M4"
    assert rej["source"] == {"topic": settings.readings_topic, "partition": 0, "offset": 100}


def test_replay_marks_are_per_source_partition(reg, settings):
    p, ing = Processor(settings, reg), Ingestor(settings, reg)
    state = p.new_state("A2")
    _apply(p, ing, state, [msg(rd("M4", ts=TS - 900 * (99 - k)), k) for k in range(100)])
    # Offset 5 of ANOTHER partition was never handled: an old reading there is late.
    [res] = _apply(p, ing, state, [msg(rd("M5", ts=TS - 900 * 99), 5, partition=1),
                                   msg(rd("M4", ts=TS - 900 * 120), 5, partition=1)])
    assert res.outcome.applied == 1 and len(res.outcome.too_late) == 1
