/**
 * The denoising loop. We own it (ONNX Runtime cannot patch a module's forward at run time), so
 * every seam a cache needs is a plain function call here: step, CFG branch, body, block, module.
 * See hooks.ts for the seam contract and cache/ for the strategies that use it.
 */
import { ConfigError, MixCacheError } from "../errors.ts";
import { promptMacs, stageMacs } from "../models/wan/macs.ts";
import { MODULES, type BlockKV, type GridState, type WanModel } from "../models/wan/model.ts";
import { makeSampler } from "../schedulers/sampler.ts";
import type { SamplerName } from "../schedulers/types.ts";
import type { Branch, BranchCtx, Hooks, RunInfo, StepInfo } from "./hooks.ts";
import { gaussianNoise } from "./noise.ts";
import { add } from "../tensor/ops.ts";
import { StatsCollector, type RunStats } from "./stats.ts";
import type { LatentShape } from "../models/types.ts";
import type { TextEmbedding } from "../text/types.ts";

export interface DenoiseOptions {
  model: WanModel;
  cond: TextEmbedding;
  /** Negative prompt embedding for CFG (required when guidance > 1). */
  uncond?: TextEmbedding;
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
}

export interface DenoiseResult {
  /** Final latent [C, F, H, W]; for the pixel-space reference model this is the video in [-1, 1]. */
  latent: Float32Array;
  stats: RunStats;
}

interface PromptState {
  S: number;
  kv: BlockKV[];
}

async function encodePrompt(model: WanModel, e: TextEmbedding): Promise<PromptState> {
  if (e.data.length !== e.tokens * model.config.text_dim)
    throw new ConfigError(`text embedding has ${e.data.length} values, expected tokens x text_dim = ${e.tokens} x ${model.config.text_dim}`);
  const ctx = await model.text(e.data, e.tokens);
  const kv: BlockKV[] = [];
  for (let i = 0; i < model.config.num_layers; i++) kv.push(await model.crossKV(i, ctx, e.tokens));
  return { S: e.tokens, kv };
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

export async function denoise(o: DenoiseOptions): Promise<DenoiseResult> {
  const { model, shape } = o;
  const c = model.config;
  if (shape.channels !== c.in_channels) throw new ConfigError(`latent has ${shape.channels} channels, the model takes ${c.in_channels}`);
  if (!(o.guidance >= 1) || !Number.isFinite(o.guidance)) throw new ConfigError(`guidance must be a finite number >= 1, got ${o.guidance}`, "use 1 to disable classifier-free guidance, 5 is the Wan default");
  const cfg = o.guidance > 1;
  if (cfg && !o.uncond) throw new ConfigError("guidance > 1 needs a negative (uncond) text embedding");
  const grid = model.gridFor(shape.frames, shape.height, shape.width);
  const g: GridState = await model.prepareGrid(grid);
  const sampler = makeSampler(o.sampler, { steps: o.steps, shift: o.shift });
  const hooks: Hooks = o.hooks ?? {};
  const stats = new StatsCollector();
  const t0 = performance.now();

  const prompts: Partial<Record<Branch, PromptState>> = { cond: await encodePrompt(model, o.cond) };
  if (cfg) prompts.uncond = await encodePrompt(model, o.uncond!);
  const S = prompts.cond!.S;
  const macs = stageMacs(c, g.L, S);
  const macsUncond = cfg ? stageMacs(c, g.L, prompts.uncond!.S) : macs;
  const n = shape.channels * shape.frames * shape.height * shape.width;
  let x = o.initialLatent ? Float32Array.from(o.initialLatent) : gaussianNoise(n, o.seed);
  if (x.length !== n) throw new ConfigError(`initial latent has ${x.length} values, expected ${n}`);

  const run: RunInfo = {
    steps: o.steps, shape, cfg, numBlocks: c.num_layers, latentSize: n, hiddenSize: g.L * model.dim,
    timesteps: sampler.timesteps, sigmas: sampler.sigmas, macs,
  };
  hooks.beginRun?.(run);

  const branchMacs = (m: typeof macs) => c.num_layers * (m.sa + m.ca + m.ffn) + m.head;
  const fullStepMacs = macs.time + macs.patch + branchMacs(macs) + (cfg ? branchMacs(macsUncond) : 0);

  for (let i = 0; i < o.steps; i++) {
    const step: StepInfo = {
      index: i, count: o.steps, timestep: sampler.timesteps[i], sigma: sampler.sigmas[i], sigmaNext: sampler.sigmas[i + 1],
      guidance: o.guidance, cfg,
    };
    stats.beginStep(i, step.timestep);
    hooks.beginStep?.(step, x);
    const time = await model.time(step.timestep);
    stats.addMacs(macs.time);
    // patch embedding does not depend on the prompt: computed lazily once per step, shared by branches
    let tokens: Float32Array | null = null;
    const getTokens = async () => {
      if (!tokens) {
        tokens = await model.patch(g, x);
        stats.addMacs(macs.patch);
      }
      return tokens;
    };

    const runBranch = async (branch: Branch, condVelocity?: Float32Array): Promise<Float32Array> => {
      const ctx: BranchCtx = { step, branch, numBlocks: c.num_layers, latent: x, time, condVelocity };
      const p = prompts[branch]!;
      const bm = branch === "cond" ? macs : macsUncond;
      const moduleCall = (i: number, kind: (typeof MODULES)[number]) => async (h: Float32Array) => {
        const r = await model.module(kind, i, g, h, time.tproj, p.kv[i], p.S);
        stats.module(kind, bm[kind]);
        return r;
      };
      const blockCompute = (i: number) => async (h: Float32Array) => {
        stats.block();
        for (const kind of MODULES) {
          const compute = moduleCall(i, kind);
          const r = hooks.module ? await hooks.module(ctx, i, kind, h, compute) : await compute(h);
          h = add(h, r); // a new array: h may be held by a cache
        }
        return h;
      };
      const runBlocks = async (from: number, to: number, h: Float32Array) => {
        for (let b = from; b < to; b++) {
          const compute = blockCompute(b);
          h = hooks.block ? await hooks.block(ctx, b, h, compute) : await compute(h);
        }
        return h;
      };
      const compute = async () => {
        stats.branch();
        const h0 = await getTokens();
        const hL = hooks.body ? await hooks.body(ctx, h0, runBlocks) : await runBlocks(0, c.num_layers, h0);
        const v = await model.head(g, hL, time.temb);
        stats.addMacs(macs.head);
        return v;
      };
      return hooks.branch ? hooks.branch(ctx, compute) : compute();
    };

    const vc = await runBranch("cond");
    let v = vc;
    let vu: Float32Array | null = null;
    if (cfg) {
      vu = await runBranch("uncond", vc);
      // v = v_u + g (v_c - v_u)   [diffusers WanPipeline]
      v = new Float32Array(n);
      const gs = o.guidance;
      for (let j = 0; j < n; j++) v[j] = vu[j] + gs * (vc[j] - vu[j]);
    }
    hooks.endStep?.(step, { velocity: v, cond: vc, uncond: vu, latent: x });
    x = sampler.step(i, x, v); // a new array: strategies may hold the previous latent
    checkFinite(x, step, o.guidance);
    stats.endStep();
    o.onStep?.(i + 1, o.steps);
  }
  hooks.endRun?.();

  const fullSteps = o.fullSteps ?? o.steps;
  const macsFull = fullStepMacs * fullSteps;
  const nb = cfg ? 2 : 1;
  const total = { branches: fullSteps * nb, blocks: fullSteps * nb * c.num_layers, modules: fullSteps * nb * c.num_layers * 3 };
  const computed = { branches: stats.branches, blocks: stats.blocks, modules: stats.modules, modulesByKind: { ...stats.byKind } };
  const result: RunStats = {
    steps: fullSteps,
    branchesPerStep: nb,
    numBlocks: c.num_layers,
    macsFull,
    macsExecuted: stats.macs,
    computeSpeedup: macsFull / Math.max(1, stats.macs),
    macsPrompt: promptMacs(c, S) + (cfg ? promptMacs(c, prompts.uncond!.S) : 0),
    computed,
    total,
    reused: { branches: total.branches - computed.branches, blocks: total.blocks - computed.blocks, modules: total.modules - computed.modules },
    perStep: stats.perStep,
    wallMs: performance.now() - t0,
  };
  return { latent: x, stats: result };
}
