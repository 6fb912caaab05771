"""The theft model's daily score (issue 14): ROC AUC of its daily log-odds, attacked
against clean days, overall and per attack shape."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from models.config import DetectorConfig
from models.evaluate.inject import VirtualSet
from models.evaluate.tables import fmt

SHAPE_KINDS = ("h1", "h2", "h3", "h4", "h5", "h6")


def theft_recording_engine(vs: VirtualSet, config: DetectorConfig | None, tz: str,
                            country: str | None):
    """An engine whose fleet theft model records every day's score, when it runs."""
    from models.engine import Engine

    if config is None or not config.theft.model:
        return None
    eng = Engine(vs.fleet, config, tz=tz, country=country)
    eng.theft.model.record = []
    return eng


def _auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """ROC AUC of scores ``pos`` against ``neg`` (Mann-Whitney, ties counted half)."""
    if not len(pos) or not len(neg):
        return None
    ranks = pd.Series(np.r_[pos, neg]).rank(method="average").to_numpy()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def theft_day_auc(vs: VirtualSet, record: list[tuple[int, int, float]]) -> dict[str, Any]:
    """ROC AUC of the theft model's daily log-odds: days of attacked copies from their
    onset day on, against every scored day of the clean copies; overall and per shape.
    (The attacked copies' days before onset equal their clean copies' and are left out.)"""
    if not record:
        return {"all": None, "by_shape": {}, "attacked_days": 0, "clean_days": 0}
    rec = np.array([r[:3] for r in record], dtype=[("m", "<i8"), ("d", "<i8"), ("s", "<f8")])
    clean = np.isin(rec["m"], [vs.fleet.index[m] for m in vs.clean_ids if m in vs.fleet.index])
    zone = ZoneInfo(vs.tz)
    pos: dict[str, list[np.ndarray]] = defaultdict(list)
    week: list[np.ndarray] = []  # the days a detection within 7 days can use
    for lab in vs.labels:
        if lab.kind not in SHAPE_KINDS or lab.meter_id not in vs.fleet.index:
            continue
        d0 = datetime.fromtimestamp(lab.onset, zone).date().toordinal()
        d1 = datetime.fromtimestamp(lab.end, zone).date().toordinal() if lab.end else 10**9
        sel = (rec["m"] == vs.fleet.index[lab.meter_id]) & (rec["d"] >= d0) & (rec["d"] <= d1)
        pos[lab.kind].append(rec["s"][sel])
        week.append(rec["s"][sel & (rec["d"] < d0 + 7)])
    neg = rec["s"][clean]
    allpos = np.concatenate([np.concatenate(v) for v in pos.values()]) if pos else np.zeros(0)
    return {"all": _auc(allpos, neg), "attacked_days": int(len(allpos)), "clean_days": int(len(neg)),
            "first_week": _auc(np.concatenate(week), neg) if week else None,
            "by_shape": {k: _auc(np.concatenate(pos[k]), neg) for k in sorted(pos)}}


def theft_auc_text(auc: dict[str, Any]) -> str:
    shapes = " ".join(f"{k} {fmt(v, 3)}" for k, v in auc["by_shape"].items())
    return (f"Theft model: daily score ROC AUC (attacked vs clean days) {fmt(auc['all'], 3)} "
            f"({auc['attacked_days']} attacked, {auc['clean_days']} clean days); {shapes}; "
            f"attacks' first 7 days only {fmt(auc.get('first_week'), 3)}")
