"""Redis clients made the same way everywhere (timeouts, no hidden retries, RESP2)."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from publishers.config import load_settings

#: Errors that mean "Redis is not reachable right now": retried with backoff.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    ConnectionError,
    OSError,
)


def resolve_url(url: str | None) -> str:
    """``url``, else ``$SIGNALPUSH_REDIS_URL``, else config's ``redis.url``, else the embedded address."""
    if url:
        return url
    return load_settings().redis.effective_url


def async_client(url: str, *, socket_timeout_s: float = 5.0, name: str = "signalpush") -> aioredis.Redis:
    """An asyncio Redis client whose failures surface at once (callers own the retry)."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        retry=AsyncRetry(NoBackoff(), 0),
        client_name=name,
        health_check_interval=0,
    )
    return client


def sync_client(url: str, *, socket_timeout_s: float = 5.0, name: str = "signalpush") -> redis.Redis:
    """The blocking twin of :func:`async_client`."""
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
    )
    return client
