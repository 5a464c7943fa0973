"""Writing what the fan-out core built, without awaiting per recipient.

A connection whose transport buffer is past ``max_buffer_bytes`` is skipped and marked
lagging (the housekeeping catches it up from the log once it drains).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import cast

from websockets.asyncio.server import ServerConnection, broadcast

from server.fanout import Fanout, Member, MemberState, Outgoing
from server.metrics import GatewayMetrics


def ws_of(member: Member) -> ServerConnection:
    return cast(ServerConnection, member.conn)


def buffered(ws: ServerConnection) -> int:
    """Bytes queued in the connection's transport, not yet handed to the kernel."""
    transport = ws.transport
    return transport.get_write_buffer_size() if transport is not None else 0


class Outbox:
    def __init__(self, fanout: Fanout, metrics: GatewayMetrics, max_buffer_bytes: int) -> None:
        self.fanout = fanout
        self.metrics = metrics
        self.max_buffer_bytes = max_buffer_bytes
        #: Members paused because their send buffer was full.
        self.lagging: set[Member] = set()

    def write(self, out: Outgoing) -> None:
        limit = self.max_buffer_bytes
        now = time.monotonic()
        metrics = self.metrics
        for batch in out.broadcasts:
            group_live = batch.group.live
            recipients = group_live if batch.recipients is None else batch.recipients & group_live
            live = cast(set[ServerConnection], recipients)
            slow = [ws for ws in live if buffered(ws) > limit]
            for ws in slow:
                member = batch.group.members[ws]
                self._lag(member, max(member.position, batch.from_seq - 1), now)
            if slow and recipients is not group_live:
                live = live - set(slow)
            data = batch.text.encode()  # once per group, whatever the number of recipients
            broadcast(live, data, text=True)
            metrics.frames_out += 1
            metrics.deliveries += len(live)
            metrics.bytes_out += len(data) * len(live)
        for send in out.sends:
            member = send.member
            if member.state is MemberState.LAGGING:
                continue
            ws = ws_of(member)
            if buffered(ws) > limit:
                self._lag(member, send.before, now)
                continue
            self.send_now(ws, send.text)

    def send_now(self, ws: ServerConnection, text: str) -> None:
        data = text.encode()
        broadcast([ws], data, text=True)
        self.metrics.frames_out += 1
        self.metrics.deliveries += 1
        self.metrics.bytes_out += len(data)

    def broadcast_all(self, connections: Iterable[ServerConnection], text: str) -> None:
        broadcast(list(connections), text)

    def _lag(self, member: Member, position: int, now: float) -> None:
        self.fanout.mark_lagging(member, position, now)
        self.lagging.add(member)
