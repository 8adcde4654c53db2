/**
 * `mixcache serve` in-process mode (no Redis): submit, poll, SSE progress, content in every format,
 * cancel, idempotency keys, strict 4xx answers that queue nothing, bearer auth when bound beyond
 * loopback, per-token rate limits, and a job table that survives SIGTERM and SIGKILL restarts.
 * Generation is kept tiny (the reference model, a few steps).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./support/tmp.ts";
import { startServe, type RunningServer } from "../src/serve/index.ts";
import { loadModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { openSafetensors } from "../src/weights/safetensors.ts";
import { hasFfmpeg } from "../src/media/mp4.ts";
import { MixCacheError } from "../src/errors.ts";
import { PROMPT, call, readSse, startCli, waitFor } from "./support/serve.ts";

const tmp = () => tempDir("mixcache-serve-");
const servers: RunningServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function serve(o: Parameters<typeof startServe>[0] = {}): Promise<RunningServer> {
  const s = await startServe({ port: 0, dataDir: join(tmp(), "data"), threads: 2, ...o });
  servers.push(s);
  return s;
}

const done = (base: string, id: string, headers: Record<string, string> = {}) =>
  waitFor(`job ${id} to finish`, async () => {
    const r = await call(base, "GET", `/v1/videos/${id}`, { headers });
    return ["succeeded", "failed", "cancelled"].includes(r.json.status) ? r.json : null;
  });

let shared: RunningServer;
const base = () => shared.url;

test("in-process: submit, SSE progress, poll, content as gif/png/safetensors equal to generate()", async () => {
  shared = await serve();
  const openapi = await call(base(), "GET", "/openapi.json");
  assert.equal(openapi.status, 200);
  assert.equal(openapi.json.openapi, "3.0.3");
  for (const p of ["/v1/videos", "/v1/videos/{id}", "/v1/videos/{id}/content", "/v1/videos/{id}/events"]) assert.ok(p in openapi.json.paths, `OpenAPI lacks ${p}`);

  const body = { prompt: PROMPT, steps: 4, seed: 7, cache: "teacache", cache_options: { threshold: 0.05 } };
  const r = await call(base(), "POST", "/v1/videos", { body });
  assert.equal(r.status, 202, r.body.toString());
  const id = r.json.id as string;
  assert.match(id, /^vid_[0-9a-f]{24}$/);
  assert.equal(r.headers.get("location"), `/v1/videos/${id}`);
  assert.deepEqual([r.json.request.steps, r.json.request.seed, r.json.request.cache, r.json.request.width, r.json.request.frames], [4, 7, "teacache", 32, 8]);

  const events = await readSse(`${base()}/v1/videos/${id}/events`);
  const names = events.map((e) => e.event);
  assert.equal(names.at(-1), "done");
  assert.equal(events.at(-1)!.data.status, "succeeded");
  assert.ok(names.includes("status"));
  // progress arrives as progress events or in status snapshots; the last one is complete
  const steps = events.map((e) => (e.event === "progress" ? e.data.step : e.data.progress?.step)).filter((s) => s !== undefined);
  assert.equal(steps.at(-1), 4);

  const job = (await call(base(), "GET", `/v1/videos/${id}`)).json;
  assert.equal(job.status, "succeeded");
  assert.equal(job.attempts, 1);
  assert.equal(job.stats.steps, 4);
  assert.ok(job.stats.macs_executed > 0 && job.stats.macs_executed <= job.stats.macs_full);
  assert.ok(job.cache.tag.startsWith("teacache"), job.cache.tag);

  const gif = await call(base(), "GET", `/v1/videos/${id}/content?format=gif`);
  assert.equal(gif.status, 200);
  assert.equal(gif.headers.get("content-type"), "image/gif");
  assert.equal(gif.body.subarray(0, 6).toString(), "GIF89a");
  const dflt = await call(base(), "GET", `/v1/videos/${id}/content`);
  assert.equal(dflt.body.subarray(0, 6).toString(), "GIF89a");
  const png = await call(base(), "GET", `/v1/videos/${id}/content?format=png`);
  assert.deepEqual([...png.body.subarray(1, 4)], [0x50, 0x4e, 0x47]);
  const mp4 = await call(base(), "GET", `/v1/videos/${id}/content?format=mp4`);
  if (hasFfmpeg()) assert.equal(mp4.status, 200);
  else {
    assert.equal(mp4.status, 501);
    assert.match(mp4.json.error.fix, /ffmpeg/);
  }
  assert.equal((await call(base(), "GET", `/v1/videos/${id}/content?format=avi`)).status, 400);

  const st = await call(base(), "GET", `/v1/videos/${id}/content?format=safetensors`);
  assert.equal(st.status, 200);
  const file = join(tmp(), "v.safetensors");
  writeFileSync(file, st.body);
  const f = openSafetensors(file);
  assert.deepEqual(f.info("video").shape, [3, 8, 32, 32]);
  const served = f.readF32("video");
  f.close();
  // the same video the API gives for the same options
  const model = await loadModel("reference", { threads: 2 });
  try {
    const { makeCache } = await import("../src/cache/registry.ts");
    const direct = await generate({ model, prompt: PROMPT, steps: 4, seed: 7, cache: makeCache("teacache", { threshold: 0.05 }, model) });
    assert.deepEqual(served, direct.video.data);
  } finally {
    await model.release();
  }
});

test("in-process: cancel a queued and a running job; a finished job cannot be cancelled", async () => {
  const long = await call(base(), "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 1000, guidance: 1 } });
  assert.equal(long.status, 202);
  const queued = await call(base(), "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 2 } });
  await waitFor("the long job to run", async () => (await call(base(), "GET", `/v1/videos/${long.json.id}`)).json.progress.step > 0);
  const c1 = await call(base(), "DELETE", `/v1/videos/${queued.json.id}`);
  assert.equal(c1.status, 200);
  assert.equal(c1.json.status, "cancelled");
  const c2 = await call(base(), "DELETE", `/v1/videos/${long.json.id}`);
  assert.equal(c2.status, 202);
  assert.equal(c2.json.cancel_requested, true);
  const j = await done(base(), long.json.id);
  assert.equal(j.status, "cancelled");
  assert.ok(j.progress.step < 1000);
  const content = await call(base(), "GET", `/v1/videos/${long.json.id}/content`);
  assert.equal(content.status, 409);
  assert.ok(content.json.error.fix);
  const ok = await call(base(), "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 2 } });
  await done(base(), ok.json.id);
  const c3 = await call(base(), "DELETE", `/v1/videos/${ok.json.id}`);
  assert.equal(c3.status, 409);
  assert.equal((await call(base(), "GET", "/v1/videos/vid_000000000000000000000000")).status, 404);
});

test("in-process: Idempotency-Key: same body -> same job, other body -> 422", async () => {
  const before = (await call(base(), "GET", "/v1/health")).json.jobs;
  const body = { prompt: PROMPT, steps: 2, seed: 1 };
  const h = { "idempotency-key": "retry-me-1" };
  const a = await call(base(), "POST", "/v1/videos", { body, headers: h });
  assert.equal(a.status, 202);
  // same body, other key order: the same job
  const b = await call(base(), "POST", "/v1/videos", { body: { seed: 1, steps: 2, prompt: PROMPT }, headers: h });
  assert.equal(b.status, 200);
  assert.equal(b.json.id, a.json.id);
  assert.equal(b.headers.get("idempotent-replayed"), "true");
  const c = await call(base(), "POST", "/v1/videos", { body: { ...body, seed: 2 }, headers: h });
  assert.equal(c.status, 422);
  assert.equal(c.json.error.code, "IDEMPOTENCY_MISMATCH");
  assert.ok(c.json.error.fix);
  await done(base(), a.json.id); // settled before the next test compares counts
  const after = (await call(base(), "GET", "/v1/health")).json.jobs;
  const total = (x: Record<string, number>) => Object.values(x).reduce((s, n) => s + n, 0);
  assert.equal(total(after), total(before) + 1);
});

test("in-process: bad requests are 4xx with the fix, and nothing is queued", async () => {
  const s = shared;
  const dir = join((s.backend as unknown as { dir: string }).dir, "jobs");
  const jobsBefore = (await call(s.url, "GET", "/v1/health")).json.jobs;
  const filesBefore = readdirSync(dir).filter((n) => n.endsWith(".json")).length;
  const bad: Array<[number, RegExp, { body?: unknown; raw?: string; headers?: Record<string, string> }]> = [
    [400, /unknown cache strategy "teacach"/, { body: { prompt: PROMPT, cache: "teacach" } }],
    [400, /unknown option "thresh"/, { body: { prompt: PROMPT, cache: "teacache", cache_options: { thresh: 1 } } }],
    [400, /threshold=-1/, { body: { prompt: PROMPT, cache: "teacache", cache_options: { threshold: -1 } } }],
    [400, /"size" 33x32 is not a multiple/, { body: { prompt: PROMPT, size: "33x32" } }],
    [400, /"size" must be "WIDTHxHEIGHT"/, { body: { prompt: PROMPT, size: "big" } }],
    [400, /more than this server accepts/, { body: { prompt: PROMPT, size: "256x256" } }],
    [400, /"seed" must be an integer in 0\.\.4294967295/, { body: { prompt: PROMPT, seed: 4294967296 } }],
    [400, /"seed"/, { body: { prompt: PROMPT, seed: -1 } }],
    [400, /"steps" must be an integer/, { body: { prompt: PROMPT, steps: 2.5 } }],
    [400, /"steps"/, { body: { prompt: PROMPT, steps: 0 } }],
    [400, /unknown field "stepz"/, { body: { prompt: PROMPT, stepz: 3 } }],
    [400, /"prompt" is required/, { body: {} }],
    [400, /outside this model's vocabulary/, { body: { prompt: "a purple elephant" } }],
    [400, /model "nosuch" is not served/, { body: { prompt: PROMPT, model: "nosuch" } }],
    [400, /has no speed target/, { body: { prompt: PROMPT, cache: "teacache", speed: 2 } }],
    [400, /sampler/, { body: { prompt: PROMPT, sampler: "ddim" } }],
    [400, /shift/, { body: { prompt: PROMPT, shift: 0 } }],
    [400, /JSON/, { raw: "{not json", headers: { "content-type": "application/json" } }],
    [415, /Content-Type/, { raw: "prompt=x", headers: { "content-type": "application/x-www-form-urlencoded" } }],
    [413, /over this server's limit of 65536 bytes/, { body: { prompt: "a ".repeat(40_000) } }],
    [400, /must be a JSON object/, { body: [PROMPT] }],
    [400, /"cache_options" must be a JSON object/, { body: { prompt: PROMPT, cache: "teacache", cache_options: "threshold=1" } }],
    [400, /Idempotency-Key/, { body: { prompt: PROMPT }, headers: { "idempotency-key": "has space" } }],
  ];
  for (const [status, re, req] of bad) {
    const r = await call(s.url, "POST", "/v1/videos", req);
    assert.equal(r.status, status, `${JSON.stringify(req)} -> ${r.status} ${r.body}`);
    assert.match(r.json.error.message, re);
    assert.ok(r.json.error.fix && r.json.error.fix.length > 5, `no fix for ${JSON.stringify(req)}: ${r.body}`);
  }
  assert.deepEqual((await call(s.url, "GET", "/v1/health")).json.jobs, jobsBefore);
  assert.equal(readdirSync(dir).filter((n) => n.endsWith(".json")).length, filesBefore);
  // a good request with speed maps onto mixcache's target
  const ok = await call(s.url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 3, speed: 2 } });
  assert.equal(ok.status, 202, ok.body.toString());
  assert.equal(ok.json.request.cache, "mixcache");
  assert.equal(ok.json.request.cache_options.target_speedup, 2);
});

test("bound beyond loopback: a token is required; 401 without it or with a wrong one; per-token rate limits and jobs", async () => {
  await assert.rejects(() => startServe({ host: "0.0.0.0", port: 0, dataDir: join(tmp(), "d") }), (e: unknown) => e instanceof MixCacheError && /no token is set/.test(e.message) && /--token/.test(e.fix ?? ""));
  const A = "token-a-0123456789abcdef", B = "token-b-0123456789abcdef";
  const s = await serve({ host: "0.0.0.0", tokens: [A, B], rateLimit: 5 });
  const url = `http://127.0.0.1:${s.port}`;
  const none = await call(url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 2 } });
  assert.equal(none.status, 401);
  assert.match(none.json.error.fix, /Authorization: Bearer/);
  assert.match(none.headers.get("www-authenticate") ?? "", /Bearer/);
  const wrong = await call(url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 2 }, headers: { authorization: "Bearer not-the-token-000000" } });
  assert.equal(wrong.status, 401);
  assert.equal((await call(url, "GET", "/openapi.json")).status, 200); // the document is public
  assert.equal((await call(url, "GET", "/v1/health", { headers: { authorization: `Bearer ${A}` } })).json.jobs.queued, 0);
  const ok = await call(url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 2 }, headers: { authorization: `Bearer ${A}` } });
  assert.equal(ok.status, 202);
  // another token does not see A's job
  assert.equal((await call(url, "GET", `/v1/videos/${ok.json.id}`, { headers: { authorization: `Bearer ${B}` } })).status, 404);
  let limited = 0;
  for (let i = 0; i < 6; i++) if ((await call(url, "GET", `/v1/videos/${ok.json.id}`, { headers: { authorization: `Bearer ${A}` } })).status === 429) limited++;
  assert.ok(limited >= 1, "token A was never rate limited");
  const b = await call(url, "GET", "/v1/health", { headers: { authorization: `Bearer ${B}` } });
  assert.equal(b.status, 200, "token B shares A's limit");
  const r429 = await call(url, "GET", "/v1/health", { headers: { authorization: `Bearer ${A}` } });
  assert.equal(r429.status, 429);
  assert.ok(r429.json.error.fix);
});

test("restart: SIGTERM requeues the running job, SIGKILL leaves it to be rerun; finished and queued jobs are kept", async () => {
  const data = join(tmp(), "data");
  const args = ["serve", "--port", "0", "--data", data, "--threads", "2"];
  const start = async () => {
    const c = startCli(args);
    const m = await c.waitLine(/listening on (http:\/\/\S+)/);
    return { c, url: m[1] };
  };
  let s = await start();
  const j1 = await call(s.url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 2 } });
  await done(s.url, j1.json.id);
  const j2 = await call(s.url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 40, guidance: 1 } });
  const j3 = await call(s.url, "POST", "/v1/videos", { body: { prompt: PROMPT, steps: 2 } });
  assert.equal(j3.status, 202);
  const running = (url: string) => waitFor("j2 to run", async () => {
    const j = (await call(url, "GET", `/v1/videos/${j2.json.id}`)).json;
    return j.status === "running" && j.progress.step >= 1 ? j : null;
  });
  await running(s.url);
  s.c.child.kill("SIGTERM");
  assert.equal(await s.c.exited, 0, s.c.out());

  s = await start();
  assert.equal((await call(s.url, "GET", `/v1/videos/${j1.json.id}`)).json.status, "succeeded");
  const r2 = await running(s.url);
  assert.equal(r2.attempts, 2);
  s.c.child.kill("SIGKILL");
  await s.c.exited;

  s = await start();
  try {
    const k1 = (await call(s.url, "GET", `/v1/videos/${j1.json.id}`)).json;
    assert.equal(k1.status, "succeeded");
    assert.equal((await call(s.url, "GET", `/v1/videos/${j1.json.id}/content`)).body.subarray(0, 6).toString(), "GIF89a");
    const k2 = await done(s.url, j2.json.id);
    assert.equal(k2.status, "succeeded");
    assert.equal(k2.attempts, 3);
    assert.equal((await done(s.url, j3.json.id)).status, "succeeded");
  } finally {
    s.c.child.kill("SIGTERM");
    await s.c.exited;
  }
});
