"""Running the suite on several pytest-xdist workers against the machine's Redis and PostgreSQL.

Each worker gets its own Redis database (the configured one minus the worker's index) and
its own PostgreSQL database (the configured name + ``_gw<N>``, created when missing), so
workers never flush or drop each other's data. Done once per worker process, before any
test reads the environment.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit, urlunsplit

from tests.support import TEST_DATABASE_ENV, TEST_REDIS_ENV


def worker_index() -> int | None:
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else None


def redis_url_for(url: str, index: int) -> str:
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    if base - index < 0:
        raise RuntimeError(f"{TEST_REDIS_ENV}: database {base} leaves no room for worker {index}")
    return urlunsplit(parts._replace(path=f"/{base - index}"))


async def _create_database(url: str, name: str) -> None:
    import asyncpg  # the suite's PostgreSQL driver

    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    connection = await asyncpg.connect(urlunsplit(parts))
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def database_url_for(url: str, index: int) -> str:
    parts = urlsplit(url)
    name = f"{parts.path.strip('/')}_gw{index}"
    asyncio.run(_create_database(url, name))
    return urlunsplit(parts._replace(path=f"/{name}"))


def isolate_worker() -> None:
    """Point this worker's SIGNALPUSH_TEST_* URLs at its own Redis and PostgreSQL databases."""
    index = worker_index()
    if index is None:
        return
    if os.environ.get(TEST_REDIS_ENV):
        os.environ[TEST_REDIS_ENV] = redis_url_for(os.environ[TEST_REDIS_ENV], index)
    if os.environ.get(TEST_DATABASE_ENV):
        os.environ[TEST_DATABASE_ENV] = database_url_for(os.environ[TEST_DATABASE_ENV], index)
