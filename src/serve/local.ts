/**
 * In-process jobs (`mixcache serve` without --queue): the server runs jobs itself, one at a time,
 * on its warm models. The job table survives a restart: every job is a JSON file
 * `DIR/jobs/<id>.json` written atomically (temp file + rename) before the submission is
 * acknowledged and at every status change, and every result is `DIR/results/<id>.safetensors`.
 * On start the folder is read back: finished jobs stay finished (with their results), queued jobs
 * stay queued and jobs that were running when the server stopped (SIGKILL, power loss) are queued
 * again and rerun from the start. A graceful stop (SIGTERM) interrupts the running job at the next
 * sampler step and leaves it queued. A lock file keeps two servers off one folder.
 */
import { EventEmitter } from "node:events";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { MixCacheError } from "../errors.ts";
import type { LoadedModel } from "../models/load.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { onCleanup } from "../util/cleanup.ts";
import { pidAlive } from "../util/pid.ts";
import { JobInterrupted, executeJob, type InterruptReason } from "./execute.ts";
import {
  JOB_ID_RE, ServeError, emptyCounts, idempotencyMismatch, jobError, newJobId,
  type Backend, type IdempotencyClaim, type JobCounts, type JobView, type SubmitResult,
} from "./jobs.ts";
import type { JobSpec } from "./spec.ts";

interface LocalRecord extends JobView {
  owner: string;
  idem: IdempotencyClaim | null;
}

const LOCK = "serve.lock";

/** Take `DIR/serve.lock` (O_EXCL); a lock of a dead pid on this host is taken over. */
function lockFolder(dir: string): () => void {
  const path = join(dir, LOCK);
  for (let tries = 0; tries < 2; tries++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() }) + "\n");
      closeSync(fd);
      const dispose = onCleanup(() => rmSync(path, { force: true }));
      return () => {
        dispose();
        rmSync(path, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new MixCacheError("IO", `cannot create ${path}: ${(e as Error).message}`, "choose a writable --data folder");
      let held: { pid?: number; host?: string } = {};
      try {
        held = JSON.parse(readFileSync(path, "utf8"));
      } catch {
        // half-written by a killed process: stale
      }
      if (held.host === hostname() && typeof held.pid === "number" && held.pid !== process.pid && pidAlive(held.pid))
        throw new MixCacheError("IO", `${dir} is in use by another mixcache serve (pid ${held.pid})`, "stop that server, or give this one its own --data folder");
      if (held.host && held.host !== hostname())
        throw new MixCacheError("IO", `${dir} is locked by a server on ${held.host} (${path})`, `stop that server, or remove ${path} if it is gone`);
      rmSync(path, { force: true });
    }
  }
  throw new MixCacheError("IO", `cannot lock ${dir}`, "give this server its own --data folder");
}

export class LocalBackend implements Backend {
  readonly mode = "in-process" as const;
  private jobs = new Map<string, LocalRecord>();
  private queue: string[] = [];
  private idem = new Map<string, string>();
  private events = new EventEmitter();
  private interrupts = new Map<string, InterruptReason>();
  private active: Promise<void> | null = null;
  private closed = false;
  private unlock: () => void;
  /** Jobs found running in the folder (the previous server died) and queued again. */
  readonly recovered: string[] = [];

  private constructor(readonly dir: string, private models: ReadonlyMap<string, LoadedModel>, private workerName: string) {
    this.events.setMaxListeners(0);
    mkdirSync(join(dir, "jobs"), { recursive: true });
    mkdirSync(join(dir, "results"), { recursive: true });
    this.unlock = lockFolder(dir);
  }

  /** Open (or create) the job folder, requeue unfinished jobs and start running them. */
  static open(dir: string, models: ReadonlyMap<string, LoadedModel>, workerName = `${hostname()}:${process.pid}`): LocalBackend {
    const b = new LocalBackend(resolve(dir), models, workerName);
    b.load();
    b.pump();
    return b;
  }

  private load(): void {
    const dir = join(this.dir, "jobs");
    const recs: LocalRecord[] = [];
    for (const name of readdirSync(dir)) {
      if (!name.endsWith(".json") || !JOB_ID_RE.test(name.slice(0, -5))) continue;
      try {
        recs.push(JSON.parse(readFileSync(join(dir, name), "utf8")) as LocalRecord);
      } catch (e) {
        process.stderr.write(`mixcache serve: warning: skipping unreadable job file ${join(dir, name)}: ${(e as Error).message}\n`);
      }
    }
    recs.sort((a, b) => a.created_at.localeCompare(b.created_at));
    for (const r of recs) {
      this.jobs.set(r.id, r);
      if (r.idem) this.idem.set(`${r.owner}\0${r.idem.key}`, r.id);
      if (r.status === "running") {
        this.recovered.push(r.id);
        r.status = "queued";
        r.progress = { step: 0, steps: r.progress.steps };
        r.worker = null;
      }
      if (r.status === "queued") {
        if (r.cancel_requested) this.finish(r, "cancelled");
        else this.queue.push(r.id);
      }
      if (this.recovered.includes(r.id)) this.persist(r);
    }
  }

  private persist(r: LocalRecord): void {
    writeFileAtomic(join(this.dir, "jobs", `${r.id}.json`), JSON.stringify(r) + "\n");
  }

  private view(r: LocalRecord): JobView {
    const { owner: _o, idem: _i, ...v } = r;
    return structuredClone(v);
  }

  private emit(r: LocalRecord): void {
    this.events.emit(r.id, this.view(r));
  }

  private finish(r: LocalRecord, status: "succeeded" | "failed" | "cancelled"): void {
    r.status = status;
    r.finished_at = new Date().toISOString();
    this.persist(r);
    this.emit(r);
  }

  async submit(spec: JobSpec, owner: string, idem?: IdempotencyClaim): Promise<SubmitResult> {
    if (this.closed) throw new ServeError(503, "SHUTTING_DOWN", "the server is shutting down; nothing was queued", "retry once it is back (queued jobs are kept across restarts)");
    if (idem) {
      const prev = this.jobs.get(this.idem.get(`${owner}\0${idem.key}`) ?? "");
      if (prev) {
        if (prev.idem!.hash !== idem.hash) throw idempotencyMismatch(idem.key);
        return { job: this.view(prev), replayed: true };
      }
    }
    const r: LocalRecord = {
      id: newJobId(), object: "video", status: "queued", model: spec.model, created_at: new Date().toISOString(), started_at: null, finished_at: null,
      progress: { step: 0, steps: spec.steps }, request: spec, stats: null, cache: null, error: null, attempts: 0, worker: null, cancel_requested: false,
      owner, idem: idem ?? null,
    };
    this.persist(r); // on disk before it is acknowledged
    this.jobs.set(r.id, r);
    if (idem) this.idem.set(`${owner}\0${idem.key}`, r.id);
    this.queue.push(r.id);
    queueMicrotask(() => this.pump());
    return { job: this.view(r), replayed: false };
  }

  private own(id: string, owner: string): LocalRecord | null {
    const r = this.jobs.get(id);
    return r && r.owner === owner ? r : null;
  }

  async get(id: string, owner: string): Promise<JobView | null> {
    const r = this.own(id, owner);
    return r ? this.view(r) : null;
  }

  async result(id: string, owner: string): Promise<Uint8Array | null> {
    const r = this.own(id, owner);
    if (!r || r.status !== "succeeded") return null;
    const path = join(this.dir, "results", `${id}.safetensors`);
    return existsSync(path) ? readFileSync(path) : null;
  }

  async cancel(id: string, owner: string): Promise<JobView | null> {
    const r = this.own(id, owner);
    if (!r) return null;
    if (r.status === "queued") {
      this.queue = this.queue.filter((q) => q !== id);
      r.cancel_requested = true;
      this.finish(r, "cancelled");
    } else if (r.status === "running" && !r.cancel_requested) {
      r.cancel_requested = true;
      this.interrupts.set(id, "cancelled");
      this.persist(r);
      this.emit(r);
    }
    return this.view(r);
  }

  watch(id: string, owner: string, cb: (job: JobView) => void): () => void {
    if (!this.own(id, owner)) return () => {};
    this.events.on(id, cb);
    return () => this.events.off(id, cb);
  }

  async counts(): Promise<JobCounts> {
    const c = emptyCounts();
    for (const r of this.jobs.values()) c[r.status]++;
    return c;
  }

  private pump(): void {
    if (this.active || this.closed) return;
    const id = this.queue.shift();
    if (!id) return;
    this.active = this.run(id).finally(() => {
      this.active = null;
      this.pump();
    });
  }

  private async run(id: string): Promise<void> {
    const r = this.jobs.get(id);
    if (!r || r.status !== "queued") return;
    const model = this.models.get(r.request.model);
    r.status = "running";
    r.started_at = new Date().toISOString();
    r.attempts++;
    r.worker = this.workerName;
    r.progress = { step: 0, steps: r.progress.steps };
    if (!model) {
      r.error = { code: "MODEL_NOT_FOUND", message: `model "${r.request.model}" is not served by this server any more`, fix: `restart mixcache serve with --model ${r.request.model}` };
      this.finish(r, "failed");
      return;
    }
    this.persist(r);
    this.emit(r);
    let last = 0;
    try {
      const out = await executeJob(r.request, model, {
        onProgress: (step, steps) => {
          r.progress = { step, steps };
          const now = performance.now();
          if (step === steps || now - last > 50) {
            last = now;
            this.emit(r);
          }
        },
        interrupt: () => this.interrupts.get(id) ?? null,
      });
      writeFileAtomic(join(this.dir, "results", `${id}.safetensors`), out.bytes);
      r.stats = out.stats;
      r.cache = out.cache;
      this.finish(r, "succeeded");
    } catch (e) {
      if (e instanceof JobInterrupted && e.reason === "requeue") {
        r.status = "queued";
        r.started_at = null;
        r.worker = null;
        r.progress = { step: 0, steps: r.progress.steps };
        this.persist(r);
        this.emit(r);
        this.queue.unshift(id);
      } else if (e instanceof JobInterrupted) {
        this.finish(r, "cancelled");
      } else {
        r.error = jobError(e);
        this.finish(r, "failed");
      }
    } finally {
      this.interrupts.delete(id);
    }
  }

  /** Stop taking jobs; a running job is interrupted at its next step and stays queued on disk. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const id of this.jobs.keys()) if (this.jobs.get(id)!.status === "running" && !this.interrupts.has(id)) this.interrupts.set(id, "requeue");
    await this.active;
    this.events.removeAllListeners();
    this.unlock();
  }
}
