"""HTTP on the gateway's port (through websockets' ``process_request``): health, metrics, the API,
the wall's pages and the client files. Everything a wall loads comes from this origin."""

from __future__ import annotations

import gzip
import hashlib
import http
import json
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

from redis import RedisError
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from publishers.errors import SignalpushError
from server.core.displays import NAME_PATTERN
from server.core.trust import symbol_name
from server.errors import BusError, ProtocolError
from server.gateway.auth import Principal, one_header
from server.gateway.metrics import render
from server.logs import RateLimitedLog

if TYPE_CHECKING:
    from server.gateway.access import Access
    from server.gateway.server import Gateway


class DatabaseProbe(Protocol):
    """The history store's health for /healthz."""

    async def state(self) -> str:
        """ "up" or "down"."""


log = logging.getLogger(__name__)

#: Query parameters one request may carry at most.
MAX_QUERY_FIELDS = 32
#: HTTP status of each ProtocolError code on this port (anything else: 400).
STATUS_OF_CODE = {"unauthorized": 401, "forbidden": 403, "misdirected": 421, "busy": 503, "not_found": 404}
#: The client files served under /client/: those the wheel ships (pyproject's package-data).
CLIENT_SUFFIXES = (".js", ".d.ts", ".html", ".css")
#: Other client files served by name (the event schema the wall reads; not package.json).
CLIENT_DATA = ("events-schema.json",)

Handler = Callable[["Query"], Awaitable[Response]]


@dataclass(frozen=True)
class Query:
    """A parsed HTTP request: path, query parameters (each key at most once), headers, the connection."""

    path: str
    params: dict[str, str]
    request: Request
    connection: ServerConnection


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


def _address(connection: ServerConnection) -> str:
    remote = connection.remote_address
    return str(remote[0]) if remote else ""


def json_response(payload: Any, status: int = 200, *, cache: str = "no-store") -> Response:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=str).encode()
    headers = Headers({"Content-Type": "application/json", "Cache-Control": cache})
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def text_response(text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
    headers = Headers({"Content-Type": content_type, "Cache-Control": "no-store"})
    return Response(status, http.HTTPStatus(status).phrase, headers, text.encode())


def error_response(status: int, code: str, message: str) -> Response:
    response = json_response({"error": code, "message": message}, status)
    if code == "busy":
        response.headers["Retry-After"] = "1"
    return response


def parse_query(query: str) -> dict[str, str]:
    """Query parameters; ProtocolError(bad_request) naming a key given twice (which one would count?)
    or past MAX_QUERY_FIELDS parameters."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise ProtocolError("bad_request", f"query: more than {MAX_QUERY_FIELDS} parameters") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise ProtocolError("bad_request", f"{key[:40]}: given more than once")
        params[key] = value
    return params


def client_files() -> frozenset[str]:
    """Names of the files /client/ serves: the top-level *.js, *.d.ts, *.html, *.css of client_js,
    and :data:`CLIENT_DATA`."""
    try:
        root = resources.files("client_js")
    except ModuleNotFoundError:
        return frozenset()
    return frozenset(
        entry.name
        for entry in root.iterdir()
        if entry.is_file() and (entry.name.endswith(CLIENT_SUFFIXES) or entry.name in CLIENT_DATA)
    )


class HttpRoutes:
    """Routes of the gateway's port other than ``/ws``.

    ``routes``: more routes by path (server/gateway/api.py's JSON API when there is a history
    store); ``database``: the store's health for /healthz (None: "disabled");
    ``metrics_sources``: more /metrics lines (the recorder's).
    """

    def __init__(
        self,
        gateway: Gateway,
        access: Access,
        *,
        routes: Mapping[str, Handler] | None = None,
        database: DatabaseProbe | None = None,
        metrics_sources: Sequence[Callable[[], list[str]]] = (),
    ) -> None:
        self.gateway = gateway
        self.access = access
        self.database = database
        self.metrics_sources = tuple(metrics_sources)
        self._throttle = RateLimitedLog(log)
        self._client_files = client_files()
        self._static: dict[str, StaticFile] = {}
        self._routes: dict[str, Handler] = {
            "/healthz": self._healthz,
            "/metrics": self._metrics,
            "/api/symbols": self._symbols,
            **(routes or {}),
        }
        self._pages = {"/": "index.html", "/wall": "wall.html", "/walls": "walls.html"}
        #: Routes by path prefix (``/api/walls/{id}/command``), tried after the exact ones.
        self._prefix_routes: dict[str, Handler] = {}

    def __repr__(self) -> str:
        return f"HttpRoutes(routes={sorted(self._routes)})"

    def add_route(self, path: str, handler: Handler) -> None:
        self._routes[path] = handler

    def add_prefix_route(self, prefix: str, handler: Handler) -> None:
        """Answer every path under ``prefix`` (ending with ``/``) with ``handler``."""
        self._prefix_routes[prefix] = handler

    async def handle(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer ``request`` (None: go on with the websocket handshake of /ws).

        Every malformed request is a 4xx naming what is wrong; an unexpected exception is a
        500 with one log line (per route and error type, once a minute), never a traceback
        per request.
        """
        path = "?"
        try:
            parts = urlsplit(request.path)
            path = parts.path
            host = one_header(request.headers, "Host")
            self.access.check_host(host)
            query = Query(path, parse_query(parts.query), request, connection)
            if path == "/ws":
                return self.check_connection(connection, query)
            return await self._route(query)
        except ProtocolError as exc:
            if path == "/ws":
                self.gateway.metrics.connections_refused += 1
            return error_response(STATUS_OF_CODE.get(exc.code, 400), exc.code, exc.message)
        except SignalpushError as exc:
            self._throttle.warning(f"unavailable {path}", "http request failed", path=path, error=str(exc))
            return error_response(503, "unavailable", str(exc))
        except Exception as exc:  # the last resort: a bug must not log a traceback per request
            self._throttle.warning(
                f"crash {path[:64]} {type(exc).__name__}",
                "http request crashed",
                path=path[:200],
                error=f"{type(exc).__name__}: {str(exc)[:200]}",
            )
            return error_response(500, "internal", "internal error")

    async def _route(self, query: Query) -> Response:
        path, request = query.path, query.request
        handler = self._routes.get(path)
        if handler is not None:
            return await handler(query)
        if path in self._pages:
            return self._file("client_js", self._pages[path], request)
        for prefix, prefixed in self._prefix_routes.items():
            if path.startswith(prefix):
                return await prefixed(query)
        if path.startswith("/client/"):
            name = path.removeprefix("/client/")
            if name not in self._client_files:
                return error_response(404, "not_found", f"no client file {name[:100]!r}")
            return self._file("client_js", name, request)
        if path == "/vendor/plotly.min.js":
            return self._file("plotly", "package_data/plotly.min.js", request, cache="public, max-age=86400")
        return error_response(404, "not_found", f"no route {path[:100]}")

    def check_connection(self, connection: ServerConnection, query: Query) -> Response | None:
        """Admission of a websocket handshake: Origin, connection caps, then the token."""
        gateway = self.gateway
        server = gateway.settings.server
        request = query.request
        self.access.check_origin(request)
        if len(gateway.sessions) >= server.max_connections:
            gateway.metrics.connections_refused += 1
            return error_response(503, "too_many", "too many connections (server.max_connections)")
        address = _address(connection)
        if (
            server.max_connections_per_ip
            and gateway.per_address.get(address, 0) >= server.max_connections_per_ip
        ):
            gateway.metrics.connections_refused += 1
            return error_response(
                429, "too_many", "too many connections from this address (server.max_connections_per_ip)"
            )
        try:
            self.access.admit(connection, request, query.params)
        except ProtocolError as exc:
            self._expired_display(exc, query.params)
            raise
        return None

    def _expired_display(self, exc: ProtocolError, params: dict[str, str]) -> None:
        """A wall (``?display=``) refused for an expired token: /walls shows why it went dark."""
        display = params.get("display", "")
        if exc.message == "the token has expired" and display and NAME_PATTERN.fullmatch(display):
            self.gateway.spawn(self.gateway.displays.mark_display(display, "token_expired", ""))

    def require(self, query: Query, symbols: list[str] | None = None) -> Principal:
        """The principal of an HTTP API request; ProtocolError (401/403) if it may not ask this."""
        return self.access.require(query.request, query.params, symbols)

    # -- routes --------------------------------------------------------------------------

    async def _healthz(self, query: Query) -> Response:
        """200 when every part is up, else 503; ``down`` names the parts that are not.

        Parts: ``bus`` (the Redis listener connected and heard from), ``database``, and the
        process's long-running tasks (``housekeeping``, ``recorder`` when it runs here).
        """
        gateway = self.gateway
        tasks = gateway.tasks
        bus_task = tasks.get("bus")
        redis_ok = gateway.bus.is_healthy(max_silence_s=10.0) and (bus_task is None or bus_task.up)
        database = "disabled" if self.database is None else await self.database.state()
        parts = {"bus": "up" if redis_ok else "down", "database": database}
        parts.update({name: "up" if task.up else "down" for name, task in tasks.items() if name != "bus"})
        down = sorted(name for name, state in parts.items() if state == "down")
        body = {
            "status": "degraded" if down else "ok",
            "redis": parts["bus"],
            "database": database,
            "connections": len(gateway.sessions),
            "uptime_s": round(time.monotonic() - gateway.started_at, 1),
            "bus": parts["bus"],
            "recorder": parts.get("recorder", "disabled"),
            "down": down,
            "restarts": {name: task.restarts for name, task in tasks.items()},
        }
        return json_response(body, 503 if down else 200)

    async def _metrics(self, query: Query) -> Response:
        text = render(self.gateway.metrics, self.gateway.gauges(), self._extra_metrics)
        return text_response(text, content_type="text/plain; version=0.0.4; charset=utf-8")

    def _extra_metrics(self) -> list[str]:
        return [line for source in self.metrics_sources for line in source()]

    async def _symbols(self, query: Query) -> Response:
        """The registered symbols this token may read, with their epoch and seq.

        The registry and the meta hashes are untrusted: a name that is not a symbol, or
        whose meta hash is unusable, is left out (never a 500).
        """
        from publishers import keys
        from server.history.log_reader import meta_of

        principal = self.require(query)
        redis = self.gateway.redis
        try:
            members = cast(set[bytes], await redis.smembers(keys.SYMBOLS_KEY))
            names = sorted(
                name for name in map(symbol_name, members) if name is not None and principal.can_read(name)
            )
            async with redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hmget(keys.meta_key(name), [keys.META_EPOCH, keys.META_SEQ])
                metas = await pipe.execute(raise_on_error=False)
        except RedisError as exc:
            raise BusError(f"cannot read the symbol registry {keys.SYMBOLS_KEY}: {exc}") from exc
        symbols = []
        for name, meta in zip(names, metas, strict=True):
            try:
                if isinstance(meta, BaseException):
                    raise BusError(str(meta))
                epoch, seq = meta_of(name, *meta)
            except BusError:
                continue  # its meta hash is not the script's: not a usable symbol
            symbols.append({"symbol": name, "epoch": epoch, "seq": seq})
        return json_response({"symbols": symbols})

    # -- static files ----------------------------------------------------------------------

    def _file(self, package: str, name: str, request: Request, *, cache: str = "no-cache") -> Response:
        """A file of ``package`` (``name`` is one of a fixed set: pages, client files, plotly)."""
        key = f"{package}/{name}"
        static = self._static.get(key)
        if static is None:
            try:
                target = resources.files(package).joinpath(name)
            except ModuleNotFoundError:
                return error_response(404, "not_found", f"no file {name}")
            if not target.is_file():
                return error_response(404, "not_found", f"no file {name}")
            body = target.read_bytes()
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            if content_type.startswith("text/") or content_type in (
                "application/javascript",
                "application/json",
            ):
                content_type += "; charset=utf-8"
            if name.endswith((".js", ".mjs")):
                content_type = "text/javascript; charset=utf-8"
            zipped = gzip.compress(body, 6) if len(body) > 1024 else None
            static = StaticFile(body, zipped, content_type, '"' + hashlib.sha1(body).hexdigest()[:16] + '"')
            self._static[key] = static
        headers = Headers({"Content-Type": static.content_type, "Cache-Control": cache, "ETag": static.etag})
        if static.etag in ",".join(request.headers.get_all("If-None-Match")):
            return Response(304, "Not Modified", headers, b"")
        body = static.body
        if static.gzipped is not None and "gzip" in ",".join(request.headers.get_all("Accept-Encoding")):
            headers["Content-Encoding"] = "gzip"
            body = static.gzipped
        headers["Vary"] = "Accept-Encoding"
        return Response(200, "OK", headers, body)
