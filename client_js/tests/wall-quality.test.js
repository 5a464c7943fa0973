// The signal-quality tile's pure parts: which groups, the reliability diagram's traces, the KPI line.

import assert from "node:assert/strict";
import { test } from "node:test";
import { chosenRows, kpiLine, MAX_GROUPS, reliabilityTraces } from "../wall-quality.js";

const bucket = (index, resolved, hitRate) => ({
  bucket: index,
  confidence_low: index / 10,
  confidence_high: (index + 1) / 10,
  resolved,
  hit_rate: hitRate,
  hit_rate_low: hitRate == null ? null : hitRate - 0.1,
  hit_rate_high: hitRate == null ? null : hitRate + 0.2,
  mean_pnl: 1.5,
});

test("the groups with the most signals are shown, in a stable order", () => {
  const rows = Array.from({ length: 9 }, (_, i) => ({ bot: `b${i}`, strategy: "s", signals: i % 3 }));
  const shown = chosenRows(rows);
  assert.equal(shown.length, MAX_GROUPS);
  assert.deepEqual(
    shown.map((r) => r.bot),
    ["b2", "b5", "b8", "b1", "b4", "b7"],
  );
});

test("the diagram: the diagonal, then one trace per group of its resolved buckets with their intervals", () => {
  const row = { bot: "b", strategy: "s", calibration: [bucket(2, 0, null), bucket(7, 4, 0.75)] };
  const [diagonal, trace] = reliabilityTraces([row], ["#111111"]);
  assert.deepEqual(diagonal.y, [0, 1]);
  assert.deepEqual(trace.x, [0.75]);
  assert.deepEqual(trace.y, [0.75]);
  assert.ok(
    Math.abs(trace.error_y.array[0] - 0.2) < 1e-12 && Math.abs(trace.error_y.arrayminus[0] - 0.1) < 1e-12,
  );
  assert.equal(trace.meta.key, "quality:b:s");
});

test("a KPI line reads the row, with dashes for what is not known yet", () => {
  const line = kpiLine({ bot: "b", strategy: "s", signals: 4, linked: 3, hit_rate: 0.5, expectancy: null });
  assert.match(line, /^b · s: 4 signals, 75% linked, hit 50%, expectancy –/);
});
