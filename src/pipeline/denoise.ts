/**
 * The denoising loop. We own it (ONNX Runtime cannot patch a module's forward at run time), so
 * every seam a cache needs is a plain function call here: step, CFG branch, body, block, module.
 * See hooks.ts for the seam contract and cache/ for the strategies that use it.
 */
import { ConfigError, MixCacheError } from "../errors.ts";
import type { DiTModel, FamilyMacs, GridHandle, PromptHandle, PromptInput } from "../models/family.ts";
import { makeSampler } from "../schedulers/sampler.ts";
import type { ApproxMode, SamplerName, SigmaSchedule } from "../schedulers/types.ts";
import type { Branch, BranchCtx, Hooks, RunInfo, StepInfo } from "./hooks.ts";
import { gaussianNoise } from "./noise.ts";
import { addLarge } from "../graph/elementwise.ts";
import { StatsCollector, type RunStats } from "./stats.ts";
import type { LatentShape } from "../models/types.ts";

export interface DenoiseOptions {
  model: DiTModel;
  cond: PromptInput;
  /** Negative prompt embedding for CFG (required when guidance > 1). */
  uncond?: PromptInput;
  shape: LatentShape;
  steps: number;
  guidance: number;
  shift: number;
  seed: number;
  sampler: SamplerName;
  hooks?: Hooks;
  /** Called after every step (progress bars). */
  onStep?: (done: number, total: number) => void;
  /** Steps of the uncached run this one is compared with (default: steps). `fewer-steps` runs
   * fewer sampler steps than the user asked for; compute is accounted against the full count. */
  fullSteps?: number;
  /** Use this latent instead of the seeded noise (tests). */
  initialLatent?: Float32Array;
  /** The value the family's guidance embedding receives (HunyuanVideo's distilled guidance);
   * ignored by families without one. Default: `guidance`. */
  embeddedGuidance?: number;
  /** Sigma grid (default: the sampler's own; "linear": HunyuanVideoPipeline's Euler grid). */
  sigmas?: SigmaSchedule;
  /** What UniPC does at a step a cache made approximate (default "keep"; schedulers/types.ts). */
  approx?: ApproxMode;
  /** Wan2.2 two experts: `model` runs while the timestep >= `boundary` (boundary_ratio x 1000), then
   * this model with its own hooks (a cache attached per expert) and guidance (guidance_2). */
  expert2?: { model: DiTModel; boundary: number; guidance?: number; hooks?: Hooks };
}

export interface DenoiseResult {
  /** Final latent [C, F, H, W]; for the pixel-space reference model this is the video in [-1, 1]. */
  latent: Float32Array;
  stats: RunStats;
}

/**
 * Stop at the first step whose latent holds NaN or Inf (bad weights, an overflowing guidance), so
 * no black video is written as a success. One read-only pass: a float64 sum of float32 values is
 * finite exactly when every value is (n x 3.4e38 stays far below 1.8e308), so the values and the
 * bit-exactness of cached vs uncached runs are untouched.
 */
function checkFinite(x: Float32Array, step: StepInfo, guidance: number): void {
  let sum = 0;
  for (let j = 0; j < x.length; j++) sum += x[j];
  if (Number.isFinite(sum)) return;
  let bad = 0;
  for (let j = 0; j < x.length; j++) if (!Number.isFinite(x[j])) bad++;
  throw new MixCacheError(
    "RUNTIME",
    `the latent became non-finite at step ${step.index + 1} of ${step.count} (timestep ${step.timestep.toFixed(1)}): ${bad} of ${x.length} values are NaN or Inf; nothing was written`,
    guidance > 20
      ? `guidance ${guidance} is far above the usual range (Wan2.1 uses 5): use a moderate --guidance`
      : "the model's weights or this input produce NaN/Inf: check the checkpoint for NaN/Inf values (re-export it) or try another --guidance / --shift",
  );
}

/** v = v_u + g (v_c - v_u) as a new array [diffusers WanPipeline]. A function of its own: the loop
 * body is too large for the optimising compiler to treat this loop well inside it. */
function guide(vu: Float32Array, vc: Float32Array, g: number): Float32Array {
  const n = vu.length;
  const v = new Float32Array(n);
  for (let j = 0; j < n; j++) v[j] = vu[j] + g * (vc[j] - vu[j]);
  return v;
}

/** A stretch of steps run by one transformer (Wan2.2: the high-noise expert, then the low-noise one). */
interface Phase {
  model: DiTModel;
  hooks: Hooks;
  from: number;
  to: number;
  guidance: number;
  g: GridHandle;
  prompts: Partial<Record<Branch, PromptHandle>>;
  macs: Record<Branch, FamilyMacs>;
  fullStepMacs: number;
}

export async function denoise(o: DenoiseOptions): Promise<DenoiseResult> {
  const { model, shape } = o;
  if (shape.channels !== model.inChannels) throw new ConfigError(`latent has ${shape.channels} channels, the model takes ${model.inChannels}`);
  if (!(o.guidance >= 1) || !Number.isFinite(o.guidance)) throw new ConfigError(`guidance must be a finite number >= 1, got ${o.guidance}`, "use 1 to disable classifier-free guidance, 5 is the Wan default");
  const cfg = o.guidance > 1;
  if (cfg && !o.uncond) throw new ConfigError("guidance > 1 needs a negative (uncond) text embedding");
  const e2 = o.expert2;
  if (e2 && (e2.model.blocks.length !== model.blocks.length || e2.model.inChannels !== model.inChannels))
    throw new ConfigError("the second expert must have the first one's architecture (blocks, channels)", "use transformer/ and transformer_2/ of the same Wan2.2 checkpoint");
  const blocks = model.blocks;
  const numBlocks = blocks.length;
  const grid = model.gridFor(shape.frames, shape.height, shape.width);
  const sampler = makeSampler(o.sampler, { steps: o.steps, shift: o.shift, sigmas: o.sigmas, approx: o.approx });
  const stats = new StatsCollector(model.blocks.flatMap((b) => b.modules.map((m) => m.name)));
  const t0 = performance.now();
  const n = shape.channels * shape.frames * shape.height * shape.width;
  let x = o.initialLatent ? Float32Array.from(o.initialLatent) : gaussianNoise(n, o.seed);
  if (x.length !== n) throw new ConfigError(`initial latent has ${x.length} values, expected ${n}`);
  const branchMacs = (m: FamilyMacs) => m.branchIn + m.module.reduce((a, row) => a + row.reduce((x, y) => x + y, 0), 0) + m.head;
  const modulesPerBranch = blocks.reduce((a, b) => a + b.modules.length, 0);
  const embeddedGuidance = o.embeddedGuidance ?? o.guidance;

  // Wan2.2 (diffusers WanPipeline): the first model while t >= boundary, then the second, whose
  // guidance is guidance_2 (default: guidance); CFG runs in both when guidance > 1
  let switchAt = o.steps;
  if (e2) for (let i = 0; i < o.steps; i++) if (sampler.timesteps[i] < e2.boundary) { switchAt = i; break; }
  const parts: Array<{ model: DiTModel; hooks: Hooks; from: number; to: number; guidance: number }> = [
    { model, hooks: o.hooks ?? {}, from: 0, to: switchAt, guidance: o.guidance },
    ...(e2 ? [{ model: e2.model, hooks: e2.hooks ?? {}, from: switchAt, to: o.steps, guidance: e2.guidance ?? o.guidance }] : []),
  ].filter((p) => p.to > p.from);
  const phases: Phase[] = [];
  for (const p of parts) {
    const g = await p.model.prepareGrid(grid);
    const prompts: Partial<Record<Branch, PromptHandle>> = { cond: await p.model.encodePrompt(o.cond) };
    if (cfg) prompts.uncond = await p.model.encodePrompt(o.uncond!);
    const macs: Record<Branch, FamilyMacs> = { cond: p.model.macs(g, prompts.cond!), uncond: p.model.macs(g, prompts.uncond ?? prompts.cond!) };
    const fullStepMacs = macs.cond.time + macs.cond.patch + branchMacs(macs.cond) + (cfg ? branchMacs(macs.uncond) : 0);
    phases.push({ ...p, g, prompts, macs, fullStepMacs });
  }

  for (const ph of phases) {
    const { model: pm, hooks, g, prompts, macs, from, to } = ph;
    // each phase's caches see a run of their own: steps from - to - 1 re-indexed from 0, so a
    // strategy keeps its state (and warm-up, interval, calibration) per expert
    const run: RunInfo = {
      steps: to - from, shape, cfg, numBlocks, blocks, latentSize: n,
      timesteps: sampler.timesteps.subarray(from, to), sigmas: sampler.sigmas.subarray(from, to + 1), macs: macs.cond,
    };
    hooks.beginRun?.(run);
    for (let i = from; i < to; i++) {
      const step: StepInfo = {
        index: i - from, count: to - from, timestep: sampler.timesteps[i], sigma: sampler.sigmas[i], sigmaNext: sampler.sigmas[i + 1],
        guidance: ph.guidance, cfg,
      };
      stats.beginStep(i, step.timestep);
      hooks.beginStep?.(step, x);
      const time = await pm.time(step.timestep, embeddedGuidance);
      stats.addMacs(macs.cond.time);
      // patch embedding does not depend on the prompt: computed lazily once per step, shared by branches
      let tokens: Float32Array | null = null;
      const getTokens = async () => {
        if (!tokens) {
          tokens = await pm.patch(g, x);
          stats.addMacs(macs.cond.patch);
        }
        return tokens;
      };

      const runBranch = async (branch: Branch, condVelocity?: Float32Array): Promise<Float32Array> => {
        const ctx: BranchCtx = { step, branch, numBlocks, blocks, latent: x, time, condVelocity };
        const p = prompts[branch]!;
        const bm = macs[branch];
        let btime = time; // the branch's conditioning, set by branchIn before any block runs
        const moduleCall = (b: number, m: number) => async (h: Float32Array) => {
          const r = await pm.module(b, m, g, h, btime, p);
          stats.module(blocks[b].modules[m].name, bm.module[b][m]);
          return r;
        };
        const blockCompute = (b: number) => async (hIn: Float32Array) => {
          stats.block();
          const decl = blocks[b];
          const mods = decl.modules;
          // a module cache that decides per block: the modules it reuses are given, the others are
          // computed, all in one fused call where the family has one
          const plan = hooks.planModules && !decl.parallel ? await hooks.planModules(ctx, b) : null;
          if (plan) {
            const fused = pm.blockModules ? await pm.blockModules(b, g, hIn, btime, p, plan) : null;
            let h = hIn;
            for (let m = 0; m < mods.length; m++) {
              const e = plan[m];
              let r: Float32Array | null = null;
              if (e instanceof Float32Array) r = e;
              else {
                stats.module(mods[m].name, bm.module[b][m]);
                if (!fused) r = await pm.module(b, m, g, h, btime, p);
                else if (e === "keep") r = fused.residuals[m];
                if (e === "keep") hooks.keepModule?.(ctx, b, mods[m], r!);
              }
              if (!fused) h = await addLarge(h, r!); // a new array: h may be held by a cache
            }
            return fused ? fused.out : h;
          }
          let h = hIn;
          for (let m = 0; m < mods.length; m++) {
            const compute = moduleCall(b, m);
            const input = decl.parallel ? hIn : h; // parallel modules all read the block input
            const r = hooks.module ? await hooks.module(ctx, b, mods[m], input, compute) : await compute(input);
            h = await addLarge(h, r); // a new array: h may be held by a cache
          }
          return h;
        };
        // where no strategy hooks a module, the family may run whole blocks (or, with no block hook
        // either, the whole range) in one call; stats count the same blocks, modules and MACs
        const fusedRun = !hooks.module && !hooks.planModules && pm.runBlocks ? pm.runBlocks.bind(pm) : null;
        const countBlocks = (a: number, z: number) => {
          for (let b = a; b < z; b++) {
            stats.block();
            blocks[b].modules.forEach((m, j) => stats.module(m.name, bm.module[b][j]));
          }
        };
        const fusedCompute = (b: number) => async (hIn: Float32Array) => {
          const h = await fusedRun!(b, b + 1, g, hIn, btime, p);
          countBlocks(b, b + 1);
          return h;
        };
        const runBlocks = async (a: number, z: number, h: Float32Array) => {
          if (fusedRun && !hooks.block) {
            const out = await fusedRun(a, z, g, h, btime, p);
            countBlocks(a, z);
            return out;
          }
          for (let b = a; b < z; b++) {
            const compute = fusedRun ? fusedCompute(b) : blockCompute(b);
            h = hooks.block ? await hooks.block(ctx, b, h, compute) : await compute(h);
          }
          return h;
        };
        const compute = async () => {
          stats.branch();
          const input = await pm.branchIn(g, await getTokens(), time, p, step.timestep);
          stats.addMacs(bm.branchIn);
          btime = input.time;
          const hL = hooks.body ? await hooks.body(ctx, input.h, runBlocks) : await runBlocks(0, numBlocks, input.h);
          const v = await pm.head(g, hL, btime, p);
          stats.addMacs(bm.head);
          return v;
        };
        return hooks.branch ? hooks.branch(ctx, compute) : compute();
      };

      const vc = await runBranch("cond");
      let v = vc;
      let vu: Float32Array | null = null;
      if (cfg) {
        vu = await runBranch("uncond", vc);
        v = guide(vu, vc, ph.guidance);
      }
      hooks.endStep?.(step, { velocity: v, cond: vc, uncond: vu, latent: x });
      // a step that executed less than the full step's compute has an approximate velocity
      const approximate = hooks.approximate?.(step) ?? stats.stepMacs < ph.fullStepMacs;
      x = sampler.step(i, x, v, undefined, { approximate }); // a new array: strategies may hold the previous latent
      checkFinite(x, { ...step, index: i, count: o.steps }, ph.guidance);
      stats.endStep();
      o.onStep?.(i + 1, o.steps);
    }
    hooks.endRun?.();
  }
  const fullStepMacs = phases[0].fullStepMacs;

  const fullSteps = o.fullSteps ?? o.steps;
  const macsFull = fullStepMacs * fullSteps;
  const nb = cfg ? 2 : 1;
  const total = { branches: fullSteps * nb, blocks: fullSteps * nb * numBlocks, modules: fullSteps * nb * modulesPerBranch };
  const computed = { branches: stats.branches, blocks: stats.blocks, modules: stats.modules, modulesByKind: { ...stats.byKind } };
  const result: RunStats = {
    steps: fullSteps,
    branchesPerStep: nb,
    numBlocks,
    macsFull,
    macsExecuted: stats.macs,
    computeSpeedup: macsFull / Math.max(1, stats.macs),
    macsPrompt: phases.reduce((a, ph) => a + ph.macs.cond.prompt + (cfg ? ph.macs.uncond.prompt : 0), 0),
    computed,
    total,
    reused: { branches: total.branches - computed.branches, blocks: total.blocks - computed.blocks, modules: total.modules - computed.modules },
    perStep: stats.perStep,
    wallMs: performance.now() - t0,
  };
  return { latent: x, stats: result };
}
