"""Resume reads shared by the clients that ask for the same thing at once.

After a gateway restart every wall resumes from the position it had. The clients of a
symbol were all live, so hundreds of them ask for the same (symbol, filter, epoch, seq).
One read can serve them all, under one rule: a client may use a read only if it covers
everything the live path had processed when that client asked (its ``to_seq`` is at or
past the symbol's ``last_seq`` then), and no reset happened since the read started. The
client joined before it asked, so the live batches it keeps start at or before the read's
end: nothing falls between (the core drops the overlap). Otherwise it reads on its own,
which is what every resume did before.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from server.core.fanout import Fanout, SymbolState
from server.core.filters import EventFilter
from server.history.source import After, HistorySource

#: Reads kept for reuse at most (each holds at most AFTER_CHUNK events).
MAX_KEPT = 64

Key = tuple[str, EventFilter, str, int]


@dataclass(frozen=True)
class _Read:
    state: SymbolState
    resets: int
    result: asyncio.Future[After]


class SharedResumes:
    """``HistorySource.after`` for resumes: one read serves every client it can serve exactly."""

    def __init__(self, history: HistorySource, fanout: Fanout, *, max_kept: int = MAX_KEPT) -> None:
        self.history = history
        self.fanout = fanout
        self.max_kept = max_kept
        self._reads: OrderedDict[Key, _Read] = OrderedDict()
        #: Reads done, and resumes served by another client's read.
        self.reads = 0
        self.shared = 0

    def __repr__(self) -> str:
        return f"SharedResumes(reads={self.reads}, shared={self.shared}, kept={len(self._reads)})"

    async def after(self, symbol: str, flt: EventFilter, *, epoch: str, seq: int) -> After:
        state = self.fanout.symbols.get(symbol)
        if state is None:
            return await self._own(symbol, flt, epoch, seq)
        floor = state.last_seq or 0
        key = (symbol, flt, epoch, seq)
        read = self._reads.get(key)
        if read is None or read.state is not state or read.resets != state.resets or _failed(read):
            read = _Read(state, state.resets, asyncio.ensure_future(self._own(symbol, flt, epoch, seq)))
            self._keep(key, read)
            # Shielded: a client that leaves does not cancel the read others may share.
            return await asyncio.shield(read.result)
        after = await asyncio.shield(read.result)
        if (
            after.reset_reason is None
            and read.resets == state.resets
            and after.epoch == state.epoch
            and after.to_seq >= floor
        ):
            self.shared += 1
            return after
        return await self._own(symbol, flt, epoch, seq)

    async def _own(self, symbol: str, flt: EventFilter, epoch: str, seq: int) -> After:
        self.reads += 1
        return await self.history.after(symbol, flt, epoch=epoch, seq=seq)

    def _keep(self, key: Key, read: _Read) -> None:
        self._reads[key] = read
        self._reads.move_to_end(key)
        while len(self._reads) > self.max_kept:
            self._reads.popitem(last=False)
        read.result.add_done_callback(_retrieve)


def _failed(read: _Read) -> bool:
    """A finished read that cannot serve anyone (an error, or a reset)."""
    done = read.result
    if not done.done():
        return False
    return done.cancelled() or done.exception() is not None or done.result().reset_reason is not None


def _retrieve(done: asyncio.Future[After]) -> None:
    # A failed read's error goes to the clients that awaited it; nobody else needs to see it.
    if not done.cancelled():
        done.exception()
