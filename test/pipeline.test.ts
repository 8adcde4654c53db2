import type { WanConfig } from "../src/models/wan/config.ts";
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { gaussianNoise } from "../src/pipeline/noise.ts";
import { makeCache } from "../src/cache/registry.ts";
import { stepMacs } from "../src/models/wan/macs.ts";
import { makeTinyModelDir } from "./support/tinyModel.ts";

const PROMPT = "a red circle moving right on a black background";

test("seeded noise is reproducible and standard normal", () => {
  const a = gaussianNoise(20001, 42);
  assert.deepEqual(a, gaussianNoise(20001, 42));
  assert.notDeepEqual(a, gaussianNoise(20001, 43));
  let m = 0, v = 0;
  for (const x of a) m += x;
  m /= a.length;
  for (const x of a) v += (x - m) ** 2;
  v /= a.length;
  assert.ok(Math.abs(m) < 0.03 && Math.abs(v - 1) < 0.05, `mean ${m}, var ${v}`);
  assert.throws(() => gaussianNoise(4, -1), /seed/);
});

test("generate: same prompt, seed and settings reproduce bit for bit; accounting is exact", async () => {
  const model = await loadModel(makeTinyModelDir(), { threads: 1 });
  try {
    const a = await generate({ model, prompt: PROMPT, seed: 3, steps: 6 });
    const b = await generate({ model, prompt: PROMPT, seed: 3, steps: 6 });
    const c = await generate({ model, prompt: PROMPT, seed: 4, steps: 6 });
    assert.deepEqual(a.video.data, b.video.data);
    assert.notDeepEqual(a.video.data, c.video.data);
    assert.ok(a.video.data.every(Number.isFinite));
    const s = a.stats;
    const L = 3 * 4 * 4;
    assert.equal(s.macsFull, 6 * stepMacs(model.config as WanConfig, L, 10, true));
    assert.equal(s.macsExecuted, s.macsFull);
    assert.equal(s.computeSpeedup, 1);
    assert.deepEqual(s.computed, { branches: 12, blocks: 48, modules: 144, modulesByKind: { sa: 48, ca: 48, ffn: 48 } });
    assert.deepEqual(s.reused, { branches: 0, blocks: 0, modules: 0 });
    assert.equal(s.perStep.length, 6);
    assert.equal(s.perStep.reduce((x, p) => x + p.macs, 0), s.macsExecuted);
    // the `none` strategy is the uncached path
    const n = await generate({ model, prompt: PROMPT, seed: 3, steps: 6, cache: makeCache("none") });
    assert.deepEqual(n.video.data, a.video.data);
    // guidance 1 runs one branch
    const g1 = await generate({ model, prompt: PROMPT, seed: 3, steps: 2, guidance: 1 });
    assert.equal(g1.stats.computed.branches, 2);
    assert.equal(g1.stats.macsFull, 2 * stepMacs(model.config as WanConfig, L, 10, false));
  } finally {
    await model.release();
  }
});

test("fewer-steps runs N' steps and accounts against N", async () => {
  const model = await loadModel(makeTinyModelDir(), { threads: 1 });
  try {
    const r = await generate({ model, prompt: PROMPT, seed: 1, steps: 8, cache: makeCache("fewer-steps", { speedup: 2 }) });
    assert.equal(r.stats.perStep.length, 4);
    assert.ok(Math.abs(r.stats.computeSpeedup - 2) < 0.01, `speedup ${r.stats.computeSpeedup}`);
    assert.equal(r.stats.computed.modules + r.stats.reused.modules, r.stats.total.modules);
  } finally {
    await model.release();
  }
});

test("a word outside the vocabulary is a clear error listing the vocabulary", async () => {
  const model = await loadModel(makeTinyModelDir(), { threads: 1 });
  try {
    await assert.rejects(generate({ model, prompt: "a purple circle", steps: 1 }), (e: Error) => /purple/.test(e.message) && /use only these words: a red blue/.test(e.message));
  } finally {
    await model.release();
  }
});
