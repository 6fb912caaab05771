"""Plots of the report (recall, delays, sweep curves, example alerts); matplotlib only
when a report is written."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from models.evaluate.inject import DAY_S, KINDS, VirtualSet, local_clock, weekend
from models.evaluate.real import RealEval
from models.evaluate.tables import duration
from models.evaluate.targets import SPEC, Target


# -- plots -------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_recall(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    plt = _plt()
    keys = [d["key"] for d in rows]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(keys) + 2), 3.6))
    ax.bar(x - 0.2, [d["recall_window"] or 0 for d in rows], 0.4, label="in window")
    ax.bar(x + 0.2, [d["recall_any"] or 0 for d in rows], 0.4, label="late ok (<= 30 d / end + 1 d)",
           alpha=0.6)
    ax.set_xticks(x, keys, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_delays(targets: list[Target], path: Path, title: str) -> None:
    plt = _plt()
    by: dict[str, list[float]] = defaultdict(list)
    for tg in targets:
        if tg.valid and tg.detected:
            by[tg.kind].append(max(tg.delay, 1) / 3600)
    keys = [k for k in (*KINDS, *SPEC) if k in by]
    keys = list(dict.fromkeys(keys))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(keys) + 2), 3.6))
    if keys:
        ax.boxplot([by[k] for k in keys], showfliers=True)
        ax.set_xticks(np.arange(1, len(keys) + 1), keys, rotation=45, ha="right", fontsize=8)
        ax.set_yscale("log")
        for y, lab in ((0.5, "30 min"), (24, "1 d"), (168, "7 d")):
            ax.axhline(y, color="grey", lw=0.6, ls=":")
            ax.text(len(keys) + 0.45, y, lab, fontsize=7, va="center")
    ax.set_ylabel("delay from onset (h, log)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(points: list[dict[str, Any]], path: Path, target: str) -> bool:
    pts = [p for p in points if p["target"] == target]
    if not pts:
        return False
    plt = _plt()
    groups = [g for g in ("all", "theft", "surge", "vacancy/increase", "voltage")
              if any(p.get(f"recall_{g}") is not None for p in pts)]
    if not groups:  # no point of the sweep measured a recall: nothing to draw
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.8), squeeze=False)
    for ax, g in zip(axes[0], groups):
        for param in dict.fromkeys(p["param"] for p in pts):
            ps = sorted((p for p in pts if p["param"] == param), key=lambda p: p["value"])
            # Theft's false-alarm target is per household and year, not per month.
            xkey = "theft_share" if g == "theft" and target == "real" else "false_per_cm"
            xs = [p.get(xkey) for p in ps]
            ys = [p.get(f"recall_{g}") for p in ps]
            ax.plot(xs, ys, "o-", label=param, ms=4)
            for xv, yv, p in zip(xs, ys, ps):
                if xv is not None and yv is not None:
                    ax.annotate(f"{p['value']:g}", (xv, yv), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
        ax.set_title(f"{g}: recall in window", fontsize=9)
        ax.set_xlabel("false alerts per customer-month" if target == "sim"
                      else "clean households with a theft alert" if g == "theft"
                      else "clean alerts per customer-month")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("recall")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Threshold sweep ({'real readings' if target == 'real' else 'simulated fleet'})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _band(ts: np.ndarray, x: np.ndarray, iv: int, tz: str, w0: int, w1: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(plot ts, kW, band mean, band sd) for readings in [w0, w1), the band from the same
    slot and day type (weekday/weekend) over the 28 days before w0."""
    h = iv / 3600
    day_no, sod = local_clock(ts, iv, tz)
    slot = sod // iv
    we = weekend(day_no)
    hist = (ts > w0 - 28 * DAY_S) & (ts <= w0)
    win = (ts > w0) & (ts <= w1)
    S = DAY_S // iv + 2
    mean = np.full((2, S), np.nan)
    sd = np.full((2, S), np.nan)
    for t in (0, 1):
        sel = hist & (we == t)
        if sel.any():
            cnt = np.bincount(slot[sel], minlength=S)[:S]
            s1 = np.bincount(slot[sel], weights=x[sel] / h, minlength=S)[:S]
            s2 = np.bincount(slot[sel], weights=(x[sel] / h) ** 2, minlength=S)[:S]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean[t] = np.where(cnt > 0, s1 / cnt, np.nan)
                sd[t] = np.sqrt(np.maximum(np.where(cnt > 0, s2 / cnt, np.nan) - mean[t] ** 2, 0))
    return ts[win], x[win] / h, mean[we[win].astype(int), slot[win]], sd[we[win].astype(int), slot[win]]


def plot_example(vs: VirtualSet, ex: dict[str, Any], path: Path) -> None:
    plt = _plt()
    m = ex["meter_id"]
    ts, x = vs.series[m]
    iv = int(np.median(np.diff(ts)))
    t_al = ex["t"]
    onset = ex.get("onset")
    w0 = (min(onset, t_al) if onset else t_al) - 3 * DAY_S
    w0 = max(w0, t_al - 8 * DAY_S)
    w1 = t_al + 2 * DAY_S
    pt, kw, mu, sd = _band(ts, x, iv, vs.tz, w0, w1)
    z = ZoneInfo(vs.tz)
    to_dt = lambda a: pd.to_datetime(np.asarray(a) - iv, unit="s", utc=True).tz_convert(z)  # noqa: E731
    fig, ax = plt.subplots(figsize=(10, 3.6))
    d = to_dt(pt)
    ax.fill_between(d, np.maximum(mu - sd, 0), mu + sd, step="post", color="tab:blue", alpha=0.18,
                    label="band: slot mean ± 1 sd, previous 4 weeks")
    ax.step(d, mu, where="post", color="tab:blue", lw=0.8, alpha=0.7)
    hh = vs.household_of(m)
    if hh != m and hh in vs.series:
        cts, cx = vs.series[hh]
        sel = (cts > w0) & (cts <= w1)
        ax.step(to_dt(cts[sel]), cx[sel] / (iv / 3600), where="post", color="grey", lw=0.7,
                ls="--", label="clean copy")
    ax.step(d, kw, where="post", color="black", lw=1.0, label=f"{m} readings")
    if onset:
        ax.axvline(to_dt([onset + iv])[0], color="tab:red", ls="--", lw=1, label="injected onset")
    ax.axvline(to_dt([t_al])[0], color="tab:orange", lw=1.5, label=f"alert {ex['alert']}")
    ax.set_ylabel("kW")
    ax.set_title(ex["title"], fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pick_examples(r: RealEval, n: int = 4) -> list[dict[str, Any]]:
    """A detected theft (a shape attack if any), a detected vacancy or increase, a detected
    daily surge, and the most common false alert on a clean copy."""
    tgs = r.matching.targets
    out: list[dict[str, Any]] = []

    def det(kinds):
        for k in kinds:
            c = sorted((tg for tg in tgs if tg.kind == k and tg.in_window), key=lambda tg: tg.delay)
            if c:
                return c[len(c) // 2]
        return None

    for kinds, what in ((("h2", "h5", "h6", "h4", "h3", "h1"), "theft"),
                        (("vacancy", "increase", "decrease"), "habit"),
                        (("surge_daily", "new_load", "surge_interval"), "surge")):
        tg = det(kinds)
        if tg is not None:
            out.append({"meter_id": tg.meter_id, "t": tg.first_t, "onset": tg.onset,
                        "alert": tg.first_alert, "kind": tg.kind,
                        "title": f"{tg.meter_id}: injected {tg.kind} {_short_params(tg.params)}; "
                                 f"{tg.first_alert} after {duration(tg.delay)}"})
    clean = set(r.vs.clean_ids)
    fps = [x for x in r.matching.rows if x["meter_id"] in clean and x["cls"] == "fp"]
    if fps:
        common = Counter(f"{x['type']}/{x['subtype']}" for x in fps).most_common(1)[0][0]
        cand = [x for x in fps if f"{x['type']}/{x['subtype']}" == common]
        first = {m: int(r.vs.series[m][0][0]) for m in {x["meter_id"] for x in cand}}
        later = [x for x in cand if x["t"] >= first[x["meter_id"]] + 42 * DAY_S] or cand
        x = later[len(later) // 2]
        out.append({"meter_id": x["meter_id"], "t": x["t"], "onset": None, "alert": common,
                    "kind": "clean",
                    "title": f"{x['meter_id']} (clean copy): {common} opened "
                             f"{x['detected_at'][:16]} -- the most common alert on clean households"})
    missed = [tg for tg in tgs if tg.group == "theft" and tg.valid and not tg.in_window]
    if len(out) < n and missed:
        tg = missed[0]
        out.append({"meter_id": tg.meter_id, "t": tg.onset + 7 * DAY_S, "onset": tg.onset,
                    "alert": "none in 7 d", "kind": tg.kind,
                    "title": f"{tg.meter_id}: injected {tg.kind} {_short_params(tg.params)} -- "
                             f"MISSED within 7 days"})
    return out[:n]


def _short_params(p: dict[str, Any]) -> str:
    keep = {k: v for k, v in p.items() if k not in ("attack", "low", "high", "usual_day_kwh", "day_kwh")}
    return "(" + ", ".join(f"{k}={v}" for k, v in list(keep.items())[:4]) + ")" if keep else ""

