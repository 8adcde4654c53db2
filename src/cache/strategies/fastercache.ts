/**
 * FasterCache (Lv et al., "FasterCache: Training-Free Video Diffusion Model Acceleration with High
 * Quality", ICLR 2025, arXiv 2410.19355; Vchitect/FasterCache; diffusers hooks/faster_cache.py).
 * Two caches in one strategy:
 *
 * (a) Attention reuse. Granularity: module (`sa`, the self attention of every block; diffusers hooks
 *     the non-cross attention only). Decision: fixed: inside lo < t < hi (default (-1, 681)) the
 *     attention is computed at steps with i % r == 0 and approximated otherwise. Reuse: linear
 *     extrapolation from the last two computed outputs, o_t = o_a + w (o_a - o_b) (paper;
 *     diffusers attention_weight_callback, default w = 0.5 for every step; the paper lets w grow from
 *     0 to 1 over sampling). With r = 2 the two outputs are 2 steps apart, so w = 0.5 is a plain linear
 *     extrapolation by one step. With only one computed output the extrapolation is plain reuse
 *     (diffusers seeds its cache with [o, o]).
 * (b) CFG-Cache. Granularity: the uncond CFG branch (`branch` hook). Decision: fixed: the uncond
 *     branch is skipped at steps i > 0 with i % u != 0 inside lo < t < hi (default u = 5, (-1, 641)).
 *     Reuse: at the last step where both branches ran, Delta = v_uncond - v_cond is transformed with a
 *     2-D FFT over (H, W) per channel and frame, and split into a low band (a disc of radius
 *     min(H, W) // 5 around the centred spectrum) and the high band. On a skipped step
 *     v_uncond = v_cond + IFFT(s_low * Delta_low + s_high * Delta_high), the paper's Eq. 9-10 (as
 *     cited by diffusers) with the cond bands summed back: IFFT(FFT(v_cond)) = v_cond. Each skipped
 *     step multiplies s_low by alpha_low (1.1) when t is in the low window (99, 901) and s_high by
 *     alpha_high (1.1) in (-1, 301); the factors compound over consecutive skips, as diffusers
 *     scales its stored delta in place; a full uncond step resets them to 1.
 *
 * Memory: two sa outputs per block per branch, plus the delta and its low-pass part (2 latents).
 *
 * Deviations:
 * - Wan issues separate cond / uncond calls. diffusers' denoiser hook assumes a batch of
 *   [uncond, cond] (diffusers hooks/faster_cache.py) and approximates attention only on cond-only
 *   batches; here each branch keeps its own attention state, and a module extrapolates only while
 *   its cache follows the schedule (its last compute at the latest multiple of r); an uncond branch
 *   that was skipped by CFG-Cache recomputes its attention instead of extrapolating over a longer
 *   gap.
 * - diffusers also pushes approximated outputs into the two-slot cache; we extrapolate from the last
 *   two *computed* outputs (the paper's rule).
 * - The low and high deltas are held in the time domain, as the delta and its low-pass part plus
 *   two scalar factors (deltaBands: the IFFT is linear, so a skipped step needs no transform;
 *   equal to the two masked spectra within float32 rounding, half their memory).
 * - Our module seam returns the gated residual, so the extrapolation is of gate x attention.
 * - The FFT runs per channel and frame over (H, W) of the latent shape the loop passes in RunInfo.
 */
import { CacheStore, perBranch, defineStrategy } from "../strategy.ts";
import { fmt } from "../knobs.ts";
import { extrapolate } from "../../tensor/ops.ts";
import { extrapolateLarge } from "../../graph/elementwise.ts";
import { fft2, ifft2, lowFrequencyMask } from "../../tensor/fft.ts";
import type { Branch, TraceRow } from "../../pipeline/hooks.ts";
import type { ModuleDecl, ModulePlan } from "../../models/family.ts";
import type { LatentShape } from "../../models/types.ts";

/** FasterCache attention approximation o_a + w (o_a - o_b). */
export function fasterCacheExtrapolate(last: Float32Array, prev: Float32Array, w: number): Float32Array {
  return extrapolate(last, prev, w);
}

/** The modules FasterCache approximates: attention over the video tokens. */
const isVideoAttn = (m: ModuleDecl) => m.role === "self-attn" || m.role === "joint-attn";

/** Attention decision: approximate at step `index` given the module's last compute step (or -1)? */
function attnApproximates(range: number, lo: number, hi: number, index: number, timestep: number, lastAt: number): boolean {
  if (range <= 1 || lastAt < 0) return false;
  if (!(lo < timestep && timestep < hi)) return false;
  if (index % range === 0) return false;
  return lastAt === index - (index % range);
}

/** CFG-Cache decision: skip the uncond branch at step `index`? (diffusers FasterCacheDenoiserHook) */
function uncondSkips(range: number, lo: number, hi: number, index: number, timestep: number): boolean {
  return range > 1 && index > 0 && lo < timestep && timestep < hi && index % range !== 0;
}

function planes(d: LatentShape): { count: number; H: number; W: number } {
  return { count: d.channels * d.frames, H: d.height, W: d.width };
}

/** 2-D spectrum of (a - b) per [H, W] plane of a [C, F, H, W] tensor, as float32 re / im. */
export function deltaSpectrum(a: Float32Array, b: Float32Array, dims: LatentShape): { re: Float32Array; im: Float32Array } {
  const { count, H, W } = planes(dims);
  const P = H * W;
  if (a.length !== count * P || b.length !== a.length) throw new Error(`fastercache: tensor has ${a.length} values, shape ${JSON.stringify(dims)} needs ${count * P}`);
  const re = new Float32Array(a.length), im = new Float32Array(a.length);
  const pr = new Float64Array(P), pi = new Float64Array(P);
  for (let p = 0; p < count; p++) {
    const o = p * P;
    for (let j = 0; j < P; j++) {
      pr[j] = a[o + j] - b[o + j];
      pi[j] = 0;
    }
    fft2(pr, pi, H, W);
    re.set(pr, o);
    im.set(pi, o);
  }
  return { re, im };
}

/** base + real(IFFT(sLow * low band + sHigh * high band)) of a spectrum held per plane. */
export function addBands(base: Float32Array, re: Float32Array, im: Float32Array, dims: LatentShape, sLow: number, sHigh: number): Float32Array {
  const { count, H, W } = planes(dims);
  const P = H * W;
  const mask = lowFrequencyMask(H, W);
  const out = new Float32Array(base.length);
  const pr = new Float64Array(P), pi = new Float64Array(P);
  for (let p = 0; p < count; p++) {
    const o = p * P;
    for (let j = 0; j < P; j++) {
      const s = mask[j] ? sLow : sHigh;
      pr[j] = s * re[o + j];
      pi[j] = s * im[o + j];
    }
    ifft2(pr, pi, H, W);
    for (let j = 0; j < P; j++) out[o + j] = base[o + j] + pr[j];
  }
  return out;
}

/**
 * The same rebuild without a transform per skipped step. The IFFT is linear, so
 *   IFFT(sLow Delta_low + sHigh Delta_high) = sHigh Delta + (sLow - sHigh) IFFT(Delta_low)
 * with Delta = a - b itself (IFFT(FFT(Delta)) = Delta): `deltaBands` keeps Delta and its low-pass
 * part in the time domain once per full uncond step, and `addBandsTime` is then one elementwise
 * pass. Equals addBands on deltaSpectrum within float32 rounding (test/cache_module_level.test.ts).
 */
export function deltaBands(a: Float32Array, b: Float32Array, dims: LatentShape): { delta: Float32Array; low: Float32Array } {
  const { count, H, W } = planes(dims);
  const P = H * W;
  if (a.length !== count * P || b.length !== a.length) throw new Error(`fastercache: tensor has ${a.length} values, shape ${JSON.stringify(dims)} needs ${count * P}`);
  const mask = lowFrequencyMask(H, W);
  const delta = new Float32Array(a.length), low = new Float32Array(a.length);
  const pr = new Float64Array(P), pi = new Float64Array(P);
  for (let p = 0; p < count; p++) {
    const o = p * P;
    for (let j = 0; j < P; j++) {
      pr[j] = a[o + j] - b[o + j];
      delta[o + j] = pr[j];
      pi[j] = 0;
    }
    fft2(pr, pi, H, W);
    for (let j = 0; j < P; j++) {
      if (!mask[j]) pr[j] = pi[j] = 0;
    }
    ifft2(pr, pi, H, W);
    low.set(pr, o); // real: the low band of a real signal is conjugate-symmetric
  }
  return { delta, low };
}

/** base + sHigh delta + (sLow - sHigh) low, computed in float64 (see deltaBands). */
export function addBandsTime(base: Float32Array, delta: Float32Array, low: Float32Array, sLow: number, sHigh: number): Float32Array {
  const out = new Float32Array(base.length);
  const k = sLow - sHigh;
  for (let j = 0; j < base.length; j++) out[j] = base[j] + sHigh * delta[j] + k * low[j];
  return out;
}

/** Low / high bands of x per plane (float64 spectra), the diffusers _split_low_high_freq split. */
export function splitBands(x: Float32Array, dims: LatentShape): { low: { re: Float64Array; im: Float64Array }; high: { re: Float64Array; im: Float64Array } } {
  const { count, H, W } = planes(dims);
  const P = H * W;
  const mask = lowFrequencyMask(H, W);
  const low = { re: new Float64Array(x.length), im: new Float64Array(x.length) };
  const high = { re: new Float64Array(x.length), im: new Float64Array(x.length) };
  const pr = new Float64Array(P), pi = new Float64Array(P);
  for (let p = 0; p < count; p++) {
    const o = p * P;
    for (let j = 0; j < P; j++) {
      pr[j] = x[o + j];
      pi[j] = 0;
    }
    fft2(pr, pi, H, W);
    for (let j = 0; j < P; j++) {
      const band = mask[j] ? low : high;
      band.re[o + j] = pr[j];
      band.im[o + j] = pi[j];
    }
  }
  return { low, high };
}

const DEFAULTS = {
  attn_range: 2, attn_t_lo: -1, attn_t_hi: 681, weight: 0.5,
  uncond_range: 5, uncond_t_lo: -1, uncond_t_hi: 641,
  alpha_low: 1.1, alpha_high: 1.1, low_t_lo: 99, low_t_hi: 901, high_t_lo: -1, high_t_hi: 301,
} as const;

/** Compact, unique tag: the two ranges, then every other knob that differs from its default. */
function makeTag(c: Readonly<Record<keyof typeof DEFAULTS, number>>): string {
  let tag = `fastercache-a${c.attn_range}-u${c.uncond_range}`;
  const diff = (k: keyof typeof DEFAULTS) => c[k] !== DEFAULTS[k];
  if (diff("weight")) tag += `-w${fmt(c.weight)}`;
  if (diff("alpha_low")) tag += `-al${fmt(c.alpha_low)}`;
  if (diff("alpha_high")) tag += `-ah${fmt(c.alpha_high)}`;
  const win = (p: string, lo: keyof typeof DEFAULTS, hi: keyof typeof DEFAULTS) => {
    if (diff(lo) || diff(hi)) tag += `-${p}${fmt(c[lo])}_${fmt(c[hi])}`;
  };
  win("at", "attn_t_lo", "attn_t_hi");
  win("ut", "uncond_t_lo", "uncond_t_hi");
  win("lt", "low_t_lo", "low_t_hi");
  win("ht", "high_t_lo", "high_t_hi");
  return tag;
}

const windowKnob = <N extends keyof typeof DEFAULTS>(name: N, def: number, doc: string) =>
  ({ name, type: "number" as const, default: def, min: -1, max: 1000, doc, source: "diffusers FasterCacheConfig" });

export const fastercache = defineStrategy({
  name: "fastercache",
  granularity: "hybrid",
  summary: "FasterCache: approximate self attention every other step by linear extrapolation of its last two outputs, and skip the uncond CFG branch, rebuilding it from the cond output plus a cached, frequency-split (uncond - cond) delta.",
  source: "Lv et al., ICLR 2025, arXiv 2410.19355 (Vchitect/FasterCache; diffusers FasterCacheConfig)",
  knobs: [
    { name: "attn_range", type: "int", default: 2, min: 1, max: 1000, doc: "Self-attention: compute every r steps inside the window, extrapolate in between. 1 = off.", source: "diffusers spatial_attention_block_skip_range 2 (hard-coded 2 in the paper's code)" },
    windowKnob("attn_t_lo", -1, "Attention extrapolation only while attn_t_lo < timestep < attn_t_hi."),
    windowKnob("attn_t_hi", 681, "Upper end of the attention window (exclusive)."),
    { name: "weight", type: "number", default: 0.5, min: 0, max: 10, doc: "w in o_t = o_a + w (o_a - o_b). Constant (the paper ramps it from 0 to 1 over sampling).", source: "diffusers attention_weight_callback default 0.5" },
    { name: "uncond_range", type: "int", default: 5, min: 1, max: 1000, doc: "CFG-Cache: run the uncond branch every u steps inside its window, rebuild it from the cond branch otherwise. 1 = off.", source: "diffusers unconditional_batch_skip_range 5" },
    windowKnob("uncond_t_lo", -1, "Uncond skipping only while uncond_t_lo < timestep < uncond_t_hi."),
    windowKnob("uncond_t_hi", 641, "Upper end of the uncond window (exclusive)."),
    { name: "alpha_low", type: "number", default: 1.1, min: 0, max: 10, doc: "Low-band delta scale per skipped step inside the low window (compounds over consecutive skips).", source: "diffusers alpha_low_frequency 1.1 (paper Eq. 11)" },
    { name: "alpha_high", type: "number", default: 1.1, min: 0, max: 10, doc: "High-band delta scale per skipped step inside the high window (compounds).", source: "diffusers alpha_high_frequency 1.1 (paper Eq. 11)" },
    windowKnob("low_t_lo", 99, "alpha_low applies while low_t_lo < timestep < low_t_hi."),
    windowKnob("low_t_hi", 901, "Upper end of the low-band window (exclusive)."),
    windowKnob("high_t_lo", -1, "alpha_high applies while high_t_lo < timestep < high_t_hi."),
    windowKnob("high_t_hi", 301, "Upper end of the high-band window (exclusive)."),
  ],
  exact: { attn_range: 1, uncond_range: 1 },
  build(config) {
    const c = config;
    const tag = makeTag(c);
    return {
      name: "fastercache", granularity: "hybrid", config, tag,
      attach() {
        const store = new CacheStore();
        const warnings: string[] = [];
        let dims: LatentShape | null = null;
        const st = perBranch(() => ({ lastAt: new Map<string, number>(), computed: 0, approx: 0, approxTotal: 0 }));
        const cfg = { has: false, sLow: 1, sHigh: 1, skipped: 0, action: "none" as string };
        const trace: TraceRow[] = [];

        /** The extrapolated attention when module `mod` is approximated at this step (counted), else null. */
        const approximate = async (branch: Branch, block: number, mod: ModuleDecl, index: number, timestep: number): Promise<Float32Array | null> => {
          if (!isVideoAttn(mod)) return null;
          const s = st[branch];
          const key = `${branch}.${block}.${mod.name}`;
          const last = store.get(`${key}.last`);
          if (!last || !attnApproximates(c.attn_range, c.attn_t_lo, c.attn_t_hi, index, timestep, s.lastAt.get(key) ?? -1)) return null;
          const prev = store.get(`${key}.prev`);
          s.approx++;
          s.approxTotal++;
          // one onnxruntime call in float32 (within an ulp of fasterCacheExtrapolate's float64 form)
          return prev ? extrapolateLarge(last, prev, c.weight) : last;
        };
        // FasterCache approximates the attention over the video tokens (Wan sa; joint attention in MMDiT families)
        const keeps = (m: ModuleDecl) => c.attn_range > 1 && isVideoAttn(m);
        /** A computed attention output becomes the newest of the two the extrapolation reads. */
        const keep = (branch: Branch, key: string, out: Float32Array, index: number) => {
          const last = store.get(`${key}.last`);
          if (last) store.set(`${key}.prev`, last);
          store.set(`${key}.last`, out);
          st[branch].lastAt.set(key, index);
        };
        const resolveDims = (): LatentShape => {
          if (!dims) throw new Error("fastercache: beginRun was not called");
          return dims;
        };

        return {
          hooks: {
            beginRun(r) {
              dims = r.shape;
            },
            beginStep() {
              for (const s of Object.values(st)) s.computed = s.approx = 0;
              cfg.action = "none";
            },
            // one decision per module and step: here for sequential blocks (the loop runs the
            // block in one call with the extrapolated attention fed in), in `module` for parallel ones
            async planModules(ctx, block) {
              const out: ModulePlan[] = [];
              for (const m of ctx.blocks[block].modules) {
                const approx = await approximate(ctx.branch, block, m, ctx.step.index, ctx.step.timestep);
                if (!approx) st[ctx.branch].computed++;
                out.push(approx ?? (keeps(m) ? "keep" : "compute"));
              }
              return out;
            },
            keepModule: (ctx, block, mod, r) => keep(ctx.branch, `${ctx.branch}.${block}.${mod.name}`, r, ctx.step.index),
            async module(ctx, block, mod, h, compute) {
              const approx = await approximate(ctx.branch, block, mod, ctx.step.index, ctx.step.timestep);
              if (approx) return approx;
              const out = await compute(h);
              st[ctx.branch].computed++;
              if (keeps(mod)) keep(ctx.branch, `${ctx.branch}.${block}.${mod.name}`, out, ctx.step.index);
              return out;
            },
            async branch(ctx, compute) {
              if (ctx.branch !== "uncond") return compute();
              const { index, timestep } = ctx.step;
              const vc = ctx.condVelocity;
              if (vc && cfg.has && uncondSkips(c.uncond_range, c.uncond_t_lo, c.uncond_t_hi, index, timestep)) {
                if (c.low_t_lo < timestep && timestep < c.low_t_hi) cfg.sLow *= c.alpha_low;
                if (c.high_t_lo < timestep && timestep < c.high_t_hi) cfg.sHigh *= c.alpha_high;
                cfg.skipped++;
                cfg.action = "cfg-cache";
                // the bands of the last full step's delta, made at the first skip that reads them:
                // most full steps are followed by another full step, and their FFTs were the
                // larger part of this strategy's run (same function, same inputs: same bits)
                const vu = store.get("cfg.vu"), vcFull = store.get("cfg.vc");
                if (vu && vcFull) {
                  const bands = deltaBands(vu, vcFull, resolveDims());
                  store.delete("cfg.vu");
                  store.delete("cfg.vc");
                  store.set("cfg.delta", bands.delta);
                  store.set("cfg.low", bands.low);
                }
                return addBandsTime(vc, store.get("cfg.delta")!, store.get("cfg.low")!, cfg.sLow, cfg.sHigh);
              }
              const vu = await compute();
              cfg.action = "full";
              if (vc && c.uncond_range > 1) {
                // both velocities as they are (new arrays nobody modifies); the bands come later
                store.delete("cfg.delta");
                store.delete("cfg.low");
                store.set("cfg.vu", vu);
                store.set("cfg.vc", vc);
                cfg.has = true;
                cfg.sLow = cfg.sHigh = 1;
              }
              return vu;
            },
            endStep(step) {
              const co = st.cond, un = st.uncond;
              trace.push({
                step: step.index, timestep: step.timestep, action: co.approx === 0 ? "full" : "attn-extrapolate",
                uncond: cfg.action === "full" && un.approx > 0 ? "attn-extrapolate" : cfg.action,
                reusedCond: co.approx, reusedUncond: un.approx, computedCond: co.computed, computedUncond: un.computed,
                ...(cfg.action === "cfg-cache" ? { sLow: cfg.sLow, sHigh: cfg.sHigh } : {}),
              });
            },
          },
          report: () => ({
            name: "fastercache", tag, config, peakBytes: store.peak, trace,
            counters: { approximatedAttnCond: st.cond.approxTotal, approximatedAttnUncond: st.uncond.approxTotal, skippedUncond: cfg.skipped },
            warnings,
          }),
        };
      },
    };
  },
});
