"""The console's parts on their own: session signing, the rate limiter, the charts and
the profile documents they draw."""

from __future__ import annotations

import pytest

from console_data import day_context, profile_doc
from stream.console import charts
from stream.console import profile as P
from stream.console.auth import (RateLimiter, SecretError, SessionCodec, User, csrf_ok)


def test_sessions_are_signed_expire_and_bind_to_the_password():
    codec = SessionCodec("k" * 32)
    s = codec.new_session("alice", codec.password_fingerprint("$argon2id$hash1"), now=1000.0)
    v = codec.dumps(s)
    assert codec.loads(v, now=1001.0) == s
    assert codec.loads(v, now=1000.0 + 12 * 3600 + 1) is None  # expired
    assert codec.loads(v[:-2] + ("A" if v[-2] != "A" else "B") + v[-1], now=1001.0) is None
    assert codec.loads(SessionCodec("j" * 32).dumps(s), now=1001.0) is None  # other key
    for junk in ("", "abc", "a.b.c", "x" * 5000, "!!.??"):
        assert codec.loads(junk) is None
    assert codec.password_fingerprint("$argon2id$hash1") != codec.password_fingerprint("$argon2id$hash2")
    with pytest.raises(SecretError):
        SessionCodec("short")
    assert csrf_ok(s, s["csrf"]) and not csrf_ok(s, s["csrf"][:-1]) and not csrf_ok(None, "x")
    assert not csrf_ok(s, None) and not csrf_ok(s, "")


def test_rate_limiter_window():
    rl = RateLimiter(max_failures=5, window_s=300)
    for t in range(5):
        assert rl.retry_after("u:alice", now=100.0 + t) == 0
        rl.fail("u:alice", now=100.0 + t)
    assert rl.retry_after("u:alice", now=110.0) == pytest.approx(290.0)
    assert rl.retry_after("u:bob", now=110.0) == 0
    assert rl.retry_after("u:alice", now=401.0) == 0  # the first failure left the window
    rl.fail("u:alice", now=401.0)  # 102, 103, 104, 401: four in the window
    assert rl.retry_after("u:alice", now=401.0) == 0
    rl.fail("u:alice", now=401.0)
    assert rl.retry_after("u:alice", now=401.0) == pytest.approx(1.0)  # until 102 leaves
    rl.reset("u:alice")
    assert rl.retry_after("u:alice", now=401.0) == 0


def test_rate_limiter_memory_stays_bounded():
    rl = RateLimiter(max_failures=5, window_s=300, max_keys=100)
    for i in range(1000):
        rl.fail(f"a:10.0.{i // 250}.{i % 250}", now=float(i))
    assert len(rl._fails) <= 100


def test_user_scope():
    assert User("a", "manager", "mgr1").scope == "mgr1"
    assert User("a", "manager", None).scope not in (None, "")  # sees nothing, not everything
    for role in ("control_room", "engineer", "admin"):
        assert User("x", role, None).scope is None
    assert User("e", "engineer", None).can_see_audit and not User("e", "engineer", None).can_manage_users
    assert not User("c", "control_room", None).can_see_audit


def test_habit_chart_draws_band_gaps_and_escapes_labels():
    ctx = day_context()
    svg = charts.habit_chart(ctx["kwh"], ctx["expected_kwh"], ctx["spread_kwh"],
                             title="<script>alert(1)</script>", unit="kWh")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count('class="band"') == 1
    # slot 12 is missing: the observed line is split in two (0-11, 13-41)
    assert svg.count('class="observed"') == 2
    assert svg.count('class="outside"') == 8  # slots 34-41 at 3x
    assert "41 of 48 slots observed; 8 outside the usual band" in svg
    empty = charts.habit_chart(None, ctx["expected_kwh"], ctx["spread_kwh"], title="t")
    assert 'class="observed"' not in empty and "0 of 48 slots observed" in empty


def test_context_chart_accepts_only_well_formed_contexts():
    assert P.context_chart(None) is None
    assert P.context_chart({"expected_kwh": "nope"}) is None
    assert P.context_chart({"expected_kwh": [1, "x", 2]}) is None
    bad_kwh = dict(day_context(), kwh=[1.0] * 10)  # wrong length: drawn without readings
    ch = P.context_chart(bad_kwh)
    assert ch is not None and 'class="observed"' not in ch.svg
    ch = P.context_chart(day_context())
    # kWh per half hour drawn as kW: 3x the usual at 19:00 is 2 x kWh
    assert ch.note.startswith("41 of 48 half hours read") and "kW" in ch.svg


def test_live_view_puts_today_on_its_day_type():
    doc = profile_doc("M1", "A1", day="2026-03-14")  # a Saturday
    v = P.live_view(doc, holidays_country="CN")
    assert [c.title for c in v.charts] == ["Usual workday", "Usual weekend / holiday, with today (2026-03-14)"]
    assert v.days == {"workday": 40, "offday": 16}
    assert P.day_type_of("2026-10-01", "CN") == "offday"  # National Day
    assert P.day_type_of("2026-10-01", None) == "workday"
    assert P.live_view({"profile": {"workday": {"expected_kw": None}}}, holidays_country=None) is None


def test_voltage_view_uses_the_limits_that_match_the_evidence():
    from console_data import voltage_alert

    rec = voltage_alert("v1", "C2002", observed=200.0)
    rec["evidence"].update(limit_v=204.6)  # a three-phase meter under GB/T 12325
    alert = {"record": rec, "start_ts": 1_773_187_200.0, "detected_ts": 1_773_189_900.0}
    ch = P.voltage_view(alert, [rec], phases=None, tz="Asia/Shanghai")
    assert "Limits 204.6-235.4 V" in ch.note
    rec["evidence"]["standard"] = "nonsense"
    assert P.voltage_view(alert, [rec], phases=1, tz="UTC") is None


def test_the_workers_real_profile_and_context_formats_are_drawn():
    """Documents built by models.habit's own functions, as the worker's
    /meters/{id}/profile view and the pipeline's alert context build them."""
    import numpy as np

    from console_data import usual_kw
    from models.base import compose_dtype
    from models.habit import HabitDetector, habit_context, habit_profile

    st = np.zeros(1, compose_dtype(HabitDetector.fields))
    row = st[0]
    shape = np.array([usual_kw(s) for s in range(48)], np.float32)
    row["h_mu"][0], row["h_mu"][1] = shape, shape * 1.2
    row["h_dev"][0], row["h_dev"][1] = shape * 0.3, shape * 0.35
    row["h_ndays"][:] = (30, 12)
    row["h_lv"][:] = (9.8, 11.9)
    row["h_dtype"] = 0
    row["h_day"] = 739_686  # 2026-03-11, a Wednesday
    row["h_dsec"] = 20 * 1800
    row["h_dvec"][:20] = shape[:20] * 0.5 * 2.5
    ctx = habit_context(row)
    doc = {"meter_id": "M1", "customer_id": "C1", "area_id": "A1", "profile": habit_profile(row),
           "today": {"day": ctx["day"], "day_type": ctx["day_type"], "kwh": ctx["kwh"]},
           "recent_kwh": ctx["recent_kwh"]}
    v = P.live_view(doc, holidays_country="CN")
    assert [c.title for c in v.charts] == [f"Usual workday, with today ({ctx['day']})",
                                           "Usual weekend / holiday"]
    assert v.usual_day_kwh == {"workday": 9.8, "offday": 11.9}
    assert v.days == {"workday": 30, "offday": 12}
    assert 'class="outside"' in v.charts[0].svg  # 2.5x the usual power
    ch = P.context_chart(ctx)
    assert ch.note.startswith("20 of 48 half hours read")


def test_rate_limiter_counts_an_attempt_before_its_outcome_and_forgives_a_success():
    rl = RateLimiter(max_failures=5, window_s=300)
    keys = ("u:alice", "a:10.0.0.1")
    stamps = [rl.attempt(keys, now=100.0 + i) for i in range(5)]
    assert all(wait == 0 for wait, _ in stamps)  # five attempts in flight, none decided
    wait, _ = rl.attempt(keys, now=106.0)
    assert wait == pytest.approx(294.0)  # the sixth waits, without being counted
    assert len(rl._fails["u:alice"]) == 5
    rl.forgive("a:10.0.0.1", stamps[0][1])  # the first one turned out right
    assert rl.retry_after("a:10.0.0.1", now=106.0) == 0
    rl.forgive("a:10.0.0.1", 12345.0)  # an unknown stamp changes nothing
    assert len(rl._fails["a:10.0.0.1"]) == 4


def test_a_session_carries_the_accounts_session_generation():
    codec = SessionCodec("k" * 32)
    s = codec.new_session("alice", "fp", gen=7, now=1000.0)
    assert codec.loads(codec.dumps(s), now=1001.0)["g"] == 7
    assert "g" not in codec.new_session(now=1000.0)  # an anonymous one has none
