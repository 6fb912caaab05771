"""Theft as a self-supervised, online, fleet-level model (issue 14, first slice).

Jokar et al. (2016) observed that a customer's own clean days, rewritten by the attack
functions h1-h6 (:mod:`models.attacks`), are labelled examples of tampering for free.
Here that happens online and for the whole fleet at once:

1. **Features per meter-day** (:func:`day_features`), once per completed local day, from
   the state the habit detector already keeps (its usual slot profile, usual and slow
   reference day, base load, daily spread) plus two numbers of this detector's own (the
   meter's usual roughness and usual correlation of a day with its profile): the level
   against the usual day net of the area's peers, the base and minimum load against the
   usual base, correlation with the usual shape and with the reversed usual shape,
   flatness, zeroed and constant runs, roughness.
2. **One fleet-level classifier** (:class:`FleetTheftModel`): river's
   ``StandardScaler | LogisticRegression``. Each completed day a seeded sample of calm
   meter-days teaches it as "normal", and the same days rewritten by h1-h6 or a bypass
   (the meter sees only part of the load) as "tampered". A day's examples are learned
   in one canonical order when the first meter closes a later day, so the model that
   scores day d has learned every day before d whatever way the readings were batched:
   the backtest and an in-order stream build the same model. A per-shape Gaussian
   model over the same features tells which attack a day resembles.
3. **Evidence per meter** (:class:`TheftDetector`): the day's log-odds, standardised by
   the meter's own log-odds on its calm days, feed a one-sided CUSUM. Its decision
   interval is ``[theft] limit`` (the design half's choice), or with ``limit = 0`` follows
   from the ``[budget] theft`` false-alarm budget (:func:`models.calibrate.cusum_h` on the
   meter's own calm days; it under-states real homes' false alarms, whose daily
   log-odds have heavy tails). Crossing it opens ``theft/consumption_drop``
   (the days resemble h1-h3 or a bypass) or ``theft/profile_distortion`` (h4-h6), with
   the attack shape, since when, and the day's indicators.

Everything random is a hash of (seed, day, meter id), so results do not depend on how
the readings were split into calls. The model's state is :meth:`FleetTheftModel.to_bytes`
(a deterministic pickle). There is one model per shard: the partition of the stream's
by-area topic that an area's messages go to (:func:`area_partitions`; one shard unless
the engine is given the stream's partition count). The worker that owns a partition
keeps that partition's model in its state table, next to the areas' state, so a
backtest with the stream's partition count builds exactly the stream's models.

>>> import numpy as np
>>> flat = np.full((1, 48), 0.5)
>>> usual = np.tile(0.2 + np.sin(np.linspace(0, np.pi, 48)), (1, 1))
>>> f = day_features(flat, DayRef.simple(usual))
>>> round(float(f[0, FEATURES.index("flatness")]), 2) < -2
True
"""

from __future__ import annotations

import pickle
import zlib
from dataclasses import dataclass
from datetime import date

import numpy as np

from models.base import AreaView, Batch, BitConditions, Finding, Fleet, OpenAlerts, any_
from models.calibrate import DAYS_PER_YEAR, cusum_h
from models.config import BudgetConfig, HabitConfig, TheftConfig
from models.habit.common import longest_run, peer_median, rowcorr
from models.localtime import SLOTS, LocalCalendar

HOURS_PER_SLOT = 24 / SLOTS
SHAPES = ("h1", "h2", "h3", "h4", "h5", "h6", "bypass")
# The alert subtype each shape reports under (the closed vocabulary of models.base).
SHAPE_SUBTYPE = {"h1": "consumption_drop", "h2": "consumption_drop", "h3": "consumption_drop",
                 "bypass": "consumption_drop", "h4": "profile_distortion",
                 "h5": "profile_distortion", "h6": "profile_distortion"}
SHAPE_WORDS = {"h1": "scaled down", "h2": "hours zeroed", "h3": "each reading scaled down",
               "h4": "random readings around the mean", "h5": "flattened",
               "h6": "reversed", "bypass": "part of the load bypassed"}
FEATURES = ("level", "level_slow", "level_z", "base", "minimum", "shape_cor", "reversed_cor",
            "reversal_gain", "flatness", "zero_active", "zero_run", "const_run", "roughness",
            "cor_drop", "peak", "over_base", "autocorr")
_PAIRS = [(i, j) for i in range(len(FEATURES)) for j in range(i, len(FEATURES))]
# What the classifiers see: the features and their pairwise products (a quadratic
# boundary: "lower AND flatter AND below the base load", which a linear one cannot say).
MODEL_COLUMNS = (*FEATURES, *(f"{FEATURES[i]}*{FEATURES[j]}" for i, j in _PAIRS))
_PI = np.array([p[0] for p in _PAIRS])
_PJ = np.array([p[1] for p in _PAIRS])
HIST = 14  # days of energy an alert's evidence shows (before and after onset)
OPEN_SUBTYPES = ("consumption_drop", "profile_distortion")
UPDATE_EVERY_DAYS = 7
OUTCOME_MEMORY = 4096  # inspected cases remembered as learned (a replay teaches nothing)  # an open alert's evidence (unbilled energy, days) is refreshed weekly
N_RAND = 4 + SLOTS  # uniforms per example: shape, h1/bypass factor, h2 start, h2 length, g_t
_C_KWH = 1.0  # stabiliser of level log ratios (tiny homes), as the habit CUSUM's
_EPS_KW = 0.04


# -- features -----------------------------------------------------------------------------

@dataclass
class DayRef:
    """What a day is judged against, per row: the usual slot power for its day type
    (kW, (k, SLOTS)), the base load (kW), the usual and the slow reference day (kWh),
    the daily log-ratio spread, the area peers' median level log ratio today, and the
    meter's usual roughness and day-to-profile correlation."""

    mu: np.ndarray
    base: np.ndarray
    lv: np.ndarray
    tlv: np.ndarray
    rdev: np.ndarray
    peer: np.ndarray
    rough: np.ndarray
    dcor: np.ndarray

    @classmethod
    def simple(cls, mu: np.ndarray) -> "DayRef":
        """A reference from a usual profile alone (tests, examples)."""
        mu = np.asarray(mu, np.float64)
        k = len(mu)
        lv = mu.sum(axis=1) * HOURS_PER_SLOT
        return cls(mu, mu.min(axis=1), lv, lv, np.full(k, 0.2), np.zeros(k),
                   _roughness(mu), np.full(k, 0.8))


def expand(X: np.ndarray) -> np.ndarray:
    """Features and their pairwise products: the columns :data:`MODEL_COLUMNS`."""
    X = np.asarray(X, np.float64)
    return np.concatenate([X, X[:, _PI] * X[:, _PJ]], axis=1)


def _roughness(vec: np.ndarray) -> np.ndarray:
    """Mean absolute step between half hours, relative to the day's mean power."""
    return np.abs(np.diff(vec, axis=1)).mean(axis=1) / np.maximum(vec.mean(axis=1), 1e-6)


def day_features(vec: np.ndarray, ref: DayRef) -> np.ndarray:
    """Features of days ``vec`` (kW per half-hour slot, (k, SLOTS)) against ``ref``:
    one row per day, columns :data:`FEATURES`. Every feature is a ratio or a correlation,
    so homes of any size share one scale."""
    vec = np.maximum(np.asarray(vec, np.float64), 0.0)
    mu = ref.mu
    E = vec.sum(axis=1) * HOURS_PER_SLOT
    level = np.log((E + _C_KWH) / (ref.lv + _C_KWH)) - ref.peer
    slow = np.log((E + _C_KWH) / (ref.tlv + _C_KWH)) - ref.peer
    z = np.clip(level / np.maximum(1.25 * ref.rdev, 0.12), -6, 6)
    srt = np.sort(vec, axis=1)
    q10 = srt[:, SLOTS // 10]
    base = np.log((q10 + _EPS_KW) / (ref.base + _EPS_KW))
    minimum = np.log((srt[:, 0] + 0.5 * _EPS_KW) / (ref.base + 0.5 * _EPS_KW))
    cor = rowcorr(vec, mu)
    cor_rev = rowcorr(vec, mu[:, ::-1])
    mean = np.maximum(vec.mean(axis=1), 1e-6)
    cv = vec.std(axis=1) / mean
    cv_mu = mu.std(axis=1) / np.maximum(mu.mean(axis=1), 1e-6)
    flat = np.log((cv + 0.02) / (cv_mu + 0.02))
    active = mu > np.maximum(2 * ref.base[:, None], ref.base[:, None] + 0.1)
    zero = vec <= 1e-9
    zero_active = (zero & active).sum(axis=1) / np.maximum(active.sum(axis=1), 1)
    zero_run = longest_run(zero) * HOURS_PER_SLOT / 24
    same = np.abs(np.diff(vec, axis=1)) <= 0.02 * mean[:, None] + 1e-6
    const_run = longest_run(same) * HOURS_PER_SLOT / 24
    rough = np.log((_roughness(vec) + 0.02) / (ref.rough + 0.02))
    peak = np.log((srt[:, -1] + 0.05) / (mu.max(axis=1) + 0.05))
    over_base = np.log((E + 0.1) / (ref.base * 24 + 0.1))
    # Half hours of a real day follow each other (appliances run for a while); factors
    # drawn per reading (h3, h4) break that.
    autocorr = rowcorr(vec[:, :-1], vec[:, 1:])
    return np.stack([level, slow, z, base, minimum, cor, cor_rev, cor_rev - cor, flat,
                     zero_active, zero_run, const_run, rough, ref.dcor - cor, peak,
                     over_base, autocorr], axis=1)


# -- self-supervised examples ---------------------------------------------------------------

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-mixed 64-bit hash of each value."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniforms(seed: int, day: int, keys: np.ndarray, n: int) -> np.ndarray:
    """(len(keys), n) uniforms in [0, 1) that depend only on (seed, day, key, column):
    the same meter-day draws the same numbers whatever call it arrives in."""
    with np.errstate(over="ignore"):
        h = _mix64(np.asarray(keys, np.uint64) ^ _mix64(np.uint64(seed) * np.uint64(1_000_003)
                                                        + np.uint64(day)))
        cols = _mix64(h[:, None] + np.arange(1, n + 1, dtype=np.uint64)[None, :])
    return (cols >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def meter_keys(fleet: Fleet, meters: np.ndarray) -> np.ndarray:
    """A stable key per meter (crc32 of its id): the same in every worker and run."""
    cache = getattr(fleet, "_theft_keys", None)
    if cache is None or len(cache) != len(fleet):
        cache = np.fromiter((zlib.crc32(m.encode()) for m in fleet.meter_id), np.uint64,
                            len(fleet))
        fleet._theft_keys = cache  # Fleet is a plain dataclass: a cached derived column
    return cache[meters]


def attacked_days(vec: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each day of ``vec`` rewritten by one attack drawn from ``u`` (:func:`uniforms`,
    N_RAND columns): (attacked days, index into :data:`SHAPES`). The attacks and their
    parameter ranges are models.attacks' (h1-h6); ``bypass`` keeps a share U(0.2, 0.6)
    of the load, as the simulator's bypassed meter."""
    from models.attacks import HIGH, LOW, MAX_OFF_H, MIN_OFF_H

    k = len(vec)
    shape = np.minimum((u[:, 0] * len(SHAPES)).astype(np.int64), len(SHAPES) - 1)
    g = LOW + (HIGH - LOW) * u[:, 4:]
    mean = vec.mean(axis=1, keepdims=True)
    a = LOW + (HIGH - LOW) * u[:, 1:2]
    dur = MIN_OFF_H + (MAX_OFF_H - MIN_OFF_H) * u[:, 3]
    start = u[:, 2] * (24.0 - dur)
    i0 = np.round(start / HOURS_PER_SLOT).astype(np.int64)
    i1 = np.round((start + dur) / HOURS_PER_SLOT).astype(np.int64)
    t = np.arange(SLOTS)[None, :]
    window = (t >= i0[:, None]) & (t < i1[:, None])
    options = np.stack([
        vec * a,  # h1
        np.where(window, 0.0, vec),  # h2
        vec * g,  # h3
        mean * g,  # h4
        np.broadcast_to(mean, vec.shape),  # h5
        vec[:, ::-1],  # h6
        vec * (0.2 + 0.4 * u[:, 1:2]),  # bypass
    ])
    return options[shape, np.arange(k)], shape


def area_partitions(area_ids: list[str], partitions: int) -> np.ndarray:
    """Each area's partition of the by-area topic among ``partitions``: what Kafka's
    default partitioner (aiokafka's, which the worker's producer uses) gives the key
    ``area_id.encode()``. All 0 for one partition.

    >>> area_partitions(["A001", "A002"], 1).tolist()
    [0, 0]
    """
    if partitions <= 1:
        return np.zeros(len(area_ids), np.int32)
    from aiokafka.partitioner import DefaultPartitioner

    every = list(range(partitions))
    choose = DefaultPartitioner()
    return np.fromiter((choose(a.encode(), every, every) for a in area_ids), np.int32,
                       len(area_ids))


# -- the fleet-level model -------------------------------------------------------------------

class FleetTheftModel:
    """The classifiers every meter's days are scored with, and what they learn from.

    river's ``StandardScaler`` over all examples, then one river ``LogisticRegression``
    per attack shape, each taught that shape's rewritten days against the normal days:
    one linear model per attack signature (a flattened day and a scaled day move
    different features, which one linear model for "any attack" would average away).
    A day's log-odds of tampering is that of the shape it resembles most.

    ``add_examples`` queues a day's labelled examples and ``flush`` learns every queued
    day before a given one (in order of day, then meter key), so the learning order is
    canonical. A day's queue is kept canonical as it fills: sorted by (meter key, label),
    one example per (meter key, label) (a replayed day close adds nothing), and no more
    than the ``max_examples`` that the day will teach (those whose seeded hash is
    smallest, which is the subset flush would choose from the whole day). So the queue,
    and the bytes of the model, do not depend on how the day's meters were split into
    calls, and its size is bounded. Scoring uses the learned weights as numpy arrays
    (refreshed at each flush; the same arithmetic as river's ``predict_proba_many``,
    without a DataFrame per call). ``record`` (a list, off by default) collects every
    scored (meter, day, log-odds) for offline measurement. ``revision`` counts the
    changes (examples queued, days learned) since the model was built or loaded: the
    stream writes the model when it moved (it is not part of the state).
    """

    VERSION = 2

    def __init__(self, seed: int = 0, *, learning_rate: float = 0.05, l2: float = 1e-4,
                 minibatch: int = 32, max_examples: int = 1024) -> None:
        from river import linear_model, optim, preprocessing

        self.seed = int(seed)
        self.minibatch = int(minibatch)
        self.max_examples = int(max_examples)
        self.scaler = preprocessing.StandardScaler()
        self.clfs = [linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=l2,
                                                     intercept_lr=learning_rate)
                     for _ in SHAPES]
        # day -> (meter keys, features, labels), canonical (see the class docstring)
        self.pending: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.days_learned = 0
        self.examples = 0
        self.record: list | None = None
        self.revision = 0
        # day -> {outcome id: (features, label, copies)}: inspected cases to learn
        self.outcomes: dict[int, dict[int, tuple[np.ndarray, int, int]]] = {}
        self.outcomes_learned: list[int] = []  # ids of the last OUTCOME_MEMORY learned
        self._refresh()

    # -- scoring ----------------------------------------------------------------------
    def _refresh(self) -> None:
        """The learned scaler and weights as arrays, for scoring."""
        f = list(MODEL_COLUMNS)
        self._mean = np.array([self.scaler.means.get(c, 0.0) for c in f])
        self._std = np.array([self.scaler.vars.get(c, 0.0) ** 0.5 for c in f])
        self._w = np.array([[m.weights.get(c, 0.0) for m in self.clfs] for c in f])
        self._b = np.array([m.intercept for m in self.clfs])

    def shape_log_odds(self, X: np.ndarray) -> np.ndarray:
        """(k, len(SHAPES)): log-odds that each day is each attack shape rather than a
        normal day (0 before any learning)."""
        Xt = expand(X) - self._mean
        np.divide(Xt, self._std, where=self._std > 0, out=Xt)
        return Xt @ self._w + self._b

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log-odds of tampering, most likely shape index) per row of features."""
        if len(X) == 0:
            return np.zeros(0), np.zeros(0, np.int64)
        lo = np.clip(self.shape_log_odds(np.asarray(X, np.float64)), -30, 30)
        best = lo.argmax(axis=1)
        return lo[np.arange(len(lo)), best], best

    # -- learning ---------------------------------------------------------------------
    def add_examples(self, day: int, keys: np.ndarray, X: np.ndarray, label: np.ndarray) -> None:
        """Queue examples of local day ``day``: ``label`` 0 normal, 1 + shape index."""
        if not len(X):
            return
        day = int(day)
        keys = np.asarray(keys, np.uint64)
        X = np.asarray(X, np.float64)
        label = np.asarray(label, np.int64)
        old = self.pending.get(day)
        if old is not None:
            keys, X, label = (np.concatenate([a, b]) for a, b in zip(old, (keys, X, label)))
        order = np.lexsort((label, keys))  # stable: a queued example before its replay
        keys, X, label = keys[order], X[order], label[order]
        first = np.r_[True, (keys[1:] != keys[:-1]) | (label[1:] != label[:-1])]
        if not first.all():
            keys, X, label = keys[first], X[first], label[first]
        if len(keys) > self.max_examples:
            # A big fleet's day teaches a seeded subset: learning costs the same whatever
            # the fleet's size. The smallest hashes of the whole day are the smallest of
            # what is kept plus what comes, so keeping only them is the same choice.
            u = uniforms(self.seed + 1, day, keys * np.uint64(16) + label.astype(np.uint64), 1)
            keep = np.sort(np.argsort(u[:, 0], kind="stable")[:self.max_examples])
            keys, X, label = keys[keep], X[keep], label[keep]
        if (old is None or len(keys) != len(old[0]) or bool((keys != old[0]).any())
                or bool((label != old[2]).any())):
            self.revision += 1
        self.pending[day] = (keys, X, label)

    def add_outcome(self, day: int, oid: int, x: np.ndarray, label: int, weight: int) -> bool:
        """Queue an inspected case (``oid``: its id, e.g. a hash of alert id and verdict)
        to be learned as ``weight`` examples of day ``day`` (label as
        :meth:`add_examples`) at that day's flush. A case already queued or learned
        (a message read again) is not added again: False."""
        oid = int(oid)
        if oid in self.outcomes_learned or any(oid in q for q in self.outcomes.values()):
            return False
        self.outcomes.setdefault(int(day), {})[oid] = (
            np.asarray(x, np.float64).ravel(), int(label), int(weight))
        self.revision += 1
        return True

    def _day_examples(self, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Day ``d``'s queue, then its inspected cases in id order, each repeated."""
        keys, X, lab = self.pending.pop(d, (np.zeros(0, np.uint64), np.zeros((0, len(FEATURES))),
                                            np.zeros(0, np.int64)))
        cases = self.outcomes.pop(d, {})
        for oid in sorted(cases):
            x, label, n = cases[oid]
            keys = np.r_[keys, np.full(n, oid, np.uint64)]
            X = np.vstack([X, np.repeat(x[None, :], n, axis=0)])
            lab = np.r_[lab, np.full(n, label, np.int64)]
            self.outcomes_learned = (self.outcomes_learned + [oid])[-OUTCOME_MEMORY:]
        return keys, X, lab

    def flush(self, before_day: int) -> None:
        """Learn every queued day before ``before_day``, each in canonical order."""
        days = sorted(x for x in {*self.pending, *self.outcomes} if x < before_day)
        for d in days:
            keys, X, lab = self._day_examples(d)  # canonical: sorted by (key, label)
            # shuffled by a hash of the day, so that minibatches mix meters
            perm = np.argsort(uniforms(self.seed, d, np.arange(len(keys), dtype=np.uint64), 1)[:, 0],
                              kind="stable")
            self._learn(X[perm], lab[perm])
            self.days_learned += 1
            self.examples += len(keys)
        if days:
            self.revision += 1
            self._refresh()

    def _learn(self, X: np.ndarray, lab: np.ndarray) -> None:
        import pandas as pd

        for i in range(0, len(X), self.minibatch):
            xb = pd.DataFrame(expand(X[i:i + self.minibatch]), columns=list(MODEL_COLUMNS))
            lb = lab[i:i + self.minibatch]
            self.scaler.learn_many(xb)
            xt = self.scaler.transform_many(xb)
            for k, clf in enumerate(self.clfs):
                sel = (lb == 0) | (lb == k + 1)
                if sel.any() and (lb[sel] > 0).any():
                    clf.learn_many(xt[sel].reset_index(drop=True),
                                   pd.Series(lb[sel] > 0))

    # -- state ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The whole model (classifier, shape statistics, queued days) as bytes."""
        # Neither the offline record nor the change counter is state.
        state = {k: v for k, v in self.__dict__.items() if k not in ("record", "revision")}
        state["record"] = None
        raw = pickle.dumps((self.VERSION, state), protocol=5)
        # Pickled once more from its own copy: objects the live model happens to share
        # (interned names) are shared as a loaded copy shares them, so a state that went
        # through bytes gives the very same bytes again.
        return pickle.dumps(pickle.loads(raw), protocol=5)

    @classmethod
    def from_bytes(cls, data: bytes) -> "FleetTheftModel":
        version, state = pickle.loads(data)
        if version != cls.VERSION:
            raise ValueError(f"theft model state version {version}, expected {cls.VERSION}")
        m = cls.__new__(cls)
        m.__dict__.update(state)
        m.revision = 0
        return m


# -- the detector ------------------------------------------------------------------------------

def _quiet(vec: np.ndarray, E: np.ndarray, s: np.ndarray, lv: np.ndarray,
           hc: HabitConfig) -> np.ndarray:
    """Days at the base load (out, away, asleep), as the habit detector's shape check
    sees them: no shape to judge and no attack either, since attacks push readings well
    below the base load where such a day stays at it. Neither scored nor taught."""
    base = s["h_base"].astype(np.float64)
    low = np.quantile(vec, 0.1, axis=1)
    return ((E <= hc.quiet_factor * base * 24 + 0.3) & (E <= 0.6 * lv)
            & (low >= hc.quiet_low * base))


@dataclass
class _Day:
    """What the evidence of a day's close needs besides the state: the reference the
    day was judged against, each row's usual minus reported energy (kWh), the areas."""

    ref: DayRef
    deficit: np.ndarray
    areas: AreaView | None


def _public(ev: dict) -> dict:
    return {k: v for k, v in ev.items() if not k.startswith("_")}


def _remember(s: np.ndarray, kwh: np.ndarray, usual: np.ndarray) -> None:
    """Each closing day's energy and usual energy into the meter's ring of HIST days;
    days the meter skipped (silent) are left unknown."""
    day = s["h_day"].astype(np.int64)
    last = s["t_hday"].astype(np.int64)
    gap = np.where(last > 0, np.clip(day - last, 1, HIST), 1)
    pos = s["t_hpos"].astype(np.int64)
    ahead = np.arange(1, HIST + 1)
    idx = (pos[:, None] + ahead[None, :]) % HIST
    ri = np.arange(len(s))[:, None]
    skipped = ahead[None, :] < gap[:, None]
    s["t_hkwh"][ri, idx] = np.where(skipped, np.nan, s["t_hkwh"][ri, idx])
    s["t_husual"][ri, idx] = np.where(skipped, np.nan, s["t_husual"][ri, idx])
    new = (pos + gap) % HIST
    r = np.arange(len(s))
    s["t_hkwh"][r, new] = kwh
    s["t_husual"][r, new] = usual
    s["t_hpos"] = new
    s["t_hday"] = day


def _daily(s: np.ndarray, j: int) -> list[dict]:
    """The ring of one meter's days, oldest first, days it did not report left out."""
    last, pos = int(s["t_hday"][j]), int(s["t_hpos"][j])
    out = []
    for back in range(HIST - 1, -1, -1):
        i = (pos - back) % HIST
        kwh, usual = float(s["t_hkwh"][j, i]), float(s["t_husual"][j, i])
        if np.isfinite(kwh):
            out.append({"day": date.fromordinal(last - back).isoformat(),
                        "kwh": round(kwh, 2),
                        "usual_kwh": round(usual, 2) if np.isfinite(usual) else None})
    return out


class TheftDetector(BitConditions):
    """Scores each completed meter-day with the fleet model and accumulates the evidence.

    Runs before the habit detector in the engine, so at a day's close it reads the day
    habit has just accumulated and habit's profile as it was before that day taught it.
    """

    fields = (
        ("t_lm", "<f4"), ("t_ld", "<f4"),  # the meter's calm-day log-odds: mean, abs dev
        ("t_ln", "<i2"),  # calm days learned into them
        ("t_rough", "<f4"), ("t_dcor", "<f4"),  # usual roughness, usual day-profile corr
        ("t_zm", "<f4"), ("t_zv", "<f4"),  # the calm days' capped z: mean, mean square
        ("t_cu", "<f4"),  # CUSUM of standardised log-odds
        ("t_run", "<i4"),  # local day ordinal the current run began (0: none)
        # alert open (1 + index of its subtype in OPEN_SUBTYPES, fixed at opening so
        # its updates and close carry the opening's id); calm days since
        ("t_open", "<u1"), ("t_clr", "<u1"),
        ("t_shape", "<f2", (len(SHAPES),)),  # shape posteriors summed over the run
        ("t_unb", "<f4"),  # unbilled kWh estimated since the run began
        # the last HIST days' energy and usual energy (kWh), ring at t_hpos, the latest
        # of them local day t_hday: the evidence pack's days around onset
        ("t_hkwh", "<f2", (HIST,)), ("t_husual", "<f2", (HIST,)),
        ("t_hpos", "<u1"), ("t_hday", "<i4"),
    )
    area_fields = ()

    def __init__(self, config: TheftConfig | None = None, calendar: LocalCalendar | None = None,
                 budget: BudgetConfig | None = None, habit: HabitConfig | None = None,
                 model: FleetTheftModel | None = None, partitions: int = 1) -> None:
        self.config = config or TheftConfig()
        self.calendar = calendar or LocalCalendar()
        self.budget = budget or BudgetConfig()
        self.habit = habit or HabitConfig()
        # Detectors whose open alerts on the same meter (or area) corroborate a
        # suspicion: the engine wires its physical and area detectors in.
        self.corroborators: tuple = ()
        self.area_detector = None
        # One model per shard: the partition of the by-area topic an area's messages go
        # to among ``partitions`` (:func:`area_partitions`), so the worker that owns a
        # partition owns its model, and a backtest with the stream's partition count
        # builds the stream's models. Created on first need.
        self.partitions = max(1, int(partitions))
        self.models: dict[int, FleetTheftModel] = {}
        self._shard = 0  # the shard being worked on: what ``model`` means
        self._area_shard: tuple[Fleet, np.ndarray] | None = None
        if model is not None:
            self.models[0] = model

    def new_model(self) -> FleetTheftModel:
        """A fresh model as this configuration seeds it (a shard's first)."""
        return FleetTheftModel(self.config.seed, learning_rate=self.config.learning_rate,
                               max_examples=self.config.max_examples)

    def model_for(self, shard: int) -> FleetTheftModel:
        m = self.models.get(shard)
        if m is None:
            m = self.models[shard] = self.new_model()
        return m

    @property
    def model(self) -> FleetTheftModel:
        """The model of the shard being worked on (after a step: the last one; in a
        single-shard engine, as ``evaluate`` runs, always shard 0's)."""
        return self.model_for(self._shard)

    @model.setter
    def model(self, m: FleetTheftModel) -> None:
        self.models[self._shard] = m

    def area_shards(self, fleet: Fleet) -> np.ndarray:
        """Each area's shard (index into ``fleet.area_id``), per fleet object."""
        if self._area_shard is None or self._area_shard[0] is not fleet:
            self._area_shard = (fleet, area_partitions(fleet.area_id, self.partitions))
        return self._area_shard[1]

    def place(self, fleet: Fleet, area: int, shard: int) -> None:
        """Area ``area``'s messages come from partition ``shard`` (the stream says so):
        its meters use that partition's model whatever the partitioner computed."""
        self.area_shards(fleet)[area] = shard

    def init(self, st: np.ndarray, fleet: Fleet, meters: np.ndarray) -> None:
        st["t_ld"] = 1.0
        st["t_zv"] = 1.0  # a prior of unit spread until the meter's own days say otherwise
        st["t_rough"] = 0.3
        st["t_dcor"] = 0.7
        st["t_hkwh"] = np.nan  # days not seen yet
        st["t_husual"] = np.nan

    def init_area(self, ast: np.ndarray, fleet: Fleet, areas: np.ndarray) -> None:
        pass

    def limits(self, s: np.ndarray) -> tuple[float, np.ndarray]:
        """CUSUM reference k and each meter's decision interval h, from the budget:
        chance runs reach h ``budget.theft`` times a year (Siegmund's approximation,
        :func:`models.calibrate.cusum_h`, for the mean and spread the meter's own calm
        days' capped z really have: a home whose days often look odd gets a higher h)."""
        k = self.config.k
        if self.config.limit > 0:
            return k, np.full(len(s), self.config.limit)
        zm = s["t_zm"].astype(np.float64)
        zsd = np.sqrt(np.maximum(s["t_zv"] - zm * zm, 0.0)).clip(min=0.5)
        arl = DAYS_PER_YEAR / max(self.budget.theft, 1e-6)
        return k, zsd * cusum_h(np.maximum(k - zm, 0.05) / zsd, arl)

    def step(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView,
             out: list[Finding]) -> None:
        if len(batch) == 0:
            return
        h_day = st["h_day"]
        if not any_(h_day > 0):
            return
        day = self.calendar.lookup_same(batch.ts, batch.interval_s)[0]
        roll = (h_day > 0) & (h_day != day)
        if any_(roll):
            self._close_days(st, np.flatnonzero(roll), batch, fleet, areas, out)

    # -- day close ------------------------------------------------------------------------
    def _reference(self, s: np.ndarray, rows: np.ndarray, areas: AreaView,
                   E: np.ndarray, ok: np.ndarray) -> DayRef:
        ri = np.arange(len(s))
        dt = s["h_dtype"].astype(np.int64)
        lv = s["h_lv"][ri, dt].astype(np.float64)
        tlv = np.where(s["h_tdays"] > 0, s["h_tlv"], lv).astype(np.float64)
        lr = np.log((E + _C_KWH) / (lv + _C_KWH))
        pos = areas.pos[rows] if len(areas.area) else None
        peer = peer_median(lr, ok, pos, self.habit.peer_min)
        return DayRef(s["h_mu"][ri, dt].astype(np.float64), s["h_base"].astype(np.float64), lv,
                      tlv, s["h_rdev"].astype(np.float64), peer,
                      s["t_rough"].astype(np.float64), s["t_dcor"].astype(np.float64))

    def _close_days(self, st: np.ndarray, rows: np.ndarray, batch: Batch, fleet: Fleet,
                    areas: AreaView, out: list[Finding]) -> None:
        shard = self.area_shards(fleet)[fleet.area[batch.meter[rows]]]
        if shard.min() != shard.max():
            # Each shard's model learns and scores its own meters only, in shard order
            # (an area, and so its peers, is wholly in one shard).
            for q in np.unique(shard).tolist():
                self._close_days(st, rows[shard == q], batch, fleet, areas, out)
            return
        self._shard = int(shard[0])
        hc = self.habit
        s = st[rows]
        # Every day before the oldest one closing now is complete: learn them first.
        self.model.flush(int(s["h_day"].min()))
        complete = s["h_dsec"] >= 0.85 * 86400
        vec = s["h_dvec"].astype(np.float64) / HOURS_PER_SLOT
        vec *= np.where(complete, 86400.0 / np.maximum(s["h_dsec"], 1), 1.0)[:, None]
        E = vec.sum(axis=1) * HOURS_PER_SLOT
        meters = batch.meter[rows]
        trusted = ((s["h_ndays"].sum(axis=1) >= hc.min_days) & ~fleet.is_area_meter[meters])
        ri = np.arange(len(s))
        lv = s["h_lv"][ri, s["h_dtype"].astype(np.int64)].astype(np.float64)
        _remember(s, s["h_dvec"].sum(axis=1), lv)
        ev = complete & trusted & (lv >= hc.min_home_day_kwh) & ~_quiet(vec, E, s, lv, hc)
        if not any_(ev):
            st[rows] = s
            return
        ref = self._reference(s, rows, areas, E, ev)
        X = day_features(vec, ref)
        lo, best = self.model.score(X)
        lo = np.where(ev, lo, 0.0)
        day = _Day(ref, lv - E, areas)
        calm = self._evidence(s, rows, batch, X, lo, best, ev, out, day)
        self._teach(s, meters, fleet, vec, ref, X, ev & calm)
        st[rows] = s

    def _evidence(self, s: np.ndarray, rows: np.ndarray, batch: Batch, X: np.ndarray,
                  lo: np.ndarray, best: np.ndarray, ev: np.ndarray,
                  out: list[Finding], day_: "_Day") -> np.ndarray:
        """CUSUM on the day's log-odds in the meter's own calm-day spread; open, track
        and close alerts. Returns the days that are calm (fit to teach as normal)."""
        cfg = self.config
        k, h = self.limits(s)
        ready = ev & (s["t_ln"] >= cfg.min_days)
        sd = np.maximum(1.25 * s["t_ld"].astype(np.float64), cfg.sd_floor)
        z = np.clip((lo - s["t_lm"]) / sd, -cfg.z_cap, cfg.z_cap)
        prev = s["t_cu"].astype(np.float64)
        cu = np.where(ready, np.maximum(0.0, prev + z - k), prev)
        day = s["h_day"].astype(np.int64)
        is_open = s["t_open"] > 0
        # A run belongs to its alert while the alert is open: its first day stays the
        # alert's start (its id), however the CUSUM moves meanwhile.
        started = ready & (prev == 0) & (cu > 0) & ~is_open
        held = (cu > 0) | is_open
        s["t_run"] = np.where(started, day, np.where(held, s["t_run"], 0))
        s["t_shape"] = np.where((started | ~held)[:, None], 0, s["t_shape"])
        # Unbilled energy: the usual day minus the reported one, summed (signed, so a
        # clean home's ups and downs cancel) from the run's first day while it lasts.
        s["t_unb"] = np.where(started, day_.deficit,
                              np.where(ready & held, s["t_unb"] + day_.deficit,
                                       np.where(held, s["t_unb"], 0.0)))
        # Which shape the run's days resemble: each day's evidence goes to its best shape.
        in_run = np.flatnonzero(ready & (cu > 0))
        s["t_shape"][in_run, best[in_run]] = np.minimum(
            s["t_shape"][in_run, best[in_run]].astype(np.float64) + np.maximum(z[in_run], 0), 6e4)
        if self.model.record is not None:
            m = batch.meter[rows]
            self.model.record.extend(
                (int(m[j]), int(day[j]), float(lo[j]), float(z[j]) if ready[j] else np.nan,
                 float(cu[j]), int(best[j]), X[j].tolist()) for j in np.flatnonzero(ev))
        fire = ready & (cu > h) & ~is_open
        for j in np.flatnonzero(fire):
            self._open(s, j, rows, batch, X, lo, cu, float(h[j]), out, day_)
        # Open: closes after clear_days calm days in a row (the CUSUM back at zero).
        s["t_clr"] = np.where(is_open & ready & (z < k), np.minimum(s["t_clr"] + 1, 200),
                              np.where(is_open & ready, 0, s["t_clr"]))
        done = is_open & (s["t_clr"] >= cfg.clear_days)
        weekly = is_open & ready & ~done & ((day - s["t_run"]) % UPDATE_EVERY_DAYS == 0)
        for j in np.flatnonzero(weekly):
            self._update(s, j, rows, batch, X, lo, cu, float(h[j]), out, day_)
        for j in np.flatnonzero(done):
            start = self.calendar.day_start_ts(int(s["t_run"][j]) or int(day[j]))
            out.append(Finding("theft", self._subtype(s, j), "close", "meter",
                               int(batch.meter[rows[j]]), start, int(batch.ts[rows[j]]),
                               "warning", 0.0, {"log_odds": round(float(lo[j]), 2),
                                                "model": "fleet_self_supervised"}))
            s["t_open"][j], s["t_clr"][j], s["t_unb"][j] = 0, 0, 0.0
            cu[j] = 0.0
        s["t_cu"] = np.minimum(cu, h + cfg.z_cap)
        # The meter's normal: learned on days no run is building and no alert is open.
        calm = ev & (cu < 0.5 * h) & (s["t_open"] == 0)
        n = s["t_ln"].astype(np.float64)
        a = np.where(calm, np.maximum(1.0 / (n + 1), cfg.alpha), 0.0)
        lm = s["t_lm"].astype(np.float64)
        resid = np.clip(lo - lm, -3 * sd, 3 * sd) if cfg.clip_learning else lo - lm
        s["t_lm"] = lm + a * resid
        s["t_ld"] = s["t_ld"] + a * (np.abs(resid) - s["t_ld"])
        s["t_ln"] = np.where(calm, np.minimum(n + 1, 30000), n)
        zc = np.where(calm & ready, z, 0.0)
        az = np.where(calm & ready, cfg.alpha, 0.0)
        s["t_zm"] = s["t_zm"] + az * (zc - s["t_zm"])
        s["t_zv"] = s["t_zv"] + az * (zc * zc - s["t_zv"])
        return calm

    # -- outcomes ---------------------------------------------------------------------------
    def apply_outcome(self, s: np.ndarray | None, oid: int, outcome: str, evidence: dict,
                      day: int, shards: list[int]) -> bool:
        """An inspection's verdict (case id ``oid``) on one of this model's alerts: the
        models of ``shards`` learn the alert's day as a labelled example (``[theft]
        outcome_weight`` copies) on day ``day``: ``confirmed_theft`` as its attack
        shape, ``false_alarm`` as normal. With the meter's record ``s`` (shape (1,),
        mutated), a false alarm also ends the meter's suspicion and widens its normal so
        that a day like the dismissed one adds no evidence (it standardises to the
        CUSUM's reference). Returns whether anything changed."""
        if outcome not in ("confirmed_theft", "false_alarm") or not evidence.get("indicators"):
            return False
        x = np.array([float(evidence["indicators"].get(f, 0.0)) for f in FEATURES])
        shape = evidence.get("attack_shape")
        label = 0 if outcome == "false_alarm" else 1 + SHAPES.index(shape) if shape in SHAPES else 1
        changed = False
        for q in shards:
            changed |= self.model_for(q).add_outcome(day, oid, x, label,
                                                     self.config.outcome_weight)
        if s is None or outcome != "false_alarm":
            return changed
        before = s.tobytes()
        lo = float(evidence.get("log_odds", 0.0))
        lm = float(s["t_lm"][0])
        s["t_ld"] = max(float(s["t_ld"][0]), (lo - lm) / (1.25 * self.config.k))
        for f in ("t_open", "t_clr", "t_cu", "t_unb", "t_run", "t_shape"):
            s[f] = 0
        return changed or s.tobytes() != before

    def open_alerts(self, st: np.ndarray) -> OpenAlerts:
        """Open model alerts: ``t_open`` rows, by the subtype their likeliest shape has."""
        rows = np.flatnonzero(st["t_open"])
        by_sub: dict[str, list[int]] = {}
        for j in rows.tolist():
            by_sub.setdefault(self._subtype(st, j), []).append(j)
        return [(np.array(js), "theft", sub, "warning") for sub, js in sorted(by_sub.items())]

    def _subtype(self, s: np.ndarray, j: int) -> str:
        """The subtype the alert opened with (its id), else the likeliest shape's."""
        o = int(s["t_open"][j])
        if o:
            return OPEN_SUBTYPES[o - 1]
        return SHAPE_SUBTYPE[SHAPES[int(np.argmax(s["t_shape"][j]))]]

    def _open(self, s, j, rows, batch, X, lo, cu, h, out, day_: "_Day") -> None:
        ev = self._pack(s, j, rows, X, lo, cu, h, day_)
        sub = SHAPE_SUBTYPE[ev["attack_shape"]]
        out.append(Finding("theft", sub, "open", "meter", int(batch.meter[rows[j]]),
                           self.calendar.day_start_ts(ev["_since"]), int(batch.ts[rows[j]]),
                           "warning", ev["risk"], _public(ev)))
        s["t_open"][j], s["t_clr"][j] = 1 + OPEN_SUBTYPES.index(sub), 0

    def _update(self, s, j, rows, batch, X, lo, cu, h, out, day_: "_Day") -> None:
        """The weekly refresh of an open alert's evidence (unbilled energy, days, risk):
        what the work list ranks by."""
        ev = self._pack(s, j, rows, X, lo, cu, h, day_)
        out.append(Finding("theft", self._subtype(s, j), "update", "meter",
                           int(batch.meter[rows[j]]), self.calendar.day_start_ts(ev["_since"]),
                           int(batch.ts[rows[j]]), "warning", ev["risk"], _public(ev)))

    def _pack(self, s, j, rows, X, lo, cu, h, day_: "_Day") -> dict:
        """An alert's evidence: the attack shape the run's days resemble, since when, the
        unbilled energy, the days around onset against the usual, what corroborates it,
        the peers, and the model's indicators."""
        votes = s["t_shape"][j].astype(np.float64)
        shape = SHAPES[int(np.argmax(votes))]
        since = int(s["t_run"][j]) or int(s["h_day"][j])
        share = votes / max(votes.sum(), 1e-9)
        risk = float(min(1.0, 0.5 + 0.05 * (cu[j] - h) + 0.1 * max(lo[j], 0)))
        peer = float(day_.ref.peer[j])
        return {"_since": since, "risk": round(risk, 3), "attack_shape": shape,
                "attack_shape_words": SHAPE_WORDS[shape],
                "shape_shares": {sh: round(float(v), 2) for sh, v in zip(SHAPES, share)},
                "since_day": date.fromordinal(since).isoformat(),
                "days": int(s["h_day"][j]) - since + 1,
                "unbilled_kwh": round(max(float(s["t_unb"][j]), 0.0), 2),
                "daily": _daily(s, j),
                "corroboration": self._corroboration(s, j, rows, day_),
                "peer_level": round(peer, 3) if np.isfinite(peer) and peer != 0 else None,
                "log_odds": round(float(lo[j]), 2),
                "usual_log_odds": round(float(s["t_lm"][j]), 2),
                "evidence": round(float(cu[j]), 2), "limit": round(float(h), 2),
                "model": "fleet_self_supervised",
                "indicators": {n: round(float(X[j, i]), 3) for i, n in enumerate(FEATURES)}}

    def _corroboration(self, s, j, rows, day_: "_Day") -> list[str]:
        """Other detectors' alerts open on the same meter (physical checks: energy below
        V x I x pf, zero energy with voltage, reverse flow, imbalance) and on its area
        (an energy balance that does not add up): what makes a suspicion stronger."""
        names = [f"{typ}/{sub}" for d in self.corroborators
                 for _r, typ, sub, _sev in d.open_alerts(s[j:j + 1])]
        areas = day_.areas
        if self.area_detector is not None and areas is not None and len(areas.area):
            a = areas.pos[rows[j]]
            names += [f"{typ}/{sub}" for _r, typ, sub, _sev in
                      self.area_detector.open_area_alerts(areas.st[a:a + 1]) if typ == "theft"]
        return sorted(set(names))

    def _teach(self, s: np.ndarray, meters: np.ndarray, fleet: Fleet, vec: np.ndarray,
               ref: DayRef, X: np.ndarray, calm: np.ndarray) -> None:
        """A seeded sample of calm days teaches the model as normal, and each of them
        rewritten by an attack as tampered; calm days also teach the meter's usual
        roughness and day-to-profile correlation."""
        cfg = self.config
        a = np.where(calm, cfg.alpha, 0.0)
        s["t_rough"] = s["t_rough"] + a * (_roughness(vec) - s["t_rough"])
        cor = X[:, FEATURES.index("shape_cor")]
        s["t_dcor"] = s["t_dcor"] + a * (cor - s["t_dcor"])
        keys = meter_keys(fleet, meters)
        days = s["h_day"].astype(np.int64)
        pick = np.flatnonzero(calm)
        if not len(pick):
            return
        for d in np.unique(days[pick]):
            sel = pick[days[pick] == d]
            u = uniforms(cfg.seed, int(d), keys[sel], N_RAND + 1)
            sel = sel[u[:, 0] < cfg.sample_share]
            if not len(sel):
                continue
            u = uniforms(cfg.seed, int(d), keys[sel], N_RAND + 1)[:, 1:]
            sub = DayRef(*(getattr(ref, f)[sel] for f in DayRef.__dataclass_fields__))
            xa, shape = attacked_days(vec[sel], u)
            Xa = day_features(xa, sub)
            self.model.add_examples(int(d), np.r_[keys[sel], keys[sel]],
                                    np.r_[X[sel], Xa], np.r_[np.zeros(len(sel), np.int64), 1 + shape])
