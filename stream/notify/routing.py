"""Who is told what, and when: pure functions from an alert message to deliveries.

Rules:

* A meter (customer) alert goes to the customer's account manager (the registry's
  ``account_manager``, looked up when the alert is first seen), on each of the manager's
  channels (email, webhook), in the manager's language.
* An area-scope alert (area voltage, area loss, area outage) and any critical alert go
  to the control room: Prometheus Alertmanager, and its email and webhook if configured.
  A critical customer alert goes to both.
* The first message of an alert a recipient hears of is a notification; later messages
  (updates, the close) go into that recipient's update digest, one per
  ``update_digest_s``. A manager with ``digest=daily@HH:MM`` gets non-critical alerts and
  all updates in one daily digest instead.
* Quiet hours hold a manager's non-critical notifications and digests until they end.
  Critical ones are never held; the control room has no quiet hours.
* A critical alert still unacknowledged after ``escalate_after_s`` is escalated to the
  control room and re-notified to its manager, once.

Every delivery has a deterministic key (alert id, kind, channel, recipient), so routing
the same message again enqueues nothing new. What is sent carries only what the
recipient needs: ids, evidence and the message (:func:`public_record`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from stream.notify.managers import CONTROL_ROOM, Manager, Managers

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
# The fields of an alert record that leave the notifier. Anything else a detector adds
# (e.g. "context" with a customer's load curve) stays in the store.
PUBLIC_FIELDS = ("id", "type", "subtype", "status", "severity", "scope", "meter_id",
                 "customer_id", "area_id", "start", "detected_at", "score", "evidence",
                 "message", "transient")


def public_record(alert: dict[str, Any]) -> dict[str, Any]:
    return {k: alert.get(k) for k in PUBLIC_FIELDS if k in alert}


def message_key(alert: dict[str, Any]) -> str:
    """With the alert id, identifies one alert message (consumers dedupe on it)."""
    return f"{alert['status']}|{alert['detected_at']}"


@dataclass(frozen=True)
class ControlRoom:
    """The control room's channels (from settings): Alertmanager, email, webhook."""

    alertmanager_url: str = ""
    email: str = ""
    webhook_url: str = field(default="", repr=False)
    language: str = "en"

    @classmethod
    def from_settings(cls, s) -> "ControlRoom":
        return cls(s.alertmanager_url.rstrip("/"), s.control_room_email,
                   s.control_room_webhook, s.control_room_language)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, a in (("alertmanager", self.alertmanager_url),
                                    ("email", self.email), ("webhook", self.webhook_url)) if a)

    def address(self, channel: str) -> str:
        return {"alertmanager": self.alertmanager_url, "email": self.email,
                "webhook": self.webhook_url}[channel]


@dataclass(frozen=True)
class Delivery:
    key: str
    alert_id: str | None
    kind: str  # alert | renotify | escalation | digest
    channel: str  # email | webhook | alertmanager
    recipient: str  # manager id or control_room
    due_at: float
    payload: dict[str, Any] = field(repr=False)

    def as_row(self) -> dict[str, Any]:
        return dict(key=self.key, alert_id=self.alert_id, kind=self.kind, channel=self.channel,
                    recipient=self.recipient, payload=self.payload, due_at=self.due_at)


@dataclass(frozen=True)
class Target:
    """One recipient of an alert and what each kind of message means for them."""

    recipient: str
    why: str  # manager | area | critical
    first_deliveries: tuple[Delivery, ...]
    first_digest: dict[str, Any] | None  # {bucket, due_at}: a daily-digest manager
    update_digest: dict[str, Any] | None  # {bucket, due_at}; None: no digest channel

    def as_spec(self) -> dict[str, Any]:
        return dict(recipient=self.recipient,
                    first_deliveries=[d.as_row() for d in self.first_deliveries],
                    first_digest=self.first_digest, update_digest=self.update_digest)


@dataclass(frozen=True)
class Route:
    targets: tuple[Target, ...]
    watch_critical: bool
    unrouted: str | None = None  # why a customer alert has no manager to go to


def delivery_key(alert_id: str, kind: str, channel: str, recipient: str) -> str:
    return f"{alert_id}|{kind}|{channel}|{recipient}"


def deliveries(alert: dict[str, Any], kind: str, recipient: str, channels: Iterable[str],
               address, language: str, due_at: float, extra: dict | None = None
               ) -> tuple[Delivery, ...]:
    pub = public_record(alert)
    out = []
    for ch in channels:
        payload: dict[str, Any] = {"address": address(ch), "alert": pub}
        if ch != "alertmanager":
            payload["language"] = language
        if extra:
            payload.update(extra)
        out.append(Delivery(delivery_key(alert["id"], kind, ch, recipient), alert["id"], kind,
                            ch, recipient, due_at, payload))
    return tuple(out)


def route(alert: dict[str, Any], *, manager_id: str | None, managers: Managers,
          control_room: ControlRoom, tz: ZoneInfo, now: float,
          update_digest_s: float) -> Route:
    """The recipients of one alert message and the deliveries it may cause.

    ``manager_id`` is the alert's account manager (the store keeps the one found at the
    alert's first sight). The store decides, per recipient, whether this message is the
    first they hear of the alert (``first_*``) or a later one (``update_digest``).
    """
    critical = alert.get("severity") == "critical"
    targets: list[Target] = []
    unrouted = None
    if alert.get("scope", "meter") == "meter":
        mgr = managers.get(manager_id)
        if mgr is None:
            unrouted = "no_manager" if not manager_id else "unknown_manager"
        else:
            targets.append(_manager_target(alert, mgr, critical, tz, now, update_digest_s))
    if (alert.get("scope") == "area" or critical) and control_room.channels:
        cr = control_room
        digest_channels = [c for c in cr.channels if c != "alertmanager"]
        targets.append(Target(
            CONTROL_ROOM, "area" if alert.get("scope") == "area" else "critical",
            deliveries(alert, "alert", CONTROL_ROOM, cr.channels, cr.address, cr.language, now),
            None,
            {"bucket": "update", "due_at": now + update_digest_s} if digest_channels else None))
    return Route(tuple(targets), watch_critical=critical and alert.get("status") != "closed",
                 unrouted=unrouted)


def _manager_target(alert, mgr: Manager, critical: bool, tz: ZoneInfo, now: float,
                    update_digest_s: float) -> Target:
    if mgr.digest_at is not None:
        daily = {"bucket": "daily", "due_at": mgr.next_digest(now, tz)}
        if critical:
            return Target(mgr.manager_id, "manager",
                          deliveries(alert, "alert", mgr.manager_id, mgr.channels, mgr.address,
                                     mgr.language, now), None, daily)
        return Target(mgr.manager_id, "manager", (), daily, daily)
    due = now if critical else (mgr.quiet_until(now, tz) or now)
    return Target(mgr.manager_id, "manager",
                  deliveries(alert, "alert", mgr.manager_id, mgr.channels, mgr.address,
                             mgr.language, due),
                  None, {"bucket": "update", "due_at": now + update_digest_s})


def escalation_deliveries(alert: dict[str, Any], *, manager: Manager | None,
                          control_room: ControlRoom, waited_s: float,
                          now: float) -> list[Delivery]:
    """A critical alert nobody acknowledged: the control room is told (kind
    ``escalation``) and the manager reminded (kind ``renotify``), never held."""
    extra = {"unacknowledged_s": round(waited_s)}
    if manager is not None:
        extra["manager_id"] = manager.manager_id
    out = list(deliveries(alert, "escalation", CONTROL_ROOM, control_room.channels,
                          control_room.address, control_room.language, now, extra))
    if manager is not None:
        out += deliveries(alert, "renotify", manager.manager_id, manager.channels,
                          manager.address, manager.language, now, extra)
    return out


def digest_deliveries(recipient: str, bucket: str, items: list[dict[str, Any]], *,
                      manager: Manager | None, control_room: ControlRoom, tz: ZoneInfo,
                      now: float) -> tuple[str, list[Delivery]]:
    """One digest of waiting items for a recipient: its id and a delivery per channel.

    ``items`` are digest rows (``id``, ``alert_id``, ``record``, ``severity_rank``, ...)
    in the order they arrived. The digest lists each alert once, in its latest state,
    with what happened to it since. The id is a hash of the items, so forming the same
    digest twice yields the same keys.
    """
    ident = hashlib.sha256(f"{recipient}|{bucket}|{','.join(str(i['id']) for i in items)}"
                           .encode()).hexdigest()[:24]
    digest_id = f"digest:{ident}"
    alerts: dict[str, dict[str, Any]] = {}
    for it in items:
        rec = it["record"]
        a = alerts.get(rec["id"])
        if a is None:
            a = alerts[rec["id"]] = {"alert": rec, "statuses": []}
        elif rec["detected_at"] >= a["alert"]["detected_at"]:
            a["alert"] = rec
        a["statuses"].append(rec["status"])
    entries = [{"alert": public_record(a["alert"]), "statuses": a["statuses"]}
               for a in alerts.values()]
    critical = any(it["severity_rank"] >= SEVERITY_RANK["critical"] for it in items)
    if recipient == CONTROL_ROOM:
        channels = [c for c in control_room.channels if c != "alertmanager"]
        address, language, due = control_room.address, control_room.language, now
    elif manager is not None:
        channels, address, language = list(manager.channels), manager.address, manager.language
        due = now if critical else (manager.quiet_until(now, tz) or now)
    else:  # the manager left the managers file: nobody to send to
        return digest_id, []
    out = [Delivery(f"{digest_id}|{ch}|{recipient}", None, "digest", ch, recipient, due,
                    {"address": address(ch), "language": language, "bucket": bucket,
                     "digest_id": digest_id, "since": min(i["added_at"] for i in items),
                     "alerts": entries})
           for ch in channels]
    return digest_id, out


def idempotency_key(d: dict[str, Any]) -> str:
    """What a receiver dedupes on: the alert id for the notification of an alert (on
    every channel), ``<id>:<kind>`` for a reminder or escalation, the digest id for a
    digest."""
    if d["kind"] == "digest":
        return d["payload"]["digest_id"]
    if d["kind"] == "alert":
        return d["alert_id"]
    return f"{d['alert_id']}:{d['kind']}"

