"""The one composition root: embedded Redis, gateway (+ HTTP), recorder, demo bots.

Every collaborator of the gateway is built here and handed in (server/gateway/ports.py
names what it needs); nothing else builds, attaches or patches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from publishers.connection import async_client, is_cluster_url
from server.alerts.rules import parse_alerts
from server.cli.alerts_child import AlertsChild
from server.cli.demo import run_demo_bots
from server.cli.embedded import EmbeddedRedis
from server.cli.recorder_child import RecorderChild, serve_consumer
from server.cli.supervisor import Supervisor
from server.gateway.access import Access
from server.gateway.alert_api import AlertRoutes, AlertStats, alert_metrics
from server.gateway.alerting import AlertEvaluator, report_bus
from server.gateway.api import ApiRoutes, EngineProbe, StoreFigures, recorder_metrics
from server.gateway.bus import RedisBus
from server.gateway.bus_cluster import ShardedBus
from server.gateway.http import HttpRoutes
from server.gateway.perf import PerfFeed
from server.gateway.ports import BatchHandler, Bus, BusFactory, FigureSource, NoFigures, StateHandler
from server.gateway.server import Gateway
from server.gateway.tasks import SupervisedTask
from server.gateway.walls_api import WallRoutes
from server.history.engine import create_engine
from server.history.migrate import upgrade_database
from server.history.recorder import Recorder
from server.history.recorder_state import RecorderView
from server.history.source import HistorySource, LogHistory, StoreHistory
from server.settings import Settings

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
    try:
        await asyncio.to_thread(server.wait_ready)
    except BaseException:
        server.stop()
        raise
    log.info("embedded redis ready", extra={"url": server.url, "dir": str(server.data_dir)})
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def history_store(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The history database, its schema upgraded to the latest migration."""
    await upgrade_database(settings.database.url)
    engine = create_engine(settings.database.url, echo=settings.database.echo)
    try:
        yield engine
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class RunningRecorder:
    recorder: RecorderView
    task: SupervisedTask


@contextlib.asynccontextmanager
async def running_recorder(
    settings: Settings, redis_url: str, engine: AsyncEngine
) -> AsyncIterator[RunningRecorder | None]:
    """The recorder (when ``recorder.enabled``): a child process (``recorder.process``, default)
    or a task of this process; supervised as the task ``recorder``, restarted with backoff if it
    ends; it finishes its batch on exit."""
    if not settings.recorder.enabled:
        yield None
        return
    recorder: RecorderView
    if settings.recorder.process:
        recorder = RecorderChild(settings, redis_url, consumer=serve_consumer(settings.server.port))
    else:
        recorder = Recorder(
            redis_url, engine, settings.recorder, claim_idle_ms=settings.recorder.claim_idle_ms
        )
    stop = asyncio.Event()
    task = SupervisedTask("recorder", lambda: recorder.run(stop))
    task.start()
    try:
        yield RunningRecorder(recorder, task)
    finally:
        stop.set()
        await task.stop(timeout_s=15)


@dataclass(frozen=True)
class RunningAlerts:
    evaluator: AlertStats
    task: SupervisedTask
    #: A rule watches the gateways' bus (each gateway then reports it).
    watches_bus: bool


@contextlib.asynccontextmanager
async def running_alerts(settings: Settings, redis_url: str) -> AsyncIterator[RunningAlerts | None]:
    """This host's member of the alert evaluator group (when ``alerts.enabled`` and a rule is):
    a child process (``alerts.process``, default) or a task of this process; supervised as the
    task ``alerts`` (docs/design.md, "Alerts in the stream")."""
    config = parse_alerts(settings.alerts.rules, settings.alerts.routes)  # a bad rule stops start-up
    rules = [rule for rule in config.rules if rule.enabled]
    if not settings.alerts.enabled or not rules:
        yield None
        return
    evaluator: AlertsChild | AlertEvaluator
    if settings.alerts.process:
        evaluator = AlertsChild(settings, redis_url)
    else:
        evaluator = AlertEvaluator(
            redis_url,
            config,
            settings.alerts,
            log_maxlen=settings.redis.log_maxlen,
            database_url=settings.database.url,
        )
    stop = asyncio.Event()
    task = SupervisedTask("alerts", lambda: evaluator.run(stop))
    task.start()
    try:
        yield RunningAlerts(evaluator, task, any(rule.condition.type == "bus_down" for rule in rules))
    finally:
        stop.set()
        await task.stop(timeout_s=15)


def bus_factory(settings: Settings, redis_url: str) -> BusFactory:
    """The bus for ``redis_url``: one connection, or one per cluster node (sharded pub/sub)."""
    bus_class = ShardedBus if is_cluster_url(redis_url) else RedisBus
    window_s = settings.server.batch_ms / 1000

    def make(on_batch: BatchHandler, on_state: StateHandler) -> Bus:
        return bus_class(redis_url, on_batch=on_batch, on_state=on_state, batch_window_s=window_s)

    return make


@dataclass(frozen=True)
class ComposedGateway:
    """A gateway and the HTTP routes of its port, wired; ``await gateway.start(http=routes.handle)``."""

    gateway: Gateway
    routes: HttpRoutes


def compose_gateway(
    settings: Settings,
    redis_url: str,
    *,
    engine: AsyncEngine | None = None,
    recorder: RecorderView | None = None,
    history: HistorySource | None = None,
    alerting: AlertStats | None = None,
) -> ComposedGateway:
    """Build the gateway and its collaborators.

    With ``engine`` (a history store): history windows from it (the log fills in what it has
    not recorded yet), figures, the JSON API and the store's health; builds in worker
    processes when ``history.workers`` > 0. Without: history from the Redis log only.
    ``history`` replaces the history source (tests gate or slow it).
    """
    redis = async_client(
        redis_url,
        socket_timeout_s=settings.redis.socket_timeout_s,
        name="signalpush-gateway",
        max_connections=32,
    )
    if history is None:
        history = LogHistory(redis) if engine is None else StoreHistory(redis, engine, settings.history)
    figures: FigureSource = NoFigures() if engine is None else StoreFigures(settings.history.max_points)
    access = Access.from_settings(settings)
    alert_routes = AlertRoutes(redis, access, redis_url=redis_url, log_maxlen=settings.redis.log_maxlen)
    gateway = Gateway(
        settings,
        redis_url=redis_url,
        redis=redis,
        history=history,
        access=access,
        figures=figures,
        make_bus=bus_factory(settings, redis_url),
        builds_database_url=None if engine is None else settings.database.url,
        alerts=alert_routes,
        perf=None if engine is None else PerfFeed(redis=redis, engine=engine),
    )
    if engine is None:
        return ComposedGateway(gateway, with_wall_routes(HttpRoutes(gateway, access), gateway, access))
    api = ApiRoutes(gateway, access, engine, figures)
    sources = [] if recorder is None else [lambda: recorder_metrics(recorder)]
    if alerting is not None:
        sources.append(lambda: alert_metrics(alerting))
    routes = HttpRoutes(
        gateway,
        access,
        routes={**api.handlers(), **alert_routes.handlers()},
        database=EngineProbe(engine),
        metrics_sources=sources,
    )
    return ComposedGateway(gateway, with_wall_routes(routes, gateway, access))


def with_wall_routes(routes: HttpRoutes, gateway: Gateway, access: Access) -> HttpRoutes:
    """``routes`` with the wall fleet's (server/gateway/walls_api.py)."""
    walls = WallRoutes(gateway.displays, access)
    for path, handler in walls.handlers().items():
        routes.add_route(path, handler)
    for prefix, handler in walls.prefixes().items():
        routes.add_prefix_route(prefix, handler)
    return routes


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, redis_url: str, *, reuse_port: bool = False, sock: socket.socket | None = None
) -> AsyncIterator[tuple[Gateway, int]]:
    """Gateway, HTTP routes, history store and recorder; stopped (1012 to every client) on exit."""
    async with (
        history_store(settings) as engine,
        running_recorder(settings, redis_url, engine) as recording,
        running_alerts(settings, redis_url) as alerting,
    ):
        composed = compose_gateway(
            settings,
            redis_url,
            engine=engine,
            recorder=None if recording is None else recording.recorder,
            alerting=None if alerting is None else alerting.evaluator,
        )
        gateway = composed.gateway
        if recording is not None:
            gateway.supervise(recording.task)
        if alerting is not None:
            gateway.supervise(alerting.task)
        port = await gateway.start(reuse_port=reuse_port, http=composed.routes.handle, sock=sock)
        if alerting is not None and alerting.watches_bus:
            source = f"{socket.gethostname()}:{port}"
            report = SupervisedTask(
                "alert-bus", lambda: report_bus(gateway.redis, source, lambda: gateway.bus.up)
            )
            gateway.supervise(report)
        # Everything allocated at start-up lives as long as the process: keep it out of the
        # collector's full passes (they showed as 30-100 ms pauses under load).
        gc.freeze()
        try:
            yield gateway, port
        finally:
            await gateway.stop()


def _public_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


async def run_serve(
    settings: Settings,
    *,
    workers: int = 1,
    worker: bool = False,
    config_path: str | None = None,
    sock: socket.socket | None = None,
) -> int:
    """The gateway (and the embedded Redis when no redis.url is set) until cancelled.

    With ``workers`` > 1 this process supervises that many gateway processes on one port.
    ``sock``: the port, already listening (server/cli/listen.py).
    """
    host = _public_host(settings.server.host)
    if worker:
        async with running_gateway(settings, settings.redis.effective_url, reuse_port=True):
            await asyncio.Event().wait()
        return 0
    async with redis_for(settings) as url:
        if workers > 1:
            await upgrade_database(settings.database.url)  # once, before the workers race to do it
            supervisor = Supervisor(
                settings,
                redis_url=url,
                count=workers,
                host=settings.server.host,
                port=settings.server.port,
                config_path=config_path,
            )
            port = settings.server.port
            print(f"signalpush serving ws://{host}:{port}/ws with {workers} workers", flush=True)
            await supervisor.run()
            return 0
        async with running_gateway(settings, url, sock=sock) as (_, port):
            print(f"signalpush serving ws://{host}:{port}/ws  (wall: http://{host}:{port}/wall)", flush=True)
            await asyncio.Event().wait()
    return 0


async def run_demo(settings: Settings) -> int:
    """Everything on one machine: embedded Redis, the gateway and the demo bots."""
    demo = settings.demo
    async with redis_for(settings) as url, running_gateway(settings, url) as (_, port):
        host = _public_host(settings.server.host)
        symbols = ",".join(demo.symbols)
        print(f"signalpush demo: bots publishing {symbols} to {url}", flush=True)
        print(f"  wall:      http://{host}:{port}/wall?symbols={symbols}", flush=True)
        print(f"  websocket: ws://{host}:{port}/ws    health: http://{host}:{port}/healthz", flush=True)
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
