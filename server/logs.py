"""Structured logging: ``key=value`` text for terminals, one JSON object per line for collectors.

Fields passed with ``extra={...}`` are kept as fields. Nothing on a hot path logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final

_STANDARD: Final = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{stamp} {record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if fields:
            line = f"{line}  {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Send signalpush's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "asyncio", "aiosqlite", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class RateLimitedLog:
    """Log at most once per key per ``interval_s``; the next line says how many were held back.

    For input that arrives at the attacker's rate (bad messages from Redis): the log stays
    readable and costs nothing per message beyond a dict lookup. At most ``max_keys`` keys
    are remembered (past that, the oldest are forgotten), so memory is bounded whatever
    the keys.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 60.0,
        *,
        max_keys: int = 1024,
        clock: Any = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._max_keys = max_keys
        self._clock = clock
        #: key -> (time of the last line, lines held back since)
        self._seen: dict[Any, tuple[float, int]] = {}

    def log(self, level: int, key: Any, message: str, *, exc_info: bool = False, **fields: Any) -> bool:
        """Log ``message`` with ``fields`` unless ``key`` was logged within the interval; True if logged."""
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._interval_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is None and len(self._seen) >= self._max_keys:
            self._forget(now)
        held_back = last[1] if last is not None else 0
        self._seen[key] = (now, 0)
        if held_back:
            fields["held_back"] = held_back
        self._logger.log(level, message, extra=fields, exc_info=exc_info)
        return True

    def warning(self, key: Any, message: str, **fields: Any) -> bool:
        return self.log(logging.WARNING, key, message, **fields)

    def _forget(self, now: float) -> None:
        stale = [k for k, (at, _) in self._seen.items() if now - at >= self._interval_s]
        for key in stale:
            del self._seen[key]
        while len(self._seen) >= self._max_keys:
            del self._seen[next(iter(self._seen))]  # the oldest inserted
