/**
 * wall-fleet.js — the wall as one display of a fleet (docs/walls.md): its display id, its render
 * heartbeat, the operator's commands, saved views and playlists, self-healing reloads, and the
 * token kept across restarts. The pure parts (ids, tokens, heal decisions, command effects,
 * effective parameters) are exported for client_js/tests/wall-fleet.test.js; `Fleet` is the page
 * glue wall.js drives.
 */

const ID_KEY = "signalpush.display";
const TOKEN_KEY = "signalpush.token";
const STATE_KEY = "signalpush.fleet";
const HEAL_KEY = "signalpush.heal";
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const THEMES = ["dark", "dim", "night"];

/** Defaults of the fleet's URL parameters (docs/walls.md). */
export const FLEET_DEFAULTS = Object.freeze({
  heartbeatS: 5,
  stallS: 20,
  heapMb: 1536,
  maxUptimeH: 24,
});

function numberParam(params, name, fallback, min, max) {
  const value = Number(params.get(name));
  return params.has(name) && Number.isFinite(value) && value >= min && value <= max ? value : fallback;
}

/** The fleet's settings from a wall's URL. */
export function fleetParams(search) {
  const params = new URLSearchParams(search);
  return {
    heartbeatS: numberParam(params, "heartbeat_s", FLEET_DEFAULTS.heartbeatS, 0, 3600),
    stallS: numberParam(params, "stall_s", FLEET_DEFAULTS.stallS, 2, 3600),
    heapMb: numberParam(params, "heap_mb", FLEET_DEFAULTS.heapMb, 16, 65536),
    maxUptimeH: numberParam(params, "max_uptime_h", FLEET_DEFAULTS.maxUptimeH, 0, 24 * 365),
  };
}

/** `?display=` when valid, else the id kept in `storage`, else a new one (kept). */
export function displayId(search, storage, random = Math.random) {
  const given = new URLSearchParams(search).get("display");
  if (given && NAME.test(given)) return given;
  const kept = safeGet(storage, ID_KEY);
  if (kept && NAME.test(kept)) return kept;
  const made = `wall-${Math.floor(random() * 36 ** 6)
    .toString(36)
    .padStart(6, "0")}`;
  safeSet(storage, ID_KEY, made);
  return made;
}

/**
 * The display token: `?token=` is accepted once and kept (a TV restarted on `/wall?display=x`
 * still has it); without one, the kept token.
 */
export function keptToken(search, storage) {
  const given = new URLSearchParams(search).get("token");
  if (given) {
    safeSet(storage, TOKEN_KEY, given);
    return given;
  }
  return safeGet(storage, TOKEN_KEY) || null;
}

/**
 * Why the wall should reload itself now, or null. `sample`: `{now, lastFrameAt, visible,
 * heapMb, heapOverSince, startedAt}` (ms); `limits`: fleetParams(). The render loop stalls when
 * a visible page has drawn no frame for `stallS`; the heap must stay past its bound for a
 * minute (one spike is not a leak); uptime past `maxUptimeH` (0: never).
 */
export function healReason(sample, limits) {
  const { now, lastFrameAt, visible, heapOverSince, startedAt } = sample;
  if (visible && lastFrameAt != null && now - lastFrameAt > limits.stallS * 1000) return "stalled";
  if (heapOverSince != null && now - heapOverSince > 60_000) return "heap";
  if (limits.maxUptimeH > 0 && now - startedAt > limits.maxUptimeH * 3_600_000) return "uptime";
  return null;
}

/**
 * What a `command` frame does to the fleet state (kept in localStorage): the new state, whether
 * the page reloads, and what to show. Pure: `state` is not changed.
 */
export function applyCommand(state, frame, now = Date.now()) {
  const params = frame?.params && typeof frame.params === "object" ? frame.params : {};
  const next = { ...state, overrides: { ...(state.overrides ?? {}) } };
  switch (frame?.action) {
    case "reload":
      return { state: next, reload: true };
    case "set":
      for (const [key, value] of Object.entries(params))
        if (typeof value === "string" && key !== "token") next.overrides[key] = value;
      return { state: next, reload: true };
    case "theme":
      if (!THEMES.includes(params.theme)) return { state, reload: false };
      next.theme = params.theme;
      return { state: next, reload: false, theme: params.theme };
    case "identify":
      return { state, reload: false, identify: Math.min(120, Math.max(1, Number(params.seconds) || 10)) };
    case "view":
      if (!NAME.test(params.name ?? "")) return { state, reload: false };
      next.view = params.name;
      next.overrides = {};
      delete next.playlist;
      return { state: next, reload: true };
    case "playlist": {
      const views = String(params.views ?? "")
        .split(",")
        .filter((v) => NAME.test(v));
      if (!views.length) {
        delete next.playlist;
        return { state: next, reload: false };
      }
      const everyS = Math.max(10, Number(params.every_s) || 60);
      next.playlist = { views, everyS, index: 0, nextAt: now + everyS * 1000 };
      next.view = views[0];
      next.overrides = {};
      return { state: next, reload: true };
    }
    default:
      return { state, reload: false };
  }
}

/** The playlist's next step when it is due: the new state (showing the next view), else null. */
export function playlistStep(state, now = Date.now()) {
  const list = state.playlist;
  if (!list || now < list.nextAt) return null;
  const index = (list.index + 1) % list.views.length;
  return {
    ...state,
    view: list.views[index],
    overrides: {},
    playlist: { ...list, index, nextAt: now + list.everyS * 1000 },
  };
}

/** The parameters the wall runs with: its URL, then the saved view, then the operator's `set`s. */
export function effectiveSearch(search, viewParams, overrides) {
  const params = new URLSearchParams(search);
  for (const [key, value] of Object.entries(viewParams ?? {})) if (key !== "token") params.set(key, value);
  for (const [key, value] of Object.entries(overrides ?? {})) if (key !== "token") params.set(key, value);
  return `?${params}`;
}

/** The URL parameters a heartbeat reports: short strings, the token left out. */
export function reportedParams(search) {
  const out = {};
  let count = 0;
  for (const [key, value] of new URLSearchParams(search)) {
    if (key === "token" || !/^[A-Za-z0-9_]{1,32}$/.test(key) || count >= 32) continue;
    out[key] = value.slice(0, 512);
    count += 1;
  }
  return out;
}

function safeGet(storage, key) {
  try {
    return storage?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function safeSet(storage, key, value) {
  try {
    if (value == null) storage?.removeItem(key);
    else storage?.setItem(key, value);
  } catch {
    // storage full or disabled (private mode): the wall still runs, it only forgets on restart
  }
}

function loadJson(storage, key) {
  try {
    const value = JSON.parse(safeGet(storage, key) ?? "null");
    return value && typeof value === "object" && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

/**
 * The page side. `new Fleet({search, storage, session, document})`, then `await prepare()` (the
 * effective URL parameters: saved view, operator overrides), then `start(hooks)` once the client
 * exists. `hooks`: {client, tiles() -> [{id, seq, ageS}], reload()}.
 */
export class Fleet {
  constructor({ search, storage, session, doc, now = () => Date.now() }) {
    this.search = search;
    this.storage = storage;
    this.session = session;
    this.doc = doc;
    this.now = now;
    this.id = displayId(search, storage);
    this.token = keptToken(search, storage);
    this.limits = fleetParams(search);
    this.state = loadJson(storage, `${STATE_KEY}.${this.id}`) ?? {};
    const heal = loadJson(session, HEAL_KEY);
    this.heals = Number(heal?.count) || 0;
    this.lastHeal = heal?.reason ?? null;
    this.startedAt = now();
    this.status = "ok";
    this.heartbeats = 0;
    this.commands = [];
    this.frames = 0;
    this.longFrames = 0;
    this.lastFrameAt = null;
    this.heapOverSince = null;
    this.fps = 0;
    this._frameWindow = { at: now(), frames: 0 };
    this._stalled = false;
    this.effective = search;
  }

  /** The URL parameters to run with (fetches the saved view named by the state or `?view=`). */
  async prepare(fetchView) {
    const name = this.state.view ?? new URLSearchParams(this.search).get("view");
    let viewParams = null;
    if (name && NAME.test(name)) {
      try {
        viewParams = await fetchView(name, this.token);
      } catch (error) {
        this.viewError = `view ${name}: ${error.message}`;
      }
    }
    this.effective = effectiveSearch(this.search, viewParams, this.state.overrides);
    if (this.state.theme) this.applyTheme(this.state.theme);
    else {
      const theme = new URLSearchParams(this.effective).get("theme");
      if (THEMES.includes(theme)) this.applyTheme(theme);
    }
    return this.effective;
  }

  start({ client, tiles, reload, raf = (fn) => requestAnimationFrame(fn) }) {
    this.client = client;
    this.tiles = tiles;
    this.reload = reload;
    const frame = (t) => {
      if (this._stalled) return; // a test forces a stall: the loop stops, as a hung GPU would stop it
      const now = this.now();
      if (this.lastFrameAt != null && now - this.lastFrameAt > 50) this.longFrames += 1;
      this.lastFrameAt = now;
      this._frameWindow.frames += 1;
      raf(frame);
      return t;
    };
    raf(frame);
    const everyMs = Math.max(1000, this.limits.heartbeatS * 1000);
    if (this.limits.heartbeatS > 0) {
      this._beatTimer = setInterval(() => this.beat(), everyMs);
      setTimeout(() => this.beat(), 500);
    }
    this._watchTimer = setInterval(() => this.watch(), 1000);
  }

  /** Count frames per second; decide on a self-healing reload; step the playlist. */
  watch() {
    const now = this.now();
    const elapsed = now - this._frameWindow.at;
    if (elapsed >= 1000) {
      this.fps = Math.round((this._frameWindow.frames * 10_000) / elapsed) / 10;
      this._frameWindow = { at: now, frames: 0 };
    }
    const heap = this.heapMb();
    if (heap != null && heap > this.limits.heapMb) this.heapOverSince ??= now;
    else this.heapOverSince = null;
    const reason = healReason(
      {
        now,
        lastFrameAt: this.lastFrameAt,
        visible: this.doc?.visibilityState !== "hidden",
        heapOverSince: this.heapOverSince,
        startedAt: this.startedAt,
      },
      this.limits,
    );
    if (reason) return this.heal(reason);
    const step = playlistStep(this.state, now);
    if (step) {
      this.saveState(step);
      this.reload("playlist");
    }
    return null;
  }

  heapMb() {
    const used = globalThis.performance?.memory?.usedJSHeapSize;
    return Number.isFinite(used) ? Math.round((used / 1_048_576) * 10) / 10 : null;
  }

  /** Reload to heal: the count and reason survive in sessionStorage (the heartbeat reports them). */
  heal(reason) {
    if (this._healing) return reason;
    this._healing = true;
    safeSet(this.session, HEAL_KEY, JSON.stringify({ count: this.heals + 1, reason, at: this.now() }));
    this.reload(reason);
    return reason;
  }

  /** The render heartbeat (docs/protocol.md, the `display` op). */
  beat() {
    if (!this.client) return false;
    const frame = {
      op: "display",
      display: this.id,
      tiles: this.tiles().slice(0, 64),
      fps: Math.min(1000, this.fps),
      long_frames: this.longFrames,
      heap_mb: Math.min(1e7, this.heapMb() ?? 0),
      page_age_s: Math.round((this.now() - this.startedAt) / 100) / 10,
      reconnects: Math.max(0, (this.client.stats?.connects ?? 1) - 1),
      heals: this.heals,
      status: this.status,
      params: reportedParams(this.effective),
    };
    const sent = this.client.send(frame);
    if (sent) this.heartbeats += 1;
    return sent;
  }

  /** A server frame the client did not handle: a `command` for this display. */
  onFrame(frame) {
    if (frame?.op !== "command") return;
    this.commands.push({ id: frame.id, action: frame.action, at: this.now() });
    if (this.commands.length > 20) this.commands.shift();
    const effect = applyCommand(this.state, frame, this.now());
    if (effect.state !== this.state) this.saveState(effect.state);
    if (effect.theme) this.applyTheme(effect.theme);
    if (effect.identify) this.identify(effect.identify);
    if (effect.reload) this.reload(`command ${frame.action}`);
  }

  saveState(state) {
    this.state = state;
    safeSet(this.storage, `${STATE_KEY}.${this.id}`, JSON.stringify(state));
  }

  applyTheme(theme) {
    const body = this.doc?.body;
    if (!body) return;
    for (const name of THEMES) body.classList.remove(`theme-${name}`);
    body.classList.add(`theme-${theme}`);
    this.theme = theme;
  }

  /** Flash the display id across the screen for `seconds`. */
  identify(seconds) {
    const doc = this.doc;
    if (!doc?.body) return;
    let node = doc.getElementById("identify");
    if (!node) {
      node = doc.createElement("div");
      node.id = "identify";
      doc.body.append(node);
    }
    node.textContent = this.id;
    node.hidden = false;
    clearTimeout(this._identifyTimer);
    this._identifyTimer = setTimeout(() => {
      node.hidden = true;
    }, seconds * 1000);
  }

  /** A message that covers the wall (an expired token): never a blank screen. */
  showMessage(text) {
    const doc = this.doc;
    if (!doc?.body) return;
    let node = doc.getElementById("fleet-message");
    if (!node) {
      node = doc.createElement("div");
      node.id = "fleet-message";
      node.setAttribute("role", "alert");
      doc.body.append(node);
    }
    node.textContent = text;
    node.hidden = false;
  }

  hideMessage() {
    const node = this.doc?.getElementById("fleet-message");
    if (node) node.hidden = true;
  }

  /** Test hook: stop the render loop as a hung renderer would (the watchdog must heal it). */
  forceStall() {
    this._stalled = true;
  }

  snapshot() {
    return Object.freeze({
      id: this.id,
      heartbeats: this.heartbeats,
      heals: this.heals,
      lastHeal: this.lastHeal,
      fps: this.fps,
      longFrames: this.longFrames,
      theme: this.theme ?? null,
      status: this.status,
      commands: this.commands.map((c) => ({ ...c })),
      view: this.state.view ?? null,
      playlist: this.state.playlist ? { ...this.state.playlist } : null,
      overrides: { ...(this.state.overrides ?? {}) },
      effective: this.effective,
    });
  }
}
