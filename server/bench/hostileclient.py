"""``bench hostile``'s checked clients: a process of websocket connections, every frame kept and judged.

``python -m server.bench.hostileclient`` reads one JSON command per line on stdin and answers
each with one JSON line (the controller drives it with :class:`~server.bench.procs.JsonChild`):

``connect``  open ``per_symbol`` connections per symbol, each subscribing (no history) to its
             symbol; answers once every one is subscribed (or failed).
``verdict``  :func:`server.bench.honest.judge` over every connection for a window, against the
             honest publishers' record file.
``reopen``   replace the connections the server closed (fresh subscriptions, judged from the
             next window on).
``close``    close everything and exit.

Connections use the bench's raw client (:mod:`server.bench.wsclient`); a few dozen at a few
events per second each, so every frame is decoded in full.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from server.bench.honest import CheckedSub, HonestRecord, judge
from server.bench.wsclient import RawWebSocket, open_websocket


class CheckedClients:
    def __init__(self) -> None:
        #: Every subscription ever opened (a closed one still counts for the windows it was in).
        self.subs: list[CheckedSub] = []
        #: The current connections.
        self.live: list[tuple[CheckedSub, RawWebSocket]] = []
        self.record: HonestRecord | None = None
        self.address: tuple[str, int, str] = ("127.0.0.1", 0, "/ws")
        self.symbols: list[str] = []
        self.per_symbol = 0

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        self.address = (command.get("host", "127.0.0.1"), int(command["port"]), command.get("path", "/ws"))
        self.symbols = list(command["symbols"])
        self.per_symbol = int(command["per_symbol"])
        results = await asyncio.gather(
            *(self._open(symbol) for symbol in self.symbols for _ in range(self.per_symbol))
        )
        errors = [error for error in results if error]
        return {"ok": len(results) - len(errors), "failed": len(errors), "errors": errors[:5]}

    async def _open(self, symbol: str, timeout_s: float = 10.0) -> str:
        sub = CheckedSub(symbol)
        host, port, path = self.address
        try:
            ws = await open_websocket(host, port, path, sub.on_message, sub.on_close, timeout_s)
        except (OSError, TimeoutError, ConnectionError) as exc:
            return f"{type(exc).__name__}: {exc}"
        ws.send_text(json.dumps({"op": "subscribe", "ref": "s", "symbol": symbol}))
        deadline = time.monotonic() + timeout_s
        while sub.subscribed_seq is None:
            if time.monotonic() > deadline or not ws.open:
                ws.abort()
                return f"no subscribed frame on {symbol} (errors: {sub.errors[:2]})"
            await asyncio.sleep(0.01)
        self.subs.append(sub)
        self.live.append((sub, ws))
        return ""

    async def reopen(self) -> dict[str, Any]:
        closed = [(sub, ws) for sub, ws in self.live if not ws.open]
        self.live = [(sub, ws) for sub, ws in self.live if ws.open]
        symbols = [sub.symbol for sub, _ in closed]
        for _, ws in closed:
            ws.abort()
        results = await asyncio.gather(*(self._open(symbol) for symbol in symbols))
        return {"reopened": sum(1 for r in results if not r), "errors": [r for r in results if r][:5]}

    def verdict(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.record is None or self.record.path != Path(command["record"]):
            self.record = HonestRecord(Path(command["record"]))
        self.record.refresh()
        alive_after = command.get("alive_after_ns")
        result = judge(
            self.subs,
            self.record,
            int(command["since_ns"]),
            int(command["until_ns"]),
            alive_after_ns=int(alive_after) if alive_after is not None else None,
        )
        return {**result.to_json(), "open": sum(1 for _, ws in self.live if ws.open)}

    def close(self) -> dict[str, Any]:
        for _, ws in self.live:
            ws.close()
        return {"ok": True}

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command.get("cmd")
        if name == "connect":
            return await self.connect(command)
        if name == "verdict":
            return self.verdict(command)
        if name == "reopen":
            return await self.reopen()
        if name == "close":
            return self.close()
        return {"error": f"unknown command {name!r}"}


async def serve_commands() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    clients = CheckedClients()
    while True:
        line = await reader.readline()
        if not line:
            clients.close()
            return
        command = json.loads(line)
        reply = await clients.handle(command)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if command.get("cmd") == "close":
            await asyncio.sleep(0.05)
            return


def main() -> int:
    asyncio.run(serve_commands())
    return 0


if __name__ == "__main__":
    sys.exit(main())
