/**
 * signalpush.js — a dependency-free client for the signalpush websocket protocol v1
 * (docs/protocol.md), for browsers and Node 20+ (pass `WebSocket` from the `ws` package there).
 *
 *   import { SignalPushClient } from "/client/signalpush.js";
 *   const client = new SignalPushClient("ws://127.0.0.1:8765/ws", {
 *     token, onState: (state, info) => {}, onStatus: (status) => {},
 *   });
 *   const sub = client.subscribe(
 *     { symbol: "BTCUSDT", filter: { bots: ["momo-1"] }, history: { minutes: 360, max_points: 2000 } },
 *     { onHistory(frame) {}, onEvents(items, frame) {}, onReset(frame) {}, onError(err) {} },
 *   );
 *   sub.lastSeq; sub.epoch; sub.lastEventAt; sub.unsubscribe(); client.close();
 *
 * Guarantees, given a server that keeps the protocol: every event of the subscription's
 * symbol that passes its filter is handed to `onEvents` exactly once and in seq order, from the
 * history (or the first position) on, across reconnects and server restarts; or `onReset` is
 * called (the server lost that state) and a fresh `onHistory` follows.
 *
 * How: each subscription keeps its position (epoch, last seq). An `events` frame is in order
 * when `from_seq <= last + 1`; items with `seq <= last` are dropped. A frame that starts later
 * is a break: the client unsubscribes and re-subscribes with `resume: {epoch, seq: last}`. On
 * reconnect (exponential backoff with full jitter) every subscription resumes from its
 * position, without asking for history again. Subscriptions with the same symbol and filter
 * share one server subscription (the server groups them under one `sub` id anyway).
 *
 * Connection states: "connecting" → "live" (hello received) ⇄ "stale" (nothing heard from
 * the server for `staleAfterMs`; the client pings so a healthy link is never silent) → "down"
 * (waiting to reconnect, or refused: 4001 unauthorized / 4003 token expired / HTTP 401 retry
 * slowly, after `authRetryMs`) → "closed"
 * (after close()). Close 1012 (server restart) reconnects at once (jittered); 4008 (too
 * slow) reconnects and resumes. A frame that cannot be parsed or handled is counted in
 * `stats.badFrames` and reported to `onError`; it never stops the client.
 */

import { ReplayRegistry } from "./signalpush-replay.js";

export { Replay, toMillis } from "./signalpush-replay.js";

export const PROTOCOL_VERSION = 1;
export const FILTER_KEYS = Object.freeze([
  "kinds",
  "bots",
  "strategies",
  "signal_types",
  "min_confidence",
  "sides",
]);

const DEFAULTS = Object.freeze({
  backoff: { initialMs: 500, maxMs: 20000 },
  staleAfterMs: 30000,
  helloTimeoutMs: 10000,
  stableAfterMs: 5000,
  authRetryMs: 60000,
});
const AUTH_CLOSE_CODES = new Map([
  [4001, "unauthorized"],
  [4003, "token expired"],
]);
const FATAL_SUBSCRIBE_ERRORS = new Set(["bad_request", "unauthorized", "forbidden"]);

/** Delay before reconnect attempt `attempt` (0-based): uniform in [0, min(maxMs, initialMs·2^attempt)). */
export function backoffDelay(attempt, { initialMs = 500, maxMs = 20000 } = {}, random = Math.random) {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * cap);
}

/** The filter as the server canonicalizes it: sorted unique lists, min_confidence 0 dropped. */
export function canonicalFilter(filter) {
  const out = {};
  if (filter == null) return out;
  if (typeof filter !== "object" || Array.isArray(filter)) throw new TypeError("filter must be an object");
  for (const key of Object.keys(filter)) {
    if (!FILTER_KEYS.includes(key))
      throw new TypeError(`filter.${key}: unknown key; known: ${FILTER_KEYS.join(", ")}`);
  }
  for (const key of FILTER_KEYS) {
    const value = filter[key];
    if (value == null) continue;
    if (key === "min_confidence") {
      const number = Number(value);
      if (!Number.isFinite(number) || number < 0 || number > 1) {
        throw new TypeError(`filter.min_confidence: must be between 0 and 1, got ${value}`);
      }
      if (number > 0) out[key] = number;
    } else {
      const list = typeof value === "string" ? [value] : value;
      if (!Array.isArray(list)) throw new TypeError(`filter.${key}: must be a list of strings`);
      out[key] = [...new Set(list.map(String))].sort();
    }
  }
  return out;
}

/** Identity of a (symbol, filter) pair: subscriptions with equal keys share one server subscription. */
export function subscriptionKey(symbol, filter) {
  return `${symbol}|${JSON.stringify(canonicalFilter(filter))}`;
}

/**
 * Check an `events` frame against a position {epoch, lastSeq} (pure; DESIGN §3 contiguity rule).
 * Returns {ok: true, items, dropped, epoch, lastSeq} with only the new items, or
 * {ok: false, reason: "gap" | "epoch"} for a break, or throws TypeError for a malformed frame.
 */
export function checkEventsFrame(position, frame) {
  const { from_seq: from, to_seq: to } = frame;
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 1 || to < from - 1) {
    throw new TypeError(`events frame: bad from_seq/to_seq ${from}..${to}`);
  }
  const items = Array.isArray(frame.items) ? frame.items : [];
  const epoch = frame.epoch ?? position.epoch;
  if (position.epoch != null && epoch !== position.epoch) return { ok: false, reason: "epoch" };
  const last = position.lastSeq;
  if (from > last + 1) return { ok: false, reason: "gap" };
  const fresh = [];
  let seen = last;
  for (const item of items) {
    if (item === null || typeof item !== "object" || !Number.isInteger(item.seq) || item.seq <= seen)
      continue;
    fresh.push(item);
    seen = item.seq;
  }
  return { ok: true, items: fresh, dropped: items.length - fresh.length, epoch, lastSeq: Math.max(seen, to) };
}

function mergeHistory(a, b) {
  if (!a) return b ? { ...b } : null;
  if (!b) return { ...a };
  const out = { ...a };
  for (const key of ["minutes", "max_points"]) {
    if (b[key] != null) out[key] = out[key] == null ? b[key] : Math.max(out[key], b[key]);
  }
  if (b.figure) out.figure = true;
  return out;
}

function safeCall(client, fn, ...args) {
  if (typeof fn !== "function") return;
  try {
    fn(...args);
  } catch (error) {
    client.stats.handlerErrors += 1;
    client._report(error);
  }
}

/** One local subscription; several may share a channel (one server subscription). */
export class Subscription {
  constructor(client, channel, spec, handlers) {
    this._client = client;
    this._channel = channel;
    this._handlers = handlers ?? {};
    this._closed = false;
    this._failed = null;
    /** What was asked: {symbol, filter, history}. */
    this.spec = Object.freeze({ ...spec });
  }
  get symbol() {
    return this._channel.symbol;
  }
  /** The server's group id (`subscribed.sub`), null until subscribed. */
  get id() {
    return this._channel.subId;
  }
  get epoch() {
    return this._channel.epoch;
  }
  /** Last seq this subscription has (history.to_seq, then each frame's to_seq); null while unknown. */
  get lastSeq() {
    return this._channel.lastSeq;
  }
  /** Date.now() when the last history or events frame (empty ones too) arrived; null before. */
  get lastEventAt() {
    return this._channel.lastEventAt;
  }
  /** "pending" | "live" | "failed" | "closed". */
  get state() {
    if (this._closed) return "closed";
    if (this._failed) return "failed";
    return this._channel.state === "live" ? "live" : "pending";
  }
  get error() {
    return this._failed;
  }
  /** Drop this subscription (the server subscription goes when its last local one does). */
  unsubscribe() {
    if (this._closed) return;
    this._closed = true;
    this._client._detach(this);
  }
  /** Ask for a fresh history now (every subscription sharing the channel gets onHistory). */
  reload() {
    if (!this._closed && !this._failed) this._client._resubscribe(this._channel, "fresh");
  }
  _emit(name, ...args) {
    if (!this._closed) safeCall(this._client, this._handlers[name], ...args);
  }
}

class Channel {
  constructor(key, symbol, filter) {
    this.key = key;
    this.symbol = symbol;
    this.filter = filter;
    this.members = new Set();
    this.history = null; // merged history options of the members
    this.epoch = null;
    this.lastSeq = null;
    this.lastEventAt = null;
    this.subId = null;
    this.pendingRef = null;
    this.state = "idle"; // idle | subscribing | history | live
    this.askedHistory = false; // the current server subscription asked for history
    this.needsHistory = false; // the next subscribe must ask for history (new, reset, late joiner)
    this.resumed = false;
    this.breakStreak = 0;
    this.errorAttempts = 0;
    this.timer = null;
  }
}

export class SignalPushClient {
  /**
   * @param {string} url  ws:// or wss:// URL of the gateway's /ws endpoint
   * @param {object} [options] see signalpush.d.ts (ClientOptions)
   */
  constructor(url, options = {}) {
    this.url = String(url);
    this._options = options;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError(
        "no WebSocket implementation: pass options.WebSocket (e.g. the 'ws' package in Node)",
      );
    }
    this._backoff = { ...DEFAULTS.backoff, ...(options.backoff ?? {}) };
    this._staleAfterMs = options.staleAfterMs ?? DEFAULTS.staleAfterMs;
    this._deadAfterMs = options.deadAfterMs ?? 2 * this._staleAfterMs;
    this._helloTimeoutMs = options.helloTimeoutMs ?? DEFAULTS.helloTimeoutMs;
    this._stableAfterMs = options.stableAfterMs ?? DEFAULTS.stableAfterMs;
    this._authRetryMs = options.authRetryMs ?? DEFAULTS.authRetryMs;
    this._random = options.random ?? Math.random;
    this._channels = new Map(); // key -> Channel
    this._bySub = new Map(); // server sub id -> Set<Channel>
    this._byRef = new Map(); // pending subscribe ref -> Channel
    this._orphanRefs = new Map(); // ref of a subscribe whose channel closed -> key
    this._pings = new Map(); // ref -> {resolve, reject, sentAt}
    this._perf = null; // the perf stream's {message, handlers, rows, ref}
    this._ref = 0;
    this._attempt = 0;
    this._ws = null;
    this._reconnectTimer = null;
    this._tickTimer = null;
    this._state = null;
    this._closed = false;
    /** The last `hello` frame, null before. */
    this.server = null;
    /** true/false from the last `status` frame, null when none came yet. */
    this.busUp = null;
    /** Round-trip time of the last ping in ms, and server clock minus local clock. */
    this.rttMs = null;
    this.clockOffsetMs = null;
    this.stats = {
      connects: 0,
      frames: 0,
      badFrames: 0,
      breaks: 0,
      resets: 0,
      resumes: 0,
      duplicatesDropped: 0,
      handlerErrors: 0,
    };
    this._replays = new ReplayRegistry(this);
    this._connect();
  }

  /** "connecting" | "live" | "stale" | "down" | "closed". */
  get state() {
    return this._state;
  }

  /** The client's subscriptions (read-only view). */
  get subscriptions() {
    const out = [];
    for (const channel of this._channels.values()) out.push(...channel.members);
    return out;
  }

  /**
   * Subscribe to a symbol. `spec` = {symbol, filter?, history?: {minutes?, max_points?, figure?}}.
   * Handlers: onHistory(frame), onEvents(items, frame), onReset(frame), onSubscribed(frame), onError(err).
   */
  subscribe(spec, handlers = {}) {
    if (this._closed) throw new Error("client is closed");
    if (!spec || typeof spec.symbol !== "string" || !spec.symbol)
      throw new TypeError("subscribe: symbol is required");
    const filter = canonicalFilter(spec.filter);
    const key = subscriptionKey(spec.symbol, filter);
    let channel = this._channels.get(key);
    const isNew = !channel;
    if (isNew) {
      channel = new Channel(key, spec.symbol, filter);
      this._channels.set(key, channel);
    }
    const sub = new Subscription(
      this,
      channel,
      { symbol: spec.symbol, filter, history: spec.history ?? null },
      handlers,
    );
    channel.members.add(sub);
    const before = JSON.stringify(channel.history);
    channel.history = mergeHistory(channel.history, spec.history);
    if (spec.history) channel.needsHistory = true;
    if (isNew) {
      this._sendSubscribe(channel);
    } else if (spec.history && this._isOpen()) {
      const pending = channel.state === "subscribing" || channel.state === "history";
      // A late joiner wants history: reload the shared channel (everyone gets onHistory),
      // unless a request for the same window is already on its way.
      if (!pending || !channel.askedHistory || JSON.stringify(channel.history) !== before) {
        this._resubscribe(channel, "fresh");
      }
    }
    return sub;
  }

  /**
   * The live signal-quality stream (docs/protocol.md, "perf"): `spec` = {bots?, strategies?}.
   * Handlers: onRows(rows, frame) with every row known so far (bot, strategy, KPIs,
   * calibration), after each `perf` frame; onError(frame). Sent again after every reconnect
   * (the first frame after it is full). One per client: a second call replaces the first.
   * Returns {rows: Map, close()}.
   */
  perf(spec = {}, handlers = {}) {
    if (this._closed) throw new Error("client is closed");
    const message = { op: "perf" };
    if (spec.bots != null) message.bots = [...spec.bots];
    if (spec.strategies != null) message.strategies = [...spec.strategies];
    const feed = {
      message,
      handlers,
      rows: new Map(),
      close: () => {
        if (this._perf !== feed) return;
        this._perf = null;
        if (this._isOpen() && this.server) this._send({ op: "unsubscribe", sub: "perf" });
      },
    };
    this._perf = feed;
    if (this._isOpen() && this.server) this._sendPerf();
    return feed;
  }

  _sendPerf() {
    const feed = this._perf;
    if (!feed) return;
    feed.ref = `q${++this._ref}`;
    this._send({ ...feed.message, ref: feed.ref });
  }

  _onPerf(frame) {
    const feed = this._perf;
    if (!feed || !Array.isArray(frame.rows)) return;
    if (frame.full) feed.rows.clear();
    for (const row of frame.rows) {
      if (row && typeof row.bot === "string" && typeof row.strategy === "string")
        feed.rows.set(`${row.bot}\u0000${row.strategy}`, row);
    }
    safeCall(this, feed.handlers.onRows, [...feed.rows.values()], frame);
  }

  /**
   * Replay a past window (docs/client.md, "Replay"): `spec` = {symbol, filter?, history?, from,
   * to? (ms | ISO | "live"), speed? (0.1..1000 | "max")}. Handlers: onHistory, onEvents, onReset,
   * onState(frame), onLive(frame), onSubscribed, onError. Returns a handle with pause(), resume(),
   * seek(t), setSpeed(x), goLive(), close().
   */
  replay(spec, handlers = {}) {
    if (this._closed) throw new Error("client is closed");
    return this._replays.start(spec, handlers);
  }

  /** Round trip to the server: resolves {rttMs, serverTime}; rejects on timeout or disconnect. */
  ping(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      if (!this._isOpen()) return reject(new Error("not connected"));
      const ref = `p${++this._ref}`;
      const timer = setTimeout(() => {
        this._pings.delete(ref);
        reject(new Error("ping timed out"));
      }, timeoutMs);
      this._pings.set(ref, { resolve, reject, timer, sentAt: Date.now() });
      this._send({ op: "ping", ref });
    });
  }

  /**
   * Send a frame the client does not manage itself (a wall's `display` heartbeat, docs/walls.md)
   * on the live connection; false when not connected (nothing is queued).
   */
  send(frame) {
    if (!this._isOpen()) return false;
    return this._send(frame);
  }

  /** Close for good: no reconnect; every subscription ends. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._reconnectTimer);
    clearInterval(this._tickTimer);
    for (const channel of this._channels.values()) clearTimeout(channel.timer);
    const ws = this._ws;
    this._ws = null;
    if (ws) this._dropSocket(ws, 1000, "client closed");
    this._failPings(new Error("client closed"));
    this._replays.closeAll();
    this._setState("closed", {});
  }

  // ---- connection ---------------------------------------------------------------------

  _connect() {
    this._reconnectTimer = null;
    if (this._closed) return;
    this._setState("connecting", { attempt: this._attempt });
    let ws;
    try {
      ws = new this._WebSocket(this._connectUrl());
    } catch (error) {
      this._report(error);
      this._scheduleReconnect({ code: 0, reason: String(error.message ?? error) });
      return;
    }
    this._ws = ws;
    this.stats.connects += 1;
    const conn = {
      openedAt: null,
      helloAt: null,
      lastRx: Date.now(),
      lastPing: 0,
      startedAt: Date.now(),
      error: null,
    };
    this._conn = conn;
    ws.onopen = () => {
      if (ws === this._ws) conn.openedAt = conn.lastRx = Date.now();
    };
    ws.onmessage = (event) => {
      if (ws === this._ws) this._onMessage(event.data);
    };
    ws.onerror = (event) => {
      if (ws === this._ws) conn.error = String(event?.message ?? event?.error?.message ?? "websocket error");
    };
    ws.onclose = (event) => {
      if (ws === this._ws) this._onClose(event?.code ?? 1006, event?.reason ?? "");
    };
    clearInterval(this._tickTimer);
    this._tickTimer = setInterval(() => this._tick(), Math.max(20, Math.min(1000, this._staleAfterMs / 4)));
  }

  _connectUrl() {
    const token = this._options.token;
    if (!token) return this.url;
    const url = new URL(this.url, globalThis.location?.href);
    url.searchParams.set("token", token);
    return url.toString();
  }

  _isOpen() {
    return this._ws !== null && this._conn?.helloAt != null && this._ws.readyState === 1;
  }

  _send(message) {
    if (this._ws === null || this._ws.readyState !== 1) return false;
    try {
      this._ws.send(JSON.stringify(message));
      return true;
    } catch (error) {
      this._report(error);
      return false;
    }
  }

  _dropSocket(ws, code, reason) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    if (typeof ws.on === "function") ws.on("error", () => {}); // Node ws: errors after close are harmless
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  /** Give up on the current socket now (a half-open link may take minutes to report its close). */
  _abandon(reason) {
    const ws = this._ws;
    if (!ws) return;
    this._dropSocket(ws, 4000, reason);
    this._onClose(4000, reason);
  }

  _onClose(code, reason) {
    const conn = this._conn;
    this._ws = null;
    this._conn = null;
    clearInterval(this._tickTimer);
    this._failPings(new Error("disconnected"));
    for (const channel of this._channels.values()) this._channelOffline(channel);
    this._bySub.clear();
    this._byRef.clear();
    this._orphanRefs.clear();
    if (this._closed) return;
    const stable = conn?.helloAt != null && Date.now() - conn.helloAt >= this._stableAfterMs;
    if (stable) this._attempt = 0;
    const handshakeRefused = conn?.openedAt == null && /\b(401|403)\b/.test(conn?.error ?? "");
    this._scheduleReconnect({ code, reason: reason || conn?.error || "", handshakeRefused });
  }

  _scheduleReconnect({ code, reason, handshakeRefused = false }) {
    let delay;
    const auth =
      AUTH_CLOSE_CODES.get(code) ??
      (handshakeRefused ? (/403/.test(reason) ? "forbidden" : "unauthorized") : null);
    if (auth) {
      delay = Math.floor(this._authRetryMs * (0.5 + this._random() / 2));
      reason = reason || auth;
    } else {
      // 1012 (restart) and 4008 (too slow) after a stable connection: attempt is 0, so the
      // wait is under initialMs; repeated failures of short connections still back off.
      delay = backoffDelay(this._attempt, this._backoff, this._random);
    }
    this._attempt += 1;
    this._setState(
      "down",
      auth ? { code, reason, auth, retryInMs: delay } : { code, reason, retryInMs: delay },
    );
    this._reconnectTimer = setTimeout(() => this._connect(), delay);
  }

  _tick() {
    const conn = this._conn;
    if (!conn || this._closed) return;
    const now = Date.now();
    if (conn.helloAt == null) {
      if (now - conn.startedAt >= this._helloTimeoutMs) this._abandon("no hello from server");
      return;
    }
    const silence = now - conn.lastRx;
    if (silence >= this._deadAfterMs) return this._abandon("server silent");
    if (silence >= this._staleAfterMs && this._state === "live")
      this._setState("stale", { silentMs: silence });
    const heartbeatMs = (this.server?.heartbeat_s ?? 20) * 1000;
    const pingEvery = this._options.pingIntervalMs ?? Math.min(heartbeatMs, this._staleAfterMs / 3);
    if (now - conn.lastPing >= pingEvery) {
      conn.lastPing = now;
      const ref = `p${++this._ref}`;
      this._pings.set(ref, { resolve: null, reject: null, timer: null, sentAt: now });
      if (this._pings.size > 16) this._pings.delete(this._pings.keys().next().value);
      this._send({ op: "ping", ref });
    }
  }

  _failPings(error) {
    for (const ping of this._pings.values()) {
      clearTimeout(ping.timer);
      if (ping.reject) ping.reject(error);
    }
    this._pings.clear();
  }

  _setState(state, info) {
    if (state === this._state && state !== "down") return;
    this._state = state;
    safeCall(this, this._options.onState, state, info);
  }

  _report(error) {
    if (typeof this._options.onError === "function") {
      try {
        this._options.onError(error);
      } catch {
        // an error handler that throws must not loop
      }
    }
  }

  // ---- frames -------------------------------------------------------------------------

  _onMessage(data) {
    const conn = this._conn;
    conn.lastRx = Date.now();
    this.stats.frames += 1;
    if (this._state === "stale") this._setState("live", { recovered: true });
    let frame;
    try {
      if (typeof data !== "string") throw new TypeError("binary frame");
      frame = JSON.parse(data);
      if (frame === null || typeof frame !== "object" || Array.isArray(frame))
        throw new TypeError("frame is not an object");
      this._dispatch(frame, conn);
    } catch (error) {
      this.stats.badFrames += 1;
      this._report(error);
    }
  }

  _dispatch(frame, conn) {
    if (this._replays.handles(frame)) return undefined;
    switch (frame.op) {
      case "hello":
        return this._onHello(frame, conn);
      case "subscribed":
        return this._onSubscribed(frame);
      case "history":
      case "events":
      case "reset":
        for (const channel of [...(this._bySub.get(frame.sub) ?? [])]) this._onChannelFrame(channel, frame);
        return undefined;
      case "status":
        this.busUp = frame.bus === "up";
        return safeCall(this, this._options.onStatus, frame);
      case "pong":
        return this._onPong(frame);
      case "error":
        return this._onErrorFrame(frame);
      case "chunk":
        return this._onChunk(frame, conn);
      case "perf":
        return this._onPerf(frame);
      default:
        // Unknown ops are ignored (forward compatible), after options.onFrame sees them (a
        // wall's `command` frames, docs/walls.md).
        return safeCall(this, this._options.onFrame, frame);
    }
  }

  /**
   * A frame over the server's max_send_frame_bytes comes as chunk frames: the data of index
   * 0..count-1 of one id, joined, is the frame's JSON text (docs/protocol.md, "Frame size").
   * Other frames may come between the chunks; the frame counts when its last chunk arrives.
   */
  _onChunk(frame, conn) {
    const { id, index, count, data } = frame;
    if (
      !Number.isInteger(index) ||
      !Number.isInteger(count) ||
      index < 0 ||
      index >= count ||
      typeof data !== "string"
    )
      throw new TypeError("chunk frame without a valid index, count and data");
    conn.chunks ??= new Map();
    let parts = conn.chunks.get(id);
    if (parts === undefined) {
      parts = { pieces: new Array(count), received: 0 };
      conn.chunks.set(id, parts);
    }
    if (parts.pieces[index] === undefined) parts.received += 1;
    parts.pieces[index] = data;
    if (parts.received < count) return undefined;
    conn.chunks.delete(id);
    const whole = JSON.parse(parts.pieces.join(""));
    if (whole === null || typeof whole !== "object" || Array.isArray(whole) || whole.op === "chunk")
      throw new TypeError("chunked frame is not an object");
    return this._dispatch(whole, conn);
  }

  _onHello(frame, conn) {
    if (frame.protocol !== PROTOCOL_VERSION) {
      this._dropSocket(this._ws, 1000, "protocol mismatch");
      this._ws = null;
      this._conn = null;
      for (const channel of this._channels.values()) this._channelOffline(channel);
      const delay = this._authRetryMs;
      this._setState("down", {
        reason: `server speaks protocol ${frame.protocol}, client ${PROTOCOL_VERSION}`,
        retryInMs: delay,
      });
      this._reconnectTimer = setTimeout(() => this._connect(), delay);
      return;
    }
    this.server = frame;
    conn.helloAt = Date.now();
    this._setState("live", { server: frame.server });
    for (const channel of this._channels.values()) this._sendSubscribe(channel);
    this._sendPerf();
    this._replays.connected();
  }

  _onPong(frame) {
    const ping = this._pings.get(frame.ref);
    if (!ping) return;
    this._pings.delete(frame.ref);
    clearTimeout(ping.timer);
    const now = Date.now();
    this.rttMs = now - ping.sentAt;
    if (Number.isFinite(frame.time)) this.clockOffsetMs = frame.time - (ping.sentAt + now) / 2;
    if (ping.resolve) ping.resolve({ rttMs: this.rttMs, serverTime: frame.time });
  }

  _onErrorFrame(frame) {
    if (this._perf && frame.ref != null && frame.ref === this._perf.ref) {
      return safeCall(this, this._perf.handlers.onError, frame);
    }
    const channel = this._byRef.get(frame.ref);
    if (!channel) {
      const ping = this._pings.get(frame.ref);
      if (ping?.reject) ping.reject(Object.assign(new Error(frame.message ?? frame.code), { frame }));
      this._pings.delete(frame.ref);
      this._report(Object.assign(new Error(`server error ${frame.code}: ${frame.message ?? ""}`), { frame }));
      return;
    }
    this._byRef.delete(frame.ref);
    channel.pendingRef = null;
    channel.state = "idle";
    if (FATAL_SUBSCRIBE_ERRORS.has(frame.code)) {
      this._channels.delete(channel.key);
      for (const member of channel.members) {
        member._failed = frame;
        member._emit("onError", frame);
      }
      return;
    }
    for (const member of channel.members) member._emit("onError", frame);
    const delay = backoffDelay(channel.errorAttempts++, this._backoff, this._random);
    channel.timer = setTimeout(() => this._sendSubscribe(channel), Math.max(delay, this._backoff.initialMs));
  }

  _onSubscribed(frame) {
    const channel = this._byRef.get(frame.ref);
    if (!channel) {
      const key = this._orphanRefs.get(frame.ref);
      this._orphanRefs.delete(frame.ref);
      // Unsubscribing the group would also end a newer subscription with the same key.
      if (key !== undefined && !this._channels.has(key) && frame.sub != null)
        this._send({ op: "unsubscribe", sub: frame.sub });
      return;
    }
    this._byRef.delete(frame.ref);
    channel.pendingRef = null;
    channel.errorAttempts = 0;
    channel.subId = frame.sub;
    if (!this._bySub.has(frame.sub)) this._bySub.set(frame.sub, new Set());
    this._bySub.get(frame.sub).add(channel);
    if (channel.askedHistory) {
      channel.state = "history";
    } else {
      if (!channel.resumed) {
        channel.epoch = frame.epoch ?? null;
        channel.lastSeq = Number.isInteger(frame.seq) ? frame.seq : 0;
      }
      channel.state = "live";
    }
    for (const member of channel.members) member._emit("onSubscribed", frame);
  }

  _onChannelFrame(channel, frame) {
    if (frame.op === "reset") {
      this.stats.resets += 1;
      channel.epoch = null;
      channel.lastSeq = null;
      channel.needsHistory = true;
      for (const member of channel.members) member._emit("onReset", frame);
      // The server follows with a history of its default window; ask for ours if we have one.
      if (channel.history && !channel.askedHistory) this._resubscribe(channel, "fresh");
      else channel.state = "history";
      return;
    }
    if (frame.op === "history") {
      if (channel.state !== "history" && channel.state !== "live") return;
      const toSeq = Number.isInteger(frame.to_seq) ? frame.to_seq : 0;
      channel.epoch = frame.epoch ?? null;
      channel.lastSeq = toSeq;
      channel.lastEventAt = Date.now();
      channel.state = "live";
      channel.needsHistory = false;
      channel.breakStreak = 0;
      for (const member of channel.members) member._emit("onHistory", frame);
      return;
    }
    if (channel.state !== "live") return; // before our subscription's start: not ours
    const result = checkEventsFrame({ epoch: channel.epoch, lastSeq: channel.lastSeq }, frame);
    if (!result.ok) {
      this.stats.breaks += 1;
      if (channel.epoch == null) channel.epoch = frame.epoch ?? null;
      this._resubscribe(channel, "resume", true);
      return;
    }
    this.stats.duplicatesDropped += result.dropped;
    channel.epoch = result.epoch;
    channel.lastSeq = result.lastSeq;
    channel.lastEventAt = Date.now();
    channel.breakStreak = 0;
    for (const member of channel.members) member._emit("onEvents", result.items, frame);
  }

  // ---- channels -----------------------------------------------------------------------

  /** Subscribe the channel on the server: resume from its position, or ask for history/none. */
  _sendSubscribe(channel) {
    clearTimeout(channel.timer);
    channel.timer = null;
    if (!this._isOpen() || !this._channels.has(channel.key)) return;
    const ref = `s${++this._ref}`;
    const message = { op: "subscribe", ref, symbol: channel.symbol };
    if (Object.keys(channel.filter).length) message.filter = channel.filter;
    channel.resumed = !channel.needsHistory && channel.epoch != null && channel.lastSeq != null;
    channel.askedHistory = !channel.resumed && (channel.needsHistory || channel.history != null);
    if (channel.resumed) {
      message.resume = { epoch: channel.epoch, seq: channel.lastSeq };
      this.stats.resumes += 1;
    } else if (channel.askedHistory) {
      message.history = { ...(channel.history ?? {}) };
    }
    channel.pendingRef = ref;
    channel.state = "subscribing";
    this._byRef.set(ref, channel);
    this._send(message);
  }

  /**
   * Replace the channel's server subscription: "resume" from its position or "fresh" (with
   * history). After a break, a resume that breaks again falls back to fresh, with a growing pause.
   */
  _resubscribe(channel, mode, afterBreak = false) {
    this._unsubscribeServer(channel);
    channel.state = "idle";
    let delay = 0;
    if (afterBreak) {
      const streak = channel.breakStreak++;
      if (streak >= 2) mode = "fresh";
      delay = streak === 0 ? 0 : Math.min(30000, this._backoff.initialMs * 2 ** (streak - 1));
    }
    if (mode === "fresh") {
      channel.needsHistory = true;
      channel.epoch = null;
      channel.lastSeq = null;
    }
    clearTimeout(channel.timer);
    channel.timer = null;
    if (delay === 0) this._sendSubscribe(channel);
    else channel.timer = setTimeout(() => this._sendSubscribe(channel), delay);
  }

  _unsubscribeServer(channel) {
    if (channel.subId != null) {
      const group = this._bySub.get(channel.subId);
      group?.delete(channel);
      if (group && group.size === 0) {
        this._bySub.delete(channel.subId);
        this._send({ op: "unsubscribe", sub: channel.subId });
      }
      channel.subId = null;
    }
    if (channel.pendingRef != null) {
      this._byRef.delete(channel.pendingRef);
      this._orphanRefs.set(channel.pendingRef, channel.key);
      channel.pendingRef = null;
    }
  }

  _channelOffline(channel) {
    clearTimeout(channel.timer);
    channel.timer = null;
    channel.subId = null;
    channel.pendingRef = null;
    channel.state = "idle";
    channel.breakStreak = 0;
  }

  _detach(sub) {
    const channel = sub._channel;
    channel.members.delete(sub);
    if (channel.members.size > 0 || this._channels.get(channel.key) !== channel) return;
    this._channels.delete(channel.key);
    clearTimeout(channel.timer);
    this._unsubscribeServer(channel);
  }
}
