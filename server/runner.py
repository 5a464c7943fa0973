"""Compose the running parts: embedded Redis, gateway, recorder, demo bots."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from publishers.config import Settings
from publishers.demo import run_demo_bots
from server.embedded import EmbeddedRedis

log = logging.getLogger("signalpush")


@contextlib.asynccontextmanager
async def redis_for(settings: Settings) -> AsyncIterator[str]:
    """Yield the Redis URL to use, starting the embedded server when none is configured."""
    if not settings.redis.is_embedded:
        yield settings.redis.effective_url
        return
    server = EmbeddedRedis(
        host=settings.redis.embedded_host,
        port=settings.redis.embedded_port,
        data_dir=settings.redis.embedded_dir,
    )
    server.spawn()  # in this (main) thread: the parent-death signal is tied to it
    await asyncio.to_thread(server.wait_ready)
    log.info("embedded redis ready", extra={"url": server.url, "dir": str(server.data_dir)})
    try:
        yield server.url
    finally:
        server.stop()


async def run_demo(settings: Settings) -> int:
    """Everything on one machine: embedded Redis and the demo bots."""
    async with redis_for(settings) as url:
        demo = settings.demo
        print(f"signalpush demo: Redis at {url}; demo bots publishing {', '.join(demo.symbols)}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        await run_demo_bots(
            url,
            symbols=demo.symbols,
            timeframe=demo.timeframe,
            tick_s=demo.tick_s,
            seed_hours=demo.seed_hours,
            seed=demo.seed,
        )
    return 0
