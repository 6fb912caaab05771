"""One typed settings object, read from ``METERWATCH_*`` environment variables and an
optional TOML file (``METERWATCH_CONFIG`` or ``--config``).

Precedence: defaults < TOML file < environment. A wrong value stops start-up with a
message that names the setting and the source it came from, because a worker that
starts with a silently defaulted broker address or standard is worse than one that
refuses to start.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PREFIX = "METERWATCH_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


def _choice(*allowed: str):
    def check(name: str, v: str) -> str:
        if v not in allowed:
            raise SettingsError(f"{name}={v!r}: must be one of {', '.join(allowed)}")
        return v

    return check


def _positive(name: str, v: float) -> float:
    if not v > 0:  # also rejects NaN
        raise SettingsError(f"{name}={v!r}: must be > 0")
    return v


def _non_negative(name: str, v: float) -> float:
    if not v >= 0:
        raise SettingsError(f"{name}={v!r}: must be >= 0")
    return v


def _at_least(lo: float, why: str):
    def check(name: str, v: float) -> float:
        if not v >= lo:  # also rejects NaN
            raise SettingsError(f"{name}={v!r}: must be >= {lo:g} ({why})")
        return v

    return check


# -- secrets in what is shown ----------------------------------------------------------
# A field with metadata {"secret": True} is never shown; one with {"url": True} is shown
# through redact_url (its userinfo password, query values and token-like path segments
# hidden). That covers repr/str of Settings and the errors of load_settings.
REDACTED = "<redacted>"
_TOKENISH = re.compile(r"(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{16,}")


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
    meta = _FIELD_META.get(name, {})
    if meta.get("secret"):
        return REDACTED if value else ""
    if meta.get("url") and isinstance(value, str) and value:
        return redact_url(value)
    return value


# The notifier never notifies an alert message produced longer ago than this (a new
# consumer group reading the topic's history must not mail a year of alerts).
NOTIFY_HORIZON_DAYS = 3.0


def _timezone(name: str, v: str) -> str:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(v)
    except Exception:
        raise SettingsError(f"{name}={v!r}: not a known IANA time zone") from None
    return v


def _networks(name: str, v: str) -> str:
    """A comma-separated list of IP networks (CIDR), or empty."""
    import ipaddress

    for part in filter(None, (p.strip() for p in v.split(","))):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise SettingsError(f"{name}={v!r}: {part!r} is not an IP network "
                                f"(e.g. 10.20.0.0/16, fd00::/8, 127.0.0.1/32)") from None
    return v


def _price(name: str, v: float) -> float:
    if not 0 <= v < float("inf"):  # also rejects NaN
        raise SettingsError(f"{name}={v!r}: must be a finite number >= 0 (0 = no price)")
    return v


def _currency(name: str, v: str) -> str:
    """A currency code or symbol as shown beside amounts: 1-8 printable characters."""
    if not (1 <= len(v) <= 8 and v.isprintable() and not v.isspace()):
        raise SettingsError(f"{name}={v!r}: must be a currency code of 1-8 characters "
                            f"(e.g. GBP, EUR, CNY)")
    return v


def _port(name: str, v: int) -> int:
    if not 0 <= v <= 65535:
        raise SettingsError(f"{name}={v!r}: must be a TCP port (0-65535)")
    return v


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything a meterwatch process can be told. Field names map to env vars:
    ``broker`` is ``METERWATCH_BROKER`` and ``[meterwatch] broker`` in TOML."""

    # Kafka. Empty broker means "none configured": `demo` starts the local one.
    broker: str = ""
    app_id: str = "meterwatch"
    topic_partitions: int = field(default=4, metadata={"check": _positive})
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
    session_timeout_s: float = field(default=10.0, metadata={"check": _at_least(
        6.0, "the broker's default group.min.session.timeout.ms")})
    # State store: memory (changelog only) or rocksdb (for fleets beyond RAM).
    store: str = field(default="memory", metadata={"check": _choice("memory", "rocksdb")})
    data_dir: str = str(PROJECT_ROOT / ".data")
    # Registry of meters (CSV); reloaded when the file changes.
    registry: str = ""
    registry_reload_s: float = field(default=30.0, metadata={"check": _positive})
    # Detector configuration file (TOML); empty = the shipped defaults.
    detectors_config: str = ""
    # Local time zone of the utility: slots, days and holidays are local.
    timezone: str = field(default="Asia/Shanghai", metadata={"check": _timezone})
    holidays_country: str = "CN"
    voltage_standard: str = field(
        default="gbt12325", metadata={"check": _choice("gbt12325", "en50160", "ansi_c84_1")}
    )
    # Ingest path: "direct" reads ami.readings with aiokafka getmany batches (stateless,
    # commit after the re-keyed batches are acknowledged); "faust" uses a Faust agent,
    # whose per-message path costs ~270 us CPU (see bench/README.md).
    ingest: str = field(default="direct", metadata={"check": _choice("direct", "faust")})
    ingest_max_records: int = field(default=5000, metadata={"check": _positive})
    # Polls published but not yet acknowledged by the broker while the next is read
    # and validated (1 = wait for the acks before polling again).
    ingest_in_flight: int = field(default=2, metadata={"check": _positive})
    # Validation limits.
    max_message_bytes: int = field(default=4 * 1024 * 1024, metadata={"check": _positive})
    max_future_s: float = field(default=300.0, metadata={"check": _positive})
    late_tolerance_s: float = field(default=6 * 3600.0, metadata={"check": _positive})
    # Web/metrics.
    web_host: str = "127.0.0.1"
    web_port: int = field(default=6066, metadata={"check": _port})
    metrics_areas_max: int = field(default=500, metadata={"check": _non_negative})
    log_level: str = field(
        default="info", metadata={"check": _choice("debug", "info", "warning", "error")}
    )

    # --- Alert store (shared by the notifier and the console) -------------------------
    # SQLAlchemy URL: sqlite:///path (default, under data_dir) or
    # postgresql+psycopg://user@host:port/db. Same code for both.
    db_url: str = field(default="", metadata={"url": True})
    # --- Notifier (`meterwatch notify`) -------------------------------------------------
    # Account managers and their channels (CSV: manager_id, name, email, webhook_url,
    # language, quiet_hours, digest). See stream/notify/.
    managers: str = ""
    notify_group: str = "meterwatch-notify"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = field(default=25, metadata={"check": _port})
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False, metadata={"secret": True})
    smtp_starttls: bool = False
    smtp_from: str = "meterwatch@localhost"
    # One HMAC-SHA256 key signs every webhook body; receivers verify with it.
    webhook_secret: str = field(default="", repr=False, metadata={"secret": True})
    # Webhooks go to public addresses only: one whose host resolves to a loopback,
    # link-local, private, unspecified, multicast or other special address is refused
    # unless the address is in one of these networks (comma-separated CIDR, e.g.
    # "10.20.0.0/16,127.0.0.1/32" for receivers inside the utility's network).
    notify_webhook_allow_networks: str = field(default="", metadata={"check": _networks})
    # Prometheus Alertmanager base URL (v2 API), for control-room alerts; empty = off.
    alertmanager_url: str = field(default="", metadata={"url": True})
    # Control room's own channels (besides Alertmanager), and their language.
    control_room_email: str = ""
    control_room_webhook: str = field(default="", metadata={"url": True})
    control_room_language: str = field(default="en", metadata={"check": _choice("en", "zh-CN")})
    # Open control-room alerts are re-posted to Alertmanager this often, each with
    # endsAt 4 periods ahead: it resolves them if the notifier stops re-posting.
    alertmanager_refresh_s: float = field(default=60.0, metadata={"check": _positive})
    # The notifier's /metrics and /health (a worker on the same host has web_port).
    notify_web_port: int = field(default=6067, metadata={"check": _port})
    # Link base for alert pages in messages, e.g. https://meterwatch.example/console
    console_url: str = field(default="http://127.0.0.1:6080", metadata={"url": True})
    notify_retry_initial_s: float = field(default=5.0, metadata={"check": _positive})
    notify_retry_max_s: float = field(default=300.0, metadata={"check": _positive})
    # Sent and dead deliveries (and digested items) are deleted from the outbox this
    # long after they were created. At least NOTIFY_HORIZON_DAYS: an alert message older
    # than that is never notified again, so nothing purged can be enqueued again.
    notify_keep_days: float = field(default=30.0, metadata={"check": _at_least(
        NOTIFY_HORIZON_DAYS, "the notifier's horizon: a purged row must not come back")})
    # A critical alert unacknowledged this long is escalated to the control room.
    escalate_after_s: float = field(default=3600.0, metadata={"check": _positive})
    # Updates of an open alert are batched into one digest per this period.
    update_digest_s: float = field(default=3600.0, metadata={"check": _positive})
    # Inspection outcomes the theft model learns from are published from the store to
    # the by-area topic this often (and retried as often while Kafka is down).
    notify_outcome_relay_s: float = field(default=5.0, metadata={"check": _positive})
    # --- Console (`meterwatch console`) -------------------------------------------------
    console_host: str = "127.0.0.1"
    console_port: int = field(default=6080, metadata={"check": _port})
    session_secret: str = field(default="", repr=False, metadata={"secret": True})
    # Cookies marked Secure (turn off only for plain-http local use).
    cookie_secure: bool = True
    # Workers' web address, for a customer's live profile (Faust routes to the owner).
    worker_url: str = field(default="http://127.0.0.1:6066", metadata={"url": True})
    # Price of a kWh, for the theft work list's money column (0 = no price: kWh only),
    # and the currency it is in (a code shown beside the amounts).
    tariff_per_kwh: float = field(default=0.0, metadata={"check": _price})
    currency: str = field(default="GBP", metadata={"check": _currency})

    @property
    def kafka_url(self) -> str:
        return "kafka://" + ";".join(self.broker.split(","))

    def __repr__(self) -> str:
        # Settings end up in log lines and tracebacks: secrets and URL credentials never.
        body = ", ".join(f"{f.name}={shown(f.name, getattr(self, f.name))!r}"
                         for f in fields(self))
        return f"Settings({body})"

    __str__ = __repr__


_FIELD_META = {f.name: f.metadata for f in fields(Settings)}


def _coerce(name: str, raw: Any, typ: type, source: str) -> Any:
    """``raw`` as ``typ``; an error names the setting and source, never a secret."""
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if typ is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("expected an integer")
            return int(raw)
        if typ is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        return str(raw)
    except ValueError as e:
        raise SettingsError(f"{name} ({source}) = {shown(name, raw)!r}: {e}") from None


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
    known = {f.name: f for f in fields(Settings)}
    types = {f.name: type(f.default) for f in fields(Settings)}
    values: dict[str, tuple[Any, str]] = {}

    config_file = config_file or env.get(PREFIX + "CONFIG") or None
    if config_file:
        values.update(_from_file(Path(config_file), known))
    for k, v in env.items():
        if not k.startswith(PREFIX) or k in (PREFIX + "CONFIG", PREFIX + "KAFKA_CACHE"):
            continue  # read by the loader itself / by stream.kafka_local
        name = k[len(PREFIX):].lower()
        if name not in known:
            # A typo'd variable would otherwise be ignored in silence. Its value is not
            # shown: a misspelt METERWATCH_SESION_SECRET holds a secret all the same.
            raise SettingsError(f"unknown setting {k}{_did_you_mean(name, known, PREFIX)} "
                                f"(known: {', '.join(sorted(known))})")
        values[name] = (v, f"environment {k}")
    for k, v in overrides.items():
        if k not in known:
            raise SettingsError(f"unknown setting {k!r}")
        if v is not None:
            values[k] = (v, "command line")

    out: dict[str, Any] = {}
    for name, (raw, source) in values.items():
        v = _coerce(name, raw, types[name], source)
        check = known[name].metadata.get("check")
        if check is not None:
            try:
                v = check(name, v)
            except SettingsError as e:
                raise SettingsError(_check_error(name, v, source, str(e))) from None
        out[name] = v
    return Settings(**out)


def _from_file(path: Path, known: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """The ``[meterwatch]`` settings of a TOML file (or its top level), with their source."""
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"config file {path}: {e}") from None
    values = {}
    for k, v in doc.get("meterwatch", doc).items():
        if isinstance(v, dict):
            continue  # other sections (detectors) belong to other readers
        if k not in known:
            raise SettingsError(f"config file {path}: unknown setting {k!r}"
                                f"{_did_you_mean(k, known)}")
        values[k] = (v, f"config file {path}")
    return values


def _did_you_mean(name: str, known: Mapping[str, Any], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f": did you mean {prefix}{close[0].upper() if prefix else close[0]}?" if close else ""


def _check_error(name: str, v: Any, source: str, message: str) -> str:
    """A check's message ("name=value: why") naming the source, the value as shown."""
    return message.replace(f"{name}={v!r}", f"{name} ({source}) = {shown(name, v)!r}", 1)


def replace(s: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(s, **changes)
