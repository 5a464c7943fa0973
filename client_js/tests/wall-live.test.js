// The wall's live layer (wall-live.js): the ranges it manages, what it remembers between Plotly
// draws, and what it paints, against a recording 2D context (the browser side is wall.test.js).

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  beyondRanges,
  HEADROOM,
  LiveLayer,
  liveStrip,
  PlotView,
  plotView,
  wallRanges,
} from "../wall-live.js";
import { MINUTE, T0 } from "./helpers/fixtures.js";

/** A CanvasRenderingContext2D stand-in that records what would be painted. */
function recorder() {
  const calls = [];
  const state = { fillStyle: null, strokeStyle: null, globalAlpha: 1, lineWidth: 1, lineJoin: "miter" };
  const stack = [];
  const ctx = new Proxy(state, {
    get(target, name) {
      if (name in target) return target[name];
      return (...args) => {
        if (name === "save") stack.push({ ...target });
        if (name === "restore") Object.assign(target, stack.pop());
        calls.push({
          op: name,
          args,
          fill: target.fillStyle,
          stroke: target.strokeStyle,
          alpha: target.globalAlpha,
        });
      };
    },
    set(target, name, value) {
      target[name] = value;
      return true;
    },
  });
  return { ctx, calls, ops: (name) => calls.filter((c) => c.op === name) };
}

// x: 0..100 ms over 1000 px from 50; y: 0..10 over 400 px from 20 (upwards); y2 below it.
const view = () =>
  new PlotView(
    {
      x: { offset: 50, length: 1000, lo: 0, hi: 100 },
      y: { offset: 20, length: 400, lo: 0, hi: 10 },
      y2: { offset: 450, length: 100, lo: 0, hi: 1000 },
    },
    { background: "#0b0f14" },
  );

const candles = (n) => ({
  type: "candlestick",
  x: Array.from({ length: n }, (_, i) => i * 10),
  open: Array(n).fill(4),
  close: Array(n).fill(5),
  high: Array(n).fill(6),
  low: Array(n).fill(3),
  increasing: { line: { color: "#0f0" }, fillcolor: "#0f0" },
  decreasing: { line: { color: "#f00" }, fillcolor: "#f00" },
});

test("ranges: x from the first point to the last or now, with headroom; each y axis padded", () => {
  const data = [
    candles(3), // x 0..20, lows 3, highs 6
    { type: "scatter", mode: "markers", x: [5, 15], y: [2, 7] },
    { type: "scatter", mode: "lines", yaxis: "y2", x: [0, null, 30], y: [100, null, 300] },
    { type: "scatter", mode: "markers", visible: "legendonly", x: [1000], y: [1000] },
  ];
  const ranges = wallRanges(data, { now: 0, headroom: { share: 0.1, minMs: 0, maxMs: 1000 } });
  assert.deepEqual(
    ranges.xaxis.map((v) => Math.round(v * 1000) / 1000),
    [-0.15, 33],
  ); // 30 span, 10 % room
  assert.deepEqual(
    ranges.yaxis.map((v) => Math.round(v * 1000) / 1000),
    [1.5, 7.5],
  );
  assert.deepEqual(
    ranges.yaxis2.map((v) => Math.round(v * 1000) / 1000),
    [80, 320],
  );

  const now = T0 + 60 * MINUTE;
  const live = wallRanges([{ type: "scatter", x: [T0, T0 + 10 * MINUTE], y: [1, 1] }], { now });
  assert.equal(live.xaxis[1], now + 60 * MINUTE * HEADROOM.share, "the axis runs to now, then the room");
  assert.ok(live.yaxis[0] < 1 && live.yaxis[1] > 1, "a flat line still gets a range");
  assert.equal(wallRanges([{ type: "scatter", x: [T0], y: [1] }], { now: T0 }).xaxis[1], T0 + HEADROOM.minMs);
  assert.deepEqual(wallRanges([{ type: "scatter", x: [], y: [] }]), {});
});

test("bookkeeping: appended points wait for the next fold; a changed drawn candle is covered", () => {
  const layer = new LiveLayer();
  const c = candles(5);
  const data = [c, { type: "scatter", mode: "markers", x: [1], y: [1] }];
  layer.folded(data);
  assert.equal(layer.pending, 0);
  layer.appended(1, 3, 4);
  layer.appended(1, 9, 5); // cut to max_points: never more than the trace holds
  assert.equal(layer.pending, 5);
  layer.replaced(0, 40, c); // the last candle Plotly drew
  layer.replaced(0, 30, c); // an older one: left to the next fold
  assert.equal(layer.pending, 6);
  layer.folded(data);
  assert.equal(layer.pending, 0);
  assert.equal(layer.stats.folds, 2);
});

const surfaces = () => {
  const settled = recorder();
  const tip = recorder();
  return { settled, tip, args: [settled.ctx, tip.ctx] };
};

test("painting: only the undrawn points, in the traces' styles, clipped to their axes", () => {
  const layer = new LiveLayer();
  const c = candles(5);
  const buys = {
    type: "scattergl",
    mode: "markers",
    x: [10, 20, 30],
    y: [5, 6, 7],
    marker: {
      symbol: "triangle-up",
      color: "#22c55e",
      size: [6, 10, 16],
      opacity: [0.4, 0.7, 1],
      line: { width: 1, color: "#000" },
    },
  };
  const exits = {
    type: "scatter",
    mode: "markers",
    x: [30],
    y: [5],
    marker: { symbol: "x", size: 11, color: ["#ef4444"], line: { width: 0 } },
  };
  const equity = {
    type: "scatter",
    mode: "lines",
    yaxis: "y2",
    x: [10, 20, 30],
    y: [500, null, 700],
    line: { color: "#60a5fa", width: 2.5 },
  };
  const data = [c, buys, exits, equity];
  layer.folded(data);
  c.x.push(50);
  c.open.push(5);
  c.close.push(4);
  c.high.push(6);
  c.low.push(3); // a falling candle
  layer.appended(0, 1, 6);
  layer.appended(1, 2, 3);
  layer.appended(2, 1, 1);
  layer.appended(3, 1, 3);
  const { settled, tip, args } = surfaces();
  assert.equal(layer.draw(...args, data, view()), 5);
  // The falling candle is the live one: on the tip, wick then body in the decreasing colour at
  // x = 50 + 50/100 × 1000 = 550.
  const rects = tip.ops("fillRect");
  assert.deepEqual(
    rects.map((r) => r.fill),
    ["#f00", "#f00"],
  );
  assert.equal(rects[0].args[0], 549.5);
  assert.deepEqual([rects[0].args[1], rects[0].args[3]], [20 + 400 * 0.4, 400 * 0.3]); // high 6 → 180, low 3 → 300
  assert.deepEqual(settled.ops("fillRect"), []);
  // Two buy triangles with their own opacity; the first point was Plotly's.
  assert.deepEqual(
    settled.ops("fill").map((f) => [f.fill, f.alpha]),
    [
      ["#22c55e", 0.7],
      ["#22c55e", 1],
    ],
  );
  // The exit's x is two strokes in its colour; the equity line starts after its gap, on y2.
  assert.deepEqual(
    settled.ops("stroke").map((s) => s.stroke),
    ["#000", "#000", "#ef4444", "#60a5fa"],
  );
  assert.deepEqual(
    settled
      .ops("rect")
      .map((r) => r.args)
      .at(-1),
    [50, 450, 1000, 100],
  );
  assert.equal(layer.outside, false);
  for (const { calls } of [settled, tip])
    assert.equal(calls.filter((x) => x.op === "save").length, calls.filter((x) => x.op === "restore").length);
  assert.equal(settled.ops("clearRect").length, 1, "the first draw after a fold starts settled afresh");
});

test("painting is incremental: settled gets each point once, the tip only the live candle", () => {
  const layer = new LiveLayer();
  const c = candles(3);
  const sells = {
    type: "scatter",
    mode: "markers",
    x: [],
    y: [],
    marker: { symbol: "triangle-down", color: "#ef4444", size: 8 },
  };
  const data = [c, sells];
  layer.folded(data);
  const push = (x, close) => {
    c.x.push(x);
    c.open.push(close);
    c.close.push(close);
    c.high.push(close + 1);
    c.low.push(close - 1);
    layer.appended(0, 1, c.x.length);
  };
  push(30, 5);
  sells.x.push(30);
  sells.y.push(5);
  layer.appended(1, 1, 1);
  let s = surfaces();
  layer.draw(...s.args, data, view());
  assert.deepEqual([s.settled.ops("fill").length, s.tip.ops("fillRect").length], [1, 2]);

  // The live candle changes: only the tip is redone; settled is not touched.
  c.close[3] = 6;
  c.high[3] = 7;
  layer.replaced(0, 30, c);
  s = surfaces();
  layer.draw(...s.args, data, view());
  assert.deepEqual(
    [s.settled.calls.length, s.tip.ops("clearRect").length, s.tip.ops("fillRect").length],
    [0, 1, 2],
  );

  // A new candle: the previous live one goes to settled, the new one is the tip.
  push(40, 6);
  s = surfaces();
  assert.equal(layer.draw(...s.args, data, view()), 2);
  assert.deepEqual([s.settled.ops("fillRect").length, s.tip.ops("fillRect").length], [2, 2]);
  assert.equal(s.settled.ops("clearRect").length, 0);

  // A settled candle updated late: settled starts afresh with everything pending.
  c.close[3] = 4;
  layer.replaced(0, 30, c);
  s = surfaces();
  layer.draw(...s.args, data, view());
  assert.deepEqual(
    [s.settled.ops("clearRect").length, s.settled.ops("fillRect").length, s.settled.ops("fill").length],
    [1, 2, 1],
  );
  assert.equal(layer.stats.repaints, 2);
});

test("painting: a point beyond the axes asks for a fold; a replaced drawn candle is painted over first", () => {
  const layer = new LiveLayer();
  const c = candles(3);
  layer.folded([c]);
  c.close[2] = 5.5;
  c.high[2] = 12; // the live candle Plotly drew changed, and now pokes above the axis
  layer.replaced(0, 20, c);
  const { tip, args } = surfaces();
  layer.draw(...args, [c], view());
  const rects = tip.ops("fillRect");
  assert.equal(rects[0].fill, "#0b0f14", "the old candle is covered in the plot's background");
  assert.deepEqual(
    rects.slice(1).map((r) => r.fill),
    ["#0f0", "#0f0"],
  );
  assert.equal(layer.outside, true);
  layer.folded([c]);
  assert.equal(layer.outside, false);
});

test("painting: hidden traces and traces on axes the plot lacks are left alone", () => {
  const layer = new LiveLayer();
  const hidden = {
    type: "scatter",
    mode: "markers",
    visible: "legendonly",
    x: [],
    y: [],
    marker: { size: 8 },
  };
  const elsewhere = { type: "scatter", mode: "lines", yaxis: "y3", x: [], y: [] };
  layer.folded([hidden, elsewhere]);
  hidden.x.push(10);
  hidden.y.push(5);
  elsewhere.x.push(10);
  elsewhere.y.push(5);
  layer.appended(0, 1, 1);
  layer.appended(1, 1, 1);
  const { settled, tip, args } = surfaces();
  assert.equal(layer.draw(...args, [hidden, elsewhere], view()), 0);
  assert.deepEqual(
    settled.calls.map((x) => x.op),
    ["clearRect"],
  );
  assert.deepEqual(
    tip.calls.map((x) => x.op),
    ["clearRect"],
  );
});

test("beyond the ranges: any value outside an axis's range, on axes that have one", () => {
  const data = [candles(3), { type: "scatter", mode: "lines", yaxis: "y2", x: [0, 20], y: [100, 300] }];
  assert.equal(beyondRanges(data, { xaxis: [-1, 30], yaxis: [2, 7], yaxis2: [0, 400] }), false);
  assert.equal(beyondRanges(data, { xaxis: [-1, 10], yaxis: [2, 7] }), true, "x beyond");
  assert.equal(beyondRanges(data, { xaxis: [-1, 30], yaxis: [3.5, 7] }), true, "a low below");
  assert.equal(
    beyondRanges(data, { xaxis: [-1, 30], yaxis: [2, 7], yaxis2: [150, 400] }),
    true,
    "the equity axis",
  );
  assert.equal(beyondRanges(data, {}), false, "no ranges: nothing to leave");
});

test("the live strip: a marker left of it asks for a fold, a line that starts left of it does not", () => {
  const layer = new LiveLayer();
  const markers = { type: "scatter", mode: "markers", x: [], y: [], marker: { size: 8 } };
  const lines = { type: "scatter", mode: "lines", x: [], y: [], line: { color: "#22c55e" } };
  layer.folded([markers, lines]);
  const strip = view();
  strip.left = 800; // x = 75 and right of it
  lines.x.push(10, 90, null);
  lines.y.push(5, 6, null);
  layer.appended(1, 3, 3);
  const { args } = surfaces();
  layer.draw(...args, [markers, lines], strip);
  assert.equal(layer.outside, false, "an exit's line from an old entry: partly shown until the fold");
  markers.x.push(20);
  markers.y.push(5);
  layer.appended(0, 1, 1);
  layer.draw(...surfaces().args, [markers, lines], strip);
  assert.equal(layer.outside, true, "a late marker left of the strip");
});

test("the plot's geometry from Plotly's axes, and the strip where live points land", () => {
  const axis = (offset, length, range) => ({ _offset: offset, _length: length, range, r2l: (v) => v });
  const gd = {
    _fullLayout: {
      plot_bgcolor: "#0b0f14",
      xaxis: axis(50, 1000, [0, 100]),
      yaxis: axis(20, 400, [0, 10]),
      yaxis2: axis(450, 100, [0, 1000]),
      xaxis_extra: {},
    },
  };
  const v = plotView(gd);
  assert.deepEqual(Object.keys(v.axes).sort(), ["x", "y", "y2"]);
  assert.deepEqual([v.x(50), v.y(10), v.y(0, "y2"), v.background], [550, 20, 550, "#0b0f14"]);
  assert.equal(plotView({}), null, "not drawn yet");

  const data = [candles(8)]; // x 0..70 every 10: a candle is 100 px wide here
  assert.deepEqual(
    liveStrip(v, data, false),
    { left: 50 + 700 - 64, width: 1050 - 686 + 2 },
    "from the last candle, less its width",
  );
  const markers = [{ type: "scatter", x: [0, 100], y: [1, 1] }]; // the last point at the right end
  assert.deepEqual(
    liveStrip(v, markers, false),
    { left: 1050 - 24, width: 26 },
    "at least 24 px wide, inside the plot",
  );
  assert.deepEqual(liveStrip(v, markers, true), { left: 50, width: 1002 }, "zoomed: the whole plot width");
});
