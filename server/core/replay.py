"""Replay of a past window (the flight recorder, docs/protocol.md "Replay"): pure parts.

* the ``replay`` option of ``subscribe`` and the ``replay_control`` op, parsed and bounded;
* :class:`ReplayClock`, the pacing clock: recorded times (event ``ts``) played at ``speed``,
  fed "now" by the caller (the core reads no clock);
* the ``replay`` frames the server sends about a replay's state.

Every value a client gives is bounded here; anything else is a ``bad_request``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from server.errors import ProtocolError

#: Recorded times a replay may name: 2000-01-01 .. 2100-01-01 (the event schema's ts range).
MIN_MS: Final = 946_684_800_000
MAX_MS: Final = 4_102_444_800_000
MIN_SPEED: Final = 0.1
MAX_SPEED: Final = 1000.0
#: ``speed: "max"``: as fast as the connection takes the frames (no pacing).
MAX: Final = "max"
_ISO_MAX_CHARS: Final = 40

Speed = float | Literal["max"]
ControlAction = Literal["pause", "resume", "seek", "speed"]
CONTROL_ACTIONS: Final = ("pause", "resume", "seek", "speed")


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """The ``replay`` option of ``subscribe``: ``to_ms`` None means ``"live"`` (hand over at the edge)."""

    from_ms: int
    to_ms: int | None
    speed: Speed

    @property
    def to_live(self) -> bool:
        return self.to_ms is None


@dataclass(frozen=True, slots=True)
class ReplayControl:
    """``{"op":"replay_control","sub":...,"action":...}`` with ``to`` (seek) or ``speed`` (speed)."""

    ref: Any
    sub: str
    action: ControlAction
    to_ms: int | None = None
    speed: Speed | None = None


def parse_time(value: object, field: str) -> int:
    """A time given as Unix milliseconds or an ISO 8601 text (``Z`` or an offset; naive is UTC)."""
    if isinstance(value, bool):
        raise ProtocolError("bad_request", f"{field}: must be milliseconds or an ISO 8601 time")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value != int(value):
            raise ProtocolError("bad_request", f"{field}: must be whole milliseconds")
        ms = int(value)
    elif isinstance(value, str) and 0 < len(value) <= _ISO_MAX_CHARS:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ProtocolError("bad_request", f"{field}: {value[:40]!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = round(moment.timestamp() * 1000)
    else:
        raise ProtocolError("bad_request", f"{field}: must be milliseconds or an ISO 8601 time")
    if not MIN_MS <= ms <= MAX_MS:
        raise ProtocolError("bad_request", f"{field}: must be between the years 2000 and 2100")
    return ms


def parse_speed(value: object, field: str) -> Speed:
    if value == MAX and isinstance(value, str):
        return MAX
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError("bad_request", f'{field}: must be a number {MIN_SPEED:g}..{MAX_SPEED:g} or "max"')
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise ProtocolError("bad_request", f"{field}: must be between {MIN_SPEED:g} and {MAX_SPEED:g}")
    return float(value)


def parse_replay(raw: object) -> ReplayRequest | None:
    """The ``replay`` option of ``subscribe`` (None when absent)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ProtocolError("bad_request", "replay: must be an object {from, to, speed}")
    unknown = sorted(set(raw) - {"from", "to", "speed"})
    if unknown:
        raise ProtocolError(
            "bad_request", f"replay.{str(unknown[0])[:40]}: unknown key; known: from, to, speed"
        )
    if "from" not in raw:
        raise ProtocolError("bad_request", "replay.from: required (milliseconds or ISO 8601)")
    start = parse_time(raw["from"], "replay.from")
    end_raw = raw.get("to", "live")
    end = None if end_raw == "live" else parse_time(end_raw, "replay.to")
    if end is not None and end < start:
        raise ProtocolError("bad_request", "replay.to: must not be before replay.from")
    return ReplayRequest(start, end, parse_speed(raw.get("speed", 1), "replay.speed"))


def parse_control(raw: Mapping[str, Any], ref: Any) -> ReplayControl:
    """The ``replay_control`` op (the frame already parsed as a JSON object, ``ref`` checked)."""
    unknown = sorted(set(raw) - {"op", "ref", "sub", "action", "to", "speed"})
    if unknown:
        raise ProtocolError("bad_request", f"{str(unknown[0])[:40]}: unknown key for replay_control")
    sub = raw.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= 64:
        raise ProtocolError("bad_request", "sub: must be the id of a replay subscription")
    action = raw.get("action")
    if action not in CONTROL_ACTIONS or not isinstance(action, str):
        raise ProtocolError("bad_request", "action: must be one of pause, resume, seek, speed")
    if action == "seek":
        return ReplayControl(ref, sub, "seek", to_ms=parse_time(raw.get("to"), "to"))
    if action == "speed":
        return ReplayControl(ref, sub, "speed", speed=parse_speed(raw.get("speed"), "speed"))
    return ReplayControl(ref, sub, "pause" if action == "pause" else "resume")


class ReplayClock:
    """The replay's time: recorded milliseconds advancing at ``speed`` × wall time while playing.

    Fed the caller's monotonic "now" in seconds. ``speed`` "max" is never behind: every
    event is due at once (:meth:`wait_s` is 0), and its time follows the events played.
    """

    __slots__ = ("_anchor_ms", "_anchor_now", "paused", "speed")

    def __init__(self, start_ms: int, speed: Speed, now: float) -> None:
        self.speed: Speed = speed
        self.paused = False
        self._anchor_ms = float(start_ms)
        self._anchor_now = now

    def __repr__(self) -> str:
        return f"ReplayClock(speed={self.speed!r}, paused={self.paused}, at={self._anchor_ms:.0f})"

    def time_ms(self, now: float) -> int:
        """The recorded time being played at ``now``."""
        if self.paused or self.speed == MAX:
            return int(self._anchor_ms)
        return int(self._anchor_ms + (now - self._anchor_now) * 1000.0 * float(self.speed))

    def wait_s(self, ts: int, now: float) -> float:
        """Seconds of wall time until an event recorded at ``ts`` is due (0: now; inf: paused)."""
        if self.paused:
            return math.inf
        if self.speed == MAX:
            return 0.0
        ahead = ts - (self._anchor_ms + (now - self._anchor_now) * 1000.0 * float(self.speed))
        return max(0.0, ahead / 1000.0 / float(self.speed))

    def played(self, ts: int) -> None:
        """An event at ``ts`` was sent: at speed max the clock follows the events."""
        if self.speed == MAX and ts > self._anchor_ms:
            self._anchor_ms = float(ts)

    def _rebase(self, now: float) -> None:
        self._anchor_ms = float(self.time_ms(now))
        self._anchor_now = now

    def pause(self, now: float) -> None:
        self._rebase(now)
        self.paused = True

    def resume(self, now: float) -> None:
        self._anchor_now = now
        self.paused = False

    def set_speed(self, speed: Speed, now: float) -> None:
        self._rebase(now)
        self.speed = speed

    def seek(self, at_ms: int, now: float) -> None:
        self._anchor_ms = float(at_ms)
        self._anchor_now = now


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


ReplayState = Literal["playing", "paused", "seek", "speed", "end", "live"]


def replay_frame(
    sub: str,
    symbol: str,
    state: ReplayState,
    *,
    time_ms: int,
    speed: Speed,
    ref: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """``{"op":"replay","sub","symbol","state","time","speed"}``: what a replay is doing now.

    ``state``: ``playing`` (started or resumed), ``paused``, ``seek`` (a fresh ``history``
    follows), ``speed`` (changed), ``end`` (reached ``to``: nothing more comes), ``live``
    (handed over to the live stream: a ``subscribed`` for the live subscription follows).
    """
    frame: dict[str, Any] = {
        "op": "replay",
        "sub": sub,
        "symbol": symbol,
        "state": state,
        "time": time_ms,
        "speed": speed,
    }
    if extra:
        frame.update(extra)
    if ref is not None:
        frame["ref"] = ref
    return _dumps(frame)


def replay_subscribed_frame(
    ref: Any, sub: str, symbol: str, flt: Mapping[str, Any], request: ReplayRequest
) -> str:
    """The answer to a ``subscribe`` with ``replay``: the replay's id (``r``…) and its window."""
    frame: dict[str, Any] = {
        "op": "subscribed",
        "sub": sub,
        "symbol": symbol,
        "filter": flt,
        "replay": {
            "from": request.from_ms,
            "to": "live" if request.to_ms is None else request.to_ms,
            "speed": request.speed,
        },
        "replaced": False,
    }
    if ref is not None:
        frame["ref"] = ref
    return _dumps(frame)
