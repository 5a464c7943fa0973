"""Turn a pandas DataFrame of candles, signals or trades into validated events.

Used by ``publish_frame`` and ``signalpush import`` to load history from exchanges or
backtests. The kind is taken from a ``kind`` column, else from the ``kind=`` argument,
else guessed from the columns (open/high/low/close: candle; side/action: trade;
type/confidence: signal). The time comes from a ``ts`` column (ms, or datetimes),
else a ``timestamp``/``time`` column, else a DatetimeIndex.
"""

from __future__ import annotations

from typing import Any, cast

import pandas as pd

from publishers.events import KINDS, Event, InvalidEventError, event_from_dict

_TIME_COLUMNS = ("ts", "timestamp", "time", "datetime", "date")


def infer_kind(columns: set[str]) -> str:
    if {"open", "high", "low", "close"} <= columns:
        return "candle"
    if {"side", "action"} <= columns:
        return "trade"
    if {"type", "confidence"} <= columns or {"signal_type", "confidence"} <= columns:
        return "signal"
    if "status" in columns:
        return "bot"
    raise InvalidEventError(
        "kind", "cannot tell the kind from the columns; add a 'kind' column or pass kind="
    )


def _ms_column(frame: pd.DataFrame) -> pd.Series:
    for name in _TIME_COLUMNS:
        if name in frame.columns:
            column = frame[name]
            break
    else:
        if isinstance(frame.index, pd.DatetimeIndex):
            column = frame.index.to_series(index=frame.index)
        else:
            raise InvalidEventError("ts", "no ts/timestamp column and no DatetimeIndex")
    if not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_datetime64_any_dtype(column):
        # Text (a CSV): numbers as ms, else dates/times (UTC unless they say otherwise).
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().all():
            column = numeric
        else:
            try:
                column = pd.to_datetime(column, utc=True, format="mixed")
            except (ValueError, TypeError) as exc:
                raise InvalidEventError("ts", f"cannot read the times: {exc}") from None
    if pd.api.types.is_datetime64_any_dtype(column):
        as_utc = column.dt.tz_localize("UTC") if column.dt.tz is None else column.dt.tz_convert("UTC")
        millis: pd.Series = (as_utc - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
        return millis
    return column


def events_from_frame(
    frame: pd.DataFrame,
    *,
    kind: str | None = None,
    symbol: str | None = None,
    bot: str | None = None,
    strategy: str | None = None,
    timeframe: str = "1m",
) -> list[Event]:
    """Validate every row and return the events in row order (nothing is sent here).

    ``symbol``, ``bot`` and ``strategy`` fill in for missing columns. A bad row raises
    :class:`InvalidEventError` naming the field and the row number.
    """
    if kind is not None and kind not in KINDS:
        raise InvalidEventError("kind", f"must be one of {', '.join(KINDS)}; got {kind!r}")
    if frame.empty:
        return []
    columns = set(map(str, frame.columns))
    default_kind = kind or (None if "kind" in columns else infer_kind(columns))
    times = _ms_column(frame).tolist()
    defaults: dict[str, Any] = {"symbol": symbol, "bot": bot, "strategy": strategy, "tf": timeframe}
    renames = {"signal_type": "type", "bot_name": "bot"}
    records = frame.to_dict(orient="records")
    events: list[Event] = []
    for row_number, (record, ts) in enumerate(zip(records, times, strict=True)):
        data: dict[str, Any] = {k: v for k, v in defaults.items() if v is not None}
        for key, value in record.items():
            name = renames.get(str(key), str(key))
            if _is_missing(value):
                continue
            data[name] = value.item() if hasattr(value, "item") else value
        data["ts"] = int(ts) if not _is_missing(ts) else None
        if default_kind is not None and "kind" not in data:
            data["kind"] = default_kind
        try:
            events.append(event_from_dict(data))
        except InvalidEventError as exc:
            raise InvalidEventError(exc.field, f"row {row_number}: {exc}") from None
    return events


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(cast(Any, value)))
    except (TypeError, ValueError):
        return False
