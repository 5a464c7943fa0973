"""The socket-free core of the gateway: subscription groups, seq bookkeeping, frame building.

Connections subscribed to the same (symbol, canonical filter) form a :class:`Group`;
each batch of a symbol's events is filtered and encoded once per group. A member of a
group is in one of four states:

* ``LOADING``  its history or resume is being read; the group's batches are kept for it;
* ``WAITING``  caught up to a position the live path has not reached yet; batches are
  trimmed to what it lacks and sent to it alone;
* ``LIVE``     it receives the group's frames by broadcast (the fast path);
* ``LAGGING``  its send buffer was full; it gets nothing until it drains, then it is
  caught up from the log like a resume.

Connections are opaque handles here; the I/O layer (``server/gateway/server.py``) owns them.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from server.core.filters import EventFilter
from server.core.protocol import events_frame
from server.core.selection import BatchView, Message

#: Events remembered per symbol to recognise a rewritten history (see :class:`Diverged`).
RECENT_EVENTS = 512


class MemberState(enum.Enum):
    LOADING = "loading"
    WAITING = "waiting"
    LIVE = "live"
    LAGGING = "lagging"


@dataclass(eq=False)
class Member:
    """One connection's subscription (a connection has at most one membership per group)."""

    conn: Hashable
    group: Group
    state: MemberState = MemberState.LOADING
    position: int = 0
    buffer: list[GroupBatch] = field(default_factory=list)
    overflowed: bool = False
    lagging_since: float = 0.0
    #: Bumped whenever a new catch-up starts, so a stale one cannot finish.
    generation: int = 0

    @property
    def sub(self) -> str:
        return self.group.id


@dataclass(eq=False)
class Group:
    id: str
    symbol: str
    filter: EventFilter
    members: dict[Hashable, Member] = field(default_factory=dict)
    #: Connections in the LIVE state: the broadcast target, kept as a set for O(1) updates.
    live: set[Hashable] = field(default_factory=set)
    #: The to_seq of the last frame built for this group.
    position: int = 0
    last_frame_at: float = 0.0


@dataclass(frozen=True, slots=True)
class GroupBatch:
    """One batch of a symbol seen through one group's filter, encoded once."""

    group: Group
    epoch: str | None
    from_seq: int
    to_seq: int
    items: tuple[Message, ...]
    text: str
    #: Who the broadcast goes to when not the group's whole live set (see ``_deliver``).
    recipients: frozenset[Hashable] | None = None


@dataclass(eq=False)
class SymbolState:
    symbol: str
    epoch: str | None = None
    #: Highest seq the live path has processed; None until primed from Redis.
    last_seq: int | None = None
    groups: dict[EventFilter, Group] = field(default_factory=dict)
    #: The last RECENT_EVENTS events sent (seq -> json), to tell a replayed seq from a rewritten one.
    recent: dict[int, str] = field(default_factory=dict)
    #: Resets so far (a new epoch, history rewritten): what was read before one is stale.
    resets: int = 0

    def remember(self, messages: list[Message]) -> None:
        recent = self.recent
        for seq, raw in messages:
            recent[seq] = raw
        if len(recent) > RECENT_EVENTS:
            # Remembered in seq order (but after a rewind): the first inserted are about the oldest.
            for seq in list(itertools.islice(recent, len(recent) - RECENT_EVENTS)):
                del recent[seq]

    def sent(self, seq: int) -> str | None:
        """The event sent under ``seq`` lately (None if not remembered)."""
        return self.recent.get(seq)

    def diverges(self, messages: Iterable[Message]) -> int | None:
        """The first seq whose event differs from the one sent under that seq (history was rewritten)."""
        for seq, raw in messages:
            sent = self.recent.get(seq)
            if sent is not None and sent != raw:
                return seq
        return None


@dataclass(frozen=True, slots=True)
class Hole:
    """Seqs ``first..last`` are missing before the next message: fill them from the log first."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class EpochChanged:
    epoch: str


@dataclass(frozen=True, slots=True)
class Diverged:
    """Redis gave a different event under a seq already sent (a failover lost writes): reset from ``seq``."""

    seq: int


@dataclass(frozen=True, slots=True)
class Send:
    """A frame for one member alone; ``before`` is its position without this frame."""

    member: Member
    text: str
    before: int


@dataclass
class Outgoing:
    """What the I/O layer must write: broadcasts to groups' live sets, and single sends."""

    broadcasts: list[GroupBatch] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    went_live: list[Member] = field(default_factory=list)

    def extend(self, other: Outgoing) -> None:
        self.broadcasts.extend(other.broadcasts)
        self.sends.extend(other.sends)
        self.went_live.extend(other.went_live)


class Fanout:
    """Subscription index and batch builder for every symbol this gateway serves."""

    def __init__(self, *, max_buffered_batches: int = 10_000) -> None:
        self.symbols: dict[str, SymbolState] = {}
        self.groups: dict[str, Group] = {}
        self.max_buffered_batches = max_buffered_batches
        self._ids = itertools.count(1)
        #: Frames encoded (one per group per batch): the encode-once guarantee is tested on this.
        self.frames_encoded = 0
        self.events_in = 0

    # -- membership ---------------------------------------------------------------

    def join(self, conn: Hashable, symbol: str, flt: EventFilter, now: float = 0.0) -> tuple[Member, bool]:
        """Add ``conn`` to the group of (symbol, filter) in the LOADING state.

        Returns the member and whether the symbol is new here (the bus must subscribe).
        A connection already in that group is re-joined (its catch-up starts over).
        """
        state = self.symbols.get(symbol)
        new_symbol = state is None
        if state is None:
            state = self.symbols[symbol] = SymbolState(symbol)
        group = state.groups.get(flt)
        if group is None:
            group = Group(f"g{next(self._ids)}", symbol, flt, position=state.last_seq or 0, last_frame_at=now)
            state.groups[flt] = group
            self.groups[group.id] = group
        old = group.members.get(conn)
        if old is not None:
            group.live.discard(conn)
        member = Member(conn, group, position=state.last_seq or 0)
        group.members[conn] = member
        return member, new_symbol

    def leave(self, member: Member) -> bool:
        """Remove a membership; returns True when its symbol has no group left (unsubscribe the bus)."""
        group = member.group
        if group.members.get(member.conn) is not member:
            return False
        del group.members[member.conn]
        group.live.discard(member.conn)
        if group.members:
            return False
        state = self.symbols[group.symbol]
        del state.groups[group.filter]
        del self.groups[group.id]
        if state.groups:
            return False
        del self.symbols[group.symbol]
        return True

    def prime(self, symbol: str, epoch: str | None, seq: int) -> None:
        """Set the live path's starting point (read from Redis after the channel was joined)."""
        state = self.symbols.get(symbol)
        if state is None or state.last_seq is not None:
            return
        state.epoch, state.last_seq = epoch, seq
        for group in state.groups.values():
            group.position = max(group.position, seq)
            for member in group.members.values():
                if member.state is MemberState.LOADING:
                    member.position = max(member.position, seq)

    def is_primed(self, symbol: str) -> bool:
        state = self.symbols.get(symbol)
        return state is not None and state.last_seq is not None

    # -- the live path --------------------------------------------------------------

    def check(
        self, symbol: str, epoch: str, messages: list[Message]
    ) -> list[Message] | Hole | EpochChanged | Diverged:
        """Drop what was already processed; report a hole, an epoch change or a rewritten history first."""
        state = self.symbols[symbol]
        if state.epoch is not None and epoch != state.epoch:
            return EpochChanged(epoch)
        last = state.last_seq or 0
        if messages and messages[0][0] == last + 1:
            # The common case, in one pass: exactly the next seqs.
            expected = last + 1
            for number, _ in messages:
                if number != expected:
                    break
                expected += 1
            else:
                return messages
        replayed = [m for m in messages if m[0] <= last]
        if replayed and (seq := state.diverges(replayed)) is not None:
            return Diverged(seq)
        fresh = [m for m in messages if m[0] > last]
        if fresh and fresh[0][0] != last + 1:
            return Hole(last + 1, fresh[0][0] - 1)
        for (previous, _), (seq, _) in itertools.pairwise(fresh):
            if seq != previous + 1:
                return Hole(previous + 1, seq - 1) if seq > previous + 1 else Hole(seq, seq)
        return fresh

    def ingest(
        self,
        symbol: str,
        epoch: str,
        messages: list[Message],
        now: float,
        *,
        to_seq: int | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> Outgoing:
        """Build one frame per group for a contiguous batch (as returned by :meth:`check`).

        ``to_seq`` (default: the last message's seq) is where the batch ends: seqs after the
        last message up to it, and seqs missing between messages, hold no event for anyone
        (void seqs: stored with an invalid body), like events every filter drops.
        ``events`` are the messages already decoded, if the caller has them.
        """
        out = Outgoing()
        state = self.symbols.get(symbol)
        if state is None:
            return out
        if to_seq is None:
            if not messages:
                return out
            to_seq = messages[-1][0]
        if to_seq <= (state.last_seq or 0) and state.epoch == epoch:
            return out
        self.events_in += len(messages)
        state.epoch = epoch
        state.last_seq = to_seq
        state.remember(messages)
        filtered = any(not flt.is_everything for flt in state.groups)
        view = BatchView(messages, filtered=filtered, events=events)
        for group in state.groups.values():
            items = view.select(group.filter)
            if not items:
                out.extend(self._advance_quietly(group, state))
                continue
            batch = self._encode(group, epoch, group.position + 1, to_seq, items, now)
            out.extend(self._deliver(batch))
        return out

    def idle_frames(self, now: float, heartbeat_s: float) -> Outgoing:
        """Empty frames moving quiet groups' positions, at most once per heartbeat per group."""
        out = Outgoing()
        for state in self.symbols.values():
            if state.last_seq is None:
                continue
            for group in state.groups.values():
                if group.position < state.last_seq and now - group.last_frame_at >= heartbeat_s:
                    batch = self._encode(group, state.epoch, group.position + 1, state.last_seq, (), now)
                    out.extend(self._deliver(batch))
        return out

    def reset_symbol(self, symbol: str, epoch: str, position: int = 0) -> list[Member]:
        """Every member must get a ``reset`` and a fresh history. Returns them (now LOADING).

        The live path goes on after ``position`` of ``epoch`` (0: from the epoch's start);
        what was sent before it under another epoch is forgotten.
        """
        state = self.symbols[symbol]
        if state.epoch != epoch:
            state.recent = {}
        state.epoch, state.last_seq = epoch, position
        state.resets += 1
        members = []
        for group in state.groups.values():
            group.position = position
            group.live.clear()
            for member in group.members.values():
                member.state, member.position = MemberState.LOADING, 0
                member.buffer, member.overflowed = [], False
                member.generation += 1
                members.append(member)
        return members

    def forget_sent_from(self, symbol: str, seq: int) -> None:
        """Redis lost the messages from ``seq`` on (a failover): they no longer count as sent."""
        state = self.symbols.get(symbol)
        if state is not None:
            state.recent = {s: raw for s, raw in state.recent.items() if s < seq}

    # -- catching members up ----------------------------------------------------------

    def restart_loading(self, member: Member) -> None:
        """Put a member back to LOADING (a lagging connection that drained, or a retry)."""
        member.group.live.discard(member.conn)
        member.state, member.buffer, member.overflowed = MemberState.LOADING, [], False
        member.generation += 1

    def finish_loading(self, member: Member, position: int, generation: int) -> Outgoing | None:
        """The member has everything up to ``position``: replay its buffered batches, then go live.

        Returns None if its buffer overflowed meanwhile (load again from ``position``). A
        catch-up superseded by a newer one (``generation``) changes nothing.
        """
        if (
            member.group.members.get(member.conn) is not member
            or member.state is not MemberState.LOADING
            or member.generation != generation
        ):
            return Outgoing()
        member.position = max(member.position, position)
        if member.overflowed:
            member.buffer, member.overflowed = [], False
            return None
        buffered, member.buffer = member.buffer, []
        member.state = MemberState.WAITING
        out = Outgoing()
        for batch in buffered:
            out.extend(self._send_trimmed(member, batch))
        state = self.symbols[member.group.symbol]
        out.extend(self._maybe_live(member, state))
        return out

    def mark_lagging(self, member: Member, position: int, now: float) -> None:
        """The member's send buffer is full: stop sending; it has everything up to ``position``.

        For a broadcast it missed, that is the group's position before it (or the member's
        own, if later); for a frame of its own, the ``before`` of that frame. Later frames
        while it lags do not move it.
        """
        if member.state is MemberState.LAGGING:
            return
        member.group.live.discard(member.conn)
        member.position = position
        member.state, member.lagging_since = MemberState.LAGGING, now

    def members_of(self, conn: Hashable) -> Iterable[Member]:
        for group in self.groups.values():
            member = group.members.get(conn)
            if member is not None:
                yield member

    # -- internals --------------------------------------------------------------------

    def _encode(
        self,
        group: Group,
        epoch: str | None,
        from_seq: int,
        to_seq: int,
        items: tuple[Message, ...],
        now: float,
    ) -> GroupBatch:
        text = events_frame(group.id, group.symbol, epoch, from_seq, to_seq, [raw for _, raw in items])
        self.frames_encoded += 1
        group.position = to_seq
        group.last_frame_at = now
        return GroupBatch(group, epoch, from_seq, to_seq, items, text)

    def _deliver(self, batch: GroupBatch) -> Outgoing:
        out = Outgoing()
        group = batch.group
        if len(group.live) == len(group.members):
            if group.live:
                out.broadcasts.append(batch)
            return out
        if group.live:
            # Members below may go live on this very batch (they get it trimmed, alone): the
            # broadcast goes to the members live before it, or they would get it twice.
            out.broadcasts.append(dataclasses.replace(batch, recipients=frozenset(group.live)))
        state = self.symbols[group.symbol]
        for member in list(group.members.values()):
            if member.state is MemberState.LOADING:
                if len(member.buffer) >= self.max_buffered_batches:
                    member.buffer, member.overflowed = [], True
                elif not member.overflowed:
                    member.buffer.append(batch)
            elif member.state is MemberState.WAITING:
                out.extend(self._send_trimmed(member, batch))
                out.extend(self._maybe_live(member, state))
        return out

    def _advance_quietly(self, group: Group, state: SymbolState) -> Outgoing:
        """A batch with nothing for this group: no frame, but waiting members may now go live."""
        out = Outgoing()
        if len(group.live) == len(group.members):
            return out
        for member in list(group.members.values()):
            if member.state is MemberState.WAITING:
                out.extend(self._maybe_live(member, state))
        return out

    def _send_trimmed(self, member: Member, batch: GroupBatch) -> Outgoing:
        out = Outgoing()
        if batch.to_seq <= member.position:
            return out
        if batch.from_seq <= member.position + 1 and all(seq > member.position for seq, _ in batch.items):
            text = batch.text
        else:
            items = [raw for seq, raw in batch.items if seq > member.position]
            text = events_frame(
                batch.group.id, batch.group.symbol, batch.epoch, member.position + 1, batch.to_seq, items
            )
        out.sends.append(Send(member, text, member.position))
        member.position = batch.to_seq
        return out

    def _maybe_live(self, member: Member, state: SymbolState) -> Outgoing:
        out = Outgoing()
        if member.state is MemberState.WAITING and (state.last_seq or 0) >= member.position:
            member.state = MemberState.LIVE
            member.group.live.add(member.conn)
            out.went_live.append(member)
        return out
