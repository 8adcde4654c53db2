/**
 * FORA: Fast-Forward Caching in Diffusion Transformer Acceleration (Selvaraju et al., arXiv
 * 2407.01425; prathebaselva/FORA).
 *
 * Granularity: module (the attention and MLP outputs of every layer; on Wan: `sa`, `ca` and `ffn`
 * of every block). Decision: a static interval N: every N-th step (i % N == 0) runs every module
 * and caches its output; the N - 1 steps after it reuse those outputs. No warm-up, no adaptivity.
 * Reuse: the cached output, unchanged (order 0). Per-branch state (cond / uncond).
 *
 * Memory: 3 x L tensors of hidden-state size per CFG branch (the paper's "per layer" cache).
 * Deviation: our module seam returns the gated residual, so reuse also keeps the adaLN gate of the
 * cached step (FORA's DiT code caches the attention / MLP output and re-applies the current gate).
 * With every module reused the hidden state becomes h_0 + the sum of the cached residuals, i.e. a
 * step-level residual reuse held as 3L tensors instead of one: that memory cost is what FORA shows.
 */
import { CacheStore, perBranch, defineStrategy } from "../strategy.ts";
import type { TraceRow } from "../../pipeline/hooks.ts";

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
            // every module of a block is reused together or computed together
            computesAllModules(ctx, block) {
              return ctx.blocks[block].modules.every((m) => !store.get(`${ctx.branch}.${block}.${m.name}`) || foraIsFull(N, ctx.step.index));
            },
            async module(ctx, block, mod, h, compute) {
              const s = st[ctx.branch];
              const key = `${ctx.branch}.${block}.${mod.name}`;
              const cached = store.get(key);
              if (cached && !foraIsFull(N, ctx.step.index)) {
                s.reused++;
                s.reusedTotal++;
                return cached;
              }
              const out = await compute(h);
              s.computed++;
              if (N > 1) store.set(key, out);
              return out;
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
