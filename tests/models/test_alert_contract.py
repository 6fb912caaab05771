"""The alert contract (models.alerts.Alert): the worker's JSON is byte for byte what the
dict records gave before the Struct, for every kind of alert a simulated fleet raises,
and the notifier reads it back to the same record."""

import msgspec
import pytest

import models.backtest as B
from models.alerts import STATUS, Alert, alert_id, enc_hook, iso, message, new_alert, record
from models.config import DetectorConfig
from models.evaluate import prepare_sim
from stream.notify.service import decode

ENCODE = msgspec.json.Encoder(enc_hook=enc_hook).encode


def legacy_record(f, fleet, tz):
    """The dict literal models.alerts.to_alert built before the Alert Struct (verbatim),
    which existing consumers of the alerts topic read."""
    if f.scope == "meter":
        meter_id = fleet.meter_id[f.subject]
        customer_id = fleet.customer_id[f.subject] or None
        area_id = fleet.area_id[int(fleet.area[f.subject])]
        subject = meter_id
    else:
        meter_id = customer_id = None
        area_id = fleet.area_id[f.subject]
        subject = area_id
    en, zh = message(f)
    return {
        "id": alert_id(f.type, f.subtype, f.scope, subject, f.start,
                       (f.evidence or {}).get("model", "")),
        "type": f.type, "subtype": f.subtype, "status": STATUS.get(f.action, f.action),
        "severity": f.severity, "scope": f.scope,
        "meter_id": meter_id, "customer_id": customer_id, "area_id": area_id,
        "start": iso(f.start, tz), "detected_at": iso(f.ts, tz),
        "score": round(float(f.score), 4), "evidence": f.evidence,
        "message": {"en": en, "zh-CN": zh},
        "transient": f.action == "point",
    } | ({"context": f.context} if f.context is not None else {})


@pytest.fixture(scope="module")
def findings():
    """Every finding of a small simulated fleet with anomalies of every family, with the
    fleet and zone the backtest made its alerts with."""
    sim = prepare_sim(customers=40, areas=4, days=30, seed=3, rate=0.3, extra_voltage=10)
    seen = []
    real = B.to_alert

    def spy(f, fleet, zone):
        seen.append((f, fleet, zone))
        return real(f, fleet, zone)

    B.to_alert = spy
    try:
        B.run(sim.readings, sim.fleet, config=DetectorConfig().replace(theft={"model": True}),
              tz=sim.tz, country=sim.country)
    finally:
        B.to_alert = real
    return seen


def test_the_run_covers_meter_and_area_alerts_with_and_without_context(findings):
    assert len(findings) > 50
    kinds = {(f.scope, f.context is not None, f.action) for f, _, _ in findings}
    assert {("meter", True), ("meter", False), ("area", False)} <= {k[:2] for k in kinds}
    assert {"open", "close"} <= {k[2] for k in kinds}


def test_the_wire_json_is_byte_for_byte_the_dict_records(findings):
    for f, fleet, zone in findings:
        assert ENCODE(new_alert(f, fleet, zone)) == ENCODE(legacy_record(f, fleet, zone))


def test_the_record_of_an_alert_is_the_dict_it_was(findings):
    for f, fleet, zone in findings:
        assert record(new_alert(f, fleet, zone)) == legacy_record(f, fleet, zone)


def test_the_notifier_reads_the_workers_json_back_to_the_same_record(findings):
    for f, fleet, zone in findings:
        body = ENCODE(new_alert(f, fleet, zone))
        assert decode(body) == msgspec.json.decode(body)


@pytest.mark.parametrize("change,reason", [
    ({"severity": "urgent"}, "severity: Invalid enum value 'urgent'"),
    ({"id": "x" * 41}, "id: Expected `str` of length <= 40"),
    ({"type": ""}, "type: Expected `str` of length >= 1"),
    ({"scope": "region"}, "scope: Invalid enum value 'region'"),
    ({"start": "yesterday"}, "start 'yesterday' is not ISO 8601"),
    ({"evidence": [1, 2]}, "evidence: Expected `object | null`, got `array`"),
])
def test_a_message_off_the_contract_is_refused_with_the_field_named(change, reason):
    good = {"id": "a1", "type": "theft", "subtype": "tamper_event", "status": "open",
            "severity": "critical", "start": "2026-03-05T10:00:00+08:00",
            "detected_at": "2026-03-05T10:00:00+08:00"}
    assert decode(msgspec.json.encode(good))["scope"] == "meter"  # the assumed default
    with pytest.raises(ValueError, match="not an alert") as e:
        decode(msgspec.json.encode(good | change))
    assert reason in str(e.value)


def test_a_missing_required_field_is_named():
    with pytest.raises(ValueError, match="missing required field `detected_at`"):
        decode(b'{"id": "a1", "type": "t", "subtype": "s", "status": "open", '
               b'"severity": "info", "start": "2026-03-05T10:00:00+08:00"}')
    assert Alert.__struct_fields__[-1] == "context"  # the one left out when unset: last
