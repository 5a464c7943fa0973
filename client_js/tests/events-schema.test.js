// The event schema the wall reads (events-schema.json, generated from publishers/events.py).

import assert from "node:assert/strict";
import { test } from "node:test";
import { EVENT_SCHEMA, FILTER_KEYS, HISTORY_COLUMNS, SIGNAL_TYPES } from "../events-schema.js";
import { FILTER_KEYS as CLIENT_FILTER_KEYS } from "../signalpush.js";
import { historyRows } from "../wall-figure.js";

test("the schema gives each kind's history columns and the signal types", () => {
  assert.deepEqual(Object.keys(HISTORY_COLUMNS), ["candle", "signal", "trade", "bot", "alert"]);
  assert.deepEqual(HISTORY_COLUMNS.candle, ["ts", "open", "high", "low", "close", "volume"]);
  assert.equal(HISTORY_COLUMNS.signal[0], "seq");
  assert.deepEqual(SIGNAL_TYPES, ["buy", "sell", "hold"]);
  assert.ok(Object.isFrozen(HISTORY_COLUMNS) && Object.isFrozen(HISTORY_COLUMNS.trade));
});

test("the standalone client's filter keys are the schema's", () => {
  // signalpush.js stays dependency-free (one file to copy), so it spells them; this keeps them equal.
  assert.deepEqual([...CLIENT_FILTER_KEYS], [...FILTER_KEYS]);
  assert.deepEqual(EVENT_SCHEMA.filters.sides, { field: "side", kinds: ["trade"] });
});

test("historyRows reads every history column of the schema", () => {
  const data = Object.fromEntries(
    Object.entries(HISTORY_COLUMNS).map(([kind, names]) => [
      kind,
      Object.fromEntries(names.map((name) => [name, [name === "type" ? "buy" : name === "ts" ? 1 : 2]])),
    ]),
  );
  const rows = historyRows(data);
  assert.deepEqual(Object.keys(rows.trades[0]), [...HISTORY_COLUMNS.trade]);
  assert.deepEqual(Object.keys(rows.signals[0]), [...HISTORY_COLUMNS.signal]);
  assert.deepEqual(Object.keys(rows.bots[0]), [...HISTORY_COLUMNS.bot]);
  assert.equal(rows.candles[0].close, 2);
});
