"""The worker's side of inspection outcomes (how they travel: :mod:`stream.outcomes`):
the area's own copy teaches its partition's theft model and gives the meter its verdict;
the other partitions' copies teach their models only."""

from __future__ import annotations

from typing import Any

from stream.outcomes import OUTCOME_KEY, decode
from stream.schema import OutcomeMessage
from stream.worker import metrics as M

__all__ = ["OUTCOME_KEY", "apply_outcomes", "learn_outcomes"]


def _alert(msg: OutcomeMessage) -> dict[str, Any]:
    return {"id": msg.alert_id, "type": msg.type, "subtype": msg.subtype,
            "evidence": msg.evidence}


def _count(learned: bool, applicable: bool) -> None:
    M.theft_outcomes.labels(result="learned" if learned else "repeated" if applicable
                            else "ignored").inc()


def _applicable(engine, msg: OutcomeMessage) -> bool:
    return (engine.theft is not None and msg.type == "theft"
            and (msg.evidence or {}).get("model") == "fleet_self_supervised")


def apply_outcomes(processor, raws: list[bytes], state, partition: int) -> bool:
    """The area's own copies (in log order with its readings): each teaches partition
    ``partition``'s theft model and, if the meter is in the area's state, gives the
    meter its verdict. Whether the area's state moved (to be written)."""
    eng = processor.engine
    moved = False
    for raw in raws:
        msg = decode(raw)
        ok = _applicable(eng, msg)
        rec = None
        if ok and msg.meter_id in state.meter_ids:
            i = state.meter_ids.index(msg.meter_id)
            rec = state.records[i:i + 1]  # a view: the verdict lands in the state
        before = rec.tobytes() if rec is not None else b""
        learned = ok and eng.apply_outcome(rec, _alert(msg), msg.outcome,
                                           ts=int(msg.resolved_at), shards=[partition])
        moved = moved or (rec is not None and rec.tobytes() != before)
        _count(bool(learned), ok)
    return moved


def learn_outcomes(processor, raws: list[bytes], partition: int) -> None:
    """The copies for other partitions than the area's (key :data:`OUTCOME_KEY`): each
    teaches partition ``partition``'s theft model only."""
    eng = processor.engine
    for raw in raws:
        msg = decode(raw)
        ok = _applicable(eng, msg)
        learned = ok and eng.apply_outcome(None, _alert(msg), msg.outcome,
                                           ts=int(msg.resolved_at), shards=[partition])
        _count(bool(learned), ok)
