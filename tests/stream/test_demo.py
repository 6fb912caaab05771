"""`meterwatch demo`, the README's first command: it starts its own broker, raises live
alerts, and one Ctrl-C stops everything cleanly, leaving no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.pipeline import free_port

ROOT = Path(__file__).resolve().parents[2]
ALERT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d  \w+\s+open\s+\w+/\w+", re.M)

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


def test_the_demo_raises_live_alerts_and_one_ctrl_c_stops_it_all_cleanly(tmp_path):
    data = tmp_path / "demo-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
    env.update(METERWATCH_DATA_DIR=str(data), METERWATCH_WEB_PORT=str(free_port()))
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        # Its own session, like a terminal's foreground job: Ctrl-C goes to the group.
        demo = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "demo", "--customers", "60", "--areas", "3",
             "--scenario-rate", "0.3"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not ALERT_LINE.search(log.read_text("utf-8", "replace")):
            assert demo.poll() is None, log.read_text("utf-8", "replace")[-3000:]
            time.sleep(1)
        text = log.read_text("utf-8", "replace")
        assert ALERT_LINE.search(text), text[-3000:]
        assert "worker metrics  http://127.0.0.1:" in text
        children = _processes_of(str(data))
        assert len(children) >= 2  # the broker and the worker at least

        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=90) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    text = log.read_text("utf-8", "replace")
    tail = text[text.index("stopping..."):]
    assert tail.rstrip().endswith("demo stopped.")
    # Stopped in order (worker, then broker): no errors about a broker already gone.
    assert "ERROR" not in tail and "Traceback" not in tail, tail[:3000]
    time.sleep(1)
    assert _processes_of(str(data)) == []
