/**
 * First Block Cache (chengzeyi/ParaAttention src/para_attn/first_block_cache; diffusers
 * `FirstBlockCacheConfig`, src/diffusers/hooks/first_block_cache.py).
 *
 * Granularity: step minus block 0 (block 0 always runs; blocks 1..L-1 are skipped together).
 * Decision: relative L1 distance mean|r0_t - r0_ref| / mean|r0_ref| between this step's block-0
 * residual r0 = h_1 - h_0 and the block-0 residual of the last fully computed step; skip when it is
 * below the threshold (no accumulation). The reference is only refreshed on a full step, as in
 * diffusers (`head_block_residual` is stored when the remaining blocks are computed).
 * Reuse: h_L ~= h_1 + (h_L - h_1) of the last full step (residual of blocks 1..L-1).
 * Per CFG branch (diffusers keys its state by cache_context("cond"/"uncond")).
 * Neither implementation forces the last step or caps consecutive skips; neither does this one.
 * Skip needs distance < threshold strictly (diffusers computes when diff > threshold), so a zero
 * threshold never skips.
 */
import { CacheStore, perBranch, defineStrategy } from "../strategy.ts";
import type { TraceRow } from "../../pipeline/hooks.ts";
import { fmt } from "../knobs.ts";
import { relL1 } from "../../tensor/ops.ts";
import { addLarge, subLarge } from "../../graph/elementwise.ts";

export const fbcache = defineStrategy({
  name: "fbcache",
  granularity: "step",
  summary: "Always run block 0; skip blocks 1..L-1 when block 0's residual is close (relative L1) to the one at the last full step, reusing their cached residual.",
  source: "ParaAttention first_block_cache; diffusers FirstBlockCacheConfig",
  knobs: [
    { name: "threshold", type: "number", default: 0.05, min: 0, max: 10, doc: "Relative L1 change of the block-0 residual below which blocks 1..L-1 are skipped. 0 = never skip.", source: "diffusers FirstBlockCacheConfig threshold=0.05 (ParaAttention HunyuanVideo 0.06; LightX2V Wan 1.3B 0.02)" },
  ],
  exact: { threshold: 0 },
  build(config) {
    const threshold = config.threshold;
    const tag = `fbcache-t${fmt(threshold)}`;
    return {
      name: "fbcache", granularity: "step", config, tag,
      attach() {
        const store = new CacheStore();
        const st = perBranch(() => ({ skipped: 0 }));
        const trace: TraceRow[] = [];
        return {
          hooks: {
            async body(ctx, h0, runBlocks) {
              const b = ctx.branch;
              const h1 = await runBlocks(0, 1, h0);
              const r0 = await subLarge(h1, h0);
              const ref = store.get(`first.${b}`);
              const rest = store.get(`rest.${b}`);
              let diff = NaN;
              let skip = false;
              if (ref && rest && ctx.numBlocks > 1) {
                diff = relL1(r0, ref);
                skip = diff < threshold;
              }
              if (b === "cond") trace.push({ step: ctx.step.index, timestep: ctx.step.timestep, action: skip ? "step" : "full", diff });
              if (skip) {
                st[b].skipped++;
                return await addLarge(h1, rest!);
              }
              const hL = await runBlocks(1, ctx.numBlocks, h1);
              store.set(`first.${b}`, r0);
              store.set(`rest.${b}`, await subLarge(hL, h1));
              return hL;
            },
          },
          report: () => ({ name: "fbcache", tag, config, peakBytes: store.peak, trace, counters: { skippedCond: st.cond.skipped, skippedUncond: st.uncond.skipped }, warnings: [] }),
        };
      },
    };
  },
});
