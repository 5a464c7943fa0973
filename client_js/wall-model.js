/**
 * wall-model.js — the wall's pure logic (no DOM, no Plotly): URL parameters, the grid, and
 * turning a batch of live events into Plotly operations on a tile's traces, following the
 * server's rules for appending live events (docs/charts.md section 1).
 *
 * A tile's traces live in Plotly's `gd.data`; `TileModel.plan(items, gd.data)` reads them and
 * returns what to do in one go: a relayout (the first equity line of a figure without the
 * equity strip), a trace to swap (the empty price line of a new symbol becomes the candle
 * trace), traces to add (a new strategy, bot, or the first trade; their points are already in
 * them), one `extendTraces` call per group of traces sharing the same per-point attributes,
 * and which points were replaced in place (the live candle: same ts as the last one).
 * Every trace is bounded to `maxPoints` (trade lines to 3 × maxPoints: entry, exit, gap).
 */

import { SIGNAL_TYPES as EVENT_SIGNAL_TYPES } from "./events-schema.js";
import {
  confidenceStyle,
  equityTrace,
  historyRows,
  liveSpec,
  pnlColor,
  pnlLabel,
  round6,
  signalTrace,
} from "./wall-figure.js";
import { Ledger } from "./wall-ledger.js";

/** Per-point attributes of each kind of trace (what extendTraces appends to). */
const ROLE_ATTRS = {
  candle: ["x", "open", "high", "low", "close"],
  price: ["x", "y"],
  signal: ["x", "y", "customdata", "marker.size", "marker.opacity"],
  "trade:entry": ["x", "y", "customdata", "marker.color"],
  "trade:exit": ["x", "y", "customdata", "marker.color"],
  trade_line: ["x", "y", "customdata"],
  equity: ["x", "y"],
};
/** Arrays cut with x when a history figure is bounded to maxPoints. */
const CUT_ATTRS = [
  "y",
  "open",
  "high",
  "low",
  "close",
  "text",
  "hovertext",
  "customdata",
  "marker.size",
  "marker.opacity",
  "marker.color",
  "marker.symbol",
];
const SIGNAL_TYPES = new Set(EVENT_SIGNAL_TYPES);
const FILTER_PARAMS = ["kinds", "bots", "strategies", "signal_types", "sides"];

/** The role of a trace_map key: candle, price, signal, trade:entry, trade:exit, trade_line, equity. */
export function roleOf(key) {
  const k = String(key ?? "");
  if (k === "candle" || k === "price" || k === "trade:entry" || k === "trade:exit") return k;
  if (k.startsWith("signal:")) return "signal";
  if (k.startsWith("trade_line:")) return "trade_line";
  if (k.startsWith("equity:")) return "equity";
  return null;
}

/** ms since epoch from a Plotly x value: a number (ms) or a date string (UTC when no zone given). */
export function toMs(x) {
  if (typeof x === "number") return x;
  if (x instanceof Date) return x.getTime();
  if (typeof x !== "string") return NaN;
  let s = x.trim().replace(" ", "T");
  if (!/(Z|[+-]\d\d:?\d\d)$/.test(s)) s += "Z";
  return Date.parse(s);
}

function numberParam(params, name, fallback, { min = 0, max = Infinity } = {}) {
  const raw = params.get(name);
  if (raw == null || raw === "") return fallback;
  const value = Number(raw);
  return Number.isFinite(value) && value >= min && value <= max ? value : fallback;
}

/** `legend`: "key" (one key for the whole wall, default), "tiles" (Plotly's legend per tile), "none". */
function legendMode(raw) {
  const value = String(raw ?? "key").toLowerCase();
  if (["1", "true", "on", "yes", "tiles"].includes(value)) return "tiles";
  if (["0", "false", "off", "no", "none"].includes(value)) return "none";
  return "key";
}

/** `markers=`: default (trades, buy and sell signals; hold hidden), all, trades, none. */
export const MARKER_MODES = Object.freeze(["default", "all", "trades", "none"]);
const TILE_SPEC = /^([A-Za-z0-9._:-]{1,64}?)(?:@(\d{1,7}))?$/;

/**
 * Tiles from `symbols=`: `SYMBOL[@minutes]`, so one symbol can show at two windows
 * (`BTCUSDT@60,BTCUSDT@360`). A tile's id is its spec; the same spec twice is one tile.
 */
export function parseTiles(specs, minutes) {
  const out = new Map();
  for (const raw of specs) {
    const m = TILE_SPEC.exec(raw);
    if (!m) continue;
    const symbol = m[1].toUpperCase();
    const own = m[2] == null ? null : Number(m[2]);
    const tileMinutes = own != null && own >= 1 && own <= 60 * 24 * 366 ? own : minutes;
    const id = own == null ? symbol : `${symbol}@${tileMinutes}`;
    if (!out.has(id)) out.set(id, { id, symbol, minutes: tileMinutes });
  }
  return [...out.values()];
}

/** Every wall setting from the URL (docs/client.md lists them). */
export function parseWallParams(search) {
  const params = new URLSearchParams(search);
  const list = (name) =>
    (params.get(name) ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  const filter = {};
  for (const key of FILTER_PARAMS) if (list(key).length) filter[key] = list(key);
  const minConfidence = numberParam(params, "min_confidence", null, { max: 1 });
  if (minConfidence) filter.min_confidence = minConfidence;
  const flag = (name, fallback) =>
    params.has(name) ? !["0", "false", "no", "off"].includes(params.get(name)) : fallback;
  const minutes = numberParam(params, "minutes", 360, { min: 1, max: 60 * 24 * 366 });
  const tiles = parseTiles(list("symbols"), minutes);
  return {
    tiles,
    symbols: [...new Set(tiles.map((t) => t.symbol))],
    /** `tiles=quality`: add the signal-quality tile (wall-quality.js). */
    quality: list("tiles").includes("quality"),
    filter,
    minutes,
    palette: params.get("palette") === "cb" ? "cb" : "default",
    scale: numberParam(params, "scale", 1, { min: 0.25, max: 8 }),
    markers: MARKER_MODES.includes(params.get("markers")) ? params.get("markers") : "default",
    signalBudget: Math.round(numberParam(params, "signal_budget", 0, { min: 0, max: 100_000 })),
    tz: /^[A-Za-z0-9_+\-/]{1,64}$/.test(params.get("tz") ?? "") ? params.get("tz") : "UTC",
    maxPoints: Math.round(numberParam(params, "max_points", 2000, { min: 10, max: 100_000 })),
    staleS: numberParam(params, "stale_s", 30, { min: 1 }),
    deadS: numberParam(params, "dead_s", 120, { min: 1 }),
    token: params.get("token") || null,
    ws: params.get("ws") || null,
    cols: Math.round(numberParam(params, "cols", 0, { min: 0, max: 24 })),
    title: params.get("title") || null,
    kpis: flag("kpis", true),
    legend: legendMode(params.get("legend")),
    figure: flag("figure", true),
    gapS: numberParam(params, "gap_s", 600, { min: 1 }),
    backoffMaxS: numberParam(params, "backoff_max_s", 20, { min: 1, max: 3600 }),
    frameBudgetMs: numberParam(params, "frame_budget_ms", 8, { min: 1, max: 1000 }),
    liveLayer: flag("live_layer", true),
    redrawMs: numberParam(params, "redraw_ms", flag("live_layer", true) ? 250 : 1000, {
      min: 0,
      max: 60_000,
    }),
    foldS: numberParam(params, "fold_s", 60, { min: 1, max: 3600 }),
    gl: ((v) =>
      ["1", "true", "on", "yes"].includes(v)
        ? "on"
        : ["0", "false", "off", "no"].includes(v)
          ? "off"
          : "auto")(String(params.get("gl") ?? "auto").toLowerCase()),
    perf: flag("perf", false),
  };
}

/**
 * When a tile that last flushed at `last` may flush next: the first start of its slot after
 * `last + 0`, where tile `slot` of `count` owns the instants `slot/count × period + m × period`.
 * Spreads a wall's flushes over the period instead of letting tiles whose events arrive
 * together flush (and be composited) in the same frames.
 */
export function slotDue(last, slot, count, period) {
  if (!(period > 0)) return last;
  const phase = (slot * period) / Math.max(1, count);
  return Math.floor((last - phase) / period + 1) * period + phase;
}

/** Columns × rows that give n tiles the largest readable area in a width × height screen. */
export function gridShape(n, width, height, forcedCols = 0) {
  if (n <= 0) return { cols: 1, rows: 1 };
  if (forcedCols > 0) return { cols: Math.min(forcedCols, n), rows: Math.ceil(n / Math.min(forcedCols, n)) };
  let best = { cols: 1, rows: n, score: -1 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const w = width / cols;
    const h = height / rows;
    const score = Math.min(w, h * 1.6) * (n / (cols * rows)) ** 0.25; // prefer landscape tiles, few empty cells
    if (score > best.score) best = { cols, rows, score };
  }
  return { cols: best.cols, rows: best.rows };
}

function getPath(obj, path) {
  let v = obj;
  for (const part of path.split(".")) v = v?.[part];
  return v;
}

function setPath(obj, path, value) {
  const parts = path.split(".");
  let o = obj;
  for (const part of parts.slice(0, -1)) {
    o[part] ??= {};
    o = o[part];
  }
  o[parts.at(-1)] = value;
}

/** Cut every per-point array of `trace` (those as long as x) to its last `limit` points. */
function cutTrace(trace, limit) {
  const n = trace.x?.length ?? 0;
  if (n <= limit) return;
  for (const attr of ["x", ...CUT_ATTRS]) {
    const arr = getPath(trace, attr);
    if (Array.isArray(arr) && arr.length === n) setPath(trace, attr, arr.slice(n - limit));
  }
}

/**
 * Ready a figure payload for a wall tile, in place: x values as ms (date strings are UTC when
 * they carry no zone), date x axes, zoom kept (`uirevision`), every trace within its bound.
 * The tile shows the symbol in its own header, so the figure's title goes unless `title`.
 * `gl`: draw markers and lines with WebGL (`scattergl`, templates too): far cheaper redraws on
 * a screen with a GPU; candles stay SVG.
 */
export function prepareFigure(
  payload,
  { maxPoints = 2000, legend = "tiles", title = false, gl = false } = {},
) {
  const { data, layout } = payload.figure;
  if (gl) {
    const toGl = (trace) => {
      if (trace?.type === "scatter") trace.type = "scattergl";
    };
    data.forEach(toGl);
    const templates = payload.live?.templates ?? {};
    for (const value of Object.values(templates)) {
      if (value?.type) toGl(value);
      else for (const nested of Object.values(value ?? {})) toGl(nested);
    }
  }
  const keys = new Map(Object.entries(payload.trace_map ?? {}).map(([k, i]) => [i, k]));
  data.forEach((trace, index) => {
    if (!Array.isArray(trace.x)) return;
    if (trace.x.some((x) => typeof x !== "number" && x != null))
      trace.x = trace.x.map((x) => (x == null ? null : toMs(x)));
    cutTrace(trace, roleOf(keys.get(index)) === "trade_line" ? 3 * maxPoints : maxPoints);
  });
  for (const key of Object.keys(layout)) {
    if (/^xaxis\d*$/.test(key) && layout[key] && !layout[key].type) layout[key].type = "date";
  }
  if (!layout.xaxis) layout.xaxis = { type: "date" };
  if (layout.uirevision == null) layout.uirevision = payload.live?.symbol ?? "wall";
  if (legend !== "tiles" && legend !== true) layout.showlegend = false;
  if (!title) {
    delete layout.title;
    layout.margin = { ...(layout.margin ?? {}), t: layout.showlegend === false ? 14 : 6 }; // a legend pushes the margin it needs
  }
  return payload;
}

/** The live side of one tile; see the module comment. */
export class TileModel {
  /**
   * `payload`: the (prepared) figure payload; `historyData`: the history frame's `data`.
   * `gapMs` stands in for the figure's `live.gap_ms` values the server could not tell (null).
   */
  constructor(payload, historyData, { maxPoints = 2000, gapMs = 600_000, now = Date.now() } = {}) {
    const symbol = payload.live?.symbol ?? payload.figure.layout?.uirevision ?? "";
    const defaults = liveSpec(symbol, { maxPoints });
    const given = payload.live ?? {};
    this.live = { ...defaults, ...given, templates: { ...defaults.templates, ...(given.templates ?? {}) } };
    this.traceMap = new Map(Object.entries(payload.trace_map ?? {}));
    this.keyOf = [];
    for (const [key, index] of this.traceMap) this.keyOf[index] = key;
    this.traceCount = payload.figure.data.length;
    this.maxPoints = maxPoints;
    this.gapMs = { price: this.live.gap_ms?.price ?? gapMs, equity: this.live.gap_ms?.equity ?? gapMs };
    this.equityBots = [...(this.live.equity_bots ?? [])];
    this.hasEquityAxis = Boolean(payload.figure.layout?.yaxis2);
    this.ledger = new Ledger(historyRows(historyData), now);
    this.stats = { planned: 0, replaced: 0, late: 0, unplotted: 0 };
  }

  /** The KPIs (server keys, docs/charts.md). */
  get kpis() {
    return this.ledger;
  }

  /** Trace index for a trace_map key, or undefined. */
  index(key) {
    return this.traceMap.get(key);
  }

  /** Turn `items` (in seq order) into operations on `data` (gd.data); see the module comment. */
  plan(items, data) {
    const ctx = {
      data,
      add: [],
      fresh: new Map(),
      pending: new Map(),
      swap: null,
      relayout: null,
      replaced: false,
      replacedAt: [],
    };
    for (const event of items) {
      this.stats.planned += 1;
      const booked = this.ledger.onEvent(event);
      if (event.kind === "candle") this._candle(ctx, event);
      else if (event.kind === "signal") this._signal(ctx, event);
      else if (event.kind === "trade") this._trade(ctx, event, booked);
      else if (event.kind === "bot" && event.equity != null && Number.isFinite(Number(event.equity)))
        this._equity(ctx, event);
    }
    const extend = this._groups(ctx);
    this.traceCount += ctx.add.length; // the caller adds them to gd.data before extending
    return {
      relayout: ctx.relayout,
      swap: ctx.swap,
      add: ctx.add,
      extend,
      replaced: ctx.replaced,
      replacedAt: ctx.replacedAt,
      kpis: items.length > 0,
    };
  }

  _trace(ctx, index) {
    return ctx.fresh.get(index) ?? ctx.data[index];
  }

  _limit(index) {
    return roleOf(this.keyOf[index]) === "trade_line" ? 3 * this.maxPoints : this.maxPoints;
  }

  /** The per-point attributes to append to for trace `index` (those the trace holds as arrays). */
  _attrs(trace, index) {
    const role = roleOf(this.keyOf[index]);
    return (ROLE_ATTRS[role] ?? ["x", "y"]).filter((a) => Array.isArray(getPath(trace, a)));
  }

  /** Queue a point (values by attribute) for trace `index`; new traces take it directly. */
  _append(ctx, index, point) {
    const trace = this._trace(ctx, index);
    if (ctx.fresh.has(index)) {
      for (const attr of this._attrs(trace, index)) getPath(trace, attr).push(point[attr] ?? null);
      return;
    }
    let pending = ctx.pending.get(index);
    if (!pending) {
      pending = { attrs: this._attrs(trace, index), values: {} };
      for (const attr of pending.attrs) pending.values[attr] = [];
      ctx.pending.set(index, pending);
    }
    for (const attr of pending.attrs) pending.values[attr].push(point[attr] ?? null);
  }

  /** The x of the last point of trace `index`, queued ones included (null when it has none). */
  _lastX(ctx, index) {
    const queued = ctx.pending.get(index)?.values.x;
    if (queued?.length) return queued.at(-1);
    const x = this._trace(ctx, index)?.x;
    return x?.length ? x.at(-1) : null;
  }

  _length(ctx, index) {
    return (this._trace(ctx, index)?.x?.length ?? 0) + (ctx.pending.get(index)?.values.x.length ?? 0);
  }

  /** A point with the same x as an existing one overwrites it (in the queue, else in place). */
  _replace(ctx, index, ts, point) {
    const pending = ctx.pending.get(index);
    const i = pending ? pending.values.x.lastIndexOf(ts) : -1;
    if (i >= 0) {
      for (const [attr, value] of Object.entries(point))
        if (pending.values[attr]) pending.values[attr][i] = value;
      return;
    }
    const trace = this._trace(ctx, index);
    const j = trace.x.lastIndexOf(ts);
    if (j < 0) {
      this.stats.late += 1;
      return;
    } // an old point we no longer show
    for (const [attr, value] of Object.entries(point)) {
      const arr = getPath(trace, attr);
      if (Array.isArray(arr) && j < arr.length) arr[j] = value;
    }
    if (!ctx.fresh.has(index)) {
      ctx.replaced = true;
      ctx.replacedAt.push([index, ts]);
      this.stats.replaced += 1;
    }
  }

  /** A point of a time line (price, equity): same ts replaces, older is dropped, a long pause is a gap. */
  _linePoint(ctx, index, ts, value, gapMs) {
    const lastX = this._lastX(ctx, index);
    if (lastX != null && ts < lastX) {
      this.stats.late += 1;
      return;
    }
    if (lastX != null && ts === lastX) return this._replace(ctx, index, ts, { y: value });
    if (lastX != null && gapMs != null && ts - lastX > gapMs)
      this._append(ctx, index, { x: lastX + 1, y: null });
    this._append(ctx, index, { x: ts, y: value });
  }

  _indexFor(ctx, key, make) {
    let index = this.index(key);
    if (index === undefined) {
      const trace = make();
      cutTrace(trace, 0); // templates carry no points
      index = this.traceCount + ctx.add.length;
      ctx.add.push(trace);
      ctx.fresh.set(index, trace);
      this.traceMap.set(key, index);
      this.keyOf[index] = key;
    }
    return index;
  }

  _template(key) {
    return structuredClone(this.live.templates[key]);
  }

  /** On a chart without candles, signal and trade prices (and candle closes) draw the price line. */
  _price(ctx, ts, price) {
    const index = this.index("price");
    if (index !== undefined && this.index("candle") === undefined)
      this._linePoint(ctx, index, ts, Number(price), this.gapMs.price);
  }

  _candle(ctx, c) {
    let index = this.index("candle");
    if (index === undefined) {
      const price = this.index("price");
      if (price === undefined) {
        this.stats.unplotted += 1;
        return;
      }
      if (this._length(ctx, price) > 0 || ctx.swap)
        return this._linePoint(ctx, price, c.ts, Number(c.close), this.gapMs.price);
      // A symbol with no history yet: its empty price line becomes the candle trace.
      const trace = this._template("candle");
      ctx.swap = { index: price, trace };
      ctx.fresh.set(price, trace);
      this.traceMap.delete("price");
      this.traceMap.set("candle", price);
      this.keyOf[price] = "candle";
      index = price;
    }
    const point = { x: c.ts, open: c.open, high: c.high, low: c.low, close: c.close };
    const lastX = this._lastX(ctx, index);
    if (lastX != null && c.ts <= lastX) return this._replace(ctx, index, c.ts, point);
    this._append(ctx, index, point);
  }

  _signal(ctx, s) {
    if (!SIGNAL_TYPES.has(s.type)) {
      this.stats.unplotted += 1;
      return;
    }
    const index = this._indexFor(ctx, `signal:${s.strategy}:${s.type}`, () =>
      signalTrace(s.strategy, s.type, this.live),
    );
    const raw = Number(s.confidence);
    const confidence = Number.isFinite(raw) ? Math.min(1, Math.max(0, raw)) : 1;
    const style = confidenceStyle(confidence, this.live);
    this._append(ctx, index, {
      x: s.ts,
      y: s.price,
      customdata: [s.bot, s.strategy, confidence],
      "marker.size": style.size,
      "marker.opacity": style.opacity,
    });
    this._price(ctx, s.ts, s.price);
  }

  _trade(ctx, t, booked) {
    const colors = this.live.colors;
    if (t.action === "entry") {
      const index = this._indexFor(ctx, "trade:entry", () => this._template("trade:entry"));
      this._append(ctx, index, {
        x: t.ts,
        y: t.price,
        customdata: [t.bot, t.strategy, t.side, t.qty, t.position],
        "marker.color": colors.side?.[t.side] ?? colors.pnl.flat,
      });
    } else if (t.action === "exit") {
      const pnl = booked?.pnl ?? null;
      const value = pnl == null ? null : round6(pnl);
      const index = this._indexFor(ctx, "trade:exit", () => this._template("trade:exit"));
      this._append(ctx, index, {
        x: t.ts,
        y: t.price,
        customdata: [t.bot, t.strategy, t.side, t.qty, t.position, value, pnlLabel(value)],
        "marker.color": pnlColor(value, this.live),
      });
      if (booked?.entry && pnl != null) {
        const key = pnl > 0 ? "trade_line:win" : "trade_line:loss";
        const line = this._indexFor(ctx, key, () => this._template(key));
        const label = pnlLabel(pnl);
        this._append(ctx, line, { x: booked.entry.ts, y: booked.entry.price, customdata: [t.bot, label] });
        this._append(ctx, line, { x: t.ts, y: t.price, customdata: [t.bot, label] });
        this._append(ctx, line, { x: null, y: null, customdata: null });
      }
    }
    this._price(ctx, t.ts, t.price);
  }

  _equity(ctx, b) {
    const key = `equity:${b.bot}`;
    const index = this._indexFor(ctx, key, () => {
      this.equityBots.push(b.bot);
      return equityTrace(b.bot, this.equityBots.length - 1, this.live);
    });
    if (!this.hasEquityAxis) {
      ctx.relayout = structuredClone(this.live.equity_axes);
      this.hasEquityAxis = true;
    }
    this._linePoint(ctx, index, b.ts, Number(b.equity), this.gapMs.equity);
  }

  /** One extendTraces call per (attribute set, maxPoints): usually a single call per frame. */
  _groups(ctx) {
    for (const [index, trace] of ctx.fresh) cutTrace(trace, this._limit(index));
    const groups = new Map();
    for (const [index, pending] of ctx.pending) {
      if (!pending.values.x.length) continue;
      const limit = this._limit(index);
      const signature = `${pending.attrs.join(",")}|${limit}`;
      if (!groups.has(signature))
        groups.set(signature, {
          indices: [],
          update: Object.fromEntries(pending.attrs.map((a) => [a, []])),
          maxPoints: limit,
        });
      const group = groups.get(signature);
      group.indices.push(index);
      for (const attr of pending.attrs) group.update[attr].push(pending.values[attr]);
    }
    return [...groups.values()];
  }

  /** Points per trace key, for window.signalpushWall. */
  traceLengths(data) {
    const out = {};
    for (const [key, index] of this.traceMap) out[key] = data[index]?.x?.length ?? 0;
    return out;
  }
}

/** Durations in a fixed histogram (0.25 ms buckets up to 2 s): constant memory for a soak of any length. */
export class FrameStats {
  constructor() {
    this.buckets = new Uint32Array(8001);
    this.reset();
  }

  reset() {
    this.buckets.fill(0);
    this.count = 0;
    this.max = 0;
    this.total = 0;
  }

  record(ms) {
    if (!(ms >= 0)) return;
    this.buckets[Math.min(this.buckets.length - 1, Math.round(ms * 4))] += 1;
    this.count += 1;
    this.total += ms;
    if (ms > this.max) this.max = ms;
  }

  /** The q-quantile (0..1) in ms, to the bucket (0.25 ms); null when nothing was recorded. */
  quantile(q) {
    if (!this.count) return null;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i];
      if (seen >= rank) return i / 4;
    }
    return this.max;
  }

  /** Share of the recorded durations above `ms`. */
  over(ms) {
    let n = 0;
    for (let i = Math.floor(ms * 4) + 1; i < this.buckets.length; i++) n += this.buckets[i];
    return this.count ? n / this.count : 0;
  }

  snapshot() {
    return {
      count: this.count,
      mean: this.count ? this.total / this.count : null,
      p50: this.quantile(0.5),
      p95: this.quantile(0.95),
      p99: this.quantile(0.99),
      max: this.max,
    };
  }
}

/**
 * What `Plotly.extendTraces(gd, update, indices, maxPoints)` does to `gd.data`, without the redraw:
 * every attribute of `update` (dotted paths) concatenated, then cut to its last `maxPoints`.
 * A flush appends all its groups but the last this way, so one extendTraces call redraws once.
 */
export function extendInPlace(data, { update, indices, maxPoints }) {
  indices.forEach((index, j) => {
    for (const [attr, values] of Object.entries(update)) {
      const parts = attr.split(".");
      let owner = data[index];
      for (const p of parts.slice(0, -1)) owner = owner?.[p];
      const key = parts.at(-1);
      if (!owner || !Array.isArray(owner[key]))
        throw new Error(`cannot extend missing or non-extendable attribute: ${attr}`);
      const joined = owner[key].concat(values[j]);
      owner[key] = joined.length > maxPoints ? joined.slice(joined.length - maxPoints) : joined;
    }
  });
}

/**
 * Cut every trace of `data` (gd.data) to the points at or after `cutoff` (ms): a running wall
 * keeps its window at every fold instead of widening until `max_points`. Trade lines go by whole
 * entry→exit segments (three points: entry, exit, gap), kept while their exit is in the window.
 * `keyOf[i]` is trace i's trace_map key. Returns the number of points removed.
 */
export function trimToWindow(data, keyOf, cutoff) {
  let removed = 0;
  data.forEach((trace, index) => {
    const x = trace?.x;
    if (!Array.isArray(x) || !x.length) return;
    let cut = 0;
    if (roleOf(keyOf[index]) === "trade_line") {
      while (cut + 2 < x.length && !(x[cut + 1] >= cutoff)) cut += 3;
    } else {
      while (cut < x.length && (x[cut] == null || x[cut] < cutoff)) cut += 1;
    }
    if (!cut) return;
    cutTrace(trace, x.length - cut);
    removed += cut;
  });
  return removed;
}
