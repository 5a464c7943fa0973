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
#: How often the registry and every symbol's epoch are read in full (new symbols are seen
#: at once between: one SCARD a round).
REFRESH_EVERY_S: Final = 1.0
_LOG_FIELD: Final = keys.LOG_FIELD.encode()

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
        self._symbol_count = -1

    def reset(self, cursors: dict[str, list[Any]] | None = None) -> None:
        """Start over (a new lease): ``cursors`` from a checkpoint, or none."""
        self.cursors = cursors or {}
        self.left_out = {}
        self.meta_seqs = {}
        self._next_refresh = 0.0
        self._symbol_count = -1

    async def refresh(self, client: aioredis.Redis, *, start_at_tail: bool = False) -> None:
        """New symbols (read from their first entry) and epochs that changed (read from seq 1)."""
        between = not start_at_tail and time.monotonic() < self._next_refresh
        if between and await client.scard(keys.SYMBOLS_KEY) == self._symbol_count:
            return
        self._next_refresh = time.monotonic() + REFRESH_EVERY_S
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
            epoch, seq = (_text(v) for v in reply)
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
            fresh = self._fresh(cursor, entries)
            if fresh and fresh[0][0] > cursor[1] + 1:
                out += await self._fill(name, cursor, fresh[0][0] - 1)  # the log's entries next round
            elif fresh:
                cursor[1] = fresh[-1][0]
                out += self._events(name, cursor[0], fresh)
        for name in names:  # a log with nothing after the cursor, its meta seq past it: trimmed
            cursor = self.cursors.get(name)
            if name not in answered and cursor is not None and self.meta_seqs.get(name, 0) > cursor[1]:
                out += await self._fill(name, cursor, self.meta_seqs[name])
        return out

    # -- one log's entries ---------------------------------------------------------------------

    @staticmethod
    def _fresh(cursor: list[Any], entries: list[Any]) -> list[tuple[int, str]]:
        """(seq, event text) of the entries after the cursor, in seq order."""
        fresh: list[tuple[int, str]] = []
        last = cursor[1]
        for entry in entries:
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                continue
            entry_id, fields = entry
            # Written out (every event read goes through here): b"<seq>-0", fields [b"e", json].
            if type(entry_id) is bytes:
                head, _, tail = entry_id.partition(b"-")
                seq = int(head) if tail == b"0" and head.isdigit() and len(head) <= 16 else None
            else:
                seq = _seq_of(entry_id)
            if seq is None or seq <= last:
                continue
            last = seq
            if (
                type(fields) is list
                and len(fields) == 2
                and fields[0] == _LOG_FIELD
                and type(fields[1]) is bytes
            ):
                try:
                    text = fields[1].decode()
                except UnicodeDecodeError:
                    text = ""
            else:
                text = _event_text(fields) or ""
            fresh.append((seq, text))
        return fresh

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
        return self._events(name, epoch, items)

    def _events(self, name: str, epoch: str, fresh: list[tuple[int, str]]) -> list[ReadEvent]:
        out: list[ReadEvent] = []
        later: set[tuple[str, str]] = set()  # (bot, strategy) of the valid signals after this one
        for seq, text in reversed(fresh):
            if later and self._covered(name, text, later):
                self.counters["coalesced"] += 1
                continue
            event = check_event(text, seq, name)
            if isinstance(event, str):
                self.counters["rejected"] += 1
                continue
            if event["kind"] == "signal":
                later.add((event["bot"], event["strategy"]))
            out.append((name, epoch, seq, event))
        out.reverse()
        return out

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


def signal_fields(text: str) -> tuple[str, str, float] | None:
    """(bot, strategy, confidence) of a signal's text without parsing it, or None when the text is
    not in the plain shape where that is exact (then the caller parses it).

    Exact because: with no backslash, a JSON string is its literal characters and holds no
    quote, so each of ``"kind"``, ``"bot"``, ``"strategy"``, ``"confidence"`` occurring once
    is that one token; a valid event has each as a top-level key, so the value after it is the
    event's. A text that is not a valid event may be misread here: it is one the full check
    drops anyway, and skipping it drops it too.
    """
    if (
        "\\" in text
        or text.count('"kind"') != 1
        or text.count('"bot"') != 1
        or text.count('"strategy"') != 1
        or text.count('"confidence"') != 1
    ):
        return None
    bot_at, strategy_at, confidence_at = (
        text.find('"bot":"'),
        text.find('"strategy":"'),
        text.find('"confidence":'),
    )
    if bot_at < 0 or strategy_at < 0 or confidence_at < 0:
        return None
    bot_end, strategy_end = text.find('"', bot_at + 7), text.find('"', strategy_at + 12)
    # A number ends at "," or "}" (float() takes the spaces JSON allows around it; what else it
    # takes, NaN or 1_0, is no valid event's).
    comma, brace = text.find(",", confidence_at), text.find("}", confidence_at)
    end = comma if 0 <= comma < brace or brace < 0 else brace
    if bot_end < 0 or strategy_end < 0 or end < 0:
        return None
    try:
        confidence = float(text[confidence_at + 13 : end])
    except ValueError:
        return None
    return text[bot_at + 7 : bot_end], text[strategy_at + 12 : strategy_end], confidence


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


def _event_text(fields: object) -> str | None:
    """The event field of a log entry (a flat [name, value, ...] list, or a dict on a cluster)."""
    if isinstance(fields, dict):
        return _text(fields.get(_LOG_FIELD))
    if isinstance(fields, list):
        for i in range(0, len(fields) - 1, 2):
            if fields[i] == _LOG_FIELD:
                return _text(fields[i + 1])
    return None


def _seq_of(entry_id: object) -> int | None:
    text = _text(entry_id)
    if text is None:
        return None
    head, _, tail = text.partition("-")
    return int(head) if head.isdigit() and tail == "0" and len(head) <= 16 else None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None
