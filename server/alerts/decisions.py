"""What the alert engine decides: fire or resolve one alert (the ``alert`` event's fields), and
the alert's id (server/alerts/engine.py makes them; the I/O layer publishes them)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


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
