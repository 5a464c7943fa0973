// The wall's pure logic: URL parameters, grid shape, and live events → Plotly operations by the
// server's rules (docs/charts.md section 1). wall-contract.test.js checks the same code against
// figures the server built; these are the small cases, one rule at a time.

import assert from "node:assert/strict";
import { test } from "node:test";
import { buildFigure, confidenceStyle, historyRows, pnlLabel } from "../wall-figure.js";
import { Ledger } from "../wall-ledger.js";
import { gridShape, parseWallParams, prepareFigure, slotDue, TileModel, toMs } from "../wall-model.js";
import {
  botStatus,
  candle,
  candleSeries,
  historyData,
  MINUTE,
  signal,
  T0,
  trade,
} from "./helpers/fixtures.js";
import { applyPlan } from "./helpers/plotly-sim.js";

function tile(events, { maxPoints = 100 } = {}) {
  const data = historyData(events.map((e, i) => ({ ...e, seq: i + 1 })));
  const payload = prepareFigure(buildFigure("BTCUSDT", data, { maxPoints }), { maxPoints });
  const model = new TileModel(payload, data, { maxPoints, now: T0 + 3 * 60 * MINUTE });
  return { model, data: payload.figure.data, payload };
}

let seq = 1000;
const s = (event) => ({ ...event, seq: ++seq, symbol: "BTCUSDT" });

test("URL parameters: symbols, window, filter, thresholds, with defaults for the rest", () => {
  const c = parseWallParams(
    "?symbols=btcusdt,ETHUSDT,,BTCUSDT&minutes=90&bots=momo-1,mr-2&min_confidence=0.6&sides=buy&stale_s=10&token=t0k&max_points=abc&gap_s=120",
  );
  assert.deepEqual(c.symbols, ["BTCUSDT", "ETHUSDT"]);
  assert.equal(c.minutes, 90);
  assert.deepEqual(c.filter, { bots: ["momo-1", "mr-2"], sides: ["buy"], min_confidence: 0.6 });
  assert.equal(c.staleS, 10);
  assert.equal(c.deadS, 120);
  assert.equal(c.maxPoints, 2000, "a bad number falls back to the default");
  assert.equal(c.token, "t0k");
  assert.equal(c.gapS, 120);
  assert.equal(c.kpis, true);
  assert.equal(parseWallParams("?kpis=0&legend=off").kpis, false);
  assert.deepEqual(
    ["", "?legend=1", "?legend=off", "?legend=tiles"].map((q) => parseWallParams(q).legend),
    ["key", "tiles", "none", "tiles"],
  );
  assert.deepEqual(
    ["", "?gl=1", "?gl=0", "?gl=auto"].map((q) => parseWallParams(q).gl),
    ["auto", "on", "off", "auto"],
  );
  assert.equal(c.redrawMs, 250, "the live layer paints cheaply: 4 times a second per tile");
  assert.equal(c.liveLayer, true);
  assert.equal(c.foldS, 60);
  assert.deepEqual(
    [parseWallParams("?live_layer=0").redrawMs, parseWallParams("?live_layer=0").liveLayer],
    [1000, false],
  );
  assert.equal(parseWallParams("?fold_s=0").foldS, 60, "out of range falls back");
  assert.deepEqual(parseWallParams("").symbols, []);
});

test("tiles flush in their own slots of the period, never twice in one period", () => {
  // 4 tiles, 200 ms: slots at 0, 50, 100, 150 (+ m × 200).
  assert.deepEqual(
    [0, 1, 2, 3].map((slot) => slotDue(1000, slot, 4, 200)),
    [1200, 1050, 1100, 1150],
  );
  assert.equal(slotDue(1049, 1, 4, 200), 1050, "the next start of its slot");
  assert.equal(slotDue(1050, 1, 4, 200), 1250, "not twice in a period");
  assert.equal(slotDue(-Infinity, 2, 4, 200), -Infinity, "never flushed: at once");
  assert.equal(slotDue(1000, 0, 4, 0), 1000, "redraw_ms=0: every frame");
  // Tiles that all flushed in the same frame come due at different instants.
  const due = [0, 1, 2, 3, 4, 5].map((slot) => slotDue(5000, slot, 6, 250));
  assert.equal(new Set(due).size, 6);
  assert.ok(due.every((t) => t > 5000 && t <= 5250));
});

test("the grid uses the screen: landscape tiles, no more empty cells than needed", () => {
  assert.deepEqual(gridShape(1, 1920, 1080), { cols: 1, rows: 1 });
  assert.deepEqual(gridShape(2, 1920, 1080), { cols: 2, rows: 1 });
  assert.deepEqual(gridShape(4, 1920, 1080), { cols: 2, rows: 2 });
  assert.deepEqual(gridShape(6, 1920, 1080), { cols: 3, rows: 2 });
  assert.deepEqual(gridShape(3, 1080, 1920), { cols: 1, rows: 3 });
  assert.deepEqual(gridShape(5, 1920, 1080, 5), { cols: 5, rows: 1 });
});

test("x values become ms; date strings without a zone are UTC", () => {
  assert.equal(toMs("2025-01-06 09:00:00"), T0);
  assert.equal(toMs("2025-01-06T09:00:00Z"), T0);
  assert.equal(toMs("2025-01-06T10:00:00+01:00"), T0);
  assert.equal(toMs(T0), T0);
  const payload = buildFigure("X", historyData(candleSeries(3)));
  payload.figure.data[0].x = payload.figure.data[0].x.map((x) => new Date(x).toISOString().replace("Z", ""));
  prepareFigure(payload);
  assert.deepEqual(payload.figure.data[0].x, [T0, T0 + MINUTE, T0 + 2 * MINUTE]);
  assert.equal(payload.figure.layout.title, undefined, "the tile header shows the symbol");
});

test("P&L labels: sign, two decimals, thousands, ties to even like Python", () => {
  assert.equal(pnlLabel(1234.5), "+1,234.50");
  assert.equal(pnlLabel(-0.4), "-0.40");
  assert.equal(pnlLabel(0), "+0.00");
  assert.equal(pnlLabel(0.125), "+0.12");
  assert.equal(pnlLabel(0.375), "+0.38");
  assert.equal(pnlLabel(-2.675), "-2.67"); // 2.675 is 2.67499999… in binary
  assert.equal(pnlLabel(1e6), "+1,000,000.00");
  assert.equal(pnlLabel(null), "n/a");
});

test("the live candle is replaced in place; a new minute is appended", () => {
  const { model, data } = tile(candleSeries(5));
  const last = T0 + 4 * MINUTE;
  let plan = model.plan([s(candle(last, 500))], data);
  assert.equal(plan.extend.length, 0);
  assert.equal(plan.replaced, true);
  assert.equal(data[0].close.at(-1), 500);
  assert.equal(data[0].x.length, 5);

  plan = model.plan(
    [s(candle(last + MINUTE, 501)), s(candle(last + MINUTE, 502)), s(candle(last + 2 * MINUTE, 503))],
    data,
  );
  assert.equal(plan.replaced, false, "a candle updated inside the batch is replaced in the queue");
  assert.deepEqual(
    plan.extend.map((g) => g.indices),
    [[0]],
  );
  assert.deepEqual(Object.keys(plan.extend[0].update), ["x", "open", "high", "low", "close"]);
  applyPlan(data, plan);
  assert.deepEqual(data[0].close.slice(-3), [500, 502, 503]);
  assert.deepEqual(data[0].x.slice(-2), [last + MINUTE, last + 2 * MINUTE]);
  assert.equal(data[0].open.length, data[0].x.length);

  plan = model.plan([s(candle(T0 - 60 * MINUTE, 1))], data); // older than anything shown
  assert.equal(plan.extend.length + plan.add.length, 0);
  assert.equal(model.stats.late, 1);
});

test("signals: customdata [bot, strategy, confidence], size and opacity from live.confidence; a new strategy gets a trace from the template", () => {
  const { model, data, payload } = tile([...candleSeries(3), signal(T0, { confidence: 0.5 })]);
  const before = data.length;
  const plan = model.plan(
    [
      s(signal(T0 + MINUTE, { confidence: 1 })),
      s(signal(T0 + MINUTE, { strategy: "ema_crossover", type: "sell", confidence: 0.1234 })),
    ],
    data,
  );
  assert.equal(plan.add.length, 1);
  const added = plan.add[0];
  assert.equal(added.name, "ema_crossover sell");
  assert.equal(added.legendgroup, "ema_crossover");
  assert.equal(added.meta.key, "signal:ema_crossover:sell");
  assert.equal(added.marker.symbol, payload.live.symbols.signal.sell);
  assert.equal(added.marker.color, payload.live.colors.signal.sell);
  const style = confidenceStyle(0.1234, payload.live);
  assert.deepEqual(style, { size: 7.234, opacity: 0.43 }, "6 + 10c and 0.35 + 0.65c, 3 decimals");
  assert.deepEqual(added.marker.size, [style.size]);
  assert.deepEqual(added.customdata, [["momo-1", "ema_crossover", 0.1234]]);
  const index = model.index("signal:momentum:buy");
  assert.deepEqual(plan.extend[0].indices, [index]);
  assert.deepEqual(plan.extend[0].update["marker.size"], [[16]]);
  assert.deepEqual(plan.extend[0].update.customdata, [[["momo-1", "momentum", 1]]]);
  applyPlan(data, plan);
  assert.equal(data.length, before + 1);
  assert.equal(model.index("signal:ema_crossover:sell"), before);
  const next = model.plan([s(signal(T0 + 2 * MINUTE, { strategy: "ema_crossover", type: "sell" }))], data);
  assert.deepEqual(next.extend[0].indices, [before]);
  applyPlan(data, next);
  assert.equal(data[before].x.length, 2);
  assert.equal(data[before].marker.size.length, 2);
});

test("trades: the first trade adds the trade traces; exits carry P&L and its label; lines start at the average entry", () => {
  const { model, data, payload } = tile(candleSeries(3));
  assert.equal(model.index("trade:entry"), undefined);
  let plan = model.plan(
    [
      s(trade(T0, { action: "entry", position: "p-9", price: 100, qty: 1 })),
      s(trade(T0 + 30_000, { action: "entry", position: "p-9", price: 103, qty: 2 })),
    ],
    data,
  );
  assert.deepEqual(
    plan.add.map((t) => t.meta.key),
    ["trade:entry"],
  );
  assert.deepEqual(plan.add[0].customdata, [
    ["momo-1", "momentum", "buy", 1, "p-9"],
    ["momo-1", "momentum", "buy", 2, "p-9"],
  ]);
  assert.deepEqual(plan.add[0].marker.color, [payload.live.colors.side.buy, payload.live.colors.side.buy]);
  applyPlan(data, plan);
  // A partial exit without a reported P&L: computed from the average entry (102), no fees.
  plan = model.plan(
    [
      s(trade(T0 + MINUTE, { action: "exit", side: "sell", price: 101, qty: 1, pnl: null, position: "p-9" })),
      s(
        trade(T0 + 2 * MINUTE, {
          action: "exit",
          side: "sell",
          price: 104.5,
          qty: 2,
          pnl: 1234.5,
          position: "p-9",
        }),
      ),
    ],
    data,
  );
  applyPlan(data, plan);
  const exits = data[model.index("trade:exit")];
  assert.deepEqual(exits.customdata, [
    ["momo-1", "momentum", "sell", 1, "p-9", -1, "-1.00"],
    ["momo-1", "momentum", "sell", 2, "p-9", 1234.5, "+1,234.50"],
  ]);
  assert.deepEqual(exits.marker.color, [payload.live.colors.pnl.loss, payload.live.colors.pnl.win]);
  const loss = data[model.index("trade_line:loss")];
  assert.deepEqual(
    [loss.x, loss.y, loss.customdata],
    [
      [T0, T0 + MINUTE, null],
      [102, 101, null],
      [["momo-1", "-1.00"], ["momo-1", "-1.00"], null],
    ],
  );
  const win = data[model.index("trade_line:win")];
  assert.deepEqual(
    [win.x, win.y],
    [
      [T0, T0 + 2 * MINUTE, null],
      [102, 104.5, null],
    ],
    "each partial exit: its own segment from the first entry",
  );
  // An exit of a position whose entry is not known: no line, P&L unknown unless reported.
  plan = model.plan([s(trade(T0 + 3 * MINUTE, { action: "exit", position: "elsewhere", pnl: null }))], data);
  applyPlan(data, plan);
  assert.deepEqual(exits.customdata.at(-1).slice(5), [null, "n/a"]);
  assert.equal(exits.marker.color.at(-1), payload.live.colors.pnl.flat);
  assert.equal(loss.x.length + win.x.length, 6);
  const k = model.kpis.snapshot();
  assert.equal(k.trades, 1);
  assert.equal(k.win_rate, 100);
  assert.equal(k.open_positions, 0);
});

test("equity: a new bot adds a line (next colour), the strip appears once, a pause is a gap", () => {
  const { model, data, payload } = tile(candleSeries(2));
  assert.equal(payload.figure.layout.yaxis2, undefined);
  let plan = model.plan(
    [
      s(botStatus(T0, { equity: 100 })),
      s(botStatus(T0 + MINUTE, { equity: 101 })),
      s(botStatus(T0 + MINUTE, { equity: 101.5 })),
    ],
    data,
  );
  assert.deepEqual(plan.relayout, payload.live.equity_axes);
  assert.equal(plan.add.length, 1);
  assert.equal(plan.add[0].name, "momo-1");
  assert.equal(plan.add[0].line.color, payload.live.colors.equity[0]);
  assert.equal(plan.add[0].hovertemplate.includes("<b>momo-1</b>"), true);
  applyPlan(data, plan);
  plan = model.plan(
    [
      s(botStatus(T0 + 60 * MINUTE, { equity: 105 })),
      s(botStatus(T0 + 60 * MINUTE, { bot: "ema-1", equity: 7 })),
    ],
    data,
  );
  assert.equal(plan.relayout, null);
  assert.equal(plan.add[0].line.color, payload.live.colors.equity[1]);
  applyPlan(data, plan);
  const equity = data[model.index("equity:momo-1")];
  assert.deepEqual(
    equity.y,
    [100, 101.5, null, 105],
    "same ts replaces; a pause past gap_ms is a null point",
  );
  assert.deepEqual(equity.x, [T0, T0 + MINUTE, T0 + MINUTE + 1, T0 + 60 * MINUTE]);
});

test("a chart without candles: signal and trade prices extend the price line", () => {
  const { model, data } = tile([signal(T0, { price: 10 }), signal(T0 + MINUTE, { price: 11 })]);
  const price = model.index("price");
  assert.equal(model.index("candle"), undefined);
  applyPlan(
    data,
    model.plan([s(signal(T0 + 2 * MINUTE, { price: 12 })), s(trade(T0 + 2 * MINUTE, { price: 12.5 }))], data),
  );
  assert.deepEqual(data[price].y, [10, 11, 12.5]);
  applyPlan(data, model.plan([s(candle(T0 + 3 * MINUTE, 13))], data));
  assert.deepEqual(data[price].y.at(-1), 13);
});

test("every trace stays within maxPoints (trade lines within 3 × maxPoints)", () => {
  const { model, data } = tile([...candleSeries(30), trade(T0, { action: "entry", position: "p-0" })], {
    maxPoints: 20,
  });
  assert.ok(data[0].x.length <= 20, "history is bounded to maxPoints too");
  for (let i = 0; i < 200; i++) {
    const ts = T0 + (30 + i) * MINUTE;
    applyPlan(
      data,
      model.plan(
        [
          s(candle(ts, 100 + i)),
          s(signal(ts)),
          s(trade(ts, { action: "entry", position: `p-${i + 1}` })),
          s(trade(ts, { action: "exit", position: `p-${i}`, pnl: i % 2 ? 1 : -1 })),
        ],
        data,
      ),
    );
  }
  for (const [key, index] of model.traceMap) {
    const limit = key.startsWith("trade_line:") ? 60 : 20;
    assert.ok(data[index].x.length <= limit, `${key}: ${data[index].x.length}`);
    for (const attr of ["y", "open", "close", "customdata"]) {
      if (Array.isArray(data[index][attr]))
        assert.equal(data[index][attr].length, data[index].x.length, `${key}.${attr}`);
    }
  }
  assert.ok(model.ledger.positions.size <= 202);
});

test("KPIs: from the history rows, then live; today's P&L starts again at midnight UTC", () => {
  const now = T0 + 60 * MINUTE;
  const rows = historyRows(
    historyData([
      { ...candle(T0, 100), seq: 1 },
      { ...trade(T0, { action: "entry", position: "a" }), seq: 2 },
      { ...trade(T0 + MINUTE, { action: "exit", pnl: 5, position: "a" }), seq: 3 },
      { ...trade(T0 + MINUTE, { action: "entry", position: "b" }), seq: 4 },
      { ...botStatus(T0, { bot: "x", status: "paused", equity: null }), seq: 5 },
    ]),
  );
  const ledger = new Ledger(rows, now);
  assert.deepEqual(ledger.snapshot(), {
    last_price: 100,
    today_pnl: 5,
    win_rate: 100,
    open_positions: 1,
    active_bots: 0,
    realized_pnl: 5,
    trades: 1,
    day_start: Date.UTC(2025, 0, 6),
  });
  ledger.onEvent(trade(now, { action: "exit", pnl: -7, position: "b" }));
  ledger.onEvent(candle(now, 8));
  ledger.onEvent(botStatus(now, { bot: "x", status: "active" }));
  assert.deepEqual(ledger.snapshot(), {
    last_price: 8,
    today_pnl: -2,
    win_rate: 50,
    open_positions: 0,
    active_bots: 1,
    realized_pnl: -2,
    trades: 2,
    day_start: Date.UTC(2025, 0, 6),
  });
  assert.equal(ledger.rollDay(now + 24 * 60 * MINUTE), true);
  assert.equal(ledger.snapshot().today_pnl, 0);
  assert.equal(new Ledger(historyRows({}), now).snapshot().active_bots, null, "no status data: unknown");
});
