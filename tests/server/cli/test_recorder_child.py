"""`serve` records in a child process (`recorder.process`): supervised, restarted, one per host."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from urllib.request import urlopen

import psutil

from publishers import Publisher
from server.cli.recorder_child import parse_report, report_line
from server.history.models import SIGNALS
from tests.support import async_wait_until
from tests.support.process import ServerProcess


def _recorders(pid: int) -> list[int]:
    """The live ``signalpush record`` children of a process (not one that died, not yet reaped)."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if "record" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.Error:  # gone, or a zombie
            continue
    return found


def _rows(server: ServerProcess, symbol: str) -> int:
    path = server.env["SIGNALPUSH_DATABASE_URL"].split("///", 1)[1]
    try:
        with sqlite3.connect(path) as db:
            query = f"SELECT count(*) FROM {SIGNALS.name} WHERE symbol = ?"
            return int(db.execute(query, (symbol,)).fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet
        return 0


def _get(server: ServerProcess, path: str) -> bytes:
    with urlopen(f"{server.http_url}{path}", timeout=5) as response:
        body: bytes = response.read()
        return body


async def _publish(redis_url: str, symbol: str, count: int) -> None:
    async with Publisher(redis_url, bot="b", strategy="s") as pub:
        for _ in range(count):
            await pub.signal(symbol, "buy", price=1, confidence=0.5)


async def test_the_recorder_child_killed_is_restarted_and_nothing_is_lost(
    redis_url: str, symbol: str
) -> None:
    with ServerProcess("serve", "--redis-url", redis_url) as server:
        first = await async_wait_until(lambda: _recorders(server.pid), what="the recorder child")
        assert len(first) == 1
        health = json.loads(_get(server, "/healthz"))
        assert health["recorder"] == "up"
        await _publish(redis_url, symbol, 5)
        await async_wait_until(lambda: _rows(server, symbol) == 5, what="5 rows")
        # The child's report reaches the parent's /metrics (other tests' symbols may be there too).
        await async_wait_until(
            lambda: (
                f'signalpush_recorder_lag_events{{symbol="{symbol}"}} 0'.encode() in _get(server, "/metrics")
            ),
            what="the child's counters on /metrics",
        )
        os.kill(first[0], signal.SIGKILL)
        second = await async_wait_until(
            lambda: [p for p in _recorders(server.pid) if p not in first], timeout=20, what="a new child"
        )
        assert len(second) == 1
        await _publish(redis_url, symbol, 5)
        await async_wait_until(lambda: _rows(server, symbol) == 10, timeout=20, what="10 rows")
        health = json.loads(_get(server, "/healthz"))
        assert health["recorder"] == "up" and health["restarts"]["recorder"] >= 1


async def test_serve_with_workers_runs_exactly_one_recorder(redis_url: str, symbol: str) -> None:
    with ServerProcess("serve", "--redis-url", redis_url, "--workers", "2") as server:
        await async_wait_until(
            lambda: len([c for c in psutil.Process(server.pid).children() if "--worker" in c.cmdline()]) == 2,
            what="2 workers",
        )
        await async_wait_until(lambda: _recorders(server.pid), what="the recorder child")
        await _publish(redis_url, symbol, 7)
        await async_wait_until(lambda: _rows(server, symbol) == 7, what="7 rows")
        assert len(_recorders(server.pid)) == 1
        workers = [c for c in psutil.Process(server.pid).children() if "--worker" in c.cmdline()]
        assert all(not _recorders(w.pid) for w in workers)
        assert json.loads(_get(server, "/healthz"))["recorder"] == "disabled"  # a worker answers


async def test_serve_can_still_record_in_its_own_process(redis_url: str, symbol: str) -> None:
    with ServerProcess(
        "serve", "--redis-url", redis_url, env={"SIGNALPUSH_RECORDER_PROCESS": "false"}
    ) as server:
        await _publish(redis_url, symbol, 3)
        await async_wait_until(lambda: _rows(server, symbol) == 3, what="3 rows")
        assert _recorders(server.pid) == []
        assert json.loads(_get(server, "/healthz"))["recorder"] == "up"


def test_reports_are_parsed_and_anything_else_is_dropped() -> None:
    line = report_line({"events_recorded": 3}, {"A": 1}, {"B": "why"})
    expected = {"stats": {"events_recorded": 3}, "lag": {"A": 1}, "unrecordable": {"B": "why"}}
    assert parse_report(line) == expected
    bad = [
        b"",
        b"nope",
        b"[]",
        b'{"stats": {}}',
        b'{"stats": {}, "lag": {"A": "1"}, "unrecordable": {}}',
        b'{"stats": {}, "lag": {"A": true}, "unrecordable": {}}',
        b'{"stats": {}, "lag": {}, "unrecordable": {"B": 1}}',
        b"\xff\xfe",
    ]
    for line in bad:
        assert parse_report(line) is None
