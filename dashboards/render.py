"""Draw a dashboard's panels from a live Prometheus with matplotlib (no Grafana needed).

    python dashboards/render.py --prometheus http://127.0.0.1:9090 \
        --dashboard dashboards/grafana/dashboards/fleet-overview.json --minutes 30 --out fleet.png

Each panel is placed by its ``gridPos`` and drawn from the very queries Grafana would run
(template variables substituted: every area, the given window): time series as lines,
stat and gauge panels as their last value on the threshold colour, bar gauges as bars.
It is a stand-in picture for the README, not a replacement for Grafana.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.parse
import urllib.request
from pathlib import Path

COLOURS = {"green": "#56a64b", "yellow": "#e0b400", "orange": "#ff780a", "red": "#e02f44",
           "blue": "#3274d9"}


def substitute(expr: str, *, rate: str = "1m", window: str = "1h", area: str = ".*") -> str:
    """A panel expression as Grafana sends it, for the given variable values."""
    out = (expr.replace("$__rate_interval", rate).replace("$window", window)
           .replace("$area", area))
    if "$" in out.replace("$labels", "").replace("$value", ""):
        raise ValueError(f"unsubstituted variable in {out!r}")
    return out


def query(base: str, expr: str, *, start: float | None = None, end: float | None = None,
          step: float | None = None, timeout: float = 10.0) -> dict:
    """Prometheus HTTP API: an instant query, or a range query with start/end/step."""
    if start is None:
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    else:
        url = f"{base}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _legend(fmt: str, labels: dict) -> str:
    if not fmt or fmt == "__auto":
        return ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out


def _threshold_colour(panel: dict, value: float) -> str:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    colour = "green"
    for s in steps:
        if s["value"] is None or (value == value and value >= s["value"]):
            colour = s["color"]
    return COLOURS.get(colour, colour)


def _fmt(value: float, unit: str) -> str:
    if value != value:
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    if unit == "cps":
        return f"{value:,.0f}/s"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def render(dashboard: dict, base: str, out: Path, *, minutes: float = 30, rate: str = "1m",
           window: str = "1h", end: float | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = time.time() if end is None else end
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 240)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(16, rows * 0.34 + 0.8), facecolor="#111217")
    fig.suptitle(dashboard["title"] + f"  (last {minutes:g} min, Prometheus {base})",
                 color="white", fontsize=13, x=0.01, ha="left")
    top = 1 - 0.6 / (rows * 0.34 + 0.8)
    for p in panels:
        g = p["gridPos"]
        x0, w = g["x"] / 24, g["w"] / 24
        y0 = top - (g["y"] + g["h"]) / rows * top
        pad = 0.006 if p["type"] in ("stat", "gauge") else 0.035  # room for tick labels
        ax = fig.add_axes([x0 + pad, y0 + 0.02, w - pad - 0.006, g["h"] / rows * top - 0.045])
        ax.set_facecolor("#181b1f")
        for s in ax.spines.values():
            s.set_color("#2c3235")
        ax.tick_params(colors="#9fa7b3", labelsize=7)
        ax.set_title(p["title"], color="#d8d9da", fontsize=9, loc="left")
        unit = p["fieldConfig"]["defaults"].get("unit", "")
        kind = p["type"]
        if kind in ("stat", "gauge"):
            t = p["targets"][0]
            res = query(base, substitute(t["expr"], rate=rate, window=window))["data"]["result"]
            v = float(res[0]["value"][1]) if res else float("nan")
            ax.set_facecolor(_threshold_colour(p, v))
            ax.text(0.5, 0.45, _fmt(v, unit), ha="center", va="center", fontsize=20,
                    color="white", transform=ax.transAxes, weight="bold")
            ax.set_xticks([])
            ax.set_yticks([])
        elif kind in ("bargauge", "table"):
            t = p["targets"][0]
            res = query(base, substitute(t["expr"], rate=rate, window=window))["data"]["result"]
            items = sorted(((_legend(t.get("legendFormat", ""), r["metric"]), float(r["value"][1]))
                            for r in res), key=lambda kv: kv[1])[-10:]
            if items:
                names, vals = zip(*items)
                ax.barh(range(len(vals)), [0 if math.isnan(v) else v for v in vals],
                        color=[_threshold_colour(p, v) for v in vals])
                ax.set_yticks(range(len(vals)), names, fontsize=7)
        else:
            for t in p["targets"]:
                expr = substitute(t["expr"], rate=rate, window=window)
                res = query(base, expr, start=start, end=end, step=step)["data"]["result"]
                if kind == "heatmap":
                    _heatmap(ax, res)
                    break
                # the busiest series first (Grafana would show them all)
                res.sort(key=lambda r: -max((abs(float(v[1])) for v in r["values"]
                                             if v[1] not in ("NaN", "+Inf", "-Inf")), default=0))
                for r in res[:10]:
                    xs = [float(v[0]) - end for v in r["values"]]
                    ys = [float(v[1]) for v in r["values"]]
                    ax.plot([x / 60 for x in xs], ys, lw=1.2,
                            label=_legend(t.get("legendFormat", ""), r["metric"]))
            if kind != "heatmap":
                ax.set_xlabel("minutes", color="#9fa7b3", fontsize=7)
                if ax.lines:
                    ax.legend(fontsize=6, facecolor="#181b1f", labelcolor="#d8d9da",
                              edgecolor="#2c3235", loc="upper left")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, facecolor=fig.get_facecolor())
    plt.close(fig)
    return out


def _heatmap(ax, res) -> None:
    import numpy as np

    les = sorted({r["metric"]["le"] for r in res}, key=lambda s: float(s))
    if not les:
        return
    series = {r["metric"]["le"]: r["values"] for r in res}
    ts = [float(v[0]) for v in series[les[0]]]
    cum = np.array([[float(v[1]) for v in series[le]][:len(ts)] for le in les])
    counts = np.diff(np.vstack([np.zeros(cum.shape[1]), cum]), axis=0)
    ax.imshow(np.nan_to_num(counts), aspect="auto", origin="lower", cmap="Oranges",
              extent=(0, len(ts), 0, len(les)))
    ax.set_yticks(np.arange(len(les)) + 0.5, les, fontsize=6)
    ax.set_xticks([])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", default="1m")
    ap.add_argument("--window", default="1h")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    render(json.loads(Path(a.dashboard).read_text()), a.prometheus, Path(a.out),
           minutes=a.minutes, rate=a.rate, window=a.window)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
