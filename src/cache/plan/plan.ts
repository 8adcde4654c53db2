/**
 * Planned MixCache: a static hybrid schedule per model, step count and target speed.
 *
 *  1. On calibration prompts (never the bench's), record the uncached run and measure, for every
 *     cached segment (full step i, then len <= maxRun cached steps of one granularity), the local
 *     error it adds and how errors at each step grow into the final output (measure.ts).
 *  2. The segment cost = propagation gain x local error, averaged over the prompts; the schedule
 *     with the least summed cost under the compute budget (steps / target) is a shortest path over
 *     segments (dp.ts), for the hybrid (step, CFG and block) and for each single granularity.
 *  3. Local search on whole runs (localSearch): from the best measured start (the DP schedule, for
 *     the hybrid also the single-granularity schedules, and any given `starts`), neighbours
 *     (another granularity for one segment, a segment boundary one step earlier or later) are run
 *     for real in the order the cost model ranks them, and the first that raises the mean PSNR to
 *     the uncached output on the planning prompts is taken, until no neighbour improves or the
 *     evaluation budget is spent.
 * The same procedure on the evaluation prompts themselves is the oracle bound (`oracle: true` in
 * the bench): the best schedule any static plan of this form could reach there.
 */
import { MixCacheError } from "../../errors.ts";
import type { LoadedModel } from "../../models/load.ts";
import { generate } from "../../pipeline/generate.ts";
import { makeCache } from "../registry.ts";
import { GRANULARITIES, type Gran } from "../strategies/mixcache-decision.ts";
import { DEFAULT_SOLVER } from "../strategy.ts";
import type { ApproxMode } from "../../schedulers/types.ts";
import { LETTER_ACTION, PLAN_LETTER, planCompute, planDp, planSegments } from "./dp.ts";
import { mse01, propagationGains, psnrOf, recordReference, segKey, segmentErrors, type Reference } from "./measure.ts";

/**
 * First steps always computed, as a fraction of the steps. Lower than online MixCache's 20%: the
 * planner measures what caching early steps costs instead of guarding against it. On the reference
 * model (2 planning prompts, 50 steps) 6% gave 39.6 dB at 2x and 32.3 dB at 3x, 20% gave 35.7 and
 * 25.6 dB (at 3x a 20% warm-up leaves only runs of 6 step-cached steps).
 */
const DEFAULT_PLAN_WARMUP = 0.06;

export interface PlanOptions {
  model: LoadedModel;
  prompts: string[];
  seeds: number[];
  steps: number;
  targets: number[];
  guidance?: number;
  shift?: number;
  /** front / back blocks always computed under block caching (MixCache's fn / bn) */
  fn?: number;
  bn?: number;
  /** longest run of cached steps in one segment (MixCache's interval_cap) */
  maxRun?: number;
  /** first steps always computed (fraction of steps; default DEFAULT_PLAN_WARMUP) */
  warmup?: number;
  /** last steps always computed */
  tail?: number;
  /** granularity sets to plan: "hybrid" and/or single granularities */
  sets?: Array<"hybrid" | Gran>;
  /** real runs per local search (per target and set); 0 = the DP schedule as is */
  searchEvals?: number;
  /** more schedules to start the search from, by target (e.g. the schedules stored in the model's
   * profile, planned on other prompts): each is measured and the best start wins */
  starts?: (target: number, set: "hybrid" | Gran) => string[];
  /** propagation gains measured every `gainGrid` steps */
  gainGrid?: number;
  /** also search the hybrid schedules under MixCache+'s first-order reuse (default true; needs
   * "hybrid" in `sets`) */
  plus?: boolean;
  /** UniPC at cached steps while measuring segments (default: MixCache's `solver` default) */
  approx?: ApproxMode;
  onProgress?: (phase: string, done: number, total: number) => void;
}

export interface PlannedResult {
  target: number;
  grans: string;
  plan: string;
  speedup: number;
  psnrPredicted: number;
  /** mean PSNR (one MSE over the clip) to the uncached output on the planning prompts */
  psnrMeasured: number;
  /** the DP schedule before local search, and its measured PSNR */
  dpPlan: string;
  dpPsnr: number;
  evaluations: number;
  /** mean front-block probe per step at the block steps on the planning prompts (null elsewhere) */
  probes?: (number | null)[];
  /** 1: searched with MixCache+'s first-order reuse (absent: order 0) */
  order?: 1;
}

export interface PlanTables {
  refs: Reference[];
  /** mean over prompts of gain_j x local error, by segment key */
  cost: Map<string, number>;
  costOf: Record<Gran, number>;
  seconds: number;
}

/** Step 1: references, segment errors and gains on the planning prompts. */
async function measurePlanTables(o: PlanOptions): Promise<PlanTables> {
  const t0 = performance.now();
  const fn = o.fn ?? 1, bn = o.bn ?? 1, maxRun = o.maxRun ?? 6, grid = o.gainGrid ?? 5;
  if (!o.prompts.length || !o.seeds.length) throw new MixCacheError("USAGE", "plan: no planning prompts or seeds", "pass at least one prompt and one seed");
  const refs: Reference[] = [];
  const cost = new Map<string, number>();
  const pairs = o.prompts.flatMap((prompt) => o.seeds.map((seed) => ({ prompt, seed })));
  for (const [n, p] of pairs.entries()) {
    const ref = await recordReference({ model: o.model, prompt: p.prompt, seed: p.seed, steps: o.steps, guidance: o.guidance, shift: o.shift, approx: o.approx ?? DEFAULT_SOLVER }, fn, bn);
    refs.push(ref);
    const grans = GRANULARITIES.filter((g) => g !== "cfg" || ref.cfg);
    const local = await segmentErrors(ref, grans, maxRun, (d, t) => o.onProgress?.(`segments ${n + 1}/${pairs.length}`, d, t));
    const gains = await propagationGains(ref, "step", grid, (d, t) => o.onProgress?.(`propagation ${n + 1}/${pairs.length}`, d, t));
    for (const [k, e] of local) {
      const [i, , len] = k.split("|");
      const j = Number(i) + 1 + Number(len);
      cost.set(k, (cost.get(k) ?? 0) + (gains[j] * e) / pairs.length);
    }
  }
  return { refs, cost, costOf: refs[0].costOf, seconds: (performance.now() - t0) / 1000 };
}

/** Mean PSNR of a schedule over the tables' reference runs (real runs), followed by MixCache
 * (order 0) or MixCache+ (order 1: first-order extrapolated reuse). */
async function measurePlan(o: PlanOptions, t: PlanTables, plan: string, order: 0 | 1 = 0, probesSeen?: Map<string, (number | null)[]>): Promise<number> {
  const r = await measureCache(o, t, order === 1 ? "mixcache-plus" : "mixcache", { plan, fn: t.refs[0].fn, bn: t.refs[0].bn });
  probesSeen?.set(plan, r.probes);
  return r.psnr;
}

/** Mean PSNR and compute speedup of a cache (e.g. plain fewer steps) over the tables' reference
 * runs, and (MixCache) the mean front-block probe per step where its trace has one. */
async function measureCache(o: PlanOptions, t: PlanTables, name: string, options: Record<string, unknown>): Promise<{ psnr: number; speedup: number; probes: (number | null)[] }> {
  let s = 0, sp = 0;
  const sum = new Array<number>(o.steps).fill(0), n = new Array<number>(o.steps).fill(0);
  for (const ref of t.refs) {
    const r = await generate({
      model: o.model, prompt: ref.spec.prompt, seed: ref.spec.seed, steps: o.steps, guidance: o.guidance, shift: o.shift,
      cache: makeCache(name, options),
    });
    s += psnrOf(mse01(r.video.data, ref.latents[o.steps]));
    sp += r.stats.computeSpeedup;
    for (const row of r.cache?.trace ?? []) {
      if (typeof row.probe === "number" && row.step < o.steps) {
        sum[row.step] += row.probe;
        n[row.step]++;
      }
    }
  }
  return { psnr: s / t.refs.length, speedup: sp / t.refs.length, probes: sum.map((x, i) => (n[i] ? x / n[i] : null)) };
}

function predicted(t: PlanTables, plan: string): number {
  let e = 0;
  for (const s of planSegments(plan)) if (s.gran) e += t.cost.get(segKey(s.start, s.gran, s.len)) ?? Infinity;
  return e;
}

/** Neighbouring schedules: one segment's granularity changed, or one boundary moved by a step. */
function neighbours(plan: string, grans: readonly Gran[], maxRun: number, warm: number, tail: number): string[] {
  const N = plan.length;
  const out = new Set<string>();
  const segs = planSegments(plan);
  for (const s of segs) {
    if (!s.gran) continue;
    for (const g of grans) if (g !== s.gran) out.add(plan.slice(0, s.start + 1) + PLAN_LETTER[g].repeat(s.len) + plan.slice(s.start + 1 + s.len));
  }
  // move the full step that starts a segment one step earlier / later (the cached run before it
  // shrinks or grows by one), keeping runs within maxRun, warm-up and tail
  for (let k = 1; k < segs.length; k++) {
    const prev = segs[k - 1], cur = segs[k];
    const letterPrev = prev.gran ? PLAN_LETTER[prev.gran] : null;
    const letterCur = cur.gran ? PLAN_LETTER[cur.gran] : null;
    if (letterPrev && prev.len > 1) {
      // earlier: previous run loses its last step, current run gains one
      const p = plan.split("");
      p[cur.start - 1] = "F";
      p[cur.start] = letterCur ?? letterPrev;
      const s = p.join("");
      if (letterCur || cur.start < N - tail) out.add(s);
    }
    if (letterCur && (letterPrev ? prev.len < maxRun : prev.start + 1 >= warm)) {
      // later: the current full step becomes a cached step of the previous run
      const p = plan.split("");
      p[cur.start] = letterPrev ?? letterCur;
      p[cur.start + 1] = "F";
      out.add(p.join(""));
    }
  }
  const valid: string[] = [];
  for (const s of out) {
    if (s.length !== N || s === plan) continue;
    try {
      const segs2 = planSegments(s);
      if (segs2.some((x) => x.len > maxRun || (x.gran && (x.start + 1 < warm || x.start + x.len >= N - tail)))) continue;
    } catch {
      continue;
    }
    valid.push(s);
  }
  return valid;
}

/**
 * First-improvement hill climbing on real runs: from `start`, evaluate the neighbours of the best
 * schedule in the order the cost model ranks them (lowest predicted error first), move to the
 * first one that measures better, and repeat, until a whole neighbourhood brings nothing or
 * `budget` evaluations are spent. Schedules in `tried` are never evaluated again.
 */
export async function localSearch(o: {
  start: { plan: string; psnr: number };
  budget: number;
  tried: Set<string>;
  neighbours: (plan: string) => Array<{ plan: string; rank: number }>;
  evaluate: (plan: string) => Promise<number>;
}): Promise<{ plan: string; psnr: number }> {
  let best = o.start;
  let spent = 0;
  for (;;) {
    const cands = o.neighbours(best.plan).filter((c) => !o.tried.has(c.plan)).sort((a, b) => a.rank - b.rank);
    let moved = false;
    for (const c of cands) {
      if (spent >= o.budget) return best;
      o.tried.add(c.plan);
      const p = await o.evaluate(c.plan);
      spent++;
      if (p > best.psnr + 1e-6) {
        best = { plan: c.plan, psnr: p };
        moved = true;
        break;
      }
    }
    if (!moved) return best;
  }
}

/**
 * Steps 2 and 3 for one target and granularity set. With `order` 1 every real run follows the
 * schedule with MixCache+'s first-order reuse: the segment costs stay order 0 (they rank the
 * neighbours and give the DP start), but what is kept is what measures best under order 1.
 */
async function planOne(o: PlanOptions, t: PlanTables, target: number, set: "hybrid" | Gran, order: 0 | 1 = 0): Promise<PlannedResult> {
  const maxRun = o.maxRun ?? 6;
  const warm = Math.max(1, Math.ceil((o.warmup ?? DEFAULT_PLAN_WARMUP) * o.steps));
  const tail = o.tail ?? 1;
  const cfgAvailable = t.refs.every((r) => r.cfg);
  const grans: Gran[] = set === "hybrid" ? GRANULARITIES.filter((g) => g !== "cfg" || cfgAvailable) : [set];
  if (set === "cfg" && !cfgAvailable) throw new MixCacheError("USAGE", "plan: CFG caching needs guidance > 1", "plan step or block caching, or use guidance > 1");
  const budget = o.steps / target;
  const solve = (gs: readonly Gran[]) => planDp({
    steps: o.steps, grans: gs, costOf: t.costOf, maxRun, budget, warmup: warm, tail,
    error: (i, g, len) => t.cost.get(segKey(i, g, len)) ?? Infinity,
  });
  const dp = solve(grans);
  // the probes each measured schedule showed, so the one kept needs no run of its own
  const probesSeen = new Map<string, (number | null)[]>();
  const dpPsnr = await measurePlan(o, t, dp.plan, order, probesSeen);
  let best = { plan: dp.plan, psnr: dpPsnr };
  let evals = 1;
  const tried = new Set([dp.plan]);
  const startFrom = async (plan: string) => {
    if (tried.has(plan)) return;
    tried.add(plan);
    const p = await measurePlan(o, t, plan, order, probesSeen);
    evals++;
    if (p > best.psnr) best = { plan, psnr: p };
  };
  if (grans.length > 1) {
    // the hybrid's search space holds every single-granularity schedule: start the local search
    // from the best measured of the DP schedules, so the hybrid never ends below a single one
    for (const g of grans) {
      try {
        await startFrom(solve([g]).plan);
      } catch {
        continue; // this granularity alone cannot reach the target
      }
    }
  }
  for (const plan of o.starts?.(target, set) ?? []) {
    const segs = (() => {
      try {
        return planSegments(plan);
      } catch {
        return null;
      }
    })();
    // a start must be a schedule of this length, set and budget
    if (plan.length === o.steps && segs && segs.every((x) => !x.gran || grans.includes(x.gran)) && planCompute(plan, t.costOf) <= budget + 1e-9) await startFrom(plan);
  }
  const limit = o.searchEvals ?? 12;
  const found = await localSearch({
    start: best, budget: limit - evals, tried,
    neighbours: (plan) => neighbours(plan, grans, maxRun, warm, tail)
      .filter((x) => planCompute(x, t.costOf) <= budget + 1e-9)
      .map((x) => ({ plan: x, rank: predicted(t, x) }))
      .filter((c) => Number.isFinite(c.rank)),
    evaluate: async (plan) => {
      const p = await measurePlan(o, t, plan, order, probesSeen);
      o.onProgress?.(`search x${target} ${set}${order ? " order 1" : ""}`, ++evals, limit);
      return p;
    },
  });
  best = found;
  const mseSum = predicted(t, best.plan);
  // the probe the planning prompts show at each block step: schedule=planned vetoes a block step
  // whose probe exceeds it by the probe_margin factor
  const probes = best.plan.includes("B") ? probesSeen.get(best.plan) : undefined;
  return {
    target, grans: grans.join(","), plan: best.plan, speedup: o.steps / planCompute(best.plan, t.costOf),
    psnrPredicted: psnrOf(mseSum), psnrMeasured: best.psnr, dpPlan: dp.plan, dpPsnr, evaluations: evals, ...(probes ? { probes } : {}), ...(order ? { order } : {}),
  };
}

/** Every target x granularity set. */
export interface PlanOutcome {
  tables: PlanTables;
  results: PlannedResult[];
  infeasible: Array<{ target: number; set: string; reason: string }>;
  /** the naive baseline at each target on the same prompts (for the speed table) */
  fewerSteps: Array<{ target: number; psnr: number; speedup: number }>;
  /** online MixCache (target_speedup) on the same prompts: what planning adds */
  online: Array<{ target: number; psnr: number; speedup: number }>;
  /** MixCache+ (first-order reuse) on each target's hybrid schedule searched under order 1 */
  plus: Array<{ target: number; psnr: number; speedup: number }>;
  seconds: number;
}

export async function planSchedules(o: PlanOptions): Promise<PlanOutcome> {
  const t0 = performance.now();
  const tables = await measurePlanTables(o);
  const results: PlannedResult[] = [];
  const infeasible: Array<{ target: number; set: string; reason: string }> = [];
  const fewerSteps: Array<{ target: number; psnr: number; speedup: number }> = [];
  const online: Array<{ target: number; psnr: number; speedup: number }> = [];
  for (const target of o.targets) {
    fewerSteps.push({ target, ...(await measureCache(o, tables, "fewer-steps", { speedup: target })) });
    online.push({ target, ...(await measureCache(o, tables, "mixcache", { target_speedup: target, fn: o.fn ?? 1, bn: o.bn ?? 1 })) });
  }
  // single granularities first: the hybrid's search also starts from their searched schedules
  const sets = [...(o.sets ?? ["hybrid"])].sort((a, b) => Number(a === "hybrid") - Number(b === "hybrid"));
  for (const target of o.targets)
    for (const set of sets) {
      const singles = results.filter((x) => x.target === target && !x.grans.includes(",")).map((x) => x.plan);
      const starts = (tg: number, st: "hybrid" | Gran) => [...(st === "hybrid" ? singles : []), ...(o.starts?.(tg, st) ?? [])];
      try {
        results.push(await planOne({ ...o, starts }, tables, target, set));
      } catch (e) {
        // a single granularity may not reach the target at all (CFG caching alone saves at most half)
        if (e instanceof MixCacheError && /no schedule of/.test(e.message)) infeasible.push({ target, set, reason: e.message.split("\n")[0] });
        else throw e;
      }
    }
  // MixCache+ extrapolates every reuse from the last two full steps, so a run of cached steps
  // costs it something else than plain reuse: its hybrid schedule is searched under order 1,
  // starting from every schedule found above for the target
  const plus: Array<{ target: number; psnr: number; speedup: number }> = [];
  if (o.plus !== false && sets.includes("hybrid")) {
    for (const target of o.targets) {
      const found = results.filter((x) => x.target === target).map((x) => x.plan);
      if (!found.length) continue;
      const x = await planOne({ ...o, starts: (tg, st) => [...found, ...(o.starts?.(tg, st) ?? [])] }, tables, target, "hybrid", 1);
      results.push(x);
      plus.push({ target, psnr: x.psnrMeasured, speedup: x.speedup });
    }
  }
  return { tables, results, infeasible, fewerSteps, online, plus, seconds: (performance.now() - t0) / 1000 };
}

/** A schedule as counts per action, e.g. "22 F, 20 S, 8 B". */
export function describePlan(plan: string): string {
  const n: Record<string, number> = {};
  for (const ch of plan) n[ch] = (n[ch] ?? 0) + 1;
  return Object.keys(LETTER_ACTION).filter((k) => n[k]).map((k) => `${n[k]} ${k}`).join(", ");
}
