"""``meterwatch console ...`` and ``meterwatch users ...``.

    meterwatch console [--host H] [--port P] [--dev]      run the web console
    meterwatch console export-outcomes --out FILE.csv     resolved alerts' outcomes (labels)
    meterwatch console export-worklist --out FILE.csv     open theft suspicions, ranked
    meterwatch users add USERNAME --role R [--manager-id M] [--password-stdin]
    meterwatch users passwd USERNAME [--password-stdin]
    meterwatch users list
    meterwatch users disable|enable USERNAME

Passwords come from a prompt (asked twice) or, with ``--password-stdin`` or when stdin
is not a terminal, from the first line of stdin -- never from the command line, where
other users could read them in the process list and shells keep them in history.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import logging
import secrets
import sys
from datetime import datetime, timezone
from typing import Sequence

from stream.console.cells import text_cell
from stream.settings import Settings, SettingsError, load_settings, replace

log = logging.getLogger("meterwatch.console")

# What `meterwatch evaluate` reads back: confirmed_* are true positives, false_alarm a
# false one; the other outcomes say what was done, not whether the alert was right.
TRUE_OUTCOMES = ("confirmed_theft", "confirmed_fault", "confirmed_usage_change")
FALSE_OUTCOMES = ("false_alarm",)
EXPORT_COLUMNS = ("alert_id", "type", "subtype", "meter_id", "area_id", "start",
                  "detected_at", "outcome", "label", "resolved_at")


def _settings(args, **over) -> Settings:
    try:
        return load_settings(config_file=getattr(args, "config", None), **over)
    except SettingsError as e:
        sys.exit(f"meterwatch: configuration error: {e}")


def open_store(s: Settings):
    from stream.store import AlertStore, default_url

    return AlertStore(s.db_url or default_url(s.data_dir))


def _safe_url(url: str) -> str:
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<db url>"


# ---- console -----------------------------------------------------------------------------

def serve(args) -> int:
    s = _settings(args, console_host=getattr(args, "host", None),
                  console_port=getattr(args, "port", None))
    logging.basicConfig(level=s.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from stream.console.auth import MIN_SECRET_LEN, check_secret, SecretError

    if not s.session_secret and getattr(args, "dev", False):
        s = replace(s, session_secret=secrets.token_urlsafe(48))
        print("meterwatch console: --dev: using an EPHEMERAL session secret; sessions end "
              "when the console stops. Set METERWATCH_SESSION_SECRET "
              f"(>= {MIN_SECRET_LEN} characters) for real use.", file=sys.stderr, flush=True)
    try:
        check_secret(s.session_secret)
    except SecretError as e:
        sys.exit(f"meterwatch console: refusing to start: {e}")

    from aiohttp import web

    from stream.console.app import AccessLogger, make_app
    from stream.registry import Registry, RegistryError

    registry = None
    if s.registry:
        try:
            registry = Registry.load(s.registry)
        except RegistryError as e:
            sys.exit(f"meterwatch console: {e}")
    store = open_store(s)
    app = make_app(s, store, registry)
    print(f"meterwatch console on http://{s.console_host}:{s.console_port}/ "
          f"(store {_safe_url(store.url)}; registry {s.registry or 'none: customers known from alerts'}; "
          f"cookies {'Secure' if s.cookie_secure else 'NOT Secure (plain http)'})", flush=True)
    try:
        web.run_app(app, host=s.console_host, port=s.console_port, print=None,
                    access_log_class=AccessLogger,
                    access_log=logging.getLogger("meterwatch.console.access"))
    finally:
        store.close()
    return 0


def outcome_label(outcome: str) -> str:
    if outcome in TRUE_OUTCOMES:
        return "tp"
    if outcome in FALSE_OUTCOMES:
        return "fp"
    return "unknown"


def _iso(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(float(t), timezone.utc).isoformat()


def write_outcomes(store, out) -> int:
    """Resolved alerts as CSV rows (``EXPORT_COLUMNS``) into a text stream; the count.
    Text from alert messages is neutralised (:func:`text_cell`); times are ours."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    n = 0
    for r in store.outcomes():
        w.writerow([*map(text_cell, (r["id"], r["type"], r["subtype"], r["meter_id"],
                                     r["area_id"])),
                    _iso(r["start_ts"]), _iso(r["detected_ts"]), text_cell(r["outcome"]),
                    outcome_label(r["outcome"]), _iso(r["resolved_at"])])
        n += 1
    return n


def export_outcomes(args) -> int:
    s = _settings(args)
    store = open_store(s)
    try:
        if args.out == "-":
            n = write_outcomes(store, sys.stdout)
        else:
            with open(args.out, "w", newline="", encoding="utf-8") as f:
                n = write_outcomes(store, f)
    finally:
        store.close()
    print(f"{n} resolved alerts -> {args.out}", file=sys.stderr)
    return 0


def export_worklist(args) -> int:
    from stream.console import worklist as WL

    s = _settings(args)
    store = open_store(s)
    try:
        items = WL.load(store, tariff_per_kwh=s.tariff_per_kwh)
    finally:
        store.close()
    if args.out == "-":
        n = WL.write_csv(items, sys.stdout, s.currency)
    else:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            n = WL.write_csv(items, f, s.currency)
    print(f"{n} open theft suspicions -> {args.out}", file=sys.stderr)
    return 0


# ---- users -------------------------------------------------------------------------------

def _actor() -> str:
    try:
        return ("cli:" + getpass.getuser())[:64]
    except Exception:
        return "cli"


def read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        pw = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != pw:
            sys.exit("meterwatch users: the passwords differ")
    if not pw:
        sys.exit("meterwatch users: empty password")
    return pw


def users(args) -> int:
    from stream.store import NotFound

    s = _settings(args)
    store = open_store(s)
    try:
        if args.cmd == "add":
            from sqlalchemy.exc import IntegrityError

            from stream.console.app import USERNAME_RE

            if not USERNAME_RE.match(args.username):
                sys.exit("meterwatch users: username: 1-64 letters, digits, . _ @ or -")
            if args.role == "manager" and not args.manager_id:
                sys.exit("meterwatch users: a manager account needs --manager-id")
            password = read_password(args.password_stdin)
            try:
                store.create_user(args.username, password, args.role,
                                  manager_id=args.manager_id if args.role == "manager" else None,
                                  actor=_actor())
            except ValueError as e:
                sys.exit(f"meterwatch users: {e}")
            except IntegrityError:
                sys.exit(f"meterwatch users: user {args.username} exists already")
            print(f"added {args.username} ({args.role})")
        elif args.cmd == "passwd":
            password = read_password(args.password_stdin)
            try:
                store.set_password(args.username, password, actor=_actor())
            except NotFound:
                sys.exit(f"meterwatch users: no user {args.username}")
            except ValueError as e:
                sys.exit(f"meterwatch users: {e}")
            print(f"password set for {args.username}")
        elif args.cmd == "list":
            from stream.console.queries import list_users

            rows = list_users(store)
            print(f"{'username':24s} {'role':13s} {'manager_id':16s} status")
            for u in rows:
                print(f"{u['username']:24s} {u['role']:13s} {u['manager_id'] or '':16s} "
                      f"{'disabled' if u['disabled'] else 'active'}")
        else:
            from stream.console.queries import set_disabled

            if not set_disabled(store, args.username, args.cmd == "disable", actor=_actor()):
                sys.exit(f"meterwatch users: no user {args.username}")
            print(f"{args.cmd}d {args.username}")
    finally:
        store.close()
    return 0


# ---- the command tree ------------------------------------------------------------------

def _serve_options(p) -> None:
    # "not given" by default (SUPPRESS), so options before a subcommand are kept
    opt = argparse.SUPPRESS
    p.add_argument("--host", default=opt,
                   help="listen address (default METERWATCH_CONSOLE_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, default=opt,
                   help="listen port (default METERWATCH_CONSOLE_PORT, 6080)")
    p.add_argument("--dev", action="store_true", default=opt,
                   help="without METERWATCH_SESSION_SECRET, use an ephemeral one (sessions "
                        "end when the console stops); for local use only")


def _run(args) -> None:
    # looked up when called (not bound at parser build), so a caller may replace one
    run = {"serve": serve, "export-outcomes": export_outcomes,
           "export-worklist": export_worklist}.get(args.cmd, users)
    sys.exit(run(args))


def _add_console(sub) -> None:
    c = sub.add_parser("console", help="account manager console (web)",
                       description="Run the account manager console (web).",
                       epilog="Also: meterwatch console export-outcomes --out FILE.csv, "
                              "meterwatch console export-worklist --out FILE.csv")
    _serve_options(c)
    csub = c.add_subparsers(dest="cmd", metavar="{serve,export-outcomes,export-worklist}")
    c.set_defaults(func=_run, cmd="serve")
    _serve_options(csub.add_parser("serve", help="run the console (the default)"))
    e = csub.add_parser(
        "export-outcomes", help="resolved alerts' outcomes as CSV (labels for evaluate)",
        description="Write resolved alerts and their outcomes as CSV for `meterwatch evaluate`. "
                    f"Columns: {', '.join(EXPORT_COLUMNS)}. label is tp (confirmed_*), fp "
                    "(false_alarm) or unknown (the outcome says what was done, not whether "
                    "the alert was right). Times are ISO 8601 UTC. No customer ids. Text "
                    "starting with = + - @ gets a leading ' (no spreadsheet formulas).")
    e.add_argument("--out", required=True, help="CSV file to write, or - for stdout")
    w = csub.add_parser(
        "export-worklist", help="open theft suspicions, ranked, as CSV (the field crews' work list)",
        description="Write the theft work list as CSV, in the console's order (risk x "
                    "estimated unbilled kWh first, then the suspicions without an estimate "
                    "by severity and risk), every manager's. Money columns need "
                    "METERWATCH_TARIFF_PER_KWH (and _CURRENCY). Text starting with = + - @ "
                    "gets a leading ' (no spreadsheet formulas).")
    w.add_argument("--out", required=True, help="CSV file to write, or - for stdout")


def _add_users(sub) -> None:
    from stream.store import ROLES

    p = sub.add_parser("users", help="console accounts: add, passwd, list, disable, enable",
                       description="Console accounts.")
    usub = p.add_subparsers(dest="cmd", required=True)
    p.set_defaults(func=_run)
    a = usub.add_parser("add", help="create an account")
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--manager-id", help="for --role manager: the account manager id whose "
                   "customers this user sees (registry column account_manager)")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw = usub.add_parser("passwd", help="set an account's password")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")
    usub.add_parser("list", help="list accounts")
    for name in ("disable", "enable"):
        d = usub.add_parser(name, help=f"{name} an account")
        d.add_argument("username")


def add_parser(sub) -> None:
    """``meterwatch console [serve|export-outcomes]`` and ``meterwatch users ...``."""
    _add_console(sub)
    _add_users(sub)


def main(argv: Sequence[str] | None = None) -> None:
    """``meterwatch console ...`` or ``meterwatch users ...`` (ARGV starts with one)."""
    from stream.cliparse import root_parser

    p, sub = root_parser()
    add_parser(sub)
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    args.func(args)


if __name__ == "__main__":
    main()
