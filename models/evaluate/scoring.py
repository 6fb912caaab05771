"""Matching alert openings to targets (tp, dup, related, fp, warmup), and the tables of
recall, delays and clean-household rates built from them."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

import numpy as np

from models.evaluate.inject import DAY_S, KINDS
from models.evaluate.targets import GROUP_ORDER, MONTH_S, SPEC, Target, WARMUP_S


# -- matching ----------------------------------------------------------------------------

def to_epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def _fits(ts: str, pats: Sequence[str]) -> bool:
    t = ts.split("/")[0]
    return any(p == ts or (p.endswith("/*") and p[:-2] == t) for p in pats)


@dataclass
class Matching:
    targets: list[Target]
    rows: list[dict[str, Any]]  # one per alert opening: t, meter_id, area_id, type, subtype, cls, target


def match(alerts: Iterable[dict], targets: list[Target], *,
          warmup_until: dict[str, int] | None = None, area_warmup_until: int = 0) -> Matching:
    """Classify every alert opening against the targets (see the module doc); fills the
    targets' ``first_t``, ``hits``, ``scopes``. Targets are reset first."""
    for tg in targets:
        tg.first_t = tg.first_alert = tg.first_id = None
        tg.scopes = set()
        tg.hits = 0
    by_meter: dict[str, list[Target]] = defaultdict(list)
    by_area: dict[str, list[Target]] = defaultdict(list)
    for tg in targets:
        if tg.scope == "meter" and tg.meter_id is not None:
            by_meter[tg.meter_id].append(tg)
        if tg.area_id is not None:
            by_area[tg.area_id].append(tg)
    warm = warmup_until or {}
    opens = []
    seen: set = set()
    for a in alerts:
        # An opening is a new alert: a condition that recurs within its cool-down reopens
        # the same id (the store shows it as an update), which is not a new alert.
        if a.get("status") != "open" or (a.get("id") is not None and a["id"] in seen):
            continue
        seen.add(a.get("id"))
        opens.append((to_epoch(a["detected_at"]), a))
    opens.sort(key=lambda x: x[0])
    rows: list[dict[str, Any]] = []
    for t, a in opens:
        ts = f"{a['type']}/{a['subtype']}"
        m, area, scope = a.get("meter_id"), a.get("area_id"), a.get("scope", "meter")
        row = {"t": t, "detected_at": a["detected_at"], "start": a.get("start"), "id": a.get("id"),
               "meter_id": m, "area_id": area, "scope": scope, "type": a["type"],
               "subtype": a["subtype"], "cls": "fp", "target": None}
        rows.append(row)
        in_warmup = t < (warm.get(m, area_warmup_until) if m is not None else area_warmup_until)
        if scope == "area":
            cands = by_area.get(area, [])
        else:
            cands = by_meter.get(m, []) + [tg for tg in by_area.get(area, []) if tg.scope == "area"]
        exp = [tg for tg in cands if _fits(ts, tg.expected) and tg.earliest <= t <= tg.late_until]
        if exp:
            fresh = [tg for tg in exp if tg.first_t is None]
            tg = min(fresh, key=lambda x: x.onset) if fresh else max(exp, key=lambda x: x.onset)
            tg.hits += 1
            tg.scopes.add(scope)
            row["target"] = tg.id
            if not tg.valid:
                row["cls"] = "related"
            elif fresh:
                tg.first_t, tg.first_alert, tg.first_id = t, ts, a.get("id")
                row["cls"] = "tp"
            else:
                row["cls"] = "dup"
            continue
        ongoing = [tg for tg in cands if _fits(ts, tg.expected)
                   and tg.earliest <= t <= (tg.active_until or tg.late_until)]
        if ongoing:
            row["cls"] = "dup"
            row["target"] = ongoing[0].id
            ongoing[0].hits += 1
            continue
        rel = [tg for tg in cands if _fits(ts, tg.related) and tg.earliest <= t <= tg.related_until]
        if rel:
            row["cls"] = "related"
            row["target"] = rel[0].id
        elif in_warmup:
            row["cls"] = "warmup"
    return Matching(targets, rows)


def mark_open_at_onset(alerts: Iterable[dict], targets: list[Target]) -> None:
    """Record on each meter-scope target which expected alert types were already open at
    its onset (opened earlier, e.g. a false theft alert, and not closed): a detector that
    keeps one condition open cannot open it again for the real anomaly."""
    want = {tg.meter_id for tg in targets if tg.scope == "meter"}
    msgs: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    closing: set[str] = set()  # types with a lifecycle (one-off reports never close)
    for a in alerts:
        if a.get("status") == "closed":
            closing.add(f"{a['type']}/{a['subtype']}")
        if a.get("meter_id") in want:
            msgs[a["meter_id"]].append((to_epoch(a["detected_at"]), a))
    for tg in targets:
        tg.open_at_onset = []
        if tg.scope != "meter":
            continue
        live: dict[str, str] = {}
        for t, a in sorted(msgs.get(tg.meter_id, ()), key=lambda x: x[0]):
            if t >= tg.earliest:
                break
            if a["status"] == "closed":
                live.pop(a["id"], None)
            elif a["status"] == "open":
                live[a["id"]] = f"{a['type']}/{a['subtype']}"
        tg.open_at_onset = sorted({ts for ts in live.values()
                                   if ts in closing and _fits(ts, tg.expected)})


# -- tables ------------------------------------------------------------------------------

def _q(v: list[float], q: float) -> float | None:
    return float(np.quantile(v, q)) if len(v) else None


def detection_rows(targets: list[Target], key=lambda tg: tg.kind) -> list[dict[str, Any]]:
    """Per key (kind by default): recall in window / within 7 days / any time, delays."""
    groups: dict[Any, list[Target]] = defaultdict(list)
    for tg in targets:
        groups[key(tg)].append(tg)
    rows = []
    for k, tgs in groups.items():
        valid = [tg for tg in tgs if tg.valid]
        n = len(valid)
        det = [tg for tg in valid if tg.detected]
        delays = [float(tg.delay) for tg in det]
        first = Counter(tg.first_alert for tg in det)
        scoped = [tg.scope_ok for tg in det if tg.group in ("voltage", "outage")]
        rows.append({
            "key": k, "group": tgs[0].group, "labels": len(tgs), "n": n,
            "expected": ", ".join(tgs[0].expected),
            "window_s": int(np.median([tg.deadline - tg.onset for tg in tgs])),
            "detected": len(det),
            "recall_window": len([tg for tg in valid if tg.in_window]) / n if n else None,
            "recall_7d": len([tg for tg in valid if tg.within(7 * DAY_S)]) / n if n else None,
            "recall_any": len(det) / n if n else None,
            "delay_median_s": _q(delays, 0.5), "delay_p90_s": _q(delays, 0.9),
            "first_alerts": dict(first.most_common()),
            "scope_ok": (sum(bool(s) for s in scoped) / len(scoped)) if scoped else None,
            "open_at_onset": sum(bool(tg.open_at_onset) for tg in valid),
            "missed_open_at_onset": sum(bool(tg.open_at_onset) for tg in valid if not tg.in_window),
        })
    order = {k: i for i, k in enumerate((*KINDS, *SPEC))}
    rows.sort(key=lambda r: (GROUP_ORDER.index(r["group"]) if r["group"] in GROUP_ORDER else 99,
                             order.get(r["key"], 999), str(r["key"])))
    return rows


def pooled(targets: list[Target], pred) -> dict[str, Any]:
    sel = [tg for tg in targets if tg.valid and pred(tg)]
    det = [tg for tg in sel if tg.detected]
    delays = [float(tg.delay) for tg in det]
    return {"n": len(sel), "recall_window": (sum(tg.in_window for tg in sel) / len(sel)) if sel else None,
            "recall_7d": (sum(tg.within(7 * DAY_S) for tg in sel) / len(sel)) if sel else None,
            "recall_any": (len(det) / len(sel)) if sel else None,
            "delay_median_s": _q(delays, 0.5), "delay_p90_s": _q(delays, 0.9)}


def alert_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per alert type/subtype: openings by class and precision."""
    c: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        c[f"{r['type']}/{r['subtype']}"][r["cls"]] += 1
        if r.get("natural"):
            c[f"{r['type']}/{r['subtype']}"]["natural"] += 1
    out = []
    for ts in sorted(c):
        k = c[ts]
        tp, fp = k["tp"], k["fp"]
        out.append({"type": ts, "openings": sum(k[x] for x in ("tp", "dup", "related", "fp")),
                    "tp": tp, "dup": k["dup"], "related": k["related"], "fp": fp,
                    "natural": k["natural"], "warmup": k["warmup"],
                    "precision": tp / (tp + fp) if tp + fp else None,
                    "precision_natural": (tp + k["natural"]) / (tp + fp) if tp + fp else None})
    return out


def clean_rates(rows: list[dict[str, Any]], spans: dict[str, tuple[int, int]], *,
                warmup_s: int = WARMUP_S) -> dict[str, Any]:
    """Alert openings on clean meters per customer-month (after each meter's warm-up).

    ``spans``: clean meter -> (first reading ts, last reading ts).
    """
    months = {m: max(0.0, (b - a - warmup_s) / MONTH_S) for m, (a, b) in spans.items()}
    total_m = sum(months.values())
    per_type: Counter = Counter()
    nat_type: Counter = Counter()
    per_meter: Counter = Counter()
    theft_meters: set[str] = set()
    natural = 0
    for r in rows:
        m = r["meter_id"]
        if m not in spans or r["cls"] == "warmup":
            continue
        ts = f"{r['type']}/{r['subtype']}"
        per_type[ts] += 1
        per_meter[m] += 1
        natural += bool(r.get("natural")) and r["type"] == "surge"
        nat_type[ts] += bool(r.get("natural"))
        if r["type"] == "theft":
            theft_meters.add(m)
    n = sum(per_type.values())
    return {
        "customers": len(spans), "customer_months": total_m, "openings": n,
        "per_customer_month": n / total_m if total_m else None,
        "natural_surges": natural,
        "per_type": {k: {"openings": v, "per_customer_month": v / total_m if total_m else None,
                         "natural": nat_type[k],
                         "customers": len({r["meter_id"] for r in rows if r["meter_id"] in spans
                                           and r["cls"] != "warmup"
                                           and f"{r['type']}/{r['subtype']}" == k})}
                     for k, v in per_type.most_common()},
        "theft_customers": sorted(theft_meters),
        "theft_share": len(theft_meters) / len(spans) if spans else None,
        "top_customers": per_meter.most_common(5),
    }

