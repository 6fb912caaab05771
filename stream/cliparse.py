"""The root of ``meterwatch``'s one argparse tree: the global options, then a command.

Each service's cli module registers its commands on the tree with ``add_parser(sub)``
(stream/worker/cli.py: worker; stream/notify/cli.py: notify; stream/console/cli.py:
console, users; stream/analysis_cli.py: backtest, evaluate, voltage-report;
stream/dev/cli.py: demo, simulate, replay, kafka), stream/cli.py collects them, and every
command's parser sets ``func``, which is called with the parsed arguments.

This module is apart from stream/cli.py because the service cli modules import it (their
own ``main`` builds a tree of one service): were it stream/cli.py, which imports them,
each would be an import cycle.

Global options come before the command: ``meterwatch --config FILE notify check`` (or
``--config=FILE``). What follows the command belongs to it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from stream.settings import Settings, SettingsError, load_settings

DESCRIPTION = """\
meterwatch: streaming anomaly detection for smart-meter telemetry.

Settings come from METERWATCH_* variables and the TOML file of --config (or
METERWATCH_CONFIG); a command's options override them.
"""


def root_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    p = argparse.ArgumentParser(prog="meterwatch", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE",
                   help="settings TOML file (else METERWATCH_CONFIG); before the command")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    return p, sub


def passthrough(sub, name: str, help: str, run: Callable[[list[str]], int | None]) -> None:
    """A command whose own module parses everything after its name (``-h`` included).

    Its parser takes no options (no prefix character can start one), so ``--out X``
    after the name reaches ``run`` untouched instead of being refused here."""
    p = sub.add_parser(name, help=help, add_help=False, prefix_chars="\0")
    p.add_argument("args", nargs="*")
    p.set_defaults(func=lambda a: sys.exit(run(a.args)))


def settings(args, **over) -> Settings:
    """The settings for a command: --config's file, METERWATCH_* and ``over`` (the
    command's options); a configuration error ends the command with its message."""
    try:
        return load_settings(config_file=getattr(args, "config", None), **over)
    except SettingsError as e:
        sys.exit(f"meterwatch: configuration error: {e}")
