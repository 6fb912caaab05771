"""Email messages: subject, plain text and HTML, in English and Chinese (zh-CN).

One text and one HTML template per message form (alert, digest), files in templates/
shipped as package data; the language is in the wording tables (``WORDS``), so both
languages always carry the same facts: the alert's message, its type and severity, the
subject (customer and meter, or area), the times in the utility's time zone, the
evidence table, and the link ``{console_url}/alerts/{id}``.
HTML is autoescaped: nothing in an alert can inject markup.

>>> a = {"id": "a1", "type": "theft", "subtype": "tamper_event", "status": "open",
...      "severity": "critical", "scope": "meter", "meter_id": "M1", "customer_id": "C1",
...      "area_id": "A1", "start": "2026-03-05T10:00:00+08:00",
...      "detected_at": "2026-03-05T10:00:00+08:00", "score": 1.0,
...      "evidence": {"events": ["cover_open"]},
...      "message": {"en": "Tamper flag", "zh-CN": "防窃电事件"}}
>>> subject, text, html = render_alert({"alert": a, "language": "zh-CN"}, "alert",
...     console_url="https://mw.example/console", tz="Asia/Shanghai")
>>> subject
'[meterwatch] 严重：开盖/磁干扰 — 用户 C1（电表 M1）'
>>> "https://mw.example/console/alerts/a1" in text and "cover_open" in html
True
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from models.alerts import ZH_NAMES, evidence_rows, format_value

WORDS: dict[str, dict[str, Any]] = {
    "en": {
        "severity": {"info": "Info", "warning": "Warning", "critical": "Critical"},
        "status": {"open": "New", "update": "Updated", "closed": "Cleared"},
        "subject": {
            "alert": "[meterwatch] {severity}: {type_name} — {who}",
            "renotify": "[meterwatch] Reminder, not acknowledged: {type_name} — {who}",
            "escalation": "[meterwatch] ESCALATED, unacknowledged for {minutes} min: "
                          "{type_name} — {who}",
            "update": "[meterwatch] Updates to {n} alert(s)",
            "daily": "[meterwatch] Daily digest: {n} alert(s)",
        },
        "customer": "customer {customer} (meter {meter})", "meter": "meter {meter}",
        "area": "area {area}",
        "intro": {
            "alert": "",
            "renotify": "Reminder: this critical alert has not been acknowledged for "
                        "{minutes} minutes.",
            "escalation": "Escalated to the control room: this critical alert has not been "
                          "acknowledged for {minutes} minutes (account manager {manager}).",
            "update": "What changed in alerts you were told about, since {since}:",
            "daily": "Your alerts since {since}:",
        },
        "field": {"alert": "Alert", "severity": "Severity", "status": "Status",
                  "subject": "Subject", "area": "Area", "start": "Started",
                  "detected": "Detected", "score": "Score", "evidence": "Evidence",
                  "link": "Open in the console", "history": "Messages"},
        "footer": "Sent by meterwatch. Acknowledge or resolve alerts in the console; "
                  "replies to this email are not read.",
    },
    "zh-CN": {
        "severity": {"info": "提示", "warning": "警告", "critical": "严重"},
        "status": {"open": "新告警", "update": "更新", "closed": "已恢复"},
        "subject": {
            "alert": "[meterwatch] {severity}：{type_name} — {who}",
            "renotify": "[meterwatch] 提醒，尚未确认：{type_name} — {who}",
            "escalation": "[meterwatch] 已升级，{minutes} 分钟未确认：{type_name} — {who}",
            "update": "[meterwatch] 告警更新汇总：{n} 条",
            "daily": "[meterwatch] 每日告警汇总：{n} 条",
        },
        "customer": "用户 {customer}（电表 {meter}）", "meter": "电表 {meter}",
        "area": "台区 {area}",
        "intro": {
            "alert": "",
            "renotify": "提醒：该严重告警已 {minutes} 分钟未确认。",
            "escalation": "已升级至调度中心：该严重告警已 {minutes} 分钟未确认"
                          "（客户经理 {manager}）。",
            "update": "自 {since} 以来，您已收到通知的告警有以下变化：",
            "daily": "自 {since} 以来的告警：",
        },
        "field": {"alert": "告警", "severity": "级别", "status": "状态", "subject": "对象",
                  "area": "台区", "start": "开始时间", "detected": "检测时间",
                  "score": "评分", "evidence": "证据", "link": "在控制台中查看",
                  "history": "消息"},
        "footer": "由 meterwatch 发送。请在控制台中确认或处理告警；回复此邮件无人阅读。",
    },
}


@lru_cache(maxsize=None)
def _env(html: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("stream.notify"),
        autoescape=html, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def alert_link(console_url: str, alert_id: str) -> str:
    return f"{console_url.rstrip('/')}/alerts/{alert_id}"


def type_name(alert: dict[str, Any], lang: str) -> str:
    t, s = alert["type"], alert["subtype"]
    if lang == "zh-CN":
        return ZH_NAMES.get((t, s), f"{t}/{s}")
    return f"{t.replace('_', ' ').capitalize()}: {s.replace('_', ' ')}"


def who(alert: dict[str, Any], lang: str) -> str:
    w = WORDS[lang]
    if alert.get("scope") == "area":
        return w["area"].format(area=alert.get("area_id"))
    if alert.get("customer_id"):
        return w["customer"].format(customer=alert["customer_id"], meter=alert.get("meter_id"))
    return w["meter"].format(meter=alert.get("meter_id"))


def local_time(iso: str | float | None, tz: ZoneInfo) -> str:
    if iso is None:
        return "-"
    dt = (datetime.fromtimestamp(iso, tz) if isinstance(iso, (int, float))
          else datetime.fromisoformat(iso).astimezone(tz))
    return f"{dt:%Y-%m-%d %H:%M} ({tz.key})"


def _alert_ctx(alert: dict[str, Any], lang: str, console_url: str, tz: ZoneInfo) -> dict:
    w = WORDS[lang]
    msg = alert.get("message") or {}
    return {
        "message": msg.get(lang) or msg.get("en") or "",
        "type_name": type_name(alert, lang),
        "severity_name": w["severity"].get(alert.get("severity"), alert.get("severity")),
        "status_name": w["status"].get(alert.get("status"), alert.get("status")),
        "who": who(alert, lang),
        "area_id": alert.get("area_id") or "-",
        "start_local": local_time(alert.get("start"), tz),
        "detected_local": local_time(alert.get("detected_at"), tz),
        "score": format_value(alert.get("score")),
        "evidence": evidence_rows(alert.get("evidence") or {}),
        "link": alert_link(console_url, alert["id"]),
    }


def render_alert(payload: dict[str, Any], kind: str, *, console_url: str,
                 tz: str | ZoneInfo) -> tuple[str, str, str]:
    """(subject, text, html) of an alert notification, reminder or escalation."""
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    lang = payload.get("language", "en")
    w = WORDS[lang]
    a = _alert_ctx(payload["alert"], lang, console_url, tz)
    minutes = round(payload.get("unacknowledged_s", 0) / 60)
    fmt = dict(severity=a["severity_name"], type_name=a["type_name"], who=a["who"],
               minutes=minutes, manager=payload.get("manager_id", "-"))
    subject = w["subject"][kind].format(**fmt)
    intro = w["intro"][kind].format(**fmt)
    ctx = dict(w=w, lang=lang, a=a, intro=intro, subject=subject)
    return (subject, _env(False).get_template("alert.txt.j2").render(ctx),
            _env(True).get_template("alert.html.j2").render(ctx))


def render_digest(payload: dict[str, Any], *, console_url: str,
                  tz: str | ZoneInfo) -> tuple[str, str, str]:
    """(subject, text, html) of a digest: each alert once, latest state first seen."""
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    lang = payload.get("language", "en")
    w = WORDS[lang]
    bucket = payload["bucket"]
    alerts = []
    for e in payload["alerts"]:
        a = _alert_ctx(e["alert"], lang, console_url, tz)
        a["history"] = " → ".join(w["status"].get(s, s) for s in e["statuses"])
        alerts.append(a)
    subject = w["subject"][bucket].format(n=len(alerts))
    intro = w["intro"][bucket].format(since=local_time(payload.get("since"), tz))
    ctx = dict(w=w, lang=lang, alerts=alerts, intro=intro, subject=subject)
    return (subject, _env(False).get_template("digest.txt.j2").render(ctx),
            _env(True).get_template("digest.html.j2").render(ctx))
