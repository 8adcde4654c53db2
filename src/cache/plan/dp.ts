/**
 * The hybrid cache schedule as a resource-constrained shortest path (the LeMiCa idea of planning a
 * cache schedule offline as a path over cached segments, extended across granularities).
 *
 * A schedule of N steps is a sequence of segments. A segment starts with a full step at i and
 * continues with `len` cached steps of one granularity g (0 <= len <= maxRun), so the next segment
 * starts at i + 1 + len. Its error is cost[i][g][len] (an estimate of what that segment adds to the
 * final output's squared error, measured by the planner; cost[i][g][0] is 0) and its compute is
 * 1 + len * c_g in full-step units. The planner minimises the summed error under a compute budget,
 * exactly on a grid of `resolution` of a full step (each segment's compute is rounded up, so the
 * real compute never exceeds the budget).
 *
 * Schedules are written as strings, one letter per step: F full, S step cache, C CFG cache, B block
 * cache (the same letters `mixcache --cache-opt plan=...` follows).
 */
import { UsageError } from "../../errors.ts";
import type { Gran } from "../strategies/mixcache-decision.ts";

export const PLAN_LETTER: Record<"full" | Gran, string> = { full: "F", step: "S", cfg: "C", block: "B" };
export const LETTER_ACTION: Record<string, "full" | Gran> = { F: "full", S: "step", C: "cfg", B: "block" };

export interface DpProblem {
  steps: number;
  /** granularities the schedule may use */
  grans: readonly Gran[];
  /** compute of one cached step per granularity, in full-step units (0 < c < 1) */
  costOf: Record<Gran, number>;
  /** cost[i][g][len]: error of the segment starting (full) at i with len cached steps of g */
  error: (i: number, g: Gran, len: number) => number;
  /** longest run of cached steps in one segment */
  maxRun: number;
  /** total compute allowed, in full-step units (e.g. steps / target speedup) */
  budget: number;
  /** first steps that must be full (warm-up), at least 1 */
  warmup?: number;
  /** last steps that must be full */
  tail?: number;
  /** compute grid, in full-step units (default 1/100) */
  resolution?: number;
}

export interface DpResult {
  plan: string;
  /** summed segment errors of the plan */
  error: number;
  /** exact compute of the plan, in full-step units */
  compute: number;
}

/** Exact compute of a schedule string in full-step units. */
export function planCompute(plan: string, costOf: Record<Gran, number>): number {
  let c = 0;
  for (const ch of plan) {
    const a = LETTER_ACTION[ch];
    if (!a) throw new UsageError(`schedule letter "${ch}" is not one of F, S, C, B`, "write one letter per step: F full, S step cache, C CFG cache, B block cache");
    c += a === "full" ? 1 : costOf[a];
  }
  return c;
}

/** The segments of a schedule: [start, granularity, len]; a leading cached step is an error. */
export function planSegments(plan: string): Array<{ start: number; gran: Gran | null; len: number }> {
  const out: Array<{ start: number; gran: Gran | null; len: number }> = [];
  for (let i = 0; i < plan.length; i++) {
    const a = LETTER_ACTION[plan[i]];
    if (!a) throw new UsageError(`schedule letter "${plan[i]}" at step ${i} is not one of F, S, C, B`, "write one letter per step: F full, S step cache, C CFG cache, B block cache");
    if (a === "full") out.push({ start: i, gran: null, len: 0 });
    else {
      const seg = out[out.length - 1];
      if (!seg) throw new UsageError(`schedule starts with a cached step ("${plan[0]}")`, "the first step must be F: a cache needs one computed step");
      if (seg.gran !== null && seg.gran !== a)
        throw new UsageError(`schedule mixes ${seg.gran} and ${a} caching between two full steps (step ${i})`, "put an F between cached runs of different granularities");
      seg.gran = a;
      seg.len++;
    }
  }
  return out;
}

/** Minimum-error schedule under the compute budget (dynamic programming over step x compute). */
export function planDp(p: DpProblem): DpResult {
  const N = p.steps;
  const q = p.resolution ?? 0.01;
  const warm = Math.max(1, p.warmup ?? 1);
  const tail = Math.max(0, p.tail ?? 0);
  if (!(N >= 1)) throw new UsageError(`planDp: steps must be >= 1, got ${N}`);
  const units = (c: number) => Math.ceil(c / q - 1e-9);
  const B = Math.floor(p.budget / q + 1e-9);
  const INF = Number.POSITIVE_INFINITY;
  // best[j][b]: least error to have scheduled steps [0, j) with b compute units, j a segment start
  const best: Float64Array[] = Array.from({ length: N + 1 }, () => new Float64Array(B + 1).fill(INF));
  const from: Int32Array[] = Array.from({ length: N + 1 }, () => new Int32Array(B + 1).fill(-1));
  const via: Array<Array<string | null>> = Array.from({ length: N + 1 }, () => new Array<string | null>(B + 1).fill(null));
  best[0][0] = 0;
  const fullU = units(1);
  for (let i = 0; i < N; i++) {
    for (let b = 0; b <= B; b++) {
      const e0 = best[i][b];
      if (e0 === INF) continue;
      // a full step at i, then len cached steps of g
      const options: Array<{ g: Gran | null; len: number }> = [{ g: null, len: 0 }];
      if (i + 1 >= warm) {
        for (const g of p.grans)
          for (let len = 1; len <= p.maxRun; len++) {
            const last = i + len; // last cached step
            if (last >= N - tail) break;
            options.push({ g, len });
          }
      }
      for (const o of options) {
        const j = i + 1 + o.len;
        const cu = fullU + (o.g ? units(o.len * p.costOf[o.g]) : 0);
        const nb = b + cu;
        if (nb > B || j > N) continue;
        const e = e0 + (o.g ? p.error(i, o.g, o.len) : 0);
        if (e < best[j][nb]) {
          best[j][nb] = e;
          from[j][nb] = b;
          via[j][nb] = PLAN_LETTER.full + (o.g ? PLAN_LETTER[o.g].repeat(o.len) : "");
        }
      }
    }
  }
  let bestB = -1;
  for (let b = 0; b <= B; b++) if (best[N][b] < INF && (bestB < 0 || best[N][b] < best[N][bestB])) bestB = b;
  if (bestB < 0) {
    throw new UsageError(
      `no schedule of ${N} steps fits a compute budget of ${p.budget.toFixed(2)} full steps with warm-up ${warm}, tail ${tail} and runs of at most ${p.maxRun} cached steps`,
      "ask for a lower speedup, a longer maximum run, or a shorter warm-up",
    );
  }
  const parts: string[] = [];
  for (let j = N, b = bestB; j > 0; ) {
    const s = via[j][b]!;
    parts.push(s);
    const pb = from[j][b];
    j -= s.length;
    b = pb;
  }
  const plan = parts.reverse().join("");
  return { plan, error: best[N][bestB], compute: planCompute(plan, p.costOf) };
}
