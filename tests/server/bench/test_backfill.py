from __future__ import annotations

import subprocess
import sys

from tests.support.fixtures_store import reset_schema


async def test_the_backfill_bench_prints_a_table_and_a_summary(database_url: str) -> None:
    extra = []
    if database_url.startswith("postgresql"):
        await reset_schema(database_url)
        extra = ["--database-url", database_url]
    command = [sys.executable, "-m", "server.cli.main", "bench", "backfill", "--rows", "4000", "--days", "1"]
    command += ["--runs", "2", "--log-tail", "300", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)  # noqa: ASYNC221
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["database", "rows", "load_s"]
    assert any(line.split()[0] == "sqlite" for line in lines[2:-1])
    assert len(lines) == 4 + len(extra) // 2  # header, rule, a row per database, summary
    assert lines[-1].startswith("6 h out of 4,000 rows: sqlite: load_window")
    assert (
        "4,000/4,000" not in result.stderr and "3,700/3,700 rows" in result.stderr
    )  # progress, SQL part only
