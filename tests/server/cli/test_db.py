from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.history.models import SIGNALS
from tests.support import async_wait_until
from tests.support.fixtures_store import publish, random_events

REPO = Path(__file__).resolve().parents[3]


async def _signals(engine: AsyncEngine, symbol: str) -> int:
    async with engine.connect() as connection:
        query = select(func.count()).select_from(SIGNALS).where(SIGNALS.c.symbol == symbol)
        return int((await connection.execute(query)).scalar_one())


async def test_record_runs_until_sigint_and_says_what_it_did(
    redis_url: str, store_url: str, engine: AsyncEngine, symbol: str
) -> None:
    events = random_events(symbol, 60, seed=31)
    signals = sum(1 for e in events if e.kind == "signal")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "server.cli.main", "record", "--symbols", symbol),
        *("--redis-url", redis_url, "--database-url", store_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        await publish(redis_url, events)
        await async_wait_until(lambda: _count_is(engine, symbol, signals), timeout=30, what="the recording")
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    assert lines[0].startswith("signalpush record: ")
    assert re.fullmatch(r"recorded 60 events in \d+ batch(es)?", lines[-1])


async def _count_is(engine: AsyncEngine, symbol: str, expected: int) -> bool:
    return await _signals(engine, symbol) == expected


def test_migrations_run_from_the_unpacked_wheel(tmp_path: Path) -> None:
    out = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("signalpush-*.whl")
    names = set(zipfile.ZipFile(built).namelist())
    assert {
        "server/history/migrations/env.py",
        "server/history/migrations/versions/0002_void_events.py",
    } <= names
    zipfile.ZipFile(built).extractall(tmp_path / "site")
    script = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); import server.history.migrate as m; "
        "asyncio.run(m.upgrade_database(sys.argv[2])); "
        "print(m.MIGRATIONS_DIR, asyncio.run(m.current_revision(sys.argv[2])))"
    )
    database = f"sqlite+aiosqlite:///{tmp_path / 'from-wheel.db'}"
    result = subprocess.run(
        [sys.executable, "-I", "-c", script, str(tmp_path / "site"), database],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    from server.history.migrate import SHIPPED_HEAD

    assert result.stdout.split() == [
        str(tmp_path / "site" / "server" / "history" / "migrations"),
        SHIPPED_HEAD,
    ]
