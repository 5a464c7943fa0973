"""BotDataService against real SQLite and PostgreSQL: filters pushed down, the same figures on both."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from publishers.events import now_ms
from server.analytics import performance as perf
from server.analytics.payloads import bots_payload, parse_performance_query, performance_payload
from server.analytics.service import BotDataService, make_filter, to_epoch_ms
from server.cli.embedded import free_port
from server.errors import ProtocolError, StoreError
from server.history.engine import create_engine
from tests.support import TEST_DATABASE_ENV
from tests.support.analytics_data import (
    DAY0,
    DAY_MS,
    HOUR_MS,
    candle,
    demo_events,
    fresh_store,
    signal,
    status,
    trade,
)

END = DAY0 + 2 * DAY_MS


def fixture_events() -> list[dict[str, Any]]:
    """Three bots, two strategies, two symbols; one open position, a partial exit, an early entry."""
    return [
        status(DAY0 - DAY_MS, "momo-1", "active", 5_000.0),
        status(DAY0 - DAY_MS, "ema-1", "paused", None, strategy="ema_crossover", symbol="ETHUSDT"),
        status(DAY0 - DAY_MS, "momo-2", "stopped", 8_000.0),
        trade(DAY0 - HOUR_MS, "momo-1", "entry", "buy", 100.0, 2.0, "p1", fee=0.2),  # before the window
        status(DAY0 + 1, "momo-1", "active", 5_000.0),
        signal(DAY0 + 10, "momo-1", "buy", 100.0, 0.9),
        signal(DAY0 + 20, "momo-2", "sell", 101.0, 0.4),
        signal(DAY0 + 30, "ema-1", "hold", 3000.0, 0.2, strategy="ema_crossover", symbol="ETHUSDT"),
        trade(DAY0 + HOUR_MS, "momo-1", "exit", "sell", 110.0, 1.0, "p1", fee=0.1),  # computed pnl
        trade(DAY0 + 2 * HOUR_MS, "momo-1", "exit", "sell", 95.0, 1.0, "p1", fee=0.1, pnl=-5.3),
        trade(DAY0 + 3 * HOUR_MS, "momo-2", "entry", "sell", 100.0, 1.0, "q1"),
        trade(DAY0 + 4 * HOUR_MS, "momo-2", "exit", "buy", 90.0, 1.0, "q1", pnl=10.0),
        trade(
            DAY0 + 5 * HOUR_MS,
            "ema-1",
            "entry",
            "buy",
            3000.0,
            0.1,
            "e1",
            strategy="ema_crossover",
            symbol="ETHUSDT",
        ),
        candle(DAY0 + 6 * HOUR_MS, 3100.0, symbol="ETHUSDT"),
        candle(DAY0 + DAY_MS, 104.0),
        candle(END + DAY_MS, 1.0),  # after the window: not the last price
    ]


@pytest.fixture
def service(database_url: str) -> Any:
    asyncio.run(fresh_store(database_url, fixture_events()))
    with BotDataService(database_url) as svc:
        yield svc


def test_bots_and_their_filters(service: BotDataService) -> None:
    bots = service.get_bots()
    assert list(bots.columns) == [
        "id",
        "name",
        "strategy",
        "status",
        "equity",
        "first_seen",
        "last_seen",
        "last_status_at",
    ]
    assert list(bots["name"]) == ["momo-1", "ema-1", "momo-2"]
    ids = dict(zip(bots["name"], bots["id"], strict=True))
    assert list(service.get_bots(make_filter(active_only=True))["name"]) == ["momo-1"]
    assert list(service.get_bots(make_filter(statuses=["paused", "stopped"]))["name"]) == ["ema-1", "momo-2"]
    assert list(service.get_bots(make_filter(strategies="ema_crossover"))["name"]) == ["ema-1"]
    assert list(service.get_bots(make_filter(bot_ids=[ids["momo-2"]]))["name"]) == ["momo-2"]
    assert list(service.get_bots(make_filter(symbols=["ETHUSDT"]))["name"]) == ["ema-1"]
    assert list(service.get_bots(make_filter(bots=["momo-1", "nobody"]))["name"]) == ["momo-1"]
    late = make_filter(date_range=(DAY0 + 2 * HOUR_MS, END))
    assert list(service.get_bots(late)["name"]) == ["momo-1", "ema-1", "momo-2"]
    assert service.get_bots(make_filter(date_range=(END + 10 * DAY_MS, END + 11 * DAY_MS))).empty
    assert bots.loc[0, "equity"] == 5_000.0
    assert bots.loc[0, "last_status_at"] == pd.Timestamp(DAY0 + 1, unit="ms", tz="UTC")


def test_signals_with_types_confidence_and_window(service: BotDataService) -> None:
    signals = service.get_signals(None, DAY0, END)
    assert list(signals["bot"]) == ["momo-1", "momo-2", "ema-1"]
    assert list(signals.columns) == [
        "timestamp",
        "ts",
        "symbol",
        "bot",
        "bot_id",
        "strategy",
        "signal_type",
        "price",
        "confidence",
        "seq",
    ]
    assert signals.loc[0, "timestamp"] == pd.Timestamp(DAY0 + 10, unit="ms", tz="UTC")
    strong = service.get_signals(None, DAY0, END, signal_types=["buy", "sell"], min_confidence=0.5)
    assert list(strong["signal_type"]) == ["buy"]
    eth = service.get_signals(make_filter(symbols="ETHUSDT"), DAY0, END)
    assert list(eth["bot"]) == ["ema-1"]
    active = service.get_signals(make_filter(active_only=True), DAY0, END)
    assert set(active["bot"]) == {"momo-1"}
    assert service.get_signals(None, DAY0 + 15, DAY0 + 25)["bot"].tolist() == ["momo-2"]
    # datetimes work too (aware, and naive = local time as datetime.now() makes them)
    aware = service.get_signals(None, datetime.fromtimestamp(DAY0 / 1000, UTC), END)
    assert len(aware) == 3
    naive = datetime.fromtimestamp((DAY0 + 15) / 1000)
    assert to_epoch_ms(naive) == DAY0 + 15


def test_trades_with_sides(service: BotDataService) -> None:
    trades = service.get_trades(None, DAY0 - DAY_MS, END)
    assert len(trades) == 6
    assert trades["pnl"].isna().sum() == 4  # three entries and one exit without pnl
    sells = service.get_trades(None, DAY0 - DAY_MS, END, sides=["sell"])
    assert set(sells["side"]) == {"sell"} and len(sells) == 3
    assert service.get_trades(make_filter(strategies=["ema_crossover"]), DAY0, END)["position"].tolist() == [
        "e1"
    ]


def expected_by_bot() -> dict[str, dict[str, float]]:
    # momo-1: long 2 @100 (fee 0.2) entered before the window; exit 1 @110 computed:
    # 10 - 0.1 - 0.1 = 9.8; exit 1 reported -5.3 -> realized 4.5, one winning trade.
    # momo-2: short, reported +10. ema-1: open long 0.1 @3000, last ETH close 3100 -> +10.
    return {
        "momo-1": {
            "trade_count": 1,
            "realized_pnl": 4.5,
            "unrealized_pnl": 0.0,
            "win_rate": 100.0,
            "capital": 5_000.0,
            "avg_holding_s": 3 * 3600.0,
        },
        "momo-2": {"trade_count": 1, "realized_pnl": 10.0, "unrealized_pnl": 0.0, "capital": 10_000.0},
        "ema-1": {"trade_count": 0, "realized_pnl": 0.0, "unrealized_pnl": 10.0, "open_positions": 1},
    }


def test_performance_pairs_early_entries_and_values_open_positions(service: BotDataService) -> None:
    report = service.performance_report(None, DAY0, END)
    for bot, figures in expected_by_bot().items():
        for column, value in figures.items():
            assert report.by_bot.loc[bot, column] == pytest.approx(value), (bot, column)
    assert report.last_prices == {"BTCUSDT": 104.0, "ETHUSDT": 3100.0}
    momentum = report.by_strategy.loc["momentum"]
    assert (momentum["rank"], momentum["bots"], momentum["total_pnl"]) == (1, 2, pytest.approx(14.5))
    assert report.overall.iloc[0]["total_pnl"] == pytest.approx(24.5)
    assert set(report.equity["bot"]) == {"momo-1", "momo-2"}
    # The pure functions on the service's own trades give the same table.
    direct = perf.performance_table(
        report.trades, report.last_prices, capital=report.capital, start_ms=DAY0, end_ms=END
    )
    pd.testing.assert_frame_equal(direct, report.by_bot)
    assert service.get_performance(make_filter(bots=["momo-2"]), DAY0, END).index.tolist() == ["momo-2"]


async def test_async_methods_on_a_given_engine(database_url: str) -> None:
    await fresh_store(database_url, fixture_events())
    engine = create_engine(database_url)
    try:
        svc = BotDataService(engine=engine)
        bots = await svc.get_bots_async()
        assert len(bots) == 3
        signals = await svc.get_signals_async(make_filter(bots=["momo-1"]), DAY0, END)
        assert signals["signal_type"].tolist() == ["buy"]
        report = await svc.performance_report_async(None, DAY0, END)
        assert report.by_bot.loc["momo-2", "realized_pnl"] == pytest.approx(10.0)
        # The blocking twin works even while this loop runs (a notebook): it uses its own engine.
        assert len(svc.get_trades(None, DAY0 - DAY_MS, END)) == 6
        svc.close()
        async with BotDataService(database_url) as own:  # URL-built: runs on the private loop
            assert len(await own.get_trades_async(None, DAY0 - DAY_MS, END)) == 6
    finally:
        await engine.dispose()


def test_sync_methods_from_plain_threads(service: BotDataService) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def callback() -> None:  # like a Dash callback: a worker thread with no event loop
        try:
            results.append(len(service.get_signals(None, DAY0, END)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=callback) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and results == [3, 3, 3, 3]


def test_a_database_that_is_down_raises_store_error() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    with BotDataService(url, timeout_s=10) as svc, pytest.raises(StoreError, match="database query failed"):
        svc.get_bots()


def test_missing_tables_raise_store_error(tmp_path: Any) -> None:
    with BotDataService(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}") as svc, pytest.raises(StoreError):
        svc.get_performance()


async def test_payloads_are_json_safe(database_url: str) -> None:
    await fresh_store(database_url, fixture_events())
    engine = create_engine(database_url)
    try:
        bots = await bots_payload(engine)
        assert [b["name"] for b in bots["bots"]] == ["momo-1", "ema-1", "momo-2"]
        assert bots["bots"][1]["equity"] is None
        # Each bot's symbols (for the index page's per-bot walls): from status, trades and signals.
        assert [b["symbols"] for b in bots["bots"]] == [["BTCUSDT"], ["ETHUSDT"], ["BTCUSDT"]]
        recent = await bots_payload(engine, since_ms=DAY0 + 5 * HOUR_MS)
        assert [b["symbols"] for b in recent["bots"]] == [[], ["ETHUSDT"], []]
        payload = await performance_payload(
            engine, {"days": "2", "end": str(END), "symbols": "BTCUSDT,ETHUSDT"}
        )
        text = json.dumps(payload, allow_nan=False)  # NaN/inf would raise here
        body = json.loads(text)
        by_bot = {row["bot"]: row for row in body["bots"]}
        assert by_bot["momo-1"]["realized_pnl"] == pytest.approx(4.5)
        assert by_bot["ema-1"]["win_rate"] is None and by_bot["ema-1"]["profit_factor"] is None
        assert by_bot["momo-1"]["profit_factor"] is None  # no losing trade: inf -> null
        assert body["window"] == {"start": END - 2 * DAY_MS, "end": END, "days": 2.0}
        assert body["filter"] == {"symbols": ["BTCUSDT", "ETHUSDT"]}
        assert body["strategies"][0]["strategy"] == "momentum" and body["strategies"][0]["rank"] == 1
        assert body["overall"]["trade_count"] == 2
        assert isinstance(by_bot["momo-1"]["drawdown_start"], int | type(None))
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"days": "x"}, "days: 'x' is not a number"),
        ({"days": "0"}, "days: must be more than 0"),
        ({"days": "nan"}, "days: must be more than 0"),
        ({"end": "12"}, "end: 12 is not ms since the epoch"),
        ({"bot_ids": "1,a"}, "bot_ids: '1,a' is not a list of integers"),
        ({"active_only": "maybe"}, "active_only: must be true or false"),
        ({"statuses": "active,sleeping"}, "statuses: 'sleeping' is not one of"),
        ({"colour": "red"}, "colour: unknown parameter"),
    ],
)
def test_bad_performance_queries_are_bad_requests(query: dict[str, str], message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        parse_performance_query(query)
    assert caught.value.code == "bad_request"


def test_performance_query_parsing() -> None:
    flt, start, end = parse_performance_query(
        {
            "bots": "a, b",
            "bot_ids": "3,4",
            "active_only": "true",
            "days": "1.5",
            "end": str(END),
            "token": "t",
            "min_confidence": "0.5",
        }
    )
    assert flt.bots == ("a", "b") and flt.bot_ids == (3, 4) and flt.active_only
    assert (start, end) == (END - int(1.5 * DAY_MS), END)


def test_bad_times_name_the_argument(service: BotDataService) -> None:
    with pytest.raises(ValueError, match="start: expected ms since the epoch or a datetime"):
        service.get_signals(None, "yesterday")


def test_sqlite_and_postgresql_give_the_same_figures(tmp_path: Any) -> None:
    """The same demo history in SQLite and (when configured) PostgreSQL: identical tables."""
    end = now_ms()
    history = demo_events(end_ms=end, hours=2)
    urls = [f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"]
    urls.append(os.environ.get(TEST_DATABASE_ENV) or f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    reports = []
    for url in urls:
        asyncio.run(fresh_store(url, history))
        with BotDataService(url) as svc:
            reports.append(svc.performance_report(None, end - DAY_MS, end))
            signals = svc.get_signals(None, end - DAY_MS, end)
            assert len(signals) == sum(1 for e in history if e["kind"] == "signal")
    first, second = reports
    assert len(first.by_bot) == 4 and first.overall.iloc[0]["trade_count"] > 10
    for name in ("by_bot", "by_strategy", "overall"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name), rtol=1e-9)
    assert first.last_prices == second.last_prices and first.capital == second.capital
