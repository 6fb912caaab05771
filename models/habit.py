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

Learning is robust: residuals are clipped to a few spreads, and a reading or a day that
raised a surge does not teach the profile. State is a fixed ~1.4 KB record.

>>> import numpy as np
>>> from models.base import Batch, Fleet
>>> from models.habit import HabitDetector
>>> det = HabitDetector()
>>> det.fields[0][0]
'h_mu'
"""

from __future__ import annotations

import math
from calendar import monthrange
from datetime import date

import numpy as np

from models.base import AreaView, Batch, Finding, Fleet, any_
from models.calibrate import (DAYS_PER_YEAR, cusum_h, exp_tail_limit, long_run_scale,
                              run_length_for)
from models.config import BudgetConfig, HabitConfig
from models.localtime import OFFDAY, SLOTS, WORKDAY, LocalCalendar

try:  # the ufunc np.clip ends in, called without np.clip's Python layers (same results)
    from numpy._core.umath import clip as _uclip
except ImportError:  # a private name: if numpy moves it, the public function will do
    _uclip = np.clip

# Condition bits kept in h_open, and the slot in h_start holding each one's start.
SURGE_I, SURGE_D, BILL, DROP, DISTORT, INACT, VACANT = range(7)
N_COND = 7
HOURS_PER_SLOT = 24 / SLOTS
VAC_PRIOR_DAYS = 30

# A typical residential / small-business day in kW per half hour, used to seed a new
# customer before it has history (scaled by its area peers' level when known).
_t = np.arange(SLOTS) / 2.0
_RES = 0.25 + 0.35 * np.exp(-((_t - 7.5) / 1.5) ** 2) + 0.8 * np.exp(-((_t - 19.5) / 2.2) ** 2)
_BIZ = 0.3 + 1.2 * ((_t >= 8) & (_t < 18)) + 0.3 * np.exp(-((_t - 12.5) / 1.0) ** 2)
SEED_PROFILE = {0: np.stack([_RES, _RES * 1.1]).astype(np.float32),
                1: np.stack([_BIZ, _BIZ * 0.35 + 0.2]).astype(np.float32)}


def _rowcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of a with the same row of b (0 if flat)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, (a * b).sum(axis=1) / den, 0.0)


class HabitDetector:
    """Per-meter usage profile and the habit-based detectors built on it.

    Parameters
    ----------
    config
        Thresholds (:class:`models.config.HabitConfig`).
    calendar
        Local time zone and holidays (:class:`models.localtime.LocalCalendar`).
    """

    fields = (
        ("h_mu", "<f4", (2, SLOTS)),  # usual power kW per day type and slot
        ("h_dev", "<f4", (2, SLOTS)),  # mean absolute deviation of that power
        ("h_dvec", "<f4", (SLOTS,)),  # today's energy per slot (kWh)
        ("h_ndays", "<i2", (2,)),  # complete days learned per day type
        ("h_lv", "<f4", (2,)),  # usual daily energy per day type (kWh)
        ("h_lvdev", "<f4", (2,)),  # its mean absolute deviation
        ("h_lvmed", "<f4", (2,)),  # the typical (median) day per day type: surges' "usual"
        ("h_ref", "<f4", (2,)),  # slow reference daily energy (CUSUM baseline)
        ("h_hq", "<f4"),  # power held over two intervals: its upper quantile (tail threshold)
        ("h_hx", "<f4"),  # ... and the mean excess over it (exponential tail scale), kW
        ("h_pprev", "<f4"),  # the last interval's power (kW)
        ("h_srun", "<i4"),  # seconds in a row at surge level
        ("h_rup", "<f4"), ("h_pup", "<f4"),  # daily log ratio: mean when > 0, share > 0
        ("h_pvac", "<f4"),  # share of vacancy-like days (EW)
        ("h_qvac", "<f4"),  # ... and the share of them that follow another (persistence)
        ("h_rprev", "<f4"),  # yesterday's daily log ratio net of peers (winsorised)
        ("h_rcov", "<f4"),  # EW of its product with the day before (lag-1 covariance)
        ("h_fallref", "<f4"),  # usual day before the last reported fall (0: none open)
        ("h_base", "<f4"),  # base load (kW), EW of the daily minimum slot
        ("h_day", "<i4"),  # local day ordinal of the accumulators below
        ("h_dtype", "<i1"),
        ("h_dkwh", "<f4"),  # energy so far today
        ("h_dexp", "<f4"),  # usual energy for the part of today seen so far
        ("h_dsec", "<i4"),  # seconds of today covered by readings
        ("h_month", "<i4"),  # yyyymm of the month accumulators
        ("h_mkwh", "<f4"),
        ("h_msec", "<i4"),
        ("h_rdev", "<f4"),  # mean absolute daily log ratio on normal days (scale of CUSUM)
        ("h_cup", "<f4"), ("h_cun", "<f4"),  # CUSUM up / down (in units of h_rdev)
        ("h_cupday", "<i4"), ("h_cunday", "<i4"),  # first day of the current run
        ("h_cupsum", "<f4"), ("h_cunsum", "<f4"),  # sum of log ratios in the run
        ("h_cupn", "<i2"), ("h_cunn", "<i2"),
        ("h_recent", "<f4", (SLOTS,)),  # EW of recent days' slot power (a few days' shape)
        ("h_dcu", "<f4"), ("h_dcuday", "<i4"),  # distorted-days streak and its first day
        ("h_dclr", "<i1"),  # normal days since an open distortion alert
        ("h_cor", "<f4"), ("h_cordev", "<f4"),  # usual recent-shape correlation, spread
        ("h_mref", "<f4"),  # usual daily energy as the month began (bill projection)
        ("h_vac", "<i2"),  # consecutive vacancy-like days
        ("h_settle", "<i1"),  # days left of re-learning after a reported rise (< 0: fall)
        ("h_shift", "<i1", (5,)),  # best shape shift (slots) of the last 5 days
        ("h_inact", "<i2"),  # consecutive normally-active slots at base load
        ("h_xmask", "<u8"), ("h_xprev", "<u8"),  # slots with new-load power today, yesterday
        ("h_xtot", "<f4"), ("h_xprevkwh", "<f4"),  # their energy above habit today, yesterday
        ("h_xkwh", "<f4"),  # today's, in yesterday's slots
        ("h_xcool", "<i1"),  # days before a new load can be reported again
        ("h_tlv", "<f4"), ("h_tbase", "<f4"),  # drop test reference: day kWh, low kW
        ("h_trlv", "<f4"), ("h_trbase", "<f4"),  # the same over the last few days (EW)
        ("h_tdays", "<i2"),  # days learned into that reference
        ("h_tcnt", "<i1"), ("h_tclr", "<i1"),  # days meeting / not meeting the drop test
        ("h_open", "<u2"),  # bit per condition
        ("h_start", "<i8", (N_COND,)),  # start ts per condition
        ("h_closed", "<i8", (N_COND,)),  # when each condition last closed (cool-down)
        ("h_peak", "<f4", (N_COND,)),  # last reported magnitude per condition
    )
    area_fields = ()  # peers are judged by today's area median, computed at day close

    def __init__(self, config: HabitConfig | None = None,
                 calendar: LocalCalendar | None = None,
                 budget: BudgetConfig | None = None) -> None:
        self.config = config or HabitConfig()
        self.calendar = calendar or LocalCalendar()
        self.budget = budget or BudgetConfig()

    # -- state ---------------------------------------------------------------------
    def init(self, st: np.ndarray, fleet: Fleet, meters: np.ndarray) -> None:
        tariff = fleet.tariff[meters]
        for t, prof in SEED_PROFILE.items():
            sel = tariff == t
            st["h_mu"][sel] = prof
            st["h_dev"][sel] = prof * 0.5
        st["h_lv"] = st["h_mu"].sum(axis=2) * 0.5
        st["h_lvmed"] = st["h_lv"]
        st["h_ref"] = st["h_lv"]
        st["h_lvdev"] = st["h_lv"] * 0.3
        st["h_hq"] = st["h_mu"].max(axis=(1, 2)) * 1.5
        st["h_hx"] = st["h_hq"] * 0.3
        st["h_rup"] = 0.2
        st["h_pup"] = 0.5
        # Prior for the vacancy run length, worth VAC_PRIOR_DAYS days: a day at base
        # load is rare (2 %) and such days come in spells (one follows another half the
        # time), until the home's own days say otherwise.
        st["h_pvac"] = 0.02
        st["h_qvac"] = 0.5
        st["h_base"] = st["h_mu"].min(axis=(1, 2))
        st["h_cor"] = 0.5
        st["h_cordev"] = 0.2
        st["h_rdev"] = 0.3
        st["h_shift"] = 0

    def init_area(self, ast: np.ndarray, fleet: Fleet, areas: np.ndarray) -> None:
        pass

    def seed_from_peers(self, st: np.ndarray, peers: np.ndarray) -> None:
        """Start new meters from their peers' mean profile (peers: state rows with
        history): a better prior than the generic tariff shape."""
        if len(peers):
            st["h_mu"] = peers["h_mu"].mean(axis=0)
            st["h_dev"] = peers["h_dev"].mean(axis=0)
            st["h_lv"] = peers["h_lv"].mean(axis=0)
            st["h_ref"] = st["h_lv"]
            st["h_lvdev"] = peers["h_lvdev"].mean(axis=0)
            for f in ("h_hq", "h_hx", "h_base", "h_rdev", "h_rup", "h_pup", "h_cor", "h_cordev"):
                st[f] = np.median(peers[f])

    # -- per interval ----------------------------------------------------------------
    def step(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView,
             out: list[Finding]) -> None:
        cfg = self.config
        n = len(batch)
        if n == 0:
            return
        hours = batch.interval_s / 3600.0
        kwh = batch.kwh
        p = kwh / hours
        day, slot, dtype, month, dim, same = self.calendar.lookup_same(batch.ts, batch.interval_s)
        # One interval for all rows (the usual batch): the profile cells this step reads
        # and writes are one column of each field, so a plain slice replaces fancy
        # indexing (same cells, fewer numpy calls).
        if same:
            at_dt = (slice(None), int(dtype[0]))
            at_slot = (slice(None), int(slot[0]))
            at_cell = (slice(None), int(dtype[0]), int(slot[0]))
        else:
            idx = np.arange(n)
            at_dt, at_slot, at_cell = (idx, dtype), (idx, slot), (idx, dtype, slot)

        # Day and month rollover first: the finished day is judged as a whole.
        h_day = st["h_day"]
        fresh = h_day != day
        roll = fresh & (h_day > 0)
        if any_(roll):
            self._close_days(st, roll.nonzero()[0], batch, fleet, areas, out)
            fresh = st["h_day"] != day
        if any_(fresh):
            st["h_day"][fresh] = day[fresh]
            st["h_dtype"][fresh] = dtype[fresh]
            st["h_dkwh"][fresh] = 0
            st["h_dexp"][fresh] = 0
            st["h_dsec"][fresh] = 0
            st["h_dvec"][fresh] = 0
            # Yesterday's new-load hours become the ones today is compared with.
            st["h_xprev"][fresh] = st["h_xmask"][fresh]
            st["h_xprevkwh"][fresh] = st["h_xtot"][fresh]
            st["h_xmask"][fresh] = 0
            st["h_xtot"][fresh] = 0
            st["h_xkwh"][fresh] = 0
            st["h_xcool"][fresh] = np.maximum(st["h_xcool"][fresh] - 1, 0)
        mroll = st["h_month"] != month
        if any_(mroll):
            self._close_months(st, np.flatnonzero(mroll & (st["h_month"] > 0)), batch, out)
            st["h_month"][mroll] = month[mroll]
            st["h_mkwh"][mroll] = 0
            st["h_msec"][mroll] = 0
            st["h_mref"][mroll] = st["h_ref"][mroll].mean(axis=1)

        mu = st["h_mu"][at_cell].astype(np.float64)
        dev = st["h_dev"][at_cell].astype(np.float64)
        # A transformer area's own meter has no habits to report on (area_loss and the
        # voltage checks use it); it learns a profile but raises nothing here.
        ndays = st["h_ndays"]  # the sum over both day types, in int64 as .sum(axis=1) gives
        trusted = ((ndays[:, 0].astype(np.int64) + ndays[:, 1]) >= cfg.min_days) \
            & ~fleet.is_area_meter[batch.meter]
        meter = batch.meter

        self._interval_surge(st, batch, p, mu, dev, trusted, out)

        self._new_load(st, batch, p, mu, dev, slot, dtype, hours, trusted, out)

        # Today's and this month's accumulators.
        st["h_dkwh"] += kwh
        st["h_dexp"] += mu * hours
        st["h_dsec"] += batch.interval_s
        st["h_dvec"][at_slot] += kwh
        st["h_mkwh"] += kwh
        st["h_msec"] += batch.interval_s

        # Daily surge as soon as today's energy so far already exceeds the bar for the
        # whole day: no need to wait for midnight.
        usual_day = st["h_lvmed"][at_dt].astype(np.float64)
        lvdev = st["h_lvdev"][at_dt].astype(np.float64)
        day_bar = self._day_bar(st, usual_day)
        dsurge = trusted & (st["h_dkwh"] >= day_bar) & ((st["h_open"] & (1 << SURGE_D)) == 0)
        if any_(dsurge):
            day0 = np.array([self.calendar.day_start_ts(int(d)) for d in day[dsurge]])
            self._open(st, SURGE_D, np.flatnonzero(dsurge), batch, "surge", "daily", out,
                       start=dict(zip(np.flatnonzero(dsurge).tolist(), day0.tolist())),
                       magnitude=st["h_dkwh"],
                       evidence=lambda i: {"today_kwh": round(float(st["h_dkwh"][i]), 2),
                                           "usual_day_kwh": round(usual_day[i], 2),
                                           "spread_kwh": round(lvdev[i], 2),
                                           "ratio": round(float(st["h_dkwh"][i]) / max(usual_day[i], 1e-3), 2),
                                           "day_complete": False,
                                           "weekday": int(day[i] % 7)},
                       score=lambda i: float(st["h_dkwh"][i]) / max(day_bar[i], 1e-3))

        # Care customers: hours at base load through normally active hours.
        if any_(fleet.care[meter]):
            care = fleet.care[meter] & trusted
            active = mu > np.maximum(2.5 * st["h_base"], st["h_base"] + 0.15)
            idle = p <= np.maximum(1.3 * st["h_base"], st["h_base"] + 0.05)
            st["h_inact"] = np.where(care & active & idle, st["h_inact"] + 1,
                                     np.where(care & active, 0, st["h_inact"]))
            need = int(round(cfg.inactivity_h * 3600 / max(int(batch.interval_s.max()), 1)))
            inact = care & (st["h_inact"] >= need)
            back = care & active & ~idle
            self._track(st, INACT, inact, batch, "inactivity", "care", out, magnitude=None,
                        start=batch.ts - (st["h_inact"].astype(np.int64) - 1) * batch.interval_s,
                        evidence=lambda i: {"idle_hours": round(float(st["h_inact"][i]) * hours[i], 1),
                                            "observed_kw": round(p[i], 3),
                                            "usual_kw": round(mu[i], 3),
                                            "base_kw": round(float(st["h_base"][i]), 3)},
                        score=lambda i: float(st["h_inact"][i]) / max(need, 1),
                        severity="critical", clear=back)

        # Learning. Residuals are clipped to a few spreads, so one surge barely moves the
        # profile, while a new load that recurs every evening becomes habit within weeks
        # instead of alerting every evening. A vacant home does not teach its profile.
        learn = (st["h_open"] & (1 << VACANT)) == 0
        # No vacancy open (the usual batch): masking by ``learn`` would change nothing.
        learn_all = np.count_nonzero(learn) == n
        nd = st["h_ndays"][at_dt].astype(np.float64)
        a = np.maximum(1.0 / (nd + 1.0), cfg.alpha_min)
        if not learn_all:
            a = a * learn
        # Learn faster while a slot has little history (first weeks), then alpha_min.
        scale = np.maximum(dev, 0.05 + 0.1 * mu)
        r = _uclip(p - mu, -3 * scale, 3 * scale)
        st["h_mu"][at_cell] = np.maximum(mu + a * r, 0.0)
        st["h_dev"][at_cell] = dev + a * (np.abs(r) - dev)

    def _interval_surge(self, st, batch, p, mu, dev, trusted, out) -> None:
        """``surge/interval``: for ``surge_hold_s`` (an hour), power at least
        ``surge_ratio`` x the slot's usual and ``surge_floor_kw`` above it (what a
        customer would notice), and the power held over the last two intervals beyond
        this customer's own calibrated tail.

        The tail is learned online as peaks over a threshold: ``h_hq`` is the level the
        held power exceeds in a share ``surge_tail_share`` of intervals (stochastic
        approximation), the excesses over it are taken as exponential with mean
        ``h_hx``, and the limit is the level exceeded with the probability per interval
        that ``budget.surge_interval`` allows (:func:`models.calibrate.exp_tail_limit`).
        A home that runs an oven or a heater for an hour most evenings has a high limit;
        a steady home a low one."""
        cfg = self.config
        held = np.minimum(p, st["h_pprev"])
        u = st["h_hq"].astype(np.float64)
        sx = np.maximum(st["h_hx"].astype(np.float64), 0.05)
        per_year = DAYS_PER_YEAR * 86400.0 / batch.interval_s
        limit = exp_tail_limit(u, sx, cfg.surge_tail_share, self.budget.surge_interval / per_year)
        floor = np.maximum(cfg.surge_ratio * mu, mu + cfg.surge_floor_kw)
        hot = p >= floor
        st["h_srun"] = np.where(hot, st["h_srun"] + batch.interval_s, 0)
        is_open = (st["h_open"] & (1 << SURGE_I)) != 0
        active = trusted & (((st["h_srun"] >= cfg.surge_hold_s) & (held >= limit)) | (is_open & hot))
        thr = np.maximum(floor, limit)
        self._track(st, SURGE_I, active, batch, "surge", "interval", out,
                    magnitude=p, start=batch.ts - st["h_srun"].astype(np.int64) + batch.interval_s,
                    evidence=lambda i: {"observed_kw": round(p[i], 3),
                                        "expected_kw": round(mu[i], 3),
                                        "spread_kw": round(dev[i], 3),
                                        "threshold_kw": round(thr[i], 3),
                                        "held_hours": round(float(st["h_srun"][i]) / 3600, 2),
                                        "ratio": round(p[i] / max(mu[i], 1e-3), 2),
                                        "interval_s": int(batch.interval_s[i])},
                    score=lambda i: p[i] / max(thr[i], 1e-3), severity="warning")
        # The tail learns from every interval but those of an open surge; an excess
        # counts at most a few tail scales (one odd evening does not lift the limit).
        teach = (st["h_open"] & (1 << SURGE_I)) == 0
        above = held > u
        st["h_hq"] = np.where(teach, u + 0.05 * np.maximum(u, 0.05)
                              * ((1.0 - cfg.surge_tail_share) - ~above), u)
        exc = np.minimum(held - u, 5.0 * sx)
        st["h_hx"] = np.where(teach & above, sx + 0.05 * (exc - sx), st["h_hx"])
        st["h_pprev"] = p

    def _day_bar(self, st: np.ndarray, usual: np.ndarray) -> np.ndarray:
        """The day energy (kWh) a surge day reaches: ``day_ratio`` x the usual day and
        ``day_floor_kwh`` above it, and beyond this customer's calibrated tail of daily
        log ratios (positive ratios taken as exponential with mean ``h_rup``, on a share
        ``h_pup`` of days; exceeded on ``budget.surge_daily`` days a year)."""
        cfg, c = self.config, self.config.cusum_c_kwh
        t = exp_tail_limit(0.0, np.maximum(st["h_rup"].astype(np.float64), 0.02),
                           np.clip(st["h_pup"].astype(np.float64), 0.05, 0.95),
                           self.budget.surge_daily / DAYS_PER_YEAR)
        tail = (usual + c) * np.exp(t) - c
        return np.maximum(np.maximum(cfg.day_ratio * usual, usual + cfg.day_floor_kwh), tail)

    def _cusum_kh(self, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference ``k`` and decision interval ``h`` of the level CUSUMs, per meter:
        ``k`` is half the smallest change worth reporting (``change_min``, as a log
        ratio) in units of the meter's own daily spread ``sd``; ``h`` makes chance runs
        reach it once per the budget's interval on each side."""
        k = 0.5 * math.log(1 + self.config.change_min) / sd
        arl_days = DAYS_PER_YEAR / max(0.5 * self.budget.habit_change, 1e-6)
        return k, cusum_h(k, arl_days)

    def _settle_runs(self, s: np.ndarray, ev: np.ndarray, up: np.ndarray, dn: np.ndarray,
                     h: np.ndarray, mean_up: np.ndarray, mean_dn: np.ndarray,
                     recent: np.ndarray, vacant: np.ndarray) -> np.ndarray:
        """Level runs that end without a report; the rises still to report.

        A rise back to where the home was before its last reported fall, or to its slow
        long-run usual day (learned over weeks of ordinary days: a summer low ending),
        is the end of a story, not a new habit. A run that reached its limit with a
        change too small to report (under change_min) is the new normal. Either way the
        reference takes the run's level in and the run starts afresh, so a later, real
        change is judged on its own days, not diluted in a months-long run."""
        cfg, c = self.config, self.config.cusum_c_kwh
        near = lambda lvl: np.abs(np.log((recent + c) / (lvl + c))) < math.log(1 + cfg.change_min)  # noqa: E731
        fall = s["h_fallref"].astype(np.float64)
        long_run = np.where(s["h_tdays"] >= cfg.min_days, s["h_tlv"], -1.0).astype(np.float64)
        back = up & (((fall > 0) & near(fall)) | ((long_run >= 0) & near(np.maximum(long_run, 0))))
        for j in np.flatnonzero(back):
            self._rebase_ref(s, j, mean_up[j])
            s["h_cup"][j] = s["h_cun"][j] = 0
            s["h_fallref"][j] = 0
        up = up & ~back
        small_up = ev & (s["h_cup"] > h) & (s["h_cupn"] >= cfg.min_run_days) & ~up & ~vacant
        small_dn = ev & (s["h_cun"] > h) & (s["h_cunn"] >= cfg.min_run_days) & ~dn & ~vacant
        for key, small, mean in (("up", small_up, mean_up), ("un", small_dn, mean_dn)):
            for j in np.flatnonzero(small):
                self._rebase_ref(s, j, mean[j])
                s[f"h_c{key}"][j], s[f"h_c{key}n"][j], s[f"h_c{key}sum"][j] = 0, 0, 0
        return up

    def _rebase_ref(self, s: np.ndarray, j: int, log_ratio: float) -> None:
        """Move meter ``j``'s reference by a log ratio of (level + c), as the CUSUM
        measures it (a near-zero reference still reaches the new level)."""
        c = self.config.cusum_c_kwh
        s["h_ref"][j] = np.maximum((s["h_ref"][j] + c) * math.exp(log_ratio) - c, 0.05)

    def _learn_persistence(self, s: np.ndarray, r: np.ndarray, ev: np.ndarray,
                           sd: np.ndarray) -> None:
        """Lag-1 covariance of the daily log ratio (winsorised at 3 spreads), learned on
        days with a day before them."""
        rc = np.clip(r, -3 * sd, 3 * sd)
        a = np.where(ev, 0.02, 0.0)
        s["h_rcov"] = s["h_rcov"] + a * (rc * s["h_rprev"] - s["h_rcov"])
        s["h_rprev"] = np.where(ev, rc, 0.0)

    def _learn_day_tail(self, s: np.ndarray, E: np.ndarray, teach: np.ndarray,
                        nd: np.ndarray) -> None:
        """The daily-surge tail: share of days above the usual day, and their mean log
        ratio; a day beyond the current limit teaches as if at it (a surge does not
        raise the customer's bar)."""
        c = self.config.cusum_c_kwh
        dt = s["h_dtype"].astype(np.int64)
        usual = s["h_lvmed"][np.arange(len(s)), dt].astype(np.float64)
        r = np.log((E + c) / (np.maximum(usual, 0.0) + c))
        limit = np.log((self._day_bar(s, usual) + c) / (usual + c))
        a = np.where(teach, np.maximum(1.0 / (nd + 1.0), 0.02), 0.0)
        pos = r > 0
        s["h_pup"] = s["h_pup"] + a * (pos - s["h_pup"])
        s["h_rup"] = np.where(pos, s["h_rup"] + a * (np.minimum(r, limit) - s["h_rup"]), s["h_rup"])

    def _start(self, st: np.ndarray, j: int, cond: int, start: int, now: int) -> int:
        """The start of a condition opening now: a recurrence within the family's
        cool-down of its last close reopens the same alert (same start, same id)."""
        cool = {SURGE_I: self.config.surge_cool_days, SURGE_D: self.config.day_cool_days,
                VACANT: self.config.vacancy_cool_days}.get(cond, 0)
        closed = int(st["h_closed"][j, cond])
        if cool and closed > 0 and now - closed <= cool * 86400 and st["h_start"][j, cond] > 0:
            return int(st["h_start"][j, cond])
        return start

    def _new_load(self, st, batch, p, mu, dev, slot, dtype, hours, trusted, out) -> None:
        """A new load that recurs: power well above habit in the same hours today as
        yesterday, adding up to ``newload_kwh`` on both days (an EV charger, a heater, a
        new tenant's appliance). Reported as ``habit_change/increase`` the second day,
        while it runs, rather than after the days a level CUSUM needs; the profile then
        takes the load in at once."""
        cfg = self.config
        ex = trusted & (p >= mu + np.maximum(cfg.newload_kw, 3 * dev))
        if not any_(ex) and not any_(st["h_xkwh"] > 0):
            return
        bit = np.left_shift(np.uint64(1), slot.astype(np.uint64))
        near = bit | (bit << np.uint64(1)) | (bit >> np.uint64(1))  # +-1 slot of jitter
        xk = np.where(ex, (p - mu) * hours, 0.0)
        st["h_xmask"] = np.where(ex, st["h_xmask"] | bit, st["h_xmask"])
        st["h_xtot"] += xk
        again = ex & ((st["h_xprev"] & near) != 0)
        st["h_xkwh"] += np.where(again, xk, 0.0)
        fire = (again & (st["h_xkwh"] >= cfg.newload_kwh) & (st["h_xprevkwh"] >= cfg.newload_kwh)
                & (st["h_xcool"] == 0))
        if not any_(fire):
            return
        # A new appliance adds energy; a routine moved to other hours does not (its old
        # hours fall short by what the new ones gain): the day so far, this reading
        # included, must be above habit by a good part of the new load's energy.
        net = st["h_dkwh"] + batch.kwh - (st["h_dexp"] + mu * hours)
        fire &= net >= cfg.newload_net_share * st["h_xkwh"]
        # ... and a change that matters: at least change_min of the usual day.
        usual_now = st["h_lv"][np.arange(len(st)), dtype].astype(np.float64)
        fire &= np.minimum(st["h_xkwh"], st["h_xprevkwh"]) >= cfg.change_min * usual_now
        for j in np.flatnonzero(fire):
            since_day = int(st["h_day"][j]) - 1
            since = self.calendar.day_start_ts(since_day)
            kwh = float(min(st["h_xkwh"][j], st["h_xprevkwh"][j]))
            usual = float(st["h_lv"][j, dtype[j]])
            hrs = int(st["h_xmask"][j] & st["h_xprev"][j]).bit_count() * HOURS_PER_SLOT
            out.append(Finding("habit_change", "increase", "open", "meter", int(batch.meter[j]),
                               since, int(batch.ts[j]), "info", float(kwh / max(usual, 1.0)),
                               {"since_day": _iso_day(since_day), "new_load_kwh_per_day": round(kwh, 2),
                                "new_load_kw": round(float(p[j] - mu[j]), 2),
                                "hours_seen_both_days": hrs, "usual_day_kwh": round(usual, 2),
                                "recent_day_kwh": round(usual + kwh, 2),
                                "ratio": round((usual + kwh) / max(usual, 0.05), 3),
                                "change_pct": round(kwh / max(usual, 0.05) * 100, 1),
                                "days": 2, "kind": "new_load"}))
            # The load is habit from now on: the day level, the reference and the slots
            # seen so far take it in; no second report while it settles.
            st["h_xcool"][j] = cfg.newload_cool_days
            st["h_lv"][j] += np.float32(kwh)
            st["h_ref"][j] += np.float32(kwh)
            seen = st["h_dvec"][j] / HOURS_PER_SLOT
            st["h_mu"][j] = np.maximum(st["h_mu"][j], seen[None, :])
            st["h_settle"][j] = cfg.settle_days
            st["h_cup"][j] = 0

    def late(self, st: np.ndarray, batch: Batch, fleet: Fleet, areas: AreaView) -> None:
        """Readings that arrived after a later one (within the engine's tolerance): add
        their energy to the day and month being accumulated, when they belong to them."""
        interval_s, kwh = batch.interval_s, batch.kwh
        day, slot, _, month, _ = self.calendar.lookup(batch.ts, interval_s)
        today = st["h_day"] == day
        k = np.flatnonzero(today)
        st["h_dkwh"][k] += kwh[k]
        st["h_dsec"][k] += interval_s[k]
        st["h_dvec"][k, slot[k]] += kwh[k]
        m = np.flatnonzero(st["h_month"] == month)
        st["h_mkwh"][m] += kwh[m]
        st["h_msec"][m] += interval_s[m]

    # -- day close -------------------------------------------------------------------
    def _close_days(self, st: np.ndarray, rows: np.ndarray, batch: Batch, fleet: Fleet,
                    areas: AreaView, out: list[Finding]) -> None:
        cfg = self.config
        s = st[rows]  # copy; written back at the end
        dt = s["h_dtype"].astype(np.int64)
        ri = np.arange(len(rows))
        # A day with too little coverage (comm gap) teaches and tells nothing.
        complete = s["h_dsec"] >= 0.85 * 86400
        E = s["h_dkwh"].astype(np.float64) * np.where(complete, 86400.0 / np.maximum(s["h_dsec"], 1), 1.0)
        trusted = ((s["h_ndays"].sum(axis=1) >= cfg.min_days)
                   & ~fleet.is_area_meter[batch.meter[rows]])
        lv = s["h_lv"][ri, dt].astype(np.float64)
        lvdev = s["h_lvdev"][ri, dt].astype(np.float64)
        ref = s["h_ref"][ri, dt].astype(np.float64)
        mu = s["h_mu"][ri, dt].astype(np.float64)  # (k, SLOTS)
        vec = s["h_dvec"].astype(np.float64) / HOURS_PER_SLOT  # kW per slot
        day = s["h_day"].astype(np.int64)
        day_start = {int(d): self.calendar.day_start_ts(int(d)) for d in np.unique(day)}
        start_ts = np.array([day_start[int(d)] for d in day], np.int64)

        ev = complete & trusted
        # Daily surge at close (if it did not open during the day), and close it.
        med = s["h_lvmed"][ri, dt].astype(np.float64)
        bar = self._day_bar(s, med)
        was_open = (s["h_open"] & (1 << SURGE_D)) != 0
        late_surge = ev & (E >= bar) & ~was_open
        now = batch.ts[rows]
        for j in np.flatnonzero(late_surge):
            s["h_start"][j, SURGE_D] = self._start(s, j, SURGE_D, int(start_ts[j]), int(now[j]))
            self._emit(s, j, rows, batch, "surge", "daily", "open", int(s["h_start"][j, SURGE_D]), out,
                       score=E[j] / max(bar[j], 1e-3),
                       evidence={"today_kwh": round(E[j], 2), "usual_day_kwh": round(med[j], 2),
                                 "spread_kwh": round(lvdev[j], 2),
                                 "ratio": round(E[j] / max(med[j], 1e-3), 2), "day_complete": True,
                                 "weekday": int(day[j] % 7)})
        for j in np.flatnonzero(was_open | late_surge):
            self._emit(s, j, rows, batch, "surge", "daily", "close",
                       int(s["h_start"][j, SURGE_D]), out,
                       evidence={"day_kwh": round(E[j], 2), "usual_day_kwh": round(lv[j], 2)})
            s["h_closed"][j, SURGE_D] = now[j]
        s["h_open"] &= np.uint16(~(1 << SURGE_D) & 0xFFFF)
        surge_day = was_open | late_surge

        # Shape: judged on the last few days' shape (EW of day vectors), not one noisy
        # day. Attacks h4-h6 randomise, flatten or reverse the day every day, which a
        # few-day average makes unmistakable; h2 zeroes a window of every day.
        mix = (5 * s["h_mu"][:, 0] + 2 * s["h_mu"][:, 1]).astype(np.float64) / 7
        base = s["h_base"].astype(np.float64)
        # A quiet day (the home at its base load: out, asleep, away) has no shape to
        # judge, and it is not an attack: its readings stay near the base load, where
        # the attacks push readings well below it (zeroed windows, random factors). It
        # neither counts as distorted nor as normal, and leaves the recent shape alone.
        # A home too small to have a shape (usual day under a kWh) is not judged at all.
        low = np.quantile(vec, 0.1, axis=1)
        # Well below the usual day too: a flattened day (h5) keeps the usual total, and
        # a home whose usual day is barely above its base load has no quiet days.
        quiet = ((E <= cfg.quiet_factor * base * 24 + 0.3) & (E <= 0.6 * lv)
                 & (low >= cfg.quiet_low * base))
        shape_ev = ev & ~quiet & (lv >= cfg.min_home_day_kwh)
        rec = np.where((complete & ~quiet)[:, None],
                       (1 - cfg.recent_alpha) * s["h_recent"] + cfg.recent_alpha * vec,
                       s["h_recent"]).astype(np.float64)
        fresh_rec = (s["h_recent"].sum(axis=1) == 0) & complete & ~quiet
        rec[fresh_rec] = vec[fresh_rec]
        s["h_recent"] = rec
        cor0 = _rowcorr(rec, mix)
        cor_rev = _rowcorr(rec, mix[:, ::-1])
        cv_rec = rec.std(axis=1) / np.maximum(rec.mean(axis=1), 1e-6)
        cv_usual = mix.std(axis=1) / np.maximum(mix.mean(axis=1), 1e-6)
        active = mu > np.maximum(2 * base[:, None], base[:, None] + 0.1)
        zrun = _longest_run((vec <= 1e-9) & active) * HOURS_PER_SLOT
        # Spread floored in correlation units: a home whose shape has been steady for
        # weeks is not 'six spreads off' on an ordinary odd week.
        corz = (s["h_cor"] - cor0) / np.maximum(1.25 * s["h_cordev"], cfg.cor_spread_floor)
        corz = np.where(s["h_cor"] - cor0 >= cfg.cor_drop_min, corz, 0.0)
        flat = np.clip(1 - cv_rec / np.maximum(cv_usual, 1e-3), 0, 1)
        rev = (cor_rev - cor0 > cfg.reversal_gain) & (cor_rev > 0.3)
        # Constant readings (h5) need no few-day average to be certain: no home's
        # half-hours stay within a few percent of each other all day while its usual day
        # has a shape; this day alone counts.
        cv_day = vec.std(axis=1) / np.maximum(vec.mean(axis=1), 1e-6)
        # (The usual profile is an average of days, so smoother than any one day.)
        const = (cv_day < cfg.const_cv) & (cv_usual > 2 * cfg.const_cv) & (vec.mean(axis=1) > 0.01)
        # Schedule: how much better today fits the usual shape shifted by a few hours.
        # (Today's own fit, not the recent few-day shape's: that one moves to a new
        # schedule over days, and compared against it a shifted day never gained.)
        cor_day = _rowcorr(vec, mu)
        shifts = np.array([-8, -6, -4, -3, -2, 2, 3, 4, 6, 8])
        best_gain = np.full(len(rows), -np.inf)
        best = np.zeros(len(rows), np.int64)
        for sh in shifts:
            g = _rowcorr(vec, np.roll(mu, sh, axis=1)) - cor_day
            better = g > best_gain
            best_gain = np.where(better, g, best_gain)
            best = np.where(better, sh, best)
        # A day that fits the usual shape well once shifted is a routine moved in time
        # (a new job, a new term), not a tampered meter: the schedule check reports it.
        moved = (best_gain > cfg.schedule_gain) & (cor_day + best_gain >= cfg.moved_fit) & ~rev
        distorted = shape_ev & ~moved & (
            const | (corz > cfg.distort_z) | rev | ((flat > cfg.flat_share) & (cv_usual > 0.3))
            | (zrun >= cfg.zero_run_h))
        s["h_dcuday"] = np.where(distorted & (s["h_dcu"] == 0), day, s["h_dcuday"])
        s["h_dcu"] = np.where(distorted, s["h_dcu"] + 1, np.where(shape_ev, 0, s["h_dcu"]))
        is_open = (s["h_open"] & (1 << DISTORT)) != 0
        dist = shape_ev & (s["h_dcu"] >= cfg.distort_days) & ~is_open
        for j in np.flatnonzero(dist):
            risk = float(min(1.0, 0.4 + 0.1 * max(corz[j], 0) + 0.3 * rev[j] + 0.3 * flat[j]
                             + 0.05 * zrun[j] + 0.4 * const[j]))
            indicators = {"shape_correlation": round(float(cor0[j]), 3),
                          "usual_correlation": round(float(s["h_cor"][j]), 3),
                          "correlation_drop_z": round(float(corz[j]), 2),
                          "reversed_correlation": round(float(cor_rev[j]), 3),
                          "flatness": round(float(flat[j]), 3),
                          "day_variation": round(float(cv_day[j]), 3),
                          "zero_hours_when_active": round(float(zrun[j]), 1),
                          "day_kwh": round(float(E[j]), 2), "usual_day_kwh": round(float(lv[j]), 2),
                          "days": int(s["h_dcu"][j])}
            st_day = int(s["h_dcuday"][j]) or int(day[j])
            start = day_start.get(st_day) or self.calendar.day_start_ts(st_day)
            self._emit(s, j, rows, batch, "theft", "profile_distortion", "open", start, out,
                       score=risk, severity="warning",
                       evidence={"risk": round(risk, 3), "indicators": indicators})
            s["h_open"][j] |= 1 << DISTORT
            s["h_start"][j, DISTORT] = start
            s["h_dclr"][j] = 0
        # An open distortion alert closes after a few normal days in a row.
        s["h_dclr"] = np.where(is_open & shape_ev & ~distorted, s["h_dclr"] + 1,
                               np.where(is_open & distorted, 0, s["h_dclr"]))
        undist = is_open & (s["h_dclr"] >= cfg.clear_days)
        for j in np.flatnonzero(undist):
            self._emit(s, j, rows, batch, "theft", "profile_distortion", "close",
                       int(s["h_start"][j, DISTORT]), out,
                       evidence={"shape_correlation": round(float(cor0[j]), 3)})
            s["h_open"][j] &= ~(1 << DISTORT) & 0xFFFF

        # Level CUSUM on the log ratio to the slow reference.
        c = cfg.cusum_c_kwh
        r_own = np.log((E + c) / (np.maximum(ref, 0.0) + c))
        # Surge days count too (winsorised below): a lasting rise starts with days that
        # look like surges, and leaving them out would understate "how much".
        r_own = np.where(ev, r_own, 0.0)
        # Relative to the area: weather, holidays and seasons move the whole area's
        # use together; a habit change or a theft moves one home against its peers.
        peer_r = _peer_median(r_own, ev, areas.pos[rows] if len(areas.area) else None,
                              cfg.peer_min)
        r = r_own - peer_r
        # In units of the meter's own day-to-day variability: a steady home's 30% drop
        # is as telling as an erratic home's halving.
        # h_rdev is a mean absolute deviation; x1.25 makes it a standard deviation.
        rdev = np.maximum(1.25 * s["h_rdev"].astype(np.float64), cfg.rdev_floor)
        # The CUSUM adds days up: judged on the spread of sums, which the home's own
        # day-to-day persistence widens (a cold spell, a busy month).
        rho = s["h_rcov"].astype(np.float64) / (rdev * rdev)
        if cfg.long_run_spread:
            rdev = long_run_scale(rdev, rho)
        # The spread and persistence are the meter's in-control normal: learned on days
        # when no run is building (half way to the limit), so a change under way does
        # not widen its own yardstick and slow its own detection.
        k, h = self._cusum_kh(rdev)
        calm = (s["h_cup"] < 0.5 * h) & (s["h_cun"] < 0.5 * h)
        self._learn_persistence(s, r, ev & calm, rdev)
        # Winsorised, so that one extreme day cannot make a "lasting" change alone.
        z = np.clip(r / rdev, -cfg.z_cap, cfg.z_cap)
        # After a reported change the habit re-learns for a few days (held CUSUM) so that
        # the tail of the same change is not reported again.
        settling = s["h_settle"] != 0
        z = np.where(settling, 0.0, z)
        # Tuned to the smallest change worth a call (change_min) in this meter's own
        # spreads; the decision interval gives the budget's false-alarm rate per side
        # (Siegmund's approximation). Capped a little above it, so that a run held back
        # by the effect gate below still ends soon after the days return to normal.
        up_prev, dn_prev = s["h_cup"].copy(), s["h_cun"].copy()
        s["h_cup"] = np.minimum(np.maximum(0, s["h_cup"] + z - k), h + cfg.z_cap) * ev + s["h_cup"] * ~ev
        s["h_cun"] = np.minimum(np.maximum(0, s["h_cun"] - z - k), h + cfg.z_cap) * ev + s["h_cun"] * ~ev
        for key, prev in (("up", up_prev), ("un", dn_prev)):
            cu = s[f"h_c{key}"]
            started = (prev == 0) & (cu > 0)
            s[f"h_c{key}day"] = np.where(started, day, s[f"h_c{key}day"])
            s[f"h_c{key}sum"] = np.where(cu > 0, np.where(started, 0, s[f"h_c{key}sum"]) + r, 0)
            s[f"h_c{key}n"] = np.where(cu > 0, np.where(started, 0, s[f"h_c{key}n"]) + 1, 0)

        # Vacancy: days of nothing but base load.
        # Measured on the home's active energy (above its base load): a home on a large
        # base load (storage heating, a server) that uses little on top of it is not
        # "vacant" on an ordinary day, and once vacant it must be able to close again.
        base_day = base * 24
        active_day = np.maximum(lv - base_day, 0.0)
        vac_day = ev & (E <= base_day + np.maximum(cfg.vacancy_active_share * active_day, 0.3))
        vac_prev = s["h_vac"].copy()
        s["h_vac"] = np.where(vac_day, s["h_vac"] + 1, np.where(ev, 0, s["h_vac"]))
        peers = peer_r
        # Days in a row this home needs: its own share of such days (learned outside
        # open vacancies) makes a chance run that long rarer than the budget.
        need = run_length_for(s["h_pvac"], self.budget.vacancy, lo=cfg.vacancy_days_min,
                              hi=cfg.vacancy_days_max, q_stay=s["h_qvac"])
        vac_open = (s["h_open"] & (1 << VACANT)) != 0
        av = np.where(ev & ~vac_open,
                      np.maximum(1.0 / (s["h_ndays"].sum(axis=1) + VAC_PRIOR_DAYS), 1 / 90), 0)
        s["h_pvac"] = s["h_pvac"] + av * (vac_day - s["h_pvac"])
        after = vac_prev > 0
        s["h_qvac"] = s["h_qvac"] + np.where(after, np.maximum(av, 0.05 * (av > 0)), 0) * (
            vac_day - s["h_qvac"])

        vacant = vac_open | (s["h_vac"] > 0)
        mean_up = np.where(s["h_cupn"] > 0, s["h_cupsum"] / np.maximum(s["h_cupn"], 1), 0.0)
        mean_dn = np.where(s["h_cunn"] > 0, s["h_cunsum"] / np.maximum(s["h_cunn"], 1), 0.0)
        # The effect must hold over the run and over the last few days (not one
        # extreme day lifting a run's mean): a level moved by change_min for days.
        ra = cfg.drop_alpha
        recent = np.where(s["h_trlv"] > 0, (1 - ra) * s["h_trlv"] + ra * E, E)
        rr = np.log((recent + c) / (np.maximum(ref, 0.0) + c)) - peer_r
        up = (ev & (s["h_cup"] > h) & (s["h_cupn"] >= cfg.min_run_days) & ~vacant
              & (np.minimum(mean_up, rr) >= math.log(1 + cfg.change_min)))
        dn = (ev & (s["h_cun"] > h) & (s["h_cunn"] >= cfg.min_run_days) & ~vacant
              & (np.maximum(mean_dn, rr) <= math.log(1 - cfg.change_min)))
        vac = (ev & (s["h_vac"] >= need) & ~vac_open & (lv >= cfg.min_home_day_kwh))
        up = self._settle_runs(s, ev, up, dn, h, mean_up, mean_dn, recent, vacant)
        for j in np.flatnonzero(up | dn | vac):
            if vac[j]:
                since = int(day[j]) - int(s["h_vac"][j]) + 1
                ratio = (E[j] + c) / (max(ref[j], 0) + c)
                level = E[j]
                sub = "vacancy"
            elif up[j]:
                since, n_, tot = int(s["h_cupday"][j]), int(s["h_cupn"][j]), float(s["h_cupsum"][j])
                ratio, sub = math.exp(tot / max(n_, 1)), "increase"
                level = (ref[j] + c) * ratio - c
            else:
                since, n_, tot = int(s["h_cunday"][j]), int(s["h_cunn"][j]), float(s["h_cunsum"][j])
                ratio, sub = math.exp(tot / max(n_, 1)), "decrease"
                level = (ref[j] + c) * ratio - c
            since_ts = day_start.get(since) or self.calendar.day_start_ts(since)
            if sub == "vacancy":
                since_ts = self._start(s, j, VACANT, since_ts, int(batch.ts[rows[j]]))
            change = level / max(ref[j], 0.05)
            evd = {"since_day": _iso_day(since), "usual_day_kwh": round(ref[j], 2),
                   "recent_day_kwh": round(level, 2), "ratio": round(change, 3),
                   "change_pct": round((change - 1) * 100, 1),
                   "days": int(day[j]) - since + 1, "peers_log_ratio": round(peers[j], 3)}
            self._emit(s, j, rows, batch, "habit_change", sub, "open", since_ts, out,
                       score=abs(math.log(max(ratio, 1e-3))), severity="info", evidence=evd)
            if sub == "vacancy":
                s["h_open"][j] |= 1 << VACANT
                s["h_start"][j, VACANT] = since_ts
            # The change is reported once: the whole habit (reference, usual day, slot
            # profile) moves to the new level, or surges would keep firing against the old.
            if sub != "vacancy":
                # ratio is of (level + c): re-baseline the reference in that space so a
                # near-zero reference (a meter idle in its first days) reaches the new level.
                ratio_c = min(max(ratio, 0.02), 50.0)
                s["h_ref"][j] = np.maximum((s["h_ref"][j] + c) * ratio_c - c, 0.05)
                # A rise moves the habit at once (or every day at the new level would be a
                # surge). A fall moves it only part of the way (change ** fall_follow; by
                # default not at all) and the days teach the rest at the usual pace:
                # scaled down all the way, a fall that soon ended made each day back at
                # the old level look like a surge or a new load.
                follow = 1.0 if sub == "increase" else cfg.fall_follow
                scale = np.float32(min(max(change, 0.05), 20.0) ** follow)
                for f in ("h_lv", "h_lvdev", "h_mu", "h_dev"):
                    s[f][j] = s[f][j] * scale
                s["h_cup"][j] = s["h_cun"][j] = 0
                # Negative after a fall: the reference settles, the usual day does not
                # chase the low days (see the learning below).
                s["h_settle"][j] = cfg.settle_days if sub == "increase" else -cfg.settle_days
                # Where the home was before a fall: a return there ends the story.
                s["h_fallref"][j] = ref[j] if sub == "decrease" else 0
        # Occupied again: clearly above the vacancy level (hysteresis against flapping).
        occupied = E > base_day + np.maximum(cfg.occupied_active_share * active_day, 0.6)
        unvac = ((s["h_open"] & (1 << VACANT)) != 0) & ev & occupied
        for j in np.flatnonzero(unvac):
            self._emit(s, j, rows, batch, "habit_change", "vacancy", "close",
                       int(s["h_start"][j, VACANT]), out, evidence={"day_kwh": round(E[j], 2)})
            s["h_open"][j] &= ~(1 << VACANT) & 0xFFFF
            s["h_closed"][j, VACANT] = batch.ts[rows[j]]
            s["h_cup"][j] = s["h_cun"][j] = 0
        # Schedule: the day fits the usual shape better shifted (best_gain, computed with
        # the shape checks above), the same way, day after day.
        vote = np.where(ev & (best_gain > cfg.schedule_gain) & (np.abs(r) < 0.4) & ~rev, best, 0)
        s["h_shift"] = np.where(ev[:, None], np.concatenate([s["h_shift"][:, 1:], vote[:, None]], axis=1),
                                s["h_shift"])
        # The most common nonzero shift of each row's last votes (the smallest on a tie),
        # for all rows at once rather than a np.unique per meter and day.
        h = s["h_shift"].astype(np.int64)
        nz = h != 0
        votes = ((h[:, :, None] == h[:, None, :]) & nz[:, None, :]).sum(axis=2) * nz
        top = votes.max(axis=1)
        mode = np.where(nz & (votes == top[:, None]), h, np.iinfo(np.int64).max).min(
            axis=1, initial=np.iinfo(np.int64).max)
        for j in np.flatnonzero(ev & (top >= max(cfg.schedule_votes, 1))):
            sh = int(mode[j])
            self._emit(s, j, rows, batch, "habit_change", "schedule", "open",
                       int(start_ts[j]) - 4 * 86400, out, score=float(best_gain[j]),
                       severity="info",
                       evidence={"shift_hours": sh * HOURS_PER_SLOT,
                                 "shape_correlation": round(cor_day[j], 3),
                                 "shifted_correlation": round(cor_day[j] + best_gain[j], 3),
                                 "since_day": _iso_day(int(day[j]) - 4)})
            s["h_shift"][j] = 0
            # Learn the new schedule at once rather than alert again tomorrow.
            s["h_mu"][j] = np.roll(s["h_mu"][j], sh, axis=1)
            s["h_dev"][j] = np.roll(s["h_dev"][j], sh, axis=1)

        # Learn the day (level, spread, reference, base, shape stats) unless anomalous.
        # The usual day learns fast, and from surge-sized days, only after a rise: the
        # new level is the habit at once. After a fall it learns at its usual pace, so a
        # fall that soon ends leaves it near the old level and the days back there are
        # not surges; the reference (the CUSUM's baseline) settles fast either way.
        settle = s["h_settle"].astype(np.float64)
        fast_ref = np.where(settle != 0, 1.0 / (cfg.settle_days - np.abs(settle) + 2), 0.0)
        fast = np.where(settle > 0, fast_ref, 0.0)
        learn = complete & (~surge_day | (settle > 0)) & (s["h_vac"] == 0) & ~distorted
        nd = s["h_ndays"][ri, dt].astype(np.float64)
        a = np.maximum(np.maximum(1.0 / (nd + 1), 0.1), fast) * learn
        # Current values: a reported change may have just re-baselined them.
        lv = s["h_lv"][ri, dt].astype(np.float64)
        lvdev = s["h_lvdev"][ri, dt].astype(np.float64)
        resid = np.clip(E - lv, -3 * np.maximum(lvdev, 0.5), 3 * np.maximum(lvdev, 0.5))
        resid = np.where(settle > 0, E - lv, resid)
        s["h_lv"][ri, dt] = lv + a * resid
        # The typical day: a stochastic-approximation median (steps of a fifth of the
        # day's spread), from every complete day (the median needs no clipping).
        med = s["h_lvmed"][ri, dt].astype(np.float64)
        step = np.where(complete, 0.2 * np.maximum(lvdev, 0.1), 0.0)
        s["h_lvmed"][ri, dt] = np.where(nd < 3, np.where(complete, lv + a * resid, med),
                                        np.maximum(med + step * np.sign(E - med), 0.0))
        s["h_lvdev"][ri, dt] = lvdev + a * (np.abs(resid) - lvdev)
        s["h_rdev"] = s["h_rdev"] + np.where(learn & calm, np.maximum(1 / (nd + 1), 0.05), 0) * (
            np.minimum(np.abs(r), 3 * rdev) - s["h_rdev"])
        self._learn_day_tail(s, E, ev & complete & (s["h_vac"] == 0) & ~distorted, nd)
        quiet = learn & (s["h_cup"] == 0) & (s["h_cun"] == 0)
        ar = np.maximum(np.where(nd < 28, np.maximum(1.0 / (nd + 1), cfg.ref_alpha), cfg.ref_alpha),
                        fast_ref) * quiet
        # Settling after a report re-learns the level whatever the CUSUMs hold meanwhile.
        ar = np.where(settle != 0, fast_ref * learn, ar)
        cur = s["h_ref"][ri, dt].astype(np.float64)  # re-baselined above, maybe
        s["h_ref"][ri, dt] = cur + ar * (E - cur)
        dmin = np.where(complete, vec.min(axis=1), base)
        s["h_base"] = base + np.where(learn, np.maximum(1 / (nd + 1), 0.1), 0) * (dmin - base)
        normal_shape = learn & ~distorted & ((s["h_open"] & (1 << DISTORT)) == 0)
        ac = np.where(normal_shape, np.maximum(1 / (nd + 1), 0.05), 0)
        s["h_cordev"] = s["h_cordev"] + ac * (np.abs(cor0 - s["h_cor"]) - s["h_cordev"])
        s["h_cor"] = s["h_cor"] + ac * (cor0 - s["h_cor"])
        s["h_ndays"][ri, dt] = np.where(complete, np.minimum(nd + 1, 30000), nd)
        s["h_settle"] = np.where(complete & ~(up | dn), s["h_settle"] - np.sign(s["h_settle"]),
                                 s["h_settle"])
        self._drop_test(s, rows, batch, areas, day, E, low, complete, ev, learn, day_start, out)
        self._check_bill(s, rows, batch, day, ev, out)
        s["h_day"] = 0  # so the caller's reset sees a fresh day
        st[rows] = s

    def _drop_test(self, s: np.ndarray, rows: np.ndarray, batch: Batch, areas: AreaView,
                   day: np.ndarray, E: np.ndarray, low: np.ndarray, complete: np.ndarray,
                   ev: np.ndarray, teach: np.ndarray, day_start: dict, out: list[Finding]) -> None:
        """``theft/consumption_drop``: the recent days' energy AND low (base) power both
        well below the meter's own reference, while the area's peers did not fall.

        A lower level alone is what every holiday, mild week and frugal month looks like;
        the attacks that remove energy (h1 scaling, h3 random factors, a slowed or
        bypassed meter) lower the base load too, which people going out, away or saving
        do not: a fridge and standby keep running. The reference here is the theft
        test's own and is not re-baselined when a habit change is reported, or a drop
        would be absorbed as the customer's new habit the day it is noticed.
        """
        cfg = self.config
        c, eps = cfg.cusum_c_kwh, cfg.drop_base_eps_kw
        ra = cfg.drop_alpha
        fresh = s["h_trlv"] <= 0
        s["h_trlv"] = np.where(complete, np.where(fresh, E, (1 - ra) * s["h_trlv"] + ra * E),
                               s["h_trlv"])
        s["h_trbase"] = np.where(complete, np.where(fresh, low, (1 - ra) * s["h_trbase"] + ra * low),
                                 s["h_trbase"])
        tlv, tbase = s["h_tlv"].astype(np.float64), s["h_tbase"].astype(np.float64)
        lr = np.log((s["h_trlv"] + c) / (tlv + c))
        br = np.log((s["h_trbase"] + eps) / (tbase + eps))
        ready = ev & (s["h_tdays"] >= cfg.min_days) & (tlv >= cfg.min_home_day_kwh)
        pos = areas.pos[rows] if len(areas.area) else None
        lr_adj = lr - _peer_median(lr, ready, pos, cfg.peer_min)
        br_adj = br - _peer_median(br, ready, pos, cfg.peer_min)
        sd = np.maximum(1.25 * s["h_rdev"].astype(np.float64), cfg.rdev_floor)
        z = lr_adj / sd
        hit = ready & (z < -cfg.drop_z) & (br_adj < -cfg.drop_base)
        s["h_tcnt"] = np.where(hit, np.minimum(s["h_tcnt"] + 1, 100),
                               np.where(ready, 0, s["h_tcnt"]))
        is_open = (s["h_open"] & (1 << DROP)) != 0
        s["h_tclr"] = np.where(is_open & ready & ~hit, s["h_tclr"] + 1,
                               np.where(is_open & hit, 0, s["h_tclr"]))
        for j in np.flatnonzero(hit & ~is_open & (s["h_tcnt"] >= cfg.drop_days)):
            since = int(day[j]) - int(s["h_tcnt"][j]) + 1
            since_ts = day_start.get(since) or self.calendar.day_start_ts(since)
            level, base = math.exp(lr[j]), math.exp(br[j])
            risk = float(min(1.0, 0.4 + 0.1 * (-z[j] - cfg.drop_z) + 0.5 * (1 - base)))
            evd = {"risk": round(risk, 3), "indicators": {
                "recent_day_kwh": round(float(s["h_trlv"][j]), 2),
                "usual_day_kwh": round(float(tlv[j]), 2), "level_ratio": round(level, 3),
                "recent_base_kw": round(float(s["h_trbase"][j]), 3),
                "usual_base_kw": round(float(tbase[j]), 3), "base_ratio": round(base, 3),
                "level_z": round(float(z[j]), 2),
                "peers_level_log_ratio": round(float(lr[j] - lr_adj[j]), 3),
                "peers_base_log_ratio": round(float(br[j] - br_adj[j]), 3),
                "since_day": _iso_day(since), "days": int(s["h_tcnt"][j])}}
            self._emit(s, j, rows, batch, "theft", "consumption_drop", "open", since_ts, out,
                       score=risk, severity="warning", evidence=evd)
            s["h_open"][j] |= 1 << DROP
            s["h_start"][j, DROP] = since_ts
            s["h_tclr"][j] = 0
        # Closes after a few ordinary days; or, a month on, the lower level is accepted
        # as the reference (inspected by then, or the customer's new normal).
        start_day = (s["h_start"][:, DROP] - 1) // 86400
        end_day = (batch.ts[rows] - 1) // 86400
        stale = is_open & ((end_day - start_day) >= cfg.drop_accept_days)
        done = is_open & ((s["h_tclr"] >= cfg.clear_days) | stale)
        for j in np.flatnonzero(done):
            self._emit(s, j, rows, batch, "theft", "consumption_drop", "close",
                       int(s["h_start"][j, DROP]), out,
                       evidence={"level_ratio": round(math.exp(lr[j]), 3),
                                 "base_ratio": round(math.exp(br[j]), 3),
                                 "accepted_as_new_level": bool(stale[j])})
            s["h_open"][j] &= ~(1 << DROP) & 0xFFFF
            s["h_tcnt"][j] = 0
            if stale[j]:
                s["h_tlv"][j], s["h_tbase"][j] = s["h_trlv"][j], s["h_trbase"][j]
        # The reference learns from ordinary days only (fast while it is new).
        nd = s["h_tdays"].astype(np.float64)
        quiet_ref = teach & ~hit & ((s["h_open"] & (1 << DROP)) == 0) & (s["h_tcnt"] == 0)
        a = np.maximum(1.0 / (nd + 1), cfg.drop_ref_alpha)
        # Current values: a drop accepted as the new level just re-baselined them.
        tlv, tbase = s["h_tlv"].astype(np.float64), s["h_tbase"].astype(np.float64)
        s["h_tlv"] = np.where(quiet_ref, np.where(nd == 0, E, tlv + a * (E - tlv)), tlv)
        s["h_tbase"] = np.where(quiet_ref, np.where(nd == 0, low, tbase + a * (low - tbase)), tbase)
        s["h_tdays"] = np.where(quiet_ref, np.minimum(nd + 1, 30000), nd)

    def _check_bill(self, s: np.ndarray, rows: np.ndarray, batch: Batch, day: np.ndarray,
                    ev: np.ndarray, out: list[Finding]) -> None:
        """Project this month's use from month-to-date plus the usual rest of the month,
        so the customer hears of a big bill before it arrives."""
        cfg = self.config
        dates = [date.fromordinal(int(d)) for d in day]
        dim = np.array([monthrange(d.year, d.month)[1] for d in dates], np.float64)
        mday = s["h_msec"] / 86400.0
        # Against the habit as the month began: a level re-baselined mid-month (a drop)
        # must not make the early, higher days look like a coming big bill.
        usual_daily = np.where(s["h_mref"] > 0, s["h_mref"], s["h_ref"].mean(axis=1)).astype(np.float64)
        # ... and never below the slow, long-run usual day (a fall reported last month
        # does not make this month's ordinary days look like a big bill).
        long_run = np.where(s["h_tdays"] >= cfg.min_days, s["h_tlv"], 0.0).astype(np.float64)
        usual_daily = np.maximum(usual_daily, long_run)
        usual_month = usual_daily * dim
        proj = s["h_mkwh"] + usual_daily * np.maximum(dim - mday, 0)
        trusted = s["h_ndays"].sum(axis=1) >= max(cfg.min_days, 28)
        hit = (ev & trusted & (mday >= cfg.bill_min_day) & (proj >= cfg.bill_ratio * usual_month)
               & (proj - usual_month >= cfg.bill_floor_kwh) & ((s["h_open"] & (1 << BILL)) == 0))
        for j in np.flatnonzero(hit):
            d = dates[j]
            mstart = self.calendar.day_start_ts(d.replace(day=1).toordinal())
            ratio = float(proj[j] / max(usual_month[j], 1e-3))
            self._emit(s, j, rows, batch, "surge", "bill_projection", "open", mstart, out,
                       score=ratio, severity="info",
                       evidence={"month_to_date_kwh": round(float(s["h_mkwh"][j]), 1),
                                 "projected_kwh": round(float(proj[j]), 1),
                                 "usual_month_kwh": round(float(usual_month[j]), 1),
                                 "ratio": round(ratio, 2), "days_elapsed": round(float(mday[j]), 1),
                                 "month": f"{d.year}-{d.month:02d}"})
            s["h_open"][j] |= 1 << BILL
            s["h_start"][j, BILL] = mstart

    def _close_months(self, st: np.ndarray, rows: np.ndarray, batch: Batch,
                      out: list[Finding]) -> None:
        for j in rows[(st["h_open"][rows] & (1 << BILL)) != 0]:
            self._emit(st, j, np.arange(len(st)), batch, "surge", "bill_projection", "close",
                       int(st["h_start"][j, BILL]), out, evidence={"month_kwh": round(float(st["h_mkwh"][j]), 1)})
            st["h_open"][j] &= ~(1 << BILL) & 0xFFFF

    # -- open/close bookkeeping ----------------------------------------------------------
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


def habit_context(row: np.ndarray) -> dict:
    """What an alert page draws: the customer's day so far against their habit band.

    ``row`` is one meter's state record. Energy per half-hour slot (kWh) of the local
    day being accumulated, the usual energy for that day type with its spread, and the
    recent days' shape. Slots not yet reached today are ``None``.

    >>> from models.base import compose_dtype
    >>> st = np.zeros(1, compose_dtype(HabitDetector.fields))
    >>> st["h_mu"][0, 0] = 1.0; st["h_dsec"] = 3600; st["h_day"] = 739600
    >>> ctx = habit_context(st[0])
    >>> ctx["expected_kwh"][0], ctx["kwh"][:3]
    (0.5, [0.0, 0.0, None])
    """
    dt = int(row["h_dtype"])
    seen = int(min(SLOTS, max(0, int(row["h_dsec"])) // 1800))
    r3 = lambda a: [round(float(x), 3) for x in a]  # noqa: E731
    kwh = r3(row["h_dvec"])
    return {
        "day": _iso_day(int(row["h_day"])) if row["h_day"] > 0 else None,
        "day_type": "offday" if dt == OFFDAY else "workday",
        "slot_s": 1800,
        "kwh": kwh[:seen] + [None] * (SLOTS - seen),
        "expected_kwh": r3(row["h_mu"][dt] * 0.5),
        "spread_kwh": r3(row["h_dev"][dt] * 0.5),
        "recent_kwh": r3(row["h_recent"] * 0.5),
        "days_learned": int(row["h_ndays"].sum()),
    }


def habit_profile(row: np.ndarray) -> dict:
    """The usual day per day type (kW per half-hour slot), for a customer page."""
    r3 = lambda a: [round(float(x), 3) for x in a]  # noqa: E731
    return {name: {"expected_kw": r3(row["h_mu"][k]), "spread_kw": r3(row["h_dev"][k]),
                   "days": int(row["h_ndays"][k]), "usual_day_kwh": round(float(row["h_lv"][k]), 2)}
            for name, k in (("workday", WORKDAY), ("offday", OFFDAY))}


def _peer_median(r: np.ndarray, ev: np.ndarray, pos: np.ndarray | None, min_peers: int) -> np.ndarray:
    """Each row's area median of today's log ratio (0 where too few peers reported)."""
    out = np.zeros(len(r))
    if pos is None:
        return out
    for a in np.unique(pos):
        sel = (pos == a) & ev
        if sel.sum() >= min_peers:
            out[pos == a] = np.median(r[sel])
    return out


def _longest_run(mask: np.ndarray) -> np.ndarray:
    """Length of the longest run of True in each row."""
    k, n = mask.shape
    best = np.zeros(k, np.int64)
    cur = np.zeros(k, np.int64)
    for t in range(n):
        cur = np.where(mask[:, t], cur + 1, 0)
        best = np.maximum(best, cur)
    return best


def _iso_day(ordinal: int) -> str:
    return date.fromordinal(int(ordinal)).isoformat() if ordinal > 0 else ""
