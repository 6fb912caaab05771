"""Email templates: both languages carry the message, the evidence table and the link;
HTML is escaped; reminders, escalations and digests say what they are."""

from __future__ import annotations

from models.alerts import evidence_rows
from stream.notify.templates import render_alert, render_digest

URL = "https://meterwatch.example/console"


def alert(**kw):
    a = {"id": "9af7a80f8eb151bba72e", "type": "voltage", "subtype": "undervoltage",
         "status": "open", "severity": "warning", "scope": "meter", "meter_id": "M000006",
         "customer_id": "C000006", "area_id": "A001", "start": "2026-03-06T08:00:00+08:00",
         "detected_at": "2026-03-06T08:15:00+08:00", "score": 2.5,
         "evidence": {"observed_v": 187.3, "limit_v": 198.0, "standard": "GB/T 12325",
                      "indicators": {"phase": "A", "samples": [187.3, 188.0]}},
         "message": {"en": "Undervoltage at this meter: 187.3 V against the GB/T 12325 limit 198 V.",
                     "zh-CN": "该表计低电压：187.3 V，GB/T 12325 限值 198 V。"}}
    a.update(kw)
    return a


def test_english_email_has_message_evidence_local_times_and_link():
    subject, text, html = render_alert({"alert": alert(), "language": "en"}, "alert",
                                       console_url=URL, tz="Asia/Shanghai")
    assert subject == ("[meterwatch] Warning: Voltage: undervoltage — customer C000006 "
                       "(meter M000006)")
    assert "Undervoltage at this meter: 187.3 V" in text
    assert "observed_v: 187.3" in text and "indicators.phase: A" in text
    assert "indicators.samples: 187.3, 188" in text
    assert "2026-03-06 08:15 (Asia/Shanghai)" in text
    assert f"{URL}/alerts/9af7a80f8eb151bba72e" in text
    assert f'<a href="{URL}/alerts/9af7a80f8eb151bba72e">Open in the console</a>' in html
    assert "<td>observed_v</td><td>187.3</td>" in html and 'lang="en"' in html


def test_chinese_email_is_in_chinese_with_the_same_facts():
    subject, text, html = render_alert({"alert": alert(), "language": "zh-CN"}, "alert",
                                       console_url=URL, tz="Asia/Shanghai")
    assert subject == "[meterwatch] 警告：低电压 — 用户 C000006（电表 M000006）"
    assert "该表计低电压：187.3 V" in text and "证据" in text and "在控制台中查看" in text
    assert "observed_v: 187.3" in text and f"{URL}/alerts/9af7a80f8eb151bba72e" in text
    assert 'lang="zh-CN"' in html and "检测时间" in html


def test_html_is_escaped():
    evil = alert(message={"en": "<script>alert(1)</script>", "zh-CN": "x"},
                 evidence={"note": "<b>&"})
    _, text, html = render_alert({"alert": evil, "language": "en"}, "alert", console_url=URL,
                                 tz="Asia/Shanghai")
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;&amp;" in html
    assert "<script>" in text  # plain text is plain


def test_reminder_and_escalation_say_how_long_it_waited():
    p = {"alert": alert(severity="critical"), "language": "en", "unacknowledged_s": 3720,
         "manager_id": "mgr-01"}
    s, text, _ = render_alert(p, "renotify", console_url=URL, tz="Asia/Shanghai")
    assert s.startswith("[meterwatch] Reminder, not acknowledged:")
    assert "not been acknowledged for 62 minutes" in text
    s, text, _ = render_alert(dict(p, language="zh-CN"), "escalation", console_url=URL,
                              tz="Asia/Shanghai")
    assert s.startswith("[meterwatch] 已升级，62 分钟未确认") and "客户经理 mgr-01" in text


def test_area_alert_names_the_area():
    a = alert(scope="area", meter_id=None, customer_id=None)
    s, _, _ = render_alert({"alert": a, "language": "en"}, "alert", console_url=URL,
                           tz="Asia/Shanghai")
    assert s.endswith("— area A001")


def test_digest_lists_each_alert_with_its_history_in_both_languages():
    p = {"language": "en", "bucket": "update", "digest_id": "digest:x", "since": 1772755200.0,
         "alerts": [{"alert": alert(status="closed"), "statuses": ["update", "closed"]},
                    {"alert": alert(id="b2", status="update"), "statuses": ["update"]}]}
    s, text, html = render_digest(p, console_url=URL, tz="Asia/Shanghai")
    assert s == "[meterwatch] Updates to 2 alert(s)"
    assert "Updated → Cleared" in text and f"{URL}/alerts/b2" in text
    assert text.count("observed_v: 187.3") == 2 and html.count("<a href=") == 2
    s, text, _ = render_digest(dict(p, language="zh-CN", bucket="daily"), console_url=URL,
                               tz="Asia/Shanghai")
    assert s == "[meterwatch] 每日告警汇总：2 条" and "更新 → 已恢复" in text


def test_evidence_rows_flatten_nesting_and_shorten_long_lists():
    rows = dict(evidence_rows({"a": {"b": 1, "c": None}, "l": list(range(20)), "f": 0.1 + 0.2,
                               "t": True}))
    assert rows == {"a.b": "1", "a.c": "—", "l": "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, … (20 in all)",
                    "f": "0.3", "t": "true"}
