/**
 * The body of `POST /v1/videos`, validated as strictly as `mixcache generate` validates its flags:
 * the same strategy registry and knob parser (src/cache/), the same model inspection, vocabulary
 * check, integer and seed rules (seeds 0..2^32-1). A bad request is a MixCacheError whose message
 * names the field and whose fix says what to send; the HTTP layer answers it with 400 and queues
 * nothing. The result is a JobSpec: every default resolved, so a job record says exactly what ran.
 */
import { join } from "node:path";
import { UsageError, closest } from "../errors.ts";
import { inspectModel, type ModelInfo } from "../models/load.ts";
import { makeCache, findStrategy } from "../cache/registry.ts";
import { SAMPLER_NAMES, type SamplerName } from "../schedulers/types.ts";
import { validateShift, MAX_STEPS } from "../schedulers/sigmas.ts";
import { WordTokenizer } from "../text/tokenizer.ts";
import { SEED_MAX } from "../pipeline/noise.ts";

/** A model this server or worker accepts requests for. `key` is what requests name it by. */
export interface ServedModel {
  key: string;
  info: ModelInfo;
  tokenizer: WordTokenizer;
}

export interface JobSpec {
  prompt: string;
  negative: string;
  /** The request's model key (as the server was started with, e.g. "reference"). */
  model: string;
  /** The model's own name (mixcache.json), the same on every node: it names the Redis queue. */
  model_name: string;
  steps: number;
  guidance: number;
  shift: number;
  seed: number;
  sampler: SamplerName;
  width: number;
  height: number;
  frames: number;
  cache: string;
  cache_options: Record<string, unknown>;
  /** Target compute speedup, mapped onto the strategy's speed knob (target_speedup / speedup). */
  speed: number | null;
}

const REQUEST_FIELDS = [
  "prompt", "negative", "model", "steps", "guidance", "shift", "seed", "size", "frames", "sampler", "cache", "cache_options", "speed",
] as const;

const MAX_PROMPT_CHARS = 2000;
/** Largest latent a request may ask for, in patch tokens, as a multiple of the model's default. */
const MAX_TOKENS_FACTOR = 4;
/** Strategies' knobs that `speed` maps onto. */
const SPEED_KNOBS = ["target_speedup", "speedup"] as const;

const EXAMPLE = '{"prompt": "a large red circle moving right on a black background", "steps": 20, "cache": "mixcache", "speed": 2}';

/** Inspect a model for serving: the same checks `mixcache generate` makes before loading weights. */
export function describeModel(key: string): ServedModel {
  const info = inspectModel(key);
  if (info.family !== "wan") throw new UsageError(`model ${info.name} is a ${info.family} folder; serve runs the pixel-space models`, "use `mixcache generate --model DIR` or the API for it");
  if (!info.pixelSpace || info.config.out_channels !== 3)
    throw new UsageError(`model ${info.name} produces ${info.config.out_channels}-channel latents, not RGB frames`, "serve a pixel-space model (serve does not run diffusers Wan2.1 folders yet: use `mixcache generate --model DIR` or the API)");
  if (!info.hasTextEncoder)
    throw new UsageError(`model ${info.name} has no text encoder in its folder, so prompts cannot be encoded for it`, "serve a MixCache model folder with text_encoder/ and tokenizer/ (e.g. reference)");
  if (!info.latent) throw new UsageError(`model ${info.name} declares no latent shape in mixcache.json`, "add \"latent\": {channels, frames, height, width} to its mixcache.json");
  return { key, info, tokenizer: WordTokenizer.fromFile(join(info.dir, "tokenizer", "tokenizer.json")) };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

function str(body: Record<string, unknown>, name: string, opts: { required?: boolean; max?: number } = {}): string | undefined {
  const v = body[name];
  if (v === undefined || v === null) {
    if (opts.required) throw new UsageError(`"${name}" is required`, `send a JSON body such as ${EXAMPLE}`);
    return undefined;
  }
  if (typeof v !== "string") throw new UsageError(`"${name}" must be a string, got ${JSON.stringify(v)}`, `for example "${name}": "..."`);
  if (opts.max !== undefined && v.length > opts.max) throw new UsageError(`"${name}" is ${v.length} characters, at most ${opts.max} are accepted`, `shorten "${name}"`);
  return v;
}

/** An integer field: a JSON number (or a plain decimal string, as on the command line) in [min, max]. */
function int(body: Record<string, unknown>, name: string, min: number, max: number, example: number): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  const n = typeof v === "number" ? v : typeof v === "string" && /^-?[0-9]+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`"${name}" must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`, `for example "${name}": ${example}`);
  return n;
}

function num(body: Record<string, unknown>, name: string, min: number, max: number, example: number): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  const n = typeof v === "number" ? v : typeof v === "string" && /^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n) || n < min || n > max)
    throw new UsageError(`"${name}" must be a number in ${min}..${max}, got ${JSON.stringify(v)}`, `for example "${name}": ${example}`);
  return n;
}

/**
 * Validate a request body against the models served. Throws UsageError / ConfigError (unknown
 * cache or knob, with the valid ones) / MixCacheError VOCAB (a word outside the vocabulary).
 */
export function parseVideoRequest(body: unknown, models: readonly ServedModel[]): JobSpec {
  if (!isPlainObject(body)) throw new UsageError("the request body must be a JSON object", `send Content-Type: application/json and a body such as ${EXAMPLE}`);
  for (const k of Object.keys(body))
    if (!(REQUEST_FIELDS as readonly string[]).includes(k))
      throw new UsageError(`unknown field "${k}" (did you mean "${closest(k, REQUEST_FIELDS, 1)[0]}"?)`, `valid fields: ${REQUEST_FIELDS.join(", ")}`);

  const prompt = str(body, "prompt", { required: true, max: MAX_PROMPT_CHARS })!;
  if (!prompt.trim()) throw new UsageError('"prompt" is empty', `send a prompt, e.g. ${EXAMPLE}`);
  const modelKey = str(body, "model") ?? models[0].key;
  const served = models.find((m) => m.key === modelKey || m.info.name === modelKey);
  if (!served)
    throw new UsageError(`model "${modelKey}" is not served here`, `use one of: ${models.map((m) => m.key).join(", ")} (start mixcache serve/worker with --model ${modelKey} to serve it)`);
  const info = served.info;

  const sampler = str(body, "sampler") ?? info.defaults.sampler;
  if (!(SAMPLER_NAMES as readonly string[]).includes(sampler)) throw new UsageError(`"sampler" ${JSON.stringify(sampler)} is not supported`, `use one of: ${SAMPLER_NAMES.join(", ")}`);
  const steps = int(body, "steps", 1, MAX_STEPS, 20) ?? info.defaults.steps;
  const seed = int(body, "seed", 0, SEED_MAX, 0) ?? 0;
  const guidance = num(body, "guidance", 1, 100, 5) ?? info.defaults.guidance;
  const shift = body.shift ?? info.defaults.shift;
  if (typeof shift !== "number") throw new UsageError(`"shift" must be a number > 0, got ${JSON.stringify(shift)}`, `for example "shift": ${info.defaults.shift} (this model's default)`);
  validateShift(shift);

  const latent = info.latent!;
  const [pt, ph, pw] = info.dims.patch;
  let width = latent.width, height = latent.height;
  const size = body.size;
  if (size !== undefined && size !== null) {
    const m = typeof size === "string" ? /^([0-9]{1,5})x([0-9]{1,5})$/.exec(size) : null;
    if (!m) throw new UsageError(`"size" must be "WIDTHxHEIGHT", got ${JSON.stringify(size)}`, `for example "size": "${latent.width}x${latent.height}" (this model's default)`);
    width = Number(m[1]);
    height = Number(m[2]);
  }
  const frames = int(body, "frames", 1, 4096, latent.frames) ?? latent.frames;
  const sizeFix = `use multiples of the patch size (width and height of ${pw} and ${ph}, frames of ${pt}), e.g. "size": "${latent.width}x${latent.height}", "frames": ${latent.frames} (this model's default)`;
  if (width < pw || height < ph || width % pw || height % ph)
    throw new UsageError(`"size" ${width}x${height} is not a multiple of the model's patch size ${pw}x${ph}`, sizeFix);
  if (frames % pt) throw new UsageError(`"frames" ${frames} is not a multiple of the model's temporal patch size ${pt}`, sizeFix);
  const tokens = (frames / pt) * (height / ph) * (width / pw);
  const maxTokens = MAX_TOKENS_FACTOR * (latent.frames / pt) * (latent.height / ph) * (latent.width / pw);
  if (tokens > maxTokens)
    throw new UsageError(`"size" ${width}x${height} with ${frames} frames is ${tokens} patch tokens, more than this server accepts (${maxTokens}, ${MAX_TOKENS_FACTOR}x the model's default)`, `ask for a smaller clip; ${sizeFix}`);

  // the prompt words are checked here, not after the job waited in a queue
  const negative = str(body, "negative", { max: MAX_PROMPT_CHARS }) ?? info.defaults.negativePrompt;
  served.tokenizer.encode(prompt);
  if (guidance > 1) served.tokenizer.encode(negative);

  const speed = num(body, "speed", 1, 20, 2) ?? null;
  const rawOpts = body.cache_options;
  if (rawOpts !== undefined && rawOpts !== null && !isPlainObject(rawOpts))
    throw new UsageError(`"cache_options" must be a JSON object of knob values, got ${JSON.stringify(rawOpts)}`, 'for example "cache_options": {"threshold": 0.1} (see `mixcache caches` for every knob)');
  const cacheOptions: Record<string, unknown> = Object.assign(Object.create(null), rawOpts ?? {});
  let cache = str(body, "cache");
  if (speed !== null) {
    cache ??= "mixcache";
    const def = findStrategy(cache);
    const knob = SPEED_KNOBS.find((k) => def.knobs.some((d) => d.name === k));
    if (!knob)
      throw new UsageError(`cache "${cache}" has no speed target, so "speed" cannot be applied`, 'use "cache": "mixcache" (target_speedup) or "fewer-steps" (speedup), or tune "cache_options" of this strategy');
    if (knob in cacheOptions) throw new UsageError(`"speed" and "cache_options.${knob}" both set the speed`, "send one of them");
    cacheOptions[knob] = speed;
  }
  cache ??= "none";
  makeCache(cache, cacheOptions, { profilesDir: info.profilesDir }); // unknown cache / knob / bad value: ConfigError with the valid ones

  return {
    prompt, negative, model: served.key, model_name: info.name,
    steps, guidance, shift, seed, sampler: sampler as SamplerName, width, height, frames,
    cache, cache_options: { ...cacheOptions }, speed,
  };
}

/** The request fields as an OpenAPI / JSON schema (documentation: validation is parseVideoRequest). */
export const VIDEO_REQUEST_SCHEMA = {
  type: "object",
  required: ["prompt"],
  additionalProperties: false,
  properties: {
    prompt: { type: "string", maxLength: MAX_PROMPT_CHARS, description: "text prompt; every word must be in the model's vocabulary" },
    negative: { type: "string", maxLength: MAX_PROMPT_CHARS, description: "negative prompt for classifier-free guidance (default: the model's)" },
    model: { type: "string", description: "a served model (default: the first one the server was started with)" },
    steps: { type: "integer", minimum: 1, maximum: MAX_STEPS, description: "sampler steps (model default)" },
    guidance: { type: "number", minimum: 1, maximum: 100, description: "CFG scale, 1 = off (model default)" },
    shift: { type: "number", minimum: 0, description: "flow shift of the sigma schedule, > 0 (model default)" },
    seed: { type: "integer", minimum: 0, maximum: SEED_MAX, description: "noise seed (default 0)" },
    size: { type: "string", pattern: "^[0-9]+x[0-9]+$", description: "WIDTHxHEIGHT, multiples of the patch size (model default)" },
    frames: { type: "integer", minimum: 1, description: "frames, a multiple of the temporal patch size (model default)" },
    sampler: { type: "string", enum: [...SAMPLER_NAMES] },
    cache: { type: "string", description: "cache strategy (default none; GET /v1/caches lists them)" },
    cache_options: { type: "object", additionalProperties: true, description: "strategy knobs, validated strictly" },
    speed: { type: "number", minimum: 1, maximum: 20, description: "target compute speedup: sets target_speedup (mixcache, the default with speed) or speedup (fewer-steps)" },
  },
} as const;
