/**
 * wall-quality.js — the signal-quality tile (`?tiles=quality`): a reliability diagram per
 * (bot, strategy) and their live KPIs, from the `perf` stream (docs/protocol.md, "perf";
 * the metrics are defined in docs/analytics.md, "Signal quality").
 *
 * The diagram plots each confidence bucket's hit rate (with its 95 % Wilson interval) at the
 * bucket's mid confidence, against the diagonal of perfect calibration; a bot whose line rises
 * with confidence means something by it. At most MAX_GROUPS groups are drawn (the most signals
 * first) so the tile stays readable from across a room; it redraws at most every REDRAW_MS.
 */

import { el } from "./wall-tile.js";

export const MAX_GROUPS = 6;
const REDRAW_MS = 2000;

/** The groups to show, most signals first (ties by name: a stable order between frames). */
export function chosenRows(rows, max = MAX_GROUPS) {
  return [...rows]
    .sort(
      (a, b) =>
        (b.signals ?? 0) - (a.signals ?? 0) ||
        `${a.bot}/${a.strategy}`.localeCompare(`${b.bot}/${b.strategy}`),
    )
    .slice(0, max);
}

/** Plotly traces of the reliability diagram for `rows` (buckets with no resolved signal are gaps). */
export function reliabilityTraces(rows, colors) {
  const traces = [
    {
      x: [0, 1],
      y: [0, 1],
      mode: "lines",
      line: { dash: "dot", width: 1, color: "#7d8590" },
      hoverinfo: "skip",
      showlegend: false,
      meta: { key: "diagonal" },
    },
  ];
  rows.forEach((row, i) => {
    const buckets = (row.calibration ?? []).filter((b) => b.resolved > 0 && b.hit_rate != null);
    traces.push({
      x: buckets.map((b) => (b.confidence_low + b.confidence_high) / 2),
      y: buckets.map((b) => b.hit_rate),
      error_y: {
        type: "data",
        symmetric: false,
        array: buckets.map((b) => (b.hit_rate_high ?? b.hit_rate) - b.hit_rate),
        arrayminus: buckets.map((b) => b.hit_rate - (b.hit_rate_low ?? b.hit_rate)),
        thickness: 1,
        width: 3,
      },
      customdata: buckets.map((b) => [b.resolved, b.mean_pnl]),
      hovertemplate:
        "conf %{x:.2f}: hit %{y:.0%} of %{customdata[0]} · mean P&L %{customdata[1]:.2f}<extra></extra>",
      mode: "lines+markers",
      name: `${row.bot} · ${row.strategy}`,
      line: { color: colors[i % colors.length], width: 2 },
      marker: { size: 7 },
      meta: { key: `quality:${row.bot}:${row.strategy}` },
    });
  });
  return traces;
}

const pct = (v) => (v == null ? "–" : `${Math.round(v * 100)}%`);
const num = (v, digits = 2) => (v == null ? "–" : Number(v).toFixed(digits));

/** One line of KPIs per group: what a passer-by needs to judge the bot's signals. */
export function kpiLine(row) {
  return (
    `${row.bot} · ${row.strategy}: ${row.signals} signals, ${pct(row.linked / Math.max(1, row.signals))} linked, ` +
    `hit ${pct(row.hit_rate)}, expectancy ${num(row.expectancy)}, slippage ${num(row.slippage_mean_bps, 1)} bps, ` +
    `P&L ${num(row.realised_pnl)} + ${num(row.unrealised_pnl)} open, Sharpe ${num(row.sharpe)}`
  );
}

/** The tile: a header, the diagram, the KPI lines. */
export class QualityTile {
  constructor(Plotly, pal) {
    this.Plotly = Plotly;
    this.colors = pal.equity;
    this.node = el("section", "tile tile-quality");
    this.node.dataset.tile = "quality";
    this.head = el("header", "tile-head");
    const top = el("div", "tile-top");
    top.append(
      el("h2", "tile-symbol", "SIGNAL QUALITY"),
      el("span", "tile-window", "hit rate by confidence · live"),
    );
    this.head.append(top);
    this.plot = el("div", "plot");
    this.stage = el("div", "stage");
    this.stage.append(this.plot);
    this.kpis = el("div", "quality-kpis");
    this.note = el("div", "tile-note", "waiting for signal quality…");
    this.node.append(this.head, this.stage, this.kpis, this.note);
    this.rows = [];
    this.draws = 0;
    this.error = null;
    this._timer = null;
    this._drawnAt = -Infinity;
  }

  /** All rows known so far (client.perf's onRows): drawn now, or when REDRAW_MS has passed. */
  update(rows) {
    this.rows = rows;
    const wait = this._drawnAt + REDRAW_MS - performance.now();
    if (wait <= 0) this.draw();
    else if (this._timer == null) this._timer = setTimeout(() => this.draw(), wait);
  }

  fail(frame) {
    this.error = frame?.message ?? String(frame);
    this.note.textContent = `signal quality unavailable: ${this.error}`;
    this.note.hidden = false;
  }

  draw() {
    this._timer = null;
    this._drawnAt = performance.now();
    const shown = chosenRows(this.rows);
    this.note.hidden = shown.length > 0;
    if (!shown.length) this.note.textContent = "no signals yet";
    const layout = {
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: "#c9d1d9" },
      margin: { l: 48, r: 12, t: 8, b: 36 },
      xaxis: { range: [0, 1], title: { text: "confidence" }, gridcolor: "#1f2833", zeroline: false },
      yaxis: {
        range: [0, 1],
        title: { text: "hit rate" },
        tickformat: ".0%",
        gridcolor: "#1f2833",
        zeroline: false,
      },
      legend: { orientation: "h", y: 1, yanchor: "bottom", x: 0 },
      showlegend: true,
    };
    this.Plotly.react(this.plot, reliabilityTraces(shown, this.colors), layout, {
      displayModeBar: false,
      responsive: true,
      staticPlot: false,
    });
    this.kpis.replaceChildren(
      ...shown.map((row, i) => {
        const line = el("div", "quality-kpi", kpiLine(row));
        line.style.color = this.colors[i % this.colors.length];
        return line;
      }),
    );
    this.draws += 1;
  }

  snapshot() {
    return {
      rows: this.rows.length,
      shown: chosenRows(this.rows).length,
      draws: this.draws,
      error: this.error,
    };
  }
}
