/**
 * Scale-out on Redis with BullMQ. `mixcache serve --queue redis://...` validates a request and adds
 * it to the queue of its model (`video.<model name>`, prefix "mixcache"); `mixcache worker --queue
 * redis://... --model NAME|DIR` on any number of machines consumes that queue with the model loaded
 * once, reports progress through the job (job.updateProgress) and stores the result where every
 * node can read it: in Redis (`mixcache:result:<id>`, for results up to --max-redis-bytes) or as
 * `<id>.safetensors` in a shared --store folder. The job's return value carries the stats, the
 * cache summary and where the result is.
 *
 * Faults:
 *  - a worker killed mid-job (SIGKILL) stops renewing its lock; after lockDuration the stalled-job
 *    check of any other worker (every stalledInterval) moves the job back to wait and another
 *    worker runs it from the start. The dead worker can never complete it (it holds no lock), so
 *    it completes exactly once;
 *  - SIGTERM on a worker: it takes no new job and finishes the running one within --grace-ms, then
 *    exits 0; past the grace time, or on a second signal, the job is moved back to wait at its next
 *    step (another worker, or this one restarted, runs it);
 *  - cancel: a waiting job is removed (and remembered as cancelled); a running one gets a cancel
 *    key its worker polls, and stops at its next step;
 *  - Redis down: the server and the worker refuse to start (exit 1 with the fix); a submission
 *    while it is down is answered 503 with the reason and nothing is acknowledged; workers
 *    reconnect on their own.
 */
import { mkdirSync, readFileSync, existsSync } from "node:fs";
import { hostname } from "node:os";
import { basename, join, resolve } from "node:path";
import { Queue, UnrecoverableError, WaitingError, Worker, type Job } from "bullmq";
import { Redis } from "ioredis";
import { MixCacheError, UsageError } from "../errors.ts";
import { loadModel, type LoadedModel } from "../models/load.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { JobInterrupted, executeJob, type CacheSummary, type JobStats } from "./execute.ts";
import { ServeError, TERMINAL, emptyCounts, idempotencyMismatch, jobError, newJobId, type Backend, type IdempotencyClaim, type JobCounts, type JobError, type JobStatus, type JobView, type SubmitResult } from "./jobs.ts";
import { sha256 } from "../util/hash.ts";
import { describeModel, parseVideoRequest, type JobSpec, type ServedModel } from "./spec.ts";
import { DEFAULT_MAX_REDIS_BYTES, DEFAULT_RESULT_TTL_S, IDEMPOTENCY_TTL_S, redactUrl } from "./defaults.ts";

const PREFIX = "mixcache";

const resultKey = (id: string) => `${PREFIX}:result:${id}`;
const cancelKey = (id: string) => `${PREFIX}:cancel:${id}`;
const CANCELLED_HASH = `${PREFIX}:cancelled`;

export function queueName(modelName: string): string {
  return `video.${modelName.replace(/[^A-Za-z0-9._-]/g, "_")}`;
}

function checkQueueUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`--queue ${JSON.stringify(url)} is not a URL`, "pass redis://HOST:PORT (e.g. redis://127.0.0.1:6379)");
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:")
    throw new UsageError(`--queue ${redactUrl(url)}: only redis:// and rediss:// queues are supported`, "pass redis://HOST:PORT (e.g. redis://127.0.0.1:6379)");
}

function redisFix(): string {
  return "start Redis (apt-get install redis-server && redis-server --daemonize yes), check the --queue URL, or run `mixcache serve` without --queue to run jobs in-process";
}

/** Connect once, strictly (no retries): a refused connection is an IO error with the fix. */
async function probeRedis(url: string): Promise<void> {
  const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 3000, enableOfflineQueue: false });
  let lastError: Error | null = null;
  c.on("error", (e: Error) => (lastError = e));
  try {
    await c.connect();
    const info = await c.info("server");
    const v = /redis_version:(\d+)\.(\d+)/.exec(info);
    if (v && (Number(v[1]) < 6 || (Number(v[1]) === 6 && Number(v[2]) < 2)))
      throw new MixCacheError("IO", `Redis at ${redactUrl(url)} is version ${v[1]}.${v[2]}; BullMQ needs 6.2 or newer`, "upgrade Redis");
  } catch (e) {
    if (e instanceof MixCacheError) throw e;
    const why = (lastError as Error | null)?.message || (e as Error).message || (e as Error).name;
    throw new MixCacheError("IO", `cannot reach Redis at ${redactUrl(url)}: ${why}`, redisFix());
  } finally {
    c.disconnect();
  }
}

interface JobData {
  spec: JobSpec;
  owner: string;
  created_at: string;
}

interface JobReturn {
  stats: JobStats;
  cache: CacheSummary | null;
  result: { store: "redis"; key: string; bytes: number } | { store: "dir"; path: string; bytes: number };
  worker: string;
}

function parseFailure(reason: string | undefined): JobError {
  if (!reason) return { code: "RUNTIME", message: "failed without a reason" };
  try {
    const o = JSON.parse(reason);
    if (o && typeof o.code === "string" && typeof o.message === "string") return o;
  } catch {
    // BullMQ's own reasons (e.g. "job stalled more than allowable limit") are plain text
  }
  return { code: "RUNTIME", message: reason };
}

function unavailable(url: string, e: unknown): ServeError {
  return new ServeError(503, "QUEUE_UNAVAILABLE", `the job queue (Redis at ${redactUrl(url)}) is unavailable: ${(e as Error)?.message ?? e}`, `nothing was queued by this request; retry once Redis is back (${redisFix()})`);
}

/** The server's side: submit, look up, cancel, watch. */
export class RedisBackend implements Backend {
  readonly mode = "redis" as const;
  private queues = new Map<string, Queue>();

  private constructor(private url: string, private client: Redis, models: readonly ServedModel[], private store: string | null) {
    for (const m of models)
      if (!this.queues.has(m.info.name)) this.queues.set(m.info.name, new Queue(queueName(m.info.name), { connection: client, prefix: PREFIX }));
    for (const q of this.queues.values()) q.on("error", () => {});
  }

  static async open(url: string, models: readonly ServedModel[], opts: { store?: string } = {}): Promise<RedisBackend> {
    checkQueueUrl(url);
    await probeRedis(url);
    // fail fast while Redis is down (no offline queue, one retry): submissions get a 503 instead of hanging
    const client = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 3000, retryStrategy: (n) => Math.min(100 * n, 2000) });
    client.on("error", () => {});
    try {
      await client.connect();
    } catch (e) {
      client.disconnect();
      throw new MixCacheError("IO", `cannot reach Redis at ${redactUrl(url)}: ${(e as Error).message}`, redisFix());
    }
    return new RedisBackend(url, client, models, opts.store ? resolve(opts.store) : null);
  }

  private up(): void {
    if (this.client.status !== "ready") throw unavailable(this.url, new Error(`connection ${this.client.status}`));
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    this.up();
    try {
      return await fn();
    } catch (e) {
      if (e instanceof ServeError || e instanceof MixCacheError) throw e;
      throw unavailable(this.url, e);
    }
  }

  async submit(spec: JobSpec, owner: string, idem?: IdempotencyClaim): Promise<SubmitResult> {
    return this.guard(async () => {
      const queue = this.queues.get(spec.model_name);
      if (!queue) throw new ServeError(400, "USAGE", `model ${spec.model_name} is not served here`);
      const id = newJobId();
      const idemKey = idem ? `${PREFIX}:idem:${sha256(owner)}:${sha256(idem.key)}` : "";
      if (idem) {
        const ok = await this.client.set(idemKey, JSON.stringify({ hash: idem.hash, id }), "EX", IDEMPOTENCY_TTL_S, "NX");
        if (!ok) {
          const prev = JSON.parse((await this.client.get(idemKey)) ?? "{}") as { hash?: string; id?: string };
          if (prev.hash !== idem.hash) throw idempotencyMismatch(idem.key);
          const job = prev.id ? await this.get(prev.id, owner) : null;
          if (!job) throw new ServeError(409, "IDEMPOTENCY_IN_PROGRESS", `a request with Idempotency-Key "${idem.key}" is still being queued`, "retry in a moment");
          return { job, replayed: true };
        }
      }
      const data: JobData = { spec, owner, created_at: new Date().toISOString() };
      try {
        // kept as long as a worker keeps the result in Redis; failures and successes alike
        const keep = { age: DEFAULT_RESULT_TTL_S };
        await queue.add("video", data, { jobId: id, attempts: 1, removeOnComplete: keep, removeOnFail: keep });
      } catch (e) {
        if (idem) await this.client.del(idemKey).catch(() => {});
        throw e;
      }
      const job = await this.get(id, owner);
      return { job: job!, replayed: false };
    });
  }

  private async find(id: string, owner: string): Promise<{ job: Job<JobData, JobReturn> } | { tomb: JobView } | null> {
    for (const q of this.queues.values()) {
      const job = (await q.getJob(id)) as Job<JobData, JobReturn> | undefined;
      if (job) return job.data?.owner === owner ? { job } : null;
    }
    const t = await this.client.hget(CANCELLED_HASH, id);
    if (!t) return null;
    const rec = JSON.parse(t) as JobView & { owner: string };
    if (rec.owner !== owner) return null;
    const { owner: _o, ...tomb } = rec;
    return { tomb };
  }

  private async view(job: Job<JobData, JobReturn>): Promise<JobView> {
    const state = await job.getState();
    const failure = state === "failed" ? parseFailure(job.failedReason) : null;
    const status: JobStatus =
      state === "active" ? "running"
        : state === "completed" ? "succeeded"
          : state === "failed" ? (failure!.code === "CANCELLED" ? "cancelled" : "failed")
            : "queued";
    const spec = job.data.spec;
    const p = (job.progress && typeof job.progress === "object" ? job.progress : {}) as { step?: number; steps?: number; worker?: string };
    const rv = status === "succeeded" ? job.returnvalue : null;
    const cancelRequested = !TERMINAL.includes(status) && (await this.client.exists(cancelKey(job.id!))) === 1;
    return {
      id: job.id!, object: "video", status, model: spec.model,
      created_at: job.data.created_at,
      started_at: status !== "queued" && job.processedOn ? new Date(job.processedOn).toISOString() : null,
      finished_at: TERMINAL.includes(status) && job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
      progress: status === "queued" ? { step: 0, steps: spec.steps } : { step: p.step ?? 0, steps: p.steps ?? spec.steps },
      request: spec,
      stats: rv?.stats ?? null,
      cache: rv?.cache ?? null,
      error: status === "failed" || status === "cancelled" ? failure : null,
      attempts: job.attemptsStarted ?? 0,
      worker: rv?.worker ?? (status === "queued" ? null : (p.worker ?? job.processedBy ?? null)),
      cancel_requested: cancelRequested || status === "cancelled",
    };
  }

  async get(id: string, owner: string): Promise<JobView | null> {
    return this.guard(async () => {
      const f = await this.find(id, owner);
      if (!f) return null;
      return "tomb" in f ? f.tomb : this.view(f.job);
    });
  }

  async result(id: string, owner: string): Promise<Uint8Array | null> {
    return this.guard(async () => {
      const f = await this.find(id, owner);
      if (!f || "tomb" in f || (await f.job.getState()) !== "completed") return null;
      const r = f.job.returnvalue.result;
      if (r.store === "redis") return (await this.client.getBuffer(r.key)) ?? null;
      // a shared folder may be mounted elsewhere on this node: prefer this server's --store
      const local = this.store ? join(this.store, basename(r.path)) : r.path;
      const path = existsSync(local) ? local : r.path;
      if (!existsSync(path)) throw new ServeError(500, "RESULT_MISSING", `the result of ${id} is not at ${path} on this node`, "give mixcache serve --store the shared folder its workers write to");
      return readFileSync(path);
    });
  }

  async cancel(id: string, owner: string): Promise<JobView | null> {
    return this.guard(async () => {
      const f = await this.find(id, owner);
      if (!f) return null;
      if ("tomb" in f) return f.tomb;
      const v = await this.view(f.job);
      if (TERMINAL.includes(v.status)) return v;
      if (v.status === "queued") {
        try {
          await f.job.remove();
          const tomb: JobView = { ...v, status: "cancelled", cancel_requested: true, finished_at: new Date().toISOString(), error: { code: "CANCELLED", message: "cancelled by request before it ran" } };
          await this.client.hset(CANCELLED_HASH, id, JSON.stringify({ ...tomb, owner }));
          return tomb;
        } catch {
          // a worker took it meanwhile (it is locked): cancel it as a running job
        }
      }
      await this.client.set(cancelKey(id), "1", "EX", IDEMPOTENCY_TTL_S);
      return { ...(await this.view(f.job)), cancel_requested: true };
    });
  }

  watch(id: string, owner: string, cb: (job: JobView) => void): () => void {
    let last = "";
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const tick = async () => {
      try {
        const j = await this.get(id, owner);
        if (j && !stopped) {
          const sig = `${j.status}/${j.progress.step}/${j.progress.steps}/${j.cancel_requested}/${j.attempts}`;
          if (sig !== last) {
            last = sig;
            cb(j);
          }
        }
      } catch {
        // Redis blip: try again at the next tick
      }
      if (!stopped) timer = setTimeout(tick, 200);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  async counts(): Promise<JobCounts> {
    return this.guard(async () => {
      const c = emptyCounts();
      for (const q of this.queues.values()) {
        const n = await q.getJobCounts("waiting", "delayed", "prioritized", "active", "completed", "failed");
        c.queued += (n.waiting ?? 0) + (n.delayed ?? 0) + (n.prioritized ?? 0);
        c.running += n.active ?? 0;
        c.succeeded += n.completed ?? 0;
        c.failed += n.failed ?? 0;
      }
      c.cancelled = await this.client.hlen(CANCELLED_HASH);
      return c;
    });
  }

  async close(): Promise<void> {
    for (const q of this.queues.values()) await q.close().catch(() => {});
    this.client.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------
// the worker

export interface WorkerOptions {
  url: string;
  /** Model name (reference, textures) or folder. */
  model: string;
  /** Shared folder for results (default: results go into Redis). */
  store?: string;
  name?: string;
  threads?: number;
  /** BullMQ lock of a running job; another worker retakes a job whose lock expired. */
  lockMs?: number;
  /** How often this worker looks for stalled jobs (lock expired) and requeues them. */
  stalledMs?: number;
  /** Times a job may be retaken after its worker died before it is failed. */
  maxStalled?: number;
  /** SIGTERM: how long the running job may take to finish before it is requeued. */
  graceMs?: number;
  maxRedisBytes?: number;
  resultTtlS?: number;
  log?: (line: string) => void;
}

export interface RunningWorker {
  name: string;
  queue: string;
  model: LoadedModel;
  /** Stop: finish the running job (requeue it after graceMs or when called again), then release. */
  stop(reason?: string): Promise<void>;
  /** Settles when the worker stopped. */
  done: Promise<void>;
}

export async function startWorker(o: WorkerOptions): Promise<RunningWorker> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  checkQueueUrl(o.url);
  const served = describeModel(o.model);
  if (o.store) mkdirSync(o.store, { recursive: true });
  await probeRedis(o.url);
  const name = o.name ?? `${hostname()}:${process.pid}`;
  const model = await loadModel(served.info.dir, { threads: o.threads });
  const qname = queueName(served.info.name);
  const maxRedisBytes = o.maxRedisBytes ?? DEFAULT_MAX_REDIS_BYTES;
  const ttl = o.resultTtlS ?? DEFAULT_RESULT_TTL_S;
  // BullMQ workers block on Redis: no per-request retry limit, reconnect forever
  const conn = new Redis(o.url, { maxRetriesPerRequest: null });
  const kv = new Redis(o.url, { maxRetriesPerRequest: null });
  let lastError = 0;
  const onError = (e: Error) => {
    const now = Date.now();
    if (now - lastError > 5000) log(`worker ${name}: redis: ${e.message}`);
    lastError = now;
  };
  conn.on("error", onError);
  kv.on("error", onError);
  let requeueNow = false;

  const fail = (e: JobError) => new UnrecoverableError(JSON.stringify(e));
  const processor = async (job: Job<JobData, JobReturn>, token?: string): Promise<JobReturn> => {
    const id = job.id!;
    let spec: JobSpec;
    try {
      // the worker's own model decides: the same strict validation as at submission
      spec = parseVideoRequest(specToBody(job.data.spec), [{ ...served, key: job.data.spec.model }]);
    } catch (e) {
      throw fail(jobError(e));
    }
    if (await kv.exists(cancelKey(id))) throw fail({ code: "CANCELLED", message: "cancelled by request" });
    let cancelled = false;
    const poll = setInterval(() => {
      kv.exists(cancelKey(id)).then((n) => { if (n) cancelled = true; }, () => {});
    }, 200);
    let last = 0;
    log(`worker ${name}: running ${id} (${spec.steps} steps, cache ${spec.cache}, attempt ${job.attemptsStarted})`);
    try {
      const out = await executeJob(spec, model, {
        onProgress: (step, steps) => {
          const now = performance.now();
          if (step === steps || now - last > 100) {
            last = now;
            job.updateProgress({ step, steps, worker: name }).catch(() => {});
          }
        },
        interrupt: () => (cancelled ? "cancelled" : requeueNow ? "requeue" : null),
      });
      let result: JobReturn["result"];
      if (o.store) {
        const path = resolve(o.store, `${id}.safetensors`);
        writeFileAtomic(path, out.bytes);
        result = { store: "dir", path, bytes: out.bytes.length };
      } else if (out.bytes.length <= maxRedisBytes) {
        await kv.set(resultKey(id), Buffer.from(out.bytes), "EX", ttl);
        result = { store: "redis", key: resultKey(id), bytes: out.bytes.length };
      } else {
        throw fail({ code: "IO", message: `the result is ${out.bytes.length} bytes, more than --max-redis-bytes ${maxRedisBytes}`, fix: "start the workers with --store DIR on a folder every node can read (and mixcache serve with the same --store)" });
      }
      log(`worker ${name}: finished ${id} in ${out.stats.wall_ms} ms`);
      return { stats: out.stats, cache: out.cache, result, worker: name };
    } catch (e) {
      if (e instanceof JobInterrupted && e.reason === "requeue") {
        log(`worker ${name}: requeueing ${id}`);
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (e instanceof JobInterrupted) {
        log(`worker ${name}: cancelled ${id}`);
        throw fail({ code: "CANCELLED", message: "cancelled by request while running" });
      }
      if (e instanceof UnrecoverableError) throw e;
      throw fail(jobError(e));
    } finally {
      clearInterval(poll);
    }
  };

  const worker = new Worker<JobData, JobReturn>(qname, processor, {
    connection: conn, prefix: PREFIX, name, concurrency: 1,
    lockDuration: o.lockMs ?? 30_000, stalledInterval: o.stalledMs ?? 15_000, maxStalledCount: o.maxStalled ?? 2,
    autorun: false,
  });
  worker.on("error", onError);
  void worker.run().catch((e) => onError(e as Error));
  await worker.waitUntilReady();

  let stopping: Promise<void> | null = null;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const stop = (reason = "stop"): Promise<void> => {
    if (stopping) {
      requeueNow = true;
      return stopping;
    }
    const grace = o.graceMs ?? 60_000;
    log(`worker ${name}: ${reason}: taking no new jobs, finishing the running one (requeued after ${grace} ms or on a second signal)`);
    const timer = setTimeout(() => (requeueNow = true), grace);
    stopping = (async () => {
      await worker.close();
      clearTimeout(timer);
      kv.disconnect();
      conn.disconnect();
      await model.release();
      resolveDone();
    })();
    return stopping;
  };
  return { name, queue: qname, model, stop, done };
}

/** A JobSpec as a request body again (the worker re-validates it against its own model). */
function specToBody(s: JobSpec): Record<string, unknown> {
  return {
    prompt: s.prompt, negative: s.negative, model: s.model, steps: s.steps, guidance: s.guidance, shift: s.shift, seed: s.seed,
    size: `${s.width}x${s.height}`, frames: s.frames, sampler: s.sampler, cache: s.cache, cache_options: s.cache_options,
  };
}
