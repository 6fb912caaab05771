"""Formatting: the text and Markdown tables of the summary and the report."""

from __future__ import annotations

import math
from typing import Any


from models.evaluate.inject import DAY_S


# -- formatting --------------------------------------------------------------------------

def fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.{nd}f}"
    return str(v)


def duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = float(s)
    if abs(s) < 2 * 3600:
        return f"{s / 60:.0f} min"
    if abs(s) < 2 * DAY_S:
        return f"{s / 3600:.1f} h"
    return f"{s / DAY_S:.1f} d"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


def text_table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def first_alerts_text(d: dict[str, int], top: int = 3) -> str:
    return ", ".join(f"{k} {v}" for k, v in list(d.items())[:top])


def detection_table(rows: list[dict[str, Any]], *, scope: bool = False) -> tuple[list[str], list[list]]:
    header = ["scenario", "n", "window", "recall in window", "recall 7 d", "recall late ok",
              "median delay", "p90 delay", "missed, alert already open", "first alert (type/subtype count)"]
    if scope:
        header.insert(-1, "scope right")
    out = []
    for d in rows:
        r = [d["key"], d["n"], duration(d["window_s"]), fmt(d["recall_window"]), fmt(d["recall_7d"]),
             fmt(d["recall_any"]), duration(d["delay_median_s"]), duration(d["delay_p90_s"]),
             d["missed_open_at_onset"], first_alerts_text(d["first_alerts"])]
        if scope:
            r.insert(-1, fmt(d["scope_ok"]))
        out.append(r)
    return header, out


def alerts_table(rows: list[dict[str, Any]], *, natural: bool = False) -> tuple[list[str], list[list]]:
    header = ["alert type/subtype", "openings", "TP", "dup", "related", "FP", "precision"]
    if natural:
        header += ["natural", "precision (natural = true)"]
    out = []
    for a in rows:
        r = [a["type"], a["openings"], a["tp"], a["dup"], a["related"], a["fp"], fmt(a["precision"])]
        if natural:
            r += [a["natural"], fmt(a["precision_natural"])]
        out.append(r)
    return header, out


# Which alert types each budgeted family counts (config [budget]).
BUDGET_FAMILIES: dict[str, tuple[str, ...]] = {
    "surge_daily": ("surge/daily",),
    "surge_interval": ("surge/interval",),
    "habit_change": ("habit_change/increase", "habit_change/decrease"),
    "vacancy": ("habit_change/vacancy",),
}


def budget_rows(clean: dict[str, Any], budget: Any) -> list[list[Any]]:
    """Per budgeted family: its budget and the clean copies' measured rate, both in
    openings per customer-year and per customer-month.

    >>> from models.config import BudgetConfig
    >>> c = {"customer_months": 24.0, "per_type": {"surge/daily": {"openings": 2}}}
    >>> budget_rows(c, BudgetConfig())[0]
    ['surge_daily', 2.0, 0.167, 1.0, 0.083, 'within']
    """
    out = []
    months = clean.get("customer_months") or 0.0
    for fam, types in BUDGET_FAMILIES.items():
        b = float(budget[fam] if isinstance(budget, dict) else getattr(budget, fam))
        n = sum(clean["per_type"].get(t, {}).get("openings", 0) for t in types)
        per_m = n / months if months else None
        per_y = per_m * 12 if per_m is not None else None
        out.append([fam, b, round(b / 12, 3), None if per_y is None else round(per_y, 3),
                    None if per_m is None else round(per_m, 3),
                    "" if per_y is None else ("within" if per_y <= b else "over")])
    return out


BUDGET_HEADER = ["family", "budget / cust-year", "budget / cust-month", "measured / cust-year",
                 "measured / cust-month", ""]
