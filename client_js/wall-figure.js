/**
 * wall-figure.js — the wall's figure contract (docs/charts.md section 1) on the client side.
 *
 * The server sends, when a subscribe asks `history: {figure: true}`, the payload of
 * `server.charts.wall.build_symbol_figure` plus `kpis`:
 *   {figure: {data, layout}, trace_map: {key: traceIndex}, live: {...}, kpis: {...}}
 * The server is the source of truth. `buildFigure` makes the same payload in the browser from a
 * history frame's columns (dark theme), for history frames that carry no figure and as a
 * test fixture; `client_js/tests/wall-contract.test.js` checks it against the server's output.
 * The helpers here (`confidenceStyle`, `pnlLabel`, `pnlColor`, `gapThreshold`) are the rules
 * the wall applies to live events, so appended points look exactly like the backfill.
 */

import { HISTORY_COLUMNS, SIGNAL_TYPES } from "./events-schema.js";
import { exitPnl, Ledger } from "./wall-ledger.js";

export { exitPnl };

/** The dark theme of server/charts/styles.py. */
export const DARK = Object.freeze({
  background: "#0b0f14",
  text: "#e5e7eb",
  grid: "#1f2937",
  fontSize: 18,
  markerLine: "#0b0f14",
  tradeMarkerSize: 11.0,
  tradeLineWidth: 2.5,
  equityLineWidth: 2.5,
  confidence: { size: [6.0, 16.0], opacity: [0.35, 1.0] },
});

const SIGNAL_COLORS = { buy: "#22c55e", sell: "#ef4444", hold: "#9ca3af" };
const SIGNAL_SYMBOLS = { buy: "triangle-up", sell: "triangle-down", hold: "circle" };
const SIDE_COLORS = { buy: "#22c55e", sell: "#ef4444" };
const PNL_COLORS = { win: "#22c55e", loss: "#ef4444", flat: "#9ca3af" };
const EQUITY_PALETTE = [
  "#60a5fa",
  "#f59e0b",
  "#a78bfa",
  "#34d399",
  "#f472b6",
  "#facc15",
  "#38bdf8",
  "#fb7185",
];
const CANDLE_UP = "#22c55e";
const CANDLE_DOWN = "#ef4444";
const EQUITY_HEIGHT = 0.2;
const EQUITY_GAP = 0.05;
const HOVER_TIME = "%{x|%Y-%m-%d %H:%M:%S} UTC";
export const DEFAULT_MAX_POINTS = 2000;

// ---- number rules shared with the server ------------------------------------------------

/** numpy's rint: round half to even. */
function rint(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Python's round(x, 3) as numpy does it (scaled, half to even). */
export const round3 = (x) => rint(x * 1000) / 1000;

/** Python's round(x, 6) for P&L values. */
export const round6 = (x) => (Number.isFinite(x) ? Number(x.toFixed(6)) : null);

/** Marker size and opacity for a confidence (clipped to 0..1), linear in `live.confidence`, 3 decimals. */
export function confidenceStyle(confidence, live) {
  const raw = Number(confidence);
  const c = Number.isFinite(raw) ? Math.min(1, Math.max(0, raw)) : 1;
  const [s0, s1] = live?.confidence?.size ?? DARK.confidence.size;
  const [o0, o1] = live?.confidence?.opacity ?? DARK.confidence.opacity;
  return { size: round3(s0 + (s1 - s0) * c), opacity: round3(o0 + (o1 - o0) * c) };
}

/** `+1,234.50` / `-0.40` (Python's f"{v:+,.2f}", ties to even), `n/a` when unknown. */
export function pnlLabel(value) {
  if (value == null || !Number.isFinite(value)) return "n/a";
  const negative = value < 0 || Object.is(value, -0);
  const abs = Math.abs(value);
  let whole;
  let cents;
  if (Number.isInteger(abs * 8) && !Number.isInteger(abs * 4)) {
    // An exact binary tie at the third decimal (…x.125, …x.375, …): Python rounds it to even.
    const floor = Math.floor(abs * 100);
    const even = floor % 2 === 0 ? floor : floor + 1;
    [whole, cents] = [String(Math.floor(even / 100)), String(even % 100).padStart(2, "0")];
  } else {
    [whole, cents] = abs.toFixed(2).split("."); // the nearest of the exact binary value, as Python
  }
  return `${negative ? "-" : "+"}${whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",")}.${cents}`;
}

/** Exit marker colour: win (> 0), loss (< 0), flat (0 or unknown). */
export function pnlColor(value, live) {
  const colors = live?.colors?.pnl ?? PNL_COLORS;
  if (value == null || value === 0 || !Number.isFinite(value)) return colors.flat;
  return value > 0 ? colors.win : colors.loss;
}

/**
 * A gap is a step longer than `factor` × the usual long step (the 75th percentile of the steps
 * between distinct times, numpy's linear interpolation), at least `floorMs`; null with too few points.
 */
export function gapThreshold(ts, factor = 3, floorMs = 60_000) {
  if (ts.length < 3) return null;
  const sorted = [...ts].sort((a, b) => a - b);
  const steps = [];
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i] - sorted[i - 1] > 0) steps.push(sorted[i] - sorted[i - 1]);
  if (!steps.length) return null;
  steps.sort((a, b) => a - b);
  const at = 0.75 * (steps.length - 1);
  const lo = Math.floor(at);
  const t = at - lo;
  const a = steps[lo];
  const b = steps[Math.min(lo + 1, steps.length - 1)];
  const p75 = t >= 0.5 ? b - (b - a) * (1 - t) : a + (b - a) * t; // numpy's _lerp
  return Math.max(p75 * factor, floorMs);
}

/** A `null` point (at previous ts + 1) wherever consecutive times are more than `gapMs` apart. */
function withGaps(ts, values, gapMs) {
  const xs = [];
  const ys = [];
  for (let i = 0; i < ts.length; i++) {
    if (i > 0 && gapMs != null && ts[i] - ts[i - 1] > gapMs) {
      xs.push(ts[i - 1] + 1);
      ys.push(null);
    }
    xs.push(ts[i]);
    ys.push(values[i]);
  }
  return { x: xs, y: ys };
}

const finite = (v) => (v == null || !Number.isFinite(Number(v)) ? null : Number(v));

/** numpy.linspace(0, n - 1, k).round(): which of n points to keep. */
function linspacePick(n, k) {
  const out = [];
  for (let i = 0; i < k; i++) out.push(rint(k === 1 ? 0 : (i * (n - 1)) / (k - 1)));
  return out;
}

// ---- history rows -----------------------------------------------------------------------

function columns(block, names) {
  const n = block?.ts?.length ?? 0;
  const rows = [];
  for (let i = 0; i < n; i++) {
    const row = {};
    for (const k of names) row[k] = block[k]?.[i] ?? null;
    rows.push(row);
  }
  return rows;
}

const byTs = (rows) =>
  rows
    .map((r, i) => [r, i])
    .sort((a, b) => a[0].ts - b[0].ts || a[1] - b[1])
    .map(([r]) => r);

/** Rows of `history.data`, each kind sorted by time (stable): {candles, signals, trades, bots}. */
export function historyRows(data) {
  const candles = new Map();
  for (const c of byTs(columns(data?.candle, HISTORY_COLUMNS.candle))) {
    if (finite(c.close) != null) candles.set(c.ts, c); // the last candle of a ts wins
  }
  const signals = columns(data?.signal, HISTORY_COLUMNS.signal).filter(
    (s) => SIGNAL_TYPES.includes(s.type) && finite(s.price) != null,
  );
  return {
    candles: [...candles.values()],
    signals: byTs(signals),
    trades: byTs(columns(data?.trade, HISTORY_COLUMNS.trade)),
    bots: byTs(columns(data?.bot, HISTORY_COLUMNS.bot)),
  };
}

// ---- templates (server/charts/traces.py, wall.py) ------------------------------------------

function signalTemplate(type) {
  const label = type.toUpperCase();
  return {
    type: "scatter",
    mode: "markers",
    name: `{strategy} ${type}`,
    legendgroup: "{strategy}",
    x: [],
    y: [],
    customdata: [],
    marker: {
      symbol: SIGNAL_SYMBOLS[type],
      color: SIGNAL_COLORS[type],
      size: [],
      opacity: [],
      line: { width: 1, color: DARK.markerLine },
    },
    hovertemplate: `<b>%{customdata[1]}</b> · ${label}<br>bot: %{customdata[0]}<br>confidence: %{customdata[2]:.2f}<br>price: %{y:,.2f}<br>${HOVER_TIME}<extra></extra>`,
    meta: { layer: "signals", key: `signal:{strategy}:${type}` },
  };
}

function tradeTemplates() {
  const bot = "bot: %{customdata[0]} · %{customdata[1]}<br>position: %{customdata[4]}<br>";
  const size = DARK.tradeMarkerSize;
  const line = (outcome, name) => ({
    type: "scatter",
    mode: "lines",
    name,
    legendgroup: "trades",
    x: [],
    y: [],
    customdata: [],
    connectgaps: false,
    line: { color: PNL_COLORS[outcome], width: DARK.tradeLineWidth },
    opacity: 0.75,
    showlegend: false,
    hovertemplate: "<b>%{customdata[0]}</b> P&L: %{customdata[1]}<extra></extra>",
    meta: { layer: "trades", key: `trade_line:${outcome}` },
  });
  return {
    "trade:entry": {
      type: "scatter",
      mode: "markers",
      name: "entries",
      legendgroup: "trades",
      x: [],
      y: [],
      customdata: [],
      marker: { symbol: "diamond", size, color: [], line: { width: 1.5, color: DARK.text } },
      hovertemplate: `<b>ENTRY %{customdata[2]}</b> %{customdata[3]} @ %{y:,.2f}<br>${bot}${HOVER_TIME}<extra></extra>`,
      meta: { layer: "trades", key: "trade:entry" },
    },
    "trade:exit": {
      type: "scatter",
      mode: "markers",
      name: "exits",
      legendgroup: "trades",
      x: [],
      y: [],
      customdata: [],
      marker: { symbol: "x", size, color: [], line: { width: 0 } },
      hovertemplate: `<b>EXIT %{customdata[2]}</b> %{customdata[3]} @ %{y:,.2f}<br>P&L: %{customdata[6]}<br>${bot}${HOVER_TIME}<extra></extra>`,
      meta: { layer: "trades", key: "trade:exit" },
    },
    "trade_line:win": line("win", "winning trades"),
    "trade_line:loss": line("loss", "losing trades"),
  };
}

function equityTemplate(bot, index) {
  return {
    type: "scatter",
    mode: "lines",
    name: bot,
    legendgroup: "equity",
    x: [],
    y: [],
    connectgaps: false,
    yaxis: "y2",
    xaxis: "x",
    showlegend: false,
    line: { color: EQUITY_PALETTE[index % EQUITY_PALETTE.length], width: DARK.equityLineWidth },
    hovertemplate: `<b>${bot}</b> equity: %{y:,.2f}<br>${HOVER_TIME}<extra></extra>`,
    meta: { layer: "equity", key: `equity:${bot}` },
  };
}

function candleTemplate(symbol) {
  return {
    type: "candlestick",
    name: symbol,
    x: [],
    open: [],
    high: [],
    low: [],
    close: [],
    increasing: { line: { color: CANDLE_UP }, fillcolor: CANDLE_UP },
    decreasing: { line: { color: CANDLE_DOWN }, fillcolor: CANDLE_DOWN },
    showlegend: false,
    hoverinfo: "x+y",
    meta: { layer: "market", key: "candle" },
  };
}

function priceTemplate(symbol) {
  return {
    type: "scatter",
    mode: "lines",
    name: `${symbol} price`,
    x: [],
    y: [],
    connectgaps: false,
    line: { color: DARK.text, width: 2 },
    showlegend: false,
    hovertemplate: `price: %{y:,.2f}<br>${HOVER_TIME}<extra></extra>`,
    meta: { layer: "market", key: "price" },
  };
}

function axis() {
  return {
    gridcolor: DARK.grid,
    zerolinecolor: DARK.grid,
    linecolor: DARK.grid,
    tickfont: { size: DARK.fontSize - 2 },
  };
}

function equityAxis(symbol) {
  return {
    ...axis(),
    domain: [0.0, EQUITY_HEIGHT],
    side: "right",
    uirevision: symbol,
    automargin: true,
    nticks: 3,
  };
}

function equityAnnotation() {
  return {
    text: "equity",
    xref: "paper",
    yref: "paper",
    x: 0.0,
    y: EQUITY_HEIGHT,
    xanchor: "left",
    yanchor: "top",
    showarrow: false,
    font: { size: DARK.fontSize - 4, color: DARK.text },
  };
}

/** The `live` block of the server's payload (dark theme). */
export function liveSpec(
  symbol,
  { maxPoints = DEFAULT_MAX_POINTS, equityBots = [], gapMs = { price: null, equity: null } } = {},
) {
  return {
    symbol,
    x: "ms",
    max_points: maxPoints,
    confidence: structuredClone(DARK.confidence),
    colors: {
      signal: { ...SIGNAL_COLORS },
      side: { ...SIDE_COLORS },
      pnl: { ...PNL_COLORS },
      equity: [...EQUITY_PALETTE],
    },
    symbols: { signal: { ...SIGNAL_SYMBOLS }, entry: "diamond", exit: "x" },
    customdata: {
      signal: ["bot", "strategy", "confidence"],
      "trade:entry": ["bot", "strategy", "side", "qty", "position"],
      "trade:exit": ["bot", "strategy", "side", "qty", "position", "pnl", "pnl_label"],
      trade_line: ["bot", "pnl_label"],
    },
    pnl_label: { decimals: 2, sign: true, thousands: ",", unknown: "n/a" },
    equity_bots: [...equityBots],
    templates: {
      signal: Object.fromEntries(SIGNAL_TYPES.map((t) => [t, signalTemplate(t)])),
      equity: equityTemplate("{bot}", 0),
      candle: candleTemplate(symbol),
      price: priceTemplate(symbol),
      ...tradeTemplates(),
    },
    equity_axes: {
      "yaxis.domain": [EQUITY_HEIGHT + EQUITY_GAP, 1.0],
      yaxis2: equityAxis(symbol),
      "xaxis.anchor": "y2",
      annotations: [equityAnnotation()],
    },
    naming: {
      signal: "{strategy} {type}",
      signal_key: "signal:{strategy}:{type}",
      equity: "{bot}",
      equity_key: "equity:{bot}",
      equity_color_index: "position of the bot in equity_bots",
    },
    gap_ms: { ...gapMs },
  };
}

/** A deep copy of `template` with every `{name}` placeholder in `fields` (dotted paths) replaced. */
export function fromTemplate(template, values, fields) {
  const trace = structuredClone(template);
  for (const path of fields) {
    const parts = path.split(".");
    let owner = trace;
    for (const p of parts.slice(0, -1)) owner = owner?.[p];
    const key = parts.at(-1);
    if (owner && typeof owner[key] === "string") {
      owner[key] = owner[key].replace(/\{(\w+)\}/g, (m, name) => (name in values ? String(values[name]) : m));
    }
  }
  return trace;
}

/** A new signal trace of (strategy, type), from `live.templates.signal[type]`. */
export function signalTrace(strategy, type, live) {
  const template = live?.templates?.signal?.[type] ?? signalTemplate(type);
  return fromTemplate(template, { strategy }, ["name", "legendgroup", "meta.key"]);
}

/** A new equity trace for `bot` (colour by its position in `equity_bots`), from `live.templates.equity`. */
export function equityTrace(bot, index, live) {
  const trace = fromTemplate(live?.templates?.equity ?? equityTemplate("{bot}", 0), { bot }, [
    "name",
    "hovertemplate",
    "meta.key",
  ]);
  const palette = live?.colors?.equity ?? EQUITY_PALETTE;
  trace.line = { ...(trace.line ?? {}), color: palette[index % palette.length] };
  return trace;
}

// ---- the fallback figure ----------------------------------------------------------------

/** server/charts/wall.py downsample_candles: time buckets, open first, close last. */
function downsampleCandles(candles, maxPoints) {
  if (candles.length <= maxPoints || maxPoints < 1) return candles;
  const ts = candles.map((c) => c.ts);
  const diffs = ts
    .slice(1)
    .map((t, i) => t - ts[i])
    .sort((a, b) => a - b);
  const mid = diffs.length >> 1;
  const step = Math.trunc(diffs.length % 2 ? diffs[mid] : (diffs[mid - 1] + diffs[mid]) / 2) || 1;
  const span = ts.at(-1) - ts[0];
  const bucketMs = Math.max(step, Math.ceil((span + step) / maxPoints / step) * step);
  const out = [];
  let current = null;
  for (const c of candles) {
    const bucket = Math.floor((c.ts - ts[0]) / bucketMs);
    if (!current || current.bucket !== bucket) {
      current = { bucket, ts: c.ts, open: c.open, high: c.high, low: c.low, close: c.close, volume: 0 };
      out.push(current);
    }
    current.high = Math.max(current.high, c.high);
    current.low = Math.min(current.low, c.low);
    current.close = c.close;
    current.volume += c.volume ?? 0;
  }
  return out;
}

/** Direction, average entry and first entry of every position in `trades` (all entries in the data). */
function positionBook(trades) {
  const book = new Map();
  for (const t of trades) {
    if (t.action !== "entry") continue;
    const key = `${t.bot}\u001f${t.position}`;
    let p = book.get(key);
    if (!p) {
      p = { side: t.side, firstTs: t.ts, qty: 0, notional: 0 };
      book.set(key, p);
    }
    p.qty += Number(t.qty);
    p.notional += Number(t.price) * Number(t.qty);
  }
  return book;
}

/** The figure payload of the server's contract, built from a history frame's data (dark theme). */
export function buildFigure(symbol, data, { maxPoints = DEFAULT_MAX_POINTS, now = Date.now() } = {}) {
  const rows = historyRows(data);
  const keyed = [];
  const candles = downsampleCandles(rows.candles, maxPoints);
  if (candles.length) {
    const trace = candleTemplate(symbol);
    trace.x = candles.map((c) => c.ts);
    for (const k of ["open", "high", "low", "close"]) trace[k] = candles.map((c) => finite(c[k]));
    keyed.push(["candle", trace]);
  } else {
    const byTime = new Map();
    for (const p of byTs([...rows.signals, ...rows.trades])) byTime.set(p.ts, p.price);
    let points = [...byTime.entries()].sort((a, b) => a[0] - b[0]);
    if (points.length > maxPoints && maxPoints > 0)
      points = linspacePick(points.length, maxPoints).map((i) => points[i]);
    const ts = points.map(([t]) => t);
    const trace = priceTemplate(symbol);
    Object.assign(
      trace,
      withGaps(
        ts,
        points.map(([, p]) => finite(p)),
        gapThreshold(ts, 10),
      ),
    );
    keyed.push(["price", trace]);
  }
  const live = liveSpec(symbol, { maxPoints });
  for (const strategy of [...new Set(rows.signals.map((s) => s.strategy))].sort()) {
    for (const type of SIGNAL_TYPES) {
      const mine = rows.signals.filter((s) => s.strategy === strategy && s.type === type);
      if (!mine.length) continue;
      const trace = signalTrace(strategy, type, live);
      for (const s of mine) {
        const style = confidenceStyle(s.confidence, live);
        trace.x.push(s.ts);
        trace.y.push(finite(s.price));
        trace.customdata.push([s.bot, s.strategy, Number(s.confidence)]);
        trace.marker.size.push(style.size);
        trace.marker.opacity.push(style.opacity);
      }
      keyed.push([`signal:${strategy}:${type}`, trace]);
    }
  }
  const templates = tradeTemplates();
  const book = positionBook(rows.trades);
  const entries = rows.trades.filter((t) => t.action === "entry");
  const exits = rows.trades.filter((t) => t.action === "exit");
  if (entries.length) {
    const trace = templates["trade:entry"];
    for (const t of entries) {
      trace.x.push(t.ts);
      trace.y.push(finite(t.price));
      trace.customdata.push([t.bot, t.strategy, t.side, finite(t.qty), t.position]);
      trace.marker.color.push(SIDE_COLORS[t.side] ?? PNL_COLORS.flat);
    }
    keyed.push(["trade:entry", trace]);
  }
  if (exits.length) {
    const trace = templates["trade:exit"];
    const lines = { win: templates["trade_line:win"], loss: templates["trade_line:loss"] };
    for (const t of exits) {
      const position = book.get(`${t.bot}\u001f${t.position}`);
      const pnl = exitPnl(t, position);
      const value = pnl == null ? null : round6(pnl);
      trace.x.push(t.ts);
      trace.y.push(finite(t.price));
      trace.customdata.push([t.bot, t.strategy, t.side, finite(t.qty), t.position, value, pnlLabel(value)]);
      trace.marker.color.push(pnlColor(value, live));
      if (position && pnl != null) {
        const line = lines[pnl > 0 ? "win" : "loss"];
        const label = pnlLabel(pnl);
        line.x.push(position.firstTs, t.ts, null);
        line.y.push(position.notional / position.qty, Number(t.price), null);
        line.customdata.push([t.bot, label], [t.bot, label], null);
      }
    }
    keyed.push(["trade:exit", trace]);
    for (const outcome of ["win", "loss"])
      if (lines[outcome].x.length) keyed.push([`trade_line:${outcome}`, lines[outcome]]);
  }
  const equityBots = [...new Set(rows.bots.filter((b) => finite(b.equity) != null).map((b) => b.bot))].sort();
  const perBotGaps = [];
  equityBots.forEach((bot, index) => {
    const last = new Map();
    for (const b of rows.bots)
      if (b.bot === bot && finite(b.equity) != null) last.set(b.ts, Number(b.equity));
    let points = [...last.entries()];
    if (points.length > maxPoints && maxPoints > 0)
      points = linspacePick(points.length, maxPoints).map((i) => points[i]);
    const ts = points.map(([t]) => t);
    const trace = equityTrace(bot, index, live);
    Object.assign(
      trace,
      withGaps(
        ts,
        points.map(([, e]) => e),
        gapThreshold(ts),
      ),
    );
    perBotGaps.push(gapThreshold(ts));
    keyed.push([`equity:${bot}`, trace]);
  });
  const priceGap = gapThreshold(
    [...rows.signals, ...rows.trades].map((r) => r.ts),
    10,
  );
  const equityGaps = perBotGaps.filter((g) => g != null);
  live.equity_bots = equityBots;
  live.gap_ms = { price: priceGap, equity: equityGaps.length ? Math.min(...equityGaps) : null };
  const figure = { data: keyed.map(([, t]) => t), layout: wallLayout(symbol, equityBots.length > 0) };
  return {
    figure,
    trace_map: Object.fromEntries(keyed.map(([key], i) => [key, i])),
    live,
    kpis: computeKpis(rows, now),
  };
}

/** server/charts/wall.py _layout for the dark theme. */
export function wallLayout(symbol, hasEquity) {
  const layout = {
    template: { data: {}, layout: {} },
    paper_bgcolor: DARK.background,
    plot_bgcolor: DARK.background,
    font: { color: DARK.text, size: DARK.fontSize, family: "Inter, system-ui, sans-serif" },
    hoverlabel: { font: { size: DARK.fontSize } },
    hovermode: "closest",
    legend: {
      orientation: "h",
      x: 0,
      y: 1.0,
      yanchor: "bottom",
      font: { size: DARK.fontSize - 2 },
      groupclick: "togglegroup",
      itemsizing: "constant",
    },
    title: {
      text: symbol,
      font: { size: DARK.fontSize + 8 },
      x: 0.01,
      xanchor: "left",
      yref: "container",
      y: 0.985,
      yanchor: "top",
    },
    uirevision: symbol,
    margin: { l: 20, r: 20, t: 130, b: 50 },
    xaxis: {
      ...axis(),
      type: "date",
      anchor: hasEquity ? "y2" : "y",
      rangeslider: { visible: false },
      uirevision: symbol,
      showspikes: true,
      spikecolor: DARK.grid,
    },
    yaxis: {
      ...axis(),
      domain: [hasEquity ? EQUITY_HEIGHT + EQUITY_GAP : 0.0, 1.0],
      side: "right",
      uirevision: symbol,
      automargin: true,
    },
  };
  if (hasEquity) {
    layout.yaxis2 = equityAxis(symbol);
    layout.annotations = [equityAnnotation()];
  }
  return layout;
}

/** KPIs as server/charts/wall.py `kpis` computes them from the same rows. */
export function computeKpis(rows, now = Date.now()) {
  return new Ledger(rows, now).snapshot(now);
}
