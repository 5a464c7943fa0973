"""Alerts through serve: delivered live to filters with `alert`, replayed with history, listed, acked."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from typing import Any

import pytest

from publishers.events import BotStatus
from publishers.publisher import Publisher
from server.cli.embedded import EmbeddedRedis
from tests.support import async_wait_until
from tests.support.gateway import WsClient, get, serving

pytestmark = pytest.mark.asyncio

RULES = [{"name": "bot-error", "condition": {"type": "status", "in": ["error"]}, "severity": "critical"}]


def post(port: int, target: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", target)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def status(symbol: str, value: str) -> BotStatus:
    return BotStatus(symbol=symbol, ts=int(time.time() * 1000), bot="bot-9", strategy="s", status=value)


async def test_an_alert_is_delivered_listed_acked_everywhere_and_replayed(
    own_redis: EmbeddedRedis, symbol: str, database_url: str
) -> None:
    sections: dict[str, Any] = {
        "alerts": {"rules": RULES, "tick_ms": 50},
        "recorder": {"enabled": False},
        "history": {"workers": 0},
    }
    async with (
        serving(own_redis.url, database_url, **sections) as running,
        Publisher(own_redis.url) as publisher,
    ):
        walls = [await WsClient(running.ws_url).connect() for _ in range(2)]
        subs: dict[int, str] = {}
        for wall in walls:
            reply = await wall.subscribe(symbol, filter={"kinds": ["alert", "bot"]}, history={"minutes": 5})
            subs[id(wall)] = reply["sub"]
        others = await WsClient(running.ws_url).connect()
        other_sub = (await others.subscribe(symbol, filter={"kinds": ["bot"]}))["sub"]

        async def holding() -> bool:
            return "\nsignalpush_alert_holding 1\n" in (await get(running.port, "/metrics")).body.decode()

        await async_wait_until(holding, what="the evaluator child to hold the lease")
        cause = time.monotonic()
        await publisher.publish(status(symbol, "error"))

        def alert_of(client: WsClient, state: str) -> dict[str, Any] | None:
            items = (
                e for e in client.events(subs[id(client)]) if e["kind"] == "alert" and e["state"] == state
            )
            return next(items, None)

        fired = await async_wait_until(lambda: alert_of(walls[0], "firing"), timeout=2, what="the alert live")
        assert time.monotonic() - cause < 2
        assert fired["rule"] == "bot-error" and fired["scope"] == "bot-9"
        listed = (await get(running.port, "/api/alerts")).json()
        assert [a["alert_id"] for a in listed["active"]] == [fired["alert_id"]]

        await walls[1].send({"op": "ack", "ref": "k1", "alert_id": fired["alert_id"]})
        answer = await walls[1].wait_for(lambda f: f.get("ref") == "k1")
        assert answer["op"] == "acked" and answer["alert_id"] == fired["alert_id"]
        await walls[1].send({"op": "ack", "ref": "k2", "alert_id": "0000"})
        assert (await walls[1].wait_for(lambda f: f.get("ref") == "k2"))["code"] == "not_found"
        for wall in walls:
            acked = await async_wait_until(lambda w=wall: alert_of(w, "acked"), what="the ack on every wall")
            assert acked["alert_id"] == fired["alert_id"]
        status_code, body = await asyncio.to_thread(
            post, running.port, f"/api/alerts/{fired['alert_id']}/ack"
        )
        assert status_code == 200 and body["ok"]  # a second ack (over HTTP): answered, nothing written
        assert (await get(running.port, "/api/alerts")).json()["active"][0]["acked"] is True
        assert (await asyncio.to_thread(post, running.port, "/api/alerts/ffff/ack"))[0] == 404
        assert (await get(running.port, f"/api/alerts/{fired['alert_id']}/ack")).status == 400

        # A late wall gets the alert and its ack with the history; a filter without alert never sees one.
        late = await WsClient(running.ws_url).connect()
        await late.subscribe(symbol, filter={"kinds": ["alert"]}, history={"minutes": 5})
        frame = await late.wait_for(lambda f: f["op"] == "history")
        assert frame["data"]["alert"]["state"] == ["firing", "acked"]  # one acked event for two acks
        assert all(e["kind"] == "bot" for e in others.events(other_sub))

        async def fired_metric() -> bool:
            return "\nsignalpush_alert_fired_total 1\n" in (await get(running.port, "/metrics")).body.decode()

        await async_wait_until(fired_metric, what="the evaluator's counters on /metrics")
        for client in (*walls, others, late):
            await client.close()
