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
import type { SamplerName } from "../schedulers/index.ts";
import type { AttachedCache, CacheStrategy } from "../cache/strategy.ts";
import { denoise, type LatentShape, type TextEmbedding } from "./generate.ts";
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
  const shape = o.shape ?? m.latent;
  if (!shape) throw new MixCacheError("USAGE", `model ${m.name} declares no latent shape`, "pass shape: { channels, frames, height, width }");
  if (o.prompt === undefined && !o.textEmbedding) throw new MixCacheError("USAGE", "no prompt given", 'pass a prompt, e.g. "a large red circle moving right on a black background"');
  const cond = o.textEmbedding ?? m.encodePrompt(o.prompt!);
  const uncond = guidance > 1 ? (o.negativeEmbedding ?? m.encodePrompt(o.negativePrompt ?? m.defaults.negativePrompt)) : undefined;
  const attached = o.cache ? o.cache.attach() : null;
  const sampled = o.cache?.stepsOverride ? o.cache.stepsOverride(steps) : steps;
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
