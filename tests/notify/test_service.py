"""The notifier's rules end to end in one process, without Kafka: the real Notifier on
SQLite and PostgreSQL, sending to a real SMTP server, a real webhook receiver that checks
signatures, and the real Alertmanager. Time is the notifier's injectable clock (it
starts at the real time, so Alertmanager's timestamps stay valid), stepped forward to
reach digests, the end of quiet hours and escalations."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from stream.notify.managers import Managers
from stream.notify import metrics as M
from stream.notify.service import Notifier
from stream.registry import Registry
from stream.settings import SettingsError, load_settings
from stream.store import AlertStore
from tests.notify.receivers import Alertmanager, SmtpReceiver, WebhookReceiver

SH = ZoneInfo("Asia/Shanghai")
SECRET = "whsec-test-5d1f"
SMTP_PASSWORD = "smtp-pw-9c2e"
URL = "https://meterwatch.example/console"
REGISTRY = """meter_id,customer_id,area_id,phase,nominal_voltage,account_manager,tariff,solar,care
M1,C1,A1,A,220,mgr-01,residential,false,false
M2,C2,A1,A,220,mgr-02,residential,false,false
M3,C3,A2,A,220,mgr-03,residential,false,false
M4,C4,A2,A,220,mgr-99,residential,false,false
"""


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def hhmm(t: float) -> str:
    return datetime.fromtimestamp(t, SH).strftime("%H:%M")


class World:
    def __init__(self, db_url, tmp_path, smtp, hooks, am):
        self.clock = Clock()
        now = self.clock.t
        self.quiet_end = now + 3600
        self.digest_at = now + 7200
        managers = Managers.from_csv_text(
            "manager_id,name,email,webhook_url,language,quiet_hours,digest\n"
            f"mgr-01,Li,li@example.cn,{hooks.url('/mgr-01?token=tok-li')},zh-CN,,\n"
            f"mgr-02,Ann,ann@example.org,,en,,daily@{hhmm(self.digest_at)}\n"
            f"mgr-03,Bo,bo@example.org,{hooks.url('/mgr-03')},en,"
            f"{hhmm(now - 3600)}-{hhmm(self.quiet_end)},\n")
        (tmp_path / "registry.csv").write_text(REGISTRY)
        self.settings = load_settings(
            env={}, smtp_port=smtp.port, smtp_user="", webhook_secret=SECRET,
            alertmanager_url=am.url, control_room_email="room@utility.example",
            control_room_webhook=hooks.url("/room"), console_url=URL,
            notify_retry_initial_s=1.0, notify_retry_max_s=8.0, escalate_after_s=600.0,
            update_digest_s=300.0, alertmanager_refresh_s=60.0,
            notify_webhook_allow_networks="127.0.0.0/8")  # the receiver is on loopback
        self.store = AlertStore(db_url)
        self.n = Notifier(self.settings, self.store, Registry.load(tmp_path / "registry.csv"),
                          managers, clock=self.clock, owner="test")
        self.smtp, self.hooks, self.am = smtp, hooks, am
        self.dead: list[BaseException] = []

    async def feed(self, *alerts, produced_at=None):
        async def dl(exc):
            self.dead.append(exc)
        return [await self.n.consume(json.dumps(a).encode(), produced_at, dl) for a in alerts]

    async def step(self, seconds: float = 0.0):
        """Advance time, run housekeeping once, send what is due."""
        self.clock.advance(seconds)
        await self.n.tick()
        await self.n.drain()

    def mails(self, to: str, kind: str | None = None):
        return [m for m in self.smtp.distinct().values()
                if m.rcpt == [to] and (kind is None or m.msg["X-Meterwatch-Kind"] == kind)]

    def hooks_at(self, path: str, kind: str | None = None):
        return [h for h in self.hooks.distinct().values()
                if h.path == path and (kind is None or h.kind == kind)]


@pytest.fixture
def world(db_url, tmp_path):
    smtp, hooks, am = SmtpReceiver().start(), WebhookReceiver(SECRET).start(), Alertmanager().start()
    w = World(db_url, tmp_path, smtp, hooks, am)
    yield w
    w.store.close()
    smtp.stop()
    hooks.stop()
    am.close()


def run(w: World, coro):
    async def go():
        try:
            await coro
        finally:
            await w.n.channels.close()
    asyncio.run(go())


def alert(id, meter="M1", severity="warning", status="open", minute=0, scope="meter", **kw):
    t = (datetime(2026, 3, 5, 10, 0, tzinfo=SH) + timedelta(minutes=minute)).isoformat()
    a = {"id": id, "type": "theft", "subtype": "energy_mismatch", "status": status,
         "severity": severity, "scope": scope, "meter_id": meter if scope == "meter" else None,
         "customer_id": meter.replace("M", "C") if scope == "meter" else None,
         "area_id": kw.pop("area_id", "A1"), "start": "2026-03-05T10:00:00+08:00",
         "detected_at": t, "score": 0.9, "evidence": {"metered_kwh": 1.2, "implied_kwh": 5.0},
         "message": {"en": f"Metered 1.2 kWh ({id})", "zh-CN": f"计量 1.2 kWh（{id}）"},
         "transient": False, "context": {"kwh": [0.1, 0.2, 0.3]}}
    a.update(kw)
    return a


def area_alert(id, **kw):
    return alert(id, scope="area", type="voltage", subtype="undervoltage", **kw)


def test_each_recipient_gets_each_alert_once_on_each_of_its_channels(world):
    w = world
    crit, warn, area = (alert("crit1", severity="critical", type="theft", subtype="tamper_event"),
                        alert("warn1"), area_alert("area1", area_id="A2"))

    async def go():
        assert await w.feed(crit, warn, area) == ["new", "new", "new"]
        assert await w.feed(crit, warn, area) == ["duplicate"] * 3  # redelivered
        await w.n.drain()
    run(w, go())
    # The manager: both customer alerts, by email (zh-CN) and webhook.
    assert sorted(m.msg["X-Meterwatch-Alert-Id"] for m in w.mails("li@example.cn")) == ["crit1", "warn1"]
    assert all(m.msg["Content-Language"] == "zh-CN" for m in w.mails("li@example.cn"))
    assert sorted(h.key for h in w.hooks_at("/mgr-01")) == ["crit1", "warn1"]
    # The control room: the critical and the area alert, on all three channels.
    assert sorted(m.msg["X-Meterwatch-Alert-Id"] for m in w.mails("room@utility.example")) == ["area1", "crit1"]
    assert sorted(h.key for h in w.hooks_at("/room")) == ["area1", "crit1"]
    assert sorted(w.am.by_alert_id(active=True)) == ["area1", "crit1"]
    assert all(len(v) == 1 for v in w.am.by_alert_id().values())
    # Exactly once: no receiver got anything twice, every delivery is marked sent.
    assert len(w.smtp.raw) == len(w.smtp.distinct()) == 4
    assert len(w.hooks.raw) == len(w.hooks.distinct()) == 4 and w.hooks.bad == []
    assert {d["state"] for d in w.store.deliveries_for()} == {"sent"}
    assert len(w.store.deliveries_for()) == 2 + 2 + 3 + 3


def test_updates_of_an_open_alert_are_batched_into_one_digest(world):
    w = world

    async def go():
        await w.feed(alert("a1"))
        await w.n.drain()
        await w.feed(alert("a1", status="update", minute=15), alert("a1", status="update", minute=30))
        await w.feed(alert("a1", status="update", minute=15))  # redelivered
        await w.feed(alert("a2"), alert("a2", status="update", minute=20))
        await w.step(0)
        assert len(w.mails("li@example.cn")) == 2  # the two alerts; no stream of updates
        await w.step(299)
        assert w.mails("li@example.cn", "digest") == []
        await w.step(1)  # update_digest_s after the first waiting update
        (d,) = w.mails("li@example.cn", "digest")
        assert d.msg["Subject"] == "[meterwatch] 告警更新汇总：2 条"
        text = d.part("plain")
        assert "更新 → 更新" in text and "（a1）" in text and "（a2）" in text
        (h,) = w.hooks_at("/mgr-01", "digest")
        assert [(x["id"], x["statuses"]) for x in h.body["alerts"]] == [
            ("a1", ["update", "update"]), ("a2", ["update"])]
        assert h.key == h.body["digest_id"] and h.body["alerts"][0]["url"] == f"{URL}/alerts/a1"
        await w.feed(alert("a1", status="closed", minute=90))
        await w.step(300)
        d2 = [m for m in w.mails("li@example.cn", "digest") if m.message_id != d.message_id]
        assert len(d2) == 1 and "已恢复" in d2[0].part("plain")
        await w.step(3600)
    run(w, go())
    assert len(w.mails("li@example.cn", "digest")) == 2 and len(w.hooks_at("/mgr-01", "digest")) == 2
    assert len(w.smtp.raw) == len(w.smtp.distinct())


def test_quiet_hours_hold_non_critical_alerts_and_send_them_after(world):
    w = world

    async def go():
        await w.feed(alert("q1", meter="M3"), alert("q2", meter="M3", severity="critical"))
        await w.n.drain()
        assert [m.msg["X-Meterwatch-Alert-Id"] for m in w.mails("bo@example.org")] == ["q2"]
        held = [d for d in w.store.deliveries_for(alert_id="q1")]
        assert {d["state"] for d in held} == {"held"}
        await w.step(w.quiet_end - w.clock.t - 61)
        assert len(w.mails("bo@example.org", "alert")) == 1
        await w.step(61)
    run(w, go())
    assert sorted(m.msg["X-Meterwatch-Alert-Id"] for m in w.mails("bo@example.org", "alert")) == ["q1", "q2"]
    assert sorted(h.key for h in w.hooks_at("/mgr-03", "alert")) == ["q1", "q2"]
    # (q2, critical and never acknowledged, was also escalated meanwhile)
    assert [h.key for h in w.hooks_at("/mgr-03", "renotify")] == ["q2:renotify"]


def test_a_daily_digest_manager_gets_one_digest_a_day_and_critical_alerts_at_once(world):
    w = world

    async def go():
        await w.feed(alert("d1", meter="M2"), alert("d2", meter="M2", severity="critical"))
        await w.n.drain()
        assert [m.msg["X-Meterwatch-Alert-Id"] for m in w.mails("ann@example.org")] == ["d2"]
        await w.feed(alert("d1", meter="M2", status="update", minute=5),
                     alert("d2", meter="M2", status="update", minute=5))
        await w.step(w.digest_at - w.clock.t - 61)
        assert w.mails("ann@example.org", "digest") == []
        await w.step(61)
        await w.step(600)
    run(w, go())
    (d,) = w.mails("ann@example.org", "digest")
    assert d.msg["Subject"] == "[meterwatch] Daily digest: 2 alert(s)"
    text = d.part("plain")
    assert "[Updated] Warning" in text and "New → Updated" in text and "(d2)" in text


def test_an_unacknowledged_critical_alert_is_escalated_once(world):
    w = world

    async def go():
        await w.feed(alert("e1", severity="critical"), alert("e2", severity="critical"))
        await w.n.drain()
        w.store.acknowledge("e2", "li", now=w.clock.t + 10)
        await w.step(599)
        assert w.hooks_at("/room", "escalation") == []
        await w.step(1)
        await w.step(5)
        await w.step(3600)  # and never again
    run(w, go())
    assert [h.key for h in w.hooks_at("/room", "escalation")] == ["e1:escalation"]
    (room_mail,) = w.mails("room@utility.example", "escalation")
    assert room_mail.msg["Subject"].startswith("[meterwatch] ESCALATED, unacknowledged for 10 min")
    assert [m.msg["X-Meterwatch-Alert-Id"] for m in w.mails("li@example.cn", "renotify")] == ["e1"]
    assert [h.key for h in w.hooks_at("/mgr-01", "renotify")] == ["e1:renotify"]
    esc = [a for a in w.am.alerts() if a["labels"]["alertname"] == "meterwatch_unacknowledged"]
    assert [a["labels"]["alert_id"] for a in esc] == ["e1"]
    assert w.store.escalation_state("e1") == "escalated" and w.store.escalation_state("e2") == "settled"


def test_acknowledging_resolves_the_escalation_in_alertmanager(world):
    w = world

    async def go():
        await w.feed(alert("e3", severity="critical"))
        await w.step(600)
        await w.step(0)
        names = {a["labels"]["alertname"] for a in w.am.alerts(active=True)}
        assert names == {"meterwatch_theft_energy_mismatch", "meterwatch_unacknowledged"}
        w.store.acknowledge("e3", "li", now=w.clock.t)
        await w.step(1)
    run(w, go())
    active = {a["labels"]["alertname"] for a in w.am.alerts(active=True)}
    assert active == {"meterwatch_theft_energy_mismatch"}  # the condition is still open


def test_alertmanager_is_kept_current_reposted_after_a_restart_and_resolved_on_close(world):
    w = world

    async def go():
        await w.feed(area_alert("v1", area_id="A2"))
        await w.n.drain()
        assert list(w.am.by_alert_id(active=True)) == ["v1"]
        w.am.stop()  # Alertmanager keeps alerts in memory: a restart forgets them
        w.am.start()
        assert w.am.alerts() == []
        await w.step(30)
        assert w.am.alerts() == []  # not yet time to re-post
        await w.step(30)
        (x,) = w.am.by_alert_id(active=True)["v1"]
        assert x["labels"]["severity"] == "warning"
        # Severity rises: the old label set is resolved, the new one posted.
        await w.feed(area_alert("v1", area_id="A2", status="update", minute=10, severity="critical"))
        await w.step(1)
        (x,) = w.am.by_alert_id(active=True)["v1"]
        assert x["labels"]["severity"] == "critical"
        await w.feed(area_alert("v1", area_id="A2", status="closed", minute=60))
        await w.step(1)
    run(w, go())
    assert w.am.by_alert_id(active=True) == {}


def test_permanent_failures_go_dead_with_a_log_line(world, caplog):
    w = world
    w.smtp.refuse["li@example.cn"] = "550 5.1.1 No such user"
    w.hooks.status = 400
    caplog.set_level(logging.INFO, logger="meterwatch")

    async def go():
        await w.feed(alert("p1"))
        await w.n.drain()
    run(w, go())
    dead = w.store.deliveries_for(state="dead")
    assert {d["channel"] for d in dead} == {"email", "webhook"}
    assert all(d["attempts"] == 1 for d in dead)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("failed permanently" in m and "dead" in m and "550" in m for m in lines)
    assert any("failed permanently" in m and "HTTP 400" in m for m in lines)


def test_a_failing_receivers_body_is_logged_as_a_short_redacted_single_line(world, caplog):
    w = world
    w.hooks.status = 500
    # What a broken receiver may answer: its own credentials, a header-injection
    # attempt, terminal escapes and a lot of text.
    w.hooks.reply = ("Traceback: db postgresql://svc:db-pw-31337@10.0.0.5/hooks failed\r\n"
                     "X-Forged: 1\n\x1b[2J Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJz.c2ln "
                     "api_key=ak-live-55aa password: 'pw 9913' " + "z" * 5000)
    caplog.set_level(logging.INFO, logger="meterwatch")

    async def go():
        await w.feed(alert("b1"))
        await w.n.drain()
    run(w, go())
    lines = [r.getMessage() for r in caplog.records
             if r.name.startswith("meterwatch") and "HTTP 500" in r.getMessage()]
    assert lines  # the failure is logged, with the status
    stored = [d["last_error"] for d in w.store.deliveries_for(alert_id="b1")
              if d["channel"] == "webhook"]
    for text in lines + stored:
        excerpt = text.split("HTTP 500: ", 1)[1]
        assert len(excerpt) <= 200
        assert excerpt.startswith("Traceback: db postgresql://svc:***@10.0.0.5/hooks")
        for secret in ("db-pw-31337", "eyJhbGciOiJIUzI1NiJ9", "ak-live-55aa", "pw 9913"):
            assert secret not in text, secret
        assert not any(c in text for c in "\r\n\x1b"), repr(text)


def test_an_alert_id_with_a_line_break_is_delivered_once_not_retried_forever(world):
    w = world
    evil = "n1\r\nBcc: x@evil.example"

    async def go():
        await w.feed(alert(evil))
        await w.n.drain()
    run(w, go())
    dels = {d["channel"]: d for d in w.store.deliveries_for(alert_id=evil)}
    assert dels["email"]["state"] == "sent" and dels["email"]["attempts"] == 1
    assert dels["webhook"]["state"] == "sent" and dels["webhook"]["attempts"] == 1
    (mail,) = w.mails("li@example.cn")
    assert mail.msg["Bcc"] is None and "\n" not in mail.msg["X-Meterwatch-Alert-Id"]


def test_a_webhook_to_a_refused_address_is_dead_at_once_with_its_reason(world):
    from stream.notify.channels import Channels
    from stream.settings import replace

    w = world

    async def go():
        # the default: loopback (where the test receiver listens) is not allowed
        w.n.channels = Channels(replace(w.settings, notify_webhook_allow_networks=""))
        await w.feed(alert("g1"))
        await w.n.drain()
    run(w, go())
    (d,) = [d for d in w.store.deliveries_for(alert_id="g1") if d["channel"] == "webhook"]
    assert d["state"] == "dead" and d["attempts"] == 1
    assert "refused: webhook address 127.0.0.1 is loopback" in d["last_error"]
    assert w.hooks.raw == []


def test_transient_failures_retry_with_bounded_exponential_backoff(world):
    w = world
    w.hooks.status = 503

    async def go():
        await w.feed(alert("r1"))
        await w.n.drain()
        delays = []
        for _ in range(6):
            (d,) = [d for d in w.store.deliveries_for(alert_id="r1") if d["channel"] == "webhook"]
            delays.append(round(d["due_at"] - w.clock.t, 1))
            await w.step(d["due_at"] - w.clock.t)
        return delays
    delays = []

    async def collect():
        delays.extend(await go())
    run(w, collect())
    # 1, 2, 4, 8, 8, 8 s (each shortened by up to 10% jitter).
    for got, want in zip(delays, [1, 2, 4, 8, 8, 8]):
        assert 0.9 * want - 0.1 <= got <= want + 0.1, delays
    (d,) = [d for d in w.store.deliveries_for(alert_id="r1") if d["channel"] == "webhook"]
    assert d["state"] == "pending" and d["attempts"] == 7 and "HTTP 503" in d["last_error"]
    w.hooks.status = 200

    async def back():
        await w.step(8)
    run(w, back())
    assert [h.key for h in w.hooks_at("/mgr-01")] == ["r1"]


def test_old_history_is_stored_not_notified_and_bad_messages_are_dead_lettered(world):
    w = world

    async def go():
        await w.feed(alert("h1"), produced_at=w.clock.t - 4 * 86400)
        assert await w.n.consume(b"{not json", None, _collect(w.dead)) == "deadletter"
        assert await w.n.consume(json.dumps(alert("x", status="weird")).encode(), None,
                                 _collect(w.dead)) == "deadletter"
        await w.n.drain()
    run(w, go())
    assert w.store.get_alert("h1") is not None and w.store.deliveries_for() == []
    assert len(w.dead) == 2 and "status: Invalid enum value 'weird'" in str(w.dead[1])


def _collect(into):
    async def dl(exc):
        into.append(exc)
    return dl


def test_an_unknown_manager_is_counted_and_the_alert_kept(world):
    from stream.notify import metrics as M

    w = world
    before = M.unrouted.labels(reason="unknown_manager")._value.get()

    async def go():
        await w.feed(alert("u1", meter="M4"))
        await w.n.drain()
    run(w, go())
    assert M.unrouted.labels(reason="unknown_manager")._value.get() == before + 1
    assert w.store.get_alert("u1")["manager_id"] == "mgr-99" and w.store.deliveries_for() == []


def test_no_secret_address_or_url_in_the_logs(world, caplog, tmp_path):
    from stream.notify.channels import Channels
    from stream.settings import replace

    w = world
    caplog.set_level(logging.DEBUG)
    w.smtp.refuse["li@example.cn"] = "451 4.3.0 try later"
    w.hooks.status = 503

    async def go0():
        # A login the server cannot do: the error is logged, the password is not.
        w.n.channels = Channels(replace(w.settings, smtp_user="mw", smtp_password=SMTP_PASSWORD))
        await w.feed(alert("s0", meter="M3", severity="critical"))
        await w.n.drain()
        await w.n.channels.close()
        w.n.channels = Channels(w.settings)
    run(w, go0())

    async def go():
        await w.feed(alert("s1", severity="critical"), area_alert("s2"))
        await w.n.drain()
        await w.step(600)
        await w.step(20)
    run(w, go())
    # The notifier's records (the test's own SMTP and HTTP servers log what they got).
    text = "\n".join(r.getMessage() for r in caplog.records
                     if not r.name.startswith(("mail.log", "aiohttp.server", "aiohttp.access")))
    assert "failed (attempt 1)" in text  # there was something to log
    for secret in (SECRET, SMTP_PASSWORD, "li@example.cn", "room@utility.example",
                   "tok-li", w.hooks.url("/room"), "127.0.0.1:%d" % w.hooks.port):
        assert secret not in text, secret
    rows = " ".join(d["last_error"] or "" for d in w.store.deliveries_for())
    assert "tok-li" not in rows and "/room" not in rows


def test_a_notifier_refuses_webhooks_without_a_signing_key(tmp_path):
    from stream.notify.service import check_config

    m = Managers.from_csv_text("manager_id,email,webhook_url,language\na,,https://h.example/x,en\n")
    with pytest.raises(ValueError, match="METERWATCH_WEBHOOK_SECRET"):
        check_config(load_settings(env={}), m)
    check_config(load_settings(env={}, webhook_secret="k"), m)
    with pytest.raises(ValueError, match="control_room"):
        check_config(load_settings(env={}, control_room_webhook="https://h/x"), Managers.empty())


def test_a_database_outage_holds_alerts_until_it_is_back(tmp_path):
    """PostgreSQL stopped under the notifier: the alert waits (not dead-lettered, not
    acknowledged), and is stored and delivered once the database is back."""
    from tests.support.postgres import LocalPostgres

    class Restartable(LocalPostgres):
        def pause(self):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast",
                      "-w", "stop")

        def resume(self):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
                      str(self.dir / "log"), "-w", "-o",
                      f"-c listen_addresses=127.0.0.1 -p {self.port} "
                      f"-c unix_socket_directories={self.dir} -c fsync=off", "start")

    pg = Restartable().start()
    smtp, hooks, am = SmtpReceiver().start(), WebhookReceiver(SECRET).start(), Alertmanager().start()
    w = World(pg.url, tmp_path, smtp, hooks, am)
    try:
        async def go():
            await w.feed(alert("o1"))
            pg.pause()
            task = asyncio.create_task(w.feed(alert("o2")))
            await asyncio.sleep(4)
            assert not task.done()  # waiting for the database, not acknowledged
            pg.resume()
            assert await asyncio.wait_for(task, 60) == ["new"]
            await w.n.drain()
        run(w, go())
        assert w.dead == []
        assert sorted(m.msg["X-Meterwatch-Alert-Id"] for m in w.mails("li@example.cn")) == ["o1", "o2"]
        assert len(w.smtp.raw) == 2
    finally:
        w.store.close()
        smtp.stop()
        hooks.stop()
        am.close()
        pg.stop()


def test_the_outbox_is_purged_of_old_sent_deliveries_and_a_replay_sends_nothing(world):
    w = world
    purged_before = M.purged.labels(what="deliveries")._value.get()

    async def go():
        await w.feed(alert("warn1"))
        await w.step()
        assert {d["state"] for d in w.store.deliveries_for()} == {"sent"}
        w.n._last_purge = float("-inf")  # the next tick purges (hourly otherwise)
        await w.step(w.settings.notify_keep_days * 86400 + 1)
        assert w.store.deliveries_for() == []
        # The topic redelivers the old message (a new consumer, a rewind): too old to
        # notify, and the purge lost nothing that would make it go out again.
        await w.feed(alert("warn1"), produced_at=w.clock.t - 5 * 86400)
        await w.step(1)
    run(w, go())
    assert w.store.deliveries_for() == []
    assert len(w.mails("li@example.cn")) == 1
    # Li's email and webhook deliveries.
    assert M.purged.labels(what="deliveries")._value.get() - purged_before == 2


def test_keeping_sent_deliveries_shorter_than_the_notifiers_horizon_is_refused():
    with pytest.raises(SettingsError, match="notify_keep_days"):
        load_settings(env={"METERWATCH_NOTIFY_KEEP_DAYS": "1"})
