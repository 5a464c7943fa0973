"""Redis users made from ``server.cli.acl``'s roles, and the commands Redis refused them (its ACL LOG)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence
from typing import Any

import redis

from server.cli.acl import setuser_command, user_url


def redis_major(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(str(client.info("server")["redis_version"]).split(".")[0])
    finally:
        client.close()


@contextlib.contextmanager
def acl_user(admin_url: str, role: str, *, symbols: Sequence[str] = ("*",)) -> Iterator[tuple[str, str]]:
    """A fresh user with ``role``'s rules for this server's version: yields (its name, its URL)."""
    admin = redis.Redis.from_url(admin_url)
    name, password = f"sp-test-{role}-{secrets.token_hex(4)}", secrets.token_hex(12)
    major = int(str(admin.info("server")["redis_version"]).split(".")[0])
    admin.execute_command(*setuser_command(role, name, password, redis_major=major, symbols=symbols))
    try:
        yield name, user_url(admin_url, name, password)
    finally:
        admin.execute_command("ACL", "DELUSER", name)
        admin.close()


def refusals(admin_url: str, username: str) -> list[str]:
    """What Redis refused ``username`` so far ("command <name>", "key <name>", ...), from ACL LOG."""
    admin = redis.Redis.from_url(admin_url)
    try:
        entries: list[dict[str, Any]] = admin.acl_log(count=128)
    finally:
        admin.close()
    out = []
    for entry in entries:
        if _text(entry.get("username")) != username:
            continue
        what = f"{_text(entry.get('reason'))} {_text(entry.get('object'))} ({_text(entry.get('context'))})"
        # redis-py's optional handshake (CLIENT SETINFO, CLIENT MAINT_NOTIFICATIONS): Redis 6.2
        # refuses those subcommands by ACL (7 answers "unknown subcommand"), redis-py ignores the
        # error. A refused CLIENT SETNAME, the one we grant, fails the connection instead.
        if what != "command client (toplevel)":
            out.append(what)
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
