/**
 * Measurements for the schedule planner, on real runs of the model.
 *
 * 1. `recordReference`: one uncached run that keeps, per step, the latent, both branch velocities
 *    and every cache's source: the body residual R = h_L - h_0 and the middle residual
 *    M = h_{L-Bn} - h_Fn per branch, and the guidance delta G = v_u - v_c. Memory: steps x
 *    (2 latents + 4 hidden states); fine for the reference models (~26 MB at 50 steps), not meant
 *    for full-size checkpoints.
 * 2. `segmentError`: the error a cached segment adds. The run replays the reference exactly up to
 *    the segment's full step i (the recorded velocities stand in for the model, so those steps cost
 *    only the sampler), then runs `len` cached steps of one granularity with the caches of step i,
 *    as MixCache reuses them (order 0), and stops at the next step j = i + 1 + len. The local error
 *    is the mean squared deviation of the latent entering step j from the reference's.
 * 3. `propagationGain`: how a local error at step j grows into the final output. The same segment
 *    ending at j, then every later step computed in full; gain_j = final MSE / local MSE. Measured
 *    on a grid of j and interpolated (log-linear) between grid points.
 * The planner's estimate of a segment's contribution to the final output is gain_j x local error.
 * Squared errors are in the pixel units of PSNR (values in [0, 1]: MSE over [-1, 1] divided by 4).
 */
import { MixCacheError } from "../../errors.ts";
import type { LoadedModel } from "../../models/load.ts";
import type { Branch, Hooks } from "../../pipeline/hooks.ts";
import { generate } from "../../pipeline/generate.ts";
import { add, sub } from "../../tensor/ops.ts";
import { hooksAsCache } from "../strategy.ts";
import { actionCosts, type Gran } from "../strategies/mixcache-decision.ts";
import type { ApproxMode } from "../../schedulers/types.ts";

export interface RunSpec {
  model: LoadedModel;
  prompt: string;
  seed: number;
  steps: number;
  guidance?: number;
  shift?: number;
  /** UniPC at the cached steps of a segment (the mode the planned schedule will run with). */
  approx?: ApproxMode;
}

export interface Reference {
  spec: RunSpec;
  steps: number;
  cfg: boolean;
  fn: number;
  bn: number;
  /** compute of one cached step per granularity, in full-step units (exact, from the MAC counts) */
  costOf: Record<Gran, number>;
  /** latent entering step k (k = 0..N-1) and the final output (k = N) */
  latents: Float32Array[];
  velocity: Record<Branch, Float32Array[]>;
  R: Record<Branch, Float32Array[]>;
  M: Record<Branch, Float32Array[]>;
  G: Float32Array[];
}

/** Mean squared difference in PSNR units (inputs in [-1, 1]). */
export function mse01(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return s / a.length / 4;
}

/** PSNR (dB) of a mean squared error in [0, 1] pixel units (identical outputs capped at 100 dB). */
export function psnrOf(mse: number): number {
  return mse <= 1e-10 ? 100 : -10 * Math.log10(mse);
}

const blank = <T>(): Record<Branch, T[]> => ({ cond: [], uncond: [] });

export async function recordReference(spec: RunSpec, fn: number, bn: number): Promise<Reference> {
  const L = spec.model.transformer.blocks.length;
  if (fn + bn >= L) throw new MixCacheError("CONFIG", `plan: fn + bn = ${fn + bn} leaves no middle block in a ${L}-block model`, `choose fn + bn < ${L}`);
  const ref: Reference = {
    spec, steps: spec.steps, cfg: false, fn, bn, costOf: { step: 1, cfg: 1, block: 1 }, latents: [], velocity: blank(), R: blank(), M: blank(), G: [],
  };
  const hooks: Hooks = {
    beginRun(r) {
      ref.cfg = r.cfg;
      const c = actionCosts(r.macs, fn, bn, r.cfg);
      ref.costOf = { step: c.step, cfg: c.cfg, block: c.block };
    },
    beginStep(step, latent) {
      ref.latents[step.index] = Float32Array.from(latent);
    },
    async branch(ctx, compute) {
      const v = await compute();
      ref.velocity[ctx.branch][ctx.step.index] = v;
      return v;
    },
    async body(ctx, h0, runBlocks) {
      const hF = await runBlocks(0, fn, h0);
      const hB = await runBlocks(fn, L - bn, hF);
      const hL = await runBlocks(L - bn, L, hB);
      ref.R[ctx.branch][ctx.step.index] = sub(hL, h0);
      ref.M[ctx.branch][ctx.step.index] = sub(hB, hF);
      return hL;
    },
    endStep(step, out) {
      if (out.uncond) ref.G[step.index] = sub(out.uncond, out.cond);
    },
  };
  const r = await generate({ model: spec.model, prompt: spec.prompt, seed: spec.seed, steps: spec.steps, guidance: spec.guidance, shift: spec.shift, cache: hooksAsCache(hooks, "plan-record") });
  ref.latents[spec.steps] = r.video.data;
  return ref;
}

class Stop extends Error {}

/**
 * Run the segment (full step i, then len cached steps of g) on the reference trajectory. With
 * `toEnd` false it stops at the next full step j and returns the latent entering j (or the final
 * output when j = N); with `toEnd` true every later step is computed and the final output returned.
 */
async function runSegment(ref: Reference, i: number, g: Gran, len: number, toEnd: boolean): Promise<Float32Array> {
  const N = ref.steps;
  const j = i + 1 + len;
  if (len < 1 || j > N) throw new MixCacheError("USAGE", `plan: segment at ${i} with ${len} cached steps does not fit ${N} steps`);
  if (g === "cfg" && !ref.cfg) throw new MixCacheError("USAGE", "plan: CFG caching needs guidance > 1");
  const L = ref.spec.model.transformer.blocks.length;
  let captured: Float32Array | null = null;
  let k = 0;
  const hooks: Hooks = {
    // replayed steps (k <= i) hand back exact velocities; only the segment's cached steps are approximate
    approximate: (step) => step.index > i && step.index < j,
    beginStep(step, latent) {
      k = step.index;
      if (k === j && !toEnd) {
        captured = Float32Array.from(latent);
        throw new Stop();
      }
    },
    async branch(ctx, compute) {
      if (k <= i) return ref.velocity[ctx.branch][k]; // replay: exactly the reference
      if (k < j && g === "cfg" && ctx.branch === "uncond") return add(ctx.condVelocity!, ref.G[i]);
      return compute();
    },
    async body(ctx, h0, runBlocks) {
      if (k > i && k < j) {
        if (g === "step") return add(h0, ref.R[ctx.branch][i]);
        if (g === "block") {
          const hF = await runBlocks(0, ref.fn, h0);
          return runBlocks(L - ref.bn, L, add(hF, ref.M[ctx.branch][i]));
        }
      }
      return runBlocks(0, L, h0);
    },
  };
  try {
    const r = await generate({ model: ref.spec.model, prompt: ref.spec.prompt, seed: ref.spec.seed, steps: N, guidance: ref.spec.guidance, shift: ref.spec.shift, approx: ref.spec.approx, cache: hooksAsCache(hooks, "plan-segment") });
    return r.video.data;
  } catch (e) {
    if (e instanceof Stop && captured) return captured;
    throw e;
  }
}

/** Local error (MSE, [0, 1] units) of every segment (i, g, len <= maxRun) of one reference run. */
export async function segmentErrors(ref: Reference, grans: readonly Gran[], maxRun: number, onProgress?: (done: number, total: number) => void): Promise<Map<string, number>> {
  const N = ref.steps;
  const out = new Map<string, number>();
  const jobs: Array<[number, Gran, number]> = [];
  for (let i = 0; i < N - 1; i++) for (const g of grans) for (let len = 1; len <= maxRun && i + 1 + len <= N; len++) jobs.push([i, g, len]);
  let done = 0;
  for (const [i, g, len] of jobs) {
    const x = await runSegment(ref, i, g, len, false);
    out.set(segKey(i, g, len), mse01(x, ref.latents[i + 1 + len]));
    onProgress?.(++done, jobs.length);
  }
  return out;
}

export const segKey = (i: number, g: Gran, len: number) => `${i}|${g}|${len}`;

/**
 * gain_j for every j = 1..N: final-output MSE over local MSE at j, measured at `grid` points with
 * the one-step segment of `probe` ending at j, interpolated log-linearly in between. The final
 * output itself (j = N) has gain 1.
 */
export async function propagationGains(ref: Reference, probe: Gran, grid: number, onProgress?: (done: number, total: number) => void): Promise<number[]> {
  const N = ref.steps;
  const pts: number[] = [];
  for (let j = 2; j < N; j += Math.max(1, grid)) pts.push(j);
  const measured = new Map<number, number>();
  measured.set(N, 1);
  let done = 0;
  for (const j of pts) {
    const i = j - 2;
    const local = mse01(await runSegment(ref, i, probe, 1, false), ref.latents[j]);
    const final = mse01(await runSegment(ref, i, probe, 1, true), ref.latents[N]);
    if (local > 0 && final > 0) measured.set(j, final / local);
    onProgress?.(++done, pts.length);
  }
  const xs = [...measured.keys()].sort((a, b) => a - b);
  const gains = new Array<number>(N + 1).fill(1);
  for (let j = 1; j <= N; j++) {
    let lo = xs[0], hi = xs[xs.length - 1];
    for (const x of xs) {
      if (x <= j) lo = x;
      if (x >= j) {
        hi = x;
        break;
      }
    }
    if (j <= xs[0]) gains[j] = measured.get(xs[0])!;
    else if (lo === hi) gains[j] = measured.get(lo)!;
    else {
      const t = (j - lo) / (hi - lo);
      gains[j] = Math.exp((1 - t) * Math.log(measured.get(lo)!) + t * Math.log(measured.get(hi)!));
    }
  }
  return gains;
}
