"""Signal quality kept live across every symbol: where each symbol's log was read to, and the fold.

:class:`LiveQuality` is the state of the gateway's perf feed (server/gateway/perf.py), with
no I/O. It starts from a window read from SQL (:meth:`LiveQuality.begin`); after that each
symbol is read forward from its cursor (epoch, seq): :meth:`LiveQuality.plan` says which
symbols have new seqs, and :meth:`LiveQuality.advance` folds what was read for them, from
SQL for the part the recorder already committed (and trimmed from the log) and from the
log for the rest. A new epoch restarts the symbol at seq 0 of that epoch (what the old one
folded stays folded: it happened). Log entries are checked like every read from Redis
(server/core/trust.py): a bad one is dropped and counted by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from server.analytics.quality import QualityRules
from server.analytics.quality_rows import FoldEvent, SeqSpan, fold_events, fold_key
from server.analytics.quality_stream import Group, QualityStream
from server.core.trust import check_event

#: Seqs of one symbol read in one step: bounds the memory of a step, whatever the backlog.
MAX_SPAN: Final = 2000
_KINDS: Final = frozenset({"signal", "trade", "candle"})
#: (epoch or None, last seq) of a symbol's meta hash.
Meta = tuple[str | None, int]


@dataclass(slots=True)
class SymbolRead:
    """What was read of one symbol in a step: its log from ``after + 1`` (``entries``: seq, JSON),
    under ``epoch`` whose meta seq was ``seq`` when read."""

    symbol: str
    epoch: str
    after: int
    seq: int
    entries: list[tuple[int, str]] = field(default_factory=list)

    @property
    def through(self) -> int:
        """The last seq this step covers (the rest waits for the next step)."""
        return min(self.seq, self.after + MAX_SPAN)

    @property
    def sql_span(self) -> SeqSpan | None:
        """The seqs the log no longer holds (committed and trimmed): read them from SQL."""
        first = next((seq for seq, _ in self.entries if seq > self.after), self.through + 1)
        last = min(first - 1, self.through)
        return None if last <= self.after else (self.symbol, self.epoch, self.after, last)


class LiveQuality:
    """A :class:`QualityStream` fed in seq order per symbol from ``start_ms`` on."""

    def __init__(self, rules: QualityRules, start_ms: int) -> None:
        self.stream = QualityStream(rules)
        self.start_ms = start_ms
        self.cursors: dict[str, tuple[str, int]] = {}
        #: Log entries dropped, by reason (server/core/trust.py's REASONS).
        self.rejected: Counter[str] = Counter()

    def begin(
        self, metas: Mapping[str, Meta], rows: Sequence[Sequence[Any]], reads: Iterable[SymbolRead]
    ) -> None:
        """Fold the window: ``rows`` of quality_query up to each symbol's meta seq as read before
        the query, then what of the same seqs was still only in the log (``reads``)."""
        self.cursors = {symbol: (epoch, seq) for symbol, (epoch, seq) in metas.items() if epoch is not None}
        events: list[FoldEvent] = []
        seen: set[tuple[str, Any, int]] = set()
        for event in fold_events(rows):
            _, symbol, seq, fields = event
            cursor = self.cursors.get(symbol)
            if cursor is not None and fields.get("epoch") == cursor[0] and seq > cursor[1]:
                continue  # published after the meta was read: the first step reads it
            events.append(event)
            seen.add((symbol, fields.get("epoch"), seq))
        for read in reads:
            epoch, through = self.cursors.get(read.symbol, ("", 0))
            if read.epoch != epoch:
                continue
            for event in self._checked(read):
                if (read.symbol, epoch, event[2]) not in seen and event[2] <= through:
                    events.append(event)
        self._fold(events)

    def plan(self, metas: Mapping[str, Meta]) -> list[tuple[str, str, int]]:
        """(symbol, epoch, after) of every symbol with seqs past its cursor; a symbol seen for the
        first time, or in a new epoch, starts at 0 of its epoch."""
        todo = []
        for symbol, (epoch, seq) in metas.items():
            if epoch is None:
                continue
            cursor = self.cursors.get(symbol)
            if cursor is None or cursor[0] != epoch:
                cursor = self.cursors[symbol] = (epoch, 0)
            if seq > cursor[1]:
                todo.append((symbol, epoch, cursor[1]))
        return todo

    def advance(self, reads: Sequence[SymbolRead], rows: Sequence[Sequence[Any]]) -> None:
        """Fold one step: ``rows`` of range_query over the reads' ``sql_span`` and their log
        entries up to ``through``; each read symbol's cursor moves to its ``through``."""
        events = [
            e for e in fold_events(rows) if e[3].get("ts") is not None and int(e[3]["ts"]) >= self.start_ms
        ]
        for read in reads:
            if self.cursors.get(read.symbol, (None, 0))[0] != read.epoch:
                continue  # the epoch moved while this was read: the next plan starts it over
            events += (e for e in self._checked(read) if read.after < e[2] <= read.through)
            self.cursors[read.symbol] = (read.epoch, read.through)
        self._fold(events)

    def take_rows(self) -> list[dict[str, Any]]:
        """The rows of the groups that changed since the last call."""
        changed: set[Group] = self.stream.take_changed()
        return self.stream.snapshot(changed) if changed else []

    def _checked(self, read: SymbolRead) -> list[FoldEvent]:
        out: list[FoldEvent] = []
        for seq, text in read.entries:
            event = check_event(text, seq, read.symbol)
            if isinstance(event, str):
                self.rejected[event] += 1
                continue
            if event["kind"] in _KINDS and event["ts"] >= self.start_ms:
                out.append((event["kind"], read.symbol, seq, event))
        return out

    def _fold(self, events: list[FoldEvent]) -> None:
        events.sort(key=lambda e: fold_key(e[0], e[1], e[2], _ts(e[3])))
        for kind, symbol, seq, fields in events:
            self.stream.apply(kind, symbol, seq, fields)


def _ts(fields: Mapping[str, Any]) -> int:
    try:
        return int(fields["ts"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return 0
