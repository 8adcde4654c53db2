/**
 * Δ-DiT (Chen et al., arXiv 2406.01125, "Δ-DiT: A Training-Free Acceleration Method Tailored for
 * Diffusion Transformers"; no public code known, described from the paper and summaries).
 *
 * Granularity: a contiguous block range of `range * L` blocks.
 * Decision: a fixed schedule. A full step every `interval` steps; in between, the cached range is
 * replaced by its Δ-Cache. Stage-adaptive: in early steps (index < floor(boundary * N), i.e. t above
 * the boundary b) the REAR blocks are cached, since they add details that early steps do not need;
 * in late steps the FRONT blocks are cached, since the outline they produce is settled.
 * Reuse (Δ-Cache): the deviation Δ = (range output - range input) of the last full step added to
 * the range's current input, so the current step's input still flows through:
 *   early: h_L ~= h_{L-c} + Δ_rear   (front blocks run),  late: h_c ~= h_0 + Δ_front (rear blocks run).
 * One Δ tensor per branch. A full step is forced at step 0 and at the first step of the late stage
 * (no Δ of the front range exists yet); the refresh counter restarts at every full step. The last
 * step is not forced (the paper's schedule is static).
 * Defaults: interval 2 with a 3/4 cached range gives 1/(1/2 + 1/2 * 1/4) = 1.6x, the speedup the
 * paper reports at 20 PixArt-α steps (e.g. N=2 with 21 of 28 blocks cached); the boundary 0.5 is
 * ours. All three are **unconfirmed** against the paper's tables.
 */
import { CacheStore, perBranch, defineStrategy } from "../strategy.ts";
import type { TraceRow } from "../../pipeline/hooks.ts";
import { fmt } from "../knobs.ts";
import { addLarge, subLarge } from "../../graph/elementwise.ts";

type Phase = "rear" | "front";

export const deltaDit = defineStrategy({
  name: "delta-dit",
  granularity: "block",
  summary: "Fixed schedule: a full step every N steps; in between, replace the rear block range (early steps) or the front block range (late steps) by its cached deviation (output - input).",
  source: "Chen et al., arXiv 2406.01125 (Δ-DiT)",
  knobs: [
    { name: "interval", type: "int", default: 2, min: 1, max: 1000, doc: "N: a full step every N steps. 1 = never cache.", source: "Δ-DiT cache interval N (paper: N=2 at 20 steps, unconfirmed)" },
    { name: "boundary", type: "number", default: 0.5, min: 0, max: 1, doc: "Fraction of steps in the early stage (rear blocks cached); later steps cache the front blocks.", source: "Δ-DiT boundary step b (value unconfirmed; 0.5 is ours)" },
    { name: "range", type: "number", default: 0.75, min: 0.01, max: 1, doc: "Fraction of the blocks in the cached range: max(1, round(range * L)) blocks.", source: "Δ-DiT cached block count (21 of 28 on PixArt-α, unconfirmed)" },
  ],
  exact: { interval: 1 },
  build(config) {
    const interval = config.interval;
    const boundary = config.boundary;
    const range = config.range;
    const tag = `delta-dit-N${interval}-b${fmt(boundary)}-r${fmt(range)}`;
    return {
      name: "delta-dit", granularity: "block", config, tag,
      attach() {
        const store = new CacheStore();
        const st = perBranch(() => ({ lastFull: -Infinity, phase: null as Phase | null, skipped: 0 }));
        const trace: TraceRow[] = [];
        return {
          hooks: {
            async body(ctx, h0, runBlocks) {
              const b = ctx.branch;
              const s = st[b];
              const L = ctx.numBlocks;
              const { index, count } = ctx.step;
              const c = Math.min(L, Math.max(1, Math.round(range * L)));
              const phase: Phase = index < Math.floor(boundary * count + 1e-9) ? "rear" : "front";
              // the cached range [from, to)
              const [from, to] = phase === "rear" ? [L - c, L] : [0, c];
              const key = `delta.${b}`;
              const full = !store.has(key) || s.phase !== phase || index - s.lastFull >= interval;
              if (b === "cond") trace.push({ step: index, timestep: ctx.step.timestep, action: full ? "full" : "block", range: phase, from, to });
              if (full) {
                const hIn = await runBlocks(0, from, h0);
                const hOut = await runBlocks(from, to, hIn);
                store.set(key, await subLarge(hOut, hIn));
                s.lastFull = index;
                s.phase = phase;
                return runBlocks(to, L, hOut);
              }
              s.skipped++;
              const hIn = await runBlocks(0, from, h0);
              return runBlocks(to, L, await addLarge(hIn, store.get(key)!));
            },
          },
          report: () => ({ name: "delta-dit", tag, config, peakBytes: store.peak, trace, counters: { skippedCond: st.cond.skipped, skippedUncond: st.uncond.skipped }, warnings: [] }),
        };
      },
    };
  },
});
