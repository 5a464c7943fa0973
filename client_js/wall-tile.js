/**
 * wall-tile.js — one tile of the wall (wall.js): its header (symbol, KPIs, "last update" badge),
 * the Plotly figure drawn from the history frame, and the live side: queued events applied by
 * `TileModel.plan`, new points painted by the live layer (wall-live.js) and folded into the
 * figure with one Plotly redraw at most every `fold_s` (docs/client.md).
 *
 * The page's shared parts (settings, the flush scheduler, frame statistics, the wall's key,
 * the tile count, WebGL or not) come from wall.js through `bindWall`.
 */

import { buildFigure } from "./wall-figure.js";
import { beyondRanges, LiveLayer, liveStrip, plotView, wallRanges } from "./wall-live.js";
import { extendInPlace, prepareFigure, slotDue, TileModel } from "./wall-model.js";

const Plotly = globalThis.Plotly;
const MAX_QUEUE = 50_000; // a hidden tab gets no animation frames: flush by timer past this
const PLOT_CONFIG = { displayModeBar: false, responsive: false, scrollZoom: false, staticPlot: false };
/** A point outside the axes folds its tile this soon at the earliest (the point is clipped until then). */
const OUTSIDE_FOLD_MS = 5000;
/** Layout keys of a user's zoom or pan: the tile stops managing its ranges until autorange comes back. */
const ZOOM_KEY = /^[xy]axis\d*\.(range|autorange)/;

/** What the tiles share with the page (set by wall.js). */
const wall = {
  config: null,
  perf: null,
  gl: () => false,
  tileCount: () => 1,
  renderKey: () => {},
  scheduleFlush: () => {},
};

/** Hand the tiles the page's settings and scheduler: `{config, perf, gl, tileCount, renderKey, scheduleFlush}`. */
export function bindWall(parts) {
  Object.assign(wall, parts);
}

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function fmtPrice(v) {
  if (v == null || !Number.isFinite(v)) return "–";
  const digits = Math.abs(v) >= 1000 ? 2 : Math.abs(v) >= 1 ? 3 : 6;
  return v.toLocaleString("en-US", {
    minimumFractionDigits: Math.min(2, digits),
    maximumFractionDigits: digits,
  });
}

function fmtAge(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** One symbol's tile: header, KPIs, age badge, the Plotly figure and its live layer. */
export class Tile {
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
    if (!wall.config.kpis) strip.hidden = true;
    for (const [key, label] of [
      ["last_price", "last"],
      ["today_pnl", "P&L today"],
      ["win_rate", "win rate"],
      ["open_positions", "open"],
      ["active_bots", "bots"],
    ]) {
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
  applyRanges(layout, data = this.plot.data) {
    if (!wall.config.liveLayer || this.userZoom || !data) return;
    for (const [key, range] of Object.entries(wallRanges(data))) {
      if (key !== "xaxis" && !layout[key]) continue; // a y axis the figure lacks stays absent
      layout[key] = { ...(layout[key] ?? {}), range, autorange: false };
    }
  }

  /** The ranges Plotly drew with, as {layoutKey: [lo, hi]} (x in ms). */
  managedRanges() {
    const ranges = {};
    for (const [id, axis] of Object.entries(this.view?.axes ?? {}))
      ranges[`${id[0]}axis${id.slice(1)}`] = [axis.lo, axis.hi];
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
    this.foldAt = this.drawnAt + wall.config.foldS * 1000 * (0.85 + 0.3 * Math.random());
    this.paint();
    if (!this.listening && typeof this.plot.on === "function") {
      this.listening = true;
      this.plot.on("plotly_relayout", (change) => this.onRelayout(change));
    }
  }

  onRelayout(change) {
    if (!wall.config.liveLayer || this.ownRelayout || !change) return;
    const keys = Object.keys(change).filter((k) => ZOOM_KEY.test(k));
    if (!keys.length) return;
    // Autorange back on (a double click) hands the ranges back to the wall.
    this.userZoom = !keys.some((k) => k.endsWith("autorange") && change[k] === true);
    this.foldNow = true; // Plotly redrew its own points at the new ranges: the live ones need a fold
    wall.scheduleFlush();
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
    wall.perf?.fold.record(performance.now() - started);
  }

  get foldDue() {
    if (this.foldNow) return true;
    if (!this.layer.pending) return false;
    const now = performance.now();
    return now >= this.foldAt || (this.layer.outside && now >= this.drawnAt + OUTSIDE_FOLD_MS);
  }

  subscribe(client) {
    this.sub = client.subscribe(
      {
        symbol: this.symbol,
        filter: wall.config.filter,
        history: {
          minutes: wall.config.minutes,
          max_points: wall.config.maxPoints,
          figure: wall.config.figure,
        },
      },
      {
        onHistory: (frame) => this.onHistory(frame),
        onEvents: (items) => this.onEvents(items),
        onReset: (frame) => this.onReset(frame),
        onError: (err) => this.showNote(`error: ${err.message ?? err.code ?? err}`),
      },
    );
  }

  onHistory(frame) {
    const payload = frame.figure?.figure
      ? structuredClone(frame.figure)
      : buildFigure(this.symbol, frame.data, { maxPoints: wall.config.maxPoints });
    prepareFigure(payload, { maxPoints: wall.config.maxPoints, legend: wall.config.legend, gl: wall.gl() });
    wall.renderKey(payload.live);
    this.model = new TileModel(payload, frame.data, {
      maxPoints: wall.config.maxPoints,
      gapMs: wall.config.gapS * 1000,
    });
    this.queue.length = 0;
    this.ready = false;
    this.reloads += 1;
    const reload = this.reloads;
    this.applyRanges(payload.figure.layout, payload.figure.data);
    Promise.resolve(Plotly.react(this.plot, payload.figure.data, payload.figure.layout, PLOT_CONFIG))
      .then(() => {
        if (reload !== this.reloads) return;
        this.ready = true;
        this.drawn();
        wall.scheduleFlush();
      })
      .catch((error) => this.fail(error));
    this.showNote(
      frame.truncated ? `history truncated: ${frame.omitted ?? "some"} older events left out` : null,
    );
    this.renderKpis();
    this.renderAge(Date.now());
  }

  onEvents(items) {
    if (!this.model || items.length === 0) return;
    for (const item of items) this.queue.push(item);
    if (this.queue.length > MAX_QUEUE) this.flush();
    else wall.scheduleFlush();
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
    return slotDue(this.lastFlushAt, this.slot, wall.tileCount(), wall.config.redrawMs);
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
      if (wall.config.liveLayer && !structural) {
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
      if (wall.config.liveLayer) {
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
      for (const [j, index] of group.indices.entries()) {
        this.layer.appended(index, group.update.x[j].length, data[index].x.length);
      }
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
    if (!this.model || !wall.config.kpis) return;
    this.model.kpis.rollDay();
    const k = this.model.kpis.snapshot();
    const set = (key, text, cls = "") => {
      const node = this.kpiNodes[key];
      if (node.textContent !== text) node.textContent = text;
      if (node.dataset.tone !== cls) node.dataset.tone = cls;
    };
    set("last_price", fmtPrice(k.last_price));
    const pnl = Math.round((k.today_pnl ?? 0) * 100) / 100 || 0; // no "−0.00"
    set(
      "today_pnl",
      `${pnl >= 0 ? "+" : "−"}${Math.abs(pnl).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`,
      pnl > 0 ? "good" : pnl < 0 ? "bad" : "",
    );
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
      tone = age >= wall.config.deadS ? "red" : age >= wall.config.staleS ? "amber" : "ok";
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
      live: Object.freeze({
        pending: this.layer.pending,
        folds: this.layer.stats.folds,
        draws: this.layer.stats.draws,
        userZoom: this.userZoom,
      }),
      resizes: this.resizes,
      age: this.ageNode.textContent,
      ageTone: this.ageNode.className.replace("age age-", ""),
      lastError: this.lastError,
    });
  }
}
