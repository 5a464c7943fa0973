"""What an attack of ``bench hostile`` is: a name, what it does for a few seconds, how its traces are
removed, and what it saw (an outcome note and the expectations it found broken)."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.bench.procs import JsonChild


@dataclass
class AttackContext:
    """What every attack may use."""

    #: The bench's own Redis connection (admin), and one logging in as a ``publisher`` ACL user:
    #: the credential a bot holds, so Redis-side attacks run with it first.
    redis_url: str
    attacker_url: str
    host: str
    port: int
    #: The honest symbols, and the symbol whose 30 days of history the pulls ask for.
    symbols: list[str]
    history_symbol: str
    seconds: float
    #: A token the gateway accepts (``--auth``), else None; attacks send none unless they say so.
    token: str | None
    #: A ``server.bench.load`` process for attacks made of websocket connections.
    load: JsonChild
    serve_log: Path
    tag: str
    #: What an attack's undo or repair needs to remember from its run.
    scratch: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What an attack saw: a short note for the table, and each expectation it found broken."""

    note: str = ""
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[AttackContext], Awaitable[Outcome]]
    #: Removes what the attack left in Redis, right after it (an operator cleaning up): the row
    #: then shows whether the parts recover by themselves.
    undo: Callable[[AttackContext], Awaitable[None]] | None = None
    #: Puts back state the attack broke that the parts did not recover, after the row is
    #: measured, so that the next attack starts clean.
    repair: Callable[[AttackContext], Awaitable[None]] | None = None
    #: Judge other clients' p99 against this (ms) while the attack runs.
    p99_target_ms: float | None = None
    #: The serve's RSS after the attack must come back within this many MiB of before.
    rss_return_mib: float | None = None


async def repeat_until(deadline: float, every_s: float, action: Callable[[], Awaitable[None]]) -> int:
    """Run ``action`` every ``every_s`` until ``deadline`` (monotonic); returns how many times it ran.

    An attack that acts once just returns: its window lasts ``--seconds-per-attack`` anyway."""
    count = 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        await action()
        count += 1
        pause = min(every_s - (time.monotonic() - started), deadline - time.monotonic())
        await asyncio.sleep(max(0.0, pause))
    return count


async def poll(
    condition: Callable[[], bool | Awaitable[bool]], timeout_s: float, every_s: float = 0.02
) -> bool:
    """Check ``condition`` every ``every_s`` until it holds or ``timeout_s`` passed; whether it held."""
    deadline = time.monotonic() + timeout_s
    for _ in itertools.count():
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every_s)
    return False  # unreachable: itertools.count() never ends
