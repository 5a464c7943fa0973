"""One replaying subscription: the history as it stood at ``from``, then the recorded events paced
by the replay clock, with pause, resume, seek and speed, until ``to`` or the live edge.

The events' stored JSON is spliced into the frames (server/core/protocol.py ``events_frame``),
never decoded and re-encoded here. Memory is bounded: the cursor holds at most one page
per table, and each frame is awaited onto the socket before the next is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

from websockets.asyncio.server import ServerConnection

from server.core.filters import EventFilter
from server.core.protocol import HistoryRequest, events_frame, history_frame_bytes, reset_frame
from server.core.replay import MAX, ReplayClock, ReplayControl, ReplayRequest, ReplayState, replay_frame
from server.gateway.build_worker import window_body
from server.gateway.builds import HistoryBudget
from server.gateway.outbox import Outbox
from server.history.replay_cursor import PAGE_ROWS, End, Events, LiveEdge, ReplayCursor, Step
from server.history.replay_store import NewEpoch, Position, ReplayStore

#: Events per frame at most (the frame is chunked past server.max_send_frame_bytes).
FRAME_ITEMS: Final = 2000
#: Rows per table per page when paced: a paced replay needs few rows at a time, and holds less.
PACED_PAGE_ROWS: Final = 500
#: Sleeping longer than this re-checks the clock (a speed change or seek wakes it at once anyway).
MAX_SLEEP_S: Final = 5.0

#: (epoch, seq) -> hand the subscription over to the live stream from there.
HandOver = Callable[[str | None, int], Awaitable[None]]


class ReplayPlayer:
    """Plays one replay on one connection; :meth:`control` applies a ``replay_control`` at once."""

    def __init__(
        self,
        *,
        ws: ServerConnection,
        sub: str,
        symbol: str,
        flt: EventFilter,
        request: ReplayRequest,
        history: HistoryRequest,
        max_events: int,
        store: ReplayStore,
        outbox: Outbox,
        budget: HistoryBudget,
        hand_over: HandOver,
    ) -> None:
        self.ws = ws
        self.sub = sub
        self.symbol = symbol
        self.flt = flt
        self.request = request
        self.history = history
        self.max_events = max_events
        self.store = store
        self.outbox = outbox
        self.budget = budget
        self.hand_over = hand_over
        self.clock = ReplayClock(request.from_ms, request.speed, time.monotonic())
        self.epoch: str | None = None
        #: The last seq the client's frames cover (from_seq of the next frame is one more).
        self.sent_to = 0
        self.events_sent = 0
        self._seek_to: int | None = None
        self._cursor: ReplayCursor | None = None
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"ReplayPlayer({self.sub}, {self.symbol}, {self.clock!r}, sent={self.events_sent})"

    # -- control (called from the connection's reader) ---------------------------------

    def control(self, message: ReplayControl) -> None:
        now = time.monotonic()
        if message.action == "pause":
            self.clock.pause(now)
            self._say("paused", message.ref)
        elif message.action == "resume":
            self.clock.resume(now)
            self._say("playing", message.ref)
        elif message.action == "speed" and message.speed is not None:
            self.clock.set_speed(message.speed, now)
            if self._cursor is not None:
                self._cursor.page_rows = self._page_rows()
            self._say("speed", message.ref)
        elif message.action == "seek" and message.to_ms is not None:
            self._seek_to = message.to_ms
            self.clock.seek(message.to_ms, now)
            self._say("seek", message.ref)
        self._wake.set()

    def _say(self, state: ReplayState, ref: object = None, **extra: object) -> None:
        if self.clock.paused and state != "paused":
            extra["paused"] = True
        frame = replay_frame(
            self.sub,
            self.symbol,
            state,
            time_ms=self.clock.time_ms(time.monotonic()),
            speed=self.clock.speed,
            ref=ref,
            extra=extra,
        )
        self.outbox.send_now(self.ws, frame)

    # -- the replay ---------------------------------------------------------------------

    async def run(self) -> None:
        """Play until ``to`` (then wait for a seek) or the live edge (then hand over)."""
        request = self.request
        cursor = await self._start_at(request.from_ms, reset=False)
        end = None if request.to_ms is None else await self.store.end_mark(self.symbol, request.to_ms)
        cursor.end = end
        self._say("playing")
        ahead: asyncio.Future[Step] | None = None
        try:
            while True:
                if self._seek_to is not None:
                    _cancel(ahead)
                    ahead = None
                    at, self._seek_to = self._seek_to, None
                    cursor = await self._start_at(at, reset=True)
                    cursor.end = end
                    continue
                if ahead is None and self.clock.paused:
                    await self._wait_while_paused()  # nothing is read while paused
                    continue
                step = await (ahead if ahead is not None else cursor.next())
                ahead = None
                if isinstance(step, Events):
                    # The next page is read while this one is sent: the database (its process, or
                    # aiosqlite's thread) works meanwhile. One page ahead at most.
                    ahead = None if self.clock.paused else asyncio.ensure_future(cursor.next())
                    await self._play(step)
                    continue
                if not await self._other(step):
                    return
        finally:
            _cancel(ahead)

    async def _other(self, step: Step) -> bool:
        """An epoch change, the end or the live edge; False when the replay is over (handed over)."""
        if isinstance(step, NewEpoch):
            # The recorded reset, as the live subscribers got it: reset, then the new window.
            await self.ws.send(reset_frame(self.sub, self.symbol, "epoch changed"))
            await self._send_history(Position(step.epoch, 0, step.ts), reset=True)
        elif isinstance(step, LiveEdge):
            self._say("live", epoch=step.epoch, seq=step.seq)
            await self.hand_over(step.epoch, step.seq)
            return False
        else:
            assert isinstance(step, End)
            self._say("end")
            await self._wait_for_seek()
        return True

    async def _start_at(self, at_ms: int, *, reset: bool) -> ReplayCursor:
        position = await self.store.locate(self.symbol, at_ms)
        await self._send_history(position, reset=reset)
        self.clock.seek(at_ms, time.monotonic())
        self._cursor = ReplayCursor(
            self.store, self.symbol, self.flt, position, None, page_rows=self._page_rows()
        )
        return self._cursor

    def _page_rows(self) -> int:
        return PAGE_ROWS if self.clock.speed == MAX else PACED_PAGE_ROWS

    async def _send_history(self, position: Position, *, reset: bool) -> None:
        async with self.budget.slot():
            window = await self.store.window_as_of(
                self.symbol,
                self.flt,
                position,
                minutes=self.history.minutes,
                max_points=self.history.max_points,
                max_events=self.max_events,
            )
            body = window_body(self.symbol, window.data, 0, False)
        frame = history_frame_bytes(
            self.sub,
            self.symbol,
            window.epoch,
            window.to_seq,
            body,
            reset=reset,
            truncated=window.truncated,
            omitted=window.omitted,
        )
        del body
        self.epoch, self.sent_to = window.epoch, window.to_seq
        size = len(frame)
        self.budget.hold(size)
        try:
            for piece in self.outbox.chunks(frame):
                await self.ws.send(piece, text=True)
        finally:
            self.budget.drop(size)

    async def _wait_while_paused(self) -> None:
        while self.clock.paused and self._seek_to is None:
            self._wake.clear()
            await self._wake.wait()

    async def _wait_for_seek(self) -> None:
        while self._seek_to is None:
            self._wake.clear()
            await self._wake.wait()

    async def _play(self, step: Events) -> None:
        """Send the page's events as they fall due; returns early on a seek."""
        items, index, count = step.items, 0, len(step.items)
        if self.epoch != step.epoch:
            self.epoch, self.sent_to = step.epoch, step.after
        clock = self.clock
        while index < count:
            if self._seek_to is not None:
                return
            now = time.monotonic()
            stop = index
            while stop < count and stop - index < FRAME_ITEMS and clock.wait_s(items[stop][1], now) == 0.0:
                stop += 1
            if stop == index:
                wait = clock.wait_s(items[index][1], now)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, MAX_SLEEP_S))
                continue
            last = stop == count
            to_seq = step.reached if last else items[stop - 1][0]
            frame = events_frame(
                self.sub,
                self.symbol,
                step.epoch,
                self.sent_to + 1,
                to_seq,
                [item[2] for item in items[index:stop]],
            )
            for piece in self.outbox.chunks(frame.encode()):
                await self.ws.send(piece, text=True)
            clock.played(items[stop - 1][1])
            self.events_sent += stop - index
            self.sent_to, index = to_seq, stop


def _cancel(pending: asyncio.Future[Step] | None) -> None:
    """Drop a page read ahead (a seek, or the replay ending): its rows are read again if needed."""
    if pending is not None:
        pending.cancel()
        pending.add_done_callback(_retrieve)


def _retrieve(done: asyncio.Future[Step]) -> None:
    if not done.cancelled():
        done.exception()
