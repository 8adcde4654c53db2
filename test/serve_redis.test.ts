/**
 * `mixcache serve --queue redis://...` with `mixcache worker` processes on BullMQ: jobs spread over
 * workers, a worker killed with SIGKILL mid-job -> the job is retaken by another and completes
 * exactly once, SIGTERM finishes (or, on a second signal, requeues) the running job, a server
 * restart keeps the jobs, and Redis being down gives exit 1 at startup and 503 at submit.
 *
 * Needs a reachable Redis: MIXCACHE_TEST_REDIS (default redis://127.0.0.1:6379; .ci/run starts
 * one). The tests use database 13 of it (or the one in the URL) and delete its mixcache:* keys.
 * Skipped, with the reason, when none answers.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { startServe, type RunningServer } from "../src/serve/index.ts";
import { queueName } from "../src/serve/redis.ts";
import { PROMPT, call, freePort, readSse, startCli, waitFor, type Cli } from "./support/serve.ts";

const BASE = process.env.MIXCACHE_TEST_REDIS ?? "redis://127.0.0.1:6379";
const URL_ = (() => {
  const u = new URL(BASE);
  if (u.pathname === "" || u.pathname === "/") u.pathname = "/13";
  return u.toString();
})();

async function reachable(url: string): Promise<boolean> {
  const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1500 });
  c.on("error", () => {});
  try {
    await c.connect();
    await c.ping();
    return true;
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}

const skip = (await reachable(URL_)) ? false : `no Redis reachable at ${BASE}: set MIXCACHE_TEST_REDIS, or install redis-server (.ci/run installs and starts one)`;
const QUEUE = queueName("mixcache-reference-shapes");

let server: RunningServer;
let events: QueueEvents;
let eventsConn: Redis;
const completed = new Map<string, number>();
const workers = new Map<string, Cli>();

const WORKER_ARGS = ["--lock-ms", "2000", "--stalled-ms", "500", "--threads", "1"];
function startWorker(name: string): Cli {
  const w = startCli(["worker", "--queue", URL_, "--name", name, ...WORKER_ARGS]);
  workers.set(name, w);
  return w;
}

before(async () => {
  if (skip) return;
  const r = new Redis(URL_);
  const keys = await r.keys("mixcache:*");
  if (keys.length) await r.del(...keys);
  r.disconnect();
  const ready = ["wa", "wb", "wc"].map((n) => startWorker(n).waitLine(/ready: model/, 60_000));
  server = await startServe({ port: 0, queue: URL_ });
  eventsConn = new Redis(URL_, { maxRetriesPerRequest: null });
  events = new QueueEvents(QUEUE, { connection: eventsConn, prefix: "mixcache" });
  events.on("completed", ({ jobId }) => completed.set(jobId, (completed.get(jobId) ?? 0) + 1));
  await events.waitUntilReady();
  await Promise.all(ready);
});

after(async () => {
  for (const w of workers.values()) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
  await events?.close();
  eventsConn?.disconnect();
  await server?.close();
});

const job = async (id: string) => (await call(server.url, "GET", `/v1/videos/${id}`)).json;
const finished = (id: string, timeoutMs = 30_000) =>
  waitFor(`job ${id} to finish`, async () => {
    const j = await job(id);
    return ["succeeded", "failed", "cancelled"].includes(j.status) ? j : null;
  }, timeoutMs);
const runningAt = (id: string, step: number, notOn?: string) =>
  waitFor(`job ${id} to run`, async () => {
    const j = await job(id);
    return j.status === "running" && j.progress.step >= step && j.worker && j.worker !== notOn ? j : null;
  }, 30_000);

test("redis: jobs spread over the workers; SSE progress; content through the server", { skip }, async () => {
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await call(server.url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 12, seed: i } });
    assert.equal(r.status, 202, r.body.toString());
    ids.push(r.json.id);
  }
  const sse = await readSse(`${server.url}/v1/videos/${ids[3]}/events`);
  assert.equal(sse.at(-1)!.event, "done");
  assert.equal(sse.at(-1)!.data.status, "succeeded");
  const jobs = await Promise.all(ids.map((id) => finished(id)));
  for (const j of jobs) {
    assert.equal(j.status, "succeeded", JSON.stringify(j.error));
    assert.equal(j.stats.steps, 12);
    assert.equal(j.attempts, 1);
  }
  const used = new Set(jobs.map((j) => j.worker));
  assert.ok(used.size >= 2, `all jobs ran on ${[...used]}`);
  const gif = await call(server.url, "GET", `/v1/videos/${ids[0]}/content?format=gif`);
  assert.equal(gif.body.subarray(0, 6).toString(), "GIF89a");
  const st = await call(server.url, "GET", `/v1/videos/${ids[0]}/content?format=safetensors`);
  assert.equal(st.status, 200);
  assert.equal(st.body.length, 8 + Number(st.body.readBigUInt64LE(0)) + 3 * 8 * 32 * 32 * 4);
});

test("redis: a worker killed with SIGKILL mid-job -> another worker reruns it, completed exactly once", { skip }, async () => {
  const r = await call(server.url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 60, guidance: 1 } });
  assert.equal(r.status, 202);
  const id = r.json.id;
  const first = await runningAt(id, 2);
  const victim = workers.get(first.worker)!;
  victim.child.kill("SIGKILL");
  await victim.exited;
  workers.delete(first.worker);
  const j = await finished(id);
  assert.equal(j.status, "succeeded", JSON.stringify(j.error));
  assert.notEqual(j.worker, first.worker);
  assert.equal(j.attempts, 2);
  await new Promise((res) => setTimeout(res, 300)); // let a (wrong) second completion show up
  assert.equal(completed.get(id), 1);
  assert.doesNotMatch(victim.out(), new RegExp(`finished ${id}`));
});

test("redis: SIGTERM twice requeues the running job, once lets it finish; a server restart keeps the jobs", { skip }, async () => {
  assert.equal(workers.size, 2);
  const r = await call(server.url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 60, guidance: 1 } });
  const id = r.json.id;
  const first = await runningAt(id, 2);
  const w1 = workers.get(first.worker)!;
  w1.child.kill("SIGTERM");
  await w1.waitLine(/SIGTERM: taking no new jobs/);
  w1.child.kill("SIGTERM"); // the second signal: requeue now
  assert.equal(await w1.exited, 0, w1.out());
  assert.match(w1.out(), new RegExp(`requeueing ${id}`));
  workers.delete(first.worker);
  const second = await runningAt(id, 1, first.worker);
  const w2 = workers.get(second.worker)!;
  w2.child.kill("SIGTERM");
  assert.equal(await w2.exited, 0, w2.out());
  const j = await finished(id);
  assert.equal(j.status, "succeeded", JSON.stringify(j.error));
  assert.equal(j.worker, second.worker);
  assert.equal(j.progress.step, 60);
  assert.equal(completed.get(id), 1);

  // no worker is left: a new job waits in the queue, and a restarted server still has both
  const q = await call(server.url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 2 } });
  await server.close();
  server = await startServe({ port: 0, queue: URL_ });
  assert.equal((await job(id)).status, "succeeded");
  assert.equal((await job(q.json.id)).status, "queued");
  assert.equal((await call(server.url, "DELETE", `/v1/videos/${q.json.id}`)).json.status, "cancelled");
  assert.equal((await job(q.json.id)).status, "cancelled");
});

test("redis down: exit 1 with the fix at startup; 503 at submit; acknowledged jobs survive a Redis restart", { skip }, async () => {
  const port = await freePort();
  const dead = `redis://127.0.0.1:${port}`;
  for (const args of [["serve", "--port", "0", "--queue", dead], ["worker", "--queue", dead]]) {
    const r = spawnSync(process.execPath, ["bin/mixcache.js", ...args], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/);
    assert.match(r.stderr, /fix: start Redis/);
  }
  const bin = spawnSync("redis-server", ["--version"]);
  if (bin.status !== 0) return; // the 503 half needs a private redis-server we can stop
  const dir = mkdtempSync(join(tmpdir(), "mixcache-redis-"));
  const startRedis = () => {
    const p = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", dir], { stdio: "ignore" });
    return p;
  };
  let redis = startRedis();
  let s: RunningServer | null = null;
  try {
    s = await waitFor("private redis", async () => startServe({ port: 0, queue: dead }), 10_000, 100);
    const ok = await call(s.url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 2 } });
    assert.equal(ok.status, 202);
    redis.kill("SIGTERM");
    await new Promise((res) => redis.once("exit", res));
    const down = await call(s.url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 2 } });
    assert.equal(down.status, 503);
    assert.equal(down.json.error.code, "QUEUE_UNAVAILABLE");
    assert.match(down.json.error.message, /unavailable/);
    assert.match(down.json.error.fix, /nothing was queued/);
    assert.equal((await call(s.url, "GET", `/v1/videos/${ok.json.id}`)).status, 503);
    redis = startRedis();
    const back = await waitFor("the server to reconnect", async () => {
      const r = await call(s!.url, "GET", `/v1/videos/${ok.json.id}`);
      return r.status === 200 ? r.json : null;
    }, 15_000, 200);
    assert.equal(back.status, "queued");
  } finally {
    await s?.close();
    redis.kill("SIGKILL");
  }
});
