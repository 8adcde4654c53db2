/**
 * Pyramid Attention Broadcast (Zhao et al., "Real-Time Video Generation with Pyramid Attention
 * Broadcast", arXiv 2408.12588; NUS-HPC-AI-Lab/VideoSys core/pab_mgr.py; diffusers
 * hooks/pyramid_attention_broadcast.py).
 *
 * Granularity: module (attention outputs of every block). Decision: fixed. Inside a timestep
 * window lo < t < hi, a module of kind k is recomputed every r_k steps (at steps i with
 * i % r_k == 0) and otherwise broadcast; outside the window it is always computed. Reuse: the last
 * computed output, unchanged (order 0). r is smallest for self attention and largest for cross
 * attention (the "pyramid").
 *
 * Mapping to Wan: Wan2.1 has no separate temporal attention; its self attention is full
 * spatio-temporal attention over all tokens, so PAB's spatial (and temporal) range maps to `sa`,
 * cross attention to `ca`. VideoSys' optional MLP broadcast maps to `ffn` (off by default, as in
 * diffusers, which leaves the MLP out).
 *
 * Deviations:
 * - Per-branch state (cond / uncond each keep their own counter and cache). The diffusers hook keeps
 *   one plain state per module, so with a pipeline that issues separate CFG calls (Wan) its
 *   counter advances twice a step and the branches share a cached tensor (read from the diffusers
 *   hook code; Wan is not among the pipelines diffusers tests PAB with).
 * - The counter is the step index, as diffusers' per-call iteration is when each module runs once a
 *   step; one window is shared by all kinds (diffusers' three windows all default to (100, 800)).
 * - Our module seam returns the gated residual (the adaLN gate is inside the module stage), so a
 *   broadcast reuses the gate of the step it was computed at; diffusers caches the attention output
 *   before the block applies the current gate.
 */
import { CacheStore, perBranch, defineStrategy } from "../strategy.ts";
import type { Branch, TraceRow } from "../../pipeline/hooks.ts";
import { fmt } from "../knobs.ts";
import type { ModuleDecl, ModuleRole } from "../../models/family.ts";

/** When is module `kind` broadcast (reused) at step `index`, timestep t? The decision alone. */
function pabBroadcasts(range: number, lo: number, hi: number, index: number, timestep: number): boolean {
  if (range <= 1) return false;
  if (!(lo < timestep && timestep < hi)) return false;
  // diffusers: should_compute = iteration > 0 and iteration % range == 0
  return !(index > 0 && index % range === 0);
}

export const pab = defineStrategy({
  name: "pab",
  granularity: "module",
  summary: "Pyramid Attention Broadcast: inside a timestep window, recompute self attention every r_sa steps and cross attention every r_ca steps (r_ca > r_sa); in between, reuse the last attention output.",
  source: "Zhao et al., arXiv 2408.12588 (NUS-HPC-AI-Lab/VideoSys; diffusers PyramidAttentionBroadcastConfig)",
  knobs: [
    { name: "sa_range", type: "int", default: 2, min: 1, max: 1000, doc: "Self-attention broadcast range r: recompute every r steps inside the window (PAB's spatial/temporal attention; Wan's self attention is spatio-temporal). 1 = never reuse.", source: "diffusers default spatial_attention_block_skip_range=2; VideoSys spatial_range 2" },
    { name: "ca_range", type: "int", default: 6, min: 1, max: 1000, doc: "Cross-attention broadcast range (largest: cross attention changes least). 1 = never reuse.", source: "VideoSys cross_range 6 (Open-Sora, Latte); diffusers leaves it unset" },
    { name: "ffn_range", type: "int", default: 1, min: 1, max: 1000, doc: "FFN (MLP) broadcast range. 1 = off (diffusers does not broadcast the MLP; VideoSys does so only at a few timesteps for blocks 0-4).", source: "diffusers (MLP not hooked)" },
    { name: "t_lo", type: "number", default: 100, min: -1, max: 1000, doc: "Broadcast only while t_lo < timestep < t_hi (timesteps in [0, 1000)).", source: "diffusers *_timestep_skip_range (100, 800)" },
    { name: "t_hi", type: "number", default: 800, min: -1, max: 1000, doc: "Upper end of the broadcast window (exclusive).", source: "diffusers *_timestep_skip_range (100, 800)" },
  ],
  exact: { sa_range: 1, ca_range: 1, ffn_range: 1 },
  build(config) {
    // by role, so every family maps: attention over the video tokens (Wan sa, HunyuanVideo joint)
    // is PAB's spatial-temporal attention, cross-attention its cross attention, the MLP its MLP
    const byRole: Record<ModuleRole, number> = { "self-attn": config.sa_range, "joint-attn": config.sa_range, "cross-attn": config.ca_range, mlp: config.ffn_range };
    const range = { sa: config.sa_range, ca: config.ca_range, ffn: config.ffn_range };
    const lo = config.t_lo, hi = config.t_hi;
    let tag = `pab-s${range.sa}c${range.ca}${range.ffn > 1 ? `f${range.ffn}` : ""}`;
    if (lo !== 100 || hi !== 800) tag += `-t${fmt(lo)}-${fmt(hi)}`;
    return {
      name: "pab", granularity: "module", config, tag,
      attach() {
        const store = new CacheStore();
        const st = perBranch(() => ({ computed: 0, reused: 0, reusedTotal: 0 }));
        const trace: TraceRow[] = [];
        /** The cached residual when module `mod` is broadcast at this step (counted), else null. */
        const broadcast = (branch: Branch, block: number, mod: ModuleDecl, index: number, timestep: number): Float32Array | null => {
          const cached = store.get(`${branch}.${block}.${mod.name}`);
          if (!cached || !pabBroadcasts(byRole[mod.role], lo, hi, index, timestep)) return null;
          st[branch].reused++;
          st[branch].reusedTotal++;
          return cached;
        };
        return {
          hooks: {
            beginStep() {
              for (const s of Object.values(st)) s.computed = s.reused = 0;
            },
            // one decision per module and step: here for sequential blocks (the loop runs the
            // block in one call with the broadcast residuals fed in), in `module` for parallel ones
            planModules: (ctx, block) =>
              ctx.blocks[block].modules.map((m) => {
                const cached = broadcast(ctx.branch, block, m, ctx.step.index, ctx.step.timestep);
                if (cached) return cached;
                st[ctx.branch].computed++;
                return byRole[m.role] > 1 ? "keep" : "compute"; // a module that is never broadcast needs no cache
              }),
            keepModule: (ctx, block, mod, r) => store.set(`${ctx.branch}.${block}.${mod.name}`, r),
            async module(ctx, block, mod, h, compute) {
              const cached = broadcast(ctx.branch, block, mod, ctx.step.index, ctx.step.timestep);
              if (cached) return cached;
              const out = await compute(h);
              st[ctx.branch].computed++;
              if (byRole[mod.role] > 1) store.set(`${ctx.branch}.${block}.${mod.name}`, out);
              return out;
            },
            endStep(step) {
              const c = st.cond, u = st.uncond;
              trace.push({
                step: step.index, timestep: step.timestep, action: c.reused === 0 ? "full" : c.computed === 0 ? "broadcast-all" : "broadcast",
                reusedCond: c.reused, reusedUncond: u.reused, computedCond: c.computed, computedUncond: u.computed,
              });
            },
          },
          report: () => ({
            name: "pab", tag, config, peakBytes: store.peak, trace,
            counters: { reusedModulesCond: st.cond.reusedTotal, reusedModulesUncond: st.uncond.reusedTotal }, warnings: [],
          }),
        };
      },
    };
  },
});
