/**
 * wall-daybook.js — a tile's day KPIs (P&L, trades, win rate, open positions and their uPnL of
 * *today*), independent of the chart's window.
 *
 * The server computes the day book (`GET /api/day`, server/charts/daybook.py: from 00:00 in the
 * wall's `tz`, over the symbol's trades passing the tile's filter) and says up to which seq it
 * is complete (`epoch`, `to_seq`). This keeps it live with the same rules: every trade event
 * after that seq (events that came before the book are held and replayed), exits of today add
 * to their position's day P&L. A tile fetches the book again on every history frame (a new
 * epoch, a reset) and when the day ends, so a running wall, a fresh load and a wall of any
 * window show the same numbers. `DayBook` is pure; `fetchDayBook` is the request.
 */

/** GET /api/day for `symbol` with the wall's filter, time zone and token; the parsed body. */
export async function fetchDayBook(symbol, config) {
  const params = new URLSearchParams({ symbol, tz: config.tz ?? "UTC" });
  for (const [key, value] of Object.entries(config.filter ?? {}))
    params.set(key, Array.isArray(value) ? value.join(",") : String(value));
  const headers = config.token ? { authorization: `Bearer ${config.token}` } : {};
  const response = await fetch(`/api/day?${params}`, { headers });
  const body = await response.json();
  if (!response.ok) throw new Error(body?.message ?? `HTTP ${response.status}`);
  return body;
}

const CLOSED_SHARE = 1e-9;
/** Events held while the book is on its way (older ones are dropped: the book will be refetched). */
export const MAX_HELD = 20_000;

const num = (v) => (v == null || v === "" || !Number.isFinite(Number(v)) ? null : Number(v));

export class DayBook {
  constructor() {
    this.seeded = false;
    this.held = [];
    this.positions = new Map();
    this.toSeq = 0;
    this.epoch = null;
    this.dayStart = null;
    this.dayEnd = null;
    this.applied = 0;
    this.rejected = 0;
  }

  /** Take the server's book (`/api/day` body); returns false (and keeps nothing) when it is malformed. */
  seed(book) {
    const start = num(book?.day_start);
    const end = num(book?.day_end);
    const toSeq = num(book?.to_seq);
    if (start == null || end == null || !(end > start) || toSeq == null || !Array.isArray(book.positions)) {
      this.rejected += 1;
      return false;
    }
    this.positions = new Map();
    for (const p of book.positions) {
      const qty = num(p?.qty);
      if (typeof p?.bot !== "string" || p?.position == null || qty == null) continue;
      this.positions.set(`${p.bot}\u001f${p.position}`, {
        side: p.side ?? null,
        qty,
        notional: num(p.notional) ?? 0,
        exitQty: num(p.exit_qty) ?? 0,
        dayPnl: num(p.day_pnl),
      });
    }
    this.openPrice = num(book.open_price);
    this.dayStart = start;
    this.dayEnd = end;
    this.toSeq = toSeq;
    this.epoch = book.epoch ?? null;
    this.seeded = true;
    const held = this.held;
    this.held = [];
    for (const event of held) this.onEvent(event);
    return true;
  }

  /** Forget the book (a history reload): events are held until the next `seed`. */
  unseed() {
    this.seeded = false;
    this.held = [];
  }

  /** Whether the book's day has ended at `now` (server time, ms): time to fetch the next. */
  expired(now) {
    return this.seeded && now >= this.dayEnd;
  }

  /** A live event (in seq order). */
  onEvent(event) {
    if (!this.seeded) {
      if (event?.kind === "trade") {
        this.held.push(event);
        if (this.held.length > MAX_HELD) this.held.shift();
      }
      return;
    }
    if (event?.kind !== "trade" || !(event.seq > this.toSeq)) return;
    const qty = num(event.qty);
    const price = num(event.price);
    if (qty == null || price == null || typeof event.bot !== "string") return;
    const key = `${event.bot}\u001f${event.position}`;
    let p = this.positions.get(key);
    if (!p) {
      p = { side: null, qty: 0, notional: 0, exitQty: 0, dayPnl: null };
      this.positions.set(key, p);
    }
    this.applied += 1;
    if (event.action === "entry") {
      if (p.side == null) p.side = event.side;
      p.qty += qty;
      p.notional += price * qty;
    } else if (event.action === "exit") {
      let pnl = num(event.pnl);
      if (pnl == null && p.side != null && p.qty > 0)
        pnl = (p.side === "buy" ? 1 : -1) * (price - p.notional / p.qty) * qty;
      p.exitQty += qty;
      if (pnl != null && event.ts >= this.dayStart && event.ts < this.dayEnd)
        p.dayPnl = (p.dayPnl ?? 0) + pnl;
    }
  }

  /** Today's realized P&L per bot (bots with a day trade only). */
  pnlByBot() {
    const out = new Map();
    for (const [key, p] of this.positions)
      if (p.dayPnl != null) {
        const bot = key.slice(0, key.indexOf("\u001f"));
        out.set(bot, (out.get(bot) ?? 0) + p.dayPnl);
      }
    return out;
  }

  /** Today's numbers; `lastPrice` values the open positions (uPnL, null without a price). */
  snapshot(lastPrice = null) {
    let pnl = 0;
    let trades = 0;
    let wins = 0;
    let open = 0;
    let upnl = lastPrice == null ? null : 0;
    for (const p of this.positions.values()) {
      if (p.dayPnl != null) {
        trades += 1;
        pnl += p.dayPnl;
        if (p.dayPnl > 0) wins += 1;
      }
      const left = Math.max(p.qty - p.exitQty, 0);
      if (p.side != null && left > 0 && left > p.qty * CLOSED_SHARE) {
        open += 1;
        if (upnl != null) upnl += (p.side === "buy" ? 1 : -1) * (lastPrice - p.notional / p.qty) * left;
      }
    }
    return {
      ready: this.seeded,
      day_start: this.dayStart,
      open_price: this.openPrice ?? null,
      pnl: Number(pnl.toFixed(6)),
      trades,
      wins,
      win_rate: trades ? (wins / trades) * 100 : null,
      open_positions: open,
      unrealized_pnl: upnl == null ? null : Number(upnl.toFixed(6)),
    };
  }
}
