"""Subscription filters: parsing, the canonical form that keys filter groups, and matching.

Semantics (docs/protocol.md, subscribe): an omitted key constrains nothing; each key applies only to
the kinds that carry its field — ``bots``/``strategies``: signal, trade, bot;
``signal_types``/``min_confidence`` (inclusive): signal; ``sides``: trade; ``kinds``: all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from publishers.events import FILTER_FIELDS, KINDS, MAX_NAME_LENGTH, SIDES, SIGNAL_TYPES, kinds_with
from server.errors import ProtocolError

FILTER_KEYS: Final = ("kinds", *FILTER_FIELDS)
_MAX_LIST = 100
_BOT_KINDS: Final = frozenset(kinds_with("bot"))

#: What filters look at, besides confidence: (kind, bot, strategy, type, side).
Signature = tuple[Any, Any, Any, Any, Any]


def signature_of(event: Mapping[str, Any]) -> Signature:
    return (event.get("kind"), event.get("bot"), event.get("strategy"), event.get("type"), event.get("side"))


@dataclass(frozen=True, slots=True)
class EventFilter:
    """A canonical filter: sorted tuples (None = unconstrained), so equal filters compare equal."""

    kinds: tuple[str, ...] | None = None
    bots: tuple[str, ...] | None = None
    strategies: tuple[str, ...] | None = None
    signal_types: tuple[str, ...] | None = None
    min_confidence: float | None = None
    sides: tuple[str, ...] | None = None

    @property
    def is_everything(self) -> bool:
        return self == EVERYTHING

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Does ``event`` (an event JSON object) pass this filter?"""
        kind = event.get("kind")
        if self.kinds is not None and kind not in self.kinds:
            return False
        if kind in _BOT_KINDS:
            if self.bots is not None and event.get("bot") not in self.bots:
                return False
            if self.strategies is not None and event.get("strategy") not in self.strategies:
                return False
        if kind == "signal":
            if self.signal_types is not None and event.get("type") not in self.signal_types:
                return False
            if self.min_confidence is not None and not event.get("confidence", 0.0) >= self.min_confidence:
                return False
        elif kind == "trade" and self.sides is not None and event.get("side") not in self.sides:
            return False
        return True

    def admits(self, signature: Signature) -> bool:
        """:meth:`matches` for every event with this signature, except ``min_confidence`` (per event)."""
        kind, bot, strategy, type_, side = signature
        if self.kinds is not None and kind not in self.kinds:
            return False
        if kind in _BOT_KINDS:
            if self.bots is not None and bot not in self.bots:
                return False
            if self.strategies is not None and strategy not in self.strategies:
                return False
        if kind == "signal":
            return self.signal_types is None or type_ in self.signal_types
        return not (kind == "trade" and self.sides is not None and side not in self.sides)

    def wants_kind(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    def to_json(self) -> dict[str, Any]:
        """The filter as a JSON object (only the constrained keys)."""
        out: dict[str, Any] = {}
        for key in FILTER_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def to_query(self) -> dict[str, str]:
        """The filter as URL query parameters (lists comma-separated)."""
        return {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in self.to_json().items()}


EVERYTHING: Final = EventFilter()
SIGNAL_TYPES_SORTED: Final = tuple(sorted(SIGNAL_TYPES))
SIDES_SORTED: Final = tuple(sorted(SIDES))


def _names(key: str, value: object, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if isinstance(value, str):  # a single name is accepted for convenience
        value = [value]
    if not isinstance(value, list | tuple):
        raise ProtocolError("bad_request", f"filter.{key}: must be a list of strings")
    if len(value) > _MAX_LIST:
        raise ProtocolError("bad_request", f"filter.{key}: at most {_MAX_LIST} entries")
    names = []
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_NAME_LENGTH:
            got = repr(item[:40]) if isinstance(item, str) else f"a {type(item).__name__}"
            raise ProtocolError("bad_request", f"filter.{key}: entries must be non-empty strings, got {got}")
        if allowed is not None and item not in allowed:
            raise ProtocolError("bad_request", f"filter.{key}: {item!r} is not one of {', '.join(allowed)}")
        names.append(item)
    return tuple(sorted(set(names)))


def parse_filter(raw: object) -> EventFilter:
    """Validate a client's filter object; raises ProtocolError(bad_request) naming the field."""
    if raw is None:
        return EVERYTHING
    if not isinstance(raw, Mapping):
        raise ProtocolError("bad_request", "filter: must be an object")
    unknown = sorted(set(raw) - set(FILTER_KEYS))
    if unknown:
        raise ProtocolError(
            "bad_request", f"filter.{unknown[0][:40]}: unknown key; known: {', '.join(FILTER_KEYS)}"
        )
    values: dict[str, Any] = {}
    for key, allowed in (("kinds", KINDS), ("signal_types", SIGNAL_TYPES), ("sides", SIDES)):
        if raw.get(key) is not None:
            values[key] = _names(key, raw[key], allowed)
    for key in ("bots", "strategies"):
        if raw.get(key) is not None:
            values[key] = _names(key, raw[key])
    confidence = raw.get("min_confidence")
    if confidence is not None:
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, int | float)
            or not math.isfinite(confidence)
        ):
            raise ProtocolError("bad_request", "filter.min_confidence: must be a number between 0 and 1")
        if not 0.0 <= confidence <= 1.0:
            raise ProtocolError(
                "bad_request", f"filter.min_confidence: must be between 0 and 1, got {confidence}"
            )
        values["min_confidence"] = None if confidence == 0 else float(confidence)
    return canonical(EventFilter(**values))


def canonical(flt: EventFilter) -> EventFilter:
    """The one form of every filter that delivers the same events: what makes two subscriptions
    "the same" (one group, and a subscribe with it replaces the connection's earlier one).

    A list naming every value constrains nothing (None); an empty list delivers none of the
    kinds it applies to (those kinds leave ``kinds``); a key that applies to no kind left is
    dropped; ``min_confidence`` 0 is None; ``kinds`` naming every kind is None.
    """
    kinds = set(flt.kinds) if flt.kinds is not None else set(KINDS)
    if flt.bots == () or flt.strategies == ():
        kinds -= _BOT_KINDS
    if flt.signal_types == ():
        kinds.discard("signal")
    if flt.sides == ():
        kinds.discard("trade")
    has_signal, has_trade = "signal" in kinds, "trade" in kinds
    signal_types = flt.signal_types if has_signal and flt.signal_types != SIGNAL_TYPES_SORTED else None
    sides = flt.sides if has_trade and flt.sides != SIDES_SORTED else None
    bot_kinds = bool(kinds & _BOT_KINDS)
    return EventFilter(
        kinds=None if kinds == set(KINDS) else tuple(sorted(kinds)),
        bots=flt.bots if bot_kinds else None,
        strategies=flt.strategies if bot_kinds else None,
        signal_types=signal_types,
        min_confidence=flt.min_confidence if has_signal and flt.min_confidence else None,
        sides=sides,
    )


def parse_filter_query(query: Mapping[str, str]) -> EventFilter:
    """The same filter from URL query parameters (``bots=a,b&min_confidence=0.5``)."""
    raw: dict[str, Any] = {}
    for key in FILTER_KEYS:
        if key not in query:
            continue
        text = query[key]
        if key == "min_confidence":
            try:
                raw[key] = float(text)
            except ValueError:
                raise ProtocolError(
                    "bad_request", f"filter.min_confidence: {text[:40]!r} is not a number"
                ) from None
        else:
            raw[key] = [part for part in (p.strip() for p in text.split(",")) if part]
    return parse_filter(raw)
