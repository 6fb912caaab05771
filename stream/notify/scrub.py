"""What the notifier may repeat of text it did not write.

A webhook receiver's error body can echo credentials of that service (its own tokens,
the request's headers, a stack trace with a database URL); an alert field can hold line
breaks that would end an email header. :func:`excerpt` keeps a short, single-line,
redacted piece of a body for a log line; :func:`header_value` makes data safe for a
header.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

REDACTED = "***"
EXCERPT_CHARS = 200

_SECRET_WORD = (r"(?:access[_-]?token|refresh[_-]?token|id[_-]?token|token|secret|"
                r"client[_-]?secret|password|passwd|pwd|pass|api[_-]?key|apikey|"
                r"access[_-]?key|private[_-]?key|key|auth|authorization|credentials?|"
                r"session(?:[_-]?id)?|cookie|signature|sig)")
_RULES = [
    # "Authorization: Bearer abc", "bearer=abc", "Basic dXNlcjpw"
    (re.compile(r"(?i)\b(bearer|basic|token|digest)(\s+|=)[A-Za-z0-9._~+/=\-]{4,}"),
     lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}"),
    # password=..., "api_key": "...", secret: ...
    (re.compile(r"""(?ix)(["']?\b[\w.\-]*""" + _SECRET_WORD + r"""["']?\s*[:=]\s*)
                   (?!(?:bearer|basic|digest)\s)("[^"]*"|'[^']*'|[^\s,;&}\]]+)"""),
     lambda m: m.group(1) + REDACTED),
    # userinfo of a URL: scheme://user:password@host
    (re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^/\s:@]*):[^@\s/]+@"),
     lambda m: f"{m.group(1)}:{REDACTED}@"),
    # JWTs and other long tokens (letters and digits mixed, 24+ characters; alert ids
    # have 20)
    (re.compile(r"\beyJ[\w\-]+\.[\w\-]+\.[\w\-]*"), lambda m: REDACTED),
    (re.compile(r"(?=[A-Za-z0-9_\-+/=]*\d)(?=[A-Za-z0-9_\-+/=]*[A-Za-z])"
                r"[A-Za-z0-9_\-+/=]{24,}"), lambda m: REDACTED),
]


def one_line(text: str) -> str:
    """``text`` with control, format and line/paragraph separator characters (CR, LF,
    NUL, ESC, U+2028, U+2029, bidi overrides...) made spaces, runs of spaces one."""
    out = "".join(" " if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in text)
    return " ".join(out.split())


def redact(text: str) -> str:
    """``text`` with what looks like a credential replaced by ``***``.

    >>> redact('{"error":"bad","api_key":"k-123","hint":"Authorization: Bearer abc.def"}')
    '{"error":"bad","api_key":***,"hint":"Authorization: Bearer ***"}'
    """
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text


def excerpt(body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """A piece of a response body fit for a log line: one line, redacted, at most
    ``limit`` characters (an ellipsis says it was cut)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = redact(one_line(text[:8 * limit]))  # cut first: bounded work on a huge body
    return text if len(text) <= limit else text[:limit - 1] + "…"


def header_value(value: object, limit: int = 200) -> str:
    """A header value built from data: one line (no CR/LF/U+2028 to end the header and
    start another) and at most ``limit`` characters."""
    text = one_line(str(value))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def http_header_value(value: str) -> str:
    """``value`` for an HTTP header: printable ASCII as is, anything else (line breaks,
    control characters, non-ASCII) percent-encoded, so the same key always gives the
    same header.

    >>> http_header_value("a1\\r\\nX: 1 电")
    'a1%0D%0AX: 1 %E7%94%B5'
    """
    return "".join(c if " " <= c <= "~" and c != "%" else quote(c, safe="", errors="backslashreplace") for c in value)
