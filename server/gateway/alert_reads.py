"""The alert evaluator's input: every symbol's log read forward from a cursor, checked, coalesced.

:class:`LogReader` keeps one cursor ``[epoch, last seq read]`` per symbol of the registry and
reads what follows it with one XREAD a round (XRANGE per log on a cluster). Everything read
is untrusted (docs/alerts.md, "What the evaluator reads"):

* an entry is an event only if :func:`~server.core.trust.check_event` accepts it, the check
  the live path and the recorder use; the others are counted (``rejected``) and skipped;
* a log key of the wrong type fails the one XREAD for every symbol: the reader finds it
  (TYPE), leaves that symbol out for ``BAD_LOG_RETRY_S`` (counted in ``bad_logs``, logged
  once) and reads the others, so one poisoned key never stops alerting.

Gaps: the recorder trims a log as soon as SQL holds it, so an evaluator that lags (a flood, a
restart from an old checkpoint, a takeover) can find its next seqs gone from the log. A log
whose first entry is past the cursor, or that holds nothing while the symbol's meta seq is
past it, has a gap; the reader fills it from SQL (the rows written out as the log's text,
server/history/replay_reads.py ``page``), at most ``GAP_PAGE`` events a symbol a round,
before it reads that log on. Seqs in neither place (trimmed by the log's MAXLEN with no
recorder) are counted in ``missed`` and logged: an alert may have been missed, never silently.

Coalescing (what keeps 50 rules cheap under a flood): within one read of one log, a
``signal`` whose (bot, strategy) signals again later in the same read, with a confidence
under every signal rule in its scope, changes nothing the later one does not (the engine
keeps the *last* event's time, symbol, strategy and reference per bot, and only a signal at
or over a rule's confidence is an input of its own). Such a signal is neither checked in
full nor observed: it is counted in ``coalesced``. The later signal is checked in full
first (the read is walked backwards), so a skipped one is always covered by a valid one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import redis
import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import keys
from server.alerts.log_text import (
    LOG_FIELD,
    NO_SEQ,
    PLAIN_SIGNAL,
    event_text,
    first_seq,
    log_entry,
    seq_of,
    signal_fields,
    text_of,
)
from server.core.filters import EVERYTHING
from server.core.trust import check_event, scan_object, symbol_name
from server.history import logops
from server.history.models import TABLES
from server.history.replay_reads import page
from server.logs import RateLimitedLog

#: Warnings about what Redis or SQL hold come at the rate of the bad input: at most one a minute
#: per symbol and kind of problem.
_throttle = RateLimitedLog(logging.getLogger(__name__))

#: Entries read per symbol per round at most.
READ_COUNT: Final = 1000
#: A symbol whose log key is not a stream is left out this long, then tried again.
BAD_LOG_RETRY_S: Final = 30.0
#: Events of one symbol read from SQL a round at most (a gap the recorder trimmed).
GAP_PAGE: Final = 2000
#: How often the registry and every symbol's epoch are read in full.
REFRESH_EVERY_S: Final = 1.0
#: How often the registry's size is compared between (a new symbol is read from then on).
COUNT_EVERY_S: Final = 0.1
#: (symbol, epoch, seq, checked event)
ReadEvent = tuple[str, str, int, dict[str, Any]]
#: The lowest confidence a signal rule in scope of (symbol, bot, strategy) looks at (inf: none).
SignalFloor = Callable[[str, str, str], float]


def _raw(response: Any, **options: Any) -> Any:
    return response


class LogReader:
    """Cursors over every symbol's log (see the module docstring)."""

    def __init__(
        self,
        *,
        cluster: bool,
        signal_floor: SignalFloor,
        counters: dict[str, int],
        store: AsyncEngine | None = None,
    ) -> None:
        self.cluster = cluster
        self.signal_floor = signal_floor
        self.counters = counters
        #: Where trimmed events are read back (None: a gap is counted as missed).
        self.store = store
        for name in ("rejected", "coalesced", "bad_logs", "filled", "missed"):
            counters.setdefault(name, 0)
        #: symbol -> its meta seq at the last full refresh (a log read empty below it was trimmed)
        self.meta_seqs: dict[str, int] = {}
        #: symbol -> [epoch, last seq read]
        self.cursors: dict[str, list[Any]] = {}
        #: symbol -> monotonic time it is tried again (its log key is not a stream)
        self.left_out: dict[str, float] = {}
        #: The last read waited on Redis (XREAD BLOCK): the caller need not sleep.
        self.blocked = False
        self._next_refresh = 0.0
        self._next_count = 0.0
        self._symbol_count = -1

    def reset(self, cursors: dict[str, list[Any]] | None = None) -> None:
        """Start over (a new lease): ``cursors`` from a checkpoint, or none."""
        self.cursors = cursors or {}
        self.left_out = {}
        self.meta_seqs = {}
        self._next_refresh = 0.0
        self._next_count = 0.0
        self._symbol_count = -1

    async def refresh(self, client: aioredis.Redis, *, start_at_tail: bool = False) -> None:
        """New symbols (read from their first entry) and epochs that changed (read from seq 1)."""
        clock = time.monotonic()
        # Between full refreshes a new symbol is looked for (SCARD) at most every COUNT_EVERY_S:
        # each Redis command costs the evaluator a round trip's CPU (~80 µs on loopback).
        if (
            not start_at_tail
            and clock < self._next_refresh
            and (clock < self._next_count or await client.scard(keys.SYMBOLS_KEY) == self._symbol_count)
        ):
            self._next_count = max(self._next_count, clock + COUNT_EVERY_S)
            return
        self._next_count = clock + COUNT_EVERY_S
        self._next_refresh = clock + REFRESH_EVERY_S
        members = await client.smembers(keys.SYMBOLS_KEY)
        self._symbol_count = len(members)
        names = [n for raw in members if (n := symbol_name(raw)) is not None]
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hmget(keys.meta_key(name), [keys.META_EPOCH, keys.META_SEQ])
        replies = await pipe.execute(raise_on_error=False) if names else []
        for name, reply in zip(names, replies, strict=True):
            if not isinstance(reply, list):
                continue  # a meta hash of the wrong type: nothing to read
            epoch, seq = (text_of(v) for v in reply)
            if epoch is None:
                continue
            if seq is not None and seq.isdigit() and len(seq) <= 16:
                self.meta_seqs[name] = int(seq)
            cursor = self.cursors.get(name)
            if cursor is None or cursor[0] != epoch:
                tail = int(seq) if start_at_tail and seq is not None and seq.isdigit() else 0
                self.cursors[name] = [epoch, tail]

    async def read(self, client: aioredis.Redis, *, block_ms: int) -> list[ReadEvent]:
        """What is new in every log after its cursor, in log order per symbol."""
        names = self._readable()
        if not names:
            self.blocked = False
            return []
        self.blocked = not self.cluster
        replies: list[tuple[str, list[Any]]] = []
        if self.cluster:
            for name in names:
                start = f"({self.cursors[name][1]}-0"
                try:
                    entries = await client.xrange(keys.log_key(name), min=start, count=READ_COUNT)
                except redis.ResponseError as exc:
                    self._leave_out(name, str(exc))
                    continue
                if entries:
                    replies.append((name, [[entry_id, fields] for entry_id, fields in entries]))
        else:
            streams: dict[Any, Any] = {keys.log_key(name): f"{self.cursors[name][1]}-0" for name in names}
            # The reply as Redis sent it (no dict per entry): the fields are looked at once, below.
            client.set_response_callback("XREAD", _raw)
            try:
                reply = await client.xread(streams, count=READ_COUNT, block=block_ms)
            except redis.ResponseError:
                self.blocked = False
                await self._find_bad_logs(client, names)
                return []
            # RESP3 answers a map of key -> entries, RESP2 a list of [key, entries] pairs.
            pairs = reply.items() if isinstance(reply, dict) else reply or ()
            for stream in pairs:
                if isinstance(stream, list | tuple) and len(stream) == 2 and isinstance(stream[1], list):
                    found = symbol_name(keys.symbol_of(stream[0]))
                    if found is not None:
                        replies.append((found, stream[1]))
        out: list[ReadEvent] = []
        answered = set()
        for name, entries in replies:
            cursor = self.cursors.get(name)
            if cursor is None:
                continue
            answered.add(name)
            first = first_seq(entries, cursor[1])
            if first is not None and first > cursor[1] + 1:
                out += await self._fill(name, cursor, first - 1)  # the log's entries next round
            elif first is not None:
                events, cursor[1] = self._events(name, cursor[0], entries, cursor[1])
                out += events
        for name in names:  # a log with nothing after the cursor, its meta seq past it: trimmed
            cursor = self.cursors.get(name)
            if name not in answered and cursor is not None and self.meta_seqs.get(name, 0) > cursor[1]:
                out += await self._fill(name, cursor, self.meta_seqs[name])
        return out

    # -- one log's entries ---------------------------------------------------------------------

    def _events(self, name: str, epoch: str, entries: list[Any], after: int) -> tuple[list[ReadEvent], int]:
        """The checked events of ``entries`` (log entries as Redis answers them, in log order) with a
        seq past ``after``, coalesced; and the last such seq (``after`` when there is none).

        Walked backwards, so the signal that covers an earlier one is checked first. Every entry
        goes through here, so the common case is written out: a signal in the publishers' plain
        shape is tested for cover on its bytes (one match, as
        :func:`~server.alerts.log_text.plain_signal_fields`) before its id is parsed or its text
        decoded. A later signal whose bot or strategy holds a quote has a plain key no plain text
        can have (it holds more quotes), so it covers through the parsed path only.
        """
        out: list[ReadEvent] = []
        # The valid signals after this one: their plain key (server/alerts/log_text.py) -> their
        # signal floor; and their (bot, strategy)
        later: dict[bytes, float] = {}
        later_text: set[tuple[str, str]] = set()
        last, upper, coalesced, rejected = after, NO_SEQ, 0, 0
        for entry in reversed(entries):
            if (type(entry) is not list and type(entry) is not tuple) or len(entry) != 2:
                continue
            entry_id, fields = entry
            raw = fields[1] if type(fields) is list and len(fields) == 2 and fields[0] == LOG_FIELD else None
            plain = PLAIN_SIGNAL(raw) if type(raw) is bytes else None
            if plain is not None and later:
                floor = later.get(plain[1])
                if floor is not None and float(plain[2]) < floor:
                    coalesced += 1
                    continue
            seq = seq_of(entry_id)
            if seq is None or not after < seq < upper:
                continue
            upper = seq
            if last == after:
                last = seq
            if type(raw) is bytes:
                try:
                    text = raw.decode()
                except UnicodeDecodeError:
                    text = ""
            else:
                text = event_text(fields) or ""
            if plain is None and later_text and self._covered(name, text, later_text):
                coalesced += 1
                continue
            event = check_event(text, seq, name)
            if isinstance(event, str):
                rejected += 1
                continue
            if event["kind"] == "signal":
                bot, strategy = event["bot"], event["strategy"]
                later_text.add((bot, strategy))
                later[f'{bot}","strategy":"{strategy}'.encode()] = self.signal_floor(name, bot, strategy)
            out.append((name, epoch, seq, event))
        self.counters["coalesced"] += coalesced
        self.counters["rejected"] += rejected
        out.reverse()
        return out, last

    async def _fill(self, name: str, cursor: list[Any], through: int) -> list[ReadEvent]:
        """Events (cursor, through] the log no longer holds, from SQL; the cursor moves past them
        (past what neither holds too: counted in ``missed``)."""
        epoch, after = cursor[0], cursor[1]
        items: list[tuple[int, str]] = []
        covered = through
        if self.store is not None:
            try:
                async with self.store.connect() as connection:
                    for kind in TABLES:
                        rows = await page(connection, kind, name, EVERYTHING, epoch=epoch, after_seq=after,
                                          through_seq=through, limit=GAP_PAGE)  # fmt: skip
                        if len(rows) == GAP_PAGE:  # more of this kind after: stop where it stops
                            covered = min(covered, rows[-1][0])
                        items += [(seq, text) for seq, _ts, text in rows]
            except (SQLAlchemyError, OSError) as exc:
                _throttle.warning(("fill", name), "alert evaluator: cannot read a trimmed gap from SQL; "
                                  "trying again", symbol=name, error=str(exc)[:200])  # fmt: skip
                return []
        items = sorted(item for item in items if item[0] <= covered)
        missed = covered - after - len(items)
        if missed > 0:
            self.counters["missed"] += missed
            _throttle.warning(
                ("missed", name),
                "alert evaluator: events gone from the log and not in SQL; alerts on them may be missed",
                symbol=name, epoch=epoch, after=after, through=covered, missed=missed,
            )  # fmt: skip
        self.counters["filled"] += len(items)
        cursor[1] = covered
        return self._events(name, epoch, [log_entry(seq, text) for seq, text in items], after)[0]

    def _covered(self, name: str, text: str, later: set[tuple[str, str]]) -> bool:
        """A signal a later valid signal of its (bot, strategy) covers, under every rule's confidence."""
        if '"kind":"signal"' not in text:
            return False
        fields: tuple[Any, Any, Any] | None = signal_fields(text)
        if fields is None:  # not the plain shape publishers write: parse it
            found = scan_object(text)
            if found is None or found.get("kind") != "signal":
                return False
            fields = found.get("bot"), found.get("strategy"), found.get("confidence")
        bot, strategy, confidence = fields
        if type(bot) is not str or type(strategy) is not str or (bot, strategy) not in later:
            return False
        if type(confidence) is not float and type(confidence) is not int:
            return False
        return bool(confidence < self.signal_floor(name, bot, strategy))

    # -- logs that are not streams ---------------------------------------------------------------

    def _readable(self) -> list[str]:
        if not self.left_out:
            return list(self.cursors)
        now = time.monotonic()
        for name, until in list(self.left_out.items()):
            if until <= now:
                del self.left_out[name]
        return [name for name in self.cursors if name not in self.left_out]

    async def _find_bad_logs(self, client: aioredis.Redis, names: list[str]) -> None:
        types = await logops.log_types(client, names)
        bad = {name: kind for name, kind in types.items() if kind not in ("stream", "none")}
        for name, kind in bad.items():
            self._leave_out(name, f"{keys.log_key(name)} is a {kind}, not a stream")
        if not bad:  # refused for another reason (an ACL, say): try again next round
            _throttle.warning("xread", "alert evaluator: XREAD refused", symbols=len(names))

    def _leave_out(self, name: str, problem: str) -> None:
        self.left_out[name] = time.monotonic() + BAD_LOG_RETRY_S
        self.counters["bad_logs"] += 1
        _throttle.warning(
            ("bad log", name),
            "alert evaluator: a symbol's log cannot be read; the others go on",
            symbol=name, error=problem, retry_in_s=BAD_LOG_RETRY_S,
        )  # fmt: skip


def checkpoint_cursors(raw: object) -> dict[str, list[Any]]:
    """The cursors of a checkpoint (read from Redis: untrusted); malformed ones are left out."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, list[Any]] = {}
    for name, cursor in list(raw.items())[:100_000]:
        if (
            symbol_name(name) is not None
            and isinstance(cursor, list)
            and len(cursor) == 2
            and isinstance(cursor[0], str)
            and type(cursor[1]) is int
            and cursor[1] >= 0
        ):
            out[name] = cursor
    return out
