"""The recorder's reading half: its state, the symbols it works on, and reading their logs.

:class:`RecorderBase` holds what a recorder knows (counters, per-symbol state, health) and
reads batches from the logs (new entries, its own pending ones, entries claimed from a dead
recorder), turning each read into a :class:`~server.history.recorder_state.Batch`;
:class:`~server.history.recorder.Recorder` commits them and runs the loop.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from typing import Any, Final

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import keys
from server.history import logops
from server.history.recorder_state import Batch, Symbols, decode, parse_reply
from server.logs import RateLimitedLog
from server.settings import RecorderSettings

log = logging.getLogger(__name__)

REDIS_ERRORS: Final = (redis.RedisError, OSError)
DATABASE_ERRORS: Final = (SQLAlchemyError, OSError, TimeoutError)


class RedisDown(Exception):
    """Redis failed a step (the cause is chained)."""


class DatabaseDown(Exception):
    """The database failed a commit (the cause is chained)."""


def default_consumer_name() -> str:
    """A consumer name unique to this process: host, pid and a random tag."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RecorderBase:
    """What a recorder knows, and its reads (see :class:`~server.history.recorder.Recorder`)."""

    def __init__(
        self,
        redis_url: str,
        database: str | AsyncEngine,
        settings: RecorderSettings,
        *,
        consumer: str | None = None,
        claim_idle_ms: int = 30_000,
        symbol_refresh_s: float = 0.5,
        symbols: Sequence[str] | None = None,
        socket_timeout_s: float = 5.0,
    ) -> None:
        self.redis_url = redis_url
        self.settings = settings
        self.consumer = consumer or default_consumer_name()
        self.claim_idle_ms = claim_idle_ms
        self._database = database
        self._symbol_refresh_s = symbol_refresh_s
        self._socket_timeout_s = max(socket_timeout_s, settings.block_ms / 1000 + 1.0)
        self._symbols = Symbols()
        self._only = None if symbols is None else tuple(symbols)
        self._next_symbols_at = 0.0
        self._next_claim_at = 0.0
        self._next_watermark_at = 0.0
        self._next_sweep_at = float("inf")  # set when it runs
        self._up = {"redis": True, "database": True}
        self._counters = {
            "events_recorded": 0,
            "batches": 0,
            "claimed": 0,
            "skipped": 0,
            "lost": 0,
            "symbol_errors": 0,
            "forged": 0,
        }
        self._last_commit_ms: int | None = None
        #: Registry members that are not symbol names (left out), as of the last read.
        self._invalid_names = 0
        self._warnings = RateLimitedLog(log)

    # -- what /metrics shows -------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters since start: events recorded, batches committed, last commit time, health."""
        return {
            "consumer": self.consumer,
            **self._counters,
            "last_commit_ms": self._last_commit_ms,
            "redis_up": self._up["redis"],
            "database_up": self._up["database"],
            "symbols": len(self._symbols),
            "unrecordable": len(self._symbols.unrecordable()),
            "invalid_names": self._invalid_names,
        }

    def committed(self) -> dict[str, int]:
        """Per symbol: every seq up to this one is committed in SQL (as last seen in Redis)."""
        return self._symbols.committed()

    def lag(self) -> dict[str, int]:
        """Per symbol: the symbol's seq minus the highest seq below which everything is committed.

        A symbol that cannot be recorded keeps growing here (its meta's seq is still read);
        :meth:`unrecordable` says why.
        """
        return self._symbols.lag()

    def unrecordable(self) -> dict[str, str]:
        """Symbols whose keys cannot be recorded now, and why (retried with backoff)."""
        return self._symbols.unrecordable()

    # -- the loop ------------------------------------------------------------------------
    async def _refresh_symbols(self, client: Any) -> None:
        if time.monotonic() < self._next_symbols_at:
            return
        if self._only is not None:
            self._symbols.add(self._only)
            self._next_symbols_at = float("inf")
            return
        members: set[bytes] = set()
        try:
            members = await client.smembers(keys.SYMBOLS_KEY)
        except redis.ResponseError as exc:  # not a set: nothing to discover until someone repairs it
            self._warnings.warning(
                "registry",
                "recorder: the symbol registry is unusable",
                registry=keys.SYMBOLS_KEY,
                error=str(exc),
            )
        except REDIS_ERRORS as exc:
            raise RedisDown from exc
        self._invalid_names = self._symbols.add_registry(members)
        if self._invalid_names:
            self._warnings.warning(
                "invalid names",
                "recorder: the symbol registry holds names that are not symbols; skipped",
                registry=keys.SYMBOLS_KEY,
                count=self._invalid_names,
            )
        self._next_symbols_at = time.monotonic() + self._symbol_refresh_s

    def _symbol_failed(self, name: str, problem: str) -> None:
        """This symbol's keys failed (wrong type, unusable meta): skip it for a while, keep the others."""
        delay = self._symbols.failed(name, problem)
        self._counters["symbol_errors"] += 1
        self._warnings.warning(
            ("symbol", name),
            "recorder: cannot record a symbol; the others go on, it is retried with backoff",
            symbol=name,
            error=self._symbols[name].problem,
            retry_in_s=round(delay, 1),
        )

    def _reply(self, name: str, reply: Any, parse: Any) -> Any:
        """A script reply parsed, or None after marking the symbol failed (an error reply, a bad epoch)."""
        result = parse_reply(name, reply, parse)
        if isinstance(result, str):
            self._symbol_failed(name, result)
            return None
        return result

    async def _read_all(self, client: Any) -> tuple[list[Batch], bool]:
        count = self.settings.batch_size
        names = self._symbols.ready()
        modes: list[logops.ReadMode] = ["own" if self._symbols[n].recover else "new" for n in names]
        calls = [logops.read_args(n, m, count, self.consumer) for n, m in zip(names, modes, strict=True)]
        replies = await self._redis(logops.run_scripts(client, calls)) if calls else []
        batches: list[Batch] = []
        busy = False
        for name, mode, reply in zip(names, modes, replies, strict=True):
            result = self._reply(name, reply, logops.parse_read)
            if result is None:
                continue
            if self._symbols.ok(name):  # its log reads again: recordable
                log.info("recorder: a symbol can be recorded again", extra={"symbol": name})
            state = self._symbols[name]
            if mode == "own" and not result.entries:
                state.recover = False  # nothing of ours left pending: read new entries next round
                busy = True
            if len(result.entries) >= count:
                busy = True
            if mode == "new" and result.entries and result.last_delivered is not None:
                self._note_hard_cap_loss(name, result.last_delivered, result.entries[0].seq)
            batch = self._decode(name, result)
            if batch is not None:
                batches.append(batch)
        return batches, busy

    async def _claim_all(self, client: Any) -> list[Batch]:
        names = self._symbols.ready()
        if not names:
            return []
        calls = [
            logops.read_args(
                n,
                "claim",
                self.settings.batch_size,
                self.consumer,
                min_idle_ms=self.claim_idle_ms,
                cursor=self._symbols[n].claim_cursor,
            )
            for n in names
        ]
        replies = await self._redis(logops.run_scripts(client, calls))
        batches = []
        for name, reply in zip(names, replies, strict=True):
            result = self._reply(name, reply, logops.parse_read)
            if result is None:
                continue
            self._symbols[name].claim_cursor = result.cursor or "0-0"
            if result.entries:
                self._counters["claimed"] += len(result.entries)
                log.info("claimed pending entries", extra={"symbol": name, "count": len(result.entries)})
            batch = self._decode(name, result)
            if batch is not None:
                batches.append(batch)
        return batches

    def _decode(self, symbol: str, result: logops.ReadResult) -> Batch | None:
        if result.forged:
            self._counters["forged"] += result.forged
            self._warnings.warning(
                ("forged", symbol),
                "log entries above the symbol's seq (not written by the publish script) left out",
                symbol=symbol,
                count=result.forged,
            )
        batch = decode(symbol, result)
        if batch is None:
            return None
        if batch.gone:
            self._counters["lost"] += len(batch.gone)
            log.warning(
                "log entries were trimmed (hard cap) before they were recorded",
                extra={"symbol": symbol, "count": len(batch.gone), "first_seq": batch.gone[0]},
            )
        if batch.voids:
            self._counters["skipped"] += len(batch.voids)
            self._warnings.warning(
                ("malformed", symbol),
                "skipped malformed log entries (void seqs)",
                symbol=symbol,
                count=len(batch.voids),
                first_seq=batch.voids[0][0],
                reason=batch.voids[0][1],
            )
        return batch

    def _note_hard_cap_loss(self, symbol: str, last_delivered: int, first_seq: int) -> None:
        missing = first_seq - last_delivered - 1
        if missing > 0:
            self._counters["lost"] += missing
            log.warning(
                "the log's hard cap dropped events before they were recorded (raise redis.log_maxlen)",
                extra={"symbol": symbol, "from_seq": last_delivered + 1, "to_seq": first_seq - 1},
            )

    async def _redis(self, operation: Any) -> Any:
        try:
            return await operation
        except REDIS_ERRORS as exc:
            self._symbols.recover_all()
            raise RedisDown from exc

    # -- health --------------------------------------------------------------------------

    def _failed(self, part: str, exc: BaseException) -> None:
        if self._up[part]:
            self._up[part] = False
            log.warning(f"recorder: {part} unavailable, retrying with backoff", extra={"error": str(exc)})

    def _recovered(self, part: str) -> None:
        if not self._up[part]:
            self._up[part] = True
            log.info(f"recorder: {part} is back")
