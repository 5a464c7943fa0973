// Pure logic of signalpush.js: contiguity rule, duplicate dropping, backoff, filter keys.

import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffDelay, canonicalFilter, checkEventsFrame, subscriptionKey } from "../signalpush.js";

const items = (...seqs) => seqs.map((seq) => ({ seq, kind: "candle" }));

test("an in-order frame hands over its items and moves the position to to_seq", () => {
  const result = checkEventsFrame(
    { epoch: "e1", lastSeq: 10 },
    { epoch: "e1", from_seq: 11, to_seq: 14, items: items(11, 13) },
  );
  assert.deepEqual(result, { ok: true, items: items(11, 13), dropped: 0, epoch: "e1", lastSeq: 14 });
});

test("a frame starting earlier (shared by the group) drops what the client already has", () => {
  const result = checkEventsFrame(
    { epoch: "e1", lastSeq: 12 },
    { epoch: "e1", from_seq: 9, to_seq: 15, items: items(9, 12, 13, 15) },
  );
  assert.equal(result.ok, true);
  assert.deepEqual(
    result.items.map((i) => i.seq),
    [13, 15],
  );
  assert.equal(result.dropped, 2);
  assert.equal(result.lastSeq, 15);
});

test("a frame that starts after last + 1 is a break, whatever it carries", () => {
  assert.deepEqual(
    checkEventsFrame(
      { epoch: "e1", lastSeq: 10 },
      { epoch: "e1", from_seq: 12, to_seq: 12, items: items(12) },
    ),
    {
      ok: false,
      reason: "gap",
    },
  );
});

test("a frame of another epoch is a break; an unknown epoch is taken from the frame", () => {
  assert.equal(
    checkEventsFrame({ epoch: "e1", lastSeq: 3 }, { epoch: "e2", from_seq: 1, to_seq: 1, items: items(1) })
      .reason,
    "epoch",
  );
  const first = checkEventsFrame(
    { epoch: null, lastSeq: 0 },
    { epoch: "e9", from_seq: 1, to_seq: 2, items: items(1, 2) },
  );
  assert.equal(first.epoch, "e9");
  assert.equal(first.lastSeq, 2);
});

test("an empty frame (heartbeat) moves the position", () => {
  const result = checkEventsFrame(
    { epoch: "e1", lastSeq: 5 },
    { epoch: "e1", from_seq: 6, to_seq: 40, items: [] },
  );
  assert.equal(result.ok, true);
  assert.deepEqual(result.items, []);
  assert.equal(result.lastSeq, 40);
});

test("items out of order or without a seq inside a frame are never handed over twice", () => {
  const result = checkEventsFrame(
    { epoch: "e", lastSeq: 0 },
    { epoch: "e", from_seq: 1, to_seq: 4, items: [...items(1, 3, 2, 3), { kind: "x" }, null, ...items(4)] },
  );
  assert.deepEqual(
    result.items.map((i) => i.seq),
    [1, 3, 4],
  );
});

test("malformed ranges throw (the client counts them as bad frames)", () => {
  for (const frame of [
    { from_seq: "1", to_seq: 2 },
    { from_seq: 0, to_seq: 1 },
    { from_seq: 5, to_seq: 2 },
    {},
  ]) {
    assert.throws(() => checkEventsFrame({ epoch: "e", lastSeq: 0 }, frame), TypeError);
  }
});

test("backoff is full jitter: uniform below min(maxMs, initialMs * 2^attempt)", () => {
  const opts = { initialMs: 500, maxMs: 20000 };
  const caps = [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000];
  caps.forEach((cap, attempt) => {
    assert.equal(
      backoffDelay(attempt, opts, () => 0),
      0,
    );
    assert.equal(
      backoffDelay(attempt, opts, () => 0.999999),
      Math.floor(cap * 0.999999),
    );
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(attempt, opts);
      assert.ok(delay >= 0 && delay < cap, `attempt ${attempt}: ${delay}`);
    }
  });
  assert.ok(backoffDelay(1e6, opts) < 20000);
});

test("filters are canonical like the server's: sorted unique lists, min_confidence 0 dropped", () => {
  assert.deepEqual(canonicalFilter({ bots: ["b", "a", "b"], min_confidence: 0, sides: "buy" }), {
    bots: ["a", "b"],
    sides: ["buy"],
  });
  assert.equal(
    subscriptionKey("BTC", { bots: ["b", "a"] }),
    subscriptionKey("BTC", { bots: ["a", "b"], min_confidence: 0 }),
  );
  assert.notEqual(subscriptionKey("BTC", {}), subscriptionKey("ETH", {}));
  assert.throws(() => canonicalFilter({ botz: ["a"] }), /botz/);
  assert.throws(() => canonicalFilter({ min_confidence: 2 }), /min_confidence/);
});
