"""What every habit family shares: condition bits, the seed profile, the alert
lifecycle (open once, update on a material change, close, reopen within a cool-down)
and the day-close record the families pass along."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from models.base import AreaView, Batch, Finding, Fleet, any_
from models.localtime import SLOTS

try:  # the ufunc np.clip ends in, called without np.clip's Python layers (same results)
    from numpy._core.umath import clip as uclip
except ImportError:  # a private name: if numpy moves it, the public function will do
    uclip = np.clip

# Condition bits kept in h_open, and the slot in h_start holding each one's start.
SURGE_I, SURGE_D, BILL, DROP, DISTORT, INACT, VACANT = range(7)
N_COND = 7
# A fall in use is one story, told as theft (DROP) or as changed habits (FALL); one of
# the two bits at most is set, and both keep their start in the DROP slot.
FALL = 7
HOURS_PER_SLOT = 24 / SLOTS
VAC_PRIOR_DAYS = 30

# A typical residential / small-business day in kW per half hour, used to seed a new
# customer before it has history (scaled by its area peers' level when known).
_t = np.arange(SLOTS) / 2.0
_RES = 0.25 + 0.35 * np.exp(-((_t - 7.5) / 1.5) ** 2) + 0.8 * np.exp(-((_t - 19.5) / 2.2) ** 2)
_BIZ = 0.3 + 1.2 * ((_t >= 8) & (_t < 18)) + 0.3 * np.exp(-((_t - 12.5) / 1.0) ** 2)
SEED_PROFILE = {0: np.stack([_RES, _RES * 1.1]).astype(np.float32),
                1: np.stack([_BIZ, _BIZ * 0.35 + 0.2]).astype(np.float32)}


@dataclass
class DayClose:
    """One day close over some meters: a copy of their state rows (written back at the
    end), the finished day as every family sees it, and what earlier families found
    that later ones use (``found``: surge day, distorted, the level ratio...)."""

    s: np.ndarray
    rows: np.ndarray
    batch: Batch
    fleet: Fleet
    areas: AreaView
    ri: np.ndarray
    dt: np.ndarray  # day type per row
    day: np.ndarray  # local day ordinal
    day_start: dict
    start_ts: np.ndarray
    complete: np.ndarray  # enough of the day covered to judge and learn
    E: np.ndarray  # the day's energy (kWh), scaled up to a whole day
    ev: np.ndarray  # complete and trusted: the day is judged
    lv: np.ndarray
    lvdev: np.ndarray
    ref: np.ndarray
    mu: np.ndarray  # (k, SLOTS) usual kW per slot for the day type
    vec: np.ndarray  # (k, SLOTS) the day's kW per slot
    base: np.ndarray
    found: dict[str, Any] = field(default_factory=dict)

    def since_ts(self, calendar, day: int) -> int:
        return self.day_start.get(day) or calendar.day_start_ts(day)


class Lifecycle:
    """Open, update, close and cool-down bookkeeping on ``h_open``/``h_start``/``h_closed``/
    ``h_peak`` (one bit and one slot per condition)."""

    def _start(self, st: np.ndarray, j: int, cond: int, start: int, now: int) -> int:
        """The start of a condition opening now: a recurrence within the family's
        cool-down of its last close reopens the same alert (same start, same id)."""
        cool = {SURGE_I: self.config.surge_cool_days, SURGE_D: self.config.day_cool_days,
                VACANT: self.config.vacancy_cool_days}.get(cond, 0)
        closed = int(st["h_closed"][j, cond])
        if cool and closed > 0 and now - closed <= cool * 86400 and st["h_start"][j, cond] > 0:
            return int(st["h_start"][j, cond])
        return start

    def _emit(self, st, j, rows, batch, type_, sub, action, start, out, *, score=0.0,
              severity="warning", evidence=None) -> None:
        out.append(Finding(type_, sub, action, "meter", int(batch.meter[rows[j]]), int(start),
                           int(batch.ts[rows[j]]), severity, float(score), evidence or {}))

    def _open(self, st, cond, js, batch, type_, sub, out, *, start, magnitude, evidence, score,
              severity="warning") -> None:
        for j in js:
            s0 = self._start(st, j, cond, int(start[j] if isinstance(start, dict) else start[j]),
                             int(batch.ts[j]))
            out.append(Finding(type_, sub, "open", "meter", int(batch.meter[j]), s0,
                               int(batch.ts[j]), severity, float(score(j)), evidence(j)))
            st["h_open"][j] |= 1 << cond
            st["h_start"][j, cond] = s0
            if magnitude is not None:
                st["h_peak"][j, cond] = magnitude[j]

    def _track(self, st, cond, active, batch, type_, sub, out, *, magnitude, start, evidence,
               score, severity="warning", clear=None) -> None:
        """Open where active and not open; update when the magnitude grows by half;
        close where open and no longer active (or ``clear``)."""
        is_open = (st["h_open"] & (1 << cond)) != 0
        if not any_(active) and not any_(is_open):
            return
        self._open(st, cond, (active & ~is_open).nonzero()[0], batch, type_, sub, out,
                   start=start, magnitude=magnitude, evidence=evidence, score=score,
                   severity=severity)
        if magnitude is not None:
            grow = active & is_open & (magnitude > 1.5 * st["h_peak"][:, cond])
            for j in np.flatnonzero(grow):
                out.append(Finding(type_, sub, "update", "meter", int(batch.meter[j]),
                                   int(st["h_start"][j, cond]), int(batch.ts[j]), severity,
                                   float(score(j)), evidence(j)))
                st["h_peak"][j, cond] = magnitude[j]
        ends = is_open & (~active if clear is None else clear)
        for j in np.flatnonzero(ends):
            out.append(Finding(type_, sub, "close", "meter", int(batch.meter[j]),
                               int(st["h_start"][j, cond]), int(batch.ts[j]), severity, 0.0,
                               evidence(j)))
            st["h_open"][j] &= ~(1 << cond) & 0xFFFF
            st["h_closed"][j, cond] = batch.ts[j]


def is_open(s: np.ndarray, cond: int) -> np.ndarray:
    return (s["h_open"] & (1 << cond)) != 0


def rowcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of a with the same row of b (0 if flat)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, (a * b).sum(axis=1) / den, 0.0)


def peer_median(r: np.ndarray, ev: np.ndarray, pos: np.ndarray | None, min_peers: int) -> np.ndarray:
    """Each row's area median of today's log ratio (0 where too few peers reported)."""
    out = np.zeros(len(r))
    if pos is None:
        return out
    for a in np.unique(pos):
        sel = (pos == a) & ev
        if sel.sum() >= min_peers:
            out[pos == a] = np.median(r[sel])
    return out


def longest_run(mask: np.ndarray) -> np.ndarray:
    """Length of the longest run of True in each row."""
    k, n = mask.shape
    best = np.zeros(k, np.int64)
    cur = np.zeros(k, np.int64)
    for t in range(n):
        cur = np.where(mask[:, t], cur + 1, 0)
        best = np.maximum(best, cur)
    return best


def iso_day(ordinal: int) -> str:
    return date.fromordinal(int(ordinal)).isoformat() if ordinal > 0 else ""
