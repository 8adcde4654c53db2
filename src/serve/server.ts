/**
 * The HTTP API of `mixcache serve`, on Fastify:
 *
 *   POST   /v1/videos                      submit (JSON body, see spec.ts; Idempotency-Key header)
 *   GET    /v1/videos/{id}                 status, progress, stats, cache summary
 *   GET    /v1/videos/{id}/content         ?format=gif|mp4|png|safetensors (default gif)
 *   GET    /v1/videos/{id}/events          server-sent events: status, progress, done
 *   DELETE /v1/videos/{id}                 cancel a queued or running job
 *   GET    /v1/models, /v1/caches, /v1/health
 *   GET    /openapi.json                   the OpenAPI 3 document (no auth)
 *   GET    /healthz                        liveness (no auth)
 *
 * Every error is `{ "error": { "code", "message", "fix" } }` with a 4xx/5xx status: 400 a bad
 * request (the CLI's strict messages: unknown cache, bad knob, bad size, words outside the
 * vocabulary), 401 a missing or wrong bearer token, 404 no such job, 409 not ready / already
 * finished, 413 a body over the limit, 415 not JSON, 422 an Idempotency-Key reused with another
 * body, 429 over the per-token rate limit, 501 MP4 without ffmpeg, 503 the queue is down. A
 * request that fails validation queues nothing.
 */
import { timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import fastifySwagger from "@fastify/swagger";
import fastifyRateLimit from "@fastify/rate-limit";
import { MixCacheError } from "../errors.ts";
import { describeStrategies } from "../cache/registry.ts";
import { hasFfmpeg } from "../media/mp4.ts";
import { CONTENT_FORMATS, CONTENT_TYPES, renderContent, type ContentFormat } from "./output.ts";
import { JOB_ID_RE, ServeError, TERMINAL, jobError, type Backend, type JobView } from "./jobs.ts";
import { canonicalJson, sha256 } from "../util/hash.ts";
import { DEFAULT_BODY_LIMIT, DEFAULT_RATE_LIMIT } from "./defaults.ts";
import { VIDEO_REQUEST_SCHEMA, parseVideoRequest, type ServedModel } from "./spec.ts";

declare module "fastify" {
  interface FastifyRequest {
    owner: string;
  }
}

export interface ServerOptions {
  backend: Backend;
  models: readonly ServedModel[];
  /** Bearer tokens; empty = no auth (loopback only, enforced by the CLI). */
  tokens?: readonly string[];
  /** Largest request body in bytes (default 64 KiB). */
  bodyLimit?: number;
  /** Requests per minute per token (or per client address without auth); 0 = no limit. */
  rateLimit?: number;
  version?: string;
}


const ERROR_SCHEMA = {
  type: "object",
  properties: {
    error: { type: "object", properties: { code: { type: "string" }, message: { type: "string" }, fix: { type: "string" } }, required: ["code", "message"] },
  },
} as const;

const COUNT3 = { type: "object", properties: { branches: { type: "integer" }, blocks: { type: "integer" }, modules: { type: "integer" } } } as const;

const JOB_SCHEMA = {
  type: "object",
  properties: {
    id: { type: "string" },
    object: { type: "string", enum: ["video"] },
    status: { type: "string", enum: ["queued", "running", "succeeded", "failed", "cancelled"] },
    model: { type: "string" },
    created_at: { type: "string", format: "date-time" },
    started_at: { type: "string", format: "date-time", nullable: true },
    finished_at: { type: "string", format: "date-time", nullable: true },
    progress: { type: "object", properties: { step: { type: "integer" }, steps: { type: "integer" } } },
    request: { type: "object", description: "the request with every default resolved", additionalProperties: true },
    stats: {
      type: "object", nullable: true,
      properties: {
        steps: { type: "integer" }, sampled_steps: { type: "integer" }, wall_ms: { type: "integer" },
        macs_full: { type: "number" }, macs_executed: { type: "number" }, compute_speedup: { type: "number" },
        computed: COUNT3, reused: COUNT3, total: COUNT3,
      },
    },
    cache: {
      type: "object", nullable: true,
      properties: {
        name: { type: "string" }, tag: { type: "string" }, peak_bytes: { type: "integer" },
        counters: { type: "object", additionalProperties: { type: "number" } }, warnings: { type: "array", items: { type: "string" } },
      },
    },
    error: { type: "object", nullable: true, properties: { code: { type: "string" }, message: { type: "string" }, fix: { type: "string" } } },
    attempts: { type: "integer" },
    worker: { type: "string", nullable: true },
    cancel_requested: { type: "boolean" },
  },
} as const;

const ID_PARAMS = { type: "object", properties: { id: { type: "string", description: "job id (vid_...)" } }, required: ["id"] } as const;
const ERRORS = { 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 404: ERROR_SCHEMA, 429: ERROR_SCHEMA, 503: ERROR_SCHEMA } as const;

function tokenOwner(token: string): string {
  return `t:${sha256(token).slice(0, 16)}`;
}

function bearer(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  if (typeof h !== "string") return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : null;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(sha256(a), "hex"), y = Buffer.from(sha256(b), "hex");
  return timingSafeEqual(x, y);
}

function sendError(reply: FastifyReply, status: number, code: string, message: string, fix?: string): FastifyReply {
  return reply.code(status).type("application/json").send({ error: { code, message, ...(fix ? { fix } : {}) } });
}

export async function buildServer(o: ServerOptions): Promise<FastifyInstance> {
  const tokens = o.tokens ?? [];
  const bodyLimit = o.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const rateLimit = o.rateLimit ?? DEFAULT_RATE_LIMIT;
  const backend = o.backend;
  const app = Fastify({ bodyLimit, logger: false, forceCloseConnections: true, return503OnClosing: true });
  // validation is parseVideoRequest's (the CLI's messages and fixes); schemas document the API
  app.removeContentTypeParser("text/plain"); // JSON only: anything else is 415
  app.setValidatorCompiler(() => () => true);
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.decorateRequest("owner", "");

  await app.register(fastifySwagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "MixCache video generation API",
        version: o.version ?? "0.1.0",
        description: "Text-to-video on a Wan2.1 diffusion transformer with training-free caches. Jobs run in-process or on BullMQ workers.",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: tokens.length ? [{ bearer: [] }] : [],
    },
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; fix?: string }, _req, reply) => {
    if (err instanceof ServeError) return sendError(reply, err.status, err.code, err.message, err.fix);
    if (err instanceof MixCacheError) {
      const e = jobError(err);
      const client = ["USAGE", "CONFIG", "VOCAB", "MODEL_NOT_FOUND"].includes(err.code);
      return sendError(reply, client ? 400 : 500, e.code, e.message, e.fix);
    }
    switch (err.code) {
      case "FST_ERR_CTP_BODY_TOO_LARGE":
        return sendError(reply, 413, "BODY_TOO_LARGE", `the request body is over this server's limit of ${bodyLimit} bytes`, `send a smaller JSON body (the limit is mixcache serve --body-limit)`);
      case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
        return sendError(reply, 415, "UNSUPPORTED_MEDIA_TYPE", `unsupported Content-Type ${JSON.stringify(_req.headers["content-type"] ?? "")}`, "send Content-Type: application/json");
      case "FST_ERR_CTP_EMPTY_JSON_BODY":
        return sendError(reply, 400, "USAGE", "the request body is empty", 'send a JSON object, e.g. {"prompt": "a large red circle moving right on a black background"}');
    }
    if (err.statusCode === 429) return sendError(reply, 429, "RATE_LIMITED", err.message, err.fix);
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)
      return sendError(reply, err.statusCode, err.code && !err.code.startsWith("FST_") ? err.code : "BAD_REQUEST", err.message, /JSON/i.test(err.message) ? "send a valid JSON object" : "send a JSON object as GET /openapi.json describes");
    process.stderr.write(`mixcache serve: internal error: ${err.stack ?? err}\n`);
    return sendError(reply, 500, "INTERNAL", err.message);
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, 404, "NOT_FOUND", `no route ${req.method} ${req.url.split("?")[0]}`, "see GET /openapi.json for the API"));

  // bearer auth on /v1: every route but the public documents
  app.addHook("onRequest", async (req, reply) => {
    if (!req.url.startsWith("/v1/") && req.url !== "/v1") return;
    if (!tokens.length) {
      req.owner = "local";
      return;
    }
    const t = bearer(req);
    if (t === null) {
      reply.header("WWW-Authenticate", 'Bearer realm="mixcache"');
      return sendError(reply, 401, "UNAUTHORIZED", "this server needs a bearer token", "send Authorization: Bearer <token> (the token mixcache serve was started with, --token or MIXCACHE_TOKEN)");
    }
    const ok = tokens.find((k) => sameToken(k, t));
    if (!ok) {
      reply.header("WWW-Authenticate", 'Bearer realm="mixcache", error="invalid_token"');
      return sendError(reply, 401, "UNAUTHORIZED", "the bearer token is not valid for this server", "send one of the tokens mixcache serve was started with (--token or MIXCACHE_TOKEN)");
    }
    req.owner = tokenOwner(ok);
  });

  if (rateLimit > 0)
    await app.register(fastifyRateLimit, {
      global: true,
      max: rateLimit,
      timeWindow: 60_000,
      hook: "preHandler",
      keyGenerator: (req) => (req.owner && req.owner !== "local" ? req.owner : req.ip),
      errorResponseBuilder: (_req, ctx) => Object.assign(new Error(`rate limit of ${ctx.max} requests per minute exceeded`), { statusCode: 429, fix: `retry after ${ctx.after}` }),
    });
  const open = { rateLimit: false } as const;

  app.get("/openapi.json", { schema: { hide: true }, config: open }, async () => app.swagger());
  app.get("/healthz", { schema: { hide: true }, config: open }, async () => ({ ok: true }));

  app.get("/v1/health", { schema: { summary: "queue mode, models and job counts", response: { 200: { type: "object", additionalProperties: true } } } }, async () => ({
    ok: true, mode: backend.mode, models: o.models.map((m) => m.key), jobs: await backend.counts(),
  }));

  app.get("/v1/models", { schema: { summary: "the models this server accepts" } }, async () => ({
    data: o.models.map((m) => ({
      id: m.key, name: m.info.name, parameters: m.info.parameters, fps: m.info.fps,
      size: `${m.info.latent!.width}x${m.info.latent!.height}`, frames: m.info.latent!.frames, patch_size: m.info.config.patch_size,
      defaults: m.info.defaults, vocabulary: m.tokenizer.vocabulary,
    })),
  }));

  app.get("/v1/caches", { schema: { summary: "every cache strategy and its knobs (what `mixcache caches` prints)" } }, async () => ({ data: describeStrategies() }));

  app.post("/v1/videos", {
    schema: {
      summary: "submit a video generation job",
      description: "Validated strictly (400 with the fix, nothing queued). An Idempotency-Key header makes retries safe: the same key and body return the first job (200), the same key with another body is 422.",
      body: VIDEO_REQUEST_SCHEMA,
      headers: { type: "object", properties: { "idempotency-key": { type: "string", maxLength: 255 } } },
      response: { 200: JOB_SCHEMA, 202: JOB_SCHEMA, ...ERRORS, 413: ERROR_SCHEMA, 415: ERROR_SCHEMA, 422: ERROR_SCHEMA },
    },
  }, async (req, reply) => {
    const spec = parseVideoRequest(req.body, o.models);
    const rawKey = req.headers["idempotency-key"];
    let idem: { key: string; hash: string } | undefined;
    if (rawKey !== undefined) {
      const key = Array.isArray(rawKey) ? rawKey.join(",") : rawKey;
      if (!/^[\x21-\x7e]{1,255}$/.test(key))
        throw new ServeError(400, "USAGE", "Idempotency-Key must be 1..255 visible ASCII characters", "send e.g. Idempotency-Key: a UUID you keep for retries of this request");
      idem = { key, hash: sha256(canonicalJson(req.body)) };
    }
    const { job, replayed } = await backend.submit(spec, req.owner, idem);
    reply.code(replayed ? 200 : 202).header("Location", `/v1/videos/${job.id}`);
    if (replayed) reply.header("Idempotent-Replayed", "true");
    return job;
  });

  const getJob = async (req: FastifyRequest<{ Params: { id: string } }>): Promise<JobView> => {
    const job = JOB_ID_RE.test(req.params.id) ? await backend.get(req.params.id, req.owner) : null;
    if (!job) throw new ServeError(404, "NOT_FOUND", `no video job ${JSON.stringify(req.params.id)}`, "use the id POST /v1/videos returned (jobs are visible to the token that created them)");
    return job;
  };

  app.get<{ Params: { id: string } }>("/v1/videos/:id", {
    schema: { summary: "a job's status, progress, stats and cache summary", params: ID_PARAMS, response: { 200: JOB_SCHEMA, ...ERRORS } },
  }, async (req) => getJob(req));

  app.delete<{ Params: { id: string } }>("/v1/videos/:id", {
    schema: {
      summary: "cancel a queued or running job",
      description: "A queued job is cancelled at once (200); a running one stops at its next sampler step (202, cancel_requested). A finished job is 409.",
      params: ID_PARAMS, response: { 200: JOB_SCHEMA, 202: JOB_SCHEMA, ...ERRORS, 409: ERROR_SCHEMA },
    },
  }, async (req, reply) => {
    const before = await getJob(req);
    if (TERMINAL.includes(before.status) && before.status !== "cancelled")
      throw new ServeError(409, "ALREADY_FINISHED", `job ${before.id} already ${before.status}; there is nothing to cancel`, "cancel only queued or running jobs");
    const job = (await backend.cancel(req.params.id, req.owner)) ?? before;
    reply.code(job.status === "cancelled" ? 200 : 202);
    return job;
  });

  app.get<{ Params: { id: string }; Querystring: { format?: string } }>("/v1/videos/:id/content", {
    schema: {
      summary: "the generated video",
      description: "gif: animated GIF; png: contact sheet of every frame; mp4: H.264 (needs ffmpeg on the server); safetensors: the raw clip, tensor video F32 [3, T, H, W] in [-1, 1] with the run's metadata.",
      params: ID_PARAMS,
      querystring: { type: "object", properties: { format: { type: "string", enum: [...CONTENT_FORMATS], default: "gif" } } },
      response: { 200: { description: "the video bytes", type: "string", format: "binary" }, ...ERRORS, 409: ERROR_SCHEMA, 501: ERROR_SCHEMA },
    },
  }, async (req, reply) => {
    const format = (req.query.format ?? "gif") as ContentFormat;
    if (!(CONTENT_FORMATS as readonly string[]).includes(format))
      throw new ServeError(400, "USAGE", `format ${JSON.stringify(req.query.format)} is not supported`, `use format=${CONTENT_FORMATS.join("|")}`);
    const job = await getJob(req);
    if (job.status !== "succeeded")
      throw new ServeError(409, "NOT_READY", `job ${job.id} is ${job.status}, so it has no video${job.error ? ` (${job.error.message})` : ""}`, job.status === "queued" || job.status === "running" ? `wait for status "succeeded" (poll GET /v1/videos/${job.id} or follow /v1/videos/${job.id}/events)` : "submit the job again");
    if (format === "mp4" && !hasFfmpeg())
      throw new ServeError(501, "FFMPEG_MISSING", "MP4 output needs ffmpeg on the server, and none was found", "install ffmpeg on the server (or set MIXCACHE_FFMPEG), or ask for format=gif, png or safetensors");
    const bytes = await backend.result(job.id, req.owner);
    if (!bytes) throw new ServeError(410, "RESULT_GONE", `the result of ${job.id} is no longer stored`, "submit the job again");
    const body = await renderContent(bytes, format);
    reply.type(CONTENT_TYPES[format]).header("Content-Disposition", `attachment; filename="${job.id}.${format}"`);
    return reply.send(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  });

  app.get<{ Params: { id: string } }>("/v1/videos/:id/events", {
    schema: {
      summary: "progress as server-sent events",
      description: "Events: `status` (the job, on every status change, first on connect), `progress` ({id, status, step, steps}), `done` (the finished job; the stream then ends). A comment line every 15 s keeps proxies open.",
      params: ID_PARAMS,
      response: { 200: { description: "text/event-stream", type: "string" }, ...ERRORS },
    },
  }, async (req, reply) => {
    await getJob(req); // 404 before the stream starts
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" });
    let lastStatus = "";
    let ended = false;
    const send = (event: string, data: unknown) => {
      if (!ended) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const end = () => {
      if (ended) return;
      ended = true;
      unsubscribe();
      clearInterval(ping);
      res.end();
    };
    const onJob = (job: JobView) => {
      if (job.status !== lastStatus) {
        lastStatus = job.status;
        send("status", job);
      } else send("progress", { id: job.id, status: job.status, step: job.progress.step, steps: job.progress.steps });
      if (TERMINAL.includes(job.status)) {
        send("done", job);
        end();
      }
    };
    const unsubscribe = backend.watch(req.params.id, req.owner, onJob);
    const ping = setInterval(() => !ended && res.write(": ping\n\n"), 15_000);
    req.raw.on("close", end);
    try {
      const now = await backend.get(req.params.id, req.owner);
      if (now && !lastStatus) onJob(now);
    } catch (e) {
      send("error", { error: jobError(e) });
      end();
    }
  });

  return app;
}
