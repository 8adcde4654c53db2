/**
 * bin/mixcache.js on Linux: a one-shot command re-executes itself once with the malloc settings of
 * bin/malloc-env.js; signals sent to the launcher reach the command; a launcher killed outright
 * takes the command with it. Servers run as started (their signals: test/serve.test.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MALLOC_ENV } from "../bin/malloc-env.js";
import { tempDir } from "./support/tmp.ts";

const linux = process.platform === "linux";

function childrenOf(pid: number): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8" }).trim().split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startLong() {
  const env = { ...process.env };
  delete env.MALLOC_MMAP_THRESHOLD_;
  const out = join(tempDir("mixcache-launcher-"), "x.gif");
  const p = spawn(process.execPath, ["bin/mixcache.js", "generate", "a large red circle moving right on a black background", "--steps", "1000", "--out", out], { env, stdio: ["ignore", "ignore", "pipe"] });
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => p.on("exit", (code, signal) => r({ code, signal })));
  let child = 0;
  for (let i = 0; i < 100 && !child; i++) {
    await sleep(100);
    child = childrenOf(p.pid!)[0] ?? 0;
  }
  assert.ok(child, "the launcher started the command as its child");
  return { p, child, exited, out };
}

test("launcher: the command runs as a child with the malloc settings; SIGTERM is passed on", { skip: !linux }, async () => {
  const { p, child, exited } = await startLong();
  const environ = readFileSync(`/proc/${child}/environ`, "utf8").split("\0");
  for (const [k, v] of Object.entries(MALLOC_ENV)) assert.ok(environ.includes(`${k}=${v}`), `${k}=${v} in the command's environment`);
  p.kill("SIGTERM");
  const r = await exited;
  assert.equal(r.signal, "SIGTERM", "the launcher ends with the command's signal");
  for (let i = 0; i < 50 && alive(child); i++) await sleep(100);
  assert.ok(!alive(child), "the command ended");
});

test("launcher: killed outright, it takes the command with it; with the setting already there it runs in place", { skip: !linux }, async () => {
  const { p, child, exited } = await startLong();
  p.kill("SIGKILL");
  await exited;
  for (let i = 0; i < 100 && alive(child); i++) await sleep(100);
  assert.ok(!alive(child), "the command ended with its launcher");
  // with the setting already in the environment there is no second process
  const direct = spawn(process.execPath, ["bin/mixcache.js", "generate", "a large red circle moving right on a black background", "--steps", "1000", "--out", join(tempDir("mixcache-launcher-"), "y.gif")], { env: { ...process.env, ...MALLOC_ENV }, stdio: "ignore" });
  const directExit = new Promise<number | null>((r) => direct.on("exit", (code) => r(code)));
  await sleep(1500);
  assert.ok(alive(direct.pid!), "still generating");
  assert.deepEqual(childrenOf(direct.pid!), [], "no re-execution");
  direct.kill("SIGTERM");
  await directExit;
});
