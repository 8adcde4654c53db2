/**
 * `npm run bench:serve`: a bounded load test of `mixcache serve` on loopback only.
 *
 * For each row: start the server (and, in queue mode, the workers) as child processes on
 * 127.0.0.1, wait until the models are loaded, run one warm-up job per runner (excluded from the
 * numbers), then let N concurrent clients each run J jobs in a closed loop: POST /v1/videos with
 * an Idempotency-Key (retried with the same key on a network error, 429 or 5xx), follow the job's
 * server-sent events to `done` (falling back to polling), then fetch its safetensors once and
 * check it. Each client also re-sends its first request once (same key, same body) and must get
 * the same job back (200, nothing new queued).
 *
 * Rows: `mixcache serve --queue` with 1 and with 2 `mixcache worker`s (a private redis-server on a
 * free loopback port, no persistence, unless --redis URL), and the in-process server (no queue).
 *
 * Reported per row: jobs/minute (completed jobs / time from the first submission to the last
 * `done`), p50/p95 submit->done latency seen by the client (linear interpolation), the server-side
 * run time (p50 of the job's stats.wall_ms), and the accounting: every acknowledged job must
 * succeed exactly once (attempts 1, one "finished" line in the worker logs or one job file in the
 * in-process data folder, no job that no client was acknowledged) and its content must be
 * retrievable and well-formed (safetensors, F32 video [3, T, H, W] of the requested size, finite
 * values). Also printed: the machine (cores, CPU, load average at start and end).
 *
 * Options:
 *   --clients N      concurrent clients (default 4)
 *   --jobs N         jobs per client (default 3)
 *   --steps N        sampler steps per job (default 10)
 *   --cache NAME     cache strategy of the jobs (default none)
 *   --workers LIST   worker counts of the queue rows, e.g. 1,2 (default 1,2; "none" = no queue rows)
 *   --no-in-process  skip the in-process row
 *   --threads N      onnxruntime threads per runner (default: cores / runners, at least 1)
 *   --warmup N       warm-up jobs per runner before the clock starts (default 1; 0 = none)
 *   --redis URL      use this Redis (its database as given; nothing is deleted) instead of a private one
 *   --model NAME|DIR the model (default reference)
 *   --timeout S      bound on the whole run in seconds (default 480); past it: exit 1
 *   --json           print exactly one JSON object on stdout (the table goes to stderr)
 *   --verbose        copy the children's output to stderr
 * Exit codes: 0 every job accounted for, 1 a job lost/failed/duplicated, a start failure or the
 * timeout, 2 a usage error; 130/143 on SIGINT/SIGTERM (children stopped, temp folders removed).
 */
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  BenchTimeout, abortable, checkStopped, clearDeadline, installCleanup, makeTemp, onPath, removeTemps, setPhase, setVerbose, sleep,
  startChild, startDeadline, startPrivateRedis, stopChildren, stopSignal, tail, wasSignalled, type Child,
} from "./serve-procs.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bin", "mixcache.js");
const PROMPTS = [
  "a large red circle moving right on a black background",
  "a small cyan square moving up on a gray background",
];

// ---------------------------------------------------------------------------------------------
// options

interface Options {
  clients: number;
  jobs: number;
  steps: number;
  cache: string;
  workers: number[];
  inProcess: boolean;
  threads: number | null;
  warmup: number;
  redis: string | null;
  model: string;
  timeoutS: number;
  json: boolean;
  verbose: boolean;
}

class Usage extends Error {}

function parseOptions(argv: string[]): Options {
  const o: Options = { clients: 4, jobs: 3, steps: 10, cache: "none", workers: [1, 2], inProcess: true, threads: null, warmup: 1, redis: null, model: "reference", timeoutS: 480, json: false, verbose: false };
  const int = (flag: string, v: string | undefined, min: number, max: number): number => {
    if (v === undefined || !/^[0-9]{1,7}$/.test(v) || Number(v) < min || Number(v) > max) throw new Usage(`${flag} takes an integer in ${min}..${max}, got ${JSON.stringify(v ?? "")}`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf("=");
    const flag = a.startsWith("--") && eq > 0 ? a.slice(0, eq) : a;
    const val = () => (a.startsWith("--") && eq > 0 ? a.slice(eq + 1) : argv[++i]);
    switch (flag) {
      case "--clients": o.clients = int(flag, val(), 1, 64); break;
      case "--jobs": o.jobs = int(flag, val(), 1, 1000); break;
      case "--steps": o.steps = int(flag, val(), 1, 1000); break;
      case "--threads": o.threads = int(flag, val(), 1, 4 * availableParallelism()); break;
      case "--warmup": o.warmup = int(flag, val(), 0, 10); break;
      case "--timeout": o.timeoutS = int(flag, val(), 10, 24 * 3600); break;
      case "--cache": {
        const v = val();
        if (!v || !/^[a-z0-9-]+$/.test(v)) throw new Usage(`--cache takes a strategy name (see npx mixcache caches), got ${JSON.stringify(v ?? "")}`);
        o.cache = v;
        break;
      }
      case "--model": {
        const v = val();
        if (!v) throw new Usage("--model takes a name or a folder");
        o.model = v;
        break;
      }
      case "--workers": {
        const v = val() ?? "";
        if (v === "none") o.workers = [];
        else {
          if (!/^[0-9]{1,2}(,[0-9]{1,2})*$/.test(v)) throw new Usage(`--workers takes a list of worker counts like 1,2 (or none), got ${JSON.stringify(v)}`);
          o.workers = [...new Set(v.split(",").map(Number))];
          if (o.workers.some((n) => n < 1 || n > 16)) throw new Usage("--workers: each count must be 1..16");
        }
        break;
      }
      case "--redis": {
        const v = val() ?? "";
        let u: URL;
        try {
          u = new URL(v);
        } catch {
          throw new Usage(`--redis takes redis://HOST:PORT[/DB], got ${JSON.stringify(v)}`);
        }
        if (u.protocol !== "redis:") throw new Usage("--redis takes a redis:// URL");
        if (!["127.0.0.1", "localhost", "[::1]"].includes(u.hostname)) throw new Usage("--redis must be on loopback (127.0.0.1 / localhost): this bench runs on loopback only");
        o.redis = v;
        break;
      }
      case "--no-in-process": o.inProcess = false; break;
      case "--json": o.json = true; break;
      case "--verbose": o.verbose = true; break;
      case "--help": case "-h":
        process.stdout.write(readFileSync(fileURLToPath(import.meta.url), "utf8").split("*/")[0].replace(/^\/\*\*?\n?/, "").replace(/^ \* ?/gm, ""));
        process.exit(0);
        break;
      default: throw new Usage(`unknown option ${JSON.stringify(a)}`);
    }
  }
  if (!o.inProcess && o.workers.length === 0) throw new Usage("nothing to run: --workers none and --no-in-process");
  return o;
}

// ---------------------------------------------------------------------------------------------
// HTTP client side

interface Sample {
  client: number;
  index: number;
  key: string;
  id: string | null;
  /** ms since the row's clock started */
  submitAt: number;
  ackAt: number | null;
  doneAt: number | null;
  fetchMs: number | null;
  postTries: number;
  status: string | null;
  attempts: number | null;
  runMs: number | null;
  queueMs: number | null;
  worker: string | null;
  contentOk: boolean;
  contentSha: string | null;
  error: string | null;
  warmup: boolean;
}

interface RowResult {
  mode: "queue" | "in-process";
  workers: number;
  threads: number;
  startupS: number;
  samples: Sample[];
  windowMs: number;
  jobsPerMin: number;
  latency: { p50: number; p95: number; max: number } | null;
  runP50Ms: number | null;
  queueP50Ms: number | null;
  acknowledged: number;
  succeeded: number;
  failed: number;
  lost: number;
  duplicated: number;
  phantom: number;
  replayOk: number;
  replayChecked: number;
  perWorker: Record<string, number>;
  problems: string[];
}

const now = () => performance.now();

async function http(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, signal: stopSignal });
}

const f1 = (x: number | null | undefined, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(d));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const x = (sorted.length - 1) * p;
  const lo = Math.floor(x);
  const hi = Math.ceil(x);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo);
}

/** POST with the idempotency key; retried with the same key on network errors, 409 in-progress, 429 and 5xx. */
async function submit(base: string, body: object, key: string, s: Sample): Promise<{ status: number; json: { id: string } | null; replayed: boolean }> {
  let lastErr = "";
  for (let tries = 1; tries <= 6; tries++) {
    s.postTries = tries;
    try {
      const r = await http(`${base}/v1/videos`, { method: "POST", headers: { "content-type": "application/json", "idempotency-key": key }, body: JSON.stringify(body) });
      const text = await r.text();
      if (r.status === 200 || r.status === 202) return { status: r.status, json: JSON.parse(text), replayed: r.headers.get("idempotent-replayed") === "true" };
      lastErr = `POST ${r.status}: ${text.slice(0, 300)}`;
      if (!(r.status === 409 || r.status === 429 || r.status >= 500)) return { status: r.status, json: null, replayed: false };
    } catch (e) {
      checkStopped();
      lastErr = `POST: ${(e as Error).message}`;
    }
    await sleep(200 * tries);
  }
  throw new Error(`${lastErr} (after 6 tries with the same Idempotency-Key)`);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type JobJson = any;

/** Follow the job's server-sent events until `done`; on a dropped stream, poll. Returns the finished job. */
async function follow(base: string, id: string): Promise<JobJson> {
  try {
    const r = await http(`${base}/v1/videos/${id}/events`);
    if (r.status === 200 && r.body) {
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut: number;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const ev = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (ev === "done" && data) {
            void reader.cancel().catch(() => {});
            return JSON.parse(data);
          }
        }
      }
    } else await r.body?.cancel();
  } catch (e) {
    checkStopped();
    // fall through to polling
  }
  for (;;) {
    try {
      const r = await http(`${base}/v1/videos/${id}`);
      if (r.status === 200) {
        const j = await r.json();
        if (["succeeded", "failed", "cancelled"].includes(j.status)) return j;
      } else await r.body?.cancel();
    } catch {
      checkStopped();
    }
    await sleep(250);
  }
}

/** Check a safetensors result: one F32 tensor "video" [3, T, H, W] as requested, the right size, finite values
 * (not a range: a few-step run can land slightly outside [-1, 1]). */
function checkSafetensors(buf: Buffer, want: { frames: number; height: number; width: number }): string | null {
  if (buf.length < 8) return "shorter than 8 bytes";
  const n = Number(buf.readBigUInt64LE(0));
  if (n > buf.length - 8) return "header length past the end";
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  } catch {
    return "header is not JSON";
  }
  const v = header.video;
  if (!v) return "no tensor \"video\"";
  const shape = [3, want.frames, want.height, want.width];
  if (v.dtype !== "F32" || JSON.stringify(v.shape) !== JSON.stringify(shape)) return `video is ${v.dtype} ${JSON.stringify(v.shape)}, expected F32 ${JSON.stringify(shape)}`;
  const bytes = shape.reduce((a, b) => a * b, 4);
  if (v.data_offsets[0] !== 0 || v.data_offsets[1] !== bytes || buf.length !== 8 + n + bytes) return `size ${buf.length} does not match the header`;
  const base = 8 + n;
  for (let i = 0; i < bytes; i += 4) {
    const x = buf.readFloatLE(base + i);
    if (!Number.isFinite(x)) return `value ${x} at element ${i / 4} is not finite`;
  }
  return null;
}

async function runJob(base: string, row: string, client: number, index: number, o: Options, t0: number, warmup: boolean, replayCheck: { ok: number; checked: number } | null): Promise<Sample> {
  const seed = 1000 * client + index;
  const body = { prompt: PROMPTS[(client + index) % PROMPTS.length], steps: o.steps, seed, cache: o.cache };
  const key = `bench-${row}-${warmup ? "w" : "c"}${client}-j${index}-${randomBytes(4).toString("hex")}`;
  const s: Sample = {
    client, index, key, id: null, submitAt: now() - t0, ackAt: null, doneAt: null, fetchMs: null, postTries: 0, status: null, attempts: null,
    runMs: null, queueMs: null, worker: null, contentOk: false, contentSha: null, error: null, warmup,
  };
  try {
    const r = await submit(base, body, key, s);
    if (!r.json) {
      s.error = `not acknowledged: ${r.status}`;
      return s;
    }
    s.id = r.json.id;
    s.ackAt = now() - t0;
    if (replayCheck) {
      // a client retry of an acknowledged request: same key and body -> the same job, nothing new queued
      replayCheck.checked++;
      const again = await submit(base, body, key, { ...s });
      if (again.status === 200 && again.replayed && again.json?.id === s.id) replayCheck.ok++;
      else s.error = `idempotent replay returned ${again.status} ${again.json?.id ?? ""} (expected 200 ${s.id})`;
    }
    const job = await follow(base, s.id!);
    s.doneAt = now() - t0;
    s.status = job.status;
    s.attempts = job.attempts;
    s.worker = job.worker;
    s.runMs = job.stats?.wall_ms ?? null;
    if (job.started_at && job.created_at) s.queueMs = Date.parse(job.started_at) - Date.parse(job.created_at);
    if (job.status !== "succeeded") {
      s.error = `job ${job.status}: ${job.error ? `${job.error.code} ${job.error.message}` : "?"}`;
      return s;
    }
    const f0 = now();
    const c = await http(`${base}/v1/videos/${s.id}/content?format=safetensors`);
    const buf = Buffer.from(await c.arrayBuffer());
    s.fetchMs = now() - f0;
    if (c.status !== 200) {
      s.error = `content ${c.status}: ${buf.toString("utf8").slice(0, 200)}`;
      return s;
    }
    const bad = checkSafetensors(buf, { frames: job.request.frames, height: job.request.height, width: job.request.width });
    if (bad) s.error = `content: ${bad}`;
    else {
      s.contentOk = true;
      s.contentSha = createHash("sha256").update(buf.subarray(8 + Number(buf.readBigUInt64LE(0)))).digest("hex").slice(0, 16);
    }
  } catch (e) {
    if (stopSignal.aborted) throw e;
    s.error = (e as Error).message;
  }
  return s;
}

async function health(base: string): Promise<Record<string, number>> {
  const r = await http(`${base}/v1/health`);
  if (r.status !== 200) throw new Error(`GET /v1/health: ${r.status}`);
  return (await r.json()).jobs;
}

// ---------------------------------------------------------------------------------------------
// one row

function log(msg: string): void {
  process.stderr.write(`bench:serve: ${msg}\n`);
}

async function runRow(o: Options, mode: "queue" | "in-process", workers: number, redisUrl: string | null, cores: number): Promise<RowResult> {
  const rowName = mode === "queue" ? `q${workers}` : "inproc";
  const runners = mode === "queue" ? workers : 1;
  const threads = o.threads ?? Math.max(1, Math.floor(cores / runners));
  const dir = makeTemp(`mixcache-bench-serve-${rowName}-`);
  const started: Child[] = [];
  const label = mode === "queue" ? `queue, ${workers} worker${workers > 1 ? "s" : ""}` : "in-process";
  log(`${label}: starting (${threads} thread${threads > 1 ? "s" : ""} per runner)`);
  try {
    setPhase(`${label}: starting`);
    const s0 = now();
    const common = ["--host", "127.0.0.1", "--port", "0", "--rate-limit", "0", "--model", o.model];
    const server = mode === "queue"
      ? startChild(`serve-${rowName}`, process.execPath, [BIN, "serve", ...common, "--queue", redisUrl!], { cwd: ROOT, logFile: join(dir, "serve.log") })
      : startChild(`serve-${rowName}`, process.execPath, [BIN, "serve", ...common, "--data", join(dir, "data"), "--threads", String(threads)], { cwd: ROOT, logFile: join(dir, "serve.log") });
    started.push(server);
    const ws: Child[] = [];
    for (let i = 0; i < (mode === "queue" ? workers : 0); i++) {
      const w = startChild(`w${i + 1}`, process.execPath, [BIN, "worker", "--queue", redisUrl!, "--model", o.model, "--name", `${rowName}-w${i + 1}`, "--threads", String(threads)], { cwd: ROOT, logFile: join(dir, `w${i + 1}.log`) });
      ws.push(w);
      started.push(w);
    }
    const base = (await server.waitLine(/listening on (http:\/\/\S+) \(/))[1];
    await Promise.all(ws.map((w) => w.waitLine(/ready: model/)));
    const startupS = (now() - s0) / 1000;
    const before = await abortable(health(base));

    // warm-up: one job per runner, concurrently (each runner takes one job at a time)
    const warm: Sample[] = [];
    if (o.warmup > 0) {
      setPhase(`${label}: warm-up`);
      const t = now();
      for (let k = 0; k < o.warmup; k++) warm.push(...(await Promise.all(Array.from({ length: runners }, (_, i) => runJob(base, rowName, i, 100 + k, o, t, true, null)))));
    }

    // the measured part: N clients, each J jobs in a closed loop
    setPhase(`${label}: ${o.clients} clients x ${o.jobs} jobs`);
    const replay = { ok: 0, checked: 0 };
    const t0 = now();
    const perClient = await Promise.all(Array.from({ length: o.clients }, async (_, c) => {
      const out: Sample[] = [];
      for (let j = 0; j < o.jobs; j++) out.push(await runJob(base, rowName, c, j, o, t0, false, j === 0 ? replay : null));
      return out;
    }));
    const samples = perClient.flat();
    const windowMs = Math.max(...samples.map((s) => s.doneAt ?? s.ackAt ?? 0)) - Math.min(...samples.map((s) => s.submitAt));
    const after = await abortable(health(base));

    // accounting: every acknowledged job done exactly once, nothing unacknowledged ran
    setPhase(`${label}: accounting`);
    const all = [...warm, ...samples];
    const acked = all.filter((s) => s.id);
    const ids = new Set(acked.map((s) => s.id!));
    const problems: string[] = [];
    if (ids.size !== acked.length) problems.push(`${acked.length - ids.size} acknowledgements share a job id across different keys`);
    const runs = new Map<string, number>();
    const perWorker: Record<string, number> = {};
    if (mode === "queue") {
      for (const w of ws)
        for (const m of w.out().matchAll(/: finished (vid_[0-9a-f]+) in /g)) runs.set(m[1], (runs.get(m[1]) ?? 0) + 1);
      for (const w of ws) perWorker[w.name] = [...w.out().matchAll(/: finished (vid_[0-9a-f]+) in /g)].filter((m) => samples.some((s) => s.id === m[1])).length;
    } else {
      const jobsDir = join(dir, "data", "jobs");
      for (const f of readdirSync(jobsDir).filter((n) => n.endsWith(".json"))) {
        const rec = JSON.parse(readFileSync(join(jobsDir, f), "utf8"));
        if (rec.status === "succeeded") runs.set(rec.id, rec.attempts);
        else runs.set(rec.id, 0);
      }
      perWorker.server = samples.filter((s) => s.status === "succeeded").length;
    }
    let duplicated = 0;
    let lost = 0;
    let failed = 0;
    for (const s of acked) {
      const n = runs.get(s.id!) ?? 0;
      if (s.status !== null && s.status !== "succeeded") failed++;
      else if (!s.contentOk || n === 0) lost++;
      if (n > 1 || (s.attempts ?? 1) > 1) duplicated++;
      if (s.error) problems.push(`${s.id}: ${s.error}`);
    }
    for (const s of all) if (!s.id && s.error) problems.push(`client ${s.client} job ${s.index}: ${s.error}`);
    const phantom = [...runs.keys()].filter((id) => !ids.has(id)).length;
    if (phantom) problems.push(`${phantom} job(s) ran that no client was acknowledged`);
    const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
    if (after.queued || after.running) problems.push(`server still counts ${after.queued} queued, ${after.running} running`);
    const seen = all.filter((s) => s.status === "succeeded").length;
    if (delta("succeeded") !== seen) problems.push(`server counts ${delta("succeeded")} new succeeded jobs (warm-up included), clients saw ${seen}`);
    for (const k of ["failed", "cancelled"]) if (delta(k) !== 0) problems.push(`server counts ${delta(k)} new ${k} jobs`);
    if (replay.ok !== replay.checked) problems.push(`${replay.checked - replay.ok} of ${replay.checked} idempotent replays did not return the first job`);

    const measured = samples.filter((s) => s.status === "succeeded" && s.contentOk && s.doneAt !== null);
    const lat = measured.map((s) => (s.doneAt! - s.submitAt) / 1000).sort((a, b) => a - b);
    const runMs = measured.map((s) => s.runMs ?? NaN).filter(Number.isFinite).sort((a, b) => a - b);
    const queueMs = measured.map((s) => s.queueMs ?? NaN).filter(Number.isFinite).sort((a, b) => a - b);
    const r: RowResult = {
      mode, workers: runners, threads, startupS, samples: all, windowMs,
      jobsPerMin: windowMs > 0 ? (measured.length / windowMs) * 60_000 : 0,
      latency: lat.length ? { p50: percentile(lat, 0.5), p95: percentile(lat, 0.95), max: lat.at(-1)! } : null,
      runP50Ms: runMs.length ? percentile(runMs, 0.5) : null,
      queueP50Ms: queueMs.length ? percentile(queueMs, 0.5) : null,
      acknowledged: samples.filter((s) => s.id).length,
      succeeded: measured.length,
      failed, lost, duplicated, phantom, replayOk: replay.ok, replayChecked: replay.checked, perWorker, problems,
    };
    log(`${label}: ${r.succeeded}/${o.clients * o.jobs} ok, ${f1(r.jobsPerMin)} jobs/min, p50 ${f1(r.latency?.p50, 2)} s, p95 ${f1(r.latency?.p95, 2)} s${problems.length ? `; ${problems.length} problem(s)` : ""}`);
    return r;
  } catch (e) {
    if (!stopSignal.aborted) for (const c of started) if (!c.alive() || /error|Error/.test(c.out())) log(`${c.name} output:\n${tail(c.out())}`);
    throw e;
  } finally {
    setPhase(`${label}: stopping`);
    await stopChildren(started, stopSignal.aborted ? 1500 : 10_000);
  }
}

// ---------------------------------------------------------------------------------------------
// output


function table(rows: RowResult[], o: Options): string {
  const head = ["mode", "runners", "thr", "ok/acked", "jobs/min", "p50 s", "p95 s", "max s", "run p50 s", "wait p50 s", "lost", "dup", "failed", "startup s"];
  const body = rows.map((r) => [
    r.mode === "queue" ? "queue (redis)" : "in-process", String(r.workers), String(r.threads), `${r.succeeded}/${r.acknowledged}`,
    f1(r.jobsPerMin), f1(r.latency?.p50, 2), f1(r.latency?.p95, 2), f1(r.latency?.max, 2), f1(r.runP50Ms === null ? null : r.runP50Ms / 1000, 2),
    f1(r.queueP50Ms === null ? null : r.queueP50Ms / 1000, 2), String(r.lost), String(r.duplicated + r.phantom), String(r.failed), f1(r.startupS),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(" | ")} |`;
  return [line(head), `|${w.map((n, i) => (i === 0 ? "-".repeat(n + 1) + "-" : "-".repeat(n + 1) + ":")).join("|")}|`, ...body.map(line)].join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// main

async function main(): Promise<number> {
  let o: Options;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (e) {
    if (e instanceof Usage) {
      process.stderr.write(`bench:serve: ${e.message}\n  usage: npm run bench:serve -- [--clients 4] [--jobs 3] [--steps 10] [--workers 1,2] [--redis URL] [--timeout 480] [--json] (--help for all)\n`);
      return 2;
    }
    throw e;
  }
  setVerbose(o.verbose);
  installCleanup((sig) => log(`${sig}: stopping the children and removing the temp folders`));
  startDeadline(o.timeoutS);
  const t0 = Date.now();
  const cores = availableParallelism();
  const machine = {
    cores, cpu: cpus()[0]?.model?.trim() ?? "?", memory_gib: Number((totalmem() / 2 ** 30).toFixed(1)), node: process.version,
    loadavg_start: loadavg().map((x) => Number(x.toFixed(2))), loadavg_end: [] as number[], redis: null as string | null,
  };
  const notes: string[] = [];
  log(`${cores} cores (${machine.cpu}), load average ${machine.loadavg_start.join(" ")} at start; ${o.clients} clients x ${o.jobs} jobs, ${o.steps} steps, cache ${o.cache}, model ${o.model}; timeout ${o.timeoutS} s`);
  if (machine.loadavg_start[0] > cores * 0.5) notes.push(`load average ${machine.loadavg_start[0]} on ${cores} cores at start: other processes share the CPU, so the absolute numbers are low and noisy`);

  const rows: RowResult[] = [];
  let exit = 0;
  let failure = "";
  try {
    let redisUrl: string | null = o.redis;
    if (o.workers.length && !redisUrl) {
      if (onPath("redis-server")) {
        setPhase("starting redis-server");
        const r = await startPrivateRedis();
        redisUrl = r.url;
        machine.redis = `redis-server ${r.version} (private, 127.0.0.1:${r.port}, no persistence)`;
      } else {
        notes.push("redis-server is not on the PATH: the queue rows were skipped (apt-get install redis-server, or pass --redis redis://127.0.0.1:PORT)");
        log(notes.at(-1)!);
      }
    } else if (redisUrl) machine.redis = `${redisUrl} (given; database as in the URL)`;
    if (redisUrl) {
      for (const [k, n] of o.workers.entries()) {
        // a private Redis: a database of its own per row; a given one: as given (counts are compared before/after)
        let url = redisUrl;
        if (!o.redis) url = `${redisUrl}/${k + 1}`;
        rows.push(await runRow(o, "queue", n, url, cores));
      }
    }
    if (o.inProcess) rows.push(await runRow(o, "in-process", 1, null, cores));
  } catch (e) {
    if (wasSignalled()) return new Promise<number>(() => {}); // the signal handler exits
    exit = 1;
    if (e instanceof BenchTimeout || (stopSignal.aborted && stopSignal.reason instanceof BenchTimeout)) {
      const t = (e instanceof BenchTimeout ? e : stopSignal.reason) as BenchTimeout;
      failure = `${t.message}; ${rows.length} row(s) finished. Lower --clients/--jobs/--steps or raise --timeout.`;
      log(`FAILED: ${failure}`);
    } else {
      failure = (e as Error).message ?? String(e);
      log(`FAILED: ${(e as Error).stack ?? e}`);
    }
  } finally {
    clearDeadline();
    await stopChildren(undefined, 5000);
    removeTemps();
  }
  machine.loadavg_end = loadavg().map((x) => Number(x.toFixed(2)));

  const out = o.json ? process.stderr : process.stdout;
  out.write(`\nmixcache bench:serve — loopback, ${o.clients} clients x ${o.jobs} jobs (closed loop), ${o.steps} steps, cache ${o.cache}, model ${o.model}, warm-up ${o.warmup}/runner\n`);
  out.write(`machine: ${cores} cores, ${machine.cpu}, ${machine.memory_gib} GiB, node ${machine.node}; load average ${machine.loadavg_start.join(" ")} at start, ${machine.loadavg_end.join(" ")} at end${machine.redis ? `; ${machine.redis}` : ""}\n\n`);
  if (rows.length) out.write(table(rows, o));
  if (rows.length) out.write("\nlatency: client submit -> SSE done (p50/p95 linear interpolation); run: the job's own wall_ms; wait: created -> started on the server; dup: ran twice or ran unacknowledged\n");
  for (const r of rows) {
    const who = Object.entries(r.perWorker).map(([k, v]) => `${k} ${v}`).join(", ");
    out.write(`${r.mode === "queue" ? `queue x${r.workers}` : "in-process"}: jobs per runner ${who}; idempotent replays ${r.replayOk}/${r.replayChecked}; window ${(r.windowMs / 1000).toFixed(1)} s\n`);
  }
  // the same seeds across rows: are the results bit-identical? (informational; thread counts differ)
  if (rows.length > 1) {
    const byKey = new Map<string, Set<string>>();
    for (const r of rows) for (const s of r.samples) if (!s.warmup && s.contentSha) {
      const k = `${s.client}/${s.index}`;
      byKey.set(k, (byKey.get(k) ?? new Set()).add(s.contentSha));
    }
    const same = [...byKey.values()].filter((v) => v.size === 1).length;
    out.write(`results identical across rows (same prompt and seed): ${same}/${byKey.size}\n`);
  }
  for (const n of notes) out.write(`note: ${n}\n`);
  for (const r of rows) {
    if (r.problems.length || r.lost || r.duplicated || r.phantom || r.failed || r.succeeded !== o.clients * o.jobs) {
      exit = 1;
      out.write(`PROBLEMS (${r.mode} x${r.workers}):\n${r.problems.map((p) => `  - ${p}`).join("\n") || "  - not every job succeeded"}\n`);
    }
  }
  const wall = (Date.now() - t0) / 1000;
  out.write(`${exit === 0 ? "OK: every acknowledged job completed exactly once and its content was retrieved" : `FAILED${failure ? `: ${failure}` : ""}`} (${wall.toFixed(0)} s in all)\n`);
  if (o.json) {
    process.stdout.write(JSON.stringify({
      ok: exit === 0, failure: failure || null, options: { ...o }, machine, notes, wall_s: Number(wall.toFixed(1)),
      rows: rows.map((r) => ({
        mode: r.mode, runners: r.workers, threads_per_runner: r.threads, startup_s: Number(r.startupS.toFixed(2)), acknowledged: r.acknowledged, succeeded: r.succeeded,
        jobs_per_min: Number(r.jobsPerMin.toFixed(2)), latency_s: r.latency && { p50: Number(r.latency.p50.toFixed(3)), p95: Number(r.latency.p95.toFixed(3)), max: Number(r.latency.max.toFixed(3)) },
        run_p50_ms: r.runP50Ms, wait_p50_ms: r.queueP50Ms, window_s: Number((r.windowMs / 1000).toFixed(2)),
        lost: r.lost, duplicated: r.duplicated, phantom: r.phantom, failed: r.failed, idempotent_replays: { ok: r.replayOk, checked: r.replayChecked },
        jobs_per_runner: r.perWorker, problems: r.problems,
        jobs: r.samples.map((s) => ({ client: s.client, index: s.index, warmup: s.warmup, id: s.id, status: s.status, worker: s.worker, attempts: s.attempts, latency_ms: s.doneAt === null ? null : Math.round(s.doneAt - s.submitAt), run_ms: s.runMs, fetch_ms: s.fetchMs === null ? null : Math.round(s.fetchMs), post_tries: s.postTries, content_ok: s.contentOk, error: s.error })),
      })),
    }) + "\n");
  }
  return exit;
}

process.exitCode = await main();
