// The wall page in a real headless Chromium, against the scripted server (history with a figure,
// live updates, live candle replaced, bounded traces, new traces, restart, reset, stale badges).

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { buildFigure } from "../wall-figure.js";
import { findChromium, findPlotly, launchBrowser } from "./helpers/browser.js";
import { botStatus, candle, candleSeries, MINUTE, signal, T0, trade } from "./helpers/fixtures.js";
import { sleep, waitUntil } from "./helpers/harness.js";
import { startMockServer } from "./helpers/mock-server.js";

const chromium = findChromium();
const plotly = findPlotly();
const strict = process.env.SIGNALPUSH_TEST_STRICT === "1";
const missing = !chromium ? "no Chromium" : !plotly ? "no plotly.min.js (pip install plotly)" : null;
if (missing && strict) throw new Error(`wall tests cannot run: ${missing}`);
const opts = { skip: missing ?? false, timeout: 120_000 };

let server;
let browser;
const figureRequests = [];

before(async () => {
  if (missing) return;
  server = await startMockServer({
    plotlyPath: plotly,
    apiBots: [
      {
        name: "momo-1",
        strategy: "momentum",
        status: "active",
        equity: 10250.5,
        last_seen: Date.now() - 5000,
        symbols: ["BTCUSDT", "ETHUSDT"],
      },
      {
        name: "mr-2",
        strategy: "mean_reversion",
        status: "paused",
        equity: null,
        last_seen: null,
        symbols: [],
      },
    ],
    figure: (symbol, data, history) => {
      figureRequests.push({ symbol, history });
      return buildFigure(symbol, data);
    },
  });
  let ts = T0;
  for (const c of candleSeries(40)) server.publish("BTCUSDT", c);
  for (const c of candleSeries(30, T0, 2000)) server.publish("ETHUSDT", c);
  ts = T0 + 10 * MINUTE;
  server.publish("BTCUSDT", signal(ts, { price: 101, confidence: 0.9 }));
  server.publish("BTCUSDT", signal(ts + MINUTE, { type: "sell", price: 102, confidence: 0.3 }));
  server.publish("BTCUSDT", trade(ts, { action: "entry", price: 101, position: "p-1" }));
  server.publish(
    "BTCUSDT",
    trade(ts + 5 * MINUTE, { action: "exit", side: "sell", price: 104, pnl: 3, position: "p-1" }),
  );
  browser = await launchBrowser({ width: 1600, height: 900 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// Refused reconnects during a restart are logged by the browser itself; anything else is a bug.
const pageErrors = () => browser.problems.filter((p) => !/WebSocket connection to .* failed/.test(p));
const wall = (expr) =>
  browser.evaluate(`(() => { const w = window.signalpushWall; return w && (${expr}); })()`);
const tile = (symbol) => wall(`w.tile(${JSON.stringify(symbol)})`);

test("the wall draws every symbol from the history figure and follows live events", opts, async () => {
  await browser.goto(
    `${server.httpUrl}/wall?symbols=BTCUSDT,ETHUSDT&minutes=120&max_points=50&stale_s=2&dead_s=6&backoff_max_s=2`,
  );
  await waitUntil(
    async () =>
      (await wall("w.state")) === "live" && (await tile("BTCUSDT"))?.ready && (await tile("ETHUSDT"))?.ready,
    { timeoutMs: 30000, message: "wall ready" },
  );
  assert.deepEqual(
    figureRequests.slice(0, 2).map((r) => r.history),
    [
      { minutes: 120, max_points: 50, figure: true },
      { minutes: 120, max_points: 50, figure: true },
    ],
  );
  let btc = await tile("BTCUSDT");
  assert.equal(btc.traces.candle, 40);
  assert.equal(btc.traces["signal:momentum:buy"], 1);
  assert.equal(btc.traces["trade_line:win"], 3);
  assert.equal(btc.lastSeq, 44);
  assert.equal(btc.kpis.trades, 1, "KPIs from the history rows, by the server's rules");
  assert.equal(btc.kpis.win_rate, 100);
  assert.equal(btc.kpis.realized_pnl, 3);

  // Live: a new candle, then the same minute updated twice (replaced, not appended), a signal
  // of a strategy not seen yet (a new trace from the template), equity for a bot.
  const next = T0 + 40 * MINUTE;
  server.publish("BTCUSDT", candle(next, 150));
  server.publish("BTCUSDT", candle(next, 151));
  await waitUntil(async () => (await tile("BTCUSDT")).lastSeq === 46 && (await tile("BTCUSDT")).queue === 0);
  server.publish("BTCUSDT", candle(next, 151.5)); // alone in its frame: an in-place replacement + redraw
  await waitUntil(async () => (await tile("BTCUSDT")).lastSeq === 47 && (await tile("BTCUSDT")).queue === 0);
  // In gd.data at once; on screen through the live layer until the next fold (no Plotly redraw).
  assert.equal(await browser.evaluate(`document.querySelector('.plot').data[0].close.at(-1)`), 151.5);
  assert.ok((await tile("BTCUSDT")).replaced >= 1, JSON.stringify(await tile("BTCUSDT")));
  assert.ok((await tile("BTCUSDT")).live.pending >= 1, JSON.stringify(await tile("BTCUSDT")));
  server.publish("BTCUSDT", candle(next, 152.5));
  server.publish("BTCUSDT", signal(next, { strategy: "ema_crossover", price: 152, confidence: 0.6 }));
  server.publish("BTCUSDT", botStatus(next, { equity: 10100 }));
  server.publish("BTCUSDT", trade(next, { action: "entry", position: "p-2", price: 152 }));
  await waitUntil(async () => (await tile("BTCUSDT")).lastSeq === 51 && (await tile("BTCUSDT")).queue === 0, {
    message: "live applied",
  });
  await sleep(100);
  btc = await tile("BTCUSDT");
  assert.equal(btc.traces.candle, 41, "the live candle is replaced, not appended");
  const lastClose = await browser.evaluate(
    `(() => { const d = document.querySelector('.plot').data[0]; return [d.close.at(-1), d.x.at(-1), d.close.length, d.open.length]; })()`,
  );
  assert.deepEqual(lastClose, [152.5, next, 41, 41]);
  assert.equal(btc.traces["signal:ema_crossover:buy"], 1);
  assert.equal(btc.traces["equity:momo-1"], 1);
  assert.equal(btc.traces["trade:entry"], 2);
  assert.equal(btc.kpis.last_price, 152.5);
  assert.equal(btc.kpis.open_positions, 1, "p-1 was closed in the history, p-2 is open");
  assert.equal(btc.reloads, 1, "live updates never reload the figure");
  const traceNames = await browser.evaluate(`document.querySelector('.plot').data.map((t) => t.name)`);
  assert.ok(traceNames.includes("ema_crossover buy"));

  // Bounded: many candles keep the trace at max_points (50).
  for (let i = 1; i <= 30; i++) server.publish("BTCUSDT", candle(next + i * MINUTE, 150 + i));
  await waitUntil(async () => (await tile("BTCUSDT")).lastSeq === 81 && (await tile("BTCUSDT")).queue === 0);
  await sleep(100);
  btc = await tile("BTCUSDT");
  assert.equal(btc.traces.candle, 50);
  const lengths = await browser.evaluate(
    `(() => { const d = document.querySelector('.plot').data[0]; return [d.x.length, d.open.length, d.high.length, d.low.length, d.close.length, d.x.at(-1)]; })()`,
  );
  assert.deepEqual(lengths, [50, 50, 50, 50, 50, next + 30 * MINUTE]);

  // The grid fills the screen without scrollbars, one tile per symbol.
  const layout = await browser.evaluate(
    `(() => { const e = document.scrollingElement; return { sw: e.scrollWidth, sh: e.scrollHeight, w: innerWidth, h: innerHeight, tiles: document.querySelectorAll('.tile').length }; })()`,
  );
  assert.equal(layout.tiles, 2);
  assert.ok(layout.sw <= layout.w && layout.sh <= layout.h, JSON.stringify(layout));
  if (process.env.SIGNALPUSH_WALL_SCREENSHOT)
    writeFileSync(process.env.SIGNALPUSH_WALL_SCREENSHOT, await browser.screenshot());

  // Quiet tiles turn amber, then red; data brings them back. The age starts now (the last
  // candle updated in place), so a slow machine cannot skip the amber window (2 s to 6 s).
  server.publish("ETHUSDT", candle(T0 + 29 * MINUTE, 2000.5));
  await waitUntil(async () => (await tile("ETHUSDT")).view.state === "live", { message: "ok after data" });
  await waitUntil(async () => (await tile("ETHUSDT")).view.state === "stale", { message: "amber" });
  await waitUntil(async () => (await tile("ETHUSDT")).view.state === "dead", {
    timeoutMs: 15000,
    message: "red",
  });
  server.publish("ETHUSDT", candle(T0 + 30 * MINUTE, 2001));
  await waitUntil(async () => (await tile("ETHUSDT")).view.state === "live", { message: "ok again" });
  assert.deepEqual(pageErrors(), []);
});

test("a server restart resumes every tile without reloading; a reset reloads one tile", opts, async () => {
  const before = await tile("BTCUSDT");
  await server.restart(200);
  for (let i = 31; i <= 33; i++) server.publish("BTCUSDT", candle(T0 + (40 + i) * MINUTE, 180 + i));
  await waitUntil(
    async () => (await tile("BTCUSDT")).lastSeq === before.lastSeq + 3 && (await tile("BTCUSDT")).queue === 0,
    { message: "resumed", timeoutMs: 15000 },
  );
  await sleep(100);
  const btc = await tile("BTCUSDT");
  assert.equal(btc.reloads, before.reloads, "a resume appends, it does not reload");
  assert.equal(btc.traces.candle, 50);
  const stats = await wall("w.stats");
  assert.ok(stats.connects >= 2);
  assert.ok(server.subscribes("BTCUSDT").at(-1).resume);

  server.newEpoch("ETHUSDT");
  server.publish("ETHUSDT", candle(T0 + 90 * MINUTE, 2100));
  await waitUntil(
    async () => {
      const eth = await tile("ETHUSDT");
      return eth.reloads === 2 && eth.lastSeq === 1 && eth.traces.candle === 1 && eth.queue === 0;
    },
    { message: "reset reload" },
  );
  assert.deepEqual(pageErrors(), []);
});

test("the connection badge follows the client state", opts, async () => {
  const [conn] = server.connections;
  await server.stop(1001);
  await waitUntil(
    async () =>
      /disconnected/.test(await browser.evaluate("document.getElementById('connection').textContent")),
    { message: "badge down" },
  );
  // A lost connection is a full-width banner at once, and every tile says so.
  assert.match(await wall("w.banner"), /DISCONNECTED/);
  assert.equal((await tile("BTCUSDT")).view.state, "disconnected");
  await server.start(server.port);
  await waitUntil(
    async () =>
      (await browser.evaluate("document.getElementById('connection').textContent")).startsWith("live"),
    { message: "badge live", timeoutMs: 30000 },
  );
  assert.ok(conn);
});

test("memory and DOM stay flat under a long stream (bounded traces, no growing DOM)", opts, async () => {
  const nodes = () => browser.evaluate("document.getElementsByTagName('*').length");
  const heap = async () => {
    await browser.page("HeapProfiler.collectGarbage");
    return (await browser.page("Runtime.getHeapUsage")).usedSize;
  };
  const pump = async (count, start) => {
    for (let i = 0; i < count; i++) {
      const ts = T0 + (start + i) * MINUTE;
      server.publish("BTCUSDT", candle(ts, 200 + (i % 50)));
      server.publish("BTCUSDT", candle(ts, 201 + (i % 50)));
      if (i % 3 === 0)
        server.publish(
          "BTCUSDT",
          signal(ts, { price: 200, confidence: (i % 10) / 10, type: i % 2 ? "buy" : "sell" }),
        );
      if (i % 5 === 0)
        server.publish("BTCUSDT", trade(ts, { action: "entry", position: `q-${i}`, price: 200 }));
      if (i % 5 === 2)
        server.publish(
          "BTCUSDT",
          trade(ts, { action: "exit", position: `q-${i - 2}`, price: 201, pnl: (i % 4) - 1.5 }),
        );
      if (i % 10 === 0) server.publish("BTCUSDT", botStatus(ts, { equity: 10000 + i }));
      if (i % 200 === 199) await sleep(20); // let frames flush, like a real stream would
    }
    const target = server.log("BTCUSDT").events.length;
    await waitUntil(
      async () => (await tile("BTCUSDT")).lastSeq === target && (await tile("BTCUSDT")).queue === 0,
      { timeoutMs: 60000, message: "stream applied" },
    );
    await sleep(200);
  };
  await pump(600, 200); // warm up: every trace reaches its bound
  const heap0 = await heap();
  const nodes0 = await nodes();
  await pump(3000, 800);
  const heap1 = await heap();
  const nodes1 = await nodes();
  const btc = await tile("BTCUSDT");
  for (const [key, length] of Object.entries(btc.traces)) {
    assert.ok(length <= (key.startsWith("trade_line:") ? 150 : 50), `${key}: ${length}`);
  }
  assert.ok(Math.abs(nodes1 - nodes0) <= 20, `DOM nodes ${nodes0} -> ${nodes1}`);
  const growthMb = (heap1 - heap0) / 2 ** 20;
  console.log(
    `# wall soak: ${server.log("BTCUSDT").events.length} events, heap ${(heap0 / 2 ** 20).toFixed(1)} -> ${(heap1 / 2 ** 20).toFixed(1)} MiB, DOM ${nodes0} -> ${nodes1}`,
  );
  assert.ok(growthMb < 5, `heap grew ${growthMb.toFixed(1)} MiB`);
  // KPI and age text change all the time; the plot must not be resized (a whole-tile redraw) by it.
  assert.ok(btc.resizes <= 2, `plot resized ${btc.resizes} times`);
  assert.deepEqual(pageErrors(), []);
});

test("the index lists symbols and bots with links to walls", opts, async () => {
  await browser.goto(`${server.httpUrl}/?minutes=60`);
  await waitUntil(
    async () => (await browser.evaluate("document.querySelectorAll('#bots tbody tr').length")) === 2,
    { message: "index rows" },
  );
  const page = await browser.evaluate(`({
    symbols: [...document.querySelectorAll('#symbols tbody tr')].map((r) => [r.cells[0].textContent, r.querySelector('a').getAttribute('href')]),
    bots: [...document.querySelectorAll('#bots tbody tr')].map((r) => [r.cells[0].textContent, r.cells[2].textContent.split(' · ')[0], r.querySelector('a')?.getAttribute('href') ?? null]),
    seen: [...document.querySelectorAll('#bots tbody tr')].map((r) => r.cells[2].className),
    all: document.getElementById('all-walls').getAttribute('href'),
  })`);
  assert.deepEqual(page.symbols, [
    ["BTCUSDT", "/wall?minutes=60&symbols=BTCUSDT"],
    ["ETHUSDT", "/wall?minutes=60&symbols=ETHUSDT"],
  ]);
  assert.deepEqual(page.bots, [
    ["momo-1", "active", "/wall?minutes=60&symbols=BTCUSDT%2CETHUSDT&bots=momo-1"],
    ["mr-2", "paused", null],
  ]);
  assert.equal(page.all, "/wall?minutes=60&symbols=BTCUSDT%2CETHUSDT");
  // Coloured by last_seen, not by the last status: mr-2 was never seen, whatever it said.
  assert.equal(page.seen[1], "seen-dead");
  assert.deepEqual(pageErrors(), []);
});

// In the page: where the live layer would paint (x, y) on the tile's plot, and its alpha there.
const livePixel = (symbol, x, y) =>
  browser.evaluate(`(() => {
  const tile = [...document.querySelectorAll('.tile')].find((t) => t.querySelector('.tile-symbol').textContent === ${JSON.stringify(symbol)});
  const gd = tile.querySelector('.plot');
  const { xaxis, yaxis } = gd._fullLayout;
  return Math.max(...[...tile.querySelectorAll('canvas.live')].map((canvas) => {
    const ratio = canvas.width / canvas.clientWidth;
    const px = Math.round((xaxis._offset + xaxis.l2p(${x}) - canvas.offsetLeft) * ratio);
    const py = Math.round((yaxis._offset + yaxis.l2p(${y})) * ratio);
    if (px < 0 || px >= canvas.width) return 0;
    return canvas.getContext('2d').getImageData(px, py, 1, 1).data[3];
  }));
})()`);
const plotted = (symbol) =>
  browser.evaluate(`(() => {
  const tile = [...document.querySelectorAll('.tile')].find((t) => t.querySelector('.tile-symbol').textContent === ${JSON.stringify(symbol)});
  const gd = tile.querySelector('.plot');
  return { drawn: gd.calcdata[0].length, data: gd.data[0].x.length, y: gd._fullLayout.yaxis.range, x: gd._fullLayout.xaxis.range.map((v) => new Date(v.replace(' ', 'T') + 'Z').getTime()), auto: gd.layout.xaxis.autorange };
})()`);

test("the live layer paints new points without a Plotly redraw and folds them in", opts, async () => {
  // Recent data: the managed x axis runs to now, so the live strip is next to the last candle.
  const S0 = Math.floor(Date.now() / MINUTE) * MINUTE - 35 * MINUTE;
  for (const c of candleSeries(30, S0, 50)) server.publish("SOLUSDT", c);
  await browser.goto(`${server.httpUrl}/wall?symbols=SOLUSDT&minutes=120&fold_s=600`);
  await waitUntil(async () => (await tile("SOLUSDT"))?.ready && (await tile("SOLUSDT")).lastSeq === 30, {
    timeoutMs: 30000,
    message: "tile ready",
  });
  let shown = await plotted("SOLUSDT");
  assert.equal(shown.drawn, 30);
  assert.equal(shown.auto, false, "the wall manages the ranges");
  assert.ok(shown.x[1] > S0 + 29 * MINUTE + MINUTE, `room for live points on the right: ${shown.x}`);
  const folds = (await tile("SOLUSDT")).live.folds;

  // Inside the axes: in gd.data at once, painted by the live layer, Plotly not redrawn.
  const ts = S0 + 30 * MINUTE;
  const price = (shown.y[0] + shown.y[1]) / 2;
  server.publish("SOLUSDT", candle(ts, price));
  await waitUntil(async () => (await tile("SOLUSDT")).live.pending === 1, { message: "painted" });
  shown = await plotted("SOLUSDT");
  assert.deepEqual([shown.drawn, shown.data], [30, 31]);
  assert.ok((await livePixel("SOLUSDT", ts, price)) > 0, "the new candle is on the live layer");
  const strip = await browser.evaluate(
    `(() => { const c = document.querySelector('canvas.live'); return [c.offsetLeft, c.clientWidth, document.querySelector('.plot').clientWidth]; })()`,
  );
  assert.ok(
    strip[0] > 0 && strip[1] < strip[2] / 3,
    `the live canvases cover only the strip where live points land: ${strip}`,
  );
  await sleep(1000);
  assert.equal((await tile("SOLUSDT")).live.folds, folds, "no fold before fold_s");

  // Far above the axes: the tile folds within 5 s, and the new range holds the candle.
  server.publish("SOLUSDT", candle(ts + MINUTE, 500));
  await waitUntil(async () => (await tile("SOLUSDT")).live.folds > folds, {
    timeoutMs: 10000,
    message: "fold on a point outside",
  });
  shown = await plotted("SOLUSDT");
  assert.deepEqual([shown.drawn, shown.data], [32, 32]);
  assert.ok(shown.y[1] > 502, `y range ${shown.y}`);
  assert.equal((await tile("SOLUSDT")).live.pending, 0);
  assert.equal(await livePixel("SOLUSDT", ts, price), 0, "the live layer is clear after a fold");

  // A user's zoom is kept: the wall stops managing the ranges until autorange comes back.
  await browser.evaluate(
    `Plotly.relayout(document.querySelector('.plot'), { 'xaxis.range': [${S0}, ${S0 + 10 * MINUTE}] }).then(() => null)`,
  );
  await waitUntil(async () => (await tile("SOLUSDT")).live.userZoom, { message: "user zoom seen" });
  server.publish("SOLUSDT", candle(ts + 2 * MINUTE, 60));
  await waitUntil(async () => (await plotted("SOLUSDT")).drawn === 33, {
    timeoutMs: 10000,
    message: "folded after the zoom",
  });
  assert.deepEqual((await plotted("SOLUSDT")).x, [S0, S0 + 10 * MINUTE]);
  await browser.evaluate(
    `Plotly.relayout(document.querySelector('.plot'), { 'xaxis.autorange': true }).then(() => null)`,
  );
  await waitUntil(async () => !(await tile("SOLUSDT")).live.userZoom, { message: "zoom handed back" });

  // A quiet tile folds by itself after fold_s.
  await browser.goto(`${server.httpUrl}/wall?symbols=SOLUSDT&minutes=120&fold_s=2`);
  await waitUntil(async () => (await tile("SOLUSDT"))?.ready, {
    timeoutMs: 30000,
    message: "tile ready again",
  });
  server.publish("SOLUSDT", candle(ts + 3 * MINUTE, 61));
  await waitUntil(async () => (await tile("SOLUSDT")).lastSeq === 34, { message: "live" });
  await waitUntil(
    async () => (await plotted("SOLUSDT")).drawn === 34 && (await tile("SOLUSDT")).live.pending === 0,
    { timeoutMs: 10000, message: "quiet fold" },
  );
  assert.deepEqual(pageErrors(), []);
});
