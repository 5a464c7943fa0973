"""Who may connect and what each connection may read: tokens, the Origin rule, principals.

One object shared by the websocket subscribe path (through the ``Authorizer`` port) and the
HTTP routes, so the two cannot disagree.
"""

from __future__ import annotations

import weakref

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from publishers.errors import ConfigError
from server.errors import ProtocolError
from server.gateway.auth import ANYONE, Authenticator, Principal, one_header, token_from
from server.gateway.origin import OriginPolicy
from server.settings import Settings


class Access:
    """The gateway's access rules (``auth`` and ``server.public_hosts/allowed_origins``)."""

    def __init__(self, authenticator: Authenticator, policy: OriginPolicy) -> None:
        self.authenticator = authenticator
        self.policy = policy
        #: The principal of each open websocket connection (set at the handshake).
        self.principals: weakref.WeakKeyDictionary[ServerConnection, Principal] = weakref.WeakKeyDictionary()

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        """ConfigError naming ``server.public_hosts`` when the Origin rules cannot be built."""
        server = settings.server
        try:
            policy = OriginPolicy(server.host, server.public_hosts, server.allowed_origins)
        except ProtocolError as exc:
            raise ConfigError("server.public_hosts", exc.message) from None
        return cls(Authenticator(settings.auth), policy)

    def __repr__(self) -> str:
        return f"Access(connections={len(self.principals)})"

    def check_host(self, host: str | None) -> None:
        """ProtocolError(misdirected) for a Host header that does not name this gateway."""
        self.policy.check_host(host)

    def check_origin(self, request: Request) -> None:
        """ProtocolError(forbidden) for a browser Origin that is not the gateway's own nor allowed."""
        headers = request.headers
        self.policy.check_origin(one_header(headers, "Origin"), one_header(headers, "Host"))

    def authenticate(self, request: Request, params: dict[str, str]) -> Principal:
        """The principal of a request's token; ProtocolError(unauthorized) when it is not valid."""
        return self.authenticator.authenticate(token_from(request.headers, params))

    def admit(self, ws: ServerConnection, request: Request, params: dict[str, str]) -> None:
        """Remember the principal of a websocket handshake's token (raises if it is not valid)."""
        self.principals[ws] = self.authenticate(request, params)

    def require(
        self, request: Request, params: dict[str, str], symbols: list[str] | None = None
    ) -> Principal:
        """The principal of an HTTP API request; ProtocolError (401/403) if it may not ask this."""
        self.check_origin(request)
        principal = self.authenticate(request, params)
        for symbol in symbols or []:
            if not principal.can_read(symbol):
                raise ProtocolError("forbidden", f"symbol: this token may not read {symbol}")
        return principal

    def require_admin(self, request: Request, params: dict[str, str]) -> Principal:
        """The principal of an HTTP request that steers walls; ProtocolError (401/403) unless admin."""
        principal = self.require(request, params)
        if not principal.admin:
            raise ProtocolError("forbidden", "an admin token is needed to steer walls (token create --admin)")
        return principal

    # -- the Authorizer port ------------------------------------------------------------------

    def principal_of(self, ws: ServerConnection) -> Principal:
        return self.principals.get(ws, ANYONE)

    def forget(self, ws: ServerConnection) -> None:
        self.principals.pop(ws, None)

    def authorize_symbol(self, ws: ServerConnection, symbol: str) -> None:
        """Raise ProtocolError(forbidden) if this connection may not read ``symbol`` (auth off: all may)."""
        if not self.principal_of(ws).can_read(symbol):
            raise ProtocolError("forbidden", f"symbol: this token may not read {symbol}")
