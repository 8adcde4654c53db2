/**
 * TeaCache (Liu et al., CVPR 2025; ali-vilab/TeaCache, TeaCache4Wan2.1/teacache_generate.py).
 *
 * Granularity: step (the whole transformer body of one CFG branch; time path, patch embedding and
 * head still run). Decision: accumulate a polynomially rescaled relative L1 distance of a
 * timestep-modulated proxy between consecutive steps; skip while the accumulator stays below the
 * threshold. Reuse: the body residual h_L - h_0 of the last computed step (order 0).
 * Per-branch state (cond/uncond), as the Wan code keeps with its even/odd call counter.
 *
 * The rescaling polynomial is model-specific: `mixcache calibrate teacache` fits it for a model by
 * the published procedure (ali-vilab/TeaCache#2: degree-4 np.polyfit of output rel-L1 against proxy
 * rel-L1 over all steps of calibration prompts) and stores it in cache_profiles/teacache.json.
 * Deviation: the rescaled distance is clamped at 0 (a fitted polynomial can dip below 0 for tiny
 * inputs, which would let a zero threshold skip; a distance cannot be negative).
 */
import { CacheStore, perBranch, defineStrategy } from "../strategy.ts";
import type { TraceRow } from "../../pipeline/hooks.ts";
import { fmt } from "../knobs.ts";
import { readProfile, type ProfileMeta } from "../profiles.ts";
import { relL1 } from "../../tensor/ops.ts";
import { addLarge, subLarge } from "../../graph/elementwise.ts";
import { polyval } from "../../tensor/polyfit.ts";

export interface TeaCacheProfile {
  meta: ProfileMeta;
  proxy: "temb" | "tproj";
  coefficients: number[];
  /** fit quality on the calibration data */
  r2: number;
}

/** Wan2.1 T2V 1.3B, non-ret mode (proxy temb), from TeaCache4Wan2.1/teacache_generate.py. */
const WAN13B_COEFFICIENTS = [2.39676752e3, -1.31110545e3, 2.01331979e2, -8.29855975, 1.37887774e-1];

export const teacache = defineStrategy({
  name: "teacache",
  granularity: "step",
  summary: "Skip the transformer body while the accumulated, polynomially rescaled change of the timestep-modulated input stays below a threshold; reuse the last body residual.",
  source: "Liu et al., CVPR 2025 (ali-vilab/TeaCache, TeaCache4Wan2.1)",
  knobs: [
    { name: "threshold", type: "number", default: 0.08, min: 0, max: 10, doc: "Accumulated rescaled rel-L1 below which a step is skipped. 0 = never skip.", source: "TeaCache4Wan2.1 README: 0.05/0.07/0.08 for T2V 1.3B" },
    { name: "proxy", type: "enum", default: "temb", values: ["temb", "tproj"], doc: "Proxy: temb = time embedding (non-ret mode), tproj = the 6-way modulation (use_ret_steps mode).", source: "teacache_generate.py" },
    { name: "warmup", type: "int", default: 1, min: 0, max: 1000, doc: "Leading steps always computed.", source: "teacache_generate.py ret_steps=2 calls = 1 step (non-ret)" },
    { name: "tail", type: "int", default: 1, min: 0, max: 1000, doc: "Trailing steps always computed.", source: "teacache_generate.py cutoff_steps" },
  ],
  exact: { threshold: 0 },
  build(config, env) {
    const threshold = config.threshold;
    const proxyName = config.proxy;
    const profile = readProfile<TeaCacheProfile>(env?.profilesDir, "teacache");
    const warnings: string[] = [];
    let coef = WAN13B_COEFFICIENTS;
    if (profile && profile.proxy === proxyName) coef = profile.coefficients;
    else warnings.push(`no TeaCache calibration for proxy ${proxyName} in this model's cache_profiles; using the Wan2.1-1.3B coefficients (run \`mixcache calibrate teacache\`)`);
    const tag = `teacache-t${fmt(threshold)}${proxyName === "tproj" ? "-ret" : ""}`;
    return {
      name: "teacache", granularity: "step", config, tag,
      attach() {
        const store = new CacheStore();
        const st = perBranch(() => ({ acc: 0, skipped: 0 }));
        const trace: TraceRow[] = [];
        return {
          hooks: {
            async body(ctx, h0, runBlocks) {
              const s = st[ctx.branch];
              const { index, count } = ctx.step;
              const proxy = proxyName === "temb" ? ctx.time.temb : ctx.time.tproj;
              const key = `residual.${ctx.branch}`;
              let skip = false;
              let dist = 0;
              const prev = store.get(`proxy.${ctx.branch}`);
              if (prev && index >= config.warmup && index < count - config.tail && store.has(key)) {
                dist = Math.max(0, polyval(coef, relL1(proxy, prev)));
                s.acc += dist;
                skip = s.acc < threshold;
              }
              store.set(`proxy.${ctx.branch}`, proxy);
              if (ctx.branch === "cond") trace.push({ step: index, timestep: ctx.step.timestep, action: skip ? "step" : "full", rescaled: dist, accumulated: s.acc });
              if (skip) {
                s.skipped++;
                return await addLarge(h0, store.get(key)!);
              }
              s.acc = 0;
              const hL = await runBlocks(0, ctx.numBlocks, h0);
              store.set(key, await subLarge(hL, h0));
              return hL;
            },
          },
          report: () => ({ name: "teacache", tag, config, peakBytes: store.peak, trace, counters: { skippedCond: st.cond.skipped, skippedUncond: st.uncond.skipped }, warnings }),
        };
      },
    };
  },
});
