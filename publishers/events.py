"""The four event kinds (signal, trade, candle, bot status) and their validation.

An event is the same object everywhere: in Redis, in SQL rows and in websocket frames
(DESIGN.md §3). ``seq`` is not part of these classes: the publish script assigns it.
Construction validates every field and raises :class:`InvalidEventError` (a
``ValueError``) naming the field, so a bad value never reaches Redis.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import time
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal

from publishers.errors import SignalpushError

Kind = Literal["signal", "trade", "candle", "bot"]
KINDS: Final = ("signal", "trade", "candle", "bot")
SIGNAL_TYPES: Final = ("buy", "sell", "hold")
SIDES: Final = ("buy", "sell")
ACTIONS: Final = ("entry", "exit")
STATUSES: Final = ("active", "paused", "stopped", "error")

#: Largest encoded `meta` object accepted, in bytes.
MAX_META_BYTES: Final = 4096
MAX_NAME_LENGTH: Final = 64
# Timestamps are milliseconds since the Unix epoch; this range catches seconds or
# microseconds passed by mistake.
MIN_TS_MS: Final = 946_684_800_000  # 2000-01-01
MAX_TS_MS: Final = 4_102_444_800_000  # 2100-01-01

# ``\Z``, not ``$``: ``$`` also matches before a final newline, so "BTCUSDT\n" would pass.
# Callers use ``.match``; the patterns are anchored at both ends.
SYMBOL_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}\Z")
TIMEFRAME_PATTERN: Final = re.compile(r"^[1-9][0-9]{0,3}[smhdw]\Z")
_NAME_PATTERN: Final = re.compile(r"^[^\x00-\x1f\x7f]+\Z")


class InvalidEventError(ValueError, SignalpushError):
    """An event field has a bad value; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def now_ms() -> int:
    """Current time in ms since the Unix epoch (UTC)."""
    return time.time_ns() // 1_000_000


def check_symbol(value: object, field_name: str = "symbol") -> str:
    if not isinstance(value, str):
        raise InvalidEventError(field_name, f"expected a string, got {type(value).__name__}")
    if not SYMBOL_PATTERN.match(value):
        raise InvalidEventError(
            field_name,
            f"{value!r} is not a symbol (1-32 characters: letters, digits and . _ : / -, "
            "starting with a letter or digit)",
        )
    return value


def check_name(value: object, field_name: str) -> str:
    if not isinstance(value, str):
        raise InvalidEventError(field_name, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidEventError(field_name, "must not be empty")
    if len(value) > MAX_NAME_LENGTH or not _NAME_PATTERN.fullmatch(value):
        raise InvalidEventError(
            field_name, f"must be at most {MAX_NAME_LENGTH} printable characters, got {value!r}"
        )
    return value


def check_number(
    value: object,
    field_name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidEventError(field_name, f"expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidEventError(field_name, f"must be a finite number, got {number}")
    if positive and number <= 0:
        raise InvalidEventError(field_name, f"must be greater than 0, got {number}")
    if minimum is not None and number < minimum:
        raise InvalidEventError(field_name, f"must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise InvalidEventError(field_name, f"must be at most {maximum}, got {number}")
    return number


def check_optional_number(value: object, field_name: str) -> float | None:
    return None if value is None else check_number(value, field_name)


def check_choice(value: object, field_name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidEventError(field_name, f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def to_ms(value: object, field_name: str = "ts") -> int:
    """Normalise a timestamp (int ms, datetime, pandas Timestamp) to int ms, checked."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        ms = round(moment.timestamp() * 1000)
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidEventError(
            field_name, f"expected ms since the epoch or a datetime, got {type(value).__name__}"
        )
    else:
        as_float = float(value)
        if not math.isfinite(as_float) or as_float != int(as_float):
            raise InvalidEventError(field_name, f"must be whole milliseconds, got {value}")
        ms = int(as_float)
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise InvalidEventError(
            field_name,
            f"{ms} is outside 2000..2100 in milliseconds since the epoch (seconds given by mistake?)",
        )
    return ms


def check_meta(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidEventError("meta", "must be a JSON object with string keys")
    try:
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidEventError("meta", f"must be JSON-serialisable without NaN/inf: {exc}") from None
    if len(encoded.encode()) > MAX_META_BYTES:
        raise InvalidEventError("meta", f"encodes to {len(encoded.encode())} bytes, over {MAX_META_BYTES}")
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded


def _encode(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class _EventBase:
    kind: ClassVar[Kind]
    symbol: str
    ts: int

    def to_dict(self, seq: int | None = None) -> dict[str, Any]:
        """The event as the JSON object of DESIGN.md §3 (with `seq` first when given)."""
        out: dict[str, Any] = {} if seq is None else {"seq": seq}
        out["kind"] = self.kind
        out.update(self._fields())
        return out

    def body(self) -> str:
        """The event's JSON without its opening brace; the publish script prepends seq."""
        return _encode(self.to_dict())[1:]

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError


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

    def _fields(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "ts": self.ts,
            "bot": self.bot,
            "strategy": self.strategy,
            "type": self.type,
            "price": self.price,
            "confidence": self.confidence,
            "meta": self.meta,
        }


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

    def _fields(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "ts": self.ts,
            "bot": self.bot,
            "strategy": self.strategy,
            "side": self.side,
            "action": self.action,
            "price": self.price,
            "qty": self.qty,
            "fee": self.fee,
            "pnl": self.pnl,
            "position": self.position,
            "meta": self.meta,
        }


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

    def _fields(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "ts": self.ts,
            "tf": self.tf,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
        }


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

    def _fields(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "ts": self.ts,
            "bot": self.bot,
            "strategy": self.strategy,
            "status": self.status,
            "equity": self.equity,
            "meta": self.meta,
        }


Event = Signal | Trade | Candle | BotStatus

_BY_KIND: Final[dict[str, type[Signal] | type[Trade] | type[Candle] | type[BotStatus]]] = {
    "signal": Signal,
    "trade": Trade,
    "candle": Candle,
    "bot": BotStatus,
}
_EVENT_FIELDS: Final = {
    kind: {f for f in cls.__dataclass_fields__ if f != "kind"} for kind, cls in _BY_KIND.items()
}

_REQUIRED_FIELDS: Final = {
    kind: [
        name
        for name, spec in cls.__dataclass_fields__.items()
        if name != "kind" and spec.default is MISSING and spec.default_factory is MISSING
    ]
    for kind, cls in _BY_KIND.items()
}


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Build and validate an event from its JSON object (``seq`` and unknown keys ignored)."""
    kind = data.get("kind")
    cls = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidEventError("kind", f"must be one of {', '.join(KINDS)}; got {kind!r}")
    for name in _REQUIRED_FIELDS[cls.kind]:
        if name not in data:
            raise InvalidEventError(name, f"is required for a {cls.kind} event")
    wanted = _EVENT_FIELDS[cls.kind]
    return cls(**{k: v for k, v in data.items() if k in wanted})


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)
