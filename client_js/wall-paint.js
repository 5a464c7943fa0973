/**
 * wall-paint.js — the live layer's painting (wall-live.js): candles, markers and lines on a 2D
 * canvas context in the traces' own Plotly styles, positioned by a `PlotView`, so a point the
 * layer paints looks like the one Plotly draws at the next fold. Each `draw*` paints points
 * `from`..`n` of a trace and flags `layer.outside` when one lies beyond the axes.
 */

export const finite = (v) => v != null && Number.isFinite(v);
export const visible = (trace) => trace && trace.visible !== false && trace.visible !== "legendonly";
const pick = (v, i, fallback) => (Array.isArray(v) ? (v[i] ?? fallback) : (v ?? fallback));

export const isCandle = (trace) => trace?.type === "candlestick" || trace?.type === "ohlc";
export const xId = (trace) => trace.xaxis ?? "x";
export const yId = (trace) => trace.yaxis ?? "y";

export function withClip(ctx, view, trace, paint) {
  ctx.save();
  ctx.beginPath();
  ctx.rect(...view.clip(xId(trace), yId(trace)));
  ctx.clip();
  ctx.globalAlpha = trace.opacity ?? 1;
  paint();
  ctx.restore();
}

function candleWidth(trace, n, view) {
  // Plotly's candle body is 70 % of the smallest step; the last steps stand for it here.
  let step = Infinity;
  for (let i = Math.max(1, n - 20); i < n; i++) {
    const d = trace.x[i] - trace.x[i - 1];
    if (d > 0 && d < step) step = d;
  }
  if (!Number.isFinite(step)) return 3;
  return Math.max(1, Math.abs(view.x(step, xId(trace)) - view.x(0, xId(trace))) * 0.7);
}

/** Increasing as Plotly decides it: close above open; a flat candle follows the previous close. */
function increasing(trace, i) {
  const o = trace.open[i];
  const c = trace.close[i];
  if (c !== o) return c > o;
  const prev = i > 0 ? trace.close[i - 1] : null;
  return prev == null || c >= prev;
}

export function coverCandle(ctx, trace, drawn, view) {
  const xi = view.x(drawn.x, xId(trace));
  const w = candleWidth(trace, trace.x.length, view) + 3;
  const top = view.y(drawn.high, yId(trace)) - 2;
  const bottom = view.y(drawn.low, yId(trace)) + 2;
  ctx.fillStyle = view.background;
  ctx.fillRect(xi - w / 2, top, w, bottom - top);
}

export function drawCandles(ctx, trace, from, n, view, layer) {
  const w = candleWidth(trace, n, view);
  const xid = xId(trace);
  const yid = yId(trace);
  let painted = 0;
  for (let i = from; i < n; i++) {
    const [x, o, h, l, c] = [trace.x[i], trace.open[i], trace.high[i], trace.low[i], trace.close[i]];
    if (![x, o, h, l, c].every(finite)) continue;
    if (!view.inside(x, xid) || !view.inside(h, yid) || !view.inside(l, yid)) layer.outside = true;
    const side = increasing(trace, i) ? trace.increasing : trace.decreasing;
    const color = side?.line?.color ?? "#888";
    const px = view.x(x, xid);
    const [yo, yc] = [view.y(o, yid), view.y(c, yid)];
    ctx.fillStyle = color;
    ctx.fillRect(px - 0.5, view.y(h, yid), 1, Math.max(1, view.y(l, yid) - view.y(h, yid)));
    ctx.fillStyle = side?.fillcolor ?? color;
    ctx.fillRect(px - w / 2, Math.min(yo, yc), w, Math.max(1, Math.abs(yc - yo)));
    painted += 1;
  }
  return painted;
}

export function drawLine(ctx, trace, from, n, view, layer) {
  const xid = xId(trace);
  const yid = yId(trace);
  ctx.strokeStyle = trace.line?.color ?? "#ccc";
  ctx.lineWidth = trace.line?.width ?? 2;
  ctx.lineJoin = "round";
  ctx.beginPath();
  let open = false;
  let painted = 0;
  for (let i = from; i < n; i++) {
    const x = trace.x[i];
    const y = trace.y?.[i];
    if (!finite(x) || !finite(y)) {
      open = false;
      continue;
    }
    // A line may start left of the live strip (an exit's line from its entry): the part in the
    // strip shows now, the rest at the next fold. Only a point off the axes asks for a fold.
    if (view.beyond(x, xid) || !view.inside(y, yid)) layer.outside = true;
    const [px, py] = [view.x(x, xid), view.y(y, yid)];
    if (open) ctx.lineTo(px, py);
    else ctx.moveTo(px, py);
    open = true;
    painted += 1;
  }
  ctx.stroke();
  return painted;
}

/** Plotly's marker paths (src/components/drawing/symbol_defs.js) for the symbols the wall uses. */
function markerPath(ctx, symbol, px, py, r) {
  switch (symbol) {
    case "triangle-up": {
      const rt = (r * 2) / Math.sqrt(3);
      ctx.moveTo(px - rt, py + r / 2);
      ctx.lineTo(px + rt, py + r / 2);
      ctx.lineTo(px, py - r);
      ctx.closePath();
      return;
    }
    case "triangle-down": {
      const rt = (r * 2) / Math.sqrt(3);
      ctx.moveTo(px - rt, py - r / 2);
      ctx.lineTo(px + rt, py - r / 2);
      ctx.lineTo(px, py + r);
      ctx.closePath();
      return;
    }
    case "diamond": {
      const rd = r * 1.3;
      ctx.moveTo(px + rd, py);
      ctx.lineTo(px, py + rd);
      ctx.lineTo(px - rd, py);
      ctx.lineTo(px, py - rd);
      ctx.closePath();
      return;
    }
    default:
      ctx.moveTo(px + r, py);
      ctx.arc(px, py, r, 0, 2 * Math.PI);
  }
}

export function drawMarkers(ctx, trace, from, n, view, layer) {
  const xid = xId(trace);
  const yid = yId(trace);
  const m = trace.marker ?? {};
  const lineWidth = m.line?.width ?? 0;
  const base = trace.opacity ?? 1;
  let painted = 0;
  for (let i = from; i < n; i++) {
    const x = trace.x[i];
    const y = trace.y?.[i];
    if (!finite(x) || !finite(y)) continue;
    if (!view.inside(x, xid) || !view.inside(y, yid)) layer.outside = true;
    const [px, py] = [view.x(x, xid), view.y(y, yid)];
    const r = Number(pick(m.size, i, 6)) / 2;
    ctx.globalAlpha = base * Number(pick(m.opacity, i, 1));
    const symbol = pick(m.symbol, i, "circle");
    const color = pick(m.color, i, "#ccc");
    ctx.beginPath();
    if (symbol === "x") {
      // Plotly's x is a filled cross of two bars: as strokes of the same width here.
      const arm = r * 0.8;
      ctx.moveTo(px - arm, py - arm);
      ctx.lineTo(px + arm, py + arm);
      ctx.moveTo(px - arm, py + arm);
      ctx.lineTo(px + arm, py - arm);
      ctx.lineWidth = Math.max(1, r * 0.55);
      ctx.strokeStyle = color;
      ctx.stroke();
      painted += 1;
      continue;
    }
    markerPath(ctx, symbol, px, py, r);
    ctx.fillStyle = color;
    ctx.fill();
    if (lineWidth > 0) {
      ctx.lineWidth = lineWidth;
      ctx.strokeStyle = pick(m.line?.color, i, "#000");
      ctx.stroke();
    }
    painted += 1;
  }
  return painted;
}
