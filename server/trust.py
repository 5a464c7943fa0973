"""What the gateway and the recorder accept from Redis. Pure: no I/O.

Everything read from Redis is untrusted: a publisher credential can PUBLISH any bytes on a
live channel, XADD any entry into a log and SADD any name into the symbol registry. A live
message is ``<epoch> <seq> <publish ms> <event json>``; :func:`parse_envelope` checks the
envelope and :func:`check_event` the event, and that one function decides for the live
path, the hole filler, the history reads and the recorder alike, so what clients see live
and what SQL keeps agree. A failed check yields a reason from :data:`REASONS` (a small fixed
set: it labels ``signalpush_bus_rejected_total``).

``check_event`` validates every field the SQL tables, the filters and the history columns
rely on (docs/protocol.md "Trust in the bus" has the measured cost against
``publishers.events.event_from_dict``, which builds the dataclasses and is ~4x slower).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from publishers.events import (
    ACTIONS,
    MAX_META_BYTES,
    MAX_NAME_LENGTH,
    MAX_TS_MS,
    MIN_TS_MS,
    SIDES,
    SIGNAL_TYPES,
    STATUSES,
    SYMBOL_PATTERN,
    TIMEFRAME_PATTERN,
)

#: Why something read from Redis was dropped (the label values of the rejection counter).
REASONS: Final = (
    "envelope",  # not "<epoch> <seq> <ms> <json>": bytes, epoch, seq or ms malformed
    "too_large",  # the event is longer than MAX_EVENT_CHARS
    "json",  # the event is not one JSON object starting {"seq":N, (NaN/Infinity refused)
    "seq",  # the event's seq is not the envelope's (or the log entry's)
    "kind",  # not one of signal, trade, candle, bot
    "symbol",  # the event names another symbol than its channel or log
    "fields",  # a field is missing or has a bad value
    "epoch",  # a new epoch the symbol's meta does not confirm
    "unconfirmed",  # a seq the symbol's meta and log do not confirm (forged or lost)
    "diverged",  # another event for a seq already sent, which the log does not confirm
    "error",  # processing it raised (a bug): dropped, the task goes on
)

#: Seqs and publish times are integers below 2**53 (exact in JSON and in JavaScript).
MAX_SEQ: Final = 2**53
#: An event's text at most: its fields plus a 4 KiB meta fit with room to spare.
MAX_EVENT_CHARS: Final = 16_384
#: Epochs are short tokens (the script makes 12 hex digits); the SQL column holds 32.
EPOCH_PATTERN: Final = re.compile(r"[0-9A-Za-z_.-]{1,32}")
_NAME_PATTERN: Final = re.compile(r"[^\x00-\x1f\x7f]+")
_FORBIDDEN_CONSTANT: Final = "NaN/Infinity"


#: A live-channel message whose envelope parsed: (epoch, seq, publish ms, event json unchecked).
LiveMessage = tuple[str, int, int, str]


def _digits(text: str, longest: int) -> bool:
    return 0 < len(text) <= longest and text.isascii() and text.isdigit()


def is_epoch(value: object) -> bool:
    if not isinstance(value, str):
        return False
    if 0 < len(value) <= 32 and value.isascii() and value.isalnum():
        return True  # the common case (hex), without the regex
    return EPOCH_PATTERN.fullmatch(value) is not None


def symbol_name(raw: bytes | str) -> str | None:
    """A registry member or key part as a symbol, or None if it is not one (strict UTF-8, full match)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            return None
    return raw if SYMBOL_PATTERN.fullmatch(raw) else None


def parse_envelope(payload: bytes | str) -> LiveMessage | str:
    """Split a live message into its parts, or the reason it is not one (never raises)."""
    if isinstance(payload, bytes):
        try:
            payload = payload.decode()
        except UnicodeDecodeError:
            return "envelope"
    parts = payload.split(" ", 3)
    if len(parts) != 4:
        return "envelope"
    epoch, seq_text, ms_text, event = parts
    if not (is_epoch(epoch) and _digits(seq_text, 16) and _digits(ms_text, 16)):
        return "envelope"
    seq = int(seq_text)
    if not 0 < seq < MAX_SEQ:
        return "envelope"
    return (epoch, seq, int(ms_text), event)


# -- the event ---------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(_FORBIDDEN_CONSTANT)


_decode: Final = json.JSONDecoder(parse_constant=_refuse_constant).decode


def _number(value: object) -> bool:
    # bool is an int; a JSON integer may be too big for a float (OverflowError in the database).
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int and -MAX_SEQ < value < MAX_SEQ


def _positive(value: object) -> bool:
    return _number(value) and value > 0  # type: ignore[operator]


def _not_negative(value: object) -> bool:
    return _number(value) and value >= 0  # type: ignore[operator]


def _optional_number(value: object) -> bool:
    return value is None or _number(value)


def _unit(value: object) -> bool:
    return _number(value) and 0 <= value <= 1  # type: ignore[operator]


def _name(value: object) -> bool:
    if type(value) is not str or not 0 < len(value) <= MAX_NAME_LENGTH or value.isspace():
        return False
    # ASCII and printable is the common case; else no control character (what publishers accept).
    return (value.isascii() and value.isprintable()) or _NAME_PATTERN.fullmatch(value) is not None


def _choice(choices: tuple[str, ...]) -> Callable[[object], bool]:
    allowed = frozenset(choices)
    return lambda value: type(value) is str and value in allowed


def _ts(value: object) -> bool:
    # Whole milliseconds as the publisher writes them (a float would not bind to BIGINT).
    return type(value) is int and MIN_TS_MS <= value < MAX_TS_MS


def _timeframe(value: object) -> bool:
    return type(value) is str and TIMEFRAME_PATTERN.fullmatch(value) is not None


def _meta(value: object) -> bool:
    return value is None or type(value) is dict


#: A text this short cannot hold a meta over MAX_META_BYTES (a character encodes to at most 6).
_META_CHECK_CHARS: Final = MAX_META_BYTES // 6


def _meta_fits(event: dict[str, Any]) -> bool:
    meta = event.get("meta")
    # Measured as the publisher measures it (publishers.events.check_meta).
    return not meta or len(json.dumps(meta, separators=(",", ":")).encode()) <= MAX_META_BYTES


_Rules = tuple[tuple[str, Callable[[object], bool]], ...]

#: Per kind: (field, check) for every required field, then the optional ones (missing = default).
_REQUIRED: Final[dict[str, _Rules]] = {
    "signal": (
        ("ts", _ts),
        ("bot", _name),
        ("strategy", _name),
        ("type", _choice(SIGNAL_TYPES)),
        ("price", _positive),
        ("confidence", _unit),
    ),
    "trade": (
        ("ts", _ts),
        ("bot", _name),
        ("strategy", _name),
        ("side", _choice(SIDES)),
        ("action", _choice(ACTIONS)),
        ("price", _positive),
        ("qty", _positive),
        ("position", _name),
    ),
    "candle": (
        ("ts", _ts),
        ("tf", _timeframe),
        ("open", _positive),
        ("high", _positive),
        ("low", _positive),
        ("close", _positive),
        ("volume", _not_negative),
    ),
    "bot": (
        ("ts", _ts),
        ("bot", _name),
        ("strategy", _name),
        ("status", _choice(STATUSES)),
    ),
}
_OPTIONAL: Final[dict[str, _Rules]] = {
    "signal": (("meta", _meta),),
    "trade": (("fee", _not_negative), ("pnl", _optional_number), ("meta", _meta)),
    "candle": (),
    "bot": (("equity", _optional_number), ("meta", _meta)),
}
_MISSING: Final = object()


def _fields_ok(kind: str, event: dict[str, Any]) -> bool:
    for name, rule in _REQUIRED[kind]:
        if not rule(event.get(name, _MISSING)):
            return False
    for name, rule in _OPTIONAL[kind]:
        value = event.get(name, _MISSING)
        if value is not _MISSING and not rule(value):
            return False
    if kind == "candle":
        high, low = event["high"], event["low"]
        extremes = (event["open"], event["close"])
        return high >= low and high >= max(extremes) and low <= min(extremes)  # type: ignore[no-any-return]
    return True


def check_event(text: str, seq: int, symbol: str) -> dict[str, Any] | str:
    """The event stored (or published) under ``seq`` of ``symbol``, or the reason it is not valid.

    Valid means: at most MAX_EVENT_CHARS, the text the publish script writes
    (``{"seq":<seq>,`` then the body), one JSON object without NaN/Infinity, ``seq`` equal
    to ``seq``, a known ``kind``, ``symbol`` equal to ``symbol``, and every field of that
    kind present with a value the publisher's validation accepts. Never raises.
    """
    if len(text) > MAX_EVENT_CHARS:
        return "too_large"
    if not text.startswith(f'{{"seq":{seq},'):
        return "seq" if text.startswith('{"seq":') else "json"
    try:
        event = _decode(text)
    except (ValueError, RecursionError):
        return "json"
    if type(event) is not dict:
        return "json"
    if event.get("seq") != seq or type(event.get("seq")) is not int:
        return "seq"  # a second "seq" key overrode the first
    kind = event.get("kind")
    if type(kind) is not str or kind not in _REQUIRED:
        return "kind"
    if event.get("symbol") != symbol:
        return "symbol"
    if not _fields_ok(kind, event) or (len(text) > _META_CHECK_CHARS and not _meta_fits(event)):
        return "fields"
    return event


# -- a run of live messages ------------------------------------------------------------------


@dataclass(slots=True)
class CheckedRun:
    """One symbol's live messages of one epoch, checked (see :func:`check_run`)."""

    #: (seq, event json) of the valid messages, in seq order, each seq once.
    pending: list[tuple[int, str]]
    #: Their decoded events by seq (None when not decoded).
    events: dict[int, dict[str, Any]] | None
    #: The highest seq whose message was dropped (0: none): the store says what it holds.
    tail: int = 0
    #: (reason, seq) of every message dropped.
    rejected: list[tuple[str, int]] = field(default_factory=list)


def check_run(symbol: str, run: list[LiveMessage], *, decode: bool = True) -> CheckedRun:
    """Check each message's event; sort; two different events under one seq are both dropped.

    With ``decode`` False the events are not checked (the caller sends the log's instead).
    """
    checked = CheckedRun([], {} if decode else None)
    events = checked.events
    pending = checked.pending
    previous = 0
    ordered = True
    for _, seq, _, raw in run:
        if events is not None:
            event = check_event(raw, seq, symbol)
            if isinstance(event, str):
                checked.rejected.append((event, seq))
                checked.tail = max(checked.tail, seq)
                continue
            events[seq] = event
        pending.append((seq, raw))
        ordered = ordered and seq > previous
        previous = seq
    if not ordered:
        _untangle(checked)
    return checked


def _untangle(checked: CheckedRun) -> None:
    bodies: dict[int, str | None] = {}
    for seq, raw in checked.pending:
        known = bodies.get(seq, raw)
        bodies[seq] = raw if known == raw else None
    for seq, _ in checked.pending:
        if bodies[seq] is None:
            checked.rejected.append(("diverged", seq))
            checked.tail = max(checked.tail, seq)
    checked.pending = sorted((seq, raw) for seq, raw in bodies.items() if raw is not None)
