"""The store under test: a fresh database of each kind the store supports (SQLite and a
real PostgreSQL server, from ``db_url``), at the current schema revision."""

from __future__ import annotations

import pytest

from stream.store import AlertStore


@pytest.fixture
def store(db_url):
    s = AlertStore(db_url)
    yield s
    s.close()
