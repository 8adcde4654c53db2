/**
 * Wan2.2 text-to-video A14B folders: transformer/ (high-noise expert) and transformer_2/ (low-noise
 * expert) switched where the timestep falls below boundary_ratio x 1000 (diffusers WanPipeline),
 * guidance per expert, and every cache with its own state per expert; on a tiny random folder.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./support/tmp.ts";
import { writeTinyWanPipeline, modelIndexJson } from "./support/writeTinyWanPipeline.ts";
import { inspectModel, loadModel, type LoadedModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { denoise } from "../src/pipeline/denoise.ts";
import { STRATEGIES, makeCache } from "../src/cache/registry.ts";
import { hooksAsCache } from "../src/cache/strategy.ts";
import { makeSampler } from "../src/schedulers/sampler.ts";

const PROMPT = "a red circle moving left on the black background";
const two = writeTinyWanPipeline({ seed: 3, boundaryRatio: 0.875 });
const VIDEO = { frames: 5, height: 32, width: 32 };
let model: LoadedModel;

before(async () => {
  model = await loadModel(two.dir, { threads: 1 });
});
after(async () => {
  await model.release();
});

test("a Wan2.2 folder: both experts inspected, the boundary read; bad two-expert folders refused before any weight loads", () => {
  const info = inspectModel(two.dir);
  assert.equal(info.family, "wan");
  if (info.family !== "wan") return;
  assert.equal(info.pipeline!.expert2!.boundaryRatio, 0.875);
  assert.ok(info.pipeline!.capabilities.some((c) => /Wan2.2 two experts/.test(c)));
  const bad = (index: Record<string, unknown>, re: RegExp) => {
    const d = writeTinyWanPipeline({ seed: 3, boundaryRatio: 0.875 });
    writeFileSync(join(d.dir, "model_index.json"), JSON.stringify(modelIndexJson({ transformer_2: ["diffusers", "WanTransformer3DModel"], ...index })));
    assert.throws(() => inspectModel(d.dir), re);
  };
  bad({ boundary_ratio: null }, /boundary_ratio is not/);
  bad({ boundary_ratio: 1.5 }, /boundary_ratio must be a number in \(0, 1\)/);
  bad({ boundary_ratio: 0.9, expand_timesteps: true }, /TI2V-5B/);
  const mismatch = writeTinyWanPipeline({ seed: 3, boundaryRatio: 0.875 });
  const cfgPath = join(mismatch.dir, "transformer_2", "config.json");
  writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, "utf8")), text_dim: 12 }));
  assert.throws(() => inspectModel(mismatch.dir), /transformer_2\/config.json: text_dim is 12/);
});

test("the experts switch at boundary_ratio x 1000 as WanPipeline does; guidance_2 applies to the second; one expert alone differs", async () => {
  const steps = 8;
  const s = makeSampler("unipc", { steps, shift: 3 });
  const switchAt = Array.from(s.timesteps).findIndex((t) => t < 875);
  assert.ok(switchAt > 0 && switchAt < steps, `switch inside the run (step ${switchAt})`);
  const seen: Array<{ expert: number; index: number; count: number }> = [];
  const spy = (expert: number) => hooksAsCache({ beginStep: (st) => void seen.push({ expert, index: st.index, count: st.count }) }, `spy${expert}`);
  const [cond, uncond] = await model.encodePrompts([PROMPT, ""]);
  const shape = { channels: 4, frames: 2, height: 4, width: 4 };
  const r = await denoise({
    model: model.transformer, cond, uncond, shape, steps, guidance: 4, shift: 3, seed: 1, sampler: "unipc",
    hooks: spy(1).attach().hooks, expert2: { model: model.transformer2!, boundary: 875, guidance: 2, hooks: spy(2).attach().hooks },
  });
  // each expert's hooks see a run of their own, re-indexed from 0
  assert.deepEqual(seen, [
    ...Array.from({ length: switchAt }, (_, i) => ({ expert: 1, index: i, count: switchAt })),
    ...Array.from({ length: steps - switchAt }, (_, i) => ({ expert: 2, index: i, count: steps - switchAt })),
  ]);
  const base = { cond, uncond, shape, steps, shift: 3, seed: 1, sampler: "unipc" as const };
  const g2 = await denoise({ ...base, model: model.transformer, guidance: 4, expert2: { model: model.transformer2!, boundary: 875, guidance: 4 } });
  assert.notDeepEqual(g2.latent, r.latent, "guidance_2 changes the second expert's steps");
  const only1 = await denoise({ ...base, model: model.transformer, guidance: 4 });
  assert.notDeepEqual(only1.latent, g2.latent, "the second expert runs");
  // a boundary above every timestep: the second expert runs everything; below every one: never
  const never = await denoise({ ...base, model: model.transformer, guidance: 4, expert2: { model: model.transformer2!, boundary: 0 } });
  assert.deepEqual(never.latent, only1.latent);
});

test("Wan2.2 end to end from the CLI: the same seed gives the same bytes; --guidance-2 only on two-expert folders", () => {
  const spawn = (args: string[]) => spawnSync(process.execPath, ["bin/mixcache.js", ...args], { encoding: "utf8", timeout: 120_000 });
  const dir = tempDir("mixcache-wan22-");
  const run = (name: string, extra: string[] = []) => {
    const outs = [join(dir, `${name}.gif`), join(dir, `${name}.safetensors`)];
    const r = spawn(["generate", "--model", two.dir, PROMPT, "--frames", "5", "--height", "32", "--width", "32", "--steps", "6", "--threads", "1", ...extra, ...outs.flatMap((o) => ["--out", o])]);
    assert.equal(r.status, 0, r.stderr);
    return outs.map((o) => readFileSync(o));
  };
  const a = run("a", ["--guidance-2", "3", "--cache", "teacache"]);
  const b = run("b", ["--guidance-2", "3", "--cache", "teacache"]);
  assert.deepEqual(a, b);
  const c = run("c", ["--guidance-2", "2", "--cache", "teacache"]);
  assert.notDeepEqual(a[1], c[1]);
  const one = writeTinyWanPipeline({ seed: 3 });
  const bad = spawn(["generate", "--model", one.dir, PROMPT, "--frames", "5", "--height", "32", "--width", "32", "--guidance-2", "3", "--out", join(dir, "x.gif")]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--guidance-2 sets the second expert's guidance/);
});

for (const def of STRATEGIES) {
  test(`wan2.2 two experts: ${def.name} exact options are bit-exact, defaults finite with exact accounting, a cache state per expert`, async () => {
    const base = { model, prompt: PROMPT, ...VIDEO, steps: 8, seed: 2 };
    const want = (await generate(base)).latent.data;
    const exact = await generate({ ...base, cache: makeCache(def.name, def.exact, { profilesDir: "" }) });
    assert.deepEqual(exact.latent.data, want);
    const r = await generate({ ...base, cache: makeCache(def.name, {}, { profilesDir: "" }) });
    assert.ok(r.latent.data.every(Number.isFinite));
    const st = r.stats;
    for (const level of ["branches", "blocks", "modules"] as const) assert.equal(st.computed[level] + st.reused[level], st.total[level]);
    assert.equal(st.perStep.reduce((x, p) => x + p.macs, 0), st.macsExecuted);
    if (def.name !== "fewer-steps") assert.ok(r.cache2, "the second expert has its own cache report");
  });
}
