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

test("module caches run a block in one fused call, reused residuals fed in: the same bits and accounting as module calls", async () => {
  const { config, weights } = tinyWan(5, { num_layers: 3 });
  const fused = await WanModel.load(config, mapSource(weights), { threads: 1, fusedBlocks: true });
  const modules = await WanModel.load(config, mapSource(weights), { threads: 1, fusedBlocks: false });
  // fused blocks, but no budget for the sessions with given residuals: those blocks run module by module
  const noPartial = await WanModel.load(config, mapSource(weights), { threads: 1, fusedBlocks: true, partialBlocksMaxBytes: 0 });
  assert.ok(fused.fusedBlocks && !modules.fusedBlocks && noPartial.fusedBlocks);
  const r = rng(6);
  const S = 5;
  const cond = { data: randomArray(S * config.text_dim, r), tokens: S };
  const uncond = { data: randomArray(S * config.text_dim, r), tokens: S };
  const shape = { channels: config.in_channels, frames: 2, height: 6, width: 4 };
  const { makeCache } = await import("../src/cache/registry.ts");
  // (FORA and TaylorSeer with modules=all hook the body instead: test/cache_body_form.test.ts)
  const cases = [
    ["pab", { t_lo: -1, t_hi: 1000 }],
    // every module broadcast at the same steps: blocks whose three residuals are all given
    ["pab", { t_lo: -1, t_hi: 1000, sa_range: 2, ca_range: 2, ffn_range: 2 }],
    ["taylorseer", { modules: "attn" }],
    ["fastercache", {}],
  ] as const;
  for (const [name, opts] of cases) {
    const run = async (model: WanModel) => {
      const att = makeCache(name, opts, { profilesDir: "" }).attach();
      let calls = 0, partial = 0, fusedOut = 0, withWeights = 0;
      const orig = model.blockModules.bind(model);
      model.blockModules = async (b, g, h, t, p, plan) => {
        calls++;
        const out = await orig(b, g, h, t, p, plan);
        const given = plan.map((e) => e instanceof Float32Array);
        if (out && given.some((x) => x)) partial++;
        if (out && given.some((x) => x) && given.some((x) => !x)) withWeights++;
        if (out) fusedOut++;
        return out;
      };
      const res = await denoise({ model, cond, uncond, shape, steps: 8, guidance: 4, shift: 3, seed: 3, sampler: "unipc", hooks: att.hooks });
      model.blockModules = orig;
      return { res, calls, partial, fusedOut, withWeights };
    };
    const a = await run(fused), b = await run(modules), c = await run(noPartial);
    const label = `${name} ${JSON.stringify(opts)}`;
    assert.ok(a.calls > 0 && a.fusedOut === a.calls, `${label}: every planned block runs fused`);
    assert.ok(a.partial > 0, `${label}: blocks with reused residuals run fused too`);
    assert.equal(b.fusedOut, 0);
    assert.equal(a.withWeights > 0, !("ffn_range" in opts), `${label}: blocks with reused and computed modules run fused`);
    // (a block whose residuals are all given holds no weights: it fits any budget)
    assert.equal(c.withWeights, 0, `${label}: no session with weights past the budget`);
    for (const [other, what] of [[b, "module calls"], [c, "module calls past the budget"]] as const) {
      const d = maxDiff(a.res.latent, other.res.latent).diff;
      console.log(`  ${label}: fused (${a.partial} of ${a.calls} block calls with given residuals) vs ${what}: max|diff| ${d} (tolerance 0)`);
      assert.deepEqual(a.res.latent, other.res.latent, `${label}: fused vs ${what}`);
      assert.equal(a.res.stats.macsExecuted, other.res.stats.macsExecuted);
      assert.deepEqual(a.res.stats.computed, other.res.stats.computed);
    }
  }
  for (const m of [fused, modules, noPartial]) await m.release();
});

test("one fused call with some residuals given: the kept residuals and the block output equal module calls bit for bit", async () => {
  const { config, model } = await setup();
  const r = rng(12);
  const S = 4;
  const grid = model.gridFor(2, 6, 4);
  const g = await model.prepareGrid(grid);
  const p = await model.encodePrompt({ data: randomArray(S * config.text_dim, r), tokens: S });
  const time = await model.time(431);
  const x = randomArray(g.L * dimOf(config), r);
  const given = randomArray(g.L * dimOf(config), r);
  for (const plan of [["keep", given, "keep"], [given, "compute", "keep"], ["keep", "keep", given], [given, given, given], ["compute", "compute", "compute"]] as const) {
    const got = await model.blockModules(1, g, x, time, p, plan);
    assert.ok(got);
    let h = x;
    const want: (Float32Array | null)[] = [];
    for (let m = 0; m < 3; m++) {
      const e = plan[m];
      const res = e instanceof Float32Array ? e : await model.module(1, m, g, h, time, p);
      want.push(e === "keep" ? res : null);
      const nh = new Float32Array(h.length);
      for (let j = 0; j < h.length; j++) nh[j] = h[j] + res[j];
      h = nh;
    }
    const label = plan.map((e) => (e instanceof Float32Array ? "given" : e)).join(",");
    console.log(`  [${label}]: block output vs module calls max|diff| ${maxDiff(got.out, h).diff} (tolerance 0)`);
    assert.deepEqual(got.out, h, label);
    assert.deepEqual(got.residuals, want, label);
  }
  await model.release();
});

test("a cache with only planModules (no module hook) is asked for every block; computing all of them equals the uncached run", async () => {
  const { config, model } = await setup();
  const r = rng(8);
  const S = 4;
  const cond = { data: randomArray(S * config.text_dim, r), tokens: S };
  const uncond = { data: randomArray(S * config.text_dim, r), tokens: S };
  const shape = { channels: config.in_channels, frames: 2, height: 6, width: 4 };
  const base = { model, cond, uncond, shape, steps: 3, guidance: 4, shift: 3, seed: 5, sampler: "unipc" as const };
  const plain = await denoise(base);
  let planned = 0, kept = 0;
  const hooks: Hooks = {
    planModules: (ctx, b) => (planned++, ctx.blocks[b].modules.map((_, m) => (m === 1 ? "keep" : "compute"))),
    keepModule: () => void kept++,
  };
  const viaPlan = await denoise({ ...base, hooks });
  const calls = base.steps * 2 * config.num_layers;
  assert.equal(planned, calls);
  assert.equal(kept, calls);
  assert.deepEqual(viaPlan.latent, plain.latent);
  assert.deepEqual(viaPlan.stats.computed, plain.stats.computed);
  await model.release();
});
