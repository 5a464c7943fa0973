// client.replay() against a scripted server speaking the replay frames of docs/protocol.md.

import assert from "node:assert/strict";
import { test } from "node:test";
import { WebSocketServer } from "ws";
import { toMillis } from "../signalpush-replay.js";
import { signal, T0 } from "./helpers/fixtures.js";
import { makeClient, recorder, waitUntil } from "./helpers/harness.js";

/** A server that answers one replay: history at `from`, events 3..5, then the given ending. */
async function replayServer(t, ending) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.once("listening", r));
  const received = [];
  wss.on("connection", (ws) => {
    const send = (frame) => ws.send(JSON.stringify(frame));
    send({ op: "hello", protocol: 1, server: "mock", heartbeat_s: 20, instance: "mock" });
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data));
      received.push(frame);
      if (frame.op === "subscribe" && frame.replay) {
        const sub = "r1";
        send({
          op: "subscribed",
          ref: frame.ref,
          sub,
          symbol: frame.symbol,
          filter: {},
          replay: frame.replay,
        });
        send({ op: "history", sub, symbol: frame.symbol, epoch: "e1", reset: false, to_seq: 2, data: {} });
        send({
          op: "replay",
          sub,
          symbol: frame.symbol,
          state: "playing",
          time: frame.replay.from,
          speed: "max",
        });
        const items = [3, 4, 5].map((seq) => ({ ...signal(T0 + seq * 1000), seq }));
        send({ op: "events", sub, symbol: frame.symbol, epoch: "e1", from_seq: 3, to_seq: 6, items });
        ending(send, frame);
      }
    });
  });
  t.after(async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise((r) => wss.close(r));
  });
  return { url: `ws://127.0.0.1:${wss.address().port}/ws`, received };
}

test("a replay delivers history and events, and its controls send replay_control", async (t) => {
  const server = await replayServer(t, (send) =>
    send({ op: "replay", sub: "r1", symbol: "BTCUSDT", state: "end", time: T0 + 6000, speed: "max" }),
  );
  const client = makeClient(server.url, {}, t);
  const rec = recorder();
  const states = [];
  const replay = client.replay(
    { symbol: "BTCUSDT", from: new Date(T0), to: T0 + 6000, speed: "max" },
    { ...rec.handlers, onState: (frame) => states.push(frame.state) },
  );
  await waitUntil(() => replay.state === "ended", { message: "the end frame" });
  assert.equal(rec.histories.length, 1);
  assert.deepEqual(rec.seqs(), [3, 4, 5]);
  assert.deepEqual(states, ["playing", "end"]);
  assert.equal(replay.id, "r1");
  assert.equal(replay.lastSeq, 6);
  const subscribe = server.received.find((f) => f.op === "subscribe");
  assert.deepEqual(subscribe.replay, { from: T0, to: T0 + 6000, speed: "max" });

  replay.pause();
  replay.resume();
  replay.seek("2025-01-06T09:00:30Z");
  replay.setSpeed(10);
  await waitUntil(() => server.received.filter((f) => f.op === "replay_control").length === 4);
  const controls = server.received.filter((f) => f.op === "replay_control");
  assert.deepEqual(
    controls.map((f) => [f.sub, f.action, f.to ?? f.speed ?? null]),
    [
      ["r1", "pause", null],
      ["r1", "resume", null],
      ["r1", "seek", T0 + 30_000],
      ["r1", "speed", 10],
    ],
  );
});

test("the handover to live continues the events with no hole and no duplicate", async (t) => {
  const server = await replayServer(t, (send, frame) => {
    send({
      op: "replay",
      sub: "r1",
      symbol: "BTCUSDT",
      state: "live",
      time: T0,
      speed: "max",
      epoch: "e1",
      seq: 7,
    });
    send({ op: "subscribed", ref: frame.ref, sub: "g1", symbol: "BTCUSDT", epoch: "e1", seq: 9 });
    const items = [8, 9].map((seq) => ({ ...signal(T0 + seq * 1000), seq }));
    send({ op: "events", sub: "g1", symbol: "BTCUSDT", epoch: "e1", from_seq: 8, to_seq: 9, items });
  });
  const client = makeClient(server.url, {}, t);
  const rec = recorder();
  const lives = [];
  const replay = client.replay(
    { symbol: "BTCUSDT", from: T0, to: "live", speed: "max" },
    { ...rec.handlers, onLive: (frame) => lives.push(frame) },
  );
  await waitUntil(() => replay.lastSeq === 9, { message: "live events" });
  assert.deepEqual(rec.seqs(), [3, 4, 5, 8, 9]);
  assert.equal(replay.state, "live");
  assert.equal(replay.id, "g1");
  assert.equal(lives.length, 1);
  assert.equal(client.stats.breaks, 0);
});

test("goLive leaves the replay for a fresh live subscription", async (t) => {
  const server = await replayServer(t, () => {});
  const client = makeClient(server.url, {}, t);
  const replay = client.replay({ symbol: "BTCUSDT", from: T0, history: { minutes: 30 } }, {});
  await waitUntil(() => replay.lastSeq === 6);
  replay.goLive();
  await waitUntil(() => server.received.filter((f) => f.op === "subscribe").length === 2);
  const [, live] = server.received.filter((f) => f.op === "subscribe");
  assert.equal(live.replay, undefined);
  assert.deepEqual(live.history, { minutes: 30 });
  assert.ok(server.received.some((f) => f.op === "unsubscribe" && f.sub === "r1"));
  assert.equal(replay.state, "live");
});

test("times are milliseconds, Dates or ISO texts", () => {
  assert.equal(toMillis("2025-01-06T09:00:00Z"), T0);
  assert.equal(toMillis(new Date(T0)), T0);
  assert.equal(toMillis(T0 + 0.4), T0);
  assert.throws(() => toMillis("soon"), TypeError);
  assert.throws(() => toMillis(Number.NaN), TypeError);
});
