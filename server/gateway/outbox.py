"""Writing what the fan-out core built, without awaiting per recipient.

A connection whose transport buffer is past ``max_buffer_bytes`` is skipped and handed to
``on_full`` (server/gateway/slowclients.py: it pauses the subscription and catches it up from
the log once the buffer drains).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from typing import cast

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from server.core.chunks import MAX_SEND_FRAME_BYTES, chunk_frames
from server.core.fanout import Member, MemberState, Outgoing
from server.gateway.metrics import GatewayMetrics


def ws_of(member: Member) -> ServerConnection:
    return cast(ServerConnection, member.conn)


def broadcast_text(
    connections: Iterable[ServerConnection], data: bytes, limit: int | None = None
) -> list[ServerConnection]:
    """``websockets.broadcast`` of a text frame, with the frame's bytes built once.

    A server's frames are not masked, so without an extension (compression) every
    connection gets the same bytes: they are written to each transport as they are, where
    websockets would build them again per connection (a copy of the whole frame each).
    Connections with an extension or a fragmented send in progress go through websockets.
    Like ``broadcast``: connections not open are skipped, failures are ignored. Returns the
    connections skipped because more than ``limit`` bytes wait in their buffer.
    """
    over: list[ServerConnection] = []
    wire: bytes | None = None
    for ws in connections:
        protocol = ws.protocol
        if protocol.state is not State.OPEN:
            continue
        transport = ws.transport
        if limit is not None and transport is not None and transport.get_write_buffer_size() > limit:
            over.append(ws)
            continue
        if protocol.extensions or ws.send_in_progress is not None or transport is None:
            broadcast([ws], data, text=True)
            continue
        if wire is None:
            wire = Frame(Opcode.TEXT, data).serialize(mask=False)
        try:
            transport.write(wire)
        except Exception:  # as broadcast: one connection's failure is not the others'
            continue
    return over


def buffered(ws: ServerConnection) -> int:
    """Bytes queued in the connection's transport, not yet handed to the kernel."""
    transport = ws.transport
    return transport.get_write_buffer_size() if transport is not None else 0


#: Told of a member skipped for a full buffer: (member, last position it got, now).
FullBuffer = Callable[[Member, int, float], None]


class Outbox:
    """Writes the core's ``Outgoing`` to the connections: each group's frame encoded once; a frame
    over ``max_send_frame_bytes`` as ``chunk`` frames (server/core/chunks.py)."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        max_buffer_bytes: int,
        on_full: FullBuffer,
        max_send_frame_bytes: int = MAX_SEND_FRAME_BYTES,
    ) -> None:
        self.metrics = metrics
        self.max_buffer_bytes = max_buffer_bytes
        self._on_full = on_full
        self.max_send_frame_bytes = max_send_frame_bytes
        self._chunk_ids = itertools.count(1)

    def write(self, out: Outgoing) -> None:
        limit = self.max_buffer_bytes
        now = time.monotonic()
        metrics = self.metrics
        for batch in out.broadcasts:
            group_live = batch.group.live
            recipients = group_live if batch.recipients is None else batch.recipients & group_live
            live = cast(set[ServerConnection], recipients)
            data = batch.text.encode()  # once per group, whatever the number of recipients
            count = len(live)
            if len(data) > self.max_send_frame_bytes:
                slow = self._broadcast_chunks(live, data, limit)
            else:
                slow = broadcast_text(live, data, limit)
            for ws in slow:
                member = batch.group.members[ws]
                self._on_full(member, max(member.position, batch.from_seq - 1), now)
            delivered = count - len(slow)
            metrics.frames_out += 1
            metrics.deliveries += delivered
            metrics.bytes_out += len(data) * delivered
        for send in out.sends:
            member = send.member
            if member.state is MemberState.LAGGING:
                continue
            ws = ws_of(member)
            if buffered(ws) > limit:
                self._on_full(member, send.before, now)
                continue
            self.send_now(ws, send.text)

    def chunks(self, data: bytes) -> list[bytes]:
        """``data`` as it goes on the wire: itself, or ``chunk`` frames if it is over the bound."""
        if len(data) <= self.max_send_frame_bytes:
            return [data]
        self.metrics.chunked_frames += 1
        return chunk_frames(data, self.max_send_frame_bytes, next(self._chunk_ids))

    def _broadcast_chunks(
        self, live: set[ServerConnection], data: bytes, limit: int
    ) -> list[ServerConnection]:
        """All the chunks to every recipient that takes the first (a frame is never sent in part)."""
        first, *rest = self.chunks(data)
        slow = broadcast_text(live, first, limit)
        taking = live.difference(slow)
        for piece in rest:
            broadcast_text(taking, piece)
        return slow

    def send_now(self, ws: ServerConnection, text: str) -> None:
        data = text.encode()
        for piece in self.chunks(data):
            broadcast_text([ws], piece)
        self.metrics.frames_out += 1
        self.metrics.deliveries += 1
        self.metrics.bytes_out += len(data)

    def send_to(self, connections: list[ServerConnection], text: str) -> list[ServerConnection]:
        """One frame to several connections, encoded once; returns those skipped because their
        buffer is over the limit (the caller sends them something whole later)."""
        data = text.encode()
        first, *rest = self.chunks(data)
        over = broadcast_text(connections, first, self.max_buffer_bytes)
        taking = [ws for ws in connections if ws not in over]
        for piece in rest:
            broadcast_text(taking, piece)
        self.metrics.frames_out += 1
        self.metrics.deliveries += len(taking)
        self.metrics.bytes_out += len(data) * len(taking)
        return over

    def broadcast_all(self, connections: Iterable[ServerConnection], text: str) -> None:
        broadcast(list(connections), text)
