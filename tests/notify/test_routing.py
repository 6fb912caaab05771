"""Routing: who gets what, when. Customer alerts to the account manager; area-scope and
critical alerts to the control room; quiet hours hold non-critical ones; a daily-digest
manager gets non-critical alerts in the digest; every key is deterministic."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from stream.notify.managers import Managers
from stream.notify.routing import (ControlRoom, digest_deliveries, escalation_deliveries,
                                   idempotency_key, public_record, route)

SH = ZoneInfo("Asia/Shanghai")
MANAGERS = Managers.from_csv_text(
    "manager_id,name,email,webhook_url,language,quiet_hours,digest\n"
    "mgr-01,Li,li@example.cn,https://h.example.cn/li,zh-CN,22:00-07:00,\n"
    "mgr-02,Ann,ann@example.org,,en,,daily@08:00\n"
    "mgr-03,Bo,,https://h.example.org/bo,en,,\n")
ROOM = ControlRoom("http://am:9093", "room@example.cn", "https://h.example.cn/room", "zh-CN")
DAY = datetime(2026, 3, 5, 15, 0, tzinfo=SH).timestamp()  # 15:00, nobody's quiet hours
NIGHT = datetime(2026, 3, 5, 23, 0, tzinfo=SH).timestamp()
MORNING = datetime(2026, 3, 6, 7, 0, tzinfo=SH).timestamp()


def alert(severity="warning", scope="meter", status="open", **kw):
    a = {"id": "a1", "type": "theft", "subtype": "energy_mismatch", "status": status,
         "severity": severity, "scope": scope, "meter_id": "M1" if scope == "meter" else None,
         "customer_id": "C1" if scope == "meter" else None, "area_id": "A1",
         "start": "2026-03-05T10:00:00+08:00", "detected_at": "2026-03-05T14:00:00+08:00",
         "score": 0.9, "evidence": {"metered_kwh": 1.2, "implied_kwh": 5.0},
         "message": {"en": "Metered 1.2 kWh", "zh-CN": "计量 1.2 kWh"}, "transient": False,
         "context": {"kwh": [0.1, 0.2]}}
    a.update(kw)
    return a


def go(a, manager_id="mgr-01", now=DAY, room=ROOM):
    return route(a, manager_id=manager_id, managers=MANAGERS, control_room=room, tz=SH,
                 now=now, update_digest_s=3600)


def test_a_customer_alert_goes_to_its_manager_on_each_channel_in_their_language():
    r = go(alert())
    (t,) = r.targets
    assert t.recipient == "mgr-01" and t.why == "manager" and not r.watch_critical
    assert [(d.channel, d.key, d.due_at) for d in t.first_deliveries] == [
        ("email", "a1|alert|email|mgr-01", DAY), ("webhook", "a1|alert|webhook|mgr-01", DAY)]
    assert {d.payload["address"] for d in t.first_deliveries} == {"li@example.cn",
                                                                  "https://h.example.cn/li"}
    assert all(d.payload["language"] == "zh-CN" for d in t.first_deliveries)
    assert t.update_digest == {"bucket": "update", "due_at": DAY + 3600}


def test_what_leaves_carries_ids_and_evidence_but_not_the_load_curve():
    (t,) = go(alert()).targets
    sent = t.first_deliveries[0].payload["alert"]
    assert "context" not in sent and sent["evidence"] == {"metered_kwh": 1.2, "implied_kwh": 5.0}
    assert sent["customer_id"] == "C1" and public_record(alert()) == sent


def test_a_critical_customer_alert_also_goes_to_the_control_room_and_is_watched():
    r = go(alert(severity="critical"))
    mgr, room = r.targets
    assert mgr.recipient == "mgr-01" and room.recipient == "control_room" and room.why == "critical"
    assert [d.channel for d in room.first_deliveries] == ["alertmanager", "email", "webhook"]
    assert all(d.payload.get("language", "zh-CN") == "zh-CN" for d in room.first_deliveries)
    assert "language" not in room.first_deliveries[0].payload  # Alertmanager: labels
    assert r.watch_critical
    assert not go(alert(severity="critical", status="closed")).watch_critical


def test_area_alerts_go_to_the_control_room_only():
    r = go(alert(scope="area", type="voltage", subtype="undervoltage"), manager_id=None)
    (room,) = r.targets
    assert room.recipient == "control_room" and room.why == "area" and r.unrouted is None


def test_without_control_room_channels_area_alerts_have_no_target():
    r = go(alert(scope="area"), manager_id=None, room=ControlRoom())
    assert r.targets == ()


def test_quiet_hours_hold_non_critical_alerts_until_they_end_but_not_critical_ones():
    (t,) = go(alert(), now=NIGHT).targets
    assert {d.due_at for d in t.first_deliveries} == {MORNING}
    mgr, room = go(alert(severity="critical"), now=NIGHT).targets
    assert {d.due_at for d in mgr.first_deliveries} == {NIGHT}
    assert {d.due_at for d in room.first_deliveries} == {NIGHT}


def test_a_daily_digest_manager_gets_non_critical_alerts_in_the_digest():
    (t,) = go(alert(), manager_id="mgr-02").targets
    eight = datetime(2026, 3, 6, 8, 0, tzinfo=SH).timestamp()
    assert t.first_deliveries == () and t.first_digest == {"bucket": "daily", "due_at": eight}
    assert t.update_digest == {"bucket": "daily", "due_at": eight}
    mgr, _ = go(alert(severity="critical"), manager_id="mgr-02").targets
    assert [d.channel for d in mgr.first_deliveries] == ["email"] and mgr.first_digest is None


def test_an_alert_without_a_known_manager_is_reported_unrouted():
    assert go(alert(), manager_id="mgr-99").unrouted == "unknown_manager"
    assert go(alert(), manager_id=None).unrouted == "no_manager"
    assert go(alert(), manager_id=None).targets == ()


def test_routing_is_deterministic():
    assert go(alert()) == go(alert())


def test_escalation_tells_the_control_room_and_reminds_the_manager():
    dels = escalation_deliveries(alert(severity="critical"), manager=MANAGERS["mgr-03"],
                                 control_room=ROOM, waited_s=3700, now=NIGHT)
    assert [(d.kind, d.channel, d.recipient) for d in dels] == [
        ("escalation", "alertmanager", "control_room"), ("escalation", "email", "control_room"),
        ("escalation", "webhook", "control_room"), ("renotify", "webhook", "mgr-03")]
    assert all(d.due_at == NIGHT and d.payload["unacknowledged_s"] == 3700 for d in dels)
    assert dels[0].key == "a1|escalation|alertmanager|control_room"
    assert idempotency_key(dels[-1].as_row()) == "a1:renotify"
    assert idempotency_key(go(alert()).targets[0].first_deliveries[0].as_row()) == "a1"


def _items(*specs):
    out = []
    for i, (aid, status, detected, rank) in enumerate(specs, 1):
        a = alert(id=aid, status=status, detected_at=detected)
        out.append({"id": i, "alert_id": aid, "record": public_record(a), "severity_rank": rank,
                    "added_at": DAY + i})
    return out


def test_a_digest_lists_each_alert_once_in_its_latest_state():
    items = _items(("a1", "update", "2026-03-05T14:00:00+08:00", 1),
                   ("a2", "update", "2026-03-05T14:10:00+08:00", 1),
                   ("a1", "closed", "2026-03-05T15:00:00+08:00", 1))
    key, dels = digest_deliveries("mgr-01", "update", items, manager=MANAGERS["mgr-01"],
                                  control_room=ROOM, tz=SH, now=DAY)
    assert [d.channel for d in dels] == ["email", "webhook"]
    p = dels[0].payload
    assert [(e["alert"]["id"], e["alert"]["status"], e["statuses"]) for e in p["alerts"]] == [
        ("a1", "closed", ["update", "closed"]), ("a2", "update", ["update"])]
    assert p["digest_id"] == key and p["since"] == DAY + 1 and dels[0].key == f"{key}|email|mgr-01"
    again, _ = digest_deliveries("mgr-01", "update", items, manager=MANAGERS["mgr-01"],
                                 control_room=ROOM, tz=SH, now=DAY + 99)
    assert again == key  # the same items make the same digest


def test_a_digest_is_held_in_quiet_hours_unless_it_has_a_critical_item():
    items = _items(("a1", "update", "2026-03-05T14:00:00+08:00", 1))
    _, dels = digest_deliveries("mgr-01", "update", items, manager=MANAGERS["mgr-01"],
                                control_room=ROOM, tz=SH, now=NIGHT)
    assert {d.due_at for d in dels} == {MORNING}
    items = _items(("a1", "update", "2026-03-05T14:00:00+08:00", 2))
    _, dels = digest_deliveries("mgr-01", "update", items, manager=MANAGERS["mgr-01"],
                                control_room=ROOM, tz=SH, now=NIGHT)
    assert {d.due_at for d in dels} == {NIGHT}


def test_the_control_rooms_digest_skips_alertmanager_and_a_removed_manager_gets_none():
    items = _items(("a1", "update", "2026-03-05T14:00:00+08:00", 2))
    _, dels = digest_deliveries("control_room", "update", items, manager=None,
                                control_room=ROOM, tz=SH, now=NIGHT)
    assert [d.channel for d in dels] == ["email", "webhook"]
    _, dels = digest_deliveries("mgr-gone", "update", items, manager=None, control_room=ROOM,
                                tz=SH, now=NIGHT)
    assert dels == []
