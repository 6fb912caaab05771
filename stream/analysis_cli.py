"""The engineers' offline analysis commands: no Kafka, files in, reports out.

    meterwatch backtest ...         run the detectors over a file of readings
    meterwatch evaluate ...         measure detection quality (report with plots)
    meterwatch voltage-report ...   voltage compliance per area and period (Markdown/CSV)
"""

from __future__ import annotations

import sys

from stream.cliparse import passthrough, settings


def cmd_backtest(args) -> None:
    import msgspec

    from models.alerts import enc_hook
    from models.backtest import load_readings, load_weather, run, synthetic_fleet
    from models.config import ConfigError, load_config
    from stream.registry import Registry, RegistryError

    s = settings(args)
    try:
        cfg = load_config(args.detectors or s.detectors_config or None)
        df = load_readings(args.readings, tz=args.tz, ts_mark=args.ts_mark)
        fleet = (Registry.load(args.registry).fleet if args.registry
                 else synthetic_fleet(df["meter_id"].unique()))
        weather = load_weather(args.weather, fleet, tz=args.tz) if args.weather else None
    except (ConfigError, RegistryError, ValueError) as e:
        sys.exit(f"meterwatch backtest: {e}")
    tz = args.local_tz or args.tz or s.timezone
    res = run(df, fleet, config=cfg, tz=tz, country=args.country or s.holidays_country or None,
              voltage_standard=args.standard or s.voltage_standard, weather=weather,
              partitions=s.topic_partitions)  # the stream's theft model shards
    enc = msgspec.json.Encoder(enc_hook=enc_hook)
    with open(args.out, "wb") as f:
        for a in res.alerts:
            f.write(enc.encode(a) + b"\n")
    print(f"{res.readings} readings, {res.applied} applied, {len(res.alerts)} alert messages "
          f"-> {args.out} in {res.seconds:.1f} s ({res.readings / max(res.seconds, 1e-9):,.0f} "
          f"readings/s; state {res.state_bytes} B/meter)")


def run_evaluate(argv: list[str]) -> int:
    from models import evaluate

    return evaluate.main(argv)


def run_voltage_report(argv: list[str]) -> int:
    from models import voltage_report

    return voltage_report.main(argv)


def _add_backtest(sub) -> None:
    b = sub.add_parser("backtest", help="run the detectors over a file, no Kafka")
    b.add_argument("--readings", required=True)
    b.add_argument("--registry", help="registry CSV (default: one synthetic customer per meter)")
    b.add_argument("--out", required=True)
    b.add_argument("--detectors", help="detector thresholds TOML (config/detectors.toml)")
    b.add_argument("--tz", help="zone of timestamps that have none (e.g. UTC)")
    b.add_argument("--local-tz", help="the customers' zone for days and holidays "
                   "(default: --tz, else the METERWATCH_TIMEZONE setting)")
    b.add_argument("--country")
    b.add_argument("--standard")
    b.add_argument("--ts-mark", choices=("start", "end"), default="end")
    b.add_argument("--weather", help="hourly temperature per area, CSV: area_id, ts, "
                   "temperature_c (what a worker reads from METERWATCH_WEATHER_TOPIC)")
    # looked up when called (not bound at parser build), so a caller may replace it
    b.set_defaults(func=lambda args: cmd_backtest(args))


def add_parser(sub) -> None:
    """backtest; evaluate and voltage-report parse their own arguments."""
    _add_backtest(sub)
    passthrough(sub, "evaluate", "measure detection quality (see `meterwatch evaluate -h`)",
                lambda argv: run_evaluate(argv))
    passthrough(sub, "voltage-report", "voltage compliance per area and period of the "
                "standard, Markdown or CSV (see `meterwatch voltage-report -h`)",
                lambda argv: run_voltage_report(argv))
