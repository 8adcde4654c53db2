/**
 * The fused block path (one onnxruntime session per block, residual adds inside the graph) against
 * the module-by-module path (a session per module, residual adds in JS): the same operations, so
 * the outputs must agree bit for bit (tolerance 0), and each path must repeat itself bit for bit.
 * Through the loop: an uncached run (fused) equals a run whose strategy hooks every module and
 * always computes (module path), and the stats count the same blocks, modules and MACs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WanModel, mapSource, MODULES } from "../src/models/wan/model.ts";
import { dimOf } from "../src/models/wan/config.ts";
import { denoise } from "../src/pipeline/denoise.ts";
import type { Hooks } from "../src/pipeline/hooks.ts";
import { randomArray, rng, tinyWan } from "./support/randomWeights.ts";
import { maxDiff } from "./support/compare.ts";

async function setup(overrides: Record<string, unknown> = {}) {
  const { config, weights } = tinyWan(5, { num_layers: 3, ...overrides });
  const model = await WanModel.load(config, mapSource(weights), { threads: 1, fusedBlocks: true });
  assert.ok(model.fusedBlocks);
  return { config, model };
}

test("fused block sessions equal the module sessions bit for bit, and repeat bit for bit", async () => {
  const { config, model } = await setup();
  const r = rng(9);
  const S = 6;
  const grid = model.gridFor(4, 6, 8);
  const g = await model.prepareGrid(grid);
  const ctx = await model.text(randomArray(S * config.text_dim, r), S);
  const kv = [];
  for (let i = 0; i < config.num_layers; i++) kv.push(await model.crossKV(i, ctx, S));
  const time = await model.time(612.5);
  const x = randomArray(g.L * dimOf(config), r);
  const fused = await model.runBlockRange(0, config.num_layers, g, x, time.tproj, kv, S);
  const again = await model.runBlockRange(0, config.num_layers, g, x, time.tproj, kv, S);
  let h = x;
  for (let i = 0; i < config.num_layers; i++)
    for (const m of MODULES) {
      const res = await model.runModule(m, i, g, h, time.tproj, kv[i], S);
      const nh = new Float32Array(h.length);
      for (let j = 0; j < h.length; j++) nh[j] = h[j] + res[j];
      h = nh;
    }
  const { diff, scale } = maxDiff(fused, h);
  console.log(`  fused blocks vs modules: max|diff| ${diff} (max|h| ${scale.toFixed(3)}; tolerance 0)`);
  assert.equal(diff, 0);
  assert.deepEqual(again, fused);
  await model.release();
});

test("the loop: uncached (fused) run equals a module-hooked run bit for bit, with the same accounting", async () => {
  const { config, model } = await setup();
  const r = rng(4);
  const S = 5;
  const cond = { data: randomArray(S * config.text_dim, r), tokens: S };
  const uncond = { data: randomArray(S * config.text_dim, r), tokens: S };
  const shape = { channels: config.in_channels, frames: 2, height: 6, width: 4 };
  const base = { model, cond, uncond, shape, steps: 4, guidance: 4, shift: 3, seed: 3, sampler: "unipc" as const };
  const plain = await denoise(base);
  const plain2 = await denoise(base);
  let moduleCalls = 0;
  const moduleHooks: Hooks = { module: async (_c, _b, _m, h, compute) => (moduleCalls++, compute(h)) };
  const viaModules = await denoise({ ...base, hooks: moduleHooks });
  const blockHooks: Hooks = { block: async (_c, _b, h, compute) => compute(h) };
  const viaBlocks = await denoise({ ...base, hooks: blockHooks });
  const d = maxDiff(viaModules.latent, plain.latent).diff;
  console.log(`  loop: fused vs module path max|diff| ${d}, fused (block hook) vs fused range ${maxDiff(viaBlocks.latent, plain.latent).diff} (tolerance 0)`);
  assert.ok(moduleCalls > 0);
  assert.equal(d, 0);
  assert.deepEqual(viaBlocks.latent, plain.latent);
  assert.deepEqual(plain2.latent, plain.latent);
  for (const s of [viaModules.stats, viaBlocks.stats]) {
    assert.equal(s.macsExecuted, plain.stats.macsExecuted);
    assert.deepEqual(s.computed, plain.stats.computed);
    assert.deepEqual(s.perStep.map((p) => [p.macs, p.modulesComputed, p.blocksComputed]), plain.stats.perStep.map((p) => [p.macs, p.modulesComputed, p.blocksComputed]));
  }
  await model.release();
});

test("module caches that compute a whole block take its residuals from one fused call: the same bits and accounting as module calls", async () => {
  const { config, weights } = tinyWan(5, { num_layers: 3 });
  const fused = await WanModel.load(config, mapSource(weights), { threads: 1, fusedBlocks: true });
  const modules = await WanModel.load(config, mapSource(weights), { threads: 1, fusedBlocks: false });
  assert.ok(fused.fusedBlocks && !modules.fusedBlocks);
  const r = rng(6);
  const S = 5;
  const cond = { data: randomArray(S * config.text_dim, r), tokens: S };
  const uncond = { data: randomArray(S * config.text_dim, r), tokens: S };
  const shape = { channels: config.in_channels, frames: 2, height: 6, width: 4 };
  const { makeCache } = await import("../src/cache/registry.ts");
  // (FORA and TaylorSeer with modules=all hook the body instead: test/cache_body_form.test.ts)
  for (const [name, opts] of [["pab", { t_lo: -1, t_hi: 1000 }], ["taylorseer", { modules: "attn" }], ["fastercache", {}]] as const) {
    const run = async (model: WanModel) => {
      const att = makeCache(name, opts, { profilesDir: "" }).attach();
      let residualCalls = 0;
      const orig = model.blockModules.bind(model);
      model.blockModules = async (...a) => (residualCalls++, orig(...a));
      const res = await denoise({ model, cond, uncond, shape, steps: 8, guidance: 4, shift: 3, seed: 3, sampler: "unipc", hooks: att.hooks });
      model.blockModules = orig;
      return { res, residualCalls };
    };
    const a = await run(fused), b = await run(modules);
    assert.ok(a.residualCalls > 0, `${name}: the fused residual call is used`);
    assert.deepEqual(a.res.latent, b.res.latent, `${name}: fused residuals vs module calls`);
    assert.equal(a.res.stats.macsExecuted, b.res.stats.macsExecuted);
    assert.deepEqual(a.res.stats.computed, b.res.stats.computed);
  }
  await fused.release();
  await modules.release();
});
