/**
 * `fewer-steps`: the naive baseline. Sample N' = round(N / speedup) steps with the same sampler
 * and settings; the compute speedup is N / N' by construction. Every cache must beat this.
 */
import { defineStrategy } from "../strategy.ts";
import { fmt } from "../knobs.ts";

export const fewerSteps = defineStrategy({
  name: "fewer-steps",
  solver: false,
  granularity: "step",
  summary: "Naive baseline: run round(N / speedup) sampler steps instead of N.",
  source: "baseline (evaluation protocol)",
  knobs: [{ name: "speedup", type: "number", default: 2, min: 1, max: 50, doc: "Step-count reduction factor: N' = max(1, round(N / speedup)). 1 = no reduction." }],
  exact: { speedup: 1 },
  build(config) {
    const s = config.speedup;
    return {
      name: "fewer-steps", granularity: "step", config, tag: `fewer-steps-x${fmt(s)}`,
      stepsOverride: (n: number) => Math.max(1, Math.round(n / s)),
      attach: () => ({ hooks: {}, report: () => ({ name: "fewer-steps", tag: `fewer-steps-x${fmt(s)}`, config, peakBytes: 0, trace: [], counters: {}, warnings: [] }) }),
    };
  },
});
