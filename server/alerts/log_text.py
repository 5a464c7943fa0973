"""Log entries and event texts as the alert evaluator reads them: pure functions, no I/O.

A log entry arrives as Redis answers it (``[b"<seq>-0", [b"e", b"<event json>"]]``); what is
in it is untrusted. The two readers of a signal's (bot, strategy, confidence) without parsing it
are what keeps coalescing cheap (server/gateway/alert_reads.py): each answers only where its
answer is the JSON parser's, else None (the caller then parses).
"""

from __future__ import annotations

import re
from typing import Any, Final

from publishers import keys

LOG_FIELD: Final = keys.LOG_FIELD.encode()
#: Above every seq (the first bound of a backward walk).
NO_SEQ: Final = 1 << 64
# A signal as the publishers write it (publishers.events.Signal.body()) with a flat meta: keys in
# that order, strings without a quote or backslash, numbers as JSON writes them. Group 1 is
# ``<bot>","strategy":"<strategy>`` (one key for both: neither holds a quote), group 2 the
# confidence.
_STRING: Final = rb'"[^"\\]*"'
_NUMBER: Final = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_VALUE: Final = rb"(?:" + _STRING + rb"|" + _NUMBER + rb"|true|false|null)"
_MEMBER: Final = _STRING + rb":" + _VALUE
PLAIN_SIGNAL: Final = re.compile(
    rb'\{"seq":[0-9]{1,16},"kind":"signal","symbol":'
    + _STRING
    + rb',"ts":'
    + _NUMBER
    + rb',"bot":"([^"\\]*","strategy":"[^"\\]*)","type":'
    + _STRING
    + rb',"price":'
    + _NUMBER
    + rb',"confidence":('
    + _NUMBER
    + rb'),"meta":\{(?:'
    + _MEMBER
    + rb"(?:,"
    + _MEMBER
    + rb")*)?\}\}"
).fullmatch


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


def plain_signal_fields(raw: bytes) -> tuple[str, str, float] | None:
    """(bot, strategy, confidence) of a signal's log text in the publishers' plain shape with a
    flat meta (what :meth:`LogReader._events` reads without parsing), or None.

    Exact on every valid event it answers: the match walks the whole object in the publishers'
    key order with strings that hold no quote or backslash, so a string is its bytes, nothing
    nests but meta's members, and no key comes twice (JSON keeps a duplicate key's last value);
    the confidence is a JSON number, which float() reads as JSON does.
    """
    found = PLAIN_SIGNAL(raw)
    if found is None:
        return None
    bot, _, strategy = found[1].decode().partition('","strategy":"')
    return bot, strategy, float(found[2])


def first_seq(entries: list[Any], after: int) -> int | None:
    """The seq of the first entry past ``after`` whose id is a seq (None: no such entry)."""
    for entry in entries:
        if (type(entry) is list or type(entry) is tuple) and len(entry) == 2:
            seq = seq_of(entry[0])
            if seq is not None and seq > after:
                return seq
    return None


def log_entry(seq: int, text: str) -> list[Any]:
    """A log entry as XREAD answers it (an event read back from SQL)."""
    return [f"{seq}-0".encode(), [LOG_FIELD, text.encode()]]


def event_text(fields: object) -> str | None:
    """The event field of a log entry (a flat [name, value, ...] list, or a dict on a cluster)."""
    if isinstance(fields, dict):
        return text_of(fields.get(LOG_FIELD))
    if isinstance(fields, list):
        for i in range(0, len(fields) - 1, 2):
            if fields[i] == LOG_FIELD:
                return text_of(fields[i + 1])
    return None


def seq_of(entry_id: object) -> int | None:
    """The seq an entry id ``<seq>-0`` names (bytes as Redis answers, or text), else None."""
    if type(entry_id) is bytes:
        raw_head, _, raw_tail = entry_id.partition(b"-")
        return int(raw_head) if raw_tail == b"0" and raw_head.isdigit() and len(raw_head) <= 16 else None
    text = text_of(entry_id)
    if text is None:
        return None
    head, _, tail = text.partition("-")
    return int(head) if head.isascii() and head.isdigit() and tail == "0" and len(head) <= 16 else None


def text_of(value: object) -> str | None:
    """``value`` as text when it is UTF-8 bytes or text, else None."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None
