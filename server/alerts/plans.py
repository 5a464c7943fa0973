"""Which rules an event can affect: the engine's rules in scope of one (kind, symbol, bot,
strategy), sorted by what an event does to them, computed once per key and cached
(server/alerts/engine.py looks one plan up per event)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from server.alerts.rules import Rule

#: Conditions a timer decides (tick): an event only ends their incident.
TIMERS: Final = ("silent", "no_candle", "bus_down")
#: The conditions each kind of event is an input of.
KIND_CONDITIONS: Final = {
    "bot": ("silent", "status", "drawdown"),
    "trade": ("silent", "loss_streak", "drawdown"),
    "signal": ("silent", "signal"),
    "candle": ("no_candle",),
}
#: Plans kept at most (the keys come from the stream: hostile input is bounded).
_CACHE_MAX: Final = 50_000


@dataclass(frozen=True, slots=True)
class Plan:
    """The rules in scope of one (kind, symbol, bot, strategy), by what an event does to them."""

    #: Timer rules: an event only ends their incident (silence, no candle).
    resolving: tuple[Rule, ...]
    #: Rules evaluated on every event (status, drawdown, loss streak).
    evaluating: tuple[Rule, ...]
    #: Signal rules, looked at only from the lowest of their confidences up.
    signals: tuple[Rule, ...]
    min_confidence: float


class Plans:
    """The :class:`Plan` of each (kind, symbol, bot, strategy) for ``rules``, cached."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self._rules = rules
        self._cache: dict[tuple[str, str, str | None, str | None], Plan] = {}

    def get(self, kind: str, symbol: str, bot: str | None, strategy: str | None) -> Plan:
        """The plan of an event of ``kind`` (a key of :data:`KIND_CONDITIONS`) with these names."""
        key = (kind, symbol, bot, strategy)
        plan = self._cache.get(key)
        if plan is None:
            wanted = KIND_CONDITIONS[kind]
            rules = [
                r for r in self._rules if r.condition.type in wanted and r.scope.admits(symbol, bot, strategy)
            ]
            signals = tuple(r for r in rules if r.condition.type == "signal")
            plan = Plan(
                resolving=tuple(r for r in rules if r.condition.type in ("silent", "no_candle")),
                evaluating=tuple(
                    r for r in rules if r.condition.type not in ("silent", "no_candle", "signal")
                ),
                signals=signals,
                min_confidence=min((r.condition.min_confidence for r in signals), default=0.0),
            )
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = plan
        return plan

    def clear(self) -> None:
        """Forget every plan (they are recomputed on demand)."""
        self._cache.clear()
