/**
 * wall-figure.js — the wall's figure contract and a client-side fallback figure.
 *
 * The server sends, when a subscribe asks `history: {figure: true}`, a payload
 *   {figure: {data, layout}, trace_map: {key: traceIndex}, live: {...}, kpis?: {...}}
 * (docs/client.md, "Figure contract"). `buildFigure` makes the same payload in the browser
 * from the history frame's columns, for servers (or history frames, e.g. the one after a
 * reset) that carry no figure, and as the test fixture.
 */

export const DARK = Object.freeze({
  paper: "#0b0f14",
  plot: "#0f141b",
  grid: "#1f2833",
  text: "#c9d1d9",
  up: "#26a69a",
  down: "#ef5350",
});

/** Styling for points added live, and templates for traces that appear live. */
export const DEFAULT_LIVE = Object.freeze({
  confidence: { size: [6, 15], opacity: [0.4, 1.0] },
  colors: {
    buy: "#26a69a",
    sell: "#ef5350",
    hold: "#9e9e9e",
    win: "#66bb6a",
    loss: "#ef5350",
    entry: "#42a5f5",
    strategies: ["#ffca28", "#ab47bc", "#29b6f6", "#ff7043", "#9ccc65", "#ec407a", "#26c6da", "#d4e157"],
  },
  symbols: { buy: "triangle-up", sell: "triangle-down", hold: "circle" },
  templates: {
    signal: {
      type: "scatter", mode: "markers", xaxis: "x", yaxis: "y", x: [], y: [], customdata: [],
      marker: { size: [], opacity: [], symbol: "circle", line: { width: 1, color: "#0b0f14" } },
      hovertemplate: "%{customdata[0]} %{fullData.name}<br>%{y}<br>confidence %{customdata[1]:.2f}<extra></extra>",
    },
    equity: {
      type: "scatter", mode: "lines", xaxis: "x", yaxis: "y2", x: [], y: [], connectgaps: false,
      line: { width: 2 }, hovertemplate: "%{fullData.name}<br>%{y:,.2f}<extra></extra>",
    },
  },
});

/** Marker size and opacity for a confidence in 0..1, linear in the live.confidence ranges. */
export function confidenceStyle(confidence, live = DEFAULT_LIVE) {
  const c = Math.min(1, Math.max(0, Number(confidence) || 0));
  const [s0, s1] = live.confidence?.size ?? DEFAULT_LIVE.confidence.size;
  const [o0, o1] = live.confidence?.opacity ?? DEFAULT_LIVE.confidence.opacity;
  return { size: s0 + (s1 - s0) * c, opacity: o0 + (o1 - o0) * c };
}

/** A colour per strategy, stable for a given name. */
export function strategyColor(strategy, live = DEFAULT_LIVE) {
  const palette = live.colors?.strategies ?? DEFAULT_LIVE.colors.strategies;
  if (!Array.isArray(palette)) return palette?.[strategy] ?? "#ffca28";
  let h = 0;
  for (const ch of String(strategy)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return palette[h % palette.length];
}

/** A signal trace for one (strategy, type), from live.templates (signal:<type>, else signal). */
export function signalTrace(strategy, type, live = DEFAULT_LIVE) {
  const template = live.templates?.[`signal:${type}`] ?? live.templates?.signal ?? DEFAULT_LIVE.templates.signal;
  const trace = structuredClone(template);
  trace.name = `${strategy} ${type}`;
  trace.legendgroup = strategy;
  trace.marker = trace.marker ?? {};
  trace.marker.symbol = live.symbols?.[type] ?? DEFAULT_LIVE.symbols[type] ?? trace.marker.symbol;
  trace.marker.color = strategyColor(strategy, live);
  return trace;
}

/** An equity trace for one bot. */
export function equityTrace(bot, live = DEFAULT_LIVE) {
  const trace = structuredClone(live.templates?.equity ?? DEFAULT_LIVE.templates.equity);
  trace.name = `equity ${bot}`;
  trace.legendgroup = `equity:${bot}`;
  trace.line = { ...(trace.line ?? {}), color: strategyColor(bot, live) };
  return trace;
}

function columns(block, names) {
  const n = block?.ts?.length ?? 0;
  const rows = [];
  for (let i = 0; i < n; i++) rows.push(Object.fromEntries(names.map((k) => [k, block[k]?.[i] ?? null])));
  return rows;
}

/** Rows of history.data: {candles, signals, trades} as arrays of objects. */
export function historyRows(data) {
  return {
    candles: columns(data?.candle, ["ts", "open", "high", "low", "close", "volume"]),
    signals: columns(data?.signal, ["seq", "ts", "bot", "strategy", "type", "price", "confidence"]),
    trades: columns(data?.trade, ["seq", "ts", "bot", "strategy", "side", "action", "price", "qty", "pnl", "position"]),
    bots: columns(data?.bot, ["seq", "ts", "bot", "strategy", "status", "equity"]),
  };
}

/** Entry→exit line segments from trades (pairs by position id); pnl decides win or loss. */
export function tradeSegments(trades) {
  const open = new Map();
  const segments = [];
  for (const t of trades) {
    if (t.action === "entry") open.set(t.position, t);
    else if (t.action === "exit" && open.has(t.position)) {
      const entry = open.get(t.position);
      open.delete(t.position);
      segments.push({ entry, exit: t, win: tradeWon(entry, t) });
    }
  }
  return { segments, open };
}

export function tradeWon(entry, exit) {
  if (exit.pnl != null) return exit.pnl > 0;
  const direction = entry?.side === "sell" ? -1 : 1;
  return entry ? (exit.price - entry.price) * direction > 0 : false;
}

/** The figure payload (server contract) built from a history frame's data. */
export function buildFigure(symbol, data, { live = DEFAULT_LIVE, title = null } = {}) {
  const { candles, signals, trades, bots } = historyRows(data);
  const traces = [];
  const traceMap = {};
  const add = (key, trace) => {
    traceMap[key] = traces.length;
    traces.push(trace);
  };
  add("candle", {
    type: "candlestick", name: symbol, xaxis: "x", yaxis: "y", showlegend: false,
    x: candles.map((c) => c.ts), open: candles.map((c) => c.open), high: candles.map((c) => c.high),
    low: candles.map((c) => c.low), close: candles.map((c) => c.close),
    increasing: { line: { color: DARK.up, width: 1 }, fillcolor: DARK.up },
    decreasing: { line: { color: DARK.down, width: 1 }, fillcolor: DARK.down },
  });
  const groups = new Map();
  for (const s of signals) {
    const key = `signal:${s.strategy}:${s.type}`;
    if (!groups.has(key)) groups.set(key, signalTrace(s.strategy, s.type, live));
    const trace = groups.get(key);
    const style = confidenceStyle(s.confidence, live);
    trace.x.push(s.ts);
    trace.y.push(s.price);
    trace.customdata.push([s.bot, s.confidence]);
    trace.marker.size.push(style.size);
    trace.marker.opacity.push(style.opacity);
  }
  for (const [key, trace] of [...groups].sort(([a], [b]) => a.localeCompare(b))) add(key, trace);
  const marker = (action) => ({
    type: "scatter", mode: "markers", name: action === "entry" ? "entries" : "exits", xaxis: "x", yaxis: "y",
    x: [], y: [], customdata: [],
    marker: action === "entry"
      ? { symbol: "circle-open", size: 11, color: live.colors?.entry ?? DEFAULT_LIVE.colors.entry, line: { width: 2 } }
      : { symbol: "x", size: 10, color: [] },
    hovertemplate: `%{customdata[0]} ${action}<br>%{y}<br>qty %{customdata[1]} pnl %{customdata[2]}<extra></extra>`,
  });
  const entries = marker("entry");
  const exits = marker("exit");
  const colors = live.colors ?? DEFAULT_LIVE.colors;
  for (const t of trades) {
    const target = t.action === "entry" ? entries : exits;
    target.x.push(t.ts);
    target.y.push(t.price);
    target.customdata.push([t.bot, t.qty, t.pnl, t.position]);
    if (t.action === "exit") target.marker.color.push(t.pnl != null && t.pnl > 0 ? colors.win : colors.loss);
  }
  add("trade:entry", entries);
  add("trade:exit", exits);
  const line = (win) => ({
    type: "scatter", mode: "lines", name: win ? "winning trades" : "losing trades", xaxis: "x", yaxis: "y",
    x: [], y: [], connectgaps: false, hoverinfo: "skip",
    line: { color: win ? colors.win : colors.loss, width: 2, dash: win ? "solid" : "dot" },
  });
  const wins = line(true);
  const losses = line(false);
  for (const { entry, exit, win } of tradeSegments(trades).segments) {
    const target = win ? wins : losses;
    target.x.push(entry.ts, exit.ts, null);
    target.y.push(entry.price, exit.price, null);
  }
  add("trade_line:win", wins);
  add("trade_line:loss", losses);
  const equity = new Map();
  for (const b of bots) {
    if (b.equity == null) continue;
    if (!equity.has(b.bot)) equity.set(b.bot, equityTrace(b.bot, live));
    const trace = equity.get(b.bot);
    if (trace.x.length && b.ts - trace.x.at(-1) > 600_000) {
      trace.x.push((trace.x.at(-1) + b.ts) / 2); // a pause of the bot is drawn as a gap
      trace.y.push(null);
    }
    trace.x.push(b.ts);
    trace.y.push(b.equity);
  }
  for (const [bot, trace] of [...equity].sort(([a], [b]) => a.localeCompare(b))) add(`equity:${bot}`, trace);
  const axis = { gridcolor: DARK.grid, zerolinecolor: DARK.grid, color: DARK.text };
  const layout = {
    uirevision: symbol,
    paper_bgcolor: DARK.paper, plot_bgcolor: DARK.plot,
    font: { color: DARK.text, size: 14 },
    margin: { l: 60, r: 12, t: 8, b: 40 },
    showlegend: true,
    legend: { orientation: "h", x: 0, y: 1, yanchor: "top", bgcolor: "rgba(11,15,20,0.6)", font: { size: 11 } },
    xaxis: { ...axis, type: "date", rangeslider: { visible: false }, anchor: "y2" },
    yaxis: { ...axis, domain: [0.26, 1], side: "left" },
    yaxis2: { ...axis, domain: [0, 0.2], title: { text: "equity", font: { size: 11 } } },
    hovermode: "closest",
  };
  if (title) layout.title = { text: title };
  return { figure: { data: traces, layout }, trace_map: traceMap, live: structuredClone(live) };
}
