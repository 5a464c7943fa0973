"""One batch of a symbol's events, looked at once, then selected for each group's filter.

Decoding is skipped when nothing needs the fields (every group unfiltered and no candle
to coalesce). Events are bucketed by what filters look at — (kind, bot, strategy, type,
side) — so a group's filter is evaluated once per bucket, not once per event; only
``min_confidence`` is checked per signal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from server.core.filters import EventFilter, Signature, signature_of

#: (seq, event json)
Message = tuple[int, str]

_CANDLE_MARK = '"candle"'


def _maybe_candle(raw: str) -> bool:
    # Stored event JSON starts {"seq":N,"kind":...: the kind sits within the first bytes. This
    # only decides what to decode; the decoded kind decides what is coalesced.
    return _CANDLE_MARK in raw[:64]


class BatchView:
    """The events of one batch that are sent (candles coalesced), ready for per-group selection."""

    __slots__ = ("_buckets", "_confidence", "everything")

    def __init__(
        self, messages: list[Message], *, filtered: bool, events: list[dict[str, Any]] | None = None
    ) -> None:
        decoded: Sequence[dict[str, Any] | None]
        if events is not None:
            decoded = events  # already decoded by the caller (the live path validated them)
        elif filtered:
            decoded = [json.loads(raw) for _, raw in messages]
        else:
            decoded = [json.loads(raw) if _maybe_candle(raw) else None for _, raw in messages]
        kept = _coalesce(messages, decoded)
        self.everything: tuple[Message, ...] = tuple(messages[i] for i in kept)
        self._buckets: dict[Signature, list[int]] = {}
        self._confidence: list[float] = []
        if filtered:
            for position, index in enumerate(kept):
                event = decoded[index]
                assert event is not None
                self._buckets.setdefault(signature_of(event), []).append(position)
                confidence = event.get("confidence")
                self._confidence.append(confidence if isinstance(confidence, int | float) else 0.0)

    def select(self, flt: EventFilter) -> tuple[Message, ...]:
        """The batch's events that pass ``flt``, in seq order."""
        if flt.is_everything:
            return self.everything
        chosen: list[int] = []
        minimum = flt.min_confidence
        for signature, positions in self._buckets.items():
            if not flt.admits(signature):
                continue
            if minimum is not None and signature[0] == "signal":
                confidence = self._confidence
                chosen.extend(p for p in positions if confidence[p] >= minimum)
            else:
                chosen.extend(positions)
        if len(self._buckets) > 1:
            chosen.sort()
        everything = self.everything
        return tuple(everything[p] for p in chosen)


def _coalesce(messages: list[Message], events: Sequence[dict[str, Any] | None]) -> list[int]:
    """Indexes kept: candles with the same (tf, ts) inside one batch collapse to the latest."""
    last: dict[tuple[Any, Any], int] = {}
    candles = 0
    for index, event in enumerate(events):
        if event is not None and event.get("kind") == "candle":
            last[(event.get("tf"), event.get("ts"))] = index
            candles += 1
    if len(last) == candles:
        return list(range(len(messages)))
    return [
        index
        for index, event in enumerate(events)
        if event is None or event.get("kind") != "candle" or last[(event.get("tf"), event.get("ts"))] == index
    ]
