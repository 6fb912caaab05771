"""The field crews' theft work list (``/worklist``), its CSV export (web and CLI), its
Prometheus gauges and the evidence pack (``/worklist/{id}``): on a real store (SQLite
and a real PostgreSQL server) filled through ``store.ingest`` as the notifier fills it,
a real aiohttp server on loopback, and a real Chromium for the browser test.

Theft model alerts carry the evidence ``models/theft.py`` writes (risk, attack shape,
onset, unbilled kWh since onset, daily energy around the onset, corroboration, peers,
indicators); rule-based theft alerts (the seeded tamper flag ``a3theft...``) carry none
of the estimate and rank after every estimated one.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from console_data import METER_OF, PASSWORDS, login, page_csrf
from stream.console import worklist as WL
from stream.console.charts import daily_chart
from stream.settings import SettingsError, load_settings

A_THEFT = "a3theft0000000000003"  # seeded: alice's (mgr1) tamper flag, critical, risk 0.9
A_SURGE = "a1surge0000000000001"
# Model suspicions: id -> (customer, risk, unbilled kWh); risk x unbilled in brackets.
M_BIG = "m1drop00000000000001"  # alice, 0.60 x 100 = 60
M_SURE = "m2drop00000000000002"  # alice, 0.90 x 40 = 36
M_SMALL = "m3flat00000000000003"  # alice, 0.99 x 10 = 9.9
M_BOB = "m4drop00000000000004"  # bob, 0.70 x 80 = 56
R_MISMATCH = "r1mism00000000000001"  # alice, rule energy_mismatch, warning, risk 0.7
R_NORISK = "r2rev000000000000002"  # alice, rule reverse_flow, warning, no risk
R_BOB = "r3tamp00000000000003"  # bob, rule tamper_event, critical


def model_theft(id_: str, customer: str, *, risk: float, unbilled: float,
                shape: str = "h1", words: str = "scaled down", onset: str = "2026-03-04",
                latest: str = "2026-03-10", factor: float = 0.55, usual: float = 9.6,
                corroboration=("physical/energy_mismatch",), peer_level: float | None = -0.03,
                status: str = "open", detected: str | None = None) -> dict:
    """A theft model alert as models/theft.py writes it: 14 days up to ``latest``, the
    reported energy ``factor`` x the usual from ``onset`` on."""
    meter, area = METER_OF[customer]
    last, start = date.fromisoformat(latest), date.fromisoformat(onset)
    daily = []
    for k in range(13, -1, -1):
        d = last - timedelta(days=k)
        u = round(usual * (1.1 if d.weekday() >= 5 else 1.0), 2)
        daily.append({"day": d.isoformat(), "usual_kwh": u,
                      "kwh": round(u * (factor if d >= start else 1.02), 2)})
    shares = {s: 0.0 for s in ("h1", "h2", "h3", "h4", "h5", "h6", "bypass")}
    shares.update({shape: 0.7, "h3" if shape != "h3" else "h1": 0.3})
    evidence = {"risk": risk, "attack_shape": shape, "attack_shape_words": words,
                "shape_shares": shares, "since_day": onset, "days": (last - start).days + 1,
                "unbilled_kwh": unbilled, "daily": daily, "corroboration": list(corroboration),
                "peer_level": peer_level, "log_odds": 2.4, "usual_log_odds": -3.1,
                "evidence": 7.8, "limit": 5.0, "model": "fleet_self_supervised",
                "indicators": {"level": -0.62, "flatness": 0.12, "shape_cor": 0.91}}
    return {"id": id_, "type": "theft",
            "subtype": "profile_distortion" if shape in ("h4", "h5", "h6") else "consumption_drop",
            "status": status, "severity": "warning", "scope": "meter", "meter_id": meter,
            "customer_id": customer, "area_id": area, "start": f"{onset}T00:00:00+08:00",
            "detected_at": detected or f"{latest}T23:59:00+08:00", "score": risk,
            "evidence": evidence, "transient": False,
            "message": {"en": f"Consumption {words} since {onset} (risk {risk}); about "
                              f"{unbilled} kWh not billed.",
                        "zh-CN": f"自 {onset} 起用电异常（风险 {risk}），约 {unbilled} kWh 未计费。"}}


def rule_theft(id_: str, customer: str, subtype: str, *, severity: str = "warning",
               risk: float | None = None, detected: str = "2026-03-09T12:00:00+08:00") -> dict:
    meter, area = METER_OF[customer]
    ev = {"indicators": {"ratio": 0.4}} | ({} if risk is None else {"risk": risk})
    return {"id": id_, "type": "theft", "subtype": subtype, "status": "open",
            "severity": severity, "scope": "meter", "meter_id": meter, "customer_id": customer,
            "area_id": area, "start": detected, "detected_at": detected, "score": risk,
            "evidence": ev, "transient": False,
            "message": {"en": f"{subtype} at this meter.", "zh-CN": f"{subtype}。"}}


MANAGER = {"C1001": "mgr1", "C1002": "mgr1", "C2001": "mgr2", "C2002": "mgr2"}


def ingest(store, rec: dict, now: float = 1_773_100_000.0) -> None:
    store.ingest(rec, manager_id=MANAGER[rec["customer_id"]], now=now)


@pytest.fixture
def suspicions(store):
    """The seeded store plus model and rule theft alerts of alice (mgr1) and bob (mgr2)."""
    add_suspicions(store)
    return store


def add_suspicions(store) -> None:
    for rec in (model_theft(M_BIG, "C1001", risk=0.6, unbilled=100.0),
                model_theft(M_SURE, "C1002", risk=0.9, unbilled=40.0, shape="h5",
                            words="flattened", corroboration=()),
                model_theft(M_SMALL, "C1002", risk=0.99, unbilled=10.0, peer_level=-0.45),
                model_theft(M_BOB, "C2001", risk=0.7, unbilled=80.0),
                rule_theft(R_MISMATCH, "C1001", "energy_mismatch", risk=0.7),
                rule_theft(R_NORISK, "C1002", "reverse_flow"),
                rule_theft(R_BOB, "C2002", "tamper_event", severity="critical", risk=0.9,
                           detected="2026-03-08T12:00:00+08:00")):
        ingest(store, rec)


ALICE_ORDER = [M_BIG, M_SURE, M_SMALL, A_THEFT, R_MISMATCH, R_NORISK]
ALL_ORDER = [M_BIG, M_BOB, M_SURE, M_SMALL, A_THEFT, R_BOB, R_MISMATCH, R_NORISK]


# ---- the ranking, on the store ----------------------------------------------------------

def test_estimated_suspicions_rank_by_risk_times_unbilled_then_the_rest_by_severity_and_risk(
        suspicions):
    items = WL.load(suspicions)
    # 60 > 56 > 36 > 9.9 (risk x kWh), then critical before warning (the two critical
    # ones of risk 0.9: the newer detection first), then risk 0.7 before no risk at all.
    assert [it.id for it in items] == ALL_ORDER
    assert [it.rank for it in items] == list(range(1, 9))
    big = items[0]
    assert (big.risk, big.unbilled_kwh, big.expected_kwh) == (0.6, 100.0, 60.0)
    assert (big.shape, big.shape_words, big.since_day, big.days) == (
        "h1", "scaled down", date(2026, 3, 4), 7)
    assert [it.unbilled_kwh for it in items[4:]] == [None] * 4
    # the rule is stated where the ranking lives
    assert "risk × estimated unbilled energy" in WL.RULE and "by severity, then risk" in WL.RULE


def test_only_unresolved_theft_alerts_are_on_the_list_a_cleared_one_stays(suspicions):
    st = suspicions
    st.resolve(M_SURE, "alice", "false_alarm")
    st.acknowledge(M_BIG, "alice")  # acknowledged: still to be inspected
    ingest(st, model_theft(M_SMALL, "C1002", risk=0.99, unbilled=10.0, status="closed",
                           detected="2026-03-11T23:59:00+08:00"))  # the condition cleared
    ids = [it.id for it in WL.load(st, manager_id="mgr1")]
    assert ids == [M_BIG, M_SMALL, A_THEFT, R_MISMATCH, R_NORISK]
    assert A_SURGE not in ids  # not theft


def test_a_daily_update_with_a_new_estimate_moves_the_suspicion(suspicions):
    st = suspicions
    assert [it.id for it in WL.load(st, manager_id="mgr1")][:2] == [M_BIG, M_SURE]
    ingest(st, model_theft(M_SURE, "C1002", risk=0.95, unbilled=90.0, status="update",
                           detected="2026-03-11T23:59:00+08:00"), now=1_773_200_000.0)
    items = WL.load(st, manager_id="mgr1")
    assert [it.id for it in items][:2] == [M_SURE, M_BIG]  # 0.95 x 90 = 85.5 > 60
    assert items[0].unbilled_kwh == 90.0


def test_a_record_with_missing_or_mangled_fields_is_listed_with_unknowns(console, suspicions):
    rec = model_theft("x1bad000000000000001", "C1001", risk=0.5, unbilled=1.0)
    rec["evidence"].update(risk="high", unbilled_kwh=float("nan"), days="many",
                           since_day="last week", daily=[{"day": "soon"}, 3, None],
                           corroboration="tamper", shape_shares=[1, 2], peer_level=True,
                           indicators={"level": "low", "flatness": 0.5})
    del rec["evidence"]["attack_shape_words"]
    ingest(suspicions, rec)
    huge = model_theft("x3huge00000000000003", "C1002", risk=1.0, unbilled=1e300)
    ingest(suspicions, huge)  # no meter loses 1e300 kWh: unknown, and the sums stay finite
    bare = dict(rule_theft("x2bare00000000000002", "C1001", "bypass"), evidence="none")
    ingest(suspicions, bare)
    items = {it.id: it for it in WL.load(suspicions, manager_id="mgr1")}
    bad = items["x1bad000000000000001"]
    assert (bad.risk, bad.unbilled_kwh, bad.days, bad.since_day, bad.daily, bad.corroboration,
            bad.shape_shares, bad.peer_level, bad.shape_words) == (
        None, None, None, None, [], [], [], None, None)
    assert bad.indicators == [("flatness", 0.5)] and WL.pack_chart(bad) is None
    assert items["x2bare00000000000002"].risk is None
    assert items["x3huge00000000000003"].unbilled_kwh is None
    assert math.isfinite(WL.totals(list(items.values()), 1e6).unbilled_kwh)
    # without an estimate: after the critical tamper flag, by risk (1.0 before 0.7);
    # no risk either: last, the newest detection first, then by id
    assert list(items) == ALICE_ORDER[:4] + ["x3huge00000000000003", R_MISMATCH,
                                             "x1bad000000000000001", R_NORISK,
                                             "x2bare00000000000002"]
    for path in ("/worklist", "/worklist/x1bad000000000000001", "/worklist/x2bare00000000000002",
                 "/worklist.csv"):
        status, html = console.run(lambda c: _get(c, "alice", path))
        assert status == 200, path


# ---- pages, scope and 404s ---------------------------------------------------------------

def ids_in(html: str) -> list[str]:
    return re.findall(r'<tr data-alert-id="([^"]+)"', html)


async def _get(c, who: str, path: str):
    await login(c, who)
    r = await c.get(path)
    return r.status, await r.text()


def test_a_manager_sees_only_their_customers_suspicions_in_order(console, suspicions):
    status, html = console.run(lambda c: _get(c, "alice", "/worklist"))
    assert status == 200 and ids_in(html) == ALICE_ORDER
    for other in (M_BOB, R_BOB, "C2001", "C2002", "MTR-A1-0003"):
        assert other not in html
    assert "risk × estimated unbilled energy since onset (kWh)" in html  # the rule, stated
    assert "6 open suspicions" in html and "150.0 kWh" in html  # 100 + 40 + 10
    # each item links to its evidence pack and to its alert's resolve form
    assert f'href="/worklist/{M_BIG}"' in html and f'href="/alerts/{M_BIG}#resolve-form"' in html
    assert "Unbilled GBP" not in html  # no tariff: no money column


@pytest.mark.parametrize("who", ["carol", "erin", "adam"])
def test_control_room_engineers_and_admins_see_every_managers_suspicions(console, suspicions,
                                                                         who):
    status, html = console.run(lambda c: _get(c, who, "/worklist"))
    assert status == 200 and ids_in(html) == ALL_ORDER
    status, html = console.run(lambda c: _get(c, who, f"/worklist/{M_BOB}"))
    assert status == 200 and "rank 2 of 8" in html


def test_another_managers_evidence_pack_is_a_404_like_an_unknown_id(console, suspicions):
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    async def go(c):
        await login(c, "alice")
        assert (await c.get(f"/worklist/{M_BIG}")).status == 200
        seen = []
        for path in (f"/worklist/{M_BOB}", f"/worklist/{R_BOB}", "/worklist/zz0000000000000000",
                     f"/worklist/{A_SURGE}"):  # her own alert, but not a theft suspicion
            statements.clear()
            sa.event.listen(console.store.engine, "before_cursor_execute", record)
            try:
                r = await c.get(path)
            finally:
                sa.event.remove(console.store.engine, "before_cursor_execute", record)
            text = await r.text()
            assert r.status == 404 and M_BOB not in text and "C2001" not in text, path
            seen.append([s for s in statements if "FROM alerts" in s])
        assert seen[0] == seen[1] == seen[2]  # bob's ids cost what an unknown one costs

    console.run(go)


def test_the_money_column_appears_with_a_tariff(console, suspicions):
    app = console.app(tariff_per_kwh=0.25, currency="EUR")

    async def go(c):
        return await _get(c, "alice", "/worklist")

    status, html = console.run(go, app=app)
    assert status == 200 and "Unbilled EUR" in html
    assert "37.50 EUR" in html  # 150 kWh x 0.25
    row = re.search(rf'<tr data-alert-id="{M_BIG}".*?</tr>', html, re.S).group(0)
    assert '<td class="num money">25.00</td>' in row
    row = re.search(rf'<tr data-alert-id="{A_THEFT}".*?</tr>', html, re.S).group(0)
    assert '<td class="num money">—</td>' in row and "unknown" in row


def test_the_evidence_pack_shows_the_days_around_onset_shape_corroboration_peers(console,
                                                                                suspicions):
    status, html = console.run(lambda c: _get(c, "alice", f"/worklist/{M_SMALL}"))
    assert status == 200 and "rank 3 of 6" in html
    daily = html[html.index('id="pack-daily"'):html.index('id="pack-shape"')]
    assert daily.count('class="reported"') == 14
    assert daily.count('class="gap"') == 7  # the 7 days since the onset, below the usual
    assert daily.count('class="onset"') == 1 and "onset 2026-03-04" in daily
    shape = html[html.index('id="pack-shape"'):html.index('id="pack-corroboration"')]
    assert "h1" in shape and "scaled down" in shape and "70 %" in shape and "30 %" in shape
    assert "bypass" not in shape  # shapes with no share of the evidence are left out
    assert "physical/energy mismatch" in html[html.index('id="pack-corroboration"'):]
    peers = html[html.index('id="pack-peers"'):html.index('id="pack-indicators"')]
    assert "peers moved too" in peers and "-0.45" in peers
    ind = html[html.index('id="pack-indicators"'):]
    assert "shape cor" in ind and "0.910" in ind and "log odds of tampering" in ind
    assert f'href="/alerts/{M_SMALL}#resolve-form"' in html

    status, html = console.run(lambda c: _get(c, "alice", f"/worklist/{M_SURE}"))
    assert "held steady" in html and "No other open condition" in html
    status, html = console.run(lambda c: _get(c, "alice", f"/worklist/{A_THEFT}"))
    assert status == 200 and "No attack shape" in html and "unknown (a rule-based" in html
    assert "cover_open" in html  # the rule's own evidence, shown instead
    status, html = console.run(lambda c: _get(c, "alice", f"/alerts/{M_BIG}"))
    assert f'id="pack-link" href="/worklist/{M_BIG}"' in html


def test_resolving_with_the_crews_outcome_takes_the_item_off_the_list(console, suspicions):
    async def go(c):
        await login(c, "alice")
        token = await page_csrf(c, f"/alerts/{M_BIG}")
        r = await c.post(f"/alerts/{M_BIG}/resolve", data={
            "csrf_token": token, "outcome": "confirmed_theft", "note": "bypass cable found"})
        assert r.status == 200
        html = await (await c.get("/worklist")).text()
        assert ids_in(html) == ALICE_ORDER[1:]
        pack = await (await c.get(f"/worklist/{M_BIG}")).text()
        assert "not on the work list (resolved)" in pack and "confirmed theft" in pack

    console.run(go)
    assert console.store.get_alert(M_BIG)["outcome"] == "confirmed_theft"


# ---- CSV --------------------------------------------------------------------------------

def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_has_the_pages_scope_order_and_figures(console, suspicions):
    app = console.app(tariff_per_kwh=0.2, currency="CNY")

    async def go(c):
        await login(c, "alice")
        r = await c.get("/worklist.csv")
        assert r.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in r.headers["Content-Disposition"]
        assert r.headers["Cache-Control"] == "no-store"
        return await r.text()

    rows = _rows(console.run(go, app=app))
    assert [r["alert_id"] for r in rows] == ALICE_ORDER
    assert list(rows[0]) == list(WL.COLUMNS)
    big = rows[0]
    assert (big["rank"], big["customer_id"], big["meter_id"], big["attack_shape"],
            big["since_day"], big["days"], big["risk"], big["unbilled_kwh"],
            big["expected_recovery_kwh"], big["unbilled_money"], big["currency"],
            big["corroboration_count"], big["corroboration"], big["evidence_pack"]) == (
        "1", "C1001", "MTR-A1-0001", "h1", "2026-03-04", "7", "0.600", "100.00", "60.00",
        "20.00", "CNY", "1", "physical/energy_mismatch", f"/worklist/{M_BIG}")
    tamper = rows[3]
    assert (tamper["alert_id"], tamper["unbilled_kwh"], tamper["unbilled_money"],
            tamper["risk"]) == (A_THEFT, "", "", "0.900")


def test_csv_cells_from_alert_records_cannot_run_as_spreadsheet_formulas(console, suspicions):
    hostile = model_theft("=HYPERLINK(\"http://x.example\")", "C1001", risk=0.9, unbilled=500.0,
                          words="+cmd|' /C calc'!A0", corroboration=("@SUM(1+1)", "-2+3"))
    hostile.update(meter_id="\t=1+1", area_id="-A1")
    ingest(suspicions, hostile)

    async def go(c):
        await login(c, "carol")
        return await (await c.get("/worklist.csv")).text()

    row = _rows(console.run(go))[0]
    assert row["alert_id"] == "'" + hostile["id"]
    assert row["attack_shape_words"] == "'+cmd|' /C calc'!A0"
    assert row["meter_id"] == "'\t=1+1" and row["area_id"] == "'-A1"
    assert row["corroboration"] == "'@SUM(1+1); -2+3"
    assert row["peer_level"] == "-0.030"  # a number stays a number
    assert row["evidence_pack"].startswith("/worklist/%3DHYPERLINK")


def test_export_worklist_cli_writes_every_managers_list_with_money(suspicions, db_url,
                                                                   tmp_path, monkeypatch, capsys):
    from test_console_cli import run

    for k in [k for k in os.environ if k.startswith("METERWATCH_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("METERWATCH_DB_URL", db_url)
    monkeypatch.setenv("METERWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("METERWATCH_TARIFF_PER_KWH", "0.5")
    out = tmp_path / "worklist.csv"
    assert run(["console", "export-worklist", "--out", str(out)]) == 0
    rows = _rows(out.read_text())
    assert [r["alert_id"] for r in rows] == ALL_ORDER
    assert rows[1]["unbilled_money"] == "40.00" and rows[1]["currency"] == "GBP"
    assert "8 open theft suspicions" in capsys.readouterr().err


# ---- gauges -----------------------------------------------------------------------------

def _sample(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def test_the_gauges_count_open_suspicions_and_sum_the_estimates(console, suspicions):
    async def scrape(c):
        return await (await c.get("/metrics")).text()

    text = console.run(scrape)
    p = "meterwatch_console_theft_worklist_"
    assert _sample(text, p + 'suspicions{estimated="true"}') == 4
    assert _sample(text, p + 'suspicions{estimated="false"}') == 4
    assert math.isclose(_sample(text, p + "unbilled_energy_joules"), 230 * 3.6e6)
    assert math.isclose(_sample(text, p + "expected_recovery_joules"),
                        (60 + 56 + 36 + 9.9) * 3.6e6)
    for secret in ("C1001", "MTR-", "mgr1", M_BIG):
        assert secret not in text
    console.store.resolve(M_BOB, "carol", "confirmed_theft")
    text = console.run(scrape)
    assert _sample(text, p + 'suspicions{estimated="true"}') == 3
    assert math.isclose(_sample(text, p + "unbilled_energy_joules"), 150 * 3.6e6)


# ---- units ------------------------------------------------------------------------------

def test_the_daily_chart_marks_the_shortfall_since_onset_and_escapes_labels():
    days = [(date(2026, 3, d), 10.0 if d < 5 else 4.0, 10.0) for d in range(1, 9)]
    days[6] = (date(2026, 3, 7), None, 10.0)  # a day without a reading: a gap
    svg = daily_chart(days, date(2026, 3, 5), title="<b>x</b>")
    assert svg.count('class="reported"') == 7 and svg.count('class="gap"') == 3
    assert svg.count('class="onset"') == 1 and "<b>" not in svg and "&lt;b&gt;" in svg
    assert "18 kWh below the usual" in svg  # 3 days x 6 kWh, in the description
    with pytest.raises(ValueError):
        daily_chart([], None, title="none")


def test_tariff_and_currency_settings_come_from_the_environment_and_are_checked():
    s = load_settings(env={"METERWATCH_TARIFF_PER_KWH": "0.245", "METERWATCH_CURRENCY": "EUR"})
    assert (s.tariff_per_kwh, s.currency) == (0.245, "EUR")
    assert (load_settings(env={}).tariff_per_kwh, load_settings(env={}).currency) == (0.0, "GBP")
    for env in ({"METERWATCH_TARIFF_PER_KWH": "-0.1"}, {"METERWATCH_TARIFF_PER_KWH": "inf"},
                {"METERWATCH_TARIFF_PER_KWH": "cheap"}, {"METERWATCH_CURRENCY": ""}):
        with pytest.raises(SettingsError, match="tariff_per_kwh|currency"):
            load_settings(env=env)


# ---- a real browser -----------------------------------------------------------------------

@pytest.fixture
def browser_console(suspicions, db_url, tmp_path, registry_file):
    """``meterwatch console`` as a subprocess on the suspicions' store, with a tariff."""
    import subprocess
    import time
    import urllib.request
    from pathlib import Path

    from console_data import SECRET
    from stream.settings import PROJECT_ROOT
    from test_console_browser import CHROMIUM, _free_port, _meterwatch

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    port, log_path = _free_port(), tmp_path / "console.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
    env.update(METERWATCH_DB_URL=db_url, METERWATCH_REGISTRY=str(registry_file),
               METERWATCH_SESSION_SECRET=SECRET, METERWATCH_WORKER_URL="http://127.0.0.1:9",
               METERWATCH_DATA_DIR=str(tmp_path / "data"), METERWATCH_TIMEZONE="Asia/Shanghai",
               METERWATCH_TARIFF_PER_KWH="0.25", METERWATCH_CURRENCY="GBP")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(_meterwatch() + ["console", "--host", "127.0.0.1", "--port",
                                                 str(port)], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
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
        yield base, suspicions, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _browser_login(browser, base: str, who: str):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", who)
    page.fill("input[name=password]", PASSWORDS[who])
    page.click("#login-form button[type=submit]")
    page.wait_for_url(base + "/alerts")
    return ctx, page


def _listed(page) -> list[str]:
    rows = page.locator("#worklist tbody tr[data-alert-id]")
    return [rows.nth(i).get_attribute("data-alert-id") for i in range(rows.count())]


@pytest.mark.slow
def test_a_manager_works_the_list_in_a_real_browser(browser_console, request):
    from playwright.sync_api import sync_playwright

    from test_console_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

    base, store, log_path = browser_console
    shots = ARTIFACTS / "worklist" / request.node.callspec.params["db_url"]
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)

    def shot(page, name):
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            ctx, page = _browser_login(browser, base, "alice")
            page.click("#nav-worklist")
            page.wait_for_url(base + "/worklist")
            assert _listed(page) == ALICE_ORDER
            assert "risk × estimated unbilled energy" in page.inner_text("#worklist-rule")
            assert "Unbilled GBP" in page.inner_text("#worklist thead")
            assert "37.50 GBP" in page.inner_text("#worklist-totals")  # 150 kWh x 0.25
            shot(page, "01-worklist")

            with page.expect_download() as dl:
                page.click("#worklist-csv")
            rows = _rows(open(dl.value.path(), encoding="utf-8").read())
            assert [r["alert_id"] for r in rows] == ALICE_ORDER

            page.click(f'tr[data-alert-id="{M_BIG}"] a.pack-link')
            page.wait_for_url(f"{base}/worklist/{M_BIG}")
            assert page.inner_text("#pack-rank") == "rank 1 of 6"
            assert page.locator("#pack-daily svg.chart rect.reported").count() == 14
            assert page.locator("#pack-daily svg.chart rect.gap").count() == 7
            assert page.locator("#pack-daily svg.chart line.onset").count() == 1
            assert "scaled down" in page.inner_text("#pack-shape")
            assert "physical/energy mismatch" in page.inner_text("#pack-corroboration")
            assert "held steady" in page.inner_text("#pack-peers")
            shot(page, "02-evidence-pack")

            page.click("#outcome-link")
            page.wait_for_url(f"{base}/alerts/{M_BIG}#resolve-form")
            page.select_option("#resolve-form select[name=outcome]", "confirmed_theft")
            page.fill("#resolve-form textarea[name=note]", "Bypass cable at the meter box.")
            page.click("#resolve-form button[type=submit]")
            page.wait_for_url(f"{base}/alerts/{M_BIG}?done=resolved")
            assert page.inner_text("#alert-outcome") == "confirmed theft"
            page.click("#nav-worklist")
            page.wait_for_url(base + "/worklist")
            assert _listed(page) == ALICE_ORDER[1:]
            shot(page, "03-worklist-after-outcome")
            ctx.close()

            ctx, page = _browser_login(browser, base, "bob")
            page.goto(base + "/worklist")
            assert _listed(page) == [M_BOB, R_BOB]
            assert page.goto(f"{base}/worklist/{M_SURE}").status == 404
            shot(page, "04-other-managers-pack-404")
            ctx.close()
        finally:
            browser.close()

    assert store.get_alert(M_BIG)["outcome"] == "confirmed_theft"
    for name in ("01-worklist", "02-evidence-pack", "03-worklist-after-outcome"):
        assert (shots / f"{name}.png").stat().st_size > 5000
    text = log_path.read_text()
    assert "GET /worklist/{alert_id} 200" in text and "GET /worklist.csv 200" in text
    for secret in ("C1001", "MTR-A1-0001"):  # alert ids may be logged, customers' never
        assert secret not in text
