/**
 * `startServe()`: what `mixcache serve` runs, callable from code (tests): inspect the models, load
 * them once (in-process mode) or connect to the queue (Redis mode), then listen.
 *
 *   const s = await startServe({ port: 0 });            // in-process, 127.0.0.1, data in out/serve
 *   const s = await startServe({ queue: "redis://127.0.0.1:6379", models: ["reference"] });
 *   s.url; await s.close();
 */
import { MixCacheError, UsageError } from "../errors.ts";
import { loadModel, type LoadedModel } from "../models/load.ts";
import { LocalBackend } from "./local.ts";
import { RedisBackend } from "./redis.ts";
import { buildServer } from "./server.ts";
import { DEFAULT_BODY_LIMIT, DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_RATE_LIMIT } from "./defaults.ts";
import { describeModel, type ServedModel } from "./spec.ts";
import type { Backend } from "./jobs.ts";
import type { FastifyInstance } from "fastify";


export interface ServeOptions {
  host?: string;
  port?: number;
  /** Model names or folders (default ["reference"]); the first is the default of requests. */
  models?: string[];
  tokens?: string[];
  /** redis://... : queue on BullMQ for `mixcache worker`s; without it jobs run in this process. */
  queue?: string;
  /** In-process mode: the folder that keeps the job table and the results. */
  dataDir?: string;
  /** Redis mode: the shared folder workers write results to (when they use --store). */
  store?: string;
  bodyLimit?: number;
  rateLimit?: number;
  threads?: number;
  onLoad?: (done: number, total: number) => void;
}

export interface RunningServer {
  url: string;
  host: string;
  port: number;
  mode: "in-process" | "redis";
  app: FastifyInstance;
  backend: Backend;
  close(): Promise<void>;
}

/** Loopback addresses need no token; any other bind address does. */
function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function checkBind(host: string, tokens: readonly string[]): void {
  if (!isLoopback(host) && tokens.length === 0)
    throw new UsageError(`binding ${host} exposes the API beyond this machine, and no token is set`, "pass --token TOKEN (or set MIXCACHE_TOKEN) so clients must send Authorization: Bearer TOKEN, or bind 127.0.0.1");
  for (const t of tokens)
    if (t.length < 16 || /\s/.test(t)) throw new UsageError("a token must be at least 16 characters without spaces", "use e.g. `openssl rand -hex 24`");
}

export async function startServe(o: ServeOptions = {}): Promise<RunningServer> {
  const host = o.host ?? DEFAULT_HOST;
  const port = o.port ?? DEFAULT_PORT;
  const tokens = o.tokens ?? [];
  checkBind(host, tokens);
  const keys = o.models?.length ? o.models : ["reference"];
  const served: ServedModel[] = [];
  for (const k of keys) {
    const m = describeModel(k);
    if (served.some((s) => s.info.dir === m.info.dir)) throw new UsageError(`--model ${k} is given twice`, "name each model once");
    served.push(m);
  }
  let backend: Backend;
  const loaded = new Map<string, LoadedModel>();
  if (o.queue) backend = await RedisBackend.open(o.queue, served, { store: o.store });
  else {
    try {
      for (const m of served) loaded.set(m.key, await loadModel(m.info.dir, { threads: o.threads }, o.onLoad));
      backend = LocalBackend.open(o.dataDir ?? DEFAULT_DATA_DIR, loaded);
    } catch (e) {
      for (const m of loaded.values()) await m.release();
      throw e;
    }
  }
  let app: FastifyInstance;
  try {
    app = await buildServer({ backend, models: served, tokens, bodyLimit: o.bodyLimit ?? DEFAULT_BODY_LIMIT, rateLimit: o.rateLimit ?? DEFAULT_RATE_LIMIT });
    try {
      await app.listen({ host, port });
    } catch (e) {
      throw new MixCacheError("IO", `cannot listen on ${host}:${port}: ${(e as Error).message}`, "choose another --port (0 picks a free one) or --host");
    }
  } catch (e) {
    await backend.close();
    for (const m of loaded.values()) await m.release();
    throw e;
  }
  const addr = app.server.address();
  const actualPort = typeof addr === "object" && addr ? addr.port : port;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${actualPort}`,
    host, port: actualPort, mode: backend.mode, app, backend,
    close() {
      closing ??= (async () => {
        await app.close();
        await backend.close();
        for (const m of loaded.values()) await m.release();
      })();
      return closing;
    },
  };
}
