/**
 * MagCache (Ma et al., NeurIPS 2025, arXiv 2506.09045; Zehong-Ma/MagCache,
 * MagCache4Wan2.1/magcache_generate.py `magcache_forward`).
 *
 * Granularity: step (the transformer body of one CFG branch; time path, patch embedding and head
 * still run), per branch as the Wan code keeps with its `cnt % 2` index.
 * Decision ("unified magnitude law"): gamma_t = mean over tokens of ||r_t||_2 / ||r_{t-1}||_2 of
 * successive body residuals r = h_L - h_0, measured offline. From step floor(retention_ratio * N)
 * on, every step does R *= gamma_t, n += 1, E += |1 - R|; the step is skipped while E < threshold
 * and n <= K, otherwise it is computed and R = 1, E = 0, n = 0.
 * Reuse: the body residual of the last computed step (order 0), h_L ~= h_0 + r.
 *
 * gamma comes from the model's calibration profile cache_profiles/magcache.json (written by
 * `mixcache calibrate magcache`): { meta, ratios: { cond: number[], uncond: number[] } }, one ratio
 * per step at meta.steps steps (ratios[b][0] = 1). When the run has another step count the curve is
 * nearest-interpolated per branch, as MagCache's `nearest_interp` does.
 *
 * Fallback without a (usable) profile: gamma = 1 would make E stay 0 and skip K steps in a row no
 * matter what, so instead gamma is estimated online per branch from the last two computed
 * residuals, g = (mean_tokens ||r_b|| / ||r_a||)^(1/(b-a)) for computed steps a < b, and that
 * per-step ratio is used for the following steps; until two residuals exist the step is computed.
 * A warning in the report says so. (The online estimate is a MixCache choice, not MagCache's.)
 * As in the Wan code, the last step is not forced: the cap K bounds every run of skips.
 */
import type { Branch, TraceRow } from "../../pipeline/hooks.ts";
import { CacheStore, perBranch, defineStrategy } from "../strategy.ts";
import { fmt } from "../knobs.ts";
import { readProfile, type ProfileMeta } from "../profiles.ts";
import { addLarge, subLarge } from "../../graph/elementwise.ts";

export interface MagCacheProfile {
  meta: ProfileMeta;
  ratios: { cond: number[]; uncond: number[] };
}

/** numpy's round-half-to-even, so interpolated indices match np.round. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** MagCache `nearest_interp`: resample a per-step curve to `n` steps. */
export function nearestInterp(src: readonly number[], n: number): number[] {
  if (n <= 0) return [];
  if (n === 1) return [src[src.length - 1]];
  const scale = (src.length - 1) / (n - 1);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(src[Math.min(src.length - 1, roundHalfEven(i * scale))]);
  return out;
}

/** Mean over tokens of ||a_tok||_2 / ||b_tok||_2 for [tokens, dim] arrays (the MagCache ratio). */
export function tokenNormRatio(a: Float32Array, b: Float32Array, dim: number): number {
  const d = dim > 0 && a.length % dim === 0 ? dim : a.length;
  const tokens = a.length / d;
  let sum = 0, count = 0;
  for (let t = 0; t < tokens; t++) {
    let na = 0, nb = 0;
    for (let j = t * d, e = j + d; j < e; j++) {
      na += a[j] * a[j];
      nb += b[j] * b[j];
    }
    if (nb > 0) {
      sum += Math.sqrt(na) / Math.sqrt(nb);
      count++;
    }
  }
  return count > 0 ? sum / count : 1;
}

function validCurve(x: unknown): x is number[] {
  return Array.isArray(x) && x.length > 0 && x.every((v) => typeof v === "number" && Number.isFinite(v) && v > 0);
}

export const magcache = defineStrategy({
  name: "magcache",
  granularity: "step",
  summary: "Skip the transformer body while the error accumulated from calibrated residual magnitude ratios stays below a threshold (at most K steps in a row); reuse the last body residual.",
  source: "Ma et al., NeurIPS 2025 (Zehong-Ma/MagCache, MagCache4Wan2.1)",
  knobs: [
    { name: "threshold", type: "number", default: 0.12, min: 0, max: 10, doc: "Accumulated error sum |1 - prod gamma| below which a step is skipped. 0 = never skip.", source: "magcache_generate.py --magcache_thresh 0.12 (Wan2.1 T2V 1.3B; 0.24 for 14B)" },
    { name: "max_skip", type: "int", default: 2, min: 0, max: 1000, doc: "K: most consecutive skipped steps per branch.", source: "magcache_generate.py --magcache_K 2 (\"slow\"; 4 = \"fast\")" },
    { name: "retention_ratio", type: "number", default: 0.2, min: 0, max: 1, doc: "Leading fraction of steps always computed (steps < floor(ratio * N)).", source: "magcache_generate.py --retention_ratio 0.2" },
  ],
  exact: { threshold: 0 },
  build(config, env) {
    const threshold = config.threshold;
    const K = config.max_skip;
    const retention = config.retention_ratio;
    const profile = readProfile<MagCacheProfile>(env?.profilesDir, "magcache");
    const buildWarnings: string[] = [];
    let curves: Partial<Record<Branch, number[]>> | null = null;
    if (!profile) buildWarnings.push("no MagCache calibration (cache_profiles/magcache.json) for this model; estimating the magnitude ratio online from the last two computed residuals (run `mixcache calibrate magcache`)");
    else if (!profile.ratios || !validCurve(profile.ratios.cond)) buildWarnings.push("cache_profiles/magcache.json has no valid ratios.cond curve; estimating the magnitude ratio online (re-run `mixcache calibrate magcache`)");
    else curves = { cond: profile.ratios.cond, uncond: validCurve(profile.ratios.uncond) ? profile.ratios.uncond : undefined };
    const tag = `magcache-t${fmt(threshold)}-K${fmt(K)}-r${fmt(retention)}`;
    return {
      name: "magcache", granularity: "step", config, tag,
      attach() {
        const store = new CacheStore();
        const warnings = [...buildWarnings];
        // R: accumulated ratio, E: accumulated error, n: steps since the last compute
        const st = perBranch(() => ({ R: 1, E: 0, n: 0, skipped: 0, lastComputed: -1, gammaOnline: NaN }));
        const trace: TraceRow[] = [];
        let gamma: Record<Branch, number[]> | null = null;
        let start = 0;
        return {
          hooks: {
            beginRun(run) {
              start = Math.floor(retention * run.steps + 1e-9);
              if (!curves) return;
              if (curves.cond!.length !== run.steps) warnings.push(`MagCache ratios calibrated at ${curves.cond!.length} steps, nearest-interpolated to ${run.steps}`);
              if (run.cfg && !curves.uncond) warnings.push("MagCache profile has no uncond curve; the uncond branch uses the cond curve");
              const cond = nearestInterp(curves.cond!, run.steps);
              gamma = { cond, uncond: curves.uncond ? nearestInterp(curves.uncond, run.steps) : cond };
            },
            async body(ctx, h0, runBlocks) {
              const s = st[ctx.branch];
              const { index } = ctx.step;
              const key = `residual.${ctx.branch}`;
              let skip = false;
              let g = NaN;
              // values that decided this step (before a reset), for the trace
              let seen = { R: 1, E: 0, n: 0 };
              if (index >= start && store.has(key)) {
                g = gamma ? gamma[ctx.branch][index] : s.gammaOnline;
                if (Number.isFinite(g)) {
                  s.R *= g;
                  s.n += 1;
                  s.E += Math.abs(1 - s.R);
                  skip = s.E < threshold && s.n <= K;
                  seen = { R: s.R, E: s.E, n: s.n };
                }
                if (!skip) {
                  s.R = 1;
                  s.E = 0;
                  s.n = 0;
                }
              }
              if (ctx.branch === "cond") trace.push({ step: index, timestep: ctx.step.timestep, action: skip ? "step" : "full", gamma: g, ratio: seen.R, err: seen.E, n: seen.n });
              if (skip) {
                s.skipped++;
                return await addLarge(h0, store.get(key)!);
              }
              const hL = await runBlocks(0, ctx.numBlocks, h0);
              const r = await subLarge(hL, h0);
              const prev = store.get(key);
              if (!gamma && prev && s.lastComputed >= 0) {
                // online fallback: per-step magnitude ratio between the last two computed residuals
                const ratio = tokenNormRatio(r, prev, ctx.time.temb.length);
                s.gammaOnline = Math.pow(ratio, 1 / (index - s.lastComputed));
              }
              s.lastComputed = index;
              store.set(key, r);
              return hL;
            },
          },
          report: () => ({ name: "magcache", tag, config, peakBytes: store.peak, trace, counters: { skippedCond: st.cond.skipped, skippedUncond: st.uncond.skipped }, warnings }),
        };
      },
    };
  },
});
