"""The root of signalpush's exceptions, and the errors a bot can meet.

Errors of Redis are mapped to these at the edge, so a bot catches signalpush errors only::

    SignalpushError          the root of every error signalpush raises on purpose
    ├── ConfigError          a config key has a bad value (names the key and what is allowed)
    ├── PublishError         an event could not be published after the bounded retry
    └── InvalidEventError    an event field has a bad value (publishers/events.py; also a ValueError)

The server's errors (bus, store, protocol, embedded Redis) hang under the same root in
server/errors.py. Invalid event values raise a ``ValueError`` naming the field, because
that is what a caller passing a bad argument expects.
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
