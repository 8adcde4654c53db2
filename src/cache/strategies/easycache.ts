/**
 * EasyCache (Zhou et al., arXiv 2507.02860; H-EmbodVis/EasyCache, EasyCache4Wan2.1 and
 * EasyCache4Wan2.2 easycache_generate.py `easycache_forward`).
 *
 * Granularity: the whole model call of a CFG branch (patch embedding, body and head); on a skip the
 * velocity is the latent input plus the cached "transformation vector" (output - input) in latent
 * space, so nothing of the model runs.
 * Decision (runtime, no calibration), made on the cond branch and applied to both branches of the
 * step (the Wan code decides on even calls and mirrors the decision to the odd call):
 *   - transformation rate k = mean|v_b - v_a| / mean|x_b - x_a| over the last two computed steps
 *     a < b (v = cond output, x = latent input);
 *   - at a candidate step t, predicted relative change k * mean|x_t - x_{t-1}| / mean|v_b|,
 *     accumulated; skip while the accumulator is below `thresh`, else compute and reset it;
 *   - forced compute for the first ret_ratio * N steps (Wan2.1: ret_steps 10 of 50) and the last
 *     step; a step is also computed while k is unknown (fewer than two computed steps).
 * Reuse: v ~= x_t + (v - x) of the branch's last computed step (order 0 in latent space).
 * The method has no cap on consecutive skips.
 */
import { CacheStore, perBranch, defineStrategy } from "../strategy.ts";
import type { TraceRow } from "../../pipeline/hooks.ts";
import { fmt } from "../knobs.ts";
import { meanAbs } from "../../tensor/ops.ts";
import { addLarge, subLarge } from "../../graph/elementwise.ts";

/** mean|a - b| (float64 accumulation). */
function meanAbsDiff(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / Math.max(1, a.length);
}

export const easycache = defineStrategy({
  name: "easycache",
  granularity: "step",
  summary: "Skip the whole model call while the change predicted from the runtime transformation rate (output change / input change) accumulates below a threshold; reuse output - input in latent space. Decided on cond, applied to both branches.",
  source: "Zhou et al., arXiv 2507.02860 (H-EmbodVis/EasyCache, EasyCache4Wan2.1)",
  knobs: [
    { name: "thresh", type: "number", default: 0.05, min: 0, max: 10, doc: "Accumulated predicted relative output change below which a step is skipped. 0 = never skip.", source: "easycache_generate.py --thresh 0.05 (Wan2.1; 0.1 ~ 2x, 0.2 ~ 3x)" },
    { name: "ret_ratio", type: "number", default: 0.2, min: 0, max: 1, doc: "Leading fraction of steps always computed (steps < floor(ret_ratio * N)).", source: "EasyCache4Wan2.1 ret_steps = 10 of 50 steps (HunyuanVideo: 5 of 50)" },
  ],
  exact: { thresh: 0 },
  build(config) {
    const thresh = config.thresh;
    const retRatio = config.ret_ratio;
    const tag = `easycache-t${fmt(thresh)}-r${fmt(retRatio)}`;
    return {
      name: "easycache", granularity: "step", config, tag,
      attach() {
        const store = new CacheStore();
        const st = perBranch(() => ({ skipped: 0 }));
        const trace: TraceRow[] = [];
        // decision state lives on the cond branch; `skipStep` carries it to uncond
        let acc = 0;
        let k = NaN;
        let skipStep = false;
        return {
          hooks: {
            async branch(ctx, compute) {
              const { index, count } = ctx.step;
              const x = ctx.latent;
              if (ctx.branch === "cond") {
                const forced = index < Math.floor(retRatio * count + 1e-9) || index >= count - 1;
                let pred = NaN;
                let seen = NaN; // accumulator value that decided this step (before a reset)
                let skip = false;
                const prevX = store.get("x.prev"); // input of the previous step (every step)
                const lastV = store.get("v.cond"); // cond output of the last computed step
                if (forced) acc = 0;
                else if (prevX && lastV && Number.isFinite(k) && store.has("cache.cond")) {
                  pred = (k * meanAbsDiff(x, prevX)) / meanAbs(lastV);
                  acc += pred;
                  seen = acc;
                  skip = acc < thresh;
                  if (!skip) acc = 0;
                }
                store.set("x.prev", Float32Array.from(x));
                skipStep = skip;
                trace.push({ step: index, timestep: ctx.step.timestep, action: skip ? "step" : "full", k, pred, acc: seen, forced });
                if (skip) {
                  st.cond.skipped++;
                  return await addLarge(x, store.get("cache.cond")!);
                }
                const v = await compute();
                const xa = store.get("x.computed");
                if (xa && lastV) {
                  const dx = meanAbsDiff(x, xa);
                  if (dx > 0) k = meanAbsDiff(v, lastV) / dx;
                }
                store.set("x.computed", Float32Array.from(x));
                store.set("v.cond", Float32Array.from(v));
                store.set("cache.cond", await subLarge(v, x));
                return v;
              }
              const cached = store.get("cache.uncond");
              if (skipStep && cached) {
                st.uncond.skipped++;
                return await addLarge(x, cached);
              }
              const v = await compute();
              store.set("cache.uncond", await subLarge(v, x));
              return v;
            },
          },
          report: () => ({ name: "easycache", tag, config, peakBytes: store.peak, trace, counters: { skippedCond: st.cond.skipped, skippedUncond: st.uncond.skipped }, warnings: [] }),
        };
      },
    };
  },
});
