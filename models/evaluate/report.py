"""The report directory: ``report.md`` with plots, ``results.json``, ``labels.jsonl`` and
``alerts_classified.csv``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from models.evaluate.goals import Evaluation, check_targets
from models.evaluate.plots import (pick_examples, plot_delays, plot_example, plot_recall,
                                   plot_sweep)
from models.evaluate.tables import (BUDGET_HEADER, duration, first_alerts_text, fmt, md_table,
                                    text_table, alerts_table, budget_rows, detection_table)
from models.evaluate.theft import theft_auc_text



# -- report ------------------------------------------------------------------------------

@dataclass
class _Report:
    """The report being written: its directory (plots go there as the sections
    draw them), the markdown lines and the results.json content."""

    out: Path
    md: list[str]
    js: dict[str, Any] = field(default_factory=dict)


def write_report(results: Evaluation, out_dir: str | Path) -> Path:
    """``report.md`` with PNG plots, plus ``results.json``, ``labels.jsonl`` and
    ``alerts_classified.csv`` (one row per alert opening with its class)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = _Report(out, ["# meterwatch detection evaluation", ""])
    _header_and_targets(rep, results)
    if results.outcomes is not None:
        _outcomes_section(rep, results)
    if results.real is not None:
        _real_section(rep, results)
    if results.sim is not None:
        _sim_section(rep, results.sim)
    if results.sweep:
        _sweep_section(rep, results)
    rep.md += _METHOD
    (out / "report.md").write_text("\n".join(rep.md))
    (out / "results.json").write_text(json.dumps(rep.js, indent=1, default=str))
    return out / "report.md"


def _header_and_targets(rep: _Report, results: Evaluation) -> None:
    md, meta = rep.md, results.meta
    md.append(f"Generated {datetime.now().astimezone().isoformat(timespec='seconds')}; "
              f"seed {meta.get('seed', 0)}; detector config: {meta.get('config') or 'defaults'}; "
              f"total runtime {meta.get('seconds', 0):.0f} s.")
    md.append("")
    md.append("## Targets")
    md.append("")
    tg = check_targets(results)
    md.append(md_table(["target", "goal", "measured", "status", "note"],
                        [[t["target"], t["goal"], fmt(t["value"], 3), f"**{t['status']}**", t["note"]]
                         for t in tg]))
    md.append("")
    rep.js.update(meta=meta, targets=tg)


def _outcomes_section(rep: _Report, results: Evaluation) -> None:
    rep.md += ["## Precision on real cases", "",
               f"From people's outcomes in the console (`{results.meta.get('outcomes')}`): tp = a "
               "confirmed_* outcome, fp = false alarm; other outcomes (customer contacted, site "
               "visit done, ...) are counted but judge nothing.", "",
               md_table(["type", "subtype", "resolved", "tp", "fp", "unjudged", "precision"],
                         [[o["type"], o["subtype"], o["resolved"], o["tp"], o["fp"], o["unknown"],
                           fmt(o["precision"], 3)] for o in results.outcomes]), ""]
    rep.js["outcomes"] = results.outcomes


def _real_section(rep: _Report, results: Evaluation) -> None:
    """The real readings: source, detection per scenario, alert openings, clean
    households, example plots; writes labels.jsonl and alerts_classified.csv."""
    r = results.real
    rm = r.meta
    _real_source(rep, results)
    _real_detection(rep, r)
    _real_alerts(rep, r)
    c = r.clean
    _real_clean(rep, c, results.meta.get("budget"))
    _real_examples(rep, r)
    rep.js["real"] = {"meta": rm, "detection": r.detection, "groups": r.groups,
                      "alerts": r.alerts, "clean": c, "after_onset": r.after_onset}
    with open(rep.out / "labels.jsonl", "w") as fh:
        for t in r.matching.targets:
            fh.write(json.dumps(t.to_dict(rm["tz"]), default=str) + "\n")
    rows_df = pd.DataFrame(r.matching.rows)
    if len(rows_df):
        rows_df.drop(columns=["t"]).to_csv(rep.out / "alerts_classified.csv", index=False)


def _real_source(rep: _Report, results: Evaluation) -> None:
    rm = results.real.meta
    z = ZoneInfo(rm["tz"])
    per = rm.get("period") or [0, 0]
    rep.md += ["## Real readings", "",
               f"Source: `{results.meta.get('readings', '?')}` ({rm['households']} households, "
               f"{datetime.fromtimestamp(per[0], z):%Y-%m-%d} to "
               f"{datetime.fromtimestamp(per[1], z):%Y-%m-%d}, "
               f"zone {rm['tz']}). One backtest over {rm['virtual_meters']} virtual meters in "
               f"{rm['areas']} areas: each household's clean copy plus one copy per scenario "
               f"({rm['labels']} labelled scenarios), {rm['readings']:,} readings, "
               f"{rm['alerts']:,} alert messages; backtest {rm['backtest_seconds']:.0f} s, "
               f"injection {rm.get('inject_seconds', 0):.0f} s.", ""]
    if rm["skipped"]:
        rep.md.append("Not injected: " + "; ".join(f"`{k}` ({v})" for k, v in rm["skipped"].items()))
        rep.md.append("")


def _real_detection(rep: _Report, r: Any) -> None:
    """Recall and delay per scenario (table and plots), pooled groups, and the other
    alerts the injected copies raised."""
    md, out = rep.md, rep.out
    md += ["### Detection per scenario", "",
           "Recall = share of injected copies whose first expected alert came in the window "
           "(theft, vacancy, increase, decrease: 7 days from onset; daily surge and new load: "
           "the day + 1 day; interval surge: two intervals after it ends). Delay = `detected_at` - onset "
           "(start of the first affected interval), over all detections. `recall late ok`: detected "
           "at all, up to 30 days after an open-ended onset or 1 day after a scenario's end. "
           "`missed, alert already open`: missed copies on which an expected alert type was "
           "already open at the onset (raised earlier on clean data and never closed), so the "
           "detector could not open it again.", ""]
    h, rows = detection_table(r.detection)
    md += [md_table(h, rows), "", "![recall](recall_real.png)", "", "![delays](delays_real.png)", ""]
    plot_recall(r.detection, out / "recall_real.png", "Real readings: recall per scenario")
    plot_delays(r.matching.targets, out / "delays_real.png", "Real readings: detection delay")
    md += ["Pooled:", ""]
    md.append(md_table(["group", "n", "recall in window", "recall 7 d", "recall late ok",
                         "median delay", "p90 delay"],
                        [[g, v["n"], fmt(v["recall_window"]), fmt(v["recall_7d"]),
                          fmt(v["recall_any"]), duration(v["delay_median_s"]), duration(v["delay_p90_s"])]
                         for g, v in r.groups.items()]))
    md.append("")
    if r.after_onset:
        md += ["Other alerts the injected copies raised after their onset (wrong type; "
               "`related` ones are excused from precision):", ""]
        md.append(md_table(["scenario", "alerts (type/subtype count)"],
                            [[k, first_alerts_text(v, 6)] for k, v in r.after_onset.items()]))
        md.append("")


def _real_alerts(rep: _Report, r: Any) -> None:
    rep.md += ["### Alert openings per type", "",
               "Over all virtual meters, warm-up (first 14 days) excluded. Precision = TP / (TP + FP) at "
               "this test bed's prevalence (one anomaly per injected copy-year); pre-onset alerts of "
               "injected copies count as FP, as on the clean copies. `natural`: unlabelled daily "
               "surges whose day really was >= 2x the household's median day of the previous 4 weeks, "
               "and unlabelled interval surges whose half hour drew >= 3x the median of the same time "
               "of day over the previous 4 weeks and >= 2 kW above it for an hour (raw readings, not the profile).",
               ""]
    h, rows = alerts_table(r.alerts, natural=True)
    rep.md += [md_table(h, rows), ""]


def _real_clean(rep: _Report, c: dict[str, Any], budget: Any) -> None:
    """Alert openings on the clean copies, against the budgets when configured."""
    md = rep.md
    md += ["### Clean households", "",
           f"{c['openings']} alert openings on {c['customers']} clean copies over "
           f"{c['customer_months']:.1f} customer-months (after 14 days of warm-up) = "
           f"**{fmt(c['per_customer_month'], 3)} per customer-month**. Households with any theft "
           f"alert: {len(c['theft_customers'])} ({fmt(c['theft_share'], 3)})"
           + (f": {', '.join(c['theft_customers'])}" if c["theft_customers"] else "") + ".", ""]
    md.append(md_table(["type/subtype", "openings", "per customer-month", "households",
                         "natural"],
                        [[k, v["openings"], fmt(v["per_customer_month"], 3), v["customers"],
                          v["natural"]] for k, v in c["per_type"].items()]))
    md += ["", "`natural`: openings that, in the raw readings, are what the issue defines "
           "(a day >= 2x the 4-week median; an hour >= 3x the slot's median and +2 kW; "
           "7 days whose median is >= 30 % off the 4 weeks before): real, uninjected "
           "events of that kind on a clean home."]
    if budget is not None:
        md += ["", "Against the false-alarm budgets (`[budget]` in the detector config; the "
               "other families have none yet):", "",
               md_table(BUDGET_HEADER, budget_rows(c, budget))]
    md += ["", "Most alerted clean households: "
           + ", ".join(f"{m} ({k})" for m, k in c["top_customers"]), ""]


def _real_examples(rep: _Report, r: Any) -> None:
    exs = pick_examples(r)
    if not exs:
        return
    rep.md += ["### Example alerts", "",
               "Readings (kW) around the alert against a band recomputed from the meter's own "
               "previous 4 weeks of readings (same half-hour slot and day type, weekday or "
               "weekend: mean ± 1 standard deviation); this is not the detector's internal profile. "
               "Dashed grey: the household's clean copy.", ""]
    for i, ex in enumerate(exs, 1):
        name = f"example_{i}.png"
        plot_example(r.vs, ex, rep.out / name)
        rep.md += [f"**{i}.** {ex['title']}", "", f"![example {i}]({name})", ""]


def _sim_section(rep: _Report, s: Any) -> None:
    md = rep.md
    sm = s.meta
    md += ["## Simulated fleet", "",
           f"FleetSimulator: {sm['customers']} customers in {sm['areas']} areas, {sm['days']} days "
           f"at {sm['interval_s'] // 60} min, seed {sm['seed']}; random scenario (rate {sm['rate']}) "
           f"plus {sm['extra_voltage']} meter-level voltage events; {sm['labels']} labels, "
           f"{sm['readings']:,} readings; backtest {sm['backtest_seconds']:.0f} s with the "
           f"registry's fleet. Voltage labels are checked against the readings: an event counts "
           f"only if it is one the alert policy acts on (models/voltage.py), and its expected "
           f"scope is `area` only if enough of the area's meters qualified at once.", ""]
    h, rows = detection_table(s.by_type, scope=True)
    md += [md_table(h, rows), ""]
    v = s.voltage
    md += [f"Voltage: {v['valid']} of {v['labels']} labelled events beyond limits "
           f"({v['area_expected']} area-wide); precision {fmt(v['precision'], 3)}, recall "
           f"{fmt(v['recall'], 3)}, **F1 {fmt(v['f1'], 3)}**, scope right "
           f"**{fmt(v['scope_ok'], 3)}**. False alert openings per customer-month (all types): "
           f"{fmt(s.false_per_customer_month, 3)}.", ""]
    if v["scope_misses"]:
        md.append("Wrong scope: " + "; ".join(
            f"{d['subtype']} {d['scope']} {d['meter_id'] or d['area_id']} at {d['onset_iso'][:16]} "
            f"(expected {d['expected_scope']}, alerted {','.join(d['scopes'])})"
            for d in v["scope_misses"][:8]))
        md.append("")
    h, rows = alerts_table(s.alerts)
    md += ["Alert openings per type:", "", md_table(h, rows), ""]
    rep.js["sim"] = {"meta": sm, "by_type": s.by_type, "groups": s.groups, "alerts": s.alerts,
                     "voltage": {k: v for k, v in v.items()},
                     "false_per_customer_month": s.false_per_customer_month}


def _sweep_section(rep: _Report, results: Evaluation) -> None:
    md, sweep = rep.md, results.sweep
    md += ["## Threshold sweep", "",
           f"One backtest per value, other thresholds at their configured values. "
           f"{results.meta.get('sweep_note', '')}", ""]
    for target in ("real", "sim"):
        name = f"sweep_{target}.png"
        if plot_sweep(sweep, rep.out / name, target):
            md += [f"![sweep {target}]({name})", ""]
    keys = sorted({k for p in sweep for k in p if k.startswith("recall_")})
    md.append(md_table(["on", "parameter", "value", "false/cust-month",
                         "clean households with theft alert", *keys],
                        [[p["target"], p["param"], p["value"], fmt(p["false_per_cm"], 3),
                          fmt(p.get("theft_share")), *[fmt(p.get(k)) for k in keys]]
                         for p in sweep]))
    md.append("")
    rep.js["sweep"] = sweep


_METHOD = [
    "## Method", "",
    "* Only alert openings count (`status == open`). An opening is `tp` for the first expected "
    "type after a label's onset, `dup` for later ones (also expected alerts while an open-ended "
    "anomaly still runs), `related` for plausible side effects (e.g. `habit_change/*` on a theft "
    "copy, `surge/interval` on a daily-surge day, the increase when a vacancy ends; excused for 30 "
    "days after an open-ended onset or 14 days after a scenario's end), `fp` otherwise, and "
    "`warmup` (excluded) in a meter's first 14 days unless it matches a label.",
    "* Expected types: h1-h6 any `theft/*`; surge_daily `surge/daily`; new_load `surge/daily` or "
    "`habit_change/increase`; surge_interval `surge/interval`; vacancy "
    "`habit_change/vacancy|decrease`; increase `habit_change/increase`; decrease "
    "`habit_change/decrease` or `theft/consumption_drop`. Simulated labels: their own "
    "type/subtype (theft kinds: any `theft/*`).",
    "* Day-scale scenarios start at a local midnight; the alert at 00:30 that closes the day "
    "before cannot be caused by them, so the earliest counting alert is one reading later.",
    "* Theft injection: Jokar et al. (2016) h1-h6 from `models/attacks.py` on every local day from "
    "a random midnight with >= 60 days of history and >= 14 days after it, to the end of the data "
    "(h1's factor and h2's window fixed per attack, h3/h4's factors drawn per reading and day).",
    "* Virtual meters share areas (~10 meters, distinct households, a balanced mix of scenarios) "
    "so the consumption-drop test has peers, mostly clean at any moment.",
    "* Files: `labels.jsonl` (every label with its outcome), `alerts_classified.csv` (every "
    "real-data opening with its class and label), `results.json` (all tables).",
    "",
]


def summary_text(ev: Evaluation) -> str:
    parts = []
    if ev.real is not None:
        r = ev.real
        h, rows = detection_table(r.detection)
        parts.append("Real readings: detection per injected scenario\n" + text_table(h, rows))
        h, rows = alerts_table(r.alerts, natural=True)
        parts.append("Real readings: alert openings per type\n" + text_table(h, rows))
        c = r.clean
        pt = [[k, v["openings"], fmt(v["per_customer_month"], 3), v["customers"], v["natural"]]
              for k, v in c["per_type"].items()]
        parts.append(f"Clean households: {c['openings']} openings over {c['customer_months']:.0f} "
                     f"customer-months = {fmt(c['per_customer_month'], 3)} per customer-month; "
                     f"theft alert on {fmt(c['theft_share'], 3)} of households\n"
                     + text_table(["type/subtype", "openings", "per cust-month", "households",
                                    "natural"], pt))
        if r.meta.get("theft_auc") is not None:
            parts.append(theft_auc_text(r.meta["theft_auc"]))
        if ev.meta.get("budget") is not None:
            parts.append("Clean households against the false-alarm budgets\n"
                         + text_table(BUDGET_HEADER, budget_rows(c, ev.meta["budget"])))
    if ev.sim is not None:
        s = ev.sim
        h, rows = detection_table(s.by_type, scope=True)
        parts.append("Simulated fleet: detection per labelled type/subtype\n" + text_table(h, rows))
        h, rows = alerts_table(s.alerts)
        parts.append("Simulated fleet: alert openings per type\n" + text_table(h, rows))
    t = check_targets(ev)
    parts.append("Targets\n" + text_table(
        ["target", "goal", "measured", "status"],
        [[x["target"], x["goal"], fmt(x["value"], 3), x["status"]] for x in t]))
    return "\n\n".join(parts)

