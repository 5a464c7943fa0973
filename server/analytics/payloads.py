"""JSON bodies of ``GET /api/bots`` and ``GET /api/performance`` (the gateway wires the routes).

Bodies are JSON-safe: NaN and ±inf become ``null``, timestamps become ms since the epoch.
A bad query value raises ``ProtocolError("bad_request", "<field>: ...")``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import pandas as pd
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers.events import MAX_NAME_LENGTH, STATUSES
from server.analytics.queries import BotFilter
from server.analytics.service import DAY_MS, DEFAULT_DAYS, BotDataService, PerformanceReport
from server.errors import ProtocolError

#: Longest window /api/performance accepts, in days.
MAX_DAYS: Final = 3650
#: Most ids in ``bot_ids``, and the largest id (a signed 64-bit integer).
MAX_BOT_IDS: Final = 1000
MAX_BOT_ID: Final = 2**63 - 1
#: Query keys the wall may pass along with a performance request that do not apply here.
_IGNORED_KEYS: Final = frozenset(("token", "kinds", "signal_types", "min_confidence", "sides"))
_LIST_KEYS: Final = ("bots", "strategies", "symbols", "statuses")
_KNOWN_KEYS: Final = frozenset((*_LIST_KEYS, "bot_ids", "active_only", "days", "end"))


def json_value(value: Any) -> Any:
    """One cell as JSON: NaN/inf/NaT -> None, Timestamp -> ms, numpy scalars -> Python."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return int(value.value // 1_000_000)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float | int | str | bool):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def frame_records(frame: pd.DataFrame, *, keep_index: bool = False) -> list[dict[str, Any]]:
    """Rows of ``frame`` as JSON-safe dicts (with the index as a column when ``keep_index``)."""
    if keep_index:
        frame = frame.reset_index()
    columns = [str(c) for c in frame.columns]
    return [
        {column: json_value(cell) for column, cell in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


async def bots_payload(engine: AsyncEngine, *, since_ms: int | None = None) -> dict[str, Any]:
    """``GET /api/bots``: every bot in the registry, by id, each with ``symbols``: the symbols it
    reported status, traded or signalled on since ``since_ms`` (all time when None), sorted."""
    service = BotDataService(engine=engine)
    bots = frame_records(await service.get_bots_async())
    symbols = await service.get_bot_symbols_async(since_ms)
    for bot in bots:
        bot["symbols"] = symbols.get(str(bot["name"]), [])
    return {"bots": bots, "generated": int(time.time() * 1000)}


def _list(query: Mapping[str, str], key: str) -> tuple[str, ...] | None:
    if key not in query:
        return None
    names = tuple(part.strip() for part in query[key].split(",") if part.strip())
    for name in names:
        if len(name) > MAX_NAME_LENGTH:
            raise ProtocolError("bad_request", f"{key}: {name[:20]!r}... is longer than {MAX_NAME_LENGTH}")
    if key == "statuses":
        for name in names:
            if name not in STATUSES:
                raise ProtocolError("bad_request", f"statuses: {name!r} is not one of {', '.join(STATUSES)}")
    return names


def parse_performance_query(
    query: Mapping[str, str], *, now_ms: int | None = None
) -> tuple[BotFilter, int, int]:
    """(filter, start ms, end ms) from ``/api/performance`` query parameters."""
    unknown = sorted(set(query) - _KNOWN_KEYS - _IGNORED_KEYS)
    if unknown:
        raise ProtocolError(
            "bad_request", f"{unknown[0]}: unknown parameter; known: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    days: float = DEFAULT_DAYS
    if "days" in query:
        try:
            days = float(query["days"])
        except ValueError:
            raise ProtocolError("bad_request", f"days: {query['days']!r} is not a number") from None
        if not math.isfinite(days) or not 0 < days <= MAX_DAYS:
            raise ProtocolError(
                "bad_request", f"days: must be more than 0 and at most {MAX_DAYS}, got {days}"
            )
    end = now_ms if now_ms is not None else int(time.time() * 1000)
    if "end" in query:
        try:
            end = int(query["end"])
        except ValueError:
            raise ProtocolError("bad_request", f"end: {query['end']!r} is not ms since the epoch") from None
        if not 946_684_800_000 <= end < 4_102_444_800_000:
            raise ProtocolError("bad_request", f"end: {end} is not ms since the epoch in 2000..2100")
    bot_ids = None
    if "bot_ids" in query:
        try:
            bot_ids = tuple(int(part) for part in query["bot_ids"].split(",") if part.strip())
        except ValueError:
            raise ProtocolError(
                "bad_request", f"bot_ids: {query['bot_ids'][:40]!r} is not a list of integers"
            ) from None
        # Ids are SQL BIGINTs: a bigger number would fail in the driver, not here.
        if len(bot_ids) > MAX_BOT_IDS or not all(0 < i <= MAX_BOT_ID for i in bot_ids):
            raise ProtocolError(
                "bad_request", f"bot_ids: at most {MAX_BOT_IDS} ids, each between 1 and {MAX_BOT_ID}"
            )
    active_only = False
    if "active_only" in query:
        text = query["active_only"].strip().lower()
        if text not in ("1", "0", "true", "false", "yes", "no"):
            raise ProtocolError(
                "bad_request", f"active_only: must be true or false, got {query['active_only']!r}"
            )
        active_only = text in ("1", "true", "yes")
    flt = BotFilter(
        bots=_list(query, "bots"),
        strategies=_list(query, "strategies"),
        symbols=_list(query, "symbols"),
        statuses=_list(query, "statuses"),
        bot_ids=bot_ids,
        active_only=active_only,
    )
    return flt, end - int(days * DAY_MS), end


def _filter_json(flt: BotFilter) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dataclasses.asdict(flt).items():
        if value is not None and value is not False:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def report_payload(report: PerformanceReport, flt: BotFilter | None = None) -> dict[str, Any]:
    """A :class:`PerformanceReport` as JSON: per bot, per strategy (ranked) and overall."""
    overall = frame_records(report.overall)
    return {
        "window": {
            "start": report.start_ms,
            "end": report.end_ms,
            "days": round((report.end_ms - report.start_ms) / DAY_MS, 6),
        },
        "filter": _filter_json(flt or BotFilter()),
        "bots": frame_records(report.by_bot, keep_index=True),
        "strategies": frame_records(report.by_strategy, keep_index=True),
        "overall": overall[0] if overall else None,
        "last_prices": report.last_prices,
        "timing_ms": {"query": round(report.query_ms, 3), "compute": round(report.compute_ms, 3)},
    }


async def performance_payload(engine: AsyncEngine, query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /api/performance?bots=&strategies=&symbols=&statuses=&bot_ids=&active_only=&days=&end=``."""
    flt, start_ms, end_ms = parse_performance_query(query)
    report = await BotDataService(engine=engine).performance_report_async(flt, start_ms, end_ms)
    return report_payload(report, flt)


#: Query keys of ``/api/signal-quality`` besides the performance ones: (name, low, high).
_QUALITY_KEYS: Final = {"horizon_s": (0.0, 86_400.0), "buckets": (1.0, 100.0)}


async def signal_quality_payload(engine: AsyncEngine, query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /api/signal-quality``: the performance parameters plus ``horizon_s`` and ``buckets``."""
    from server.analytics.quality import QualityRules

    rest = {k: v for k, v in query.items() if k not in _QUALITY_KEYS}
    flt, start_ms, end_ms = parse_performance_query(rest)
    numbers: dict[str, float] = {}
    for key, (low, high) in _QUALITY_KEYS.items():
        if key not in query:
            continue
        try:
            value = float(query[key])
        except ValueError:
            raise ProtocolError("bad_request", f"{key}: {query[key][:20]!r} is not a number") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise ProtocolError("bad_request", f"{key}: must be between {low:g} and {high:g}")
        numbers[key] = value
    rules = QualityRules(
        horizon_ms=int(numbers.get("horizon_s", 300.0) * 1000), buckets=int(numbers.get("buckets", 10))
    )
    quality = await BotDataService(engine=engine).get_signal_quality_async(flt, start_ms, end_ms, rules)
    return {**quality.payload(), "filter": _filter_json(flt)}
