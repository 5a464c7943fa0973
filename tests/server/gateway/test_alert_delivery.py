"""Routes against a local HTTP stub: webhook and Telegram delivery, retry on 500, give-up."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from server.alerts.rules import parse_alerts
from server.gateway.alert_delivery import Deliveries
from server.settings import AlertSettings
from tests.support import async_wait_until

pytestmark = pytest.mark.asyncio

ALERT = {
    "kind": "alert",
    "seq": 4,
    "symbol": "BTCUSDT",
    "ts": 1,
    "alert_id": "abc123",
    "rule": "dd",
    "state": "firing",
    "severity": "critical",
    "scope": "bot-1",
    "message": "drawdown",
    "value": 5.0,
}


class Stub:
    """Answers each path with the statuses queued for it (then 200), and keeps what it got."""

    def __init__(self) -> None:
        self.statuses: dict[str, list[int]] = {}
        self.received: list[tuple[str, dict[str, Any]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.received.append((self.path, body))
                queued = stub.statuses.get(self.path, [])
                self.send_response(queued.pop(0) if queued else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for path, _ in self.received]


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


async def deliver(
    stub: Stub, routes: list[dict[str, Any]], alert: dict[str, Any], attempts: int = 3
) -> Deliveries:
    config = parse_alerts(
        [
            {
                "name": "dd",
                "condition": {"type": "loss_streak", "count": 1},
                "routes": [r["name"] for r in routes],
            }
        ],
        routes,
    )
    settings = AlertSettings(delivery_attempts=attempts, delivery_backoff_s=0.01, delivery_timeout_s=2)
    deliveries = Deliveries(config, settings)
    task = asyncio.create_task(deliveries.run())
    try:
        deliveries.offer({**alert, "meta": {"routes": [r["name"] for r in routes]}})
        await async_wait_until(lambda: not deliveries.pending(), what="the deliveries to finish")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return deliveries


async def test_webhook_and_telegram_are_delivered(stub: Stub) -> None:
    routes = [
        {"name": "hook", "type": "webhook", "url": f"{stub.url}/hook"},
        {"name": "slack", "type": "webhook", "url": f"{stub.url}/slack", "template": "slack"},
        {"name": "tg", "type": "telegram", "token": "123:abc", "chat_id": "-42", "base_url": stub.url},
    ]
    deliveries = await deliver(stub, routes, ALERT)
    assert deliveries.counters == {"delivered": 3, "retries": 0, "dead_letters": 0}
    got = dict(stub.received)
    assert got["/hook"]["alert"]["alert_id"] == "abc123"
    assert set(got["/slack"]) == {"text"} and "dd" in got["/slack"]["text"]
    assert got["/bot123:abc/sendMessage"]["chat_id"] == "-42"


async def test_a_500_is_retried_then_delivered(stub: Stub) -> None:
    stub.statuses["/hook"] = [500, 503]
    deliveries = await deliver(stub, [{"name": "hook", "type": "webhook", "url": f"{stub.url}/hook"}], ALERT)
    assert deliveries.counters == {"delivered": 1, "retries": 2, "dead_letters": 0}
    assert stub.paths() == ["/hook"] * 3


async def test_it_gives_up_after_its_attempts_and_at_once_on_a_400(stub: Stub) -> None:
    stub.statuses["/down"] = [500] * 10
    stub.statuses["/refuses"] = [400]
    routes = [
        {"name": "down", "type": "webhook", "url": f"{stub.url}/down"},
        {"name": "refuses", "type": "webhook", "url": f"{stub.url}/refuses"},
    ]
    deliveries = await deliver(stub, routes, ALERT, attempts=3)
    assert deliveries.counters["dead_letters"] == 2 and deliveries.counters["delivered"] == 0
    assert stub.paths().count("/down") == 3 and stub.paths().count("/refuses") == 1


async def test_quiet_hours_and_unwanted_resolutions_send_nothing(stub: Stub) -> None:
    routes = [{"name": "hook", "type": "webhook", "url": f"{stub.url}/hook", "send_resolved": False}]
    await deliver(stub, routes, {**ALERT, "state": "resolved"})
    config = parse_alerts([], routes)
    deliveries = Deliveries(config, AlertSettings())
    deliveries.offer({**ALERT, "meta": {"routes": ["hook"]}}, quiet=True)
    assert stub.received == [] and deliveries.pending() == []
