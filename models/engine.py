"""The detection engine: meter-data validation (VEE) plus every detector, over columns.

One call processes any set of validated readings (one area's interval in the stream, one
timestamp of a fleet in a backtest) against the state rows of the meters and areas
involved; the caller owns the state (a Faust table, or arrays in memory) and gathers /
scatters the rows. The same code runs live and offline, so a backtest measures what
production would do.

Per meter the engine keeps the last applied interval and a 64-interval bitmap of the
intervals applied before it, which makes redelivery harmless: a reading applied once is
recognised and dropped (the effect is exactly once even though delivery is at least
once). Readings that arrive after a later one are recorded as late within a tolerance
(their energy counts in the day's and month's totals, but is not fed to the interval
detectors, which have moved on) and rejected as too late beyond it.

>>> import numpy as np
>>> from models.base import Fleet
>>> from models.base import READING_DTYPE
>>> fleet = Fleet.simple(2)
>>> eng = Engine(fleet)
>>> st = eng.new_state(2); ast = eng.new_area_state(1)
>>> cols = np.zeros(2, READING_DTYPE); cols["ts"] = 1_767_200_400; cols["interval_s"] = 900
>>> cols["kwh"] = 0.2; cols["voltage"] = np.nan; cols["voltage_min"] = cols["voltage_max"] = np.nan
>>> for c in ("kwh_export", "register_kwh", "current", "neutral_current", "power_factor"): cols[c] = np.nan
>>> out = eng.process(np.array([0, 1]), cols, st, ast, np.array([0, 1]), np.array([0]))
>>> out.applied, out.duplicates
(2, 0)
>>> eng.process(np.array([0, 1]), cols, st, ast, np.array([0, 1]), np.array([0])).duplicates
2
"""

from __future__ import annotations

import pickle
import zlib
from dataclasses import dataclass, field
from datetime import timezone

import numpy as np

from models.area import AreaDetector, rollup_outages
from models.base import AreaView, Batch, Finding, Fleet, any_, compose_dtype
from models.compliance import ComplianceDetector
from models.config import DetectorConfig
from models.habit import HabitDetector, habit_context
from models.localtime import LocalCalendar
from models.physical import PhysicalDetector
from models.theft import FleetTheftModel, TheftDetector
from models.voltage import VoltageDetector
from models.weather import WEATHER_AREA_FIELDS, AreaWeather

ENGINE_FIELDS = (
    ("e_init", "<u1"),
    ("e_last_ts", "<i8"),
    ("e_bits", "<u8"),  # bit k: interval (last_ts - k * interval_s) applied
    ("e_last_reg", "<f8"),
    ("e_n", "<i4"),
)
# Replays: per area, the highest source offset (+1; 0 = none) of ami.readings applied
# so far, per source partition. A reading at or below its partition's mark was in a
# message this area has already handled: redelivered (a restarted ingest re-reads from
# its last commit), not late. Partitions beyond the table are not tracked (their
# replays fall back to the bitmap and the late tolerance).
SOURCE_PARTITIONS = 64
ENGINE_AREA_FIELDS = (("ea_init", "<u1"), ("ea_src_mark", "<i8", (SOURCE_PARTITIONS,)))


@dataclass
class Outcome:
    findings: list[Finding] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    late: int = 0
    too_late: list[int] = field(default_factory=list)  # input positions
    gaps: int = 0
    rounds: int = 0  # detector passes: one per interval end (readings per pass = batching)


class Engine:
    """All detectors behind one ``process`` call.

    Parameters
    ----------
    fleet
        Static facts of the meters (:class:`models.base.Fleet`).
    config
        Thresholds (:class:`models.config.DetectorConfig`).
    tz, country
        Local time zone and holiday calendar of the utility.
    """

    def __init__(self, fleet: Fleet, config: DetectorConfig | None = None,
                 tz: str = "Asia/Shanghai", country: str | None = "CN",
                 voltage_standard: str | None = None, partitions: int = 1) -> None:
        self.fleet = fleet
        self.config = config or DetectorConfig()
        self.tz = tz
        self.calendar = LocalCalendar(tz, country)
        vc = self.config.voltage
        self.habit = HabitDetector(self.config.habit, self.calendar, self.config.budget)
        self.physical = PhysicalDetector(self.config.physical)
        self.voltage = VoltageDetector.from_config(vc, voltage_standard)
        cc = self.config.compliance
        self.compliance = ComplianceDetector(
            self.voltage.standard, self.calendar, required=cc.required_share,
            min_coverage=cc.min_coverage, area_share=vc.area_share,
            area_min_meters=vc.area_min_meters)
        self.area = AreaDetector(self.config.area, self.calendar)
        # Order matters: the area detector reads the habit state of the same step, and
        # the theft model reads the day habit closes in it (so it runs before habit).
        # ``partitions``: the stream's by-area partition count, one theft model each.
        self.theft = (TheftDetector(self.config.theft, self.calendar, self.config.budget,
                                    self.config.habit, partitions=partitions)
                      if self.config.theft.model else None)
        if self.theft:
            self.theft.corroborators, self.theft.area_detector = (self.physical,), self.area
        self.detectors = [self.physical, self.voltage, self.compliance,
                          *([self.theft] if self.theft else []), self.habit, self.area]
        self.dtype = compose_dtype(ENGINE_FIELDS, *(d.fields for d in self.detectors))
        self.area_dtype = compose_dtype(ENGINE_AREA_FIELDS, WEATHER_AREA_FIELDS,
                                        *(d.area_fields for d in self.detectors))
        self.weather = AreaWeather(self.calendar)

    def set_fleet(self, fleet: Fleet) -> None:
        """Registry reloaded: detectors see the new facts from the next call."""
        self.fleet = fleet
        self.area.customers_per_area = None

    # -- state ---------------------------------------------------------------------
    def new_state(self, n: int) -> np.ndarray:
        return np.zeros(n, self.dtype)

    def new_area_state(self, n: int) -> np.ndarray:
        return np.zeros(n, self.area_dtype)

    @property
    def state_bytes(self) -> int:
        return self.dtype.itemsize

    def fleet_state(self) -> bytes:
        """The fleet-level state (the theft models, by shard) as bytes; empty when the
        model is off. (The stream keeps each shard's model on its own: see
        stream/worker/process.py.)"""
        if not self.theft:
            return b""
        return pickle.dumps(sorted((q, m.to_bytes()) for q, m in self.theft.models.items()),
                            protocol=5)

    def load_fleet_state(self, data: bytes) -> None:
        """Carry on from :meth:`fleet_state`'s bytes (a restart, a copy of the engine)."""
        if self.theft and data:
            self.theft.models = {int(q): FleetTheftModel.from_bytes(b)
                                 for q, b in pickle.loads(data)}

    def apply_outcome(self, st: np.ndarray | None, alert: dict, outcome: str, *,
                      ts: int, shards: list[int] | None = None) -> bool:
        """An inspection outcome, resolved at ``ts``, on ``alert`` (an alert record of
        this engine): the theft model learns from its own alerts' outcomes, in the
        models of ``shards`` (all of them by default; the stream gives each partition
        its copy), and the meter's state row ``st`` (shape (1,), mutated; None: the
        models only) takes a false alarm's verdict. Other alerts' outcomes change
        nothing (False)."""
        ev = alert.get("evidence") or {}
        if not self.theft or alert.get("type") != "theft" or ev.get("model") != \
                "fleet_self_supervised":
            return False
        day = int(self.calendar.lookup_same(np.array([ts], np.int64),
                                            np.array([1], np.int64))[0][0])
        # One inspection: the alert, the verdict and when it was given (an alert judged
        # again later, even back to an earlier verdict, is a new case).
        oid = zlib.crc32(f"{alert.get('id')}:{outcome}:{int(ts)}".encode())
        every = list(range(self.theft.partitions)) if shards is None else shards
        return self.theft.apply_outcome(st, oid, outcome, ev, day, every)

    def _init_new(self, st: np.ndarray, meters: np.ndarray) -> None:
        new = st["e_init"] == 0
        if not any_(new):
            return
        self._init_rows(st, meters, "e_init", "init")
        # A new customer among customers with history starts from its area peers'
        # habits (same tariff class) rather than the generic tariff shape.
        trusted = ~new & (st["h_ndays"].sum(axis=1) >= self.habit.config.min_days)
        if not trusted.any():
            return
        area, tariff = self.fleet.area[meters], self.fleet.tariff[meters]
        for a, t in {(int(x), int(y)) for x, y in zip(area[new], tariff[new])}:
            peers = trusted & (area == a) & (tariff == t)
            if peers.any():
                idx = np.flatnonzero(new & (area == a) & (tariff == t))
                sub = st[idx]
                self.habit.seed_from_peers(sub, st[peers])
                st[idx] = sub

    def _init_new_areas(self, ast: np.ndarray, areas: np.ndarray) -> None:
        self._init_rows(ast, areas, "ea_init", "init_area")

    def _init_rows(self, st: np.ndarray, ids: np.ndarray, flag: str, method: str) -> None:
        """Let every detector fill the rows not initialised yet (new meters/areas)."""
        new = st[flag] == 0
        if any_(new):
            sub = st[new]
            for d in self.detectors:
                getattr(d, method)(sub, self.fleet, ids[new])
            sub[flag] = 1
            st[new] = sub

    # -- processing ----------------------------------------------------------------
    def process(self, rows: np.ndarray, cols: np.ndarray, st: np.ndarray, ast: np.ndarray,
                meters: np.ndarray, areas: np.ndarray,
                source: np.ndarray | None = None) -> Outcome:
        """Apply readings ``cols`` (READING_DTYPE) of fleet rows ``rows``.

        ``st`` holds the state rows of ``meters`` (sorted unique fleet rows covering
        ``rows``), ``ast`` those of ``areas`` (sorted unique area indices); both are
        updated in place. A meter may appear several times in ``rows`` (a catch-up
        upload): its readings are applied in time order.

        ``source`` (the stream only): each reading's ``partition`` and ``offset`` in
        the input topic (partition -1: unknown). A reading from a message the area
        has already handled is a duplicate, whatever its age; only readings never
        seen can be too late. Without it (backtest) the result is the same for input
        that holds each reading once.
        """
        if source is None or len(rows) == 0:
            return self._process(rows, cols, st, ast, meters, areas)
        fresh = self._not_replayed(rows, source, ast, areas)
        if fresh.all():
            return self._process(rows, cols, st, ast, meters, areas)
        kept = np.flatnonzero(fresh)
        out = self._process(rows[kept], cols[kept], st, ast, meters, areas)
        out.duplicates += len(rows) - len(kept)
        out.too_late = kept[out.too_late].tolist()  # positions in the caller's input
        return out

    def apply_weather(self, area: np.ndarray, ts: np.ndarray, temp_c: np.ndarray,
                      ast: np.ndarray, areas: np.ndarray) -> tuple[int, int, int]:
        """Hourly temperature samples (area index, epoch s, degC) into the area rows
        ``ast`` of ``areas`` (sorted unique area indices covering ``area``): the
        temperature of the day each meter's day close will judge. (applied, stale,
        duplicate): a sample of an hour already seen, or of a finished day, changes
        nothing, so a replay is harmless. Apply a day's samples before the readings
        that close it (the next day's first), as the stream and the backtest do."""
        self._init_new_areas(ast, areas)
        return self.weather.apply(ast, np.searchsorted(areas, area), ts, temp_c)

    def _not_replayed(self, rows: np.ndarray, source: np.ndarray, ast: np.ndarray,
                      areas: np.ndarray) -> np.ndarray:
        """Readings from source messages the area has not handled yet; advances the
        area's marks past every message of this call."""
        part = source["partition"].astype(np.int64)
        off = source["offset"].astype(np.int64)
        tracked = (part >= 0) & (part < SOURCE_PARTITIONS)
        if not any_(tracked):
            return np.ones(len(rows), bool)
        apos = np.searchsorted(areas, self.fleet.area[rows])
        p = np.where(tracked, part, 0)
        marks = ast["ea_src_mark"]  # a view: (areas, SOURCE_PARTITIONS)
        seen = tracked & (off < marks[apos, p])
        np.maximum.at(marks, (apos[tracked], p[tracked]), off[tracked] + 1)
        return ~seen

    def _process(self, rows: np.ndarray, cols: np.ndarray, st: np.ndarray, ast: np.ndarray,
                 meters: np.ndarray, areas: np.ndarray) -> Outcome:
        out = Outcome()
        n = len(rows)
        if n == 0:
            return out
        self._init_new(st, meters)
        self._init_new_areas(ast, areas)
        if n == len(meters) and not any_(rows != meters):
            self._round(None, None, rows, cols, st, ast, areas, out)
            return out
        # One round per interval end, in time order: a round sees the same meters
        # whatever way the readings were split into messages, so the stream and the
        # backtest compute the same thing. A meter repeated within an interval (a resent
        # batch inside one message) is a duplicate.
        order = np.lexsort((rows, cols["ts"]))
        ts_sorted = cols["ts"][order]
        r_sorted = rows[order]
        dup_in = np.r_[False, (ts_sorted[1:] == ts_sorted[:-1]) & (r_sorted[1:] == r_sorted[:-1])]
        out.duplicates += int(dup_in.sum())
        order, ts_sorted = order[~dup_in], ts_sorted[~dup_in]
        cuts = np.flatnonzero(np.diff(ts_sorted)) + 1
        for sel in np.split(order, cuts):
            pos = np.searchsorted(meters, rows[sel])
            self._round(sel, pos, rows, cols, st, ast, areas, out)
        return out

    def _round(self, sel, pos, rows, cols, st, ast, areas, out: Outcome) -> None:
        """One interval of an area batch: readings a meter has seen are counted as
        duplicates, late or too late (late ones still reach the detectors' totals), the
        rest go through VEE and every detector, and the applied-interval bookkeeping
        moves on."""
        out.rounds += 1
        # Usual case: every meter of st once, in order: work on st itself, no copies.
        # ``sel``/``pos`` None: the caller knows it is that case (no need to compare).
        if sel is None:
            sel = pos = np.arange(len(rows))
            identity = in_order = True
            c = cols
        else:
            identity = len(pos) == len(st) and bool((pos == np.arange(len(st))).all())
            # in_order: sel takes every row as it is (so rows[sel] is rows)
            in_order = (len(sel) == len(cols) == len(rows)
                        and bool((sel == np.arange(len(cols))).all()))
            c = cols if in_order else cols[sel]
        s = st if identity else st[pos]
        older = (s["e_last_ts"] > 0) & (c["ts"] <= s["e_last_ts"])
        if any_(older):
            # Only readings at or before a meter's last one need the bitmap; in the usual
            # round there are none and every mask below would be all False.
            late, bit = self._seen_before(c, s, older, sel, out)
            if any_(late):
                self._late(s, c, late, bit, rows[sel], areas, ast)
        acc = ~older
        if any_(acc):
            a_idx = acc.nonzero()[0]
            all_acc = len(a_idx) == len(acc)
            ca, sa = (c, s) if all_acc else (c[acc], s[acc])
            meter = (rows if in_order else rows[sel]) if all_acc else rows[sel][acc]
            out.findings.extend(self._apply(sa, ca, meter, areas, ast, out))
            if not all_acc:
                s[a_idx] = sa
            out.applied += len(a_idx)
        if not identity:
            st[pos] = s

    def _seen_before(self, c, s, older, sel, out: Outcome):
        """Of the readings at or before their meter's last one: duplicates (in the
        64-interval bitmap), too late (beyond the tolerance) and late (counted here; the
        late ones and their bitmap bits returned)."""
        ts, last = c["ts"], s["e_last_ts"]
        iv = c["interval_s"].astype(np.int64)
        k = np.where(last > 0, (last - ts) // np.maximum(iv, 1), -1)
        inwin = older & (k >= 0) & (k < 64)
        bit = np.where(inwin, np.left_shift(np.uint64(1), np.clip(k, 0, 63).astype(np.uint64)),
                       np.uint64(0))
        dup = older & ((ts == last) | (inwin & ((s["e_bits"] & bit) != 0)) | (k >= 64))
        # Beyond the bitmap we cannot tell a duplicate from a very late reading; treat
        # readings older than the tolerance as too late, others as duplicates.
        tol = self.config.engine.late_tolerance_s
        too_late = older & ~dup & (last - ts > tol) | older & (k >= 64) & (last - ts > tol)
        dup &= ~too_late
        late = older & ~dup & ~too_late
        out.duplicates += int(np.count_nonzero(dup))
        out.late += int(np.count_nonzero(late))
        out.too_late.extend(sel[too_late].tolist())
        return late, bit

    def _late(self, s, c, late, bit, meters, areas, ast) -> None:
        """Late readings: marked in the bitmap, and their energy still belongs to the
        totals being accumulated (the day's and month's per meter, the area's day for
        line loss); the interval checks have moved on. Detectors that keep such totals
        have a ``late`` method."""
        s["e_bits"] = np.where(late, s["e_bits"] | bit, s["e_bits"])
        li = np.flatnonzero(late)
        sl, lm = s[li], meters[li]
        bl = _batch(lm, c[li])
        view = AreaView(areas, np.searchsorted(areas, self.fleet.area[lm]), ast)
        for d in self.detectors:
            if hasattr(d, "late"):
                d.late(sl, bl, self.fleet, view)
        s[li] = sl

    def _apply(self, sa, ca, meter, areas, ast, out: Outcome) -> list[Finding]:
        """New intervals: VEE and every detector on the meters' rows ``sa`` (updated in
        place), then the applied-interval bookkeeping. The findings."""
        fleet = self.fleet
        b = _batch(meter, ca)
        findings: list[Finding] = []
        # Intervals since each meter's last applied reading: the gap check and the bitmap
        # shift below both need it (e_last_ts does not change in between).
        has_last = sa["e_last_ts"] > 0
        since = (b.ts - sa["e_last_ts"]) // np.maximum(b.interval_s.astype(np.int64), 1)
        self._vee(sa, b, findings, out, has_last, since)
        view = AreaView(areas, np.searchsorted(areas, fleet.area[meter]), ast)
        for d in self.detectors:
            n_before = len(findings)
            d.step(sa, b, fleet, view, findings)
            if d is self.habit and not self.config.theft.rules:
                findings[n_before:] = _without_rule_theft(findings[n_before:])
        findings = rollup_outages(findings, b, fleet, view, self.config.area.outage_share)
        # The state as of this round, not of the end of the message: a catch-up upload
        # holds many rounds, and the backtest sees each on its own.
        for f in findings:
            if f.scope == "meter" and f.action != "close" and f.context is None:
                j = int(np.searchsorted(meter, f.subject))
                if j < len(meter) and meter[j] == f.subject:
                    f.context = habit_context(sa[j])
        # Advance the applied-interval bookkeeping.
        shift = np.where(has_last, since, 64)
        # min/max rather than np.clip: the same integers, without clip's Python wrapper
        sh = np.minimum(np.maximum(shift, 0), 64).astype(np.uint64)
        shifted = np.where(sh >= 64, np.uint64(0), sa["e_bits"] << np.minimum(sh, np.uint64(63)))
        sa["e_bits"] = shifted | np.uint64(1)
        sa["e_last_ts"] = b.ts
        sa["e_n"] += 1
        return findings

    def _vee(self, sa: np.ndarray, b: Batch, findings: list[Finding], out: Outcome,
             has_last: np.ndarray, since: np.ndarray) -> None:
        """Gaps and register resets: recognised and reported, never taken for theft."""
        lt = sa["e_last_ts"]
        missing = np.where(has_last, since - 1, 0)
        gap = (missing >= self.config.engine.comm_gap_intervals).nonzero()[0]
        if len(gap):
            iv = b.interval_s.astype(np.int64)
        for j in gap:
            start = int(lt[j] + iv[j])
            ev = {"missing_intervals": int(missing[j]), "last_reading": int(lt[j]),
                  "hours": round(float(missing[j] * iv[j] / 3600), 2)}
            m = int(b.meter[j])
            findings.append(Finding("comm_gap", "meter", "open", "meter", m, start, int(b.ts[j]),
                                    "info", float(missing[j]), ev))
            findings.append(Finding("comm_gap", "meter", "close", "meter", m, start, int(b.ts[j]),
                                    "info", 0.0, ev))
        out.gaps += len(gap)
        reg = b.register_kwh
        prev = sa["e_last_reg"]
        no_reg = np.isnan(reg)
        have = ~no_reg & (prev > 0)
        drop = have & (reg < prev - 0.01)
        for j in drop.nonzero()[0]:
            # A register near its maximum (99999.x) that restarts is a rollover; one that
            # drops to near zero from anywhere else is a new meter.
            near_max = prev[j] >= 0.9 * 10 ** np.ceil(np.log10(prev[j]))
            kind = ("rollover" if near_max else
                    "meter_exchange" if reg[j] < max(10.0, 0.05 * prev[j]) else "decrease")
            findings.append(Finding("data_quality", "register_reset", "open", "meter",
                                    int(b.meter[j]), int(b.ts[j]), int(b.ts[j]), "info", 0.0,
                                    {"detail": kind, "previous_kwh": float(prev[j]),
                                     "register_kwh": float(reg[j])}))
        sa["e_last_reg"] = np.where(no_reg, prev, reg)

    @property
    def zone(self):
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.tz) if self.tz else timezone.utc


# habit's rule-based theft checks, replaced by the fleet model when [theft] rules = false
_RULE_THEFT = frozenset({"consumption_drop", "profile_distortion"})


def _without_rule_theft(found: list[Finding]) -> list[Finding]:
    return [f for f in found if not (f.type == "theft" and f.subtype in _RULE_THEFT)]


def _batch(meter: np.ndarray, c: np.ndarray) -> Batch:
    """The detectors' view of readings ``c`` (READING_DTYPE) of fleet rows ``meter``."""
    return Batch(meter=meter, ts=c["ts"], interval_s=c["interval_s"], kwh=c["kwh"],
                 kwh_export=c["kwh_export"], register_kwh=c["register_kwh"],
                 voltage=c["voltage"], voltage_min=c["voltage_min"],
                 voltage_max=c["voltage_max"], current=c["current"],
                 neutral_current=c["neutral_current"], power_factor=c["power_factor"],
                 events=c["events"])
