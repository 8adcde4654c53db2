/**
 * One contract suite run against every registered cache strategy (diffusers CacheTesterMixin in
 * spirit): exact options reproduce the uncached output bit for bit; outputs are finite; computed +
 * reused add up at every level; the same seed twice gives identical output (no state leaks between
 * runs); bad options fail with a message listing the valid ones.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { loadModel, type LoadedModel } from "../src/models/load.ts";
import { generate, type GenerateOptions } from "../src/pipeline/generate.ts";
import { STRATEGIES, makeCache } from "../src/cache/registry.ts";
import { ConfigError } from "../src/errors.ts";
import { makeTinyModelDir } from "./support/tinyModel.ts";

let model: LoadedModel;
let reference: Float32Array;
const base = (): Omit<GenerateOptions, "model"> => ({ prompt: "a red circle moving right on a black background", seed: 5, steps: 10 });

before(async () => {
  model = await loadModel(makeTinyModelDir(21), { threads: 1 });
  reference = (await generate({ model, ...base() })).video.data;
});
after(async () => {
  await model.release();
});

for (const def of STRATEGIES) {
  test(`${def.name}: exact options ${JSON.stringify(def.exact)} reproduce the uncached output bit for bit`, async () => {
    const cache = makeCache(def.name, def.exact, { profilesDir: model.profilesDir });
    const r = await generate({ model, ...base(), cache });
    assert.equal(r.video.data.length, reference.length);
    let diff = 0;
    for (let i = 0; i < reference.length; i++) diff = Math.max(diff, Math.abs(r.video.data[i] - reference[i]));
    assert.equal(diff, 0, `max |diff| ${diff}`);
    assert.equal(r.stats.computeSpeedup, 1);
  });

  test(`${def.name}: defaults give finite output, exact accounting, and no state leaks between runs`, async () => {
    const cache = makeCache(def.name, {}, { profilesDir: model.profilesDir });
    const a = await generate({ model, ...base(), cache });
    assert.ok(a.video.data.every(Number.isFinite), "non-finite output");
    const s = a.stats;
    for (const level of ["branches", "blocks", "modules"] as const) {
      assert.equal(s.computed[level] + s.reused[level], s.total[level], `${level} computed + reused != total`);
      assert.ok(s.computed[level] >= 0 && s.reused[level] >= 0);
    }
    assert.equal(s.computed.modules, s.computed.modulesByKind.sa + s.computed.modulesByKind.ca + s.computed.modulesByKind.ffn);
    assert.equal(s.perStep.reduce((x, p) => x + p.macs, 0), s.macsExecuted);
    assert.ok(s.macsExecuted <= s.macsFull);
    assert.ok(s.computeSpeedup >= 1);
    assert.ok(a.cache && a.cache.tag === cache.tag && a.cache.peakBytes >= 0);
    // another prompt in between must not change a repeat of the first run
    await generate({ model, ...base(), prompt: "a blue square moving left on a black background", seed: 9, cache });
    const b = await generate({ model, ...base(), cache });
    assert.deepEqual(b.video.data, a.video.data);
    assert.equal(b.stats.macsExecuted, a.stats.macsExecuted);
  });

  test(`${def.name}: bad options fail with the valid ones listed`, () => {
    assert.throws(() => makeCache(def.name, { no_such_knob: 1 }), (e: Error) => e instanceof ConfigError && /unknown option "no_such_knob"/.test(e.message) && /valid options/.test(e.message));
    for (const k of def.knobs) {
      if (k.type === "number" || k.type === "int") {
        if (k.min !== undefined) assert.throws(() => makeCache(def.name, { [k.name]: k.min! - 1 }), (e: Error) => e instanceof ConfigError && e.message.includes(k.name) && /minimum/.test(e.message), `${k.name} below min`);
        if (k.max !== undefined) assert.throws(() => makeCache(def.name, { [k.name]: k.max! + 1 }), (e: Error) => e instanceof ConfigError && /maximum/.test(e.message), `${k.name} above max`);
        assert.throws(() => makeCache(def.name, { [k.name]: "abc" }), ConfigError);
      }
      if (k.type === "enum") assert.throws(() => makeCache(def.name, { [k.name]: "not-a-value" }), (e: Error) => e instanceof ConfigError && e.message.includes(k.values![0]));
      if (k.type === "string" && k.pattern) assert.throws(() => makeCache(def.name, { [k.name]: "?!" }), (e: Error) => e instanceof ConfigError && e.message.includes(k.name), `${k.name}: a value outside its pattern`);
    }
  });
}

test("an unknown strategy name lists the valid ones", () => {
  assert.throws(() => makeCache("teacach"), (e: Error) => /did you mean teacache/.test(e.message) && /valid strategies/.test(e.message));
});
