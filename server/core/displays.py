"""The wall fleet's pure core (docs/walls.md): display heartbeats, their health, remote commands,
saved views. No I/O: the gateway (server/gateway/displays.py) stores and routes what this parses.

Everything here is hostile input twice over: a heartbeat comes from a browser, and a record
comes back from Redis (anyone with write access to it may have changed it). Both go through
the same bounded parsers; nothing allocates in proportion to a number it carries.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from server.errors import ProtocolError

#: A display id or a saved view's name: ``lobby-left``, ``trading-floor``.
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Most tiles a heartbeat may describe (a wall with more reports the first ones).
MAX_TILES: Final = 64
#: Most URL parameters a heartbeat, a command or a view may carry, their longest key and value.
MAX_PARAMS: Final = 32
MAX_KEY_CHARS: Final = 32
MAX_VALUE_CHARS: Final = 512
MAX_TILE_ID_CHARS: Final = 64
#: What a wall says about itself besides its numbers.
STATUSES: Final = ("ok", "token_expired", "unauthorized", "no_symbols", "error")
#: The health of a display, worst last.
HEALTHS: Final = ("live", "not drawing", "stale", "dead")
#: Commands an operator may send a wall.
ACTIONS: Final = ("reload", "set", "theme", "identify", "playlist", "view")
THEMES: Final = ("dark", "dim", "night")
#: Wall URL parameters a ``set`` command or a saved view may change (docs/client.md).
WALL_PARAMS: Final = frozenset(
    {
        "symbols",
        "minutes",
        "cols",
        "title",
        "palette",
        "scale",
        "markers",
        "tz",
        "legend",
        "kpis",
        "theme",
        "kinds",
        "bots",
        "strategies",
        "signal_types",
        "sides",
        "min_confidence",
        "stale_s",
        "dead_s",
    }
)
_VALUE_CHARS: Final = re.compile(r"[^\x00-\x1f\x7f]*")


@dataclass(frozen=True, slots=True)
class TileReport:
    """One tile of a heartbeat: the last seq it drew and how long ago it drew."""

    id: str
    seq: int
    age_s: float


@dataclass(frozen=True, slots=True)
class DisplayReport:
    """A wall's render heartbeat (the ``display`` op, docs/protocol.md)."""

    display: str
    tiles: tuple[TileReport, ...] = ()
    fps: float = 0.0
    long_frames: int = 0
    heap_mb: float = 0.0
    page_age_s: float = 0.0
    reconnects: int = 0
    heals: int = 0
    status: str = "ok"
    params: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "display": self.display,
            "tiles": [
                {"id": t.id, "seq": t.seq, "age_s": None if t.age_s < 0 else t.age_s} for t in self.tiles
            ],
            "fps": self.fps,
            "long_frames": self.long_frames,
            "heap_mb": self.heap_mb,
            "page_age_s": self.page_age_s,
            "reconnects": self.reconnects,
            "heals": self.heals,
            "status": self.status,
            "params": dict(self.params),
        }


@dataclass(frozen=True, slots=True)
class DisplayRecord:
    """A display as stored in Redis: its last heartbeat and who received it when."""

    report: DisplayReport
    #: The gateway process holding the wall's socket (host:pid), "" when none does.
    gateway: str
    #: The token's name (``anonymous`` with auth off).
    principal: str
    #: When the last heartbeat arrived, and when the page was loaded (ms since the epoch).
    received_ms: int
    since_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report.to_json(),
            "gateway": self.gateway,
            "principal": self.principal,
            "received_ms": self.received_ms,
            "since_ms": self.since_ms,
        }

    def encode(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _printable(value: str) -> bool:
    """No control characters and no lone surrogate (JSON's ``"\\ud800"``: it cannot be stored)."""
    if not _VALUE_CHARS.fullmatch(value):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_name(value: object, field_name: str) -> str:
    """A display id or view name; ProtocolError(bad_request) naming ``field_name`` otherwise."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ProtocolError(
            "bad_request",
            f"{field_name}: must be 1-64 letters, digits, '.', '_' or '-' (starting alphanumeric)",
        )
    return value


def _number(raw: Mapping[str, Any], key: str, low: float, high: float, default: float = 0.0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError("bad_request", f"{key}: must be a number")
    if not low <= value <= high:
        raise ProtocolError("bad_request", f"{key}: must be between {low:g} and {high:g}")
    return float(value)


def _whole(raw: Mapping[str, Any], key: str, high: int) -> int:
    value = _number(raw, key, 0, high)
    if value != int(value):
        raise ProtocolError("bad_request", f"{key}: must be a whole number")
    return int(value)


def check_params(raw: object, field_name: str, *, known: frozenset[str] | None = None) -> dict[str, str]:
    """String parameters: at most MAX_PARAMS, short printable keys and values; ``known`` limits keys."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ProtocolError("bad_request", f"{field_name}: must be an object of strings")
    if len(raw) > MAX_PARAMS:
        raise ProtocolError("bad_request", f"{field_name}: at most {MAX_PARAMS} parameters")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if (
            not isinstance(key, str)
            or not 0 < len(key) <= MAX_KEY_CHARS
            or not key.replace("_", "").isalnum()
            or not key.isascii()
        ):
            raise ProtocolError("bad_request", f"{field_name}: a key is not a parameter name")
        if known is not None and key not in known:
            raise ProtocolError("bad_request", f"{field_name}.{key}: not a wall parameter it may set")
        if key == "token":
            continue  # never stored nor shown: a token is a secret
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS or not _printable(value):
            raise ProtocolError(
                "bad_request", f"{field_name}.{key}: must be a string of at most {MAX_VALUE_CHARS} characters"
            )
        out[key] = value
    return out


def _tiles(raw: object) -> tuple[TileReport, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_TILES:
        raise ProtocolError("bad_request", f"tiles: must be a list of at most {MAX_TILES} tiles")
    tiles = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise ProtocolError("bad_request", "tiles: each tile must be an object {id, seq, age_s}")
        tile_id = item.get("id")
        if not isinstance(tile_id, str) or not 0 < len(tile_id) <= MAX_TILE_ID_CHARS:
            raise ProtocolError("bad_request", "tiles.id: must be a string of 1-64 characters")
        if not _printable(tile_id):
            raise ProtocolError("bad_request", "tiles.id: must be printable")
        seq = item.get("seq", 0)
        seq = 0 if seq is None else seq
        tiles.append(
            TileReport(tile_id, _whole({"tiles.seq": seq}, "tiles.seq", 2**62), _age(item.get("age_s")))
        )
    return tuple(tiles)


def _age(value: object) -> float:
    """A tile's age; -1 when it never drew (null)."""
    if value is None:
        return -1.0
    return _number({"tiles.age_s": value}, "tiles.age_s", 0, 10**9)


_REPORT_KEYS: Final = frozenset(
    {
        "op",
        "ref",
        "display",
        "tiles",
        "fps",
        "long_frames",
        "heap_mb",
        "page_age_s",
        "reconnects",
        "heals",
        "status",
        "params",
    }
)


def parse_display(raw: Mapping[str, Any]) -> DisplayReport:
    """The ``display`` op's fields (``op`` and ``ref`` aside); ProtocolError naming a bad field."""
    unknown = sorted(str(k)[:40] for k in set(raw) - _REPORT_KEYS)
    if unknown:
        raise ProtocolError("bad_request", f"{unknown[0]}: unknown key for display")
    status = raw.get("status", "ok")
    if status not in STATUSES:
        raise ProtocolError("bad_request", f"status: must be one of {', '.join(STATUSES)}")
    return DisplayReport(
        display=check_name(raw.get("display"), "display"),
        tiles=_tiles(raw.get("tiles")),
        fps=_number(raw, "fps", 0, 1000),
        long_frames=_whole(raw, "long_frames", 10**12),
        heap_mb=_number(raw, "heap_mb", 0, 10**7),
        page_age_s=_number(raw, "page_age_s", 0, 10**9),
        reconnects=_whole(raw, "reconnects", 10**9),
        heals=_whole(raw, "heals", 10**9),
        status=str(status),
        params=check_params(raw.get("params"), "params"),
    )


def make_record(
    report: DisplayReport, *, gateway: str, principal: str, now_ms: int, status: str | None = None
) -> DisplayRecord:
    """The record of a heartbeat received at ``now_ms`` (``status`` overrides the wall's own)."""
    if status is not None:
        report = dataclasses.replace(report, status=status)
    since = now_ms - int(report.page_age_s * 1000)
    return DisplayRecord(report, gateway, principal[:128], now_ms, since)


def parse_record(text: str | bytes) -> DisplayRecord:
    """A record read back from Redis; ProtocolError when it is not one of ours (drop it, count it)."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_request", "display record: not JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", "display record: not an object")
    meta = {k: raw.pop(k, None) for k in ("gateway", "principal", "received_ms", "since_ms")}
    report = parse_display(raw)
    gateway, principal = meta["gateway"], meta["principal"]
    if not isinstance(gateway, str) or len(gateway) > 256 or not isinstance(principal, str):
        raise ProtocolError("bad_request", "display record: gateway and principal must be strings")
    received = _whole({"received_ms": meta["received_ms"]}, "received_ms", 2**53)
    since = _whole({"since_ms": meta["since_ms"]}, "since_ms", 2**53)
    return DisplayRecord(report, gateway, principal[:128], received, since)


# -- health ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthRules:
    """When a display is stale, dead, or alive but not drawing (``walls.*`` in config)."""

    stale_s: float = 15.0
    dead_s: float = 60.0
    #: Below this many frames a second the render loop counts as stalled.
    min_fps: float = 1.0


def health(record: DisplayRecord, now_ms: int, rules: HealthRules = HealthRules()) -> str:
    """``live``, ``stale`` (heartbeats late), ``dead`` (no heartbeat for ``dead_s``) or ``not drawing``
    (heartbeats arrive but the render loop stalled, no tile is up, or the wall says why it cannot draw)."""
    age_s = (now_ms - record.received_ms) / 1000
    if age_s > rules.dead_s:
        return "dead"
    if age_s > rules.stale_s:
        return "stale"
    report = record.report
    if report.status != "ok" or report.fps < rules.min_fps or not report.tiles:
        return "not drawing"
    if all(tile.age_s < 0 for tile in report.tiles):
        return "not drawing"
    return "live"


@dataclass(frozen=True, slots=True)
class DisplayStaleCondition:
    """ "Display stale for N s": no heartbeat from it for ``seconds`` (for alert rules)."""

    seconds: float

    def holds(self, record: DisplayRecord, now_ms: int) -> bool:
        return now_ms - record.received_ms > self.seconds * 1000

    def stale(self, records: Iterable[DisplayRecord], now_ms: int) -> list[str]:
        """The ids of the displays for which the condition holds, sorted."""
        return sorted(r.report.display for r in records if self.holds(r, now_ms))


# -- commands and views -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """An operator's command to one display (``POST /api/walls/{id}/command``)."""

    action: str
    params: Mapping[str, str] = field(default_factory=dict)

    def frame(self, command_id: str) -> str:
        """The ``command`` frame the addressed wall receives."""
        body = {"op": "command", "id": command_id, "action": self.action, "params": dict(self.params)}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def parse_command(params: Mapping[str, str]) -> Command:
    """A command from query parameters: ``action`` and what it needs; ProtocolError naming a bad one.

    * ``reload``; ``identify`` (``seconds``, 1-120, default 10);
    * ``set``: wall parameters (``symbols``, filters, ``minutes``, ``cols``, ...);
    * ``theme``: ``theme`` = dark | dim | night;
    * ``playlist``: ``views`` (names, comma-separated; empty stops it) and ``every_s`` (10-86400);
    * ``view``: ``name`` of a saved view.
    """
    rest = {k: v for k, v in params.items() if k not in ("action", "token")}
    action = params.get("action", "")
    if action not in ACTIONS:
        raise ProtocolError("bad_request", f"action: must be one of {', '.join(ACTIONS)}")
    if action == "reload":
        _only(rest, ())
        return Command("reload")
    if action == "identify":
        _only(rest, ("seconds",))
        seconds = _query_number(rest.get("seconds", "10"), "seconds", 1, 120)
        return Command("identify", {"seconds": f"{seconds:g}"})
    if action == "theme":
        _only(rest, ("theme",))
        if rest.get("theme") not in THEMES:
            raise ProtocolError("bad_request", f"theme: must be one of {', '.join(THEMES)}")
        return Command("theme", {"theme": rest["theme"]})
    if action == "view":
        _only(rest, ("name",))
        return Command("view", {"name": check_name(rest.get("name"), "name")})
    if action == "playlist":
        _only(rest, ("views", "every_s"))
        names = [n for n in rest.get("views", "").split(",") if n]
        if len(names) > MAX_PARAMS:
            raise ProtocolError("bad_request", f"views: at most {MAX_PARAMS} views")
        for name in names:
            check_name(name, "views")
        every = _query_number(rest.get("every_s", "60"), "every_s", 10, 86_400)
        return Command("playlist", {"views": ",".join(names), "every_s": f"{every:g}"})
    if not rest:
        raise ProtocolError("bad_request", "set: name at least one wall parameter to change")
    return Command("set", check_params(rest, "set", known=WALL_PARAMS))


def _only(params: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise ProtocolError("bad_request", f"{extra[0][:40]}: not a parameter of this action")


def _query_number(text: str, key: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProtocolError("bad_request", f"{key}: {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ProtocolError("bad_request", f"{key}: must be between {low:g} and {high:g}")
    return value


def parse_view(name: object, params: object) -> tuple[str, dict[str, str]]:
    """A saved view (name -> wall parameters); ProtocolError naming what is wrong."""
    checked = check_params(params, "view", known=WALL_PARAMS)
    if not checked:
        raise ProtocolError("bad_request", "view: name at least one wall parameter")
    return check_name(name, "name"), checked


def parse_stored_view(name: bytes | str, value: bytes | str) -> tuple[str, dict[str, str]]:
    """A view read back from Redis (its hash field and JSON value)."""
    try:
        text_name = name.decode() if isinstance(name, bytes) else name
        params = json.loads(value)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_request", "view: not JSON") from None
    return parse_view(text_name, params)
