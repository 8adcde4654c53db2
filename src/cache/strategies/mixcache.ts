/**
 * MixCache (Wei et al., arXiv 2508.12691): mixture-of-cache across three granularities, chosen per
 * step. Design: docs/design/mixcache.md (what we changed from the paper and why; the README's
 * "MixCache as implemented" section has the numbers). Decision logic: mixcache-decision.ts.
 *
 * Granularities and what each reuses (per CFG branch unless noted):
 *   step   skip every block of both branches; h_L = h_0 + R, R = body residual of the last full step
 *   cfg    skip the whole uncond branch; v_u = v_c + G, G = v_u - v_c of the last full step (global)
 *   block  skip blocks [Fn, L - Bn); h_{L-Bn} = h_Fn + M, M = middle residual of the last full step
 * Reuse is order 0 (the paper) or, for MixCache+, first-order extrapolation
 * X + a (X - X_prev) gap / prevGap (ScalingCache / TaylorSeer-style, our improvement).
 *
 * Signals D (online): rel-L1 change of R, G and M between the last two full steps, as a per-step
 * rate (divided by the gap between those full steps) times the age of the cache. Block caching
 * also probes for free: the first Fn blocks run anyway, and rel(h_Fn(t), h_Fn(last full)) can
 * veto the block reuse. Impact factors I_t come from cache_profiles/mixcache.json
 * (`mixcache calibrate mixcache`, one-step-reuse perturbation by default); without one, I = 1
 * (warning).
 */
import { CacheStore, defineStrategy, perBranch } from "../strategy.ts";
import { fmt, type KnobConfig } from "../knobs.ts";
import { readProfile, type ProfileMeta } from "../profiles.ts";
import { axpyDiff, relL1, sub } from "../../tensor/ops.ts";
import { addLarge, subLarge } from "../../graph/elementwise.ts";
import type { BlockRunner, Branch, BranchCtx, CacheReport, CacheStrategy, Hooks, RunInfo, StepInfo, StepOutputs, TraceRow } from "../../pipeline/hooks.ts";
import { ConfigError } from "../../errors.ts";
import { GRANULARITIES, Scheduler, Trigger, actionCosts, chooseGranularity, type Action, type Gran } from "./mixcache-decision.ts";
import { LETTER_ACTION, planSegments } from "../plan/dp.ts";
import { sha256 } from "../../util/hash.ts";

export interface MixCacheProfile {
  meta: ProfileMeta & { eps: number; mode?: string; grid: number[] };
  /** Impact factors per granularity and step (normalised: median over (t, psi) = 1). */
  impact: Record<Gran, number[]>;
  /** Per-step change rates of the uncached run (rel-L1 between consecutive steps), for planning. */
  rates: Record<Gran, number[]>;
  /** rel-L1 change of the combined velocity between consecutive steps of the uncached run. */
  outputChange: number[];
}

/**
 * Presets: a base error budget and the compute speedup the budget controller steers to. Fixed
 * budgets alone were capped by the adaptive interval on the reference model (1.6-1.7x for every
 * budget), so a preset names the speed and the controller finds the budget per generation.
 */
/**
 * schedule=planned: a planned block step whose probe exceeds this multiple of the probe seen there
 * on the planning prompts runs full instead (the probe_margin knob; 0 = never).
 */
export const PLANNED_PROBE_MARGIN = 0;

export const PRESETS: Record<string, { budget: number; target: number }> = {
  slow: { budget: 0.3, target: 1.5 },
  medium: { budget: 0.8, target: 2 },
  fast: { budget: 2.0, target: 2.5 },
};

const KNOBS = (order: number) => [
  { name: "preset", type: "enum", default: "medium", values: Object.keys(PRESETS), doc: `Speed preset (target compute speedup): ${Object.entries(PRESETS).map(([k, v]) => `${k}=${v.target}x`).join(", ")}.` },
  { name: "budget", type: "number", default: -1, min: -1, max: 1000, doc: "Fixed accumulated error budget E between full steps, no speed target (-1 = from the preset; 0 = never cache)." },
  { name: "target_speedup", type: "number", default: 0, min: 0, max: 20, doc: "If > 0, choose the budget per generation so executed compute lands at 1/S of the uncached compute (overrides preset/budget)." },
  { name: "order", type: "int", default: order, min: 0, max: 1, doc: "Reuse order: 0 = plain reuse (paper), 1 = first-order extrapolation (MixCache+)." },
  { name: "extrapolation", type: "number", default: 0.5, min: 0, max: 1, doc: "Weight a of the first-order term (order 1)." },
  { name: "fn", type: "int", default: 1, min: 0, max: 1000, doc: "Front blocks always computed under block caching (also the probe)." },
  { name: "bn", type: "int", default: 1, min: 0, max: 1000, doc: "Back blocks always computed under block caching." },
  { name: "choose", type: "enum", default: "efficiency", values: ["efficiency", "error"], doc: "Pick the granularity by error per saved compute, P / saved (ours), or by error P alone (the paper's argmin)." },
  { name: "penalty", type: "number", default: 5, min: 1, max: 1000, doc: "Multiplier on choosing the same granularity twice in a row (1 = off).", source: "MixCache summary: 5x" },
  { name: "trigger", type: "bool", default: true, doc: "Context-aware trigger (false: caching may start right after warm-up)." },
  { name: "trigger_tau", type: "number", default: 0.15, min: 0, max: 100, doc: "Trigger: output change between consecutive full steps must stay below this..." },
  { name: "trigger_patience", type: "int", default: 2, min: 1, max: 1000, doc: "...for this many consecutive full steps." },
  { name: "warmup", type: "number", default: 0.2, min: 0, max: 1, doc: "Minimum fraction of steps computed before caching may start.", source: "peers: MagCache retention 0.2, EasyCache 10 of 50 steps (10% cached too early on the reference model)" },
  { name: "tail", type: "int", default: 1, min: 0, max: 1000, doc: "Last steps always computed." },
  { name: "impact", type: "bool", default: true, doc: "Use the calibrated impact factors I (false: I = 1)." },
  { name: "only", type: "enum", default: "all", values: ["all", ...GRANULARITIES], doc: "Restrict to one granularity (ablation)." },
  { name: "adaptive", type: "bool", default: true, doc: "Adaptive interval (false: fixed max_interval)." },
  { name: "max_interval", type: "int", default: 3, min: 1, max: 1000, doc: "Initial maximum run of consecutive cached steps." },
  { name: "interval_cap", type: "int", default: 6, min: 1, max: 1000, doc: "Upper bound of the adaptive interval." },
  { name: "delta1", type: "number", default: 0.05, min: 0, max: 100, doc: "Deviation below which the interval grows by 1." },
  { name: "delta2", type: "number", default: 0.2, min: 0, max: 100, doc: "Deviation above which the interval halves." },
  { name: "probe", type: "bool", default: true, doc: "Veto block reuse when the front-block probe says the middle changed more than D predicted (online schedule), or more than probe_margin x what the planning prompts showed at that step (schedule=planned)." },
  { name: "probe_margin", type: "number", default: PLANNED_PROBE_MARGIN, min: 0, max: 1000, doc: "schedule=planned: a planned block step runs full when its probe exceeds this multiple of the probe the planning prompts showed there (0 = follow the schedule as planned).", source: "npm run bench:plan-eval -- --margins (docs/design/mixcache.md)" },
  { name: "schedule", type: "enum", default: "online", values: ["online", "planned"], doc: "online: decide per step from the signals; planned: follow the schedule `mixcache plan` stored for this model, step count and target speed (cache_profiles/mixcache-plans.json)." },
  { name: "plan", type: "string", default: "", pattern: /^[FSCB]+$/, patternDoc: "a string of F|S|C|B, one letter per step", doc: "Follow this schedule exactly: F full, S step cache, C CFG cache, B block cache (one letter per step; overrides schedule)." },
] as const;

/** MixCache's config, typed from its knobs (parseKnobs makes it). */
type MixCacheConfig = KnobConfig<ReturnType<typeof KNOBS>>;

/** A stored schedule (cache_profiles/mixcache-plans.json, written by `mixcache plan`). */
export interface PlannedSchedule {
  steps: number;
  /** compute speedup the schedule was planned for */
  target: number;
  plan: string;
  /** exact compute speedup of the schedule */
  speedup: number;
  /** granularities it may use ("step,cfg,block" for the hybrid) */
  grans: string;
  /** mean PSNR (a) to the uncached output on the planning prompts: DP estimate and measured */
  psnrPredicted: number;
  psnrMeasured: number;
  /** per step, the mean front-block probe rel(h_Fn, h_Fn at the last full step) the planning
   * prompts showed at the schedule's block steps (null elsewhere); absent in older profiles */
  probes?: (number | null)[];
  /** reuse order the schedule was searched under (absent: 0). MixCache+ (order 1) follows an
   * order-1 schedule where one is stored for its step count and speed, else the order-0 one. */
  order?: 1;
}

/** One row of the speed table: the best way found to run `target` times faster on the planning
 * prompts (a planned hybrid schedule or plain fewer steps), with its measured PSNR. */
export interface SpeedChoice {
  steps: number;
  target: number;
  cache: "mixcache" | "mixcache-plus" | "fewer-steps";
  options: Record<string, string | number>;
  psnr: number;
  speedup: number;
}

export interface PlanProfile {
  meta: ProfileMeta & { prompts: string[]; seeds: number[]; fn: number; bn: number; seconds: number; /** UniPC mode at cached steps the segments were measured under (absent: "keep") */ solver?: string };
  schedules: PlannedSchedule[];
  speeds?: SpeedChoice[];
}

/** The stored schedule for `steps`, `target` and `grans`, searched under reuse `order` where one
 * exists (else under order 0), or null. */
function findPlanned(profile: PlanProfile | null, steps: number, target: number, grans: string, order: number): PlannedSchedule | null {
  if (!profile) return null;
  const c = profile.schedules.filter((s) => s.steps === steps && s.grans === grans && Math.abs(s.target - target) < 1e-6);
  return c.find((s) => (s.order ?? 0) === order) ?? c.find((s) => (s.order ?? 0) === 0) ?? null;
}

function tagOf(c: MixCacheConfig, budget: number): string {
  let t = c.order === 1 ? "mixcache+" : "mixcache";
  if (c.plan) return `${t}-plan-${c.plan.length}s${sha256(c.plan, 6)}-F${c.fn}B${c.bn}`;
  if (c.schedule === "planned") {
    const tgt = c.target_speedup > 0 ? c.target_speedup : PRESETS[c.preset].target;
    const margin = !c.probe ? "-noprobe" : c.probe_margin !== PLANNED_PROBE_MARGIN ? `-probe${fmt(c.probe_margin)}` : "";
    return `${t}-planned-x${fmt(tgt)}${c.only !== "all" ? `-only${c.only}` : ""}${margin}`;
  }
  t += c.target_speedup > 0 ? `-x${fmt(c.target_speedup)}` : c.budget === -1 ? `-${c.preset}` : `-b${fmt(budget)}`;
  t += `-F${c.fn}B${c.bn}`;
  if (c.order === 1 && c.extrapolation !== 0.5) t += `-a${fmt(c.extrapolation)}`;
  const abl: string[] = [];
  if (!c.trigger) abl.push("notrig");
  if (!c.impact) abl.push("noI");
  if (c.only !== "all") abl.push(`only${c.only}`);
  if (c.penalty === 1) abl.push("nopen");
  else if (c.penalty !== 5) abl.push(`pen${fmt(c.penalty)}`);
  if (!c.adaptive) abl.push(`fixed${c.max_interval}`);
  if (!c.probe) abl.push("noprobe");
  if (c.choose === "error") abl.push("argminP");
  if (abl.length) t += "-" + abl.join("-");
  return t;
}

/** Nearest-neighbour resample of a per-step curve to `n` steps. */
export function resample(curve: readonly number[], n: number): number[] {
  if (curve.length === n) return [...curve];
  return Array.from({ length: n }, (_, i) => curve[Math.min(curve.length - 1, Math.round((i * (curve.length - 1)) / Math.max(1, n - 1)))]);
}

interface BranchCache {
  R?: Float32Array;
  Rprev?: Float32Array;
  M?: Float32Array;
  Mprev?: Float32Array;
  probe?: Float32Array; // h_Fn at the last full step
  // values computed during the current full step, committed at endStep
  newR?: Float32Array;
  newM?: Float32Array;
  newProbe?: Float32Array;
}

/** What build() resolves once per strategy; every generation (attach) starts a MixCacheRun from it. */
interface Settings {
  name: string;
  tag: string;
  c: MixCacheConfig;
  /** base error budget E (the preset's when budget = -1) */
  budget: number;
  /** compute speedup the budget controller steers to; 0 = fixed budget */
  target: number;
  allowed: readonly Gran[];
  profile: MixCacheProfile | null;
  planProfile: PlanProfile | null;
}

/**
 * The state of one generation (fresh per attach). The hooks are its methods: beginRun sizes the
 * run, beginStep decides the step's action (mixcache-decision.ts), branch/body apply it, endStep
 * commits a cached step or refreshes every cache after a full one.
 */
class MixCacheRun {
  private readonly store = new CacheStore();
  private readonly warnings: string[] = [];
  private readonly trace: TraceRow[] = [];
  private readonly br = perBranch<BranchCache>(() => ({}));
  private run!: RunInfo;
  private Fn = 0;
  private Bn = 0;
  private L = 0;
  private I: Record<Gran, number[]> = { step: [], cfg: [], block: [] };
  private trigger: Trigger;
  private cost: Record<Action, number> = { full: 1, step: 1, cfg: 1, block: 1 };
  private readonly sched: Scheduler;
  // global caches and bookkeeping
  private lastFull = -1;
  private prevFull = -1;
  private rates: Partial<Record<Gran, number>> = {};
  private lastCached: Gran | null = null;
  private lastUsed: Gran | null = null; // granularity used since the last full step (for the interval)
  // this step: its action, its error P and the signals it was chosen on
  private action: Action = "full";
  private P = 0;
  private D: Partial<Record<Gran, number>> = {};
  private Pall: Partial<Record<Gran, number>> = {};
  private vetoed = false;
  private warmupSteps = 1;
  // target speedup: the budget is scaled online so executed compute tracks the target
  private budgetNow: number;
  private spent = 0;
  private readonly counters = { full: 0, step: 0, cfg: 0, block: 0, probeVetoes: 0 };
  // a followed schedule (plan=... or schedule=planned), resolved at beginRun
  private planActions: Action[] | null = null;
  /** the planned schedule's probe per step (schedule=planned), for the veto */
  private planProbes: (number | null)[] | null = null;
  /** this step's probe, when the front blocks ran under a block step (traced) */
  private probeNow: number | null = null;
  private planFallbacks = 0;

  constructor(private readonly s: Settings) {
    const c = s.c;
    if (!s.profile && c.impact && !c.plan && c.schedule !== "planned") this.warnings.push("no MixCache calibration profile for this model: impact factors I = 1 (quality is lower; run `mixcache calibrate mixcache`)");
    this.trigger = new Trigger({ minWarmup: 1, tau: c.trigger_tau, patience: c.trigger_patience });
    this.sched = new Scheduler({
      budget: s.budget, maxInterval: c.max_interval, intervalCap: c.interval_cap,
      delta1: c.delta1, delta2: c.delta2, adaptiveInterval: c.adaptive,
    });
    this.budgetNow = s.budget;
  }

  hooks(): Hooks {
    return {
      beginRun: (r) => this.beginRun(r),
      beginStep: (step) => this.beginStep(step),
      branch: (ctx, compute) => this.branch(ctx, compute),
      body: (ctx, h0, runBlocks) => this.body(ctx, h0, runBlocks),
      endStep: (step, out) => this.endStep(step, out),
    };
  }

  report(): CacheReport {
    const { name, tag, c } = this.s;
    const { planActions, planFallbacks } = this;
    return {
      name, tag, config: c, peakBytes: this.store.peak, trace: this.trace,
      counters: { ...this.counters, triggeredAt: this.trigger.firedAt, ...(planActions ? { planFallbacks } : {}) },
      warnings: planFallbacks ? [...this.warnings, `${planFallbacks} planned cached steps ran full (their cache did not exist yet, or the model has no CFG branch)`] : this.warnings,
    };
  }

  /** Order-0 reuse returns x; order 1 extrapolates from the previous full step's value. */
  private extrap(x: Float32Array, prev: Float32Array | undefined, index: number): Float32Array {
    if (this.s.c.order === 0 || !prev || this.prevFull < 0) return x;
    const k = (this.s.c.extrapolation * (index - this.lastFull)) / Math.max(1, this.lastFull - this.prevFull);
    return axpyDiff(x, k, prev); // = axpy(x, k, sub(x, prev)), one pass
  }

  private beginRun(r: RunInfo): void {
    const { c, profile, allowed } = this.s;
    this.run = r;
    const L = (this.L = r.numBlocks);
    const Fn = (this.Fn = c.fn);
    const Bn = (this.Bn = c.bn);
    if (Fn + Bn >= L && allowed.includes("block") && c.only === "block")
      throw new ConfigError(`mixcache: fn + bn = ${Fn + Bn} leaves no middle block in a ${L}-block model`, `choose fn + bn < ${L}`);
    this.warmupSteps = Math.max(1, Math.ceil(c.warmup * r.steps));
    this.trigger = new Trigger({ minWarmup: this.warmupSteps, tau: c.trigger_tau, patience: c.trigger_patience });
    this.cost = actionCosts(r.macs, Fn, Bn, r.cfg);
    const one = new Array(r.steps).fill(1);
    this.I = profile && c.impact
      ? { step: resample(profile.impact.step, r.steps), cfg: resample(profile.impact.cfg, r.steps), block: resample(profile.impact.block, r.steps) }
      : { step: one, cfg: one, block: one };
    this.planActions = null;
    this.planProbes = null;
    const planned = !c.plan && c.schedule === "planned" ? this.plannedSchedule(r.steps) : null;
    const plan = c.plan || planned?.plan || "";
    if (planned?.probes?.length === r.steps) this.planProbes = planned.probes;
    if (plan) {
      if (plan.length !== r.steps)
        throw new ConfigError(`mixcache plan has ${plan.length} letters but the run has ${r.steps} steps`, `give one letter per step (F S C B), or run ${plan.length} steps`);
      this.planActions = [...plan].map((ch) => LETTER_ACTION[ch]);
    }
  }

  /** schedule=planned: the stored schedule for this step count and speed (ConfigError when none). */
  private plannedSchedule(steps: number): PlannedSchedule {
    const { c, target, planProfile } = this.s;
    const want = target > 0 ? target : 2;
    const grans = c.only === "all" ? "step,cfg,block" : c.only;
    const found = findPlanned(planProfile, steps, want, grans, c.order);
    if (!found) {
      const have = planProfile ? planProfile.schedules.filter((x) => x.grans === grans).map((x) => `${x.steps} steps x${x.target}`).join(", ") || "none" : "no mixcache-plans.json";
      throw new ConfigError(`mixcache schedule=planned: no ${grans === "step,cfg,block" ? "hybrid" : grans} schedule planned for ${steps} steps at ${want}x for this model (stored: ${have})`,
        `run \`mixcache plan --steps ${steps} --targets ${want}\` for this model, or use schedule=online`);
    }
    return found;
  }

  private beginStep(step: StepInfo): void {
    const { c, budget, target, allowed } = this.s;
    const { br, store, run, cost, I, Fn, Bn, L } = this;
    const i = step.index;
    this.action = "full";
    this.P = 0;
    this.D = {};
    this.Pall = {};
    this.vetoed = false;
    this.probeNow = null;
    if (this.planActions) {
      // follow the schedule; a cached letter whose cache does not exist yet runs full
      const want = this.planActions[i];
      if (want !== "full") {
        const ok = this.lastFull >= 0 && (want === "step" ? !!br.cond.R : want === "cfg" ? run.cfg && store.has("G") : !!br.cond.M && Fn + Bn < L);
        if (ok) this.action = want;
        else this.planFallbacks++;
      }
      return;
    }
    let intervalLimit = this.sched.maxInterval;
    let affordFull = false;
    if (target > 0) {
      // target speedup: remaining compute allowance per remaining step, in full-step units.
      // Ahead of plan (every remaining step can be full) -> compute; behind -> raise the
      // budget exponentially and let runs of cached steps reach interval_cap.
      const allowance = (step.count / target - this.spent) / Math.max(1, step.count - i);
      affordFull = allowance >= 1;
      this.budgetNow = Math.max(0, budget) * Math.pow(2, 8 * (1 / target - allowance));
      if (allowance < 1 / target) intervalLimit = c.interval_cap;
    }
    const inTail = i >= step.count - c.tail;
    const enabled = this.budgetNow > 0 && !affordFull && this.lastFull >= 0 && !inTail && (c.trigger ? this.trigger.fired : i >= this.warmupSteps);
    if (enabled) {
      const D = this.D;
      const rates = this.rates;
      const age = i - this.lastFull;
      const haveCfg = run.cfg && store.has("G");
      if (rates.step !== undefined && br.cond.R) D.step = rates.step * age;
      if (haveCfg && rates.cfg !== undefined) D.cfg = rates.cfg * age;
      if (rates.block !== undefined && br.cond.M && Fn + Bn < L) D.block = rates.block * age;
      const saved = c.choose === "efficiency" ? { step: 1 - cost.step, cfg: 1 - cost.cfg, block: 1 - cost.block } : undefined;
      const choice = chooseGranularity({ D, I: { step: I.step[i], cfg: I.cfg[i], block: I.block[i] }, lastCached: this.lastCached, penalty: c.penalty, allowed, saved });
      this.Pall = choice.P;
      if (choice.gran && this.sched.admits(choice.P[choice.gran]!, this.budgetNow, intervalLimit)) {
        this.action = choice.gran;
        this.P = choice.P[choice.gran]!;
      }
    }
    this.vetoed = false;
  }

  private async branch(ctx: BranchCtx, compute: () => Promise<Float32Array>): Promise<Float32Array> {
    if (this.action === "cfg" && ctx.branch === "uncond") {
      const G = this.store.get("G")!;
      return addLarge(ctx.condVelocity!, this.extrap(G, this.store.get("Gprev"), ctx.step.index));
    }
    return compute();
  }

  private async body(ctx: BranchCtx, h0: Float32Array, runBlocks: BlockRunner): Promise<Float32Array> {
    const c = this.s.c;
    const { Fn, Bn, L } = this;
    const b = this.br[ctx.branch];
    const i = ctx.step.index;
    if (this.action === "step") return addLarge(h0, this.extrap(b.R!, b.Rprev, i));
    const hF = await runBlocks(0, Fn, h0);
    if (this.action === "block" && Fn > 0 && b.probe && ctx.branch === "cond") {
      // free probe: the front blocks ran anyway; if h_Fn moved more than the budget allows for
      // the middle (online), or more than the planning prompts showed here (planned), this
      // becomes a full step (both branches) that refreshes every cache
      const probe = (this.probeNow = relL1(hF, b.probe));
      let veto = false;
      if (!this.planActions) {
        const pBlock = Math.max(this.D.block ?? 0, probe) * this.I.block[i] * (this.lastCached === "block" ? c.penalty : 1);
        veto = c.probe && !this.sched.admits(pBlock, this.budgetNow, Infinity);
      } else {
        const planned = this.planProbes?.[i];
        veto = c.probe && c.probe_margin > 0 && planned != null && probe > c.probe_margin * planned;
      }
      if (veto) {
        this.action = "full";
        this.vetoed = true;
        this.counters.probeVetoes++;
      }
    }
    if (this.action === "block") return runBlocks(L - Bn, L, await addLarge(hF, this.extrap(b.M!, b.Mprev, i)));
    const hB = await runBlocks(Fn, L - Bn, hF);
    const hL = await runBlocks(L - Bn, L, hB);
    if (this.action === "full") {
      // keep what every cache needs; committed in endStep
      b.newR = await subLarge(hL, h0);
      b.newM = await subLarge(hB, hF);
      b.newProbe = hF;
    }
    return hL; // cond branch of a cfg step, or a full step
  }

  private endStep(step: StepInfo, out: StepOutputs): void {
    const c = this.s.c;
    const { I, action } = this;
    const i = step.index;
    const row: TraceRow = {
      step: i, timestep: step.timestep, action, triggered: c.trigger ? this.trigger.fired : i >= this.warmupSteps,
      D: { ...this.D }, I: { step: I.step[i], cfg: I.cfg[i], block: I.block[i] }, P: { ...this.Pall }, E: this.sched.E, interval: this.sched.maxInterval,
      budget: this.budgetNow, vetoed: this.vetoed, ...(this.probeNow !== null ? { probe: this.probeNow } : {}),
    };
    if (action === "step" || action === "cfg" || action === "block") {
      this.sched.commitCached(this.P);
      this.lastCached = action;
      this.lastUsed = action;
      this.counters[action]++;
      this.spent += this.cost[action];
    } else {
      const { dev, change } = this.refresh(i, out);
      row.dev = dev;
      row.outputChange = change;
    }
    this.trace.push(row);
  }

  /**
   * After a full step: refresh every cache; rates = rel change between the last two full steps,
   * per step; the deviation of the last used cache (adaptive interval); the trigger's signal.
   */
  private refresh(i: number, out: StepOutputs): { dev: number | null; change: number } {
    const { br, store } = this;
    const order = this.s.c.order;
    let dev: number | null = null;
    this.counters.full++;
    this.spent += 1;
    const gap = this.lastFull >= 0 ? i - this.lastFull : 1;
    const newG = out.uncond ? sub(out.uncond, out.cond) : null;
    // a followed schedule needs the caches only: the rates, the deviation and the output change
    // feed the online rule (choice, adaptive interval, trigger) and are not computed for it
    const online = !this.planActions;
    const rel2 = (k: "R" | "M") => {
      let s = 0, n = 0;
      for (const b of ["cond", "uncond"] as Branch[]) {
        const x = br[b];
        const nw = k === "R" ? x.newR : x.newM;
        const old = k === "R" ? x.R : x.M;
        if (nw && old) { s += relL1(nw, old); n++; }
      }
      return n ? s / n : undefined;
    };
    const rR = online ? rel2("R") : undefined, rM = online ? rel2("M") : undefined;
    const oldG = store.get("G");
    const rG = online && newG && oldG ? relL1(newG, oldG) : undefined;
    // deviation of the last used cache's prediction from the fresh value (adaptive interval)
    const lastUsed = this.lastUsed;
    if (lastUsed && online) {
      if (lastUsed === "cfg" && newG && oldG) dev = relL1(this.extrap(oldG, store.get("Gprev"), i), newG);
      else if (lastUsed === "step" && br.cond.R && br.cond.newR) dev = relL1(this.extrap(br.cond.R, br.cond.Rprev, i), br.cond.newR);
      else if (lastUsed === "block" && br.cond.M && br.cond.newM) dev = relL1(this.extrap(br.cond.M, br.cond.Mprev, i), br.cond.newM);
    }
    if (rR !== undefined) this.rates.step = rR / gap;
    if (rG !== undefined) this.rates.cfg = rG / gap;
    if (rM !== undefined) this.rates.block = rM / gap;
    for (const b of ["cond", "uncond"] as Branch[]) {
      const x = br[b];
      if (!x.newR) continue;
      if (order === 1 && x.R) { x.Rprev = x.R; x.Mprev = x.M; store.set(`Rprev.${b}`, x.R); store.set(`Mprev.${b}`, x.M!); }
      x.R = x.newR; x.M = x.newM; x.probe = x.newProbe;
      store.set(`R.${b}`, x.R); store.set(`M.${b}`, x.M!); store.set(`probe.${b}`, x.probe!);
      x.newR = x.newM = x.newProbe = undefined;
    }
    if (newG) {
      if (order === 1 && oldG) store.set("Gprev", oldG);
      store.set("G", newG);
    }
    // trigger on the output change between consecutive full steps
    const prevV = store.get("v");
    const change = online && prevV && this.lastFull === i - 1 ? relL1(out.velocity, prevV) : NaN;
    if (online && (prevV || i === 0)) this.trigger.observe(i, change);
    if (online) store.set("v", out.velocity);
    this.prevFull = this.lastFull;
    this.lastFull = i;
    this.sched.commitFull(dev);
    this.lastCached = null;
    this.lastUsed = null;
    return { dev, change };
  }
}

function build(name: string, c: MixCacheConfig, profilesDir?: string): CacheStrategy {
  const preset = PRESETS[c.preset];
  const budget = c.budget === -1 ? preset.budget : c.budget;
  const profile = readProfile<MixCacheProfile>(profilesDir, "mixcache");
  const tag = tagOf(c, budget);
  const allowed: readonly Gran[] = c.only === "all" ? GRANULARITIES : [c.only];
  const planProfile = c.plan === "" && c.schedule === "planned" ? readProfile<PlanProfile>(profilesDir, "mixcache-plans") : null;
  if (c.plan === "" && c.schedule === "planned" && profilesDir !== undefined) {
    // built for a model folder: refuse now (before any run) when it holds no schedule for this speed
    const want = c.target_speedup > 0 ? c.target_speedup : PRESETS[c.preset].target;
    const grans = c.only === "all" ? "step,cfg,block" : c.only;
    if (!planProfile?.schedules.some((x) => x.grans === grans && Math.abs(x.target - want) < 1e-6))
      throw new ConfigError(`mixcache schedule=planned: this model has no ${grans === "step,cfg,block" ? "hybrid" : grans} schedule planned at ${want}x (${profilesDir}/mixcache-plans.json)`,
        `run \`mixcache plan --targets ${want} --save\` for this model, or use schedule=online`);
  }
  if (c.plan !== "") planSegments(c.plan); // mixed granularities inside one run are refused here
  const target = c.target_speedup > 0 ? c.target_speedup : c.budget === -1 ? preset.target : 0;
  const settings: Settings = { name, tag, c, budget, target, allowed, profile, planProfile };
  return {
    name, granularity: "hybrid", config: c, tag,
    attach() {
      const run = new MixCacheRun(settings);
      return { hooks: run.hooks(), report: () => run.report() };
    },
  };
}

export const mixcache = defineStrategy({
  name: "mixcache",
  granularity: "hybrid",
  summary: "MixCache: a context-aware trigger, then per step the step / CFG / block cache with the least D x I per saved compute (choose=error: least D x I) with a repeat penalty, under an accumulated error budget and an adaptive interval.",
  source: "Wei et al., arXiv 2508.12691 (MixCache); design: docs/design/mixcache.md",
  knobs: KNOBS(0),
  exact: { budget: 0 },
  build: (config, env) => build("mixcache", config, env?.profilesDir),
});

export const mixcachePlus = defineStrategy({
  name: "mixcache-plus",
  solver: "skip-corrector", // npm run bench:solver: best for its extrapolated reuse on both embedded models
  granularity: "hybrid",
  summary: "MixCache+ : MixCache with first-order extrapolated reuse of every cache (our improvement).",
  source: "MixCache (arXiv 2508.12691) + first-order reuse as in ScalingCache / TaylorSeer",
  knobs: KNOBS(1),
  exact: { budget: 0 },
  build: (config, env) => build("mixcache-plus", config, env?.profilesDir),
});
