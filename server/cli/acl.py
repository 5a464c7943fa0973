"""Redis ACL rules for least-privilege users: publishers, gateways, recorders, and ``serve`` (both).

``signalpush acl`` prints them as ``ACL SETUSER`` commands; the tests apply the same rules.
Each role is a list of grants: commands allowed on some keys and channels. On Redis 7 every
grant becomes its own ACL selector with read (``%R~``) or write (``%W~``) key permissions, so a
command is allowed only on the keys that part uses it on (the publisher may DEL a log but not a
meta hash). Redis 6 has no selectors: its rules are the union (every command on every key of
the role), which is weaker; docs/security.md says what each version can and cannot refuse.

Scripts run with the caller's permissions: whatever the publish and recorder scripts call,
their users may call directly, on the same keys. The grants below are those calls, nothing more.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from publishers import keys

#: Connection set-up every part needs (no keys).
_CONNECTION: Final = ("+ping", "+select", "+client|setname", "+auth", "+hello")
#: Commands that exist from Redis 7 on (sharded pub/sub); left out for older servers.
_REDIS7_ONLY: Final = frozenset(("+spublish", "+ssubscribe", "+sunsubscribe"))
#: What a ``--symbols`` pattern may hold: symbol characters and the glob wildcards ``*`` and ``?``.
_SYMBOL_GLOB: Final = re.compile(r"[A-Za-z0-9._:/*?-]{1,32}")

# Key kinds a grant names; per-symbol kinds are expanded for each symbol pattern.
META, LOG, LIVE, SYMBOLS, BOTS = "meta", "log", "live", "symbols", "bots"
BOT_IDS, BOT_SEQ = "bot_ids", "bot_seq"
DISPLAY_RECORDS, DISPLAY_INDEX, VIEWS, DISPLAY_COMMANDS = (
    "display_records",
    "display_index",
    "views",
    "commands",
)
_PER_SYMBOL: Final = {META: keys.meta_key, LOG: keys.log_key, LIVE: keys.live_channel}
_SHARED: Final = {
    SYMBOLS: keys.SYMBOLS_KEY,
    BOTS: keys.BOTS_KEY,
    BOT_IDS: keys.BOT_IDS_KEY,
    BOT_SEQ: keys.BOT_SEQ_KEY,
    DISPLAY_RECORDS: f"{keys.DISPLAY_PREFIX}*",
    DISPLAY_INDEX: keys.DISPLAYS_KEY,
    VIEWS: keys.VIEWS_KEY,
    DISPLAY_COMMANDS: keys.DISPLAY_COMMANDS_CHANNEL,
}


@dataclass(frozen=True, slots=True)
class Grant:
    """Commands allowed on some keys (read, write or both) and pub/sub channels: one Redis 7 selector."""

    why: str
    commands: tuple[str, ...]
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    read_write: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    #: Only where each grant is its own selector (Redis 7): in Redis 6's flat rules these
    #: commands would reach every key and channel of the role (a gateway could HSET a meta hash).
    selectors_only: bool = False


#: The publish script's calls (publishers/publish.lua), and the bot registry written beside it.
PUBLISHER: Final = (
    # EVALSHA declares every key it is given as read-write; the live channel is passed as a key.
    Grant("run the publish script", ("+evalsha", "+script|load"), read_write=(META, LOG, LIVE, SYMBOLS)),
    Grant("the script's TIME (no keys)", ("+time",)),
    Grant("epoch, seq and dedup marks", ("+hsetnx", "+hget", "+hset", "+hincrby"), read_write=(META,)),
    Grant("append to the log; DEL it when a new epoch starts", ("+xadd", "+del"), write=(LOG,)),
    Grant("the script's check of the log's top id", ("+xinfo|stream", "+xrevrange"), read=(LOG,)),
    Grant("announce on the live channel", ("+publish", "+spublish"), channels=(LIVE,)),
    Grant("register the symbol", ("+sadd",), write=(SYMBOLS,)),
    Grant("the bot registry (outside the script)", ("+hset",), write=(BOTS,)),
    Grant("a new bot's stable id (publishers/registry.py)", ("+hget", "+hsetnx"), read_write=(BOT_IDS,)),
    Grant("the counter bot ids are drawn from", ("+incrby",), read_write=(BOT_SEQ,)),
)

#: What the gateway reads (bus, hole filling, history, /api/symbols); it writes the wall fleet's keys only.
GATEWAY: Final = (
    Grant("transactions of reads (no keys)", ("+multi", "+exec")),
    Grant(
        "read meta and logs",
        ("+hmget", "+hget", "+hgetall", "+exists", "+type", "+xrange", "+xrevrange", "+xlen"),
        read=(META, LOG),
    ),
    Grant("list the symbols", ("+smembers",), read=(SYMBOLS,)),
    Grant(
        "follow the live channels",
        ("+subscribe", "+unsubscribe", "+ssubscribe", "+sunsubscribe"),
        channels=(LIVE,),
    ),
    Grant(
        "the wall fleet: display records and their index, saved views (docs/walls.md)",
        ("+set", "+get", "+zadd", "+zrevrange", "+zremrangebyscore", "+hgetall", "+hset", "+hdel"),
        read_write=(DISPLAY_RECORDS, DISPLAY_INDEX, VIEWS),
        selectors_only=True,
    ),
    Grant(
        "hear commands to walls (every gateway)", ("+subscribe", "+unsubscribe"), channels=(DISPLAY_COMMANDS,)
    ),
    Grant(
        "send commands to walls (POST /api/walls/{id}/command)",
        ("+publish",),
        channels=(DISPLAY_COMMANDS,),
        selectors_only=True,
    ),
)

#: The recorder script's calls (server/history/logops.py) and the recorder's own reads.
RECORDER: Final = (
    Grant("run the recorder script", ("+evalsha", "+script|load"), read_write=(META, LOG)),
    Grant("read the epoch and seq", ("+hget", "+exists", "+type"), read=(META,)),
    Grant("list the symbols", ("+smembers",), read=(SYMBOLS,)),
    Grant("copy the bot registry and ids into SQL", ("+hgetall",), read=(BOTS, BOT_IDS)),
    Grant(
        "consume the logs: the consumer group, acknowledgements, trimming behind commits",
        (
            "+exists",
            "+type",
            "+xread",
            "+xreadgroup",
            "+xautoclaim",
            "+xack",
            "+xpending",
            "+xtrim",
            "+xinfo|groups",
            "+xinfo|consumers",
            "+xgroup|create",
            "+xgroup|delconsumer",
            "+xgroup|setid",
        ),
        read_write=(LOG,),
    ),
)

#: Role -> its grants. ``serve`` is the gateway and its recorder (child process or task) in one user.
ROLES: Final[dict[str, tuple[Grant, ...]]] = {
    "publisher": PUBLISHER,
    "gateway": GATEWAY,
    "recorder": RECORDER,
    "serve": GATEWAY + RECORDER,
}


def check_symbol_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """The patterns, validated: symbol characters and ``*``/``?`` only (no braces, spaces or brackets)."""
    out = tuple(patterns)
    if not out:
        raise ValueError("at least one symbol pattern is needed")
    for pattern in out:
        if not _SYMBOL_GLOB.fullmatch(pattern):
            raise ValueError(f"bad symbol pattern {pattern!r}: use symbol characters, '*' and '?'")
    return out


def _expand(kinds: Iterable[str], symbols: Sequence[str]) -> list[str]:
    names: list[str] = []
    for kind in kinds:
        if kind in _SHARED:
            names.append(_SHARED[kind])
        else:
            names.extend(_PER_SYMBOL[kind](pattern) for pattern in symbols)
    return names


def _selector(grant: Grant, symbols: Sequence[str]) -> str:
    parts = ["resetchannels", *grant.commands]
    parts += [f"%R~{name}" for name in _expand(grant.read, symbols)]
    parts += [f"%W~{name}" for name in _expand(grant.write, symbols)]
    parts += [f"~{name}" for name in _expand(grant.read_write, symbols)]
    parts += [f"&{name}" for name in _expand(grant.channels, symbols)]
    return "(" + " ".join(parts) + ")"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def rules(role: str, *, redis_major: int = 7, symbols: Sequence[str] = ("*",)) -> list[str]:
    """The ACL rules of ``role`` after ``reset`` (key and channel limits included)."""
    grants = ROLES[role]
    symbols = check_symbol_patterns(symbols)
    if role != "publisher" and symbols != ("*",):
        # The gateway and the recorder work on every registered symbol (sp:symbols lists them all).
        raise ValueError(f"symbol patterns limit publishers only; the {role} needs every symbol")
    base = ["resetkeys", "resetchannels", "-@all", *_CONNECTION]
    if redis_major >= 7:
        keyless = [
            c for g in grants if not (g.read or g.write or g.read_write or g.channels) for c in g.commands
        ]
        with_keys = [g for g in grants if g.read or g.write or g.read_write or g.channels]
        return [*base, *_unique(keyless), *_unique(_selector(g, symbols) for g in with_keys)]
    # Redis 6: one set of commands on one set of keys and channels (without the selector-only grants).
    grants = tuple(g for g in grants if not g.selectors_only)
    commands = _unique(c for g in grants for c in g.commands if c not in _REDIS7_ONLY)
    key_names = _unique(n for g in grants for n in _expand(g.read + g.write + g.read_write, symbols))
    channels = _unique(n for g in grants for n in _expand(g.channels, symbols))
    return [*base, *commands, *(f"~{n}" for n in key_names), *(f"&{n}" for n in channels)]


def setuser_command(
    role: str, username: str, password: str, *, redis_major: int = 7, symbols: Sequence[str] = ("*",)
) -> list[str]:
    """The ``ACL SETUSER`` arguments giving ``username`` the rights of ``role`` (on Redis ``redis_major``).

    ``symbols`` (shell-style patterns such as ``BTC*``) limits a publisher's per-symbol keys and channels.
    """
    return [
        "ACL",
        "SETUSER",
        username,
        "reset",
        "on",
        f">{password}",
        *rules(role, redis_major=redis_major, symbols=symbols),
    ]


def render(
    role: str, username: str, password: str, *, redis_major: int = 7, symbols: Sequence[str] = ("*",)
) -> str:
    """One ``ACL SETUSER`` line, quoted so that both a shell (after ``redis-cli``) and redis-cli read it."""
    command = setuser_command(role, username, password, redis_major=redis_major, symbols=symbols)
    return " ".join(shlex.quote(arg) for arg in command)


def user_url(url: str, username: str, password: str) -> str:
    """``url`` (a Redis URL) logging in as ``username`` instead of whoever it named."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    address = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        address = f"{address}:{parts.port}"
    return urlunsplit(
        parts._replace(netloc=f"{quote(username, safe='')}:{quote(password, safe='')}@{address}")
    )
