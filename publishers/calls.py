"""What both publishers share: options, building validated events, grouping them into script calls.

Each event is one EVALSHA of ``publish.lua``: seq, log entry and live message in one
atomic step. Calls of one publisher are sent in order, and each carries the publisher's
id and a call number, so a call retried after a lost reply is applied once (the script
answers a replay with the seqs it gave the first time). On a Redis Cluster the calls of
one symbol are sent one after another (pipelines of scripts are refused there), the
symbol registry is updated apart (it lives in another slot), and Redis 7 clusters get
sharded pub/sub (SPUBLISH).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from publishers.connection import is_cluster_url
from publishers.errors import PublishError
from publishers.events import (
    BotStatus,
    Event,
    InvalidEventError,
    Signal,
    Trade,
    check_name,
    check_symbol,
    now_ms,
)
from publishers.options import PublisherOptions, redact_url
from publishers.registry import registry_entry
from publishers.script import (
    MAX_EVENTS_PER_CALL,
    ScriptCall,
    ScriptResult,
    build_call,
    new_publisher_id,
    parse_result,
)

PIPELINE_MAX = 256


@dataclass(slots=True)
class Options:
    """One publisher's settings (from its :class:`PublisherOptions`) and its cluster state."""

    config: PublisherOptions
    bot: str | None
    strategy: str | None
    cluster: bool = False
    #: SPUBLISH instead of PUBLISH (Redis 7 clusters); known after the first connection.
    sharded: bool = False
    publisher_id: str = field(default_factory=new_publisher_id)

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def retry_attempts(self) -> int:
        return self.config.retry_attempts

    @property
    def retry_timeout_s(self) -> float:
        return self.config.retry_timeout_s

    @property
    def socket_timeout_s(self) -> float:
        return self.config.socket_timeout_s

    @property
    def log_maxlen(self) -> int:
        return self.config.log_maxlen


def make_options(
    url: str | None,
    bot: str | None,
    strategy: str | None,
    options: PublisherOptions | None,
    retry_attempts: int | None,
    retry_timeout_s: float | None,
    log_maxlen: int | None,
) -> Options:
    """A publisher's options: ``options`` (else the defaults), with the arguments given over them."""
    if options is None:
        options = PublisherOptions(url=url) if url else PublisherOptions()
    config = options.replace(
        url=url or None,
        retry_attempts=retry_attempts,
        retry_timeout_s=retry_timeout_s,
        log_maxlen=log_maxlen,
    )
    return Options(
        config=config,
        cluster=is_cluster_url(config.url),
        bot=None if bot is None else check_name(bot, "bot"),
        strategy=None if strategy is None else check_name(strategy, "strategy"),
    )


class EventFactory:
    """Builds validated events from the keyword API shared by both publishers."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self.symbols_used: list[str] = []

    def _identity(self, bot: str | None, strategy: str | None) -> tuple[str, str]:
        chosen_bot = bot or self._options.bot
        chosen_strategy = strategy or self._options.strategy
        if chosen_bot is None:
            raise InvalidEventError("bot", "is required: pass bot= to the publisher or to this call")
        if chosen_strategy is None:
            raise InvalidEventError(
                "strategy", "is required: pass strategy= to the publisher or to this call"
            )
        return chosen_bot, chosen_strategy

    def signal(
        self,
        symbol: str,
        type: str,
        price: float,
        confidence: float,
        ts: Any,
        meta: Any,
        bot: str | None,
        strategy: str | None,
    ) -> Signal:
        who, strat = self._identity(bot, strategy)
        return Signal(
            symbol=symbol,
            ts=now_ms() if ts is None else ts,
            bot=who,
            strategy=strat,
            type=type,
            price=price,
            confidence=confidence,
            meta=meta,
        )

    def trade(
        self,
        symbol: str,
        side: str,
        action: str,
        price: float,
        qty: float,
        position: str,
        fee: float,
        pnl: float | None,
        ts: Any,
        meta: Any,
        bot: str | None,
        strategy: str | None,
    ) -> Trade:
        who, strat = self._identity(bot, strategy)
        return Trade(
            symbol=symbol,
            ts=now_ms() if ts is None else ts,
            bot=who,
            strategy=strat,
            side=side,
            action=action,
            price=price,
            qty=qty,
            position=position,
            fee=fee,
            pnl=pnl,
            meta=meta,
        )

    def status(
        self,
        status: str,
        symbol: str | None,
        equity: float | None,
        meta: Any,
        bot: str | None,
        strategy: str | None,
    ) -> list[BotStatus]:
        who, strat = self._identity(bot, strategy)
        symbols = [check_symbol(symbol)] if symbol is not None else list(self.symbols_used)
        ts = now_ms()
        events = [
            BotStatus(symbol=s, ts=ts, bot=who, strategy=strat, status=status, equity=equity, meta=meta)
            for s in symbols
        ]
        if not events:  # validate even when there is no symbol to publish on
            self.bare_status(status, equity, meta, bot, strategy)
        return events

    def bare_status(
        self, status: str, equity: float | None, meta: Any, bot: str | None, strategy: str | None
    ) -> BotStatus:
        """A validated status for the registry alone (its ``symbol`` is a placeholder, never sent)."""
        who, strat = self._identity(bot, strategy)
        return BotStatus(
            symbol="X", ts=now_ms(), bot=who, strategy=strat, status=status, equity=equity, meta=meta
        )

    def note_symbol(self, symbol: str) -> None:
        if symbol not in self.symbols_used:
            self.symbols_used.append(symbol)


def registry_updates(
    events: Sequence[Event], seen: dict[str, set[str]], ids: Mapping[str, int | None]
) -> dict[str, str]:
    """Registry entries (bot -> JSON) for the last status of each bot among ``events``."""
    latest: dict[str, BotStatus] = {}
    for event in events:
        if isinstance(event, BotStatus):
            latest[event.bot] = event
            seen.setdefault(event.bot, set()).add(event.symbol)
    return {
        bot: registry_entry(
            bot=bot,
            strategy=event.strategy,
            status=event.status,
            equity=event.equity,
            ts=event.ts,
            symbols=seen[bot],
            bot_id=ids.get(bot),
        )
        for bot, event in latest.items()
    }


def group_calls(events: Sequence[Event], options: Options, next_number: Any) -> list[ScriptCall]:
    """Consecutive events of one symbol become one script call (at most MAX_EVENTS_PER_CALL)."""
    calls: list[ScriptCall] = []
    run: list[str] = []
    run_symbol: str | None = None
    for event in events:
        if event.symbol != run_symbol or len(run) >= MAX_EVENTS_PER_CALL:
            if run_symbol is not None:
                calls.append(_call(run_symbol, run, options, next_number()))
            run, run_symbol = [], event.symbol
        run.append(event.body())
    if run_symbol is not None:
        calls.append(_call(run_symbol, run, options, next_number()))
    return calls


def _call(symbol: str, bodies: list[str], options: Options, number: int) -> ScriptCall:
    return build_call(
        symbol,
        bodies,
        publisher_id=options.publisher_id,
        call_number=number,
        log_maxlen=options.log_maxlen,
        register_symbol=not options.cluster,
        sharded=options.sharded,
    )


def by_symbol(calls: Sequence[ScriptCall]) -> dict[str, list[ScriptCall]]:
    """Calls grouped per symbol, each group in its original order (cluster sending)."""
    groups: dict[str, list[ScriptCall]] = {}
    for call in calls:
        groups.setdefault(call.symbol, []).append(call)
    return groups


def redis_major(info: dict[str, Any]) -> int:
    """Major version from an INFO reply (a cluster's reply holds one entry per node: the first counts)."""
    values = list(info.values())
    if values and isinstance(values[0], dict):
        info = values[0]
    return int(str(info.get("redis_version", "0")).split(".")[0])


def publish_failed(options: Options, attempts: int, exc: BaseException) -> PublishError:
    return PublishError(
        f"could not publish to Redis at {redact_url(options.url)} after {attempts} attempt(s) "
        f"within {options.retry_timeout_s:g}s: {exc}"
    )


def is_noscript(result: object) -> bool:
    return isinstance(result, redis.exceptions.NoScriptError)


#: The publish script's own refusals start with this (publish.lua: it checks before it writes).
SCRIPT_REFUSAL = "SIGNALPUSH "


def refused(options: Options, exc: BaseException) -> PublishError:
    """A PublishError for an error reply: the script's own refusals (naming the key and the
    repair; nothing was written) are passed on as they are."""
    text = str(exc)
    if text.startswith(SCRIPT_REFUSAL):
        return PublishError(
            f"Redis at {redact_url(options.url)} refused to publish: {text[len(SCRIPT_REFUSAL) :]}"
        )
    return PublishError(f"Redis at {redact_url(options.url)} refused the publish script: {text}")


def check_reply(options: Options, result: object) -> ScriptResult:
    if isinstance(result, BaseException):
        raise refused(options, result)
    return parse_result(result)
