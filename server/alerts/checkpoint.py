"""A checkpoint of the alert engine read back from Redis: untrusted, checked before it is used."""

from __future__ import annotations

from typing import Any

#: (bots, candles, bus, incidents) of a checkpoint that passed.
EngineState = tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]


def checked_state(state: object, *, version: int, max_tracked: int) -> EngineState | None:
    """The parts of ``state`` (an :meth:`Engine.state` as read back), or None if it is not one
    ``version`` wrote, or holds more than ``max_tracked`` of anything, or a malformed entry."""
    try:
        if not isinstance(state, dict) or state.get("v") != version:
            return None
        bots, candles, bus, incidents = (state[k] for k in ("bots", "candles", "bus", "incidents"))
        if not all(isinstance(x, dict) for x in (bots, candles, bus, incidents)):
            return None
        if max(len(bots), len(candles), len(bus)) > max_tracked or len(incidents) > 4 * max_tracked:
            return None
        for data in bots.values():
            if not isinstance(data, dict) or not _is_ms(data.get("seen")):
                return None
            if not isinstance(data.get("ref"), str) or not isinstance(data.get("symbol"), str):
                return None
        for data in candles.values():
            if (
                not isinstance(data, dict)
                or not _is_ms(data.get("seen"))
                or not isinstance(data.get("ref"), str)
            ):
                return None
        if not all(v is None or _is_ms(v) for v in bus.values()):
            return None
        for key, inc in incidents.items():
            if (
                not isinstance(inc, dict)
                or "\x00" not in key
                or inc.get("state") not in ("ok", "pending", "firing")
            ):
                return None
            if inc["state"] != "ok" and not _is_ms(inc.get("since", 0)):
                return None
            if inc["state"] == "firing" and not isinstance(inc.get("id"), str):
                return None
    except (KeyError, TypeError, AttributeError):
        return None
    return bots, candles, bus, incidents


def _is_ms(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**53
