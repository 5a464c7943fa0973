"""The ``perf`` op of wire protocol v1: the live signal-quality stream (docs/protocol.md). Pure.

A client sends ``{"op": "perf", "bots": [...], "strategies": [...]}`` (both optional: every
bot and strategy) and receives ``perf`` frames: first every row its filter selects
(``"full": true``), then, at most once per feed interval, the rows that changed. One perf
subscription per connection (a second ``perf`` replaces the first); ``{"op": "unsubscribe",
"sub": "perf"}`` ends it. A row is server/analytics/quality.py's ``group_row``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from server.core.filters import parse_filter
from server.errors import ProtocolError

if TYPE_CHECKING:
    from server.core.protocol import Ref

#: The ``sub`` of a connection's perf subscription (``unsubscribe`` takes it).
PERF_SUB: Final = "perf"
_KEYS: Final = frozenset({"op", "ref", "bots", "strategies"})


@dataclass(frozen=True, slots=True)
class PerfSubscribe:
    """A ``perf`` op: the (bot, strategy) groups it wants (None: all)."""

    ref: Ref
    bots: tuple[str, ...] | None = None
    strategies: tuple[str, ...] | None = None

    def wants(self, bot: str, strategy: str) -> bool:
        return (self.bots is None or bot in self.bots) and (
            self.strategies is None or strategy in self.strategies
        )

    @property
    def key(self) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
        """Equal for subscriptions that get the same frames (each is encoded once per key)."""
        return (self.bots, self.strategies)


def parse_perf(raw: Mapping[str, Any], ref: Ref) -> PerfSubscribe:
    """A ``perf`` frame's fields (the names are checked like a subscribe filter's)."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ProtocolError(
            "bad_request", f"{unknown[0][:40]}: unknown key for perf; known: bots, strategies"
        )
    flt = parse_filter({name: raw[name] for name in ("bots", "strategies") if name in raw})
    return PerfSubscribe(ref, flt.bots, flt.strategies)


def perf_frame(rows: Sequence[Mapping[str, Any]], *, full: bool, now_ms: int, ref: Ref = None) -> str:
    """A ``perf`` frame; a number that is not finite goes out as null (JSON has no NaN)."""
    frame: dict[str, Any] = {
        "op": "perf",
        "sub": PERF_SUB,
        "full": full,
        "time": now_ms,
        "rows": _finite(rows),
    }
    if ref is not None:
        frame["ref"] = ref
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
