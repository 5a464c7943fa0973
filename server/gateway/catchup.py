"""Bringing one subscription from nothing (or a resume position) to live.

The member is LOADING (its group's batches are kept for it) while this reads the backfill
or the events after its position and sends them; then the fan-out core replays the kept
batches from the next seq on and the member goes live. A reset (new epoch, unknown
position, rewritten history) sends ``reset`` first and a fresh window after it.
"""

from __future__ import annotations

import contextlib
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from publishers.connection import TRANSIENT_ERRORS
from publishers.errors import SignalpushError
from server.core.fanout import Fanout, Member
from server.core.protocol import (
    CLOSE_INTERNAL,
    CLOSE_RESTART,
    HistoryRequest,
    ResumeRequest,
    events_frame,
    history_frame_bytes,
    reset_frame,
)
from server.gateway.builds import HistoryBuilds
from server.gateway.metrics import GatewayMetrics
from server.gateway.outbox import Outbox
from server.gateway.resumes import SharedResumes
from server.history.source import HistorySource
from server.settings import HistorySettings

log = logging.getLogger(__name__)

#: Events per frame when replaying a resume or a catch-up.
CATCHUP_FRAME_ITEMS = 500
CATCHUP_ERRORS: tuple[type[BaseException], ...] = (SignalpushError, *TRANSIENT_ERRORS)


class CatchUp:
    def __init__(
        self,
        *,
        fanout: Fanout,
        history: HistorySource,
        outbox: Outbox,
        metrics: GatewayMetrics,
        defaults: HistorySettings,
        builds: HistoryBuilds,
    ) -> None:
        self.fanout = fanout
        self.history = history
        self.outbox = outbox
        self.metrics = metrics
        self.defaults = defaults
        self.builds = builds
        self.resumes = SharedResumes(history, fanout)

    def default_history(self) -> HistoryRequest:
        return HistoryRequest(self.defaults.default_minutes, self.defaults.max_points)

    async def run(
        self,
        ws: ServerConnection,
        member: Member,
        generation: int,
        history: HistoryRequest | None,
        resume: ResumeRequest | None,
        reset_reason: str | None = None,
    ) -> None:
        """Catch ``member`` up; closes the connection with 1012 if history cannot be read."""
        group = member.group
        try:
            while True:
                if reset_reason is not None:
                    await ws.send(reset_frame(group.id, group.symbol, reset_reason))
                    self.metrics.resets += 1
                    history = history or self.default_history()
                position = member.position
                if resume is not None and reset_reason is None:
                    replayed = await self._replay(ws, member, resume)
                    if isinstance(replayed, str):
                        reset_reason, resume = replayed, None
                        continue
                    position = replayed
                elif history is not None:
                    built = await self.builds.window(
                        group.symbol,
                        group.filter,
                        minutes=history.minutes,
                        max_points=history.max_points,
                        figure=history.figure,
                    )
                    frame = history_frame_bytes(
                        group.id,
                        group.symbol,
                        built.epoch,
                        built.to_seq,
                        built.body,
                        reset=reset_reason is not None,
                        truncated=built.truncated,
                        omitted=built.omitted,
                    )
                    position = built.to_seq
                    del built  # the frame holds the bytes now: one copy in memory, not two
                    await self._send_history(ws, frame)
                out = self.fanout.finish_loading(member, position, generation)
                if out is not None:
                    self.outbox.write(out)
                    return
                # Its kept batches overflowed while loading: continue from where it got to.
                epoch = self.fanout.symbols[group.symbol].epoch or ""
                resume, reset_reason = ResumeRequest(epoch, position), None
        except ConnectionClosed:
            return
        except CATCHUP_ERRORS as exc:
            log.warning("catch-up failed", extra={"sub": group.id, "symbol": group.symbol, "error": str(exc)})
            with contextlib.suppress(ConnectionClosed):
                await ws.close(CLOSE_RESTART, "history unavailable, resume later")
        except Exception:
            # A bug must not leave the subscription silently stuck: close so the client resumes.
            log.exception("catch-up crashed", extra={"sub": group.id, "symbol": group.symbol})
            with contextlib.suppress(ConnectionClosed):
                await ws.close(CLOSE_INTERNAL, "internal error, resume")

    async def _send_history(self, ws: ServerConnection, frame: bytes) -> None:
        """Send a history frame, its bytes counted in flight until it is written out."""
        budget, size = self.builds.budget, len(frame)
        budget.hold(size)
        try:
            for piece in self.outbox.chunks(frame):  # over max_send_frame_bytes: chunk frames
                await ws.send(piece, text=True)
        finally:
            del frame  # before a malloc_trim in drop() can give its memory back
            budget.drop(size)

    async def _replay(self, ws: ServerConnection, member: Member, resume: ResumeRequest) -> int | str:
        """Replay after the resume position in chunks; returns the position reached or a reset reason."""
        group = member.group
        position = resume.seq
        while True:
            # (an epoch of None was resolved to the current one before: protocol.resolve_resume)
            epoch = resume.epoch or ""
            after = await self.resumes.after(group.symbol, group.filter, epoch=epoch, seq=position)
            if after.reset_reason is not None:
                return after.reset_reason
            end = after.to_seq if after.complete else after.reached
            await self.send_events(ws, member, after.epoch, position, end, after.events)
            position = max(position, end)
            if after.complete:
                return position

    async def send_events(
        self,
        ws: ServerConnection,
        member: Member,
        epoch: str | None,
        after_seq: int,
        to_seq: int,
        events: list[tuple[int, str]],
    ) -> None:
        """``events`` (after ``after_seq``, up to ``to_seq``) in contiguous frames of at most 500 items."""
        group = member.group
        start = after_seq
        for index in range(0, max(len(events), 1), CATCHUP_FRAME_ITEMS):
            chunk = events[index : index + CATCHUP_FRAME_ITEMS]
            last_chunk = index + CATCHUP_FRAME_ITEMS >= len(events)
            end = to_seq if last_chunk else chunk[-1][0]
            if end <= start:
                return
            frame = events_frame(group.id, group.symbol, epoch, start + 1, end, [raw for _, raw in chunk])
            for piece in self.outbox.chunks(frame.encode()):
                await ws.send(piece, text=True)
            start = end
