/**
 * wall.js — the live wall: one tile per symbol, filling the screen, no clicks needed.
 *
 * Each tile subscribes with `history: {minutes, max_points, figure: true}`, draws the server's
 * figure with Plotly.react once per (re)load or reset, then queues live events and applies
 * every queued event of an animation frame together (TileModel.plan → relayout / addTraces /
 * extendTraces with maxPoints / in-place replacement of the live candle), following the
 * server's rules for appending live events (docs/charts.md). All settings are URL parameters
 * (docs/client.md). `window.signalpushWall` exposes read-only state for tests and operators.
 */

import { SignalPushClient } from "./signalpush.js";
import { buildFigure } from "./wall-figure.js";
import { LiveLayer, PlotView, beyondRanges, dataExtents, wallRanges } from "./wall-live.js";
import { FrameStats, TileModel, extendInPlace, gridShape, parseWallParams, prepareFigure } from "./wall-model.js";

const Plotly = globalThis.Plotly;
const MAX_QUEUE = 50_000; // a hidden tab gets no animation frames: flush by timer past this
const PLOT_CONFIG = { displayModeBar: false, responsive: false, scrollZoom: false, staticPlot: false };
/** A point outside the axes folds its tile this soon at the earliest (the point is clipped until then). */
const OUTSIDE_FOLD_MS = 5000;
/** Layout keys of a user's zoom or pan: the tile stops managing its ranges until autorange comes back. */
const ZOOM_KEY = /^[xy]axis\d*\.(range|autorange)/;

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
  const items = [["▲", signal.buy, "buy"], ["▼", signal.sell, "sell"], ["●", signal.hold, "hold"], ["◆", null, "entry"], ["✖", null, "exit"], ["━", pnl.win, "win"], ["━", pnl.loss, "loss"]];
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

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function fmtPrice(v) {
  if (v == null || !Number.isFinite(v)) return "–";
  const digits = Math.abs(v) >= 1000 ? 2 : Math.abs(v) >= 1 ? 3 : 6;
  return v.toLocaleString("en-US", { minimumFractionDigits: Math.min(2, digits), maximumFractionDigits: digits });
}

function fmtAge(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

class Tile {
  constructor(symbol) {
    this.symbol = symbol;
    this.queue = [];
    this.model = null;
    this.ready = false;
    this.reloads = 0;
    this.flushes = 0;
    this.dropped = 0;
    this.lastError = null;
    this.failedAt = null;
    this.reloadTimer = null;
    this.lastFlushAt = -Infinity;
    this.slot = 0;
    this.node = el("section", "tile");
    const head = el("header", "tile-head");
    this.head = head;
    this.headWidth = 0;
    this.titleNode = el("h2", "tile-symbol", symbol);
    this.kpiNodes = {};
    const strip = el("div", "kpis");
    if (!config.kpis) strip.hidden = true;
    for (const [key, label] of [["last_price", "last"], ["today_pnl", "P&L today"], ["win_rate", "win rate"], ["open_positions", "open"], ["active_bots", "bots"]]) {
      const kpi = el("div", "kpi");
      kpi.append(el("span", "kpi-label", label));
      this.kpiNodes[key] = el("span", "kpi-value", "–");
      kpi.append(this.kpiNodes[key]);
      strip.append(kpi);
    }
    this.ageNode = el("span", "age age-wait", "waiting");
    head.append(this.titleNode, strip, this.ageNode);
    this.stage = el("div", "stage");
    this.plot = el("div", "plot");
    // The live layer: points since the last Plotly draw, painted over the plot (wall-live.js);
    // `tip` (what may still change: the live candle) under `settled` (new points, painted once).
    this.tip = el("canvas", "live live-tip");
    this.settled = el("canvas", "live live-settled");
    this.stage.append(this.plot, this.tip, this.settled);
    this.note = el("div", "tile-note", "loading history…");
    this.node.append(head, this.stage, this.note);
    this.sub = null;
    this.layer = new LiveLayer();
    this.view = null;
    this.size = { width: 0, height: 0 };
    this.resizes = 0;
    this.userZoom = false;
    this.ownRelayout = false;
    this.foldNow = false;
    this.foldAt = Infinity;
    this.drawnAt = -Infinity;
    this.listening = false;
  }

  /** Fixed ranges with room for live points, unless the user zoomed (the live layer needs fixed axes). */
  applyRanges(layout) {
    if (!config.liveLayer || this.userZoom || !this.plot.data) return;
    for (const [key, range] of Object.entries(wallRanges(this.plot.data))) {
      if (!layout[key]) continue;
      layout[key].range = range;
      layout[key].autorange = false;
    }
  }

  /** The ranges Plotly drew with, as {layoutKey: [lo, hi]} (x in ms). */
  managedRanges() {
    const ranges = {};
    for (const [id, axis] of Object.entries(this.view?.axes ?? {})) ranges[id[0] + "axis" + id.slice(1)] = [axis.lo, axis.hi];
    return ranges;
  }

  /** Plotly has just drawn every point: the live layer starts over, the next fold is planned. */
  drawn() {
    this.layer.folded(this.plot.data ?? []);
    this.view = plotView(this.plot);
    this.strip = this.view ? liveStrip(this.view, this.plot.data ?? [], this.userZoom) : null;
    this.foldNow = false;
    // Jitter keeps the tiles of a wall from folding in the same second.
    this.drawnAt = performance.now();
    this.foldAt = this.drawnAt + config.foldS * 1000 * (0.85 + 0.3 * Math.random());
    this.paint();
    if (!this.listening && typeof this.plot.on === "function") {
      this.listening = true;
      this.plot.on("plotly_relayout", (change) => this.onRelayout(change));
    }
  }

  onRelayout(change) {
    if (!config.liveLayer || this.ownRelayout || !change) return;
    const keys = Object.keys(change).filter((k) => ZOOM_KEY.test(k));
    if (!keys.length) return;
    // Autorange back on (a double click) hands the ranges back to the wall.
    this.userZoom = !keys.some((k) => k.endsWith("autorange") && change[k] === true);
    this.foldNow = true; // Plotly redrew its own points at the new ranges: the live ones need a fold
    scheduleFlush();
  }

  /** Paint the live layer: the points that arrived since the last paint, and the live candle. */
  paint() {
    if (!this.view || !this.strip || !this.plot.data) return;
    const ratio = window.devicePixelRatio || 1;
    const { height } = this.size;
    const { left, width } = this.strip;
    const [w, h] = [Math.round(width * ratio), Math.round(height * ratio)];
    const contexts = [this.settled, this.tip].map((canvas) => {
      if (canvas.width !== w || canvas.height !== h) {
        [canvas.width, canvas.height] = [w, h]; // clears it
        canvas.style.left = `${left}px`;
        canvas.style.width = `${width}px`;
        this.layer.dirty = true;
      } else if (canvas.style.left !== `${left}px`) {
        canvas.style.left = `${left}px`;
        this.layer.dirty = true;
      }
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, -left * ratio, 0); // the layer paints in plot coordinates
      return ctx;
    });
    this.view.left = left;
    this.view.width = left + width;
    this.view.height = height;
    this.layer.draw(contexts[0], contexts[1], this.plot.data, this.view);
  }

  /** One Plotly redraw of the whole tile with every point, at fixed ranges with room for live ones. */
  fold() {
    const started = performance.now();
    this.applyRanges(this.plot.layout);
    Plotly.redraw(this.plot);
    this.drawn();
    if (perf) perf.fold.record(performance.now() - started);
  }

  get foldDue() {
    if (this.foldNow) return true;
    if (!this.layer.pending) return false;
    const now = performance.now();
    return now >= this.foldAt || (this.layer.outside && now >= this.drawnAt + OUTSIDE_FOLD_MS);
  }

  subscribe(client) {
    this.sub = client.subscribe(
      { symbol: this.symbol, filter: config.filter, history: { minutes: config.minutes, max_points: config.maxPoints, figure: config.figure } },
      {
        onHistory: (frame) => this.onHistory(frame),
        onEvents: (items) => this.onEvents(items),
        onReset: (frame) => this.onReset(frame),
        onError: (err) => this.showNote(`error: ${err.message ?? err.code ?? err}`),
      },
    );
  }

  onHistory(frame) {
    const payload = frame.figure?.figure ? structuredClone(frame.figure) : buildFigure(this.symbol, frame.data, { maxPoints: config.maxPoints });
    prepareFigure(payload, { maxPoints: config.maxPoints, legend: config.legend, gl: useGl });
    renderKey(payload.live);
    this.model = new TileModel(payload, frame.data, { maxPoints: config.maxPoints, gapMs: config.gapS * 1000 });
    this.queue.length = 0;
    this.ready = false;
    this.reloads += 1;
    const reload = this.reloads;
    if (config.liveLayer && !this.userZoom) {
      for (const [key, range] of Object.entries(wallRanges(payload.figure.data))) {
        const layout = payload.figure.layout;
        if (key !== "xaxis" && !layout[key]) continue;
        layout[key] = { ...(layout[key] ?? {}), range, autorange: false };
      }
    }
    Promise.resolve(Plotly.react(this.plot, payload.figure.data, payload.figure.layout, PLOT_CONFIG))
      .then(() => {
        if (reload !== this.reloads) return;
        this.ready = true;
        this.drawn();
        scheduleFlush();
      })
      .catch((error) => this.fail(error));
    this.showNote(frame.truncated ? `history truncated: ${frame.omitted ?? "some"} older events left out` : null);
    this.renderKpis();
    this.renderAge(Date.now());
  }

  onEvents(items) {
    if (!this.model || items.length === 0) return;
    for (const item of items) this.queue.push(item);
    if (this.queue.length > MAX_QUEUE) this.flush();
    else scheduleFlush();
  }

  onReset(frame) {
    this.queue.length = 0;
    this.ready = false;
    this.showNote(`reset: ${frame.reason ?? "server state changed"}; reloading…`);
  }

  get hasWork() {
    return this.ready && this.model != null && (this.queue.length > 0 || this.foldNow);
  }

  /**
   * When this tile may flush next (performance.now() time): at most once per `redraw_ms`, in its
   * own slot of that period (tile k of n at k/n of it). Tiles whose events arrive together would
   * otherwise flush in the same frames, and a frame that changes every tile costs the browser
   * that many times more to composite (measured: 6 tiles in lockstep, frames p95 28 ms; spread
   * over their slots, 6 ms).
   */
  get dueAt() {
    if (this.queue.length > MAX_QUEUE || this.foldNow) return 0;
    const period = config.redrawMs;
    if (!(period > 0)) return this.lastFlushAt;
    const phase = (this.slot * period) / Math.max(1, tiles.size);
    return Math.floor((this.lastFlushAt - phase) / period + 1) * period + phase;
  }

  /** Apply every queued event in one go; returns whether anything was drawn. */
  flush() {
    if (!this.hasWork) return false;
    this.lastFlushAt = performance.now();
    const items = this.queue;
    this.queue = [];
    try {
      const plan = this.model.plan(items, this.plot.data);
      const structural = plan.relayout || plan.swap || plan.add.length;
      if (config.liveLayer && !structural) {
        this.applyLive(plan);
        return true;
      }
      this.applyRanges(this.plot.layout);
      if (plan.relayout) {
        this.ownRelayout = true;
        try {
          Plotly.relayout(this.plot, plan.relayout);
        } finally {
          this.ownRelayout = false;
        }
      }
      if (plan.swap) {
        Plotly.deleteTraces(this.plot, plan.swap.index);
        Plotly.addTraces(this.plot, plan.swap.trace, plan.swap.index);
      }
      if (plan.add.length) Plotly.addTraces(this.plot, plan.add);
      // One redraw per flush: every extendTraces call redraws the whole tile (tens of ms for a
      // few thousand points), so all groups but the last are appended in place first.
      const last = plan.extend.at(-1);
      for (const group of plan.extend.slice(0, -1)) extendInPlace(this.plot.data, group);
      if (last) Plotly.extendTraces(this.plot, last.update, last.indices, last.maxPoints);
      else if (plan.replaced && !plan.add.length && !plan.swap) Plotly.redraw(this.plot);
      if (config.liveLayer) {
        this.drawn();
        // New traces came with points the ranges set before them may not hold: refit at once.
        if (!this.userZoom && beyondRanges(this.plot.data, this.managedRanges())) this.foldNow = true;
      }
      this.flushes += 1;
      if (plan.kpis) this.renderKpis();
    } catch (error) {
      this.fail(error);
    }
    return true;
  }

  /** The live-layer flush: data appended in place, new points painted, a fold when one is due. */
  applyLive(plan) {
    const data = this.plot.data;
    for (const group of plan.extend) {
      extendInPlace(data, group);
      group.indices.forEach((index, j) => this.layer.appended(index, group.update.x[j].length, data[index].x.length));
    }
    for (const [index, x] of plan.replacedAt) this.layer.replaced(index, x, data[index]);
    this.paint();
    if (this.foldDue) this.fold();
    this.flushes += 1;
    if (plan.kpis) this.renderKpis();
  }

  fail(error) {
    // Something in the figure did not take the update: reload it from the server, at most
    // once a minute (a figure Plotly keeps refusing must not turn into a reload loop).
    this.lastError = String(error?.message ?? error);
    this.dropped += this.queue.length;
    this.queue = [];
    this.ready = false;
    this.showNote(`redrawing: ${this.lastError}`);
    const now = Date.now();
    const wait = this.failedAt == null ? 0 : Math.max(0, 60_000 - (now - this.failedAt));
    this.failedAt = now + wait;
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.sub?.reload(), wait);
  }

  showNote(text) {
    this.note.textContent = text ?? "";
    this.note.hidden = !text;
  }

  renderKpis() {
    if (!this.model || !config.kpis) return;
    this.model.kpis.rollDay();
    const k = this.model.kpis.snapshot();
    const set = (key, text, cls = "") => {
      const node = this.kpiNodes[key];
      if (node.textContent !== text) node.textContent = text;
      if (node.dataset.tone !== cls) node.dataset.tone = cls;
    };
    set("last_price", fmtPrice(k.last_price));
    const pnl = Math.round((k.today_pnl ?? 0) * 100) / 100 || 0; // no "−0.00"
    set("today_pnl", `${pnl >= 0 ? "+" : "−"}${Math.abs(pnl).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`, pnl > 0 ? "good" : pnl < 0 ? "bad" : "");
    set("win_rate", k.win_rate == null ? "–" : `${Math.round(k.win_rate)}%`);
    set("open_positions", String(k.open_positions ?? 0));
    set("active_bots", k.active_bots == null ? "–" : String(k.active_bots));
  }

  renderAge(now) {
    let text;
    let tone;
    const last = this.sub?.lastEventAt;
    if (this.sub?.state === "failed") [text, tone] = ["failed", "red"];
    else if (last == null) [text, tone] = ["waiting", "wait"];
    else {
      const age = (now - last) / 1000;
      text = `${fmtAge(age)} ago`;
      tone = age >= config.deadS ? "red" : age >= config.staleS ? "amber" : "ok";
    }
    if (this.ageNode.textContent !== text) this.ageNode.textContent = text;
    const cls = `age age-${tone}`;
    if (this.ageNode.className !== cls) this.ageNode.className = cls;
  }

  snapshot() {
    const sub = this.sub;
    return Object.freeze({
      symbol: this.symbol,
      state: sub?.state ?? "pending",
      epoch: sub?.epoch ?? null,
      lastSeq: sub?.lastSeq ?? null,
      lastEventAt: sub?.lastEventAt ?? null,
      ready: this.ready,
      traces: Object.freeze(this.model && this.plot.data ? this.model.traceLengths(this.plot.data) : {}),
      traceCount: this.plot.data?.length ?? 0,
      queue: this.queue.length,
      reloads: this.reloads,
      flushes: this.flushes,
      kpis: Object.freeze(this.model ? this.model.kpis.snapshot() : {}),
      replaced: this.model?.stats.replaced ?? 0,
      live: Object.freeze({ pending: this.layer.pending, folds: this.layer.stats.folds, draws: this.layer.stats.draws, userZoom: this.userZoom }),
      resizes: this.resizes,
      age: this.ageNode.textContent,
      ageTone: this.ageNode.className.replace("age age-", ""),
      lastError: this.lastError,
    });
  }
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
const perf = config.perf ? { script: new FrameStats(), frame: new FrameStats(), interval: new FrameStats(), fold: new FrameStats() } : null;
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

/**
 * Where live points can land until the next fold: from just left of the last point Plotly drew
 * to the right end of the plot area (the headroom). The canvases cover only this strip: the
 * browser composites a changed canvas whole, and on a wall without a GPU that cost follows its
 * area. A zoomed tile's live points can land anywhere: the whole plot width.
 */
function liveStrip(view, data, zoomed) {
  const xa = view.axes.x;
  if (!xa) return null;
  const right = xa.offset + xa.length;
  const last = dataExtents(data).xaxis?.[1];
  let left = xa.offset;
  if (!zoomed && last != null) {
    // Room for the last candle's body and its cover, and for a marker's radius.
    let margin = Math.max(24, 0.02 * xa.length);
    for (const trace of data) {
      const n = trace?.x?.length ?? 0;
      if ((trace?.type === "candlestick" || trace?.type === "ohlc") && n > 1) margin = Math.max(margin, 0.6 * (view.x(trace.x[n - 1]) - view.x(trace.x[n - 2])) + 4);
    }
    left = Math.min(Math.max(xa.offset, view.x(last) - margin), right - 24);
  }
  left = Math.floor(Math.max(0, left));
  return { left, width: Math.ceil(right - left) + 2 };
}

/** The geometry of a drawn plot for the live layer (Plotly's axes after its last draw). */
function plotView(gd) {
  const full = gd._fullLayout;
  if (!full) return null;
  const axes = {};
  for (const key of Object.keys(full)) {
    const m = /^([xy])axis(\d*)$/.exec(key);
    const ax = full[key];
    if (!m || !Array.isArray(ax?.range) || !(ax._length > 0) || typeof ax.r2l !== "function") continue;
    axes[m[1] + m[2]] = { offset: ax._offset, length: ax._length, lo: ax.r2l(ax.range[0]), hi: ax.r2l(ax.range[1]) };
  }
  return new PlotView(axes, { background: full.plot_bgcolor ?? "#000" });
}

/**
 * Apply queued events: each tile's whole queue in one go (one Plotly redraw), at most once per
 * `redraw_ms` per tile, and tiles in turn until the frame's budget (`frame_budget_ms`) is spent,
 * the rest in the next frame: a Plotly redraw costs tens of ms for a few thousand points, so
 * one frame must not redraw every tile of a busy wall. From the 1 s timer (no frames: a hidden
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
    if (tile.ready) Promise.resolve(Plotly.Plots.resize(tile.plot)).then(() => tile.drawn()).catch((error) => tile.fail(error));
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
  const described = Object.entries(config.filter).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : v}`);
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
  useGl = config.gl === "on" || (config.gl === "auto" && symbols.length <= GL_AUTO_MAX_TILES && webglAvailable());
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
    get state() { return client.state; },
    get busUp() { return client.busUp; },
    get config() { return structuredClone(config); },
    get gl() { return useGl; },
    get stats() { return Object.freeze({ ...client.stats }); },
    get symbols() { return [...tiles.keys()]; },
    get tiles() { return Object.freeze(Object.fromEntries([...tiles].map(([s, t]) => [s, t.snapshot()]))); },
    tile(symbol) { return tiles.get(symbol)?.snapshot() ?? null; },
    get perf() {
      return perf && Object.freeze(Object.fromEntries(Object.entries(perf).map(([k, v]) => [k, v.snapshot()])));
    },
    resetPerf() { if (perf) for (const stats of Object.values(perf)) stats.reset(); },
  };
  Object.defineProperty(window, "signalpushWall", { value: Object.freeze(api), writable: false, configurable: false });
}

if (!Plotly) {
  root.append(el("p", "empty", "Plotly did not load (/vendor/plotly.min.js)."));
} else {
  start();
}
