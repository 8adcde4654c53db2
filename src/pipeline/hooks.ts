/**
 * The seams of the denoising loop. A cache strategy implements some of these "around" hooks; each
 * receives a `compute` callback and may call it (compute for real), skip it and return a
 * substitute (reuse), or call it and remember the result. The pipeline never knows which strategy
 * is attached; with no hooks (the `none` strategy) every call is computed.
 *
 *   step:    beginStep -> [branch cond, branch uncond] -> guidance -> sampler -> endStep
 *   branch:  (shared tokens h0) -> body -> head -> velocity
 *   body:    block 0 .. L-1
 *   block:   its modules in order (Wan: sa -> ca -> ffn; each module returns its residual and the
 *            block adds it) or, for a parallel block, every module on the block input
 *
 * Blocks and modules are the family's declarations (models/family.ts): strategies pick modules by
 * role (self-attn, cross-attn, joint-attn, mlp), never by a family's names.
 */
import type { BlockDecl, FamilyMacs, ModuleDecl, ModulePlan, TimeOut } from "../models/family.ts";

export type { ModulePlan };
import type { LatentShape } from "../models/types.ts";
import type { ApproxMode } from "../schedulers/types.ts";

export type Branch = "cond" | "uncond";

export interface RunInfo {
  steps: number;
  /** Latent shape [C, F, H, W] (frequency-domain caches need it). */
  shape: LatentShape;
  cfg: boolean;
  numBlocks: number;
  /** The family's blocks and their modules. */
  blocks: readonly BlockDecl[];
  /** Elements in a latent. */
  latentSize: number;
  timesteps: Float64Array;
  sigmas: Float64Array;
  /** Exact MACs per call (cond branch), for strategies that plan compute. */
  macs: FamilyMacs;
}

export interface StepInfo {
  index: number;
  count: number;
  timestep: number;
  sigma: number;
  sigmaNext: number;
  guidance: number;
  cfg: boolean;
}

export interface BranchCtx {
  step: StepInfo;
  branch: Branch;
  /** Number of transformer blocks. */
  numBlocks: number;
  blocks: readonly BlockDecl[];
  /** The latent this step denoises (the model input), [C, F, H, W]. */
  latent: Float32Array;
  /** Time-path outputs of this step (shared by both branches; a family's per-branch additions,
   * such as HunyuanVideo's pooled text, are not in it). */
  time: TimeOut;
  /** Velocity of the cond branch when this is the uncond branch of the same step. */
  condVelocity?: Float32Array;
}

/** What a step produced, handed to `endStep`: the guided velocity, each branch's, and the step's input latent. */
export interface StepOutputs {
  velocity: Float32Array;
  cond: Float32Array;
  uncond: Float32Array | null;
  latent: Float32Array;
}

/** Run a range of blocks [from, to) on hidden state h (returns a new array). */
export type BlockRunner = (from: number, to: number, h: Float32Array) => Promise<Float32Array>;

export interface Hooks {
  beginRun?(run: RunInfo): void;
  beginStep?(step: StepInfo, latent: Float32Array): void;
  /** Around a whole CFG branch (embedding lookup, body, head): returns the branch velocity. */
  branch?(ctx: BranchCtx, compute: () => Promise<Float32Array>): Promise<Float32Array>;
  /** Around the transformer body: h0 (tokens after patch embedding) -> hidden state after the last block. */
  body?(ctx: BranchCtx, h0: Float32Array, runBlocks: BlockRunner): Promise<Float32Array>;
  /** Around one block: h_in -> h_out. */
  block?(ctx: BranchCtx, index: number, h: Float32Array, compute: (h: Float32Array) => Promise<Float32Array>): Promise<Float32Array>;
  /** Around one module: h -> residual contribution. Cache keys use `mod.name` (unique within a
   * block); `mod.role` says what it does. */
  module?(ctx: BranchCtx, block: number, mod: ModuleDecl, h: Float32Array, compute: (h: Float32Array) => Promise<Float32Array>): Promise<Float32Array>;
  /**
   * A module-level cache decides, before block `index` runs, what each of its modules does this
   * time (ModulePlan): reuse a residual, compute and keep it, or just compute. The decision, its
   * bookkeeping and the reused value all happen here, once; the loop then runs the block (in one
   * fused call with the reused residuals fed in where the family has one: models/family.ts
   * blockModules) and hands each "keep" residual to `keepModule`. A cache with this hook is not
   * asked `module` for sequential blocks; parallel blocks (all modules read the block input) still
   * go through `module`.
   */
  planModules?(ctx: BranchCtx, index: number): readonly ModulePlan[] | Promise<readonly ModulePlan[]>;
  /** The residual of a module `planModules` marked "keep", after the block ran. */
  keepModule?(ctx: BranchCtx, index: number, mod: ModuleDecl, residual: Float32Array): void;
  /** Whether this step's velocity is approximate, for the sampler's `approx` mode (default: the
   * step executed less than a full step's compute). Replays of exact velocities say false. */
  approximate?(step: StepInfo): boolean | undefined;
  /** After guidance, before the sampler update. */
  endStep?(step: StepInfo, out: StepOutputs): void;
  endRun?(): void;
}

// ---------------------------------------------------------------------------------------------
// What a run attaches through the seams: a cache strategy (implemented in cache/, consumed by
// generate()). Declared here so the pipeline never imports the layer above it.

export type Granularity = "none" | "step" | "cfg" | "block" | "module" | "hybrid";

export interface TraceRow {
  step: number;
  timestep: number;
  action: string;
  [field: string]: unknown;
}

export interface CacheReport {
  name: string;
  tag: string;
  config: Record<string, unknown>;
  /** Peak bytes of tensors held by the cache during the run. */
  peakBytes: number;
  trace: TraceRow[];
  /** Strategy-specific counters (e.g. skipped steps per branch). */
  counters: Record<string, number>;
  warnings: string[];
}

export interface AttachedCache {
  hooks: Hooks;
  report(): CacheReport;
}

export interface CacheStrategy {
  readonly name: string;
  readonly granularity: Granularity;
  readonly config: Readonly<Record<string, unknown>>;
  readonly tag: string;
  /** Steps actually sampled when the strategy changes the schedule (fewer-steps); else undefined. */
  readonly stepsOverride?: (steps: number) => number;
  /**
   * Set when the strategy was made without a model folder (makeCache without profilesDir): the
   * same strategy and options built for a model's cache_profiles/. generate() calls it with the
   * model it runs on, so a cache reads that model's calibration instead of none (MixCache impact
   * factors 1) or another model's (TeaCache's Wan2.1-1.3B coefficients).
   */
  readonly forModel?: (env: StrategyEnv) => CacheStrategy;
  /** What UniPC does at a step this cache made approximate (its `solver` knob; default "keep"). */
  readonly approx?: ApproxMode;
  attach(): AttachedCache;
}

/** What a strategy may read from the model folder (calibration profiles). A loaded model is one. */
export interface StrategyEnv {
  profilesDir?: string;
}
