"""HTTP routes of the wall fleet (docs/walls.md): ``/api/walls``, commands to one display, saved views.

Reading needs a valid token; steering (commands, saving or deleting views) an admin one. The
websockets HTTP parser takes no request body, so a command's and a view's parameters are the
query string of a bodiless ``POST`` (``POST /api/walls/lobby-left/command?action=reload``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from websockets.http11 import Response

from server.core.displays import check_name, parse_command
from server.errors import ProtocolError
from server.gateway.http import Handler, Query, json_response

if TYPE_CHECKING:
    from server.gateway.access import Access
    from server.gateway.displays import DisplayHub

#: ``/api/walls/{id}/command``: the prefix and the suffix around the display id.
COMMAND_PREFIX = "/api/walls/"
COMMAND_SUFFIX = "/command"


class WallRoutes:
    """``/api/walls``, ``/api/walls/{id}/command`` and ``/api/views`` over a :class:`DisplayHub`."""

    def __init__(self, hub: DisplayHub, access: Access) -> None:
        self.hub = hub
        self.access = access

    def __repr__(self) -> str:
        return f"WallRoutes({self.hub!r})"

    def handlers(self) -> dict[str, Handler]:
        """Exact paths (the command route is a prefix: :meth:`prefixes`)."""
        return {"/api/walls": self._walls, "/api/views": self._views}

    def prefixes(self) -> dict[str, Handler]:
        return {COMMAND_PREFIX: self._command}

    @staticmethod
    def _method(query: Query, *allowed: str) -> str:
        method = query.request.method.upper()
        if method not in allowed:
            raise ProtocolError(
                "bad_request", f"method {method[:10]} not allowed here; use {' or '.join(allowed)}"
            )
        return method

    async def _walls(self, query: Query) -> Response:
        self._method(query, "GET")
        self.access.require(query.request, query.params)
        return json_response(await self.hub.listing())

    async def _command(self, query: Query) -> Response:
        path = query.path
        if not path.endswith(COMMAND_SUFFIX):
            raise ProtocolError("not_found", f"no route {path[:100]}")
        display = check_name(path[len(COMMAND_PREFIX) : -len(COMMAND_SUFFIX)], "display")
        self._method(query, "POST")
        self.access.require_admin(query.request, query.params)
        command = parse_command(query.params)
        return json_response(await self.hub.command(display, command), 202)

    async def _views(self, query: Query) -> Response:
        method = self._method(query, "GET", "POST", "DELETE")
        params = {k: v for k, v in query.params.items() if k != "token"}
        if method == "GET":
            self.access.require(query.request, query.params)
            views = await self.hub.views()
            name = params.get("name")
            if name is None:
                return json_response({"views": views})
            if name not in views:
                raise ProtocolError("not_found", f"no saved view {check_name(name, 'name')}")
            return json_response({"name": name, "params": views[name]})
        self.access.require_admin(query.request, query.params)
        name = params.pop("name", "")
        if method == "DELETE":
            return json_response({"name": name, "deleted": await self.hub.delete_view(name)})
        return json_response({"name": name, "params": await self.hub.save_view(name, params)}, 201)
