"""The wall's figure contract as data, for the JS client's tests (client_js/tests/wall-contract.test.js).

``build_contract()`` runs the server's figure and KPI code (docs/charts.md section 1) on a
deterministic demo-floor half hour, with the cases the live rules must get right: exits
without a reported P&L (computed from the entry), an exit of unknown P&L, partial exits, the
live candle updated in place, a pause in the equity reports, a strategy and a bot that first
appear live. The JS tests build the same figure in the browser code and apply the "live"
part event by event; both must equal the server's figure of all events.

``tests/client_js/test_wall_contract_fixture.py`` fails when the committed fixture is stale:
regenerate it with ``python -m tests.support.wall_contract``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.charts.wall import build_symbol_figure, kpis
from server.cli.demo import TradingFloor, seed_history

FIXTURE = Path(__file__).resolve().parents[2] / "client_js" / "tests" / "fixtures" / "wall-contract.json"
SYMBOL = "BTCUSDT"
MINUTE = 60_000
#: 2024-11-20 23:50 UTC: the window crosses midnight, so "today's P&L" leaves some exits out.
END_MS = 1_732_060_800_000 + 20 * MINUTE
NOW_MS = END_MS + MINUTE
COLUMNS = {
    "candle": ("ts", "open", "high", "low", "close", "volume"),
    "signal": ("seq", "ts", "bot", "strategy", "type", "price", "confidence"),
    "trade": ("seq", "ts", "bot", "strategy", "side", "action", "price", "qty", "pnl", "position"),
    "bot": ("seq", "ts", "bot", "strategy", "status", "equity"),
}


def _events() -> list[dict[str, Any]]:
    floor = TradingFloor([SYMBOL], seed=11)
    raw = [e.to_dict() for e in seed_history(floor, end_ms=END_MS, hours=0.5)]
    events: list[dict[str, Any]] = []
    exits = 0
    pause = (END_MS - 14 * MINUTE, END_MS - 4 * MINUTE)
    for event in raw:
        if event["kind"] == "bot" and pause[0] <= event["ts"] < pause[1]:
            continue  # the bots stop reporting for 10 minutes: a gap in the equity lines
        if event["kind"] == "trade" and event["action"] == "exit":
            exits += 1
            if exits % 3 == 0:
                event = {**event, "pnl": None}  # computed from the entry (no fees in history data)
        events.append(event)
        if event["kind"] == "candle" and event["ts"] % (5 * MINUTE) == 0:
            # The live candle: republished with a higher close, then its final values.
            events.insert(len(events) - 1, {**event, "close": event["open"], "high": event["high"]})
    late = END_MS - 3 * MINUTE
    events += [
        {"kind": "trade", "symbol": SYMBOL, "ts": late, "bot": "ghost-1", "strategy": "momentum",
         "side": "sell", "action": "exit", "price": 100.0, "qty": 1.0, "fee": 0.0, "pnl": None,
         "position": "before-the-window", "meta": {}},
        {"kind": "signal", "symbol": SYMBOL, "ts": late + 1000, "bot": "grid-1", "strategy": "grid",
         "type": "sell", "price": 64_000.5, "confidence": 0.4321, "meta": {}},
        {"kind": "bot", "symbol": SYMBOL, "ts": late + 2000, "bot": "grid-1", "strategy": "grid",
         "status": "active", "equity": 5_000.0, "meta": {}},
        {"kind": "bot", "symbol": SYMBOL, "ts": late + 62_000, "bot": "grid-1", "strategy": "grid",
         "status": "error", "equity": 4_990.25, "meta": {}},
    ]  # fmt: skip
    events.sort(key=lambda e: e["ts"])  # stable: publish order within a ms
    return [{**e, "seq": seq} for seq, e in enumerate(events, start=1)]


def columnar(events: list[dict[str, Any]]) -> dict[str, dict[str, list[Any]]]:
    """A history frame's ``data`` (docs/protocol.md): one column list per field; the latest candle per ts."""
    data: dict[str, dict[str, list[Any]]] = {kind: {c: [] for c in cols} for kind, cols in COLUMNS.items()}
    candles: dict[int, dict[str, Any]] = {}
    for event in events:
        if event["kind"] == "candle":
            candles[event["ts"]] = event
            continue
        for column in COLUMNS[event["kind"]]:
            data[event["kind"]][column].append(event[column])
    for candle in sorted(candles.values(), key=lambda c: c["ts"]):
        for column in COLUMNS["candle"]:
            data["candle"][column].append(candle[column])
    return data


def _payload(events: list[dict[str, Any]]) -> dict[str, Any]:
    data = columnar(events)
    out = build_symbol_figure(SYMBOL, data)
    out["kpis"] = kpis(data, now_ms=NOW_MS)
    return {"data": data, **out}


def build_contract() -> dict[str, Any]:
    events = _events()
    split = next(i for i, e in enumerate(events) if e["ts"] >= END_MS - 16 * MINUTE)
    variants = {}
    for name, chosen in (
        ("candles", events),
        ("no_candles", [e for e in events if e["kind"] != "candle"]),
    ):
        head = [e for e in chosen if e["seq"] <= events[split]["seq"]]
        variants[name] = {
            "head": _payload(head),
            "full": _payload(chosen),
            "tail": [e for e in chosen if e["seq"] > events[split]["seq"]],
        }
    fresh = _payload([])
    return {
        "symbol": SYMBOL,
        "now_ms": NOW_MS,
        "variants": variants,
        "fresh": {"head": fresh, "full": variants["candles"]["full"], "tail": events},
    }


def main() -> None:
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(build_contract(), separators=(",", ":"), allow_nan=False) + "\n")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
