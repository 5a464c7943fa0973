/**
 * wall-marks.js — marker density that follows the pixels, restart marks and type sized to the
 * tile (pure: works on a figure payload before Plotly draws it; docs/client.md "Markers").
 *
 * `markers=` picks what a wall shows: `default` (trades, buy and sell signals; `hold` hidden),
 * `all`, `trades` (no signals), `none` (candles and equity only). Markers are sized to the
 * candle width (a 6 h window on a quarter of a 1080p screen has 2-px candles: 12-px markers
 * buried them), and past a per-tile budget (`signal_budget`, else one signal per 5 px of plot)
 * signals thin out — every k-th kept, the others drawn at size 0 so the data stays the
 * server's — while trades always stay.
 */

const isSignal = (key) => key.startsWith("signal:");
const isTrade = (key) => key === "trade:entry" || key === "trade:exit" || key.startsWith("trade_line:");

function hidden(key, mode) {
  if (mode === "all") return false;
  if (isSignal(key)) return mode !== "default" || key.endsWith(":hold");
  if (isTrade(key)) return mode === "none";
  return false;
}

const scaled = (size, f) => (Array.isArray(size) ? size.map((v) => v * f) : size == null ? size : size * f);

/**
 * Apply the marker rules to `payload` in place: visibility by `mode`, sizes by the candle width
 * over `plotWidth` px (and up to 3× on a tile wider than 900 px), signals thinned to `budget` (0: plotWidth / 5). Returns {factor, stride}.
 */
export function fitMarkers(payload, { mode = "default", plotWidth = 800, budget = 0 } = {}) {
  const { data } = payload.figure;
  const map = Object.entries(payload.trace_map ?? {});
  for (const [key, index] of map) if (data[index] && hidden(key, mode)) data[index].visible = false;
  const templates = payload.live?.templates ?? {};
  for (const [type, template] of Object.entries(templates.signal ?? {}))
    if (hidden(`signal:_:${type}`, mode)) template.visible = false;
  for (const key of ["trade:entry", "trade:exit", "trade_line:win", "trade_line:loss"])
    if (templates[key] && hidden(key, mode)) templates[key].visible = false;

  const candles = data[payload.trace_map?.candle]?.x?.length ?? 0;
  const candlePx = candles ? (plotWidth / candles) * 0.7 : 12;
  // On a big tile (a 4K screen at device scale 1) markers grow with it, as the type does.
  const grow = Math.min(3, Math.max(1, plotWidth / 900));
  const factor = Math.min(grow, Math.max(0.45, (candlePx * 1.8) / 10));
  if (factor !== 1) {
    for (const [key, index] of map) {
      const marker = data[index]?.marker;
      if (marker && (isSignal(key) || key === "trade:entry" || key === "trade:exit"))
        marker.size = scaled(marker.size, factor);
    }
    const confidence = payload.live?.confidence;
    if (confidence?.size) confidence.size = confidence.size.map((v) => v * factor);
    for (const key of ["trade:entry", "trade:exit"])
      if (templates[key]?.marker) templates[key].marker.size = scaled(templates[key].marker.size, factor);
  }

  const limit = budget > 0 ? budget : Math.max(20, Math.round(plotWidth / 5));
  const shown = map.filter(([key, index]) => isSignal(key) && data[index]?.visible !== false);
  const total = shown.reduce((n, [, index]) => n + (data[index].x?.length ?? 0), 0);
  const stride = total > limit ? Math.ceil(total / limit) : 1;
  if (stride > 1) {
    let k = 0;
    for (const [, index] of shown) {
      const trace = data[index];
      const n = trace.x?.length ?? 0;
      const sizes = Array.isArray(trace.marker?.size)
        ? trace.marker.size
        : Array(n).fill(trace.marker?.size ?? 6);
      trace.marker = { ...(trace.marker ?? {}), size: sizes.map((v, i) => ((k + i) % stride === 0 ? v : 0)) };
      k += n;
    }
  }
  return { factor, stride };
}

/** A labelled vertical line at `ts` (ms): a restart (new epoch) is not a market move. */
export function markRestart(layout, ts, label, { color = "#9aa4b2", size = 12 } = {}) {
  layout.shapes = [
    ...(layout.shapes ?? []),
    {
      type: "line",
      xref: "x",
      yref: "paper",
      x0: ts,
      x1: ts,
      y0: 0,
      y1: 1,
      line: { color, width: 1, dash: "dot" },
    },
  ];
  layout.annotations = [
    ...(layout.annotations ?? []),
    {
      x: ts,
      y: 1,
      xref: "x",
      yref: "paper",
      text: label,
      showarrow: false,
      xanchor: "left",
      yanchor: "top",
      font: { color, size },
    },
  ];
  return layout;
}

/**
 * A tile's figure fonts from its size (px) and `scale`, x tick labels only on the wall's bottom
 * row (the tiles above share the time axis; the date is in the top bar). Returns the font size.
 */
export function styleTile(layout, { width, height, scale = 1, bottom = true, minutes = 360 }) {
  const size = Math.round(Math.max(11, Math.min(width * 0.022, height * 0.05)) * scale);
  layout.font = { ...(layout.font ?? {}), size };
  // One line of tick labels: the time of day (the date is in the top bar), with the day past a day.
  const tickformat = minutes > 1440 ? "%b %d %H:%M" : "%H:%M";
  for (const key of Object.keys(layout)) {
    if (!/^[xy]axis\d*$/.test(key) || !layout[key]) continue;
    // The theme gives every axis its own tick font: it must follow the tile too.
    layout[key].tickfont = { ...(layout[key].tickfont ?? {}), size };
    if (key[0] === "x") Object.assign(layout[key], { showticklabels: bottom, tickformat });
  }
  layout.margin = { ...(layout.margin ?? {}), b: bottom ? Math.round(size * 2.2) : 6 };
  return size;
}

const LABEL = "equity-label";

/**
 * Name each equity line at its right end, in its colour, with the bot's P&L today when known
 * (`dayPnl`: Map bot → value): "momo-1 +12.40". Replaces the previous labels in `layout`.
 */
export function labelEquity(layout, data, keyOf, { dayPnl = new Map(), size = 12, format = String } = {}) {
  const labels = [];
  data.forEach((trace, index) => {
    const key = keyOf[index] ?? "";
    if (!key.startsWith("equity:") || trace?.visible === false) return;
    const x = trace.x ?? [];
    let i = x.length - 1;
    while (i >= 0 && (x[i] == null || trace.y?.[i] == null)) i -= 1;
    if (i < 0) return;
    const bot = key.slice(7);
    const pnl = dayPnl.get(bot);
    labels.push({
      name: LABEL,
      x: x[i],
      y: trace.y[i],
      xref: "x",
      yref: trace.yaxis ?? "y2",
      text: pnl == null ? bot : `${bot} ${format(pnl)}`,
      showarrow: false,
      xanchor: "right",
      yanchor: "bottom",
      font: { color: trace.line?.color ?? "#ccc", size },
    });
  });
  layout.annotations = [...(layout.annotations ?? []).filter((a) => a?.name !== LABEL), ...labels];
  return labels.length;
}
