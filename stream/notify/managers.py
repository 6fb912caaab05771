"""Account managers and how to reach them (``METERWATCH_MANAGERS``, a CSV file).

Columns (header required, order free; ``name``, ``quiet_hours`` and ``digest`` optional)::

    manager_id, name, email, webhook_url, language, quiet_hours, digest

* ``manager_id``: the id the meter registry's ``account_manager`` column uses.
* ``email`` and/or ``webhook_url`` (http or https): at least one channel.
* ``language``: ``en`` or ``zh-CN``: the language of this manager's messages.
* ``quiet_hours``: ``HH:MM-HH:MM`` in the utility's time zone (``METERWATCH_TIMEZONE``),
  may wrap midnight (``22:00-07:00``); empty or ``none`` for none. Non-critical messages
  due inside are held and sent when the quiet hours end.
* ``digest``: ``none`` (default: each alert when raised) or ``daily@HH:MM``: non-critical
  alerts, and every update, go out in one digest a day at that local time.

A bad row stops the load with its line number; a reload that fails keeps the previous
managers (the notifier goes on).

>>> m = Managers.from_csv_text(
...     "manager_id,name,email,webhook_url,language,quiet_hours,digest\\n"
...     "mgr-01,Li Wei,li.wei@example.cn,,zh-CN,22:00-07:00,daily@08:30\\n")
>>> m["mgr-01"].channels, m["mgr-01"].quiet_hours, m["mgr-01"].digest_at
(('email',), (1320, 420), 510)
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from stream.csvfile import CsvFile

LANGUAGES = ("en", "zh-CN")
CONTROL_ROOM = "control_room"
REQUIRED = ("manager_id", "email", "webhook_url", "language")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
# Deliberately plain: one @, no spaces, commas or angle brackets (a header injection
# guard as much as a format check); the SMTP server has the last word.
_EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+$")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class ManagersError(ValueError):
    pass


def parse_hhmm(s: str) -> int:
    """Minutes after local midnight of ``HH:MM``."""
    m = _HHMM.match(s.strip())
    if not m:
        raise ValueError(f"{s!r} is not a time HH:MM")
    return int(m.group(1)) * 60 + int(m.group(2))


@dataclass(frozen=True)
class Manager:
    manager_id: str
    name: str = ""
    email: str = ""
    webhook_url: str = field(default="", repr=False)  # may carry a token: never shown
    language: str = "en"
    quiet_hours: tuple[int, int] | None = None  # (start, end) minutes after midnight
    digest_at: int | None = None  # daily digest time, minutes after midnight

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, a in (("email", self.email), ("webhook", self.webhook_url)) if a)

    def address(self, channel: str) -> str:
        return {"email": self.email, "webhook": self.webhook_url}[channel]

    def quiet_until(self, now: float, tz: ZoneInfo) -> float | None:
        """End of the quiet hours ``now`` falls in (epoch seconds), or None if not quiet."""
        if self.quiet_hours is None:
            return None
        start, end = self.quiet_hours
        local = datetime.fromtimestamp(now, tz)
        minute = local.hour * 60 + local.minute
        if start < end:
            inside = start <= minute < end
        else:  # wraps midnight
            inside = minute >= start or minute < end
        if not inside:
            return None
        day = local.date()
        if start > end and minute >= start:
            day += timedelta(days=1)
        return _local(day, end, tz)

    def next_digest(self, now: float, tz: ZoneInfo) -> float | None:
        """The first daily digest time strictly after ``now``, or None without a digest."""
        if self.digest_at is None:
            return None
        local = datetime.fromtimestamp(now, tz)
        t = _local(local.date(), self.digest_at, tz)
        if t <= now:
            t = _local(local.date() + timedelta(days=1), self.digest_at, tz)
        return t


def _local(day, minute: int, tz: ZoneInfo) -> float:
    return datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz).timestamp()


@dataclass
class Managers(CsvFile):
    what = "managers file"
    error = ManagersError

    by_id: dict[str, Manager]
    source: str = ""
    mtime: float = 0.0

    def __getitem__(self, manager_id: str) -> Manager:
        return self.by_id[manager_id]

    def get(self, manager_id: str | None) -> Manager | None:
        return self.by_id.get(manager_id) if manager_id else None

    def __len__(self) -> int:
        return len(self.by_id)

    def __iter__(self):
        return iter(self.by_id.values())

    @classmethod
    def empty(cls) -> "Managers":
        return cls({})

    @classmethod
    def from_csv_text(cls, text: str, source: str = "<text>") -> "Managers":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            raise ManagersError(f"{source}: empty managers file")
        header = [(h or "").strip() for h in reader.fieldnames]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ManagersError(f"{source}: missing column(s) {', '.join(missing)}")
        out: dict[str, Manager] = {}
        lines: dict[str, int] = {}
        for lineno, raw in enumerate(reader, start=2):
            r = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(r.values()):
                continue  # a blank line
            where = f"{source}:{lineno}"
            mid = r["manager_id"]
            if not _ID.match(mid):
                raise ManagersError(f"{where}: manager_id {mid!r} must be 1-64 characters of "
                                    f"letters, digits and . _ : -")
            if mid == CONTROL_ROOM:
                raise ManagersError(f"{where}: manager_id {CONTROL_ROOM!r} is reserved for the "
                                    f"control room (configured in settings)")
            if mid in out:
                raise ManagersError(f"{where}: manager_id {mid!r} appears twice "
                                    f"(first on line {lines[mid]})")
            email, url = r["email"], r["webhook_url"]
            if not email and not url:
                raise ManagersError(f"{where}: manager {mid!r} has no channel: give an email "
                                    f"address, a webhook_url, or both")
            if email and not _EMAIL.match(email):
                raise ManagersError(f"{where}: email {email!r} is not an address like "
                                    f"name@example.org")
            if url and not re.match(r"^https?://[^\s/]+", url):
                raise ManagersError(f"{where}: webhook_url must be an http:// or https:// URL")
            lang = {"en": "en", "zh-cn": "zh-CN", "zh": "zh-CN"}.get(r["language"].lower())
            if lang is None:
                raise ManagersError(f"{where}: language {r['language']!r} must be en or zh-CN")
            quiet = None
            q = r.get("quiet_hours", "")
            if q and q.lower() != "none":
                try:
                    a, b = q.split("-")
                    quiet = (parse_hhmm(a), parse_hhmm(b))
                except ValueError:
                    raise ManagersError(f"{where}: quiet_hours {q!r} must be HH:MM-HH:MM "
                                        f"(e.g. 22:00-07:00) or none") from None
                if quiet[0] == quiet[1]:
                    raise ManagersError(f"{where}: quiet_hours {q!r} start and end are equal")
            digest_at = None
            d = r.get("digest", "")
            if d and d.lower() != "none":
                m = re.match(r"^daily@(.+)$", d)
                try:
                    if not m:
                        raise ValueError
                    digest_at = parse_hhmm(m.group(1))
                except ValueError:
                    raise ManagersError(f"{where}: digest {d!r} must be none or daily@HH:MM") from None
            out[mid] = Manager(mid, r.get("name", ""), email, url, lang, quiet, digest_at)
            lines[mid] = lineno
        return cls(out, source)
