"""The notifier service: a Faust agent on ``meterwatch.alerts`` feeding a durable outbox,
and the tasks that empty it.

Per alert message (consumer group ``METERWATCH_NOTIFY_GROUP``)::

    store.ingest (idempotent)  ->  routing.route (pure)  ->  store.apply_routing
                                    (deliveries, digest items, escalation watch: one
                                     transaction, idempotent by deterministic keys)

It always routes, also when the store says "duplicate": a crash between ingest and
routing must not lose a delivery, and routing twice adds nothing. An error goes to the
dead-letter topic with the original bytes (Faust acks an event even when the agent
raises); an unavailable database is waited for instead, so a database outage loses
nothing either.

Tasks, independent of the Kafka partitions this process owns:

* **sender**: claims due outbox rows (a lease, so one sender per row), sends each on its
  channel and marks it sent only after the channel accepted it. A transient failure
  retries after ``notify_retry_initial_s`` doubling up to ``notify_retry_max_s``, for up
  to ``MAX_AGE_S``; a permanent one (SMTP 5xx for the recipient, HTTP 4xx) is dead at
  once, with a log line. A notifier killed mid-send leaves its claim; restarted (same
  host, group and port) it releases it and sends the row again: the receiver recognises
  the resend by its idempotency key / Message-ID.
* **housekeeping** (every second): forms due digests, escalates critical alerts not
  acknowledged after ``escalate_after_s``, keeps Alertmanager's view current (re-posts
  open alerts every ``alertmanager_refresh_s``, resolves closed ones), refreshes the
  outbox gauges, reloads the managers file and registry when they change.
* **outcome relay** (every ``notify_outcome_relay_s``): publishes the inspection outcomes
  the theft model learns from, from the store to the by-area topic
  (:mod:`stream.notify.outcomes`).

All database work runs on one thread beside the event loop, so a slow database (or a
SQLite lock held by the console) never stalls Kafka heartbeats or sends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Awaitable, Callable
from zoneinfo import ZoneInfo

import msgspec

from models.alerts import Alert, record
from stream.notify import metrics as M
from stream.notify.channels import Channels, DeliveryError, am_alert, am_labels
from stream.notify.managers import CONTROL_ROOM, Managers, ManagersError
from stream.notify.outcomes import OutcomeRelay
from stream.notify.routing import (SEVERITY_RANK, ControlRoom, digest_deliveries,
                                   escalation_deliveries, message_key, public_record, route)
from stream.notify.scrub import one_line
from stream.registry import Registry, RegistryError
from stream.settings import NOTIFY_HORIZON_DAYS, Settings
from stream.store import AlertStore, default_url

log = logging.getLogger("meterwatch.notify")

# An alert message produced longer ago than this is stored but not notified (a new
# consumer group reading the topic's history must not mail a year of alerts), and a
# delivery failing for longer than this gives up (state dead).
MAX_AGE_S = NOTIFY_HORIZON_DAYS * 86400.0
SEND_TIMEOUT_S = 30.0
LEASE_S = 3 * SEND_TIMEOUT_S  # a claim outlives any send
PER_CHANNEL = 4  # concurrent sends per channel
TICK_S = 1.0
STATS_EVERY_S = 10.0
PURGE_EVERY_S = 3600.0
CHANNELS = ("email", "webhook", "alertmanager")


def decode(raw: bytes | str) -> dict[str, Any]:
    """An alert record from the topic, checked against the worker's contract
    (:class:`models.alerts.Alert`); a ValueError says what is wrong with it."""
    try:
        a = msgspec.json.decode(raw, type=Alert)
    except msgspec.ValidationError as e:
        raise ValueError(f"not an alert: {_where_first(str(e))}") from None
    except msgspec.DecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    for k in ("start", "detected_at"):
        try:
            datetime.fromisoformat(getattr(a, k))
        except ValueError:
            raise ValueError(f"not an alert: {k} {getattr(a, k)!r} is not ISO 8601") from None
    return record(a)


def _where_first(msgspec_error: str) -> str:
    """msgspec's "Invalid enum value 'x' - at `$.status`" as "status: Invalid enum value
    'x'": the field first, as people scan a dead-letter reason."""
    what, sep, where = msgspec_error.rpartition(" - at `$.")
    return f"{where.rstrip('`')}: {what}" if sep else msgspec_error


def _transient_db_error(e: BaseException) -> bool:
    from sqlalchemy import exc

    return isinstance(e, (exc.OperationalError, exc.InterfaceError)) or (
        isinstance(e, exc.DBAPIError) and e.connection_invalidated)


def check_config(s: Settings, managers: Managers) -> None:
    """Refuse settings that would send unsigned webhooks or have nowhere to send."""
    webhooks = [m.manager_id for m in managers if m.webhook_url]
    if s.control_room_webhook:
        webhooks.append(CONTROL_ROOM)
    if webhooks and not s.webhook_secret:
        raise ValueError(f"webhook channels configured ({', '.join(webhooks[:5])}"
                         f"{'...' if len(webhooks) > 5 else ''}) but no signing key: set "
                         f"METERWATCH_WEBHOOK_SECRET")


class Notifier:
    """Everything the notifier does, independent of Faust (the app wires it to Kafka)."""

    def __init__(self, settings: Settings, store: AlertStore, registry: Registry | None,
                 managers: Managers, *, clock: Callable[[], float] = time.time,
                 owner: str | None = None) -> None:
        self.s = settings
        self.store = store
        self.registry = registry
        self.managers = managers
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.control_room = ControlRoom.from_settings(settings)
        self.channels = Channels(settings, timeout_s=SEND_TIMEOUT_S)
        # Stable across restarts on one host, so a restarted notifier resumes its own
        # claims at once instead of waiting for them to expire.
        self.owner = owner or f"{socket.gethostname()}:{settings.notify_group}:{settings.notify_web_port}"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="notify-db")
        self._wake: asyncio.Event | None = None
        self._inflight: dict[str, set[asyncio.Task]] = {ch: set() for ch in CHANNELS}
        self._last_stats = 0.0
        self._last_reload = time.monotonic()
        self._last_purge = float("-inf")  # purge at start, then every PURGE_EVERY_S
        self._logged: dict[str, float] = {}
        M.managers.set(len(managers))

    # ---- plumbing ---------------------------------------------------------------------

    async def db(self, fn, *args, **kw):
        """Run a store call on the notifier's database thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(fn, *args, **kw))

    def _first_in(self, what: str, seconds: float) -> bool:
        """True at most once per ``seconds`` for ``what`` (to rate-limit a log line)."""
        now = time.monotonic()
        if now - self._logged.get(what, -1e9) < seconds:
            return False
        self._logged[what] = now
        return True

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        await self.channels.close()
        self._pool.shutdown(wait=True)

    # ---- alert messages ---------------------------------------------------------------

    def manager_of(self, alert: dict[str, Any]) -> str | None:
        if alert.get("scope", "meter") != "meter" or self.registry is None:
            return None
        row = self.registry.row(alert.get("meter_id") or "")
        if row is None:
            return None
        return self.registry.account_manager[row] or None

    def handle(self, alert: dict[str, Any], produced_at: float | None = None) -> str:
        """Store one alert message and enqueue what it causes (database thread)."""
        now = self.clock()
        ing = self.store.ingest(alert, manager_id=self.manager_of(alert), now=now)
        M.messages.labels(result=ing.kind).inc()
        if produced_at is not None and now - produced_at > MAX_AGE_S:
            M.historic.inc()
            return ing.kind
        stored = ing.alert or self.store.get_alert(alert["id"])
        manager_id = stored["manager_id"] if stored else None
        r = route(alert, manager_id=manager_id, managers=self.managers,
                  control_room=self.control_room, tz=self.tz, now=now,
                  update_digest_s=self.s.update_digest_s)
        if r.unrouted and ing.kind == "new":
            M.unrouted.labels(reason=r.unrouted).inc()
            log.warning("alert %s: no manager to notify (%s: %r)", alert["id"], r.unrouted,
                        manager_id)
        res = self.store.apply_routing(
            alert_id=alert["id"], message_key=message_key(alert), status=alert["status"],
            record=public_record(alert), severity_rank=SEVERITY_RANK[alert["severity"]],
            targets=[t.as_spec() for t in r.targets], watch_critical=r.watch_critical, now=now)
        for ch, kind in res["created"]:
            M.enqueued.labels(channel=ch, kind=kind).inc()
        return ing.kind

    async def consume(self, raw: bytes, produced_at: float | None,
                      deadletter: Callable[[BaseException], Awaitable[Any]]) -> str:
        """One message from the alerts topic: handled, waited for, or dead-lettered."""
        try:
            alert = decode(raw)
        except ValueError as e:
            log.error("undecodable alert message, sent to the dead-letter topic: %s", e)
            M.deadletter.inc()
            await deadletter(e)
            return "deadletter"
        delay = 1.0
        while True:
            try:
                kind = await self.db(self.handle, alert, produced_at)
                self.wake()
                return kind
            except Exception as e:
                if _transient_db_error(e):
                    if self._first_in("consume", 60):
                        log.warning("alert store unavailable (%s); alert %s waits, retrying "
                                    "(logged once a minute)", type(e).__name__, alert["id"])
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                log.exception("alert %s could not be handled; sent to the dead-letter topic",
                              alert["id"])
                M.deadletter.inc()
                await deadletter(e)
                return "deadletter"

    # ---- sending ----------------------------------------------------------------------

    async def run_sender(self) -> None:
        self._wake = asyncio.Event()
        released = False
        try:
            while True:
                try:
                    if not released:
                        n = await self.db(self.store.release_leases, self.owner)
                        released = True
                        if n:
                            log.info("resuming %d deliveries claimed before a restart", n)
                    claimed = await self.send_due()
                except Exception as e:
                    if self._first_in("sender", 60):
                        log.error("outbox unavailable (retrying every second, logged once a "
                                  "minute): %s: %s", type(e).__name__, e)
                    claimed = 0
                    await asyncio.sleep(TICK_S)
                if not claimed:
                    try:
                        await asyncio.wait_for(self._wake.wait(), 0.5)
                    except asyncio.TimeoutError:
                        pass
                    self._wake.clear()
        finally:
            tasks = [t for ts in self._inflight.values() for t in ts]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.channels.close()

    async def send_due(self) -> int:
        """Claim what is due on each channel with free capacity and start sending it."""
        total = 0
        for ch in CHANNELS:
            free = PER_CHANNEL - len(self._inflight[ch])
            if free <= 0:
                continue
            rows = await self.db(self.store.claim_due, self.owner, now=self.clock(),
                                 lease_s=LEASE_S, limit=free, channel=ch)
            for d in rows:
                t = asyncio.create_task(self._send_one(d))
                self._inflight[ch].add(t)
                t.add_done_callback(functools.partial(self._done, ch))
            total += len(rows)
        return total

    def _done(self, ch: str, t: asyncio.Task) -> None:
        self._inflight[ch].discard(t)
        self.wake()

    async def drain(self, timeout: float = 60.0) -> None:
        """Send until nothing is due or in flight (for tests and one-shot runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = await self.send_due()
            busy = [t for ts in self._inflight.values() for t in ts]
            if busy:
                await asyncio.wait(busy, timeout=max(0.0, deadline - time.monotonic()))
            elif not n:
                return

    async def _send_one(self, d: dict[str, Any]) -> None:
        try:
            await self._send(d)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # recording the outcome failed (database down)
            if self._first_in("record", 60):
                log.error("delivery %s: outcome not recorded (%s: %s); its claim expires "
                          "and it is tried again", d["id"], type(e).__name__, e)

    async def _send(self, d: dict[str, Any]) -> None:
        ch, kind = d["channel"], d["kind"]
        t0 = time.monotonic()
        try:
            info = await asyncio.wait_for(self.channels.send(d), SEND_TIMEOUT_S)
        except DeliveryError as e:
            await self._failed(d, str(e), e.permanent)
            return
        except asyncio.TimeoutError:
            await self._failed(d, f"no answer within {SEND_TIMEOUT_S:.0f} s", False)
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug (e.g. rendering): keep the row, say so loudly
            log.exception("delivery %s (%s %s) failed unexpectedly", d["id"], kind, ch)
            await self._failed(d, f"{type(e).__name__}: {e}", False)
            return
        M.delivery_seconds.labels(channel=ch).observe(time.monotonic() - t0)
        now = self.clock()
        try:
            if info and "am_key" in info:
                await self.db(self.store.am_track, key=info["am_key"], alert_id=d["alert_id"],
                              kind="escalation" if kind == "escalation" else "alert",
                              labels=info["labels"], now=now)
            await self.db(self.store.mark_sent, d["id"], now=now)
        except Exception as e:
            # Accepted but not recorded: the claim expires and the row is sent again;
            # the receiver recognises it by its idempotency key.
            log.error("delivery %s accepted but not marked sent (%s); it will be resent",
                      d["id"], type(e).__name__)
            return
        M.deliveries.labels(channel=ch, kind=kind, result="sent").inc()
        M.delivery_delay.labels(channel=ch).observe(max(0.0, now - d["due_at"]))
        log.info("sent %s %s to %s (%s, attempt %d)", kind, ch, d["recipient"], _ref(d),
                 d["attempts"] + 1)

    async def _failed(self, d: dict[str, Any], error: str, permanent: bool) -> None:
        ch, kind = d["channel"], d["kind"]
        now = self.clock()
        attempts = d["attempts"] + 1
        what = f"delivery {d['id']} ({kind} {ch} to {d['recipient']}, {_ref(d)})"
        if permanent or now - d["created_at"] > MAX_AGE_S:
            await self.db(self.store.mark_failed, d["id"], error, retry_at=None)
            M.deliveries.labels(channel=ch, kind=kind, result="dead").inc()
            log.error("%s failed %s after %d attempt(s), given up (dead): %s", what,
                      "permanently" if permanent else f"for {MAX_AGE_S / 3600:.0f} h",
                      attempts, error)
            return
        delay = min(self.s.notify_retry_initial_s * 2 ** min(d["attempts"], 40),
                    self.s.notify_retry_max_s)
        delay *= random.uniform(0.9, 1.0)  # spread retries of a channel that was down
        await self.db(self.store.mark_failed, d["id"], error, retry_at=now + delay)
        M.deliveries.labels(channel=ch, kind=kind, result="retry").inc()
        log.warning("%s failed (attempt %d), retry in %.1f s: %s", what, attempts, delay, error)

    # ---- housekeeping -----------------------------------------------------------------

    async def run_housekeeping(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self._first_in("housekeeping", 60):
                    log.error("housekeeping failed (retrying every second, logged once a "
                              "minute): %s: %s", type(e).__name__, e)
            await asyncio.sleep(TICK_S)

    async def tick(self) -> None:
        now = self.clock()
        if await self.form_digests(now) + await self.escalate(now):
            self.wake()
        await self.reconcile_alertmanager(now)
        if time.monotonic() - self._last_stats >= STATS_EVERY_S:
            await self.update_gauges(now)
            self._last_stats = time.monotonic()
        if time.monotonic() - self._last_reload >= self.s.registry_reload_s:
            self._last_reload = time.monotonic()
            self.reload()
        if time.monotonic() - self._last_purge >= PURGE_EVERY_S:
            self._last_purge = time.monotonic()
            await self.purge(now)

    async def purge(self, now: float) -> dict[str, int]:
        """Delete sent and dead deliveries and digested items older than
        ``notify_keep_days``: the outbox is a queue, not an archive (the alerts and
        their history stay in the store)."""
        n = await self.db(self.store.purge_outbox, now - self.s.notify_keep_days * 86400.0)
        for what, k in n.items():
            M.purged.labels(what=what).inc(k)
        if any(n.values()):
            log.info("outbox: purged %d deliveries and %d digest items older than %g days",
                     n["deliveries"], n["digest_items"], self.s.notify_keep_days)
        return n

    async def form_digests(self, now: float) -> int:
        n = 0
        for recipient, bucket in await self.db(self.store.digests_due, now):
            mgr = self.managers.get(recipient) if recipient != CONTROL_ROOM else None

            def build(items, recipient=recipient, bucket=bucket, mgr=mgr):
                key, dels = digest_deliveries(recipient, bucket, items, manager=mgr,
                                              control_room=self.control_room, tz=self.tz, now=now)
                return key, [d.as_row() for d in dels]

            res = await self.db(self.store.form_digest, recipient, bucket, build, now=now)
            if res is None:
                continue
            key, created = res
            M.digests.labels(bucket=bucket).inc()
            if created == 0:
                log.warning("digest %s for %s has no channel to go to (manager removed?)",
                            key, recipient)
            n += created
        return n

    async def escalate(self, now: float) -> int:
        n = 0
        for row in await self.db(self.store.escalations_due, now - self.s.escalate_after_s):
            aid = row["alert_id"]
            if row["state"] != "new" or row["status"] != "open" or row["severity"] != "critical":
                await self.db(self.store.settle_escalation, aid, now=now)
                continue
            dels = escalation_deliveries(public_record(row["record"]),
                                         manager=self.managers.get(row["manager_id"]),
                                         control_room=self.control_room,
                                         waited_s=now - row["critical_at"], now=now)
            if await self.db(self.store.escalate, aid, [d.as_row() for d in dels], now=now):
                M.escalations.inc()
                log.warning("alert %s: critical and unacknowledged for %.0f min, escalated to "
                            "the control room", aid, (now - row["critical_at"]) / 60)
                n += len(dels)
        return n

    async def reconcile_alertmanager(self, now: float) -> int:
        """Re-post firing alerts every refresh period; resolve those no longer active.

        Active: an alert while its condition is open and nobody resolved it in the
        console; an escalation while the alert is open and unacknowledged. A label
        change (severity) resolves the old label set and posts the new one.
        """
        url = self.control_room.alertmanager_url
        if not url:
            return 0
        rows = await self.db(self.store.am_firing)
        post, resolved, refreshed, relabeled = [], [], [], []
        ttl = 4 * self.s.alertmanager_refresh_s
        wall = time.time()  # Alertmanager's clock is the wall clock, whatever ours says
        lang = self.s.control_room_language
        for r in rows:
            rec = r["record"]
            if rec is None:
                active = False
            elif r["kind"] == "escalation":
                active = r["status"] == "open" and r["alert_state"] == "new"
            else:
                active = r["status"] == "open" and r["alert_state"] != "resolved"
            if not active:
                if rec is not None:
                    post.append(am_alert(rec, r["labels"], ends_at=wall,
                                         console_url=self.s.console_url, language=lang))
                resolved.append(r["key"])
                continue
            labels = am_labels(rec, r["kind"])
            if labels != r["labels"]:
                post.append(am_alert(rec, r["labels"], ends_at=wall, console_url=self.s.console_url,
                                     language=lang))
                relabeled.append((r, labels))
            elif now - r["posted_at"] < self.s.alertmanager_refresh_s:
                continue
            post.append(am_alert(rec, labels, ends_at=wall + ttl, console_url=self.s.console_url,
                                 language=lang))
            refreshed.append(r["key"])
        if not post and not resolved:
            return 0
        if post:
            try:
                await asyncio.wait_for(self.channels.post_alertmanager(url, post), SEND_TIMEOUT_S)
            except (DeliveryError, asyncio.TimeoutError) as e:
                M.am_posts.labels(result="error").inc()
                if self._first_in("alertmanager", 60):
                    log.warning("Alertmanager refresh of %d alert(s) failed, will retry: %s",
                                len(post), e)
                return 0
            M.am_posts.labels(result="ok").inc(len(post))
        for r, labels in relabeled:
            await self.db(self.store.am_track, key=r["key"], alert_id=r["alert_id"],
                          kind=r["kind"], labels=labels, now=now)
        await self.db(self.store.am_posted, resolved, resolved=True, now=now)
        await self.db(self.store.am_posted, refreshed, now=now)
        return len(post)

    async def update_gauges(self, now: float) -> None:
        stats = await self.db(self.store.outbox_stats)
        seen = set()
        oldest: dict[str, float] = {}
        for r in stats:
            if r["channel"] not in CHANNELS:
                continue
            M.outbox.labels(channel=r["channel"], state=r["state"]).set(r["n"])
            seen.add((r["channel"], r["state"]))
            if r["state"] in ("pending", "held") and r["oldest"] is not None:
                oldest[r["channel"]] = min(oldest.get(r["channel"], now), r["oldest"])
        for ch in CHANNELS:
            for st in ("pending", "held", "sent", "dead"):
                if (ch, st) not in seen:
                    M.outbox.labels(channel=ch, state=st).set(0)
            M.outbox_oldest.labels(channel=ch).set(max(0.0, now - oldest.get(ch, now)))

    def reload(self) -> None:
        """Re-read the managers file and the registry if they changed; keep the old
        ones if a new one is bad."""
        try:
            new = self.managers.reload_if_changed()
        except (ManagersError, OSError) as e:
            M.reloads.labels(file="managers", result="error").inc()
            log.error("managers reload failed, keeping the previous ones: %s", e)
        else:
            if new is not self.managers:
                try:
                    check_config(self.s, new)
                except ValueError as e:
                    M.reloads.labels(file="managers", result="error").inc()
                    log.error("managers reload refused, keeping the previous ones: %s", e)
                else:
                    self.managers = new
                    M.managers.set(len(new))
                    M.reloads.labels(file="managers", result="ok").inc()
                    log.info("managers reloaded: %d", len(new))
        if self.registry is not None:
            try:
                reg = self.registry.reload_if_changed()
            except (RegistryError, OSError) as e:
                M.reloads.labels(file="registry", result="error").inc()
                log.error("registry reload failed, keeping the previous one: %s", e)
            else:
                if reg is not self.registry:
                    self.registry = reg
                    M.reloads.labels(file="registry", result="ok").inc()
                    log.info("registry reloaded: %d meters", len(reg))


def _ref(d: dict[str, Any]) -> str:
    # one line: an id from the topic must not forge log lines
    return (f"alert {one_line(d['alert_id'])}" if d.get("alert_id")
            else d["payload"].get("digest_id", "?"))


# ---- the Faust app ---------------------------------------------------------------------

def load(settings: Settings) -> Notifier:
    """The notifier with its store, registry and managers, checked."""
    if not settings.registry:
        raise ValueError("no meter registry configured: set METERWATCH_REGISTRY (or "
                         "--registry); it says which account manager a meter belongs to")
    registry = Registry.load(settings.registry)
    if settings.managers:
        managers = Managers.load(settings.managers)
    else:
        log.warning("no managers file (METERWATCH_MANAGERS): customer alerts reach nobody")
        managers = Managers.empty()
    check_config(settings, managers)
    if not (settings.alertmanager_url or settings.control_room_email
            or settings.control_room_webhook):
        log.warning("no control-room channel configured: area and critical alerts go to "
                    "managers only")
    store = AlertStore(settings.db_url or default_url(settings.data_dir))
    return Notifier(settings, store, registry, managers)


def build_app(settings: Settings, notifier: Notifier | None = None):
    """The Faust app of the notifier (app id = consumer group ``notify_group``)."""
    from stream.app import MAX_MESSAGE_BYTES, faust_app
    from stream.deadletter import from_event as _deadletter

    notifier = notifier or load(settings)
    app = faust_app(
        settings, settings.notify_group, web_port=settings.notify_web_port,
        datadir_name=f"notify-{settings.notify_web_port}",
        store="memory://",
        broker_commit_every=100,
        broker_commit_interval=1.0,
        # A notifier that died is dropped from its group after 15 s (default 60 s), so a
        # restarted one resumes consuming sooner. Heartbeats run on the event loop, which
        # database work never blocks (it runs on its own thread).
        broker_session_timeout=15.0,
        broker_heartbeat_interval=3.0,
    )

    def topic(name: str):
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=settings.topic_partitions,
                         internal=True, config={"max.message.bytes": str(MAX_MESSAGE_BYTES)})

    alerts_topic = topic(settings.alerts_topic)
    dead_topic = topic(settings.deadletter_topic)

    @app.agent(alerts_topic, name="notify")
    async def notify(stream):
        async for event in stream.events():
            async def deadletter(exc, event=event):
                await dead_topic.send(value=_deadletter("notify", event, exc))

            await notifier.consume(event.value, event.message.timestamp, deadletter)

    @app.task
    async def sender():
        await notifier.run_sender()

    @app.task
    async def housekeeping():
        await notifier.run_housekeeping()

    relay = OutcomeRelay(settings, notifier.store, db=notifier.db)

    @app.task
    async def outcome_relay():
        await relay.run()

    @app.page("/metrics")
    async def metrics(web, request):
        return web.bytes(M.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/health")
    async def health(web, request):
        return web.json({"status": "ok", "app": settings.notify_group,
                         "managers": len(notifier.managers),
                         "control_room": list(notifier.control_room.channels)})

    M.prime()
    app.notifier = notifier
    app.outcome_relay = relay
    return app
