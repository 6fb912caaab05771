"""Offline runs of the same engine over historic readings, in time order, without Kafka.

``run`` feeds one timestamp of the whole fleet per engine call (the fleet-wide analogue
of the stream's one-area-interval batches), so a year of 200 half-hourly meters is
17,520 vectorised calls rather than 3.5 million Python-level steps.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from models.alerts import to_alert
from models.base import READING_DTYPE, Fleet, event_mask
from models.config import DetectorConfig
from models.engine import Engine

OPTIONAL = ("kwh_export", "register_kwh", "voltage", "voltage_min", "voltage_max", "current",
            "neutral_current", "power_factor")


class ReadingsError(ValueError):
    pass


def load_readings(path: str | Path, *, tz: str | None = None, ts_mark: str = "end",
                  interval_s: int | None = None) -> pd.DataFrame:
    """Readings from CSV (optionally gzipped) or Parquet, normalised to epoch seconds at the
    END of each interval.

    ``tz`` localises zone-less timestamps (the London trial recorded UK local time);
    ``ts_mark="start"`` says the file stamps the start of each interval.
    """
    p = Path(path)
    if not p.exists():
        raise ReadingsError(f"readings file {p} does not exist")
    if p.suffix == ".parquet":
        df = pd.read_parquet(p)
    else:
        df = pd.read_csv(p, dtype={"meter_id": str}, low_memory=False)
    for c in ("meter_id", "ts", "kwh"):
        if c not in df.columns:
            raise ReadingsError(f"{p}: missing column {c!r} (have {', '.join(df.columns)})")
    ts = df["ts"]
    if pd.api.types.is_numeric_dtype(ts):
        epoch = ts.astype("int64")
    else:
        t = pd.to_datetime(ts, format="ISO8601")
        if t.dt.tz is None:
            if not tz:
                raise ReadingsError(f"{p}: timestamps have no zone; say which with --tz")
            t = _localize(t, df["meter_id"], tz, p)
        epoch = (t - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)
    df = df.assign(ts=epoch)
    df = df[df["ts"].notna() & df["kwh"].notna()].copy()
    df["ts"] = df["ts"].astype("int64")
    if "interval_s" not in df.columns:
        if interval_s is None:
            # The most common step between a meter's consecutive readings.
            d = df.sort_values(["meter_id", "ts"]).groupby("meter_id")["ts"].diff().dropna()
            interval_s = int(d.mode().iloc[0]) if len(d) else 900
        df["interval_s"] = interval_s
    if ts_mark == "start":
        df["ts"] = df["ts"] + df["interval_s"].astype("int64")
    elif ts_mark != "end":
        raise ReadingsError("ts_mark must be 'start' or 'end'")
    return df.sort_values(["ts", "meter_id"], kind="stable").reset_index(drop=True)


def _localize(t: pd.Series, meter: pd.Series, tz: str, p: Path) -> pd.Series:
    """Zone-less wall-clock times in ``tz``, DST included.

    A local-time file holds the autumn's repeated hour twice per meter: the first
    occurrence is summer time, the second winter time (a file lists a meter's readings
    in time order). It can hold no time of the skipped spring hour: finding some means
    the clock is not ``tz``'s, and every reading after them would be an hour off, so it
    is an error, not something to drop quietly. (The London LCL sample is such a file:
    48 half-hours on both 2013 DST days, so its clock is GMT all year: ``--tz UTC``.)
    """
    first = ~pd.DataFrame({"m": meter.to_numpy(), "t": t.to_numpy()}).duplicated().to_numpy()
    local = t.dt.tz_localize(tz, ambiguous=first, nonexistent="NaT")
    bad = local.isna() & t.notna()
    if bad.any():
        when = sorted(t[bad].dt.strftime("%Y-%m-%d %H:%M").unique())
        raise ReadingsError(
            f"{p}: {int(bad.sum())} readings at times that do not exist in {tz} (clocks went "
            f"forward: {', '.join(when[:4])}{' ...' if len(when) > 4 else ''}), so the file's "
            f"clock is not {tz} local time; if it is UTC/GMT all year, use --tz UTC")
    return local


def synthetic_fleet(meter_ids: Iterable[str], *, nominal_voltage: float = 230.0,
                    area_size: int = 10, seed: int = 0) -> Fleet:
    """A registry for readings that come without one: one customer per meter, areas of
    ``area_size`` meters by a seeded shuffle (peers for the consumption-drop test)."""
    ids = sorted(set(meter_ids))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    area = np.empty(len(ids), np.int32)
    area[order] = np.arange(len(ids)) // area_size
    n_areas = int(area.max()) + 1 if len(ids) else 0
    n = len(ids)
    return Fleet(meter_id=ids, customer_id=list(ids), area=area,
                 area_id=[f"AREA{j:03d}" for j in range(n_areas)],
                 nominal_voltage=np.full(n, nominal_voltage), phases=np.ones(n, np.int8),
                 solar=np.zeros(n, bool), care=np.zeros(n, bool), tariff=np.zeros(n, np.int8),
                 rated_current=np.full(n, 100.0), is_area_meter=np.zeros(n, bool))


def to_columns(df: pd.DataFrame, fleet: Fleet) -> tuple[np.ndarray, np.ndarray]:
    """(fleet rows, READING_DTYPE columns) for a readings frame; unknown meters dropped."""
    # Each distinct id looked up once (a year of a meter is 17,520 rows of one id).
    codes, ids = pd.factorize(df["meter_id"])
    lut = np.fromiter((fleet.index.get(m, -1) for m in ids), np.int64, len(ids))
    rows = lut[codes] if len(ids) else np.zeros(len(df), np.int64)
    known = (codes >= 0) & (rows >= 0)
    if not known.all():
        df = df[known]
        rows = rows[known]
    cols = np.zeros(len(df), READING_DTYPE)
    cols["ts"] = df["ts"].to_numpy(np.int64)
    cols["interval_s"] = df["interval_s"].to_numpy(np.int64)
    unit = df["unit"].to_numpy() if "unit" in df.columns else None
    cols["kwh"] = df["kwh"].to_numpy(np.float64)
    for c in OPTIONAL:
        cols[c] = df[c].to_numpy(np.float64) if c in df.columns else np.nan
    if unit is not None:
        wh = unit == "Wh"
        for c in ("kwh", "kwh_export", "register_kwh"):
            cols[c][wh] /= 1000.0
    if "events" in df.columns:
        cols["events"] = event_column(df["events"])
    return rows, cols


_EVENT_NAME = re.compile(r"[A-Za-z0-9_]+")


def event_column(events: pd.Series) -> np.ndarray:
    """Event bitmasks of event names separated by anything but letters, digits and
    ``_`` (``a|b`` as `meterwatch simulate` writes, ``a,b``, ``["a", "b"]``). Whole
    names only, as the stream matches them: ``terminal_cover_open`` is not also
    ``cover_open``. Each distinct string is parsed once."""
    codes, uniq = pd.factorize(events.fillna("").astype(str))
    lut = np.fromiter((event_mask(_EVENT_NAME.findall(s)) for s in uniq), np.uint32,
                      len(uniq))
    return lut[codes] if len(uniq) else np.zeros(len(events), np.uint32)


def load_weather(path: str | Path, fleet: Fleet, *, tz: str | None = None) -> pd.DataFrame:
    """Hourly temperature per transformer area from CSV (``area_id, ts, temperature_c``;
    ``ts`` ISO 8601 with an offset, or epoch seconds; zone-less times in ``tz``), as
    ``area`` (index into ``fleet.area_id``), ``ts`` (epoch s), ``temperature_c``, in
    time order. Rows of areas the registry does not have, or without a finite
    temperature, are dropped."""
    p = Path(path)
    if not p.exists():
        raise ReadingsError(f"weather file {p} does not exist")
    df = pd.read_csv(p, dtype={"area_id": str})
    for c in ("area_id", "ts", "temperature_c"):
        if c not in df.columns:
            raise ReadingsError(f"{p}: missing column {c!r} (have {', '.join(df.columns)})")
    if pd.api.types.is_numeric_dtype(df["ts"]):
        epoch = df["ts"].astype("int64")
    else:
        t = pd.to_datetime(df["ts"], format="ISO8601", utc=False)
        if t.dt.tz is None:
            if not tz:
                raise ReadingsError(f"{p}: timestamps have no zone; say which with --tz")
            t = t.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        epoch = (t - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)
    index = {a: i for i, a in enumerate(fleet.area_id)}
    area = df["area_id"].map(index)
    temp = pd.to_numeric(df["temperature_c"], errors="coerce")
    ok = area.notna() & epoch.notna() & np.isfinite(temp) & temp.between(-90.0, 60.0)
    out = pd.DataFrame({"area": area[ok].astype("int64"), "ts": epoch[ok].astype("int64"),
                        "temperature_c": temp[ok].astype("float64")})
    return out.sort_values(["ts", "area"], kind="stable").reset_index(drop=True)


def _weather_until(eng: Engine, weather: pd.DataFrame | None, done: int, until: int,
                   st_areas: np.ndarray, all_areas: np.ndarray) -> int:
    """Apply the weather samples ``done``.. stamped before ``until``; the next to apply.
    (A sample is the hour starting at its ts: in before that hour's readings.)"""
    if weather is None or done >= len(weather):
        return done
    wts = weather["ts"].to_numpy()
    upto = int(np.searchsorted(wts, until, side="left"))
    if upto > done:
        eng.apply_weather(weather["area"].to_numpy()[done:upto], wts[done:upto],
                          weather["temperature_c"].to_numpy()[done:upto], st_areas, all_areas)
    return max(upto, done)


@dataclass
class BacktestResult:
    alerts: list[dict] = field(default_factory=list)
    readings: int = 0
    applied: int = 0
    duplicates: int = 0
    late: int = 0
    seconds: float = 0.0
    state_bytes: int = 0
    state: object = None  # final meter state rows, fleet order
    area_state: object = None


def run(df: pd.DataFrame, fleet: Fleet, *, config: DetectorConfig | None = None,
        tz: str = "Asia/Shanghai", country: str | None = "CN", voltage_standard: str | None = None,
        engine: Engine | None = None, progress: Callable[[int, int], None] | None = None,
        chunk_s: int = 86400, chunk_rows: int = 500_000,
        weather: pd.DataFrame | None = None, partitions: int = 1,
        after_call: Callable[[int, np.ndarray, list[dict]], None] | None = None
        ) -> BacktestResult:
    """Run every detector over ``df`` in time order; alerts as dicts, in emission order.

    ``partitions``: the stream's by-area partition count (``topic_partitions``), which
    shards the theft model as the stream does (one model per partition, learning from
    that partition's areas): with it, a backtest of the stream's input builds exactly
    the stream's models and alerts. 1 (one model for the whole fleet) is what
    ``evaluate`` measures.

    ``weather`` (from :func:`load_weather`): hourly temperature per area, applied in
    time order with the readings (a sample before the readings stamped after it; calls
    are cut at every sample). ``chunk_s`` / ``chunk_rows`` bound one engine call (time span, readings); they change
    the speed, not the result. ``after_call(last_ts, state, new_alerts)`` runs after each
    engine call with the whole fleet's state (mutable: what people do between calls,
    such as inspection outcomes, goes in there)."""
    t0 = time.perf_counter()
    eng = engine or Engine(fleet, config, tz=tz, country=country, voltage_standard=voltage_standard,
                           partitions=partitions)
    rows, cols = to_columns(df, fleet)
    st_all = eng.new_state(len(fleet))
    ast_all = eng.new_area_state(len(fleet.area_id))
    res = BacktestResult(readings=len(rows), state_bytes=eng.state_bytes)
    ts = cols["ts"]
    zone = eng.zone
    everyone = np.arange(len(fleet))
    all_areas = np.arange(len(fleet.area_id))
    # Calls of up to a day of readings: the engine runs one round per interval end
    # inside a call either way (so the alerts are the same as one call per timestamp),
    # but gathering and scattering the touched meters' state per timestamp cost more
    # than the detectors on a small fleet.
    starts = np.r_[0, np.flatnonzero(np.diff(ts)) + 1]  # each timestamp's first row
    bounds = np.r_[0, np.flatnonzero(np.diff(ts // chunk_s)) + 1, len(ts)]
    if chunk_rows and len(ts) > chunk_rows:
        # Never inside a timestamp: its readings make one round together.
        cut = starts[np.minimum(np.searchsorted(starts, np.arange(chunk_rows, len(ts), chunk_rows)),
                                len(starts) - 1)]
        bounds = np.unique(np.r_[bounds, cut])
    if weather is not None and len(weather):
        # Calls never span a weather sample: each hour's temperature goes in before the
        # readings after it, as the stream applies them, however the rest is sliced.
        wcut = np.searchsorted(ts, np.unique(weather["ts"].to_numpy()), side="right")
        bounds = np.unique(np.r_[bounds, wcut[(wcut > 0) & (wcut < len(ts))]])
    w_next = 0
    for g in range(len(bounds) - 1):
        a, b = bounds[g], bounds[g + 1]
        w_next = _weather_until(eng, weather, w_next, int(ts[b - 1]), ast_all, all_areas)
        r = rows[a:b]
        c = cols[a:b]
        meters = np.unique(r)
        areas = np.unique(fleet.area[meters])
        whole = len(meters) == len(everyone)  # then meters == everyone: no copies
        st = st_all if whole else st_all[meters]
        whole_a = len(areas) == len(all_areas)
        ast = ast_all if whole_a else ast_all[areas]
        out = eng.process(r, c, st, ast, meters, areas)
        if not whole:
            st_all[meters] = st
        if not whole_a:
            ast_all[areas] = ast
        res.applied += out.applied
        res.duplicates += out.duplicates
        res.late += out.late
        n0 = len(res.alerts)
        for f in out.findings:
            res.alerts.append(to_alert(f, fleet, zone))
        if after_call:
            after_call(int(ts[b - 1]), st_all, res.alerts[n0:])
        if progress:
            progress(b, len(ts))
    res.seconds = time.perf_counter() - t0
    res.state, res.area_state = st_all, ast_all
    return res
