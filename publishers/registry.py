"""The bot registry in Redis: a stable integer id per bot, and each bot's last status.

* ``sp:bot_ids`` (hash bot name -> id): an id is given once, when a bot first publishes,
  from the counter ``sp:bot_seq`` (HGET, else INCR + HSETNX: two publishers racing for a
  new bot agree on the winner's id; the loser's number is left unused). Every recorder
  copies the ids into the SQL ``bots`` table, so ``bot_ids=[1, 2, 5]`` means the same bots in
  every database, on the index page and on ``/api/bots``.
* ``sp:bots`` (hash bot name -> JSON): the last status a bot published, with its id and the
  symbols it published on, also when it had no symbol yet (a bot that says ``active`` when it
  starts, before its first signal, is known as active at once).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Protocol

from publishers import keys

#: Largest id accepted from Redis (the SQL column is a 32-bit integer).
MAX_BOT_ID = 2**31 - 1


class RegistryTransport(Protocol):
    async def hget(self, key: str, field: str) -> object: ...

    async def hsetnx(self, key: str, field: str, value: str) -> bool: ...

    async def incr(self, key: str) -> int: ...


def parse_bot_id(value: object) -> int | None:
    """An id read from Redis, or None when it is not a positive 32-bit integer (hostile input)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str) and value.isdigit() and len(value) <= 10:
        number = int(value)
        return number if 0 < number <= MAX_BOT_ID else None
    return None


async def assign_bot_id(transport: RegistryTransport, bot: str) -> int | None:
    """The bot's id, given now if it has none (None if the registry holds garbage for it)."""
    found = await transport.hget(keys.BOT_IDS_KEY, bot)
    if found is None:
        candidate = await transport.incr(keys.BOT_SEQ_KEY)
        if await transport.hsetnx(keys.BOT_IDS_KEY, bot, str(candidate)):
            return parse_bot_id(str(candidate))
        found = await transport.hget(keys.BOT_IDS_KEY, bot)
    return parse_bot_id(found)


def registry_entry(
    *,
    bot: str,
    strategy: str,
    status: str,
    equity: float | None,
    ts: int,
    symbols: Iterable[str],
    bot_id: int | None,
) -> str:
    """The JSON kept in ``sp:bots`` for a bot's last status."""
    return json.dumps(
        {
            "id": bot_id,
            "bot": bot,
            "strategy": strategy,
            "status": status,
            "equity": equity,
            "ts": ts,
            "symbols": sorted(set(symbols)),
        },
        separators=(",", ":"),
    )
