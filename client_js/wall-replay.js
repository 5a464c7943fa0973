/**
 * wall-replay.js — the wall as a flight recorder: `/wall?replay=2026-12-03T03:00:00Z&speed=10&to=…`.
 *
 * Every tile replays its symbol (client.replay, docs/client.md "Replay") from the same `from`
 * at the same speed, and every control acts on all of them at once, so the tiles play in
 * lockstep on one clock: the page's time (the wall's clock, the tiles' stale/dead ages) is
 * the replay's. A bar at the bottom shows the time and the speed, pauses, scrubs over the
 * window and goes live; with `kiosk=1` the bar is hidden and only a "REPLAY 03:12:40 ×10"
 * badge remains, so nobody mistakes a replay for live.
 */

import { toMillis } from "./signalpush-replay.js";

const SPEEDS = [0.5, 1, 2, 5, 10, 30, 60, 300, 1000, "max"];

/** The replay settings of the wall's URL, or null when the wall is live. */
export function parseReplayParams(search) {
  const params = new URLSearchParams(search);
  const from = params.get("replay");
  if (!from) return null;
  const time = (text) => (/^\d+$/.test(text) ? Number(text) : toMillis(text));
  let speed = params.get("speed") ?? "1";
  speed = speed === "max" ? "max" : Math.min(1000, Math.max(0.1, Number(speed) || 1));
  const to = params.get("to");
  return {
    from: time(from),
    to: !to || to === "live" ? "live" : time(to),
    speed,
    kiosk: ["1", "true", "yes", "on"].includes(params.get("kiosk") ?? ""),
  };
}

const pad = (n) => String(n).padStart(2, "0");
function clockText(ms) {
  const d = new Date(ms);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}
const speedText = (speed) => (speed === "max" ? "×max" : `×${speed}`);

export class WallReplay {
  constructor(settings, { onLive = () => {}, onChange = () => {} } = {}) {
    this.settings = settings;
    this.speed = settings.speed;
    this.paused = false;
    /** Every tile's replay handle. */
    this.handles = [];
    this.live = false;
    this._onLive = onLive;
    this._onChange = onChange;
    this._node = null;
  }

  /** Open a tile's replay in place of its live subscription (same spec, same handlers). */
  open(client, spec, handlers) {
    const handle = client.replay(
      { ...spec, from: this.settings.from, to: this.settings.to, speed: this.speed },
      {
        ...handlers,
        onState: () => this.render(),
        onLive: () => {
          if (this.handles.every((h) => h.state === "live")) this._wentLive();
        },
      },
    );
    // A tile's reload (its figure could not be drawn) asks again at the current time.
    handle.reload = () => handle.seek(handle.time);
    this.handles.push(handle);
    return handle;
  }

  /** The replay's time: the slowest tile's (they play in lockstep); null once live. */
  now() {
    if (this.live || this.handles.length === 0) return this.live ? null : this.settings.from;
    return Math.min(...this.handles.map((h) => h.time));
  }

  pause() {
    this.paused = true;
    for (const h of this.handles) h.pause();
    this.render();
  }
  resume() {
    this.paused = false;
    for (const h of this.handles) h.resume();
    this.render();
  }
  seek(t) {
    for (const h of this.handles) h.seek(t);
    this.render();
  }
  setSpeed(speed) {
    this.speed = speed;
    for (const h of this.handles) h.setSpeed(speed);
    this.render();
  }
  goLive() {
    for (const h of this.handles) h.goLive();
    this._wentLive();
  }

  _wentLive() {
    if (this.live) return;
    this.live = true;
    this._node?.remove();
    this._node = null;
    this._onLive();
  }

  /** The window the scrubber covers: from .. to (or now for a replay that ends live). */
  get span() {
    const end = this.settings.to === "live" ? Date.now() : this.settings.to;
    return [this.settings.from, Math.max(end, this.settings.from + 1)];
  }

  /** The bar (or, in kiosk mode, the badge) at the bottom of the page. */
  mount(document) {
    const bar = document.createElement("footer");
    bar.id = "replay-bar";
    bar.className = this.settings.kiosk ? "replay-bar replay-kiosk" : "replay-bar";
    const badge = document.createElement("span");
    badge.className = "replay-badge";
    bar.append(badge);
    if (!this.settings.kiosk) {
      const button = (label, name, fn) => {
        const node = document.createElement("button");
        node.type = "button";
        node.textContent = label;
        node.dataset.action = name;
        node.addEventListener("click", fn);
        bar.append(node);
        return node;
      };
      this._pause = button("pause", "pause", () => (this.paused ? this.resume() : this.pause()));
      const speeds = document.createElement("select");
      speeds.dataset.action = "speed";
      for (const value of SPEEDS) {
        const option = document.createElement("option");
        option.value = String(value);
        option.textContent = speedText(value);
        speeds.append(option);
      }
      if (!SPEEDS.includes(this.speed)) {
        const option = document.createElement("option");
        option.value = String(this.speed);
        option.textContent = speedText(this.speed);
        speeds.append(option);
      }
      speeds.value = String(this.speed);
      speeds.addEventListener("change", () =>
        this.setSpeed(speeds.value === "max" ? "max" : Number(speeds.value)),
      );
      bar.append(speeds);
      const scrubber = document.createElement("input");
      scrubber.type = "range";
      scrubber.className = "replay-scrubber";
      scrubber.dataset.action = "seek";
      scrubber.min = "0";
      scrubber.max = "1000";
      scrubber.addEventListener("change", () => {
        const [start, end] = this.span;
        this.seek(Math.round(start + ((end - start) * Number(scrubber.value)) / 1000));
      });
      bar.append(scrubber);
      this._scrubber = scrubber;
      button("go live", "live", () => this.goLive());
    }
    this._badge = badge;
    this._node = bar;
    document.body.append(bar);
    this.render();
    return bar;
  }

  render() {
    if (!this._node) return;
    const now = this.now() ?? Date.now();
    const state = this.paused ? " paused" : "";
    const text = `REPLAY ${clockText(now)} ${speedText(this.speed)}${state}`;
    if (this._badge.textContent !== text) this._badge.textContent = text;
    if (this._pause) this._pause.textContent = this.paused ? "play" : "pause";
    if (this._scrubber && document.activeElement !== this._scrubber) {
      const [start, end] = this.span;
      this._scrubber.value = String(Math.round(((now - start) / (end - start)) * 1000));
    }
    this._onChange();
  }
}
