"""The alert evaluator's I/O: one evaluator at a time (a lease), exactly-once alerts, checkpoints.

Every ``serve`` (and ``signalpush alerts run``) runs an :class:`AlertEvaluator`; they form
one evaluator group. Only the holder of the lease ``keys.ALERTS_LEASE_KEY`` (renewed every
round, taken over ``lease_ms`` after its holder died) reads and evaluates. It reads every
symbol's log from its cursors (XREAD, blocking up to ``tick_ms``), feeds the checked events
and the clock to the pure :class:`~server.alerts.engine.Engine`, publishes each decision as
an ``alert`` event through the publish script, and checkpoints the engine's state, the
cursors and the deliveries not done in ``keys.ALERTS_STATE_KEY`` (written only while it
holds the lease: a fenced SET).

Exactly once: a decision's event is published with the publish script's dedup, under the
publisher id ``f<alert id>`` (fire) or ``r<alert id>`` (resolve), call 1. The alert id
comes from (rule, scope key, cause event), so after a crash (even SIGKILL between the
publish and the checkpoint) the next holder replays the same events from the checkpoint's
cursors, makes the same decisions with the same ids, and the script answers "already
applied": one event per fire and per resolution. Routes are delivered at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Final

import redis
import redis.asyncio as aioredis

from publishers import keys
from publishers.connection import async_client, is_cluster_url
from publishers.events import Alert, now_ms
from publishers.script import PUBLISH_SCRIPT, ScriptResult, build_call, parse_result
from server.alerts.decisions import Decision
from server.alerts.engine import Engine
from server.alerts.log_text import text_of
from server.alerts.rules import AlertConfig
from server.gateway.alert_delivery import Deliveries
from server.gateway.alert_reads import LogReader, checkpoint_cursors
from server.history.engine import create_engine
from server.settings import AlertSettings

log = logging.getLogger(__name__)

#: Recent alerts kept (resolved and acknowledged ones) for GET /api/alerts.
RECENT_MAX: Final = 200
#: Alert events already handed to the routes (dedupe of a replay), remembered at most.
_SEEN_MAX: Final = 5000
_CHECKPOINT_EVERY_S: Final = 0.5
#: Rounds that read events start at least this far apart (the latency it adds, at most).
ROUND_GAP_S: Final = 0.01

# KEYS[1] lease; ARGV[1] owner, ARGV[2] ms. Taken when free, renewed when ours: 1 if we hold it.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1
end
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
# KEYS[1] lease, KEYS[2] state; ARGV[1] owner, ARGV[2] state JSON: written only by the holder.
_FENCED_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2]) return 1
"""
# KEYS[1] lease; ARGV[1] owner: let go of it (a clean stop: the next one need not wait).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1
"""


def default_owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class AlertEvaluator:
    """Evaluate ``config``'s rules on the stream, one process of the group at a time."""

    def __init__(
        self,
        redis_url: str,
        config: AlertConfig,
        settings: AlertSettings,
        *,
        log_maxlen: int = 1_000_000,
        owner: str | None = None,
        clock: Callable[[], int] = now_ms,
        database_url: str | None = None,
    ) -> None:
        self.redis_url = redis_url
        #: Where the events the recorder trimmed before we read them are read back (None: counted
        #: as missed; server/gateway/alert_reads.py).
        self.database_url = database_url
        self.config = config
        self.settings = settings
        self.owner = owner or default_owner()
        self.deliveries = Deliveries(config, settings)
        self._log_maxlen = log_maxlen
        self._clock = clock
        self._cluster = is_cluster_url(redis_url)
        self.engine = Engine(config)
        self.holding = False
        self._seen: dict[str, None] = {}
        self.counters = {
            "events": 0,
            "fired": 0,
            "resolved": 0,
            "replayed": 0,
            "rejected": 0,
            "leases": 0,
            "checkpoints": 0,
            "bad_checkpoints": 0,
            "publish_errors": 0,
        }
        self.reader = LogReader(
            cluster=self._cluster, signal_floor=self.engine.signal_floor, counters=self.counters
        )

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Take part in the evaluator group until ``stop``."""
        client = async_client(
            self.redis_url,
            name=f"signalpush-alerts-{self.owner}",
            socket_timeout_s=5.0 + self.settings.tick_ms / 1000,
        )
        deliveries = asyncio.create_task(self.deliveries.run(), name="signalpush-alert-deliveries")
        tick_s = self.settings.tick_ms / 1000
        store = create_engine(self.database_url) if self.database_url else None
        self.reader.store = store
        try:
            while not stop.is_set():
                try:
                    await self._round(client, tick_s)
                except (redis.RedisError, OSError) as exc:
                    if self.holding:
                        log.warning("alert evaluator lost Redis", extra={"error": str(exc)})
                    self.holding = False
                    await _wait(stop, min(1.0, self.settings.lease_ms / 2000))
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                if self.holding:
                    await self._checkpoint(client)
                    await client.eval(_RELEASE, 1, keys.ALERTS_LEASE_KEY, self.owner)
            self.holding = False
            deliveries.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliveries
            await client.aclose()
            if store is not None:
                await store.dispose()

    async def _round(self, client: aioredis.Redis, tick_s: float) -> None:
        """Renew the lease (every quarter of it), read, evaluate, publish, tick (every ``tick_ms``) and
        checkpoint (every ``_CHECKPOINT_EVERY_S``). Per-round work is one XREAD when events flow."""
        clock = time.monotonic()
        if not self.holding or clock >= self._renew_at:
            lease = await client.eval(
                _LEASE, 1, keys.ALERTS_LEASE_KEY, self.owner, str(self.settings.lease_ms)
            )
            if not lease:
                self.holding = False
                await asyncio.sleep(min(tick_s * 2, self.settings.lease_ms / 4000))
                return
            self._renew_at = clock + self.settings.lease_ms / 4000
            if not self.holding:
                await self._take_over(client)
        await self.reader.refresh(client)
        timeout = max(1, int(1000 * (self._tick_at - time.monotonic())))
        read = await self.reader.read(client, block_ms=min(self.settings.tick_ms, timeout))
        now = self._clock()
        decisions: list[Decision] = []
        observe = self.engine.observe
        for symbol, epoch, seq, event in read:
            if event.get("kind") == "alert":
                self._hand_to_routes(event)
            else:
                decisions += observe(event, now, f"{symbol}:{epoch}:{seq}")
        self.counters["events"] += len(read)
        if time.monotonic() >= self._tick_at:
            self._tick_at = time.monotonic() + tick_s
            decisions += await self._bus_decisions(client, now)
            decisions += self.engine.tick(now)
        for decision in decisions:
            await self._publish(client, decision)
        if time.monotonic() - self._last_checkpoint >= _CHECKPOINT_EVERY_S:
            await self._checkpoint(client)
        if read:
            # Rounds that read something are at least ROUND_GAP_S apart: under a stream of events
            # each round would read one or two (a round costs a few Redis round trips of CPU); the
            # first event after a quiet spell is still read at once (XREAD BLOCK).
            await asyncio.sleep(max(0.0, clock + ROUND_GAP_S - time.monotonic()))
        elif not self.reader.blocked:
            await asyncio.sleep(max(0.0, self._tick_at - time.monotonic()))

    # -- lease and checkpoint ------------------------------------------------------------------

    async def _take_over(self, client: aioredis.Redis) -> None:
        """Just became the holder: continue from the checkpoint (or from now, without one)."""
        self.counters["leases"] += 1
        self.engine = Engine(self.config)
        self.reader.signal_floor = self.engine.signal_floor
        self.reader.reset()
        self._seen = {}
        raw = await client.get(keys.ALERTS_STATE_KEY)
        state: Any = None
        if raw is not None:
            try:
                state = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                state = None
        restored = isinstance(state, dict) and self.engine.restore(state.get("engine"))
        if restored and isinstance(state, dict):
            self.reader.reset(checkpoint_cursors(state.get("cursors")))
            seen = state.get("seen")
            self._seen = {s: None for s in seen if isinstance(s, str)} if isinstance(seen, list) else {}
            self.deliveries.restore(state.get("deliveries"))
        else:
            if raw is not None:
                self.counters["bad_checkpoints"] += 1
                log.warning("alert checkpoint unreadable: starting from now")
            await self.reader.refresh(client, start_at_tail=True)
        self.holding = True
        if not restored:
            # The group's first cursors, at once: a successor of ours replays from here, so an
            # incident started before our first periodic checkpoint is not lost.
            await self._checkpoint(client)
        self._last_checkpoint = time.monotonic()
        log.info("alert evaluator holds the lease", extra={"owner": self.owner, "restored": restored})

    async def _checkpoint(self, client: aioredis.Redis) -> None:
        state = {
            "engine": self.engine.state(),
            "cursors": self.reader.cursors,
            "seen": list(self._seen)[-_SEEN_MAX:],
            "deliveries": self.deliveries.pending(),
        }
        text = json.dumps(state, separators=(",", ":"))
        ok = await client.eval(_FENCED_SET, 2, keys.ALERTS_LEASE_KEY, keys.ALERTS_STATE_KEY, self.owner, text)
        self._last_checkpoint = time.monotonic()
        if ok:
            self.counters["checkpoints"] += 1
        else:
            self.holding = False  # another process took over: our state is not the group's any more

    _last_checkpoint: float = 0.0
    _renew_at: float = 0.0
    _tick_at: float = 0.0

    # -- reading ---------------------------------------------------------------------------------

    async def _bus_decisions(self, client: aioredis.Redis, now: int) -> list[Decision]:
        """The bus state gateways report (``keys.ALERTS_BUS_KEY``) into the engine."""
        if not any(r.condition.type == "bus_down" for r in self.engine.rules):
            return []
        decisions: list[Decision] = []
        reported = await client.hgetall(keys.ALERTS_BUS_KEY)
        for raw_source, raw_state in list(reported.items())[:1000]:
            source, state = text_of(raw_source), text_of(raw_state)
            parts = state.split(" ") if state else []
            if not source or len(source) > 64 or len(parts) != 2 or parts[0] not in ("up", "down"):
                continue
            if not parts[1].isdigit() or len(parts[1]) > 15:
                continue
            up, since = parts[0] == "up", int(parts[1])
            if self.engine.bus.get(source, -1) != (None if up else since):
                decisions += self.engine.observe_bus(source, up, since, now)
        return decisions

    # -- writing ---------------------------------------------------------------------------------

    async def _publish(self, client: aioredis.Redis, decision: Decision) -> None:
        """The decision as an alert event (deduplicated by its id), the active/recent lists, routes."""
        prefix = "f" if decision.action == "fire" else "r"
        try:
            result = await publish_alert(
                client,
                decision.event_fields(),
                f"{prefix}{decision.alert_id}",
                log_maxlen=self._log_maxlen,
                cluster=self._cluster,
            )
        except redis.ResponseError as exc:
            self.counters["publish_errors"] += 1
            log.warning("alert not published", extra={"alert_id": decision.alert_id, "error": str(exc)})
            return
        event = {"seq": result.first_seq, "kind": "alert", **decision.event_fields()}
        await record_state(client, event)
        if result.replayed:
            self.counters["replayed"] += 1
        else:
            self.counters["fired" if decision.action == "fire" else "resolved"] += 1
        self._hand_to_routes(event)

    def _hand_to_routes(self, event: dict[str, Any]) -> None:
        """An alert event (ours, or one read back: a predecessor's) to its routes, once."""
        seen = f"{event.get('alert_id')}:{event.get('state')}"
        if seen in self._seen:
            return
        self._seen[seen] = None
        if len(self._seen) > _SEEN_MAX:
            del self._seen[next(iter(self._seen))]
        meta = event.get("meta")
        quiet = bool(meta.get("quiet")) if isinstance(meta, dict) else False
        self.deliveries.offer(event, quiet=quiet)

    @property
    def watches_bus(self) -> bool:
        """Has a ``bus_down`` rule (gateways then report their bus: :func:`report_bus`)."""
        return any(r.condition.type == "bus_down" for r in self.engine.rules)

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters,
            **self.deliveries.counters,
            "holding": int(self.holding),
            "active": sum(1 for _ in self.engine.active()),
        }


async def publish_alert(
    client: aioredis.Redis, fields: dict[str, Any], publisher_id: str, *, log_maxlen: int, cluster: bool
) -> ScriptResult:
    """Publish an alert event once: a second call with the same ``publisher_id`` (a replay after a
    crash, a second ack) is answered "already applied" by the publish script and writes nothing."""
    body = Alert(**fields).body()
    call = build_call(
        fields["symbol"],
        [body],
        publisher_id=publisher_id,
        call_number=1,
        log_maxlen=log_maxlen,
        register_symbol=not cluster,
        sharded=cluster,
    )
    return parse_result(await client.eval(PUBLISH_SCRIPT, len(call.keys), *call.keys, *call.args))


async def record_state(client: aioredis.Redis, event: dict[str, Any]) -> None:
    """Keep ``keys.ALERTS_ACTIVE_KEY`` / ``ALERTS_RECENT_KEY`` current for an alert event."""
    alert_id, state = str(event["alert_id"]), event["state"]
    meta = event.get("meta")
    instant = isinstance(meta, dict) and meta.get("instant") is True
    pipe = client.pipeline(transaction=True)
    if state == "firing" and instant:  # never resolves: straight to the recent ones
        pipe.lpush(keys.ALERTS_RECENT_KEY, json.dumps(event))
        pipe.ltrim(keys.ALERTS_RECENT_KEY, 0, RECENT_MAX - 1)
    elif state == "firing":
        pipe.hset(keys.ALERTS_ACTIVE_KEY, alert_id, json.dumps(event))
    elif state == "resolved":
        pipe.hdel(keys.ALERTS_ACTIVE_KEY, alert_id)
        pipe.lpush(keys.ALERTS_RECENT_KEY, json.dumps(event))
        pipe.ltrim(keys.ALERTS_RECENT_KEY, 0, RECENT_MAX - 1)
    await pipe.execute()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def report_bus(
    client: aioredis.Redis, source: str, is_up: Callable[[], bool], every_s: float = 1.0
) -> None:
    """This gateway's bus state into ``keys.ALERTS_BUS_KEY`` (``up <ms>`` / ``down <since ms>``) every
    ``every_s``, for ``bus_down`` rules; the field is removed when the task stops. The report goes
    over the command connection, which often survives what ends a pub/sub one (an output-buffer
    limit, a node failover)."""
    down_since: int | None = None
    try:
        while True:
            now = now_ms()
            if is_up():
                down_since = None
                state = f"up {now}"
            else:
                down_since = down_since or now
                state = f"down {down_since}"
            with contextlib.suppress(redis.RedisError, OSError):
                await client.hset(keys.ALERTS_BUS_KEY, source, state)
            await asyncio.sleep(every_s)
    finally:
        with contextlib.suppress(redis.RedisError, OSError):
            await client.hdel(keys.ALERTS_BUS_KEY, source)
