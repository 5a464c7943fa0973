/**
 * wall-head.js — what a tile says at a glance: its state (live / stale / dead / disconnected),
 * its age in server time, and its KPI cells (docs/client.md "States" and "KPIs").
 *
 * The pure parts (`tileState`, `kpiCells`, the formats) are tested in node
 * (client_js/tests/wall-truth.test.js); `TileHead` is the DOM: a header with the symbol, the
 * tile's window and filter, a state badge, one fixed grid of KPI cells (cells that do not fit
 * the tile's width are dropped, lowest priority first: wall.css), and an overlay over the plot
 * for a dead or disconnected tile.
 */

/** KPI cells in priority order (the last ones are dropped first on a narrow tile). */
export const KPI_CELLS = Object.freeze([
  ["pnl", "P&L today"],
  ["win", "win today"],
  ["last", "last"],
  ["open", "open · uPnL"],
  ["bots", "bots"],
]);

export function fmtAge(seconds) {
  if (seconds < 90) return `${Math.max(0, Math.round(seconds))} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** "15:44:56 UTC" of a ms time. */
export function fmtClock(ms) {
  return `${new Date(ms).toISOString().slice(11, 19)} UTC`;
}

/** Fixed decimals for a symbol, from its price's size (chosen once, so the digits never jitter). */
export function priceDigits(price) {
  const v = Math.abs(Number(price));
  if (!Number.isFinite(v) || v === 0) return 2;
  if (v >= 1000) return 2;
  if (v >= 10) return 3;
  if (v >= 1) return 4;
  return Math.min(8, Math.max(4, 3 - Math.floor(Math.log10(v))));
}

const MINUS = "\u2212";

export function fmtNumber(value, digits) {
  if (value == null || !Number.isFinite(value)) return "–";
  const text = Math.abs(value).toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
  return value < 0 && Number(text.replace(/,/g, "")) !== 0 ? `${MINUS}${text}` : text;
}

export function fmtSigned(value, digits = 2) {
  if (value == null || !Number.isFinite(value)) return "–";
  const rounded = Number(value.toFixed(digits));
  const text = fmtNumber(Math.abs(rounded), digits);
  return rounded > 0 ? `+${text}` : rounded < 0 ? `${MINUS}${text}` : text;
}

/**
 * A tile's state at `now` (server time, ms): `disconnected` when the page lost the gateway,
 * `waiting` before its history, else by its age — the time since its last event's timestamp
 * or its last live arrival (both server time), whichever is later: `live` below `staleS`,
 * `stale` below `deadS`, then `dead`. A fresh load of a feed silent for 3 min is dead at once.
 */
export function tileState({ connected, ready, failed, lastTs, arrivalTs, now, staleS, deadS }) {
  if (!connected) return { state: "disconnected", age: null, last: lastTs ?? null };
  if (failed) return { state: "dead", age: null, last: lastTs ?? null };
  const last = Math.max(lastTs ?? -Infinity, arrivalTs ?? -Infinity);
  if (!ready || !Number.isFinite(last)) return { state: "waiting", age: null, last: null };
  const age = Math.max(0, (now - last) / 1000);
  const state = age >= deadS ? "dead" : age >= staleS ? "stale" : "live";
  return { state, age, last };
}

const tone = (v) => (v > 0 ? "good" : v < 0 ? "bad" : "");

/**
 * The KPI cells' text and tone: `day` from the day book (wall-daybook.js), `ledger` the tile's
 * ledger snapshot (last price, bot statuses), `windowOpen` the first price in the tile's window.
 */
function change(last, open) {
  if (last == null || open == null || open === 0 || !Number.isFinite(open)) return null;
  const pct = ((last - open) / open) * 100;
  const arrow = pct > 0 ? "▲" : pct < 0 ? "▼" : "■";
  return { text: `${arrow}${Math.abs(pct).toFixed(2)}%`, tone: pct > 0 ? "up" : pct < 0 ? "down" : "" };
}

export function kpiCells({ day, lastPrice, windowOpen, digits, statuses, minutes = null }) {
  const cells = {};
  if (day?.ready) {
    cells.pnl = { text: fmtSigned(day.pnl), tone: tone(Number(day.pnl.toFixed(2))) };
    const rate = day.win_rate == null ? "–" : `${Math.round(day.win_rate)} %`;
    cells.win = { text: `${rate} · ${day.trades}`, tone: "" };
    const upnl = day.unrealized_pnl;
    cells.open = {
      text: day.open_positions ? `${day.open_positions} · ${fmtSigned(upnl)}` : "0",
      tone: day.open_positions ? tone(upnl) : "",
    };
  } else {
    for (const key of ["pnl", "win", "open"]) cells[key] = { text: "…", tone: "" };
  }
  // LAST: the price with its change over the day (from the day book's opening price) in the
  // value, the change over the tile's window in the label.
  const today = change(lastPrice, day?.open_price ?? null);
  const windowed = change(lastPrice, windowOpen);
  cells.last = {
    text: `${fmtNumber(lastPrice, digits)}${today ? ` ${today.text}` : ""}`,
    tone: today?.tone ?? "",
    label:
      windowed && minutes ? `last · day · ${minutes} min ${windowed.text}` : today ? "last · day" : "last",
  };
  if (statuses?.size) {
    const idle = [...statuses].filter(([, s]) => s !== "active");
    const active = statuses.size - idle.length;
    const first = idle[0]
      ? ` · ${idle[0][0]} ${idle[0][1]}${idle.length > 1 ? ` +${idle.length - 1}` : ""}`
      : "";
    cells.bots = { text: `${active}/${statuses.size}${first}`, tone: idle.length ? "warn" : "" };
  } else cells.bots = { text: "–", tone: "" };
  return cells;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** The DOM of a tile's header and state overlay. */
export class TileHead {
  constructor(spec, config) {
    this.node = el("header", "tile-head");
    const top = el("div", "tile-top");
    this.titleNode = el("h2", "tile-symbol", spec.symbol);
    const window = el("span", "tile-window", `${spec.minutes} min`);
    const described = Object.entries(config.filter ?? {}).map(
      ([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : v}`,
    );
    this.filterNode = el("span", "tile-filter", described.join(" "));
    this.stateNode = el("span", "tile-state", "waiting");
    top.append(this.titleNode, window, this.filterNode, this.stateNode);
    this.kpis = el("div", "kpis");
    this.kpis.hidden = !config.kpis;
    this.cells = {};
    this.labels = {};
    for (const [key, label] of KPI_CELLS) {
      const cell = el("div", `kpi kpi-${key}`);
      this.labels[key] = el("span", "kpi-label", label);
      cell.append(this.labels[key]);
      this.cells[key] = el("span", "kpi-value", "–");
      cell.append(this.cells[key]);
      this.kpis.append(cell);
    }
    this.node.append(top, this.kpis);
    this.overlay = el("div", "tile-overlay");
    this.overlay.hidden = true;
    this.view = { state: "waiting", age: null, text: "waiting" };
  }

  renderKpis(cells) {
    for (const [key, { text, tone, label }] of Object.entries(cells)) {
      const node = this.cells[key];
      if (!node) continue;
      setText(node, text);
      if (label) setText(this.labels[key], label);
      if (node.dataset.tone !== tone) node.dataset.tone = tone;
    }
  }

  /** Show `found` (tileState) on the tile `root`: class, badge word, overlay. */
  renderState(root, found) {
    const { state, age, last } = found;
    let badge;
    let overlay = null;
    if (state === "disconnected") {
      badge = "disconnected";
      overlay = last == null ? "DISCONNECTED" : `DISCONNECTED — last data ${fmtClock(last)}`;
    } else if (state === "dead") {
      badge = age == null ? "failed" : `no data ${fmtAge(age)}`;
      overlay = age == null ? "NO DATA" : `NO DATA ${fmtAge(age)} — last ${fmtClock(last)}`;
    } else if (state === "stale") badge = `STALE ${fmtAge(age)}`;
    else if (state === "live") badge = `${fmtAge(age)} ago`;
    else badge = "waiting";
    const cls = `tile state-${state}`;
    if (root.className !== cls) root.className = cls;
    setText(this.stateNode, badge);
    this.overlay.hidden = overlay == null;
    if (overlay != null) setText(this.overlay, overlay);
    this.view = { state, age, text: badge, overlay };
  }
}
