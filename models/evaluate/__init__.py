"""``meterwatch evaluate``: how well do the detectors find what they should, and how
often do they cry wolf?

Two test beds, one scoring:

* **Real readings** (default: 50 London households, 2013). Every household runs as
  several virtual meters in ONE backtest (:mod:`models.evaluate.inject`): its clean copy and one
  copy per scenario kind (Jokar h1-h6 theft, daily/interval surges, a new load, a
  vacancy, a lasting increase or decrease), each with one labelled anomaly.
* **A simulated fleet** (:class:`models.evaluate.sim.FleetSimulator`): a random scenario plus
  extra meter-level voltage events; labels are the simulator's ground truth. Voltage
  labels are checked against the readings (an event the alert policy acts on, see
  :mod:`models.evaluate.voltage`, and whether the area or only single meters qualify).

Scoring (:func:`match`). Only alert *openings* (status ``open``) count. An opening on a
labelled meter (or, for area labels, in the labelled area) is

* ``tp`` -- the first opening of an expected ``type/subtype`` after the onset (and
  before ``late_until``); its ``detected_at - onset`` is the delay, and it is *in the
  window* when ``detected_at <= deadline``;
* ``dup`` -- a further expected opening for an already detected label (neither TP nor FP);
* ``related`` -- an opening of a type that is a plausible reaction to the injected change
  although not the target (e.g. ``habit_change/decrease`` on an h1 copy, or the
  ``habit_change/increase`` when a vacancy ends): neither TP nor FP, counted apart;
* ``fp`` -- anything else, including everything on clean copies and on injected copies
  before their onset;
* ``warmup`` -- openings in a meter's first 14 days: excluded everywhere.

Precision per alert ``type/subtype`` = tp / (tp + fp) at this test bed's prevalence
(one anomaly per injected copy-year); the clean copies' alerts per customer-month are
the prevalence-free view. On real data a ``surge/daily`` opening without label whose day
really was >= 2x the household's median day of the previous 4 weeks, or a
``surge/interval`` one whose half hour drew >= 3x the median of that time of day over
the previous 4 weeks and >= 2 kW above it for an hour, is marked ``natural`` (a true surge by the
issue's definition that nobody injected); the surge precision target counts those as
true and the report shows both.

One module per concern: :mod:`~models.evaluate.targets` (what each kind must raise),
:mod:`~models.evaluate.scoring` (matching and rates), :mod:`~models.evaluate.real` and
:mod:`~models.evaluate.simulated` (the two test beds; the fleet simulator is
:mod:`~models.evaluate.sim`, the injection into real readings
:mod:`~models.evaluate.inject`), :mod:`~models.evaluate.sweep`,
:mod:`~models.evaluate.goals` (the issue's targets), :mod:`~models.evaluate.tables`,
:mod:`~models.evaluate.plots`, :mod:`~models.evaluate.report` and
:mod:`~models.evaluate.cli`. Names are imported from their module on first use, so that
``models.evaluate.sim`` (used by the stream's demo) does not load pandas and the scoring.

Run ``python -m models.evaluate -h`` (or ``meterwatch evaluate -h``).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DAY_S": "inject",
    "LOWERING": "inject",
    "Label": "inject",
    "MIN_AFTER_DAYS": "inject",
    "MIN_HISTORY_DAYS": "inject",
    "SEP": "inject",
    "VirtualSet": "inject",
    "assign_areas": "inject",
    "build_virtual": "inject",
    "daily_energy": "inject",
    "inject": "inject",
    "local_clock": "inject",
    "weekend": "inject",
    "BUDGET_FAMILIES": "tables",
    "BUDGET_HEADER": "tables",
    "DAY_SCALE": "targets",
    "DEFAULT_READINGS": "targets",
    "DEFAULT_SWEEP": "sweep",
    "Evaluation": "goals",
    "GROUP_ORDER": "targets",
    "HALVES": "real",
    "INTERVAL": "targets",
    "LATE_CAP_S": "targets",
    "MONTH_S": "targets",
    "Matching": "scoring",
    "NATURAL_INTERVAL_FLOOR_KW": "real",
    "NATURAL_INTERVAL_RATIO": "real",
    "NATURAL_LEVEL_CHANGE": "real",
    "PROJECT_ROOT": "targets",
    "REAL_SECTIONS": "sweep",
    "RealEval": "real",
    "SIM_ALIAS": "targets",
    "SPEC": "targets",
    "SimEval": "simulated",
    "SimInput": "simulated",
    "Target": "targets",
    "WARMUP_S": "targets",
    "alert_rows": "scoring",
    "alerts_table": "tables",
    "budget_rows": "tables",
    "build_parser": "cli",
    "check_targets": "goals",
    "clean_rates": "scoring",
    "detection_rows": "scoring",
    "detection_table": "tables",
    "evaluate_real": "real",
    "evaluate_sim": "simulated",
    "half_of": "real",
    "load_real": "real",
    "main": "cli",
    "mark_open_at_onset": "scoring",
    "match": "scoring",
    "outcome_precision": "goals",
    "parse_sweep": "sweep",
    "pick_examples": "plots",
    "plot_delays": "plots",
    "plot_example": "plots",
    "plot_recall": "plots",
    "plot_sweep": "plots",
    "pooled": "scoring",
    "prepare_sim": "simulated",
    "run_sweep": "sweep",
    "score_real": "real",
    "score_sim": "simulated",
    "select_half": "real",
    "sim_targets": "simulated",
    "summary_text": "report",
    "targets_from_labels": "targets",
    "write_report": "report",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'models.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"models.evaluate.{_WHERE[name]}"), name)
