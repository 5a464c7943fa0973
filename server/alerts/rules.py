"""Alert rules and routes: frozen dataclasses parsed from ``config.yaml`` ``alerts`` (pure: no I/O).

A rule has a name, a scope (glob patterns over symbols, bots and strategies), one
condition, a severity, a window (``for_s``: how long the condition must hold before it
fires), a cooldown (after a resolution or an instant fire, no new fire of the same
(rule, scope key) before it ends), quiet hours (UTC ``HH:MM-HH:MM``: alerts still become
events and reach the wall, external routes are skipped) and the names of its routes.
docs/alerts.md lists every condition and route with examples. Every error is a
:class:`~publishers.errors.ConfigError` naming the rule and the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final

from publishers.errors import ConfigError
from publishers.events import MAX_NAME_LENGTH, SIGNAL_TYPES, STATUSES

SEVERITIES: Final = ("info", "warning", "critical")
CONDITIONS: Final = ("silent", "status", "drawdown", "loss_streak", "signal", "no_candle", "bus_down")
ROUTE_TYPES: Final = ("webhook", "telegram", "wall")
TEMPLATES: Final = ("json", "slack", "discord")
#: The route every alert takes (the wall is the stream itself); naming it in ``routes`` is allowed.
WALL_ROUTE: Final = "wall"
_RULE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}\Z")
_QUIET: Final = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)\Z")
_MAX_RULES: Final = 1000
_MAX_PATTERNS: Final = 100


@dataclass(frozen=True, slots=True)
class Scope:
    """Glob patterns (``fnmatch``, case-sensitive); an empty tuple matches everything."""

    symbols: tuple[str, ...] = ()
    bots: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ()

    def admits(self, symbol: str | None, bot: str | None = None, strategy: str | None = None) -> bool:
        """Does an event of this symbol, bot and strategy fall in the scope? (None: not checked)."""
        return _any(self.symbols, symbol) and _any(self.bots, bot) and _any(self.strategies, strategy)


def _any(patterns: tuple[str, ...], value: str | None) -> bool:
    return not patterns or value is None or any(fnmatchcase(value, p) for p in patterns)


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """One condition; which fields apply depends on ``type`` (docs/alerts.md)."""

    type: str
    #: silent / no_candle / bus_down: seconds without the thing.
    seconds: float = 0.0
    #: status: the statuses that fire.
    statuses: tuple[str, ...] = ()
    #: drawdown: of "equity" (bot status) or "pnl" (cumulative realised P&L of exits).
    of: str = "equity"
    #: drawdown: beyond this amount below the peak (absolute) ...
    abs: float | None = None
    #: ... or this percentage of the peak.
    pct: float | None = None
    #: loss_streak: losing exits in a row.
    count: int = 0
    #: signal: confidence at least this ...
    min_confidence: float = 0.0
    #: ... of these types (empty: any).
    signal_types: tuple[str, ...] = ()

    @property
    def instant(self) -> bool:
        """Fires on one event and has no resolution (a cooldown spaces its fires)."""
        return self.type == "signal"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One alert rule (see the module docstring)."""

    name: str
    condition: Condition
    scope: Scope = field(default_factory=Scope)
    severity: str = "warning"
    for_s: float = 0.0
    cooldown_s: float = 300.0
    #: (start minute, end minute) of the day in UTC; the range may wrap midnight.
    quiet_hours: tuple[int, int] | None = None
    routes: tuple[str, ...] = ()
    message: str = ""
    enabled: bool = True

    def is_quiet(self, now_ms: int) -> bool:
        """Is ``now_ms`` inside the quiet hours (external routes skipped)?"""
        if self.quiet_hours is None:
            return False
        minute = (now_ms // 60_000) % 1440
        start, end = self.quiet_hours
        return start <= minute < end if start <= end else minute >= start or minute < end


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where an alert goes besides the wall: a webhook or the Telegram Bot API."""

    name: str
    type: str
    url: str = field(default="", repr=False)
    template: str = "json"
    #: telegram: the bot token (in the URL path), the chat, the API's base URL (a stub in tests).
    token: str = field(default="", repr=False)
    chat_id: str = ""
    base_url: str = "https://api.telegram.org"
    #: Also send resolutions (and acknowledgements) to this route.
    send_resolved: bool = True


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Every rule and route, validated."""

    rules: tuple[Rule, ...] = ()
    routes: tuple[Route, ...] = ()

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def route(self, name: str) -> Route | None:
        for route in self.routes:
            if route.name == name:
                return route
        return None


# -- parsing ------------------------------------------------------------------------------------


def parse_alerts(rules: Sequence[Any], routes: Sequence[Any] = ()) -> AlertConfig:
    """Validate ``alerts.rules`` and ``alerts.routes`` (lists of mappings from YAML or JSON)."""
    if not isinstance(routes, Sequence) or isinstance(routes, str):
        raise ConfigError("alerts.routes", "must be a list of routes")
    if not isinstance(rules, Sequence) or isinstance(rules, str):
        raise ConfigError("alerts.rules", "must be a list of rules")
    if len(rules) > _MAX_RULES:
        raise ConfigError("alerts.rules", f"at most {_MAX_RULES} rules")
    parsed_routes: list[Route] = []
    for i, raw in enumerate(routes):
        route = _parse_route(i, raw)
        if route.name == WALL_ROUTE or any(r.name == route.name for r in parsed_routes):
            raise ConfigError(
                f"alerts.routes[{route.name}].name", "is taken (names are unique; 'wall' is built in)"
            )
        parsed_routes.append(route)
    names = {r.name for r in parsed_routes} | {WALL_ROUTE}
    parsed_rules: list[Rule] = []
    for i, raw in enumerate(rules):
        rule = _parse_rule(i, raw, names)
        if any(r.name == rule.name for r in parsed_rules):
            raise ConfigError(f"alerts.rules[{rule.name}].name", "is used by another rule")
        parsed_rules.append(rule)
    return AlertConfig(tuple(parsed_rules), tuple(parsed_routes))


class _Reader:
    """Reads keys of one mapping, each error naming ``where.key``; unknown keys are refused."""

    def __init__(self, where: str, raw: object, known: tuple[str, ...]) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(where, "must be a mapping")
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}", f"unknown key; known: {', '.join(known)}")
        self.where = where
        self.raw = raw

    def key(self, name: str) -> str:
        return f"{self.where}.{name}"

    def has(self, name: str) -> bool:
        return name in self.raw and self.raw[name] is not None

    def text(self, name: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> str:
        value = self.raw.get(name, default)
        if value is None:
            raise ConfigError(self.key(name), "is required")
        if not isinstance(value, str):
            raise ConfigError(self.key(name), f"must be a string, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(self.key(name), f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def number(self, name: str, default: float | None = None, *, minimum: float = 0.0) -> float:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.key(name), f"must be a number, got {value!r}")
        if not value >= minimum or value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(self.key(name), f"must be a finite number of at least {minimum}, got {value!r}")
        return float(value)

    def optional_number(self, name: str) -> float | None:
        return self.number(name, minimum=0.0) if self.has(name) else None

    def whole(self, name: str, default: int | None = None, *, minimum: int = 1) -> int:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(self.key(name), f"must be a whole number of at least {minimum}, got {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), f"must be true or false, got {value!r}")
        return value

    def names(self, name: str, *, choices: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw.get(name, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or len(value) > _MAX_PATTERNS:
            raise ConfigError(self.key(name), f"must be a list of at most {_MAX_PATTERNS} strings")
        for item in value:
            if not isinstance(item, str) or not 0 < len(item) <= MAX_NAME_LENGTH:
                raise ConfigError(self.key(name), f"entries must be non-empty strings, got {item!r}")
            if choices and item not in choices:
                raise ConfigError(self.key(name), f"{item!r} is not one of {', '.join(choices)}")
        return tuple(value)


def _name(where: str, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    if not isinstance(name, str) or not _RULE_NAME.match(name):
        raise ConfigError(f"{where}.name", f"must be 1-48 letters, digits, _ . - ; got {name!r}")
    return name


def _parse_route(index: int, raw: object) -> Route:
    name = _name(f"alerts.routes[{index}]", raw)
    known = ("name", "type", "url", "template", "token", "chat_id", "base_url", "send_resolved")
    r = _Reader(f"alerts.routes[{name}]", raw, known)
    kind = r.text("type", choices=ROUTE_TYPES[:2])
    resolved = r.flag("send_resolved", True)
    if kind == "webhook":
        url = r.text("url")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(r.key("url"), "must be an http:// or https:// URL")
        return Route(
            name=name,
            type=kind,
            url=url,
            template=r.text("template", "json", choices=TEMPLATES),
            send_resolved=resolved,
        )
    base = r.text("base_url", "https://api.telegram.org").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(r.key("base_url"), "must be an http:// or https:// URL")
    token = r.text("token")
    if not re.fullmatch(r"[A-Za-z0-9:_-]{1,128}", token):
        raise ConfigError(r.key("token"), "must be a Telegram bot token (letters, digits, : _ -)")
    chat = r.raw.get("chat_id")
    if isinstance(chat, int) and not isinstance(chat, bool):
        chat = str(chat)
    if not isinstance(chat, str) or not chat:
        raise ConfigError(r.key("chat_id"), "is required (a chat id or @channel)")
    return Route(name=name, type=kind, token=token, chat_id=chat, base_url=base, send_resolved=resolved)


_RULE_KEYS: Final = (
    *("name", "scope", "condition", "severity", "for_s", "cooldown_s"),
    *("quiet_hours", "routes", "message", "enabled"),
)


def _parse_rule(index: int, raw: object, routes: set[str]) -> Rule:
    name = _name(f"alerts.rules[{index}]", raw)
    r = _Reader(f"alerts.rules[{name}]", raw, _RULE_KEYS)
    scope_reader = _Reader(r.key("scope"), r.raw.get("scope") or {}, ("symbols", "bots", "strategies"))
    scope = Scope(
        symbols=scope_reader.names("symbols"),
        bots=scope_reader.names("bots"),
        strategies=scope_reader.names("strategies"),
    )
    condition = _parse_condition(r.key("condition"), r.raw.get("condition"))
    rule_routes = r.names("routes")
    for route in rule_routes:
        if route not in routes:
            raise ConfigError(
                r.key("routes"), f"{route!r} is not a route; known: {', '.join(sorted(routes))}"
            )
    quiet = None
    if r.has("quiet_hours"):
        text = r.text("quiet_hours")
        match = _QUIET.match(text)
        if match is None:
            raise ConfigError(r.key("quiet_hours"), f"must be HH:MM-HH:MM (UTC), got {text!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        quiet = (h1 * 60 + m1, h2 * 60 + m2)
    message = r.text("message", "")
    if len(message) > 200:
        raise ConfigError(r.key("message"), "at most 200 characters")
    return Rule(
        name=name,
        condition=condition,
        scope=scope,
        severity=r.text("severity", "warning", choices=SEVERITIES),
        for_s=r.number("for_s", 0.0),
        cooldown_s=r.number("cooldown_s", 300.0),
        quiet_hours=quiet,
        routes=rule_routes,
        message=message,
        enabled=r.flag("enabled", True),
    )


_CONDITION_KEYS: Final = ("type", "seconds", "in", "of", "abs", "pct", "count", "min_confidence", "types")


def _parse_condition(where: str, raw: object) -> Condition:
    r = _Reader(where, raw, _CONDITION_KEYS)
    kind = r.text("type", choices=CONDITIONS)
    if kind in ("silent", "no_candle", "bus_down"):
        return Condition(type=kind, seconds=r.number("seconds", minimum=0.1))
    if kind == "status":
        statuses = r.names("in", choices=STATUSES)
        if not statuses:
            raise ConfigError(r.key("in"), f"name at least one status of {', '.join(STATUSES)}")
        return Condition(type=kind, statuses=statuses)
    if kind == "drawdown":
        of = r.text("of", "equity", choices=("equity", "pnl"))
        absolute, pct = r.optional_number("abs"), r.optional_number("pct")
        if (absolute is None) == (pct is None):
            raise ConfigError(r.key("abs"), "give exactly one of abs (an amount) or pct (a percentage)")
        return Condition(type=kind, of=of, abs=absolute, pct=pct)
    if kind == "loss_streak":
        return Condition(type=kind, count=r.whole("count", minimum=1))
    confidence = r.number("min_confidence", 0.0)
    if confidence > 1:
        raise ConfigError(r.key("min_confidence"), f"must be at most 1, got {confidence}")
    return Condition(
        type=kind, min_confidence=confidence, signal_types=r.names("types", choices=SIGNAL_TYPES)
    )
