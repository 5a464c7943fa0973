"""Redis ACL rules for least-privilege users: one for publishers, one for gateways, one for recorders.

``signalpush acl`` prints them as ``ACL SETUSER`` commands; the tests apply the same rules.
Every rule is limited to signalpush's keys (``~sp:*``) and channels (``&sp:*``).
"""

from __future__ import annotations

from typing import Final

_COMMON: Final = ("+ping", "+select", "+client|setname", "+auth", "+hello")
#: Commands that exist from Redis 7 on (sharded pub/sub); left out for older servers.
_REDIS7_ONLY: Final = frozenset(("+spublish", "+ssubscribe", "+sunsubscribe"))

#: Role -> ACL rules (after ``reset``-style key and channel limits).
ROLES: Final[dict[str, tuple[str, ...]]] = {
    # Runs the publish script and what the script itself calls (Redis checks those too),
    # plus the bot registry. It cannot read the log or subscribe.
    "publisher": (
        *_COMMON,
        "+evalsha",
        "+eval",
        "+script|load",
        "+hsetnx",
        "+hget",
        "+hincrby",
        "+hset",
        "+del",
        "+xadd",
        "+publish",
        "+spublish",
        "+sadd",
        "+time",
    ),
    # Reads meta, logs, the registries, and subscribes; it cannot write anything.
    "gateway": (
        *_COMMON,
        "+subscribe",
        "+unsubscribe",
        "+ssubscribe",
        "+sunsubscribe",
        "+multi",
        "+exec",
        "+hmget",
        "+hget",
        "+hgetall",
        "+xrange",
        "+xrevrange",
        "+xlen",
        "+smembers",
        "+exists",
    ),
    # Reads the logs through the consumer group, acknowledges, trims behind commits.
    "recorder": (
        *_COMMON,
        "+evalsha",
        "+eval",
        "+script|load",
        "+multi",
        "+exec",
        "+hmget",
        "+hget",
        "+hgetall",
        "+smembers",
        "+exists",
        "+xrange",
        "+xrevrange",
        "+xlen",
        "+xreadgroup",
        "+xack",
        "+xautoclaim",
        "+xclaim",
        "+xpending",
        "+xtrim",
        "+xgroup|create",
        "+xgroup|createconsumer",
        "+xgroup|delconsumer",
        "+xgroup|setid",
        "+xinfo|groups",
        "+xinfo|stream",
        "+xinfo|consumers",
        "+hset",
        "+hdel",
        "+hincrby",
    ),
}


def setuser_command(role: str, username: str, password: str, *, redis_major: int = 7) -> list[str]:
    """The ``ACL SETUSER`` arguments giving ``username`` the rights of ``role`` (on Redis ``redis_major``)."""
    rules = [rule for rule in ROLES[role] if redis_major >= 7 or rule not in _REDIS7_ONLY]
    return [
        "ACL",
        "SETUSER",
        username,
        "reset",
        "on",
        f">{password}",
        "resetkeys",
        "~sp:*",
        "resetchannels",
        "&sp:*",
        "-@all",
        *rules,
    ]


def render(role: str, username: str, password: str, *, redis_major: int = 7) -> str:
    """One ``ACL SETUSER`` line for redis-cli (quote it in a shell: it holds ``>`` and ``|``)."""
    return " ".join(setuser_command(role, username, password, redis_major=redis_major))
