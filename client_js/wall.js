/**
 * wall.js — the live wall: one tile per symbol, filling the screen, no clicks needed.
 *
 * Each tile subscribes with `history: {minutes, max_points, figure: true}`, draws the server's
 * figure with Plotly.react once per (re)load or reset, then queues live events and applies
 * every queued event of a flush together (TileModel.plan), following the server's rules for
 * appending live events (docs/charts.md): new points go to the live layer and are folded into
 * the figure once per `fold_s` (wall-tile.js, wall-live.js). This module is the page: the
 * grid, the flush scheduling, the badges. All settings are URL parameters (docs/client.md). `window.signalpushWall` exposes read-only state for tests and operators.
 */

import { SignalPushClient } from "./signalpush.js";
import { FrameStats, gridShape, parseWallParams } from "./wall-model.js";
import { bindWall, el, Tile } from "./wall-tile.js";

const Plotly = globalThis.Plotly;

const config = parseWallParams(location.search);
/** WebGL markers and lines (`gl`; with gl=auto when the browser has WebGL and the wall has at
 * most GL_AUTO_MAX_TILES tiles). Set in start(). */
let useGl = false;
/** A Plotly graph with WebGL traces holds 2 WebGL contexts; Chromium keeps 16 per page. */
const GL_AUTO_MAX_TILES = 8;

function webglAvailable() {
  try {
    return Boolean(document.createElement("canvas").getContext("webgl"));
  } catch {
    return false;
  }
}
const root = document.getElementById("wall");
const badge = document.getElementById("connection");
const clock = document.getElementById("clock");
const keyNode = document.getElementById("key");

/** One key for the whole wall (`legend=key`): every tile draws markers the same way (docs/charts.md). */
function renderKey(live) {
  if (config.legend !== "key" || keyNode.childElementCount || !live?.colors) return;
  const { signal, pnl } = live.colors;
  const items = [
    ["▲", signal.buy, "buy"],
    ["▼", signal.sell, "sell"],
    ["●", signal.hold, "hold"],
    ["◆", null, "entry"],
    ["✖", null, "exit"],
    ["━", pnl.win, "win"],
    ["━", pnl.loss, "loss"],
  ];
  for (const [glyph, color, label] of items) {
    const item = el("b", null, `${glyph} `);
    if (color) item.style.color = color;
    item.append(el("span", null, label));
    keyNode.append(item);
  }
  keyNode.title = "signals by type; entries coloured by side, exits and entry→exit lines by P&L";
}

function wsUrl() {
  if (config.ws) return config.ws;
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

const tiles = new Map();
let flushPending = false;
let flushTimer = null;
let frameRequest = null;
let nextTile = 0;
let wakeTimer = null;

/**
 * Frame cost of applying updates, with URL parameter `perf=1` (read by `signalpush bench wall`):
 * `script` is the time in the flush, `frame` the time from the flush to the first task after that
 * frame was rendered (style, layout and paint included), `interval` the time between frames.
 */
const perf = config.perf
  ? { script: new FrameStats(), frame: new FrameStats(), interval: new FrameStats(), fold: new FrameStats() }
  : null;
const afterFrame = (() => {
  const channel = new MessageChannel();
  const waiting = [];
  channel.port1.onmessage = () => waiting.shift()?.();
  return (fn) => {
    waiting.push(fn);
    channel.port2.postMessage(null);
  };
})();
if (perf) {
  let last = null;
  const tick = (now) => {
    if (last != null) perf.interval.record(now - last);
    last = now;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

bindWall({ config, perf, gl: () => useGl, tileCount: () => tiles.size, renderKey, scheduleFlush });

/**
 * Apply queued events: each tile's whole queue in one go, at most once per `redraw_ms` per
 * tile (in its slot), and tiles in turn until the frame's budget (`frame_budget_ms`) is spent,
 * the rest in the next frame: a fold (or, with `live_layer=0`, any flush) is a whole-tile
 * Plotly redraw, so one frame must not redraw every tile of a busy wall. From the 1 s timer (no frames: a hidden
 * tab) every due tile is flushed.
 */
function flushAll(fromTimer = false) {
  flushPending = false;
  cancelAnimationFrame(frameRequest);
  clearTimeout(flushTimer);
  const started = performance.now();
  const list = [...tiles.values()];
  let worked = false;
  let left = false;
  let nextDue = Infinity;
  const first = nextTile;
  for (let k = 0; k < list.length; k++) {
    const index = (first + k) % list.length;
    const tile = list[index];
    if (!tile.hasWork) continue;
    if (tile.dueAt > started) {
      nextDue = Math.min(nextDue, tile.dueAt);
      continue;
    }
    if (worked && !fromTimer && performance.now() - started >= config.frameBudgetMs) {
      left = true;
      continue;
    }
    worked = tile.flush() || worked;
    nextTile = (index + 1) % list.length;
  }
  if (perf && worked) {
    perf.script.record(performance.now() - started);
    afterFrame(() => perf.frame.record(performance.now() - started));
  }
  if (left) scheduleFlush();
  else if (nextDue < Infinity) {
    clearTimeout(wakeTimer);
    wakeTimer = setTimeout(scheduleFlush, nextDue - started);
  }
}

/** One flush per animation frame; a timer stands in when frames stop (hidden tab). */
function scheduleFlush() {
  if (flushPending) return;
  flushPending = true;
  frameRequest = requestAnimationFrame(() => flushAll(false));
  flushTimer = setTimeout(() => flushAll(true), 1000);
}

function layoutGrid() {
  const { cols, rows } = gridShape(tiles.size, root.clientWidth, root.clientHeight, config.cols);
  root.style.setProperty("--cols", String(cols));
  root.style.setProperty("--rows", String(rows));
}

/**
 * A tile's header only grows while the tile keeps its width: KPI values and the age badge change
 * text every second, and a header that wrapped and unwrapped with them resized the plot — a
 * whole-tile Plotly redraw each time (measured: 2 a second, frame p95 270 ms). A new width (the
 * window, the grid) lets it shrink again.
 */
const headSizes = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const tile = [...tiles.values()].find((t) => t.head === entry.target);
    if (!tile) continue;
    const { width } = entry.contentRect;
    const height = entry.target.offsetHeight;
    if (Math.abs(width - tile.headWidth) >= 1) {
      tile.headWidth = width;
      entry.target.style.minHeight = "";
    } else if (height > (parseFloat(entry.target.style.minHeight) || 0)) {
      entry.target.style.minHeight = `${height}px`;
    }
  }
});

/** A plot follows its box: the window, the grid, or its tile's header (KPIs that wrap) resizing it. */
const plotSizes = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const tile = [...tiles.values()].find((t) => t.plot === entry.target);
    if (!tile) continue;
    const { width, height } = entry.contentRect;
    if (Math.abs(width - tile.size.width) < 1 && Math.abs(height - tile.size.height) < 1) continue;
    tile.size = { width, height };
    tile.resizes += 1;
    if (tile.ready)
      Promise.resolve(Plotly.Plots.resize(tile.plot))
        .then(() => tile.drawn())
        .catch((error) => tile.fail(error));
  }
});

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(layoutGrid, 150);
});

function renderBadge(state, client) {
  const bus = client?.busUp === false ? " · bus down" : "";
  badge.textContent = `${state}${bus}`;
  badge.className = `badge badge-${client?.busUp === false && state === "live" ? "stale" : state}`;
}

async function discoverSymbols() {
  const headers = config.token ? { authorization: `Bearer ${config.token}` } : {};
  const response = await fetch("/api/symbols", { headers });
  if (!response.ok) throw new Error(`/api/symbols: HTTP ${response.status}`);
  const body = await response.json();
  return (body.symbols ?? []).map((s) => s.symbol).sort();
}

async function start() {
  if (config.title) {
    document.title = config.title;
    document.getElementById("title").textContent = config.title;
  }
  const described = Object.entries(config.filter).map(
    ([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : v}`,
  );
  document.getElementById("filter").textContent = `${described.join("  ")}  ·  ${config.minutes} min`;
  let symbols = config.symbols;
  if (!symbols.length) {
    try {
      symbols = await discoverSymbols();
    } catch (error) {
      root.append(el("p", "empty", `No symbols given (add ?symbols=BTCUSDT,ETHUSDT) and ${error.message}`));
      return;
    }
  }
  const client = new SignalPushClient(wsUrl(), {
    token: config.token,
    backoff: { initialMs: 500, maxMs: config.backoffMaxS * 1000 },
    onState: (state) => renderBadge(state, client),
    onStatus: () => renderBadge(client.state, client),
  });
  useGl =
    config.gl === "on" || (config.gl === "auto" && symbols.length <= GL_AUTO_MAX_TILES && webglAvailable());
  for (const symbol of symbols) {
    const tile = new Tile(symbol);
    tile.slot = tiles.size;
    tiles.set(symbol, tile);
    root.append(tile.node);
    plotSizes.observe(tile.plot);
    headSizes.observe(tile.head);
  }
  layoutGrid();
  for (const tile of tiles.values()) tile.subscribe(client);
  renderBadge(client.state, client);
  setInterval(() => {
    const now = Date.now();
    clock.textContent = `${new Date(now).toISOString().slice(11, 19)} UTC`;
    for (const tile of tiles.values()) {
      tile.renderAge(now);
      // A tile that went quiet still folds its live points in (hover, then the next draw is Plotly's).
      if (tile.ready && !tile.foldNow && tile.foldDue) {
        tile.foldNow = true;
        scheduleFlush();
      }
      if (tile.model?.kpis.rollDay(now)) tile.renderKpis();
    }
  }, 1000);

  const api = {
    get state() {
      return client.state;
    },
    get busUp() {
      return client.busUp;
    },
    get config() {
      return structuredClone(config);
    },
    get gl() {
      return useGl;
    },
    get stats() {
      return Object.freeze({ ...client.stats });
    },
    get symbols() {
      return [...tiles.keys()];
    },
    get tiles() {
      return Object.freeze(Object.fromEntries([...tiles].map(([s, t]) => [s, t.snapshot()])));
    },
    tile(symbol) {
      return tiles.get(symbol)?.snapshot() ?? null;
    },
    get perf() {
      return (
        perf && Object.freeze(Object.fromEntries(Object.entries(perf).map(([k, v]) => [k, v.snapshot()])))
      );
    },
    resetPerf() {
      if (perf) for (const stats of Object.values(perf)) stats.reset();
    },
  };
  Object.defineProperty(window, "signalpushWall", {
    value: Object.freeze(api),
    writable: false,
    configurable: false,
  });
}

if (!Plotly) {
  root.append(el("p", "empty", "Plotly did not load (/vendor/plotly.min.js)."));
} else {
  start();
}
