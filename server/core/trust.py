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
from json.scanner import make_scanner
from typing import Any, Final, cast

from publishers.events import (
    ACTIONS,
    ALERT_SEVERITIES,
    ALERT_STATES,
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
    "kind",  # not one of signal, trade, candle, bot, alert
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
    # Written out (this runs for every live message): ASCII digits only, at most 16 of them.
    if not (
        0 < len(seq_text) <= 16
        and 0 < len(ms_text) <= 16
        and seq_text.isascii()
        and seq_text.isdigit()
        and ms_text.isascii()
        and ms_text.isdigit()
        and is_epoch(epoch)
    ):
        return "envelope"
    seq = int(seq_text)
    if not 0 < seq < MAX_SEQ:
        return "envelope"
    return (epoch, seq, int(ms_text), event)


# -- the event ---------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(_FORBIDDEN_CONSTANT)


# The C scanner itself: the text starts with '{"seq":' (checked first) and must end with the
# object, so json.loads' whitespace handling around it is not needed (it cost 0.4 µs a call).
_scan: Final[Callable[[str, int], tuple[Any, int]]] = cast(Any, make_scanner)(
    json.JSONDecoder(parse_constant=_refuse_constant)
)


def scan_object(text: str) -> dict[str, Any] | None:
    """``text`` as one JSON object (no NaN/Infinity), or None; nothing else is checked (callers
    that keep the result check it with :func:`check_event`)."""
    if len(text) > MAX_EVENT_CHARS or not text.startswith("{"):
        return None
    try:
        found, end = _scan(text, 0)
    except (ValueError, RecursionError, StopIteration):
        return None
    return found if end == len(text) and type(found) is dict else None


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


_SIGNAL_TYPES: Final = frozenset(SIGNAL_TYPES)
_SIDES: Final = frozenset(SIDES)
_ACTIONS: Final = frozenset(ACTIONS)
_STATUSES: Final = frozenset(STATUSES)
_MISSING: Final = object()


def _choice(value: object, allowed: frozenset[str]) -> bool:
    return type(value) is str and value in allowed


def _optional(event: dict[str, Any], name: str, rule: Callable[[object], bool]) -> bool:
    value = event.get(name, _MISSING)
    return value is _MISSING or rule(value)


# One function per kind, written out: this runs for every live event (docs/protocol.md has the cost).
def _signal_ok(e: dict[str, Any]) -> bool:
    return (
        _ts(e.get("ts"))
        and _name(e.get("bot"))
        and _name(e.get("strategy"))
        and _choice(e.get("type"), _SIGNAL_TYPES)
        and _positive(e.get("price"))
        and _unit(e.get("confidence"))
        and _optional(e, "meta", _meta)
    )


def _trade_ok(e: dict[str, Any]) -> bool:
    return (
        _ts(e.get("ts"))
        and _name(e.get("bot"))
        and _name(e.get("strategy"))
        and _choice(e.get("side"), _SIDES)
        and _choice(e.get("action"), _ACTIONS)
        and _positive(e.get("price"))
        and _positive(e.get("qty"))
        and _name(e.get("position"))
        and _optional(e, "fee", _not_negative)
        and _optional(e, "pnl", _optional_number)
        and _optional(e, "meta", _meta)
    )


def _candle_ok(e: dict[str, Any]) -> bool:
    values: tuple[Any, ...] = (e.get("open"), e.get("high"), e.get("low"), e.get("close"))
    if not (_ts(e.get("ts")) and _timeframe(e.get("tf")) and _not_negative(e.get("volume"))):
        return False
    if not all(_positive(v) for v in values):
        return False
    open_, high, low, close = values
    return bool(high >= max(open_, close, low) and low <= min(open_, close))


def _bot_ok(e: dict[str, Any]) -> bool:
    return (
        _ts(e.get("ts"))
        and _name(e.get("bot"))
        and _name(e.get("strategy"))
        and _choice(e.get("status"), _STATUSES)
        and _optional(e, "equity", _optional_number)
        and _optional(e, "meta", _meta)
    )


_ALERT_STATES: Final = frozenset(ALERT_STATES)
_ALERT_SEVERITIES: Final = frozenset(ALERT_SEVERITIES)


def _text(value: object, length: int, *, empty: bool = False) -> bool:
    return type(value) is str and (empty or bool(value)) and len(value) <= length


def _alert_ok(e: dict[str, Any]) -> bool:
    return (
        _ts(e.get("ts"))
        and _text(e.get("alert_id"), 32)
        and _text(e.get("rule"), 48)
        and _choice(e.get("state"), _ALERT_STATES)
        and _choice(e.get("severity"), _ALERT_SEVERITIES)
        and _text(e.get("scope"), 128)
        and _text(e.get("message"), 256, empty=True)
        and _optional(e, "value", _optional_number)
        and _optional(e, "meta", _meta)
    )


#: Per kind: every required field present and valid, optional ones valid when present.
_FIELDS_OK: Final[dict[str, Callable[[dict[str, Any]], bool]]] = {
    "signal": _signal_ok,
    "trade": _trade_ok,
    "candle": _candle_ok,
    "bot": _bot_ok,
    "alert": _alert_ok,
}


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
        event, end = _scan(text, 0)
    except (ValueError, RecursionError, StopIteration):
        return "json"
    if end != len(text) or type(event) is not dict:
        return "json"
    if event.get("seq") != seq or type(event.get("seq")) is not int:
        return "seq"  # a second "seq" key overrode the first
    kind = event.get("kind")
    fields_ok = _FIELDS_OK.get(kind) if type(kind) is str else None
    if fields_ok is None:
        return "kind"
    if event.get("symbol") != symbol:
        return "symbol"
    if not fields_ok(event) or (len(text) > _META_CHECK_CHARS and not _meta_fits(event)):
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
    #: The decoded events in the order of ``pending`` (when decoded).
    decoded: list[dict[str, Any]] = field(default_factory=list)
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
            checked.decoded.append(event)
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
    if checked.events is not None:
        checked.decoded = [checked.events[seq] for seq, _ in checked.pending]
