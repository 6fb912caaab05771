"""Configuration kept in a CSV file that operators edit while the services run (the
meter registry, the account managers): loaded once, re-read when the file changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, TypeVar

T = TypeVar("T", bound="CsvFile")


class CsvFile:
    """Mixin: ``load`` and ``reload_if_changed`` for a class with ``from_csv_text(text,
    source)`` and ``source``/``mtime`` fields. ``what`` names the file in errors and
    ``error`` is the class's own error type."""

    what: ClassVar[str] = "file"
    error: ClassVar[type[Exception]] = ValueError
    source: str
    mtime: float

    @classmethod
    def load(cls: type[T], path: str | os.PathLike) -> T:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise cls.error(f"{cls.what} {p} does not exist") from None
        obj = cls.from_csv_text(text, str(p))  # type: ignore[attr-defined]
        obj.mtime = p.stat().st_mtime
        return obj

    def reload_if_changed(self: T) -> T:
        """The file re-read if it changed; self if unchanged or gone.

        A bad file raises the class's error: the caller keeps what it has.
        """
        if not self.source or not os.path.exists(self.source):
            return self
        if os.stat(self.source).st_mtime == self.mtime:
            return self
        return type(self).load(self.source)
