/**
 * TaylorSeer (Liu et al., "From Reusing to Forecasting: Accelerating Diffusion Models with
 * TaylorSeers", ICCV 2025, arXiv 2503.06923; Shenyi-Z/TaylorSeer cache_functions/cal_type.py and
 * taylor_utils; diffusers hooks/taylorseer_cache.py).
 *
 * Granularity: module (sa, ca and ffn of every block, per CFG branch). Decision: a fixed schedule:
 * the first `warmup` steps run in full, then a full step every N steps (full, N - 1 forecast steps,
 * full, ...; Shenyi-Z cal_type: full when cache_counter == N - 1). Reuse: forecast. At a full step
 * every module stores its output F_0 and the recursive divided differences over steps
 * F_{k+1} = (F_k(new) - F_k(previous full)) / (steps between the two full steps), k < O; at a
 * forecast step d steps after the last full step the module returns sum_k F_k d^k / k!.
 *
 * Implementation: with every module forecast (modules=all, the default) the factors are linear in
 * the module outputs and every block adds its modules' residuals (the seam contract), so the sum of
 * the module forecasts is the forecast of the body residual h_L - h_0. We keep the factors of that
 * one tensor per branch on the body seam: full steps run the body as fused calls and a forecast
 * step is two adds. It equals the module-by-module form up to float32 rounding
 * (test/fused_block.test.ts, max difference printed). modules=attn forecasts per module on the
 * module seam (the MLPs in between read the forecast hidden state).
 *
 * Memory: (O + 1) tensors per CFG branch with modules=all; (O + 1) x 2 x L with modules=attn. The
 * published code holds (O + 1) x 3 x L (every factor of every module), the method's known weak
 * point (memory reports in Shenyi-Z/TaylorSeer issues #5 and #36).
 *
 * Deviations:
 * - Schedule: diffusers computes at steps with (i - disable_cache_before_step - 1) % interval == 0
 *   after the warm-up, so with (5, 3) it forecasts step 3 and refreshes at 4, 9, 14; we follow the
 *   original counter (refresh N steps after the last full step: 7, 12, 17 with warm-up 3).
 * - Factors are held in float32 (diffusers defaults to bf16 factors; the original keeps the model
 *   dtype). The forecast sum is accumulated in float64.
 * - Our module seam returns the gated residual, so the forecast is of gate x output; the original
 *   forecasts the module output and re-applies the current step's gate in the block.
 * - `modules=attn` reproduces diffusers' default hooking (attention modules only: sa, ca).
 */
import { CacheStore, perBranch, defineStrategy } from "../strategy.ts";
import type { Branch, Hooks, StepInfo, TraceRow } from "../../pipeline/hooks.ts";
import type { ModuleDecl, ModulePlan } from "../../models/family.ts";
import { addAxpyLarge, addLarge, axpyLarge, subLarge } from "../../graph/elementwise.ts";

/** The decision alone: is step `index` a full step, given the last full step (or -1)? */
function taylorIsFull(interval: number, warmup: number, index: number, lastFull: number): boolean {
  return index < warmup || lastFull < 0 || index - lastFull >= interval;
}

/**
 * New Taylor factors from a fresh output: F_0 = out, F_{k+1} = (F_k - old F_k) / dt while the old
 * factor exists and k < order (recursive divided differences, Shenyi-Z taylor_utils derivative_approximation).
 */
export function taylorUpdate(out: Float32Array, old: Float32Array[], dt: number, order: number): Float32Array[] {
  const f: Float32Array[] = [out];
  for (let k = 0; k < order && k < old.length && dt > 0; k++) {
    const cur = f[k], prev = old[k];
    const next = new Float32Array(cur.length);
    for (let j = 0; j < cur.length; j++) next[j] = (cur[j] - prev[j]) / dt;
    f.push(next);
  }
  return f;
}

/**
 * taylorUpdate() that writes the new higher factors into the old factors' arrays (F_1..F_O are
 * created here and held only by the strategy, so nothing else sees them change): no allocation
 * after the first full steps. Element by element, the same operations in the same order as
 * taylorUpdate(), so the factors are bit-identical (test/cache_module_level.test.ts).
 */
export function taylorUpdateInPlace(out: Float32Array, old: Float32Array[], dt: number, order: number): Float32Array[] {
  const K = dt > 0 ? Math.min(order, old.length) : 0;
  if (K === 0) return [out];
  const f: Float32Array[] = [out];
  for (let k = 1; k <= K; k++) f.push(k < old.length ? old[k] : new Float32Array(out.length));
  const n = out.length;
  if (K === 1) {
    const prev = old[0], next = f[1];
    for (let j = 0; j < n; j++) next[j] = (out[j] - prev[j]) / dt;
    return f;
  }
  for (let j = 0; j < n; j++) {
    let cur = out[j];
    for (let k = 0; k < K; k++) {
      const next = Math.fround((cur - old[k][j]) / dt); // old[k][j] is read before f[k] (= old[k]) is written below
      if (k > 0) f[k][j] = cur;
      cur = next;
    }
    f[K][j] = cur;
  }
  return f;
}

/** float64 accumulator for taylorPredict with more than two factors (never escapes). */
let predictScratch = new Float64Array(0);

/** Forecast sum_k F_k d^k / k! (accumulated in float64: s = 0, then s += c_k F_k[j] in order). */
export function taylorPredict(factors: Float32Array[], d: number): Float32Array {
  const n = factors[0].length;
  const coef: number[] = [];
  let c = 1;
  for (let k = 0; k < factors.length; k++) {
    if (k > 0) c *= d / k;
    coef.push(c);
  }
  const out = new Float32Array(n);
  const f0 = factors[0], c0 = coef[0];
  if (factors.length === 1) {
    for (let j = 0; j < n; j++) out[j] = 0 + c0 * f0[j];
  } else if (factors.length === 2) {
    // the default (order 1): one pass, no array-of-arrays indexing in the inner loop
    const f1 = factors[1], c1 = coef[1];
    for (let j = 0; j < n; j++) out[j] = 0 + c0 * f0[j] + c1 * f1[j];
  } else {
    if (predictScratch.length < n) predictScratch = new Float64Array(n);
    const s = predictScratch;
    for (let j = 0; j < n; j++) s[j] = 0 + c0 * f0[j];
    for (let k = 1; k < factors.length; k++) {
      const fk = factors[k], ck = coef[k];
      for (let j = 0; j < n; j++) s[j] += ck * fk[j];
    }
    for (let j = 0; j < n; j++) out[j] = s[j];
  }
  return out;
}

/**
 * The forecast the hook returns. Order 0 returns F_0 itself (the loop only reads it); order 1,
 * F_0 + d F_1, runs as one onnxruntime call in float32 (graph/elementwise.ts axpyLarge: ~30 us vs
 * ~65 us for the JS loop on a 256 x 128 hidden state), within an ulp of taylorPredict's float64
 * sum (test/bookkeeping.test.ts); higher orders use taylorPredict.
 */
export async function taylorForecast(factors: Float32Array[], d: number): Promise<Float32Array> {
  if (factors.length === 1) return factors[0];
  if (factors.length === 2) return axpyLarge(factors[0], d, factors[1]);
  return taylorPredict(factors, d);
}

export const taylorseer = defineStrategy({
  name: "taylorseer",
  solver: "order1",
  granularity: "module",
  summary: "TaylorSeer: full compute every N steps storing each module's output and its finite-difference derivatives; in between, forecast every module output with a Taylor expansion of order O.",
  source: "Liu et al., ICCV 2025, arXiv 2503.06923 (Shenyi-Z/TaylorSeer; diffusers TaylorSeerCacheConfig)",
  knobs: [
    { name: "interval", type: "int", default: 5, min: 1, max: 1000, doc: "N: a full step every N steps (N - 1 forecast steps in between). 1 = no caching.", source: "diffusers cache_interval 5; Shenyi-Z fresh_threshold 5 (Wan2.1, HunyuanVideo)" },
    { name: "order", type: "int", default: 1, min: 0, max: 4, doc: "O: Taylor order (0 = plain reuse, 1 = linear forecast). Memory grows as O + 1 tensors per module.", source: "diffusers max_order 1; Shenyi-Z max_order 1" },
    { name: "warmup", type: "int", default: 3, min: 0, max: 1000, doc: "Leading steps always computed (they also seed the derivative estimates).", source: "diffusers disable_cache_before_step 3 (Shenyi-Z first_enhance 1 on Wan)" },
    { name: "modules", type: "enum", default: "all", values: ["all", "attn"], doc: "Which modules are forecast: all = sa, ca, ffn (original TaylorSeer); attn = sa, ca only (diffusers' default identifiers); the rest always run.", source: "Shenyi-Z TaylorSeer-Wan2.1; diffusers _TRANSFORMER_BLOCK_IDENTIFIERS" },
  ],
  exact: { interval: 1 },
  build(config) {
    const N = config.interval;
    const O = config.order;
    const warmup = config.warmup;
    const onlyAttn = config.modules === "attn";
    const hooked = (m: ModuleDecl) => !onlyAttn || m.role !== "mlp";
    let tag = `taylorseer-N${N}-O${O}`;
    if (warmup !== 3) tag += `-W${warmup}`;
    if (onlyAttn) tag += "-attn";
    return {
      name: "taylorseer", granularity: "module", config, tag,
      attach() {
        const store = new CacheStore();
        // per branch: the step's decision (made once per step), the last full step, counters
        const st = perBranch(() => ({ step: -1, full: true, lastFull: -1, computed: 0, reused: 0, reusedTotal: 0, fullSteps: 0 }));
        /** module -> last full step it stored factors at, and how many factors */
        const meta = new Map<string, { at: number; orders: number }>();
        const trace: TraceRow[] = [];
        const decide = (branch: "cond" | "uncond", index: number) => {
          const s = st[branch];
          if (s.step !== index) {
            s.step = index;
            s.full = N <= 1 || taylorIsFull(N, warmup, index, s.lastFull);
            if (s.full) {
              s.lastFull = index;
              s.fullSteps++;
            }
          }
          return s;
        };
        const beginStep = () => {
          for (const s of Object.values(st)) s.computed = s.reused = 0;
        };
        const endStep = (step: StepInfo) => {
          const c = st.cond, u = st.uncond;
          trace.push({
            step: step.index, timestep: step.timestep, action: c.reused === 0 ? "full" : "taylor",
            reusedCond: c.reused, reusedUncond: u.reused, computedCond: c.computed, computedUncond: u.computed,
            sinceFull: step.index - c.lastFull,
          });
        };
        /** Read the factors stored under `key`, forecast d steps on (sum_k F_k d^k / k!). */
        const factorsOf = (key: string, orders: number) => {
          const f: Float32Array[] = [];
          for (let k = 0; k < orders; k++) f.push(store.get(`${key}.F${k}`)!);
          return f;
        };
        /** New factors of `key` from a fresh output at step `at`. */
        const update = (key: string, out: Float32Array, at: number) => {
          const m = meta.get(key);
          const f = taylorUpdateInPlace(out, m ? factorsOf(key, m.orders) : [], m ? at - m.at : 0, O);
          for (let k = 0; k < f.length; k++) store.set(`${key}.F${k}`, f[k]);
          meta.set(key, { at, orders: f.length });
        };
        // every module forecast (modules=all): the factors are linear in the module outputs, so the
        // sum of the module forecasts is the forecast of the summed residual h_L - h_0; held once per
        // branch on the body seam, the full steps run fused and a forecast step is two adds
        const bodyHooks: Hooks = {
          beginStep,
          endStep,
          async body(ctx, h0, runBlocks) {
            const s = decide(ctx.branch, ctx.step.index);
            const modules = ctx.blocks.reduce((a, b) => a + b.modules.length, 0);
            const key = `${ctx.branch}.body`;
            const m = meta.get(key);
            if (!s.full && m) {
              s.reused += modules;
              s.reusedTotal += modules;
              const f = factorsOf(key, m.orders);
              const d = ctx.step.index - m.at;
              // order 1 (the default): h_0 + F_0 + d F_1 in one call
              return f.length === 2 ? addAxpyLarge(h0, f[0], d, f[1]) : addLarge(h0, await taylorForecast(f, d));
            }
            const hL = await runBlocks(0, ctx.numBlocks, h0);
            s.computed += modules;
            if (N > 1) update(key, await subLarge(hL, h0), ctx.step.index);
            return hL;
          },
        };
        /** The Taylor forecast of module `mod` when it is forecast at this step (counted), else null. */
        const forecast = async (branch: Branch, block: number, mod: ModuleDecl, index: number): Promise<Float32Array | null> => {
          const s = decide(branch, index);
          const key = `${branch}.${block}.${mod.name}`;
          const m = meta.get(key);
          if (s.full || !hooked(mod) || !m) return null;
          s.reused++;
          s.reusedTotal++;
          return taylorForecast(factorsOf(key, m.orders), index - m.at);
        };
        const moduleHooks: Hooks = {
          beginStep,
          endStep,
          // one decision per module and step: here for sequential blocks (the loop runs the block
          // in one call with the forecasts fed in), in `module` for parallel ones
          async planModules(ctx, block) {
            const out: ModulePlan[] = [];
            for (const m of ctx.blocks[block].modules) {
              const f = await forecast(ctx.branch, block, m, ctx.step.index);
              if (!f) decide(ctx.branch, ctx.step.index).computed++;
              out.push(f ?? (N > 1 && hooked(m) ? "keep" : "compute"));
            }
            return out;
          },
          keepModule: (ctx, block, mod, r) => update(`${ctx.branch}.${block}.${mod.name}`, r, ctx.step.index),
          async module(ctx, block, mod, h, compute) {
            const f = await forecast(ctx.branch, block, mod, ctx.step.index);
            if (f) return f;
            const s = decide(ctx.branch, ctx.step.index);
            const out = await compute(h);
            s.computed++;
            if (N > 1 && hooked(mod)) update(`${ctx.branch}.${block}.${mod.name}`, out, ctx.step.index);
            return out;
          },
        };
        return {
          hooks: onlyAttn ? moduleHooks : bodyHooks,
          report: () => ({
            name: "taylorseer", tag, config, peakBytes: store.peak, trace,
            counters: { reusedModulesCond: st.cond.reusedTotal, reusedModulesUncond: st.uncond.reusedTotal, fullStepsCond: st.cond.fullSteps, fullStepsUncond: st.uncond.fullSteps },
            warnings: [],
          }),
        };
      },
    };
  },
});
