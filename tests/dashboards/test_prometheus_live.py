"""Every dashboard panel and every rule, against a real Prometheus scraping a real worker
and a real console.

A worker (``python -m stream.cli worker``) runs on the session's Kafka broker, fed by the
simulator with injected anomalies (theft, voltage, outages, gaps, bad input) so that
alert, theft and voltage series exist. The console (``python -m stream.cli console``)
runs on a SQLite store that is filled with the alert messages the worker published on
the alerts topic -- read back from Kafka and stored with ``AlertStore.ingest`` and the
registry's account manager, as the notifier stores them. Through the console's HTTP
interface (login form, CSRF tokens, session cookie) a manager acknowledges one of their
alerts and the control room resolves another, so the lifecycle series have every state
and time-to-acknowledge has observations. Debian's ``prometheus`` scrapes the worker and
the console every second and evaluates the recording and alerting rules every second.
Then each PromQL expression of each panel (template variables substituted as Grafana
would) and each rule is evaluated through Prometheus' HTTP API and must return data with
a real value: no typo'd metric, no dead panel.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.pipeline import free_port, worker_env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dashboards"))
import generate as G  # noqa: E402
import render as R  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
# Simulated time ends before the wall clock (readings from the future are rejected).
START = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=20)).replace(
    hour=0, minute=0, second=0, microsecond=0)
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
RATE = "2m"  # $__rate_interval: the whole run fits in it
WINDOW = "10m"  # $window

#: Panels whose series come from the console process (alert lifecycle); the live fixture
#: runs the console, so they must return data like every other panel.
CONSOLE_SERIES = {"meterwatch_console_alerts", "meterwatch_console_time_to_acknowledge_seconds"}
CONSOLE_EXPRESSIONS = {
    ("meterwatch-alerts", "Open vs acknowledged vs resolved"),
    ("meterwatch-alerts", "Unacknowledged critical"),
    ("meterwatch-alerts", "Resolved share"),
    ("meterwatch-alerts", "Time to acknowledge"),
    ("meterwatch-alerts", "Acknowledged / h"),
}


def all_panel_expressions() -> list[tuple[str, str, str]]:
    out = []
    for fn in G.DASHBOARDS.values():
        out += G.expressions(G.dashboard_json(fn()))
    return out


def is_console(expr: str) -> bool:
    return G.CONSOLE_PREFIX in expr


def test_console_panels_are_exactly_the_listed_ones_and_use_only_declared_series():
    got = {(uid, title) for uid, title, expr in all_panel_expressions() if is_console(expr)}
    assert got == CONSOLE_EXPRESSIONS
    for uid, title, expr in all_panel_expressions():
        if is_console(expr):
            names = set(re.findall(r"meterwatch_console_[a-z_]+", expr))
            names = {n.removesuffix("_bucket").removesuffix("_count") for n in names}
            assert names <= CONSOLE_SERIES, (title, names)
            assert "meterwatch_console" in expr and not re.search(r"meterwatch_(?!console_)[a-z]", expr)


# -- the live system --------------------------------------------------------------------
class Live:
    def __init__(self, bootstrap: str, tmp: Path) -> None:
        from models.evaluate.sim import FleetSimulator

        self.tmp = tmp
        self.bootstrap = bootstrap
        tag = uuid.uuid4().hex[:8]
        self.app_id = f"mwp-{tag}"
        self.topics = {k: f"{k}-{tag}" for k in ("readings", "rejected", "byarea", "alerts", "dead")}
        # Few gaps and little bad input: a day counts for line loss only when 97% of
        # its meter-intervals are there (the loss detector's rule).
        self.sim = FleetSimulator(n_customers=80, n_areas=4, seed=11, start=START,
                                  interval_s=900, bad_rate=0.002)
        m = self.sim.meter_ids
        at = lambda d, h=0.0: START + timedelta(days=d, hours=h)  # noqa: E731
        self.sim.inject("bypass", m[2], at(2), at(30))
        self.sim.inject("reverse_flow", m[3], at(3, 12), at(30))
        self.sim.inject("undervoltage", m[5], at(3, 8), at(30))
        self.sim.inject("overvoltage", m[8], at(4, 8), at(30))
        self.sim.inject("undervoltage", self.sim.area_ids[1], at(3, 18), at(3, 21))
        for d in range(1, 13):  # alerts in every simulated day, so also while paced
            self.sim.inject("tamper", m[10 + d], at(d, 10))
            self.sim.inject("surge_interval", m[30 + d], at(d, 19), at(d, 19.5))
        self.sim.inject("comm_gap", m[40], at(2, 1), at(2, 5))
        self.sim.inject("outage", m[9], at(4, 10), at(4, 12))
        self.registry = tmp / "registry.csv"
        self.sim.write_registry_csv(self.registry)
        self.procs: list[subprocess.Popen] = []
        self.publisher: threading.Thread | None = None
        self.published = 0
        self.stop_publishing = threading.Event()
        self.store = None  # the console's alert store, opened once the console runs

    def env(self, web_port: int) -> dict[str, str]:
        return worker_env(bootstrap=self.bootstrap, app_id=self.app_id, topics=self.topics,
                          registry=self.registry, data_dir=self.tmp / "data", web_port=web_port)

    def start_worker(self) -> int:
        from stream.kafka_admin import ensure_topics
        from stream.settings import load_settings

        asyncio.run(ensure_topics(load_settings(env=self.env(0))))
        port = free_port()
        log = open(self.tmp / f"worker-{port}.log", "wb")
        self.procs.append(subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"],
                                           env=self.env(port), cwd=ROOT, stdout=log,
                                           stderr=subprocess.STDOUT))
        return port

    # -- the console ------------------------------------------------------------------
    def console_env(self) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
        e.update(METERWATCH_DB_URL=self.console_db, METERWATCH_SESSION_SECRET=self.secret,
                 METERWATCH_COOKIE_SECURE="false", METERWATCH_REGISTRY=str(self.registry),
                 METERWATCH_WORKER_URL=f"http://127.0.0.1:{self.worker_port}",
                 METERWATCH_DATA_DIR=str(self.tmp / "console-data"),
                 METERWATCH_LOG_LEVEL="warning")
        return e

    def start_console(self, worker_port: int) -> int:
        """``meterwatch console`` on a free loopback port, on its own SQLite store."""
        self.worker_port = worker_port
        self.console_db = f"sqlite:///{self.tmp / 'mw.db'}"
        self.secret = secrets.token_urlsafe(48)
        port = free_port()
        self.console_url = f"http://127.0.0.1:{port}"
        log = open(self.tmp / "console.log", "wb")
        self.console_proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "console", "--host", "127.0.0.1",
             "--port", str(port)], env=self.console_env(), cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT)
        self.procs.append(self.console_proc)
        return port

    def wait_console(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.console_url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.console_proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the console did not start:\n"
                                     + (self.tmp / "console.log").read_text(errors="replace"))
            time.sleep(0.2)

    def published_alerts(self, timeout: float = 30) -> list[dict]:
        """Every message on the alerts topic so far (up to its end offsets now)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = self.topics["alerts"]

        async def go() -> list[dict]:
            # No group: every partition, from the beginning, nothing committed.
            c = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=None,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 max_partition_fetch_bytes=16 * 1024 * 1024)
            await c.start()  # waits for the topic's metadata
            try:
                tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
                assert tps, f"no partitions for {topic}"
                end = await c.end_offsets(tps)
                out: list[dict] = []
                deadline = time.monotonic() + timeout
                while True:
                    if c.assignment() == set(tps) and all(
                            [await c.position(tp) >= end[tp] for tp in tps]):
                        return out
                    assert time.monotonic() < deadline, "could not read the alerts topic to its end"
                    for msgs in (await c.getmany(timeout_ms=500)).values():
                        out += [json.loads(m.value) for m in msgs]
            finally:
                await c.stop()

        return asyncio.run(go())

    def fill_console_store(self) -> None:
        """The worker's alerts into the console's store, each with the account manager
        the registry gives its meter: ``AlertStore.ingest``, as the notifier does."""
        from stream.registry import Registry
        from stream.store import AlertStore

        reg = Registry.load(self.registry)

        def manager_of(a: dict) -> str | None:
            if a.get("scope", "meter") != "meter":
                return None
            row = reg.row(a.get("meter_id") or "")
            return None if row is None else (reg.account_manager[row] or None)

        self.alerts = self.published_alerts()
        assert self.alerts, "the worker published no alerts"
        self.manager_of = manager_of
        self.store = AlertStore(self.console_db)
        self.ingested = Counter(self.store.ingest(a, manager_id=manager_of(a)).kind
                                for a in self.alerts)

    def add_users(self) -> None:
        """A control-room account and the account of a manager who has alerts, with
        ``meterwatch users add`` (passwords on stdin)."""
        new = self.store.list_alerts(states=["new"], limit=100_000)
        mine = [a for a in new if a["manager_id"]]
        assert mine, "no alert has an account manager"
        self.to_ack = mine[0]
        others = [a for a in new if a["id"] != self.to_ack["id"]]
        # The control room sees everyone's alerts: take one of another manager if any.
        self.to_resolve = next((a for a in others if a["manager_id"] != self.to_ack["manager_id"]),
                               others[0])
        self.users = {"ctl": ("ctl-password-1234", "control_room", None),
                      "mgr": ("mgr-password-5678", "manager", self.to_ack["manager_id"])}
        procs = []
        for name, (pw, role, mid) in self.users.items():
            cmd = [sys.executable, "-m", "stream.cli", "users", "add", name, "--role", role,
                   "--password-stdin"] + (["--manager-id", mid] if mid else [])
            p = subprocess.Popen(cmd, env=self.console_env(), cwd=ROOT, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
            procs.append((p, pw))
        for p, pw in procs:
            out, _ = p.communicate(pw + "\n", timeout=60)
            assert p.returncode == 0, out

    def act(self, username: str, alert_id: str, action: str, **form: str) -> None:
        """Log in through the console's form and acknowledge or resolve an alert."""
        import aiohttp

        from stream.console.auth import CSRF_FIELD

        token_re = re.compile(r'name="%s" value="([^"]+)"' % re.escape(CSRF_FIELD))

        def token(html: str) -> str:
            m = token_re.search(html)
            assert m, "no CSRF token in the page"
            return m.group(1)

        async def go() -> None:
            base = self.console_url
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                r = await http.get(base + "/login")
                t = token(await r.text())
                r = await http.post(base + "/login", allow_redirects=False, data={
                    "username": username, "password": self.users[username][0],
                    CSRF_FIELD: t, "next": "/alerts"})
                assert r.status == 303 and r.headers["Location"] == "/alerts", (r.status, await r.text())
                r = await http.get(f"{base}/alerts/{alert_id}")
                assert r.status == 200, r.status
                r = await http.post(f"{base}/alerts/{alert_id}/{action}", allow_redirects=False,
                                    data={CSRF_FIELD: token(await r.text()), **form})
                assert r.status == 303, (r.status, await r.text())
                assert r.headers["Location"] == f"/alerts/{alert_id}?done={action}d"

        asyncio.run(go())

    def start_publisher(self, burst_days: float, paced_days: float, paced_s: float) -> None:
        """The first days as fast as the broker takes them, the rest spread over
        ``paced_s`` seconds so that rates are live while the queries run."""
        from aiokafka import AIOKafkaProducer

        msgs = list(self.sim.iter_messages(days=burst_days + paced_days))
        per_day = len(msgs) / (burst_days + paced_days)
        n_burst = int(per_day * burst_days)

        async def go():
            prod = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5,
                                    max_request_size=16 * 1024 * 1024)
            await prod.start()
            try:
                futs = [await prod.send(self.topics["readings"], value=v, key=k)
                        for k, v in msgs[:n_burst]]
                await asyncio.gather(*futs)
                self.published = n_burst
                rest = msgs[n_burst:]
                t0 = time.monotonic()
                for i, (k, v) in enumerate(rest):
                    if self.stop_publishing.is_set():
                        break
                    await prod.send(self.topics["readings"], value=v, key=k)
                    self.published += 1
                    ahead = (i + 1) * paced_s / len(rest) - (time.monotonic() - t0)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                await prod.flush()
            finally:
                await prod.stop()

        self.publisher = threading.Thread(target=lambda: asyncio.run(go()), daemon=True)
        self.publisher.start()

    def start_prometheus(self, worker_ports: list[int], console_port: int) -> str:
        port = free_port()
        cfg = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "1s"},
            "rule_files": [str(G.RULES_DIR / "recording.yml"), str(G.RULES_DIR / "alerts.yml")],
            "scrape_configs": [
                {"job_name": G.WORKER_JOB, "static_configs": [
                    {"targets": [f"127.0.0.1:{p}" for p in worker_ports]}]},
                {"job_name": G.CONSOLE_JOB, "static_configs": [
                    {"targets": [f"127.0.0.1:{console_port}"]}]},
            ],
        }
        path = self.tmp / "prometheus.json.yml"
        path.write_text(json.dumps(cfg))  # JSON is YAML
        log = open(self.tmp / "prometheus.log", "wb")
        self.procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={path}", f"--storage.tsdb.path={self.tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(base + "/-/ready", timeout=2).read()
                return base
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        raise AssertionError("prometheus did not become ready:\n" + (self.tmp / "prometheus.log").read_text())

    def stop(self) -> None:
        self.stop_publishing.set()
        if self.publisher is not None:
            self.publisher.join(timeout=20)
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.store is not None:
            self.store.close()


def wait_for(base: str, need: list[str], timeout: float, what) -> None:
    """Until each query returns a non-NaN value; ``what()`` explains a timeout."""
    deadline = time.monotonic() + timeout
    missing = need
    while time.monotonic() < deadline:
        missing = [q for q in need
                   if not [v for v in values(R.query(base, q)) if not math.isnan(v)]]
        if not missing:
            return
        time.sleep(1)
    raise AssertionError(f"no data yet for {missing}; " + what())


def values(res: dict) -> list[float]:
    assert res["status"] == "success", res
    data = res["data"]
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    return [float(r["value"][1]) for r in data["result"]]


@pytest.fixture(scope="module")
def live(kafka_bootstrap, tmp_path_factory):
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    lv = Live(kafka_bootstrap, tmp_path_factory.mktemp("prom"))
    try:
        port = lv.start_worker()
        console_port = lv.start_console(port)
        base = lv.start_prometheus([port], console_port)
        lv.base = base
        lv.t_start = time.time()
        lv.start_publisher(burst_days=9, paced_days=3, paced_s=60)
        lv.wait_console()
        # Wait until the worker has applied readings, closed days (line loss), raised
        # alerts and Prometheus has the recorded series -- and has scraped the console
        # before anyone acted on an alert (time to acknowledge is a rate of a histogram).
        wait_for(base, ["meterwatch_area_line_loss_ratio",
                        "meterwatch:detector_seconds_per_reading:rate5m",
                        'meterwatch_applied_to_alert_seconds_count > 0',
                        'meterwatch:produce_to_applied_seconds:quantile_rate5m{quantile="0.99"}',
                        "meterwatch:area_line_loss_excess:ratio",
                        f'up{{job="{G.CONSOLE_JOB}"}} == 1',
                        "meterwatch_console_time_to_acknowledge_seconds_count"],
                 120, lambda: "worker log:\n" + "\n".join(
                     f.read_text(errors="replace")[-3000:] for f in lv.tmp.glob("worker-*.log")))
        # The console: the worker's alerts in its store, then people acting on them
        # through its web interface.
        lv.fill_console_store()
        lv.add_users()
        lv.act("mgr", lv.to_ack["id"], "acknowledge")
        lv.act("ctl", lv.to_resolve["id"], "resolve", outcome="false_alarm",
               note="checked on site: no fault")
        wait_for(base, ["meterwatch_console_time_to_acknowledge_seconds_count >= 2",
                        'meterwatch_console_alerts{state="resolved"} > 0'],
                 30, lambda: "console log:\n" + (lv.tmp / "console.log").read_text(errors="replace"))
        time.sleep(3)  # a few more scrapes inside every rate window
        yield lv
    finally:
        lv.stop()


def test_every_panel_query_returns_data(live):
    """All panels of all dashboards, the console's included (one test, so the live setup
    is paid once)."""
    empty, nan_only = [], []
    n = n_console = 0
    for uid, title, expr in all_panel_expressions():
        q = R.substitute(expr, rate=RATE, window=WINDOW)
        res = R.query(live.base, q)
        assert res["status"] == "success", (title, q, res)
        n += 1
        n_console += is_console(expr)
        vals = values(res)
        if not vals:
            empty.append((uid, title, q))
        elif all(math.isnan(v) for v in vals):
            nan_only.append((uid, title, q))
    assert n >= 65 and n_console == 6
    assert not empty, "panels with no data:\n" + "\n".join(map(str, empty))
    assert not nan_only, "panels with only NaN:\n" + "\n".join(map(str, nan_only))


def test_console_series_count_the_alerts_the_worker_published(live):
    """The console's gauges are the store's counts of the worker's alerts, the actions
    taken through the web interface show, and the manager came from the registry."""
    q = lambda e: values(R.query(live.base, e))  # noqa: E731
    assert q(f'up{{job="{G.CONSOLE_JOB}"}}') == [1]
    ids = {a["id"]: a for a in live.alerts}
    n = len(ids)
    assert live.ingested["new"] == n and sum(live.ingested.values()) == len(live.alerts)
    assert q("sum(meterwatch_console_alerts)") == [n]
    res = R.query(live.base, "sum by (state) (meterwatch_console_alerts)")["data"]["result"]
    assert {r["metric"]["state"]: float(r["value"][1]) for r in res} == {
        "new": n - 2, "acknowledged": 1, "resolved": 1}
    res = R.query(live.base, "sum by (type) (meterwatch_console_alerts) > 0")["data"]["result"]
    assert {r["metric"]["type"]: float(r["value"][1]) for r in res} == dict(
        Counter(a["type"] for a in ids.values()))
    assert q("meterwatch_console_time_to_acknowledge_seconds_count") == [2]
    # Both actions came seconds after the alerts reached the store.
    assert q('meterwatch_console_time_to_acknowledge_seconds_bucket{le="300.0"}') == [2]
    assert q('meterwatch_console_logins_total{result="ok"}') == [2]

    acked = live.store.get_alert(live.to_ack["id"])
    assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == "mgr"
    assert acked["manager_id"] == live.manager_of(ids[acked["id"]])
    resolved = live.store.get_alert(live.to_resolve["id"])
    assert resolved["state"] == "resolved" and resolved["resolved_by"] == "ctl"
    assert resolved["outcome"] == "false_alarm"
    # Meter alerts carry their meter's account manager; area alerts none.
    stored = live.store.list_alerts(limit=100_000)
    assert len(stored) == n
    for a in stored:
        assert a["manager_id"] == live.manager_of(ids[a["id"]]), a["id"]
    assert sum(bool(a["manager_id"]) for a in stored) >= n // 2


def test_area_variable_query_lists_the_simulated_areas(live):
    res = json.loads(urllib.request.urlopen(
        live.base + "/api/v1/label/area/values?match[]=meterwatch_area_meters_expected",
        timeout=5).read())
    assert set(res["data"]) == set(live.sim.area_ids)
    # Filtering on one area works in an area panel.
    one = live.sim.area_ids[0]
    expr = G.fleet_overview().panels[1].queries[0].expr
    vals = values(R.query(live.base, R.substitute(expr, area=one)))
    assert vals and 0 < vals[0] <= 20


def test_every_rule_is_loaded_healthy_and_returns_data(live):
    rules = json.loads(urllib.request.urlopen(live.base + "/api/v1/rules", timeout=5).read())
    loaded = [r for g in rules["data"]["groups"] for r in g["rules"]]
    assert len(loaded) == len(G.RECORDING) + len(G.ALERTS)
    for r in loaded:
        assert r["health"] == "ok", r
    for rec in G.RECORDING:
        sel = rec.record + ("{" + ",".join(f'{k}="{v}"' for k, v in rec.labels.items()) + "}"
                            if rec.labels else "")
        for q in (rec.expr, sel):
            vals = values(R.query(live.base, q))
            assert vals and not all(math.isnan(v) for v in vals), (rec.record, q)
    for a in G.ALERTS:
        # The alert itself: valid and, with a healthy pipeline, not firing...
        assert values(R.query(live.base, a.expr)) == [], a.alert
        # ...while what it thresholds is there to be thresholded.
        assert a.probes
        for q in a.probes:
            vals = values(R.query(live.base, q))
            assert vals and not all(math.isnan(v) for v in vals), (a.alert, q)


def test_metric_values_make_sense_for_the_simulated_fleet(live):
    q = lambda e: values(R.query(live.base, e))  # noqa: E731
    assert q("sum(meterwatch_area_meters_expected)") == [80]
    assert 78 <= q("sum(meterwatch_area_meters_reporting)")[0] <= 80
    # Theft indicators by area: every area x indicator, and the injected ones raised.
    assert len(q("meterwatch_area_theft_suspicions_open")) == 4 * 8
    assert q('sum(meterwatch_theft_alerts_total{indicator="tamper_event"})')[0] >= 9
    assert q('sum(meterwatch_theft_alerts_total{indicator="energy_mismatch"})')[0] >= 1
    assert q('sum(meterwatch_area_voltage_meters{band="under"})')[0] >= 1
    assert q('sum(meterwatch_alerts_open{type="voltage"})')[0] >= 1
    assert q("sum(meterwatch_readings_rejected_total)")[0] > 0
    assert q("up")[0] == 1


def test_period_compliance_by_area_is_live_and_counts_the_failing_meters(live):
    """The standard's compliance over its period (GB/T 12325: the month) for each of the
    four areas, every meter measured, and the meters held under / over the limits for
    days (m5, m8) failing the month: certain once over 5 % of it is outside."""
    q = lambda e: values(R.query(live.base, e))  # noqa: E731
    ratios = q('meterwatch_area_voltage_period_compliance_ratio{period="current",standard="gbt12325"}')
    assert len(ratios) == 4 and all(0.5 < r <= 1 for r in ratios)
    assert 78 <= q('sum(meterwatch_area_voltage_period_meters{state="measured",period="current"})')[0] <= 80
    assert q('sum(meterwatch_area_voltage_period_meters{state="failing",period="current"})')[0] >= 1
    assert len(q('meterwatch_area_voltage_period_dips{period="current"}')) == 4 * 6
    assert min(ratios) < 1.0


def test_render_fleet_overview_to_png(live):
    """The picture for the README: the Fleet overview's queries, drawn by matplotlib."""
    out = ROOT / "out" / "dashboards" / "fleet-overview.png"
    d = G.dashboard_json(G.fleet_overview())
    minutes = max(1.0, (time.time() - live.t_start) / 60 + 0.2)
    R.render(d, live.base, out, minutes=minutes, rate="30s", window=WINDOW)
    assert out.stat().st_size > 20_000
    if os.environ.get("METERWATCH_UPDATE_PICTURES"):
        shutil.copy(out, ROOT / "dashboards" / "fleet-overview.png")


def test_console_series_are_the_ones_the_console_declares():
    """The console's series names are the ones the Alerts dashboard queries."""
    from stream.console import metrics as cm

    assert {cm.ALERTS, cm.TTA} == CONSOLE_SERIES
