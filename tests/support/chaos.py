"""Seeded chaos: steady publishers, churning clients that resume, and process kills.

A :class:`ChaosClient` keeps one subscription alive across disconnects by resuming from
its position, and records every item it got; :func:`expected` gives what it should have.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from server.core.filters import EventFilter, parse_filter

FILTERS: list[dict[str, Any] | None] = [
    None,
    {"bots": ["chaos-1"]},
    {"signal_types": ["sell"]},
    {"min_confidence": 0.5},
    {"kinds": ["trade"]},
    {"kinds": ["signal", "bot"], "strategies": ["s2"]},
]


@dataclass
class ChaosClient:
    name: str
    url: str
    symbol: str
    filter: dict[str, Any] | None
    rng: random.Random
    start: int | None = None
    epoch: str | None = None
    position: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    connects: int = 0
    resets: int = 0

    @property
    def event_filter(self) -> EventFilter:
        return parse_filter(self.filter)

    async def run(self, stop: asyncio.Event, churn: float) -> None:
        """Stay subscribed until ``stop``; drop the connection at random (``churn`` per second)."""
        while not stop.is_set():
            try:
                await self._session(stop, churn)
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidStatus, TimeoutError):
                pass
            if not stop.is_set():
                await asyncio.sleep(self.rng.uniform(0.05, 0.4))

    async def _session(self, stop: asyncio.Event, churn: float) -> None:
        async with connect(self.url, open_timeout=5, close_timeout=1) as ws:
            self.connects += 1
            await ws.recv()  # hello
            request: dict[str, Any] = {"op": "subscribe", "ref": "c", "symbol": self.symbol}
            if self.filter is not None:
                request["filter"] = self.filter
            if self.start is not None and self.epoch is not None:
                request["resume"] = {"epoch": self.epoch, "seq": self.position}
            await ws.send(json.dumps(request))
            leave_at = asyncio.get_running_loop().time() + self.rng.expovariate(churn) if churn else None
            while not stop.is_set():
                timeout = 0.5 if leave_at is None else max(0.01, leave_at - asyncio.get_running_loop().time())
                try:
                    message = await asyncio.wait_for(ws.recv(), min(timeout, 0.5))
                except TimeoutError:
                    if leave_at is not None and asyncio.get_running_loop().time() >= leave_at:
                        return  # a deliberate disconnect
                    continue
                self._apply(json.loads(message))

    def _apply(self, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        if op == "subscribed" and self.start is None:
            self.start = self.position = frame["seq"]
            self.epoch = frame["epoch"]
        elif op == "events":
            if self.epoch is not None and frame["epoch"] != self.epoch:
                self.problems.append(f"epoch changed {self.epoch} -> {frame['epoch']}")
            self.epoch = frame["epoch"]
            if frame["from_seq"] > self.position + 1:
                self.problems.append(f"hole: frame from {frame['from_seq']} after {self.position}")
            for item in frame["items"]:
                if item["seq"] <= self.position:
                    self.problems.append(f"duplicate seq {item['seq']} at position {self.position}")
                else:
                    self.items.append(item)
            self.position = max(self.position, frame["to_seq"])
        elif op in ("reset", "history"):
            self.resets += 1
            self.problems.append(f"unexpected {op}: {frame.get('reason', '')}")
        elif op == "error":
            self.problems.append(f"error {frame}")


def expected(client: ChaosClient, published: list[dict[str, Any]]) -> list[int]:
    flt = client.event_filter
    start = client.start or 0
    return [
        e["seq"] for e in published if e["symbol"] == client.symbol and e["seq"] > start and flt.matches(e)
    ]


async def stop_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
