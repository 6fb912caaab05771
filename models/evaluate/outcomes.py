"""Inspection outcomes teaching the theft model (issue 14, item 4), measured.

A crew inspects the top ``k`` of the work list every ``every_days`` days; each inspection
is a ``confirmed_theft`` where the meter really carries an injected attack that has begun,
else a ``false_alarm``, and the inspected alert leaves the list. With ``feedback`` the
outcomes go back to the engine (:meth:`models.engine.Engine.apply_outcome`), as the
stream's outcome messages do; without it the detector is never told. The figure is the
precision of each round's inspections, early rounds against late ones, with and without
feedback: outcomes that teach should make the later lists cleaner.

Run: ``python -m models.evaluate.outcomes --half design --seed 0``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.config import DetectorConfig

DAY_S = 86400


def worklist_rank(items: list[dict]) -> list[dict]:
    """The work list's order: risk x estimated unbilled energy (kWh), then risk."""
    def key(a: dict) -> tuple:
        ev = a.get("evidence") or {}
        risk = float(ev.get("risk", 0.0))
        return (-risk * max(float(ev.get("unbilled_kwh", 0.0)), 0.0), -risk, a["id"])
    return sorted(items, key=key)


@dataclass
class Rounds:
    """Each inspection round's (day, inspected, confirmed)."""

    rounds: list[tuple[int, int, int]] = field(default_factory=list)

    def precision(self, part: slice = slice(None)) -> float | None:
        r = self.rounds[part]
        n = sum(x[1] for x in r)
        return None if n == 0 else sum(x[2] for x in r) / n


class Crew:
    """The work list and the crew that inspects its top ``k`` every ``every_days``."""

    def __init__(self, vs, engine, *, k: int, every_days: int, feedback: bool) -> None:
        self.vs, self.engine, self.k = vs, engine, k
        self.every = every_days * DAY_S
        self.feedback = feedback
        self.open: dict[str, dict] = {}  # alert id -> its latest record
        self.done: set[str] = set()
        self.next_round: int | None = None
        self.result = Rounds()
        self.onsets: dict[str, int] = {}
        for lab in vs.labels:
            if lab.kind.startswith("h") and lab.kind[1:].isdigit():
                self.onsets[lab.meter_id] = int(lab.onset)

    def __call__(self, ts: int, st: np.ndarray, alerts: list[dict]) -> None:
        for a in alerts:
            if a["type"] != "theft" or not (a.get("evidence") or {}).get("model"):
                continue
            if a["status"] == "closed":
                self.open.pop(a["id"], None)
            elif a["id"] not in self.done:
                self.open[a["id"]] = a
        if self.next_round is None:
            self.next_round = ts + self.every
        if ts >= self.next_round:
            self._inspect(ts, st)
            self.next_round += self.every

    def _inspect(self, ts: int, st: np.ndarray) -> None:
        top = worklist_rank(list(self.open.values()))[:self.k]
        confirmed = 0
        for a in top:
            m = a["meter_id"]
            theft = m in self.onsets and self.onsets[m] <= ts
            confirmed += theft
            self.open.pop(a["id"])
            self.done.add(a["id"])
            if self.feedback:
                i = self.vs.fleet.index[m]
                self.engine.apply_outcome(st[i:i + 1], a,
                                          "confirmed_theft" if theft else "false_alarm", ts=ts)
        self.result.rounds.append((ts // DAY_S, len(top), confirmed))


def run_outcomes(vs, *, config: DetectorConfig, k: int = 5, every_days: int = 7,
                 feedback: bool = True, tz: str = "Europe/London",
                 country: str | None = "GB") -> Rounds:
    """One backtest of ``vs`` with a crew inspecting the work list as it goes."""
    from models.backtest import run
    from models.engine import Engine

    eng = Engine(vs.fleet, config, tz=tz, country=country)
    crew = Crew(vs, eng, k=k, every_days=every_days, feedback=feedback)
    run(vs.readings, vs.fleet, engine=eng, after_call=crew)
    return crew.result


def compare(vs, *, config: DetectorConfig, **kw: Any) -> dict[str, Any]:
    """Precision of the first and the second half of the rounds, without and with the
    outcomes fed back."""
    out = {}
    for name, fb in (("without", False), ("with", True)):
        r = run_outcomes(vs, config=config, feedback=fb, **kw)
        half = len(r.rounds) // 2
        out[name] = {"rounds": len(r.rounds), "inspected": sum(x[1] for x in r.rounds),
                     "early": r.precision(slice(0, half)), "late": r.precision(slice(half, None)),
                     "all": r.precision()}
    return out


def main(argv: list[str] | None = None) -> int:
    from models.evaluate.inject import build_virtual
    from models.evaluate.real import load_real
    from models.evaluate.targets import DEFAULT_READINGS

    p = argparse.ArgumentParser(prog="python -m models.evaluate.outcomes",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_READINGS))
    p.add_argument("--half", choices=("design", "holdout"), default="design")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--every-days", type=int, default=7)
    a = p.parse_args(argv)
    df = load_real(a.data, half=a.half)
    vs = build_virtual(df, kinds=("h1", "h2", "h3", "h4", "h5", "h6"), seed=a.seed)
    cfg = DetectorConfig().replace(theft={"model": True, "rules": False})
    res = compare(vs, config=cfg, k=a.k, every_days=a.every_days)
    for name, r in res.items():
        print(f"{name:>7} outcomes: {r['rounds']} rounds, {r['inspected']} inspected; precision "
              f"early {_f(r['early'])} late {_f(r['late'])} all {_f(r['all'])}")
    return 0


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
