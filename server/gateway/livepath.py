"""The symbols' live streams: batches off the bus, checks, hole filling, resets, resync.

Everything on the bus is untrusted (server/core/trust.py): a message whose envelope or event
is invalid is dropped, logged once per symbol and reason per minute, and counted. The
common case (the next seq, a valid event) is sent at once; whatever looks wrong is
checked against the symbol's meta and log first, and only what they confirm is believed:

* a new epoch resets the symbol's subscribers only if the meta holds it;
* a hole (a seq jump) is filled from the store in bounded pages up to the meta's seq; the
  message after it is dropped, as the stored one under that seq was sent instead;
  messages above the meta's seq (read after the batch arrived) are forged: dropped;
* an invalid event at a seq the symbol reached is a void seq: the stored event (or
  nothing, if that is invalid too) is sent, positions move past it;
* another event under a seq already sent rewinds the subscribers only if the log holds it.

With ``server.confirm_live`` every batch is checked that way (the events sent are the
log's). After the bus reconnects each symbol is filled from its log up to Redis's seq.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import redis.asyncio as aioredis

from publishers import keys
from publishers.connection import TRANSIENT_ERRORS
from publishers.events import now_ms
from server.core.fanout import Diverged, EpochChanged, Fanout, Hole, Member
from server.core.selection import Message
from server.core.trust import CheckedRun, LiveMessage, check_run, parse_envelope, symbol_name
from server.errors import BusError
from server.gateway.bus import Batch
from server.gateway.holes import StoreFill
from server.gateway.metrics import GatewayMetrics
from server.gateway.outbox import Outbox
from server.history.source import HistorySource, read_meta
from server.logs import RateLimitedLog

log = logging.getLogger(__name__)

#: Failures of Redis that end one operation, not the gateway.
RECOVERABLE: tuple[type[BaseException], ...] = (BusError, *TRANSIENT_ERRORS)
#: Messages kept per symbol while it is being primed; past that they are dropped (a hole
#: fill brings them back from the log).
MAX_HELD: Final = 10_000
#: A publish time further than this from now is not a latency sample.
_MAX_LATENCY_MS: Final = 3_600_000


class BusState(Protocol):
    up: bool


def refuse_if_bus_down(bus: BusState, live: LivePath) -> None:
    """A subscribe while the bus is known down (it was up, or a connection attempt failed) fails at
    once with ``internal`` instead of waiting for a confirmation that cannot come."""
    # (a bus that never connected but failed to counts ``reconnects``: RedisBus and ShardedBus do)
    if not bus.up and (live.bus_was_up or getattr(bus, "reconnects", 0) > 0):
        raise BusError("Redis is down (the gateway sent status down); subscribe again when it is up")


def _epoch_of(message: LiveMessage) -> str:
    return message[0]


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
        confirm_every_batch: bool = False,
    ) -> None:
        self.fanout = fanout
        self.history = history
        self.redis = redis
        self.metrics = metrics
        self.outbox = outbox
        self.confirm_every_batch = confirm_every_batch
        self.store = StoreFill(fanout, history, outbox, metrics)
        self._restart_member = restart_member
        self._announce = announce
        self._primed: dict[str, asyncio.Event] = {}
        self._held: dict[str, list[LiveMessage]] = defaultdict(list)
        self._bus_was_up = False
        self._symbol_of: dict[bytes, str] = {}
        self._rejections = RateLimitedLog(log)

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
                await self._process_guarded(symbol, held)
            event.set()
        else:
            await asyncio.wait_for(event.wait(), timeout_s)

    def forget(self, symbol: str) -> None:
        self._primed.pop(symbol, None)
        self._held.pop(symbol, None)
        self._symbol_of.pop(keys.live_channel(symbol).encode(), None)

    # -- messages ----------------------------------------------------------------------------

    async def on_batch(self, batch: Batch) -> None:
        """One read off the bus: every message is checked; nothing in it can end the bus task."""
        per_symbol: dict[str, list[LiveMessage]] = {}
        oldest = 0
        symbol_of = self._symbol_of
        for channel, payload in batch:
            symbol = symbol_of.get(channel) or self._channel_symbol(channel)
            if symbol is None:
                continue
            message = parse_envelope(payload)
            if isinstance(message, str):
                self.reject(symbol, message)
                continue
            per_symbol.setdefault(symbol, []).append(message)
            oldest = oldest or message[2]
        for symbol, messages in per_symbol.items():
            if symbol not in self.fanout.symbols:
                continue
            if not self.fanout.is_primed(symbol):
                held = self._held[symbol]
                held.extend(messages[: max(0, MAX_HELD - len(held))])
                continue
            await self._process_guarded(symbol, messages)
        if oldest:
            # One observation per batch (its oldest event): publish→send latency, off the per-event path.
            age_ms = now_ms() - oldest
            if 0 <= age_ms < _MAX_LATENCY_MS:
                self.metrics.latency.observe(age_ms / 1000)

    def _channel_symbol(self, channel: bytes) -> str | None:
        try:
            symbol = symbol_name(keys.symbol_of(channel))
        except (ValueError, UnicodeDecodeError):
            symbol = None
        if symbol is not None and symbol in self.fanout.symbols:
            self._symbol_of[channel] = symbol
        return symbol

    def reject(self, symbol: str, reason: str, count: int = 1, **fields: Any) -> None:
        """Count dropped messages and log it (once per symbol and reason per minute)."""
        self.metrics.bus_rejected[reason] = self.metrics.bus_rejected.get(reason, 0) + count
        self._rejections.warning(
            (symbol, reason),
            "dropped messages read from Redis",
            symbol=symbol,
            reason=reason,
            count=count,
            **fields,
        )

    async def _process_guarded(self, symbol: str, messages: list[LiveMessage]) -> None:
        try:
            await self.process(symbol, messages)
        except RECOVERABLE as exc:
            # Redis failed while checking or filling: the next message's hole (or the resync
            # after a reconnect) brings these from the log.
            self._rejections.warning(
                (symbol, "redis"), "live messages left for later: Redis failed", symbol=symbol, error=str(exc)
            )
        except Exception:
            self.metrics.bus_rejected["error"] += len(messages)
            self._rejections.log(
                logging.ERROR, (symbol, "error"), "live messages dropped: processing failed",
                exc_info=True, symbol=symbol,
            )  # fmt: skip
            state = self.fanout.symbols.get(symbol)
            if state is not None and state.last_seq is not None:
                # What was sent of them is unknown: subscribers start over from a fresh window.
                self.reset_symbol(symbol, state.epoch or "", "internal error", state.last_seq)

    async def process(self, symbol: str, messages: list[LiveMessage]) -> None:
        if not messages:
            return
        now = time.monotonic()
        first = messages[0][0]
        if all(message[0] == first for message in messages):
            runs: Any = ((first, messages),)  # the common case: one epoch
        else:
            runs = ((epoch, list(group)) for epoch, group in itertools.groupby(messages, key=_epoch_of))
        for epoch, run in runs:
            state = self.fanout.symbols.get(symbol)
            if state is None or state.last_seq is None:
                return
            if epoch != state.epoch and not await self._confirm_epoch(symbol, epoch, run):
                continue
            checked = check_run(symbol, run, decode=not self.confirm_every_batch)
            for reason, seq in checked.rejected:
                self.reject(symbol, reason, seq=seq)
            await self._advance(symbol, epoch, checked, now)

    async def _confirm_epoch(self, symbol: str, epoch: str, run: list[LiveMessage]) -> bool:
        """A message of another epoch: believed (subscribers reset) only if the meta holds it."""
        state = self.fanout.symbols[symbol]
        current, seq = await read_meta(self.redis, symbol)
        if self.fanout.symbols.get(symbol) is not state:
            return False
        if current == epoch:
            if state.epoch is not None:
                self.reset_symbol(symbol, epoch, "epoch changed", seq)
            # else: the symbol's first epoch; its first frame brings it (no reset)
            return True
        self.reject(symbol, "epoch", len(run), epoch=epoch)
        if current is not None and current != state.epoch:
            # The epoch did change, to another one than the message claims: follow the meta.
            self.reset_symbol(symbol, current, "epoch changed", seq)
        return False

    async def _advance(self, symbol: str, epoch: str, run: CheckedRun, now: float) -> None:
        pending, events = run.pending, run.events
        state = self.fanout.symbols[symbol]
        while pending and self.fanout.symbols.get(symbol) is state:
            checked = self.fanout.check(symbol, epoch, pending)
            if isinstance(checked, EpochChanged):
                return  # reset meanwhile (a concurrent resync): these belong to the old epoch
            if isinstance(checked, Diverged):
                pending = await self._diverged(symbol, epoch, pending, checked.seq)
                continue
            if isinstance(checked, Hole):
                pending = await self._fill_to(symbol, epoch, pending, checked.last + 1)
                continue
            if self.confirm_every_batch and checked:
                pending = await self._fill_to(symbol, epoch, pending, checked[-1][0])
                continue
            if events is None:
                decoded = None
            elif checked is run.pending:
                decoded = run.decoded  # the common case: the run as it came
            else:
                decoded = [events[seq] for seq, _ in checked]
            self.outbox.write(self.fanout.ingest(symbol, epoch, checked, now, events=decoded))
            self.metrics.events_in += len(checked)
            pending = []
        alive = self.fanout.symbols.get(symbol) is state and state.epoch == epoch
        if run.tail > (state.last_seq or 0) and alive:
            # Invalid events past the position: void seqs if the store holds them, else forged.
            await self._fill_to(symbol, epoch, [], run.tail)

    async def _fill_to(self, symbol: str, epoch: str, pending: list[Message], through: int) -> list[Message]:
        """Send the stored events up to ``through``; returns what is left of ``pending`` to check."""
        state = self.fanout.symbols[symbol]
        wanted = {seq: raw for seq, raw in pending if seq <= through}
        filled = await self.store.fill(symbol, epoch, through, wanted)
        if filled is None or self.fanout.symbols.get(symbol) is not state:
            return []
        if filled.reset_reason is not None:
            log.error(
                "events lost on the bus could not be recovered",
                extra={"symbol": symbol, "from": (state.last_seq or 0) + 1, "to": through},
            )
            self.reset_symbol(symbol, filled.epoch or epoch, filled.reset_reason, filled.meta_seq)
            if filled.epoch not in (None, epoch):
                return []
        if filled.mismatched:
            self.reject(symbol, "unconfirmed", filled.mismatched, seq=through)
        # Seqs above the meta's seq (read after this batch arrived) were never published.
        forged = [seq for seq, _ in pending if seq > filled.meta_seq]
        if forged:
            self.reject(symbol, "unconfirmed", len(forged), seq=forged[0], meta_seq=filled.meta_seq)
        position = state.last_seq or 0
        return [(seq, raw) for seq, raw in pending if position < seq <= filled.meta_seq]

    async def _diverged(self, symbol: str, epoch: str, pending: list[Message], seq: int) -> list[Message]:
        """Another event under a seq already sent: rewind only if the log holds it, else drop it."""
        state = self.fanout.symbols[symbol]
        live = dict(pending)[seq]
        stored = await self.store.stored(symbol, epoch, seq)
        if self.fanout.symbols.get(symbol) is not state:
            return []
        if stored == live:
            self.rewind(symbol, epoch, seq)
            return pending
        # Forged. Other replays in this batch that differ from what was sent are dropped unread.
        recent = state.recent
        last = state.last_seq or 0
        dropped = [s for s, raw in pending if s <= last and recent.get(s, raw) != raw]
        self.reject(symbol, "diverged", len(dropped), seq=seq)
        return [(s, raw) for s, raw in pending if s > last]

    def rewind(self, symbol: str, epoch: str, seq: int) -> None:
        """Redis lost writes we already sent (a failover): every subscriber gets reset and a fresh window."""
        log.warning("history rewritten in Redis; resetting subscribers", extra={"symbol": symbol, "seq": seq})
        self.reset_symbol(symbol, epoch, "history rewritten in Redis", seq - 1)
        self.fanout.forget_sent_from(symbol, seq)

    def reset_symbol(self, symbol: str, epoch: str, reason: str, position: int = 0) -> None:
        """Every subscriber gets ``reset`` and a fresh window; live goes on after ``position``."""
        for member in self.fanout.reset_symbol(symbol, epoch, position):
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
            try:
                await self._resync_symbol(symbol)
            except RECOVERABLE as exc:
                log.warning("resync failed", extra={"symbol": symbol, "error": str(exc)})
            except Exception:
                log.exception("resync failed", extra={"symbol": symbol})

    async def _resync_symbol(self, symbol: str) -> None:
        state = self.fanout.symbols.get(symbol)
        if state is None or state.last_seq is None:
            return
        epoch, seq = await read_meta(self.redis, symbol)
        if epoch is None or self.fanout.symbols.get(symbol) is not state:
            return
        if state.epoch is not None and epoch != state.epoch:
            self.reset_symbol(symbol, epoch, "epoch changed", seq)
            return
        last = state.last_seq
        # Compare what we sent lately with what Redis holds now: a failover may have lost writes.
        since = max(min(state.recent, default=last + 1), 1)
        stored = await self.history.read_log(symbol, since, last) if since <= last else []
        diverged = state.diverges(stored)
        if diverged is None and seq < last:
            diverged = seq + 1
        if diverged is not None:
            self.rewind(symbol, epoch, diverged)
        if seq > (state.last_seq or 0):
            await self._fill_to(symbol, epoch, [], seq)
