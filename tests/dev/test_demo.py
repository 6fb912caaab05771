"""`meterwatch demo`, the README's first command: it starts its own broker, raises live
alerts, ends by scoring them against the simulator's ground truth, and stops everything
cleanly (by itself, or at one Ctrl-C), leaving no process behind. Its screen shows no
Kafka client chatter: that goes to the log file the banner names."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.pipeline import free_port

ROOT = Path(__file__).resolve().parents[2]
ALERT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d  \w+\s+open\s+\w+/\w+", re.M)
# What a fresh broker's first seconds made the Kafka clients print before the first
# alert, and any library record below ERROR (stream/logsplit.py's format).
CLIENT_NOISE = re.compile(r"NotLeaderForPartition|GroupCoordinatorNotAvailable|Marking the "
                          r"coordinator dead|\[(WARNING|INFO|DEBUG)\] (aiokafka|faust|mode|kafka)\b")
LIBRARY_RECORD = re.compile(r"^\[[^]]+\] \[\d+\] \[\w+\] (aiokafka|faust|mode)[\w.]*: ", re.M)

pytestmark = [pytest.mark.slow]


def _processes_of(tag: str) -> list[int]:
    """Pids whose environment carries ``tag`` (the demo's data directory)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if tag.encode() in (d / "environ").read_bytes():
                found.append(int(d.name))
        except OSError:
            continue
    return found


def _start_demo(tmp_path, *args: str) -> tuple[subprocess.Popen, Path, Path]:
    data = tmp_path / "demo-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
    env.update(METERWATCH_DATA_DIR=str(data), METERWATCH_WEB_PORT=str(free_port()))
    log = tmp_path / "screen.txt"  # what a terminal would show: stdout and stderr
    with open(log, "wb") as out:
        # Its own session, like a terminal's foreground job: Ctrl-C goes to the group.
        demo = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "demo", "--customers", "60", "--areas", "3",
             "--scenario-rate", "0.3", *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return demo, data, log


def _wait_for(demo: subprocess.Popen, log: Path, pattern: re.Pattern, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not pattern.search(log.read_text("utf-8", "replace")):
        assert demo.poll() is None, log.read_text("utf-8", "replace")[-3000:]
        time.sleep(1)
    text = log.read_text("utf-8", "replace")
    assert pattern.search(text), text[-3000:]
    return text


def _assert_quiet(text: str, data: Path) -> None:
    """The screen has no client chatter; the log file the banner names has it all."""
    log_file = data / "demo" / "demo.log"
    assert f"  log             {log_file} " in text
    assert not CLIENT_NOISE.search(text), CLIENT_NOISE.search(text).group(0)
    assert LIBRARY_RECORD.search(log_file.read_text("utf-8", "replace"))


def _assert_stopped_cleanly(text: str, data: Path) -> None:
    tail = text[text.index("stopping..." if "stopping..." in text else "== score"):]
    assert tail.rstrip().endswith("demo stopped.")
    # Stopped in order (worker, then broker): no errors about a broker already gone.
    assert "ERROR" not in tail and "Traceback" not in tail, tail[:3000]
    time.sleep(1)
    assert _processes_of(str(data)) == []


def test_the_demo_raises_live_alerts_and_one_ctrl_c_stops_it_all_cleanly(tmp_path):
    demo, data, log = _start_demo(tmp_path)
    try:
        text = _wait_for(demo, log, ALERT_LINE, 240)
        assert "worker metrics  http://127.0.0.1:" in text
        children = _processes_of(str(data))
        assert len(children) >= 2  # the broker and the worker at least

        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=90) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    text = log.read_text("utf-8", "replace")
    # Interrupted, it still scores what it received, and says so.
    tail = text[text.index("stopping..."):]
    assert "stopped before the worker had caught up: alerts received so far" in tail, tail[:3000]
    assert re.search(r"^precision ", tail, re.M) and re.search(r"^recall ", tail, re.M)
    _assert_quiet(text, data)
    _assert_stopped_cleanly(text, data)


def _truth_line(row: dict, tz: ZoneInfo) -> re.Pattern:
    onset = datetime.fromisoformat(row["start"]).astimezone(tz).strftime("%Y-%m-%d %H:%M")
    who = (f"area {row['area_id']}" if row["meter_id"] is None
           else f"C{row['meter_id'][1:]}/{row['meter_id']}")  # the simulator's C000001 owns M000001
    return re.compile(rf"^  (found |MISSED|n/a   ) {row['type']}/{row['subtype']} "
                      rf"\({row['params']['kind']}\) {re.escape(who)}, onset {onset}: ", re.M)


def test_the_demo_ends_by_itself_with_its_alerts_scored_against_the_ground_truth(tmp_path):
    # As fast as the simulator goes: the worker is far behind when the last day is
    # published, and the score must still wait for all of its alerts.
    demo, data, log = _start_demo(tmp_path, "--days", "21", "--speed", "0")
    try:
        assert demo.wait(timeout=300) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    text = log.read_text("utf-8", "replace")
    assert "stopping..." not in text  # nobody pressed Ctrl-C
    report = text[text.index("== score"):]
    assert "stopped before the worker had caught up" not in report, text[-3000:]
    truth = [json.loads(line) for line in (data / "demo" / "ground_truth.jsonl").open()]
    injected = [r for r in truth if r["type"] != "bad_input"]
    assert len(injected) >= 5
    tz = ZoneInfo("Asia/Shanghai")
    for row in injected:  # every injected anomaly, found or not
        assert _truth_line(row, tz).search(report), (row, report)
    assert f"injected anomalies ({len(injected)}):" in report
    m = re.search(r"^alert openings: (\d+) ", report, re.M)
    live = text[:text.index("== score")]
    opened = len([ln for ln in live.splitlines() if ALERT_LINE.match(ln)])
    # one opening per alert id: a reopened id printed again is not a second one
    assert m and 1 <= int(m.group(1)) <= opened, (opened, report[:2000])
    n_found = len(re.findall(r"^  found  ", report, re.M))
    n_scored = n_found + len(re.findall(r"^  MISSED ", report, re.M))
    assert re.search(rf"^recall    \S+ = {n_found} of {n_scored} injected anomalies found",
                     report, re.M)
    assert re.search(r"^precision (\d\.\d\d) = \d+ of " + m.group(1) + " openings", report, re.M)
    assert re.search(r"^target \(every injected anomaly found, precision >= 0\.9\): (met|NOT met)$",
                     report, re.M)
    _assert_quiet(text, data)
    _assert_stopped_cleanly(text, data)


def test_keep_running_keeps_the_worker_after_the_score_until_ctrl_c(tmp_path):
    demo, data, log = _start_demo(tmp_path, "--days", "2", "--speed", "0", "--keep-running")
    try:
        _wait_for(demo, log, re.compile(r"^Worker keeps running; Ctrl-C to stop\.$", re.M), 240)
        time.sleep(3)
        assert demo.poll() is None and len(_processes_of(str(data))) >= 2
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=90) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    text = log.read_text("utf-8", "replace")
    assert text.count("== score") == 1  # scored once, when the worker had caught up
    _assert_stopped_cleanly(text, data)
