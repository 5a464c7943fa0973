// SignalPushClient against a scripted protocol server (tests/helpers/mock-server.js), over real sockets.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { WebSocketServer } from "ws";
import { candle, MINUTE, signal, T0 } from "./helpers/fixtures.js";
import { makeClient, range, recorder, sleep, waitUntil } from "./helpers/harness.js";
import { startMockServer } from "./helpers/mock-server.js";

async function serverFor(t, options) {
  const server = await startMockServer(options);
  t.after(() => server.stop());
  return server;
}

/** A bare websocket server for handshake-level cases; every socket is cut when the test ends. */
async function startWss(t, onConnection, port = 0) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port });
  await new Promise((r) => wss.once("listening", r));
  wss.on("connection", onConnection);
  t.after(async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise((r) => wss.close(r));
  });
  return wss;
}

function publishCandles(server, symbol, from, to) {
  for (let i = from; i <= to; i++) server.publish(symbol, candle(T0 + i * MINUTE, 100 + i));
}

test("history is applied, then live events are appended in order", async (t) => {
  const server = await serverFor(t);
  publishCandles(server, "BTCUSDT", 1, 5);
  const client = makeClient(server.url, {}, t);
  const rec = recorder();
  const sub = client.subscribe(
    { symbol: "BTCUSDT", history: { minutes: 60, max_points: 500 } },
    rec.handlers,
  );
  await waitUntil(() => rec.histories.length === 1, { message: "history" });
  assert.equal(rec.histories[0].to_seq, 5);
  assert.deepEqual(rec.histories[0].data.candle.close, [101, 102, 103, 104, 105]);
  assert.equal(sub.lastSeq, 5);
  assert.equal(sub.state, "live");
  assert.equal(client.state, "live");
  assert.deepEqual(server.subscribes("BTCUSDT")[0].history, { minutes: 60, max_points: 500 });

  publishCandles(server, "BTCUSDT", 6, 8);
  await waitUntil(() => sub.lastSeq === 8, { message: "live events" });
  assert.deepEqual(rec.seqs(), [6, 7, 8]);
  assert.equal(sub.epoch, server.log("BTCUSDT").epoch);
  assert.ok(Date.now() - sub.lastEventAt < 2000);
});

test("duplicates are dropped: frames overlapping what the client has deliver only new items", async (t) => {
  const server = await serverFor(t);
  publishCandles(server, "ETHUSDT", 1, 3);
  const client = makeClient(server.url, {}, t);
  const rec = recorder();
  const sub = client.subscribe({ symbol: "ETHUSDT", history: {} }, rec.handlers);
  await waitUntil(() => sub.state === "live");
  publishCandles(server, "ETHUSDT", 4, 6);
  await waitUntil(() => sub.lastSeq === 6);
  const [conn] = server.connections;
  const [s] = conn.subs.values();
  const log = server.log("ETHUSDT").events;
  server.sendEvents(conn, s, 2, 6, log.slice(1, 6)); // all already seen
  server.sendEvents(conn, s, 5, 6, log.slice(4, 6));
  publishCandles(server, "ETHUSDT", 7, 7);
  server.sendEvents(conn, s, 7, 7, log.slice(6, 7)); // the same frame twice
  await waitUntil(() => sub.lastSeq === 7);
  await sleep(50);
  assert.deepEqual(rec.seqs(), [4, 5, 6, 7]);
  assert.equal(client.stats.duplicatesDropped, 5 + 2 + 1);
  assert.equal(client.stats.breaks, 0);
});

test("a contiguity break re-subscribes with resume from the last seq and loses nothing", async (t) => {
  const server = await serverFor(t);
  publishCandles(server, "SOLUSDT", 1, 4);
  const client = makeClient(server.url, {}, t);
  const rec = recorder();
  const sub = client.subscribe(
    { symbol: "SOLUSDT", filter: { kinds: ["candle", "signal"] }, history: { minutes: 30 } },
    rec.handlers,
  );
  await waitUntil(() => sub.state === "live");
  const groupId = sub.id;
  const [conn] = server.connections;
  conn.drop = 2; // the live path loses seqs 5 and 6
  publishCandles(server, "SOLUSDT", 5, 9);
  await waitUntil(() => sub.lastSeq === 9, { message: "resumed to 9" });
  assert.deepEqual(
    rec.seqs(),
    [5, 6, 7, 8, 9].filter((s) => s > 4),
  );
  assert.equal(client.stats.breaks, 1);
  const subscribes = server.subscribes("SOLUSDT");
  assert.equal(subscribes.length, 2);
  assert.deepEqual(subscribes[1].resume, { epoch: server.log("SOLUSDT").epoch, seq: 4 });
  assert.equal(subscribes[1].history, undefined);
  assert.deepEqual(subscribes[1].filter, { kinds: ["candle", "signal"] });
  const unsub = server.received.find((r) => r.frame.op === "unsubscribe");
  assert.equal(unsub.frame.sub, groupId);
  assert.ok(server.received.indexOf(unsub) < server.received.findIndex((r) => r.frame === subscribes[1]));
  assert.equal(rec.histories.length, 1);
});

test("a server restart (close 1012) reconnects quickly and resumes: nothing lost, nothing twice", async (t) => {
  const server = await serverFor(t);
  publishCandles(server, "BTCUSDT", 1, 10);
  server.publish("ETHUSDT", signal(T0, { confidence: 0.9 }));
  const client = makeClient(server.url, { backoff: { initialMs: 100, maxMs: 5000 } }, t);
  const btc = recorder();
  const eth = recorder();
  const a = client.subscribe({ symbol: "BTCUSDT", history: { minutes: 60 } }, btc.handlers);
  const b = client.subscribe({ symbol: "ETHUSDT", filter: { min_confidence: 0.5 } }, eth.handlers);
  await waitUntil(() => a.state === "live" && b.state === "live");
  assert.equal(b.lastSeq, 1); // no history asked: position from `subscribed`
  publishCandles(server, "BTCUSDT", 11, 12);
  await waitUntil(() => a.lastSeq === 12);

  await server.restart(150);
  publishCandles(server, "BTCUSDT", 13, 15); // published while the client reconnects
  server.publish("ETHUSDT", signal(T0 + MINUTE, { confidence: 0.7 }));
  await waitUntil(() => a.lastSeq === 15 && b.lastSeq === 2, { message: "resumed after restart" });
  publishCandles(server, "BTCUSDT", 16, 16);
  await waitUntil(() => a.lastSeq === 16);

  assert.deepEqual(btc.seqs(), range(11, 16));
  assert.deepEqual(eth.seqs(), [2]);
  assert.equal(btc.histories.length, 1);
  const down = client.states.find((s) => s.state === "down");
  assert.equal(down.code, 1012);
  assert.ok(down.retryInMs < 100, `1012 retries within initialMs, got ${down.retryInMs}`);
  const resumed = server.subscribes("BTCUSDT").at(-1);
  assert.deepEqual(resumed.resume, { epoch: server.log("BTCUSDT").epoch, seq: 12 });
  assert.equal(resumed.history, undefined, "a resume does not ask for history again");
  assert.deepEqual(server.subscribes("ETHUSDT").at(-1).resume, {
    epoch: server.log("ETHUSDT").epoch,
    seq: 1,
  });
});

test("reset: onReset, then a fresh history of the subscription's own window, then the new epoch's events", async (t) => {
  const server = await serverFor(t);
  publishCandles(server, "ADAUSDT", 1, 6);
  const client = makeClient(server.url, {}, t);
  const rec = recorder();
  const order = [];
  const sub = client.subscribe(
    { symbol: "ADAUSDT", history: { minutes: 90, max_points: 100 } },
    {
      ...rec.handlers,
      onReset: (f) => {
        order.push("reset");
        rec.handlers.onReset(f);
      },
      onHistory: (f) => {
        order.push("history");
        rec.handlers.onHistory(f);
      },
    },
  );
  await waitUntil(() => sub.state === "live");
  const oldEpoch = sub.epoch;
  server.newEpoch("ADAUSDT");
  publishCandles(server, "ADAUSDT", 1, 2);
  await waitUntil(() => sub.lastSeq === 2 && sub.epoch !== oldEpoch, { message: "new epoch" });
  assert.deepEqual(order, ["history", "reset", "history"]);
  assert.equal(rec.histories[1].epoch, server.log("ADAUSDT").epoch);
  assert.deepEqual(rec.seqs(), [1, 2]);

  // A reset found on resume (the server lost the epoch while we were away) asks for our own window again.
  server.newEpoch("ADAUSDT");
  await waitUntil(() => rec.histories.length === 3);
  const lastEpoch = server.log("ADAUSDT").epoch;
  await server.restart();
  server.newEpoch("ADAUSDT");
  publishCandles(server, "ADAUSDT", 1, 3);
  await waitUntil(() => sub.epoch !== lastEpoch && sub.lastSeq === 3 && sub.state === "live", {
    message: "reset on resume",
  });
  const subscribes = server.subscribes("ADAUSDT");
  assert.ok(subscribes.at(-2).resume, "reconnect resumes first");
  assert.deepEqual(subscribes.at(-1).history, { minutes: 90, max_points: 100 });
});

test("empty events frames move the position; an unpublished symbol (epoch null, seq 0) starts at 0", async (t) => {
  const server = await serverFor(t);
  const client = makeClient(server.url, {}, t);
  const rec = recorder();
  const sub = client.subscribe({ symbol: "NEWUSDT", filter: { kinds: ["signal"] } }, rec.handlers);
  await waitUntil(() => sub.state === "live");
  assert.equal(rec.subscribed[0].epoch, null);
  assert.equal(sub.lastSeq, 0);
  assert.equal(sub.epoch, null);
  publishCandles(server, "NEWUSDT", 1, 3); // filtered out: empty frames
  server.publish("NEWUSDT", signal(T0));
  await waitUntil(() => sub.lastSeq === 4);
  assert.deepEqual(rec.seqs(), [4]);
  assert.equal(sub.epoch, server.log("NEWUSDT").epoch);
  assert.equal(rec.frames.length, 4);
  assert.equal(client.stats.breaks, 0);
});

test("subscriptions with the same symbol and filter share one server subscription", async (t) => {
  const server = await serverFor(t);
  publishCandles(server, "BTCUSDT", 1, 2);
  const client = makeClient(server.url, {}, t);
  const one = recorder();
  const two = recorder();
  const a = client.subscribe({ symbol: "BTCUSDT", filter: { bots: ["x", "y"] } }, one.handlers);
  await waitUntil(() => a.state === "live");
  const b = client.subscribe({ symbol: "BTCUSDT", filter: { bots: ["y", "x"] } }, two.handlers);
  assert.equal(b.state, "live");
  assert.equal(server.subscribes().length, 1);
  assert.equal(b.id, a.id);
  publishCandles(server, "BTCUSDT", 3, 4);
  await waitUntil(() => one.items.length === 2 && two.items.length === 2);
  a.unsubscribe();
  publishCandles(server, "BTCUSDT", 5, 5);
  await waitUntil(() => two.items.length === 3);
  assert.equal(one.items.length, 2);
  assert.ok(
    !server.received.some((r) => r.frame.op === "unsubscribe"),
    "the group stays while one member is left",
  );

  // A late joiner asking for history reloads the shared subscription; both members get it.
  const c = client.subscribe(
    { symbol: "BTCUSDT", filter: { bots: ["x", "y"] }, history: { minutes: 5 } },
    one.handlers,
  );
  await waitUntil(() => one.histories.length === 1 && two.histories.length === 1 && c.state === "live");
  publishCandles(server, "BTCUSDT", 6, 6);
  await waitUntil(() => two.items.length === 4 && one.items.length === 3);
  b.unsubscribe();
  c.unsubscribe();
  await waitUntil(() => server.received.filter((r) => r.frame.op === "unsubscribe").length === 2);
  assert.equal(server.connections.values().next().value.subs.size, 0);
});

test("bad frames are counted and reported; the client keeps going", async (t) => {
  const server = await serverFor(t);
  const client = makeClient(server.url, {}, t);
  const rec = recorder();
  const sub = client.subscribe({ symbol: "BTCUSDT" }, rec.handlers);
  await waitUntil(() => sub.state === "live");
  const [conn] = server.connections;
  const [s] = conn.subs.values();
  for (const bad of [
    "not json",
    "[1,2]",
    "null",
    `{"op":"events","sub":"${s.id}","from_seq":"x"}`,
    '{"op":"mystery"}',
  ]) {
    server.send(conn, bad);
  }
  conn.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  const throwing = client.subscribe(
    { symbol: "ETHUSDT" },
    {
      onEvents: () => {
        throw new Error("handler bug");
      },
    },
  );
  await waitUntil(() => throwing.state === "live");
  server.publish("ETHUSDT", candle(T0, 1));
  server.publish("BTCUSDT", candle(T0, 1));
  await waitUntil(() => rec.items.length === 1 && throwing.lastSeq === 1);
  assert.equal(client.stats.badFrames, 5);
  assert.ok(client.errors.some((e) => /handler bug/.test(e.message)));
  assert.equal(client.state, "live");
  assert.equal(client.stats.connects, 1);
});

test("silence turns the state stale, then the client gives up on the link and reconnects", async (t) => {
  const server = await serverFor(t, { heartbeat_s: 1 });
  const client = makeClient(server.url, { staleAfterMs: 300, deadAfterMs: 900 }, t);
  const sub = client.subscribe({ symbol: "BTCUSDT" }, {});
  await waitUntil(() => sub.state === "live");
  await sleep(500);
  assert.equal(client.state, "live", "pings keep a healthy link live");
  assert.ok(server.received.some((r) => r.frame.op === "ping"));
  server.connections.values().next().value.silent = true; // a half-open link: nothing comes back
  await waitUntil(() => client.state === "stale", { message: "stale" });
  await waitUntil(() => client.states.some((s) => s.state === "down" && /silent/.test(s.reason)), {
    message: "abandon",
  });
  await waitUntil(() => client.state === "live" && client.stats.connects === 2 && sub.state === "live", {
    message: "back",
  });
});

test("close 4008 (too slow) reconnects and resumes from the last seq", async (t) => {
  const server = await serverFor(t);
  publishCandles(server, "BTCUSDT", 1, 3);
  const client = makeClient(server.url, {}, t);
  const rec = recorder();
  const sub = client.subscribe({ symbol: "BTCUSDT", history: {} }, rec.handlers);
  await waitUntil(() => sub.state === "live");
  const [conn] = server.connections;
  conn.ws.close(4008, "too slow");
  publishCandles(server, "BTCUSDT", 4, 5);
  await waitUntil(() => sub.lastSeq === 5 && client.stats.connects === 2);
  assert.deepEqual(rec.seqs(), [4, 5]);
  assert.deepEqual(server.subscribes().at(-1).resume, { epoch: server.log("BTCUSDT").epoch, seq: 3 });
  assert.equal(client.states.find((s) => s.state === "down").code, 4008);
});

test("auth failures (close 4001, or a 401 handshake) go down with the reason and retry slowly", async (t) => {
  const server = await serverFor(t, { token: "good" });
  const refused = makeClient(server.url, { token: "bad", authRetryMs: 60000 }, t);
  await waitUntil(() => refused.state === "down");
  const down = refused.states.at(-1);
  assert.equal(down.auth, "unauthorized");
  assert.ok(down.retryInMs >= 30000, `slow retry, got ${down.retryInMs}`);

  const client = makeClient(server.url, { token: "good", authRetryMs: 60000 }, t);
  await waitUntil(() => client.state === "live");
  server.connections.values().next().value.ws.close(4001, "token expired");
  await waitUntil(() => client.state === "down");
  assert.equal(client.states.at(-1).auth, "unauthorized");
  assert.equal(client.states.at(-1).reason, "token expired");
  await sleep(300);
  assert.equal(client.stats.connects, 1, "no hot loop");
  assert.equal(refused.stats.connects, 1);
});

test("subscribe errors: forbidden fails the subscription and nothing else", async (t) => {
  const server = await serverFor(t, { refuseSymbol: "SECRET" });
  const client = makeClient(server.url, {}, t);
  const rec = recorder();
  const bad = client.subscribe({ symbol: "SECRET" }, rec.handlers);
  const good = client.subscribe({ symbol: "BTCUSDT" }, {});
  await waitUntil(() => bad.state === "failed" && good.state === "live");
  assert.equal(rec.errors[0].code, "forbidden");
  assert.equal(bad.error.code, "forbidden");
  assert.equal(client.state, "live");
});

test("reconnect backoff grows with full jitter and stays within its bounds", async (t) => {
  // A port that refuses connections: bind, note the port, close.
  const probe = createServer();
  await new Promise((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));
  const client = makeClient(`ws://127.0.0.1:${port}/ws`, { backoff: { initialMs: 20, maxMs: 160 } }, t);
  await waitUntil(() => client.states.filter((s) => s.state === "down").length >= 7, {
    message: "7 retries",
  });
  const delays = client.states.filter((s) => s.state === "down").map((s) => s.retryInMs);
  const caps = [20, 40, 80, 160, 160, 160, 160];
  delays
    .slice(0, 7)
    .forEach(
      (delay, i) => void assert.ok(delay >= 0 && delay < caps[i], `retry ${i}: ${delay} < ${caps[i]}`),
    );
  client.close();
  assert.equal(client.state, "closed");

  // Now something listens on that port: the client that kept trying gets in.
  await startWss(
    t,
    (ws) => ws.send(JSON.stringify({ op: "hello", protocol: 1, server: "x", heartbeat_s: 20 })),
    port,
  );
  const late = makeClient(`ws://127.0.0.1:${port}/ws`, {}, t);
  await waitUntil(() => late.state === "live");
});

test("a server speaking another protocol version is refused without a hot loop", async (t) => {
  let connections = 0;
  const wss = await startWss(t, (ws) => {
    connections += 1;
    ws.send(JSON.stringify({ op: "hello", protocol: 2, server: "future", heartbeat_s: 20 }));
  });
  const client = makeClient(`ws://127.0.0.1:${wss.address().port}/ws`, { authRetryMs: 60000 }, t);
  await waitUntil(() => client.state === "down");
  assert.match(client.states.at(-1).reason, /protocol 2/);
  await sleep(200);
  assert.equal(connections, 1);
});

test("perf: full rows, then changed rows merged; sent again after a reconnect; errors to its handler", async (t) => {
  const received = [];
  const wss = await startWss(t, (ws) => {
    ws.send(JSON.stringify({ op: "hello", protocol: 1, server: "x", heartbeat_s: 20 }));
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data));
      received.push(frame);
      if (frame.op !== "perf") return;
      if (frame.strategies) {
        ws.send(JSON.stringify({ op: "error", ref: frame.ref, code: "forbidden", message: "no" }));
        return;
      }
      const row = (bot, signals) => ({ bot, strategy: "s", signals, calibration: [] });
      ws.send(
        JSON.stringify({
          op: "perf",
          sub: "perf",
          ref: frame.ref,
          full: true,
          time: 1,
          rows: [row("a", 1), row("b", 2)],
        }),
      );
      ws.send(JSON.stringify({ op: "perf", sub: "perf", full: false, time: 2, rows: [row("b", 3)] }));
    });
  });
  const client = makeClient(`ws://127.0.0.1:${wss.address().port}/ws`, {}, t);
  const seen = [];
  const feed = client.perf({ bots: ["a", "b"] }, { onRows: (rows) => seen.push(rows) });
  await waitUntil(() => seen.length === 2, { message: "two perf frames" });
  assert.deepEqual(
    seen[1].map((r) => [r.bot, r.signals]),
    [
      ["a", 1],
      ["b", 3],
    ],
  );
  assert.deepEqual(received[0].bots, ["a", "b"]);
  for (const ws of wss.clients) ws.terminate();
  await waitUntil(() => received.filter((f) => f.op === "perf").length === 2, { message: "perf sent again" });
  await waitUntil(() => seen.length === 4, { message: "rows after the reconnect" });
  assert.equal(feed.rows.size, 2);
  feed.close();
  await waitUntil(() => received.some((f) => f.op === "unsubscribe" && f.sub === "perf"), {
    message: "unsubscribe",
  });
  const errors = [];
  client.perf({ strategies: ["x"] }, { onError: (frame) => errors.push(frame) });
  await waitUntil(() => errors.length === 1, { message: "the error" });
  assert.equal(errors[0].code, "forbidden");
});
