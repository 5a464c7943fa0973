"""Publisher processes for the bench: signal events through the project's publish script.

Run as ``python -m server.bench.pubload ...`` (one process per share of the symbols).
Each event is a ~200-byte signal whose ``meta.t`` is the wall-clock time (ns) it was
built, so load clients measure publish→receive latency. Modes:

* ``saturate`` — as fast as possible in pipelined script calls of ``--per-call`` events,
  optionally flow-controlled: a symbol is published at most ``--window`` seqs ahead of
  the slowest load client (the load processes write their positions to a Redis hash),
  so the backlog stays bounded and the rate is what the server sustains.
* ``rate`` — a fixed total rate, one event per script call, on an absolute schedule.

Prints one JSON line with what it did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio as aioredis

from publishers.connection import async_client
from publishers.script import PUBLISH_SCRIPT, PUBLISH_SHA, build_call, new_publisher_id, parse_result

BOTS: Final = ("bot-0", "bot-1", "bot-2", "bot-3")
STRATEGIES: Final = ("momentum", "ema_crossover", "mean_reversion")
SIGNAL_TYPES: Final = ("buy", "sell", "hold")
#: Events are padded (in meta) to about this many bytes, seq included.
EVENT_BYTES: Final = 200
LOG_MAXLEN: Final = 200_000


def signal_body(symbol: str, index: int, t_ns: int, pad: str) -> str:
    """Body (JSON without '{' and seq) of the ``index``-th bench signal; confidence always >= 0.5.

    Key order and number formats are those of ``publishers.events.Signal.body()`` (tested).
    """
    price = 100.0 + (index % 1000) / 8
    confidence = 0.5 + (index * 37 % 50) / 100
    return (
        f'"kind":"signal","symbol":"{symbol}","ts":{t_ns // 1_000_000},"bot":"{BOTS[index % 4]}",'
        f'"strategy":"{STRATEGIES[index % 3]}","type":"{SIGNAL_TYPES[index % 3]}","price":{price},'
        f'"confidence":{confidence},"meta":{{"t":{t_ns},"pad":"{pad}"}}}}'
    )


def padding_for(symbol: str) -> str:
    """Padding that brings an event of ``symbol`` (with a 6-digit seq) to about EVENT_BYTES."""
    sample = '{"seq":100000,' + signal_body(symbol, 1, time.time_ns(), "")
    return "x" * max(0, EVENT_BYTES - len(sample))


def bench_filters(count: int) -> list[dict[str, Any]]:
    """``count`` distinct filters on bots, strategies and min_confidence that every bench event passes.

    Deliveries then equal the unfiltered case, so the difference isolates the per-group cost
    (each filter is still evaluated on every event).
    """
    return [
        {
            "bots": [*BOTS, f"spare-{i}"],
            "strategies": list(STRATEGIES),
            "min_confidence": round(0.02 * (i % 25), 2),
        }
        for i in range(count)
    ]


class Flow:
    """Reads the load processes' positions (hash field ``<symbol>|<process>``) from Redis.

    The load processes report before publishing starts, so every reader of a symbol is in.
    """

    def __init__(self, client: aioredis.Redis, key: str) -> None:
        self.client, self.key = client, key

    async def positions(self, symbols: Sequence[str]) -> dict[str, int]:
        raw: dict[Any, Any] = await self.client.hgetall(self.key)
        lowest: dict[str, int] = {}
        for field, value in raw.items():
            symbol = (field.decode() if isinstance(field, bytes) else str(field)).split("|", 1)[0]
            position = int(value)
            lowest[symbol] = min(lowest.get(symbol, position), position)
        return {s: lowest.get(s, 0) for s in symbols}


class PublishLoad:
    def __init__(
        self, client: aioredis.Redis, symbols: Sequence[str], per_call: int, register: bool = False
    ) -> None:
        self.client = client
        self.register = register
        self.symbols = list(symbols)
        self.per_call = per_call
        self.publisher_id = new_publisher_id()
        self.calls = 0
        self.events = 0
        self.next_index = dict.fromkeys(self.symbols, 0)
        self.last_seq = dict.fromkeys(self.symbols, 0)
        self.pads = {s: padding_for(s) for s in self.symbols}

    async def prepare(self) -> None:
        await self.client.script_load(PUBLISH_SCRIPT)

    async def send(self, counts: dict[str, int]) -> None:
        """One pipeline: for each symbol, one script call with ``counts[symbol]`` events."""
        pipe = self.client.pipeline(transaction=False)
        sent = 0
        for symbol, count in counts.items():
            if count <= 0:
                continue
            start = self.next_index[symbol]
            pad = self.pads[symbol]
            now = time.time_ns()
            bodies = [signal_body(symbol, start + i, now, pad) for i in range(count)]
            self.next_index[symbol] = start + count
            self.calls += 1
            # In the symbol registry when the server under test records (its default): the
            # recorder records them as it does users' symbols.
            call = build_call(
                symbol,
                bodies,
                publisher_id=self.publisher_id,
                call_number=self.calls,
                log_maxlen=LOG_MAXLEN,
                register_symbol=self.register,
            )
            pipe.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
            sent += count
        if not sent:
            return
        replies = iter(await pipe.execute())
        for symbol, count in counts.items():
            if count > 0:
                result = parse_result(next(replies))
                self.events += result.last_seq - result.first_seq + 1
                self.last_seq[symbol] = result.last_seq


async def saturate(
    load: PublishLoad, seconds: float, window: int, flow: Flow | None, max_events: int = 0
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if max_events:
            counts = {s: min(load.per_call, max_events - load.next_index[s]) for s in load.symbols}
            if not any(c > 0 for c in counts.values()):
                return
            await load.send(counts)
            continue
        if flow is None:
            await load.send(dict.fromkeys(load.symbols, load.per_call))
            continue
        positions = await flow.positions(load.symbols)
        counts = {s: min(load.per_call, positions[s] + window - load.last_seq[s]) for s in load.symbols}
        if any(c > 0 for c in counts.values()):
            await load.send(counts)
        else:
            await asyncio.sleep(0.002)


async def fixed_rate(load: PublishLoad, seconds: float, rate: float) -> None:
    start = time.monotonic()
    total = int(seconds * rate)
    for k in range(total):
        due = start + k / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        symbol = load.symbols[k % len(load.symbols)]
        await load.send({symbol: 1})


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    client = async_client(args.redis_url, socket_timeout_s=30.0, name="signalpush-bench-publisher")
    try:
        load = PublishLoad(client, args.symbols.split(","), args.per_call, args.register)
        await load.prepare()
        flow = Flow(client, args.flow_key) if args.flow_key else None
        if args.start_at:
            await asyncio.sleep(max(0.0, args.start_at - time.time()))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        began_ns = time.time_ns()
        began = time.monotonic()
        if args.mode == "saturate":
            await saturate(load, args.seconds, args.window, flow, args.max_events)
        else:
            await fixed_rate(load, args.seconds, args.rate)
        elapsed = time.monotonic() - began
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        return {
            "events": load.events,
            "calls": load.calls,
            "elapsed_s": elapsed,
            "began_ns": began_ns,
            "cpu_s": cpu,
            "last_seq": load.last_seq,
        }
    finally:
        await client.aclose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server.bench.pubload", description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--symbols", required=True, help="comma-separated symbols this process publishes")
    parser.add_argument("--mode", choices=["saturate", "rate"], required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s of this process (rate mode)")
    parser.add_argument("--per-call", type=int, default=20, help="events per script call (saturate mode)")
    parser.add_argument("--window", type=int, default=500, help="seqs a symbol may run ahead of its readers")
    parser.add_argument(
        "--flow-key", default="", help="Redis hash of reader positions (empty: no flow control)"
    )
    parser.add_argument("--max-events", type=int, default=0, help="saturate: stop after this many per symbol")
    parser.add_argument(
        "--register", action="store_true", help="register the symbols (sp:symbols): recorders record them"
    )
    parser.add_argument("--start-at", type=float, default=0.0, help="wall-clock time (s) to begin at")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = asyncio.run(main_async(args))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
