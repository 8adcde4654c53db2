/**
 * MixCache calibration: impact factors I_t(psi) by perturbation (design: docs/design/mixcache.md
 * section 4; the paper's "accuracy impact" analysis as summarised).
 *
 *  1. Uncached reference generations; on the way, record the per-step change rates of the three
 *     cached quantities (body residual R, guidance delta G = v_u - v_c, middle residual M) and of
 *     the output, stored in the profile for inspection (the strategy measures its own rates
 *     online, and the bench's redundancy plot records its own signals, bench/redundancy.ts).
 *  2. For a grid of steps t and each granularity psi, re-run with the quantity psi reuses replaced
 *     at step t and measure rel-L1(output, reference). Default perturbation (our change): the
 *     value one step earlier, i.e. the structured error a cache really makes. The paper's Gaussian
 *     noise of relative size eps (mode "gaussian") underestimated the CFG delta's impact ~10x on
 *     the reference model: i.i.d. noise is largely denoised away, a stale G is not.
 *  3. I_t(psi) = deviation / (relative size of the perturbation), linearly interpolated between
 *     grid steps, smoothed with a 3-step moving average, normalised so the median over (t, psi) is 1.
 */
import type { LoadedModel } from "../../models/load.ts";
import type { Branch, Hooks } from "../../pipeline/hooks.ts";
import { generate } from "../../pipeline/generate.ts";
import { gaussianNoise } from "../../pipeline/noise.ts";
import { add, meanAbs, relL1, sub } from "../../tensor/ops.ts";
import { hooksAsCache } from "../strategy.ts";
import type { MixCacheProfile } from "../strategies/mixcache.ts";
import { GRANULARITIES, type Gran } from "../strategies/mixcache-decision.ts";
import { resolveSettings, type CalibrationSettings } from "./record.ts";

export interface MixCacheCalibrationOptions extends CalibrationSettings {
  /** Grid points (steps perturbed), spread evenly over the run (default 10). */
  grid?: number;
  /** Perturbation: `reuse` (the value one step earlier, default) or `gaussian` noise of size eps. */
  mode?: "reuse" | "gaussian";
  /** Relative noise magnitude for `gaussian` (default 0.05). */
  eps?: number;
  /** Front / back compute blocks of the block granularity (strategy defaults 1 / 1). */
  fn?: number;
  bn?: number;
}


/** Hooks that compute everything (output = uncached) and record the per-step change rates. */
function rateRecorder(fn: number, bn: number) {
  const prev: Record<string, Float32Array> = {};
  const rates: Record<Gran, number[][]> = { step: [], cfg: [], block: [] };
  const out: number[] = [];
  const push = (g: Gran, i: number, v: number) => ((rates[g][i] ??= []).push(v));
  const hooks: Hooks = {
    async body(ctx, h0, runBlocks) {
      const L = ctx.numBlocks;
      const hF = await runBlocks(0, fn, h0);
      const hB = await runBlocks(fn, L - bn, hF);
      const hL = await runBlocks(L - bn, L, hB);
      const R = sub(hL, h0), M = sub(hB, hF);
      const i = ctx.step.index;
      if (prev[`R${ctx.branch}`]) push("step", i, relL1(R, prev[`R${ctx.branch}`]));
      if (prev[`M${ctx.branch}`]) push("block", i, relL1(M, prev[`M${ctx.branch}`]));
      prev[`R${ctx.branch}`] = R;
      prev[`M${ctx.branch}`] = M;
      return hL;
    },
    endStep(step, o) {
      if (o.uncond) {
        const G = sub(o.uncond, o.cond);
        if (prev.G) push("cfg", step.index, relL1(G, prev.G));
        prev.G = G;
      }
      if (prev.v) out[step.index] = relL1(o.velocity, prev.v);
      prev.v = o.velocity;
    },
  };
  return { hooks, rates, out };
}

/**
 * Hooks that compute everything but perturb, at step `at`, the quantity `gran` reuses. `reuse`
 * (default): replace it by its value one step earlier, i.e. the error a one-step cache really
 * makes; `gaussian`: true value + i.i.d. noise of relative size eps (the paper's procedure, as summarised).
 * `size` receives the relative size of the perturbation actually applied (rel-L1 to the truth).
 */
function perturber(gran: Gran, at: number, mode: "reuse" | "gaussian", eps: number, fn: number, bn: number, seed: number, size: number[]): Hooks {
  const prev: Record<string, Float32Array> = {};
  const perturb = (key: string, x: Float32Array, salt: number): Float32Array => {
    let out: Float32Array;
    if (mode === "reuse") out = prev[key] ?? x;
    else {
      const n = gaussianNoise(x.length, (seed * 7919 + salt) >>> 0);
      const s = eps * meanAbs(x);
      out = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) out[i] = x[i] + s * n[i];
    }
    size.push(relL1(out, x));
    return out;
  };
  const salt = (b: Branch) => (b === "cond" ? 1 : 2);
  return {
    async body(ctx, h0, runBlocks) {
      const L = ctx.numBlocks;
      const i = ctx.step.index;
      if (gran === "cfg" || i > at) return runBlocks(0, L, h0);
      const hF = await runBlocks(0, fn, h0);
      const hB = await runBlocks(fn, L - bn, hF);
      const key = `${gran}.${ctx.branch}`;
      if (i < at) {
        // before the perturbed step: exact, remembering the quantity for the reuse perturbation
        const hL = await runBlocks(L - bn, L, hB);
        prev[key] = gran === "block" ? sub(hB, hF) : sub(hL, h0);
        return hL;
      }
      if (gran === "block") return runBlocks(L - bn, L, add(hF, perturb(key, sub(hB, hF), salt(ctx.branch))));
      const hL = await runBlocks(L - bn, L, hB);
      return add(h0, perturb(key, sub(hL, h0), salt(ctx.branch)));
    },
    async branch(ctx, compute) {
      const v = await compute();
      if (gran !== "cfg" || ctx.branch !== "uncond" || ctx.step.index > at) return v;
      const G = sub(v, ctx.condVelocity!);
      if (ctx.step.index < at) {
        prev.G = G;
        return v;
      }
      return add(ctx.condVelocity!, perturb("G", G, 3));
    },
  };
}

const mean = (a: number[] | undefined) => (a && a.length ? a.reduce((x, y) => x + y, 0) / a.length : NaN);

export async function calibrateMixCache(model: LoadedModel, o: MixCacheCalibrationOptions): Promise<MixCacheProfile> {
  const s = resolveSettings(model, o);
  const fn = o.fn ?? 1, bn = o.bn ?? 1;
  const eps = o.eps ?? 0.05;
  const mode = o.mode ?? "reuse";
  const N = s.steps;
  const G = Math.min(o.grid ?? 10, N);
  // grid: evenly spaced steps from the second (the reuse perturbation needs a previous step) to the last
  const grid = [...new Set(Array.from({ length: G }, (_, k) => 1 + Math.round((k * (N - 2)) / Math.max(1, G - 1))))];
  const runs = s.inputs.length * s.seeds.length;
  const total = runs * N * (1 + grid.length * GRANULARITIES.length);
  let done = 0;
  const progress = () => o.onStep?.(++done, total);
  const dev: Record<Gran, number[][]> = { step: grid.map(() => []), cfg: grid.map(() => []), block: grid.map(() => []) };
  const rateAcc: Record<Gran, number[][]> = { step: [], cfg: [], block: [] };
  const outAcc: number[][] = [];
  for (const input of s.inputs)
    for (const seed of s.seeds) {
      const common = { model, ...input, seed, steps: N, shift: s.shift, guidance: s.guidance, sampler: s.sampler, shape: o.shape, decode: false, onStep: progress }; // deviations in latent space (no VAE per run)
      const rec = rateRecorder(fn, bn);
      const ref = (await generate({ ...common, cache: hooksAsCache(rec.hooks, "calibrate-rates") })).video.data;
      for (const g of GRANULARITIES) rec.rates[g].forEach((v, i) => (rateAcc[g][i] ??= []).push(mean(v)));
      rec.out.forEach((v, i) => (outAcc[i] ??= []).push(v));
      for (const g of GRANULARITIES) {
        if (g === "cfg" && !(s.guidance > 1)) continue;
        for (let k = 0; k < grid.length; k++) {
          const size: number[] = [];
          const r = await generate({ ...common, cache: hooksAsCache(perturber(g, grid[k], mode, eps, fn, bn, seed + 1, size), `calibrate-${g}`) });
          const applied = mean(size);
          if (applied > 0) dev[g][k].push(relL1(r.video.data, ref) / applied);
        }
      }
    }
  // interpolate the grid to every step, smooth, normalise (median over (t, psi) = 1)
  const curve = (g: Gran): number[] => {
    const pts = grid.map((t, k) => [t, mean(dev[g][k])] as const).filter(([, v]) => Number.isFinite(v));
    if (!pts.length) return new Array(N).fill(NaN);
    const raw = Array.from({ length: N }, (_, i) => {
      let k = 0;
      while (k < pts.length - 1 && pts[k + 1][0] < i) k++;
      const [t0, v0] = pts[k], [t1, v1] = pts[Math.min(k + 1, pts.length - 1)];
      return t1 === t0 ? v0 : v0 + ((v1 - v0) * (i - t0)) / (t1 - t0);
    });
    return raw.map((_, i) => mean(raw.slice(Math.max(0, i - 1), i + 2)));
  };
  const impact = { step: curve("step"), cfg: curve("cfg"), block: curve("block") };
  const all = GRANULARITIES.flatMap((g) => impact[g]).filter(Number.isFinite).sort((a, b) => a - b);
  const med = all.length ? all[Math.floor(all.length / 2)] : 1;
  for (const g of GRANULARITIES) impact[g] = impact[g].map((v) => (Number.isFinite(v) ? v / med : 1e6));
  const rateCurve = (g: Gran) => Array.from({ length: N }, (_, i) => mean(rateAcc[g][i]) || 0);
  return {
    meta: {
      method: "mixcache", model: model.name, steps: N, shift: s.shift, sampler: s.sampler, guidance: s.guidance,
      prompts: s.inputs.length, created: new Date().toISOString(), eps, mode, grid,
    },
    impact,
    rates: { step: rateCurve("step"), cfg: rateCurve("cfg"), block: rateCurve("block") },
    outputChange: Array.from({ length: N }, (_, i) => mean(outAcc[i]) || 0),
  };
}

export function summarizeMixCache(p: MixCacheProfile): string[] {
  const q = (a: number[]) => {
    const s = [...a].sort((x, y) => x - y);
    return `min ${s[0].toFixed(2)}, median ${s[Math.floor(s.length / 2)].toFixed(2)}, max ${s[s.length - 1].toFixed(2)}`;
  };
  return [
    `impact factors over ${p.meta.steps} steps (grid ${p.meta.grid.join(",")}, eps ${p.meta.eps}, ${p.meta.prompts} prompt(s)):`,
    ...GRANULARITIES.map((g) => `  I(${g.padEnd(5)}) ${q(p.impact[g])}`),
    `change rates (median): step ${q(p.rates.step)}; cfg ${q(p.rates.cfg)}; block ${q(p.rates.block)}`,
  ];
}
