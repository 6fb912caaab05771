"""The three channels: email over SMTP, signed webhooks, Prometheus Alertmanager (v2 API).

A send either returns (the channel accepted the message) or raises
:class:`DeliveryError`, transient (retry later) or permanent (the message can never be
accepted: an SMTP 5xx for the recipient or the content, an email that cannot be built
or encoded, an HTTP 4xx other than 408, 425 and 429, a webhook address that is not
public). Configuration problems (SMTP login or sender address refused) stay transient,
so fixing the configuration delivers what waited.

Header values built from data are single bounded lines (:mod:`stream.notify.scrub`);
an error body of a receiver is kept only as a short redacted excerpt.

Every message carries what a receiver dedupes on (:func:`routing.idempotency_key`):
``Idempotency-Key`` on webhooks, ``Message-ID`` (a hash of the delivery key) on email;
Alertmanager dedupes alerts by their label set. A message resent after a crash between
"accepted" and "marked sent" is therefore recognised by the receiver.

Webhook signature: ``X-Meterwatch-Signature: sha256=<hex HMAC-SHA256(secret,
timestamp + "." + body)>`` with the Unix time in ``X-Meterwatch-Timestamp``; a receiver
recomputes it over the raw body (:func:`verify_signature`) and rejects stale timestamps.

Nothing here logs an address, a URL (it may hold a token) or a secret; error texts are
scrubbed of the URL before they are stored or logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from models.alerts import evidence_rows
from stream.notify.netguard import AddressPolicy, AddressRefused, GuardedResolver, check_url
from stream.notify.routing import idempotency_key
from stream.notify.scrub import excerpt, header_value, http_header_value
from stream.notify.templates import alert_link, render_alert, render_digest

SIGNATURE_HEADER = "X-Meterwatch-Signature"
UNACKNOWLEDGED = "meterwatch_unacknowledged"  # Alertmanager alertname of escalations
TIMESTAMP_HEADER = "X-Meterwatch-Timestamp"
USER_AGENT = "meterwatch-notify/1"
SUBJECT_CHARS = 200


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


# -- signatures and ids ------------------------------------------------------------------

def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *,
                     now: float | None = None, tolerance_s: float = 300.0) -> bool:
    """True if ``signature`` is ours over (timestamp, body) and the timestamp is fresh.

    >>> ts, body = "1767225600", b'{"kind":"alert"}'
    >>> verify_signature("k", ts, body, sign("k", ts, body), now=1767225660)
    True
    >>> verify_signature("k", ts, body + b" ", sign("k", ts, body), now=1767225660)
    False
    """
    now = time.time() if now is None else now
    try:
        if abs(now - int(timestamp)) > tolerance_s:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def message_id(delivery_key: str) -> str:
    """The Message-ID of a delivery's email: the same on every attempt."""
    return f"<{hashlib.sha256(delivery_key.encode()).hexdigest()[:32]}@meterwatch>"


# -- payloads -----------------------------------------------------------------------------

def webhook_body(d: dict[str, Any], console_url: str) -> bytes:
    """The JSON body of a webhook delivery (the same bytes on every attempt)."""
    p = d["payload"]
    body: dict[str, Any] = {"kind": d["kind"], "idempotency_key": idempotency_key(d),
                            "recipient": d["recipient"], "language": p.get("language", "en")}
    if d["kind"] == "digest":
        body.update(bucket=p["bucket"], digest_id=p["digest_id"],
                    since=_iso(p["since"]),
                    alerts=[dict(e["alert"], statuses=e["statuses"],
                                 url=alert_link(console_url, e["alert"]["id"]))
                            for e in p["alerts"]])
    else:
        body.update(alert=p["alert"], url=alert_link(console_url, p["alert"]["id"]))
        if "unacknowledged_s" in p:
            body.update(unacknowledged_s=p["unacknowledged_s"], manager_id=p.get("manager_id"))
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def am_labels(alert: dict[str, Any], kind: str = "alert") -> dict[str, str]:
    """The label set of an alert in Alertmanager (its identity there: Alertmanager
    dedupes on it). Escalations are a separate alert, ``meterwatch_unacknowledged``."""
    name = UNACKNOWLEDGED if kind == "escalation" else f"meterwatch_{alert['type']}_{alert['subtype']}"
    labels = {"alertname": name, "source": "meterwatch", "type": alert["type"],
              "subtype": alert["subtype"], "severity": alert["severity"],
              "scope": alert.get("scope") or "meter", "area": alert.get("area_id") or "",
              "meter_id": alert.get("meter_id") or "", "alert_id": alert["id"]}
    return {k: str(v) for k, v in labels.items() if v}


def am_key(alert_id: str, kind: str) -> str:
    return f"{alert_id}|{'escalation' if kind == 'escalation' else 'alert'}"


def am_alert(alert: dict[str, Any], labels: dict[str, str], *, ends_at: float,
             console_url: str, language: str = "en", extra: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """One alert in Alertmanager's v2 ``postableAlert`` form."""
    msg = alert.get("message") or {}
    ev = "; ".join(f"{k}={v}" for k, v in evidence_rows(alert.get("evidence") or {}))
    ann = {"summary": msg.get(language) or msg.get("en") or "",
           "description": f"{msg.get('en', '')} Evidence: {ev}".strip(),
           "console_url": alert_link(console_url, alert["id"])}
    if language != "en" and msg.get("en"):
        ann["summary_en"] = msg["en"]
    if extra and "unacknowledged_s" in extra:
        ann["unacknowledged_for"] = f"{round(extra['unacknowledged_s'] / 60)} min"
        if extra.get("manager_id"):
            ann["manager_id"] = extra["manager_id"]
    return {"labels": labels, "annotations": ann, "startsAt": alert["start"],
            "endsAt": _iso(ends_at), "generatorURL": alert_link(console_url, alert["id"])}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def _refused(e: Exception, url: str) -> str:
    if isinstance(e, AddressRefused):
        return f"refused: {e}"
    return _scrub(f"refused: not a valid webhook URL ({type(e).__name__}: {e})", url)


def _scrub(text: str, *secrets: str) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "<address>")
    return text[:500]


def _built(channel: str, build, *args):
    """``build(*args)``; a ValueError (a lone surrogate in an alert's text, say) means
    this message can never be built: a permanent failure, not a retry every minute."""
    try:
        return build(*args)
    except ValueError as e:
        raise DeliveryError(f"{channel} message cannot be built: {type(e).__name__}: "
                            f"{excerpt(str(e))}", permanent=True) from None


# -- the channels -------------------------------------------------------------------------

class Channels:
    """Sends deliveries (outbox rows) on their channel. One HTTP session for all."""

    def __init__(self, settings, *, timeout_s: float = 30.0) -> None:
        self.s = settings
        self.timeout_s = timeout_s
        self.policy = AddressPolicy.from_settings(settings)
        # Webhooks (URLs from the managers file) go through a session whose resolver
        # refuses non-public addresses; Alertmanager (the operator's own, usually
        # internal) through a plain one.
        self._http: dict[bool, Any] = {}

    async def _session(self, guarded: bool = False):
        import aiohttp

        http = self._http.get(guarded)
        if http is None or http.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self.policy) if guarded else None)
            http = self._http[guarded] = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"User-Agent": USER_AGENT})
        return http

    async def close(self) -> None:
        for http in self._http.values():
            await http.close()
        self._http.clear()

    async def send(self, d: dict[str, Any]) -> dict[str, Any] | None:
        """Send one delivery; returns what the caller must remember (Alertmanager labels)."""
        ch = d["channel"]
        if ch == "email":
            await self.send_email(_built(ch, self.build_email, d))
            return None
        if ch == "webhook":
            body = _built(ch, webhook_body, d, self.s.console_url)
            await self.post_webhook(d["payload"]["address"], body, idempotency_key(d), d["kind"])
            return None
        if ch == "alertmanager":
            return await self._alertmanager(d, time.time())
        raise DeliveryError(f"unknown channel {ch!r}", permanent=True)

    # email
    def build_email(self, d: dict[str, Any]) -> EmailMessage:
        p = d["payload"]
        if d["kind"] == "digest":
            subject, text, html = render_digest(p, console_url=self.s.console_url, tz=self.s.timezone)
        else:
            subject, text, html = render_alert(p, d["kind"], console_url=self.s.console_url,
                                               tz=self.s.timezone)
        # Header values carry alert fields (id, meter, area) from the topic: a CR, LF or
        # U+2028 there would end the header (and could start another), so every one is
        # made a single bounded line.
        m = EmailMessage()
        m["Subject"] = header_value(subject, SUBJECT_CHARS)
        m["From"] = header_value(self.s.smtp_from)
        m["To"] = header_value(p["address"])
        m["Date"] = formatdate(localtime=False, usegmt=True)
        m["Message-ID"] = message_id(d["key"])
        m["Auto-Submitted"] = "auto-generated"
        m["X-Meterwatch-Kind"] = header_value(d["kind"])
        m["X-Meterwatch-Idempotency-Key"] = header_value(idempotency_key(d))
        if d.get("alert_id"):
            m["X-Meterwatch-Alert-Id"] = header_value(d["alert_id"])
        m.set_content(text)
        m.add_alternative(html, subtype="html")
        # after: set_content drops Content-*
        m["Content-Language"] = header_value(p.get("language", "en"))
        return m

    async def send_email(self, m: EmailMessage) -> None:
        import aiosmtplib

        s = self.s
        try:
            await aiosmtplib.send(
                m, hostname=s.smtp_host, port=s.smtp_port,
                username=s.smtp_user or None, password=s.smtp_password or None,
                start_tls=bool(s.smtp_starttls), timeout=self.timeout_s)
        except aiosmtplib.SMTPRecipientsRefused as e:
            codes = [r.code for r in e.recipients]
            raise DeliveryError(f"SMTP recipient refused: {'; '.join(f'{r.code} {r.message}' for r in e.recipients)}",
                                permanent=all(c >= 500 for c in codes)) from None
        except aiosmtplib.SMTPDataError as e:
            raise DeliveryError(f"SMTP message refused: {e.code} {e.message}",
                                permanent=e.code >= 500) from None
        except aiosmtplib.SMTPSenderRefused as e:
            # 552/555 at MAIL FROM refuse this message (its size, its parameters); a
            # refused sender address is configuration, retried until it is fixed.
            raise DeliveryError(f"SMTP sender refused: {e.code} {e.message}",
                                permanent=e.code in (552, 555)) from None
        except aiosmtplib.SMTPResponseException as e:
            # Login, sender or greeting refused: configuration, not this message.
            raise DeliveryError(f"SMTP {type(e).__name__}: {e.code} {e.message}") from None
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as e:
            raise DeliveryError(f"SMTP {type(e).__name__}: {e}") from None
        except ValueError as e:  # the message cannot be serialised: it never will be
            raise DeliveryError(f"SMTP message cannot be encoded: {type(e).__name__}: "
                                f"{excerpt(str(e))}", permanent=True) from None

    # webhook
    async def post_webhook(self, url: str, body: bytes, key: str, kind: str) -> None:
        if not self.s.webhook_secret:
            raise DeliveryError("no webhook secret configured (METERWATCH_WEBHOOK_SECRET)")
        try:
            check_url(self.policy, url)  # an IP literal never reaches the resolver
        except (AddressRefused, ValueError) as e:
            raise DeliveryError(_refused(e, url), permanent=True) from None
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8",
                   TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(self.s.webhook_secret, ts, body),
                   "Idempotency-Key": http_header_value(key), "X-Meterwatch-Kind": kind}
        await self._post(url, body, headers, guarded=True)

    async def _post(self, url: str, body: bytes, headers: dict[str, str], *,
                    guarded: bool = False) -> None:
        import aiohttp

        http = await self._session(guarded)
        try:
            async with http.post(url, data=body, headers=headers, allow_redirects=False) as r:
                if 200 <= r.status < 300 or r.status == 409:
                    # 409: the receiver already has this idempotency key. Delivered.
                    return
                # The body may echo the receiver's own credentials: only a short,
                # one-line, redacted excerpt of it is kept (and logged).
                text = excerpt(_scrub((await r.content.read(4096)).decode("utf-8", "replace"),
                                      url))
                transient = r.status in (408, 425, 429) or r.status >= 500
                raise DeliveryError(f"HTTP {r.status}: {text}", permanent=not transient)
        except DeliveryError:
            raise
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, AddressRefused):  # the name resolved to a refused address
                raise DeliveryError(_refused(e.os_error, url), permanent=True) from None
            raise DeliveryError(_scrub(f"HTTP {type(e).__name__}: {e}", url)) from None
        except aiohttp.InvalidURL as e:  # e.g. http://2130706433/: never valid
            raise DeliveryError(_refused(e, url), permanent=True) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise DeliveryError(_scrub(f"HTTP {type(e).__name__}: {e}", url)) from None

    # alertmanager
    async def post_alertmanager(self, url: str, alerts: list[dict[str, Any]]) -> None:
        body = json.dumps(alerts, ensure_ascii=False).encode()
        await self._post(url.rstrip("/") + "/api/v2/alerts", body,
                         {"Content-Type": "application/json"})

    async def _alertmanager(self, d: dict[str, Any], now: float) -> dict[str, Any]:
        p = d["payload"]
        alert = p["alert"]
        labels = am_labels(alert, d["kind"])
        ends = now + 4 * self.s.alertmanager_refresh_s
        await self.post_alertmanager(p["address"], [am_alert(
            alert, labels, ends_at=ends, console_url=self.s.console_url,
            language=self.s.control_room_language, extra=p)])
        return {"am_key": am_key(alert["id"], d["kind"]), "labels": labels}
