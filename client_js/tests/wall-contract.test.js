// The client against the server's figure contract (docs/charts.md section 1), on data the server
// itself produced: tests/support/wall_contract.py writes fixtures/wall-contract.json with the
// server's figure and KPIs for the first part of a demo half hour ("head"), for all of it
// ("full"), and the remaining events ("tail"). The fallback figure must equal the server's, and
// the head's figure with the tail appended live must hold the same points as the full figure.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { buildFigure, historyRows } from "../wall-figure.js";
import { Ledger } from "../wall-ledger.js";
import { prepareFigure, TileModel } from "../wall-model.js";
import { applyPlan } from "./helpers/plotly-sim.js";

const contract = JSON.parse(readFileSync(new URL("./fixtures/wall-contract.json", import.meta.url), "utf8"));
const { symbol, now_ms: now } = contract;

const traceOf = (payload, key) => payload.figure.data[payload.trace_map[key]];
const withoutNulls = (trace) => {
  const keep = trace.y.map((y, i) => y != null || trace.x[i] == null);
  return { x: trace.x.filter((_, i) => keep[i]), y: trace.y.filter((_, i) => keep[i]) };
};

function assertKpis(actual, expected, what) {
  for (const [key, value] of Object.entries(expected)) {
    if (key === "unrealized_pnl") continue; // not kept live by the wall
    if (typeof value === "number" && !Number.isInteger(value))
      assert.ok(Math.abs(actual[key] - value) < 1e-6, `${what} ${key}: ${actual[key]} != ${value}`);
    else assert.equal(actual[key], value, `${what} ${key}`);
  }
}

for (const [name, variant] of Object.entries(contract.variants)) {
  test(`the fallback figure is the server's figure (${name})`, () => {
    const ours = buildFigure(symbol, variant.full.data, { now });
    assert.deepEqual(ours.trace_map, variant.full.trace_map);
    for (const [i, trace] of variant.full.figure.data.entries()) {
      assert.deepEqual(ours.figure.data[i], trace, `trace ${trace.meta.key}`);
    }
    assert.deepEqual(ours.figure.layout, variant.full.figure.layout);
    assert.deepEqual(ours.live, variant.full.live);
    assertKpis(ours.kpis, variant.full.kpis, "fallback");
    const head = buildFigure(symbol, variant.head.data, { now });
    assert.deepEqual(head.live, variant.head.live);
  });
}

/** The head figure (the server's), then every tail event through TileModel in batches, as the wall does. */
function replay(variant, { gapMs = 600_000, batch = 7 } = {}) {
  const payload = prepareFigure(structuredClone(variant.head), { maxPoints: 2000, title: true });
  const data = payload.figure.data;
  const model = new TileModel(payload, variant.head.data, { maxPoints: 2000, gapMs, now });
  const layouts = [];
  for (let i = 0; i < variant.tail.length; i += batch) {
    const plan = model.plan(variant.tail.slice(i, i + batch), data);
    if (plan.relayout) layouts.push(plan.relayout);
    applyPlan(data, plan);
  }
  return { model, data, layouts };
}

function assertSamePoints(model, data, full, { priceLine, head }) {
  const keys = Object.keys(full.trace_map);
  assert.deepEqual([...model.traceMap.keys()].sort(), [...keys].sort(), "the same traces");
  for (const key of keys) {
    const ours = data[model.index(key)];
    const theirs = traceOf(full, key);
    if (key === "price" && !priceLine) {
      assert.deepEqual(withoutNulls(ours), withoutNulls(theirs), key); // gap thresholds depend on the data seen
      continue;
    }
    for (const attr of ["x", "y", "open", "high", "low", "close", "customdata"]) {
      if (theirs[attr] !== undefined) assert.deepEqual(ours[attr], theirs[attr], `${key}.${attr}`);
    }
    for (const attr of ["size", "opacity", "color", "symbol"]) {
      if (theirs.marker?.[attr] !== undefined)
        assert.deepEqual(ours.marker[attr], theirs.marker[attr], `${key}.marker.${attr}`);
    }
    for (const attr of ["name", "legendgroup", "hovertemplate", "meta", "yaxis", "type", "mode"]) {
      assert.deepEqual(ours[attr], theirs[attr], `${key}.${attr}`);
    }
    if (key.startsWith("equity:") && !(key in head.trace_map)) {
      // A bot first seen live takes the next colour (the server sorts bots by name on a reload).
      const bots = model.equityBots;
      assert.equal(ours.line.color, full.live.colors.equity[bots.indexOf(key.slice(7)) % 8], `${key} colour`);
      assert.deepEqual(bots.slice(0, head.live.equity_bots.length), head.live.equity_bots);
    } else if (key.startsWith("equity:")) {
      // Existing lines keep their colour live (a reload colours by sorted name, docs/charts.md).
      assert.deepEqual(ours.line, traceOf(head, key).line, `${key}.line`);
    } else {
      assert.deepEqual(ours.line, theirs.line, `${key}.line`);
    }
  }
}

for (const [name, variant] of Object.entries(contract.variants)) {
  test(`live events appended by the rules give the server's figure of all events (${name})`, () => {
    const { model, data } = replay(variant);
    assertSamePoints(model, data, variant.full, { priceLine: false, head: variant.head });
    assert.ok(model.stats.replaced + model.stats.late >= 0);
    assertKpis(model.kpis.snapshot(), variant.full.kpis, "live");
  });
}

test("a symbol with no history: the empty price line becomes the candles, the equity strip appears", () => {
  const { fresh } = contract;
  const gapMs = fresh.full.live.gap_ms.equity;
  const { model, data, layouts } = replay(fresh, { gapMs, batch: 13 });
  assert.equal(model.index("price"), undefined);
  assert.equal(model.index("candle"), 0);
  assert.equal(data[0].type, "candlestick");
  assert.deepEqual(layouts, [fresh.full.live.equity_axes], "one relayout, the server's");
  assertSamePoints(model, data, fresh.full, { priceLine: false, head: fresh.head });
  assertKpis(model.kpis.snapshot(), fresh.full.kpis, "fresh");
});

test("the ledger's KPIs are the server's", () => {
  for (const variant of Object.values(contract.variants)) {
    for (const part of [variant.head, variant.full]) {
      assertKpis(new Ledger(historyRows(part.data), now).snapshot(), part.kpis, "ledger");
    }
  }
});
