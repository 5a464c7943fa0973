/**
 * wall-palette.js — the wall's colours (pure: no DOM, no Plotly), one palette for the top bar,
 * the tiles and the charts (docs/client.md "Colour").
 *
 * Rules: green/red (or, with `palette=cb`, Okabe–Ito sky blue/orange) mean P&L and nothing
 * else — exits, entry→exit lines, the P&L KPIs. Candles are a neutral pair told apart by fill
 * (up hollow, down filled); buy/sell signals by shape (▲/▼) in a neutral pair of their own;
 * entries take their side's colour. Each bot has one colour on the whole wall (a hash of its
 * name, so every wall on a floor agrees). `palette=cb` is checked by a simulated deuteranopia
 * (Machado, Oliveira & Fernandes 2009, severity 1): its P&L pair stays ≥ MIN_DELTA_E apart
 * (CIE76) and every colour that carries meaning keeps ≥ MIN_CONTRAST against the background
 * (client_js/tests/wall-palette.test.js, and the browser test on the drawn page).
 */

const NEUTRAL = Object.freeze({
  background: "#0b0f14",
  panel: "#141a22",
  text: "#e6e9ef",
  muted: "#9aa4b2",
  grid: "#253040",
  up: "#c9d1d9",
  down: "#6b7f9e",
  hold: "#8a8f98",
});

export const PALETTES = Object.freeze({
  default: Object.freeze({
    ...NEUTRAL,
    buy: "#4fc3f7",
    sell: "#e1a6f0",
    win: "#00d25b",
    loss: "#ff3b5c",
    flat: "#9aa4b2",
    live: "#00d25b",
    stale: "#ffb300",
    dead: "#ff3b5c",
    equity: Object.freeze([
      "#4fc3f7",
      "#ffd54f",
      "#e1a6f0",
      "#80cbc4",
      "#ffab91",
      "#b0bec5",
      "#fff59d",
      "#90caf9",
    ]),
  }),
  // Okabe–Ito: sky blue / orange for P&L, yellow / reddish purple for the sides.
  cb: Object.freeze({
    ...NEUTRAL,
    buy: "#f0e442",
    sell: "#cc79a7",
    win: "#56b4e9",
    loss: "#e69f00",
    flat: "#9aa4b2",
    live: "#56b4e9",
    stale: "#f0e442",
    dead: "#d55e00",
    // No sky blue or orange: those mean P&L.
    equity: Object.freeze([
      "#ffffff",
      "#009e73",
      "#cc79a7",
      "#9aa4b2",
      "#f0e442",
      "#c9b8ff",
      "#a6761d",
      "#7fd4c1",
    ]),
  }),
});

/** Contrast and distance the colour-blind palette must keep (stated in docs/client.md). */
export const MIN_CONTRAST = 4.5;
export const MIN_DELTA_E = 40;

export function palette(name) {
  return PALETTES[name] ?? PALETTES.default;
}

/** [r, g, b] in 0..1 from "#rrggbb". */
export function rgb(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(String(hex).trim());
  if (!m) throw new TypeError(`not a #rrggbb colour: ${hex}`);
  const n = Number.parseInt(m[1], 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255].map((v) => v / 255);
}

const toLinear = (c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
const fromLinear = (c) => {
  const v = Math.min(1, Math.max(0, c));
  return v <= 0.0031308 ? v * 12.92 : 1.055 * v ** (1 / 2.4) - 0.055;
};

/** WCAG relative luminance of a colour. */
export function luminance(hex) {
  const [r, g, b] = rgb(hex).map(toLinear);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** WCAG contrast ratio (1..21). */
export function contrast(a, b) {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

const DEUTERANOPIA = [
  [0.367322, 0.860646, -0.227968],
  [0.280085, 0.672501, 0.047413],
  [-0.01182, 0.04294, 0.968881],
];

/** How a deuteranope sees `hex` (Machado et al. 2009, severity 1, in linear RGB), as "#rrggbb". */
export function deuteranopia(hex) {
  const lin = rgb(hex).map(toLinear);
  const out = DEUTERANOPIA.map((row) => row.reduce((sum, k, i) => sum + k * lin[i], 0));
  return `#${out
    .map((c) =>
      Math.round(fromLinear(c) * 255)
        .toString(16)
        .padStart(2, "0"),
    )
    .join("")}`;
}

/** CIE L*a*b* (D65) of a colour. */
export function lab(hex) {
  const [r, g, b] = rgb(hex).map(toLinear);
  const xyz = [
    (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047,
    0.2126 * r + 0.7152 * g + 0.0722 * b,
    (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883,
  ];
  const f = (t) => (t > 216 / 24389 ? Math.cbrt(t) : (24389 / 27 / 116) * t + 16 / 116);
  const [fx, fy, fz] = xyz.map(f);
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

/** CIE76 colour difference. */
export function deltaE(a, b) {
  const [p, q] = [lab(a), lab(b)];
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}

/** The checks of a palette as seen by a deuteranope: {pnlDeltaE, sideDeltaE, minContrast, worst}. */
export function deuteranopiaReport(pal) {
  const seen = (key) => deuteranopia(pal[key]);
  const meaning = ["win", "loss", "buy", "sell", "up", "down", "stale", "dead", "text"];
  let minContrast = Infinity;
  let worst = null;
  for (const key of meaning) {
    const c = contrast(seen(key), deuteranopia(pal.background));
    if (c < minContrast) [minContrast, worst] = [c, key];
  }
  return {
    pnlDeltaE: deltaE(seen("win"), seen("loss")),
    sideDeltaE: deltaE(seen("buy"), seen("sell")),
    stateDeltaE: deltaE(seen("stale"), seen("dead")),
    minContrast,
    worst,
  };
}

/** FNV-1a of a string: the same bot gets the same colour on every tile and every wall. */
function hash(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function botColor(bot, pal) {
  return pal.equity[hash(String(bot)) % pal.equity.length];
}

/** A P&L value's colour: win above 0, loss below, flat at 0 or unknown. */
export function pnlTone(value, pal) {
  if (value == null || !Number.isFinite(value) || value === 0) return pal.flat;
  return value > 0 ? pal.win : pal.loss;
}

function candleStyle(trace, pal) {
  trace.increasing = { line: { color: pal.up, width: 1 }, fillcolor: pal.background };
  trace.decreasing = { line: { color: pal.down, width: 1 }, fillcolor: pal.down };
}

/** Recolour one trace by its trace_map key (`bot` for equity lines, whose key names it). */
function recolor(key, trace, pal) {
  if (!trace || !key) return;
  trace.marker ??= {};
  const marker = trace.marker;
  if (key === "candle") candleStyle(trace, pal);
  else if (key === "price") trace.line = { ...(trace.line ?? {}), color: pal.text };
  else if (key.startsWith("signal:")) marker.color = pal[key.split(":")[2]] ?? pal.hold;
  else if (key === "trade:entry") {
    const sides = (trace.customdata ?? []).map((c) => pal[c?.[2]] ?? pal.flat);
    marker.color = sides.length ? sides : pal.flat;
  } else if (key === "trade:exit") {
    const tones = (trace.customdata ?? []).map((c) => pnlTone(c?.[5], pal));
    marker.color = tones.length ? tones : pal.flat;
    marker.line = { ...(marker.line ?? {}), color: pal.background };
  } else if (key.startsWith("trade_line:")) {
    // Thin and translucent: over a 6 h window, hundreds of entry→exit lines must not hide the price.
    trace.line = { ...(trace.line ?? {}), color: key.endsWith("win") ? pal.win : pal.loss, width: 1.5 };
    trace.opacity = 0.55;
  } else if (key.startsWith("equity:")) {
    trace.line = { ...(trace.line ?? {}), color: botColor(key.slice(7), pal), shape: "hv" };
  }
}

/**
 * Recolour a figure payload in place: traces (by trace_map), the live templates and colours
 * the tile appends with, the layout's background, grid and text.
 */
export function applyPalette(payload, pal) {
  const { data, layout } = payload.figure;
  for (const [key, index] of Object.entries(payload.trace_map ?? {})) recolor(key, data[index], pal);
  payload.live ??= {};
  const live = payload.live;
  live.colors = {
    ...(live.colors ?? {}),
    signal: { buy: pal.buy, sell: pal.sell, hold: pal.hold },
    side: { buy: pal.buy, sell: pal.sell },
    pnl: { win: pal.win, loss: pal.loss, flat: pal.flat },
    equity: [...pal.equity],
  };
  const templates = live.templates ?? {};
  for (const type of ["buy", "sell", "hold"])
    if (templates.signal?.[type]) recolor(`signal:_:${type}`, templates.signal[type], pal);
  if (templates.candle) candleStyle(templates.candle, pal);
  for (const key of ["trade_line:win", "trade_line:loss"]) recolor(key, templates[key], pal);
  if (templates.equity) templates.equity.line = { ...(templates.equity.line ?? {}), shape: "hv" };
  layout.paper_bgcolor = pal.background;
  layout.plot_bgcolor = pal.background;
  layout.font = { ...(layout.font ?? {}), color: pal.text };
  for (const key of Object.keys(layout))
    if (/^[xy]axis\d*$/.test(key) && layout[key]) {
      layout[key].gridcolor = pal.grid;
      layout[key].linecolor = pal.grid;
      layout[key].tickfont = { ...(layout[key].tickfont ?? {}), color: pal.muted };
    }
  return payload;
}

/** The palette as CSS custom properties (`--c-win`, …) for the page. */
export function cssVariables(pal) {
  const out = {};
  for (const [key, value] of Object.entries(pal)) if (typeof value === "string") out[`--c-${key}`] = value;
  return out;
}
