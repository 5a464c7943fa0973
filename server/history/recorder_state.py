"""The recorder's bookkeeping, without I/O: what it knows per symbol, and a read turned into a batch.

A symbol whose keys fail (a key of the wrong type, an unusable meta hash, rows the
database refuses) is skipped for a while, with a backoff doubling from 1 s to 60 s (full
jitter), while every other symbol goes on; its lag is still reported and
:meth:`Symbols.unrecordable` says why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from publishers import keys
from publishers.backoff import Backoff
from server.core.trust import check_event, is_epoch, symbol_name
from server.history import logops

#: How long a symbol whose keys failed is skipped: from 1 s doubling to 60 s, full jitter.
SYMBOL_BACKOFF: Final = Backoff(first_s=1.0, max_s=60.0)


@dataclass
class SymbolLog:
    """What the recorder knows about one symbol's log."""

    recover: bool = True  # read our own pending entries before new ones
    claim_cursor: str = "0-0"
    committed: int = 0
    meta_seq: int = 0
    #: Why its keys cannot be recorded now (None: they can); retried from ``retry_at`` on.
    problem: str | None = None
    retry_at: float = 0.0
    failures: int = 0


@dataclass
class Batch:
    """Entries of one symbol read in one step: every seq is acknowledged after the commit."""

    symbol: str
    epoch: str
    seqs: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: (seq, reason) of invalid entries: recorded as void seqs.
    voids: list[tuple[int, str]] = field(default_factory=list)
    #: Seqs whose entry was gone from the log when read (the hard cap trimmed them).
    gone: list[int] = field(default_factory=list)


def decode(symbol: str, result: logops.ReadResult) -> Batch | None:
    """A read as a batch: valid events, void seqs (server/core/trust.py decides, as for the live path)."""
    if result.epoch is None or not result.entries:
        return None
    batch = Batch(symbol, result.epoch)
    for entry in result.entries:
        batch.seqs.append(entry.seq)  # acknowledged whatever happens: nothing can be done twice
        if not entry.json:
            batch.gone.append(entry.seq)
            continue
        event = check_event(entry.json, entry.seq, symbol)
        if isinstance(event, str):
            batch.voids.append((entry.seq, event))
        else:
            batch.events.append(event)
    return batch


def parse_reply(symbol: str, reply: Any, parse: Any) -> Any:
    """A recorder script's reply parsed, or why this symbol's keys cannot be recorded (a str)."""
    if isinstance(reply, BaseException):
        return str(reply)  # an error reply: a key of the wrong type, say
    try:
        result = parse(reply)
    except (ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
        return f"unexpected reply from the recorder script: {exc}"
    epoch = getattr(result, "epoch", None)
    if epoch is not None and not is_epoch(epoch):
        return f"{keys.meta_key(symbol)} holds an epoch the publish script never writes"
    return result


class Symbols:
    """The symbols a recorder works on, each with its log's state and health."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.logs: dict[str, SymbolLog] = {}
        self._clock = clock

    def __getitem__(self, name: str) -> SymbolLog:
        return self.logs[name]

    def __len__(self) -> int:
        return len(self.logs)

    def add(self, names: Iterable[str]) -> None:
        for name in names:
            self.logs.setdefault(name, SymbolLog())

    def add_registry(self, members: Iterable[bytes | str]) -> int:
        """Add the registry's members that are symbol names; returns how many are not."""
        invalid = 0
        for raw in members:
            name = symbol_name(raw)
            if name is None:
                invalid += 1  # written by something else than a publisher: never a key name
            else:
                self.logs.setdefault(name, SymbolLog())
        return invalid

    def ready(self) -> list[str]:
        """The symbols to work on now (not waiting out a backoff after their keys failed)."""
        now = self._clock()
        return [name for name, state in self.logs.items() if state.retry_at <= now]

    def failed(self, name: str, problem: str) -> float:
        """Its keys failed: skip it for a while (returned, in seconds); read its own entries first after."""
        state = self.logs[name]
        state.failures += 1
        state.problem = problem[:200]
        state.recover = True
        delay = SYMBOL_BACKOFF.delay(state.failures)
        state.retry_at = self._clock() + delay
        return delay

    def ok(self, name: str) -> bool:
        """Its log reads again; True if it was unrecordable until now."""
        state = self.logs[name]
        was = state.problem is not None
        state.problem, state.failures, state.retry_at = None, 0, 0.0
        return was

    def recover_all(self) -> None:
        for state in self.logs.values():
            state.recover = True

    def committed(self) -> dict[str, int]:
        return {name: max(0, s.committed) for name, s in sorted(self.logs.items())}

    def lag(self) -> dict[str, int]:
        return {name: max(0, s.meta_seq - max(s.committed, 0)) for name, s in sorted(self.logs.items())}

    def unrecordable(self) -> dict[str, str]:
        return {name: s.problem for name, s in sorted(self.logs.items()) if s.problem is not None}


class RecorderView(Protocol):
    """What the gateway reads of a recorder, in its process (:class:`~server.history.recorder.Recorder`)
    or in a child process (``server/cli/recorder_child.py``, from the child's reports)."""

    def stats(self) -> dict[str, Any]: ...

    def lag(self) -> dict[str, int]: ...

    def unrecordable(self) -> dict[str, str]: ...

    async def run(self, stop: asyncio.Event) -> None: ...
