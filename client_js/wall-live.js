/**
 * wall-live.js — the wall's live layer: what arrived since Plotly last drew a tile, drawn on a
 * canvas over the plot (no DOM nodes, no Plotly redraw), and the axis ranges that leave room
 * for it.
 *
 * Why: every Plotly update of a tile (`extendTraces`, `redraw`) recomputes and redraws the
 * whole tile — thousands of SVG candles and markers, hundreds of ms on a wall PC without a GPU —
 * so a busy wall spent all its frames redrawing. Now `gd.data` still takes every live point at
 * once (`extendInPlace`, so the data equals the server's history at all times), but only the
 * new points are painted, by this module, until the tile is *folded*: one Plotly redraw of the
 * whole tile at most every `fold_s`, or sooner when a point falls outside the axes
 * (docs/client.md). The x axis leaves room on the right (`headroom`) so live time has somewhere
 * to go between folds.
 *
 * Pure except for a CanvasRenderingContext2D passed in: tests drive it with a recording one.
 */

/** Share of the time span left free on the right of the x axis, within [minMs, maxMs]. */
export const HEADROOM = Object.freeze({ share: 0.08, minMs: 60_000, maxMs: 30 * 60_000 });
/** Share of the value span added above and below each y axis: room for new highs and lows. */
const Y_PAD = 0.1;

const finite = (v) => v != null && Number.isFinite(v);
const visible = (trace) => trace && trace.visible !== false && trace.visible !== "legendonly";
const pick = (v, i, fallback) => (Array.isArray(v) ? (v[i] ?? fallback) : (v ?? fallback));

/**
 * The extent of the data on each axis, by layout key: `xaxis` over every point, each y axis
 * (`yaxis`, `yaxis2`, …) over every value on it (candle lows and highs, marker and line ys).
 * Absent when an axis has no finite value.
 */
export function dataExtents(data) {
  let xlo = Infinity;
  let xhi = -Infinity;
  const ys = new Map();
  for (const trace of data) {
    if (!visible(trace) || !Array.isArray(trace.x)) continue;
    const axis = `yaxis${String(trace.yaxis ?? "y").slice(1)}`;
    let [lo, hi] = ys.get(axis) ?? [Infinity, -Infinity];
    const candle = trace.type === "candlestick" || trace.type === "ohlc";
    const n = trace.x.length;
    for (let i = 0; i < n; i++) {
      const x = trace.x[i];
      if (!finite(x)) continue;
      if (candle) {
        const low = trace.low?.[i];
        const high = trace.high?.[i];
        if (!finite(low) || !finite(high)) continue;
        if (low < lo) lo = low;
        if (high > hi) hi = high;
      } else {
        const y = trace.y?.[i];
        if (!finite(y)) continue;
        if (y < lo) lo = y;
        if (y > hi) hi = y;
      }
      if (x < xlo) xlo = x;
      if (x > xhi) xhi = x;
    }
    ys.set(axis, [lo, hi]);
  }
  const extents = {};
  if (xlo <= xhi) extents.xaxis = [xlo, xhi];
  for (const [axis, [lo, hi]] of ys) if (lo <= hi) extents[axis] = [lo, hi];
  return extents;
}

/**
 * The ranges a managed tile draws with: x from the first point to the last (or `now`, the
 * later) plus headroom; each y axis around its values, padded. Keys are layout keys.
 */
export function wallRanges(data, { now = Date.now(), headroom = HEADROOM } = {}) {
  const ranges = {};
  for (const [axis, [lo, hi]] of Object.entries(dataExtents(data))) {
    if (axis !== "xaxis") {
      const pad = (hi - lo) * Y_PAD || Math.abs(hi) * 0.01 || 1;
      ranges[axis] = [lo - pad, hi + pad];
      continue;
    }
    const end = Math.max(hi, now);
    const span = Math.max(end - lo, 1);
    const head = Math.min(headroom.maxMs, Math.max(headroom.minMs, span * headroom.share));
    ranges.xaxis = [lo - span * 0.005, end + head];
  }
  return ranges;
}

/** Whether some data lies outside the given ranges ({layoutKey: [lo, hi]}, x in ms). */
export function beyondRanges(data, ranges) {
  for (const [axis, [lo, hi]] of Object.entries(dataExtents(data))) {
    const range = ranges[axis];
    if (range && (lo < Math.min(...range) || hi > Math.max(...range))) return true;
  }
  return false;
}

/**
 * A plot's geometry as this layer needs it: pixel positions of data values. `axes` maps a
 * trace's axis id (`x`, `y`, `y2`) to `{offset, length, lo, hi}` (CSS px, linear data range);
 * `background` paints over a point Plotly drew that has changed since.
 */
export class PlotView {
  constructor(axes, { background = "#000", width = 0, height = 0, left = 0 } = {}) {
    this.axes = axes;
    this.background = background;
    this.width = width;
    this.height = height;
    /** Nothing left of this (px) can be painted: the live canvases cover only the strip to its right. */
    this.left = left;
  }

  x(value, id = "x") {
    const a = this.axes[id];
    return a.offset + ((value - a.lo) / (a.hi - a.lo)) * a.length;
  }

  y(value, id = "y") {
    const a = this.axes[id];
    return a.offset + ((a.hi - value) / (a.hi - a.lo)) * a.length;
  }

  /** Whether a value lies inside axis `id`'s range (and, on an x axis, right of `left`). */
  inside(value, id) {
    const a = this.axes[id];
    if (a == null || value < Math.min(a.lo, a.hi) || value > Math.max(a.lo, a.hi)) return false;
    return id[0] !== "x" || this.x(value, id) >= this.left;
  }

  /** Whether a value lies beyond the right end of x axis `id`. */
  beyond(value, id) {
    const a = this.axes[id];
    return a != null && value > Math.max(a.lo, a.hi);
  }

  /** The plot area of (x, y axis ids): [left, top, width, height]. */
  clip(xid, yid) {
    const xa = this.axes[xid];
    const ya = this.axes[yid];
    return [xa.offset, ya.offset, xa.length, ya.length];
  }
}

/**
 * Per-trace bookkeeping of what Plotly has drawn and what only this layer has, and the painting.
 *
 * Two surfaces: `settled` only ever gets new points (each painted once, so a flush costs what
 * arrived, not what is pending), `tip` is repainted every time and holds what may still change —
 * the last candle of a trace, and a candle Plotly drew that has changed since (covered in the
 * plot's background, then painted anew). Anything else that changes after it was painted (an
 * older candle updated late, a line's last point replaced) makes `settled` repaint from scratch.
 */
export class LiveLayer {
  constructor() {
    /** trace index → how many of its last points Plotly has not drawn */
    this.undrawn = new Map();
    /** trace index → how many of those are on `settled` */
    this.painted = new Map();
    /** trace index → the last candle Plotly drew ({x, low, high}), to cover if it changes */
    this.lastDrawn = new Map();
    /** trace index → {drawn, settled}: a candle Plotly drew that changed since */
    this.changed = new Map();
    /** `settled` must be repainted from scratch at the next draw */
    this.dirty = true;
    /** something is on `tip` (cleared before the next paint) */
    this.tipUsed = true;
    /** a point lay outside the axes: the tile wants folding */
    this.outside = false;
    this.stats = { draws: 0, folds: 0, points: 0, repaints: 0 };
  }

  /** Points only this layer shows. */
  get pending() {
    let n = 0;
    for (const v of this.undrawn.values()) n += v;
    return n + this.changed.size;
  }

  /** Plotly has just drawn every point of `data`: nothing is left for this layer. */
  folded(data) {
    this.undrawn.clear();
    this.painted.clear();
    this.changed.clear();
    this.lastDrawn.clear();
    this.dirty = true;
    this.outside = false;
    this.stats.folds += 1;
    data.forEach((trace, index) => {
      const n = trace?.x?.length ?? 0;
      if (n && isCandle(trace)) this.lastDrawn.set(index, { x: trace.x[n - 1], low: trace.low[n - 1], high: trace.high[n - 1] });
    });
  }

  /** `count` points were appended to trace `index`, which now holds `length`. */
  appended(index, count, length) {
    const undrawn = Math.min(length, (this.undrawn.get(index) ?? 0) + count);
    this.undrawn.set(index, undrawn);
    if ((this.painted.get(index) ?? 0) > undrawn) this.painted.set(index, undrawn);
  }

  /** The point at `x` of `trace` (index `index`) was overwritten in place, e.g. the live candle. */
  replaced(index, x, trace) {
    const n = trace?.x?.length ?? 0;
    const undrawn = this.undrawn.get(index) ?? 0;
    const j = trace.x.lastIndexOf(x);
    if (j < 0) return;
    if (j >= n - undrawn) {
      // Only this layer shows it: the tip repaints the last candle anyway; anything painted for good is redone.
      const onTip = isCandle(trace) && j === n - 1;
      if (!onTip && j < n - undrawn + (this.painted.get(index) ?? 0)) this.dirty = true;
      return;
    }
    const drawn = this.lastDrawn.get(index);
    if (drawn && drawn.x === x && isCandle(trace)) {
      const known = this.changed.get(index);
      if (known?.settled) this.dirty = true;
      this.changed.set(index, { drawn, settled: false });
    }
  }

  /**
   * Paint what Plotly has not drawn: new points onto `settled`, the changing ones onto `tip`
   * (both scaled to CSS px; `view.width`/`view.height` is the area to clear). Candles, markers
   * and lines in the traces' own styles; sets `outside` when a new point lies beyond the axes.
   * Returns the number of points painted.
   */
  draw(settled, tip, data, view) {
    this.stats.draws += 1;
    const full = this.dirty;
    if (full) {
      settled.clearRect(0, 0, view.width, view.height);
      this.painted.clear();
      this.dirty = false;
      this.stats.repaints += 1;
    }
    if (this.tipUsed) tip.clearRect(0, 0, view.width, view.height);
    this.tipUsed = false;
    let count = 0;
    data.forEach((trace, index) => {
      const undrawn = this.undrawn.get(index) ?? 0;
      const change = this.changed.get(index);
      if ((!undrawn && !change) || !visible(trace) || !view.axes[yId(trace)] || !view.axes[xId(trace)]) return;
      const n = trace.x?.length ?? 0;
      const start = n - undrawn + (this.painted.get(index) ?? 0);
      if (isCandle(trace)) {
        if (change) {
          // The changed candle stays on the tip while it is the last one, then goes to settled once.
          const last = undrawn === 0;
          if (last || full || !change.settled) {
            const surface = last ? tip : settled;
            if (last) this.tipUsed = true;
            const j = trace.x.lastIndexOf(change.drawn.x);
            withClip(surface, view, trace, () => {
              coverCandle(surface, trace, change.drawn, view);
              if (j >= 0) count += drawCandles(surface, trace, j, j + 1, view, this);
            });
            if (!last) change.settled = true;
          }
        }
        if (undrawn) {
          if (start < n - 1) withClip(settled, view, trace, () => (count += drawCandles(settled, trace, start, n - 1, view, this)));
          withClip(tip, view, trace, () => (count += drawCandles(tip, trace, n - 1, n, view, this)));
          this.tipUsed = true;
          this.painted.set(index, undrawn - 1);
        }
        return;
      }
      if (start >= n) return;
      const mode = trace.mode ?? "markers";
      withClip(settled, view, trace, () => {
        if (mode.includes("lines")) count += drawLine(settled, trace, Math.max(0, start - 1), n, view, this);
        if (mode.includes("markers")) count += drawMarkers(settled, trace, start, n, view, this);
      });
      this.painted.set(index, undrawn);
    });
    this.stats.points = count;
    return count;
  }
}

const isCandle = (trace) => trace?.type === "candlestick" || trace?.type === "ohlc";
const xId = (trace) => trace.xaxis ?? "x";
const yId = (trace) => trace.yaxis ?? "y";

function withClip(ctx, view, trace, paint) {
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

function coverCandle(ctx, trace, drawn, view) {
  const xi = view.x(drawn.x, xId(trace));
  const w = candleWidth(trace, trace.x.length, view) + 3;
  const top = view.y(drawn.high, yId(trace)) - 2;
  const bottom = view.y(drawn.low, yId(trace)) + 2;
  ctx.fillStyle = view.background;
  ctx.fillRect(xi - w / 2, top, w, bottom - top);
}

function drawCandles(ctx, trace, from, n, view, layer) {
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

function drawLine(ctx, trace, from, n, view, layer) {
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

function drawMarkers(ctx, trace, from, n, view, layer) {
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
