"""Wire protocol v1 (docs/protocol.md): parse client frames, build server frames. Pure: no I/O.

Server frames that carry events are built by string concatenation around the events'
stored JSON, which is never decoded and re-encoded on the way out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from publishers.events import SYMBOL_PATTERN
from server import __version__
from server.core.displays import DisplayReport, parse_display
from server.core.filters import EventFilter, parse_filter
from server.core.perfwire import PerfSubscribe, parse_perf
from server.core.replay import ReplayControl, ReplayRequest, parse_control, parse_replay
from server.errors import ProtocolError

PROTOCOL_VERSION: Final = 1
ERROR_CODES: Final = (
    "bad_request",
    "unauthorized",
    "forbidden",
    "too_many",
    "rate_limited",
    "busy",
    "internal",
)

# Close codes (RFC 6455 and ours).
CLOSE_GOING_AWAY: Final = 1001
CLOSE_UNSUPPORTED: Final = 1003  # binary frame
CLOSE_POLICY: Final = 1008  # flood
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL: Final = 1011
CLOSE_RESTART: Final = 1012
CLOSE_UNAUTHORIZED: Final = 4001
CLOSE_TOKEN_EXPIRED: Final = 4003
CLOSE_TOO_SLOW: Final = 4008

_MAX_REF: Final = 64

#: A request's ``ref``: a string or a number, echoed back exactly as the client gave it.
Ref = str | int | float | None


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    minutes: int
    max_points: int
    figure: bool = False


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """Replay after ``seq`` of ``epoch``; ``epoch`` None (with ``seq`` 0) means "I have nothing":
    the whole current epoch (:func:`resolve_resume`)."""

    epoch: str | None
    seq: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    ref: Ref
    symbol: str
    filter: EventFilter
    history: HistoryRequest | None
    resume: ResumeRequest | None
    #: Replay a past window instead of following live (server/core/replay.py).
    replay: ReplayRequest | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    ref: Ref
    sub: str


@dataclass(frozen=True, slots=True)
class Ping:
    ref: Ref


@dataclass(frozen=True, slots=True)
class Display:
    """A wall's render heartbeat (docs/walls.md); parsed by server/core/displays.py."""

    ref: Ref
    report: DisplayReport


ClientMessage = Subscribe | Unsubscribe | Ping | ReplayControl | PerfSubscribe | Display


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds a client frame must respect (from config)."""

    max_minutes: int = 43_200
    max_points: int = 20_000
    default_points: int = 2000


def is_text(value: str) -> bool:
    """``value`` can be sent in a frame: no lone surrogate (JSON's ``"\\ud800"`` decodes to one)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages that quote client input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _ref(raw: Mapping[str, Any]) -> Ref:
    ref = raw.get("ref")
    if ref is None:
        return None
    if isinstance(ref, bool):
        raise ProtocolError("bad_request", "ref: must be a string or a number, not true or false")
    if isinstance(ref, int):
        if -(10**_MAX_REF) < ref < 10**_MAX_REF:
            return ref
    elif isinstance(ref, float):
        if math.isfinite(ref):
            return ref
    elif isinstance(ref, str) and len(ref) <= _MAX_REF and is_text(ref):
        return ref
    raise ProtocolError("bad_request", f"ref: must be a string or number of at most {_MAX_REF} characters")


def extract_ref(text: str) -> Ref:
    """The ``ref`` of a frame that will not be handled (a refused one), if it has a valid one."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    try:
        return _ref(raw)
    except ProtocolError:
        return None


def _int(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError("bad_request", f"{field}: must be a whole number")
    if value != int(value) or not low <= value <= high:
        raise ProtocolError(
            "bad_request", f"{field}: must be a whole number between {low} and {high}, got {value}"
        )
    return int(value)


def _history(raw: object, limits: Limits) -> HistoryRequest | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ProtocolError("bad_request", "history: must be an object {minutes, max_points}")
    unknown = sorted(set(raw) - {"minutes", "max_points", "figure"})
    if unknown:
        raise ProtocolError(
            "bad_request", f"history.{unknown[0][:40]}: unknown key; known: minutes, max_points, figure"
        )
    minutes = _int(raw.get("minutes", 60), "history.minutes", 1, limits.max_minutes)
    points = _int(raw.get("max_points", limits.default_points), "history.max_points", 10, limits.max_points)
    figure = raw.get("figure", False)
    if not isinstance(figure, bool):
        raise ProtocolError("bad_request", "history.figure: must be true or false")
    return HistoryRequest(minutes, points, figure)


def _resume(raw: object) -> ResumeRequest | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ProtocolError("bad_request", "resume: must be an object {epoch, seq}")
    epoch = raw.get("epoch")
    seq = _int(raw.get("seq"), "resume.seq", 0, 2**62)
    if epoch is None:  # what `subscribed` says of a symbol never published: "I have nothing"
        if seq != 0:
            raise ProtocolError("bad_request", "resume.seq: must be 0 when resume.epoch is null")
        return ResumeRequest(None, 0)
    if (
        not isinstance(epoch, str)
        or not 0 < len(epoch) <= 64
        or not (epoch.isascii() and epoch.isprintable())
    ):
        raise ProtocolError(
            "bad_request", "resume.epoch: must be the epoch string of an earlier frame, or null"
        )
    return ResumeRequest(epoch, seq)


def resolve_resume(resume: ResumeRequest | None, current_epoch: str | None) -> ResumeRequest | None:
    """``{"epoch": null, "seq": 0}`` as the replay of the whole current epoch (None: the symbol was
    never published, so there is nothing to replay and the subscription starts live at 0)."""
    if resume is None or resume.epoch is not None:
        return resume
    return None if current_epoch is None else ResumeRequest(current_epoch, 0)


def parse_client_frame(text: str, limits: Limits = Limits()) -> ClientMessage:
    """Parse one client text frame; raises ProtocolError naming the bad field (with the ref if known)."""
    try:
        raw = json.loads(text)
    except RecursionError:
        raise ProtocolError("bad_request", "frame: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer past Python's 4,300-digit limit
        if "digits" in str(exc):
            raise ProtocolError("bad_request", "frame: a number has too many digits") from None
        raise ProtocolError("bad_request", "frame is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", "frame must be a JSON object")
    ref = None
    try:
        ref = _ref(raw)
        op = raw.get("op")
        if op == "subscribe":
            return _subscribe(raw, ref, limits)
        if op == "unsubscribe":
            sub = raw.get("sub")
            if not isinstance(sub, str) or not sub:
                raise ProtocolError("bad_request", "sub: must be the id of a subscription")
            return Unsubscribe(ref, sub)
        if op == "ping":
            return Ping(ref)
        if op == "replay_control":
            return parse_control(raw, ref)
        if op == "perf":
            return parse_perf(raw, ref)
        if op == "display":
            return Display(ref, parse_display(raw))
        raise ProtocolError(
            "bad_request",
            f"op: unknown op {shown(op)}; known: subscribe, unsubscribe, ping, replay_control, perf, display",
        )
    except ProtocolError as exc:
        raise ProtocolError(exc.code, exc.message, ref=ref) from None


def _subscribe(raw: Mapping[str, Any], ref: Ref, limits: Limits) -> Subscribe:
    unknown = sorted(set(raw) - {"op", "ref", "symbol", "filter", "history", "resume", "replay"})
    if unknown:
        raise ProtocolError("bad_request", f"{unknown[0][:40]}: unknown key for subscribe")
    symbol = raw.get("symbol")
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.match(symbol):
        raise ProtocolError("bad_request", f"symbol: {shown(symbol)} is not a symbol")
    return Subscribe(
        ref,
        symbol,
        parse_filter(raw.get("filter")),
        _history(raw.get("history"), limits),
        _resume(raw.get("resume")),
        _replay_option(raw),
    )


def _replay_option(raw: Mapping[str, Any]) -> ReplayRequest | None:
    replay = parse_replay(raw.get("replay"))
    if replay is not None and raw.get("resume") is not None:
        raise ProtocolError("bad_request", "replay: cannot be combined with resume")
    return replay


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def hello_frame(heartbeat_s: float, instance: str) -> str:
    """The first frame; ``instance`` (host:pid) tells which gateway process a client reached."""
    return _dumps(
        {
            "op": "hello",
            "protocol": PROTOCOL_VERSION,
            "server": f"signalpush/{__version__}",
            "heartbeat_s": heartbeat_s,
            "instance": instance,
        }
    )


def subscribed_frame(
    ref: Ref,
    sub: str,
    symbol: str,
    epoch: str | None,
    seq: int,
    flt: Mapping[str, Any] | None = None,
    *,
    replaced: bool = False,
) -> str:
    """``filter`` is the subscription's canonical filter (what makes two subscriptions the same);
    ``replaced`` says the subscribe replaced this connection's earlier one with that filter."""
    frame: dict[str, Any] = {"op": "subscribed", "sub": sub, "symbol": symbol, "epoch": epoch, "seq": seq}
    if flt is not None:
        frame["filter"] = flt
    frame["replaced"] = replaced
    if ref is not None:
        frame["ref"] = ref
    return _dumps(frame)


def events_frame(
    sub: str, symbol: str, epoch: str | None, from_seq: int, to_seq: int, items: Sequence[str]
) -> str:
    """An ``events`` frame around already-encoded event JSON strings (no re-encoding)."""
    head = _dumps(
        {"op": "events", "sub": sub, "symbol": symbol, "epoch": epoch, "from_seq": from_seq, "to_seq": to_seq}
    )
    return f'{head[:-1]},"items":[{",".join(items)}]}}'


def history_frame(
    sub: str,
    symbol: str,
    epoch: str | None,
    to_seq: int,
    data: Mapping[str, Any],
    *,
    reset: bool,
    truncated: bool = False,
    omitted: int = 0,
    figure: Mapping[str, Any] | None = None,
) -> str:
    frame: dict[str, Any] = {
        "op": "history",
        "sub": sub,
        "symbol": symbol,
        "epoch": epoch,
        "reset": reset,
        "to_seq": to_seq,
        "data": data,
    }
    if truncated:
        frame["truncated"] = True
        frame["omitted"] = omitted
    if figure is not None:
        frame["figure"] = figure
    return _dumps(frame)


def history_frame_bytes(
    sub: str,
    symbol: str,
    epoch: str | None,
    to_seq: int,
    body: bytes,
    *,
    reset: bool,
    truncated: bool = False,
    omitted: int = 0,
) -> bytes:
    """A ``history`` frame around ``body``, the already-encoded ``"data":...`` (and ``"figure":...``)
    members: the multi-MiB part is never re-encoded on the gateway's loop."""
    head: dict[str, Any] = {
        "op": "history",
        "sub": sub,
        "symbol": symbol,
        "epoch": epoch,
        "reset": reset,
        "to_seq": to_seq,
    }
    if truncated:
        head["truncated"] = True
        head["omitted"] = omitted
    return b"".join((_dumps(head)[:-1].encode(), b",", body, b"}"))


def reset_frame(sub: str, symbol: str, reason: str) -> str:
    return _dumps({"op": "reset", "sub": sub, "symbol": symbol, "reason": reason})


def status_frame(bus_up: bool, now_ms: int) -> str:
    """``time`` is the gateway's clock (the caller reads it: the core keeps no clock)."""
    return _dumps({"op": "status", "bus": "up" if bus_up else "down", "time": now_ms})


def pong_frame(ref: Ref, now_ms: int) -> str:
    frame: dict[str, Any] = {"op": "pong", "time": now_ms}
    if ref is not None:
        frame["ref"] = ref
    return _dumps(frame)


def unsubscribed_frame(ref: Ref, sub: str) -> str:
    frame: dict[str, Any] = {"op": "unsubscribed", "sub": sub}
    if ref is not None:
        frame["ref"] = ref
    return _dumps(frame)


def error_frame(ref: Ref, code: str, message: str) -> str:
    """An ``error``; ASCII-escaped, so whatever client text a message quotes can be sent."""
    frame: dict[str, Any] = {"op": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)
