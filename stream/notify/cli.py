"""``meterwatch notify``: the notifier service and its tools.

    meterwatch [--config FILE] notify [run] [--managers FILE] [--registry FILE]
                       [--broker HOST:PORT] [--db-url URL] [--web-port PORT]
    meterwatch [--config FILE] notify check [--managers FILE] [--registry FILE]
    meterwatch [--config FILE] notify send-test --manager ID [--channel email|webhook|alertmanager]

Settings come from ``METERWATCH_*`` variables and the --config file (see
stream/settings.py); options override. ``check`` validates the managers file, the
registry's managers and every webhook's address.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timezone

from stream.settings import Settings, SettingsError, load_settings


def _settings(args) -> Settings:
    over = {k: getattr(args, k, None) for k in ("managers", "registry", "broker", "db_url")}
    if getattr(args, "web_port", None) is not None:
        over["notify_web_port"] = args.web_port
    try:
        return load_settings(config_file=getattr(args, "config", None), **over)
    except SettingsError as e:
        sys.exit(f"meterwatch notify: configuration error: {e}")


def cmd_run(args) -> None:
    from faust.worker import Worker

    from stream.kafka_admin import ensure_topics
    from stream.notify.managers import ManagersError
    from stream.notify.service import build_app
    from stream.registry import RegistryError

    s = _settings(args)
    if not s.broker:
        sys.exit("meterwatch notify: no broker (set METERWATCH_BROKER or --broker)")
    try:
        app = build_app(s)
    except (ValueError, ManagersError, RegistryError) as e:
        sys.exit(f"meterwatch notify: {e}")
    asyncio.run(ensure_topics(s))
    worker = Worker(app, loglevel=s.log_level, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # it would set the root logger to DEBUG
    worker.execute_from_commandline()


def cmd_check(args) -> None:
    """Validate the managers file; with a registry, list managers it names but lacks."""
    from stream.notify.managers import Managers, ManagersError
    from stream.registry import Registry, RegistryError

    s = _settings(args)
    if not s.managers:
        sys.exit("meterwatch notify check: no managers file (METERWATCH_MANAGERS or --managers)")
    try:
        managers = Managers.load(s.managers)
    except ManagersError as e:
        sys.exit(f"meterwatch notify check: {e}")
    for m in managers:
        quiet = (f"{m.quiet_hours[0] // 60:02d}:{m.quiet_hours[0] % 60:02d}-"
                 f"{m.quiet_hours[1] // 60:02d}:{m.quiet_hours[1] % 60:02d}"
                 if m.quiet_hours else "none")
        digest = (f"daily@{m.digest_at // 60:02d}:{m.digest_at % 60:02d}"
                  if m.digest_at is not None else "none")
        print(f"{m.manager_id:16s} {m.language:5s} {'+'.join(m.channels):14s} "
              f"quiet {quiet:11s} digest {digest}")
    print(f"{len(managers)} managers OK")
    if not _webhooks_reachable(s, managers):
        sys.exit(1)
    if s.registry:
        try:
            reg = Registry.load(s.registry)
        except RegistryError as e:
            sys.exit(f"meterwatch notify check: {e}")
        named = {m for m in reg.account_manager if m}
        missing = sorted(named - set(managers.by_id))
        if missing:
            print(f"registry names {len(missing)} manager(s) not in the managers file "
                  f"(their customers' alerts reach nobody): {', '.join(missing)}")
            sys.exit(1)
        print(f"every account manager in the registry ({len(named)}) is in the managers file")


def _webhooks_reachable(s: Settings, managers) -> bool:
    """Resolve every webhook host now and say which the notifier would refuse (a
    non-public address not in METERWATCH_NOTIFY_WEBHOOK_ALLOW_NETWORKS)."""
    from stream.notify.managers import CONTROL_ROOM
    from stream.notify.netguard import AddressPolicy, AddressRefused, resolve_and_check

    policy = AddressPolicy.from_settings(s)
    hooks = [(m.manager_id, m.webhook_url) for m in managers if m.webhook_url]
    if s.control_room_webhook:
        hooks.append((CONTROL_ROOM, s.control_room_webhook))
    refused = 0
    for who, url in hooks:
        try:
            resolve_and_check(policy, url)
        except AddressRefused as e:
            refused += 1
            print(f"{who}: webhook would be refused: {e}")
        except (OSError, ValueError) as e:  # no DNS here, or a name that does not resolve
            print(f"{who}: webhook host does not resolve here ({type(e).__name__}); "
                  f"checked again at each send")
    if refused:
        print(f"{refused} webhook(s) aimed at non-public addresses: their deliveries fail "
              f"permanently")
    elif hooks:
        print(f"every webhook ({len(hooks)}) resolves to an allowed address")
    return not refused


def sample_alert(now: float) -> dict:
    t = datetime.fromtimestamp(now, timezone.utc).isoformat()
    return {"id": f"test-{int(now)}", "type": "data_quality", "subtype": "test",
            "status": "open", "severity": "info", "scope": "meter", "meter_id": "TEST",
            "customer_id": "TEST", "area_id": "TEST", "start": t, "detected_at": t,
            "score": 0.0, "evidence": {"note": "test message from meterwatch notify send-test"},
            "message": {"en": "Test message: this channel works.",
                        "zh-CN": "测试消息：该通道工作正常。"}}


def cmd_send_test(args) -> None:
    """Send a test message straight to one manager's (or the control room's) channels."""
    from stream.notify.channels import Channels, DeliveryError
    from stream.notify.managers import CONTROL_ROOM, Managers, ManagersError
    from stream.notify.routing import ControlRoom, deliveries

    s = _settings(args)
    now = time.time()
    alert = sample_alert(now)
    if args.manager == CONTROL_ROOM:
        cr = ControlRoom.from_settings(s)
        dels = deliveries(alert, "alert", CONTROL_ROOM, cr.channels, cr.address, cr.language, now)
    else:
        try:
            managers = Managers.load(s.managers) if s.managers else Managers.empty()
        except ManagersError as e:
            sys.exit(f"meterwatch notify send-test: {e}")
        m = managers.get(args.manager)
        if m is None:
            sys.exit(f"meterwatch notify send-test: no manager {args.manager!r} in "
                     f"{s.managers or '(no managers file)'}")
        dels = deliveries(alert, "alert", m.manager_id, m.channels, m.address, m.language, now)
    dels = [d for d in dels if args.channel in (None, d.channel)]
    if not dels:
        sys.exit("meterwatch notify send-test: no such channel configured")

    async def go() -> int:
        ch = Channels(s)
        failed = 0
        try:
            for d in dels:
                row = dict(d.as_row(), id=0, attempts=0)
                try:
                    await ch.send(row)
                    print(f"{d.channel}: accepted")
                except DeliveryError as e:
                    failed += 1
                    print(f"{d.channel}: FAILED ({'permanent' if e.permanent else 'transient'}): {e}")
        finally:
            await ch.close()
        return failed

    sys.exit(1 if asyncio.run(go()) else 0)


def _run(args) -> None:
    # looked up when called (not bound at parser build), so a caller may replace one
    {"run": cmd_run, "check": cmd_check, "send-test": cmd_send_test}[args.cmd](args)


def _options(p, *names: str) -> None:
    """Options of the notify commands. Their default is "not given" (SUPPRESS), so an
    option before the subcommand (``notify --managers F check``) is not reset by the
    subcommand's parser; _settings reads what was given."""
    opt = argparse.SUPPRESS
    helps = {"managers": "managers CSV (else METERWATCH_MANAGERS)",
             "registry": "meter registry CSV (else METERWATCH_REGISTRY)",
             "broker": "Kafka bootstrap servers (else METERWATCH_BROKER)",
             "db-url": "alert store URL (else METERWATCH_DB_URL)",
             "web-port": "metrics port (else METERWATCH_NOTIFY_WEB_PORT)"}
    for name in names:
        p.add_argument(f"--{name}", default=opt, help=helps[name],
                       type=int if name == "web-port" else str)


RUN_OPTIONS = ("managers", "registry", "broker", "db-url", "web-port")


def add_parser(sub) -> None:
    """``meterwatch notify [run|check|send-test]``; no subcommand means run."""
    p = sub.add_parser("notify", help="route alerts to managers and the control room",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _options(p, *RUN_OPTIONS)
    nsub = p.add_subparsers(dest="cmd", metavar="{run,check,send-test}")
    p.set_defaults(func=_run, cmd="run")
    _options(nsub.add_parser("run", help="run the notifier (the default)"), *RUN_OPTIONS)
    _options(nsub.add_parser("check", help="validate the managers file, the registry's "
                             "managers and the webhooks' addresses"), "managers", "registry")
    t = nsub.add_parser("send-test", help="send a test message to a manager's channels")
    t.add_argument("--manager", required=True, help="manager id, or control_room")
    _options(t, "managers")
    t.add_argument("--channel", choices=("email", "webhook", "alertmanager"))


def main(argv: list[str] | None = None) -> None:
    """``meterwatch notify ARGV`` (global options such as --config come from the
    environment here; ``meterwatch`` itself takes them before the command)."""
    from stream.cliparse import root_parser

    p, sub = root_parser()
    add_parser(sub)
    args = p.parse_args(["notify", *(sys.argv[1:] if argv is None else argv)])
    args.func(args)


if __name__ == "__main__":
    main()
