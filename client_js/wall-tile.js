/**
 * wall-tile.js — one tile of the wall (wall.js): its header (symbol, KPIs, "last update" badge),
 * the Plotly figure drawn from the history frame, and the live side: queued events applied by
 * `TileModel.plan`, new points painted by the live layer (wall-live.js) and folded into the
 * figure with one Plotly redraw at most every `fold_s` (docs/client.md).
 *
 * The page's shared parts (settings, the flush scheduler, frame statistics, the wall's key,
 * the tile count, WebGL or not) come from wall.js through `bindWall`.
 */

import { DayBook, fetchDayBook } from "./wall-daybook.js";
import { buildFigure } from "./wall-figure.js";
import { fmtSigned, kpiCells, priceDigits, TileHead, tileState } from "./wall-head.js";
import { beyondRanges, LiveLayer, liveStrip, plotView, wallRanges } from "./wall-live.js";
import { fitMarkers, labelEquity, markRestart, styleTile } from "./wall-marks.js";
import { extendInPlace, prepareFigure, slotDue, TileModel, trimToWindow } from "./wall-model.js";
import { applyPalette, palette } from "./wall-palette.js";

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
  serverNow: () => Date.now(),
  connected: () => true,
  stateChanged: () => {},
  /** Opens a tile's subscription: client.subscribe, or a replay (wall-replay.js) when set. */
  open: null,
};
/** A day book that could not be fetched is asked again this much later (doubling up to a minute). */
const DAY_RETRY_MS = 5000;

/** Hand the tiles the page's settings and scheduler: `{config, perf, gl, tileCount, renderKey,
 * scheduleFlush, serverNow, connected, stateChanged}`. */
export function bindWall(parts) {
  Object.assign(wall, parts);
}

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

/** One symbol's tile: header, KPIs, age badge, the Plotly figure and its live layer. */
export class Tile {
  /** `spec`: {id, symbol, minutes} (wall-model.js parseTiles). */
  constructor(spec) {
    this.id = spec.id;
    this.symbol = spec.symbol;
    this.minutes = spec.minutes;
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
    this.bottom = true;
    this.lastTs = null;
    this.arrivalTs = null;
    this.epoch = null;
    this.restarts = [];
    this.trimmed = 0;
    this.digits = null;
    this.daybook = new DayBook();
    this.dayFetch = 0;
    this.dayTimer = null;
    this.node = el("section", "tile state-waiting");
    this.node.dataset.tile = spec.id;
    this.headView = new TileHead(spec, wall.config);
    const head = this.headView.node;
    this.head = head;
    this.headWidth = 0;
    this.titleNode = this.headView.titleNode;
    this.stage = el("div", "stage");
    this.plot = el("div", "plot");
    // The live layer: points since the last Plotly draw, painted over the plot (wall-live.js);
    // `tip` (what may still change: the live candle) under `settled` (new points, painted once).
    this.tip = el("canvas", "live live-tip");
    this.settled = el("canvas", "live live-settled");
    this.stage.append(this.plot, this.tip, this.settled);
    this.note = el("div", "tile-note", "loading history…");
    // The overlay sits on the tile, not in the stage: the stage is dimmed, the overlay is not.
    this.node.append(head, this.stage, this.note, this.headView.overlay);
    this.state = { state: "waiting", age: null, last: null };
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
  /** Equity lines named at their right end with the bot's P&L today. */
  labelLines(layout = this.plot.layout, data = this.plot.data) {
    if (!this.model || !layout || !data) return;
    labelEquity(layout, data, this.model.keyOf, {
      dayPnl: this.daybook.seeded ? this.daybook.pnlByBot() : new Map(),
      size: Math.round((this.fontSize ?? 12) * 0.9),
      format: (v) => fmtSigned(v),
    });
  }

  fold() {
    const started = performance.now();
    this.trim();
    this.labelLines();
    this.applyRanges(this.plot.layout);
    Plotly.redraw(this.plot);
    this.drawn();
    wall.perf?.fold.record(performance.now() - started);
  }

  /**
   * Cut the plot's points to the tile's window, at every fold and history: the window ends now
   * (server time), or at the last event when that is earlier (a dead feed keeps what it last
   * showed, under its NO DATA overlay).
   */
  trim(data = this.plot.data) {
    if (!this.model || !data) return 0;
    const end = Math.min(wall.serverNow(), this.lastTs ?? Infinity);
    const removed = trimToWindow(data, this.model.keyOf, end - this.minutes * 60_000);
    this.trimmed += removed;
    return removed;
  }

  get foldDue() {
    if (this.foldNow) return true;
    if (!this.layer.pending) return false;
    const now = performance.now();
    return now >= this.foldAt || (this.layer.outside && now >= this.drawnAt + OUTSIDE_FOLD_MS);
  }

  subscribe(client) {
    const open = wall.open ?? ((c, spec, handlers) => c.subscribe(spec, handlers));
    this.sub = open(
      client,
      {
        symbol: this.symbol,
        filter: wall.config.filter,
        history: {
          minutes: this.minutes,
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
    const pal = palette(wall.config.palette);
    applyPalette(payload, pal);
    const layout = payload.figure.layout;
    if (this.epoch != null && frame.epoch != null && frame.epoch !== this.epoch)
      this.restarts.push(wall.serverNow());
    this.epoch = frame.epoch ?? null;
    for (const ts of this.restarts) markRestart(layout, ts, "restart", { color: pal.muted });
    wall.alertMarks?.(this.symbol, layout);
    this.styleLayout(layout);
    wall.renderKey(payload.live);
    this.model = new TileModel(payload, frame.data, {
      maxPoints: wall.config.maxPoints,
      gapMs: wall.config.gapS * 1000,
    });
    // Two tiles of one symbol share a subscription, and its history is the longer window.
    this.lastTs = lastTimestamp(frame.data);
    this.trim(payload.figure.data);
    fitMarkers(payload, {
      mode: wall.config.markers,
      plotWidth: this.size.width || this.node.clientWidth || 800,
      budget: wall.config.signalBudget,
    });
    this.digits ??= priceDigits(this.model.kpis.snapshot().last_price);
    this.queue.length = 0;
    this.ready = false;
    this.reloads += 1;
    const reload = this.reloads;
    this.labelLines(payload.figure.layout, payload.figure.data);
    this.applyRanges(payload.figure.layout, payload.figure.data);
    Promise.resolve(Plotly.react(this.plot, payload.figure.data, payload.figure.layout, PLOT_CONFIG))
      .then(() => {
        if (reload !== this.reloads) return;
        this.ready = true;
        this.drawn();
        this.restyle(); // the plot's size may have come after the layout was styled
        wall.scheduleFlush();
        this.renderState();
      })
      .catch((error) => this.fail(error));
    this.showNote(
      frame.truncated
        ? `history truncated: ${frame.omitted ?? "some"} older events left out`
        : this.filterNote(frame.data),
    );
    this.loadDay();
    this.renderKpis();
  }

  /** A filtered tile says when its bots do not trade this symbol in the window. */
  filterNote(data) {
    const bots = wall.config.filter?.bots;
    if (!bots?.length) return null;
    const seen =
      (data?.signal?.ts?.length ?? 0) + (data?.trade?.ts?.length ?? 0) + (data?.bot?.ts?.length ?? 0);
    return seen ? null : `${bots.join(", ")}: nothing on ${this.symbol} in ${this.minutes} min`;
  }

  /** Fonts from the tile's size (and `scale=`), ticks only on the wall's bottom row. */
  styleLayout(layout) {
    const size = this.size.width
      ? this.size
      : { width: this.plot.clientWidth || 800, height: this.plot.clientHeight || 400 };
    this.fontSize = styleTile(layout, {
      ...size,
      scale: wall.config.scale,
      bottom: this.bottom,
      minutes: this.minutes,
    });
    return layout;
  }

  /** Re-style after a resize or a new grid: one relayout, only when something changed. */
  restyle() {
    if (!this.ready || !this.plot.layout) return;
    const before = [this.fontSize, this.plot.layout.xaxis?.showticklabels];
    const layout = this.styleLayout({ ...this.plot.layout });
    if (before[0] === this.fontSize && before[1] === this.bottom) return;
    const update = { font: layout.font, margin: layout.margin };
    for (const key of Object.keys(layout)) {
      if (/^[xy]axis\d*$/.test(key)) update[`${key}.tickfont.size`] = this.fontSize;
      if (/^xaxis\d*$/.test(key)) update[`${key}.showticklabels`] = this.bottom;
    }
    this.ownRelayout = true;
    try {
      Promise.resolve(Plotly.relayout(this.plot, update))
        .then(() => this.drawn())
        .catch((error) => this.fail(error));
    } finally {
      this.ownRelayout = false;
    }
  }

  /** Fetch the server's day book (GET /api/day) for this tile's symbol and filter. */
  async loadDay() {
    const fetchId = ++this.dayFetch;
    clearTimeout(this.dayTimer);
    this.daybook.unseed();
    try {
      const body = await fetchDayBook(this.symbol, wall.config);
      if (fetchId !== this.dayFetch) return;
      if (!this.daybook.seed(body)) throw new Error("malformed day book");
      this.dayFailures = 0;
      this.renderKpis();
    } catch (error) {
      if (fetchId !== this.dayFetch) return;
      this.dayError = String(error?.message ?? error);
      // 5 s, 10 s, … up to a minute: a server without /api/day is not asked 9 times every 5 s.
      this.dayFailures = (this.dayFailures ?? 0) + 1;
      const wait = Math.min(60_000, DAY_RETRY_MS * 2 ** (this.dayFailures - 1));
      this.dayTimer = setTimeout(() => this.loadDay(), wait);
    }
  }

  onEvents(items) {
    if (!this.model || items.length === 0) return;
    for (const item of items) {
      this.queue.push(item);
      this.daybook.onEvent(item);
      if (Number.isFinite(item.ts) && (this.lastTs == null || item.ts > this.lastTs)) this.lastTs = item.ts;
    }
    this.arrivalTs = wall.serverNow();
    if (this.queue.length > MAX_QUEUE) this.flush();
    else wall.scheduleFlush();
    if (this.state.state !== "live") this.renderState();
  }

  onReset(frame) {
    this.queue.length = 0;
    this.ready = false;
    this.restarts.push(wall.serverNow());
    this.epoch = null;
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
      if (plan.kpis) this.kpisDirty = true;
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
    if (plan.kpis) this.kpisDirty = true;
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

  /** The first price in the tile's window (candle open, else the price line's first value). */
  windowOpen() {
    const data = this.plot.data;
    if (!data || !this.model) return null;
    const candle = data[this.model.index("candle")];
    if (candle?.open?.length) return candle.open[0];
    const price = data[this.model.index("price")];
    return price?.y?.find((v) => v != null) ?? null;
  }

  /**
   * Redraw the KPI cells. Live flushes only mark them dirty and the page's 1 s tick draws them:
   * a wall is read at a glance, and a header repainted 4 times a second per tile (larger type:
   * larger areas to raster) cost frames on a wall PC without a GPU.
   */
  renderKpis() {
    this.kpisDirty = false;
    if (!this.model || !wall.config.kpis) return;
    const ledger = this.model.kpis.snapshot();
    this.headView.renderKpis(
      kpiCells({
        day: this.daybook.snapshot(ledger.last_price),
        lastPrice: ledger.last_price,
        windowOpen: this.windowOpen(),
        digits: this.digits ?? priceDigits(ledger.last_price),
        statuses: this.model.kpis.statuses,
        minutes: this.minutes,
      }),
    );
  }

  /** The tile's state now (wall-head.js tileState), shown; the page hears of a change. */
  renderState(now = wall.serverNow()) {
    const found = tileState({
      connected: wall.connected(),
      ready: this.reloads > 0,
      failed: this.sub?.state === "failed",
      lastTs: this.lastTs,
      arrivalTs: this.arrivalTs,
      now,
      staleS: wall.config.staleS,
      deadS: wall.config.deadS,
    });
    const changed = found.state !== this.state.state;
    this.state = found;
    this.headView.renderState(this.node, found);
    if (changed) wall.stateChanged();
    if (this.daybook.expired(now)) this.loadDay();
    return found;
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
      id: this.id,
      minutes: this.minutes,
      view: Object.freeze({ ...this.headView.view }),
      lastTs: this.lastTs,
      day: Object.freeze(this.daybook.snapshot(this.model?.kpis.snapshot().last_price ?? null)),
      dayToSeq: this.daybook.seeded ? this.daybook.toSeq : null,
      cells: Object.freeze(
        Object.fromEntries(Object.entries(this.headView.cells).map(([k, node]) => [k, node.textContent])),
      ),
      firstX: firstX(this.plot.data, this.model),
      trimmed: this.trimmed,
      restarts: this.restarts.length,
      lastError: this.lastError,
    });
  }
}

/** The latest event time in a history frame's columnar data (every kind's `ts`). */
export function lastTimestamp(data) {
  let last = null;
  for (const columns of Object.values(data ?? {})) {
    const ts = columns?.ts;
    if (!Array.isArray(ts)) continue;
    for (const t of ts) if (Number.isFinite(t) && (last == null || t > last)) last = t;
  }
  return last;
}

/** The earliest x of the market trace (candles or price line) drawn in a plot. */
function firstX(data, model) {
  const trace = data?.[model?.index("candle") ?? model?.index("price")];
  const x = trace?.x?.find((v) => Number.isFinite(v));
  return x ?? null;
}
