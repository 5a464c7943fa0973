// The wall's truth, the pure parts: tile specs, the day book kept live, trimming to the window,
// and the palettes (a simulated deuteranopia keeps the colour-blind palette's P&L pair apart).

import assert from "node:assert/strict";
import { test } from "node:test";
import { DayBook } from "../wall-daybook.js";
import { parseTiles, parseWallParams, trimToWindow } from "../wall-model.js";
import {
  applyPalette,
  botColor,
  contrast,
  deltaE,
  deuteranopia,
  deuteranopiaReport,
  MIN_CONTRAST,
  MIN_DELTA_E,
  PALETTES,
} from "../wall-palette.js";

const DAY = 86_400_000;
const START = 1_774_828_800_000; // 2026-03-30 00:00 UTC

test("tiles: SYMBOL[@minutes], one symbol at two windows, the same spec once", () => {
  const c = parseWallParams("?symbols=btcusdt@60,BTCUSDT,BTCUSDT@60,ETHUSDT@abc,SOLUSDT@0&minutes=360");
  assert.deepEqual(
    c.tiles.map((t) => [t.id, t.symbol, t.minutes]),
    [
      ["BTCUSDT@60", "BTCUSDT", 60],
      ["BTCUSDT", "BTCUSDT", 360],
      ["SOLUSDT@360", "SOLUSDT", 360],
    ],
  );
  assert.deepEqual(c.symbols, ["BTCUSDT", "SOLUSDT"]);
  assert.deepEqual(parseTiles([], 5), []);
});

test("URL parameters: palette, scale, markers, tz with safe defaults", () => {
  const c = parseWallParams("?palette=cb&scale=1.5&markers=trades&tz=Europe/Berlin&kpis=0");
  assert.deepEqual(
    [c.palette, c.scale, c.markers, c.tz, c.kpis],
    ["cb", 1.5, "trades", "Europe/Berlin", false],
  );
  const d = parseWallParams("?palette=neon&scale=99&markers=lots&tz=<script>");
  assert.deepEqual([d.palette, d.scale, d.markers, d.tz], ["default", 1, "default", "UTC"]);
});

function book(extra = {}) {
  return {
    epoch: "e1",
    to_seq: 10,
    day_start: START,
    day_end: START + DAY,
    positions: [
      { bot: "a", position: "p1", side: "buy", qty: 2, notional: 200, exit_qty: 0, day_pnl: null },
      { bot: "b", position: "p2", side: "sell", qty: 1, notional: 50, exit_qty: 1, day_pnl: -3 },
    ],
    ...extra,
  };
}

const tr = (seq, ts, bot, position, action, side, price, qty, pnl = null) => ({
  kind: "trade",
  seq,
  ts,
  bot,
  position,
  action,
  side,
  price,
  qty,
  pnl,
});

test("day book: seeded by the server, kept live after its seq, events before it held", () => {
  const d = new DayBook();
  // Arrives before the book: held; seq 9 is in the book already, seq 11 is not.
  d.onEvent(tr(9, START + 5, "a", "p1", "exit", "sell", 120, 1));
  d.onEvent(tr(11, START + 6, "a", "p1", "exit", "sell", 110, 1));
  assert.equal(d.snapshot().ready, false);
  assert.ok(d.seed(book()));
  let k = d.snapshot(100);
  // p1: half closed at 110 without a reported pnl: +10 computed from the average entry (100).
  assert.deepEqual([k.pnl, k.trades, k.wins, k.win_rate, k.open_positions], [7, 2, 1, 50, 1]);
  assert.equal(k.unrealized_pnl, 0);
  d.onEvent(tr(12, START + 7, "c", "p3", "entry", "sell", 50, 2));
  d.onEvent(tr(13, START - 1, "c", "p3", "exit", "buy", 40, 1, 10)); // yesterday's ts: not today
  k = d.snapshot(45);
  assert.deepEqual([k.pnl, k.trades, k.open_positions], [7, 2, 2]);
  assert.equal(k.unrealized_pnl, -55 + 5); // a: long 1 from 100 at 45; c: short 1 from 50 at 45
  assert.ok(d.expired(START + DAY) && !d.expired(START + DAY - 1));
  assert.equal(d.seed({ ...book(), day_end: "x" }), false, "a malformed book is refused");
});

test("trim: every trace to its window; trade lines by whole segments", () => {
  const data = [
    { x: [1, 2, 3, 4], open: [1, 2, 3, 4], high: [1, 2, 3, 4], low: [1, 2, 3, 4], close: [1, 2, 3, 4] },
    { x: [1, 2, null, 5, 6, null], y: [1, 2, null, 5, 6, null], customdata: [0, 0, 0, 1, 1, 1] },
    { x: [1, 3, 4], y: [1, 3, 4], marker: { color: ["a", "b", "c"] } },
  ];
  const removed = trimToWindow(data, ["candle", "trade_line:win", "trade:exit"], 3);
  assert.equal(removed, 2 + 3 + 1);
  assert.deepEqual(data[0].x, [3, 4]);
  assert.deepEqual(data[0].close, [3, 4]);
  assert.deepEqual(data[1].x, [5, 6, null]);
  assert.deepEqual(data[2].marker.color, ["b", "c"]);
});

test("colour-blind palette: P&L pair apart and readable under a simulated deuteranopia", () => {
  const cb = deuteranopiaReport(PALETTES.cb);
  assert.ok(cb.pnlDeltaE >= MIN_DELTA_E, `cb P&L ΔE ${cb.pnlDeltaE}`);
  assert.ok(cb.sideDeltaE >= MIN_DELTA_E / 2, `cb side ΔE ${cb.sideDeltaE}`);
  assert.ok(cb.stateDeltaE >= MIN_DELTA_E / 2, `cb stale/dead ΔE ${cb.stateDeltaE}`);
  assert.ok(cb.minContrast >= MIN_CONTRAST, `cb contrast ${cb.minContrast} (${cb.worst})`);
  // The red/green default is exactly what a deuteranope cannot tell apart: the reason for cb.
  assert.ok(deuteranopiaReport(PALETTES.default).pnlDeltaE < cb.pnlDeltaE / 2);
  assert.equal(deuteranopia("#ffffff"), "#ffffff");
  assert.ok(Math.abs(contrast("#000000", "#ffffff") - 21) < 1e-9);
  assert.equal(deltaE("#123456", "#123456"), 0);
});

test("palette: P&L colours only on P&L, bots one colour everywhere, candles told by fill", () => {
  const payload = {
    figure: {
      data: [
        { type: "candlestick", x: [1] },
        { x: [1], customdata: [["a", "s", "buy"]], marker: {} },
        {
          x: [1, 2],
          customdata: [
            ["a", "s", "sell", 1, "p", 5],
            ["a", "s", "sell", 1, "p", -1],
          ],
          marker: {},
        },
        { x: [1], y: [1], line: { color: "#000" } },
      ],
      layout: { xaxis: {}, yaxis: {} },
    },
    trace_map: { candle: 0, "trade:entry": 1, "trade:exit": 2, "equity:momo-1": 3 },
    live: { templates: {} },
  };
  const pal = PALETTES.cb;
  applyPalette(payload, pal);
  const [candle, entry, exit, equity] = payload.figure.data;
  assert.equal(candle.increasing.fillcolor, pal.background);
  assert.equal(candle.decreasing.fillcolor, pal.down);
  assert.deepEqual(entry.marker.color, [pal.buy]);
  assert.deepEqual(exit.marker.color, [pal.win, pal.loss]);
  assert.equal(equity.line.color, botColor("momo-1", pal));
  assert.equal(equity.line.shape, "hv");
  assert.equal(payload.live.colors.pnl.win, pal.win);
});
