"""The column sets of analytics frames and queries, derived from the event schema (no pandas, no SQL).

:data:`publishers.events.SCHEMA` names the fields; analytics puts some first, leaves
``meta`` out, calls a signal's ``type`` ``signal_type`` (the seed API's name) and adds the
bot's registry id and the row's time as a datetime.
"""

from __future__ import annotations

from typing import Final

from publishers.events import SCHEMA

#: Analytics' names for event fields.
ALIASES: Final = {"type": "signal_type"}
#: The event field behind each alias.
FIELD_OF: Final = {alias: name for name, alias in ALIASES.items()}


def _of_type(field_type: str) -> frozenset[str]:
    fields = (f for spec in SCHEMA.values() for f in spec.fields if f.type == field_type)
    return frozenset(ALIASES.get(f.name, f.name) for f in fields)


#: Analytics columns holding an event's numbers (float64 in frames) and texts (str).
NUMBER_COLUMNS: Final = _of_type("number")
TEXT_COLUMNS: Final = _of_type("text")


def _event_columns(kind: str) -> tuple[str, ...]:
    names = [ALIASES.get(n, n) for n in SCHEMA[kind].columns(lead=("ts", "symbol", "bot"), drop=("meta",))]
    names.insert(names.index("bot") + 1, "bot_id")
    return ("timestamp", *names, "seq")


#: Columns of ``get_signals``' frames.
SIGNAL_COLUMNS: Final = _event_columns("signal")
#: Columns of ``get_trades``' frames.
TRADE_COLUMNS: Final = _event_columns("trade")
#: Columns of the trades frame :mod:`server.analytics.performance` reads (one row per trade).
BOOK_COLUMNS: Final = SCHEMA["trade"].columns(lead=("ts", "bot", "strategy", "symbol"), drop=("meta",))
#: Text fields the performance query sends as 0/1 (cheaper per row): side as ``sell``, action as ``exit``.
ENCODED: Final = {"side": ("sell", "sell"), "action": ("exit", "exit")}
#: Columns of ``performance_query``: ``part``, then :data:`BOOK_COLUMNS` with side and action encoded.
PERFORMANCE_COLUMNS: Final = ("part", *(ENCODED[n][0] if n in ENCODED else n for n in BOOK_COLUMNS))
