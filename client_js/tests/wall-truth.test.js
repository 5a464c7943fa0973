// The wall's truth, the pure parts: tile specs, the day book kept live, trimming to the window,
// and the palettes (a simulated deuteranopia keeps the colour-blind palette's P&L pair apart).

import assert from "node:assert/strict";
import { test } from "node:test";
import { DayBook } from "../wall-daybook.js";
import { fmtSigned, kpiCells, priceDigits, tileState } from "../wall-head.js";
import { fitMarkers, labelEquity } from "../wall-marks.js";
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

test("tile state: by the last event's age in server time; disconnected and waiting first", () => {
  const base = { connected: true, ready: true, failed: false, now: 1_000_000, staleS: 30, deadS: 120 };
  const at = (lastTs, arrivalTs = null, extra = {}) =>
    tileState({ ...base, lastTs, arrivalTs, ...extra }).state;
  assert.equal(at(1_000_000 - 10_000), "live");
  assert.equal(at(1_000_000 - 40_000), "stale");
  // A fresh load of a feed silent for 3 min: dead at once (the history frame's arrival is no event).
  assert.equal(at(1_000_000 - 180_000), "dead");
  // A live candle updated in place keeps its old ts: its arrival counts.
  assert.equal(at(1_000_000 - 180_000, 1_000_000 - 1_000), "live");
  assert.equal(at(1_000_000, null, { connected: false }), "disconnected");
  assert.equal(at(null, null, { ready: false }), "waiting");
  assert.equal(at(1_000_000, null, { failed: true }), "dead");
  const found = tileState({ ...base, lastTs: 1_000_000 - 240_000 });
  assert.equal(found.age, 240);
});

test("KPI cells: today's P&L with its sample, LAST with its window change, OPEN with uPnL, BOTS named", () => {
  const cells = kpiCells({
    day: {
      ready: true,
      pnl: -63.314,
      trades: 92,
      wins: 33,
      win_rate: 35.87,
      open_positions: 2,
      unrealized_pnl: 12.3,
      open_price: 3200,
    },
    lastPrice: 3100,
    windowOpen: 3000,
    digits: 2,
    minutes: 60,
    statuses: new Map([
      ["momo-1", "active"],
      ["momo-2", "paused"],
    ]),
  });
  assert.deepEqual(cells.pnl, { text: "−63.31", tone: "bad" });
  assert.equal(cells.win.text, "36 % · 92");
  assert.deepEqual(cells.open, { text: "2 · +12.30", tone: "good" });
  assert.deepEqual(cells.last, {
    text: "3,100.00 ▼3.13%",
    tone: "down",
    label: "last · day · 60 min ▲3.33%",
  });
  assert.deepEqual(cells.bots, { text: "1/2 · momo-2 paused", tone: "warn" });
  const waiting = kpiCells({ day: { ready: false }, lastPrice: null, digits: 2 });
  assert.equal(waiting.pnl.text, "…");
  assert.equal(waiting.last.text, "–");
  assert.equal(fmtSigned(-0.001), "0.00", "no −0.00");
  assert.deepEqual([priceDigits(64000), priceDigits(150), priceDigits(2.5), priceDigits(0.45)], [2, 3, 4, 4]);
});

test("markers: hold hidden by default, sized to the candle width, signals thinned past the budget", () => {
  const signals = (n) => ({
    x: Array.from({ length: n }, (_, i) => i),
    y: Array(n).fill(1),
    marker: { size: Array(n).fill(10) },
  });
  const payload = {
    figure: {
      data: [
        { x: Array.from({ length: 360 }, (_, i) => i) },
        signals(300),
        signals(100),
        { x: [1], marker: { size: 12 } },
      ],
      layout: {},
    },
    trace_map: { candle: 0, "signal:momo:buy": 1, "signal:momo:hold": 2, "trade:exit": 3 },
    live: { confidence: { size: [6, 14] }, templates: { signal: { hold: {}, buy: {} } } },
  };
  const { factor, stride } = fitMarkers(payload, { plotWidth: 880, budget: 100 });
  const [, buy, hold, exit] = payload.figure.data;
  assert.equal(hold.visible, false);
  assert.equal(payload.live.templates.signal.hold.visible, false);
  assert.equal(buy.visible, undefined);
  assert.ok(factor < 1 && exit.marker.size < 12, "360 candles on 880 px: smaller markers");
  assert.equal(stride, 3);
  assert.equal(buy.marker.size.filter((v) => v > 0).length, 100, "every third signal kept");
  assert.equal(buy.x.length, 300, "the data stays the server's");
  const none = { ...structuredClone(payload), figure: { ...structuredClone(payload.figure) } };
  fitMarkers(none, { mode: "none" });
  assert.equal(none.figure.data[3].visible, false);
});

test("equity lines are named at their right end with the bot's P&L today", () => {
  const layout = { annotations: [{ text: "equity" }, { name: "equity-label", text: "old" }] };
  const data = [
    { x: [1, 2], y: [5, 6] },
    { x: [1, 2, 3], y: [10, 11, null], yaxis: "y2", line: { color: "#abcdef" } },
  ];
  const n = labelEquity(layout, data, ["candle", "equity:momo-1"], {
    dayPnl: new Map([["momo-1", -12.4]]),
    format: fmtSigned,
  });
  assert.equal(n, 1);
  assert.deepEqual(
    layout.annotations.map((a) => a.text),
    ["equity", "momo-1 −12.40"],
  );
  const label = layout.annotations[1];
  assert.deepEqual([label.x, label.y, label.yref, label.font.color], [2, 11, "y2", "#abcdef"]);
  const d = new DayBook();
  d.seed(book());
  assert.deepEqual([...d.pnlByBot()], [["b", -3]]);
});

test("palettes: no bot colour is a P&L colour", () => {
  for (const pal of Object.values(PALETTES))
    for (const colour of pal.equity) assert.ok(![pal.win, pal.loss].includes(colour), colour);
});

test("markers grow with a big tile (4K at device scale 1) when the candles leave room", () => {
  const payload = {
    figure: {
      data: [{ x: Array.from({ length: 60 }, (_, i) => i) }, { x: [1], marker: { size: 12 } }],
      layout: {},
    },
    trace_map: { candle: 0, "trade:exit": 1 },
    live: { templates: {} },
  };
  const { factor } = fitMarkers(payload, { plotWidth: 1800 });
  assert.equal(factor, 2);
  assert.equal(payload.figure.data[1].marker.size, 24);
});
