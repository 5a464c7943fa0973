"""Redis clients made the same way everywhere (timeouts, no hidden retries, RESP2).

A Redis Cluster is addressed as ``redis+cluster://[user:pass@]host:port[,host:port...]``
(``rediss+cluster://`` for TLS): the listed nodes are seeds, the rest is discovered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.cluster as sync_cluster
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

#: Errors that mean "Redis is not reachable right now": retried with backoff.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    # A cluster moving a slot or failing over a node: the same call succeeds shortly after.
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ClusterError,  # "TTL exhausted": redirections ran out while the cluster settled
    redis.exceptions.RedisClusterException,  # slot not covered / no node reachable, mid-failover
    ConnectionError,
    OSError,
)


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True)
class ClusterAddress:
    """The seeds and credentials of a ``redis+cluster://`` URL."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool
    options: dict[str, str]

    def node_url(self, host: str, port: int) -> str:
        """A plain URL for one node (for connections that must talk to a given node)."""
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.password is not None:
            auth = f"{self.username or ''}:{self.password}@"
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{scheme}://{auth}{host}:{port}/0" + (f"?{query}" if query else "")


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterAddress:
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        nodes.append((host or "127.0.0.1", int(port or 6379)))
    credentials = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    username, _, password = credentials.partition(":")
    return ClusterAddress(
        nodes=tuple(nodes),
        username=unquote(username) or None,
        password=unquote(password) if password else None,
        tls=parts.scheme.startswith("rediss"),
        options=dict(parse_qsl(parts.query)),
    )


def _tls_kwargs(address: ClusterAddress) -> dict[str, object]:
    if not address.tls:
        return {}
    options = address.options
    return {
        "ssl": True,
        "ssl_ca_certs": options.get("ssl_ca_certs"),
        "ssl_certfile": options.get("ssl_certfile"),
        "ssl_keyfile": options.get("ssl_keyfile"),
        "ssl_cert_reqs": options.get("ssl_cert_reqs", "required"),
    }


def async_client(
    url: str, *, socket_timeout_s: float = 5.0, name: str = "signalpush", max_connections: int | None = None
) -> aioredis.Redis:
    """An asyncio Redis client whose failures surface at once (callers own the retry).

    For a cluster URL this is a ``RedisCluster``: it answers the same commands we use
    (every command of one call stays in one symbol's slot), so it is typed as a client.
    """
    if is_cluster_url(url):
        address = parse_cluster_url(url)
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            username=address.username,
            password=address.password,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            client_name=name,
            **_tls_kwargs(address),  # type: ignore[arg-type]
        )
        return cast(aioredis.Redis, cluster)
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
        "retry": AsyncRetry(NoBackoff(), 0),
        "client_name": name,
        "health_check_interval": 0,
    }
    if max_connections is not None:
        # A bounded pool that waits for a free connection: redis-py's default pool raises
        # "Too many connections" past its limit, which turns a reconnect storm into errors.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=socket_timeout_s * 4, **options
        )
        pooled: aioredis.Redis = aioredis.Redis.from_pool(pool)
        return pooled
    client: aioredis.Redis = aioredis.Redis.from_url(url, **options)
    return client


def sync_client(url: str, *, socket_timeout_s: float = 5.0, name: str = "signalpush") -> redis.Redis:
    """The blocking twin of :func:`async_client`."""
    if is_cluster_url(url):
        address = parse_cluster_url(url)
        cluster = sync_cluster.RedisCluster(
            startup_nodes=[sync_cluster.ClusterNode(host, port) for host, port in address.nodes],  # type: ignore[no-untyped-call]
            username=address.username,
            password=address.password,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            client_name=name,
            **_tls_kwargs(address),  # type: ignore[arg-type]
        )
        return cast(redis.Redis, cluster)
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
    )
    return client
