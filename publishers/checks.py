"""Checks of event field values: each returns the value normalised or raises
:class:`InvalidEventError` (a ``ValueError``) naming the field, so a bad value never reaches Redis.

The event kinds and their fields are declared in :mod:`publishers.events`.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from publishers.errors import SignalpushError

#: Largest encoded `meta` object accepted, in bytes.
MAX_META_BYTES: Final = 4096
MAX_NAME_LENGTH: Final = 64
# Timestamps are milliseconds since the Unix epoch; this range catches seconds or
# microseconds passed by mistake.
MIN_TS_MS: Final = 946_684_800_000  # 2000-01-01
MAX_TS_MS: Final = 4_102_444_800_000  # 2100-01-01

# ``\Z``, not ``$``: ``$`` also matches before a final newline, so "BTCUSDT\n" would pass.
# Callers use ``.match``; the patterns are anchored at both ends.
# ``_alerts`` is the one name starting otherwise: the stream of alerts without a symbol (docs/alerts.md).
SYMBOL_PATTERN: Final = re.compile(r"^(?:_alerts|[A-Za-z0-9][A-Za-z0-9._:/-]{0,31})\Z")
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
    """Normalise a timestamp (int ms, datetime, pandas Timestamp) to int ms, checked.

    A naive ``datetime`` is local time, as ``datetime.now()`` makes it (so an event stamped
    ``datetime.now()`` on a machine far from UTC lands at now, where fetched data shows it); a
    naive pandas ``Timestamp`` is UTC, as pandas means it (and as the analytics' DataFrames
    hold times). Each is what its own ``.timestamp()`` says; aware ones are converted.
    """
    if isinstance(value, datetime):
        ms = round(value.timestamp() * 1000)
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
