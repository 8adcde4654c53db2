/** `none`: the uncached reference. Attaches no hooks; every call is computed. */
import { defineStrategy } from "../strategy.ts";

export const none = defineStrategy({
  name: "none",
  solver: false,
  granularity: "none",
  summary: "No caching: every step, branch, block and module is computed (the reference output).",
  source: "-",
  knobs: [],
  exact: {},
  build(config) {
    return {
      name: "none", granularity: "none", config, tag: "none",
      attach: () => ({ hooks: {}, report: () => ({ name: "none", tag: "none", config, peakBytes: 0, trace: [], counters: {}, warnings: [] }) }),
    };
  },
});
