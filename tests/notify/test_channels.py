"""Each channel against a real receiver: an aiosmtpd SMTP server, an aiohttp server that
verifies the HMAC signature itself, and Debian's prometheus-alertmanager binary."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from stream.notify.channels import (Channels, DeliveryError, am_alert, am_labels, message_id,
                                    sign, verify_signature)
from stream.notify.routing import ControlRoom, route
from stream.notify.managers import Managers
from stream.settings import load_settings
from tests.notify.receivers import Alertmanager, SmtpReceiver, WebhookReceiver, wait_for

SECRET = "s3cret-webhook-key"
URL = "https://meterwatch.example/console"
LOOPBACK = "127.0.0.0/8,::1/128"


def settings(**kw):
    kw.setdefault("console_url", URL)
    kw.setdefault("webhook_secret", SECRET)
    # The test receivers listen on loopback, which webhooks may reach only if allowed.
    kw.setdefault("notify_webhook_allow_networks", LOOPBACK)
    return load_settings(env={}, **kw)


def alert(**kw):
    a = {"id": "9af7a80f8eb151bba72e", "type": "theft", "subtype": "tamper_event",
         "status": "open", "severity": "critical", "scope": "meter", "meter_id": "M000002",
         "customer_id": "C000002", "area_id": "A001", "start": "2026-03-05T10:00:00+08:00",
         "detected_at": "2026-03-05T10:00:00+08:00", "score": 1.0,
         "evidence": {"events": ["cover_open"], "risk": 0.95},
         "message": {"en": "Tamper flag from the meter: cover_open (risk 0.95).",
                     "zh-CN": "电能表上报防窃电事件：cover_open（风险 0.95）。"},
         "transient": True, "context": {"kwh": [0.1, 0.3]}}
    a.update(kw)
    return a


def send(s, d):
    async def go():
        ch = Channels(s)
        try:
            return await ch.send(d)
        finally:
            await ch.close()
    return asyncio.run(go())


def deliveries(a, *, email="li@example.cn", hook="", lang="zh-CN", room=None):
    mgrs = Managers.from_csv_text("manager_id,email,webhook_url,language\n"
                                  f"mgr-01,{email},{hook},{lang}\n")
    from zoneinfo import ZoneInfo

    r = route(a, manager_id="mgr-01", managers=mgrs, control_room=room or ControlRoom(),
              tz=ZoneInfo("Asia/Shanghai"), now=time.time(), update_digest_s=60)
    return [dict(d.as_row(), id=i, attempts=0) for t in r.targets
            for i, d in enumerate(t.first_deliveries)]


@pytest.fixture
def smtp():
    s = SmtpReceiver().start()
    yield s
    s.stop()


@pytest.fixture
def hooks():
    h = WebhookReceiver(SECRET).start()
    yield h
    h.stop()


def test_email_reaches_a_real_smtp_server_in_the_managers_language(smtp):
    (d,) = deliveries(alert())
    send(settings(smtp_port=smtp.port, smtp_from="meterwatch@utility.example"), d)
    (m,) = smtp.raw
    assert m.rcpt == ["li@example.cn"] and m.msg["To"] == "li@example.cn"
    assert m.msg["From"] == "meterwatch@utility.example"
    assert m.msg["Subject"] == "[meterwatch] 严重：开盖/磁干扰 — 用户 C000002（电表 M000002）"
    assert m.message_id == message_id("9af7a80f8eb151bba72e|alert|email|mgr-01")
    assert m.msg["X-Meterwatch-Alert-Id"] == "9af7a80f8eb151bba72e"
    assert m.msg["X-Meterwatch-Idempotency-Key"] == "9af7a80f8eb151bba72e"
    assert m.msg["Content-Language"] == "zh-CN" and m.msg["Auto-Submitted"] == "auto-generated"
    text, html = m.part("plain"), m.part("html")
    assert "电能表上报防窃电事件" in text and "events: cover_open" in text
    assert f"{URL}/alerts/9af7a80f8eb151bba72e" in text and f'href="{URL}/alerts/' in html
    assert "kwh" not in text  # the load curve (context) stays home


def test_a_resent_email_has_the_same_message_id(smtp):
    (d,) = deliveries(alert(), lang="en")
    send(settings(smtp_port=smtp.port), d)
    send(settings(smtp_port=smtp.port), d)  # e.g. a crash after acceptance, before mark_sent
    assert len(smtp.raw) == 2 and len(smtp.distinct()) == 1
    assert smtp.raw[0].msg["Subject"].startswith("[meterwatch] Critical: Theft: tamper event")


def test_smtp_login_uses_the_configured_credentials():
    from aiosmtpd.smtp import AuthResult

    seen = []

    def auth(server, session, envelope, mechanism, data):
        seen.append((data.login, data.password))
        return AuthResult(success=data.password == b"pw-from-settings", handled=False)

    from aiosmtpd.controller import Controller

    rcv = SmtpReceiver()
    ctl = Controller(rcv, hostname="127.0.0.1", port=rcv.port, authenticator=auth,
                     auth_require_tls=False, ready_timeout=10)
    ctl.start()
    try:
        (d,) = deliveries(alert())
        send(settings(smtp_port=rcv.port, smtp_user="mw", smtp_password="pw-from-settings"), d)
        assert seen == [(b"mw", b"pw-from-settings")] and len(rcv.raw) == 1
        with pytest.raises(DeliveryError) as e:  # wrong password: configuration, retried
            send(settings(smtp_port=rcv.port, smtp_user="mw", smtp_password="wrong"), d)
        assert not e.value.permanent and "wrong" not in str(e.value)
    finally:
        ctl.stop()


def test_line_breaks_and_control_characters_in_alert_fields_never_reach_a_header(smtp):
    # An id and a meter id as a hostile producer could write them: CR/LF to start a
    # forged Bcc header, U+2028/U+2029 (line breaks to Python's email package), NUL.
    evil_id = "a1\r\nBcc: thief@evil.example\u2028x\x00y"
    a = alert(id=evil_id, meter_id="M9\u2029Cc: x@evil.example", customer_id="C9" + "z" * 300)
    (d,) = deliveries(a, lang="en")
    send(settings(smtp_port=smtp.port), d)
    (m,) = smtp.raw  # delivered, once, to the manager only
    assert m.rcpt == ["li@example.cn"]
    assert m.msg["Bcc"] is None and m.msg["Cc"] is None
    for name in ("Subject", "X-Meterwatch-Alert-Id", "X-Meterwatch-Idempotency-Key"):
        v = str(m.msg[name])
        assert not any(c in v for c in "\r\n\x00\u2028\u2029"), (name, v)
    assert m.msg["X-Meterwatch-Alert-Id"] == "a1 Bcc: thief@evil.example x y"
    assert m.msg["Subject"].startswith("[meterwatch] Critical: Theft: tamper event")
    assert len(m.msg["Subject"]) <= 200


def test_an_email_that_cannot_be_encoded_fails_permanently_with_its_reason(smtp):
    # A lone surrogate (valid JSON: "\ud83d") in the message text: no encoding exists.
    (d,) = deliveries(alert(message={"en": "broken \ud83d text", "zh-CN": "坏 \ud83d"}))
    with pytest.raises(DeliveryError) as e:
        send(settings(smtp_port=smtp.port), d)
    assert e.value.permanent and "cannot be built" in str(e.value)
    assert "UnicodeEncodeError" in str(e.value) and smtp.raw == []


def test_a_webhook_idempotency_key_with_a_line_break_is_sent_percent_encoded(hooks):
    (d,) = deliveries(alert(id="k1\r\nX-Forged: 1"), email="", hook=hooks.url())
    send(settings(), d)
    (h,) = hooks.raw
    assert h.key == "k1%0D%0AX-Forged: 1" and "X-Forged" not in h.headers
    assert h.body["idempotency_key"] == "k1\r\nX-Forged: 1"  # the body keeps the real id


def test_smtp_refusals_are_permanent_for_5xx_and_transient_for_4xx_or_down(smtp):
    s = settings(smtp_port=smtp.port)
    (d,) = deliveries(alert(), email="gone@example.cn")
    smtp.refuse["gone@example.cn"] = "550 5.1.1 No such user"
    with pytest.raises(DeliveryError) as e:
        send(s, d)
    assert e.value.permanent and "550" in str(e.value)
    smtp.refuse["gone@example.cn"] = "452 4.2.2 Mailbox full"
    with pytest.raises(DeliveryError) as e:
        send(s, d)
    assert not e.value.permanent
    smtp.stop()
    with pytest.raises(DeliveryError) as e:
        send(s, d)
    assert not e.value.permanent and smtp.raw == []


def test_webhook_is_signed_and_carries_the_alert_id_as_idempotency_key(hooks):
    (d,) = deliveries(alert(), email="", hook=hooks.url("/mgr-01"))
    ch = Channels(settings())

    async def twice():
        await ch.send(d)
        await ch.send(d)
        await ch.close()
    asyncio.run(twice())
    assert hooks.bad == [] and len(hooks.raw) == 2
    (h,) = hooks.distinct().values()
    assert h.key == "9af7a80f8eb151bba72e" and h.kind == "alert" and h.path == "/mgr-01"
    assert verify_signature(SECRET, h.headers["X-Meterwatch-Timestamp"], h.raw_body,
                            h.headers["X-Meterwatch-Signature"])
    b = h.body
    assert b["idempotency_key"] == h.key and b["recipient"] == "mgr-01" and b["language"] == "zh-CN"
    assert b["url"] == f"{URL}/alerts/9af7a80f8eb151bba72e"
    assert set(b["alert"]) == {"id", "type", "subtype", "status", "severity", "scope", "meter_id",
                               "customer_id", "area_id", "start", "detected_at", "score",
                               "evidence", "message", "transient"}  # ids and evidence only
    assert hooks.raw[0].raw_body == hooks.raw[1].raw_body  # the same bytes on a resend


def test_a_receiver_with_another_key_rejects_the_signature_and_that_is_permanent(hooks):
    (d,) = deliveries(alert(), email="", hook=hooks.url("/x?token=tok123"))
    with pytest.raises(DeliveryError) as e:
        send(settings(webhook_secret="another-key"), d)
    assert e.value.permanent and "HTTP 401" in str(e.value) and "tok123" not in str(e.value)
    assert len(hooks.bad) == 1 and hooks.raw == []


@pytest.mark.parametrize("status, permanent", [(503, False), (500, False), (429, False),
                                               (408, False), (400, True), (404, True)])
def test_webhook_http_errors(hooks, status, permanent):
    hooks.status = status
    (d,) = deliveries(alert(), email="", hook=hooks.url())
    with pytest.raises(DeliveryError) as e:
        send(settings(), d)
    assert e.value.permanent is permanent and f"HTTP {status}" in str(e.value)


def test_webhook_receiver_down_is_transient_and_the_url_is_not_in_the_error():
    from tests.notify.receivers import free_port

    url = f"http://127.0.0.1:{free_port()}/hook/secret-token-xyz"
    (d,) = deliveries(alert(), email="", hook=url)
    with pytest.raises(DeliveryError) as e:
        send(settings(), d)
    assert not e.value.permanent and "secret-token-xyz" not in str(e.value)


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    body = b'{"a":1}'
    want = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", body) == "sha256=" + want
    assert not verify_signature("k", "1700000000", body, sign("k", "1700000000", body),
                                now=1700000000 + 301)  # too old: a replay
    assert not verify_signature("k", "nope", body, "sha256=00")


@pytest.fixture(scope="module")
def am():
    a = Alertmanager().start()
    yield a
    a.close()


def test_control_room_alert_reaches_a_real_alertmanager_once(am):
    room = ControlRoom(am.url, language="zh-CN")
    a = alert(id="am0000000000000000001")
    dels = [d for d in deliveries(a, room=room) if d["channel"] == "alertmanager"]
    (d,) = dels
    s = settings(alertmanager_url=am.url, control_room_language="zh-CN")

    async def go():
        ch = Channels(s)
        info = await ch.send(d)
        await ch.send(d)  # a resend: Alertmanager dedupes by label set
        await ch.close()
        return info
    info = asyncio.run(go())
    got = wait_for(lambda: am.by_alert_id().get(a["id"]), 10, what="alert in Alertmanager")
    (x,) = got
    assert x["labels"] == {"alertname": "meterwatch_theft_tamper_event", "source": "meterwatch",
                           "type": "theft", "subtype": "tamper_event", "severity": "critical",
                           "scope": "meter", "area": "A001", "meter_id": "M000002",
                           "alert_id": a["id"]}
    assert info == {"am_key": f"{a['id']}|alert", "labels": x["labels"]}
    assert x["annotations"]["summary"] == a["message"]["zh-CN"]
    assert "events=cover_open" in x["annotations"]["description"]
    assert x["annotations"]["console_url"] == f"{URL}/alerts/{a['id']}"
    from datetime import datetime

    assert x["status"]["state"] == "active"
    assert datetime.fromisoformat(x["startsAt"]) == datetime.fromisoformat(a["start"])
    assert "C000002" not in json.dumps(x)  # no customer id needed by the room


def test_alertmanager_resolves_on_endsat_and_the_rooms_silences_apply(am):
    s = settings()
    a1, a2 = alert(id="am0000000000000000002", area_id="A009"), alert(id="am0000000000000000003")

    async def post(alerts):
        ch = Channels(s)
        await ch.post_alertmanager(am.url, alerts)
        await ch.close()
    now = time.time()
    asyncio.run(post([am_alert(a, am_labels(a), ends_at=now + 300, console_url=URL)
                      for a in (a1, a2)]))
    wait_for(lambda: {a1["id"], a2["id"]} <= set(am.by_alert_id(active=True)), 10)
    am.silence({"area": "A009"})
    states = wait_for(lambda: {k: v[0]["status"]["state"] for k, v in am.by_alert_id().items()
                               if k in (a1["id"], a2["id"]) and v[0]["status"]["state"] == "suppressed"}, 10)
    assert states == {a1["id"]: "suppressed"}
    asyncio.run(post([am_alert(a2, am_labels(a2), ends_at=time.time(), console_url=URL)]))
    wait_for(lambda: a2["id"] not in am.by_alert_id(active=True), 10, what="resolved")
    assert a1["id"] in am.by_alert_id(silenced=True)  # still there, silenced
