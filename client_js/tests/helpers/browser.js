// A headless Chromium driven over the DevTools protocol with `ws` (no browser-driver dependency).
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";

/** The Chromium binary: $SIGNALPUSH_TEST_CHROMIUM, else one on PATH; null when there is none. */
export function findChromium() {
  const candidates = [
    process.env.SIGNALPUSH_TEST_CHROMIUM,
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
  ];
  for (const path of candidates) if (path && existsSync(path)) return path;
  return null;
}

/** plotly.min.js from the Python plotly package (the file the gateway serves at /vendor/plotly.min.js). */
export function findPlotly() {
  if (process.env.SIGNALPUSH_PLOTLY_JS) return process.env.SIGNALPUSH_PLOTLY_JS;
  const code =
    "import os, plotly; print(os.path.join(os.path.dirname(plotly.__file__), 'package_data', 'plotly.min.js'))";
  for (const python of [new URL("../../../.venv/bin/python", import.meta.url).pathname, "python3"]) {
    try {
      const path = execFileSync(python, ["-c", code], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      }).trim();
      if (existsSync(path)) return path;
    } catch {
      // try the next interpreter
    }
  }
  return null;
}

export async function launchBrowser({ width = 1600, height = 900 } = {}) {
  const binary = findChromium();
  if (!binary) throw new Error("no Chromium: set SIGNALPUSH_TEST_CHROMIUM or apt-get install chromium");
  const profile = mkdtempSync(join(tmpdir(), "sp-chromium-"));
  const proc = spawn(
    binary,
    [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--no-first-run",
      "--remote-debugging-port=0",
      "--remote-debugging-address=127.0.0.1",
      `--user-data-dir=${profile}`,
      `--window-size=${width},${height}`,
      "about:blank",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const endpoint = await new Promise((resolve, reject) => {
    let buffer = "";
    const timer = setTimeout(() => reject(new Error(`chromium did not start: ${buffer.slice(-500)}`)), 30000);
    proc.stderr.on("data", (chunk) => {
      buffer += chunk;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(buffer);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.once("exit", (code) => reject(new Error(`chromium exited ${code}: ${buffer.slice(-500)}`)));
  });
  const ws = new WebSocket(endpoint, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  let id = 0;
  const calls = new Map();
  const listeners = [];
  ws.on("message", (data) => {
    const msg = JSON.parse(String(data));
    if (msg.id && calls.has(msg.id)) {
      const { resolve, reject } = calls.get(msg.id);
      calls.delete(msg.id);
      if (msg.error) reject(new Error(`${msg.error.message} ${msg.error.data ?? ""}`));
      else resolve(msg.result);
    } else if (msg.method) for (const fn of listeners) fn(msg);
  });
  const send = (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      calls.set(++id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params, sessionId }));
    });
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const page = (method, params) => send(method, params, sessionId);
  const problems = [];
  listeners.push((msg) => {
    if (msg.sessionId !== sessionId) return;
    if (msg.method === "Runtime.exceptionThrown")
      problems.push(msg.params.exceptionDetails.exception?.description ?? msg.params.exceptionDetails.text);
    if (msg.method === "Runtime.consoleAPICalled" && msg.params.type === "error")
      problems.push(msg.params.args.map((a) => a.value ?? a.description).join(" "));
    if (msg.method === "Log.entryAdded" && msg.params.entry.level === "error")
      problems.push(`${msg.params.entry.text} ${msg.params.entry.url ?? ""}`);
  });
  await page("Runtime.enable");
  await page("Page.enable");
  await page("Log.enable");
  await page("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false });
  return {
    problems,
    async goto(url) {
      await page("Page.navigate", { url });
    },
    async evaluate(expression) {
      const result = await page("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
      if (result.exceptionDetails)
        throw new Error(
          `evaluate failed: ${result.exceptionDetails.exception?.description ?? result.exceptionDetails.text}`,
        );
      return result.result.value;
    },
    async resize(w, h) {
      await page("Emulation.setDeviceMetricsOverride", {
        width: w,
        height: h,
        deviceScaleFactor: 1,
        mobile: false,
      });
    },
    async screenshot() {
      const { data } = await page("Page.captureScreenshot", { format: "png" });
      return Buffer.from(data, "base64");
    },
    async metrics() {
      const { metrics } = await page("Performance.getMetrics");
      return Object.fromEntries(metrics.map((m) => [m.name, m.value]));
    },
    page,
    async close() {
      try {
        await send("Browser.close");
      } catch {
        // already gone
      }
      ws.terminate();
      await new Promise((resolve) => (proc.exitCode != null ? resolve() : proc.once("exit", resolve)));
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
