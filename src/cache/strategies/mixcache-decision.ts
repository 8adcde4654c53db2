/**
 * MixCache decision logic, kept apart from the tensors so it can be unit tested on synthetic
 * signals (design: docs/design/mixcache.md sections 5-6).
 *
 *  - Trigger (context-aware, "when"): caching is off until at least `minWarmup` steps are done and
 *    the relative change of the model output between consecutive full steps stayed below
 *    `triggerTau` for `triggerPatience` consecutive full steps; once on, it stays on.
 *  - Hybrid decision ("which"): P(psi) = D(psi) * I_t(psi) * (penalty if psi was the last cached
 *    granularity) over the granularities whose cache exists; psi* = argmin P / saved compute when
 *    `saved` is given (the strategy's default, choose=efficiency: ours), else argmin P (choose=error,
 *    the paper's rule as summarised: argmin of D x I, 5x penalty on a repeat).
 *  - Joint scheduling: cache with psi* if consecutive < maxInterval and E + P(psi*) <= budget;
 *    otherwise a full step refreshes every cache and resets E and the run of cached steps.
 *  - Adaptive interval: at a full step, dev = rel(predicted, fresh) of the granularity used last;
 *    dev > delta2 halves maxInterval (>= 1), dev < delta1 grows it by 1 (<= cap) [summary].
 *  - The last `tailSteps` steps are always computed.
 */
import type { FamilyMacs } from "../../models/family.ts";

export const GRANULARITIES = ["step", "cfg", "block"] as const;
export type Gran = (typeof GRANULARITIES)[number];
export type Action = "full" | Gran;

export interface TriggerOptions {
  minWarmup: number; // steps
  tau: number;
  patience: number;
}

export class Trigger {
  private below = 0;
  fired = false;
  firedAt = -1;
  constructor(private readonly o: TriggerOptions) {}

  /** Feed the output change of a full step `index` (NaN when there is no previous full step). */
  observe(index: number, outputChange: number): boolean {
    if (this.fired) return true;
    this.below = outputChange < this.o.tau ? this.below + 1 : 0;
    if (index + 1 >= this.o.minWarmup && this.below >= this.o.patience) {
      this.fired = true;
      this.firedAt = index;
    }
    return this.fired;
  }
}

export interface ChoiceInput {
  D: Partial<Record<Gran, number>>; // missing = cache not available
  I: Record<Gran, number>;
  lastCached: Gran | null;
  penalty: number;
  allowed: readonly Gran[];
  /** Compute saved by each granularity (fraction of a full step). When given, the choice is by
   * error per unit of saved compute, P / saved (our refinement); P itself is what the budget pays. */
  saved?: Record<Gran, number>;
}

export interface Choice {
  gran: Gran | null;
  P: Partial<Record<Gran, number>>;
  /** The score minimised: P, or P / saved. */
  score: Partial<Record<Gran, number>>;
}

/** argmin over available granularities of D x I x (penalty on a repeat), divided by the saved compute when `saved` is given; ties go to the larger saving (step, cfg, block order). */
export function chooseGranularity(c: ChoiceInput): Choice {
  const P: Partial<Record<Gran, number>> = {};
  const score: Partial<Record<Gran, number>> = {};
  let best: Gran | null = null;
  for (const g of GRANULARITIES) {
    const d = c.D[g];
    if (d === undefined || !Number.isFinite(d) || !c.allowed.includes(g)) continue;
    if (c.saved && !(c.saved[g] > 0)) continue;
    const p = d * c.I[g] * (g === c.lastCached ? c.penalty : 1);
    P[g] = p;
    score[g] = c.saved ? p / c.saved[g] : p;
    if (best === null || score[g]! < score[best]!) best = g;
  }
  return { gran: best, P, score };
}

export interface ScheduleOptions {
  budget: number;
  maxInterval: number;
  intervalCap: number;
  delta1: number;
  delta2: number;
  adaptiveInterval: boolean;
}

/** Accumulated error budget, run length and the adaptive interval. */
export class Scheduler {
  E = 0;
  consecutive = 0;
  maxInterval: number;
  constructor(readonly o: ScheduleOptions) {
    this.maxInterval = o.maxInterval;
  }

  /** May a step with cost P be cached? (does not commit). A budget of 0 never caches. */
  admits(P: number, budget = this.o.budget, interval = this.maxInterval): boolean {
    return budget > 0 && this.consecutive < interval && this.E + P <= budget;
  }
  commitCached(P: number): void {
    this.E += P;
    this.consecutive++;
  }
  /** A full step: reset E and the run; adapt the interval from the deviation of the last cache. */
  commitFull(dev: number | null): void {
    this.E = 0;
    this.consecutive = 0;
    if (!this.o.adaptiveInterval || dev === null || !Number.isFinite(dev)) return;
    if (dev > this.o.delta2) this.maxInterval = Math.max(1, Math.floor(this.maxInterval / 2));
    else if (dev < this.o.delta1) this.maxInterval = Math.min(this.o.intervalCap, this.maxInterval + 1);
  }
}

/** MAC cost of each action as a fraction of a full step. */
export function actionCosts(m: FamilyMacs, front: number, back: number, cfg: boolean): Record<Action, number> {
  const nb = cfg ? 2 : 1;
  const blk = m.module.map((row) => row.reduce((a, b) => a + b, 0));
  const sum = (from: number, to: number) => blk.slice(from, to).reduce((a, b) => a + b, 0);
  const body = sum(0, blk.length);
  const edges = sum(0, front) + sum(blk.length - back, blk.length);
  const base = m.time + m.patch;
  const branch = m.branchIn + m.head; // what a branch spends outside its blocks
  const full = base + nb * (body + branch);
  return {
    full: 1,
    step: (base + nb * branch) / full, // the body is reused; branch input and head still run
    cfg: (base + body + branch) / full, // the uncond branch is reused whole
    block: (base + nb * (edges + branch)) / full,
  };
}
