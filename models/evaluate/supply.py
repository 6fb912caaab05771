"""What a real low-voltage supply does besides its slow drift: dips and low episodes.

A meter samples the supply every minute and reports, per interval, the mean, the
lowest and the highest 1-minute value. A real LV supply (issue 15) is not the clean
curve a load-flow gives: per meter and month it shows

* **1-minute minima below 0.9 pu about 28 times** (short shallow dips, most of them
  shared by the whole transformer area because they come from the MV network, some
  local: a motor starting next door);
* **15-minute means below 0.9 pu in about 4 episodes**, each lasting up to 90 minutes
  (the feeder at its evening peak, a tap not yet changed);
* **means below 0.87 pu well under once**;
* **minima below 0.8 pu about twice a year**.

All of it is normal and EN 50160-compliant. :func:`draw_day` draws one local day of
such events for a fleet (area-shared ones with a small per-meter spread, plus local
dips), and :func:`apply` folds them into interval means and minima given the
interval's undisturbed level, in closed form per interval (no 1-minute arrays), so the
fleet simulator stays cheap. The rates and depths are :class:`SupplyProfile`; the
defaults reproduce the figures above (``tests/stream/test_supply.py`` measures them
over a simulated year).

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ev = draw_day(rng, area_of_row=np.zeros(4, int), local=np.ones(4, bool), S=96,
...               interval_s=900, hours=np.arange(96) / 4)
>>> base = np.full((4, 96), 1.0)
>>> mean, low = apply(base, ev, interval_s=900)
>>> bool((mean <= base).all() and (low >= 0).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MONTH_DAYS = 365.25 / 12


@dataclass(frozen=True)
class SupplyProfile:
    """Rates (per meter and month) and depths (per unit) of the supply's normal events.

    Dips: a flat 1-2 minute drop to a residual ``0.9 - Exp(dip_scale_pu)`` pu, so the
    share below 0.8 pu is ``exp(-0.1 / dip_scale_pu)``: 0.007, i.e. ~2 of the ~290 a
    year. ``shallow_dips_per_month`` more stay within 0.9-0.96 pu (seen, never counted).
    Episodes: the level sinks in a smooth bump (``sin^4`` over 60-200 minutes, mostly
    at the evening peak) towards a trough ``episode_top_pu - Exp(episode_scale_pu)``,
    with meters further down the feeder (a lower level to start from) sinking further.
    The deepest part is brief, as a load peak is: 15-minute means stay below 0.9 pu for
    up to 60-90 minutes, and a whole quarter hour below 0.87 pu takes a trough below
    ~0.865 pu (``exp(-0.028 / 0.0045)``: 0.2 % of episodes), so two such means in a
    row come about never. About one episode in seven never holds
    a whole interval below 0.9 pu, hence 5 a month for ~4 seen. Brief deep sags (a big
    motor starting, an MV fault cleared slowly: 13-22 minutes flat at 0.853-0.868 pu,
    above EN 50160's -15 %) are the rest of the means below 0.87 pu, ~0.1 a month,
    never two quarter hours in a row.
    """

    dips_per_month: float = 24.0  # below 0.9 pu; with the episodes' ~4 that is ~28
    shallow_dips_per_month: float = 30.0
    dip_local_share: float = 0.3  # the rest come through the transformer, area-wide
    dip_scale_pu: float = 0.020
    episodes_per_month: float = 5.0
    episode_top_pu: float = 0.893
    episode_scale_pu: float = 0.0045
    episode_minutes: tuple[int, int] = (60, 200)
    evening_share: float = 0.7  # episodes starting 17:00-21:00 local
    brief_per_month: float = 0.15  # brief deep sags: a quarter hour near 0.85-0.87 pu
    brief_minutes: tuple[int, int] = (13, 22)
    brief_pu: tuple[float, float] = (0.853, 0.868)
    spread_pu: float = 0.002  # per-meter spread of an area event's depth


DEFAULT = SupplyProfile()


@dataclass
class DayEvents:
    """One day's events, already expanded to meter rows.

    Dips: ``dip_row``, ``dip_minute`` (minute of the day), ``dip_res`` (pu). Episodes:
    a list of (rows, first minute, minutes, trough pu per row, shape power: 4 a smooth
    bump, 0 flat)."""

    dip_row: np.ndarray
    dip_minute: np.ndarray
    dip_res: np.ndarray
    episodes: list[tuple[np.ndarray, int, int, np.ndarray, int]]


def _dips(rng: np.random.Generator, area_of_row: np.ndarray, local: np.ndarray,
          minutes: int, rate_day: float, depth, p: SupplyProfile):
    """(rows, minutes, residuals) of one class of dips: area-wide and local ones."""
    n_areas = int(area_of_row.max()) + 1 if len(area_of_row) else 0
    k_area = rng.poisson(rate_day * (1 - p.dip_local_share), n_areas)
    a = np.repeat(np.arange(n_areas), k_area)
    t_a, r_a = rng.integers(0, minutes, len(a)), depth(len(a))
    by_area = [np.flatnonzero(area_of_row == i) for i in range(n_areas)]
    rows_a = [by_area[i] for i in a]
    rows = np.concatenate([*rows_a, np.zeros(0, int)]).astype(np.intp)
    lens = np.array([len(r) for r in rows_a], int)
    t = np.repeat(t_a, lens)
    res = np.repeat(r_a, lens) + rng.normal(0.0, p.spread_pu, len(rows))
    own = np.flatnonzero(local)
    k_own = rng.poisson(rate_day * p.dip_local_share, len(own))
    rows_l = np.repeat(own, k_own)
    return (np.r_[rows, rows_l], np.r_[t, rng.integers(0, minutes, len(rows_l))],
            np.r_[res, depth(len(rows_l))])


def draw_day(rng: np.random.Generator, *, area_of_row: np.ndarray, local: np.ndarray, S: int,
             interval_s: int, hours: np.ndarray, profile: SupplyProfile = DEFAULT) -> DayEvents:
    """One local day of dips and low episodes for rows (meters) in areas.

    ``area_of_row``: each row's area (its transformer); ``local``: rows that also get
    dips of their own (customers, not the transformer's own meter); ``hours``: local
    hour at the middle of each of the day's ``S`` intervals (DST days have 92 or 100).
    """
    p = profile
    m = max(1, interval_s // 60)
    minutes = S * m
    day = minutes / 1440.0 / MONTH_DAYS  # this day as a share of a month
    deep = lambda k: 0.9 - rng.exponential(p.dip_scale_pu, k)  # noqa: E731
    shallow = lambda k: rng.uniform(0.9, 0.96, k)  # noqa: E731
    r1, t1, v1 = _dips(rng, area_of_row, local, minutes, p.dips_per_month * day, deep, p)
    r2, t2, v2 = _dips(rng, area_of_row, local, minutes, p.shallow_dips_per_month * day, shallow, p)
    two = rng.random(len(r1) + len(r2)) < 0.3  # some last two minutes
    rows, t, res = np.r_[r1, r2], np.r_[t1, t2], np.r_[v1, v2]
    rows, t, res = np.r_[rows, rows[two]], np.r_[t, np.minimum(t[two] + 1, minutes - 1)], np.r_[res, res[two]]
    episodes = []
    n_areas = int(area_of_row.max()) + 1 if len(area_of_row) else 0
    for a in range(n_areas):
        for _ in range(rng.poisson(p.episodes_per_month * day)):
            lo, hi = p.episode_minutes
            dur = int(rng.integers(lo, hi + 1))
            if rng.random() < p.evening_share:
                slots = np.flatnonzero((hours >= 17.0) & (hours < 21.0))
                t0 = int(rng.choice(slots)) * m if len(slots) else int(rng.integers(0, minutes))
            else:
                t0 = int(rng.integers(0, minutes))
            rows_a = np.flatnonzero(area_of_row == a)
            trough = p.episode_top_pu - rng.exponential(p.episode_scale_pu)
            episodes.append((rows_a, t0, dur, trough + rng.normal(0.0, p.spread_pu, len(rows_a)), 4))
        for _ in range(rng.poisson(p.brief_per_month * day)):
            rows_a = np.flatnonzero(area_of_row == a)
            dur, t0 = int(rng.integers(*p.brief_minutes)), int(rng.integers(0, minutes))
            level = rng.uniform(*p.brief_pu) + rng.normal(0.0, p.spread_pu, len(rows_a))
            episodes.append((rows_a, t0, dur, level, 0))
    return DayEvents(rows.astype(np.intp), t.astype(np.intp), res, episodes)


def _bump(dur: int, power: int = 4) -> np.ndarray:
    """Depth share per minute of an episode: a smooth bump (``sin^power``) whose deepest
    part is brief, as a load peak is; ``power`` 0 is flat."""
    t = np.arange(dur) + 0.5
    return np.sin(np.pi * t / dur) ** power


def apply(base: np.ndarray, ev: DayEvents, *, interval_s: int) -> tuple[np.ndarray, np.ndarray]:
    """(interval means, lowest 1-minute value per interval) in pu, given ``base`` (rows x
    S, pu): the level the interval would have had. Lowest is +inf where no event fell.

    A minute at level ``u`` below the base lowers the mean by ``(base - u) / minutes``
    of the interval; an event above the base changes nothing (it is a dip *to* ``u``).
    """
    R, S = base.shape
    m = max(1, interval_s // 60)
    drop = np.zeros((R, S))
    low = np.full((R, S), np.inf)
    for rows, t0, dur, trough, power in ev.episodes:
        w = _bump(dur, power)
        t1 = min(t0 + dur, S * m)
        w = w[: t1 - t0]
        if not len(w):
            continue
        s0, s1 = t0 // m, (t1 - 1) // m
        pad = np.zeros((s1 - s0 + 1) * m)
        pad[t0 - s0 * m: t0 - s0 * m + len(w)] = w
        per = pad.reshape(-1, m)
        # from the level so far: overlapping episodes do not stack below their troughs
        cur = base - drop
        depth = np.maximum(cur[rows, s0:s1 + 1] - trough[:, None], 0.0)
        drop[rows, s0:s1 + 1] += depth * per.mean(axis=1)[None, :]
        low[rows, s0:s1 + 1] = np.minimum(low[rows, s0:s1 + 1],
                                          cur[rows, s0:s1 + 1] - depth * per.max(axis=1)[None, :])
    if len(ev.dip_row):
        s = np.minimum(ev.dip_minute // m, S - 1)
        np.add.at(drop, (ev.dip_row, s), np.maximum(base[ev.dip_row, s] - drop[ev.dip_row, s] - ev.dip_res, 0.0) / m)
        np.minimum.at(low, (ev.dip_row, s), ev.dip_res)
    mean = base - drop
    return mean, np.where(np.isinf(low), low, np.minimum(low, mean))
