"""Voltage compliance on the console: a customer's meters and a transformer area, over
the configured standard's period (EN 50160: the week; GB/T 12325 and ANSI C84.1: the
month), as the worker that owns the area accumulates them (``models.compliance``).

The worker answers ``GET /meters/{id}/profile`` (its ``compliance`` member) and
``GET /areas/{id}/compliance``; an unreachable worker leaves the section saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from models.compliance import EN50160_DIP_ROWS, SHARE_OF, SWELL_ROWS
from stream.console.profile import fetch_worker_json


STANDARD_NAME = {"en50160": "EN 50160", "gbt12325": "GB/T 12325", "ansi_c84_1": "ANSI C84.1"}
SHARE_LABEL = {"en50160": "Within Un ±10 %", "gbt12325": "Compliance rate (合格率)",
               "ansi_c84_1": "In Range A"}
OUTER_LABEL = {"en50160": "Beyond +10 % / −15 %", "gbt12325": "Above the upper limit",
               "ansi_c84_1": "Outside Range B"}


@dataclass
class PeriodView:
    """One period's figures, formatted for a table row."""

    label: str  # "current" / "last completed"
    period: str
    share: str
    outer: str
    coverage: str
    verdict: str  # complies | fails | so far within | ... (text)
    ok: bool | None
    dips: list[tuple[str, int]] = field(default_factory=list)
    swells: list[tuple[str, int]] = field(default_factory=list)
    meters: str = ""


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.2f} %"


def period_view(fig: dict[str, Any] | None, standard: str, label: str, *, current: bool,
                failed: bool = False) -> PeriodView | None:
    """A period's row; a running period that has not failed yet is "so far within"."""
    if not fig:
        return None
    period = fig.get("week_start") or fig.get("month") or fig.get("period_start") or "?"
    if not current:
        ok: bool | None = bool(fig.get("complies")) and not fig.get("meters_failing")
        verdict = ("complies" if fig.get("complies") else "fails") + (
            f" (pooled); {fig['meters_failing']} meter(s) failed" if fig.get("meters_failing") else "")
    elif failed or (fig.get("meters_failing") or 0) > 0:
        ok, verdict = False, ("fails (cannot comply any more)" if failed else
                              f"{fig['meters_failing']} meter(s) failing")
    else:
        ok, verdict = None, "running: " + ("within so far" if fig.get("complies") else "below the target so far")
    dips = fig.get("dips") or {}
    return PeriodView(
        label=label, period=str(period), share=_pct(fig.get(SHARE_OF[standard])),
        outer=_pct(fig.get("outside_outer_share")), coverage=_pct(fig.get("coverage")),
        verdict=verdict, ok=ok,
        dips=[(k, sum(int(dips.get(r, 0)) for r in rs)) for k, rs in EN50160_DIP_ROWS.items()],
        swells=[(k, int((fig.get("swells") or {}).get(k, 0))) for k in SWELL_ROWS],
        meters=(f"{fig['meters']} measured, {fig['meters_failing']} failing"
                if "meters" in fig else ""))


@dataclass
class ComplianceView:
    standard: str = ""
    name: str = ""
    share_label: str = ""
    outer_label: str = ""
    periods: list[PeriodView] = field(default_factory=list)
    meters: list[dict[str, Any]] = field(default_factory=list)  # area page: visible meters
    hidden: int = 0  # area page: meters of other managers' customers, not listed
    message: str = ""


def compliance_view(doc: dict[str, Any] | None) -> ComplianceView:
    """From the worker's compliance document (a meter's or an area's)."""
    if not isinstance(doc, dict) or doc.get("standard") not in SHARE_OF:
        return ComplianceView(message="Voltage compliance unavailable (the worker did not answer).")
    std = doc["standard"]
    cur = period_view(doc.get("current"), std, "current", current=True,
                      failed=bool(doc.get("current_failed")))
    prev = period_view(doc.get("previous"), std, "last completed", current=False)
    v = ComplianceView(std, STANDARD_NAME[std], SHARE_LABEL[std], OUTER_LABEL[std],
                       [p for p in (cur, prev) if p is not None])
    if not v.periods:
        v.message = "No measured voltage yet."
    return v


async def fetch_area(http: aiohttp.ClientSession | None, worker_url: str, area_id: str, *,
                     timeout: float = 3.0) -> dict[str, Any] | None:
    """The worker's compliance document for an area, or None (unreachable, unknown)."""
    if not worker_url:
        return None
    url = f"{worker_url.rstrip('/')}/areas/{quote(area_id, safe='')}/compliance"
    doc = await fetch_worker_json(http, url, "area compliance", timeout=timeout)
    return doc if isinstance(doc, dict) and isinstance(doc.get("meters"), list) else None


def area_view(doc: dict[str, Any] | None, visible: set[str] | None) -> ComplianceView:
    """An area's view; ``visible``: the meter ids the user may see listed (None: all)."""
    v = compliance_view(doc)
    if doc is None or not v.standard:
        return v
    share = SHARE_OF[v.standard]
    for m in doc.get("meters", []):
        if not isinstance(m, dict):
            continue
        if visible is not None and m.get("meter_id") not in visible:
            v.hidden += 1
            continue
        cur = m.get("current") or {}
        v.meters.append({"meter_id": m.get("meter_id"), "customer_id": m.get("customer_id"),
                         "share": _pct(cur.get(share)) if cur else "–",
                         "coverage": _pct(cur.get("coverage")) if cur else "–",
                         "failed": bool(m.get("current_failed"))})
    return v
