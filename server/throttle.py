"""Logging that a hostile peer cannot turn into a flood: one line per key per interval."""

from __future__ import annotations

import logging
import time
from typing import Any, Final

#: Keys remembered at most (a peer choosing new keys cannot grow this without bound).
_MAX_KEYS: Final = 1024


class LogThrottle:
    """``warn(key, ...)`` logs once per ``key`` per ``interval_s`` and counts what it held back.

    The next line of a key says how many were suppressed since its last one. No tracebacks:
    a request that fails the same way a million times costs a million counter increments.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, key: str, message: str, **fields: Any) -> bool:
        """Log ``message`` with ``fields`` unless ``key`` was logged within the interval; True if logged."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if last is None and len(self._last) >= _MAX_KEYS:
            self._last.clear()
        suppressed = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        extra = {**fields, "suppressed": suppressed} if suppressed else fields
        self._log.warning(message, extra=extra)
        return True
