// Test data: realistic events and the columnar `history.data` the server sends (DESIGN §3).

const COLUMNS = {
  candle: ["ts", "open", "high", "low", "close", "volume"],
  signal: ["seq", "ts", "bot", "strategy", "type", "price", "confidence"],
  trade: ["seq", "ts", "bot", "strategy", "side", "action", "price", "qty", "pnl", "position"],
  bot: ["seq", "ts", "bot", "strategy", "status", "equity"],
};

/** Events → the `data` object of a history frame (columns per kind; the latest candle per ts wins). */
export function historyData(events) {
  const data = {};
  for (const [kind, columns] of Object.entries(COLUMNS))
    data[kind] = Object.fromEntries(columns.map((c) => [c, []]));
  const candles = new Map();
  for (const event of events) {
    if (event.kind === "candle") candles.set(event.ts, event);
    else if (COLUMNS[event.kind])
      for (const c of COLUMNS[event.kind]) data[event.kind][c].push(event[c] ?? null);
  }
  for (const candle of [...candles.values()].sort((a, b) => a.ts - b.ts)) {
    for (const c of COLUMNS.candle) data.candle[c].push(candle[c]);
  }
  return data;
}

export const MINUTE = 60_000;
export const T0 = Date.UTC(2025, 0, 6, 9, 0);

export function candle(ts, close, extra = {}) {
  return {
    kind: "candle",
    ts,
    tf: "1m",
    open: close - 1,
    high: close + 2,
    low: close - 2,
    close,
    volume: 3,
    ...extra,
  };
}

export function signal(
  ts,
  { bot = "momo-1", strategy = "momentum", type = "buy", price = 100, confidence = 0.8 } = {},
) {
  return { kind: "signal", ts, bot, strategy, type, price, confidence, meta: {} };
}

export function trade(
  ts,
  {
    bot = "momo-1",
    strategy = "momentum",
    side = "buy",
    action = "entry",
    price = 100,
    qty = 1,
    pnl = null,
    position = "p-1",
  } = {},
) {
  return { kind: "trade", ts, bot, strategy, side, action, price, qty, fee: 0, pnl, position, meta: {} };
}

export function botStatus(
  ts,
  { bot = "momo-1", strategy = "momentum", status = "active", equity = 10000 } = {},
) {
  return { kind: "bot", ts, bot, strategy, status, equity, meta: {} };
}

/** `n` one-minute candles from `start` with a gentle random walk (deterministic). */
export function candleSeries(n, start = T0, price = 100) {
  const out = [];
  let p = price;
  for (let i = 0; i < n; i++) {
    p += Math.sin(i / 5) * 0.8;
    out.push(candle(start + i * MINUTE, Math.round(p * 100) / 100));
  }
  return out;
}
