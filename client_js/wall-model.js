/**
 * wall-model.js — the wall's pure logic (no DOM, no Plotly): URL parameters, KPIs, and
 * turning a batch of live events into Plotly operations on a tile's traces.
 *
 * A tile's traces live in Plotly's `gd.data`; `TileModel.plan(items, gd.data)` reads them and
 * returns what to do in one go: traces to add (a new strategy or bot appeared; their points
 * are already in them), one `extendTraces` call per group of traces sharing the same per-point
 * attributes, and whether points were replaced in place (the live candle: same ts as the last
 * one). Every trace is bounded to `maxPoints` (trade lines to 3 × maxPoints: entry, exit, gap).
 */

import { DEFAULT_LIVE, confidenceStyle, equityTrace, historyRows, signalTrace, tradeSegments, tradeWon } from "./wall-figure.js";

const POINT_ATTRS = ["y", "open", "high", "low", "close", "text", "hovertext", "customdata", "marker.size", "marker.opacity", "marker.color", "marker.symbol"];
const DAY = 86_400_000;
const TF_UNITS = { s: 1000, m: 60_000, h: 3_600_000, d: DAY, w: 7 * DAY };
const MAX_TRACKED_POSITIONS = 5000;
const FILTER_PARAMS = ["kinds", "bots", "strategies", "signal_types", "sides"];

/** ms since epoch from a Plotly x value: a number (ms) or a date string (UTC when no zone given). */
export function toMs(x) {
  if (typeof x === "number") return x;
  if (x instanceof Date) return x.getTime();
  if (typeof x !== "string") return NaN;
  let s = x.trim().replace(" ", "T");
  if (!/(Z|[+-]\d\d:?\d\d)$/.test(s)) s += "Z";
  return Date.parse(s);
}

export function timeframeMs(tf) {
  const m = /^([1-9][0-9]*)([smhdw])$/.exec(String(tf ?? ""));
  return m ? Number(m[1]) * TF_UNITS[m[2]] : 60_000;
}

const utcDayStart = (ms) => Math.floor(ms / DAY) * DAY;

function numberParam(params, name, fallback, { min = 0, max = Infinity } = {}) {
  const raw = params.get(name);
  if (raw == null || raw === "") return fallback;
  const value = Number(raw);
  return Number.isFinite(value) && value >= min && value <= max ? value : fallback;
}

/** Every wall setting from the URL (docs/client.md lists them). */
export function parseWallParams(search) {
  const params = new URLSearchParams(search);
  const list = (name) => (params.get(name) ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const filter = {};
  for (const key of FILTER_PARAMS) if (list(key).length) filter[key] = list(key);
  const minConfidence = numberParam(params, "min_confidence", null, { max: 1 });
  if (minConfidence) filter.min_confidence = minConfidence;
  const flag = (name, fallback) => (params.has(name) ? !["0", "false", "no", "off"].includes(params.get(name)) : fallback);
  return {
    symbols: [...new Set(list("symbols").map((s) => s.toUpperCase() === s ? s : s.toUpperCase()))],
    filter,
    minutes: numberParam(params, "minutes", 360, { min: 1, max: 60 * 24 * 366 }),
    maxPoints: Math.round(numberParam(params, "max_points", 2000, { min: 10, max: 100_000 })),
    staleS: numberParam(params, "stale_s", 30, { min: 1 }),
    deadS: numberParam(params, "dead_s", 120, { min: 1 }),
    token: params.get("token") || null,
    ws: params.get("ws") || null,
    cols: Math.round(numberParam(params, "cols", 0, { min: 0, max: 24 })),
    title: params.get("title") || null,
    kpis: flag("kpis", true),
    legend: flag("legend", true),
    figure: flag("figure", true),
    equityGapS: numberParam(params, "equity_gap_s", 600, { min: 1 }),
    backoffMaxS: numberParam(params, "backoff_max_s", 20, { min: 1, max: 3600 }),
  };
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

/** KPIs of one tile: last price, today's P&L (UTC day), win rate, open positions, active bots. */
export class Kpis {
  constructor(payloadKpis, rows, now = Date.now()) {
    const k = payloadKpis ?? {};
    this.dayStart = utcDayStart(now);
    const lastCandle = rows.candles.at(-1);
    this.lastPrice = k.last_price ?? lastCandle?.close ?? null;
    const todayExits = rows.trades.filter((t) => t.action === "exit" && t.ts >= this.dayStart);
    this.pnlToday = k.pnl_today ?? todayExits.reduce((sum, t) => sum + (t.pnl ?? 0), 0);
    if (k.wins_today != null || k.losses_today != null) {
      this.wins = k.wins_today ?? 0;
      this.losses = k.losses_today ?? 0;
    } else if (k.win_rate != null && k.trades_today != null) {
      this.wins = Math.round(k.win_rate * k.trades_today);
      this.losses = k.trades_today - this.wins;
    } else {
      this.wins = todayExits.filter((t) => t.pnl != null && t.pnl > 0).length;
      this.losses = todayExits.length - this.wins;
    }
    const open = k.open_positions ?? tradeSegments(rows.trades).open.size;
    this.openPositions = Array.isArray(open) ? open.length : Number(open) || 0;
    this.bots = new Map();
    this.activeBase = null;
    if (Array.isArray(k.active_bots)) for (const bot of k.active_bots) this.bots.set(bot, "active");
    else if (k.active_bots != null) this.activeBase = Number(k.active_bots) || 0;
    else if (rows.bots.length) for (const b of rows.bots) this.bots.set(b.bot, b.status); // in seq order: latest wins
    else {
      const since = (lastCandle?.ts ?? now) - 3_600_000;
      for (const e of [...rows.signals, ...rows.trades]) if (e.ts >= since && e.bot) this.bots.set(e.bot, "active");
    }
  }

  rollDay(now = Date.now()) {
    const day = utcDayStart(now);
    if (day === this.dayStart) return false;
    this.dayStart = day;
    this.pnlToday = 0;
    this.wins = this.losses = 0;
    return true;
  }

  onEvent(event) {
    if (event.kind === "candle") this.lastPrice = event.close;
    else if (event.kind === "trade") {
      if (event.action === "entry") this.openPositions += 1;
      else {
        this.openPositions = Math.max(0, this.openPositions - 1);
        if (event.ts >= this.dayStart) {
          this.pnlToday += event.pnl ?? 0;
          if (event.pnl != null && event.pnl > 0) this.wins += 1;
          else this.losses += 1;
        }
      }
    } else if (event.kind === "bot") {
      this.bots.set(event.bot, event.status);
      this.activeBase = null;
    }
  }

  snapshot() {
    const exits = this.wins + this.losses;
    let active = 0;
    for (const status of this.bots.values()) if (status === "active") active += 1;
    return {
      last_price: this.lastPrice,
      pnl_today: this.pnlToday,
      win_rate: exits ? this.wins / exits : null,
      trades_today: exits,
      open_positions: this.openPositions,
      active_bots: this.activeBase ?? active,
    };
  }
}

function getPath(obj, path) {
  let v = obj;
  for (const part of path.split(".")) v = v?.[part];
  return v;
}

function setPath(obj, path, value) {
  const parts = path.split(".");
  let o = obj;
  for (const part of parts.slice(0, -1)) o = o[part] ?? (o[part] = {});
  o[parts.at(-1)] = value;
}

const isSegmentsKey = (key) => String(key).startsWith("trade_line:");

/** Normalize a figure payload in place for the wall: ms x values, date axes, zoom kept, bounded. */
export function prepareFigure(payload, { maxPoints = 2000, legend = true } = {}) {
  const { data, layout } = payload.figure;
  const segments = new Set(Object.entries(payload.trace_map ?? {}).filter(([k]) => isSegmentsKey(k)).map(([, i]) => i));
  data.forEach((trace, index) => {
    if (!Array.isArray(trace.x)) return;
    const n = trace.x.length;
    trace.x = trace.x.map((x) => (x == null ? null : toMs(x)));
    const limit = segments.has(index) ? 3 * maxPoints : maxPoints;
    if (n <= limit) return;
    for (const attr of ["x", ...POINT_ATTRS]) {
      const arr = getPath(trace, attr);
      if (Array.isArray(arr) && arr.length === n) setPath(trace, attr, arr.slice(n - limit));
    }
  });
  for (const key of Object.keys(layout)) {
    if (/^xaxis\d*$/.test(key) && layout[key] && !layout[key].type) layout[key].type = "date";
  }
  if (!layout.xaxis) layout.xaxis = { type: "date" };
  if (layout.uirevision == null) layout.uirevision = "wall";
  if (!legend) layout.showlegend = false;
  return payload;
}

/** The live side of one tile; see the module comment. */
export class TileModel {
  /** `payload`: the (prepared) figure payload; `historyData`: the history frame's `data`. */
  constructor(payload, historyData, { maxPoints = 2000, gapFactor = 3, equityGapMs = 600_000, now = Date.now() } = {}) {
    this.live = { ...DEFAULT_LIVE, ...(payload.live ?? {}) };
    this.live.colors = { ...DEFAULT_LIVE.colors, ...(payload.live?.colors ?? {}) };
    this.live.templates = { ...DEFAULT_LIVE.templates, ...(payload.live?.templates ?? {}) };
    this.traceMap = new Map(Object.entries(payload.trace_map ?? {}));
    this.maxPoints = maxPoints;
    this.gapFactor = gapFactor;
    this.equityGapMs = equityGapMs;
    this.traceCount = payload.figure.data.length;
    const rows = historyRows(historyData);
    this.kpis = new Kpis(payload.kpis, rows, now);
    this.positions = new Map(); // open position id -> entry trade (for entry→exit lines)
    for (const [id, entry] of tradeSegments(rows.trades).open) this.positions.set(id, entry);
    this.stats = { planned: 0, replaced: 0, late: 0, unplotted: 0 };
  }

  /** Trace index for a role key ("candle"/"price", "signal:<s>:<t>", "trade:entry", ...), or undefined. */
  index(key) {
    return this.traceMap.get(key);
  }

  /** Turn `items` (in seq order) into operations on `data` (gd.data); see the module comment. */
  plan(items, data) {
    const ctx = { data, add: [], pending: new Map(), replaced: false, kpis: false };
    for (const event of items) {
      this.stats.planned += 1;
      this.kpis.onEvent(event);
      ctx.kpis = true;
      if (event.kind === "candle") this._candle(ctx, event);
      else if (event.kind === "signal") this._signal(ctx, event);
      else if (event.kind === "trade") this._trade(ctx, event);
      else if (event.kind === "bot" && event.equity != null) this._equity(ctx, event);
    }
    const extend = this._groups(ctx);
    this.traceCount += ctx.add.length; // the caller adds them to gd.data before extending
    return { add: ctx.add, extend, replaced: ctx.replaced, kpis: ctx.kpis };
  }

  _trace(ctx, index) {
    return index < this.traceCount ? ctx.data[index] : ctx.add[index - this.traceCount];
  }

  _limit(index) {
    for (const [key, i] of this.traceMap) if (i === index && isSegmentsKey(key)) return 3 * this.maxPoints;
    return this.maxPoints;
  }

  /** Per-point attributes of a trace: x plus every array attribute as long as x. */
  _attrs(trace) {
    const n = trace.x?.length ?? 0;
    return ["x", ...POINT_ATTRS.filter((a) => Array.isArray(getPath(trace, a)) && getPath(trace, a).length === n)];
  }

  /** Queue a point (values by attribute) for trace `index`; new traces take it directly. */
  _append(ctx, index, point) {
    const trace = this._trace(ctx, index);
    if (index >= this.traceCount) {
      for (const attr of this._attrs(trace)) getPath(trace, attr).push(this._value(trace, attr, point));
      return;
    }
    let pending = ctx.pending.get(index);
    if (!pending) {
      pending = { attrs: this._attrs(trace), values: {} };
      for (const attr of pending.attrs) pending.values[attr] = [];
      ctx.pending.set(index, pending);
    }
    for (const attr of pending.attrs) pending.values[attr].push(this._value(trace, attr, point));
  }

  _value(trace, attr, point) {
    if (attr in point) return point[attr];
    const arr = getPath(trace, attr);
    if (attr === "text" || attr === "hovertext" || attr === "customdata") return null;
    return Array.isArray(arr) && arr.length ? arr.at(-1) : null; // keep the trace's style
  }

  _lastX(ctx, index) {
    const pending = ctx.pending.get(index);
    if (pending?.values.x.length) return { x: pending.values.x.at(-1), pending };
    const trace = this._trace(ctx, index);
    const x = trace?.x;
    return { x: x?.length ? x.at(-1) : null, pending: null };
  }

  _candle(ctx, c) {
    let index = this.index("candle");
    const line = index === undefined;
    if (line) index = this.index("price");
    if (index === undefined) return void (this.stats.unplotted += 1);
    const point = line ? { x: c.ts, y: c.close } : { x: c.ts, open: c.open, high: c.high, low: c.low, close: c.close };
    const { x: lastX, pending } = this._lastX(ctx, index);
    if (lastX != null && c.ts <= lastX) return this._replace(ctx, index, c.ts, point, pending);
    if (line && lastX != null && c.ts - lastX > this.gapFactor * timeframeMs(c.tf)) {
      this._append(ctx, index, { x: (lastX + c.ts) / 2, y: null });
    }
    this._append(ctx, index, point);
  }

  /** Same ts as an existing candle: overwrite it (the live candle), in the queue or in place. */
  _replace(ctx, index, ts, point, pending) {
    if (pending) {
      const i = pending.values.x.lastIndexOf(ts);
      if (i >= 0) {
        for (const [attr, value] of Object.entries(point)) if (pending.values[attr]) pending.values[attr][i] = value;
        return;
      }
    }
    const trace = this._trace(ctx, index);
    const i = trace.x.lastIndexOf(ts);
    if (i < 0) return void (this.stats.late += 1); // an old candle we no longer show
    for (const [attr, value] of Object.entries(point)) {
      const arr = getPath(trace, attr);
      if (Array.isArray(arr) && i < arr.length) arr[i] = value;
    }
    ctx.replaced = true;
    this.stats.replaced += 1;
  }

  _indexFor(ctx, key, make) {
    let index = this.index(key);
    if (index === undefined) {
      const trace = make();
      trace.meta = { ...(trace.meta ?? {}), key };
      index = this.traceCount + ctx.add.length;
      ctx.add.push(trace);
      this.traceMap.set(key, index);
    }
    return index;
  }

  _signal(ctx, s) {
    const index = this._indexFor(ctx, `signal:${s.strategy}:${s.type}`, () => signalTrace(s.strategy, s.type, this.live));
    const style = confidenceStyle(s.confidence, this.live);
    this._append(ctx, index, {
      x: s.ts, y: s.price, customdata: [s.bot, s.confidence], "marker.size": style.size, "marker.opacity": style.opacity,
      text: `${s.bot} ${s.type} ${Number(s.confidence).toFixed(2)}`,
    });
  }

  _trade(ctx, t) {
    const colors = this.live.colors;
    const entryTrace = this.index(`trade:${t.action}`);
    if (t.action === "entry") {
      this.positions.set(t.position, t);
      if (this.positions.size > MAX_TRACKED_POSITIONS) this.positions.delete(this.positions.keys().next().value);
    }
    const entry = t.action === "exit" ? this.positions.get(t.position) : null;
    const win = t.action === "exit" ? tradeWon(entry, t) : null;
    if (entryTrace !== undefined) {
      this._append(ctx, entryTrace, {
        x: t.ts, y: t.price, customdata: [t.bot, t.qty, t.pnl, t.position],
        "marker.color": t.action === "exit" ? (win ? colors.win : colors.loss) : colors[t.side] ?? colors.entry,
        text: `${t.bot} ${t.side} ${t.action}${t.pnl != null ? ` pnl ${t.pnl}` : ""}`,
      });
    }
    if (t.action !== "exit") return;
    this.positions.delete(t.position);
    const line = entry && this.index(win ? "trade_line:win" : "trade_line:loss");
    if (line === undefined || !entry) return;
    this._append(ctx, line, { x: entry.ts, y: entry.price });
    this._append(ctx, line, { x: t.ts, y: t.price });
    this._append(ctx, line, { x: null, y: null });
  }

  _equity(ctx, b) {
    const index = this._indexFor(ctx, `equity:${b.bot}`, () => equityTrace(b.bot, this.live));
    const { x: lastX } = this._lastX(ctx, index);
    if (lastX != null && b.ts <= lastX) return;
    if (lastX != null && b.ts - lastX > this.equityGapMs) this._append(ctx, index, { x: (lastX + b.ts) / 2, y: null });
    this._append(ctx, index, { x: b.ts, y: b.equity });
  }

  /** One extendTraces call per (attribute set, maxPoints): usually a single call per frame. */
  _groups(ctx) {
    for (const [i, trace] of ctx.add.entries()) {
      const limit = this._limit(this.traceCount + i);
      if (trace.x.length > limit) for (const attr of this._attrs(trace)) setPath(trace, attr, getPath(trace, attr).slice(-limit));
    }
    const groups = new Map();
    for (const [index, pending] of ctx.pending) {
      if (!pending.values.x.length) continue;
      const limit = this._limit(index);
      const signature = `${pending.attrs.join(",")}|${limit}`;
      if (!groups.has(signature)) groups.set(signature, { indices: [], update: Object.fromEntries(pending.attrs.map((a) => [a, []])), maxPoints: limit });
      const group = groups.get(signature);
      group.indices.push(index);
      for (const attr of pending.attrs) group.update[attr].push(pending.values[attr]);
    }
    return [...groups.values()];
  }

  /** Points per trace role, for window.signalpushWall. */
  traceLengths(data) {
    const out = {};
    for (const [key, index] of this.traceMap) out[key] = data[index]?.x?.length ?? 0;
    return out;
  }
}
