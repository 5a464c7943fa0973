/**
 * wall-fit.js — auto-fit: how many columns and rows a wall's grid has, from the screen's size and
 * the tile count. Pure; client_js/tests/wall-fit.test.js pins the grids for 1–12 tiles at 1080p and 4K.
 *
 * Why not the squarest grid: a time series reads left to right, so a tall narrow tile wastes its
 * height and crushes its time axis. Each candidate grid is scored by how close its tiles come to
 * a landscape aspect (TARGET_ASPECT, about 16:10), portrait tiles paying double, and by how few
 * cells it leaves empty. Two tiles on a 16:9 screen are therefore stacked (two wide charts), not
 * side by side (two portrait ones).
 */

/** The tile aspect (width / height) a time-series chart reads best at. */
export const TARGET_ASPECT = 1.6;

/**
 * The grid for `count` tiles on a `width` × `height` area: `{cols, rows}`.
 * `forcedCols` (the wall's `cols=` parameter) wins when set; `timeSeries` false scores tiles
 * against a square instead (tables, KPIs).
 */
export function fitGrid(count, width, height, { forcedCols = 0, timeSeries = true } = {}) {
  const n = Math.max(0, Math.floor(count));
  if (n <= 1) return { cols: 1, rows: 1 };
  if (forcedCols > 0) {
    const cols = Math.min(forcedCols, n);
    return { cols, rows: Math.ceil(n / cols) };
  }
  const w = width > 0 ? width : 1920;
  const h = height > 0 ? height : 1080;
  const target = timeSeries ? TARGET_ASPECT : 1;
  let best = null;
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    if ((cols - 1) * rows >= n) continue; // a whole column would stay empty
    const aspect = w / cols / (h / rows);
    const off = Math.log(aspect / target);
    // Portrait tiles (below the target) cost twice what over-wide ones do.
    const shape = Math.abs(off) * (off < 0 ? 2 : 1);
    const empty = (cols * rows - n) / (cols * rows);
    const score = shape + empty;
    if (best === null || score < best.score - 1e-9) best = { cols, rows, score };
  }
  return { cols: best.cols, rows: best.rows };
}
