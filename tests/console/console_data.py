"""Realistic data for the console tests: a registry, alert records as the pipeline
writes them (with the chart ``context``), users, and a worker profile document."""

from __future__ import annotations

import math
import re
from typing import Any

SECRET = "test-session-secret-" + "x" * 40
PASSWORDS = {"alice": "alice-pw-123", "bob": "bob-pw-4567", "carol": "carol-pw-890",
             "erin": "erin-pw-1234", "adam": "adam-pw-5678"}
USERS = [("alice", "manager", "mgr1"), ("bob", "manager", "mgr2"),
         ("carol", "control_room", None), ("erin", "engineer", None), ("adam", "admin", None)]

REGISTRY_CSV = """meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar,care,role
MTR-A1-0001,C1001,A1,A,220,mgr1,residential,false,false,customer
MTR-A2-0002,C1002,A2,A,220,mgr1,residential,false,true,customer
MTR-A1-0003,C2001,A1,B,220,mgr2,residential,true,false,customer
MTR-A3-0004,C2002,A3,ABC,380,mgr2,small_business,false,false,customer
AREA-A1,,A1,ABC,380,,residential,false,false,area
"""
MANAGER_OF = {"C1001": "mgr1", "C1002": "mgr1", "C2001": "mgr2", "C2002": "mgr2"}
METER_OF = {"C1001": ("MTR-A1-0001", "A1"), "C1002": ("MTR-A2-0002", "A2"),
            "C2001": ("MTR-A1-0003", "A1"), "C2002": ("MTR-A3-0004", "A3")}


def usual_kw(slot: int, scale: float = 1.0) -> float:
    t = slot / 2.0
    return scale * (0.25 + 0.35 * math.exp(-((t - 7.5) / 1.5) ** 2)
                    + 0.8 * math.exp(-((t - 19.5) / 2.2) ** 2))


def day_context(day: str = "2026-03-10", *, upto_slot: int = 42, surge_from: int = 34,
                factor: float = 3.0, day_type: str = "workday") -> dict[str, Any]:
    """A day of half-hour energy: usual until ``surge_from``, then ``factor`` times it;
    slots from ``upto_slot`` on are not read yet (null)."""
    exp = [round(usual_kw(s) * 0.5, 4) for s in range(48)]  # kWh per half hour
    spr = [round(e * 0.3 + 0.02, 4) for e in exp]
    kwh: list[float | None] = []
    for s in range(48):
        if s >= upto_slot:
            kwh.append(None)
        elif s == 12:
            kwh.append(None)  # a missing reading in the morning
        else:
            kwh.append(round(exp[s] * (factor if s >= surge_from else 1.02), 4))
    return {"day": day, "slot_s": 1800, "kwh": kwh, "expected_kwh": exp, "spread_kwh": spr,
            "day_type": day_type}


def surge_alert(id: str, customer: str, *, severity: str = "warning",
                detected: str = "2026-03-10T21:00:00+08:00", status: str = "open",
                day: str = "2026-03-10") -> dict[str, Any]:
    meter, area = METER_OF[customer]
    ctx = day_context(day)
    today = round(sum(x for x in ctx["kwh"] if x is not None), 2)
    usual = round(sum(ctx["expected_kwh"]), 2)
    return {
        "id": id, "type": "surge", "subtype": "daily", "status": status, "severity": severity,
        "scope": "meter", "meter_id": meter, "customer_id": customer, "area_id": area,
        "start": f"{day}T00:00:00+08:00", "detected_at": detected, "score": 4.2,
        "evidence": {"today_kwh": today, "usual_day_kwh": usual, "spread_kwh": 2.1,
                     "ratio": round(today / usual, 2), "weekday": 2},
        "message": {"en": f"Today {today} kWh; usually {usual} ± 2.1 kWh on a Tuesday "
                          f"({round(today / usual, 2)}x).",
                    "zh-CN": f"今日用电 {today} kWh；周二通常为 {usual} ± 2.1 kWh"
                             f"（{round(today / usual, 2)} 倍）。"},
        "transient": False, "context": ctx,
    }


def voltage_alert(id: str, customer: str, *, observed: float = 189.2, severity: str = "warning",
                  status: str = "open", detected: str = "2026-03-11T08:45:00+08:00",
                  start: str = "2026-03-11T08:00:00+08:00") -> dict[str, Any]:
    meter, area = METER_OF[customer]
    return {
        "id": id, "type": "voltage", "subtype": "undervoltage", "status": status,
        "severity": severity, "scope": "meter", "meter_id": meter, "customer_id": customer,
        "area_id": area, "start": start, "detected_at": detected,
        "score": round((198.0 - observed) / 220 * 100, 3),
        "evidence": {"observed_v": observed, "limit_v": 198.0, "critical_limit_v": 176.0,
                     "nominal_v": 220.0, "standard": "gbt12325", "duration_s": 2700,
                     "scope": "meter", "ieee1159": "undervoltage"},
        "message": {"en": f"Undervoltage at this meter: {observed} V against the gbt12325 "
                          f"limit 198.0 V (nominal 220.0 V).",
                    "zh-CN": f"该表计欠压：{observed} V，gbt12325 限值 198.0 V。"},
        "transient": False,
    }


def theft_alert(id: str, customer: str, *, severity: str = "critical",
                detected: str = "2026-03-09T10:00:00+08:00") -> dict[str, Any]:
    meter, area = METER_OF[customer]
    return {
        "id": id, "type": "theft", "subtype": "tamper_event", "status": "open",
        "severity": severity, "scope": "meter", "meter_id": meter, "customer_id": customer,
        "area_id": area, "start": detected, "detected_at": detected, "score": 0.9,
        "evidence": {"events": ["cover_open", "magnetic_tamper"], "risk": 0.9},
        "message": {"en": "Tamper flag from the meter: cover_open, magnetic_tamper (risk 0.9).",
                    "zh-CN": "电能表上报防窃电事件：cover_open, magnetic_tamper（风险 0.9）。"},
        "transient": True,
    }


def seed(store, *, now: float = 1_773_000_000.0) -> dict[str, str]:
    """Users and alerts: alice (mgr1) has a1..a4, bob (mgr2) has b1, b2. Returns ids."""
    for u, role, mid in USERS:
        store.create_user(u, PASSWORDS[u], role, manager_id=mid)
    recs = [
        surge_alert("a1surge0000000000001", "C1001", detected="2026-03-10T21:00:00+08:00"),
        voltage_alert("a2volt00000000000002", "C1002"),
        theft_alert("a3theft0000000000003", "C1001"),
        surge_alert("a4info00000000000004", "C1002", severity="info",
                    detected="2026-03-08T20:00:00+08:00", day="2026-03-08"),
        surge_alert("b1surge0000000000001", "C2001", detected="2026-03-10T22:00:00+08:00"),
        voltage_alert("b2volt00000000000002", "C2002", observed=190.5),
    ]
    for i, r in enumerate(recs):
        store.ingest(r, manager_id=MANAGER_OF[r["customer_id"]], now=now + i)
    # The voltage alert worsens: an update message, now critical.
    store.ingest(voltage_alert("a2volt00000000000002", "C1002", observed=174.0,
                               severity="critical", status="update",
                               detected="2026-03-11T09:30:00+08:00"),
                 manager_id="mgr1", now=now + 10)
    return {r["id"]: r["customer_id"] for r in recs}


def profile_doc(meter_id: str, area_id: str, day: str = "2026-03-12") -> dict[str, Any]:
    """What the worker's ``GET /meters/{id}/profile`` answers."""
    wd = [round(usual_kw(s), 3) for s in range(48)]
    od = [round(usual_kw(s, 1.15), 3) for s in range(48)]
    today = [round(w * 0.5 * (1.0 if s < 30 else 1.6), 4) if s < 40 else None
             for s, w in enumerate(wd)]
    return {"meter_id": meter_id, "area_id": area_id,
            "profile": {"workday": {"expected_kw": wd, "spread_kw": [round(x * 0.3, 3) for x in wd],
                                    "days": 40},
                        "offday": {"expected_kw": od, "spread_kw": [round(x * 0.35, 3) for x in od],
                                   "days": 16}},
            "today": {"day": day, "kwh": today}}


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


async def login(client, username: str, password: str | None = None, *, follow: bool = False):
    r = await client.get("/login")
    token = csrf_from(await r.text())
    return await client.post("/login", data={
        "username": username, "password": PASSWORDS.get(username, "") if password is None else password,
        "csrf_token": token, "next": "/alerts"}, allow_redirects=follow)


async def page_csrf(client, path: str) -> str:
    r = await client.get(path)
    assert r.status == 200, (path, r.status)
    return csrf_from(await r.text())


def compliance_docs() -> tuple[dict[str, dict], dict[str, Any]]:
    """What the worker answers for voltage compliance, made by the worker's own code
    (``models.compliance``) from February 2026 and March's first half hour of area A1's
    two meters under GB/T 12325: MTR-A1-0001 within the limits, MTR-A1-0003 above them
    for 100 half hours (92.6 %: fails the 95 % target) with one dip to 68 % of Un.
    Returns (meter id -> its ``compliance`` member, the area's document)."""
    import numpy as np

    from models.base import AreaView, Batch, Fleet, compose_dtype
    from models.compliance import ComplianceDetector, area_doc, meter_doc
    from models.localtime import LocalCalendar

    det = ComplianceDetector("gbt12325", LocalCalendar("Asia/Shanghai", None))
    fleet = Fleet.simple(2, nominal_voltage=220.0)
    st = np.zeros(2, compose_dtype(det.fields))
    det.init(st, fleet, np.arange(2))
    ast = np.zeros(1, compose_dtype(det.area_fields))
    det.init_area(ast, fleet, np.arange(1))
    t0 = 1_769_875_200  # 2026-02-01 00:00 +08:00
    n = 28 * 48 + 1
    v = np.full((n, 2), 220.0)
    v[:100, 1] = 240.0
    vmin = v - 2.0
    vmin[500, 1] = 150.0
    out: list = []
    for k in range(n):
        b = Batch.from_columns(2, meter=[0, 1], ts=[t0 + 1800 * (k + 1)] * 2, interval_s=[1800] * 2,
                               voltage=v[k], voltage_min=vmin[k], voltage_max=v[k] + 2.0)
        det.step(st, b, fleet, AreaView(np.array([0]), np.zeros(2, np.int64), ast), out)
    ids = ["MTR-A1-0001", "MTR-A1-0003"]
    meters = {m: meter_doc(det, st[i]) for i, m in enumerate(ids)}
    area = {"area_id": "A1"} | area_doc(det, ast[0], [(ids[0], "C1001", st[0]),
                                                      (ids[1], "C2001", st[1])])
    return meters, area
