"""Prometheus rules and configs, checked by Prometheus' own tools (Debian's ``promtool``
and ``amtool``, the versions CI installs with apt)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dashboards"))
import generate as G  # noqa: E402

PROM = ROOT / "dashboards" / "prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    tool = Path(args[0])
    if not tool.exists():
        pytest.fail(f"{tool.name} is not installed (apt-get install prometheus prometheus-alertmanager)")
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_rule_files_pass_promtool_check_rules():
    files = sorted(str(p) for p in (PROM / "rules").glob("*.yml"))
    assert len(files) == 2
    r = run(PROMTOOL, "check", "rules", *files)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(G.RECORDING)} rules found" in r.stdout
    assert f"SUCCESS: {len(G.ALERTS)} rules found" in r.stdout


def test_prometheus_config_with_its_rules_passes_promtool_check_config(tmp_path):
    # The compose config loads /etc/prometheus/rules/*.yml; point it at the repository's
    # rules so promtool checks them as part of the config (it does load rule_files).
    text = (PROM / "prometheus.yml").read_text()
    assert "/etc/prometheus/rules/*.yml" in text
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(text.replace("/etc/prometheus/rules/*.yml", str(PROM / "rules" / "*.yml")))
    r = run(PROMTOOL, "check", "config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 2 rule files found" in r.stdout + r.stderr


def test_local_demo_config_passes_promtool_check_config():
    r = run(PROMTOOL, "check", "config", str(PROM / "prometheus-local.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 2 rule files found" in r.stdout + r.stderr


def test_alerting_rules_unit_tests_pass_promtool_test_rules():
    r = run(PROMTOOL, "test", "rules", "tests/pipeline_alerts_test.yml", cwd=PROM)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_unit_tests_cover_the_three_pipeline_troubles():
    text = (PROM / "tests" / "pipeline_alerts_test.yml").read_text()
    for name in ("MeterwatchWorkerDown", "MeterwatchNoWorkerUp", "MeterwatchConsumerLagGrowing",
                 "MeterwatchRejectRateHigh", "MeterwatchDeadLetters"):
        # each alert fires in one case and stays silent in another
        assert text.count(f"alertname: {name}") >= 2, name
    assert {a.alert for a in G.ALERTS} == {"MeterwatchWorkerDown", "MeterwatchNoWorkerUp",
                                           "MeterwatchConsumerLagGrowing",
                                           "MeterwatchRejectRateHigh", "MeterwatchDeadLetters"}


def test_a_broken_rule_is_caught(tmp_path):
    """The check is real: a typo'd function fails promtool."""
    bad = tmp_path / "bad.yml"
    bad.write_text('groups:\n  - name: x\n    rules:\n      - record: a:b:c\n'
                   '        expr: sum(rat(meterwatch_readings_applied_total[1m]))\n')
    r = run(PROMTOOL, "check", "rules", str(bad))
    assert r.returncode != 0


def test_recording_rule_names_follow_level_metric_operations():
    for r in G.RECORDING:
        level, metric, ops = r.record.split(":")
        assert level == "meterwatch" and metric and ops


def test_alertmanager_config_passes_amtool():
    r = run(AMTOOL, "check-config", str(ROOT / "dashboards" / "alertmanager" / "alertmanager.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
