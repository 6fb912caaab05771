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
    assert f"uid: {G.DS['uid']}" in prov and "type: prometheus" in prov
    for path in DASH_FILES:
        d = load(path)
        for p in panels(d):
            assert p["datasource"] == G.DS, (path.name, p["title"])
            for t in p["targets"]:
                assert t["datasource"] == G.DS, (path.name, p["title"])
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"] == G.DS


def test_template_variables_area_and_window_and_a_time_range():
    for path in DASH_FILES:
        d = load(path)
        vs = {v["name"]: v for v in d["templating"]["list"]}
        area = vs["area"]
        assert area["type"] == "query" and area["multi"] and area["includeAll"]
        assert area["allValue"] == ".*"
        assert "label_values(meterwatch_area_meters_expected, area)" in area["definition"]
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
