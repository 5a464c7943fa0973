"""The server's exceptions: one tree under the project's root, :class:`publishers.errors.SignalpushError`.

Errors of Redis, SQLAlchemy and websockets are mapped to these at the edge (the bus, the
store, the websocket and HTTP handlers), so callers catch signalpush errors only::

    SignalpushError                 publishers/errors.py: the root (bots catch it too)
    ├── ConfigError                 publishers/errors.py: a config key has a bad value
    ├── PublishError                publishers/errors.py: an event could not be published
    ├── InvalidEventError           publishers/events.py: an event field has a bad value (also a ValueError)
    ├── EmbeddedRedisError          the embedded redis-server could not start (port taken, no binary)
    ├── BusError                    the gateway lost Redis and could not get it back
    ├── StoreError                  the history database failed or is unreachable
    └── ProtocolError               a client frame or HTTP request broke the wire protocol (carries the code)
"""

from __future__ import annotations

from publishers.errors import SignalpushError

__all__ = ["BusError", "EmbeddedRedisError", "ProtocolError", "SignalpushError", "StoreError"]


class EmbeddedRedisError(SignalpushError):
    """The embedded redis-server could not be started or did not answer."""


class BusError(SignalpushError):
    """The Redis bus is unavailable."""


class StoreError(SignalpushError):
    """The history database failed or is unreachable."""


class ProtocolError(SignalpushError):
    """A client frame violated the wire protocol; ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str, *, ref: str | int | float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
