"""What the alert and customer pages draw, and where the numbers come from.

* The **alert page** draws the alert record's ``context`` (the day of readings the
  pipeline judged, against the habit band of that day type) and, for voltage alerts,
  the voltage of each of the alert's messages against the standard's limits.
* The **customer page** asks the worker that owns the meter for its live profile
  (``GET {worker_url}/meters/{meter_id}/profile``). If no worker answers, or it does not
  know the meter, the page says so and falls back to the newest alert's ``context``.

Values are shown as average power (kW) per half-hour slot: the context's kWh per slot
are converted with the slot length.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import quote

import aiohttp

from stream.console import charts
from stream.store import iso_to_epoch

log = logging.getLogger("meterwatch.console")

DAY_TYPES = ("workday", "offday")
DAY_TYPE_LABEL = {"workday": "Workday", "offday": "Weekend / holiday"}


@dataclass
class Chart:
    title: str
    svg: str
    note: str = ""


@dataclass
class ProfileView:
    source: str  # "live" | "alert" | "none"
    charts: list[Chart] = field(default_factory=list)
    usual_day_kwh: dict[str, float] = field(default_factory=dict)
    days: dict[str, int] = field(default_factory=dict)
    message: str = ""


def _series(v: Any, n: int | None = None) -> list[float | None] | None:
    """A list of numbers-or-None (a chart series), or None if it is not one."""
    if not isinstance(v, list) or not v or (n is not None and len(v) != n):
        return None
    out: list[float | None] = []
    for x in v:
        if x is None:
            out.append(None)
        elif isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
            out.append(float(x))
        else:
            return None
    return out


def _scale(v: list[float | None] | None, k: float) -> list[float | None] | None:
    return None if v is None else [None if x is None else x * k for x in v]


# ---- alert context ----------------------------------------------------------------------

def context_chart(ctx: Any, *, title: str | None = None) -> Chart | None:
    """The alert's day against the habit band, from ``alert["context"]``; None if the
    context is absent or malformed."""
    if not isinstance(ctx, dict):
        return None
    exp = _series(ctx.get("expected_kwh"))
    if exp is None:
        return None
    n = len(exp)
    spr = _series(ctx.get("spread_kwh"), n) or [0.0] * n
    obs = _series(ctx.get("kwh"), n)
    slot_s = ctx.get("slot_s") or 86400 // n
    if not isinstance(slot_s, (int, float)) or slot_s <= 0:
        slot_s = 86400 // n
    k = 3600.0 / float(slot_s)
    dt = ctx.get("day_type") if ctx.get("day_type") in DAY_TYPES else None
    day = str(ctx.get("day") or "")
    t = title or f"{day} ({DAY_TYPE_LABEL.get(dt, 'day')}): readings against the usual day"
    svg = charts.habit_chart(_scale(obs, k), _scale(exp, k), _scale(spr, k), title=t,
                             unit="kW", observed_label=day or "this day",
                             band_label=f"usual {DAY_TYPE_LABEL.get(dt, '').lower()} ± spread".replace("  ", " "))
    seen = [x for x in (obs or []) if x is not None]
    note = (f"{len(seen)} of {n} half hours read, {sum(seen):.2f} kWh; usual for the day "
            f"{sum(x for x in exp if x is not None):.2f} kWh.")
    return Chart(t, svg, note)


# ---- voltage ------------------------------------------------------------------------------

def voltage_view(alert: dict[str, Any], messages: list[dict[str, Any]], *, phases: int | None,
                 tz: str) -> Chart | None:
    """Observed voltage of each message of a voltage alert against the standard's limits."""
    from models.voltage import STANDARDS, limits

    ev = alert["record"].get("evidence") or {}
    if alert["record"].get("subtype") == "noncompliant_period":
        return None  # figures over a period, not voltages at moments: the evidence says it
    std = ev.get("standard")
    nominal = ev.get("nominal_v") or ev.get("nominal")
    if std not in STANDARDS or not isinstance(nominal, (int, float)) or nominal <= 0:
        return None
    lim = None
    want = ev.get("limit_v")
    # The limit in the evidence tells single- from three-phase when the registry cannot.
    for ph in ([phases] if phases in (1, 3) else []) + [1, 3]:
        cand = limits(std, float(nominal), ph)
        if lim is None:
            lim = cand
        if not isinstance(want, (int, float)) or any(
                abs(want - v) < 0.01 for v in cand):
            lim = cand
            break
    pts: list[tuple[float, float]] = []
    for m in messages:
        e = m.get("evidence") or {}
        v = e.get("observed_v")
        if isinstance(v, (int, float)) and m.get("detected_at"):
            pts.append((iso_to_epoch(m["detected_at"]), float(v)))
    t0 = alert["start_ts"]
    t_end = max([alert["detected_ts"]] + [t for t, _ in pts])
    if pts and pts[0][0] > t0:
        # The condition held from its start: draw the first observation from there.
        pts.insert(0, (t0, pts[0][1]))
    t1 = t_end + max((t_end - t0) * 0.1, 900.0)
    title = f"Voltage against {std} limits (nominal {nominal:g} V)"
    svg = charts.voltage_chart(pts, low=lim.low, high=lim.high, crit_low=lim.crit_low,
                               crit_high=lim.crit_high, nominal=float(nominal), t0=t0, t1=t1,
                               tz=tz, title=title, standard=std)
    dur = ev.get("duration_s")
    note = (f"Limits {lim.low:g}-{lim.high:g} V, critical {lim.crit_low:g}/{lim.crit_high:g} V"
            + (f"; condition lasted {int(dur) // 60} min when reported" if isinstance(dur, (int, float)) else "")
            + ".")
    return Chart(title, svg, note)


# ---- live profile from the worker --------------------------------------------------------

async def fetch_worker_json(http: aiohttp.ClientSession | None, url: str, what: str, *,
                            timeout: float = 3.0) -> Any:
    """A worker view's JSON document, or None when the worker is unreachable, answers
    other than 200 or sends something that is not JSON (logged as ``what``)."""
    if http is None:
        return None
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout),
                            allow_redirects=False) as r:
            if r.status != 200:
                log.info("%s: worker answered %s", what, r.status)
                return None
            return await r.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
        log.info("%s: worker unreachable (%s)", what, type(e).__name__)
        return None


async def fetch_profile(http: aiohttp.ClientSession, worker_url: str, meter_id: str, *,
                        timeout: float = 3.0) -> dict[str, Any] | None:
    """The worker's profile JSON for a meter, or None (unreachable, unknown, malformed)."""
    if not worker_url:
        return None
    url = f"{worker_url.rstrip('/')}/meters/{quote(meter_id, safe='')}/profile"
    doc = await fetch_worker_json(http, url, "live profile", timeout=timeout)
    if not isinstance(doc, dict) or not isinstance(doc.get("profile"), dict):
        return None
    return doc


def day_type_of(day: str, holidays_country: str | None) -> str | None:
    try:
        d = date.fromisoformat(day)
    except (TypeError, ValueError):
        return None
    if d.weekday() >= 5:
        return "offday"
    if holidays_country:
        try:
            import holidays

            if d in holidays.country_holidays(holidays_country):
                return "offday"
        except (KeyError, NotImplementedError):
            pass
    return "workday"


def live_view(doc: dict[str, Any], *, holidays_country: str | None) -> ProfileView | None:
    """Charts of the usual day per day type, with today on its day type's chart."""
    prof = doc.get("profile") or {}
    today = doc.get("today") if isinstance(doc.get("today"), dict) else {}
    t_day = str(today.get("day") or "")
    t_type = today.get("day_type") if today.get("day_type") in DAY_TYPES else \
        day_type_of(t_day, holidays_country)
    view = ProfileView("live")
    for dt in DAY_TYPES:
        p = prof.get(dt)
        if not isinstance(p, dict):
            continue
        exp = _series(p.get("expected_kw"))
        if exp is None:
            continue
        spr = _series(p.get("spread_kw"), len(exp)) or [0.0] * len(exp)
        obs = None
        if dt == t_type:
            kwh = _series(today.get("kwh"), len(exp))
            obs = _scale(kwh, 3600.0 / (86400 / len(exp)))
        days = p.get("days")
        title = f"Usual {DAY_TYPE_LABEL[dt].lower()}" + (f", with today ({t_day})" if obs else "")
        svg = charts.habit_chart(obs, exp, spr, title=title, unit="kW",
                                 observed_label=f"today {t_day}".strip())
        hours = 24.0 / len(exp)
        usual = p.get("usual_day_kwh")  # the worker's learned daily level, when it sends it
        if not isinstance(usual, (int, float)) or isinstance(usual, bool) or not usual > 0:
            usual = sum(x for x in exp if x is not None) * hours
        view.usual_day_kwh[dt] = usual
        if isinstance(days, int):
            view.days[dt] = days
        note = f"Usual {usual:.1f} kWh a day" + (f", learned from {days} days" if isinstance(days, int) else "") + "."
        view.charts.append(Chart(title, svg, note))
    return view if view.charts else None
