"""The Grafana dashboards' structure, and that the files in the repository are what
``dashboards/generate.py`` writes (the live test proves their queries return data)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dashboards"))
import generate as G  # noqa: E402

DASH_FILES = sorted(G.DASH_DIR.glob("*.json"))
PROVISIONING = ROOT / "dashboards" / "grafana" / "provisioning"
KNOWN_UNITS = {"short", "cps", "percentunit", "s", "Bps", "volt", "none"}
THRESHOLD_PANELS = {"stat", "gauge", "bargauge", "table"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(d: dict) -> list[dict]:
    return [p for p in d["panels"] if p["type"] != "row"]


def test_generated_files_are_up_to_date():
    assert G.main(["--check"]) == 0, "run: python dashboards/generate.py"
    assert {p.name for p in DASH_FILES} == {f"{n}.json" for n in G.DASHBOARDS}


def test_the_five_dashboards_of_the_control_room():
    titles = {load(p)["title"] for p in DASH_FILES}
    assert titles == {"meterwatch / Fleet overview", "meterwatch / Alerts",
                      "meterwatch / Voltage quality", "meterwatch / Losses and theft",
                      "meterwatch / Pipeline health"}


def test_uids_are_unique_and_panel_ids_unique_within_a_dashboard():
    uids = [load(p)["uid"] for p in DASH_FILES]
    assert len(set(uids)) == len(uids)
    for p in DASH_FILES:
        d = load(p)
        assert re.fullmatch(r"[a-z0-9-]{1,40}", d["uid"])
        ids = [x["id"] for x in d["panels"]]
        assert len(set(ids)) == len(ids), p.name


def test_every_datasource_reference_is_the_provisioned_prometheus():
    prov = (PROVISIONING / "datasources" / "prometheus.yml").read_text()
    assert f"uid: {G.DS.uid}" in prov and "type: prometheus" in prov
    ds = G.DS.to_json()
    for path in DASH_FILES:
        d = load(path)
        for p in panels(d):
            assert p["datasource"] == ds, (path.name, p["title"])
            for t in p["targets"]:
                assert t["datasource"] == ds, (path.name, p["title"])
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"] == ds


def test_template_variables_area_and_window_and_a_time_range():
    for path in DASH_FILES:
        d = load(path)
        vs = {v["name"]: v for v in d["templating"]["list"]}
        area = vs["area"]
        assert area["type"] == "query" and area["multi"] and area["includeAll"]
        assert area["allValue"] == ".*"
        assert area["query"]["query"] == "label_values(meterwatch_area_meters_expected, area)"
        assert vs["window"]["type"] == "interval"
        assert d["time"]["from"].startswith("now-") and d["time"]["to"] == "now"
        assert d["timepicker"]["refresh_intervals"]
        # Every variable a query uses is defined (or one of Grafana's own).
        used = set()
        for p in panels(d):
            for t in p["targets"]:
                used |= set(re.findall(r"\$(\w+)", t["expr"]))
        assert used <= set(vs) | {"__rate_interval"}, (path.name, used)
    # Area panels filter by the variable as a regex (multi-select).
    for path in DASH_FILES:
        for p in panels(load(path)):
            for t in p["targets"]:
                if "area" in t["expr"] and "$area" in t["expr"]:
                    assert 'area=~"$area"' in t["expr"], p["title"]


def test_every_panel_has_targets_a_unit_and_a_place():
    for path in DASH_FILES:
        d = load(path)
        for p in panels(d):
            assert p["targets"], (path.name, p["title"])
            refs = [t["refId"] for t in p["targets"]]
            assert len(set(refs)) == len(refs)
            for t in p["targets"]:
                assert t["expr"].strip() and t["expr"].count("(") == t["expr"].count(")")
            unit = p["fieldConfig"]["defaults"].get("unit")
            assert unit in KNOWN_UNITS, (path.name, p["title"], unit)
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
        # No two panels overlap.
        cells = set()
        for p in d["panels"]:
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, (path.name, p["title"])
                    cells.add((x, y))


def test_stat_gauge_and_bar_panels_have_coloured_thresholds():
    n = 0
    for path in DASH_FILES:
        for p in panels(load(path)):
            th = p["fieldConfig"]["defaults"]["thresholds"]
            assert th["mode"] == "absolute" and th["steps"][0]["value"] is None
            if p["type"] in THRESHOLD_PANELS:
                n += 1
                steps = th["steps"]
                assert len(steps) >= 2, (path.name, p["title"])
                colours = {s["color"] for s in steps}
                assert len(colours) >= 2
                vals = [s["value"] for s in steps[1:]]
                assert vals == sorted(vals)
                assert p["fieldConfig"]["defaults"]["color"]["mode"] == "thresholds"
    assert n >= 20


def test_ratio_panels_use_percent_and_seconds_panels_use_seconds():
    for path in DASH_FILES:
        for p in panels(load(path)):
            unit = p["fieldConfig"]["defaults"]["unit"]
            exprs = " ".join(t["expr"] for t in p["targets"])
            if p["type"] == "heatmap":
                continue  # its unit is the count; the y axis (buckets) is in percent
            if "_ratio" in exprs and "sum(" not in exprs.split("_ratio")[0][-6:]:
                assert unit == "percentunit", p["title"]
            if re.search(r"_seconds(_bucket)?\b|_seconds:", exprs) and p["type"] != "heatmap":
                assert unit == "s", p["title"]


def test_queries_name_only_metrics_the_project_exports():
    """Series names in panels and rules: the worker's (``stream/worker/metrics.py``), the
    console's (declared for the Alerts dashboard), the recording rules', and ``up``."""
    from types import SimpleNamespace

    from faust.sensors.monitor import Monitor

    from stream.worker import metrics as M

    fams = list(M.REGISTRY.collect())
    fams += list(M._FaustCollector(SimpleNamespace(monitor=Monitor(), rebalancing_count=0,
                                                   rebalancing=False)).collect())
    exported = set()
    for fam in fams:
        exported.add(fam.name)
        if fam.type == "counter":
            exported.add(fam.name + "_total")
        if fam.type == "histogram":
            exported |= {fam.name + s for s in ("_bucket", "_count", "_sum")}
    for fam in G.RECORDING:
        exported.add(fam.record)
    # The console's (stream/console/metrics.py), declared for the Alerts dashboard.
    exported |= {"up", "meterwatch_console_alerts"} | {
        "meterwatch_console_time_to_acknowledge_seconds" + s for s in ("_bucket", "_count")}
    names = set()
    for path in DASH_FILES:
        for p in panels(load(path)):
            for t in p["targets"]:
                names |= set(re.findall(r"\b(meterwatch[_:][a-z0-9_:]+|up)\b", t["expr"]))
    for r in G.RECORDING:
        names |= set(re.findall(r"\b(meterwatch_[a-z0-9_]+)\b", r.expr))
    for a in G.ALERTS:
        names |= set(re.findall(r"\b(meterwatch[_:][a-z0-9_:]+)\b", a.expr))
    missing = {n for n in names if n not in exported}
    assert not missing, missing


@pytest.mark.parametrize("path", DASH_FILES, ids=lambda p: p.name)
def test_dashboard_json_shape_grafana_loads(path):
    d = load(path)
    for key in ("uid", "title", "panels", "templating", "time", "schemaVersion", "refresh"):
        assert key in d
    assert d["schemaVersion"] >= 36
    assert "id" not in d or d["id"] is None  # provisioned dashboards must not pin a db id
    for p in panels(d):
        assert p["type"] in {"timeseries", "stat", "gauge", "bargauge", "heatmap", "table"}
        if p["type"] == "heatmap":
            assert all(t["format"] == "heatmap" for t in p["targets"])
            assert all("_bucket" in t["expr"] and "by (le)" in t["expr"] for t in p["targets"])
        if p["type"] in ("bargauge", "table"):
            assert all(t["instant"] for t in p["targets"])


def test_provisioning_points_grafana_at_the_dashboards_folder():
    prov = (PROVISIONING / "dashboards" / "meterwatch.yml").read_text()
    assert "type: file" in prov
    assert "path: /var/lib/grafana/dashboards/meterwatch" in prov
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "./dashboards/grafana/dashboards:/var/lib/grafana/dashboards/meterwatch" in compose
    assert "./dashboards/grafana/provisioning:/etc/grafana/provisioning" in compose


# -- what a rewrite of the generator must keep --------------------------------------------
#: Every panel, in order, as the hand-written JSON of dashboards/generate.py had it before
#: the port to Grafana's SDK: (type, title, unit, (x, y, w, h), thresholds "base|colour
#: from|...", "min..max" or "", target exprs in refId order). A deliberate dashboard
#: change updates this table with it.
PANELS_BEFORE_SDK = {
    'meterwatch-fleet': [
        ('stat', 'Readings applied / s', 'cps', (0, 0, 4, 5), 'red|yellow 1|green 10', '',
         ['sum(rate(meterwatch_readings_applied_total[$__rate_interval]))']),
        ('stat', 'Meters reporting', 'short', (4, 0, 4, 5), 'red|green 1', '',
         ['sum(meterwatch_area_meters_reporting{area=~"$area"})']),
        ('gauge', 'Reporting vs expected', 'percentunit', (8, 0, 4, 5), 'red|orange 0.9|yellow 0.95|green 0.98', '0..1',
         ['sum(meterwatch_area_meters_reporting{area=~"$area"}) / sum(meterwatch_area_meters_expected{area=~"$area"})']),
        ('gauge', 'Voltage compliance', 'percentunit', (12, 0, 4, 5), 'red|orange 0.9|yellow 0.95|green 0.98', '0..1',
         ['sum(meterwatch_area_voltage_meters{band="within",area=~"$area"}) / sum(meterwatch_area_voltage_meters{area=~"$area"})']),
        ('stat', 'Critical conditions open', 'short', (16, 0, 4, 5), 'green|red 1', '',
         ['sum(meterwatch_alerts_open{severity="critical"})']),
        ('stat', 'Meters with theft suspicions', 'short', (20, 0, 4, 5), 'green|orange 1|red 10', '',
         ['sum(meterwatch_area_theft_suspected_meters{area=~"$area"})']),
        ('timeseries', 'Readings / s', 'cps', (0, 5, 12, 8), 'green', '',
         ['sum(rate(meterwatch_readings_consumed_total[$__rate_interval]))',
          'sum(rate(meterwatch_readings_applied_total[$__rate_interval]))',
          'sum(rate(meterwatch_readings_rejected_total[$__rate_interval]))']),
        ('timeseries', 'Meters reporting vs expected', 'short', (12, 5, 12, 8), 'green', '',
         ['sum(meterwatch_area_meters_reporting{area=~"$area"})',
          'sum(meterwatch_area_meters_expected{area=~"$area"})']),
        ('timeseries', 'Open conditions by type and severity', 'short', (0, 13, 12, 8), 'green', '',
         ['sum by (type, severity) (meterwatch_alerts_open)']),
        ('timeseries', 'Alerts raised by type (in window)', 'short', (12, 13, 12, 8), 'green', '',
         ['sum by (type) (increase(meterwatch_alerts_total{status="open"}[$window]))']),
        ('bargauge', 'Top areas: theft suspicions open', 'short', (0, 21, 8, 8), 'green|yellow 1|red 10', '',
         ['topk(10, sum by (area) (meterwatch_area_theft_suspicions_open{area=~"$area"}))']),
        ('bargauge', 'Lowest voltage compliance', 'percentunit', (8, 21, 8, 8), 'red|orange 0.9|yellow 0.95|green 0.98', '0..1',
         ['bottomk(10, min by (area) (meterwatch_area_voltage_compliance_ratio{area=~"$area"}))']),
        ('bargauge', 'Top areas: line-loss rate', 'percentunit', (16, 21, 8, 8), 'green|yellow 0.06|red 0.1', '0..',
         ['topk(10, max by (area) (meterwatch_area_line_loss_ratio{area=~"$area"}))']),
    ],
    'meterwatch-alerts': [
        ("row", 'Raised by the detectors', "", (0, 0, 24, 1), "", "", []),
        ('timeseries', 'Alerts raised / h by type', 'short', (0, 1, 12, 8), 'green', '',
         ['sum by (type) (rate(meterwatch_alerts_total{status="open"}[$__rate_interval])) * 3600']),
        ('timeseries', 'Alerts raised / h by severity', 'short', (12, 1, 12, 8), 'green', '',
         ['sum by (severity) (rate(meterwatch_alerts_total{status="open"}[$__rate_interval])) * 3600']),
        ('stat', 'Raised in window', 'short', (0, 9, 6, 5), 'green|yellow 50|red 500', '',
         ['sum(increase(meterwatch_alerts_total{status="open"}[$window]))']),
        ('stat', 'Conditions open', 'short', (6, 9, 6, 5), 'green|yellow 10|red 100', '',
         ['sum(meterwatch_alerts_open)']),
        ('stat', 'Critical open', 'short', (12, 9, 6, 5), 'green|red 1', '',
         ['sum(meterwatch_alerts_open{severity="critical"})']),
        ('stat', 'Theft alerts raised in window (selected areas)', 'short', (18, 9, 6, 5), 'green|orange 1|red 10', '',
         ['sum(increase(meterwatch_theft_alerts_total{area=~"$area"}[$window]))']),
        ('bargauge', 'Open conditions by type and subtype', 'short', (0, 14, 12, 9), 'green|yellow 1|red 10', '',
         ['topk(15, sum by (type, subtype) (meterwatch_alerts_open))']),
        ('timeseries', 'Alert messages by status', 'short', (12, 14, 12, 9), 'green', '',
         ['sum by (status) (rate(meterwatch_alerts_total[$__rate_interval])) * 3600']),
        ("row", 'Lifecycle (console)', "", (0, 23, 24, 1), "", "", []),
        ('timeseries', 'Open vs acknowledged vs resolved', 'short', (0, 24, 12, 8), 'green', '',
         ['sum by (state) (meterwatch_console_alerts)']),
        ('stat', 'Unacknowledged critical', 'short', (12, 24, 6, 8), 'green|red 1', '',
         ['sum(meterwatch_console_alerts{state="new",severity="critical"})']),
        ('gauge', 'Resolved share', 'percentunit', (18, 24, 6, 8), 'red|yellow 0.5|green 0.8', '0..1',
         ['sum(meterwatch_console_alerts{state="resolved"}) / sum(meterwatch_console_alerts)']),
        ('timeseries', 'Time to acknowledge', 's', (0, 32, 12, 8), 'green', '',
         ['histogram_quantile(0.5, sum by (le) (rate(meterwatch_console_time_to_acknowledge_seconds_bucket[$__rate_interval])))',
          'histogram_quantile(0.9, sum by (le) (rate(meterwatch_console_time_to_acknowledge_seconds_bucket[$__rate_interval])))']),
        ('timeseries', 'Acknowledged / h', 'short', (12, 32, 12, 8), 'green', '',
         ['sum(rate(meterwatch_console_time_to_acknowledge_seconds_count[$__rate_interval])) * 3600']),
    ],
    'meterwatch-voltage': [
        ('gauge', 'Compliance (selected areas)', 'percentunit', (0, 0, 6, 6), 'red|orange 0.9|yellow 0.95|green 0.98', '0..1',
         ['sum(meterwatch_area_voltage_meters{band="within",area=~"$area"}) / sum(meterwatch_area_voltage_meters{area=~"$area"})']),
        ('stat', 'Meters under the limit', 'short', (6, 0, 6, 6), 'green|yellow 1|red 10', '',
         ['sum(meterwatch_area_voltage_meters{band="under",area=~"$area"})']),
        ('stat', 'Meters over the limit', 'short', (12, 0, 6, 6), 'green|yellow 1|red 10', '',
         ['sum(meterwatch_area_voltage_meters{band="over",area=~"$area"})']),
        ('stat', 'Voltage conditions open', 'short', (18, 0, 6, 6), 'green|yellow 1|red 10', '',
         ['sum(meterwatch_alerts_open{type="voltage"})']),
        ('timeseries', 'Compliance by area', 'percentunit', (0, 6, 12, 8), 'red|orange 0.9|yellow 0.95|green 0.98', '0..1',
         ['min by (area) (meterwatch_area_voltage_compliance_ratio{area=~"$area"})']),
        ('timeseries', 'Under / over-voltage meters', 'short', (12, 6, 12, 8), 'green', '',
         ['sum by (band) (meterwatch_area_voltage_meters{band=~"under|over",area=~"$area"})']),
        ('heatmap', 'Voltage distribution (share of nominal)', 'short', (0, 14, 12, 9), 'green', '',
         ['sum by (le) (increase(meterwatch_meter_voltage_nominal_ratio_bucket{area=~"$area"}[$__rate_interval]))']),
        ('timeseries', 'Area mean voltage', 'volt', (12, 14, 12, 9), 'green', '',
         ['avg by (area) (meterwatch_area_voltage_mean_volts{area=~"$area"})']),
        ('timeseries', 'Voltage conditions open by subtype and severity', 'short', (0, 23, 12, 8), 'green', '',
         ['sum by (subtype, severity) (meterwatch_alerts_open{type="voltage"})']),
        ('timeseries', 'Voltage alerts raised (in window)', 'short', (12, 23, 12, 8), 'green', '',
         ['sum by (subtype) (increase(meterwatch_alerts_total{type="voltage",status="open"}[$window]))']),
        ("row", "Compliance over the standard's period", "", (0, 31, 24, 1), "", "", []),
        ('stat', 'Worst area this period', 'percentunit', (0, 32, 6, 6), 'red|orange 0.9|yellow 0.95|green 0.98', '0..1',
         ['min(meterwatch_area_voltage_period_compliance_ratio{period="current",area=~"$area"})']),
        ('stat', 'Meters failing the standard this period', 'short', (6, 32, 6, 6), 'green|yellow 1|red 10', '',
         ['sum(meterwatch_area_voltage_period_meters{state="failing",period="current",area=~"$area"})']),
        ('stat', 'Meters measured this period', 'short', (12, 32, 6, 6), 'red|green 1', '',
         ['sum(meterwatch_area_voltage_period_meters{state="measured",period="current",area=~"$area"})']),
        ('gauge', 'Period coverage', 'percentunit', (18, 32, 6, 6), 'red|orange 0.9|yellow 0.95|green 0.98', '0..1',
         ['min(meterwatch_area_voltage_period_coverage_ratio{period="current",area=~"$area"})']),
        ('bargauge', 'Worst areas: compliance this period', 'percentunit', (0, 38, 8, 9), 'red|orange 0.9|yellow 0.95|green 0.98', '0..1',
         ['bottomk(10, min by (area) (meterwatch_area_voltage_period_compliance_ratio{period="current",area=~"$area"}))']),
        ('table', 'Compliance by area and period (current, last completed)', 'percentunit', (8, 38, 8, 9), 'red|orange 0.9|yellow 0.95|green 0.98', '',
         ['min by (area, standard, period) (meterwatch_area_voltage_period_compliance_ratio{area=~"$area"})']),
        ('table', 'Dip table: dips by residual voltage (% of Un)', 'short', (16, 38, 8, 9), 'green|yellow 1|red 10', '',
         ['sum by (residual, period) (meterwatch_area_voltage_period_dips{area=~"$area"})']),
        ('timeseries', 'Compliance by area over the period', 'percentunit', (0, 47, 12, 8), 'red|orange 0.9|yellow 0.95|green 0.98', '0..1',
         ['min by (area) (meterwatch_area_voltage_period_compliance_ratio{period="current",area=~"$area"})']),
        ('timeseries', 'Time beyond the outer band by area', 'percentunit', (12, 47, 12, 8), 'green|red 0.0001', '0..',
         ['max by (area) (meterwatch_area_voltage_period_outside_outer_ratio{period="current",area=~"$area"})']),
        ('bargauge', 'Swells by magnitude (% of Un)', 'short', (0, 55, 24, 5), 'green|yellow 1|red 10', '',
         ['sum by (magnitude) (meterwatch_area_voltage_period_swells{period="current",area=~"$area"})']),
    ],
    'meterwatch-losses': [
        ('stat', 'Meters with theft suspicions', 'short', (0, 0, 6, 5), 'green|orange 1|red 10', '',
         ['sum(meterwatch_area_theft_suspected_meters{area=~"$area"})']),
        ('stat', 'Theft suspicions open', 'short', (6, 0, 6, 5), 'green|orange 1|red 10', '',
         ['sum(meterwatch_area_theft_suspicions_open{area=~"$area"})']),
        ('stat', 'Highest line-loss rate', 'percentunit', (12, 0, 6, 5), 'green|yellow 0.06|red 0.1', '',
         ['max(meterwatch_area_line_loss_ratio{area=~"$area"})']),
        ('stat', 'Theft alerts raised in window', 'short', (18, 0, 6, 5), 'green|orange 1|red 10', '',
         ['sum(increase(meterwatch_theft_alerts_total{area=~"$area"}[$window]))']),
        ('timeseries', 'Line-loss rate by area', 'percentunit', (0, 5, 12, 8), 'green|yellow 0.06|red 0.1', '',
         ['max by (area) (meterwatch_area_line_loss_ratio{area=~"$area"})']),
        ('timeseries', "Line loss above the area's normal", 'percentunit', (12, 5, 12, 8), 'green|yellow 0.02|red 0.05', '',
         ['meterwatch:area_line_loss_excess:ratio{area=~"$area"}']),
        ('bargauge', 'Theft suspicions open by area', 'short', (0, 13, 8, 9), 'green|yellow 1|red 10', '',
         ['sum by (area) (meterwatch_area_theft_suspicions_open{area=~"$area"})']),
        ('bargauge', 'Theft suspicions open by indicator', 'short', (8, 13, 8, 9), 'green|yellow 1|red 10', '',
         ['sum by (indicator) (meterwatch_area_theft_suspicions_open{area=~"$area"})']),
        ('table', 'Theft suspicions by area and indicator', 'short', (16, 13, 8, 9), 'green|yellow 1|red 10', '',
         ['sum by (area, indicator) (meterwatch_area_theft_suspicions_open{area=~"$area"})']),
        ('timeseries', 'Theft alerts raised by indicator (in window)', 'short', (0, 22, 24, 8), 'green', '',
         ['sum by (indicator) (increase(meterwatch_theft_alerts_total{area=~"$area"}[$window]))']),
    ],
    'meterwatch-pipeline': [
        ('stat', 'Workers up', 'short', (0, 0, 4, 5), 'red|yellow 1|green 2', '',
         ['sum(up{job="meterwatch-worker"})']),
        ('stat', 'Readings consumed / s', 'cps', (4, 0, 4, 5), 'red|green 1', '',
         ['sum(rate(meterwatch_readings_consumed_total[$__rate_interval]))']),
        ('stat', 'Consumer lag', 'short', (8, 0, 4, 5), 'green|yellow 1000|red 100000', '',
         ['sum(meterwatch:consumer_lag_messages:sum)']),
        ('stat', 'Reject ratio', 'percentunit', (12, 0, 4, 5), 'green|yellow 0.01|red 0.05', '',
         ['meterwatch:readings_rejected:ratio_rate5m']),
        ('stat', 'p95 produce -> applied', 's', (16, 0, 4, 5), 'green|yellow 5|red 60', '',
         ['meterwatch:produce_to_applied_seconds:quantile_rate5m{quantile="0.95"}']),
        ('stat', 'Dead letters in window', 'short', (20, 0, 4, 5), 'green|red 1', '',
         ['sum(increase(meterwatch_deadletter_total[$window]))']),
        ('timeseries', 'Throughput', 'cps', (0, 5, 12, 8), 'green', '',
         ['sum(rate(meterwatch_messages_consumed_total[$__rate_interval]))',
          'sum(rate(meterwatch_readings_consumed_total[$__rate_interval]))',
          'sum(rate(meterwatch_readings_applied_total[$__rate_interval]))',
          'sum(rate(meterwatch_readings_duplicate_total[$__rate_interval]))']),
        ('timeseries', 'Bytes consumed / s', 'Bps', (12, 5, 12, 8), 'green', '',
         ['sum by (instance) (rate(meterwatch_message_bytes_total[$__rate_interval]))']),
        ('timeseries', 'Consumer lag by partition', 'short', (0, 13, 12, 8), 'green', '',
         ['sum by (topic, partition) (meterwatch_consumer_lag_messages)']),
        ('timeseries', 'Rejects by reason', 'cps', (12, 13, 12, 8), 'green', '',
         ['sum by (reason) (rate(meterwatch_readings_rejected_total[$__rate_interval]))']),
        ('timeseries', 'Latency: produce -> applied', 's', (0, 21, 12, 8), 'green', '',
         ['meterwatch:produce_to_applied_seconds:quantile_rate5m{quantile="0.5"}',
          'meterwatch:produce_to_applied_seconds:quantile_rate5m{quantile="0.95"}',
          'meterwatch:produce_to_applied_seconds:quantile_rate5m{quantile="0.99"}']),
        ('timeseries', 'Latency: applied -> alert acknowledged', 's', (12, 21, 12, 8), 'green', '',
         ['histogram_quantile(0.5, sum by (le) (rate(meterwatch_applied_to_alert_seconds_bucket[$__rate_interval])))',
          'histogram_quantile(0.95, sum by (le) (rate(meterwatch_applied_to_alert_seconds_bucket[$__rate_interval])))',
          'histogram_quantile(0.95, sum by (le) (rate(meterwatch_produce_to_alert_seconds_bucket[$__rate_interval])))']),
        ('timeseries', 'Detector time per reading', 's', (0, 29, 12, 8), 'green', '',
         ['meterwatch:detector_seconds_per_reading:rate5m',
          'histogram_quantile(0.95, sum by (le) (rate(meterwatch_area_batch_seconds_bucket[$__rate_interval])))']),
        ('timeseries', 'State: meters and areas per worker', 'short', (12, 29, 12, 8), 'green', '',
         ['sum by (instance) (meterwatch_meters_tracked)',
          'sum by (instance) (meterwatch_areas_tracked)']),
        ('timeseries', 'Faust: rebalances and send errors (in window)', 'short', (0, 37, 12, 8), 'green', '',
         ['sum by (instance) (increase(meterwatch_faust_rebalances_total[$window]))',
          'sum by (instance) (increase(meterwatch_faust_send_errors_total[$window]))']),
        ('timeseries', 'Faust: commit and send latency (median)', 's', (12, 37, 12, 8), 'green', '',
         ['max by (instance) (meterwatch_faust_commit_latency_seconds)',
          'max by (instance) (meterwatch_faust_send_latency_seconds)']),
    ],
}


def _invariants(d: dict) -> list[tuple]:
    """The projection of a dashboard's JSON that ``PANELS_BEFORE_SDK`` records."""
    out = []
    for p in d["panels"]:
        g = p["gridPos"]
        pos = (g["x"], g["y"], g["w"], g["h"])
        if p["type"] == "row":
            out.append(("row", p["title"], "", pos, "", "", []))
            continue
        dflt = p["fieldConfig"]["defaults"]
        first, *rest = dflt["thresholds"]["steps"]
        thresholds = "|".join([first["color"]] + [f'{s["color"]} {s["value"]:g}' for s in rest])
        bound = lambda k: "" if dflt.get(k) is None else f"{dflt[k]:g}"  # noqa: E731
        span = f"{bound('min')}..{bound('max')}" if {"min", "max"} & dflt.keys() else ""
        out.append((p["type"], p["title"], dflt["unit"], pos, thresholds, span,
                    [t["expr"] for t in p["targets"]]))
    return out


def test_every_panel_query_unit_threshold_and_place_survived_the_sdk_port():
    got = {}
    for fn in G.DASHBOARDS.values():
        d = G.dashboard_json(fn())
        got[d["uid"]] = _invariants(d)
    assert got.keys() == PANELS_BEFORE_SDK.keys()
    for uid, want in PANELS_BEFORE_SDK.items():
        assert [p[1] for p in got[uid]] == [p[1] for p in want], uid
        for new, old in zip(got[uid], want):
            assert new == old, (uid, old[1])


def test_every_setting_of_the_description_reaches_the_json():
    """What the table above leaves out, against the description in generate.py: legends,
    instant or range, query formats, descriptions, sizes, stacking, the heatmap's axis."""
    for fn in G.DASHBOARDS.values():
        desc = fn()
        d = G.dashboard_json(desc)
        assert (d["uid"], d["title"], d["description"], d["tags"]) == (
            desc.uid, desc.title, desc.description, list(desc.tags))
        assert [p["title"] for p in d["panels"]] == [item.title for item in desc.panels]
        for item, p in zip(desc.panels, d["panels"]):
            if isinstance(item, G.Row):
                assert p["type"] == "row" and p["collapsed"] is False
                continue
            assert (p["type"], p["gridPos"]["w"], p["gridPos"]["h"]) == (item.kind, item.w, item.h)
            assert p.get("description", "") == item.description
            assert [(t["refId"], t["expr"], t["legendFormat"], t["instant"], t["range"],
                     t["format"], t["editorMode"]) for t in p["targets"]] == [
                (chr(ord("A") + i), q.expr, q.legend or "__auto", q.instant, not q.instant,
                 q.fmt, "code") for i, q in enumerate(item.queries)]
            if item.kind in ("timeseries", "heatmap"):
                assert p["interval"] == "15s"
            if item.kind == "timeseries":
                custom = p["fieldConfig"]["defaults"]["custom"]
                assert custom["stacking"]["mode"] == ("normal" if item.stack else "none")
                assert custom["fillOpacity"] == (10 if item.stack else 0)
                assert custom["thresholdsStyle"]["mode"] == ("line" if item.thresholds else "off")
            if item.kind == "heatmap":
                assert p["options"]["calculate"] is False
                assert p["options"]["yAxis"]["unit"] == item.y_unit == "percentunit"


def test_dashboard_settings_links_and_variables_as_before_the_sdk_port():
    for path in DASH_FILES:
        d = load(path)
        assert (d["refresh"], d["time"], d["timezone"], d["graphTooltip"], d["editable"]) == (
            "30s", {"from": "now-6h", "to": "now"}, "browser", 1, True)
        assert d["timepicker"]["refresh_intervals"] == ["10s", "30s", "1m", "5m", "15m", "1h"]
        assert [(lk["type"], lk["tags"], lk["asDropdown"], lk["includeVars"], lk["keepTime"])
                for lk in d["links"]] == [("dashboards", ["meterwatch"], True, True, True)]
        assert [(a["name"], a["builtIn"], a["hide"]) for a in d["annotations"]["list"]] == [
            ("Annotations & Alerts", 1, True)]
        area, window = d["templating"]["list"]
        assert (area["name"], area["refresh"], area["sort"], area["current"]["value"]) == (
            "area", 2, 1, ["$__all"])
        assert (window["name"], window["query"], window["current"]["value"]) == (
            "window", "5m,15m,1h,6h,1d,7d", "1h")
        assert [o["value"] for o in window["options"]] == window["query"].split(",")
