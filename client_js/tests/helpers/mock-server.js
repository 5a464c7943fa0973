// A scripted signalpush server (protocol v1) for the client and wall tests, built on `ws`.
//
// It keeps a per-symbol log (epoch + events with seq 1, 2, 3 ...), answers subscribe with
// history / resume / plain exactly as DESIGN §3 describes, and lets a test break things on
// purpose: drop frames to one connection (a gap), repeat frames (duplicates), change the
// epoch (reset), go silent (stale), close with any code, or restart on the same port.
// It also serves the client_js files and /vendor/plotly.min.js over HTTP so a browser can
// load the wall from it. A test that only needs `url` and `publish` can run against a real
// `signalpush serve` instead (see harness.js).

import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocketServer } from "ws";
import { historyData } from "./fixtures.js";

const CLIENT_DIR = fileURLToPath(new URL("../../", import.meta.url));
const TYPES = {
  ".js": "text/javascript",
  ".html": "text/html",
  ".css": "text/css",
  ".json": "application/json",
};

function matches(filter, event) {
  if (!filter) return true;
  if (filter.kinds && !filter.kinds.includes(event.kind)) return false;
  if (["signal", "trade", "bot"].includes(event.kind)) {
    if (filter.bots && !filter.bots.includes(event.bot)) return false;
    if (filter.strategies && !filter.strategies.includes(event.strategy)) return false;
  }
  if (event.kind === "signal") {
    if (filter.signal_types && !filter.signal_types.includes(event.type)) return false;
    if (filter.min_confidence != null && !(event.confidence >= filter.min_confidence)) return false;
  }
  if (event.kind === "trade" && filter.sides && !filter.sides.includes(event.side)) return false;
  return true;
}

let epochCounter = 0;
const newEpoch = () => `e${Date.now().toString(36)}${++epochCounter}`;

export class MockServer {
  /** options: {heartbeat_s, figure: (symbol, data, history) => payload, plotlyPath, apiBots, apiSymbols} */
  constructor(options = {}) {
    this.options = options;
    this.logs = new Map(); // symbol -> {epoch, events: []}
    this.connections = new Set();
    this.received = []; // every client frame: {conn, frame}
    this.silent = false;
    this.http = null;
    this.wss = null;
    this.port = null;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0) {
    this.http = createServer((req, res) => this._serveHttp(req, res));
    this.wss = new WebSocketServer({ noServer: true });
    this.http.on("upgrade", (req, socket, head) => {
      const url = new URL(req.url, "http://x");
      if (url.pathname !== "/ws") return socket.destroy();
      if (this.options.token && url.searchParams.get("token") !== this.options.token) {
        socket.end("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
        return undefined;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this._onConnection(ws, url));
      return undefined;
    });
    await new Promise((resolve, reject) => {
      this.http.once("error", reject);
      this.http.listen(port, "127.0.0.1", resolve);
    });
    this.port = this.http.address().port;
    return this;
  }

  /** Close every connection with `code` and stop listening (a restart keeps the logs). */
  async stop(code = 1001) {
    for (const conn of this.connections) conn.ws.close(code, "server stopping");
    this.connections.clear();
    await new Promise((resolve) => this.wss.close(() => resolve()));
    this.http.closeAllConnections?.();
    await new Promise((resolve) => this.http.close(() => resolve()));
  }

  /** Stop with 1012 and listen again on the same port, like `signalpush serve` restarting. */
  async restart(pauseMs = 0) {
    const port = this.port;
    await this.stop(1012);
    if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
    await this.start(port);
  }

  log(symbol) {
    if (!this.logs.has(symbol)) this.logs.set(symbol, { epoch: null, events: [] });
    return this.logs.get(symbol);
  }

  /** Append an event (seq assigned here) and send it live to matching subscriptions. */
  publish(symbol, event) {
    const log = this.log(symbol);
    if (log.epoch == null) log.epoch = newEpoch();
    const full = { ...event, symbol, seq: log.events.length + 1 };
    log.events.push(full);
    for (const conn of this.connections) {
      for (const sub of conn.subs.values()) {
        if (sub.symbol !== symbol) continue;
        const items = matches(sub.filter, full) ? [full] : [];
        this.sendEvents(conn, sub, full.seq, full.seq, items);
      }
    }
    return full.seq;
  }

  sendEvents(conn, sub, from, to, items) {
    const log = this.log(sub.symbol);
    this.send(conn, {
      op: "events",
      sub: sub.id,
      symbol: sub.symbol,
      epoch: log.epoch,
      from_seq: from,
      to_seq: to,
      items,
    });
  }

  /** A new epoch for `symbol` (Redis lost its state): reset + fresh history to every subscriber. */
  newEpoch(symbol) {
    const log = this.log(symbol);
    log.epoch = newEpoch();
    log.events = [];
    for (const conn of this.connections) {
      for (const sub of conn.subs.values()) {
        if (sub.symbol !== symbol) continue;
        this.send(conn, { op: "reset", sub: sub.id, symbol, reason: "epoch changed" });
        this._sendHistory(conn, sub, sub.history ?? {});
      }
    }
  }

  send(conn, frame) {
    if (this.silent || conn.silent) return;
    if (conn.drop > 0 && frame.op === "events") {
      conn.drop -= 1;
      return;
    }
    if (conn.ws.readyState === 1) conn.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** Subscribe frames received so far (optionally for one symbol). */
  subscribes(symbol) {
    return this.received
      .filter((r) => r.frame.op === "subscribe" && (!symbol || r.frame.symbol === symbol))
      .map((r) => r.frame);
  }

  _onConnection(ws, url) {
    const conn = { ws, subs: new Map(), drop: 0, silent: false, url };
    this.connections.add(conn);
    ws.on("close", () => this.connections.delete(conn));
    ws.on("error", () => {});
    ws.on("message", (data, isBinary) => {
      if (isBinary) return ws.close(1003, "binary");
      let frame;
      try {
        frame = JSON.parse(String(data));
      } catch {
        return this.send(conn, { op: "error", code: "bad_request", message: "not JSON" });
      }
      this.received.push({ conn, frame });
      this.options.onFrame?.(conn, frame);
      return this._handle(conn, frame);
    });
    this.send(conn, {
      op: "hello",
      protocol: 1,
      server: "signalpush/mock",
      heartbeat_s: this.options.heartbeat_s ?? 20,
    });
  }

  _handle(conn, frame) {
    if (frame.op === "ping") {
      this.send(conn, { op: "pong", ref: frame.ref, time: Date.now() });
      return;
    }
    if (frame.op === "unsubscribe") {
      for (const [key, sub] of conn.subs) if (sub.id === frame.sub) conn.subs.delete(key);
      return;
    }
    if (frame.op !== "subscribe") {
      this.send(conn, {
        op: "error",
        ref: frame.ref,
        code: "bad_request",
        message: `unknown op ${frame.op}`,
      });
      return;
    }
    if (this.options.refuseSymbol && frame.symbol === this.options.refuseSymbol) {
      this.send(conn, { op: "error", ref: frame.ref, code: "forbidden", message: "symbol not allowed" });
      return;
    }
    const key = `${frame.symbol}|${JSON.stringify(frame.filter ?? {})}`;
    const id = `g${[...key].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7).toString(36)}`;
    const sub = { id, symbol: frame.symbol, filter: frame.filter ?? null, history: frame.history ?? null };
    conn.subs.set(key, sub);
    const log = this.log(frame.symbol);
    const seq = log.events.length;
    this.send(conn, {
      op: "subscribed",
      ref: frame.ref,
      sub: id,
      symbol: frame.symbol,
      epoch: log.epoch,
      seq,
    });
    if (frame.resume) {
      if (frame.resume.epoch !== log.epoch || frame.resume.seq > seq) {
        this.send(conn, { op: "reset", sub: id, symbol: frame.symbol, reason: "epoch changed" });
        this._sendHistory(conn, sub, frame.history ?? {});
      } else if (frame.resume.seq < seq) {
        const missed = log.events.slice(frame.resume.seq);
        this.sendEvents(
          conn,
          sub,
          frame.resume.seq + 1,
          seq,
          missed.filter((e) => matches(sub.filter, e)),
        );
      }
    } else if (frame.history) {
      this._sendHistory(conn, sub, frame.history);
    }
  }

  _sendHistory(conn, sub, history) {
    const log = this.log(sub.symbol);
    const events = log.events.filter((e) => matches(sub.filter, e));
    const data = historyData(events);
    const frame = {
      op: "history",
      sub: sub.id,
      symbol: sub.symbol,
      epoch: log.epoch,
      reset: false,
      to_seq: log.events.length,
      data,
    };
    if (history.figure && this.options.figure)
      frame.figure = this.options.figure(sub.symbol, data, history, events);
    this.send(conn, frame);
  }

  async _serveHttp(req, res) {
    const url = new URL(req.url, "http://x");
    const path = url.pathname;
    try {
      if (path === "/api/bots") return this._json(res, { bots: this.options.apiBots ?? [] });
      if (path === "/api/alerts") return this._json(res, { active: [], recent: [] });
      if (path === "/api/day") {
        // An empty day book at the symbol's last seq: live trades after it count (wall-daybook.js).
        const log = this.logs.get(url.searchParams.get("symbol"));
        const start = Math.floor(Date.now() / 86_400_000) * 86_400_000;
        return this._json(res, {
          epoch: log?.epoch ?? null,
          to_seq: log?.events.length ?? 0,
          day_start: start,
          day_end: start + 86_400_000,
          positions: [],
        });
      }
      if (path === "/api/symbols") {
        const symbols = [...this.logs].map(([symbol, log]) => ({
          symbol,
          epoch: log.epoch,
          seq: log.events.length,
        }));
        return this._json(res, { symbols: this.options.apiSymbols ?? symbols });
      }
      let file;
      if (path === "/vendor/plotly.min.js") file = this.options.plotlyPath;
      else if (path === "/wall" || path === "/")
        file = join(CLIENT_DIR, path === "/" ? "index.html" : "wall.html");
      else if (path.startsWith("/client/"))
        file = join(CLIENT_DIR, normalize(path.slice("/client/".length)).replace(/^(\.\.[/\\])+/, ""));
      if (!file) throw new Error("not found");
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end("not found");
    }
    return undefined;
  }

  _json(res, body) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  }
}

export async function startMockServer(options) {
  return new MockServer(options).start();
}
