/**
 * `mixcache serve`: the video generation HTTP API (src/serve/). Without --queue the server runs
 * jobs itself on models it loads once, and keeps its job table in --data DIR (survives restarts);
 * with --queue redis://... it only validates and queues, and `mixcache worker`s run the jobs.
 * Binds 127.0.0.1; any other address needs a bearer token (--token or MIXCACHE_TOKEN).
 * SIGINT / SIGTERM stop it (an in-process running job is interrupted and stays queued).
 */
import { UsageError } from "../errors.ts";
import { maxThreads } from "../backend/ort.ts";
import { DEFAULT_BODY_LIMIT, DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_RATE_LIMIT, redactUrl } from "../serve/defaults.ts";
import { helpText, parseArgs, type FlagDef, type Command } from "./args.ts";
import { HELP_FLAG, checkOutputDir, noPositionals } from "./common.ts";

const USAGE = "Usage: mixcache serve [--host 127.0.0.1] [--port 8000] [--model NAME|DIR]... [--queue redis://HOST:PORT] [--token TOKEN]";

const FLAGS: FlagDef[] = [
  { name: "host", type: "string", placeholder: "ADDR", doc: `address to bind (default ${DEFAULT_HOST}; any other needs --token)` },
  { name: "port", type: "int", placeholder: "N", min: 0, max: 65535, doc: `port (default ${DEFAULT_PORT}; 0 = any free port)` },
  { name: "model", type: "list", placeholder: "NAME|DIR", doc: "a model to serve: reference, textures or a folder; repeatable, the first is the default (default reference)" },
  { name: "token", type: "list", placeholder: "TOKEN", doc: "bearer token clients must send; repeatable (rate limits are per token). Also MIXCACHE_TOKEN (comma-separated)" },
  { name: "queue", type: "string", placeholder: "URL", doc: "redis://HOST:PORT: queue jobs on BullMQ for `mixcache worker`s instead of running them here" },
  { name: "data", type: "string", placeholder: "DIR", doc: `in-process mode: folder of the job table and results, kept across restarts (default ${DEFAULT_DATA_DIR})` },
  { name: "store", type: "string", placeholder: "DIR", doc: "queue mode: the shared folder the workers' --store writes results to" },
  { name: "body-limit", type: "int", placeholder: "BYTES", min: 1024, max: 64 * 1024 * 1024, doc: `largest request body (default ${DEFAULT_BODY_LIMIT})` },
  { name: "rate-limit", type: "int", placeholder: "N", min: 0, max: 1_000_000, doc: `requests per minute per token (per client address without tokens); 0 = off (default ${DEFAULT_RATE_LIMIT})` },
  { name: "threads", type: "int", placeholder: "N", min: 1, max: maxThreads(), doc: "onnxruntime intra-op threads of the in-process runner" },
  HELP_FLAG,
];

/** Tokens from --token and MIXCACHE_TOKEN (comma-separated), deduplicated. */
function tokensFrom(flags: string[] | undefined, env = process.env.MIXCACHE_TOKEN): string[] {
  const all = [...(flags ?? []), ...(env ?? "").split(",")].map((t) => t.trim()).filter(Boolean);
  return [...new Set(all)];
}

/** Resolve when SIGINT or SIGTERM arrives (the listeners stay until then). */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((done) => {
    const on = (sig: NodeJS.Signals) => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      done(sig);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}

export const serveCommand: Command = {
  name: "serve",
  summary: "HTTP API for video generation (in-process jobs, or a Redis queue for `mixcache worker`s)",
  async run(argv) {
    const a = parseArgs("serve", argv, FLAGS);
    const f = a.flags;
    if (f.help) {
      process.stdout.write(helpText(USAGE, this.summary, FLAGS));
      return 0;
    }
    noPositionals("serve", a.positionals, USAGE);
    const queue = f.queue as string | undefined;
    if (queue !== undefined && f.data !== undefined) throw new UsageError("--data is for in-process jobs; with --queue the workers keep the results", "drop --data (use --store DIR for a shared result folder)");
    if (queue === undefined && f.store !== undefined) throw new UsageError("--store is for --queue mode (the workers' shared result folder)", "drop --store, or use --data DIR for in-process jobs");
    if (f.data !== undefined) checkOutputDir("--data", f.data as string);
    const tokens = tokensFrom(f.token as string[] | undefined);
    const { startServe } = await import("../serve/index.ts"); // Fastify and BullMQ load only here
    const s = await startServe({
      host: f.host as string | undefined, port: f.port as number | undefined, models: f.model as string[] | undefined, tokens, queue,
      dataDir: f.data as string | undefined, store: f.store as string | undefined,
      bodyLimit: f["body-limit"] as number | undefined, rateLimit: f["rate-limit"] as number | undefined, threads: f.threads as number | undefined,
    });
    const where = s.mode === "redis" ? `queue ${redactUrl(queue!)}` : `in-process, jobs in ${(f.data as string | undefined) ?? DEFAULT_DATA_DIR}`;
    process.stdout.write(`mixcache serve: listening on ${s.url} (${where}; ${tokens.length ? `${tokens.length} token(s)` : "no auth"}; API at ${s.url}/openapi.json)\n`);
    const sig = await untilSignal();
    process.stderr.write(`mixcache serve: ${sig}: stopping\n`);
    await s.close();
    return 0;
  },
};
