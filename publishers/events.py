"""The event kinds (signal, trade, candle, bot status, alert): the schema, and the event classes.

:data:`SCHEMA` declares every kind once: its fields in wire order, their types, which are
required or nullable, their lengths and allowed values, which are columns of the history
frame, and the SQL table that records them. Everything else derives from it: the SQL
tables and queries (server/history), the analytics and chart columns, the filter fields
(:data:`FILTER_FIELDS`) and the JSON export the JS client and the wall read
(``client_js/events-schema.json``, :func:`schema_json`; ``make schema`` writes it).

An event is the same object everywhere: in Redis, in SQL rows and in websocket frames
(docs/protocol.md). ``seq`` is not part of these classes: the publish script assigns it.
Construction validates every field and raises :class:`InvalidEventError` (a
``ValueError``) naming the field, so a bad value never reaches Redis.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from publishers.checks import MAX_META_BYTES as MAX_META_BYTES
from publishers.checks import MAX_NAME_LENGTH as MAX_NAME_LENGTH
from publishers.checks import MAX_TS_MS as MAX_TS_MS
from publishers.checks import MIN_TS_MS as MIN_TS_MS
from publishers.checks import SYMBOL_PATTERN as SYMBOL_PATTERN
from publishers.checks import TIMEFRAME_PATTERN as TIMEFRAME_PATTERN
from publishers.checks import InvalidEventError as InvalidEventError
from publishers.checks import check_choice as check_choice
from publishers.checks import check_meta as check_meta
from publishers.checks import check_name as check_name
from publishers.checks import check_number as check_number
from publishers.checks import check_optional_number as check_optional_number
from publishers.checks import check_symbol as check_symbol
from publishers.checks import now_ms as now_ms
from publishers.checks import to_ms as to_ms

Kind = Literal["signal", "trade", "candle", "bot", "alert"]
KINDS: Final = ("signal", "trade", "candle", "bot", "alert")
SIGNAL_TYPES: Final = ("buy", "sell", "hold")
SIDES: Final = ("buy", "sell")
ACTIONS: Final = ("entry", "exit")
STATUSES: Final = ("active", "paused", "stopped", "error")
#: An alert event's state: fired, recovered, acknowledged (docs/alerts.md).
ALERT_STATES: Final = ("firing", "resolved", "acked")
ALERT_SEVERITIES: Final = ("info", "warning", "critical")
#: The symbol of alerts that concern no symbol (the gateway's bus): the ``_alerts`` stream.
ALERTS_SYMBOL: Final = "_alerts"

# -- the schema ---------------------------------------------------------------------------

#: JSON types of fields: text, a number (float), a whole number, a JSON object.
FieldType = Literal["text", "number", "integer", "object"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    """One field of an event kind."""

    name: str
    type: FieldType
    #: Must be given; an optional field takes ``default`` (``{}`` for an object) when left out.
    required: bool = True
    default: Any = None
    #: May be null (JSON null, SQL NULL).
    nullable: bool = False
    #: Text: the longest value (the SQL column's length).
    max_length: int | None = None
    #: Text: the values allowed.
    choices: tuple[str, ...] | None = None
    #: A column of the history frame's ``data`` for its kind (docs/protocol.md).
    history: bool = True

    def default_value(self) -> Any:
        """The value of this optional field when it is left out (a fresh ``{}`` for an object)."""
        return {} if self.type == "object" and self.default is None else self.default


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One event kind: its fields in wire order (after ``seq`` and ``kind``) and its SQL table."""

    kind: str
    table: str
    fields: tuple[FieldSpec, ...]
    #: The history frame's columns start with ``seq`` (not candles: one per ts, the last update).
    history_seq: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    @property
    def history_columns(self) -> tuple[str, ...]:
        """The columns of this kind in a history frame's ``data``."""
        own = tuple(f.name for f in self.fields if f.history)
        return ("seq", *own) if self.history_seq else own

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.kind} has no field {name!r}")

    def columns(self, *, lead: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> tuple[str, ...]:
        """Field names: ``lead`` first, then the others in schema order, without ``drop``."""
        for name in (*lead, *drop):
            self.field(name)  # a typo fails here, not as a silently missing column
        return (*lead, *(n for n in self.names if n not in lead and n not in drop))


def _text(name: str, max_length: int, **more: Any) -> FieldSpec:
    return FieldSpec(name=name, type="text", max_length=max_length, **more)


def _number(name: str, **more: Any) -> FieldSpec:
    return FieldSpec(name=name, type="number", **more)


_SYMBOL = _text("symbol", 32, history=False)
_TS = FieldSpec(name="ts", type="integer")  # ms since the Unix epoch (UTC)
_BOT = _text("bot", MAX_NAME_LENGTH)
_STRATEGY = _text("strategy", MAX_NAME_LENGTH)
_META = FieldSpec(name="meta", type="object", required=False, history=False)

#: Every event kind, in the order of their tables.
SCHEMA: Final[dict[str, KindSpec]] = {
    "candle": KindSpec(
        "candle",
        "candles",
        (
            _SYMBOL,
            _TS,
            _text("tf", 8, history=False),
            *(_number(name) for name in ("open", "high", "low", "close", "volume")),
        ),
        history_seq=False,
    ),
    "signal": KindSpec(
        "signal",
        "signals",
        (
            _SYMBOL,
            _TS,
            _BOT,
            _STRATEGY,
            _text("type", 8, choices=SIGNAL_TYPES),
            _number("price"),
            _number("confidence"),
            _META,
        ),
    ),
    "trade": KindSpec(
        "trade",
        "trades",
        (
            _SYMBOL,
            _TS,
            _BOT,
            _STRATEGY,
            _text("side", 8, choices=SIDES),
            _text("action", 8, choices=ACTIONS),
            _number("price"),
            _number("qty"),
            _number("fee", required=False, default=0.0, history=False),
            _number("pnl", required=False, nullable=True),
            _text("position", MAX_NAME_LENGTH),
            _META,
        ),
    ),
    "bot": KindSpec(
        "bot",
        "bot_status",
        (
            _SYMBOL,
            _TS,
            _BOT,
            _STRATEGY,
            _text("status", 16, choices=STATUSES),
            _number("equity", required=False, nullable=True),
            _META,
        ),
    ),
    # Written by the alert evaluator and by acknowledgements (server/gateway/alerting.py), not by
    # bots: one event per fire, resolution and ack of an alert, all under the same alert_id.
    "alert": KindSpec(
        "alert",
        "alerts",
        (
            _SYMBOL,
            _TS,
            _text("alert_id", 32),
            _text("rule", 48),
            _text("state", 8, choices=ALERT_STATES),
            _text("severity", 8, choices=ALERT_SEVERITIES),
            _text("scope", 128),
            _text("message", 256),
            _number("value", required=False, nullable=True),
            # In the history frame too: a wall needs meta.instant (an alert that never resolves).
            FieldSpec(name="meta", type="object", required=False),
        ),
    ),
}

#: Subscription filter keys (besides ``kinds``) -> the event field each one looks at. A key
#: applies to the kinds that carry its field (:func:`kinds_with`), and to no other.
FILTER_FIELDS: Final[dict[str, str]] = {
    "bots": "bot",
    "strategies": "strategy",
    "signal_types": "type",
    "min_confidence": "confidence",
    "sides": "side",
}


def kinds_with(field_name: str) -> tuple[str, ...]:
    """The kinds that carry ``field_name``, in schema order."""
    return tuple(kind for kind, spec in SCHEMA.items() if field_name in spec.names)


def schema_json() -> dict[str, Any]:
    """The schema as JSON (what ``client_js/events-schema.json`` holds)."""
    kinds: dict[str, Any] = {}
    for kind, spec in SCHEMA.items():
        fields = []
        for f in spec.fields:
            entry: dict[str, Any] = {"name": f.name, "type": f.type, "required": f.required}
            if f.nullable:
                entry["nullable"] = True
            if f.max_length is not None:
                entry["max_length"] = f.max_length
            if f.choices is not None:
                entry["choices"] = list(f.choices)
            fields.append(entry)
        kinds[kind] = {"fields": fields, "history": list(spec.history_columns)}
    filters = {key: {"field": name, "kinds": list(kinds_with(name))} for key, name in FILTER_FIELDS.items()}
    return {
        "comment": "Generated from publishers/events.py by make schema; do not edit.",
        "kinds": kinds,
        "filters": {"kinds": {"field": "kind", "kinds": list(SCHEMA)}, **filters},
    }


def schema_json_text() -> str:
    """:func:`schema_json` as the committed file's text."""
    return json.dumps(schema_json(), indent=2) + "\n"


# -- the event classes ----------------------------------------------------------------------


def _fields_function(names: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    """``lambda self: {"symbol": self.symbol, ...}`` for ``names``, compiled as dataclasses compile
    their methods: a dict display is 3x faster than building the dict from the names (publish path)."""
    assert all(name.isidentifier() for name in names), names
    items = ", ".join(f"{name!r}: self.{name}" for name in names)
    namespace: dict[str, Any] = {}
    exec(f"def fields(self):\n    return {{{items}}}\n", namespace)
    function: Callable[[Any], dict[str, Any]] = namespace["fields"]
    return function


def _encode(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class _EventBase:
    kind: ClassVar[Kind]
    #: The kind's fields as a dict in wire order (made from SCHEMA).
    _fields: ClassVar[Callable[[Any], dict[str, Any]]]
    symbol: str
    ts: int

    def __init_subclass__(cls) -> None:
        # No super() call: object's does nothing, and slots=True dataclasses break the bare super().
        cls._fields = _fields_function(SCHEMA[cls.kind].names)

    def to_dict(self, seq: int | None = None) -> dict[str, Any]:
        """The event as the JSON object of docs/protocol.md (with `seq` first when given)."""
        out: dict[str, Any] = {} if seq is None else {"seq": seq}
        out["kind"] = self.kind
        out.update(type(self)._fields(self))
        return out

    def body(self) -> str:
        """The event's JSON without its opening brace; the publish script prepends seq."""
        return _encode(self.to_dict())[1:]


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal(_EventBase):
    """A strategy's buy/sell/hold call with its confidence (0..1)."""

    kind: ClassVar[Kind] = "signal"
    bot: str
    strategy: str
    type: str
    price: float
    confidence: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "symbol", check_symbol(self.symbol))
        _set(self, "ts", to_ms(self.ts))
        _set(self, "bot", check_name(self.bot, "bot"))
        _set(self, "strategy", check_name(self.strategy, "strategy"))
        _set(self, "type", check_choice(self.type, "type", SIGNAL_TYPES))
        _set(self, "price", check_number(self.price, "price", positive=True))
        _set(self, "confidence", check_number(self.confidence, "confidence", minimum=0.0, maximum=1.0))
        _set(self, "meta", check_meta(self.meta))


@dataclass(frozen=True, slots=True, kw_only=True)
class Trade(_EventBase):
    """An entry into or exit from a position; exits carry the realised P&L."""

    kind: ClassVar[Kind] = "trade"
    bot: str
    strategy: str
    side: str
    action: str
    price: float
    qty: float
    position: str
    fee: float = 0.0
    pnl: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "symbol", check_symbol(self.symbol))
        _set(self, "ts", to_ms(self.ts))
        _set(self, "bot", check_name(self.bot, "bot"))
        _set(self, "strategy", check_name(self.strategy, "strategy"))
        _set(self, "side", check_choice(self.side, "side", SIDES))
        _set(self, "action", check_choice(self.action, "action", ACTIONS))
        _set(self, "price", check_number(self.price, "price", positive=True))
        _set(self, "qty", check_number(self.qty, "qty", positive=True))
        _set(self, "position", check_name(self.position, "position"))
        _set(self, "fee", check_number(self.fee, "fee", minimum=0.0))
        _set(self, "pnl", check_optional_number(self.pnl, "pnl"))
        _set(self, "meta", check_meta(self.meta))


@dataclass(frozen=True, slots=True, kw_only=True)
class Candle(_EventBase):
    """An OHLCV bar; ``ts`` is its open time. A candle with the same ts replaces the last."""

    kind: ClassVar[Kind] = "candle"
    tf: str
    open: float
    high: float
    low: float
    close: float
    volume: float

    def __post_init__(self) -> None:
        _set(self, "symbol", check_symbol(self.symbol))
        _set(self, "ts", to_ms(self.ts))
        if not isinstance(self.tf, str) or not TIMEFRAME_PATTERN.fullmatch(self.tf):
            raise InvalidEventError("tf", f"must look like 1m, 15m, 1h or 1d; got {self.tf!r}")
        for name in ("open", "high", "low", "close"):
            _set(self, name, check_number(getattr(self, name), name, positive=True))
        _set(self, "volume", check_number(self.volume, "volume", minimum=0.0))
        if self.high < max(self.open, self.close, self.low):
            raise InvalidEventError("high", f"{self.high} is below open, close or low")
        if self.low > min(self.open, self.close):
            raise InvalidEventError("low", f"{self.low} is above open or close")


@dataclass(frozen=True, slots=True, kw_only=True)
class BotStatus(_EventBase):
    """A bot's state; publishing it regularly doubles as the bot's heartbeat."""

    kind: ClassVar[Kind] = "bot"
    bot: str
    strategy: str
    status: str
    equity: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "symbol", check_symbol(self.symbol))
        _set(self, "ts", to_ms(self.ts))
        _set(self, "bot", check_name(self.bot, "bot"))
        _set(self, "strategy", check_name(self.strategy, "strategy"))
        _set(self, "status", check_choice(self.status, "status", STATUSES))
        _set(self, "equity", check_optional_number(self.equity, "equity"))
        _set(self, "meta", check_meta(self.meta))


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert(_EventBase):
    """An alert fired, resolved or acknowledged (written by signalpush itself; docs/alerts.md)."""

    kind: ClassVar[Kind] = "alert"
    alert_id: str
    rule: str
    state: str
    severity: str
    scope: str
    message: str
    value: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "symbol", check_symbol(self.symbol))
        _set(self, "ts", to_ms(self.ts))
        for name, length in (("alert_id", 32), ("rule", 48), ("scope", 128), ("message", 256)):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > length or (name != "message" and not value):
                raise InvalidEventError(name, f"must be a string of at most {length} characters")
        _set(self, "state", check_choice(self.state, "state", ALERT_STATES))
        _set(self, "severity", check_choice(self.severity, "severity", ALERT_SEVERITIES))
        _set(self, "value", check_optional_number(self.value, "value"))
        _set(self, "meta", check_meta(self.meta))


Event = Signal | Trade | Candle | BotStatus | Alert

_BY_KIND: Final[dict[str, type[Signal] | type[Trade] | type[Candle] | type[BotStatus] | type[Alert]]] = {
    "signal": Signal,
    "trade": Trade,
    "candle": Candle,
    "bot": BotStatus,
    "alert": Alert,
}
_EVENT_FIELDS: Final = {kind: frozenset(spec.names) for kind, spec in SCHEMA.items()}


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Build and validate an event from its JSON object (``seq`` and unknown keys ignored)."""
    kind = data.get("kind")
    cls = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidEventError("kind", f"must be one of {', '.join(KINDS)}; got {kind!r}")
    for name in SCHEMA[cls.kind].required:
        if name not in data:
            raise InvalidEventError(name, f"is required for a {cls.kind} event")
    wanted = _EVENT_FIELDS[cls.kind]
    return cls(**{k: v for k, v in data.items() if k in wanted})


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)
