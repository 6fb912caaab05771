"""The demo's own score: the alerts a worker published, against the simulator's ground truth.

The scoring is ``meterwatch evaluate``'s for a simulated fleet (:func:`models.evaluate.sim_targets`
and :func:`models.evaluate.match`): the same expected alert types per injection kind,
the same detection windows, the same classes of alert openings. One difference: every
opening counts, including those of a meter's first 14 days (evaluate excludes them as
warm-up), because the demo shows them all.

An alert OPENING is one alert id: a condition that recurs within its cool-down reopens
the same id, and updates and closes are not new alerts (``match`` keeps the first
``open`` message of each id).

* An injected anomaly is *found* when an expected alert opened after its onset (and,
  for open-ended changes, within 30 days); the report gives that alert, its delay, and
  whether it came within the window (e.g. 7 days for theft, two intervals after the end
  of a voltage event). Voltage injections the readings show within the standard's limits
  are no anomaly: listed, not counted.
* *Precision* = openings that match an injected anomaly / all openings. Matching is
  ``match``'s: the first expected alert (``tp``), a repeat of it (``dup``), or a side
  effect ``evaluate`` excuses (``related``, e.g. a usage decrease on a bypassed meter).
  The strict figure counts ``tp`` and ``dup`` only.
* *Recall* = injected anomalies found / injected anomalies.

>>> from models.base import Fleet
>>> from models.evaluate import SimInput
>>> inp = SimInput(pd.DataFrame(), Fleet.simple(2), [{"type": "theft", "subtype":
...     "energy_mismatch", "meter_id": "M00001", "area_id": "A000",
...     "start": "2026-01-20T00:00:00+08:00", "end": None, "params": {"kind": "bypass"}}],
...     "Asia/Shanghai", "CN", 900, 1768838400 - 19 * 86400, 1768838400 + 10 * 86400, 2)
>>> theft = {"id": "a1", "type": "theft", "subtype": "energy_mismatch", "status": "open",
...          "scope": "meter", "meter_id": "M00001", "area_id": "A000",
...          "detected_at": "2026-01-20T06:00:00+08:00"}
>>> again = dict(theft, detected_at="2026-01-22T06:00:00+08:00")   # same id: reopened
>>> other = dict(theft, id="b2", meter_id="M00000", type="surge", subtype="interval")
>>> sc = score_demo([theft, again, other], inp)
>>> len(sc.openings), sc.precision, sc.recall, sc.targets[0].delay
(2, 0.5, 1.0, 21600)
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import pandas as pd

from models.config import DetectorConfig
from models.evaluate import WARMUP_S, SimInput, Target, match, sim_targets

PRECISION_TARGET = 0.9  # issue 13: every injected anomaly found and precision >= 0.9
MATCHED = ("tp", "dup", "related")
_VOLTAGE_KINDS = ("undervoltage", "overvoltage", "sag", "swell", "interruption")


@dataclass
class DemoScore:
    targets: list[Target]  # the injected anomalies due before the data ended
    openings: list[dict[str, Any]]  # one per alert id, classified by models.evaluate.match
    customer_of: dict[str, str]  # meter -> customer
    tz: tzinfo  # the customers' zone, for the times shown
    data_start: int  # the simulation's start (epoch s)
    data_end: int  # last reading time the score covers (epoch s)
    complete: bool = True  # False: stopped before the worker had caught up

    @property
    def scored(self) -> list[Target]:
        """The injected anomalies to find (voltage events within limits are not)."""
        return [tg for tg in self.targets if tg.valid]

    @property
    def found(self) -> list[Target]:
        return [tg for tg in self.scored if tg.detected]

    def share(self, classes: tuple[str, ...]) -> float | None:
        n = len(self.openings)
        return sum(r["cls"] in classes for r in self.openings) / n if n else None

    @property
    def precision(self) -> float | None:
        return self.share(MATCHED)

    @property
    def recall(self) -> float | None:
        return len(self.found) / len(self.scored) if self.scored else None

    @property
    def target_met(self) -> bool:
        p = self.precision
        return len(self.found) == len(self.scored) and (p is None or p >= PRECISION_TARGET)


def simulation_input(sim, days: float, *, until: int | None = None) -> SimInput:
    """What :func:`score_demo` needs from a :class:`models.evaluate.sim.FleetSimulator` run of
    ``days`` days (or up to ``until``, epoch s, if it stopped earlier): its ground truth,
    its fleet as the registry gives it, and, when a voltage event was injected, the
    readings (regenerated: the simulator is deterministic) to check it against limits."""
    from models.backtest import load_readings
    from stream.registry import Registry

    start = int(sim.start.timestamp())
    end = int(sim.start.timestamp() + days * 86400)
    if until is not None:
        end = min(end, int(until))
    truth = [r for r in sim.ground_truth() if r["type"] != "bad_input"]
    with tempfile.TemporaryDirectory(prefix="mw-demo-") as tmp:
        reg = Path(tmp) / "registry.csv"
        sim.write_registry_csv(reg)
        fleet = Registry.load(reg).fleet
        readings = pd.DataFrame(columns=["meter_id", "ts", "voltage", "voltage_min", "voltage_max"])
        if any((r.get("params") or {}).get("kind") in _VOLTAGE_KINDS for r in truth):
            pq = Path(tmp) / "readings.parquet"
            sim.write_readings(pq, until=end)
            readings = load_readings(pq)
    # A start given with a bare UTC offset has no zone name: the report then takes the
    # simulator's own tzinfo (score_demo's tz).
    return SimInput(readings, fleet, truth, getattr(sim.tz, "key", "UTC"), "CN", sim.interval_s,
                    start, end, sim.n_customers)


def score_demo(alerts: Iterable[dict], inp: SimInput, *, config: DetectorConfig | None = None,
               complete: bool = True, tz: tzinfo | None = None) -> DemoScore:
    """Score alert messages (as published: open, update and close messages of any order)
    against the ground truth in ``inp``. Injections starting after ``inp.end`` (a run
    stopped early) are not due yet and left out. ``tz``: the zone of the times in the
    report (default ``inp.tz``)."""
    targets = [tg for tg in sim_targets(inp, config or DetectorConfig()) if tg.onset < inp.end]
    rows = match(list(alerts), targets).rows
    fl = inp.fleet
    customers = {m: fl.customer_id[i] for m, i in fl.index.items() if fl.customer_id[i]}
    return DemoScore(targets, rows, customers, tz or ZoneInfo(inp.tz), inp.start, inp.end,
                     complete)


# -- the report ----------------------------------------------------------------------------

def _when(t: int | None, tz: tzinfo) -> str:
    return "-" if t is None else datetime.fromtimestamp(int(t), tz).strftime("%Y-%m-%d %H:%M")


def _span(seconds: int) -> str:
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _who(sc: DemoScore, tg: Target) -> str:
    if tg.scope == "area" or tg.meter_id is None:
        return f"area {tg.area_id}"
    return f"{sc.customer_of.get(tg.meter_id, '?')}/{tg.meter_id}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _anomaly_lines(sc: DemoScore) -> list[str]:
    out = []
    for tg in sorted(sc.targets, key=lambda t: t.onset):
        head = (f"{tg.type}/{tg.subtype} ({tg.params.get('kind', tg.kind)}) {_who(sc, tg)}, "
                f"onset {_when(tg.onset, sc.tz)}")
        if not tg.valid:
            out.append(f"  n/a    {head}: the readings stay within the standard's limits "
                       f"(no anomaly to find)")
        elif tg.detected:
            late = "" if tg.in_window else f", after its {_span(tg.deadline - tg.onset)} window"
            more = f"; {tg.hits} openings in all" if tg.hits > 1 else ""
            out.append(f"  found  {head}: {tg.first_alert} opened {_when(tg.first_t, sc.tz)}, "
                       f"delay {_span(tg.delay)}{late} (alert {tg.first_id}{more})")
        else:
            why = []
            if tg.onset < sc.data_start + WARMUP_S:
                why.append("onset in the first 14 days, while habits are still being learnt")
            if tg.deadline > sc.data_end:
                why.append("its window had not ended when the data did")
            out.append(f"  MISSED {head}: no {' or '.join(tg.expected)} opened"
                       + (f" ({'; '.join(why)})" if why else ""))
    return out or ["  (none injected)"]


def _by_type(rows: list[dict[str, Any]], sc: DemoScore) -> list[str]:
    """Openings per type/subtype: count, and the customers (or areas) they were about."""
    n: dict[str, int] = defaultdict(int)
    who: dict[str, set] = defaultdict(set)
    for r in rows:
        ts = f"{r['type']}/{r['subtype']}"
        n[ts] += 1
        if r["scope"] == "area" or r["meter_id"] is None:
            who[ts].add(("area", r["area_id"]))
        else:
            who[ts].add(("customer", sc.customer_of.get(r["meter_id"], r["meter_id"])))
    out = []
    for ts in sorted(n, key=lambda k: (-n[k], k)):
        kinds = {k for k, _ in who[ts]}
        unit = " or ".join(sorted(f"{k}s" for k in kinds))
        out.append(f"  {ts:30s} {n[ts]:5d} openings, {len(who[ts])} {unit}")
    return out


def report(sc: DemoScore) -> str:
    """The plain-text score the demo prints at its end."""
    rows = sc.openings
    c = {k: sum(r["cls"] == k for r in rows) for k in ("tp", "dup", "related")}
    matched = sum(c.values())
    lines = ["", "== score: the alerts published on the alerts topic against the simulator's "
                 "ground truth ==",
             f"data up to {_when(sc.data_end, sc.tz)}"
             + ("" if sc.complete else "; stopped before the worker had caught up: alerts "
                                       "received so far"),
             f"alert openings: {len(rows)} (one per alert id: reopenings, updates and closes "
             f"are not new alerts)", "",
             f"injected anomalies ({len(sc.targets)}):", *_anomaly_lines(sc), ""]
    side = [r for r in rows if r["cls"] == "related"]
    if side:
        lines += ["side effects of an injected anomaly (counted as matching):",
                  *_by_type(side, sc), ""]
    other = [r for r in rows if r["cls"] not in MATCHED]
    lines += ["other alert openings (no injected anomaly):",
              *(_by_type(other, sc) or ["  (none)"]), "",
              f"precision {_pct(sc.precision)} = {matched} of {len(rows)} openings match an "
              f"injected anomaly ({c['tp']} first detections, {c['dup']} repeats, {c['related']} side "
              f"effects); strict, expected types only: {_pct(sc.share(('tp', 'dup')))}",
              f"recall    {_pct(sc.recall)} = {len(sc.found)} of {len(sc.scored)} injected "
              f"anomalies found ({sum(tg.in_window for tg in sc.scored)} within their window)",
              f"target (every injected anomaly found, precision >= {PRECISION_TARGET}): "
              + ("met" if sc.target_met else "NOT met"), ""]
    return "\n".join(lines)
