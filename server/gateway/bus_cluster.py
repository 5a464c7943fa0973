"""The live feed from a Redis Cluster: one :class:`RedisBus` link per node that owns subscribed channels.

On Redis 7 clusters each symbol's live channel is sharded (SSUBSCRIBE on the master owning
its slot; the publish script uses SPUBLISH). Older clusters broadcast plain pub/sub to
every node, so one link to any node hears everything. When a slot moves (``MOVED``, or
Redis drops a sharded subscription) or a node fails over, the topology is read again,
channels are re-homed, and the gateway resyncs every symbol from its log, so nothing is
lost in the move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.crc import key_slot

from publishers import keys
from publishers.backoff import Backoff, Retries
from publishers.connection import ClusterAddress, parse_cluster_url
from server.errors import BusError
from server.gateway.bus import Batch, RedisBus

log = logging.getLogger(__name__)

Node = tuple[str, int]


class ShardedBus:
    """Same interface as :class:`RedisBus`, for ``redis+cluster://`` URLs."""

    def __init__(
        self,
        url: str,
        *,
        on_batch: Callable[[Batch], Awaitable[None]],
        on_state: Callable[[bool], Awaitable[None]],
        batch_window_s: float = 0.0,
        check_interval_s: float = 0.5,
        dead_after_s: float = 2.0,
    ) -> None:
        self._address: ClusterAddress = parse_cluster_url(url)
        self._on_batch = on_batch
        self._on_state = on_state
        self._batch_window_s = batch_window_s
        self._check_interval_s = check_interval_s
        self._dead_after_s = dead_after_s
        self._slots: list[tuple[int, int, Node]] = []
        self._sharded = True
        self._links: dict[Node, RedisBus] = {}
        self._tasks: dict[Node, asyncio.Task[None]] = {}
        self._down_since: dict[Node, float] = {}
        self._home: dict[str, Node] = {}
        self._moved = asyncio.Event()
        self.up = False
        self.reconnects = 0
        self.last_activity = 0.0

    def __repr__(self) -> str:
        return f"ShardedBus(nodes={len(self._links)}, symbols={len(self._home)}, up={self.up})"

    # -- the RedisBus interface ------------------------------------------------------

    async def subscribe(self, symbol: str, timeout_s: float = 10.0) -> None:
        if not self._slots:
            await self._refresh()
        node = self._owner(symbol)
        self._home[symbol] = node
        await self._link(node).subscribe(symbol, timeout_s)

    def unsubscribe(self, symbol: str) -> None:
        node = self._home.pop(symbol, None)
        if node is not None and node in self._links:
            self._links[node].unsubscribe(symbol)

    async def run(self) -> None:
        retries = Retries(Backoff(first_s=0.1, max_s=5.0))
        while not self._slots:
            try:
                await self._refresh()
            except BusError as exc:
                log.warning("cluster topology unavailable", extra={"error": str(exc)})
                await retries.wait()
        if not self._links:
            self._link(self._owner("_"))  # a link before any symbol, so the gateway sees the bus up
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._moved.wait(), self._check_interval_s)
                if self._moved.is_set() or self._has_dead_link():
                    self._moved.clear()
                    with contextlib.suppress(BusError):
                        await self._rehome()
        finally:
            for task in self._tasks.values():
                task.cancel()

    def is_healthy(self, max_silence_s: float) -> bool:
        links = self._active_links()
        return self.up and all(link.is_healthy(max_silence_s) for link in links)

    # -- topology ----------------------------------------------------------------------

    async def _refresh(self) -> None:
        candidates = list(dict.fromkeys([*self._links, *self._address.nodes]))
        for host, port in candidates:
            client = aioredis.Redis.from_url(
                self._address.node_url(host, port), socket_timeout=2, socket_connect_timeout=2
            )
            try:
                slots = await client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
                info = await client.info("server")
            except (OSError, aioredis.RedisError):
                continue
            finally:
                await client.aclose()
            self._slots = sorted(
                (int(start), int(end), (_text(master[0]) or host, int(master[1])))
                for start, end, master, *_ in slots
            )
            self._sharded = int(str(info.get("redis_version", "0")).split(".")[0]) >= 7
            return
        raise BusError("no cluster node answered CLUSTER SLOTS")

    def _owner(self, symbol: str) -> Node:
        if not self._sharded:
            return self._slots[0][2]  # plain pub/sub reaches every node: one link is enough
        slot = key_slot(keys.live_channel(symbol).encode())
        for start, end, node in self._slots:
            if start <= slot <= end:
                return node
        raise BusError(f"no cluster node owns slot {slot}")

    def _link(self, node: Node) -> RedisBus:
        link = self._links.get(node)
        if link is None:
            link = RedisBus(
                self._address.node_url(*node),
                on_batch=self._on_link_batch,
                on_state=self._state_callback(node),
                batch_window_s=self._batch_window_s,
                sharded=self._sharded,
                on_moved=self._moved.set,
            )
            self._links[node] = link
            self._tasks[node] = asyncio.create_task(link.run(), name=f"signalpush-bus-{node[0]}:{node[1]}")
        return link

    def _active_links(self) -> list[RedisBus]:
        wanted = set(self._home.values()) or set(self._links)
        return [link for node, link in self._links.items() if node in wanted]

    def _has_dead_link(self) -> bool:
        now = time.monotonic()
        return any(
            now - since > self._dead_after_s
            for node, since in self._down_since.items()
            if node in set(self._home.values())
        )

    async def _rehome(self) -> None:
        await self._refresh()
        moved = 0
        for symbol, node in list(self._home.items()):
            owner = self._owner(symbol)
            link = self._links[node]
            healthy = node not in self._down_since and link.is_subscribed(keys.live_channel(symbol))
            if owner == node and healthy:
                continue
            if owner != node:
                self._links[node].unsubscribe(symbol)
                moved += 1
            self._home[symbol] = owner
            try:
                await self._link(owner).subscribe(symbol, timeout_s=2.0)
            except (BusError, TimeoutError):
                self._moved.set()  # the topology is still settling: try again next round
        for node in [n for n in self._links if n not in set(self._home.values()) and n in self._down_since]:
            self._tasks.pop(node).cancel()
            del self._links[node]
            self._down_since.pop(node, None)
        self.reconnects += 1
        log.info("cluster bus re-homed", extra={"moved": moved, "nodes": len(self._links)})
        await self._update_state(resync=True)

    # -- events from links -------------------------------------------------------------

    async def _on_link_batch(self, batch: Batch) -> None:
        self.last_activity = time.monotonic()
        await self._on_batch(batch)

    def _state_callback(self, node: Node) -> Callable[[bool], Awaitable[None]]:
        async def on_state(up: bool) -> None:
            await self._on_link_state(node, up)

        return on_state

    async def _on_link_state(self, node: Node, up: bool) -> None:
        if up:
            self._down_since.pop(node, None)
        else:
            self._down_since.setdefault(node, time.monotonic())
        await self._update_state(resync=up)

    async def _update_state(self, *, resync: bool) -> None:
        links = self._active_links()
        up = bool(links) and all(link.up for link in links)
        if up != self.up or (up and resync):
            self.up = up
            await self._on_state(up)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
