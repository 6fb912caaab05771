"""The issue's targets, checked against an evaluation, and precision on real outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from models.evaluate.inject import DAY_S
from models.evaluate.real import RealEval
from models.evaluate.simulated import SimEval
from models.evaluate.tables import duration, fmt


# -- targets -----------------------------------------------------------------------------

@dataclass
class Evaluation:
    real: RealEval | None = None
    sim: SimEval | None = None
    sweep: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    outcomes: list[dict[str, Any]] | None = None  # precision on real cases (console labels)


def outcome_precision(path: str | Path) -> list[dict[str, Any]]:
    """Precision per alert type and subtype from people's outcomes in the console.

    ``path`` is the CSV of ``meterwatch console export-outcomes``: one row per resolved
    alert with ``label`` tp (a confirmed_* outcome), fp (false alarm) or unknown (the
    outcome says what was done, not whether the alert was right). Precision counts
    only tp and fp.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "o.csv")
    >>> _ = open(f, "w").write("alert_id,type,subtype,label\\na,theft,tamper_event,tp\\n"
    ...                        "b,theft,tamper_event,fp\\nc,theft,tamper_event,tp\\n"
    ...                        "d,surge,daily,unknown\\n")
    >>> [(r["type"], r["subtype"], r["tp"], r["fp"], r["precision"]) for r in outcome_precision(f)]
    [('surge', 'daily', 0, 0, None), ('theft', 'tamper_event', 2, 1, 0.667)]
    """
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    need = {"type", "subtype", "label"}
    if rows and not need <= set(rows[0]):
        raise ValueError(f"{path}: needs columns {sorted(need)} (meterwatch console export-outcomes)")
    agg: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        a = agg.setdefault((r["type"], r["subtype"]), {"tp": 0, "fp": 0, "unknown": 0})
        a[r["label"] if r["label"] in ("tp", "fp") else "unknown"] += 1
    out = []
    for (t, sub), a in sorted(agg.items()):
        judged = a["tp"] + a["fp"]
        out.append({"type": t, "subtype": sub, **a, "resolved": judged + a["unknown"],
                    "precision": round(a["tp"] / judged, 3) if judged else None})
    return out


def check_targets(ev: Evaluation) -> list[dict[str, Any]]:
    """The issue's targets with measured values: PASS / MISS / n/a."""
    rows: list[dict[str, Any]] = []

    def add(name, value, ok, goal, note=""):
        rows.append({"target": name, "goal": goal, "value": value,
                     "status": "n/a" if value is None else ("PASS" if ok else "MISS"), "note": note})

    r = ev.real
    if r is not None:
        th = r.groups.get("theft", {})
        v = th.get("recall_window")
        add("Theft h1-h6: detected within 7 days of onset", v, v is not None and v >= 0.90, ">= 0.90",
            f"{th.get('n', 0)} attacked copies")
        v = r.clean["theft_share"]
        add("Clean households with any theft alert (year)", v, v is not None and v <= 0.05, "<= 0.05",
            f"{len(r.clean['theft_customers'])} of {r.clean['customers']}")
        su = r.groups.get("surge", {})
        v = su.get("recall_window")
        add("Surges (daily, interval): recall in window", v, v is not None and v >= 0.95,
            ">= 0.95", "window: interval = two intervals after the surge ends; daily = the day + 1 day")
        al = {a["type"]: a for a in r.alerts}
        tp = sum(al.get(t, {}).get("tp", 0) for t in ("surge/daily", "surge/interval"))
        fp = sum(al.get(t, {}).get("fp", 0) for t in ("surge/daily", "surge/interval"))
        nat = sum(al.get(t, {}).get("natural", 0) for t in ("surge/daily", "surge/interval"))
        v = (tp + nat) / (tp + fp) if tp + fp else None
        strict = tp / (tp + fp) if tp + fp else None
        add("Surges: precision (surge/daily + surge/interval)", v, v is not None and v >= 0.90,
            ">= 0.90", f"unlabelled surges by the issue's definition (day >= 2x usual; half "
                       f"hour >= 3x usual and +2 kW for an hour) count as true; strict {fmt(strict)} "
                       f"(tp {tp}, fp {fp}, natural {nat})")
        det = {d["key"]: d for d in r.detection}
        for k, lim, nm in (("surge_interval", 1800, "Interval surges: p90 delay within the window"),
                           ("surge_daily", 2 * DAY_S, "Daily surges: p90 delay <= the day + 1 day")):
            d = det.get(k)
            if d:
                lim_k = d["window_s"]
                v = d["delay_p90_s"]
                add(nm, None if v is None else duration(v), v is not None and v <= lim_k,
                    f"<= {duration(lim_k)}", f"from onset; {d['detected']} of {d['n']} detected")
        vi = r.groups.get("vacancy/increase", {})
        v = vi.get("recall_window")
        add("Vacancy / lasting increase: recall within 7 days", v, v is not None and v >= 0.90,
            ">= 0.90", f"{vi.get('n', 0)} copies")
        v = r.clean["per_customer_month"]
        add("Clean households: alerts per customer-month (all types)", v, v is not None and v <= 0.3,
            "<= 0.3", f"{r.clean['openings']} openings over {r.clean['customer_months']:.0f} "
                      f"customer-months")
    s = ev.sim
    if s is not None:
        v = s.voltage["f1"]
        add("Voltage (simulated): F1", v, v is not None and v >= 0.98, ">= 0.98",
            f"{s.voltage['valid']} events beyond limits; P {fmt(s.voltage['precision'])}, "
            f"R {fmt(s.voltage['recall'])}")
        v = s.voltage["scope_ok"]
        add("Voltage (simulated): scope meter-vs-area right", v, v is not None and v >= 0.95, ">= 0.95",
            f"{s.voltage['area_expected']} area-wide events")
    return rows

