"""Server-rendered SVG charts: no JavaScript, no build step, nothing fetched by the page.

* :func:`habit_chart` -- one day's power per half-hour slot against the customer's habit
  band (usual power +- its spread) for that day type. Slots outside the band are marked.
* :func:`voltage_chart` -- observed voltage over an alert's life against the voltage
  standard's limits (normal band, critical limits, nominal).
* :func:`daily_chart` -- a theft suspicion's daily energy before and after its onset
  against the usual day, the shortfall since onset marked.

Every number and label is escaped; the result is safe to insert into a page as markup.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from html import escape
from typing import Sequence, Tuple
from zoneinfo import ZoneInfo

W, H = 720, 260
ML, MR, MT, MB = 52, 14, 24, 34  # margins: left, right, top, bottom
PW, PH = W - ML - MR, H - MT - MB

C_BAND = "#cfe3f6"
C_EXPECTED = "#2f6ea8"
C_OBS = "#222222"
C_OUT = "#c62828"
C_LIMIT = "#e08a00"
C_CRIT = "#c62828"
C_NOMINAL = "#888888"
C_GRID = "#e6e6e6"


def _num(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2f}".rstrip("0").rstrip(".") or "0"


def _open(title: str, desc: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {W} {H}" '
            f'width="{W}" height="{H}" role="img" aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>",
            f'<rect x="{ML}" y="{MT}" width="{PW}" height="{PH}" fill="#ffffff" stroke="#bbbbbb"/>']


def _yaxis(parts: list[str], ticks: list[float], y, unit: str) -> None:
    for t in ticks:
        yy = y(t)
        parts.append(f'<line x1="{ML}" x2="{ML + PW}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{C_GRID}"/>')
        parts.append(f'<text x="{ML - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end" '
                     f'fill="#444">{escape(_fmt(t))}</text>')
    parts.append(f'<text x="12" y="{MT + PH / 2:.1f}" font-size="11" fill="#444" '
                 f'transform="rotate(-90 12 {MT + PH / 2:.1f})" text-anchor="middle">'
                 f'{escape(unit)}</text>')


def _legend(parts: list[str], items: Sequence[Tuple[str, str, str]]) -> None:
    """items: (kind, colour, label) with kind band|line|dash|dot."""
    x = ML
    for kind, colour, label in items:
        if kind == "band":
            parts.append(f'<rect x="{x}" y="6" width="18" height="10" fill="{colour}"/>')
        elif kind == "dot":
            parts.append(f'<circle cx="{x + 9}" cy="11" r="4" fill="{colour}"/>')
        else:
            dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
            parts.append(f'<line x1="{x}" x2="{x + 18}" y1="11" y2="11" stroke="{colour}" '
                         f'stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 23}" y="15" font-size="11" fill="#333">{escape(label)}</text>')
        x += 32 + 6.2 * len(label)


def habit_chart(observed: Sequence | None, expected: Sequence, spread: Sequence, *,
                title: str, unit: str = "kW", observed_label: str = "this day",
                band_label: str = "usual ± spread") -> str:
    """A day of per-slot values against the habit band; None/missing slots leave gaps.

    ``expected``, ``spread`` and ``observed`` have one value per slot (48 half hours;
    any length works). Returns SVG markup.
    """
    n = len(expected)
    if n == 0:
        raise ValueError("no slots to draw")
    exp = [_num(v) for v in expected]
    spr = [abs(_num(v) or 0.0) for v in spread] + [0.0] * max(0, n - len(spread))
    obs = [_num(v) for v in (observed or [])][:n]
    obs += [None] * (n - len(obs))
    hi_vals = [e + s for e, s in zip(exp, spr) if e is not None]
    vmax = max([v for v in hi_vals + obs if v is not None] or [1.0])
    ticks = nice_ticks(0.0, vmax * 1.05 if vmax > 0 else 1.0)
    ymax = ticks[-1]
    slot_h = 24.0 / n
    x = lambda i: ML + (i + 0.5) * PW / n  # noqa: E731 - slot centre
    y = lambda v: MT + PH - (max(v, 0.0) / ymax) * PH  # noqa: E731

    n_obs = sum(v is not None for v in obs)
    outside = [i for i, v in enumerate(obs)
               if v is not None and exp[i] is not None
               and (v > exp[i] + spr[i] or v < max(exp[i] - spr[i], 0.0))]
    desc = (f"{n_obs} of {n} slots observed; {len(outside)} outside the usual band. "
            f"Values in {unit}.")
    parts = _open(title, desc)
    _yaxis(parts, ticks, y, unit)
    for h in range(0, 25, 3):
        xx = ML + h / 24.0 * PW
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{MT}" y2="{MT + PH}" stroke="{C_GRID}"/>')
        anchor = "end" if h == 24 else "middle"
        parts.append(f'<text x="{xx:.1f}" y="{MT + PH + 16}" font-size="11" '
                     f'text-anchor="{anchor}" fill="#444">{h:02d}:00</text>')

    # The band, drawn per run of slots that have an expectation.
    runs: list[list[int]] = []
    for i, e in enumerate(exp):
        if e is None:
            continue
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    for run in runs:
        upper = [f"{x(i):.1f},{y(exp[i] + spr[i]):.1f}" for i in run]
        lower = [f"{x(i):.1f},{y(max(exp[i] - spr[i], 0.0)):.1f}" for i in reversed(run)]
        parts.append(f'<polygon class="band" points="{" ".join(upper + lower)}" fill="{C_BAND}"/>')
        pts = " ".join(f"{x(i):.1f},{y(exp[i]):.1f}" for i in run)
        parts.append(f'<polyline class="expected" points="{pts}" fill="none" stroke="{C_EXPECTED}" '
                     f'stroke-width="1.5" stroke-dasharray="5 3"/>')

    # Observed values: a line through consecutive slots, gaps where there is no reading.
    seg: list[str] = []
    for i, v in enumerate(obs + [None]):
        if v is not None:
            seg.append(f"{x(i):.1f},{y(v):.1f}")
        elif seg:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{C_OBS}"/>')
            else:
                parts.append(f'<polyline class="observed" points="{" ".join(seg)}" fill="none" '
                             f'stroke="{C_OBS}" stroke-width="2"/>')
            seg = []
    for i in outside:
        t0 = i * slot_h
        label = (f"{int(t0):02d}:{int(round((t0 % 1) * 60)):02d} {_fmt(obs[i])} {unit} "
                 f"(usual {_fmt(exp[i])} ± {_fmt(spr[i])})")
        parts.append(f'<circle class="outside" cx="{x(i):.1f}" cy="{y(obs[i]):.1f}" r="3.5" '
                     f'fill="{C_OUT}"><title>{escape(label)}</title></circle>')
    items = [("band", C_BAND, band_label), ("dash", C_EXPECTED, "usual")]
    if n_obs:
        items += [("line", C_OBS, observed_label), ("dot", C_OUT, "outside the band")]
    _legend(parts, items)
    parts.append("</svg>")
    return "".join(parts)


def voltage_chart(points: Sequence[Tuple[float, float]], *, low: float, high: float,
                  crit_low: float, crit_high: float, nominal: float, t0: float, t1: float,
                  tz: str = "UTC", title: str = "Voltage against the standard's limits",
                  standard: str = "") -> str:
    """Observed voltage (V) at times (epoch s) as a step line, against the limits.

    ``points`` are (time, volts) in time order; each value holds until the next one
    (the last until ``t1``).
    """
    pts = [(float(t), float(v)) for t, v in points if _num(v) is not None and _num(t) is not None]
    if t1 <= t0:
        t1 = t0 + 900.0
    vals = [v for _, v in pts] + [crit_low, crit_high, nominal]
    span = max(vals) - min(vals)
    ticks = nice_ticks(min(vals) - 0.08 * span, max(vals) + 0.08 * span, 6)
    ylo, yhi = ticks[0], ticks[-1]
    x = lambda t: ML + (min(max(t, t0), t1) - t0) / (t1 - t0) * PW  # noqa: E731
    y = lambda v: MT + PH - (v - ylo) / (yhi - ylo) * PH  # noqa: E731

    bad = [v for _, v in pts if v < low or v > high]
    desc = (f"{len(pts)} observations, {len(bad)} outside {_fmt(low)}-{_fmt(high)} V "
            f"{standard}".strip())
    parts = _open(title, desc)
    parts.append(f'<rect class="normal" x="{ML}" y="{y(high):.1f}" width="{PW}" '
                 f'height="{y(low) - y(high):.1f}" fill="#e3f2e1"/>')
    _yaxis(parts, ticks, y, "V")
    zone = ZoneInfo(tz)
    long_span = (t1 - t0) > 36 * 3600
    for k in range(5):
        t = t0 + k * (t1 - t0) / 4
        xx = x(t)
        d = datetime.fromtimestamp(t, timezone.utc).astimezone(zone)
        label = d.strftime("%m-%d %H:%M" if long_span or k == 0 else "%H:%M")
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        parts.append(f'<text x="{xx:.1f}" y="{MT + PH + 16}" font-size="11" '
                     f'text-anchor="{anchor}" fill="#444">{escape(label)}</text>')
    for v, colour, dash, name in ((high, C_LIMIT, "", "upper limit"),
                                  (low, C_LIMIT, "", "lower limit"),
                                  (crit_high, C_CRIT, ' stroke-dasharray="6 3"', "critical"),
                                  (crit_low, C_CRIT, ' stroke-dasharray="6 3"', "critical"),
                                  (nominal, C_NOMINAL, ' stroke-dasharray="2 3"', "nominal")):
        if ylo <= v <= yhi:
            parts.append(f'<line class="limit" x1="{ML}" x2="{ML + PW}" y1="{y(v):.1f}" '
                         f'y2="{y(v):.1f}" stroke="{colour}" stroke-width="1.5"{dash}>'
                         f'<title>{escape(name)} {escape(_fmt(v))} V</title></line>')
            parts.append(f'<text x="{ML + PW - 4}" y="{y(v) - 3:.1f}" font-size="10" '
                         f'text-anchor="end" fill="{colour}">{escape(_fmt(v))} V</text>')
    if pts:
        path = []
        for k, (t, v) in enumerate(pts):
            t_next = pts[k + 1][0] if k + 1 < len(pts) else t1
            path.append(f"{x(t):.1f},{y(v):.1f} {x(max(t_next, t)):.1f},{y(v):.1f}")
        parts.append(f'<polyline class="observed" points="{" ".join(path)}" fill="none" '
                     f'stroke="{C_OBS}" stroke-width="2"/>')
        for t, v in pts:
            c = C_OUT if (v < low or v > high) else C_OBS
            parts.append(f'<circle class="obs" cx="{x(t):.1f}" cy="{y(v):.1f}" r="3.5" fill="{c}">'
                         f'<title>{escape(_fmt(v))} V</title></circle>')
    _legend(parts, [("band", "#e3f2e1", "within limits"), ("line", C_LIMIT, "limits"),
                    ("dash", C_CRIT, "critical"), ("line", C_OBS, "observed")])
    parts.append("</svg>")
    return "".join(parts)


C_AFTER = "#fbeee0"  # days since onset
C_GAP = "#f2b8b5"  # below the usual since onset: the unbilled estimate
C_REPORTED = "#5b6b7b"


def daily_chart(points: Sequence[Tuple[date, float | None, float | None]],
                onset: date | None, *, title: str, unit: str = "kWh") -> str:
    """Daily energy as bars against the usual day (dashed), the days since ``onset``
    shaded and the shortfall below the usual on those days marked (the unbilled
    estimate). ``points`` are (day, reported, usual), any order; gaps between days
    stay gaps. Returns SVG markup."""
    pts = sorted((d, _num(k), _num(u)) for d, k, u in points)
    if not pts:
        raise ValueError("no days to draw")
    d0, span = pts[0][0], (pts[-1][0] - pts[0][0]).days + 1
    vmax = max([v for _, k, u in pts for v in (k, u) if v is not None] or [1.0])
    ticks = nice_ticks(0.0, vmax * 1.08 if vmax > 0 else 1.0)
    ymax = ticks[-1]
    slot = PW / span
    x = lambda d: ML + ((d - d0).days + 0.5) * slot  # noqa: E731 - a day's centre
    y = lambda v: MT + PH - (max(v, 0.0) / ymax) * PH  # noqa: E731

    after = [p for p in pts if onset is not None and p[0] >= onset]
    gaps = [(d, k, u) for d, k, u in after if k is not None and u is not None and k < u]
    short = sum(u - k for _, k, u in gaps)
    desc = (f"{len(pts)} days, {len(after)} since onset; {_fmt(short)} {unit} below the "
            f"usual on those days.")
    parts = _open(title, desc)
    if onset is not None and onset <= pts[-1][0]:
        xo = max(x(onset) - slot / 2, ML)
        parts.append(f'<rect class="after" x="{xo:.1f}" y="{MT}" width="{ML + PW - xo:.1f}" '
                     f'height="{PH}" fill="{C_AFTER}"/>')
    _yaxis(parts, ticks, y, unit)
    every = max(1, math.ceil(span / 14))
    for i in range(0, span, every):
        d = d0 + timedelta(days=i)
        parts.append(f'<text x="{x(d):.1f}" y="{MT + PH + 16}" font-size="11" '
                     f'text-anchor="middle" fill="#444">{d:%m-%d}</text>')
    for d, k, u in pts:
        if k is None:
            continue
        label = f"{d.isoformat()}: {_fmt(k)} {unit}" + (f" (usual {_fmt(u)})" if u is not None else "")
        parts.append(f'<rect class="reported" x="{x(d) - slot * 0.3:.1f}" y="{y(k):.1f}" '
                     f'width="{slot * 0.6:.1f}" height="{MT + PH - y(k):.1f}" '
                     f'fill="{C_REPORTED}"><title>{escape(label)}</title></rect>')
    for d, k, u in gaps:
        label = f"{d.isoformat()}: {_fmt(u - k)} {unit} below the usual"
        parts.append(f'<rect class="gap" x="{x(d) - slot * 0.3:.1f}" y="{y(u):.1f}" '
                     f'width="{slot * 0.6:.1f}" height="{y(k) - y(u):.1f}" fill="{C_GAP}" '
                     f'fill-opacity="0.85"><title>{escape(label)}</title></rect>')
    _usual_line(parts, [(x(d), y(u)) for d, _, u in pts if u is not None])
    if onset is not None and d0 <= onset <= pts[-1][0]:
        xo = x(onset) - slot / 2
        parts.append(f'<line class="onset" x1="{xo:.1f}" x2="{xo:.1f}" y1="{MT}" '
                     f'y2="{MT + PH}" stroke="{C_OUT}" stroke-width="1.5" stroke-dasharray="4 3">'
                     f'<title>onset {escape(onset.isoformat())}</title></line>')
        parts.append(f'<text x="{xo + 4:.1f}" y="{MT + 12}" font-size="11" fill="{C_OUT}">'
                     f'onset {escape(onset.isoformat())}</text>')
    _legend(parts, [("band", C_REPORTED, "reported"), ("dash", C_EXPECTED, "usual"),
                    ("band", C_GAP, "below usual since onset"), ("band", C_AFTER, "since onset")])
    parts.append("</svg>")
    return "".join(parts)


def _usual_line(parts: list[str], xy: list[tuple[float, float]]) -> None:
    if len(xy) > 1:
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in xy)
        parts.append(f'<polyline class="expected" points="{pts}" fill="none" '
                     f'stroke="{C_EXPECTED}" stroke-width="1.5" stroke-dasharray="5 3"/>')
    for a, b in xy:
        parts.append(f'<circle class="usual" cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{C_EXPECTED}"/>')
