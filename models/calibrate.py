"""From a false-alarm budget to a decision threshold, per customer.

Engineers set, per alert family, how many false openings a clean customer may get in a
year (``[budget]`` in ``config/detectors.toml``). Each detector measures its statistic
against the meter's *own* learned distribution of it, and the functions here turn the
budget into the limit that distribution implies. Nothing here is fitted to a data set:
each limit follows from a stated tail model and the budget.

* :func:`cusum_h` -- a one-sided CUSUM's decision interval for a wanted in-control
  average run length (Siegmund's approximation), for lasting changes.
* :func:`exp_tail_limit` -- the level a statistic with an exponential upper tail exceeds
  with a given probability (peaks over a threshold, generalised Pareto with shape 0),
  for one-off conditions (surges).
* :func:`run_length_for` -- how many days in a row a daily condition with the home's own
  frequency and persistence must last before chance alone would raise it less often
  than the budget.
* :func:`long_run_scale` -- a daily statistic's spread widened for its own day-to-day
  persistence, so a CUSUM on it keeps the false-alarm rate its budget promises.

>>> round(float(cusum_h(0.5, 730.0)), 2)
4.75
>>> round(float(arl0(cusum_h(0.5, 730.0), 0.5)))
730
>>> round(float(exp_tail_limit(1.0, 0.5, 0.02, 0.0002)), 3)
3.303
>>> int(run_length_for(0.05, 0.4, lo=2, hi=10))
3
>>> int(run_length_for(0.05, 0.4, lo=2, hi=10, q_stay=0.6))
7
>>> round(float(long_run_scale(0.2, 0.6)), 2)
0.4
"""

from __future__ import annotations

import numpy as np

DAYS_PER_YEAR = 365.25
_SIEGMUND_B = 1.166  # the overshoot correction of Siegmund's approximation


def arl0(h: np.ndarray | float, k: np.ndarray | float) -> np.ndarray:
    """In-control average run length (steps) of a one-sided CUSUM on N(0, 1) steps
    with reference ``k`` and decision interval ``h`` (Siegmund 1985)."""
    k = np.maximum(np.asarray(k, np.float64), 1e-3)
    b = 2.0 * k * (np.asarray(h, np.float64) + _SIEGMUND_B)
    return (np.exp(b) - b - 1.0) / (2.0 * k * k)


def cusum_h(k: np.ndarray | float, arl: np.ndarray | float) -> np.ndarray:
    """The decision interval ``h`` at which a one-sided CUSUM with reference ``k``
    raises a false alarm once per ``arl`` steps on average (in-control N(0, 1) steps).

    Solves ``arl0(h, k) = arl`` by Newton's method on ``b = 2k(h + 1.166)``
    (``e^b - b - 1 = 2 k^2 arl``, increasing and convex in ``b``), vectorised.
    """
    k = np.maximum(np.asarray(k, np.float64), 1e-3)
    rhs = 2.0 * k * k * np.asarray(arl, np.float64)
    b = np.log(rhs + 1.0) + 1.0  # above the root: Newton descends monotonically
    for _ in range(30):
        f = np.exp(b) - b - 1.0 - rhs
        b = b - f / np.maximum(np.exp(b) - 1.0, 1e-12)
    return np.maximum(b / (2.0 * k) - _SIEGMUND_B, 0.0)


def exp_tail_limit(u: np.ndarray | float, sigma: np.ndarray | float, p_u: float,
                   p: np.ndarray | float) -> np.ndarray:
    """The value exceeded with probability ``p`` by a statistic whose exceedances over
    ``u`` (probability ``p_u``) are exponential with mean ``sigma``:
    ``u + sigma * ln(p_u / p)`` (never below ``u``)."""
    ratio = np.maximum(p_u / np.maximum(np.asarray(p, np.float64), 1e-15), 1.0)
    return np.asarray(u, np.float64) + np.asarray(sigma, np.float64) * np.log(ratio)


def run_length_for(p_day: np.ndarray | float, budget_per_year: float, *, lo: int,
                   hi: int, q_stay: np.ndarray | float | None = None) -> np.ndarray:
    """Fewest consecutive days ``n`` (within ``[lo, hi]``) such that runs of ``n`` days
    of a condition that holds on a share ``p_day`` of this home's days start less than
    ``budget_per_year`` times a year.

    The days are a two-state Markov chain: a day like that follows another like it with
    probability ``q_stay`` (independent days when None: ``q_stay = p_day``). Runs start
    ``365 p (1 - q)`` times a year and reach ``n`` days with probability ``q^(n-1)``."""
    p = np.clip(np.asarray(p_day, np.float64), 1e-6, 0.999)
    q = p if q_stay is None else np.clip(np.asarray(q_stay, np.float64), 1e-6, 0.999)
    starts = DAYS_PER_YEAR * p * (1.0 - q)
    need = 1.0 + np.log(np.minimum(budget_per_year / starts, 1.0)) / np.log(q)
    return np.clip(np.ceil(need), lo, hi).astype(np.int64)


def long_run_scale(sd: np.ndarray | float, rho: np.ndarray | float) -> np.ndarray:
    """The spread of a daily statistic with lag-1 autocorrelation ``rho`` as its sums
    over many days see it: ``sd * sqrt((1 + rho) / (1 - rho))`` (an AR(1) long-run
    variance; ``rho`` clipped to [0, 0.8]). A CUSUM adds days up, so persistent
    residuals (a cold spell, a busy month) would otherwise reach its limit far more
    often than a budget computed for independent days allows."""
    r = np.clip(np.asarray(rho, np.float64), 0.0, 0.8)
    return np.asarray(sd, np.float64) * np.sqrt((1.0 + r) / (1.0 - r))
