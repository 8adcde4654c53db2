/**
 * FORA and TaylorSeer (modules=all) reuse every module of a step together, so they run on the body
 * seam: one summed residual (or its Taylor factors) per branch instead of one per module. Here they
 * are compared with plainly written module-by-module versions (the published form: a cached output
 * or a Taylor forecast per module, hooked on the module seam) on a tiny Wan model (sequential
 * blocks, true CFG) and a tiny HunyuanVideo (parallel single-stream blocks). The two forms differ
 * only in how float32 rounds the sum of the residuals: tolerance 1e-5 x (1 + max|ref|) on the
 * final latent, the max difference printed; the accounting (MACs, computed modules) must be
 * identical.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WanModel, mapSource } from "../src/models/wan/model.ts";
import { loadModel } from "../src/models/load.ts";
import { denoise, type DenoiseOptions } from "../src/pipeline/denoise.ts";
import type { Branch, Hooks } from "../src/pipeline/hooks.ts";
import type { DiTModel } from "../src/models/family.ts";
import { makeCache } from "../src/cache/registry.ts";
import { taylorPredict, taylorUpdate } from "../src/cache/strategies/taylorseer.ts";
import { randomArray, rng, tinyWan } from "./support/randomWeights.ts";
import { writeTinyHunyuan } from "./support/writeTinyHunyuan.ts";
import { checkClose } from "./support/compare.ts";

/** FORA as published: every module's output cached at i % N == 0 and returned until the next one. */
function foraPerModule(N: number): Hooks {
  const cached = new Map<string, Float32Array>();
  return {
    async module(ctx, block, mod, h, compute) {
      const key = `${ctx.branch}.${block}.${mod.name}`;
      const c = cached.get(key);
      if (c && ctx.step.index % N !== 0) return c;
      const out = await compute(h);
      cached.set(key, out);
      return out;
    },
  };
}

/** TaylorSeer as published: per module, factors from divided differences, forecast in between. */
function taylorPerModule(N: number, order: number, warmup: number): Hooks {
  const factors = new Map<string, { at: number; f: Float32Array[] }>();
  const last: Record<Branch, number> = { cond: -1, uncond: -1 };
  const decided: Record<Branch, { step: number; full: boolean }> = { cond: { step: -1, full: true }, uncond: { step: -1, full: true } };
  const isFull = (branch: Branch, i: number) => {
    const d = decided[branch];
    if (d.step !== i) {
      d.step = i;
      d.full = i < warmup || last[branch] < 0 || i - last[branch] >= N;
      if (d.full) last[branch] = i;
    }
    return d.full;
  };
  return {
    async module(ctx, block, mod, h, compute) {
      const i = ctx.step.index;
      const key = `${ctx.branch}.${block}.${mod.name}`;
      const e = factors.get(key);
      if (!isFull(ctx.branch, i) && e) return taylorPredict(e.f, i - e.at);
      const out = await compute(h);
      factors.set(key, { at: i, f: taylorUpdate(out, e?.f ?? [], e ? i - e.at : 0, order) });
      return out;
    },
  };
}

/** Video tokens of a latent of frames x height x width. */
function tokensOf(model: DiTModel, [f, h, w]: [number, number, number]): number {
  return model.gridFor(f, h, w).reduce((a, b) => a * b, 1);
}

async function compare(family: string, base: DenoiseOptions, hiddenBytes: number) {
  const cases = [
    { name: "fora", opts: { interval: 3 }, approx: "skip-corrector+order1" as const, ref: foraPerModule(3) },
    { name: "taylorseer", opts: { interval: 3, order: 1, warmup: 2 }, approx: "order1" as const, ref: taylorPerModule(3, 1, 2) },
    { name: "taylorseer", opts: { interval: 4, order: 2, warmup: 1 }, approx: "order1" as const, ref: taylorPerModule(4, 2, 1) },
  ];
  for (const c of cases) {
    const cache = makeCache(c.name, { ...c.opts, solver: c.approx }, { profilesDir: "" });
    const att = cache.attach();
    assert.equal(att.hooks.module, undefined, `${c.name}: every module reused together, so no module hook`);
    const body = await denoise({ ...base, hooks: att.hooks, approx: c.approx });
    const ref = await denoise({ ...base, hooks: c.ref, approx: c.approx });
    checkClose(`${family} ${cache.tag}: body form vs per module`, body.latent, ref.latent, 1e-5, 52);
    assert.ok(body.stats.computeSpeedup > 1.5, `${cache.tag}: it caches (${body.stats.computeSpeedup})`);
    assert.equal(body.stats.macsExecuted, ref.stats.macsExecuted);
    // modules and branches as the per-module form counts them; blocks differ on purpose: there a reuse
    // step still enters every block (to call the module hooks), here it enters none
    assert.deepEqual({ ...body.stats.computed, blocks: 0 }, { ...ref.stats.computed, blocks: 0 });
    assert.deepEqual(body.stats.perStep.map((p) => p.macs), ref.stats.perStep.map((p) => p.macs));
    // one tensor per factor per branch, not one per module
    const factors = c.name === "fora" ? 1 : (c.opts as { order: number }).order + 1;
    assert.equal(att.report().peakBytes, (base.guidance > 1 ? 2 : 1) * factors * hiddenBytes, `${cache.tag}: (O + 1) hidden states per branch`);
  }
}

test("FORA and TaylorSeer on the body seam equal their per-module form within float32 rounding: Wan (sequential blocks, CFG)", async () => {
  const { config, weights } = tinyWan(5, { num_layers: 3 });
  const model = await WanModel.load(config, mapSource(weights), { threads: 1, fusedBlocks: true });
  const r = rng(6);
  const S = 5;
  await compare("wan", {
    model, cond: { data: randomArray(S * config.text_dim, r), tokens: S }, uncond: { data: randomArray(S * config.text_dim, r), tokens: S },
    shape: { channels: config.in_channels, frames: 2, height: 6, width: 4 }, steps: 12, guidance: 4, shift: 3, seed: 3, sampler: "unipc",
  }, tokensOf(model, [2, 6, 4]) * model.dim * 4);
  await model.release();
});

test("FORA and TaylorSeer on the body seam equal their per-module form within float32 rounding: HunyuanVideo (parallel blocks)", async () => {
  const folder = writeTinyHunyuan({ seed: 11 });
  const loaded = await loadModel(folder.dir, { threads: 1 });
  const r = rng(8);
  const D = folder.config.text_embed_dim;
  const pooled = Float32Array.from({ length: folder.config.pooled_projection_dim }, () => r() * 2 - 1);
  await compare("hunyuan", {
    model: loaded.transformer, cond: { data: randomArray(5 * D, r), tokens: 5, pooled },
    shape: { channels: 4, frames: 3, height: 4, width: 6 }, steps: 12, guidance: 1, shift: 7, seed: 5, sampler: "euler", sigmas: "linear", embeddedGuidance: 6,
  }, (tokensOf(loaded.transformer, [3, 4, 6]) + 5) * loaded.transformer.dim * 4); // video tokens + 5 text tokens
  await loaded.release();
});
