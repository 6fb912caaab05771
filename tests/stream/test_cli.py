"""``meterwatch``: one argparse tree; global options before the command, each service's
commands registered by its own cli module; every documented command line parses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("demo", "worker", "simulate", "replay", "backtest", "evaluate", "kafka", "notify",
            "console", "users")


def meterwatch(*args, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("METERWATCH_")}
    e.update(env)
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], env=e, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def config(tmp_path) -> Path:
    """A settings file naming a managers file: what `notify check` validates."""
    managers = tmp_path / "managers.csv"
    managers.write_text("manager_id,name,email,webhook_url,language\n"
                        "mgr-07,Li,li@example.cn,,zh-CN\n")
    cfg = tmp_path / "meterwatch.toml"
    cfg.write_text(f"[meterwatch]\nmanagers = '{managers}'\n")
    return cfg


@pytest.mark.parametrize("form", ["--config={}", "--config {}"])
def test_config_before_the_command_is_read_by_notify_check(config, form):
    r = meterwatch(*form.format(config).split(" "), "notify", "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mgr-07" in r.stdout and "1 managers OK" in r.stdout


def test_a_missing_config_file_is_named_as_given(tmp_path):
    r = meterwatch(f"--config={tmp_path / 'nope.toml'}", "notify", "check")
    assert r.returncode != 0 and f"config file {tmp_path / 'nope.toml'} does not exist" in r.stderr


def test_config_reaches_the_console_commands_too(tmp_path, config):
    db = tmp_path / "alerts.db"
    config.write_text(config.read_text() + f"db_url = 'sqlite:///{db}'\n")
    r = meterwatch(f"--config={config}", "users", "list")
    assert r.returncode == 0, r.stderr
    assert db.exists()  # the store the file names, not the default one


def test_help_lists_every_command():
    r = meterwatch("--help")
    assert r.returncode == 0
    listed = r.stdout.split("COMMAND", 2)[2]
    for cmd in COMMANDS:
        assert f"\n    {cmd} " in listed, cmd


@pytest.mark.parametrize("argv", [
    "demo", "worker", "worker --worker-id w1", "simulate --customers 2000 --areas 8 --days 7 "
    "--out .data/sim", "replay FILE --tz UTC --ts-mark start --registry reg.csv",
    "backtest --readings FILE --registry reg.csv --out alerts.jsonl --detectors "
    "config/detectors.toml", "notify", "notify run", "notify check",
    "notify check --registry reg.csv", "notify --managers m.csv check --registry r.csv",
    "notify send-test --manager mgr-01 --channel email",
    "notify send-test --manager control_room --channel alertmanager",
    "console", "console --dev", "console --dev --host 0.0.0.0 --port 6080",
    "console export-outcomes --out outcomes.csv", "users add admin --role admin",
    "users add alice --role manager --manager-id mgr1",
    "users add ops --role control_room --password-stdin", "users list", "users passwd alice",
    "users disable alice", "users enable alice",
])
def test_every_documented_command_line_parses(argv):
    args = build_parser().parse_args(argv.split())
    assert callable(args.func)


def test_options_before_a_subcommand_are_kept_and_the_default_subcommand_is_run():
    p = build_parser()
    a = p.parse_args(["notify", "--managers", "m.csv", "check", "--registry", "r.csv"])
    assert (a.cmd, a.managers, a.registry) == ("check", "m.csv", "r.csv")
    a = p.parse_args(["--config", "f.toml", "notify", "--broker", "k:9092"])
    assert (a.cmd, a.broker, a.config) == ("run", "k:9092", "f.toml")
    a = p.parse_args(["console", "--port", "7000"])
    assert (a.cmd, a.port) == ("serve", 7000)


@pytest.mark.parametrize("argv, want", [
    (["evaluate", "--no-real", "--config", "d.toml", "--out", "x"],
     ["--no-real", "--config", "d.toml", "--out", "x"]),
    (["kafka", "status", "--data-dir", "/tmp/k"], ["status", "--data-dir", "/tmp/k"]),
    (["kafka", "-h"], ["-h"]),
])
def test_evaluate_and_kafka_get_everything_after_their_name(argv, want):
    # evaluate's --config is its detector file: only a --config before the command is ours
    a = build_parser().parse_args(["--config", "s.toml", *argv])
    assert a.args == want and a.config == "s.toml"


def test_kafka_status_runs_through_the_tree(tmp_path):
    r = meterwatch("kafka", "status", "--data-dir", str(tmp_path / "k"))
    assert r.returncode == 3 and "stopped" in r.stdout  # kafka_local's own exit code


def test_an_unknown_command_or_option_is_refused_with_usage():
    r = meterwatch("notfy")
    assert r.returncode == 2 and "invalid choice: 'notfy'" in r.stderr
    r = meterwatch("notify", "check", "--bogus")
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr
