"""Console accounts: passwords are stored as argon2id hashes and verified."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from stream.store.schema import users


def test_passwords_are_hashed_and_verified(store):
    store.create_user("alice", "correct horse", "manager", manager_id="mgr1")
    assert store.verify_user("alice", "correct horse")["manager_id"] == "mgr1"
    assert store.verify_user("alice", "wrong password") is None
    assert store.verify_user("mallory", "correct horse") is None
    with pytest.raises(ValueError, match="manager id"):
        store.create_user("bob", "long enough", "manager")
    with store.engine.connect() as c:
        h = c.execute(sa.select(users.c.password_hash)).scalar()
    assert h.startswith("$argon2") and "correct horse" not in h


def test_disabling_an_account_ends_its_sessions_and_is_audited(store):
    store.create_user("carol", "long enough", "control_room", now=1.0)
    assert store.session_user("carol")["session_gen"] == 0
    assert store.set_disabled("carol", True, actor="admin", now=2.0)
    assert store.session_user("carol")["session_gen"] == 1
    assert store.verify_user("carol", "long enough") is None
    assert [(u["username"], u["disabled"]) for u in store.list_users()] == [("carol", True)]
    assert store.audit_log(limit=1)[0]["action"] == "disable_user"
    assert not store.set_disabled("nobody", True, actor="admin")
