/**
 * FORA: Fast-Forward Caching in Diffusion Transformer Acceleration (Selvaraju et al., arXiv
 * 2407.01425; prathebaselva/FORA).
 *
 * Granularity: module (the attention and MLP outputs of every layer; on Wan: `sa`, `ca` and `ffn`
 * of every block). Decision: a static interval N: every N-th step (i % N == 0) runs every module
 * and caches its output; the N - 1 steps after it reuse those outputs. No warm-up, no adaptivity.
 * Reuse: the cached output, unchanged (order 0). Per-branch state (cond / uncond).
 *
 * Implementation: every block adds its modules' residuals to the hidden state (the seam contract,
 * pipeline/hooks.ts), and FORA reuses all modules of a step or none. A reuse step therefore gives
 * h_0 + sum of the cached residuals, and that sum is the body residual h_L - h_0 of the last full
 * step. We hold that one tensor per branch on the body seam instead of 3 x L module tensors: the
 * full step runs the body as fused calls (no module seam in the way) and a reuse step is one add.
 * It equals the module-by-module form up to float32 rounding of the sum (test/fused_block.test.ts
 * compares the two, max difference printed). Memory: one hidden-state tensor per CFG branch;
 * FORA's own code holds one per layer and module (3 x L here), which is what the method costs when
 * implemented as published.
 * Deviation: our module seam returns the gated residual, so reuse also keeps the adaLN gate of the
 * cached step (FORA's DiT code caches the attention / MLP output and re-applies the current gate).
 */
import { CacheStore, perBranch, defineStrategy } from "../strategy.ts";
import type { TraceRow } from "../../pipeline/hooks.ts";
import { addLarge, subLarge } from "../../graph/elementwise.ts";

/** The decision alone: is step `index` a full (refresh) step? */
function foraIsFull(interval: number, index: number): boolean {
  return index % interval === 0;
}

export const fora = defineStrategy({
  name: "fora",
  granularity: "module",
  summary: "FORA: every N steps compute all attention and MLP modules and cache their outputs; reuse them for the N - 1 steps in between (static interval).",
  source: "Selvaraju et al., arXiv 2407.01425 (FORA)",
  knobs: [
    { name: "interval", type: "int", default: 3, min: 1, max: 1000, doc: "Static cache interval N: a full step every N steps, N - 1 reuse steps in between. 1 = no caching.", source: "prathebaselva/FORA README sampling example (caching frequency 3)" },
  ],
  exact: { interval: 1 },
  build(config) {
    const N = config.interval;
    const tag = `fora-N${N}`;
    return {
      name: "fora", granularity: "module", config, tag,
      attach() {
        const store = new CacheStore();
        const st = perBranch(() => ({ computed: 0, reused: 0, reusedTotal: 0 }));
        const trace: TraceRow[] = [];
        return {
          hooks: {
            beginStep() {
              for (const s of Object.values(st)) s.computed = s.reused = 0;
            },
            async body(ctx, h0, runBlocks) {
              const s = st[ctx.branch];
              const modules = ctx.blocks.reduce((a, b) => a + b.modules.length, 0);
              const key = `residual.${ctx.branch}`;
              const cached = store.get(key);
              if (cached && !foraIsFull(N, ctx.step.index)) {
                s.reused += modules;
                s.reusedTotal += modules;
                return addLarge(h0, cached); // h_0 + the sum of every module's cached residual
              }
              const hL = await runBlocks(0, ctx.numBlocks, h0);
              s.computed += modules;
              if (N > 1) store.set(key, await subLarge(hL, h0));
              return hL;
            },
            endStep(step) {
              const c = st.cond, u = st.uncond;
              trace.push({
                step: step.index, timestep: step.timestep, action: c.reused === 0 ? "full" : c.computed === 0 ? "reuse" : "partial",
                reusedCond: c.reused, reusedUncond: u.reused, computedCond: c.computed, computedUncond: u.computed,
              });
            },
          },
          report: () => ({
            name: "fora", tag, config, peakBytes: store.peak, trace,
            counters: { reusedModulesCond: st.cond.reusedTotal, reusedModulesUncond: st.uncond.reusedTotal }, warnings: [],
          }),
        };
      },
    };
  },
});
