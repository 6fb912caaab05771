"""Prometheus metrics of a worker (one registry per process).

Naming: one ``meterwatch_`` prefix, base units (seconds, bytes, volts), ``_total`` on
counters, ``_ratio`` on 0-1 ratios. Labels stay low-cardinality: reasons, alert types,
subtypes, severities, topics and partitions, and areas only where the number of areas is
bounded (``METERWATCH_METRICS_AREAS_MAX``: the first N areas a worker sees keep their id,
later ones are aggregated under ``area="other"``; a limit of 0 aggregates every area
under ``other``). Never a meter or customer id.

Three kinds of series:

* plain counters and histograms, updated where the work happens (``processing.py``,
  ``ingest.py``, ``process.py``);
* **area gauges** that describe *state* (alerts open, meters reporting, voltage
  compliance, line loss, theft suspicions): computed per area batch from that area's
  own state records (O(meters of the area), never O(fleet)), kept in :data:`AREAS`
  and summed per label at scrape time by a collector. Because they are read from
  the changelogged state they are right after a restart or a rebalance too, and an area
  this worker no longer owns is dropped (``AREAS.retain``), so summing the workers'
  series gives the fleet without double counting;
* Faust's own sensor (``app.monitor``), re-exported under conventional names.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as _Counter
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

# The *_created series double the exposition for no dashboard use.
disable_created_metrics()

from models import compliance as _comp  # noqa: E402
from models import voltage as _volt  # noqa: E402
from models.base import ALERT_TYPES, SEVERITIES  # noqa: E402
from stream.schema import REASONS  # noqa: E402

REGISTRY = CollectorRegistry(auto_describe=True)
P = "meterwatch_"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Interval voltage as a share of nominal: the standards' limits are bucket bounds.
VOLTAGE_RATIO_BUCKETS = (0.5, 0.85, 0.9, 0.93, 0.95, 0.97, 1.0, 1.03, 1.05, 1.07, 1.1, 1.2)
OTHER = "other"

# -- pipeline ---------------------------------------------------------------------------
messages_consumed = Counter(P + "messages_consumed_total", "Messages read from the readings topic",
                            registry=REGISTRY)
message_bytes = Counter(P + "message_bytes_total", "Bytes of reading messages consumed",
                        registry=REGISTRY)
readings_consumed = Counter(P + "readings_consumed_total", "Readings decoded from messages",
                            registry=REGISTRY)
readings_rejected = Counter(P + "readings_rejected_total", "Readings or messages rejected, by reason",
                            ["reason"], registry=REGISTRY)
readings_applied = Counter(P + "readings_applied_total", "Readings applied to meter state",
                           registry=REGISTRY)
readings_duplicate = Counter(P + "readings_duplicate_total",
                             "Readings dropped as already applied (redelivery, resent batches)",
                             registry=REGISTRY)
readings_late = Counter(P + "readings_late_total", "Readings that arrived after a later one",
                        registry=REGISTRY)
theft_outcomes = Counter(P + "theft_outcomes_total",
                         "Inspection outcomes read from the by-area topic, by what the theft "
                         "model made of them (learned, repeated: read before, ignored: model "
                         "off or not its alert)", ["result"], registry=REGISTRY)
OUTCOME_RESULTS = ("learned", "repeated", "ignored")
comm_gaps = Counter(P + "comm_gaps_total", "Gaps in a meter's readings (comm_gap)", registry=REGISTRY)
alerts = Counter(P + "alerts_total", "Alert messages published, by type, subtype, severity, status",
                 ["type", "subtype", "severity", "status"], registry=REGISTRY)
theft_alerts = Counter(P + "theft_alerts_total",
                       "Theft alerts raised (status open), by area and indicator (subtype)",
                       ["area", "indicator"], registry=REGISTRY)
deadletter = Counter(P + "deadletter_total", "Messages sent to the dead-letter topic after an error",
                     ["stage"], registry=REGISTRY)
process_skipped = Counter(P + "process_skipped_messages_total",
                          "By-area messages not processed again: already handled (redelivery)",
                          ["why"], registry=REGISTRY)
process_backfilled = Counter(P + "process_backfilled_messages_total",
                             "By-area messages the consumer skipped that the process agent "
                             "read back and handled (a gap after its recorded progress)",
                             registry=REGISTRY)
latency_applied = Histogram(P + "produce_to_applied_seconds",
                            "Delay from a reading message's produce time to its state update",
                            buckets=LATENCY_BUCKETS, registry=REGISTRY)
latency_alert = Histogram(P + "produce_to_alert_seconds",
                          "Delay from a reading message's produce time to the alert it raised",
                          buckets=LATENCY_BUCKETS, registry=REGISTRY)
applied_to_alert = Histogram(P + "applied_to_alert_seconds",
                             "Delay from an area batch applied to state to its alerts acknowledged "
                             "by Kafka", buckets=LATENCY_BUCKETS, registry=REGISTRY)
detector_seconds = Counter(P + "detector_seconds_total", "Time spent in the detectors",
                           registry=REGISTRY)
detector_readings = Counter(P + "detector_readings_total",
                            "Readings handed to the detectors (divide detector seconds by this)",
                            registry=REGISTRY)
detector_rounds = Counter(P + "detector_rounds_total",
                          "Detector passes: one per area and interval end in a batch. Readings "
                          "per pass is what vectorising gains from; few means batches split "
                          "an area's interval", registry=REGISTRY)
batch_seconds = Histogram(P + "area_batch_seconds", "Time to process one area batch",
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
                          registry=REGISTRY)
consumer_lag = Gauge(P + "consumer_lag_messages", "Messages behind the partition's end",
                     ["topic", "partition"], registry=REGISTRY)
registry_meters = Gauge(P + "registry_meters", "Meters in the loaded registry", registry=REGISTRY)
registry_reloads = Counter(P + "registry_reloads_total", "Registry reloads, by result", ["result"],
                           registry=REGISTRY)
worker_info = Gauge(P + "worker_info", "Worker identity (value 1)", ["app", "standard"],
                    registry=REGISTRY)
worker_up = worker_info  # the old name


def prime(reasons=REASONS) -> None:
    """Create every labelled series at zero so dashboards and rate() see them from the start."""
    for r in reasons:
        readings_rejected.labels(reason=r)
    for t, subs in ALERT_TYPES.items():
        for s in subs:
            for sev in SEVERITIES:
                for status in ("open", "update", "closed"):
                    alerts.labels(type=t, subtype=s, severity=sev, status=status)
    for stage in ("ingest", "process"):
        deadletter.labels(stage=stage)
    process_skipped.labels(why="already_handled")
    for r in OUTCOME_RESULTS:
        theft_outcomes.labels(result=r)


class AreaLabels:
    """Area label values bounded at ``limit``; later areas share ``other`` (0: all do)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.known: set[str] = set()

    def __call__(self, area: str) -> str:
        if area in self.known:
            return area
        if len(self.known) < self.limit:
            self.known.add(area)
            return area
        return OTHER


# -- open alerts in detector state ---------------------------------------------------------
# Read through each detector's contract (open_alerts / open_area_alerts), never through
# its field names: a detector that renumbers its bits, or a new one, is counted as it
# says. tests/dashboards/test_metrics.py checks the counts against the alerts the engine
# actually opens and closes.
THEFT_INDICATORS = ALERT_TYPES["theft"]


def _count_open(detectors, rec: np.ndarray, ast: np.ndarray,
                skip: frozenset | set = frozenset()) -> tuple[_Counter, int]:
    """Open alerts of an area's meter rows ``rec`` (less ``skip``) and of its area record
    ``ast``, by (type, subtype, severity), and how many meters have a theft alert open."""
    counts: _Counter = _Counter()
    theft_rows: set[int] = set()
    for d in detectors:
        for rows, typ, sub, sev in d.open_alerts(rec):
            if (typ, sub) in skip:
                continue
            counts[(typ, sub, sev)] += len(rows)
            if typ == "theft":
                theft_rows.update(rows.tolist())
        for rows, typ, sub, sev in d.open_area_alerts(ast):
            counts[(typ, sub, sev)] += len(rows)
    return counts, len(theft_rows)


# -- per-area state, summed per label at scrape time ------------------------------------
@dataclass
class AreaStats:
    """One area as of its latest batch (what the area gauges say about it)."""

    label: str
    meters: int = 0  # meters with state
    expected: int = 0  # registered customer meters
    reporting: int = 0  # customer meters that reported the area's last complete interval
    v_under: int = 0  # customer meters below / within / above the standard, latest interval
    v_within: int = 0
    v_over: int = 0
    v_sum: float = 0.0  # sum of those meters' mean voltage (V)
    loss_kwh: float = float("nan")  # latest closed day: area - customers (kWh)
    loss_area_kwh: float = float("nan")  # latest closed day: area meter (kWh)
    normal_loss: float = float("nan")  # the detector's learned normal loss rate
    open: _Counter = field(default_factory=_Counter)  # (type, subtype, severity) -> n
    theft_meters: int = 0
    theft_open: _Counter = field(default_factory=_Counter)  # indicator -> n
    # the standard's compliance over its period ("current", "previous"): PeriodStats
    compliance: dict = field(default_factory=dict)
    partition: int | None = None  # by-area partition, when known (for retain)


@dataclass
class PeriodStats:
    """An area's compliance counters for one period (models.compliance area state)."""

    start_ts: int
    length_s: int
    meas: float  # meter-seconds measured
    within: float  # ... within the standard's (inner) limits
    outer: float  # ... within its outer band (EN 50160 +10/-15 %, ANSI Range B; GB/T:
    #                 not above the upper limit)
    events: np.ndarray  # the dip and swell table (models.compliance.EVENT_ROWS)
    meters: int  # customer meters measured in the period
    failing: int  # meters whose period failed the standard's test


class AreaStore:
    """The latest :class:`AreaStats` of each area this worker owns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.areas: dict[str, AreaStats] = {}

    def put(self, area_id: str, stats: AreaStats) -> None:
        old = self.areas.get(area_id)
        if old is not None and stats.partition is None:
            stats.partition = old.partition
        if stats.loss_area_kwh != stats.loss_area_kwh and old is not None:  # keep last day
            stats.loss_kwh, stats.loss_area_kwh = old.loss_kwh, old.loss_area_kwh
        with self._lock:
            self.areas[area_id] = stats

    def place(self, area_id: str, partition: int) -> None:
        st = self.areas.get(area_id)
        if st is not None:
            st.partition = partition

    def retain(self, partitions: set[int]) -> list[str]:
        """Drop areas on partitions not in ``partitions``; the dropped area ids."""
        with self._lock:
            gone = [a for a, s in self.areas.items()
                    if s.partition is not None and s.partition not in partitions]
            for a in gone:
                del self.areas[a]
        return gone

    def __contains__(self, area_id: str) -> bool:
        return area_id in self.areas

    def __len__(self) -> int:
        return len(self.areas)

    def clear(self) -> None:
        with self._lock:
            self.areas.clear()

    def snapshot(self) -> list[AreaStats]:
        with self._lock:
            return list(self.areas.values())


AREAS = AreaStore()


class VoltageHistogram:
    """Meters' interval voltage as a share of nominal, per area label: a Prometheus
    histogram filled with one ``np.searchsorted`` per batch instead of one ``observe``
    per reading. Counts only grow (it is a counter of observations)."""

    def __init__(self, bounds=VOLTAGE_RATIO_BUCKETS) -> None:
        self.bounds = np.asarray(bounds, np.float64)
        self._lock = threading.Lock()
        self.counts: dict[str, np.ndarray] = {}
        self.sums: dict[str, float] = {}

    def observe_many(self, label: str, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        idx = np.searchsorted(self.bounds, values, side="left")  # le semantics
        add = np.bincount(idx, minlength=len(self.bounds) + 1)
        with self._lock:
            c = self.counts.get(label)
            if c is None:
                c = self.counts[label] = np.zeros(len(self.bounds) + 1, np.int64)
                self.sums[label] = 0.0
            c += add
            self.sums[label] += float(values.sum())

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(
            P + "meter_voltage_nominal_ratio",
            "Meters' interval mean voltage as a share of their nominal voltage, by area",
            labels=["area"])
        with self._lock:
            items = [(k, v.copy(), self.sums[k]) for k, v in self.counts.items()]
        for label, c, s in sorted(items):
            cum = np.cumsum(c)
            buckets = [(repr(float(b)), float(n)) for b, n in zip(self.bounds, cum[:-1])]
            buckets.append(("+Inf", float(cum[-1])))
            fam.add_metric([label], buckets, s)
        return fam


VOLTAGE_HIST = VoltageHistogram()


class _AreaCollector:
    """The area gauges, summed per label over the areas in :data:`AREAS`."""

    def describe(self):
        return []

    def collect(self):
        areas = AREAS.snapshot()
        by: dict[str, list[AreaStats]] = {}
        for st in areas:
            by.setdefault(st.label, []).append(st)

        g = GaugeMetricFamily
        open_ = g(P + "alerts_open", "Conditions open in detector state (alerts that will be "
                  "closed by a later reading), by type, subtype and severity",
                  labels=["type", "subtype", "severity"])
        total: _Counter = _Counter()
        for st in areas:
            total.update(st.open)
        for t, subs in ALERT_TYPES.items():
            for s in subs:
                for sev in SEVERITIES:
                    open_.add_metric([t, s, sev], total.get((t, s, sev), 0))
        yield open_
        yield g(P + "meters_tracked", "Meters with state on this worker",
                value=sum(st.meters for st in areas))
        yield g(P + "areas_tracked", "Transformer areas with state on this worker",
                value=len(areas))

        expected = g(P + "area_meters_expected", "Customer meters registered in an area",
                     labels=["area"])
        reporting = g(P + "area_meters_reporting",
                      "Customer meters of an area that reported its last complete interval",
                      labels=["area"])
        vmeters = g(P + "area_voltage_meters",
                    "Customer meters of an area below, within or above the voltage standard's "
                    "limits in its latest interval", labels=["area", "band"])
        compliance = g(P + "area_voltage_compliance_ratio",
                       "Share of an area's reporting meters within the voltage standard's limits "
                       "(latest interval)", labels=["area"])
        vmean = g(P + "area_voltage_mean_volts",
                  "Mean interval voltage of an area's customer meters (latest interval)",
                  labels=["area"])
        loss = g(P + "area_line_loss_ratio",
                 "Line-loss rate of an area's latest complete day: (area meter - customers) / "
                 "area meter", labels=["area"])
        normal = g(P + "area_normal_line_loss_ratio",
                   "An area's normal line-loss rate as the loss detector learned it",
                   labels=["area"])
        tmeters = g(P + "area_theft_suspected_meters",
                    "Meters of an area with at least one theft condition open", labels=["area"])
        topen = g(P + "area_theft_suspicions_open",
                  "Theft conditions open in an area, by indicator", labels=["area", "indicator"])
        for label in sorted(by):
            sts = by[label]
            expected.add_metric([label], sum(s.expected for s in sts))
            reporting.add_metric([label], sum(s.reporting for s in sts))
            under = sum(s.v_under for s in sts)
            within = sum(s.v_within for s in sts)
            over = sum(s.v_over for s in sts)
            for band, n in (("under", under), ("within", within), ("over", over)):
                vmeters.add_metric([label, band], n)
            n = under + within + over
            if n:
                compliance.add_metric([label], within / n)
                vmean.add_metric([label], sum(s.v_sum for s in sts) / n)
            with_day = [s for s in sts if s.loss_area_kwh == s.loss_area_kwh and s.loss_area_kwh > 0]
            if with_day:
                kwh = sum(s.loss_area_kwh for s in with_day)
                loss.add_metric([label], sum(s.loss_kwh for s in with_day) / kwh)
            learned = [s for s in sts if s.normal_loss == s.normal_loss]
            if learned:
                normal.add_metric([label], sum(s.normal_loss for s in learned) / len(learned))
            tmeters.add_metric([label], sum(s.theft_meters for s in sts))
            tot: _Counter = _Counter()
            for s in sts:
                tot.update(s.theft_open)
            for ind in THEFT_INDICATORS:
                topen.add_metric([label, ind], tot.get(ind, 0))
        yield from (expected, reporting, vmeters, compliance, vmean, loss, normal, tmeters, topen)
        yield from _period_families(by)
        yield VOLTAGE_HIST.family()


PERIODS = ("current", "previous")


def _period_families(by: dict[str, list[AreaStats]]):
    """The standard's compliance by area over its period (current and last completed),
    from the areas' compliance accumulators (models.compliance.ComplianceDetector)."""
    g = GaugeMetricFamily
    lab = ["area", "standard", "period"]
    ratio = g(P + "area_voltage_period_compliance_ratio",
              "Share of an area's measured meter-time within the voltage standard's limits over "
              "its period (EN 50160: Un +-10 % per week; GB/T 12325: the monthly compliance "
              "rate; ANSI C84.1: Range A per month)", labels=lab)
    outer = g(P + "area_voltage_period_outside_outer_ratio",
              "Share of an area's measured meter-time beyond the standard's outer band over its "
              "period (EN 50160: +10/-15 %; ANSI C84.1: outside Range B; GB/T 12325: above the "
              "upper limit)", labels=lab)
    cov = g(P + "area_voltage_period_coverage_ratio",
            "Measured time of an area's meters over the period's length (gaps lower it)",
            labels=lab)
    meters = g(P + "area_voltage_period_meters",
               "Customer meters of an area measured in the period, and those whose period failed "
               "the standard's test", labels=lab + ["state"])
    start = g(P + "area_voltage_period_start_timestamp_seconds",
              "Start of the period (local midnight) the compliance figures are for", labels=lab)
    dips = g(P + "area_voltage_period_dips",
             "Voltage dips of an area's meters in the period by residual voltage (% of Un, "
             "EN 50160's rows; below 10 % is an IEEE 1159 interruption)", labels=lab + ["residual"])
    swells = g(P + "area_voltage_period_swells",
               "Voltage swells of an area's meters in the period by magnitude (% of Un)",
               labels=lab + ["magnitude"])
    for label in sorted(by):
        for period in PERIODS:
            ps = [s.compliance[period] for s in by[label] if period in s.compliance]
            if not ps:
                continue
            std = by[label][0].compliance["standard"]
            k = [label, std, period]
            meas = sum(p.meas for p in ps)
            start.add_metric(k, max(p.start_ts for p in ps))
            meters.add_metric(k + ["measured"], sum(p.meters for p in ps))
            meters.add_metric(k + ["failing"], sum(p.failing for p in ps))
            ev = sum(p.events for p in ps)
            for j, row in enumerate(_comp.DIP_ROWS):
                dips.add_metric(k + [row], int(ev[j]))
            for j, row in enumerate(_comp.SWELL_ROWS):
                swells.add_metric(k + [row], int(ev[len(_comp.DIP_ROWS) + j]))
            if meas > 0:
                ratio.add_metric(k, sum(p.within for p in ps) / meas)
                outer.add_metric(k, 1.0 - sum(p.outer for p in ps) / meas)
                span = sum(p.meters * p.length_s for p in ps)
                cov.add_metric(k, meas / span if span else 0.0)
    return ratio, outer, cov, meters, start, dips, swells


REGISTRY.register(_AreaCollector())


class AreaMetrics:
    """Per-processor bookkeeping that turns one area batch into its :class:`AreaStats`.

    ``before(ast)`` is called before the engine runs (the loss detector's day
    accumulators, which the engine resets when the area meter starts a new day);
    ``after(...)`` computes the area's stats from its state and the batch: a few
    vectorised operations over the batch and the area's meters (a few per cent of an
    area batch's processing time; the open-condition counts only when the engine
    reported a finding).
    """

    def __init__(self, engine, limit: int, standard: str) -> None:
        self.labels = AreaLabels(limit)
        self.engine = engine
        self.std = _volt._standard(standard)
        self._rows: dict[str, tuple[list, object, np.ndarray]] = {}
        self._fleet: tuple | None = None  # (fleet, is_customer, nominal, low_v, high_v)
        # area -> (latest interval, meters reporting it so far, count of the one before)
        self._reporting: dict[str, tuple[int, int, int | None]] = {}
        self._primed: set[str] = set()

    def label(self, area_id: str) -> str:
        lab = self.labels(area_id)
        if lab not in self._primed:
            self._primed.add(lab)
            for ind in THEFT_INDICATORS:
                theft_alerts.labels(area=lab, indicator=ind)
        return lab

    @staticmethod
    def before(ast: np.ndarray) -> tuple | None:
        names = ast.dtype.names or ()
        if "al_day" not in names:
            return None
        a = ast[0]
        return (int(a["al_day"]), float(a["al_area_kwh"]), float(a["al_cust_kwh"]),
                int(a["al_area_s"]), float(a["al_cust_s"]))

    def _fleet_arrays(self, fleet) -> tuple:
        """Per fleet row: customer?, nominal, and the standard's limits in volts."""
        f = self._fleet
        if f is None or f[0] is not fleet:
            three = fleet.phases == 3
            nom = fleet.nominal_voltage.astype(np.float64)
            lo = nom * np.where(three, self.std.low[1], self.std.low[0])
            hi = nom * np.where(three, self.std.high[1], self.std.high[0])
            f = self._fleet = (fleet, ~fleet.is_area_meter, nom, lo, hi)
        return f

    def _compliance(self, ast: np.ndarray) -> dict:
        """The area's compliance counters, current and last completed period."""
        det = getattr(self.engine, "compliance", None)
        if det is None or "ca_key" not in (ast.dtype.names or ()):
            return {}
        a = ast[0]
        out: dict = {"standard": det.standard}
        for period, p in (("current", "ca_"), ("previous", "ca_p")):
            key = int(a[p + "key"])
            if key == 0 or int(a["ca_std"]) != det.code:
                continue
            t0, length, _ = det.period(key)
            meas, b1, b2 = (float(x) for x in a[p + "cnt"])
            out[period] = PeriodStats(t0, length, meas, b1, b2, a[p + "ev"].astype(np.int64),
                                      int(a[p + "meters"]), int(a[p + "fail"]))
        return out

    def _customer_rows(self, state, fleet) -> np.ndarray:
        """Positions of the state rows that are customer meters still in the registry."""
        hit = self._rows.get(state.area_id)
        if hit is not None and hit[0] is state.meter_ids and hit[1] is fleet:
            return hit[2]
        idx = np.fromiter((fleet.index.get(m, -1) for m in state.meter_ids), np.int64,
                          len(state.meter_ids))
        pos = np.flatnonzero((idx >= 0) & ~fleet.is_area_meter[np.maximum(idx, 0)]) \
            if len(idx) else np.zeros(0, np.int64)
        self._rows[state.area_id] = (state.meter_ids, fleet, pos)
        return pos

    def after(self, area_id: str, state, fleet, cols: np.ndarray, rows: np.ndarray,
              expected: int, before: tuple | None, label: str | None = None,
              findings: bool = True) -> AreaStats:
        """``findings``: whether the engine reported anything for this batch; when not,
        no condition opened or closed and the open counts are carried over."""
        label = label or self.label(area_id)
        rec = state.records
        ast = state.area_record
        st = AreaStats(label=label, meters=len(rec), expected=expected)
        _, is_cust, nom_f, lo_f, hi_f = self._fleet_arrays(fleet)

        # Meters reporting per interval: customer meters whose last applied reading is
        # the batch's interval (the engine has dropped duplicates), counted again for
        # each batch of that interval; when the area's next interval starts, that count
        # is final and is what the gauge shows ("the last complete interval").
        cust = self._customer_rows(state, fleet)
        if len(cust) and len(cols):
            t = int(cols["ts"].max())
            n_t = int(np.count_nonzero(rec["e_last_ts"][cust] == t))
            cur = self._reporting.get(area_id)
            if cur is None or t > cur[0]:
                done = cur[1] if cur is not None else None
                self._reporting[area_id] = cur = (t, n_t, done)
            elif t == cur[0]:
                self._reporting[area_id] = cur = (t, n_t, cur[2])
            st.reporting = cur[2] if cur[2] is not None else cur[1]

        # Voltage against the standard: the batch's customer meters, latest interval.
        v = cols["voltage"]
        sel = is_cust[rows] & (v == v)
        if len(cols) and cols["ts"][0] != cols["ts"][-1]:
            ts = cols["ts"]
            sel &= ts == ts.max()
        n = int(np.count_nonzero(sel))
        if n:
            r, vv = rows[sel], v[sel]
            st.v_under = int(np.count_nonzero(vv < lo_f[r]))
            st.v_over = int(np.count_nonzero(vv > hi_f[r]))
            st.v_within = n - st.v_under - st.v_over
            st.v_sum = float(vv.sum())
            VOLTAGE_HIST.observe_many(label, vv / nom_f[r])

        # Line loss of the day the area meter just closed (the loss detector's own rule
        # for a complete day); only from a one-interval batch, where the accumulators
        # read before the engine ran are exactly the closed day's.
        if before is not None:
            mu = float(ast["al_mu"][0])
            st.normal_loss = mu
            day, area_kwh, cust_kwh, area_s, cust_s = before
            if day and int(ast["al_day"][0]) != day and cols["ts"][0] == cols["ts"][-1]:
                cfg = self.engine.area.config
                coverage = cust_s / max(expected * 86400.0, 1.0)
                if area_s >= 0.97 * 86400 and coverage >= cfg.min_coverage and area_kwh > 0:
                    st.loss_kwh, st.loss_area_kwh = area_kwh - cust_kwh, area_kwh

        st.compliance = self._compliance(ast)

        # Open conditions and theft suspicions: they change only with a finding.
        prev = AREAS.areas.get(area_id)
        if not findings and prev is not None and prev.label == label:
            st.open, st.theft_meters, st.theft_open = prev.open, prev.theft_meters, prev.theft_open
        else:
            names = ast.dtype.names or ()
            ao = "ao_open" in names and bool(ast["ao_open"][0])
            # During an area outage the meters' own power_fail alerts are folded into it.
            skip = {("outage", "power_fail")} if ao else frozenset()
            counts, st.theft_meters = _count_open(self.engine.detectors, rec, ast, skip)
            st.open = counts
            st.theft_open = _Counter({s: n for (t, s, _), n in counts.items() if t == "theft"})
        AREAS.put(area_id, st)
        return st


# -- Faust's own sensor ---------------------------------------------------------------
class _FaustCollector:
    """Faust's Monitor (``app.monitor``) under conventional names: counters in
    ``_total``, latencies in seconds (Faust keeps them in seconds already; its own
    Prometheus sensor exports ``_ms`` series we do not want)."""

    def __init__(self, app) -> None:
        self.app = app

    def describe(self):
        return []

    def collect(self):
        mon = self.app.monitor
        c = CounterMetricFamily(P + "faust_messages_received",
                                "Messages the Faust consumer delivered to agents, by topic",
                                labels=["topic"])
        for topic, n in sorted(mon.messages_received_by_topic.items()):
            c.add_metric([str(topic)], n)
        yield c
        c = CounterMetricFamily(P + "faust_messages_sent", "Messages Faust produced, by topic",
                                labels=["topic"])
        for topic, n in sorted(mon.messages_sent_by_topic.items()):
            c.add_metric([str(topic)], n)
        yield c
        yield CounterMetricFamily(P + "faust_send_errors", "Faust producer send errors",
                                  value=mon.send_errors)
        yield CounterMetricFamily(P + "faust_rebalances", "Consumer-group rebalances seen",
                                  value=getattr(self.app, "rebalancing_count", mon.rebalances))
        yield GaugeMetricFamily(P + "faust_events_active", "Events being processed by agents now",
                                value=mon.events_active)
        yield GaugeMetricFamily(P + "faust_rebalancing",
                                "1 while this worker's consumer group is rebalancing",
                                value=1.0 if getattr(self.app, "rebalancing", False) else 0.0)
        for name, dq, what in (("commit_latency", mon.commit_latency, "offset commit"),
                               ("send_latency", mon.send_latency, "produce")):
            vals = list(dq)
            yield GaugeMetricFamily(P + f"faust_{name}_seconds",
                                    f"Median {what} latency over Faust's recent history",
                                    value=float(np.median(vals)) if vals else 0.0)
        t = CounterMetricFamily(P + "faust_table_keys_updated", "Table keys written, by table",
                                labels=["table"])
        for tname, ts in sorted(mon.tables.items()):
            t.add_metric([str(tname)], ts.keys_updated)
        yield t


_faust_registered: list = []


def register_faust(app) -> None:
    """Export ``app.monitor`` (once per process)."""
    if _faust_registered:
        _faust_registered[0].app = app
        return
    col = _FaustCollector(app)
    REGISTRY.register(col)
    _faust_registered.append(col)


_started = time.time()
start_time = Gauge(P + "worker_start_time_seconds", "Unix time the worker process started",
                   registry=REGISTRY)
start_time.set(_started)


# -- exposition --------------------------------------------------------------------------
# prometheus_client's generate_latest formats every sample from scratch (label names
# validated, values escaped, sorted, joined): ~40 ms per scrape of this worker's ~800
# series, which a benchmark scraping 4 times a second measured as 17 % of the worker's
# CPU. The text of a sample's name and labels never changes, so it is built once, with
# the library's own escaping functions, and only the value is formatted per scrape. The
# output is byte-identical to generate_latest's (tests/worker/test_metrics_exposition.py).
from prometheus_client.openmetrics import exposition as _om  # noqa: E402
from prometheus_client.utils import floatToGoString as _fmt  # noqa: E402

_ESC = _om.UNDERSCORES
_prefixes: dict[tuple, str] = {}
_headers: dict[tuple, tuple[str, str]] = {}
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram",
          "unknown": "untyped"}


def _prefix(name: str, labels: dict) -> str:
    key = (name, *labels.items())
    p = _prefixes.get(key)
    if p is None:
        if len(_prefixes) > 200_000:  # label values are bounded; this is a backstop
            _prefixes.clear()
        if labels:
            ls = ",".join('{}="{}"'.format(_om.escape_label_name(k, _ESC),
                                           _om._escape(v, _om.ALLOWUTF8, False))
                          for k, v in sorted(labels.items()))
        else:
            ls = ""
        if _om._is_valid_legacy_metric_name(name):
            p = f"{_om.escape_metric_name(name, _ESC)}{{{ls}}} " if ls else \
                f"{_om.escape_metric_name(name, _ESC)} "
        else:
            p = f"{{{_om.escape_metric_name(name, _ESC)}{',' if ls else ''}{ls}}} "
        _prefixes[key] = p
    return p


def _header(name: str, mtype: str, doc: str) -> tuple[str, str]:
    key = (name, mtype, doc)
    h = _headers.get(key)
    if h is None:
        n = _om.escape_metric_name(name, _ESC)
        h = _headers[key] = (f"# HELP {n} {doc.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}\n",
                             f"# TYPE {n} {mtype}\n")
    return h


def _line(s) -> str:
    line = _prefix(s.name, s.labels) + _fmt(s.value)
    if s.timestamp is not None:
        line += f" {int(float(s.timestamp) * 1000):d}"
    return line + "\n"


def generate(registry: CollectorRegistry) -> bytes:
    """What ``prometheus_client.generate_latest(registry)`` returns (text format 0.0.4,
    underscores escaping), with each sample's name-and-labels text cached."""
    out: list[str] = []
    for metric in registry.collect():
        try:
            mname, mtype = metric.name, metric.type
            if mtype == "counter":
                mname = mname + "_total"
            elif mtype == "info":
                mname = mname + "_info"
            mtype = _TYPES.get(mtype, mtype)
            out.extend(_header(mname, mtype, metric.documentation))
            om: dict[str, list[str]] = {}
            base = metric.name
            for s in metric.samples:
                n = s.name
                if n.startswith(base) and n[len(base):] in _OM_SUFFIXES:
                    om.setdefault(n[len(base):], []).append(_line(s))
                else:
                    out.append(_line(s))
        except Exception as exception:
            exception.args = (exception.args or ("",)) + (metric,)
            raise
        for suffix, lines in sorted(om.items()):
            out.extend(_header(metric.name + suffix, "gauge", metric.documentation))
            out.extend(lines)
    return "".join(out).encode("utf-8")


def exposition(names: list[str] | None = None) -> bytes:
    """The worker's metrics in the text format; only the series ``names`` (full sample
    names, e.g. ``meterwatch_readings_applied_total``) when given."""
    if names:
        return generate(REGISTRY.restricted_registry(names))
    return generate(REGISTRY)
