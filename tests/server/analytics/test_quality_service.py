"""Signal quality from the history store (SQLite and PostgreSQL): the service, the payload, the CLI."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from publishers.events import now_ms
from server.analytics.quality import QualityRules
from server.analytics.quality_queries import quality_events
from server.analytics.quality_rows import parse_meta
from server.analytics.quality_stream import QualityStream
from server.analytics.service import BotDataService, make_filter
from tests.support.analytics_data import (
    DAY0,
    DAY_MS,
    HOUR_MS,
    candle,
    demo_events,
    fresh_store,
    signal,
    trade,
    with_seqs,
)

END = DAY0 + 2 * DAY_MS


def quality_fixture() -> list[dict[str, Any]]:
    linked_entry = trade(DAY0 + 2 * HOUR_MS, "momo-1", "entry", "sell", 99.0, 2.0, "p2")
    return [
        signal(DAY0 + 10, "momo-1", "buy", 100.0, 0.75),
        trade(DAY0 + 1_000, "momo-1", "entry", "buy", 101.0, 1.0, "p1", fee=0.1),
        trade(DAY0 + 1_500, "momo-1", "entry", "buy", 103.0, 1.0, "p1", fee=0.1),
        candle(DAY0 + 2_000, 110.0),
        trade(DAY0 + HOUR_MS, "momo-1", "exit", "sell", 110.0, 1.0, "p1", fee=0.1),
        signal(DAY0 + HOUR_MS + 5, "momo-1", "sell", 100.0, 0.35),  # seq 6 on BTCUSDT
        {**linked_entry, "meta": {"signal_seq": 6}},  # an hour later: linked only by its seq
        trade(DAY0 + 3 * HOUR_MS, "momo-1", "exit", "buy", 101.0, 2.0, "p2"),
        trade(DAY0 + 3 * HOUR_MS, "momo-1", "exit", "sell", 115.0, 1.0, "p1", fee=0.1),
        signal(DAY0 + 4 * HOUR_MS, "momo-1", "buy", 100.0, 0.95),
        trade(DAY0 + 4 * HOUR_MS + 100, "momo-1", "entry", "buy", 100.0, 1.0, "p3"),
        candle(DAY0 + 5 * HOUR_MS, 104.0),
    ]


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def test_the_store_gives_the_hand_computed_figures(database_url: str) -> None:
    asyncio.run(fresh_store(database_url, quality_fixture()))
    with BotDataService(database_url) as service:
        quality = service.get_signal_quality(None, DAY0, END)
    (row,) = quality.rows
    assert (row["bot"], row["signals"], row["linked"], row["unlinked"], row["linked_entries"]) == (
        "momo-1",
        3,
        3,
        0,
        4,
    )
    assert row["realised_pnl"] == pytest.approx(7.8 - 4.0 + 12.8)
    assert row["unrealised_pnl"] == pytest.approx(4.0)  # p3 at 100 marked to 104
    assert row["slippage_mean_bps"] == pytest.approx((200.0 + 100.0 + 0.0) / 3)
    assert quality.kpis.loc[("momo-1", "momentum"), "trades"] == 2
    calibration = quality.calibration.set_index("bucket")
    assert calibration.loc[7, "mean_pnl"] == pytest.approx(20.6)
    assert json.loads(json.dumps(quality.payload()))["groups"][0]["bot"] == "momo-1"


def test_the_store_equals_the_stream_on_demo_events(database_url: str) -> None:
    events = demo_events(end_ms=END, hours=6.0)
    asyncio.run(fresh_store(database_url, events))
    rules = QualityRules(horizon_ms=120_000)
    start = END - 2 * DAY_MS
    with BotDataService(database_url) as service:
        quality = service.get_signal_quality(make_filter(), start, END, rules=rules)
    # What the query reads: the window's signals and trades, and each traded symbol's last candle.
    numbered = [e for _epoch, e in with_seqs(events) if e["kind"] != "bot" and start <= e["ts"] <= END]
    traded = {e["symbol"] for e in numbered if e["kind"] == "trade"}
    last_candle = {e["symbol"]: e for e in numbered if e["kind"] == "candle" and e["symbol"] in traded}
    kept = [e for e in numbered if e["kind"] != "candle" or last_candle.get(e["symbol"]) is e]
    rank = {"candle": 0, "signal": 1, "trade": 2}
    kept.sort(key=lambda e: (e["ts"], rank[e["kind"]], e["symbol"], e["seq"]))
    stream = QualityStream(rules)
    for event in kept:
        stream.apply(event["kind"], event["symbol"], event["seq"], event)
    assert quality.rows and sum(r["linked"] for r in quality.rows) > 0
    assert _close(quality.rows, stream.snapshot())


def test_the_batch_statements_read_what_the_union_reads(database_url: str) -> None:
    """The batch's three statements (one per kind, only its columns, one transaction) make the
    frame the live feed's one UNION ALL makes."""
    from server.analytics.quality_queries import batch_queries, quality_frame, quality_query
    from server.history.engine import create_engine

    asyncio.run(fresh_store(database_url, demo_events(end_ms=END, hours=6.0)))
    flt, start = make_filter(), END - 2 * DAY_MS

    async def read() -> tuple[pd.DataFrame, pd.DataFrame]:
        engine = create_engine(database_url)
        try:
            parts = await BotDataService(engine=engine)._snapshot(engine, batch_queries(flt, start, END))
            async with engine.connect() as connection:
                rows = (await connection.execute(quality_query(flt, start, END))).all()
        finally:
            await engine.dispose()
        return quality_frame(parts), quality_events(rows)

    split, union = asyncio.run(read())
    assert len(split) > 100
    pd.testing.assert_frame_equal(split, union)


@pytest.mark.parametrize("text", ["{", "[1]", '"x"', "{" * 10_000, '{"signal_seq": "7"}', None, 5])
def test_a_hostile_meta_names_no_signal(text: Any) -> None:
    assert parse_meta(text) is None


def test_hostile_rows_are_left_out() -> None:
    columns = 19
    good = [
        "signal",
        "X",
        1,
        1000,
        "b",
        "s",
        "buy",
        0.5,
        None,
        None,
        100.0,
        None,
        None,
        None,
        None,
        None,
        None,
        1,
        "e1",
    ]
    bad = (
        ["signal", "X", 2, 1000, "b", "s", "buy", "not a number", None, None, 100.0] + [None] * 6 + [1, "e1"]
    )
    assert len(good) == len(bad) == columns
    frame = quality_events([good, bad])
    from server.analytics.quality_batch import quality_batch

    (row,) = quality_batch(frame)
    assert row["signals"] == 1


def test_stats_quality_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli.main import main

    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    base = now_ms() - 6 * HOUR_MS
    asyncio.run(fresh_store(url, [dict(e, ts=e["ts"] - DAY0 + base) for e in quality_fixture()]))
    html = tmp_path / "q.html"
    assert main(["stats", "--quality", "--database-url", url, "--days", "1", "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "momo-1" in out and "calibration" in out
    assert "reliability" in html.read_text(encoding="utf-8")
    assert main(["stats", "--quality", "--csv", "--database-url", url, "--days", "1"]) == 0
    assert capsys.readouterr().out.startswith("bot,strategy,signals")


def test_the_vectorised_frame_equals_the_per_row_path() -> None:
    """quality_events (pandas, for the batch) and fold_events + events_frame (the live feed's
    path) build the same frame, hostile rows included."""
    from server.analytics.quality_batch import events_frame
    from server.analytics.quality_rows import QUERY_COLUMNS, fold_events

    def row(**values: Any) -> list[Any]:
        return [values.get(name) for name in QUERY_COLUMNS]

    rows = [
        row(kind="trade", symbol="X", seq=3, ts=50, bot="b", strategy="s", side="buy", action="entry",
            price=1.0, qty=2.0, position="p", meta='{"signal_seq": 1}', rank=2, epoch="e"),
        row(kind="signal", symbol="X", seq=1, ts=50, bot="b", strategy="s", type="buy", confidence=0.5,
            price=1.0, meta=None, rank=1, epoch="e"),
        row(kind="candle", symbol="Y", seq="junk", ts=20, close="nan?", rank=0, epoch="e"),
        row(kind="candle", symbol="Y", seq=9, ts="never", close=5.0, rank=0, epoch="e"),
        row(kind="trade", symbol="X", seq=4, ts=10, bot="b", strategy="s", side="sell", action="exit",
            price=1.5, qty=2.0, position="p", meta="{not json", rank=2, epoch="e"),
    ]  # fmt: skip
    vectorised = quality_events(rows)
    per_row = events_frame(fold_events([r for r in rows if r[QUERY_COLUMNS.index("ts")] != "never"]))
    assert (vectorised.dtypes == "category").sum() == 8  # names are categories: the batch groups them
    texts = {name: object for name in vectorised.columns if vectorised[name].dtype == "category"}
    pd.testing.assert_frame_equal(
        vectorised.astype(texts).reset_index(drop=True), per_row.astype(texts).reset_index(drop=True)
    )


def test_coded_statements_read_what_the_union_reads(tmp_path: Path) -> None:
    """On SQLite the batch reads type, side and action as small-integer codes; any other value
    (an unknown name, a blob) still comes as itself, so the frame equals the union's."""
    import sqlite3

    from server.analytics.quality_queries import batch_queries, quality_frame, quality_query
    from server.history.engine import create_engine

    url = f"sqlite+aiosqlite:///{tmp_path / 'coded.db'}"
    odd = [
        signal(DAY0 + 20, "momo-1", "flat", 100.0, 0.5),
        {**trade(DAY0 + 30, "momo-1", "adjust", "buy", 100.0, 1.0, "p9"), "side": "short"},
    ]
    asyncio.run(fresh_store(url, quality_fixture() + odd))
    with sqlite3.connect(tmp_path / "coded.db") as raw:  # a blob where a name belongs
        raw.execute("UPDATE signals SET type = X'627579' WHERE ts = ?", (DAY0 + 10,))
    flt = make_filter()

    async def read() -> tuple[pd.DataFrame, pd.DataFrame]:
        engine = create_engine(url)
        try:
            statements = batch_queries(flt, DAY0, END, coded=True)
            parts = await BotDataService(engine=engine)._snapshot(engine, statements)
            async with engine.connect() as connection:
                rows = (await connection.execute(quality_query(flt, DAY0, END))).all()
        finally:
            await engine.dispose()
        assert any(type(row[5]) is int for row in parts["signal"])  # codes, not names
        return quality_frame(parts, coded=True), quality_events(rows)

    split, union = asyncio.run(read())
    assert {"flat", "b'buy'"} <= set(split["type"].cat.categories)
    assert {"short"} <= set(split["side"].cat.categories) and "adjust" in set(split["action"])
    pd.testing.assert_frame_equal(split, union)
