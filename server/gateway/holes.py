"""Filling a symbol's live stream from the store (the log, then SQL), in bounded pages.

Used by the live path for holes, void seqs, and (with ``server.confirm_live``) every
batch. What is sent is what the store holds, never a list sized by the seqs involved:
each page is one bounded read (``HistorySource.after``: at most AFTER_CHUNK events), sent
as soon as it is read, up to the target or the symbol's meta seq, whichever is lower.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from server.core.fanout import Fanout
from server.core.filters import EVERYTHING
from server.gateway.metrics import GatewayMetrics
from server.gateway.outbox import Outbox
from server.history.source import After, HistorySource


@dataclass(slots=True)
class Filled:
    """How a fill ended: the position reached, the meta's seq, a reset if the store lacks events."""

    reached: int
    meta_seq: int
    reset_reason: str | None = None
    #: The symbol's epoch as read (another one than asked: the epoch changed).
    epoch: str | None = None
    #: Live messages in the range whose event is not the stored one (forged, or void).
    mismatched: int = 0


class StoreFill:
    def __init__(
        self, fanout: Fanout, history: HistorySource, outbox: Outbox, metrics: GatewayMetrics
    ) -> None:
        self.fanout = fanout
        self.history = history
        self.outbox = outbox
        self.metrics = metrics

    async def fill(self, symbol: str, epoch: str, through: int, wanted: dict[int, str]) -> Filled | None:
        """Send the stored events after the symbol's position up to ``through`` (or the meta's seq).

        ``wanted`` are live messages in that range: counted in ``mismatched`` when the store
        differs. None if the symbol left or moved meanwhile (what was pending is dropped).
        """
        state = self.fanout.symbols[symbol]
        position = state.last_seq or 0
        mismatched = pages = 0
        while True:
            after: After = await self.history.after(
                symbol, EVERYTHING, epoch=epoch, seq=position, until_seq=through
            )
            if self.fanout.symbols.get(symbol) is not state or state.last_seq != position:
                return None
            if after.reset_reason is not None:
                return Filled(position, after.to_seq, after.reset_reason, after.epoch)
            stored = dict(after.events)
            mismatched += sum(
                1 for seq, raw in wanted.items() if position < seq <= after.reached and stored.get(seq) != raw
            )
            if after.reached > position:
                events = [(seq, raw) for seq, raw in after.events if position < seq <= after.reached]
                self.outbox.write(
                    self.fanout.ingest(symbol, epoch, events, time.monotonic(), to_seq=after.reached)
                )
                self.metrics.gap_events_filled += len(events)
                position = after.reached
                pages += 1
            elif not after.complete:
                return Filled(position, after.to_seq, "the log could not be read past a seq", after.epoch)
            if after.complete:
                self.metrics.gaps_filled += 1 if pages else 0
                return Filled(position, after.to_seq, mismatched=mismatched)

    async def stored(self, symbol: str, epoch: str, seq: int) -> str | None:
        """The valid event the store holds under ``seq`` (None: none, or invalid, or unknown)."""
        after = await self.history.after(symbol, EVERYTHING, epoch=epoch, seq=seq - 1, until_seq=seq)
        return dict(after.events).get(seq) if after.reset_reason is None else None
