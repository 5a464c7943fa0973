/**
 * signalpush-replay.js — the flight recorder in the client: `client.replay(spec, handlers)`
 * (docs/client.md, "Replay"). A replay is its own server subscription (`sub` "r…"): the
 * history as it stood at `from`, then the recorded events paced by `speed`, with pause(),
 * resume(), seek(t), setSpeed(x) and goLive(). With `to: "live"` (or goLive()) it becomes an
 * ordinary live subscription: the handle's onLive(frame) says so, and its events continue.
 */

import { canonicalFilter, checkEventsFrame } from "./signalpush.js";

/** Milliseconds since the Unix epoch from a number, a Date or an ISO 8601 text. */
export function toMillis(value) {
  if (value instanceof Date) return value.getTime();
  if (typeof value === "number" && Number.isFinite(value)) return Math.round(value);
  if (typeof value === "string") {
    const ms = Date.parse(value);
    if (Number.isFinite(ms)) return ms;
  }
  throw new TypeError(`not a time: ${String(value).slice(0, 40)}`);
}

function call(replay, name, ...args) {
  const fn = replay._handlers[name];
  if (typeof fn !== "function") return;
  try {
    fn(...args);
  } catch (error) {
    replay._client.stats.handlerErrors += 1;
    replay._client._report(error);
  }
}

/** A running replay (returned by `client.replay`). */
export class Replay {
  constructor(registry, spec, handlers) {
    this._registry = registry;
    this._client = registry.client;
    this._handlers = handlers ?? {};
    this.symbol = spec.symbol;
    this.filter = canonicalFilter(spec.filter);
    this.history = spec.history ?? null;
    this.from = toMillis(spec.from);
    this.to = spec.to == null || spec.to === "live" ? "live" : toMillis(spec.to);
    /** The speed asked (0.1..1000 or "max"), the server's once it answered. */
    this.speed = spec.speed ?? 1;
    /** "pending" | "playing" | "paused" | "ended" | "live" | "failed" | "closed". */
    this.state = "pending";
    /** The server's id of the replay ("r…"), then of the live subscription after the handover. */
    this.id = null;
    this.epoch = null;
    this.lastSeq = null;
    this.error = null;
    this._ref = null;
    this._time = this.from; // recorded time at _timeAt (local clock)
    this._timeAt = Date.now();
    this._live = false;
  }

  /** The recorded time being played now (ms), extrapolated between frames at the speed. */
  get time() {
    if (this.state !== "playing" || this.speed === "max") return this._time;
    return this._time + (Date.now() - this._timeAt) * this.speed;
  }

  pause() {
    this._control({ action: "pause" });
  }
  resume() {
    this._control({ action: "resume" });
  }
  /** Jump to time `t` (ms, Date or ISO): a fresh onHistory at that time follows. */
  seek(t) {
    this._control({ action: "seek", to: toMillis(t) });
  }
  /** 0.1..1000, or "max". */
  setSpeed(speed) {
    this._control({ action: "speed", speed });
  }
  /** Leave the replay for the live stream now: onLive, then onHistory (fresh) and live events. */
  goLive() {
    if (this._live || this.state === "closed") return;
    this._registry.goLive(this);
  }
  /** End the replay (or the live subscription it became). */
  close() {
    if (this.state === "closed") return;
    this._registry.stop(this);
    this.state = "closed";
  }

  _control(fields) {
    if (this._live || this.id == null || this.state === "closed") return false;
    return this._client._send({ op: "replay_control", sub: this.id, ...fields });
  }

  _setTime(ms) {
    if (Number.isFinite(ms)) {
      this._time = ms;
      this._timeAt = Date.now();
    }
  }
}

/** Every replay of one client: frames routed by ref (subscribe answers) and by sub. */
export class ReplayRegistry {
  constructor(client) {
    this.client = client;
    this._byRef = new Map();
    this._bySub = new Map();
    this._all = new Set();
    this._refs = 0;
  }

  start(spec, handlers) {
    if (!spec || typeof spec.symbol !== "string" || !spec.symbol)
      throw new TypeError("replay: symbol is required");
    if (spec.from == null) throw new TypeError("replay: from is required");
    const replay = new Replay(this, spec, handlers);
    this._all.add(replay);
    if (this.client._isOpen()) this._send(replay);
    return replay;
  }

  /** (Re)connected: every replay asks again, from where it got to (or resumes live). */
  connected() {
    for (const replay of this._all)
      if (replay.state !== "closed" && replay.state !== "failed") this._send(replay);
  }

  closeAll() {
    for (const replay of this._all) replay.state = "closed";
    this._all.clear();
    this._byRef.clear();
    this._bySub.clear();
  }

  stop(replay) {
    this._forget(replay);
    this._all.delete(replay);
    if (replay.id != null) this.client._send({ op: "unsubscribe", sub: replay.id });
  }

  goLive(replay) {
    this.stop(replay);
    this._all.add(replay);
    replay._live = true;
    replay.epoch = null;
    replay.lastSeq = null;
    replay.state = "live";
    call(replay, "onLive", { op: "replay", state: "live", sub: replay.id, symbol: replay.symbol });
    this._send(replay);
  }

  _forget(replay) {
    if (replay.id != null) this._bySub.delete(replay.id);
    if (replay._ref != null) this._byRef.delete(replay._ref);
  }

  _send(replay) {
    this._forget(replay);
    const ref = `replay${++this._refs}`;
    const message = { op: "subscribe", ref, symbol: replay.symbol };
    if (Object.keys(replay.filter).length) message.filter = replay.filter;
    if (replay._live) {
      if (replay.epoch != null && replay.lastSeq != null)
        message.resume = { epoch: replay.epoch, seq: replay.lastSeq };
      else message.history = { ...(replay.history ?? {}) };
    } else {
      if (replay.history) message.history = { ...replay.history };
      const from = replay.state === "pending" ? replay.from : Math.round(replay.time);
      message.replay = { from, to: replay.to, speed: replay.speed };
      replay.epoch = null;
      replay.lastSeq = null;
    }
    replay._ref = ref;
    replay.id = null;
    this._byRef.set(ref, replay);
    this.client._send(message);
  }

  /** Handle `frame` if it is one of ours (true), else leave it to the client (false). */
  handles(frame) {
    if (frame.op === "subscribed" || frame.op === "error") {
      const replay = this._byRef.get(frame.ref);
      if (replay === undefined) return false;
      if (frame.op === "error") this._onError(replay, frame);
      else this._onSubscribed(replay, frame);
      return true;
    }
    const replay = this._bySub.get(frame.sub);
    if (replay === undefined) return false;
    switch (frame.op) {
      case "replay":
        this._onState(replay, frame);
        break;
      case "history":
        replay.epoch = frame.epoch ?? null;
        replay.lastSeq = Number.isInteger(frame.to_seq) ? frame.to_seq : 0;
        call(replay, "onHistory", frame);
        break;
      case "reset":
        replay.epoch = null;
        replay.lastSeq = null;
        call(replay, "onReset", frame);
        break;
      case "events":
        this._onEvents(replay, frame);
        break;
      default:
        return false;
    }
    return true;
  }

  _onSubscribed(replay, frame) {
    if (replay.state === "closed") return;
    if (replay.id != null) this._bySub.delete(replay.id);
    replay.id = frame.sub;
    this._bySub.set(frame.sub, replay);
    if (frame.replay) {
      replay.speed = frame.replay.speed;
    } else {
      // The live subscription (after the handover, goLive() or a reconnect once live).
      this._byRef.delete(frame.ref);
      replay._live = true;
      replay.state = "live";
      if (replay.epoch == null) {
        replay.epoch = frame.epoch ?? null;
        replay.lastSeq = Number.isInteger(frame.seq) ? frame.seq : 0;
      }
    }
    call(replay, "onSubscribed", frame);
  }

  _onState(replay, frame) {
    replay._setTime(frame.time);
    if (frame.speed != null) replay.speed = frame.speed;
    if (frame.state === "paused") replay.state = "paused";
    else if (frame.state === "playing") replay.state = "playing";
    else if (frame.state === "end") replay.state = "ended";
    else if (frame.state === "live") {
      // A `subscribed` of the live subscription follows, with the same ref; it resumes right
      // after the position the replay reached (the last events may have been filtered out).
      if (Number.isInteger(frame.seq)) {
        replay.epoch = frame.epoch ?? replay.epoch;
        replay.lastSeq = frame.seq;
      }
      replay._live = true;
      replay.state = "live";
      this._bySub.delete(replay.id);
    } else if (frame.state === "seek") {
      replay.epoch = null;
      replay.lastSeq = null;
    }
    call(replay, "onState", frame);
    if (frame.state === "live") call(replay, "onLive", frame);
  }

  _onEvents(replay, frame) {
    if (replay.lastSeq == null) return; // a frame from before a seek's history: not ours any more
    const result = checkEventsFrame({ epoch: replay.epoch, lastSeq: replay.lastSeq }, frame);
    if (!result.ok) {
      this.client.stats.breaks += 1;
      this._send(replay); // from where it got to (a replay) or resume (live)
      return;
    }
    replay.epoch = result.epoch;
    replay.lastSeq = result.lastSeq;
    const items = result.items;
    if (!replay._live && items.length) {
      const ts = items[items.length - 1].ts;
      if (replay.speed === "max" || replay.state !== "playing") replay._setTime(ts);
    }
    call(replay, "onEvents", items, frame);
  }

  _onError(replay, frame) {
    this._byRef.delete(frame.ref);
    replay.state = "failed";
    replay.error = frame;
    this._all.delete(replay);
    call(replay, "onError", frame);
  }
}
