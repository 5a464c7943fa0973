// The client against a real `signalpush serve` (the project's .venv) on the Redis given by
// SIGNALPUSH_TEST_REDIS_URL: history, live, and a SIGTERM restart (close 1012) resumed with
// nothing lost or duplicated. Skipped without that Redis unless SIGNALPUSH_TEST_STRICT=1.

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { makeClient, recorder, waitUntil } from "./helpers/harness.js";

const BIN = new URL("../../.venv/bin/signalpush", import.meta.url).pathname;
const REDIS = process.env.SIGNALPUSH_TEST_REDIS_URL;
const missing = !REDIS
  ? "SIGNALPUSH_TEST_REDIS_URL is not set"
  : !existsSync(BIN)
    ? `no ${BIN} (make pytest creates it)`
    : null;
if (missing && process.env.SIGNALPUSH_TEST_STRICT === "1")
  throw new Error(`real-server test cannot run: ${missing}`);

const freePort = () =>
  new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

test("a real gateway: history, live, and a restart resumed without loss or duplicates", {
  skip: missing ?? false,
  timeout: 120_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sp-js-real-"));
  const port = await freePort();
  const env = {
    ...process.env,
    SIGNALPUSH_REDIS_URL: REDIS,
    SIGNALPUSH_DATABASE_URL: `sqlite+aiosqlite:///${dir}/sp.db`,
  };
  const symbol = `JS${process.pid}${Date.now() % 100000}`;
  const publish = (i) =>
    promisify(execFile)(
      BIN,
      [
        "publish",
        "signal",
        symbol,
        "type=buy",
        `price=${100 + i}`,
        "confidence=0.7",
        "bot=js-test",
        "strategy=smoke",
      ],
      { env },
    );
  let proc = null;
  const serve = async () => {
    proc = spawn(BIN, ["serve", "--port", String(port)], { env, stdio: "ignore" });
    const exited = new Promise((r) => proc.once("exit", r));
    proc.exited = exited;
  };
  t.after(async () => {
    if (proc && proc.exitCode == null) {
      proc.kill("SIGTERM");
      await proc.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  await serve();
  for (let i = 1; i <= 3; i++) await publish(i);
  const client = makeClient(`ws://127.0.0.1:${port}/ws`, { backoff: { initialMs: 200, maxMs: 1000 } }, t);
  const rec = recorder();
  const sub = client.subscribe({ symbol, history: { minutes: 60 } }, rec.handlers);
  await waitUntil(() => sub.state === "live", { timeoutMs: 30000, message: "live" });
  assert.deepEqual(rec.histories[0].data.signal.seq, [1, 2, 3]);
  for (let i = 4; i <= 6; i++) await publish(i);
  await waitUntil(() => sub.lastSeq === 6, { timeoutMs: 10000, message: "live events" });

  proc.kill("SIGTERM");
  await proc.exited;
  assert.equal(client.states.find((s) => s.state === "down").code, 1012);
  for (let i = 7; i <= 9; i++) await publish(i); // while the gateway is away
  await serve();
  await waitUntil(() => sub.lastSeq === 9, { timeoutMs: 30000, message: "resumed" });
  await publish(10);
  await waitUntil(() => sub.lastSeq === 10, { timeoutMs: 10000, message: "live after resume" });
  assert.deepEqual(rec.seqs(), [4, 5, 6, 7, 8, 9, 10]);
  assert.equal(rec.histories.length, 1, "a resume does not reload");
  assert.equal(client.stats.breaks, 0);
});
