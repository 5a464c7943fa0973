"""``GET /api/alerts`` (active and recent) and ``POST /api/alerts/{id}/ack`` (docs/alerts.md).

Both are token-checked like the rest of the API: a token sees, and may acknowledge, the
alerts of the symbols it may read (``_alerts``, the stream of alerts without a symbol,
needs a token that may read it). An acknowledgement is itself an ``alert`` event
(``state: acked``) in the alert's stream, so every wall hears of it, and SQL records it;
a second ack of the same alert is answered but writes nothing (the publish script's dedup).
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import redis
import redis.asyncio as aioredis
from websockets.http11 import Response

from publishers import keys
from publishers.connection import is_cluster_url
from publishers.events import SYMBOL_PATTERN
from server.errors import BusError, ProtocolError
from server.gateway.alerting import RECENT_MAX, publish_alert
from server.gateway.auth import Principal
from server.gateway.http import Handler, Query, json_response

if TYPE_CHECKING:
    from server.gateway.access import Access

_ALERT_ID: Final = re.compile(r"^[0-9a-f]{1,32}\Z")
#: Active alerts listed at most (a flood of incidents must not make a huge response).
MAX_ACTIVE: Final = 1000


def stored_alert(raw: object) -> dict[str, Any] | None:
    """An alert JSON from the active hash or the recent list (read from Redis: checked), or None."""
    try:
        alert = json.loads(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(alert, dict):
        return None
    symbol, alert_id = alert.get("symbol"), alert.get("alert_id")
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.match(symbol):
        return None
    if not isinstance(alert_id, str) or not _ALERT_ID.match(alert_id):
        return None
    return alert


class AlertRoutes:
    """The alert routes of the JSON API (see :meth:`handlers`)."""

    def __init__(self, client: aioredis.Redis, access: Access, *, redis_url: str, log_maxlen: int) -> None:
        self.client = client
        self.access = access
        self.cluster = is_cluster_url(redis_url)
        self.log_maxlen = log_maxlen

    def handlers(self) -> dict[str, Handler]:
        return {"/api/alerts": self._list, "/api/alerts/*/ack": self._ack}

    async def _list(self, query: Query) -> Response:
        principal = self.access.require(query.request, query.params)
        try:
            active_raw = await self.client.hvals(keys.ALERTS_ACTIVE_KEY)
            recent_raw = await self.client.lrange(keys.ALERTS_RECENT_KEY, 0, RECENT_MAX - 1)
        except redis.RedisError as exc:
            raise BusError(f"cannot read the alerts: {exc}") from exc
        active = [
            a
            for raw in active_raw[:MAX_ACTIVE]
            if (a := stored_alert(raw)) and principal.can_read(a["symbol"])
        ]
        active.sort(key=lambda a: a.get("ts", 0), reverse=True)
        seen: set[str] = set()
        recent = []
        for raw in recent_raw:
            alert = stored_alert(raw)
            if alert is None or alert["alert_id"] in seen or not principal.can_read(alert["symbol"]):
                continue
            seen.add(alert["alert_id"])
            recent.append(alert)
        return json_response({"active": active, "recent": recent})

    async def _ack(self, query: Query) -> Response:
        if query.request.method != "POST":
            raise ProtocolError("bad_request", "acknowledge with POST")
        alert_id = query.path.rsplit("/", 2)[-2]
        principal = self.access.require(query.request, query.params)
        seq = await self.acknowledge_id(alert_id, principal)
        return json_response({"ok": True, "alert_id": alert_id, "seq": seq})

    async def acknowledge_id(self, alert_id: str, principal: Principal) -> int:
        """Acknowledge the active alert ``alert_id`` as ``principal`` (who must read its symbol)."""
        if not _ALERT_ID.match(alert_id):
            raise ProtocolError("bad_request", f"alert id: {alert_id[:40]!r} is not one")
        try:
            alert = stored_alert(await self.client.hget(keys.ALERTS_ACTIVE_KEY, alert_id))
        except redis.RedisError as exc:
            raise BusError(f"cannot read the alert: {exc}") from exc
        if alert is None:
            raise ProtocolError("not_found", f"no active alert {alert_id}")
        if not principal.can_read(alert["symbol"]):
            raise ProtocolError("forbidden", f"symbol: this token may not read {alert['symbol']}")
        return await self.acknowledge(alert, principal.name)

    async def acknowledge(self, alert: dict[str, Any], by: str) -> int:
        """Publish the ack event of ``alert`` (once) and mark it acked in the active list; its seq."""
        now = int(time.time() * 1000)
        fields = {
            "symbol": alert["symbol"],
            "ts": now,
            "alert_id": alert["alert_id"],
            "rule": str(alert.get("rule", "?"))[:48] or "?",
            "state": "acked",
            "severity": alert.get("severity")
            if alert.get("severity") in ("info", "warning", "critical")
            else "info",
            "scope": str(alert.get("scope", "?"))[:128] or "?",
            "message": f"acknowledged by {by}"[:256],
            "value": None,
            "meta": {"by": by[:64]},
        }
        try:
            result = await publish_alert(
                self.client, fields, f"k{alert['alert_id']}", log_maxlen=self.log_maxlen, cluster=self.cluster
            )
            if not result.replayed:
                acked = {**alert, "acked": True, "acked_by": by[:64], "acked_ts": now}
                # Only while it is still active (the evaluator may have resolved it meanwhile).
                if await self.client.hexists(keys.ALERTS_ACTIVE_KEY, alert["alert_id"]):
                    await self.client.hset(keys.ALERTS_ACTIVE_KEY, alert["alert_id"], json.dumps(acked))
        except redis.RedisError as exc:
            raise BusError(f"cannot acknowledge the alert: {exc}") from exc
        return result.first_seq


_METRICS: Final = (
    ("events", "counter", "Events the alert evaluator evaluated (while holding the lease)"),
    ("rejected", "counter", "Log entries the alert evaluator dropped (not valid events)"),
    ("coalesced", "counter", "Weak signals covered by a later one of their bot and strategy (skipped)"),
    ("filled", "counter", "Events the recorder trimmed before the evaluator read them, read back from SQL"),
    ("missed", "counter", "Seqs gone from the log and not in SQL (alerts on them may be missed)"),
    ("bad_logs", "counter", "Times a symbol's log key was not a stream (the symbol left out for 30 s)"),
    ("fired", "counter", "Alerts fired (each published once)"),
    ("resolved", "counter", "Alerts resolved"),
    ("replayed", "counter", "Alert decisions made again after a takeover, found already published"),
    ("delivered", "counter", "Route deliveries (webhook, Telegram) answered 2xx"),
    ("retries", "counter", "Route delivery attempts after a failure"),
    ("dead_letters", "counter", "Route deliveries given up (attempts spent, refused, or queue full)"),
    ("holding", "gauge", "Whether this host's evaluator holds the alert evaluator lease (1) or not (0)"),
    ("active", "gauge", "Firing alerts (as this process last knew, when holding the lease)"),
)


class AlertStats(Protocol):
    """The evaluator of this host (in-process, or the child's last report)."""

    def stats(self) -> dict[str, Any]: ...


def alert_metrics(evaluator: AlertStats) -> list[str]:
    """The alert evaluator's /metrics lines (``signalpush_alert_*``)."""
    stats = evaluator.stats()
    lines: list[str] = []
    for key, kind, text in _METRICS:
        name = f"signalpush_alert_{key}" + ("_total" if kind == "counter" else "")
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {stats.get(key, 0)}"]
    return lines
