/**
 * The public generation API:
 *
 *   const model = await loadModel();              // the embedded reference model, or a diffusers Wan2.1 folder
 *   const r = await generate({ model, prompt: "a large red circle moving right on a black background" });
 *   r.video     // { data: Float32Array [3, T, H, W] in [-1, 1], channels, frames, height, width }
 *   r.latent    // the final latent [C, F, H, W] (the video itself for the pixel-space models)
 *   r.stats     // executed vs full MACs, computed/reused per level, per-step wall time
 *   r.cache     // cache stats (peak bytes, tag) and the optional decision trace
 *
 * For a diffusers Wan2.1 folder a run is WanPipeline's: the prompt and the negative prompt are
 * encoded by umT5 (one streamed pass for both), the transformer denoises latents
 * [16, (frames - 1) / 4 + 1, height / 8, width / 8] from seeded noise (or `latents`), and the VAE
 * decodes them to video. Every option is checked before any work.
 */
import { join } from "node:path";
import { MixCacheError, UsageError } from "../errors.ts";
import { checkHunyuanMemory, latentRules, type FamilyDims, type LoadedModel, type ModelInfo } from "../models/load.ts";
import { parseLatent } from "../models/wan/config.ts";
import { checkMemory } from "../models/wan/memory.ts";
import { checkPipelineMemory, latentForVideo, videoForLatent, type VideoSize } from "../models/wan-pipeline.ts";
import type { TileOptions } from "../models/wan-vae/decoder.ts";
import { makeSampler } from "../schedulers/sampler.ts";
import type { ApproxMode, SamplerName } from "../schedulers/types.ts";
import type { AttachedCache, CacheStrategy } from "./hooks.ts";
import { denoise } from "./denoise.ts";
import { SEED_MAX } from "./noise.ts";
import type { LatentShape } from "../models/types.ts";
import type { TextEmbedding } from "../text/types.ts";
import type { RunStats } from "./stats.ts";

export type Stage = "encode" | "denoise" | "decode";

export interface Progress {
  stage: Stage;
  /** Units of this stage: encoder layers, sampler steps, VAE chunks. */
  done: number;
  total: number;
  /** Units over the whole run (encode + denoise + decode). */
  overall: { done: number; total: number };
}

export interface GenerateOptions {
  model: LoadedModel;
  prompt?: string;
  /** Precomputed text embedding [S, text_dim] (models without a text encoder; diffusers' prompt_embeds). */
  textEmbedding?: TextEmbedding;
  negativePrompt?: string;
  negativeEmbedding?: TextEmbedding;
  steps?: number;
  guidance?: number;
  shift?: number;
  seed?: number;
  sampler?: SamplerName;
  /** Wan2.2 two-expert folders: the guidance of the low-noise expert (diffusers guidance_scale_2;
   * default: guidance). */
  guidance2?: number;
  /** The distilled guidance input of families that have one (HunyuanVideo; default 6.0, the
   * pipeline's guidance_scale); `guidance` stays the true-CFG scale (1 = one branch per step). */
  embeddedGuidance?: number;
  /** What UniPC does at a step a cache made approximate (schedulers/types.ts ApproxMode; default:
   * the cache's `solver` knob). */
  approx?: ApproxMode;
  /** The latent size [C, F, H, W] (or give the video size: frames, height, width). */
  shape?: LatentShape;
  /** Video size: frames (Wan2.1: 4k + 1), height and width in pixels (multiples of the VAE stride
   * x patch, 16 for Wan2.1); the model's default for any left out. */
  frames?: number;
  height?: number;
  width?: number;
  /** The initial noise latent [C, F, H, W] instead of the seeded noise (diffusers' `latents`). */
  latents?: Float32Array;
  /** Decode the latent with the model's VAE (default: true when it has one). */
  decode?: boolean;
  /** VAE spatial tiling (diffusers tiled_decode: 256 px tiles, stride 192), less memory. */
  tile?: boolean | TileOptions;
  cache?: CacheStrategy;
  onStep?: (done: number, total: number) => void;
  /** Progress over the whole run: text encoding, denoising steps, VAE chunks. */
  onProgress?: (p: Progress) => void;
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
  negativePrompt: string | null;
  seed: number;
  steps: number;
  guidance: number;
  shift: number;
  sampler: SamplerName;
  /** The decoded video (models with a VAE), else the final latent (the video of pixel-space models). */
  video: Video;
  /** The final latent [C, F, H, W]. */
  latent: Video;
  /** Whether `video` was decoded by the VAE. */
  decoded: boolean;
  /** Wall time per stage (ms). */
  timings: { encodeMs: number; denoiseMs: number; decodeMs: number };
  stats: RunStats;
  cache: ReturnType<AttachedCache["report"]> | null;
  /** Wan2.2: the low-noise expert's cache report (its own state and trace), null otherwise. */
  cache2: ReturnType<AttachedCache["report"]> | null;
}

/** The latent size of a run: `shape`, or the video size (frames / height / width), or the model's default. */
export function resolveLatentShape(m: ModelInfo, o: Pick<GenerateOptions, "shape" | "frames" | "height" | "width">): { shape: LatentShape; own: boolean } {
  const sized = o.frames !== undefined || o.height !== undefined || o.width !== undefined;
  if (o.shape && sized) throw new UsageError("pass either shape (the latent size) or frames / height / width (the video size), not both", "the video size is the usual one: frames, height, width in pixels");
  if (o.shape) return { shape: parseLatent(o.shape, latentRules(m), "shape"), own: false };
  if (sized) {
    const base: Partial<VideoSize> = m.video ?? {};
    const v = { frames: o.frames ?? base.frames, height: o.height ?? base.height, width: o.width ?? base.width };
    for (const k of ["frames", "height", "width"] as const)
      if (v[k] === undefined) throw new UsageError(`model ${m.name} has no default video size, and ${k} is missing`, "pass frames, height and width");
    return { shape: latentForVideo(latentRules(m), m.strides, v as VideoSize), own: false };
  }
  if (!m.latent) throw new UsageError(`model ${m.name} declares no latent shape`, "pass frames, height and width (the video size) or shape: { channels, frames, height, width }");
  return { shape: m.latent, own: true };
}

function checkEmbedding(e: TextEmbedding, dims: FamilyDims, what: string): void {
  const textDim = dims.textDim;
  const pooled = dims.pooledDim !== null ? `, pooled: Float32Array [${dims.pooledDim}], mask?: Uint8Array [S] (HunyuanVideoPipeline's prompt_embeds, pooled_prompt_embeds, prompt_attention_mask)` : "";
  const fix = `pass { data: Float32Array [S x ${textDim}], tokens: S${pooled} } (the text encoder's output${pooled ? "" : ", WanPipeline: S = 512"})`;
  if (!e || !(e.data instanceof Float32Array) || !Number.isInteger(e.tokens) || e.tokens < 1) throw new UsageError(`${what} must be { data: Float32Array, tokens: positive integer }`, fix);
  if (e.data.length !== e.tokens * textDim)
    throw new UsageError(`${what} has ${e.data.length} values, expected tokens x text_dim = ${e.tokens} x ${textDim} (the transformer's text width)`, fix);
  if (dims.pooledDim !== null && (!(e.pooled instanceof Float32Array) || e.pooled.length !== dims.pooledDim))
    throw new UsageError(`${what}.pooled must be a Float32Array of ${dims.pooledDim} values (the pooled text vector this model is conditioned on), got ${e.pooled ? `${e.pooled.length} values` : "none"}`, fix);
  if (e.mask !== undefined && (!(e.mask instanceof Uint8Array) || e.mask.length !== e.tokens))
    throw new UsageError(`${what}.mask must be a Uint8Array of ${e.tokens} values (1 = real token, 0 = padding)`, fix);
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
  const approx = o.approx ?? o.cache?.approx ?? "keep";
  makeSampler(sampler, { steps, shift, approx, sigmas: m.defaults.sigmas }); // validates the sampler name, steps, shift and approx mode
  const { shape, own } = resolveLatentShape(m, o);
  const n = shape.channels * shape.frames * shape.height * shape.width;
  if (o.latents !== undefined) {
    if (!(o.latents instanceof Float32Array)) throw new UsageError("latents must be a Float32Array [C, F, H, W]");
    if (o.latents.length !== n)
      throw new UsageError(`latents hold ${o.latents.length} values, the latent [${shape.channels}, ${shape.frames}, ${shape.height}, ${shape.width}] needs ${n}`, "pass latents of the run's latent size (or the matching frames / height / width)");
  }
  const decode = o.decode ?? m.vae !== null;
  if (decode && !m.vae)
    throw new UsageError(`decode: true, but model ${m.name} has no VAE${m.pipeline ? " (vae/ is missing from its folder)" : ""}`, "add the vae/ folder of the same Wan2.1 checkpoint, or keep the latent (decode: false)");
  const tile = o.tile ?? false;
  // the size of this run must fit next to the loaded weights (loadModel checked the embedded models' own size)
  if (m.family === "hunyuan-video") checkHunyuanMemory(m, shape, { loaded: true, textTokens: o.textEmbedding?.tokens, decode, tile });
  else if (m.layout === "diffusers") checkPipelineMemory(m.config, shape, { loaded: true, model: m.name, umt5: m.pipeline?.umt5, vae: m.vae, decode, tile: tile !== false, expert2: m.pipeline?.expert2?.config });
  else if (!own) checkMemory(m.config, shape, { loaded: true, model: m.name });
  if (o.prompt === undefined && !o.textEmbedding) throw new MixCacheError("USAGE", "no prompt given", 'pass a prompt, e.g. "a large red circle moving right on a black background"');
  if (o.textEmbedding) checkEmbedding(o.textEmbedding, m.dims, "textEmbedding");
  if (o.negativeEmbedding) checkEmbedding(o.negativeEmbedding, m.dims, "negativeEmbedding");
  const cfg = guidance > 1;
  if (!m.hasTextEncoder) {
    if (!o.textEmbedding) throw new MixCacheError("USAGE", `model ${m.name} has no text encoder, so the prompt cannot be encoded: textEmbedding is missing`, "pass textEmbedding: { data: Float32Array [S x text_dim], tokens: S } (the encoder's output for the prompt)");
    if (cfg && !o.negativeEmbedding)
      throw new MixCacheError("USAGE", `guidance ${guidance} > 1 needs a negative prompt embedding, and model ${m.name} has no text encoder to make one: negativeEmbedding is missing`, "pass negativeEmbedding: { data, tokens } (the encoded negative prompt, e.g. the empty one), or guidance: 1 to run without classifier-free guidance");
  }
  const negativePrompt = cfg && !o.negativeEmbedding ? (o.negativePrompt ?? m.defaults.negativePrompt) : null;
  const toEncode = [...(o.textEmbedding ? [] : [o.prompt!]), ...(negativePrompt !== null ? [negativePrompt] : [])];
  // a cache made without a model folder reads this model's calibration profiles
  const cache = o.cache?.forModel ? o.cache.forModel({ profilesDir: m.profilesDir }) : o.cache;
  const sampled = cache?.stepsOverride ? cache.stepsOverride(steps) : steps;

  const units = {
    encode: toEncode.length > 0 ? m.encodeUnits : 0,
    denoise: sampled,
    decode: decode ? m.decodeUnits(shape, tile) : 0,
  };
  const total = units.encode + units.denoise + units.decode;
  const offset = { encode: 0, denoise: units.encode, decode: units.encode + units.denoise };
  const report = (stage: Stage, done: number, t: number) => o.onProgress?.({ stage, done, total: t, overall: { done: offset[stage] + done, total } });

  let t0 = performance.now();
  const encoded = toEncode.length ? await m.encodePrompts(toEncode, { onLayer: (d, t) => report("encode", d, t) }) : [];
  const cond = o.textEmbedding ?? encoded[0];
  const uncond = cfg ? (o.negativeEmbedding ?? encoded[encoded.length - 1]) : undefined;
  const encodeMs = performance.now() - t0;

  const attached = cache ? cache.attach() : null;
  // Wan2.2: the low-noise expert gets its own cache state and its own calibration profiles
  // (cache_profiles/transformer_2/): one calibration across the switch breaks quality
  const cache2 = m.transformer2 && o.cache ? (o.cache.forModel ? o.cache.forModel({ profilesDir: join(m.profilesDir, "transformer_2") }) : o.cache) : null;
  const attached2 = cache2 ? cache2.attach() : null;
  const guidance2 = o.guidance2 ?? guidance;
  if (!(guidance2 >= 1) || !Number.isFinite(guidance2)) throw new MixCacheError("USAGE", `guidance2 must be a finite number >= 1, got ${guidance2}`);
  t0 = performance.now();
  const r = await denoise({
    model: m.transformer, cond, uncond, shape, steps: sampled, fullSteps: steps, guidance, shift, seed, sampler, approx, sigmas: m.defaults.sigmas,
    embeddedGuidance: o.embeddedGuidance ?? m.defaults.embeddedGuidance,
    expert2: m.transformer2 ? { model: m.transformer2, boundary: m.boundaryRatio! * 1000, guidance: guidance2, hooks: attached2?.hooks } : undefined,
    hooks: attached?.hooks, initialLatent: o.latents,
    onStep: (d, t) => {
      o.onStep?.(d, t);
      report("denoise", d, t);
    },
  });
  const denoiseMs = performance.now() - t0;
  const latent: Video = { data: r.latent, ...shape };
  t0 = performance.now();
  let video = latent;
  if (decode) {
    video = await m.decodeLatent(r.latent, shape, { tile, onChunk: (d, t) => report("decode", d, t) });
    const want = videoForLatent(m.strides, shape);
    if (video.frames !== want.frames || video.height !== want.height || video.width !== want.width) throw new Error("internal: decoded video size");
  }
  const decodeMs = performance.now() - t0;
  return {
    prompt: o.prompt ?? "",
    negativePrompt,
    seed, steps, guidance, shift, sampler,
    video, latent, decoded: decode,
    timings: { encodeMs, denoiseMs, decodeMs },
    stats: r.stats,
    cache: attached ? attached.report() : null,
    cache2: attached2 ? attached2.report() : null,
  };
}
