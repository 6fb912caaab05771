"""The compliance report an engineer sends, run as the command (``meterwatch
voltage-report``) over a readings file and a registry, against values computed by hand."""

import csv
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

LON = "Europe/London"
T0 = int(datetime(2013, 5, 6, tzinfo=ZoneInfo(LON)).timestamp())  # a Monday


def write_inputs(tmp_path):
    reg = tmp_path / "registry.csv"
    with open(reg, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["meter_id", "customer_id", "area_id", "phase", "nominal_voltage",
                    "account_manager", "tariff", "solar", "care", "role", "rated_current"])
        w.writerow(["M1", "C1", "A", "A", 230, "mgr", "residential", "false", "false", "customer", 60])
        w.writerow(["M2", "C2", "A", "A", 230, "mgr", "residential", "false", "false", "customer", 60])
        w.writerow(["M3", "C3", "B", "ABC", 230, "mgr", "residential", "false", "false", "customer", 60])
        w.writerow(["M4", "C4", "B", "B", 230, "mgr", "residential", "false", "false", "customer", 60])
        w.writerow(["TB", "", "B", "ABC", 230, "", "residential", "false", "false", "area", 400])
    week = 672
    rows = []

    def meter(mid, v, vmin=None, vmax=None, n=week):
        for k in range(n):
            rows.append([mid, T0 + 900 * (k + 1), 900, 0.1, v[k],
                         v[k] if vmin is None else vmin[k], v[k] if vmax is None else vmax[k]])

    meter("M1", np.full(week + 96, 230.0), n=week + 96)  # and a day of the next week
    v2, vmin2 = np.full(week, 230.0), np.full(week, 225.0)
    v2[:40] = 200.0  # 40 quarter hours below -10 %: 632 / 672 within, fails
    vmin2[:40] = 195.0
    vmin2[500] = 100.0  # a dip to 43 % of Un: the 70 > u >= 40 row
    meter("M2", v2, vmin2)
    meter("M3", np.full(100, 230.0), n=100)  # 100 of 672 quarter hours: not judged
    v4, vmax4 = np.full(week, 230.0), np.full(week, 235.0)
    v4[10] = 260.0  # beyond +10 %: the week fails whatever the share
    vmax4[10] = 265.0  # (a high mean: not a swell)
    vmax4[20] = 260.0  # a swell to 113 %
    meter("M4", v4, vmax=vmax4)
    meter("TB", np.full(week, 100.0))  # the area's own meter is not a customer's supply
    path = tmp_path / "readings.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["meter_id", "ts", "interval_s", "kwh", "voltage", "voltage_min", "voltage_max"])
        w.writerows(rows)
    return reg, path


def report(tmp_path, fmt):
    reg, path = write_inputs(tmp_path)
    out = tmp_path / f"report.{fmt}"
    subprocess.run([sys.executable, "-m", "stream.cli", "voltage-report", "--readings", str(path),
                    "--registry", str(reg), "--standard", "en50160", "--local-tz", LON,
                    "--from", "2013-05-06", "--to", "2013-05-13", "--format", fmt,
                    "--out", str(out)], check=True, capture_output=True, text=True, timeout=120)
    return out.read_text()


def test_the_csv_report_has_one_row_per_area_and_week_with_hand_computed_figures(tmp_path):
    rows = {r["area_id"]: r for r in csv.DictReader(report(tmp_path, "csv").splitlines())}
    assert set(rows) == {"A", "B"}  # the next week is outside --to
    a, b = rows["A"], rows["B"]
    assert {k: a[k] for k in ("period", "meters", "complying", "failing", "not_judged")} == {
        "period": "2013-05-06", "meters": "2", "complying": "1", "failing": "1", "not_judged": "0"}
    assert float(a["within_share"]) == pytest.approx((672 + 632) / 1344, abs=1e-6)
    assert a["dips_70>u>=40"] == "1" and a["ieee1159_sag"] == "1"
    assert a["worst_meters"] == "M2:0.9405"
    assert {k: b[k] for k in ("meters", "complying", "failing", "not_judged")} == {
        "meters": "2", "complying": "0", "failing": "1", "not_judged": "1"}
    assert float(b["within_share"]) == pytest.approx(771 / 772, abs=1e-6)
    assert float(b["outside_outer_share"]) == pytest.approx(1 / 772, abs=1e-6)
    assert b["swells_110-120"] == "1" and b["swells_120+"] == "0"


def test_the_markdown_report_states_the_test_and_lists_the_worst_area_first(tmp_path):
    md = report(tmp_path, "md")
    assert md.startswith("# Voltage compliance report: en50160")
    assert ">= 95% of the 10-minute means within Un +-10 %" in md
    assert "## 2013-05-06" in md and "2013-05-13" not in md.split("periods starting")[1].split("\n")[1:]
    table = [ln for ln in md.splitlines() if ln.startswith("| A ") or ln.startswith("| B ")]
    assert [ln.split("|")[1].strip() for ln in table] == ["A", "B"]  # 97.02 % before 99.87 %
    assert "| 97.02% |" in table[0] and "M2:0.9405" in table[0]


def test_a_missing_readings_file_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "stream.cli", "voltage-report", "--readings",
                        str(tmp_path / "none.csv"), "--standard", "gbt12325"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "does not exist" in r.stderr
