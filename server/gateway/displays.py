"""The wall fleet's I/O (docs/walls.md): display records in Redis, commands over pub/sub, saved views.

Whichever gateway holds a wall's socket writes that display's record (a string with an expiry,
indexed in a sorted set), so any gateway lists the whole fleet. A command is published on one
channel; every gateway hears it and the one holding the display sends it down that socket.
Everything read back from Redis is parsed by server/core/displays.py; a bad item is dropped
and counted, never shown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
from redis import RedisError
from websockets.asyncio.server import ServerConnection

from publishers import keys
from publishers.connection import is_cluster_url, parse_cluster_url
from server.core.displays import (
    Command,
    DisplayRecord,
    DisplayReport,
    HealthRules,
    check_name,
    health,
    make_record,
    parse_record,
    parse_stored_view,
    parse_view,
)
from server.errors import BusError, ProtocolError
from server.logs import RateLimitedLog
from server.settings import WallsSettings

log = logging.getLogger(__name__)
#: A display's record is written at most this often (a wall sending faster costs no more Redis).
MIN_WRITE_INTERVAL_S = 1.0
#: Most saved views listed.
MAX_VIEWS = 256


def _now_ms() -> int:
    return int(time.time() * 1000)


def command_channel_url(redis_url: str) -> str:
    """A plain Redis URL for the command channel (a cluster's classic pub/sub reaches every node)."""
    if not is_cluster_url(redis_url):
        return redis_url
    address = parse_cluster_url(redis_url)
    host, port = address.nodes[0]
    auth = ""
    if address.password is not None:
        auth = f"{address.username or ''}:{address.password}@"
    return f"{'rediss' if address.tls else 'redis'}://{auth}{host}:{port}/0"


class DisplayHub:
    """The displays this gateway holds, their records in Redis, and commands addressed to them."""

    def __init__(
        self,
        redis: aioredis.Redis,
        redis_url: str,
        settings: WallsSettings,
        instance: str,
        send: Callable[[ServerConnection, str], None],
    ) -> None:
        self.redis = redis
        self.redis_url = redis_url
        self.settings = settings
        self.instance = instance
        self.rules = HealthRules(settings.stale_s, settings.dead_s, settings.min_fps)
        self._send = send
        #: display id -> the socket of the wall showing it here; and back.
        self.sockets: dict[str, ServerConnection] = {}
        self.displays: dict[ServerConnection, str] = {}
        self._written: dict[str, float] = {}
        self.heartbeats = 0
        self.writes = 0
        self.commands_delivered = 0
        #: Subscribed to the command channel now.
        self.listening = False
        self.dropped: dict[str, int] = {}
        self._throttle = RateLimitedLog(log)

    def __repr__(self) -> str:
        return f"DisplayHub(displays={len(self.sockets)}, heartbeats={self.heartbeats})"

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self._throttle.warning(
            f"display {reason}", "wall fleet item dropped", reason=reason, error=detail[:200]
        )

    # -- heartbeats ---------------------------------------------------------------------------

    async def report(self, ws: ServerConnection, principal: str, report: DisplayReport) -> None:
        """A heartbeat on ``ws``: remember which socket shows the display, store its record."""
        display = report.display
        previous = self.displays.get(ws)
        if previous is not None and previous != display:
            # One display per connection: a client cycling ids would grow Redis and this map.
            raise ProtocolError("bad_request", f"display: this connection reports display {previous}")
        self.heartbeats += 1
        self.displays[ws] = display
        self.sockets[display] = ws
        now = time.monotonic()
        if now - self._written.get(display, -MIN_WRITE_INTERVAL_S) < MIN_WRITE_INTERVAL_S:
            return
        self._written[display] = now
        record = make_record(report, gateway=self.instance, principal=principal, now_ms=_now_ms())
        await self._store(record)

    async def mark(self, ws: ServerConnection, status: str, principal: str) -> None:
        """The display on ``ws`` cannot draw for a reason the gateway knows (its token expired)."""
        display = self.displays.get(ws)
        if display is not None:
            await self.mark_display(display, status, principal)

    async def mark_display(self, display: str, status: str, principal: str) -> None:
        """Set the status of a display already listed (a refused reconnect: its token expired);
        a display never heard from is not created, so this cannot fill Redis."""
        try:
            raw = await self.redis.get(keys.display_key(display))
        except RedisError as exc:
            self._drop("redis", str(exc))
            return
        if raw is None:
            return
        try:
            record = parse_record(cast(bytes, raw))
        except ProtocolError as exc:
            self._drop("bad_record", exc.message)
            return
        marked = make_record(record.report, gateway="", principal=principal, now_ms=_now_ms(), status=status)
        await self._store(marked)

    async def _store(self, record: DisplayRecord) -> None:
        display = record.report.display
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(keys.display_key(display), record.encode(), ex=int(self.settings.forget_after_s))
                pipe.zadd(keys.DISPLAYS_KEY, {display: record.received_ms})
                await pipe.execute()
            self.writes += 1
        except RedisError as exc:
            self._drop("redis", str(exc))

    def forget(self, ws: ServerConnection) -> None:
        """The socket closed: this gateway no longer holds its display (the record goes stale)."""
        display = self.displays.pop(ws, None)
        if display is not None and self.sockets.get(display) is ws:
            del self.sockets[display]
            self._written.pop(display, None)

    # -- listing ------------------------------------------------------------------------------

    async def records(self) -> list[DisplayRecord]:
        """Every display heard from within ``forget_after_s`` (across gateways), newest first."""
        now = _now_ms()
        oldest = now - int(self.settings.forget_after_s * 1000)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(keys.DISPLAYS_KEY, "-inf", oldest)
                pipe.zrevrange(keys.DISPLAYS_KEY, 0, self.settings.max_displays - 1)
                _, names = await pipe.execute()
            ids = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
            ids = [i for i in ids if _valid_name(i)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for display in ids:
                    pipe.get(keys.display_key(display))
                values = await pipe.execute()
        except RedisError as exc:
            raise BusError(f"cannot read the displays ({keys.DISPLAYS_KEY}): {exc}") from exc
        out = []
        for display, value in zip(ids, values, strict=True):
            if value is None:
                continue  # expired between the two reads
            try:
                record = parse_record(value)
            except ProtocolError as exc:
                self._drop("bad_record", exc.message)
                continue
            if record.report.display != display:
                self._drop("bad_record", f"{display}: the record names another display")
                continue
            out.append(record)
        return out

    def describe(self, record: DisplayRecord, now_ms: int) -> dict[str, Any]:
        """A record as ``/api/walls`` lists it: with its health and the age of its last heartbeat."""
        return {
            **record.to_json(),
            "health": health(record, now_ms, self.rules),
            "heartbeat_age_s": round(max(0, now_ms - record.received_ms) / 1000, 1),
        }

    async def listing(self) -> dict[str, Any]:
        now = _now_ms()
        records = await self.records()
        return {
            "time": now,
            "stale_s": self.settings.stale_s,
            "dead_s": self.settings.dead_s,
            "displays": [self.describe(r, now) for r in records],
        }

    # -- commands -----------------------------------------------------------------------------

    async def command(self, display: str, command: Command) -> dict[str, Any]:
        """Publish ``command`` to whichever gateway holds ``display``; ProtocolError(not_found) if unknown."""
        check_name(display, "display")
        try:
            raw = await self.redis.get(keys.display_key(display))
        except RedisError as exc:
            raise BusError(f"cannot read display {display}: {exc}") from exc
        if raw is None:
            raise ProtocolError("not_found", f"no display {display} (it never sent a heartbeat, or expired)")
        try:
            record = parse_record(cast(bytes, raw))
        except ProtocolError as exc:
            self._drop("bad_record", exc.message)
            raise ProtocolError("not_found", f"display {display}: its record is unreadable") from None
        command_id = secrets.token_hex(6)
        try:
            receivers = await self.redis.publish(
                keys.DISPLAY_COMMANDS_CHANNEL, f"{display} {command.frame(command_id)}"
            )
        except RedisError as exc:
            raise BusError(f"cannot publish the command: {exc}") from exc
        now = _now_ms()
        return {
            "display": display,
            "id": command_id,
            "action": command.action,
            "params": dict(command.params),
            "gateway": record.gateway,
            "health": health(record, now, self.rules),
            "gateways_listening": int(receivers),
        }

    def deliver(self, message: bytes | str) -> bool:
        """A message of the command channel: send its frame to the display if this gateway holds it."""
        text = message.decode(errors="replace") if isinstance(message, bytes) else message
        display, _, frame = text.partition(" ")
        ws = self.sockets.get(display)
        if ws is None or not frame.startswith('{"op":"command"'):
            return False
        self._send(ws, frame)
        self.commands_delivered += 1
        return True

    async def run(self) -> None:
        """Follow the command channel until cancelled. Redis going away is not this task failing
        (/healthz reports the bus): it reconnects after a wait of 0.5 s doubling to 10 s."""
        wait_s = 0.5
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                self.listening = False
                self._throttle.warning("commands down", "wall command channel lost", error=str(exc)[:200])
            await asyncio.sleep(wait_s)
            wait_s = min(10.0, wait_s * 2)

    async def _listen(self) -> None:
        client: aioredis.Redis = aioredis.Redis.from_url(
            command_channel_url(self.redis_url), socket_timeout=None, client_name="signalpush-walls"
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.DISPLAY_COMMANDS_CHANNEL)
            self.listening = True
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is not None and message.get("type") == "message":
                    self.deliver(message["data"])
        finally:
            self.listening = False
            await pubsub.aclose()
            await client.aclose()

    # -- saved views --------------------------------------------------------------------------

    async def views(self) -> dict[str, dict[str, str]]:
        try:
            raw = cast(dict[bytes, bytes], await self.redis.hgetall(keys.VIEWS_KEY))
        except RedisError as exc:
            raise BusError(f"cannot read the saved views ({keys.VIEWS_KEY}): {exc}") from exc
        out: dict[str, dict[str, str]] = {}
        for name, value in raw.items():
            if len(out) >= MAX_VIEWS:
                break
            try:
                view_name, params = parse_stored_view(name, value)
            except (ProtocolError, UnicodeDecodeError) as exc:
                self._drop("bad_view", str(exc))
                continue
            out[view_name] = params
        return dict(sorted(out.items()))

    async def save_view(self, name: str, params: dict[str, str]) -> dict[str, str]:
        view_name, checked = parse_view(name, params)
        try:
            await self.redis.hset(keys.VIEWS_KEY, view_name, json.dumps(checked, separators=(",", ":")))
        except RedisError as exc:
            raise BusError(f"cannot save the view: {exc}") from exc
        return checked

    async def delete_view(self, name: str) -> bool:
        check_name(name, "name")
        try:
            return bool(await self.redis.hdel(keys.VIEWS_KEY, name))
        except RedisError as exc:
            raise BusError(f"cannot delete the view: {exc}") from exc


def _valid_name(value: str) -> bool:
    try:
        check_name(value, "display")
    except ProtocolError:
        return False
    return True
