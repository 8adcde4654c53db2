/**
 * The calibration recorder: a Hooks object that skips nothing (every branch, body, block and module
 * is computed, and each hook returns exactly what its compute returns, so a recorded run is the
 * uncached run bit for bit) and records, per step and CFG branch, the reductions the calibrators
 * need. Memory stays small: besides one step's worth of "previous" tensors per branch (needed for
 * consecutive-step distances) only scalars are kept.
 *
 * Per step and branch (distances are to the previous step of the same branch and run; null at the
 * first step):
 *   proxy.temb / proxy.tproj   rel-L1 of the time proxies (TeaCache's x; Wan: `e` / `e0`)
 *   out.velocity               rel-L1 of the branch velocity (the transformer's output, before CFG)
 *   out.body                   rel-L1 of the body output h_L (hidden state after the last block)
 *   out.residual               rel-L1 of the body residual r = h_L - h_0
 *   magnitude.ratio            mean over tokens of ||r_t|| / ||r_{t-1}|| (MagCache's gamma)
 *   magnitude.ratioStd         std over tokens of that per-token ratio (unbiased, as torch.std)
 *   magnitude.cosineDist       mean over tokens of 1 - cos(r_t, r_{t-1}) (MagCache's log)
 *   residualNorm               mean over tokens of ||r_t|| (not a distance: set at every step)
 *
 * Distances use the same definitions as the strategies: relL1(a, prev) = mean|a - prev| / mean|prev|.
 */
import { ConfigError, MixCacheError } from "../../errors.ts";
import type { LoadedModel } from "../../models/load.ts";
import type { Branch, BranchCtx, Hooks, CacheStrategy } from "../../pipeline/hooks.ts";
import type { LatentShape } from "../../models/types.ts";
import type { TextEmbedding } from "../../text/types.ts";
import { generate } from "../../pipeline/generate.ts";
import type { SamplerName } from "../../schedulers/types.ts";
import { sub } from "../../tensor/ops.ts";
import { CacheStore, hooksAsCache } from "../strategy.ts";

export interface StepRecord {
  /** Index of the generation within the recorder's life (0-based). */
  run: number;
  step: number;
  timestep: number;
  sigma: number;
  branch: Branch;
  proxy: { temb: number | null; tproj: number | null };
  out: { velocity: number | null; body: number | null; residual: number | null };
  magnitude: { ratio: number | null; ratioStd: number | null; cosineDist: number | null };
  residualNorm: number;
}

export interface TokenStats {
  /** mean over tokens of ||a_t|| / ||b_t|| (tokens with ||b_t|| = 0 are left out). */
  ratio: number;
  /** unbiased std over tokens of that ratio (0 with fewer than two tokens). */
  ratioStd: number;
  /** mean over tokens of 1 - cos(a_t, b_t), cos = a.b / max(||a|| ||b||, 1e-8) (torch's eps). */
  cosineDist: number;
  /** mean over tokens of ||a_t||. */
  meanNorm: number;
}

/** Per-token comparisons of two [tokens, width] row-major arrays (float64 accumulation). */
export function tokenStats(a: Float32Array, b: Float32Array, width: number): TokenStats {
  if (a.length !== b.length || width <= 0 || a.length % width !== 0)
    throw new RangeError(`tokenStats: arrays of ${a.length} and ${b.length} values do not split into tokens of width ${width}`);
  const T = a.length / width;
  const ratios: number[] = [];
  let cos = 0, normSum = 0;
  for (let t = 0; t < T; t++) {
    let aa = 0, bb = 0, ab = 0;
    const o = t * width;
    for (let j = 0; j < width; j++) {
      const x = a[o + j], y = b[o + j];
      aa += x * x;
      bb += y * y;
      ab += x * y;
    }
    const na = Math.sqrt(aa), nb = Math.sqrt(bb);
    normSum += na;
    if (nb > 0) ratios.push(na / nb);
    cos += 1 - ab / Math.max(na * nb, 1e-8);
  }
  let mean = 1, std = 0;
  if (ratios.length) {
    mean = ratios.reduce((s, r) => s + r, 0) / ratios.length;
    if (ratios.length > 1) std = Math.sqrt(ratios.reduce((s, r) => s + (r - mean) ** 2, 0) / (ratios.length - 1));
  }
  return { ratio: mean, ratioStd: std, cosineDist: cos / Math.max(1, T), meanNorm: normSum / Math.max(1, T) };
}

interface Pending {
  ctx: BranchCtx;
  body: number | null;
  residual: number | null;
  mag: TokenStats | null;
  residualNorm: number;
}

/**
 * Records every generation it is attached to. `width` is the model's hidden width (tokens are rows
 * of `width` values). Use `hooks` directly with `denoise`, or `asCache()` with `generate`.
 */
export class Recorder {
  readonly records: StepRecord[] = [];
  /** Generations recorded so far. */
  runs = 0;
  /** Peak bytes of the previous-step tensors held while recording. */
  get peakBytes(): number {
    return this.store.peak;
  }
  private store = new CacheStore();
  private pending: Partial<Record<Branch, Pending>> = {};
  readonly hooks: Hooks;

  constructor(readonly width: number) {
    if (!Number.isInteger(width) || width <= 0) throw new ConfigError(`recorder width must be a positive integer, got ${width}`);
    const store = this.store;
    const dist = (key: string, v: Float32Array): number | null => store.change(key, v);
    this.hooks = {
      beginRun: () => {
        store.clear();
        this.pending = {};
      },
      body: async (ctx, h0, runBlocks) => {
        const hL = await runBlocks(0, ctx.numBlocks, h0);
        const b = ctx.branch;
        const r = sub(hL, h0);
        const prevR = store.get(`residual.${b}`);
        const mag = prevR && prevR.length === r.length ? tokenStats(r, prevR, this.width) : null;
        const residualNorm = mag ? mag.meanNorm : tokenStats(r, r, this.width).meanNorm;
        const pend: Pending = { ctx, body: dist(`body.${b}`, hL), residual: dist(`residual.${b}`, r), mag, residualNorm };
        this.pending[b] = pend;
        return hL;
      },
      branch: async (ctx, compute) => {
        this.pending[ctx.branch] = undefined;
        const v = await compute();
        const b = ctx.branch;
        const p = this.pending[b];
        if (!p) throw new MixCacheError("RUNTIME", "calibration recorder: the branch ran without its body hook");
        this.records.push({
          run: this.runs, step: ctx.step.index, timestep: ctx.step.timestep, sigma: ctx.step.sigma, branch: b,
          proxy: { temb: dist(`temb.${b}`, ctx.time.temb), tproj: dist(`tproj.${b}`, ctx.time.tproj) },
          out: { velocity: dist(`velocity.${b}`, v), body: p.body, residual: p.residual },
          magnitude: p.mag ? { ratio: p.mag.ratio, ratioStd: p.mag.ratioStd, cosineDist: p.mag.cosineDist } : { ratio: null, ratioStd: null, cosineDist: null },
          residualNorm: p.residualNorm,
        });
        this.pending[b] = undefined;
        return v;
      },
      endRun: () => {
        store.clear();
        this.runs++;
      },
    };
  }

  /** The recorder as a cache strategy for `generate({ cache })` (it computes everything). */
  asCache(): CacheStrategy {
    return hooksAsCache(this.hooks, "record", () => ({ peakBytes: this.store.peak, counters: { records: this.records.length } }));
  }
}

/** What every calibrator runs: uncached generations over prompts x seeds. */
export interface CalibrationSettings {
  /** Prompts encoded by the model's text encoder (one generation per prompt and seed). */
  prompts?: string[];
  /** Precomputed text embeddings instead of prompts (models without a text encoder). */
  textEmbeddings?: TextEmbedding[];
  /** Negative embedding for CFG with textEmbeddings (default: the model's negative prompt). */
  negativeEmbedding?: TextEmbedding;
  /** Noise seeds (default [0]). */
  seeds?: number[];
  steps?: number;
  shift?: number;
  guidance?: number;
  sampler?: SamplerName;
  shape?: LatentShape;
  /** Progress over all generations: steps done / steps total. */
  onStep?: (done: number, total: number) => void;
}

/** Settings with the model's defaults filled in. */
export interface ResolvedSettings {
  inputs: Array<{ prompt?: string; textEmbedding?: TextEmbedding }>;
  seeds: number[];
  steps: number;
  shift: number;
  guidance: number;
  sampler: SamplerName;
}

export function resolveSettings(model: Pick<LoadedModel, "name" | "defaults" | "hasTextEncoder">, s: CalibrationSettings): ResolvedSettings {
  const hasPrompts = s.prompts !== undefined && s.prompts.length > 0;
  const hasEmb = s.textEmbeddings !== undefined && s.textEmbeddings.length > 0;
  if (hasPrompts && hasEmb) throw new MixCacheError("USAGE", "calibration: pass prompts or textEmbeddings, not both");
  if (!hasPrompts && !hasEmb) throw new MixCacheError("USAGE", "calibration needs at least one prompt", "pass prompts (or textEmbeddings for a model without a text encoder)");
  if (hasPrompts && !model.hasTextEncoder)
    throw new MixCacheError("USAGE", `model ${model.name} has no text encoder, so it cannot calibrate from prompts`, "pass precomputed textEmbeddings through the API");
  const seeds = s.seeds ?? [0];
  if (!seeds.length || !seeds.every(Number.isSafeInteger)) throw new MixCacheError("USAGE", `calibration seeds must be a non-empty list of integers, got ${JSON.stringify(seeds)}`);
  const steps = s.steps ?? model.defaults.steps;
  if (!Number.isInteger(steps) || steps < 2) throw new MixCacheError("USAGE", `calibration needs at least 2 steps, got ${steps}`);
  return {
    inputs: hasPrompts ? s.prompts!.map((prompt) => ({ prompt })) : s.textEmbeddings!.map((textEmbedding) => ({ textEmbedding })),
    seeds,
    steps,
    shift: s.shift ?? model.defaults.shift,
    guidance: s.guidance ?? model.defaults.guidance,
    sampler: s.sampler ?? model.defaults.sampler,
  };
}

/** Run every (input, seed) generation uncached under a recorder and return its records. */
export async function recordRuns(model: LoadedModel, s: CalibrationSettings): Promise<{ settings: ResolvedSettings; recorder: Recorder }> {
  const r = resolveSettings(model, s);
  const recorder = new Recorder(model.transformer.dim);
  const cache = recorder.asCache();
  const total = r.inputs.length * r.seeds.length * r.steps;
  let base = 0;
  for (const input of r.inputs) {
    for (const seed of r.seeds) {
      await generate({
        model, ...input, seed, steps: r.steps, shift: r.shift, guidance: r.guidance, sampler: r.sampler, shape: s.shape, decode: false,
        negativeEmbedding: input.textEmbedding ? s.negativeEmbedding : undefined,
        cache,
        onStep: (done) => s.onStep?.(base + done, total),
      });
      base += r.steps;
    }
  }
  return { settings: r, recorder };
}
