// The wall's pure logic: URL parameters, grid shape, KPIs, and live events → Plotly operations.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Kpis, TileModel, gridShape, parseWallParams, prepareFigure, toMs } from "../wall-model.js";
import { buildFigure, confidenceStyle } from "../wall-figure.js";
import { historyData, candle, candleSeries, signal, trade, botStatus, T0, MINUTE } from "./helpers/fixtures.js";
import { historyRows } from "../wall-figure.js";

/** What Plotly.addTraces / extendTraces do to gd.data (concat, then keep the last maxPoints). */
function applyPlan(data, plan) {
  data.push(...plan.add);
  for (const { update, indices, maxPoints } of plan.extend) {
    indices.forEach((index, j) => {
      for (const [attr, values] of Object.entries(update)) {
        const parts = attr.split(".");
        let owner = data[index];
        for (const p of parts.slice(0, -1)) owner = owner[p];
        const key = parts.at(-1);
        if (!Array.isArray(owner[key])) throw new Error(`cannot extend missing or non-extendable attribute: ${attr}`);
        owner[key] = owner[key].concat(values[j]).slice(-maxPoints);
      }
    });
  }
}

function tile(events, { maxPoints = 100 } = {}) {
  const data = historyData(events.map((e, i) => ({ ...e, seq: i + 1 })));
  const payload = prepareFigure(buildFigure("BTCUSDT", data), { maxPoints });
  const model = new TileModel(payload, data, { maxPoints, now: T0 + 3 * 60 * MINUTE });
  return { model, data: payload.figure.data, payload };
}

let seq = 1000;
const s = (event) => ({ ...event, seq: ++seq, symbol: "BTCUSDT" });

test("URL parameters: symbols, window, filter, thresholds, with defaults for the rest", () => {
  const c = parseWallParams("?symbols=btcusdt,ETHUSDT,,BTCUSDT&minutes=90&bots=momo-1,mr-2&min_confidence=0.6&sides=buy&stale_s=10&token=t0k&max_points=abc");
  assert.deepEqual(c.symbols, ["BTCUSDT", "ETHUSDT"]);
  assert.equal(c.minutes, 90);
  assert.deepEqual(c.filter, { bots: ["momo-1", "mr-2"], sides: ["buy"], min_confidence: 0.6 });
  assert.equal(c.staleS, 10);
  assert.equal(c.deadS, 120);
  assert.equal(c.maxPoints, 2000, "a bad number falls back to the default");
  assert.equal(c.token, "t0k");
  assert.equal(c.kpis, true);
  assert.equal(parseWallParams("?kpis=0&legend=off").kpis, false);
  assert.deepEqual(parseWallParams("").symbols, []);
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
});

test("the live candle is replaced in place; a new minute is appended", () => {
  const { model, data } = tile(candleSeries(5));
  const last = T0 + 4 * MINUTE;
  let plan = model.plan([s(candle(last, 500))], data);
  assert.equal(plan.extend.length, 0);
  assert.equal(plan.replaced, true);
  assert.equal(data[0].close.at(-1), 500);
  assert.equal(data[0].x.length, 5);

  plan = model.plan([s(candle(last + MINUTE, 501)), s(candle(last + MINUTE, 502)), s(candle(last + 2 * MINUTE, 503))], data);
  assert.equal(plan.replaced, false, "a candle updated inside the batch is replaced in the queue");
  assert.deepEqual(plan.extend.map((g) => g.indices), [[0]]);
  applyPlan(data, plan);
  assert.deepEqual(data[0].close.slice(-3), [500, 502, 503]);
  assert.deepEqual(data[0].x.slice(-2), [last + MINUTE, last + 2 * MINUTE]);
  assert.equal(data[0].open.length, data[0].x.length);

  plan = model.plan([s(candle(T0 - 60 * MINUTE, 1))], data); // older than anything shown
  assert.equal(plan.extend.length + plan.add.length, 0);
  assert.equal(model.stats.late, 1);
});

test("signals of a new strategy or type get a new trace from the template; markers sized by confidence", () => {
  const { model, data } = tile([...candleSeries(3), signal(T0, { confidence: 0.5 })]);
  const before = data.length;
  const plan = model.plan([s(signal(T0 + MINUTE, { confidence: 1 })), s(signal(T0 + MINUTE, { strategy: "ema_crossover", type: "sell", confidence: 0 }))], data);
  assert.equal(plan.add.length, 1);
  assert.equal(plan.add[0].name, "ema_crossover sell");
  assert.deepEqual(plan.add[0].marker.size, [confidenceStyle(0).size]);
  const index = model.index("signal:momentum:buy");
  assert.deepEqual(plan.extend[0].indices, [index]);
  assert.deepEqual(plan.extend[0].update["marker.size"], [[confidenceStyle(1).size]]);
  assert.deepEqual(plan.extend[0].update.customdata, [[["momo-1", 1]]]);
  applyPlan(data, plan);
  assert.equal(data.length, before + 1);
  assert.equal(model.index("signal:ema_crossover:sell"), before);
  // The next batch extends the new trace like any other.
  const next = model.plan([s(signal(T0 + 2 * MINUTE, { strategy: "ema_crossover", type: "sell" }))], data);
  assert.deepEqual(next.extend[0].indices, [before]);
  applyPlan(data, next);
  assert.equal(data[before].x.length, 2);
  assert.equal(data[before].marker.size.length, 2);
});

test("trades: entry/exit markers, and an entry→exit line coloured by P&L", () => {
  const { model, data } = tile([...candleSeries(3), trade(T0, { action: "entry", position: "p-9", price: 100 })]);
  const plan = model.plan([s(trade(T0 + MINUTE, { action: "exit", side: "sell", price: 98, pnl: -2, position: "p-9" }))], data);
  applyPlan(data, plan);
  const loss = data[model.index("trade_line:loss")];
  assert.deepEqual(loss.x, [T0, T0 + MINUTE, null]);
  assert.deepEqual(loss.y, [100, 98, null]);
  const exits = data[model.index("trade:exit")];
  assert.deepEqual(exits.marker.color, ["#ef5350"]);
  assert.equal(model.kpis.snapshot().pnl_today, -2);
  assert.equal(model.kpis.snapshot().win_rate, 0);
});

test("equity per bot: a new trace, and a gap drawn as a gap", () => {
  const { model, data } = tile(candleSeries(2));
  let plan = model.plan([s(botStatus(T0, { equity: 100 })), s(botStatus(T0 + MINUTE, { equity: 101 }))], data);
  assert.equal(plan.add.length, 1);
  applyPlan(data, plan);
  plan = model.plan([s(botStatus(T0 + 60 * MINUTE, { equity: 105 }))], data);
  applyPlan(data, plan);
  const equity = data[model.index("equity:momo-1")];
  assert.deepEqual(equity.y, [100, 101, null, 105]);
  assert.equal(equity.x.length, 4);
});

test("every trace stays within maxPoints (trade lines within 3 × maxPoints)", () => {
  const { model, data } = tile([...candleSeries(30), trade(T0, { action: "entry", position: "p-0" })], { maxPoints: 20 });
  assert.equal(data[0].x.length, 20, "history is cut to maxPoints too");
  for (let i = 0; i < 200; i++) {
    const ts = T0 + (30 + i) * MINUTE;
    applyPlan(data, model.plan([
      s(candle(ts, 100 + i)), s(signal(ts)),
      s(trade(ts, { action: "entry", position: `p-${i + 1}` })), s(trade(ts, { action: "exit", position: `p-${i}`, pnl: i % 2 ? 1 : -1 })),
    ], data));
  }
  for (const [key, index] of model.traceMap) {
    const limit = key.startsWith("trade_line:") ? 60 : 20;
    assert.ok(data[index].x.length <= limit, `${key}: ${data[index].x.length}`);
    for (const attr of ["y", "open", "close", "customdata"]) {
      if (Array.isArray(data[index][attr])) assert.equal(data[index][attr].length, data[index].x.length, `${key}.${attr}`);
    }
  }
  assert.ok(model.positions.size <= 2);
});

test("KPIs: from the server payload when present, else from the history; updated live", () => {
  const now = T0 + 60 * MINUTE;
  const rows = historyRows(historyData([
    { ...candle(T0, 100), seq: 1 },
    { ...trade(T0, { action: "entry", position: "a" }), seq: 2 },
    { ...trade(T0 + MINUTE, { action: "exit", pnl: 5, position: "a" }), seq: 3 },
    { ...trade(T0 + MINUTE, { action: "entry", position: "b" }), seq: 4 },
  ]));
  const derived = new Kpis(null, rows, now);
  assert.deepEqual(derived.snapshot(), { last_price: 100, pnl_today: 5, win_rate: 1, trades_today: 1, open_positions: 1, active_bots: 1 });
  const given = new Kpis({ last_price: 7, pnl_today: -3, win_rate: 0.25, trades_today: 4, open_positions: 3, active_bots: 2 }, rows, now);
  given.onEvent(trade(now, { action: "exit", pnl: 1, position: "z" }));
  given.onEvent(candle(now, 8));
  given.onEvent(botStatus(now, { bot: "x", status: "active" }));
  assert.deepEqual(given.snapshot(), { last_price: 8, pnl_today: -2, win_rate: 0.4, trades_today: 5, open_positions: 2, active_bots: 1 });
  assert.equal(given.rollDay(now + 24 * 60 * MINUTE), true);
  assert.equal(given.snapshot().pnl_today, 0);
});
