"""Fixtures for the console tests: a seeded store (SQLite and PostgreSQL through the
``db_url`` fixture), the registry, settings, and a runner for a real aiohttp server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer

from console_data import PASSWORDS, REGISTRY_CSV, SECRET, csrf_from, seed
from stream.registry import Registry
from stream.settings import load_settings, replace
from stream.store import AlertStore


@pytest.fixture(autouse=True)
def _cheaper_argon2(monkeypatch):
    """Real argon2id hashes, with test-sized cost parameters: the seeded users would
    otherwise cost ~0.5 s of CPU per test. The parameters travel in each hash, so the
    production hasher (in a console subprocess) verifies them all the same."""
    import stream.store.users
    from argon2 import PasswordHasher

    monkeypatch.setattr(stream.store.users, "_HASHER",
                        PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    p = tmp_path / "registry.csv"
    p.write_text(REGISTRY_CSV)
    return p


@pytest.fixture
def store(db_url):
    s = AlertStore(db_url)
    s.seeded = seed(s)
    yield s
    s.close()


@pytest.fixture
def settings(db_url, registry_file):
    # env={} so the machine's METERWATCH_* variables cannot leak into the tests.
    # Port 9 (discard) on loopback: nothing listens, so the worker is "unreachable".
    return load_settings(env={}, db_url=db_url, registry=str(registry_file),
                         session_secret=SECRET, cookie_secure=False,
                         worker_url="http://127.0.0.1:9", timezone="Asia/Shanghai")


class Harness:
    """Builds the app and runs a coroutine against it on a real loopback server."""

    def __init__(self, settings, store, registry_file) -> None:
        self.settings = settings
        self.store = store
        self.registry = Registry.load(registry_file)

    def app(self, **changes):
        from stream.console.app import make_app

        s = replace(self.settings, **changes) if changes else self.settings
        return make_app(s, self.store, self.registry)

    def run(self, fn, *, app=None, secure_jar: bool = False):
        from stream.console.app import AccessLogger

        app = app if app is not None else self.app()

        async def main():
            server = TestServer(app, host="127.0.0.1")
            await server.start_server(access_log_class=AccessLogger,
                                      access_log=logging.getLogger("meterwatch.console.access"))
            jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))]
                            if secure_jar else None)
            async with TestClient(server, cookie_jar=jar) as client:
                return await fn(client)

        return asyncio.run(main())


@pytest.fixture
def console(settings, store, registry_file) -> Harness:
    return Harness(settings, store, registry_file)
