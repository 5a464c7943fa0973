/**
 * wall-ledger.js — a tile's positions and KPIs, kept live (pure: no DOM, no Plotly).
 *
 * The rules are server/analytics/performance.py's, as `server.charts.wall.kpis` applies them to a
 * history frame's data (docs/charts.md, `kpis`): entries and exits pair by (bot, position);
 * a position's direction is its first entry's side and its entry price the quantity-weighted
 * average of its entries; an exit's P&L is its `pnl`, else computed from that average (fees
 * are not in history data, so none here either: a reload shows the same numbers); a trade is
 * a position with an exit of known P&L, a win one whose P&L is > 0; open positions have
 * quantity left. The ledger starts from the history rows and then takes live events.
 */

export const DAY_MS = 86_400_000;
const CLOSED_SHARE = 1e-9; // open quantity below this share of the entered quantity is float dust
/** Positions kept (the oldest are forgotten past this; their P&L stays in the totals). */
export const MAX_POSITIONS = 20_000;

const utcDayStart = (ms) => Math.floor(ms / DAY_MS) * DAY_MS;
const num = (v) => (v == null || !Number.isFinite(Number(v)) ? null : Number(v));

/** An exit's realized P&L: its reported `pnl`, else computed from `position`'s entries, else null. */
export function exitPnl(exit, position) {
  const reported = num(exit.pnl);
  if (reported != null) return reported;
  if (!position || !(position.qty > 0)) return null;
  const direction = position.side === "buy" ? 1 : -1;
  const value = direction * (Number(exit.price) - position.notional / position.qty) * Number(exit.qty);
  return Number.isFinite(value) ? value : null;
}

export class Ledger {
  /** `rows`: historyRows(data) (each kind sorted by time). */
  constructor(rows, now = Date.now()) {
    this.positions = new Map();
    this.wins = 0;
    this.trades = 0;
    this.open = 0;
    this.realized = 0;
    this.dayStart = utcDayStart(now);
    this.todayPnl = 0;
    this.hasCandles = rows.candles.length > 0;
    this.lastCandleTs = this.hasCandles ? rows.candles.at(-1).ts : null;
    this.lastPrice = this.hasCandles ? num(rows.candles.at(-1).close) : null;
    if (!this.hasCandles) {
      const points = [...rows.signals, ...rows.trades]
        .map((r, i) => [r, i])
        .sort((a, b) => a[0].ts - b[0].ts || a[1] - b[1]);
      this.lastPrice = points.length ? num(points.at(-1)[0].price) : null;
    }
    this.statuses = rows.bots.length ? new Map() : null;
    for (const b of rows.bots) this.statuses.set(b.bot, b.status);
    // Entries first: an exit's computed P&L uses every entry of its position in the window.
    for (const t of rows.trades) if (t.action === "entry") this._entry(t);
    for (const t of rows.trades) if (t.action === "exit") this._exit(t, now);
  }

  _position(bot, id, create) {
    const key = `${bot}\u001f${id}`;
    let p = this.positions.get(key);
    if (!p && create) {
      p = { side: null, firstTs: null, qty: 0, notional: 0, exitQty: 0, realized: null };
      this.positions.set(key, p);
      if (this.positions.size > MAX_POSITIONS) this._forgetOldest();
    }
    return p;
  }

  _forgetOldest() {
    const [key, p] = this.positions.entries().next().value;
    if (this._isOpen(p)) this.open -= 1;
    this.positions.delete(key);
  }

  _isOpen(p) {
    if (p.side == null) return false;
    const left = Math.max(p.qty - p.exitQty, 0);
    return left > 0 && left > p.qty * CLOSED_SHARE;
  }

  /** Take a position's contribution out of (-1) or into (+1) the totals. */
  _count(p, sign) {
    if (p.realized != null) {
      this.trades += sign;
      if (p.realized > 0) this.wins += sign;
    }
    if (this._isOpen(p)) this.open += sign;
  }

  _entry(t) {
    const p = this._position(t.bot, t.position, true);
    this._count(p, -1);
    if (p.side == null) {
      p.side = t.side;
      p.firstTs = t.ts;
    }
    p.qty += Number(t.qty);
    p.notional += Number(t.price) * Number(t.qty);
    this._count(p, 1);
  }

  /** Book an exit; returns its P&L (null when unknown) and the position's first entry time and average price. */
  _exit(t, now = Infinity) {
    const p = this._position(t.bot, t.position, true);
    const pnl = exitPnl(t, p.side == null ? null : p);
    this._count(p, -1);
    p.exitQty += Number(t.qty);
    if (pnl != null) {
      p.realized = (p.realized ?? 0) + pnl;
      this.realized += pnl;
      if (t.ts >= this.dayStart && t.ts <= now) this.todayPnl += pnl;
    }
    this._count(p, 1);
    const entry = p.side == null ? null : { ts: p.firstTs, price: p.notional / p.qty };
    return { pnl, entry };
  }

  /** Apply one live event; for an exit, returns what `_exit` returns. */
  onEvent(event) {
    if (event.kind === "candle") {
      if (this.lastCandleTs == null || event.ts >= this.lastCandleTs) {
        this.lastCandleTs = event.ts;
        this.lastPrice = num(event.close);
      }
      this.hasCandles = true;
      return null;
    }
    if ((event.kind === "signal" || event.kind === "trade") && !this.hasCandles)
      this.lastPrice = num(event.price);
    if (event.kind === "trade") {
      if (event.action === "entry") {
        this._entry(event);
        return null;
      }
      if (event.action === "exit") return this._exit(event);
    } else if (event.kind === "bot") {
      this.statuses ??= new Map();
      this.statuses.set(event.bot, event.status);
    }
    return null;
  }

  /** A new UTC day: today's P&L starts again from 0. Returns whether the day changed. */
  rollDay(now = Date.now()) {
    const day = utcDayStart(now);
    if (day === this.dayStart) return false;
    this.dayStart = day;
    this.todayPnl = 0;
    return true;
  }

  /** The KPIs with the server's keys (docs/charts.md `kpis`; win_rate in percent). */
  snapshot() {
    let active = null;
    if (this.statuses) {
      active = 0;
      for (const status of this.statuses.values()) if (status === "active") active += 1;
    }
    return {
      last_price: this.lastPrice,
      today_pnl: Number(this.todayPnl.toFixed(6)),
      win_rate: this.trades ? (this.wins / this.trades) * 100 : null,
      open_positions: this.open,
      active_bots: active,
      realized_pnl: this.realized,
      trades: this.trades,
      day_start: this.dayStart,
    };
  }
}
