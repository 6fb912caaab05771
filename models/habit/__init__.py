"""The customer's habits, and what departs from them.

One online profile per meter: expected power per half-hour slot for workdays and
off-days (weekends, holidays) with its spread, the daily energy level, a slow reference
level, and a base load (night minimum). From it:

- ``surge``: an interval far above habit (within the interval), a day far above the
  usual day (as soon as it is certain, at the latest when the day closes), and a month
  projected far above the usual month (so the customer hears before the bill does).
- ``habit_change``: a lasting change of level (two-sided CUSUM on the daily log ratio to
  the reference), a vacancy (days at base load), a changed schedule (the daily shape
  fits the profile better shifted in time, day after day). Reported once, with since
  when and how much; the reference then re-learns the new level.
- ``theft``: ``profile_distortion`` (daily shape scores that catch the flattened,
  reversed, zeroed, constant and randomised days of Jokar et al.'s attacks h2-h6) and
  ``consumption_drop`` (the recent energy and base-load power both fallen against the
  meter's own reference while the area's peers did not fall).
- ``inactivity``: a care customer at base load for hours when normally active.

One module per family: :mod:`~models.habit.profile` (the usual day),
:mod:`~models.habit.surge`, :mod:`~models.habit.newload`, :mod:`~models.habit.level`,
:mod:`~models.habit.vacancy`, :mod:`~models.habit.shape` (distortion and schedule),
:mod:`~models.habit.drop`, :mod:`~models.habit.bill`, :mod:`~models.habit.care`; the
detector that composes them over one fixed state record is
:class:`~models.habit.detector.HabitDetector`.

>>> from models.habit import HabitDetector
>>> sorted({name for name, *_ in HabitDetector.fields} - {"h_open", "h_start"})[:3]
['h_base', 'h_closed', 'h_cor']
"""

from models.habit.common import (BILL, DISTORT, DROP, FALL, HOURS_PER_SLOT, INACT, N_COND,
                                 SEED_PROFILE, SURGE_D, SURGE_I, VAC_PRIOR_DAYS, VACANT)
from models.habit.detector import HabitDetector, habit_context, habit_profile

__all__ = ["HabitDetector", "habit_context", "habit_profile", "SURGE_I", "SURGE_D", "BILL",
           "DROP", "FALL", "DISTORT", "INACT", "VACANT", "N_COND", "HOURS_PER_SLOT", "SEED_PROFILE",
           "VAC_PRIOR_DAYS"]
