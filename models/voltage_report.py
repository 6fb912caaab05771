"""The periodic voltage compliance report an engineer sends: per transformer area and
period of the standard, from a file of readings (what ``backtest`` and ``replay`` read).

    meterwatch voltage-report --readings FILE [--registry CSV] --standard en50160
        [--from 2026-03-01] [--to 2026-04-01] [--format md|csv] [--out FILE]

Each meter's figures are :mod:`models.compliance`'s (the same the worker accumulates
online); an area's are its customer meters' measured time pooled, the meters that
comply, fail, or were measured too little to judge (``[compliance] min_coverage``), the
dip and swell table and the worst meters. A period is in the report when it starts in
``[from, to)`` (local dates of the ``--local-tz`` zone).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.base import Fleet
from models.compliance import (DIP_ROWS, EN50160_DIP_ROWS, PERIOD_FREQ, SWELL_ROWS,
                               ieee1159_counts, periods)

SHARE_KEY = {"en50160": "within_share", "gbt12325": "compliance_rate",
             "ansi_c84_1": "range_a_share"}
PERIOD_KEY = {"en50160": "week_start", "gbt12325": "month", "ansi_c84_1": "period_start"}
TEST = {
    "en50160": "EN 50160: per week, >= {req:.0%} of the 10-minute means within Un +-10 % and "
               "all within +10 % / -15 %",
    "gbt12325": "GB/T 12325: monthly voltage compliance rate (220 V single-phase +7 % / "
                "-10 %, three-phase +-7 %); target {req:.0%}",
    "ansi_c84_1": "ANSI C84.1: per month, >= {req:.0%} of the time in Range A and none "
                  "outside Range B",
}


@dataclass
class MeterPeriod:
    meter_id: str
    area_id: str
    period: str
    fig: dict[str, Any]


def meter_periods(rows: np.ndarray, cols: np.ndarray, fleet: Fleet, standard: str, tz: str,
                  required: float) -> list[MeterPeriod]:
    """Every customer meter's figures per period (fleet rows ``rows``, READING_DTYPE)."""
    out = []
    order = np.lexsort((cols["ts"], rows))
    rows, cols = rows[order], cols[order]
    cuts = np.flatnonzero(np.diff(rows)) + 1
    for idx in np.split(np.arange(len(rows)), cuts):
        if not len(idx):
            continue
        m = int(rows[idx[0]])
        if fleet.is_area_meter[m]:
            continue
        c = cols[idx]
        for f in periods(standard, c["ts"], c["interval_s"], c["voltage"],
                         float(fleet.nominal_voltage[m]), tz=tz, phases=int(fleet.phases[m]),
                         voltage_min=c["voltage_min"], voltage_max=c["voltage_max"],
                         required=required):
            out.append(MeterPeriod(fleet.meter_id[m], fleet.area_id[int(fleet.area[m])],
                                   f[PERIOD_KEY[standard]], f))
    return out


def area_rows(mps: list[MeterPeriod], standard: str, min_coverage: float,
              worst: int = 3) -> list[dict[str, Any]]:
    """One row per (area, period): pooled shares, meters by verdict, events, worst meters."""
    groups: dict[tuple[str, str], list[MeterPeriod]] = {}
    for mp in mps:
        groups.setdefault((mp.area_id, mp.period), []).append(mp)
    out = []
    for (area, period), ms in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        meas = sum(m.fig["measured_s"] for m in ms)
        share = lambda m: m.fig[SHARE_KEY[standard]]  # noqa: E731
        judged = [m for m in ms if m.fig["coverage"] >= min_coverage]
        failing = sorted((m for m in judged if not m.fig["complies"]), key=share)
        ev = {k: sum(m.fig["dips"][k] for m in ms) for k in DIP_ROWS}
        sw = {k: sum(m.fig["swells"][k] for m in ms) for k in SWELL_ROWS}
        ieee = ieee1159_counts({"dips": ev, "swells": sw})
        out.append({
            "area_id": area, "period": period, "standard": standard, "meters": len(ms),
            "complying": len(judged) - len(failing), "failing": len(failing),
            "not_judged": len(ms) - len(judged),
            "within_share": sum(share(m) * m.fig["measured_s"] for m in ms) / meas if meas else float("nan"),
            "outside_outer_share": sum(m.fig["outside_outer_share"] * m.fig["measured_s"]
                                       for m in ms) / meas if meas else float("nan"),
            "coverage": float(np.mean([m.fig["coverage"] for m in ms])),
            **{f"dips_{k}": sum(ev[r] for r in rs) for k, rs in EN50160_DIP_ROWS.items()},
            **{f"swells_{k}": v for k, v in sw.items()},
            **{f"ieee1159_{k}": v for k, v in ieee.items()},
            "worst_meters": " ".join(f"{m.meter_id}:{share(m):.4f}" for m in failing[:worst]),
        })
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def to_markdown(rows: list[dict[str, Any]], standard: str, required: float, source: str,
                span: str) -> str:
    lines = [f"# Voltage compliance report: {standard}", "",
             f"- Test: {TEST[standard].format(req=required)}",
             f"- Readings: {source}; periods starting {span}",
             "- Interval means are used as the standard's 10-minute means; dips and swells "
             "are counted from interval minima / maxima (one per interval at most, duration "
             "not resolved); meters measured for less than the minimum coverage are not judged.",
             ""]
    for period in sorted({r["period"] for r in rows}):
        lines += [f"## {period}", "",
                  "| area | meters | comply | fail | not judged | within | beyond outer | "
                  "coverage | dips 90-80 / 80-70 / 70-40 / 40-5 / <5 % | swells 110-120 / 120+ % "
                  "| worst meters |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
        for r in sorted((r for r in rows if r["period"] == period), key=lambda r: r["within_share"]):
            dips = " / ".join(str(r[f"dips_{k}"]) for k in EN50160_DIP_ROWS)
            swl = " / ".join(str(r[f"swells_{k}"]) for k in SWELL_ROWS)
            lines.append(f"| {r['area_id']} | {r['meters']} | {r['complying']} | {r['failing']} | "
                         f"{r['not_judged']} | {r['within_share']:.2%} | "
                         f"{r['outside_outer_share']:.2%} | {r['coverage']:.1%} | {dips} | {swl} | "
                         f"{r['worst_meters'] or '-'} |")
        lines.append("")
    if not rows:
        lines.append("No measured voltage in the requested periods.")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meterwatch voltage-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readings", required=True, help="readings CSV/Parquet (as for backtest)")
    p.add_argument("--registry", help="registry CSV (areas, nominal voltage, phases); default: "
                   "one synthetic 230 V customer per meter, areas of 10")
    p.add_argument("--standard", choices=sorted(PERIOD_FREQ), required=True)
    p.add_argument("--from", dest="start", help="first period start date (local), inclusive")
    p.add_argument("--to", dest="end", help="periods starting before this date (local)")
    p.add_argument("--format", choices=("md", "csv"), default="md")
    p.add_argument("--out", help="file to write (default: stdout)")
    p.add_argument("--detectors", help="detector thresholds TOML ([compliance] section)")
    p.add_argument("--tz", help="zone of timestamps that have none (e.g. UTC)")
    p.add_argument("--local-tz", help="the customers' zone for weeks and months "
                   "(default: --tz, else Asia/Shanghai)")
    p.add_argument("--ts-mark", choices=("start", "end"), default="end")
    return p


def main(argv: list[str] | None = None) -> int:
    from models.backtest import ReadingsError, load_readings, synthetic_fleet, to_columns
    from models.config import ConfigError, load_config

    a = _parser().parse_args(argv)
    try:
        cfg = load_config(a.detectors).compliance
        df = load_readings(a.readings, tz=a.tz, ts_mark=a.ts_mark)
        if a.registry:
            from stream.registry import Registry

            fleet = Registry.load(a.registry).fleet
        else:
            fleet = synthetic_fleet(df["meter_id"].unique())
        lo = pd.Timestamp(a.start) if a.start else None
        hi = pd.Timestamp(a.end) if a.end else None
    except (ConfigError, ReadingsError, ValueError) as e:
        print(f"meterwatch voltage-report: {e}", file=sys.stderr)
        return 2
    tz = a.local_tz or a.tz or "Asia/Shanghai"
    rows, cols = to_columns(df, fleet)
    mps = meter_periods(rows, cols, fleet, a.standard, tz, cfg.required_share)
    start = lambda mp: pd.Timestamp(mp.period + ("-01" if len(mp.period) == 7 else ""))  # noqa: E731
    mps = [m for m in mps if (lo is None or start(m) >= lo) and (hi is None or start(m) < hi)]
    table = area_rows(mps, a.standard, cfg.min_coverage)
    span = f"from {a.start or 'the first reading'} to before {a.end or 'the last'}"
    text = to_csv(table) if a.format == "csv" else to_markdown(
        table, a.standard, cfg.required_share, a.readings, span)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
        print(f"{len(table)} area periods -> {a.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
