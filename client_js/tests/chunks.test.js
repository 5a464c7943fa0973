// A frame over the server's max_send_frame_bytes arrives as chunk frames (docs/protocol.md,
// "Frame size"): the client joins them, in any order, with other frames in between.

import assert from "node:assert/strict";
import { test } from "node:test";
import { WebSocketServer } from "ws";
import { makeClient, recorder, waitUntil } from "./helpers/harness.js";

function chunksOf(text, id, pieces) {
  const size = Math.ceil(text.length / pieces);
  const out = [];
  for (let i = 0; i < pieces; i++) {
    out.push(
      JSON.stringify({
        op: "chunk",
        id,
        index: i,
        count: pieces,
        data: text.slice(i * size, (i + 1) * size),
      }),
    );
  }
  return out;
}

test("a history frame sent as chunks is joined and applied like one frame", async (t) => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.once("listening", r));
  t.after(async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise((r) => wss.close(r));
  });
  const closes = Array.from({ length: 400 }, (_, i) => 100 + i + 0.5);
  const ts = closes.map((_, i) => 1_732_560_000_000 + i * 60_000);
  wss.on("connection", (ws) => {
    ws.send(JSON.stringify({ op: "hello", protocol: 1, server: "test", heartbeat_s: 20, instance: "t:1" }));
    ws.on("message", (raw) => {
      const request = JSON.parse(String(raw));
      if (request.op !== "subscribe") return;
      ws.send(
        JSON.stringify({
          op: "subscribed",
          ref: request.ref,
          sub: "g1",
          symbol: request.symbol,
          epoch: "e1",
          seq: 400,
        }),
      );
      const history = JSON.stringify({
        op: "history",
        sub: "g1",
        symbol: request.symbol,
        epoch: "e1",
        reset: false,
        to_seq: 400,
        data: { candle: { ts, open: closes, high: closes, low: closes, close: closes, volume: closes } },
      });
      const [first, second, third] = chunksOf(history, 7, 3);
      ws.send(third); // out of order, and another frame in between
      ws.send(JSON.stringify({ op: "status", bus: "up", time: Date.now() }));
      ws.send(first);
      ws.send(second);
    });
  });
  const client = makeClient(`ws://127.0.0.1:${wss.address().port}/ws`, {}, t);
  const rec = recorder();
  const sub = client.subscribe({ symbol: "BTCUSDT", history: { minutes: 60 } }, rec.handlers);
  await waitUntil(() => rec.histories.length === 1, { message: "the joined history" });
  assert.deepEqual(rec.histories[0].data.candle.close, closes);
  assert.equal(sub.lastSeq, 400);
  assert.equal(client.stats.badFrames, 0);
});
