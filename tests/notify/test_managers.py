"""The managers file: channels, language, quiet hours and digest per manager; a bad row
names its line; a bad reload keeps the previous managers."""

from __future__ import annotations

import os
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from stream.notify.managers import Managers, ManagersError

SH = ZoneInfo("Asia/Shanghai")
HEADER = "manager_id,name,email,webhook_url,language,quiet_hours,digest\n"


def at(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=SH).timestamp()


def test_a_manager_has_channels_a_language_quiet_hours_and_a_digest_option():
    m = Managers.from_csv_text(
        HEADER
        + "mgr-01,Li Wei,li.wei@example.cn,https://hooks.example.cn/x?token=abc,zh-CN,22:00-07:00,daily@08:30\n"
        + "mgr-02,Ann,ann@example.org,,en,,none\n"
        + "mgr-03,,,https://hooks.example.org/y,EN,none,\n")
    a, b, c = m["mgr-01"], m["mgr-02"], m["mgr-03"]
    assert a.channels == ("email", "webhook") and a.language == "zh-CN"
    assert a.quiet_hours == (22 * 60, 7 * 60) and a.digest_at == 8 * 60 + 30
    assert b.channels == ("email",) and b.quiet_hours is None and b.digest_at is None
    assert c.channels == ("webhook",) and c.language == "en"
    assert "token" not in repr(a)  # a webhook URL may hold a token: never shown


def test_optional_columns_may_be_left_out():
    m = Managers.from_csv_text("manager_id,email,webhook_url,language\nm1,a@b.org,,en\n")
    assert m["m1"].quiet_hours is None and m["m1"].digest_at is None and m["m1"].name == ""


@pytest.mark.parametrize("row, message", [
    ("mgr-x,,,,en,,", "no channel"),
    ("mgr-x,,not-an-address,,en,,", "email 'not-an-address'"),
    ("mgr-x,,a@b.org,ftp://x,en,,", "webhook_url must be an http"),
    ("mgr-x,,a@b.org,,fr,,", "language 'fr' must be en or zh-CN"),
    ("mgr-x,,a@b.org,,en,22-07,", "quiet_hours '22-07'"),
    ("mgr-x,,a@b.org,,en,25:00-07:00,", "quiet_hours"),
    ("mgr-x,,a@b.org,,en,07:00-07:00,", "start and end are equal"),
    ("mgr-x,,a@b.org,,en,,weekly", "digest 'weekly' must be none or daily@HH:MM"),
    ("mgr-x,,a@b.org,,en,,daily@8", "digest 'daily@8'"),
    ("control_room,,a@b.org,,en,,", "reserved"),
    ("bad id!,,a@b.org,,en,,", "manager_id 'bad id!'"),
    ("mgr-x,,\"a@b.org, c@d.org\",,en,,", "email"),
])
def test_a_bad_row_is_refused_with_its_line_number(row, message):
    text = HEADER + "ok-1,,ok@example.org,,en,,\n" + row + "\n"
    with pytest.raises(ManagersError) as e:
        Managers.from_csv_text(text, "managers.csv")
    assert "managers.csv:3" in str(e.value) and message in str(e.value)


def test_duplicates_and_missing_columns_are_refused():
    with pytest.raises(ManagersError, match=r"m.csv:3: manager_id 'a' appears twice \(first on line 2\)"):
        Managers.from_csv_text(HEADER + "a,,a@b.org,,en,,\na,,c@d.org,,en,,\n", "m.csv")
    with pytest.raises(ManagersError, match="missing column.*language"):
        Managers.from_csv_text("manager_id,email,webhook_url\na,a@b.org,\n")


def test_quiet_hours_wrapping_midnight_end_the_next_morning():
    m = Managers.from_csv_text(HEADER + "a,,a@b.org,,en,22:00-07:00,\n")["a"]
    assert m.quiet_until(at("2026-03-05T21:59:00"), SH) is None
    assert m.quiet_until(at("2026-03-05T22:00:00"), SH) == at("2026-03-06T07:00:00")
    assert m.quiet_until(at("2026-03-05T23:30:00"), SH) == at("2026-03-06T07:00:00")
    assert m.quiet_until(at("2026-03-06T03:00:00"), SH) == at("2026-03-06T07:00:00")
    assert m.quiet_until(at("2026-03-06T07:00:00"), SH) is None


def test_quiet_hours_within_a_day_and_the_daily_digest_time():
    m = Managers.from_csv_text(HEADER + "a,,a@b.org,,en,12:00-13:30,daily@08:00\n")["a"]
    assert m.quiet_until(at("2026-03-05T12:10:00"), SH) == at("2026-03-05T13:30:00")
    assert m.quiet_until(at("2026-03-05T13:30:00"), SH) is None
    assert m.next_digest(at("2026-03-05T07:59:00"), SH) == at("2026-03-05T08:00:00")
    assert m.next_digest(at("2026-03-05T08:00:00"), SH) == at("2026-03-06T08:00:00")


def test_reload_picks_up_a_change_and_a_bad_file_raises_for_the_caller(tmp_path):
    p = tmp_path / "managers.csv"
    p.write_text(HEADER + "a,,a@b.org,,en,,\n")
    m = Managers.load(p)
    assert m.reload_if_changed() is m
    p.write_text(HEADER + "a,,a@b.org,,zh-CN,,\nb,,b@b.org,,en,,\n")
    os.utime(p, (m.mtime + 5, m.mtime + 5))
    m2 = m.reload_if_changed()
    assert m2 is not m and len(m2) == 2 and m2["a"].language == "zh-CN"
    p.write_text(HEADER + "a,,,,en,,\n")
    os.utime(p, (m.mtime + 10, m.mtime + 10))
    with pytest.raises(ManagersError, match="managers.csv:2"):
        m2.reload_if_changed()
    with pytest.raises(ManagersError, match="does not exist"):
        Managers.load(tmp_path / "nope.csv")
