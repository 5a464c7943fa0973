"""What the alert engine decides: fire or resolve one alert (the ``alert`` event's fields), made
from a rule's incident, and the alert's id (server/alerts/engine.py makes them; the I/O layer
publishes them)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from server.alerts.rules import Rule

#: Where alerts without a symbol go (bus_down): the ``_alerts`` stream.
ALERTS_SYMBOL: Final = "_alerts"


@dataclass(frozen=True, slots=True)
class Decision:
    """Fire or resolve one alert: what the I/O layer publishes as an ``alert`` event."""

    action: str  # "fire" | "resolve"
    alert_id: str
    rule: str
    scope: str
    symbol: str
    severity: str
    message: str
    value: float | None
    ts: int
    #: Inside the rule's quiet hours: external routes are skipped.
    quiet: bool
    routes: tuple[str, ...]
    #: A one-off alert (``signal``): it never resolves, so it is never "active".
    instant: bool = False

    @property
    def state(self) -> str:
        return "firing" if self.action == "fire" else "resolved"

    def event_fields(self) -> dict[str, Any]:
        """The ``alert`` event's fields (publishers/events.py ``Alert``)."""
        return {
            "symbol": self.symbol,
            "ts": self.ts,
            "alert_id": self.alert_id,
            "rule": self.rule,
            "state": self.state,
            "severity": self.severity,
            "scope": self.scope,
            "message": self.message,
            "value": self.value,
            "meta": {"routes": list(self.routes), "quiet": self.quiet, "instant": self.instant},
        }


def alert_id(rule: str, scope: str, cause: str) -> str:
    """The id of the incident of ``rule`` on ``scope`` started by ``cause`` (24 hex digits)."""
    return hashlib.sha1(f"{rule}\x00{scope}\x00{cause}".encode()).hexdigest()[:24]


def decision_of(action: str, rule: Rule, scope: str, inc: Mapping[str, Any], now_ms: int) -> Decision:
    """The ``action`` ("fire" or "resolve") of ``rule``'s incident ``inc`` on ``scope`` at ``now_ms``
    (``inc``: the engine's incident record, with its id, symbol, value and text)."""
    text = str(inc.get("text", ""))
    message = f"{rule.message}: {text}" if rule.message else text
    if action == "resolve":
        message = f"recovered: {message}"
    value = inc.get("value")
    return Decision(
        action=action,
        alert_id=str(inc["id"]),
        rule=rule.name,
        scope=scope[:128],
        symbol=str(inc.get("symbol", ALERTS_SYMBOL)),
        severity=rule.severity,
        message=message[:256],
        value=float(value) if isinstance(value, int | float) else None,
        ts=now_ms,
        quiet=rule.is_quiet(now_ms),
        routes=rule.routes,
        instant=rule.condition.instant,
    )
