/**
 * index.js — the gateway's front page: symbols (GET /api/symbols) and bots (GET /api/bots),
 * with links to walls: every symbol, one symbol, one bot's symbols filtered to that bot.
 * A `token` URL parameter is used for the API calls and carried into the wall links.
 */

const params = new URLSearchParams(location.search);
const token = params.get("token");
// Wall settings given to the index page (minutes, stale_s, ...) are passed on to every wall link.
const passOn = new URLSearchParams([...params].filter(([k]) => !["symbols", "bots"].includes(k)));

export function wallHref(extra = {}) {
  const query = new URLSearchParams(passOn);
  for (const [k, v] of Object.entries(extra)) if (v != null && v !== "") query.set(k, v);
  const text = query.toString();
  return text ? `/wall?${text}` : "/wall";
}

async function api(path) {
  const response = await fetch(path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "–";
  row.append(td);
  return td;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

/**
 * A bot's colour on the index follows when it was last seen, not what it last said: a bot that
 * reported "active" and then died is not green (the wall's stale_s / dead_s defaults, 30 s / 120 s).
 */
function freshness(value) {
  const ms = typeof value === "number" ? value : Date.parse(value ?? "");
  if (!Number.isFinite(ms)) return "dead";
  const s = (Date.now() - ms) / 1000;
  return s < 30 ? "live" : s < 120 ? "stale" : "dead";
}

function ago(value) {
  if (value == null) return "–";
  const ms = typeof value === "number" ? value : Date.parse(value);
  if (!Number.isFinite(ms)) return String(value);
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 90
    ? `${Math.round(s)} s ago`
    : s < 5400
      ? `${Math.round(s / 60)} min ago`
      : `${(s / 3600).toFixed(1)} h ago`;
}

async function load() {
  const status = document.getElementById("status");
  const [symbolsResult, botsResult] = await Promise.allSettled([api("/api/symbols"), api("/api/bots")]);
  // `_alerts` (alerts without a symbol, docs/alerts.md) is a stream, not a market: /alerts shows it.
  const symbols = (symbolsResult.status === "fulfilled" ? (symbolsResult.value.symbols ?? []) : []).filter(
    (s) => !String(s.symbol).startsWith("_"),
  );
  const bots = botsResult.status === "fulfilled" ? (botsResult.value.bots ?? []) : [];
  const problems = [symbolsResult, botsResult]
    .filter((r) => r.status === "rejected")
    .map((r) => r.reason.message);
  status.textContent = problems.length
    ? problems.join("; ")
    : `${symbols.length} symbols, ${bots.length} bots`;
  symbols.sort((a, b) => a.symbol.localeCompare(b.symbol));
  document.getElementById("all-walls").href = wallHref({ symbols: symbols.map((s) => s.symbol).join(",") });

  const symbolBody = document.querySelector("#symbols tbody");
  symbolBody.replaceChildren();
  for (const s of symbols) {
    const row = document.createElement("tr");
    cell(row, s.symbol);
    cell(row, String(s.seq ?? 0));
    cell(row, s.epoch ?? "–");
    cell(
      row,
      bots
        .filter((b) => (b.symbols ?? []).includes(s.symbol))
        .map((b) => b.name)
        .join(", ") || "–",
    );
    cell(row, link(wallHref({ symbols: s.symbol }), "wall"));
    symbolBody.append(row);
  }

  const botBody = document.querySelector("#bots tbody");
  botBody.replaceChildren();
  for (const b of [...bots].sort((x, y) => x.name.localeCompare(y.name))) {
    const row = document.createElement("tr");
    cell(row, b.name);
    cell(row, b.strategy);
    const seen = freshness(b.last_seen);
    cell(row, seen === "live" ? b.status : `${b.status} · ${seen}`).className = `seen-${seen}`;
    cell(
      row,
      b.equity == null ? "–" : Number(b.equity).toLocaleString("en-US", { maximumFractionDigits: 2 }),
    );
    cell(row, ago(b.last_seen));
    cell(row, (b.symbols ?? []).join(", "));
    const syms = (b.symbols ?? []).join(",");
    cell(row, syms ? link(wallHref({ symbols: syms, bots: b.name }), "wall") : "–");
    cell(row, b.id == null ? "–" : String(b.id)); // the stable id the seed API's bot_ids use
    botBody.append(row);
  }
}

load().catch((error) => {
  document.getElementById("status").textContent = String(error.message ?? error);
});
setInterval(() => load().catch(() => {}), 30_000);
