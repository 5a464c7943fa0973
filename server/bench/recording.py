"""What the recorder of a server under test did during a bench phase: its lag and the SQL rows.

**Lag** is the age of the oldest event not yet committed to SQL, sampled from Redis every
``interval_s`` whatever the server's version: the oldest entry the recorders' group holds
pending (read, not committed yet), else the first entry after the group's last delivered
one (not read yet), else none (lag 0); its age is now minus the send stamp ``meta.t`` the
bench's publishers put in every event. **SQL rows** are counted per symbol in the server's
database, so ``missing`` = events published − rows written.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import redis
from sqlalchemy import func, select

from publishers import keys
from publishers.connection import sync_client
from server.history.engine import create_engine
from server.history.models import TABLES


def _stamp_ns(entries: Any) -> int | None:
    """``meta.t`` of the first entry of an XRANGE reply (None: no entry, or not a bench event)."""
    if not entries:
        return None
    _, fields = entries[0]
    raw = fields.get(keys.LOG_FIELD.encode()) if isinstance(fields, dict) else None
    if not isinstance(raw, bytes | str):
        return None
    try:
        stamp = json.loads(raw)["meta"]["t"]
    except (TypeError, ValueError, KeyError):
        return None
    return int(stamp) if isinstance(stamp, int) else None


def oldest_unrecorded_ns(client: redis.Redis, symbols: Sequence[str]) -> int | None:
    """The send stamp of the oldest event of ``symbols`` not committed by the recorders (None: none)."""
    group = keys.RECORDER_GROUP
    stamps: list[int] = []
    for symbol in symbols:
        log = keys.log_key(symbol)
        try:
            pending = client.xpending(log, group)
            if pending and pending.get("pending"):
                first = pending["min"]
                stamp = _stamp_ns(client.xrange(log, first, first, count=1))
            else:
                groups = [g for g in client.xinfo_groups(log) if g.get("name") in (group, group.encode())]
                after = groups[0]["last-delivered-id"] if groups else b"0-0"
                start = after.decode() if isinstance(after, bytes) else str(after)
                stamp = _stamp_ns(client.xrange(log, f"({start}", "+", count=1))
        except redis.ResponseError:  # no log or no group yet: nothing read, the log's first entry
            stamp = _stamp_ns(client.xrange(log, "-", "+", count=1))
        if stamp is not None:
            stamps.append(stamp)
    return min(stamps) if stamps else None


class LagProbe:
    """Samples the recorder's lag (seconds) in a thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, redis_url: str, symbols: Sequence[str], interval_s: float = 0.25) -> None:
        self.redis_url = redis_url
        self.symbols = list(symbols)
        self.interval_s = interval_s
        self.max_s = 0.0
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LagProbe:
        self._thread = threading.Thread(target=self._run, name="bench-lag-probe", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        client = sync_client(self.redis_url, name="signalpush-bench-lag")
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    oldest = oldest_unrecorded_ns(client, self.symbols)
                except (redis.RedisError, OSError):
                    continue
                lag = 0.0 if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)
                self.samples.append(lag)
                self.max_s = max(self.max_s, lag)
        finally:
            client.close()

    def stop(self) -> float:
        """The highest lag seen, in seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return round(self.max_s, 2)


def sql_rows(database_url: str, symbols: Sequence[str]) -> dict[str, int]:
    """Rows per symbol over every event table of the database."""

    async def count() -> dict[str, int]:
        engine = create_engine(database_url)
        out = dict.fromkeys(symbols, 0)
        try:
            async with engine.connect() as connection:
                for table in TABLES.values():
                    query = (
                        select(table.c.symbol, func.count())
                        .where(table.c.symbol.in_(list(symbols)))
                        .group_by(table.c.symbol)
                    )
                    for symbol, rows in (await connection.execute(query)).all():
                        out[symbol] += int(rows)
        finally:
            await engine.dispose()
        return out

    return asyncio.run(count())


def missing_rows(
    database_url: str, published: Mapping[str, int], timeout_s: float = 15.0
) -> tuple[int, float]:
    """Events published (per symbol: its last seq) without a row in SQL, after waiting up to
    ``timeout_s`` for the recorder to catch up; and how long the wait took."""
    started = time.monotonic()
    symbols = list(published)
    while True:
        try:
            rows = sql_rows(database_url, symbols)
        except Exception:  # the schema may not exist yet (no recorder ran): everything is missing
            rows = dict.fromkeys(symbols, 0)
        missing = sum(max(0, published[s] - rows.get(s, 0)) for s in symbols)
        waited = time.monotonic() - started
        if missing == 0 or waited >= timeout_s:
            return missing, round(waited, 2)
        time.sleep(0.25)


#: Frames of the recording work (the recorder, its SQL writes, aiosqlite's worker thread).
RECORDER_FRAMES: Final = (
    "history/recorder",
    "history/writer",
    "history/bots",
    "history/logops",
    "aiosqlite",
)


def profile_shares(directory: Path) -> list[dict[str, Any]]:
    """Per py-spy raw profile (``--profile DIR``): its samples and the share spent recording.

    Each line of a raw profile is a stack (frames joined by ``;``) and its sample count.
    """
    rows: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.txt")):
        total = recording = 0
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            if any(marker in stack for marker in RECORDER_FRAMES):
                recording += int(count)
        share = round(100 * recording / total, 1) if total else 0.0
        rows.append({"profile": path.name, "samples": total, "recorder %": share})
    return rows
