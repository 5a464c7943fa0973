// The wall as a display of the fleet (wall-fleet.js): its id, its kept token, heal decisions,
// what commands do, playlists, and the parameters a wall runs with.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  applyCommand,
  displayId,
  effectiveSearch,
  Fleet,
  fleetParams,
  healReason,
  keptToken,
  playlistStep,
  reportedParams,
} from "../wall-fleet.js";

class MemoryStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

test("display id: ?display= wins, else one generated once and kept", () => {
  const storage = new MemoryStorage();
  assert.equal(displayId("?display=lobby-left", storage), "lobby-left");
  const made = displayId("", storage, () => 0.5);
  assert.match(made, /^wall-[0-9a-z]{6}$/);
  assert.equal(
    displayId("?display=../bad", storage, () => 0.1),
    made,
    "kept, and a bad id is ignored",
  );
});

test("a display token is accepted once and kept", () => {
  const storage = new MemoryStorage();
  assert.equal(keptToken("", storage), null);
  assert.equal(keptToken("?token=abc", storage), "abc");
  assert.equal(keptToken("?display=x", storage), "abc", "after a restart without ?token=");
  assert.equal(keptToken("?token=new", storage), "new");
});

test("heal: a stalled render loop, a heap past its bound for a minute, a long uptime", () => {
  const limits = fleetParams("?stall_s=5&max_uptime_h=1");
  const base = { now: 100_000, lastFrameAt: 99_000, visible: true, heapOverSince: null, startedAt: 0 };
  assert.equal(healReason(base, limits), null);
  assert.equal(healReason({ ...base, lastFrameAt: 90_000 }, limits), "stalled");
  assert.equal(
    healReason({ ...base, lastFrameAt: 90_000, visible: false }, limits),
    null,
    "hidden tabs draw no frames",
  );
  assert.equal(healReason({ ...base, heapOverSince: 50_000 }, limits), null, "one spike is not a leak");
  assert.equal(healReason({ ...base, heapOverSince: 30_000 }, limits), "heap");
  assert.equal(healReason({ ...base, now: 3_700_000, lastFrameAt: 3_699_000 }, limits), "uptime");
  assert.equal(
    healReason({ ...base, now: 3_700_000, lastFrameAt: 3_699_000 }, fleetParams("?max_uptime_h=0")),
    null,
  );
});

test("commands: set and view reload with new parameters; theme and identify do not reload", () => {
  const set = applyCommand({}, { op: "command", action: "set", params: { symbols: "ETHUSDT", token: "x" } });
  assert.deepEqual(set, { state: { overrides: { symbols: "ETHUSDT" } }, reload: true });
  const theme = applyCommand(set.state, { action: "theme", params: { theme: "night" } });
  assert.equal(theme.reload, false);
  assert.equal(theme.state.theme, "night");
  assert.equal(applyCommand({}, { action: "theme", params: { theme: "neon" } }).state.theme, undefined);
  assert.equal(applyCommand({}, { action: "identify", params: { seconds: "3" } }).identify, 3);
  const view = applyCommand(set.state, { action: "view", params: { name: "trading-floor" } });
  assert.deepEqual(view.state, { view: "trading-floor", overrides: {} });
  assert.equal(applyCommand({}, { action: "explode" }).reload, false);
});

test("playlist: rotates between saved views every N s; an empty list stops it", () => {
  const started = applyCommand({}, { action: "playlist", params: { views: "a,b,c", every_s: "30" } }, 0);
  assert.equal(started.state.view, "a");
  assert.equal(playlistStep(started.state, 29_000), null);
  const second = playlistStep(started.state, 30_000);
  assert.equal(second.view, "b");
  const third = playlistStep(playlistStep(second, 60_000), 90_000);
  assert.equal(third.view, "a", "wraps around");
  const stopped = applyCommand(third, { action: "playlist", params: { views: "" } });
  assert.equal(stopped.state.playlist, undefined);
});

test("effective parameters: URL, then the saved view, then the operator's sets; tokens never reported", () => {
  const search = effectiveSearch(
    "?view=floor&minutes=60&token=t",
    { symbols: "A,B", minutes: "30" },
    { minutes: "15" },
  );
  const params = new URLSearchParams(search);
  assert.equal(params.get("symbols"), "A,B");
  assert.equal(params.get("minutes"), "15");
  assert.deepEqual(reportedParams(search), { view: "floor", minutes: "15", symbols: "A,B" });
});

test("a Fleet heartbeat carries the frame of the display op, and a command changes its state", async () => {
  const sent = [];
  let reloads = 0;
  const storage = new MemoryStorage();
  const fleet = new Fleet({
    search: "?display=tv-1&symbols=A",
    storage,
    session: new MemoryStorage(),
    doc: null,
  });
  await fleet.prepare(async () => ({}));
  fleet.client = { stats: { connects: 3 }, send: (frame) => sent.push(frame) > 0 };
  fleet.tiles = () => [{ id: "A", seq: 5, age_s: 1 }];
  fleet.reload = () => {
    reloads += 1;
  };
  assert.equal(fleet.beat(), true);
  assert.equal(sent[0].op, "display");
  assert.equal(sent[0].display, "tv-1");
  assert.equal(sent[0].reconnects, 2);
  assert.deepEqual(sent[0].params, { display: "tv-1", symbols: "A" });
  fleet.onFrame({ op: "command", id: "c1", action: "set", params: { symbols: "B" } });
  assert.equal(reloads, 1);
  const reborn = new Fleet({
    search: "?display=tv-1&symbols=A",
    storage,
    session: new MemoryStorage(),
    doc: null,
  });
  assert.equal(
    new URLSearchParams(await reborn.prepare(async () => ({}))).get("symbols"),
    "B",
    "kept across reload",
  );
});
