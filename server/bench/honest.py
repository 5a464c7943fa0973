"""``bench hostile``'s bookkeeping: what the honest publishers published, what each checked client got,
and the verdict on a window of time (pure: no sockets).

Every honest event carries ``meta.t``, a stamp unique within its publisher (ns, strictly
increasing), written with its seq to the publisher's record file. A checked client keeps
every item of every ``events`` frame it receives (seq, stamp, time received). An item is
*honest* when the record has that stamp at that seq of its symbol; anything else that
reached a client (a forged seq, a garbage body) is *forged*. Per window, each honest event
published in it must have reached each connection subscribed before the window exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.bench.stats import LatencyHistogram
from server.core.chunks import Reassembler


@dataclass(frozen=True, slots=True)
class HonestEvent:
    """One honest publish: its symbol, seq (0 when the publish failed), stamp, and whether it succeeded."""

    symbol: str
    seq: int
    stamp_ns: int
    ok: bool

    def line(self) -> str:
        return f"{self.symbol} {self.seq} {self.stamp_ns} {'ok' if self.ok else 'failed'}\n"

    @classmethod
    def parse(cls, line: str) -> HonestEvent | None:
        parts = line.split()
        if len(parts) != 4 or parts[3] not in ("ok", "failed"):
            return None
        return cls(parts[0], int(parts[1]), int(parts[2]), parts[3] == "ok")


class HonestRecord:
    """The honest publishers' record file, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        #: symbol -> seq -> stamp of every successful publish.
        self.seqs: dict[str, dict[int, int]] = {}
        #: symbol -> successful publishes in publish order.
        self.events: dict[str, list[HonestEvent]] = {}
        #: Stamps of publishes that failed (the event may still have been applied: not forged).
        self.failed_stamps: set[int] = set()
        self.failed: dict[str, list[HonestEvent]] = {}

    def refresh(self) -> None:
        try:
            with self.path.open("rb") as source:
                source.seek(self._offset)
                chunk = source.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next refresh
        self._offset += end
        self.add(HonestEvent.parse(line) for line in chunk[:end].decode().splitlines())

    def add(self, events: Iterable[HonestEvent | None]) -> None:
        for event in events:
            if event is None:
                continue
            if event.ok:
                self.seqs.setdefault(event.symbol, {})[event.seq] = event.stamp_ns
                self.events.setdefault(event.symbol, []).append(event)
            else:
                self.failed_stamps.add(event.stamp_ns)
                self.failed.setdefault(event.symbol, []).append(event)

    def is_honest(self, symbol: str, seq: int, stamp_ns: int) -> bool:
        return self.seqs.get(symbol, {}).get(seq) == stamp_ns or stamp_ns in self.failed_stamps

    def published(self, symbol: str, since_ns: int, until_ns: int) -> list[HonestEvent]:
        return [e for e in self.events.get(symbol, ()) if since_ns <= e.stamp_ns <= until_ns]

    def failures(self, since_ns: int, until_ns: int) -> int:
        return sum(1 for es in self.failed.values() for e in es if since_ns <= e.stamp_ns <= until_ns)


class CheckedSub:
    """One checked connection's subscription: every frame it received, kept for the verdict."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        #: Seq the subscription started at (its ``subscribed`` frame) and when; None before.
        self.subscribed_seq: int | None = None
        self.subscribed_ns = 0
        self.position = 0
        #: (seq, stamp or 0, received ns) of every item of every events frame.
        self.receipts: list[tuple[int, int, int]] = []
        #: Received ns of: frames that are not JSON objects, holes (from_seq past position + 1),
        #: resets, and items that are not objects with an integer seq.
        self.unparseable: list[int] = []
        self.holes: list[int] = []
        self.resets: list[int] = []
        self.bad_items: list[int] = []
        self.errors: list[tuple[int, str]] = []
        self.closed_ns = 0
        self.close_code: int | None = None
        self.chunks = Reassembler()

    def on_message(self, payload: bytes, received_ns: int) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            self.unparseable.append(received_ns)
            return
        if not isinstance(message, dict):
            self.unparseable.append(received_ns)
            return
        op = message.get("op")
        if op == "chunk":  # a frame over max_send_frame_bytes, in pieces (docs/protocol.md)
            whole = self.chunks.feed(message)
            if whole is not None:
                self.on_message(whole.encode(), received_ns)
            return
        if op == "events":
            self._events(message, received_ns)
        elif op == "subscribed" and isinstance(message.get("seq"), int):
            self.subscribed_seq = self.position = message["seq"]
            self.subscribed_ns = received_ns
        elif op == "history" and isinstance(message.get("to_seq"), int):
            self.position = message["to_seq"]
        elif op == "reset":
            self.resets.append(received_ns)
        elif op == "error":
            self.errors.append((received_ns, str(message.get("code"))))

    def _events(self, message: dict[str, Any], received_ns: int) -> None:
        from_seq, to_seq, items = message.get("from_seq"), message.get("to_seq"), message.get("items")
        if not isinstance(from_seq, int) or not isinstance(to_seq, int) or not isinstance(items, list):
            self.unparseable.append(received_ns)
            return
        if self.subscribed_seq is not None and from_seq > self.position + 1:
            self.holes.append(received_ns)
        for item in items:
            seq = item.get("seq") if isinstance(item, dict) else None
            if not isinstance(seq, int):
                self.bad_items.append(received_ns)
                continue
            meta = item.get("meta")
            stamp = meta.get("t") if isinstance(meta, dict) else None
            self.receipts.append((seq, stamp if isinstance(stamp, int) else 0, received_ns))
        self.position = max(self.position, to_seq)

    def on_close(self, code: int | None) -> None:
        self.closed_ns = time.time_ns()
        self.close_code = code


@dataclass
class Verdict:
    """A window's counts over the connections that were subscribed before it began."""

    connections: int = 0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    forged: int = 0
    unparseable: int = 0
    holes: int = 0
    resets: int = 0
    errors: int = 0
    closed: int = 0
    #: Symbols with an honest event that reached a connection after ``alive_after_ns``.
    alive_symbols: set[str] = field(default_factory=set)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def to_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "expected": self.expected,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "forged": self.forged,
            "unparseable": self.unparseable,
            "holes": self.holes,
            "resets": self.resets,
            "errors": self.errors,
            "closed": self.closed,
            "alive_symbols": sorted(self.alive_symbols),
            "latency": self.latency.to_json(),
        }


def judge(
    subs: Iterable[CheckedSub],
    record: HonestRecord,
    since_ns: int,
    until_ns: int,
    *,
    alive_after_ns: int | None = None,
) -> Verdict:
    """Honest events published in [since, until] against what each connection subscribed before
    ``since`` (and not closed before it) received; from ``since`` on: what reached them that is
    not honest, unparseable frames, holes, resets, errors and closes."""
    verdict = Verdict()
    for sub in subs:
        if sub.subscribed_seq is None or sub.subscribed_ns > since_ns or 0 < sub.closed_ns < since_ns:
            continue
        verdict.connections += 1
        received: dict[tuple[int, int], list[int]] = {}
        for seq, stamp, at in sub.receipts:
            if at >= since_ns:
                received.setdefault((seq, stamp), []).append(at)
                if not record.is_honest(sub.symbol, seq, stamp):
                    verdict.forged += 1
                elif alive_after_ns is not None and stamp > alive_after_ns:
                    verdict.alive_symbols.add(sub.symbol)
        for event in record.published(sub.symbol, since_ns, until_ns):
            verdict.expected += 1
            times = received.get((event.seq, event.stamp_ns), ())
            if not times:
                verdict.lost += 1
                continue
            verdict.duplicated += len(times) - 1
            verdict.latency.add((times[0] - event.stamp_ns) / 1000)
        verdict.forged += sum(1 for at in sub.bad_items if at >= since_ns)
        verdict.unparseable += sum(1 for at in sub.unparseable if at >= since_ns)
        verdict.holes += sum(1 for at in sub.holes if at >= since_ns)
        verdict.resets += sum(1 for at in sub.resets if at >= since_ns)
        verdict.errors += sum(1 for at, _ in sub.errors if at >= since_ns)
        verdict.closed += 1 if sub.closed_ns >= since_ns else 0
    return verdict
