/**
 * What a job looks like to API clients, and the interface both job backends implement: in-process
 * (src/serve/local.ts: a runner in the server, the job table persisted to a folder) and Redis
 * (src/serve/redis.ts: BullMQ queues consumed by `mixcache worker` processes).
 */
import { randomBytes } from "node:crypto";
import { MixCacheError } from "../errors.ts";
import type { CacheSummary, JobStats } from "./execute.ts";
import type { JobSpec } from "./spec.ts";

export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";
export const TERMINAL: readonly JobStatus[] = ["succeeded", "failed", "cancelled"];

export interface JobError {
  code: string;
  message: string;
  fix?: string;
}

export interface JobView {
  id: string;
  object: "video";
  status: JobStatus;
  model: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  progress: { step: number; steps: number };
  request: JobSpec;
  stats: JobStats | null;
  cache: CacheSummary | null;
  error: JobError | null;
  /** Times a runner started the job (a retry after a killed worker or a restart adds one). */
  attempts: number;
  worker: string | null;
  cancel_requested: boolean;
}

export interface IdempotencyClaim {
  key: string;
  /** sha256 of the canonical request body. */
  hash: string;
}

export interface SubmitResult {
  job: JobView;
  /** An earlier submission with the same Idempotency-Key and body: nothing new was queued. */
  replayed: boolean;
}

export interface JobCounts {
  queued: number;
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
}

export interface Backend {
  readonly mode: "in-process" | "redis";
  /** Queue a validated job. Throws ServeError 422 (same key, other body) or 503 (queue down). */
  submit(spec: JobSpec, owner: string, idem?: IdempotencyClaim): Promise<SubmitResult>;
  get(id: string, owner: string): Promise<JobView | null>;
  /** The result as stored (safetensors bytes), or null when there is none (yet). */
  result(id: string, owner: string): Promise<Uint8Array | null>;
  /** Cancel a queued or running job; null when there is no such job. */
  cancel(id: string, owner: string): Promise<JobView | null>;
  /** Call `cb` with the job whenever its status or progress changes; returns the unsubscribe. */
  watch(id: string, owner: string, cb: (job: JobView) => void): () => void;
  counts(): Promise<JobCounts>;
  close(): Promise<void>;
}

/** An error with an HTTP status, a stable code and a fix. */
export class ServeError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly fix?: string) {
    super(message);
    this.name = "ServeError";
  }
}

export function jobError(e: unknown): JobError {
  if (e instanceof MixCacheError) return { code: e.code, message: e.message.split("\n  fix: ")[0], ...(e.fix ? { fix: e.fix } : {}) };
  if (e instanceof ServeError) return { code: e.code, message: e.message, ...(e.fix ? { fix: e.fix } : {}) };
  return { code: "RUNTIME", message: (e as Error)?.message ?? String(e) };
}

/** Job ids: "vid_" + 24 hex characters (96 random bits). */
export function newJobId(): string {
  return `vid_${randomBytes(12).toString("hex")}`;
}

export const JOB_ID_RE = /^vid_[0-9a-f]{24}$/;

export function idempotencyMismatch(key: string): ServeError {
  return new ServeError(422, "IDEMPOTENCY_MISMATCH", `Idempotency-Key "${key}" was already used with a different request body`, "send a new Idempotency-Key for a different request, or resend the original body to get the original job");
}

export function emptyCounts(): JobCounts {
  return { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
}
