/**
 * `mixcache worker --queue redis://... --model NAME|DIR`: consume the model's BullMQ queue (filled
 * by `mixcache serve --queue`), with the model loaded once. Run any number, on any machines.
 * SIGTERM / SIGINT: no new jobs; the running one finishes within --grace-ms (then, or on a second
 * signal, it is requeued for another worker); exit 0. See src/serve/redis.ts.
 */
import { UsageError } from "../errors.ts";
import { maxThreads } from "../backend/ort.ts";
import { DEFAULT_MAX_REDIS_BYTES, redactUrl } from "../serve/defaults.ts";
import { helpText, parseArgs, type FlagDef, type Command } from "./args.ts";
import { HELP_FLAG, checkOutputDir, noPositionals } from "./common.ts";

const USAGE = "Usage: mixcache worker --queue redis://HOST:PORT [--model NAME|DIR] [--store DIR]";

const FLAGS: FlagDef[] = [
  { name: "queue", type: "string", placeholder: "URL", doc: "redis://HOST:PORT of the queue mixcache serve --queue fills (required)" },
  { name: "model", type: "string", placeholder: "NAME|DIR", doc: "the model to run: reference, textures or a folder (default reference)" },
  { name: "store", type: "string", placeholder: "DIR", doc: "write results to this shared folder (every node must read it) instead of Redis" },
  { name: "name", type: "string", placeholder: "NAME", doc: "worker name shown in jobs (default host:pid)" },
  { name: "threads", type: "int", placeholder: "N", min: 1, max: maxThreads(), doc: "onnxruntime intra-op threads" },
  { name: "lock-ms", type: "int", placeholder: "MS", min: 200, max: 3_600_000, doc: "job lock; a dead worker's job is retaken after it expires (default 30000)" },
  { name: "stalled-ms", type: "int", placeholder: "MS", min: 100, max: 3_600_000, doc: "how often to look for jobs of dead workers (default 15000)" },
  { name: "max-stalled", type: "int", placeholder: "N", min: 0, max: 100, doc: "times a job may be retaken before it fails (default 2)" },
  { name: "grace-ms", type: "int", placeholder: "MS", min: 0, max: 86_400_000, doc: "on SIGTERM, time the running job may take before it is requeued (default 60000)" },
  { name: "max-redis-bytes", type: "int", placeholder: "BYTES", min: 1, max: 512 * 1024 * 1024, doc: `largest result kept in Redis without --store (default ${DEFAULT_MAX_REDIS_BYTES})` },
  HELP_FLAG,
];

export const workerCommand: Command = {
  name: "worker",
  summary: "run queued video jobs from a Redis queue (scale-out for mixcache serve --queue)",
  async run(argv) {
    const a = parseArgs("worker", argv, FLAGS);
    const f = a.flags;
    if (f.help) {
      process.stdout.write(helpText(USAGE, this.summary, FLAGS));
      return 0;
    }
    noPositionals("worker", a.positionals, USAGE);
    if (f.queue === undefined) throw new UsageError("worker needs --queue redis://HOST:PORT", USAGE);
    if (f.store !== undefined) checkOutputDir("--store", f.store as string);
    const { startWorker } = await import("../serve/redis.ts"); // BullMQ loads only here
    const w = await startWorker({
      url: f.queue as string, model: (f.model as string | undefined) ?? "reference", store: f.store as string | undefined,
      name: f.name as string | undefined, threads: f.threads as number | undefined,
      lockMs: f["lock-ms"] as number | undefined, stalledMs: f["stalled-ms"] as number | undefined, maxStalled: f["max-stalled"] as number | undefined,
      graceMs: f["grace-ms"] as number | undefined, maxRedisBytes: f["max-redis-bytes"] as number | undefined,
    });
    process.stdout.write(`mixcache worker: ${w.name} ready: model ${w.model.name} on queue ${w.queue} at ${redactUrl(f.queue as string)}\n`);
    const onSignal = (sig: NodeJS.Signals) => void w.stop(sig);
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    await w.done;
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.stdout.write(`mixcache worker: ${w.name} stopped\n`);
    return 0;
  },
};
