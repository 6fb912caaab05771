"""``meterwatch users ...`` and ``meterwatch console ...`` from the command line."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from console_data import SECRET, seed, surge_alert
from stream.cli import main as meterwatch
from stream.settings import PROJECT_ROOT
from stream.store import AlertStore


@pytest.fixture
def env(monkeypatch, db_url, tmp_path):
    for k in list(os.environ):
        if k.startswith("METERWATCH_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("METERWATCH_DB_URL", db_url)
    monkeypatch.setenv("METERWATCH_DATA_DIR", str(tmp_path / "data"))
    return db_url


def run(argv, stdin: str | None = None, monkeypatch=None) -> int:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        meterwatch(argv)
    except SystemExit as e:
        if isinstance(e.code, str):  # what the interpreter would print on exit
            print(e.code, file=sys.stderr)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def test_users_add_list_passwd_disable(env, monkeypatch, capsys):
    assert run(["users", "add", "alice", "--role", "manager", "--manager-id", "mgr1",
                "--password-stdin"], "alice-pw-123\n", monkeypatch) == 0
    assert run(["users", "add", "root", "--role", "admin"], "root-pw-4567\n", monkeypatch) == 0
    assert run(["users", "list"]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "mgr1" in out and "root" in out and "admin" in out
    assert "alice-pw-123" not in out

    store = AlertStore(env)
    try:
        assert store.verify_user("alice", "alice-pw-123")["role"] == "manager"
        assert run(["users", "passwd", "alice", "--password-stdin"], "new-password-9\n",
                   monkeypatch) == 0
        assert store.verify_user("alice", "alice-pw-123") is None
        assert store.verify_user("alice", "new-password-9") is not None
        assert run(["users", "disable", "alice"]) == 0
        assert store.verify_user("alice", "new-password-9") is None
        assert run(["users", "enable", "alice"]) == 0
        assert store.verify_user("alice", "new-password-9") is not None
        actions = [(e["action"], e["target"]) for e in store.audit_log()]
        assert ("create_user", "alice") in actions and ("disable_user", "alice") in actions
        assert all(e["actor"].startswith("cli") for e in store.audit_log())
    finally:
        store.close()


def test_users_refuses_bad_input(env, monkeypatch, capsys):
    # no password on the command line, ever
    assert run(["users", "add", "eve", "--role", "admin", "--password", "x"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    assert run(["users", "add", "mo", "--role", "manager"], "long-enough-1\n", monkeypatch) != 0
    assert "needs --manager-id" in capsys.readouterr().err
    assert run(["users", "add", "al", "--role", "admin"], "short\n", monkeypatch) != 0
    assert run(["users", "add", "al", "--role", "admin"], "long-enough-1\n", monkeypatch) == 0
    assert run(["users", "add", "al", "--role", "admin"], "long-enough-1\n", monkeypatch) != 0
    assert "exists already" in capsys.readouterr().err
    assert run(["users", "passwd", "ghost"], "long-enough-1\n", monkeypatch) != 0


def test_export_outcomes_writes_labels_for_evaluate(env, tmp_path, capsys):
    store = AlertStore(env)
    try:
        seed(store)
        store.resolve("a1surge0000000000001", "alice", "customer_contacted", "called")
        store.resolve("a3theft0000000000003", "alice", "confirmed_theft", now=2e9)
        store.resolve("b1surge0000000000001", "bob", "false_alarm", now=2e9 + 1)
    finally:
        store.close()
    out = tmp_path / "outcomes.csv"
    assert run(["console", "export-outcomes", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["alert_id", "type", "subtype", "meter_id", "area_id", "start",
                             "detected_at", "outcome", "label", "resolved_at"]
    got = {r["alert_id"]: (r["type"], r["subtype"], r["meter_id"], r["outcome"], r["label"])
           for r in rows}
    assert got == {
        "a1surge0000000000001": ("surge", "daily", "MTR-A1-0001", "customer_contacted", "unknown"),
        "a3theft0000000000003": ("theft", "tamper_event", "MTR-A1-0001", "confirmed_theft", "tp"),
        "b1surge0000000000001": ("surge", "daily", "MTR-A1-0003", "false_alarm", "fp"),
    }
    theft = next(r for r in rows if r["alert_id"] == "a3theft0000000000003")
    assert theft["detected_at"] == "2026-03-09T02:00:00+00:00"
    assert theft["resolved_at"] == "2033-05-18T03:33:20+00:00"
    assert "C1001" not in out.read_text()  # no customer ids in the file
    assert "3 resolved alerts" in capsys.readouterr().err


def test_export_outcomes_neutralises_spreadsheet_formulas_in_text_but_keeps_times(env, tmp_path):
    # Alert fields come from the alerts topic: a hostile producer chooses them.
    hostile = {"id": "=HYPERLINK(\"http://x.example\")", "type": "+cmd|' /C calc'!A0",
               "subtype": "-2+3", "meter_id": "@SUM(1+1)", "area_id": "\t=1+1"}
    store = AlertStore(env)
    try:
        seed(store)
        rec = dict(surge_alert("zz", "C1001"), **hostile)
        store.ingest(rec, manager_id="mgr1", now=1_773_000_100.0)
        store.resolve(hostile["id"], "alice", "false_alarm", now=2e9)
    finally:
        store.close()
    out = tmp_path / "outcomes.csv"
    assert run(["console", "export-outcomes", "--out", str(out)]) == 0
    (row,) = [r for r in csv.DictReader(out.open()) if r["outcome"] == "false_alarm"]
    for col, value in hostile.items():
        got = row["alert_id" if col == "id" else col]
        assert got == "'" + value, (col, got)  # shown as text, never evaluated
    assert row["start"] == "2026-03-09T16:00:00+00:00"  # ISO times untouched
    assert row["resolved_at"] == "2033-05-18T03:33:20+00:00" and row["label"] == "fp"


def test_export_cells_keep_plain_numbers_even_negative_ones():
    from stream.console.cli import text_cell

    assert [text_cell(v) for v in ("-3.5", "+12", "-1e-3", "2026-03-10T21:00:00+08:00")] == [
        "-3.5", "+12", "-1e-3", "2026-03-10T21:00:00+08:00"]
    assert [text_cell(v) for v in ("-1+1", "=1", "\r=1", "-", "@")] == [
        "'-1+1", "'=1", "'\r=1", "'-", "'@"]


def _console(args, env_extra, tmp_path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
    env.update(METERWATCH_DB_URL=f"sqlite:///{tmp_path / 'c.db'}",
               METERWATCH_DATA_DIR=str(tmp_path / "data"), **env_extra)
    exe = Path(sys.executable).parent / "meterwatch"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "stream.cli"]
    return subprocess.Popen(cmd + ["console"] + args, env=env, cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("secret", ["", "too-short"])
def test_console_refuses_to_start_without_a_strong_session_secret(tmp_path, secret):
    p = _console(["--port", "0"], {"METERWATCH_SESSION_SECRET": secret} if secret else {},
                 tmp_path)
    out, _ = p.communicate(timeout=60)
    assert p.returncode != 0
    assert "refusing to start" in out and "at least 32 characters" in out
    assert "--dev" in out


def test_console_dev_flag_makes_an_ephemeral_secret_and_says_so(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = _console(["--dev", "--port", str(port)], {}, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:
            assert r.status == 200 and "Set-Cookie" in r.headers
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=30)
    assert "EPHEMERAL session secret" in out
    assert SECRET not in out
