"""The symbols' live streams: batches off the bus, continuity checks, hole filling, resets, resync.

Every symbol's seqs are checked before anything is sent: a hole (a pub/sub message lost)
is filled from the log first; a new epoch resets the symbol's subscribers; a seq that now
holds another event (a Redis failover lost writes) rewinds them; after the bus reconnects
each symbol is filled from its log up to Redis's current seq.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from publishers import keys
from publishers.connection import TRANSIENT_ERRORS
from publishers.errors import BusError
from publishers.script import parse_live_message
from server.bus import Batch
from server.fanout import Diverged, EpochChanged, Fanout, Hole, Member
from server.filters import EVERYTHING
from server.history_source import HistorySource, read_meta
from server.metrics import GatewayMetrics
from server.outbox import Outbox
from server.protocol import now_ms
from server.selection import Message

log = logging.getLogger(__name__)

#: Failures of Redis that end one operation, not the gateway.
RECOVERABLE: tuple[type[BaseException], ...] = (BusError, *TRANSIENT_ERRORS)

#: A live message: (epoch, seq, event json).
LiveMessage = tuple[str, int, str]


class LivePath:
    """Feeds the fan-out core from the bus, keeping every symbol's stream gap-free."""

    def __init__(
        self,
        *,
        fanout: Fanout,
        history: HistorySource,
        redis: aioredis.Redis,
        metrics: GatewayMetrics,
        outbox: Outbox,
        restart_member: Callable[[Member, str], None],
        announce: Callable[[bool], None],
    ) -> None:
        self.fanout = fanout
        self.history = history
        self.redis = redis
        self.metrics = metrics
        self.outbox = outbox
        self._restart_member = restart_member
        self._announce = announce
        self._primed: dict[str, asyncio.Event] = {}
        self._held: dict[str, list[LiveMessage]] = defaultdict(list)
        self._bus_was_up = False

    @property
    def bus_was_up(self) -> bool:
        return self._bus_was_up

    # -- symbols joining and leaving --------------------------------------------------------

    async def ensure_primed(
        self, symbol: str, new_symbol: bool, subscribe: Callable[[str], Awaitable[None]], timeout_s: float
    ) -> None:
        """Join the symbol's channel (first subscriber), read where it is, then let messages flow."""
        event = self._primed.get(symbol)
        if event is None or new_symbol:
            event = self._primed[symbol] = asyncio.Event()
            await subscribe(symbol)
            epoch, seq = await read_meta(self.redis, symbol)
            self.fanout.prime(symbol, epoch, seq)
            held = self._held.pop(symbol, [])
            if held:
                await self.process(symbol, held)
            event.set()
        else:
            await asyncio.wait_for(event.wait(), timeout_s)

    def forget(self, symbol: str) -> None:
        self._primed.pop(symbol, None)
        self._held.pop(symbol, None)

    # -- messages ----------------------------------------------------------------------------

    async def on_batch(self, batch: Batch) -> None:
        per_symbol: dict[str, list[LiveMessage]] = {}
        oldest = 0
        for channel, payload in batch:
            epoch, seq, published, raw = parse_live_message(payload)
            per_symbol.setdefault(keys.symbol_of(channel), []).append((epoch, seq, raw))
            oldest = oldest or published
        for symbol, messages in per_symbol.items():
            if symbol not in self.fanout.symbols:
                continue
            if not self.fanout.is_primed(symbol):
                self._held[symbol].extend(messages)
                continue
            await self.process(symbol, messages)
        if oldest:
            # One observation per batch (its oldest event): publish→send latency, off the per-event path.
            age_ms = now_ms() - oldest
            if age_ms >= 0:
                self.metrics.latency.observe(age_ms / 1000)

    async def process(self, symbol: str, messages: list[LiveMessage]) -> None:
        now = time.monotonic()
        for epoch, run in itertools.groupby(messages, key=lambda m: m[0]):
            pending: list[Message] = [(seq, raw) for _, seq, raw in run]
            while symbol in self.fanout.symbols:
                checked = self.fanout.check(symbol, epoch, pending)
                if isinstance(checked, EpochChanged):
                    self.reset_symbol(symbol, checked.epoch, "epoch changed")
                    continue
                if isinstance(checked, Diverged):
                    self.rewind(symbol, epoch, checked.seq)
                    continue
                if isinstance(checked, Hole):
                    filled = await self.fill(symbol, epoch, checked)
                    if filled is None:
                        self.reset_symbol(symbol, epoch, "events lost on the bus could not be recovered")
                        self.fanout.symbols[symbol].last_seq = checked.last
                        continue
                    pending = sorted({**dict(filled), **dict(pending)}.items())
                    continue
                self.outbox.write(self.fanout.ingest(symbol, epoch, checked, now))
                self.metrics.events_in += len(checked)
                break

    async def fill(self, symbol: str, epoch: str, hole: Hole) -> list[Message] | None:
        """The missing events from the log (or SQL, if already trimmed); None if they are gone."""
        wanted = list(range(hole.first, hole.last + 1))
        entries = await self.history.read_log(symbol, hole.first, hole.last)
        if [seq for seq, _ in entries] != wanted:
            after = await self.history.after(
                symbol, EVERYTHING, epoch=epoch, seq=hole.first - 1, until_seq=hole.last
            )
            entries = [(seq, raw) for seq, raw in after.events if seq <= hole.last]
            if after.reset_reason is not None or [seq for seq, _ in entries] != wanted:
                log.error(
                    "hole could not be filled",
                    extra={"symbol": symbol, "first": hole.first, "last": hole.last},
                )
                return None
        self.metrics.gaps_filled += 1
        self.metrics.gap_events_filled += len(entries)
        return entries

    def rewind(self, symbol: str, epoch: str, seq: int) -> None:
        """Redis lost writes we already sent (a failover): every subscriber gets reset and a fresh window."""
        log.warning("history rewritten in Redis; resetting subscribers", extra={"symbol": symbol, "seq": seq})
        self.reset_symbol(symbol, epoch, "events lost in a Redis failover")
        state = self.fanout.symbols[symbol]
        state.last_seq = seq - 1
        state.recent = {s: raw for s, raw in state.recent.items() if s < seq}

    def reset_symbol(self, symbol: str, epoch: str, reason: str) -> None:
        for member in self.fanout.reset_symbol(symbol, epoch):
            self.outbox.lagging.discard(member)
            self._restart_member(member, reason)

    # -- the bus going down and up -------------------------------------------------------------

    async def on_bus_state(self, up: bool) -> None:
        if up and self._bus_was_up:
            self.metrics.bus_reconnects += 1
            await self.resync()
        if up or self._bus_was_up:
            self._announce(up)
        self._bus_was_up = self._bus_was_up or up

    async def resync(self) -> None:
        """After a reconnect: fill each symbol from the log up to its current seq (or reset it)."""
        for symbol in list(self.fanout.symbols):
            state = self.fanout.symbols.get(symbol)
            if state is None or state.last_seq is None:
                continue
            try:
                epoch, seq = await read_meta(self.redis, symbol)
            except RECOVERABLE as exc:
                log.warning("resync failed", extra={"symbol": symbol, "error": str(exc)})
                continue
            if epoch is None:
                continue
            if state.epoch is not None and epoch != state.epoch:
                self.reset_symbol(symbol, epoch, "epoch changed")
                continue
            last = state.last_seq
            # Compare what we sent lately with what Redis holds now: a failover may have lost writes.
            since = max(min(state.recent, default=last + 1), 1)
            stored = await self.history.read_log(symbol, since, last) if since <= last else []
            diverged = state.diverges(stored)
            if diverged is None and seq < last:
                diverged = seq + 1
            if diverged is not None:
                self.rewind(symbol, epoch, diverged)
                last = diverged - 1
            if seq > last:
                await self.process(symbol, await self._tail(symbol, epoch, last, seq))

    async def _tail(self, symbol: str, epoch: str, after: int, last: int) -> list[LiveMessage]:
        filled = await self.fill(symbol, epoch, Hole(after + 1, last))
        if filled is None:
            self.reset_symbol(symbol, epoch, "events lost on the bus could not be recovered")
            return []
        return [(epoch, seq, raw) for seq, raw in filled]
