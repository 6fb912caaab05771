"""``meterwatch``: the command line, one argparse tree (see stream/cliparse.py).

    meterwatch [--config FILE] COMMAND ...
    meterwatch demo                 local broker + worker + simulated fleet + live alerts
    meterwatch simulate             publish a simulated fleet to ami.readings
    meterwatch replay FILE          publish historic readings (CSV/Parquet) in time order
    meterwatch kafka start|stop|status|fetch   the local single-node KRaft broker
                                    (these four: development tools, stream/dev/cli.py)
    meterwatch worker               a Faust worker (stream/worker/cli.py)
    meterwatch backtest ...         run the detectors over a file, no Kafka
    meterwatch evaluate ...         measure detection quality (report with plots)
    meterwatch voltage-report ...   voltage compliance per area and period (Markdown/CSV)
                                    (these three: offline analysis, stream/analysis_cli.py)
    meterwatch notify [run|check|send-test]   the notifier (stream/notify/cli.py)
    meterwatch console [export-outcomes]      the web console (stream/console/cli.py)
    meterwatch users add|passwd|list|disable|enable   console accounts
"""

from __future__ import annotations

import argparse
import sys

from stream import analysis_cli
from stream.cliparse import root_parser
from stream.console import cli as console_cli
from stream.dev import cli as dev_cli
from stream.notify import cli as notify_cli
from stream.worker import cli as worker_cli


def build_parser() -> argparse.ArgumentParser:
    """The whole tree: every service registers its commands."""
    p, sub = root_parser()
    for register in (dev_cli.add_parser, worker_cli.add_parser, analysis_cli.add_parser,
                     notify_cli.add_parser, console_cli.add_parser):
        register(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    args.func(args)


if __name__ == "__main__":
    main()
