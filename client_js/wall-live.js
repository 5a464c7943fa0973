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
 * The painting itself (candles, markers, lines in Plotly's styles) is in wall-paint.js.
 */

import {
  coverCandle,
  drawCandles,
  drawLine,
  drawMarkers,
  finite,
  isCandle,
  visible,
  withClip,
  xId,
  yId,
} from "./wall-paint.js";

/** Share of the time span left free on the right of the x axis, within [minMs, maxMs]. */
export const HEADROOM = Object.freeze({ share: 0.08, minMs: 60_000, maxMs: 30 * 60_000 });
/** Share of the value span added above and below each y axis: room for new highs and lows. */
const Y_PAD = 0.1;

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
 * Where live points can land until the next fold: from just left of the last point Plotly drew
 * to the right end of the plot area (the headroom). The canvases cover only this strip: the
 * browser composites a changed canvas whole, and on a wall without a GPU that cost follows its
 * area. A zoomed tile's live points can land anywhere: the whole plot width.
 */
export function liveStrip(view, data, zoomed) {
  const xa = view.axes.x;
  if (!xa) return null;
  const right = xa.offset + xa.length;
  const last = dataExtents(data).xaxis?.[1];
  let left = xa.offset;
  if (!zoomed && last != null) {
    // Room for the last candle's body and its cover, and for a marker's radius.
    let margin = Math.max(24, 0.02 * xa.length);
    for (const trace of data) {
      const n = trace?.x?.length ?? 0;
      if (isCandle(trace) && n > 1)
        margin = Math.max(margin, 0.6 * (view.x(trace.x[n - 1]) - view.x(trace.x[n - 2])) + 4);
    }
    left = Math.min(Math.max(xa.offset, view.x(last) - margin), right - 24);
  }
  left = Math.floor(Math.max(0, left));
  return { left, width: Math.ceil(right - left) + 2 };
}

/** The geometry of a drawn plot for the live layer (Plotly's axes after its last draw). */
export function plotView(gd) {
  const full = gd._fullLayout;
  if (!full) return null;
  const axes = {};
  for (const key of Object.keys(full)) {
    const m = /^([xy])axis(\d*)$/.exec(key);
    const ax = full[key];
    if (!m || !Array.isArray(ax?.range) || !(ax._length > 0) || typeof ax.r2l !== "function") continue;
    axes[m[1] + m[2]] = {
      offset: ax._offset,
      length: ax._length,
      lo: ax.r2l(ax.range[0]),
      hi: ax.r2l(ax.range[1]),
    };
  }
  return new PlotView(axes, { background: full.plot_bgcolor ?? "#000" });
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
      if (n && isCandle(trace))
        this.lastDrawn.set(index, { x: trace.x[n - 1], low: trace.low[n - 1], high: trace.high[n - 1] });
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
      if ((!undrawn && !change) || !visible(trace) || !view.axes[yId(trace)] || !view.axes[xId(trace)])
        return;
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
          if (start < n - 1)
            withClip(
              settled,
              view,
              trace,
              () => (count += drawCandles(settled, trace, start, n - 1, view, this)),
            );
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
