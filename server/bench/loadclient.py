"""What one load connection counts: seqs received, holes, duplicates, latency, when it went live.

Pure bookkeeping on the messages a :class:`~server.bench.wsclient.RawWebSocket` reads,
for both servers: signalpush ``events`` frames (seq ranges, batched items) and the
baseline's raw live messages (``<epoch> <seq> <publish ms> <event json>``, one per frame).
Each distinct frame is parsed once per process (:class:`FrameCache`): every connection
of a group receives the same bytes, so load clients stay cheap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from server.bench.stats import LatencyHistogram
from server.core.chunks import Reassembler

_EVENTS_PREFIX: Final = b'{"op":"events"'
_ITEMS: Final = b'"items":['
_SEQ_RE: Final = re.compile(rb'\{"seq":(\d+),')
_STAMP_RE: Final = re.compile(rb'"t":(\d+)')
_HEADER_INT_RE: Final = re.compile(rb'"(from_seq|to_seq)":(\d+)')
_EPOCH_RE: Final = re.compile(rb'"epoch":"([^"]*)"')
_CACHE_SIZE: Final = 512


@dataclass(frozen=True, slots=True)
class ParsedFrame:
    epoch: str | None
    from_seq: int
    to_seq: int
    seqs: Sequence[int]
    #: meta.t of each item (ns since the epoch), 0 when absent; empty unless asked for.
    stamps: Sequence[int]


def _item_seq(body: bytes, at: int) -> int:
    end = body.index(b",", at + 7)
    return int(body[at + 7 : end])


def parse_events_frame(payload: bytes, stamps: bool = True) -> ParsedFrame:
    """Seq range, item seqs (and send stamps) of a signalpush ``events`` frame, without a JSON decode.

    A frame whose items are exactly ``from_seq..to_seq`` (the common case: nothing filtered
    out) is recognised from its first and last item and its item count alone.
    """
    split = payload.find(_ITEMS)
    header = payload[:split]
    numbers = {name.decode(): int(value) for name, value in _HEADER_INT_RE.findall(header)}
    epoch_match = _EPOCH_RE.search(header)
    from_seq, to_seq = numbers["from_seq"], numbers["to_seq"]
    body = payload[split:]
    count = body.count(b'{"seq":')
    seqs: Sequence[int] = ()
    if count:
        first, last = _item_seq(body, body.find(b'{"seq":')), _item_seq(body, body.rfind(b'{"seq":'))
        if last - first + 1 == count:
            seqs = range(first, last + 1)
        else:
            seqs = tuple(int(s) for s in _SEQ_RE.findall(body))
    found: Sequence[int] = tuple(int(s) for s in _STAMP_RE.findall(body)) if stamps else ()
    if len(found) != len(seqs):
        found = (0,) * len(seqs) if stamps else ()
    epoch = epoch_match.group(1).decode() if epoch_match else None
    return ParsedFrame(epoch, from_seq, to_seq, seqs, found)


def parse_baseline_message(payload: bytes) -> tuple[str, int, int]:
    """(epoch, seq, meta.t) of a raw live message as the baseline forwards it."""
    epoch, seq, _ = payload.split(b" ", 2)
    at = payload.rfind(b'"t":')
    stamp = 0
    if at >= 0:
        end = at + 4
        while end < len(payload) and 48 <= payload[end] <= 57:
            end += 1
        stamp = int(payload[at + 4 : end])
    return epoch.decode(), int(seq), stamp


class FrameCache:
    """Parsed ``events`` frames by header: one parse per distinct frame per process."""

    def __init__(self) -> None:
        self._frames: dict[tuple[int, bytes], ParsedFrame] = {}
        self.parsed = 0

    def get(self, payload: bytes, stamps: bool) -> ParsedFrame:
        key = (len(payload), payload[: payload.find(_ITEMS)])
        frame = self._frames.get(key)
        if frame is None or (stamps and len(frame.stamps) != len(frame.seqs)):
            if len(self._frames) >= _CACHE_SIZE:
                self._frames.clear()
            frame = self._frames[key] = parse_events_frame(payload, stamps)
            self.parsed += 1
        return frame


@dataclass
class Tally:
    """Counters shared by the connections of one load process, reset by ``mark``."""

    items: int = 0
    frames: int = 0
    bytes: int = 0
    duplicates: int = 0
    holes: int = 0
    resets: int = 0
    errors: int = 0
    first_ns: int = 0
    last_ns: int = 0
    measure_latency: bool = False
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    error_samples: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "frames": self.frames,
            "bytes": self.bytes,
            "duplicates": self.duplicates,
            "holes": self.holes,
            "resets": self.resets,
            "errors": self.errors,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "latency": self.latency.to_json(),
            "error_samples": self.error_samples[:5],
        }


class ConnState:
    """One load connection's view of its subscription (survives reconnects)."""

    __slots__ = (
        "cache",
        "chunks",
        "epoch",
        "expects_history",
        "last_item",
        "live_at_ns",
        "on_ready",
        "on_retry",
        "position",
        "position_at_mark",
        "ready",
        "subscribe_seq",
        "subscribed_once",
        "symbol",
        "tally",
        "unique",
        "unique_at_mark",
        "waiting_live",
    )

    def __init__(
        self,
        symbol: str,
        tally: Tally,
        cache: FrameCache,
        *,
        expects_history: bool = False,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.symbol = symbol
        self.tally = tally
        self.cache = cache
        self.expects_history = expects_history
        self.on_ready = on_ready
        #: Called when the server answers ``internal`` (docs/protocol.md: retry later).
        self.on_retry: Callable[[], None] | None = None
        self.epoch: str | None = None
        #: Seq up to which this connection has everything (signalpush: the frames' to_seq).
        self.position = 0
        self.last_item = 0
        self.unique = 0
        self.unique_at_mark = 0
        #: Where the measurement started for this connection (see :meth:`mark`).
        self.position_at_mark = 0
        self.ready = False
        self.subscribed_once = False
        self.subscribe_seq = 0
        self.waiting_live = False
        self.live_at_ns = 0
        self.chunks = Reassembler()

    def on_message(self, payload: bytes, received_ns: int) -> None:
        if payload[:14] == _EVENTS_PREFIX:
            frame = self.cache.get(payload, self.tally.measure_latency)
            if frame.epoch is not None:
                self.epoch = frame.epoch
            self._items(frame.from_seq, frame.to_seq, frame.seqs, frame.stamps, received_ns, len(payload))
        elif payload[:1] != b"{":
            epoch, seq, stamp = parse_baseline_message(payload)
            self.epoch = epoch
            self._items(seq, seq, (seq,), (stamp,), received_ns, len(payload))
        else:
            message = json.loads(payload)
            if message.get("op") == "chunk":  # a frame over max_send_frame_bytes (docs/protocol.md)
                whole = self.chunks.feed(message)
                if whole is None:
                    return
                self.on_message(whole.encode(), received_ns)
                return
            self._control(message, received_ns)

    def _items(
        self,
        from_seq: int,
        to_seq: int,
        seqs: Sequence[int],
        stamps: Sequence[int],
        received_ns: int,
        size: int,
    ) -> None:
        tally = self.tally
        tally.frames += 1
        tally.bytes += size
        if from_seq > self.position + 1 and self.ready:
            tally.holes += 1
        count = len(seqs)
        if count:
            if seqs[0] > self.last_item:
                self.unique += count
            else:
                fresh = sum(1 for s in seqs if s > self.last_item)
                self.unique += fresh
                tally.duplicates += count - fresh
                if fresh < count and len(tally.error_samples) < 10:
                    tally.error_samples.append(
                        f"duplicate on {self.symbol}: frame {from_seq}..{to_seq} items {seqs[0]}..{seqs[-1]} "
                        f"after item {self.last_item}, position {self.position}"
                    )
            if seqs[-1] > self.last_item:
                self.last_item = seqs[-1]
            tally.items += count
            if not tally.first_ns:
                tally.first_ns = received_ns
            tally.last_ns = received_ns
            if tally.measure_latency:
                add = tally.latency.add
                for stamp in stamps:
                    if stamp:
                        add((received_ns - stamp) / 1000)
        if to_seq > self.position:
            self.position = to_seq
        if self.waiting_live:
            self._check_live(received_ns)

    def _control(self, message: dict[str, Any], received_ns: int) -> None:
        op = message.get("op")
        if op == "subscribed":
            seq = message.get("seq")
            if isinstance(seq, int):  # signalpush: the symbol's position when the subscription started
                self.subscribe_seq = seq
                self.epoch = message.get("epoch") or self.epoch
                if not self.subscribed_once:
                    self.position = max(self.position, seq)
            self.subscribed_once = True
            self.waiting_live = True
            if not self.expects_history:
                self._set_ready()
            self._check_live(received_ns)
        elif op == "history":
            columns = message["data"].values()
            # (rows of older epochs have no seq: docs/protocol.md, "history")
            seqs = sorted(s for column in columns for s in column.get("seq", ()) if s is not None)
            self.epoch = message.get("epoch") or self.epoch
            self._items(1, int(message["to_seq"]), tuple(seqs), (0,) * len(seqs), received_ns, 0)
            self.tally.frames -= 1
            self._set_ready()
        elif op == "reset":
            self.tally.resets += 1
            if len(self.tally.error_samples) < 10:
                self.tally.error_samples.append(f"reset on {self.symbol}: {message.get('reason')}")
        elif op == "error":
            self.tally.errors += 1
            if len(self.tally.error_samples) < 10:
                self.tally.error_samples.append(f"{message.get('code')}: {message.get('message')}")
            if message.get("code") == "internal" and self.on_retry is not None:
                self.on_retry()

    def _set_ready(self) -> None:
        if not self.ready:
            self.ready = True
            if self.on_ready is not None:
                self.on_ready()

    def _check_live(self, received_ns: int) -> None:
        if self.waiting_live and self.position >= self.subscribe_seq:
            self.waiting_live = False
            self.live_at_ns = received_ns

    def mark(self) -> None:
        """Start counting from here: what arrives from now on is checked against the seqs published."""
        self.unique_at_mark = self.unique
        self.position_at_mark = self.progress

    def lost(self, up_to: int) -> int:
        """Seqs in (position at mark, ``up_to``] this connection never received (no filter: all seqs)."""
        return max(0, up_to - self.position_at_mark - (self.unique - self.unique_at_mark))

    def resubscribing(self) -> None:
        """A resume subscription is on its way (after a reconnect): live again once it caught up."""
        self.expects_history = False
        self.waiting_live = False
        self.live_at_ns = 0

    @property
    def progress(self) -> int:
        return self.position if self.position > self.last_item else self.last_item
