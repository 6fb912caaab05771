"""One typed settings object, read from ``METERWATCH_*`` environment variables and an
optional TOML file (``METERWATCH_CONFIG`` or ``--config``).

Precedence: defaults < TOML file < environment. A wrong value stops start-up with a
message that names the setting and the source it came from, because a worker that
starts with a silently defaulted broker address or standard is worse than one that
refuses to start.

Types and bounds are declared on the fields and enforced by ``msgspec.convert``; only
what msgspec cannot express (a time zone, IP networks, a currency code) is checked here.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
from msgspec import Meta

from models.config import read_toml

PREFIX = "METERWATCH_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


# -- secrets in what is shown ----------------------------------------------------------
# A field annotated SECRET is never shown; one annotated URL is shown through redact_url
# (its userinfo password, query values and token-like path segments hidden). That covers
# repr/str of Settings and the errors of load_settings.
REDACTED = "<redacted>"
_TOKENISH = re.compile(r"(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{16,}")
Secret = Annotated[str, Meta(extra={"secret": True})]
Url = Annotated[str, Meta(extra={"url": True})]


def redact_url(url: str) -> str:
    """``url`` without what may be a credential: the userinfo password, every query
    value, token-like path segments (16+ letters and digits, as in chat webhooks).

    >>> redact_url("postgresql+psycopg://mw:s3cret@db:5432/alerts")
    'postgresql+psycopg://mw:***@db:5432/alerts'
    >>> redact_url("https://hooks.example/services/T0001/Xyz0123456789abcdefGH?token=abc&v=2")
    'https://hooks.example/services/T0001/***?token=***&v=***'
    """
    try:
        u = urlsplit(url)
        netloc = u.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        path = "/".join("***" if _TOKENISH.fullmatch(seg) else seg for seg in u.path.split("/"))
        query = urlencode([(k, "***") for k, _ in parse_qsl(u.query, keep_blank_values=True)],
                          safe="*")
        return urlunsplit((u.scheme, netloc, path, query, ""))
    except ValueError:
        return "<unparsable url>"


def shown(name: str, value: Any) -> Any:
    """What of a setting's value may be shown (in a repr, a log line or an error)."""
    extra = _EXTRA.get(name, {})
    if extra.get("secret"):
        return REDACTED if value else ""
    if extra.get("url") and isinstance(value, str) and value:
        return redact_url(value)
    return value


# The notifier never notifies an alert message produced longer ago than this (a new
# consumer group reading the topic's history must not mail a year of alerts).
NOTIFY_HORIZON_DAYS = 3.0

# -- bounds: msgspec checks them, the description says why in the error -----------------
Positive = Annotated[float, Meta(gt=0)]  # also rejects NaN
PositiveInt = Annotated[int, Meta(gt=0, description="must be > 0")]  # shown as ">= 1"
Port = Annotated[int, Meta(ge=0, le=65535, description="a TCP port, 0-65535")]
# le=max float: msgspec accepts only finite bounds, and this one turns away inf.
Price = Annotated[float, Meta(ge=0, le=sys.float_info.max,
                              description="a finite number >= 0; 0 = no price")]
SessionTimeout = Annotated[float, Meta(
    ge=6.0, description="the broker's default group.min.session.timeout.ms")]
KeepDays = Annotated[float, Meta(
    ge=NOTIFY_HORIZON_DAYS, description="the notifier's horizon: a purged row must not come back")]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a meterwatch process can be told. Field names map to env vars:
    ``broker`` is ``METERWATCH_BROKER`` and ``[meterwatch] broker`` in TOML."""

    # Kafka. Empty broker means "none configured": `demo` starts the local one.
    broker: str = ""
    app_id: str = "meterwatch"
    topic_partitions: PositiveInt = 4
    readings_topic: str = "ami.readings"
    rejected_topic: str = "ami.readings.rejected"
    by_area_topic: str = "meterwatch.readings.by-area"
    alerts_topic: str = "meterwatch.alerts"
    deadletter_topic: str = "meterwatch.deadletter"
    # Optional weather feed: hourly temperature per transformer area (JSON: area_id, ts,
    # temperature_c). Empty = no weather (the habit level test then works without it).
    weather_topic: str = ""
    # Static group membership: this worker's id in its consumer groups, stable across
    # restarts and unique per worker; empty = "<hostname>-<web_port>".
    instance_id: str = ""
    # How long the groups wait for a silent worker (killed, hung) before giving its
    # partitions to the others; a restarted worker takes them back at once.
    session_timeout_s: SessionTimeout = 10.0
    # State store: memory (changelog only) or rocksdb (for fleets beyond RAM).
    store: Literal["memory", "rocksdb"] = "memory"
    data_dir: str = str(PROJECT_ROOT / ".data")
    # Registry of meters (CSV); reloaded when the file changes.
    registry: str = ""
    registry_reload_s: Positive = 30.0
    # Detector configuration file (TOML); empty = the shipped defaults.
    detectors_config: str = ""
    # Local time zone of the utility: slots, days and holidays are local.
    timezone: str = "Asia/Shanghai"
    holidays_country: str = "CN"
    voltage_standard: Literal["gbt12325", "en50160", "ansi_c84_1"] = "gbt12325"
    # Ingest path: "direct" reads ami.readings with aiokafka getmany batches (stateless,
    # commit after the re-keyed batches are acknowledged); "faust" uses a Faust agent,
    # whose per-message path costs ~270 us CPU (see bench/README.md).
    ingest: Literal["direct", "faust"] = "direct"
    ingest_max_records: PositiveInt = 5000
    # Polls published but not yet acknowledged by the broker while the next is read
    # and validated (1 = wait for the acks before polling again).
    ingest_in_flight: PositiveInt = 2
    # Validation limits.
    max_message_bytes: PositiveInt = 4 * 1024 * 1024
    max_future_s: Positive = 300.0
    late_tolerance_s: Positive = 6 * 3600.0
    # Web/metrics.
    web_host: str = "127.0.0.1"
    web_port: Port = 6066
    metrics_areas_max: Annotated[int, Meta(ge=0)] = 500
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # --- Alert store (shared by the notifier and the console) -------------------------
    # SQLAlchemy URL: sqlite:///path (default, under data_dir) or
    # postgresql+psycopg://user@host:port/db. Same code for both.
    db_url: Url = ""
    # --- Notifier (`meterwatch notify`) -------------------------------------------------
    # Account managers and their channels (CSV: manager_id, name, email, webhook_url,
    # language, quiet_hours, digest). See stream/notify/.
    managers: str = ""
    notify_group: str = "meterwatch-notify"
    smtp_host: str = "127.0.0.1"
    smtp_port: Port = 25
    smtp_user: str = ""
    smtp_password: Secret = ""
    smtp_starttls: bool = False
    smtp_from: str = "meterwatch@localhost"
    # One HMAC-SHA256 key signs every webhook body; receivers verify with it.
    webhook_secret: Secret = ""
    # Webhooks go to public addresses only: one whose host resolves to a loopback,
    # link-local, private, unspecified, multicast or other special address is refused
    # unless the address is in one of these networks (comma-separated CIDR, e.g.
    # "10.20.0.0/16,127.0.0.1/32" for receivers inside the utility's network).
    notify_webhook_allow_networks: str = ""
    # Prometheus Alertmanager base URL (v2 API), for control-room alerts; empty = off.
    alertmanager_url: Url = ""
    # Control room's own channels (besides Alertmanager), and their language.
    control_room_email: str = ""
    control_room_webhook: Url = ""
    control_room_language: Literal["en", "zh-CN"] = "en"
    # Open control-room alerts are re-posted to Alertmanager this often, each with
    # endsAt 4 periods ahead: it resolves them if the notifier stops re-posting.
    alertmanager_refresh_s: Positive = 60.0
    # The notifier's /metrics and /health (a worker on the same host has web_port).
    notify_web_port: Port = 6067
    # Link base for alert pages in messages, e.g. https://meterwatch.example/console
    console_url: Url = "http://127.0.0.1:6080"
    notify_retry_initial_s: Positive = 5.0
    notify_retry_max_s: Positive = 300.0
    # Sent and dead deliveries (and digested items) are deleted from the outbox this
    # long after they were created. At least NOTIFY_HORIZON_DAYS: an alert message older
    # than that is never notified again, so nothing purged can be enqueued again.
    notify_keep_days: KeepDays = 30.0
    # A critical alert unacknowledged this long is escalated to the control room.
    escalate_after_s: Positive = 3600.0
    # Updates of an open alert are batched into one digest per this period.
    update_digest_s: Positive = 3600.0
    # Inspection outcomes the theft model learns from are published from the store to
    # the by-area topic this often (and retried as often while Kafka is down).
    notify_outcome_relay_s: Positive = 5.0
    # --- Console (`meterwatch console`) -------------------------------------------------
    console_host: str = "127.0.0.1"
    console_port: Port = 6080
    session_secret: Secret = ""
    # Cookies marked Secure (turn off only for plain-http local use).
    cookie_secure: bool = True
    # Workers' web address, for a customer's live profile (Faust routes to the owner).
    worker_url: Url = "http://127.0.0.1:6066"
    # Price of a kWh, for the theft work list's money column (0 = no price: kWh only),
    # and the currency it is in (a code shown beside the amounts).
    tariff_per_kwh: Price = 0.0
    currency: str = "GBP"

    @property
    def kafka_url(self) -> str:
        return "kafka://" + ";".join(self.broker.split(","))

    def __repr__(self) -> str:
        # Settings end up in log lines and tracebacks: secrets and URL credentials never.
        body = ", ".join(f"{n}={shown(n, getattr(self, n))!r}" for n in self.__struct_fields__)
        return f"Settings({body})"

    __str__ = __repr__


def setting_names() -> tuple[str, ...]:
    """Every setting's name (``METERWATCH_`` + its upper case is its variable)."""
    return Settings.__struct_fields__


def _annotations() -> dict[str, Any]:
    return typing.get_type_hints(Settings, include_extras=True)


def _metas(tp: Any) -> list[Meta]:
    return [m for m in getattr(tp, "__metadata__", ()) if isinstance(m, Meta)]


_HINTS = _annotations()
_EXTRA = {n: {k: v for m in _metas(tp) for k, v in (m.extra or {}).items()}
          for n, tp in _HINTS.items()}
# Types the loader must prepare an environment string for (see _from_env_string).
_BASE = {n: typing.get_args(tp)[0] if _metas(tp) else tp for n, tp in _HINTS.items()}


# -- what msgspec cannot check: the value's meaning ---------------------------------------

def _timezone(v: str) -> str | None:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(v)
    except Exception:
        return "not a known IANA time zone"
    return None


def _networks(v: str) -> str | None:
    """A comma-separated list of IP networks (CIDR), or empty."""
    import ipaddress

    for part in filter(None, (p.strip() for p in v.split(","))):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            return (f"{part!r} is not an IP network "
                    f"(e.g. 10.20.0.0/16, fd00::/8, 127.0.0.1/32)")
    return None


def _currency(v: str) -> str | None:
    """A currency code or symbol as shown beside amounts: 1-8 printable characters."""
    if not (1 <= len(v) <= 8 and v.isprintable() and not v.isspace()):
        return "must be a currency code of 1-8 characters (e.g. GBP, EUR, CNY)"
    return None


_CHECKS = {"timezone": _timezone, "notify_webhook_allow_networks": _networks,
           "currency": _currency}


# -- loading ------------------------------------------------------------------------------

def load_settings(
    env: Mapping[str, str] | None = None, config_file: str | os.PathLike | None = None,
    **overrides: Any,
) -> Settings:
    """Build :class:`Settings` from defaults, a TOML file, the environment, then overrides.

    >>> s = load_settings(env={"METERWATCH_TOPIC_PARTITIONS": "8"})
    >>> s.topic_partitions
    8
    >>> load_settings(env={"METERWATCH_STORE": "redis"})
    Traceback (most recent call last):
    ...
    stream.settings.SettingsError: store (environment METERWATCH_STORE) = 'redis': must be one of memory, rocksdb
    """
    env = os.environ if env is None else env
    values: dict[str, tuple[Any, str]] = {}
    config_file = config_file or env.get(PREFIX + "CONFIG") or None
    if config_file:
        values.update(_from_file(Path(config_file)))
    values.update(_from_env(env))
    values.update(_from_overrides(overrides))
    raw = {name: v for name, (v, _) in values.items()}
    try:
        s = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as e:
        raise _validation_error(e, values) from None
    for name, check in _CHECKS.items():
        why = check(getattr(s, name)) if name in values else None
        if why:
            raise SettingsError(_message(name, values[name], why))
    return s


def _from_env(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    values = {}
    for k, v in env.items():
        if not k.startswith(PREFIX) or k in (PREFIX + "CONFIG", PREFIX + "KAFKA_CACHE"):
            continue  # read by the loader itself / by stream.dev.kafka_local
        name = k[len(PREFIX):].lower()
        if name not in _HINTS:
            # A typo'd variable would otherwise be ignored in silence. Its value is not
            # shown: a misspelt METERWATCH_SESION_SECRET holds a secret all the same.
            raise SettingsError(f"unknown setting {k}{_did_you_mean(name, PREFIX)} "
                                f"(known: {', '.join(sorted(_HINTS))})")
        values[name] = (_from_env_string(name, v), f"environment {k}")
    return values


# msgspec (strict=False) reads true/false/1/0 for a bool; these spellings were accepted
# before it and deployments use them.
_BOOL_WORDS = {"yes": "true", "on": "true", "no": "false", "off": "false"}


def _from_env_string(name: str, v: str) -> str:
    """An environment string as msgspec reads it: numbers and bools without padding."""
    if _BASE[name] is bool:
        w = v.strip().lower()
        return _BOOL_WORDS.get(w, w)
    return v.strip() if _BASE[name] in (int, float) else v


def _from_overrides(overrides: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    values = {}
    for k, v in overrides.items():
        if k not in _HINTS:
            raise SettingsError(f"unknown setting {k!r}")
        if v is not None:
            values[k] = (v, "command line")
    return values


def _from_file(path: Path) -> dict[str, tuple[Any, str]]:
    """The ``[meterwatch]`` settings of a TOML file (or its top level), with their source."""
    doc = read_toml(path, "config file", SettingsError)
    values = {}
    for k, v in doc.get("meterwatch", doc).items():
        if isinstance(v, dict):
            continue  # other sections (detectors) belong to other readers
        if k not in _HINTS:
            raise SettingsError(f"config file {path}: unknown setting {k!r}{_did_you_mean(k)}")
        values[k] = (v, f"config file {path}")
    return values


def _did_you_mean(name: str, prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(_HINTS), n=1, cutoff=0.75)
    return f": did you mean {prefix}{close[0].upper() if prefix else close[0]}?" if close else ""


_AT = re.compile(r" - at `\$\.(\w+)`$")


def _validation_error(e: msgspec.ValidationError, values: Mapping[str, tuple[Any, str]],
                      ) -> SettingsError:
    """msgspec's error ("Expected `int` <= 65535 - at `$.web_port`") as a SettingsError
    naming the setting, its source and what it must be; a secret value never shown."""
    m = _AT.search(str(e))
    if m is None or m.group(1) not in values:
        return SettingsError(str(e))
    name = m.group(1)
    return SettingsError(_message(name, values[name], _why(name, str(e)[:m.start()])))


def _why(name: str, expected: str) -> str:
    """What the value must be: the allowed choices, or msgspec's words with the reason."""
    base = _BASE[name]
    if typing.get_origin(base) is Literal:
        return "must be one of " + ", ".join(typing.get_args(base))
    notes = [m.description for m in _metas(_HINTS[name]) if m.description]
    return f"{expected} ({'; '.join(notes)})" if notes else expected


def _message(name: str, value_source: tuple[Any, str], why: str) -> str:
    value, source = value_source
    return f"{name} ({source}) = {shown(name, value)!r}: {why}"


def replace(s: Settings, **changes: Any) -> Settings:
    """``s`` with ``changes`` (not checked: callers set values they computed)."""
    return msgspec.structs.replace(s, **changes)
