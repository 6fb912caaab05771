"""CSV cells built from data, made inert for spreadsheets (both console exports use it)."""

from __future__ import annotations

import re

# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV
# injection"); a plain number such as -3.5 is a number, not a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def text_cell(v: object) -> str:
    """A text cell built from data, made inert for spreadsheets: a leading formula
    character gets a single quote before it (shown as text, not evaluated).

    >>> [text_cell(x) for x in ("=HYPERLINK(1)", "-3.5", "@SUM(A1)", "MTR-1", None)]
    ["'=HYPERLINK(1)", '-3.5', "'@SUM(A1)", 'MTR-1', '']
    """
    s = "" if v is None else str(v)
    if s.startswith(_FORMULA_START) and not _NUMBER.fullmatch(s):
        return "'" + s
    return s
