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
import { fitGrid } from "./wall-fit.js";
import { Fleet } from "./wall-fleet.js";
import { FrameStats, parseTiles, parseWallParams } from "./wall-model.js";
import { cssVariables, palette } from "./wall-palette.js";
import { QualityTile } from "./wall-quality.js";
import { parseReplayParams, WallReplay } from "./wall-replay.js";
import { bindWall, el, Tile } from "./wall-tile.js";

const Plotly = globalThis.Plotly;

const config = parseWallParams(location.search);

/** localStorage / sessionStorage, or null where the browser refuses them (the wall still runs). */
function storage(name) {
  try {
    return globalThis[name] ?? null;
  } catch {
    return null;
  }
}
/** This page as a display of the fleet (wall-fleet.js, docs/walls.md). */
const fleet = new Fleet({
  search: location.search,
  storage: storage("localStorage"),
  session: storage("sessionStorage"),
  doc: document,
});
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
const banner = document.getElementById("banner");
const pal = palette(config.palette);
for (const [name, value] of Object.entries(cssVariables(pal)))
  document.documentElement.style.setProperty(name, value);
document.documentElement.style.setProperty("--scale", String(config.scale));
/** The page's client (set in start()); its ping gives the clock offset to the server. */
let client = null;
/** Whether the page was ever connected: before that, tiles wait; after, a lost link is shown. */
let everLive = false;
/** `?replay=…`: every tile replays a past window on one clock (wall-replay.js); null when live. */
const replaying = parseReplayParams(location.search);
const replay = replaying ? new WallReplay(replaying, { onLive: () => onConnection() }) : null;
const serverNow = () => replay?.now() ?? Date.now() + (client?.clockOffsetMs ?? 0);
const connected = () => !everLive || client?.state === "live";

/** One key for the whole wall (`legend=key`), the rules in words (docs/client.md "Colour"). */
function renderKey(live) {
  if (config.legend !== "key" || keyNode.childElementCount || !live?.colors) return;
  const items = [
    ["▯▮", pal.up, "candles up hollow · down filled"],
    ["▲▼", pal.buy, "signals buy · sell"],
    ["◆", pal.buy, "entry (side)"],
    ["✖━", pal.win, "exit · line: win"],
    ["✖━", pal.loss, "loss"],
  ];
  for (const [glyph, color, label] of items) {
    const item = el("b", null, `${glyph} `);
    item.style.color = color;
    item.append(el("span", null, label));
    keyNode.append(item);
  }
}

function wsUrl() {
  const url = new URL(config.ws || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  // The gateway marks this display's record when its token is refused as expired (/walls shows it).
  url.searchParams.set("display", fleet.id);
  return url.toString();
}

const tiles = new Map();
/** The signal-quality tile (`tiles=quality`, wall-quality.js), or null. */
let qualityTile = null;
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

bindWall({
  config,
  perf,
  gl: () => useGl,
  tileCount: () => tiles.size,
  renderKey,
  scheduleFlush,
  serverNow,
  connected,
  stateChanged: () => renderBadge(),
  open: replay ? (c, spec, handlers) => replay.open(c, spec, handlers) : null,
});

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
    if (tile.flush()) {
      worked = true;
      tile.flushedAt = started;
    }
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
  const count = tiles.size + (qualityTile ? 1 : 0);
  const { cols, rows } = fitGrid(count, root.clientWidth, root.clientHeight, { forcedCols: config.cols });
  root.style.setProperty("--cols", String(cols));
  root.style.setProperty("--rows", String(rows));
  // x ticks only on the bottom row: the tiles above share the time axis's meaning.
  [...tiles.values()].forEach((tile, i) => {
    const bottom = i + cols >= tiles.size;
    if (tile.bottom !== bottom) {
      tile.bottom = bottom;
      tile.restyle();
    }
  });
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
        .then(() => {
          tile.drawn();
          tile.restyle();
        })
        .catch((error) => tile.fail(error));
  }
});

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(layoutGrid, 150);
});

/** Tiles by state: {live, stale, dead, disconnected, waiting}. */
function stateCounts() {
  const counts = { live: 0, stale: 0, dead: 0, disconnected: 0, waiting: 0 };
  for (const tile of tiles.values()) counts[tile.state.state] += 1;
  return counts;
}

/**
 * The page badge shows the worst state and how many tiles are in it ("live · 5 stale · 2 dead");
 * a lost connection is a full-width banner at once, not after the tiles' stale_s.
 */
function renderBadge() {
  const state = client?.state ?? "connecting";
  if (state === "live") everLive = true;
  const lost = everLive && state !== "live";
  banner.hidden = !lost;
  if (lost) {
    const since = lostAt ?? serverNow();
    lostAt = since;
    banner.textContent = `DISCONNECTED since ${new Date(since).toISOString().slice(11, 19)} UTC — last data shown`;
  } else lostAt = null;
  const counts = stateCounts();
  const parts = [lost ? "disconnected" : state];
  if (!lost) for (const name of ["stale", "dead"]) if (counts[name]) parts.push(`${counts[name]} ${name}`);
  if (client?.busUp === false) parts.push("bus down");
  const text = parts.join(" · ");
  if (badge.textContent !== text) badge.textContent = text;
  const worst = lost
    ? "down"
    : state !== "live"
      ? state
      : counts.dead
        ? "dead"
        : counts.stale || client?.busUp === false
          ? "stale"
          : "live";
  const cls = `badge badge-${worst}`;
  if (badge.className !== cls) badge.className = cls;
}
let lostAt = null;

/** The connection changed: every tile and the banner at once. */
function onConnection() {
  renderBadge();
  for (const tile of tiles.values()) tile.renderState();
  renderBadge();
}

async function discoverSymbols() {
  const headers = config.token ? { authorization: `Bearer ${config.token}` } : {};
  const response = await fetch("/api/symbols", { headers });
  if (response.status === 401) await tokenRefused(response);
  if (!response.ok) throw new Error(`/api/symbols: HTTP ${response.status}`);
  const body = await response.json();
  return (body.symbols ?? []).map((s) => s.symbol).sort();
}

/** A saved view's parameters (`?view=NAME` or the operator's playlist). */
async function fetchView(name, token) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const response = await fetch(`/api/views?name=${encodeURIComponent(name)}`, { headers });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return (await response.json()).params;
}

/** The server refused the token: say so on the screen (never a blank or a login page). */
async function tokenRefused(response) {
  let message = "the token is not valid";
  try {
    message = (await response.json()).message ?? message;
  } catch {}
  const expired = /expired/.test(message);
  fleet.status = expired ? "token_expired" : "unauthorized";
  fleet.showMessage(
    `${expired ? "DISPLAY TOKEN EXPIRED" : "DISPLAY TOKEN REFUSED"} — ${message}. ` +
      `Display ${fleet.id}: open /wall?token=NEW_TOKEN once on this screen (it is kept).`,
  );
}

/** The link went down: when the handshake was refused, ask the API why (browsers hide the 401). */
let probing = false;
async function onLinkState(state, info) {
  if (state === "live") {
    if (fleet.status !== "ok") fleet.hideMessage();
    fleet.status = "ok";
    return;
  }
  if (state !== "down" || probing || !config.token) return;
  if (info?.auth) {
    // Closed with 4001/4003 on an open socket: the server said why.
    const expired = info.auth === "token expired";
    await tokenRefused({ json: async () => ({ message: expired ? "the token has expired" : info.auth }) });
    return;
  }
  probing = true;
  try {
    const response = await fetch("/api/symbols", { headers: { authorization: `Bearer ${config.token}` } });
    if (response.status === 401) await tokenRefused(response);
  } catch {
    // the server is down: the banner says so already
  } finally {
    probing = false;
  }
}

/** Each tile's last drawn seq and how long ago it drew, for the heartbeat (cheap: no snapshot). */
function tileReports() {
  const now = performance.now();
  const out = [];
  for (const tile of tiles.values()) {
    const at = Math.max(tile.flushedAt ?? 0, tile.drawnAt ?? 0);
    out.push({
      id: String(tile.id).slice(0, 64),
      seq: tile.queue.length ? 0 : (tile.sub?.lastSeq ?? 0),
      age_s: tile.ready && at ? Math.round((now - at) / 100) / 10 : null,
    });
  }
  return out;
}

async function start() {
  const effective = await fleet.prepare(fetchView);
  if (effective !== location.search) Object.assign(config, parseWallParams(effective));
  config.token = fleet.token;
  document.documentElement.style.setProperty("--scale", String(config.scale));
  if (fleet.viewError) fleet.showMessage(fleet.viewError);
  if (config.title) {
    document.title = config.title;
    document.getElementById("title").textContent = config.title;
  }
  const described = Object.entries(config.filter).map(
    ([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : v}`,
  );
  document.getElementById("filter").textContent =
    `${described.join("  ")}${described.length ? "  ·  " : ""}${config.minutes} min · day from 00:00 ${config.tz}`;
  let symbols = config.symbols;
  if (!symbols.length) {
    try {
      symbols = await discoverSymbols();
    } catch (error) {
      root.append(el("p", "empty", `No symbols given (add ?symbols=BTCUSDT,ETHUSDT) and ${error.message}`));
      return;
    }
  }
  client = new SignalPushClient(wsUrl(), {
    token: config.token,
    backoff: { initialMs: 500, maxMs: config.backoffMaxS * 1000 },
    onState: (state, info) => {
      onConnection();
      onLinkState(state, info);
    },
    onStatus: () => renderBadge(),
    onFrame: (frame) => fleet.onFrame(frame),
  });
  fleet.start({ client, tiles: tileReports, reload: () => location.reload() });
  const specs = config.tiles.length ? config.tiles : parseTiles(symbols, config.minutes);
  useGl =
    config.gl === "on" || (config.gl === "auto" && specs.length <= GL_AUTO_MAX_TILES && webglAvailable());
  for (const spec of specs) {
    const tile = new Tile(spec);
    tile.slot = tiles.size;
    tiles.set(spec.id, tile);
    root.append(tile.node);
    plotSizes.observe(tile.plot);
    headSizes.observe(tile.head);
  }
  if (config.quality) {
    qualityTile = new QualityTile(Plotly, pal);
    root.append(qualityTile.node);
    const { bots, strategies } = config.filter;
    client.perf(
      { bots, strategies },
      { onRows: (rows) => qualityTile.update(rows), onError: (f) => qualityTile.fail(f) },
    );
  }
  layoutGrid();
  for (const tile of tiles.values()) tile.subscribe(client);
  replay?.mount(document);
  renderBadge();
  setInterval(() => {
    const now = serverNow();
    clock.textContent = `${new Date(now).toISOString().slice(0, 19).replace("T", " ")} UTC`;
    for (const tile of tiles.values()) {
      tile.renderState(now);
      if (tile.kpisDirty) tile.renderKpis();
      // A tile that went quiet still folds its live points in (hover, then the next draw is Plotly's).
      if (tile.ready && !tile.foldNow && tile.foldDue) {
        tile.foldNow = true;
        scheduleFlush();
      }
    }
    renderBadge();
    replay?.render();
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
    get clockOffsetMs() {
      return client.clockOffsetMs;
    },
    get serverNow() {
      return serverNow();
    },
    get counts() {
      return stateCounts();
    },
    get banner() {
      return banner.hidden ? null : banner.textContent;
    },
    get tiles() {
      return Object.freeze(Object.fromEntries([...tiles].map(([s, t]) => [s, t.snapshot()])));
    },
    /** A tile by its id (its `SYMBOL[@minutes]` spec; a plain symbol for a tile at the wall's window). */
    tile(id) {
      return tiles.get(id)?.snapshot() ?? null;
    },
    /** The signal-quality tile's state ({rows, shown, draws, error}), or null without one. */
    get quality() {
      return qualityTile?.snapshot() ?? null;
    },
    get perf() {
      return (
        perf && Object.freeze(Object.fromEntries(Object.entries(perf).map(([k, v]) => [k, v.snapshot()])))
      );
    },
    /** The replay bar's actions (null when live): pause, resume, seek(t), setSpeed(x), goLive. */
    get replay() {
      return replay && !replay.live
        ? {
            time: replay.now(),
            speed: replay.speed,
            paused: replay.paused,
            states: replay.handles.map((h) => h.state),
          }
        : null;
    },
    resetPerf() {
      if (perf) for (const stats of Object.values(perf)) stats.reset();
    },
    /** The display's fleet state: id, heartbeats, heals, commands (docs/walls.md). */
    get fleet() {
      return fleet.snapshot();
    },
    /** Test hook: stop the render loop; the watchdog reloads the page after `stall_s`. */
    forceStall() {
      fleet.forceStall();
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
