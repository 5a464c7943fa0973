"""LiveQuality without I/O: cursors per symbol, what is read from SQL and what from the log."""

from __future__ import annotations

import json
from typing import Any

from server.analytics.quality import QualityRules
from server.analytics.quality_live import MAX_SPAN, LiveQuality, SymbolRead
from server.analytics.quality_rows import QUERY_COLUMNS
from tests.support.analytics_data import DAY0, signal, trade


def entry(seq: int, event: dict[str, Any]) -> tuple[int, str]:
    """A log entry as the publish script writes it: seq first, then the body."""
    body = json.dumps(event, separators=(",", ":"))[1:]
    return seq, f'{{"seq":{seq},{body}'


def sql_row(seq: int, event: dict[str, Any], epoch: str = "e1") -> list[Any]:
    values = {
        **event,
        "seq": seq,
        "rank": {"candle": 0, "signal": 1, "trade": 2}[event["kind"]],
        "epoch": epoch,
    }
    values["meta"] = json.dumps(event.get("meta") or {})
    return [values.get(name) for name in QUERY_COLUMNS]


def test_a_read_says_which_seqs_sql_must_give() -> None:
    assert SymbolRead("X", "e1", 10, 20, [entry(15, {})]).sql_span == ("X", "e1", 10, 14)
    assert SymbolRead("X", "e1", 10, 20, [entry(11, {})]).sql_span is None
    assert SymbolRead("X", "e1", 10, 20, []).sql_span == ("X", "e1", 10, 20)
    huge = SymbolRead("X", "e1", 0, 10**9, [])
    assert huge.through == MAX_SPAN and huge.sql_span == ("X", "e1", 0, MAX_SPAN), "a step is bounded"


def test_sql_then_log_then_a_new_epoch_and_a_hostile_entry() -> None:
    live = LiveQuality(QualityRules(), DAY0)
    buy = signal(DAY0 + 10, "b", "buy", 100.0, 0.75, symbol="X")
    entry_trade = trade(DAY0 + 20, "b", "entry", "buy", 101.0, 1.0, "p1", symbol="X")
    exit_trade = trade(DAY0 + 30, "b", "exit", "sell", 111.0, 1.0, "p1", symbol="X")
    # The window: seq 1 in SQL, seq 2 still only in the log, seq 3 published after the meta was read.
    live.begin(
        {"X": ("e1", 2)},
        [sql_row(1, buy), sql_row(3, exit_trade)],
        [SymbolRead("X", "e1", 0, 3, [entry(2, entry_trade), entry(3, exit_trade)])],
    )
    assert live.cursors == {"X": ("e1", 2)}
    (row,) = live.stream.snapshot()
    assert (row["signals"], row["linked"], row["trades"]) == (1, 1, 0)

    assert live.plan({"X": ("e1", 4)}) == [("X", "e1", 2)]
    forged = (4, '{"seq":4,"kind":"trade","symbol":"X","ts":"soon"}')
    live.advance([SymbolRead("X", "e1", 2, 4, [forged])], [sql_row(3, exit_trade)])
    assert live.rejected == {"fields": 1}
    assert live.cursors == {"X": ("e1", 4)}
    (row,) = live.take_rows()
    assert row["trades"] == 1 and row["realised_pnl"] == 10.0
    assert live.take_rows() == [], "nothing changed since"

    # A reset: the symbol starts over at seq 0 of its new epoch; what e1 folded stays.
    assert live.plan({"X": ("e2", 1)}) == [("X", "e2", 0)]
    again = signal(DAY0 + 40, "b", "buy", 100.0, 0.95, symbol="X")
    live.advance([SymbolRead("X", "e2", 0, 1, [entry(1, again)])], [])
    (row,) = live.take_rows()
    assert row["signals"] == 2 and row["trades"] == 1


def test_a_read_under_an_epoch_that_moved_is_left_for_the_next_plan() -> None:
    live = LiveQuality(QualityRules(), DAY0)
    live.begin({"X": ("e1", 0)}, [], [])
    assert live.plan({"X": ("e2", 3)}) == [("X", "e2", 0)]
    live.advance([SymbolRead("X", "e1", 0, 3, [])], [])
    assert live.cursors == {"X": ("e2", 0)}
