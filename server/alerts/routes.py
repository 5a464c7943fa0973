"""What a route sends for an alert (pure): the URL and the JSON body of one HTTP POST.

* ``webhook`` with ``template: json``: the alert event itself under ``alert`` plus a ``text``
  line; with ``slack``: ``{"text": ...}`` (Slack incoming webhooks, Mattermost, Rocket.Chat);
  with ``discord``: ``{"content": ...}``.
* ``telegram``: ``POST {base_url}/bot{token}/sendMessage`` with ``chat_id`` and ``text``
  (the Bot API; ``base_url`` points at a stub server in tests).

Each body carries the alert's id, so a receiver can drop the rare second delivery of an
alert (delivery is at least once: docs/alerts.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from server.alerts.rules import Route

_ICONS: Final = {"critical": "\U0001f534", "warning": "\U0001f7e0", "info": "\U0001f535"}


def alert_text(alert: Mapping[str, Any]) -> str:
    """One line for people: severity, state, rule, message, symbol, id."""
    state = str(alert.get("state", ""))
    severity = str(alert.get("severity", ""))
    icon = "\u2705" if state == "resolved" else _ICONS.get(severity, "")
    label = "RESOLVED" if state == "resolved" else "ACKED" if state == "acked" else severity.upper()
    return (
        f"{icon} [{label}] {alert.get('rule')}: {alert.get('message')} "
        f"({alert.get('symbol')}, id {alert.get('alert_id')})"
    ).strip()


def request_for(route: Route, alert: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL and JSON body to POST for ``alert`` (an alert event dict) on ``route``."""
    text = alert_text(alert)
    if route.type == "telegram":
        url = f"{route.base_url}/bot{route.token}/sendMessage"
        return url, {"chat_id": route.chat_id, "text": text, "disable_web_page_preview": True}
    if route.template == "slack":
        return route.url, {"text": text}
    if route.template == "discord":
        return route.url, {"content": text[:2000]}
    return route.url, {"text": text, "alert": dict(alert)}


def wants(route: Route, alert: Mapping[str, Any]) -> bool:
    """Does ``route`` take this alert event (a resolution only when ``send_resolved``)?"""
    state = alert.get("state")
    if state == "firing":
        return True
    return route.send_resolved and state == "resolved"
