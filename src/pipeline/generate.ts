/**
 * The public generation API:
 *
 *   const model = await loadModel();              // the embedded reference model
 *   const r = await generate({ model, prompt: "a large red circle moving right on a black background" });
 *   r.video     // { data: Float32Array [3, T, H, W] in [-1, 1], channels, frames, height, width }
 *   r.stats     // executed vs full MACs, computed/reused per level, per-step wall time
 *   r.cache     // cache stats (peak bytes, tag) and the optional decision trace
 */
import { MixCacheError } from "../errors.ts";
import type { LoadedModel } from "../models/load.ts";
import { parseLatent } from "../models/wan/config.ts";
import { checkMemory } from "../models/wan/memory.ts";
import { makeSampler } from "../schedulers/sampler.ts";
import type { SamplerName } from "../schedulers/types.ts";
import type { AttachedCache, CacheStrategy } from "./hooks.ts";
import { denoise } from "./denoise.ts";
import { SEED_MAX } from "./noise.ts";
import type { LatentShape } from "../models/types.ts";
import type { TextEmbedding } from "../text/types.ts";
import type { RunStats } from "./stats.ts";

export interface GenerateOptions {
  model: LoadedModel;
  prompt?: string;
  /** Precomputed text embedding (models without a text encoder). */
  textEmbedding?: TextEmbedding;
  negativePrompt?: string;
  negativeEmbedding?: TextEmbedding;
  steps?: number;
  guidance?: number;
  shift?: number;
  seed?: number;
  sampler?: SamplerName;
  shape?: LatentShape;
  cache?: CacheStrategy;
  onStep?: (done: number, total: number) => void;
}

export interface Video {
  data: Float32Array;
  channels: number;
  frames: number;
  height: number;
  width: number;
}

export interface GenerateResult {
  prompt: string;
  seed: number;
  steps: number;
  guidance: number;
  shift: number;
  sampler: SamplerName;
  video: Video;
  stats: RunStats;
  cache: ReturnType<AttachedCache["report"]> | null;
}

export async function generate(o: GenerateOptions): Promise<GenerateResult> {
  const m = o.model;
  const steps = o.steps ?? m.defaults.steps;
  const guidance = o.guidance ?? m.defaults.guidance;
  const shift = o.shift ?? m.defaults.shift;
  const seed = o.seed ?? 0;
  const sampler = o.sampler ?? m.defaults.sampler;
  // every option is checked before any work (the seed as src/pipeline/noise.ts takes it)
  if (!Number.isInteger(seed) || seed < 0 || seed > SEED_MAX) throw new MixCacheError("USAGE", `seed must be an integer in 0..4294967295 (2^32 - 1), got ${seed}`, "pass e.g. seed: 0");
  if (!(guidance >= 1) || !Number.isFinite(guidance)) throw new MixCacheError("USAGE", `guidance must be a finite number >= 1, got ${guidance}`, "use 1 to disable classifier-free guidance, 5 is the Wan default");
  makeSampler(sampler, { steps, shift }); // validates the sampler name, steps and shift
  if (!o.shape && !m.latent) throw new MixCacheError("USAGE", `model ${m.name} declares no latent shape`, "pass shape: { channels, frames, height, width }");
  const shape = o.shape ? parseLatent(o.shape, m.config, "shape") : m.latent!;
  if (o.shape) checkMemory(m.config, shape, { loaded: true, model: m.name }); // the model's own size was checked by loadModel
  if (o.prompt === undefined && !o.textEmbedding) throw new MixCacheError("USAGE", "no prompt given", 'pass a prompt, e.g. "a large red circle moving right on a black background"');
  if (!m.hasTextEncoder) {
    if (!o.textEmbedding) throw new MixCacheError("USAGE", `model ${m.name} has no text encoder, so the prompt cannot be encoded: textEmbedding is missing`, "pass textEmbedding: { data: Float32Array [S x text_dim], tokens: S } (the encoder's output for the prompt)");
    if (guidance > 1 && !o.negativeEmbedding)
      throw new MixCacheError("USAGE", `guidance ${guidance} > 1 needs a negative prompt embedding, and model ${m.name} has no text encoder to make one: negativeEmbedding is missing`, "pass negativeEmbedding: { data, tokens } (the encoded negative prompt, e.g. the empty one), or guidance: 1 to run without classifier-free guidance");
  }
  const cond = o.textEmbedding ?? m.encodePrompt(o.prompt!);
  const uncond = guidance > 1 ? (o.negativeEmbedding ?? m.encodePrompt(o.negativePrompt ?? m.defaults.negativePrompt)) : undefined;
  // a cache made without a model folder reads this model's calibration profiles
  const cache = o.cache?.forModel ? o.cache.forModel({ profilesDir: m.profilesDir }) : o.cache;
  const attached = cache ? cache.attach() : null;
  const sampled = cache?.stepsOverride ? cache.stepsOverride(steps) : steps;
  const r = await denoise({
    model: m.transformer, cond, uncond, shape, steps: sampled, fullSteps: steps, guidance, shift, seed, sampler,
    hooks: attached?.hooks, onStep: o.onStep,
  });
  return {
    prompt: o.prompt ?? "",
    seed, steps, guidance, shift, sampler,
    video: { data: r.latent, ...shape },
    stats: r.stats,
    cache: attached ? attached.report() : null,
  };
}
