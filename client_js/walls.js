/**
 * walls.js — the operator page `/walls` (docs/walls.md): every display of the fleet with its
 * health, what it shows and since when, and buttons that steer one display
 * (`POST /api/walls/{id}/command`, an admin token). Everything shown comes from the server and
 * is set as text, never as HTML.
 */

const TOKEN_KEY = "signalpush.operator-token";
const params = new URLSearchParams(location.search);
const token = (() => {
  const given = params.get("token");
  try {
    if (given) localStorage.setItem(TOKEN_KEY, given);
    return given || localStorage.getItem(TOKEN_KEY);
  } catch {
    return given;
  }
})();
const headers = token ? { authorization: `Bearer ${token}` } : {};
const body = document.querySelector("#displays tbody");
const status = document.getElementById("status");
const result = document.getElementById("result");
const viewSelect = document.getElementById("views");

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text != null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 360) / 10} h`;
}

/** Send one command; the answer (or the refusal) is shown beside the controls. */
async function command(display, action, extra = {}) {
  const query = new URLSearchParams({ action, ...extra });
  const response = await fetch(`/api/walls/${encodeURIComponent(display)}/command?${query}`, {
    method: "POST",
    headers,
  });
  const answer = await response.json().catch(() => ({}));
  result.textContent = response.ok
    ? `${action} → ${display} (${answer.gateway || "no gateway"})`
    : `${action} refused: ${answer.message ?? response.status}`;
  window.signalpushWalls.sent.push({ display, action, status: response.status });
}

function button(label, onClick) {
  const node = el("button", label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

function row(display, now) {
  const tr = el("tr");
  tr.dataset.display = display.display;
  const shows = display.params?.view
    ? `view ${display.params.view}`
    : (display.params?.symbols ?? `${display.tiles.length} tiles`);
  const cells = [
    display.display,
    display.health,
    display.status,
    shows,
    new Date(display.since_ms).toISOString().slice(0, 19).replace("T", " "),
    `${ago(now - display.received_ms)} ago`,
    display.fps,
    display.long_frames,
    display.heap_mb,
    display.reconnects,
    display.heals,
    display.gateway || "—",
  ];
  cells.forEach((text, i) => {
    tr.append(el("td", text, i === 1 ? `health-${String(text).replace(" ", "-")}` : null));
  });
  const steer = el("td");
  const id = display.display;
  steer.append(
    button("reload", () => command(id, "reload")),
    button("identify", () => command(id, "identify", { seconds: "10" })),
    ...["dark", "dim", "night"].map((theme) => button(theme, () => command(id, "theme", { theme }))),
    button("symbols…", () => {
      const symbols = prompt("symbols (comma-separated)", display.params?.symbols ?? "");
      if (symbols) command(id, "set", { symbols });
    }),
    button("view", () => viewSelect.value && command(id, "view", { name: viewSelect.value })),
    button("playlist", () => {
      const views = document.getElementById("playlist").value.trim();
      command(id, "playlist", { views, every_s: document.getElementById("every").value || "60" });
    }),
  );
  tr.append(steer);
  return tr;
}

async function refresh() {
  try {
    const response = await fetch("/api/walls", { headers });
    const answer = await response.json();
    if (!response.ok) {
      status.textContent = `HTTP ${response.status}: ${answer.message ?? ""} (open /walls?token=ADMIN_TOKEN once)`;
      return;
    }
    const counts = {};
    for (const d of answer.displays) counts[d.health] = (counts[d.health] ?? 0) + 1;
    status.textContent =
      `${answer.displays.length} displays · ` +
      Object.entries(counts)
        .map(([k, v]) => `${v} ${k}`)
        .join(" · ");
    body.replaceChildren(...answer.displays.map((d) => row(d, answer.time)));
    window.signalpushWalls.displays = answer.displays;
  } catch (error) {
    status.textContent = `cannot reach the server: ${error.message}`;
  }
}

async function loadViews() {
  try {
    const response = await fetch("/api/views", { headers });
    if (!response.ok) return;
    const names = Object.keys((await response.json()).views ?? {});
    viewSelect.replaceChildren(el("option", ""), ...names.map((n) => el("option", n)));
  } catch {
    // views are optional
  }
}

window.signalpushWalls = { displays: [], sent: [], refresh, command };
loadViews();
refresh();
setInterval(refresh, Number(params.get("refresh_s") || 2) * 1000);
