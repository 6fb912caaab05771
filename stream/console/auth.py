"""Sessions, CSRF tokens, login rate limiting and who may see what.

Sessions are a signed cookie (HMAC-SHA256 with a key derived from
``settings.session_secret``), no server-side session table: the cookie holds the
username, the session's CSRF token, its expiry, a fingerprint of the user's password
hash and the account's session generation (``users.session_gen``) when it was issued.
Every request re-reads the user and compares both, so logging out, a changed password
or a disabled account (each bumps the generation) ends every session of the account at
once, also a cookie copied before. The payload is signed, not encrypted: it holds
nothing the user may not read (their own name and CSRF token).

Cookie: ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, and ``Secure`` per
``settings.cookie_secure``; when secure it is named ``__Host-mw_session`` so a browser
refuses it unless it came over https from this exact host.

Login throttling: an attempt is counted *before* its password is checked, so parallel
guesses cannot all pass the check while the first ones are still being verified.

CSRF: every visitor (also before login) has a session with a random token; every POST
form carries it as ``csrf_token`` and the middleware compares it in constant time. Login
issues a fresh session (new token) so a token seen before login is worthless after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

MIN_SECRET_LEN = 32
SESSION_TTL_S = 12 * 3600  # a working day; then log in again
ANON_TTL_S = 2 * 3600  # a pre-login session (only carries the login form's CSRF token)
CSRF_FIELD = "csrf_token"

# What each role may do beyond reading alerts (managers: only their own).
SEE_ALL = frozenset({"control_room", "engineer", "admin"})
SEE_AUDIT = frozenset({"engineer", "admin"})
MANAGE_USERS = frozenset({"admin"})


class SecretError(ValueError):
    """The session secret is missing or too short to sign sessions with."""


def check_secret(secret: str) -> None:
    if len(secret) < MIN_SECRET_LEN:
        raise SecretError(
            f"METERWATCH_SESSION_SECRET must be at least {MIN_SECRET_LEN} characters "
            f"(it signs the session cookies); e.g. `python -c 'import secrets; "
            f"print(secrets.token_urlsafe(48))'`. `meterwatch console --dev` makes an "
            f"ephemeral one for local use.")


def cookie_name(secure: bool) -> str:
    return "__Host-mw_session" if secure else "mw_session"


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class SessionCodec:
    """Signs and verifies session cookie values; keys derived from the session secret."""

    def __init__(self, secret: str) -> None:
        check_secret(secret)
        raw = secret.encode("utf-8")
        self._sign_key = hashlib.sha256(b"meterwatch-console/session\0" + raw).digest()
        self._fp_key = hashlib.sha256(b"meterwatch-console/password-fp\0" + raw).digest()

    def dumps(self, data: dict[str, Any]) -> str:
        body = _b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())
        sig = hmac.new(self._sign_key, body.encode("ascii"), hashlib.sha256).digest()
        return body + "." + _b64(sig)

    def loads(self, value: str | None, now: float | None = None) -> dict[str, Any] | None:
        """The session in a cookie value, or None if absent, forged, malformed or expired."""
        if not value or len(value) > 4096 or value.count(".") != 1:
            return None
        body, sig = value.split(".")
        want = hmac.new(self._sign_key, body.encode("ascii", "replace"), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(sig), want):
                return None
            data = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        now = time.time() if now is None else now
        exp = data.get("exp")
        if not isinstance(exp, (int, float)) or exp < now:
            return None
        return data

    def password_fingerprint(self, password_hash: str) -> str:
        """Changes when the password does: a session made before a change stops working."""
        return _b64(hmac.new(self._fp_key, password_hash.encode(), hashlib.sha256).digest()[:12])

    @staticmethod
    def new_session(username: str | None = None, pv: str | None = None, gen: int = 0,
                    now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        s: dict[str, Any] = {"csrf": secrets.token_urlsafe(32), "iat": int(now)}
        if username is None:
            s["exp"] = int(now + ANON_TTL_S)
        else:
            s.update(u=username, pv=pv, g=int(gen), exp=int(now + SESSION_TTL_S))
        return s


def csrf_ok(session: dict[str, Any] | None, submitted: Any) -> bool:
    if not session or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(session["csrf"].encode(), submitted.encode("utf-8", "replace"))


class RateLimiter:
    """Failed logins per key (a username, a client address) in a sliding window.

    After ``max_failures`` failures within ``window_s`` the key is refused until the
    oldest of them leaves the window. In process memory: one console process.

    :meth:`attempt` counts an attempt as a failure up front and :meth:`forgive` takes it
    back when it succeeds: checking and counting happen in one step (no await between),
    so however many requests race, at most ``max_failures`` get their password checked.
    """

    def __init__(self, max_failures: int = 5, window_s: float = 300.0,
                 max_keys: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._fails.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
            return None
        return q

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may try again; 0 if it may now."""
        now = time.monotonic() if now is None else now
        q = self._recent(key, now)
        if q is None or len(q) < self.max_failures:
            return 0.0
        return max(q[-self.max_failures] + self.window_s - now, 1.0)

    def fail(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._fails) >= self.max_keys:
            self._prune(now)
        q = self._recent(key, now)
        if q is None:
            q = self._fails[key] = deque(maxlen=self.max_failures * 4)
        q.append(now)

    def attempt(self, keys: tuple[str, ...], now: float | None = None) -> tuple[float, float]:
        """Take an attempt for every key if none is locked: ``(0, stamp)``; else
        ``(seconds to wait, 0)`` and nothing is counted."""
        now = time.monotonic() if now is None else now
        wait = max(self.retry_after(k, now) for k in keys)
        if wait > 0:
            return wait, 0.0
        for k in keys:
            self.fail(k, now)
        return 0.0, now

    def forgive(self, key: str, stamp: float) -> None:
        """Take back the attempt :meth:`attempt` counted at ``stamp`` (it succeeded)."""
        q = self._fails.get(key)
        if q is None:
            return
        try:
            q.remove(stamp)
        except ValueError:
            return
        if not q:
            del self._fails[key]

    def reset(self, key: str) -> None:
        self._fails.pop(key, None)

    def _prune(self, now: float) -> None:
        for k in list(self._fails):
            self._recent(k, now)
        if len(self._fails) >= self.max_keys:  # a flood of distinct keys: forget the oldest
            for k in sorted(self._fails, key=lambda k: self._fails[k][-1])[: self.max_keys // 2]:
                del self._fails[k]


@dataclass(frozen=True)
class User:
    username: str
    role: str
    manager_id: str | None

    @property
    def sees_all(self) -> bool:
        return self.role in SEE_ALL

    @property
    def scope(self) -> str | None:
        """The manager id that limits what this user sees; None = everything."""
        if self.sees_all:
            return None
        # A manager without a manager id sees nothing rather than everything.
        return self.manager_id or "\0none"

    @property
    def can_see_audit(self) -> bool:
        return self.role in SEE_AUDIT

    @property
    def can_manage_users(self) -> bool:
        return self.role in MANAGE_USERS
