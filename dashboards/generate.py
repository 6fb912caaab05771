"""The control room's Grafana dashboards and Prometheus rules, from one description.

    python dashboards/generate.py          # write the files
    python dashboards/generate.py --check  # exit 1 if a written file is out of date

Writes ``dashboards/grafana/dashboards/*.json`` and ``dashboards/prometheus/rules/*.yml``.
The dashboards' JSON is built by Grafana's own as-code SDK (``grafana-foundation-sdk``,
the ``dashboards`` extra of pyproject.toml), from the compact panel descriptions below.
Everything a panel or rule queries is listed here, so the tests can evaluate every
expression against a real Prometheus (``tests/dashboards/test_prometheus_live.py``).

Conventions: one datasource (uid ``meterwatch-prometheus``, provisioned from
``grafana/provisioning/datasources``); every dashboard has the template variables
``area`` (multi-select, All = ``.*``) and ``window`` (the span of "in the last ..."
panels) and a default time range; every panel has a unit; stat, gauge and bar-gauge
panels have coloured thresholds. Series from the console process are
``meterwatch_console_*`` (see :data:`CONSOLE_PREFIX`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import (bargauge, common, gauge, heatmap, prometheus, stat,
                                             table, timeseries)
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

HERE = Path(__file__).resolve().parent
DASH_DIR = HERE / "grafana" / "dashboards"
RULES_DIR = HERE / "prometheus" / "rules"
DS = dm.DataSourceRef(type_val="prometheus", uid="meterwatch-prometheus")
WORKER_JOB = "meterwatch-worker"
CONSOLE_JOB = "meterwatch-console"
#: Series exported by the console process (alert lifecycle), not by the workers.
CONSOLE_PREFIX = "meterwatch_console_"
AREA = 'area=~"$area"'

# -- colours ------------------------------------------------------------------------------
GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"


def steps(*pairs) -> list[dm.Threshold]:
    """Thresholds: ``steps(GREEN, (YELLOW, 10), (RED, 100))`` -> base colour then from-values."""
    base, *rest = pairs
    return [dm.Threshold(color=base, value=None)] + [dm.Threshold(color=c, value=v)
                                                     for c, v in rest]


HIGH_BAD = steps(GREEN, (YELLOW, 1), (RED, 10))
LOW_BAD_RATIO = steps(RED, (ORANGE, 0.9), (YELLOW, 0.95), (GREEN, 0.98))


@dataclass
class Q:
    expr: str
    legend: str = ""
    instant: bool = False
    fmt: str = "time_series"  # or "heatmap", "table"


@dataclass
class Panel:
    title: str
    kind: str  # timeseries | stat | gauge | bargauge | heatmap | table
    queries: list[Q]
    unit: str
    w: int = 12
    h: int = 8
    description: str = ""
    thresholds: list[dm.Threshold] | None = None
    min: float | None = None
    max: float | None = None
    stack: bool = False
    y_unit: str = ""  # heatmap: the unit of its bucket bounds (the y axis)


@dataclass
class Row:
    title: str


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list
    tags: tuple[str, ...] = ("meterwatch",)


def _rate(metric: str, sel: str = "", by: str = "", w: str = "$__rate_interval") -> str:
    inner = f"rate({metric}{{{sel}}}[{w}])" if sel else f"rate({metric}[{w}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def _quantile(q: float, hist: str, w: str = "$__rate_interval", sel: str = "") -> str:
    s = f"{{{sel}}}" if sel else ""
    return f"histogram_quantile({q}, sum by (le) (rate({hist}_bucket{s}[{w}])))"


# -- the dashboards -----------------------------------------------------------------------
def fleet_overview() -> Dashboard:
    return Dashboard("meterwatch-fleet", "meterwatch / Fleet overview",
                     "Readings flowing, meters reporting, alerts open, areas that need a look.", [
        Panel("Readings applied / s", "stat", [Q(_rate("meterwatch_readings_applied_total"))],
              "cps", w=4, h=5, thresholds=steps(RED, (YELLOW, 1), (GREEN, 10)),
              description="Readings applied to meter state per second, all workers."),
        Panel("Meters reporting", "stat",
              [Q(f"sum(meterwatch_area_meters_reporting{{{AREA}}})")], "short", w=4, h=5,
              thresholds=steps(RED, (GREEN, 1)),
              description="Customer meters that reported their area's last complete interval."),
        Panel("Reporting vs expected", "gauge",
              [Q(f"sum(meterwatch_area_meters_reporting{{{AREA}}}) / "
                 f"sum(meterwatch_area_meters_expected{{{AREA}}})")],
              "percentunit", w=4, h=5, thresholds=LOW_BAD_RATIO, min=0, max=1,
              description="Share of registered customer meters that reported the last interval."),
        Panel("Voltage compliance", "gauge",
              [Q(f'sum(meterwatch_area_voltage_meters{{band="within",{AREA}}}) / '
                 f"sum(meterwatch_area_voltage_meters{{{AREA}}})")],
              "percentunit", w=4, h=5, thresholds=LOW_BAD_RATIO, min=0, max=1,
              description="Share of reporting meters within the voltage standard's limits."),
        Panel("Critical conditions open", "stat",
              [Q('sum(meterwatch_alerts_open{severity="critical"})')], "short", w=4, h=5,
              thresholds=steps(GREEN, (RED, 1))),
        Panel("Meters with theft suspicions", "stat",
              [Q(f"sum(meterwatch_area_theft_suspected_meters{{{AREA}}})")], "short", w=4, h=5,
              thresholds=steps(GREEN, (ORANGE, 1), (RED, 10))),
        Panel("Readings / s", "timeseries", [
            Q(_rate("meterwatch_readings_consumed_total"), "consumed"),
            Q(_rate("meterwatch_readings_applied_total"), "applied"),
            Q(_rate("meterwatch_readings_rejected_total"), "rejected"),
        ], "cps"),
        Panel("Meters reporting vs expected", "timeseries", [
            Q(f"sum(meterwatch_area_meters_reporting{{{AREA}}})", "reporting"),
            Q(f"sum(meterwatch_area_meters_expected{{{AREA}}})", "expected"),
        ], "short"),
        Panel("Open conditions by type and severity", "timeseries",
              [Q("sum by (type, severity) (meterwatch_alerts_open)", "{{type}} {{severity}}")],
              "short", stack=True,
              description="Conditions the detectors hold open (they close with a later reading)."),
        Panel("Alerts raised by type (in window)", "timeseries",
              [Q('sum by (type) (increase(meterwatch_alerts_total{status="open"}[$window]))',
                 "{{type}}")], "short"),
        Panel("Top areas: theft suspicions open", "bargauge",
              [Q(f"topk(10, sum by (area) (meterwatch_area_theft_suspicions_open{{{AREA}}}))",
                 "{{area}}", instant=True)], "short", w=8, thresholds=HIGH_BAD),
        Panel("Lowest voltage compliance", "bargauge",
              [Q(f"bottomk(10, min by (area) (meterwatch_area_voltage_compliance_ratio{{{AREA}}}))",
                 "{{area}}", instant=True)], "percentunit", w=8, thresholds=LOW_BAD_RATIO,
              min=0, max=1),
        Panel("Top areas: line-loss rate", "bargauge",
              [Q(f"topk(10, max by (area) (meterwatch_area_line_loss_ratio{{{AREA}}}))",
                 "{{area}}", instant=True)], "percentunit", w=8,
              thresholds=steps(GREEN, (YELLOW, 0.06), (RED, 0.1)), min=0),
    ])


def alerts_dashboard() -> Dashboard:
    c = CONSOLE_PREFIX
    return Dashboard("meterwatch-alerts", "meterwatch / Alerts",
                     "Alerts raised by the detectors, conditions open, and the alert lifecycle "
                     "as the console records it (new, acknowledged, resolved).", [
        Row("Raised by the detectors"),
        Panel("Alerts raised / h by type", "timeseries",
              [Q('sum by (type) (rate(meterwatch_alerts_total{status="open"}[$__rate_interval])) * 3600',
                 "{{type}}")], "short", w=12,
              description="Alert opens per hour (updates and closes are not counted)."),
        Panel("Alerts raised / h by severity", "timeseries",
              [Q('sum by (severity) (rate(meterwatch_alerts_total{status="open"}[$__rate_interval])) * 3600',
                 "{{severity}}")], "short", w=12),
        Panel("Raised in window", "stat",
              [Q('sum(increase(meterwatch_alerts_total{status="open"}[$window]))')], "short",
              w=6, h=5, thresholds=steps(GREEN, (YELLOW, 50), (RED, 500))),
        Panel("Conditions open", "stat", [Q("sum(meterwatch_alerts_open)")], "short", w=6, h=5,
              thresholds=steps(GREEN, (YELLOW, 10), (RED, 100))),
        Panel("Critical open", "stat", [Q('sum(meterwatch_alerts_open{severity="critical"})')],
              "short", w=6, h=5, thresholds=steps(GREEN, (RED, 1))),
        Panel("Theft alerts raised in window (selected areas)", "stat",
              [Q(f"sum(increase(meterwatch_theft_alerts_total{{{AREA}}}[$window]))")], "short",
              w=6, h=5, thresholds=steps(GREEN, (ORANGE, 1), (RED, 10))),
        Panel("Open conditions by type and subtype", "bargauge",
              [Q("topk(15, sum by (type, subtype) (meterwatch_alerts_open))",
                 "{{type}}/{{subtype}}", instant=True)], "short", w=12, h=9, thresholds=HIGH_BAD),
        Panel("Alert messages by status", "timeseries",
              [Q("sum by (status) (rate(meterwatch_alerts_total[$__rate_interval])) * 3600",
                 "{{status}}")], "short", w=12, h=9,
              description="Messages per hour: open, update, closed."),
        Row("Lifecycle (console)"),
        Panel("Open vs acknowledged vs resolved", "timeseries",
              [Q(f"sum by (state) ({c}alerts)", "{{state}}")], "short", w=12, stack=True,
              description="Alerts in the console by state (new = open, not yet acknowledged)."),
        Panel("Unacknowledged critical", "stat",
              [Q(f'sum({c}alerts{{state="new",severity="critical"}})')], "short", w=6, h=8,
              thresholds=steps(GREEN, (RED, 1))),
        Panel("Resolved share", "gauge",
              [Q(f'sum({c}alerts{{state="resolved"}}) / sum({c}alerts)')],
              "percentunit", w=6, h=8, min=0, max=1,
              thresholds=steps(RED, (YELLOW, 0.5), (GREEN, 0.8))),
        Panel("Time to acknowledge", "timeseries", [
            Q(_quantile(0.5, f"{c}time_to_acknowledge_seconds"), "p50"),
            Q(_quantile(0.9, f"{c}time_to_acknowledge_seconds"), "p90"),
        ], "s", w=12),
        Panel("Acknowledged / h", "timeseries",
              [Q(f"sum(rate({c}time_to_acknowledge_seconds_count[$__rate_interval])) * 3600",
                 "acknowledged")], "short", w=12),
    ])


def voltage_dashboard() -> Dashboard:
    return Dashboard("meterwatch-voltage", "meterwatch / Voltage quality",
                     "Supply voltage against the configured standard (GB/T 12325, EN 50160, "
                     "ANSI C84.1): compliance by area, meters outside the limits, distribution.", [
        Panel("Compliance (selected areas)", "gauge",
              [Q(f'sum(meterwatch_area_voltage_meters{{band="within",{AREA}}}) / '
                 f"sum(meterwatch_area_voltage_meters{{{AREA}}})")],
              "percentunit", w=6, h=6, thresholds=LOW_BAD_RATIO, min=0, max=1),
        Panel("Meters under the limit", "stat",
              [Q(f'sum(meterwatch_area_voltage_meters{{band="under",{AREA}}})')], "short",
              w=6, h=6, thresholds=HIGH_BAD),
        Panel("Meters over the limit", "stat",
              [Q(f'sum(meterwatch_area_voltage_meters{{band="over",{AREA}}})')], "short",
              w=6, h=6, thresholds=HIGH_BAD),
        Panel("Voltage conditions open", "stat",
              [Q('sum(meterwatch_alerts_open{type="voltage"})')], "short", w=6, h=6,
              thresholds=HIGH_BAD),
        Panel("Compliance by area", "timeseries",
              [Q(f"min by (area) (meterwatch_area_voltage_compliance_ratio{{{AREA}}})", "{{area}}")],
              "percentunit", min=0, max=1, thresholds=LOW_BAD_RATIO),
        Panel("Under / over-voltage meters", "timeseries",
              [Q(f'sum by (band) (meterwatch_area_voltage_meters{{band=~"under|over",{AREA}}})',
                 "{{band}}")], "short", stack=True),
        Panel("Voltage distribution (share of nominal)", "heatmap",
              [Q(f"sum by (le) (increase(meterwatch_meter_voltage_nominal_ratio_bucket{{{AREA}}}"
                 f"[$__rate_interval]))", "{{le}}", fmt="heatmap")], "short", w=12, h=9,
              description="Meters' interval mean voltage over nominal; the standard's limits "
                          "(0.9, 0.93, 1.07, 1.1) are bucket bounds.",
              y_unit="percentunit"),
        Panel("Area mean voltage", "timeseries",
              [Q(f"avg by (area) (meterwatch_area_voltage_mean_volts{{{AREA}}})", "{{area}}")],
              "volt", w=12, h=9),
        Panel("Voltage conditions open by subtype and severity", "timeseries",
              [Q('sum by (subtype, severity) (meterwatch_alerts_open{type="voltage"})',
                 "{{subtype}} {{severity}}")], "short", stack=True),
        Panel("Voltage alerts raised (in window)", "timeseries",
              [Q('sum by (subtype) (increase(meterwatch_alerts_total{type="voltage",status="open"}[$window]))',
                 "{{subtype}}")], "short"),
        *period_compliance_panels(),
    ])


def period_compliance_panels() -> list:
    """Compliance as the standard states it, over its period (EN 50160: the week;
    GB/T 12325 and ANSI C84.1: the month), from the areas' accumulators."""
    cur = f'period="current",{AREA}'
    ratio = "meterwatch_area_voltage_period_compliance_ratio"
    return [
        Row("Compliance over the standard's period"),
        Panel("Worst area this period", "stat",
              [Q(f"min({ratio}{{{cur}}})")], "percentunit", w=6, h=6,
              thresholds=LOW_BAD_RATIO, min=0, max=1,
              description="Lowest share of an area's measured meter-time within the standard's "
                          "limits in the current period (EN 50160 requires 95 % a week)."),
        Panel("Meters failing the standard this period", "stat",
              [Q(f'sum(meterwatch_area_voltage_period_meters{{state="failing",{cur}}})')],
              "short", w=6, h=6, thresholds=HIGH_BAD,
              description="Meters whose period already failed the standard's test "
                          "(a voltage/noncompliant_period alert each, or one for their area)."),
        Panel("Meters measured this period", "stat",
              [Q(f'sum(meterwatch_area_voltage_period_meters{{state="measured",{cur}}})')],
              "short", w=6, h=6, thresholds=steps(RED, (GREEN, 1))),
        Panel("Period coverage", "gauge",
              [Q(f"min(meterwatch_area_voltage_period_coverage_ratio{{{cur}}})")],
              "percentunit", w=6, h=6, thresholds=LOW_BAD_RATIO, min=0, max=1,
              description="Lowest measured share of the period so far (gaps, and the period "
                          "still running, lower it)."),
        Panel("Worst areas: compliance this period", "bargauge",
              [Q(f"bottomk(10, min by (area) ({ratio}{{{cur}}}))", "{{area}}", instant=True)],
              "percentunit", w=8, h=9, thresholds=LOW_BAD_RATIO, min=0, max=1),
        Panel("Compliance by area and period (current, last completed)", "table",
              [Q(f"min by (area, standard, period) ({ratio}{{{AREA}}})", "", instant=True,
                 fmt="table")], "percentunit", w=8, h=9, thresholds=LOW_BAD_RATIO),
        Panel("Dip table: dips by residual voltage (% of Un)", "table",
              [Q(f"sum by (residual, period) (meterwatch_area_voltage_period_dips{{{AREA}}})",
                 "", instant=True, fmt="table")], "short", w=8, h=9, thresholds=HIGH_BAD,
              description="EN 50160's residual-voltage rows, from interval minima (durations "
                          "under an interval are not resolved); below 10 % is an IEEE 1159 "
                          "interruption."),
        Panel("Compliance by area over the period", "timeseries",
              [Q(f"min by (area) ({ratio}{{{cur}}})", "{{area}}")],
              "percentunit", w=12, min=0, max=1, thresholds=LOW_BAD_RATIO),
        Panel("Time beyond the outer band by area", "timeseries",
              [Q(f"max by (area) (meterwatch_area_voltage_period_outside_outer_ratio{{{cur}}})",
                 "{{area}}")], "percentunit", w=12, min=0,
              thresholds=steps(GREEN, (RED, 0.0001)),
              description="EN 50160: beyond +10 %/-15 % (none allowed); ANSI C84.1: outside "
                          "Range B; GB/T 12325: above the upper limit."),
        Panel("Swells by magnitude (% of Un)", "bargauge",
              [Q(f"sum by (magnitude) (meterwatch_area_voltage_period_swells{{{cur}}})",
                 "{{magnitude}}", instant=True)], "short", w=24, h=5, thresholds=HIGH_BAD),
    ]


def losses_dashboard() -> Dashboard:
    return Dashboard("meterwatch-losses", "meterwatch / Losses and theft",
                     "Area line-loss (area meter against its customers) and the theft "
                     "indicators the detectors hold open.", [
        Panel("Meters with theft suspicions", "stat",
              [Q(f"sum(meterwatch_area_theft_suspected_meters{{{AREA}}})")], "short", w=6, h=5,
              thresholds=steps(GREEN, (ORANGE, 1), (RED, 10))),
        Panel("Theft suspicions open", "stat",
              [Q(f"sum(meterwatch_area_theft_suspicions_open{{{AREA}}})")], "short", w=6, h=5,
              thresholds=steps(GREEN, (ORANGE, 1), (RED, 10))),
        Panel("Highest line-loss rate", "stat",
              [Q(f"max(meterwatch_area_line_loss_ratio{{{AREA}}})")], "percentunit", w=6, h=5,
              thresholds=steps(GREEN, (YELLOW, 0.06), (RED, 0.1))),
        Panel("Theft alerts raised in window", "stat",
              [Q(f"sum(increase(meterwatch_theft_alerts_total{{{AREA}}}[$window]))")], "short",
              w=6, h=5, thresholds=steps(GREEN, (ORANGE, 1), (RED, 10))),
        Panel("Line-loss rate by area", "timeseries",
              [Q(f"max by (area) (meterwatch_area_line_loss_ratio{{{AREA}}})", "{{area}}")],
              "percentunit", thresholds=steps(GREEN, (YELLOW, 0.06), (RED, 0.1)),
              description="(area meter - customers) / area meter, per complete day."),
        Panel("Line loss above the area's normal", "timeseries",
              [Q(f"meterwatch:area_line_loss_excess:ratio{{{AREA}}}", "{{area}}")],
              "percentunit", thresholds=steps(GREEN, (YELLOW, 0.02), (RED, 0.05)),
              description="Latest daily rate minus the rate the loss detector learned as normal."),
        Panel("Theft suspicions open by area", "bargauge",
              [Q(f"sum by (area) (meterwatch_area_theft_suspicions_open{{{AREA}}})", "{{area}}",
                 instant=True)], "short", w=8, h=9, thresholds=HIGH_BAD),
        Panel("Theft suspicions open by indicator", "bargauge",
              [Q(f"sum by (indicator) (meterwatch_area_theft_suspicions_open{{{AREA}}})",
                 "{{indicator}}", instant=True)], "short", w=8, h=9, thresholds=HIGH_BAD),
        Panel("Theft suspicions by area and indicator", "table",
              [Q(f"sum by (area, indicator) (meterwatch_area_theft_suspicions_open{{{AREA}}})",
                 "", instant=True, fmt="table")], "short", w=8, h=9, thresholds=HIGH_BAD),
        Panel("Theft alerts raised by indicator (in window)", "timeseries",
              [Q(f"sum by (indicator) (increase(meterwatch_theft_alerts_total{{{AREA}}}[$window]))",
                 "{{indicator}}")], "short", w=24,
              description="Includes one-off indicators (tamper flags) that hold nothing open."),
    ])


def pipeline_dashboard() -> Dashboard:
    wj = f'job="{WORKER_JOB}"'
    return Dashboard("meterwatch-pipeline", "meterwatch / Pipeline health",
                     "Throughput, consumer lag, latency, rejects and the workers themselves.", [
        Panel("Workers up", "stat", [Q(f"sum(up{{{wj}}})")], "short", w=4, h=5,
              thresholds=steps(RED, (YELLOW, 1), (GREEN, 2))),
        Panel("Readings consumed / s", "stat", [Q(_rate("meterwatch_readings_consumed_total"))],
              "cps", w=4, h=5, thresholds=steps(RED, (GREEN, 1))),
        Panel("Consumer lag", "stat", [Q("sum(meterwatch:consumer_lag_messages:sum)")], "short",
              w=4, h=5, thresholds=steps(GREEN, (YELLOW, 1000), (RED, 100000))),
        Panel("Reject ratio", "stat", [Q("meterwatch:readings_rejected:ratio_rate5m")],
              "percentunit", w=4, h=5, thresholds=steps(GREEN, (YELLOW, 0.01), (RED, 0.05))),
        Panel("p95 produce -> applied", "stat",
              [Q('meterwatch:produce_to_applied_seconds:quantile_rate5m{quantile="0.95"}')], "s",
              w=4, h=5, thresholds=steps(GREEN, (YELLOW, 5), (RED, 60))),
        Panel("Dead letters in window", "stat",
              [Q("sum(increase(meterwatch_deadletter_total[$window]))")], "short", w=4, h=5,
              thresholds=steps(GREEN, (RED, 1))),
        Panel("Throughput", "timeseries", [
            Q(_rate("meterwatch_messages_consumed_total"), "messages/s"),
            Q(_rate("meterwatch_readings_consumed_total"), "readings consumed/s"),
            Q(_rate("meterwatch_readings_applied_total"), "readings applied/s"),
            Q(_rate("meterwatch_readings_duplicate_total"), "duplicates dropped/s"),
        ], "cps"),
        Panel("Bytes consumed / s", "timeseries",
              [Q(_rate("meterwatch_message_bytes_total", by="instance"), "{{instance}}")], "Bps"),
        Panel("Consumer lag by partition", "timeseries",
              [Q("sum by (topic, partition) (meterwatch_consumer_lag_messages)",
                 "{{topic}}[{{partition}}]")], "short"),
        Panel("Rejects by reason", "timeseries",
              [Q(_rate("meterwatch_readings_rejected_total", by="reason"), "{{reason}}")], "cps",
              stack=True),
        Panel("Latency: produce -> applied", "timeseries", [
            Q('meterwatch:produce_to_applied_seconds:quantile_rate5m{quantile="0.5"}', "p50"),
            Q('meterwatch:produce_to_applied_seconds:quantile_rate5m{quantile="0.95"}', "p95"),
            Q('meterwatch:produce_to_applied_seconds:quantile_rate5m{quantile="0.99"}', "p99"),
        ], "s"),
        Panel("Latency: applied -> alert acknowledged", "timeseries", [
            Q(_quantile(0.5, "meterwatch_applied_to_alert_seconds"), "p50"),
            Q(_quantile(0.95, "meterwatch_applied_to_alert_seconds"), "p95"),
            Q(_quantile(0.95, "meterwatch_produce_to_alert_seconds"), "p95 produce -> alert"),
        ], "s"),
        Panel("Detector time per reading", "timeseries",
              [Q("meterwatch:detector_seconds_per_reading:rate5m", "all workers"),
               Q(_quantile(0.95, "meterwatch_area_batch_seconds"), "p95 area batch")], "s"),
        Panel("State: meters and areas per worker", "timeseries", [
            Q("sum by (instance) (meterwatch_meters_tracked)", "meters {{instance}}"),
            Q("sum by (instance) (meterwatch_areas_tracked)", "areas {{instance}}"),
        ], "short"),
        Panel("Faust: rebalances and send errors (in window)", "timeseries", [
            Q("sum by (instance) (increase(meterwatch_faust_rebalances_total[$window]))",
              "rebalances {{instance}}"),
            Q("sum by (instance) (increase(meterwatch_faust_send_errors_total[$window]))",
              "send errors {{instance}}"),
        ], "short"),
        Panel("Faust: commit and send latency (median)", "timeseries", [
            Q("max by (instance) (meterwatch_faust_commit_latency_seconds)", "commit {{instance}}"),
            Q("max by (instance) (meterwatch_faust_send_latency_seconds)", "send {{instance}}"),
        ], "s"),
    ])


DASHBOARDS = {
    "fleet-overview": fleet_overview,
    "alerts": alerts_dashboard,
    "voltage-quality": voltage_dashboard,
    "losses-and-theft": losses_dashboard,
    "pipeline-health": pipeline_dashboard,
}


# -- Prometheus rules ---------------------------------------------------------------------
@dataclass
class Record:
    record: str
    expr: str
    labels: dict | None = None


@dataclass
class Alert:
    alert: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    #: Parts of ``expr`` without its thresholds: they must return data whenever the
    #: pipeline runs (the live test evaluates them), while ``expr`` itself is empty
    #: as long as nothing is wrong.
    probes: tuple[str, ...] = ()


RECORDING = [
    Record("meterwatch:readings_consumed:rate1m", "sum(rate(meterwatch_readings_consumed_total[1m]))"),
    Record("meterwatch:readings_applied:rate1m", "sum(rate(meterwatch_readings_applied_total[1m]))"),
    Record("meterwatch:readings_rejected:rate1m",
           "sum by (reason) (rate(meterwatch_readings_rejected_total[1m]))"),
    # Rejects against everything read; a silent pipeline is no reject problem (0).
    Record("meterwatch:readings_rejected:ratio_rate5m",
           "clamp_max(sum(rate(meterwatch_readings_rejected_total[5m])) / "
           "clamp_min(sum(rate(meterwatch_readings_consumed_total[5m])), 1e-9), 1)"),
    Record("meterwatch:consumer_lag_messages:sum",
           "sum by (topic) (meterwatch_consumer_lag_messages)"),
    *(Record("meterwatch:produce_to_applied_seconds:quantile_rate5m",
             _quantile(q, "meterwatch_produce_to_applied_seconds", "5m"), {"quantile": str(q)})
      for q in (0.5, 0.95, 0.99)),
    Record("meterwatch:detector_seconds_per_reading:rate5m",
           "sum(rate(meterwatch_detector_seconds_total[5m])) / "
           "sum(rate(meterwatch_detector_readings_total[5m]))"),
    Record("meterwatch:meters_reporting:ratio",
           "sum(meterwatch_area_meters_reporting) / sum(meterwatch_area_meters_expected)"),
    Record("meterwatch:voltage_compliance:ratio",
           'sum(meterwatch_area_voltage_meters{band="within"}) / sum(meterwatch_area_voltage_meters)'),
    Record("meterwatch:alerts_open:sum", "sum by (type, severity) (meterwatch_alerts_open)"),
    Record("meterwatch:alerts_raised:rate5m",
           'sum by (type) (rate(meterwatch_alerts_total{status="open"}[5m]))'),
    Record("meterwatch:area_line_loss_excess:ratio",
           "max by (area) (meterwatch_area_line_loss_ratio) - "
           "max by (area) (meterwatch_area_normal_line_loss_ratio)"),
]

ALERTS = [
    Alert("MeterwatchWorkerDown", f'up{{job="{WORKER_JOB}"}} == 0', "1m", "critical",
          "meterwatch worker {{ $labels.instance }} is down",
          "Prometheus has not scraped {{ $labels.instance }} for a minute; its partitions "
          "move to the other workers after the session timeout.",
          probes=(f'up{{job="{WORKER_JOB}"}}',)),
    Alert("MeterwatchNoWorkerUp",
          f'sum(up{{job="{WORKER_JOB}"}}) < 1 or absent(up{{job="{WORKER_JOB}"}})', "1m",
          "critical", "No meterwatch worker is up",
          "No worker answers: readings are not being processed.",
          probes=(f'sum(up{{job="{WORKER_JOB}"}})',)),
    Alert("MeterwatchConsumerLagGrowing",
          "meterwatch:consumer_lag_messages:sum > 1000 and "
          "deriv(meterwatch:consumer_lag_messages:sum[10m]) > 0", "10m", "warning",
          "Consumer lag on {{ $labels.topic }} is growing",
          "Over 1,000 messages behind and still rising for 10 minutes: the workers do not "
          "keep up (add a worker or look at detector time per reading).",
          probes=("meterwatch:consumer_lag_messages:sum",
                  "deriv(meterwatch:consumer_lag_messages:sum[10m])")),
    Alert("MeterwatchRejectRateHigh", "meterwatch:readings_rejected:ratio_rate5m > 0.05", "10m",
          "warning", "More than 5% of readings are rejected",
          "{{ $value | humanizePercentage }} of readings rejected over 5 minutes; see the "
          "rejects-by-reason panel and the ami.readings.rejected topic.",
          probes=("meterwatch:readings_rejected:ratio_rate5m",)),
    Alert("MeterwatchDeadLetters", "sum(increase(meterwatch_deadletter_total[10m])) > 0", "0m",
          "warning", "Messages went to the dead-letter topic",
          "An agent failed on about {{ $value | humanize }} messages in 10 minutes (a bug or corrupt input); "
          "they are on meterwatch.deadletter with their tracebacks.",
          probes=("sum(increase(meterwatch_deadletter_total[10m]))",)),
]


def rules_files() -> dict[str, dict]:
    rec = {"groups": [{"name": "meterwatch-recording", "rules": [
        {"record": r.record, "expr": r.expr, **({"labels": r.labels} if r.labels else {})}
        for r in RECORDING]}]}
    alerts = {"groups": [{"name": "meterwatch-pipeline", "rules": [
        {"alert": a.alert, "expr": a.expr, "for": a.for_,
         "labels": {"severity": a.severity, "service": "meterwatch"},
         "annotations": {"summary": a.summary, "description": a.description,
                         "dashboard": "/d/meterwatch-pipeline"}}
        for a in ALERTS]}]}
    return {"recording.yml": rec, "alerts.yml": alerts}


# -- rendering the rules as YAML ----------------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/ -]*$")


def _scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    s = str(v)
    if _PLAIN.match(s) and s.strip() == s and s.lower() not in ("true", "false", "null", "yes", "no", "on", "off") \
            and ": " not in s and " #" not in s:
        return s
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def to_yaml(obj, indent: int = 0) -> str:
    """Block YAML for dicts/lists/scalars; ``expr`` strings as literal blocks."""
    pad = " " * indent
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:")
                out.append(to_yaml(v, indent + 2))
            elif k == "expr" and isinstance(v, str):
                out.append(f"{pad}{k}: |-")
                out.extend(f"{pad}  {line}" for line in v.splitlines())
            else:
                out.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict) and v:
                body = to_yaml(v, indent + 2).splitlines()
                out.append(f"{pad}- {body[0].lstrip()}")
                out.extend(body[1:])
            else:
                out.append(f"{pad}- {_scalar(v)}")
    else:
        out.append(f"{pad}{_scalar(obj)}")
    return "\n".join(out)



# -- rendering the dashboards with grafana-foundation-sdk ---------------------------------
# The SDK's builders write the JSON model Grafana's own schema describes (Grafana 11.2,
# the version docker-compose.yml runs): each option is a method and its values an enum,
# so a misspelt one fails here instead of being a key Grafana silently ignores.
THRESHOLD_KINDS = ("stat", "gauge", "bargauge", "table")


def _reduce() -> common.ReduceDataOptions:
    # Single-value panels show the latest sample, not a mean over the time range.
    return common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def _stat(p: Panel) -> stat.Panel:
    return (stat.Panel().reduce_options(_reduce()).color_mode(cm.BigValueColorMode.BACKGROUND)
            .graph_mode(cm.BigValueGraphMode.AREA).text_mode(cm.BigValueTextMode.AUTO)
            .justify_mode(cm.BigValueJustifyMode.AUTO).orientation(cm.VizOrientation.AUTO))


def _gauge(p: Panel) -> gauge.Panel:
    return (gauge.Panel().reduce_options(_reduce()).show_threshold_markers(True)
            .show_threshold_labels(False))


def _bargauge(p: Panel) -> bargauge.Panel:
    return (bargauge.Panel().reduce_options(_reduce())
            .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
            .orientation(cm.VizOrientation.HORIZONTAL).show_unfilled(True))


def _timeseries(p: Panel) -> timeseries.Panel:
    # Stacked panels are shares of a whole: filled so the parts read as areas.
    stacking = cm.StackingMode.NORMAL if p.stack else cm.StackingMode.NONE
    marks = cm.GraphThresholdsStyleMode.LINE if p.thresholds else cm.GraphThresholdsStyleMode.OFF
    return (timeseries.Panel()
            .legend(common.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                    .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
            .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI)
                     .sort(cm.SortOrder.DESCENDING))
            .draw_style(cm.GraphDrawStyle.LINE).line_width(1).fill_opacity(10 if p.stack else 0)
            .show_points(cm.VisibilityMode.NEVER).span_nulls(True)
            .stacking(common.StackingConfig().mode(stacking).group("A"))
            .thresholds_style(common.GraphThresholdsStyleConfig().mode(marks))
            .interval("15s"))


def _heatmap(p: Panel) -> heatmap.Panel:
    # Prometheus already buckets (format heatmap): Grafana must not re-bucket.
    return (heatmap.Panel().calculate(False).cell_gap(1)
            .y_axis(heatmap.YAxisConfig().unit(p.y_unit))
            .show_legend().show_y_histogram()
            .rows_frame(heatmap.RowsHeatmapOptions().layout(cm.HeatmapCellLayout.AUTO))
            .color(heatmap.HeatmapColorOptions().mode(hm.HeatmapColorMode.SCHEME)
                   .scheme("Oranges").steps(64))
            .interval("15s"))


def _table(p: Panel) -> table.Panel:
    return (table.Panel().show_header(True).cell_height(cm.TableCellHeight.SM)
            .footer(common.TableFooterOptions().show(False))
            .cell_options(cm.TableColoredBackgroundCellOptions())
            .align(cm.FieldTextAlignment.AUTO))


KINDS = {"stat": _stat, "gauge": _gauge, "bargauge": _bargauge, "timeseries": _timeseries,
         "heatmap": _heatmap, "table": _table}


def _target(q: Q, i: int) -> prometheus.Dataquery:
    t = (prometheus.Dataquery().datasource(DS).ref_id(chr(ord("A") + i)).expr(q.expr)
         .legend_format(q.legend or "__auto").format(pm.PromQueryFormat(q.fmt))
         .editor_mode(pm.QueryEditorMode.CODE))
    return t.instant() if q.instant else t.range()


def _panel(p: Panel, pid: int):
    """The panel's builder; the dashboard builder places it (left to right, wrapping)."""
    colour = (dm.FieldColorModeId.THRESHOLDS if p.kind in THRESHOLD_KINDS
              else dm.FieldColorModeId.PALETTE_CLASSIC)
    b = (KINDS[p.kind](p).id(pid).title(p.title).datasource(DS).span(p.w).height(p.h)
         .unit(p.unit).color_scheme(db.FieldColor().mode(colour))
         .thresholds(db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
                     .steps(p.thresholds or steps(GREEN))))
    for i, q in enumerate(p.queries):
        b.with_target(_target(q, i))
    if p.description:
        b.description(p.description)
    if p.min is not None:
        b.min(p.min)
    if p.max is not None:
        b.max(p.max)
    return b


def _area_variable() -> db.QueryVariable:
    # Multi-select with All as ``.*``: panels filter with ``area=~"$area"``.
    query = "label_values(meterwatch_area_meters_expected, area)"
    return (db.QueryVariable("area").label("Area").datasource(DS)
            .query({"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery",
                    "qryType": 1})
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True)
            .all_value(".*").regex("").hide(dm.VariableHide.DONT_HIDE).options([])
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"])))


def _window_variable() -> db.IntervalVariable:
    spans = ("5m", "15m", "1h", "6h", "1d", "7d")
    return (db.IntervalVariable("window").label("Window").values(",".join(spans))
            .auto(False).hide(dm.VariableHide.DONT_HIDE)
            .current(dm.VariableOption(selected=True, text="1h", value="1h"))
            .options([dm.VariableOption(selected=v == "1h", text=v, value=v) for v in spans]))


def _annotations() -> db.AnnotationQuery:
    # Grafana's built-in "Annotations & Alerts", hidden, as a new dashboard has it.
    return (db.AnnotationQuery().name("Annotations & Alerts").built_in(1).enable(True)
            .hide(True).icon_color("rgba(0, 211, 255, 1)").type("dashboard")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --")))


def _links() -> db.DashboardLink:
    # A drop-down to the other meterwatch dashboards, keeping the time range and area.
    return (db.DashboardLink("meterwatch").type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["meterwatch"]).as_dropdown(True).include_vars(True).keep_time(True))


def dashboard_builder(d: Dashboard) -> db.Dashboard:
    b = (db.Dashboard(d.title).uid(d.uid).description(d.description).tags(list(d.tags))
         .editable().tooltip(dm.DashboardCursorSync.CROSSHAIR).version(1).refresh("30s")
         .time("now-6h", "now").timezone("browser").fiscal_year_start_month(0)
         .live_now(False).week_start("")
         .timepicker(db.TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m", "1h"]))
         .annotation(_annotations()).link(_links())
         .with_variable(_area_variable()).with_variable(_window_variable()))
    for pid, item in enumerate(d.panels, start=1):
        if isinstance(item, Row):
            b.with_row(db.Row(item.title).id(pid))
        else:
            b.with_panel(_panel(item, pid))
    return b


def dashboard_json(d: Dashboard) -> dict:
    """The dashboard as Grafana's JSON model (plain dicts and lists)."""
    return json.loads(json.dumps(dashboard_builder(d).build(), cls=JSONEncoder))


def expressions(d: dict) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) of every target of a dashboard JSON."""
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((d["uid"], p["title"], t["expr"]))
    return out


def outputs() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for name, fn in DASHBOARDS.items():
        files[DASH_DIR / f"{name}.json"] = json.dumps(dashboard_json(fn()), indent=2,
                                                      ensure_ascii=False) + "\n"
    head = "# Generated by dashboards/generate.py; edit that file and re-run it.\n"
    for name, doc in rules_files().items():
        files[RULES_DIR / name] = head + to_yaml(doc) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    stale = []
    for path, text in outputs().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if check and stale:
        print("out of date (run python dashboards/generate.py):", *map(str, stale), sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
