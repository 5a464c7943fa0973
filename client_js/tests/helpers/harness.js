// Helpers shared by the tests: a client wired to `ws`, event recorders and polling waits.
//
// Tests that only use `server.url` and `server.publish(symbol, event)` are protocol tests and
// can run against a real gateway: give them an object with those two members (for example
// one whose publish runs `signalpush publish ...` or a Python Publisher) instead of MockServer.

import WebSocket from "ws";
import { SignalPushClient } from "../../signalpush.js";

const SCALE = Number(process.env.SIGNALPUSH_TEST_TIME_SCALE ?? 1);

/** Poll `predicate` until it is truthy; fails after `timeoutMs` (scaled for slow machines). */
export async function waitUntil(predicate, { timeoutMs = 5000, message = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs * SCALE;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${message}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A client on `url` using the `ws` package, recording its states; closed by `cleanup`. */
export function makeClient(url, options = {}, cleanup = null) {
  const states = [];
  const errors = [];
  const client = new SignalPushClient(url, {
    WebSocket,
    backoff: { initialMs: 50, maxMs: 400 },
    ...options,
    onState: (state, info) => {
      states.push({ state, ...info });
      options.onState?.(state, info);
    },
    onError: (error) => errors.push(error),
  });
  client.states = states;
  client.errors = errors;
  cleanup?.after(() => client.close());
  return client;
}

/** Handlers that record everything a subscription delivers. */
export function recorder() {
  const rec = { histories: [], resets: [], frames: [], items: [], errors: [], subscribed: [] };
  rec.handlers = {
    onHistory: (frame) => rec.histories.push(frame),
    onEvents: (items, frame) => {
      rec.frames.push(frame);
      rec.items.push(...items);
    },
    onReset: (frame) => rec.resets.push(frame),
    onError: (error) => rec.errors.push(error),
    onSubscribed: (frame) => rec.subscribed.push(frame),
  };
  rec.seqs = () => rec.items.map((item) => item.seq);
  return rec;
}

/** 1..n */
export const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
