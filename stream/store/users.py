"""Console accounts, their sessions, and the audit log of who did what.

Passwords are argon2id hashes. A console session carries the account's session
generation; bumping it (logout, password change, disabling) ends every session of the
account at once.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from stream.store.db import NotFound, Repository, now_or
from stream.store.schema import ROLES, audit, users

MIN_PASSWORD = 8


def write_audit(c, actor: str, action: str, target: str | None, detail: Any,
                now: float) -> None:
    """One audit row, inside the caller's transaction (so the action and its record
    commit together)."""
    c.execute(audit.insert().values(
        at=now, actor=actor, action=action, target=target,
        detail=None if detail is None else json.dumps(detail, sort_keys=True)))


class UserRepository(Repository):
    """Accounts (roles, passwords, session generations) and the audit log."""

    # ---- accounts -----------------------------------------------------------------------

    def create_user(self, username: str, password: str, role: str, *,
                    manager_id: str | None = None, actor: str = "system",
                    now: float | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: must be one of {', '.join(ROLES)}")
        if role == "manager" and not manager_id:
            raise ValueError("a manager account needs the manager id it looks after")
        _check_password(password)
        now = now_or(now)
        with self.engine.begin() as c:
            c.execute(users.insert().values(username=username, password_hash=_hasher().hash(password),
                                            role=role, manager_id=manager_id, created_at=now))
            write_audit(c, actor, "create_user", username, {"role": role}, now)

    def set_password(self, username: str, password: str, *, actor: str = "system") -> None:
        _check_password(password)
        with self.engine.begin() as c:
            r = c.execute(users.update().where(users.c.username == username)
                          .values(password_hash=_hasher().hash(password),
                                  session_gen=users.c.session_gen + 1))
            if r.rowcount == 0:
                raise NotFound(username)
            write_audit(c, actor, "set_password", username, None, now_or(None))

    def set_disabled(self, username: str, disabled: bool, *, actor: str,
                     now: float | None = None) -> bool:
        """Disable (or re-enable) an account, audited; False if there is no such user.
        Either way its sessions end (a new generation)."""
        now = now_or(now)
        with self.engine.begin() as c:
            r = c.execute(users.update().where(users.c.username == username)
                          .values(disabled=bool(disabled), session_gen=users.c.session_gen + 1))
            if r.rowcount == 0:
                return False
            write_audit(c, actor, "disable_user" if disabled else "enable_user",
                        username, None, now)
        return True

    def list_users(self) -> list[dict[str, Any]]:
        q = sa.select(users.c.username, users.c.role, users.c.manager_id, users.c.created_at,
                      users.c.disabled).order_by(users.c.username)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    # ---- sign-in and sessions -----------------------------------------------------------

    def verify_user(self, username: str, password: str) -> dict[str, Any] | None:
        """The user if the password matches and the account is enabled, else None.

        Hashes a dummy password for an unknown user so timing does not reveal which
        usernames exist.
        """
        from argon2.exceptions import InvalidHashError, VerificationError

        with self.engine.connect() as c:
            r = c.execute(sa.select(users).where(users.c.username == username)).mappings().first()
        h = _hasher()
        if r is None:
            try:
                h.verify(_dummy_hash(), password)
            except (VerificationError, InvalidHashError):
                pass
            return None
        try:
            h.verify(r["password_hash"], password)
        except (VerificationError, InvalidHashError):
            return None
        if r["disabled"]:
            return None
        if h.check_needs_rehash(r["password_hash"]):
            with self.engine.begin() as c:
                c.execute(users.update().where(users.c.username == username)
                          .values(password_hash=h.hash(password)))
        d = dict(r)
        d.pop("password_hash")
        return d

    def session_user(self, username: str) -> dict[str, Any] | None:
        """The account behind a session, with its password hash (for the session's
        password fingerprint) and session generation; None if unknown."""
        with self.engine.connect() as c:
            r = c.execute(sa.select(users.c.username, users.c.password_hash, users.c.role,
                                    users.c.manager_id, users.c.disabled, users.c.session_gen)
                          .where(users.c.username == username)).mappings().first()
        return dict(r) if r is not None else None

    def end_sessions(self, username: str) -> bool:
        """End every console session of an account (logout, disabling); False if there
        is no such user."""
        with self.engine.begin() as c:
            r = c.execute(users.update().where(users.c.username == username)
                          .values(session_gen=users.c.session_gen + 1))
        return r.rowcount > 0

    # ---- audit log ----------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str | None = None, detail: Any = None, *,
              now: float | None = None) -> None:
        with self.engine.begin() as c:
            write_audit(c, actor, action, target, detail, now_or(now))

    def audit_log(self, *, limit: int = 200, actor: str | None = None,
                  target: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if actor is not None:
            q = q.where(audit.c.actor == actor)
        if target is not None:
            q = q.where(audit.c.target == target)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password: at least {MIN_PASSWORD} characters")


# The hasher is made on first use (argon2 parameters cost memory) and is a module
# global so tests can swap in a cheap one.
_HASHER = None
_DUMMY: str | None = None


def _hasher():
    global _HASHER
    if _HASHER is None:
        from argon2 import PasswordHasher

        _HASHER = PasswordHasher()
    return _HASHER


def _dummy_hash() -> str:
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = _hasher().hash("not-a-real-password")
    return _DUMMY
