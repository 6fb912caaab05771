"""The console in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright), against ``meterwatch console`` running as a real subprocess on a loopback
port, with a store filled through ``store.ingest`` and a small stand-in for the worker's
profile endpoint. Screenshots land in out/test-artifacts/console/<database>/.

Manager A logs in, sees the inbox, opens an alert, acknowledges it, resolves it with an
outcome and a note (checked in the store), opens the customer page; manager B logs in
and neither sees A's alert in the inbox nor can open its URL (404).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from console_data import PASSWORDS, SECRET, compliance_docs, profile_doc, seed
from stream.settings import PROJECT_ROOT
from stream.store import AlertStore

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = PROJECT_ROOT / "out" / "test-artifacts" / "console"
A_SURGE, A_VOLT = "a1surge0000000000001", "a2volt00000000000002"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FakeWorker:
    """Serves ``GET /meters/{id}/profile`` and ``GET /areas/{id}/compliance`` like the
    worker does (404 for unknown meters and areas)."""

    def __init__(self, docs: dict[str, dict], areas: dict[str, dict] | None = None) -> None:
        docs_, areas_ = docs, areas or {}

        class H(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                parts = self.path.strip("/").split("/")
                doc = None
                if len(parts) == 3 and (parts[0], parts[2]) == ("meters", "profile"):
                    doc = docs_.get(parts[1])
                elif len(parts) == 3 and (parts[0], parts[2]) == ("areas", "compliance"):
                    doc = areas_.get(parts[1])
                body = json.dumps(doc if doc else {"error": "unknown meter"}).encode()
                self.send_response(200 if doc else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _meterwatch() -> list[str]:
    exe = Path(sys.executable).parent / "meterwatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "stream.cli"]


@pytest.fixture
def running_console(db_url, tmp_path, registry_file):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    store = AlertStore(db_url)
    seed(store)
    port = _free_port()
    log_path = tmp_path / "console.log"
    meters, area = compliance_docs()
    docs = {"MTR-A1-0001": profile_doc("MTR-A1-0001", "A1") | {"compliance": meters["MTR-A1-0001"]}}
    with _FakeWorker(docs, {"A1": area}) as worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
        env.update(METERWATCH_DB_URL=db_url, METERWATCH_REGISTRY=str(registry_file),
                   METERWATCH_SESSION_SECRET=SECRET, METERWATCH_WORKER_URL=worker.url,
                   METERWATCH_DATA_DIR=str(tmp_path / "data"), METERWATCH_TIMEZONE="Asia/Shanghai")
        # Cookies stay Secure (the default): Chromium treats http://127.0.0.1 as secure.
        with open(log_path, "w") as log:
            proc = subprocess.Popen(_meterwatch() + ["console", "--host", "127.0.0.1",
                                                     "--port", str(port)],
                                    env=env, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=PROJECT_ROOT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(base + "/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("console did not start:\n" + log_path.read_text())
                time.sleep(0.2)
            yield base, store, log_path
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            store.close()


def test_managers_work_their_alerts_in_a_real_browser(running_console, request):
    from playwright.sync_api import sync_playwright

    base, store, log_path = running_console
    db = request.node.callspec.params["db_url"]
    shots = ARTIFACTS / db
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)

    def shot(page, name):
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            # ---- manager A (alice, mgr1)
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.goto(base + "/")
            assert page.url.startswith(base + "/login")
            shot(page, "01-login")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", PASSWORDS["alice"])
            page.click("#login-form button[type=submit]")
            page.wait_for_url(base + "/alerts")
            assert page.inner_text("#whoami") == "alice"
            cookie = {c["name"]: c for c in ctx.cookies()}["__Host-mw_session"]
            assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
            rows = page.locator("table.alerts tbody tr[data-alert-id]")
            ids = [rows.nth(i).get_attribute("data-alert-id") for i in range(rows.count())]
            assert ids[0] == A_VOLT and A_SURGE in ids and not any(i.startswith("b") for i in ids)
            shot(page, "02-inbox")

            page.click(f'tr[data-alert-id="{A_VOLT}"] a.alert-link')
            page.wait_for_url(f"{base}/alerts/{A_VOLT}")
            assert page.locator("svg.chart line.limit").count() >= 4
            shot(page, "03-alert-voltage")
            page.goto(base + "/alerts")
            page.click(f'tr[data-alert-id="{A_SURGE}"] a.alert-link')
            page.wait_for_url(f"{base}/alerts/{A_SURGE}")
            assert page.inner_text("#alert-state") == "new"
            assert page.locator("svg.chart polygon.band").count() == 1
            assert page.locator("svg.chart circle.outside").count() >= 6
            shot(page, "04-alert")

            page.click("#ack-form button[type=submit]")
            page.wait_for_url(f"{base}/alerts/{A_SURGE}?done=acknowledged")
            assert page.inner_text("#alert-state") == "acknowledged"
            page.select_option("#resolve-form select[name=outcome]", "customer_contacted")
            page.fill("#resolve-form textarea[name=note]",
                      "Called the customer: a new heat pump since Monday.")
            page.click("#resolve-form button[type=submit]")
            page.wait_for_url(f"{base}/alerts/{A_SURGE}?done=resolved")
            assert page.inner_text("#alert-state") == "resolved"
            assert page.inner_text("#alert-outcome") == "customer contacted"
            assert "a new heat pump since Monday" in page.inner_text("#notes")
            shot(page, "05-alert-resolved")

            page.click("#customer-link")
            page.wait_for_url(base + "/customers/C1001")
            assert page.inner_text("#profile-source") == "Live profile from the worker."
            assert page.locator("#profile svg.chart").count() == 2
            assert "a new heat pump since Monday" in page.inner_text("#notes")
            assert "GB/T 12325" in page.inner_text("#compliance")
            shot(page, "06-customer")

            # the customer's area: its compliance over the month, dip table, own meters
            page.click('table.meters a[href="/areas/A1"]')
            page.wait_for_url(base + "/areas/A1")
            assert "96.28 %" in page.inner_text("#area-compliance")
            assert page.locator("#area-dips table.dips tr").count() == 3
            listed = page.inner_text("#area-meters")
            assert "MTR-A1-0001" in listed and "MTR-A1-0003" not in listed
            shot(page, "06b-area")

            page.goto(f"{base}/alerts/{A_SURGE}?lang=zh-CN")
            assert "今日用电" in page.inner_text("#alert-message")
            ctx.close()

            a = store.get_alert(A_SURGE)
            assert (a["state"], a["acknowledged_by"], a["resolved_by"], a["outcome"]) == (
                "resolved", "alice", "alice", "customer_contacted")
            assert [n["text"] for n in store.notes_for(alert_id=A_SURGE)] == [
                "Called the customer: a new heat pump since Monday."]
            acts = [(e["actor"], e["action"], e["target"]) for e in store.audit_log()]
            assert ("alice", "acknowledge", A_SURGE) in acts and ("alice", "resolve", A_SURGE) in acts

            # ---- manager B (bob, mgr2): A's alert is not listed, and its URL is a 404
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.goto(base + "/login")
            page.fill("input[name=username]", "bob")
            page.fill("input[name=password]", PASSWORDS["bob"])
            page.click("#login-form button[type=submit]")
            page.wait_for_url(base + "/alerts")
            page.goto(base + "/alerts?state=all")
            rows = page.locator("table.alerts tbody tr[data-alert-id]")
            ids = {rows.nth(i).get_attribute("data-alert-id") for i in range(rows.count())}
            assert ids == {"b1surge0000000000001", "b2volt00000000000002"}
            shot(page, "07-inbox-other-manager")
            resp = page.goto(f"{base}/alerts/{A_SURGE}")
            assert resp.status == 404
            assert "customer contacted" not in page.content()
            shot(page, "08-other-managers-alert-404")
            assert page.goto(base + "/customers/C1001").status == 404
            assert page.goto(base + "/areas/A2").status == 404  # only alice's customer there
            ctx.close()
        finally:
            browser.close()

    for name in ("01-login", "02-inbox", "04-alert", "06-customer", "06b-area"):
        assert (shots / f"{name}.png").stat().st_size > 5000
    # The console's own log: routes, no customer ids, no secrets.
    text = log_path.read_text()
    assert "GET /customers/{customer_id} 200" in text
    for secret in ("C1001", "MTR-A1-0001", SECRET, PASSWORDS["alice"]):
        assert secret not in text
