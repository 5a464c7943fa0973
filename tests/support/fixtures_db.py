"""Database fixtures: SQLite in a temp dir, and PostgreSQL when its URL is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import TEST_DATABASE_ENV


def _database_backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(TEST_DATABASE_ENV) else ["sqlite"]


@pytest.fixture(params=_database_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL per test: a SQLite file, or the configured PostgreSQL."""
    if request.param == "postgresql":
        return os.environ[TEST_DATABASE_ENV]
    return f"sqlite+aiosqlite:///{tmp_path / 'history.db'}"
