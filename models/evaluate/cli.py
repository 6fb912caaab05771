"""The command line of ``meterwatch evaluate`` (also ``python -m models.evaluate``)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from models.config import DetectorConfig, load_config
from models.evaluate.inject import DAY_S, VirtualSet, build_virtual
from models.evaluate.goals import Evaluation, outcome_precision
from models.evaluate.real import HALVES, evaluate_real, load_real
from models.evaluate.report import summary_text, write_report
from models.evaluate.simulated import evaluate_sim, prepare_sim
from models.evaluate.sweep import DEFAULT_SWEEP, REAL_SECTIONS, parse_sweep, run_sweep
from models.evaluate.targets import DEFAULT_READINGS

if TYPE_CHECKING:
    import pandas as pd


# -- CLI ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="meterwatch evaluate",
        description="Inject labelled anomalies into real readings and a simulated fleet, run "
                    "the detectors, report recall / precision / delay / false alerts per type.")
    p.add_argument("--readings", default=str(DEFAULT_READINGS),
                   help="readings file (CSV/CSV.gz/Parquet: meter_id, ts, kwh); default: the "
                        "London sample")
    p.add_argument("--tz", default="UTC",
                   help="zone of the file's zone-less timestamps (default UTC: the London sample "
                        "is stamped in GMT all year, 48 half-hours on both DST days)")
    p.add_argument("--local-tz", default="Europe/London",
                   help="the customers' zone: their days, weekends and holidays (default "
                        "Europe/London)")
    p.add_argument("--country", default="GB", help="holiday calendar of the readings (default GB)")
    p.add_argument("--ts-mark", choices=("start", "end"), default="start",
                   help="the file stamps the start or the end of each interval (London: start)")
    p.add_argument("--half", choices=(*HALVES, "all"), default="holdout",
                   help="which fixed half of the households to run (models.evaluate.half_of): "
                        "'design' to tune on, 'holdout' (default) for figures that claim to hold "
                        "on unseen homes, or 'all'")
    p.add_argument("--households", type=int, help="seeded sample of N households (default: all)")
    p.add_argument("--days", type=float, help="only the first D days of the readings")
    p.add_argument("--no-real", action="store_true", help="skip the real-readings evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sim", dest="sim", action="store_true", default=True)
    p.add_argument("--no-sim", dest="sim", action="store_false")
    p.add_argument("--sim-customers", type=int, default=300)
    p.add_argument("--sim-areas", type=int, default=20)
    p.add_argument("--sim-days", type=int, default=120)
    p.add_argument("--sim-rate", type=float, default=0.2, help="share of customers with an anomaly")
    p.add_argument("--sim-extra-voltage", type=int, default=40,
                   help="meter-level voltage events added to the random scenario")
    p.add_argument("--sweep", action="store_true", help="vary thresholds, draw recall vs false alerts")
    p.add_argument("--sweep-param", action="append", metavar="SECTION.KEY=V1,V2,...",
                   help="parameter to sweep (repeatable); default: " +
                        ", ".join(f"{s}.{k}" for s, k, _ in DEFAULT_SWEEP))
    p.add_argument("--sweep-households", type=int, default=20,
                   help="households in each real-data sweep run (default 20)")
    p.add_argument("--sweep-days", type=float, default=240, help="days in each real-data sweep run")
    p.add_argument("--sweep-sim-days", type=int, default=60, help="days of each simulated sweep run")
    p.add_argument("--jobs", type=int, default=1, help="parallel sweep runs (processes)")
    p.add_argument("--config", help="detector thresholds TOML (as config/detectors.toml)")
    p.add_argument("--outcomes", help="CSV of `meterwatch console export-outcomes`: report "
                   "precision per alert type on real, followed-up cases")
    p.add_argument("--out", default="out/evaluation", help="report directory (default out/evaluation)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    t_all = time.perf_counter()
    cfg = load_config(args.config) if args.config else DetectorConfig()
    ev = _new_evaluation(args, cfg)
    df = None
    if not args.no_real:
        if not Path(args.readings).exists():
            print(f"evaluate: readings file {args.readings} does not exist (use --readings or "
                  f"--no-real)", file=sys.stderr)
            return 2
        df = _run_real(args, cfg, ev)
    if args.sim:
        _run_sim(args, cfg, ev)
    if args.sweep:
        _run_sweep(args, cfg, ev, df)
    ev.meta["seconds"] = time.perf_counter() - t_all
    report = write_report(ev, args.out)
    print()
    print(summary_text(ev))
    print()
    print(f"report: {report}  (total {ev.meta['seconds']:.0f} s)")
    return 0


def _log(s: str) -> None:
    """A progress line, shown at once."""
    print(s, flush=True)


def _new_evaluation(args: argparse.Namespace, cfg: DetectorConfig) -> Evaluation:
    """The evaluation to fill in: the run's facts and, with --outcomes, the precision on
    followed-up cases."""
    ev = Evaluation(meta={"seed": args.seed, "config": args.config, "readings": args.readings,
                          "half": args.half, "budget": asdict(cfg.budget),
                          "outcomes": args.outcomes})
    if args.outcomes:
        ev.outcomes = outcome_precision(args.outcomes)
    return ev


def _run_real(args: argparse.Namespace, cfg: DetectorConfig, ev: Evaluation) -> pd.DataFrame:
    """Load the real readings, inject the scenarios and run the backtest (into
    ``ev.real``); the loaded readings, for the sweep."""
    t0 = time.perf_counter()
    df = load_real(args.readings, tz=args.tz, ts_mark=args.ts_mark, households=args.households,
                   days=args.days, seed=args.seed, half=args.half)
    _log(f"real: loaded {len(df):,} readings of {df['meter_id'].nunique()} households "
         f"in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    vs = build_virtual(df, seed=args.seed, tz=args.local_tz)
    t_inject = time.perf_counter() - t0
    _log(f"real: {len(vs.fleet)} virtual meters, {len(vs.labels)} scenarios injected "
         f"in {t_inject:.1f} s; running the backtest ...")
    ev.real = evaluate_real(df, config=cfg, seed=args.seed, tz=args.local_tz, country=args.country,
                            vs=vs, progress=_backtest_progress())
    ev.real.meta["inject_seconds"] = t_inject
    _log(f"real: backtest {ev.real.meta['backtest_seconds']:.1f} s, "
         f"{ev.real.meta['alerts']:,} alert messages")
    return df


def _backtest_progress() -> Callable[[int, int], None]:
    """A progress callback that logs the backtest's share done at most every 30 s."""
    last = [time.perf_counter()]

    def progress(done, total):
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            _log(f"  backtest {100 * done / max(total, 1):.0f}%")

    return progress


def _run_sim(args: argparse.Namespace, cfg: DetectorConfig, ev: Evaluation) -> None:
    """Simulate the fleet with its random scenario and run the backtest (into ``ev.sim``)."""
    t0 = time.perf_counter()
    sim_inp = prepare_sim(customers=args.sim_customers, areas=args.sim_areas, days=args.sim_days,
                          seed=args.seed, rate=args.sim_rate, extra_voltage=args.sim_extra_voltage)
    _log(f"sim: {args.sim_customers} customers x {args.sim_days} days simulated in "
         f"{time.perf_counter() - t0:.1f} s; running the backtest ...")
    ev.sim = evaluate_sim(config=cfg, inp=sim_inp)
    _log(f"sim: backtest {ev.sim.meta['backtest_seconds']:.1f} s")


def _run_sweep(args: argparse.Namespace, cfg: DetectorConfig, ev: Evaluation,
               df: pd.DataFrame | None) -> None:
    """Vary the thresholds on a smaller real and simulated run (into ``ev.sweep``)."""
    t0 = time.perf_counter()
    params = parse_sweep(args.sweep_param)
    real_vs = None
    if df is not None and any(s in REAL_SECTIONS for s, _, _ in params):
        real_vs = build_virtual(_sweep_readings(args, df), seed=args.seed, tz=args.local_tz)
    sweep_sim = None
    if args.sim and any(s not in REAL_SECTIONS for s, _, _ in params):
        sweep_sim = prepare_sim(customers=args.sim_customers, areas=args.sim_areas,
                                days=min(args.sweep_sim_days, args.sim_days), seed=args.seed,
                                rate=args.sim_rate, extra_voltage=args.sim_extra_voltage)
    ev.meta["sweep_note"] = _sweep_note(args, real_vs)
    ev.sweep = run_sweep(params, config=cfg, real=real_vs, sim=sweep_sim, country=args.country,
                         jobs=args.jobs, log=_log)
    _log(f"sweep: {len(ev.sweep)} runs in {time.perf_counter() - t0:.0f} s")


def _sweep_readings(args: argparse.Namespace, df: pd.DataFrame) -> pd.DataFrame:
    """The real readings a sweep run sees: a seeded sample of --sweep-households
    households, their first --sweep-days days."""
    sdf = df
    ids = sorted(sdf["meter_id"].unique())
    if args.sweep_households and args.sweep_households < len(ids):
        pick = set(np.random.default_rng([args.seed, 5]).choice(ids, args.sweep_households,
                                                                replace=False))
        sdf = sdf[sdf["meter_id"].isin(pick)]
    if args.sweep_days:
        sdf = sdf[sdf["ts"] <= sdf["ts"].min() + args.sweep_days * DAY_S]
    return sdf


def _sweep_note(args: argparse.Namespace, real_vs: VirtualSet | None) -> str:
    """The report's note on what the sweep's points ran on."""
    return (
        f"Real-data points: {len(real_vs.clean_ids) if real_vs else 0} households "
        f"(seeded sample), first {args.sweep_days:g} days, so the numbers differ from the full "
        f"run above; simulated points: {args.sim_customers} customers, "
        f"{min(args.sweep_sim_days, args.sim_days)} days. Parameters of `physical`, `voltage` and "
        f"`area` run on the simulated fleet (the real readings carry no voltage, current or "
        f"area meter, so those thresholds cannot change anything there).")
