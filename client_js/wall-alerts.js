/**
 * wall-alerts.js — alerts on the wall (docs/alerts.md): a banner per firing alert that is not
 * acknowledged (severity colour, age, Ack button), a marker on the time axis of the affected
 * symbol's charts, an optional beep (`?sound=1`), and the `/alerts` page (`alertsPage`).
 *
 * Alerts are events of kind `alert` (states firing, resolved, acked; one `alert_id`). The board
 * subscribes to them on every symbol of the wall and on `_alerts` (alerts without a symbol),
 * with the wall's window of history, and seeds the banners from `GET /api/alerts` (alerts older
 * than the window). An ack is `POST /api/alerts/{id}/ack`; its `acked` event clears the banner on
 * every wall.
 */

/** The stream of alerts that concern no symbol. */
export const ALERTS_SYMBOL = "_alerts";
const SEVERITY_ORDER = { critical: 0, warning: 1, info: 2 };
/** A one-off alert (a signal: it never resolves) shows this long unless acknowledged first. */
export const INSTANT_SHOW_MS = 60_000;

/** "3 s", "4 min", "2 h" since `ts` (ms). */
export function ageText(ts, now) {
  const s = Math.max(0, Math.round((now - ts) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Fold alert events into the alerts that are firing and not acknowledged (by id). */
export function foldAlerts(active, events) {
  for (const e of events) {
    if (e?.kind !== "alert" || typeof e.alert_id !== "string") continue;
    if (e.state === "firing") active.set(e.alert_id, e);
    else active.delete(e.alert_id);
  }
  return active;
}

function authHeaders(token) {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** POST the ack of `alertId`; resolves to the HTTP status. */
export async function acknowledge(alertId, token) {
  const response = await fetch(`/api/alerts/${encodeURIComponent(alertId)}/ack`, {
    method: "POST",
    headers: authHeaders(token),
  });
  return response.status;
}

function node(tag, className, text) {
  const n = document.createElement(tag);
  if (className) n.className = className;
  if (text != null) n.textContent = text;
  return n;
}

/** The wall's alerts: banners in `container`, markers through `plotsOf(symbol)`. */
export class AlertBoard {
  constructor({
    client,
    symbols,
    token,
    sound = false,
    minutes = 60,
    serverNow,
    container,
    plotsOf,
    Plotly,
  }) {
    this.client = client;
    this.symbols = [...new Set([...symbols, ALERTS_SYMBOL])];
    this.token = token;
    this.sound = sound;
    this.minutes = minutes;
    this.serverNow = serverNow ?? (() => Date.now());
    this.container = container;
    this.plotsOf = plotsOf ?? (() => []);
    this.Plotly = Plotly;
    /** alert_id -> its firing event (not resolved, not acked). */
    this.active = new Map();
    /** symbol -> [{ts, severity, rule, alert_id}] (markers kept for a history reload). */
    this.markers = new Map();
    /** alert ids this wall may not acknowledge (the server said 403). */
    this.refused = new Set();
    this.seen = new Set();
    this.audio = null;
  }

  start() {
    for (const symbol of this.symbols) {
      this.client.subscribe(
        { symbol, filter: { kinds: ["alert"] }, history: { minutes: this.minutes } },
        {
          onHistory: (frame) => this.onHistory(symbol, frame),
          onEvents: (items) => this.onEvents(items),
        },
      );
    }
    this.seed();
    setInterval(() => this.render(), 1000);
  }

  async seed() {
    try {
      const response = await fetch("/api/alerts", { headers: authHeaders(this.token) });
      if (!response.ok) return;
      const body = await response.json();
      for (const alert of body.active ?? []) {
        if (!alert.acked && !this.active.has(alert.alert_id)) this.active.set(alert.alert_id, alert);
        this.seen.add(alert.alert_id);
      }
      this.render();
    } catch {
      // The live stream still brings new alerts.
    }
  }

  onHistory(symbol, frame) {
    const columns = frame.data?.alert;
    if (!columns) return;
    const events = (columns.ts ?? []).map((ts, i) => ({
      kind: "alert",
      symbol,
      ts,
      alert_id: columns.alert_id[i],
      rule: columns.rule[i],
      state: columns.state[i],
      severity: columns.severity[i],
      scope: columns.scope[i],
      message: columns.message[i],
      meta: columns.meta?.[i] ?? {},
    }));
    events.sort((a, b) => a.ts - b.ts);
    const marks = events.filter((e) => e.state === "firing");
    this.markers.set(symbol, marks);
    for (const e of events) this.seen.add(e.alert_id);
    foldAlerts(this.active, events);
    this.render();
  }

  onEvents(items) {
    let fresh = false;
    for (const e of items) {
      if (e.kind !== "alert") continue;
      if (e.state === "firing") {
        const marks = this.markers.get(e.symbol) ?? [];
        marks.push(e);
        this.markers.set(e.symbol, marks);
        this.mark(e);
        if (!this.seen.has(e.alert_id)) fresh = true;
      }
      this.seen.add(e.alert_id);
    }
    foldAlerts(this.active, items);
    if (fresh && this.sound) this.beep();
    this.render();
  }

  /** Add the marker shapes of `symbol` to a layout (a tile's history reload). */
  marks(symbol, layout) {
    for (const alert of this.markers.get(symbol) ?? []) Object.assign(layout, withMarker(layout, alert));
    return layout;
  }

  mark(alert) {
    if (!this.Plotly) return;
    for (const plot of this.plotsOf(alert.symbol)) {
      if (!plot?.layout) continue;
      const { shapes, annotations } = withMarker(plot.layout, alert);
      this.Plotly.relayout(plot, { shapes, annotations });
    }
  }

  beep() {
    try {
      this.audio ??= new AudioContext();
      const tone = this.audio.createOscillator();
      const gain = this.audio.createGain();
      gain.gain.value = 0.1;
      tone.frequency.value = 880;
      tone.connect(gain).connect(this.audio.destination);
      tone.start();
      tone.stop(this.audio.currentTime + 0.25);
    } catch {
      // No audio (autoplay policy, no device): the banner is enough.
    }
  }

  snapshot() {
    return [...this.active.values()].map((a) => ({
      alert_id: a.alert_id,
      symbol: a.symbol,
      rule: a.rule,
      severity: a.severity,
      message: a.message,
    }));
  }

  render() {
    if (!this.container) return;
    const now = this.serverNow();
    for (const [id, a] of this.active) {
      if (a.meta?.instant && now - a.ts > INSTANT_SHOW_MS) this.active.delete(id);
    }
    const alerts = [...this.active.values()].sort(
      (a, b) => (SEVERITY_ORDER[a.severity] ?? 3) - (SEVERITY_ORDER[b.severity] ?? 3) || b.ts - a.ts,
    );
    this.container.replaceChildren(...alerts.map((a) => this.banner(a, now)));
    this.container.hidden = alerts.length === 0;
  }

  banner(alert, now) {
    const item = node("div", `alert-banner alert-${alert.severity}`);
    item.dataset.alertId = alert.alert_id;
    item.append(
      node("b", null, `${String(alert.severity).toUpperCase()} ${alert.rule}`),
      node("span", null, ` ${alert.message} · ${alert.symbol} · `),
      node("span", "alert-age", ageText(alert.ts, now)),
    );
    if (!this.refused.has(alert.alert_id)) {
      const button = node("button", "alert-ack", "Ack");
      button.addEventListener("click", async () => {
        button.disabled = true;
        const status = await acknowledge(alert.alert_id, this.token).catch(() => 0);
        if (status === 401 || status === 403) this.refused.add(alert.alert_id);
        if (status === 404) this.active.delete(alert.alert_id);
        if (status !== 200) this.render();
      });
      item.append(button);
    }
    return item;
  }
}

/** The marker of `alert` added to a layout's shapes and annotations (new arrays). */
export function withMarker(layout, alert) {
  const color =
    alert.severity === "critical" ? "#e5484d" : alert.severity === "warning" ? "#f5a524" : "#3e8ed0";
  return {
    shapes: [
      ...(layout.shapes ?? []),
      {
        type: "line",
        xref: "x",
        yref: "paper",
        x0: alert.ts,
        x1: alert.ts,
        y0: 0,
        y1: 1,
        line: { color, width: 1.5, dash: "dash" },
        name: `alert:${alert.alert_id}`,
      },
    ],
    annotations: [
      ...(layout.annotations ?? []),
      {
        x: alert.ts,
        y: 0,
        xref: "x",
        yref: "paper",
        text: `⚠ ${alert.rule}`,
        showarrow: false,
        xanchor: "left",
        yanchor: "bottom",
        font: { color, size: 11 },
      },
    ],
  };
}

/** The `/alerts` page: active and recent alerts from `GET /api/alerts`, every 5 s. */
export function alertsPage() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const activeNode = document.getElementById("active");
  const recentNode = document.getElementById("recent");
  const row = (a, ackable) => {
    const tr = node("tr", `alert-${a.severity}`);
    tr.dataset.alertId = a.alert_id;
    const when = new Date(a.ts).toISOString().slice(0, 19).replace("T", " ");
    for (const text of [when, a.severity, a.rule, a.symbol, a.scope, a.message, a.state])
      tr.append(node("td", null, text));
    const cell = node("td");
    if (ackable && !a.acked) {
      const button = node("button", "alert-ack", "Ack");
      button.addEventListener("click", async () => {
        button.disabled = true;
        await acknowledge(a.alert_id, token).catch(() => 0);
        load();
      });
      cell.append(button);
    } else if (a.acked) cell.textContent = `acked by ${a.acked_by ?? "?"}`;
    tr.append(cell);
    return tr;
  };
  async function load() {
    try {
      const response = await fetch("/api/alerts", { headers: authHeaders(token) });
      const body = await response.json();
      activeNode.replaceChildren(...(body.active ?? []).map((a) => row(a, true)));
      recentNode.replaceChildren(...(body.recent ?? []).map((a) => row(a, false)));
      document.getElementById("status").textContent = response.ok
        ? `${body.active?.length ?? 0} active · updated ${new Date().toISOString().slice(11, 19)} UTC`
        : `HTTP ${response.status}: ${body.message ?? ""}`;
    } catch (error) {
      document.getElementById("status").textContent = `cannot load: ${error.message}`;
    }
  }
  load();
  setInterval(load, 5000);
}
