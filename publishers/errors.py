"""The one exception tree of signalpush.

Errors of Redis, SQLAlchemy and websockets are mapped to these at the edge, so callers
catch signalpush errors only::

    SignalpushError
    ├── ConfigError          a config key has a bad value (names the key and what is allowed)
    ├── PublishError         an event could not be published after the bounded retry
    ├── EmbeddedRedisError   the embedded redis-server could not start (port taken, no binary)
    ├── BusError             the gateway lost Redis and could not get it back
    ├── StoreError           the history database failed or is unreachable
    └── ProtocolError        a client frame broke wire protocol v1 (carries the error code)

Invalid event values raise the built-in ``ValueError`` naming the field, because that is
what a caller passing a bad argument expects.
"""

from __future__ import annotations


class SignalpushError(Exception):
    """Root of every error signalpush raises on purpose."""


class ConfigError(SignalpushError):
    """A configuration value is invalid; the message names the key and what is allowed."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config {key}: {message}")
        self.key = key


class PublishError(SignalpushError):
    """Publishing failed after the configured retries; the event was not published."""


class EmbeddedRedisError(SignalpushError):
    """The embedded redis-server could not be started or did not answer."""


class BusError(SignalpushError):
    """The Redis bus is unavailable."""


class StoreError(SignalpushError):
    """The history database failed or is unreachable."""


class ProtocolError(SignalpushError):
    """A client frame violated the wire protocol; `code` is the protocol error code."""

    def __init__(self, code: str, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
