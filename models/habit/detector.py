"""The customer's habits, and what departs from them: the detector that composes the
habit families (one module each) over one per-meter state record.

Per interval: the slot profile learns, and the interval checks run (interval surge, a
recurring new load, a daily surge as soon as certain, care inactivity). When a meter's
local day rolls over, the finished day is judged by each family in turn (daily surge,
shape, level change, vacancy, schedule, consumption drop, bill projection) and then
taught to the profile; :class:`~models.habit.common.DayClose` carries the day between
them.

>>> import numpy as np
>>> from models.base import Batch, Fleet
>>> from models.habit import HabitDetector
>>> det = HabitDetector()
>>> det.fields[0][0]
'h_mu'
"""

from __future__ import annotations

import numpy as np

from models.base import AreaView, Batch, BitConditions, Condition, Finding, Fleet, any_
from models.config import BudgetConfig, HabitConfig
from models.habit.bill import BillFamily
from models.habit.care import CareFamily
from models.habit.common import (BILL, DISTORT, DROP, FALL, HOURS_PER_SLOT, INACT, N_COND,
                                 SEED_PROFILE, SURGE_D, SURGE_I, VACANT, DayClose, Lifecycle,
                                 iso_day)
from models.habit.drop import DropFamily
from models.habit.level import LevelFamily
from models.habit.newload import NewLoadFamily
from models.habit.profile import ProfileFamily
from models.habit.shape import ShapeFamily
from models.habit.surge import SurgeFamily
from models.habit.vacancy import VacancyFamily
from models.habit.weather import WeatherFamily
from models.localtime import OFFDAY, SLOTS, WORKDAY, LocalCalendar


class HabitDetector(BitConditions, Lifecycle, ProfileFamily, SurgeFamily, NewLoadFamily,
                    CareFamily, ShapeFamily, LevelFamily, WeatherFamily, VacancyFamily,
                    DropFamily, BillFamily):
    """Per-meter usage profile and the habit-based detectors built on it.

    Parameters
    ----------
    config
        Thresholds (:class:`models.config.HabitConfig`).
    calendar
        Local time zone and holidays (:class:`models.localtime.LocalCalendar`).
    budget
        False openings per customer-year each family may raise
        (:class:`models.config.BudgetConfig`).
    """

    conditions = (
        Condition("h_open", SURGE_I, "surge", "interval", "warning"),
        Condition("h_open", SURGE_D, "surge", "daily", "warning"),
        Condition("h_open", BILL, "surge", "bill_projection", "info"),
        Condition("h_open", DROP, "theft", "consumption_drop", "warning"),
        Condition("h_open", FALL, "habit_change", "decrease", "info"),
        Condition("h_open", DISTORT, "theft", "profile_distortion", "warning"),
        Condition("h_open", INACT, "inactivity", "care", "critical"),
        Condition("h_open", VACANT, "habit_change", "vacancy", "info"),
    )
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
    ) + WeatherFamily.weather_fields  # the home's temperature response (weather feed)
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
        st["hw_dd0"] = st["hw_ddt"] = -1.0  # no day with a temperature yet

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
        self._roll_over(st, batch, fleet, areas, day, month, dtype, out)

        mu = st["h_mu"][at_cell].astype(np.float64)
        dev = st["h_dev"][at_cell].astype(np.float64)
        # A transformer area's own meter has no habits to report on (area_loss and the
        # voltage checks use it); it learns a profile but raises nothing here.
        ndays = st["h_ndays"]  # the sum over both day types, in int64 as .sum(axis=1) gives
        trusted = ((ndays[:, 0].astype(np.int64) + ndays[:, 1]) >= cfg.min_days) \
            & ~fleet.is_area_meter[batch.meter]

        self._interval_surge(st, batch, p, mu, dev, trusted, out)
        self._new_load(st, batch, p, mu, dev, slot, dtype, hours, trusted, out)

        # Today's and this month's accumulators.
        st["h_dkwh"] += kwh
        st["h_dexp"] += mu * hours
        st["h_dsec"] += batch.interval_s
        st["h_dvec"][at_slot] += kwh
        st["h_mkwh"] += kwh
        st["h_msec"] += batch.interval_s

        self._day_surge_so_far(st, batch, day, at_dt, trusted, out)
        if any_(fleet.care[batch.meter]):
            self._care(st, batch, fleet, p, mu, hours, trusted, out)
        self._learn_interval(st, p, mu, dev, at_dt, at_cell, n)

    def _roll_over(self, st, batch, fleet, areas, day, month, dtype, out) -> None:
        """Day and month rollover first: the finished day is judged as a whole."""
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
        """Judge the finished day of meters ``rows``, family by family, then learn it.
        The order matters: the level families read the surge and shape verdicts, and
        learning reads them all."""
        d = self._day_close(st, rows, batch, fleet, areas)
        self._close_day_surge(d, out)
        self._judge_shape(d, out)
        self._level_ratio(d)
        self._level_cusum(d)
        self._vacancy_run(d)
        self._drop_measure(d)
        self._level_decide(d)
        f = d.found
        for j in np.flatnonzero(f["up"] | f["dn"] | f["vac"]):
            if f["vac"][j]:
                self._open_vacancy(d, j, out)
            else:
                self._report_level(d, j, out)
        self._close_vacancy(d, out)
        self._schedule(d, out)
        learned = self._learn_day(d)
        self._drop_test(d, learned, out)
        self._check_bill(d, out)
        d.s["h_day"] = 0  # so the caller's reset sees a fresh day
        st[rows] = d.s

    def _day_close(self, st, rows, batch, fleet, areas) -> DayClose:
        cfg = self.config
        s = st[rows]  # copy; written back at the end
        dt = s["h_dtype"].astype(np.int64)
        ri = np.arange(len(rows))
        # A day with too little coverage (comm gap) teaches and tells nothing.
        complete = s["h_dsec"] >= 0.85 * 86400
        E = s["h_dkwh"].astype(np.float64) * np.where(complete, 86400.0 / np.maximum(s["h_dsec"], 1), 1.0)
        trusted = ((s["h_ndays"].sum(axis=1) >= cfg.min_days)
                   & ~fleet.is_area_meter[batch.meter[rows]])
        day = s["h_day"].astype(np.int64)
        day_start = {int(x): self.calendar.day_start_ts(int(x)) for x in np.unique(day)}
        return DayClose(
            s=s, rows=rows, batch=batch, fleet=fleet, areas=areas, ri=ri, dt=dt, day=day,
            day_start=day_start, start_ts=np.array([day_start[int(x)] for x in day], np.int64),
            complete=complete, E=E, ev=complete & trusted,
            lv=s["h_lv"][ri, dt].astype(np.float64), lvdev=s["h_lvdev"][ri, dt].astype(np.float64),
            ref=s["h_ref"][ri, dt].astype(np.float64), mu=s["h_mu"][ri, dt].astype(np.float64),
            vec=s["h_dvec"].astype(np.float64) / HOURS_PER_SLOT,
            base=s["h_base"].astype(np.float64))


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
        "day": iso_day(int(row["h_day"])) if row["h_day"] > 0 else None,
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


