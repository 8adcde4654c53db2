/** Defaults of `mixcache serve` and `mixcache worker`, in a module without dependencies so the
 * CLI can show them in --help without loading Fastify or BullMQ. */
export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 8000;
export const DEFAULT_DATA_DIR = "out/serve";
/** Largest request body in bytes. */
export const DEFAULT_BODY_LIMIT = 64 * 1024;
/** Requests per minute per token. */
export const DEFAULT_RATE_LIMIT = 600;
/** Largest result a worker keeps in Redis (bigger ones need --store). */
export const DEFAULT_MAX_REDIS_BYTES = 16 * 1024 * 1024;
export const DEFAULT_RESULT_TTL_S = 7 * 24 * 3600;
/** Idempotency keys are remembered this long in Redis mode (in-process: as long as the job). */
export const IDEMPOTENCY_TTL_S = 24 * 3600;

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, (_m, auth: string) => `//${auth.includes(":") ? `${auth.split(":")[0]}:***` : "***"}@`);
}
