import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { makeCache } from "../src/cache/registry.ts";
import { readProfile, writeProfile } from "../src/cache/profiles.ts";
import { Recorder, tokenStats } from "../src/cache/calibrate/record.ts";
import { calibrateTeaCache, fitRescale, rSquared, summarizeTeaCache } from "../src/cache/calibrate/teacache.ts";
import { calibrateMagCache, summarizeMagCache, type MagCacheProfile } from "../src/cache/calibrate/magcache.ts";
import { CALIBRATORS, calibrate, defaultPrompts, findCalibrator } from "../src/cache/calibrate/index.ts";
import type { TeaCacheProfile } from "../src/cache/strategies/teacache.ts";
import { polyval } from "../src/tensor/polyfit.ts";
import { main } from "../src/cli/main.ts";
import { makeTinyModelDir } from "./support/tinyModel.ts";
import { capture } from "./support/capture.ts";
import { tempDir } from "./support/tmp.ts";

const PROMPTS = ["a red circle moving right on a black background", "a blue square moving left on a black background"];

let dir: string;
let model: LoadedModel;
before(async () => {
  dir = makeTinyModelDir();
  model = await loadModel(dir, { threads: 1 });
});
after(async () => {
  await model.release();
});

test("recorder: output is the uncached output bit for bit; records every step and branch", async () => {
  const plain = await generate({ model, prompt: PROMPTS[0], seed: 2, steps: 4 });
  const rec = new Recorder(model.transformer.dim);
  const recorded = await generate({ model, prompt: PROMPTS[0], seed: 2, steps: 4, cache: rec.asCache() });
  assert.deepEqual(recorded.video.data, plain.video.data);
  assert.deepEqual(recorded.stats.computed, plain.stats.computed);
  assert.equal(rec.runs, 1);
  assert.equal(rec.records.length, 4 * 2);
  for (const r of rec.records) {
    if (r.step === 0) {
      assert.equal(r.proxy.temb, null);
      assert.equal(r.out.velocity, null);
      assert.equal(r.magnitude.ratio, null);
    } else {
      for (const v of [r.proxy.temb, r.proxy.tproj, r.out.velocity, r.out.body, r.out.residual, r.magnitude.ratio, r.magnitude.ratioStd, r.magnitude.cosineDist])
        assert.ok(v !== null && Number.isFinite(v) && v >= 0, `step ${r.step} ${r.branch}: ${v}`);
    }
    assert.ok(r.residualNorm > 0);
  }
  // the proxies depend only on t: both branches see the same distance
  const s2 = rec.records.filter((r) => r.step === 2);
  assert.equal(s2[0].proxy.temb, s2[1].proxy.temb);
  // a second run starts fresh (no distance across runs)
  await generate({ model, prompt: PROMPTS[1], seed: 2, steps: 4, cache: rec.asCache() });
  assert.equal(rec.runs, 2);
  assert.equal(rec.records.filter((r) => r.run === 1 && r.step === 0 && r.out.velocity === null).length, 2);
  // memory: previous-step tensors only (5 per branch), never the whole run
  assert.ok(rec.peakBytes > 0 && rec.peakBytes < 2 * 5 * plain.video.data.byteLength * 64);
});

test("tokenStats: per-token norm ratio, its std and cosine distance", () => {
  const b = new Float32Array([1, 0, 0, 2, 3, 4]);
  const a = new Float32Array([2, 0, 0, 4, 6, 8]);
  const s = tokenStats(a, b, 2);
  assert.ok(Math.abs(s.ratio - 2) < 1e-12 && s.ratioStd < 1e-12 && Math.abs(s.cosineDist) < 1e-7);
  const c = tokenStats(new Float32Array([0, 1, 0, 6]), new Float32Array([1, 0, 0, 2]), 2);
  assert.ok(Math.abs(c.ratio - 2) < 1e-12, `ratio ${c.ratio}`); // (1 + 3) / 2
  assert.ok(Math.abs(c.ratioStd - Math.SQRT2) < 1e-12); // unbiased std of {1, 3}
  assert.ok(Math.abs(c.cosineDist - 0.5) < 1e-7); // (1 + 0) / 2
});

test("TeaCache fit recovers a known degree-4 polynomial from synthetic data", () => {
  const coef = [2396.76752, -1311.10545, 201.331979, -8.29855975, 0.137887774];
  const x: number[] = [], y: number[] = [];
  for (let i = 0; i < 40; i++) {
    const xi = 0.01 + (0.3 * i) / 39;
    x.push(xi, xi); // two "branches" at the same x, as the time proxy gives
    y.push(polyval(coef, xi), polyval(coef, xi));
  }
  const fit = fitRescale(x, y);
  fit.coefficients.forEach((c, i) => assert.ok(Math.abs(c - coef[i]) <= 1e-6 * Math.abs(coef[i]) + 1e-9, `c${i} ${c} vs ${coef[i]}`));
  assert.ok(Math.abs(fit.r2 - 1) < 1e-12, `r2 ${fit.r2}`);
  // noise lowers R^2 below 1 but keeps it high
  const noisy = y.map((v, i) => v + (i % 2 ? 0.01 : -0.01));
  const nf = fitRescale(x, noisy);
  assert.ok(nf.r2 < 1 && nf.r2 > 0.9, `noisy r2 ${nf.r2}`);
  assert.equal(rSquared([1, 0], [1, 2], [1, 2]), 1);
  assert.equal(rSquared([0, 1], [1, 2], [1, 2]), -1); // the constant 1 on y = {1, 2}
  assert.throws(() => fitRescale([0.1, 0.2, 0.3, 0.4, 0.1], [1, 2, 3, 4, 5]), /distinct/);
});

test("calibrateMagCache: one ratio per step and branch, ratios[b][0] = 1, positive", async () => {
  const p = await calibrateMagCache(model, { prompts: [PROMPTS[0]], steps: 5 });
  assert.equal(p.meta.method, "magcache");
  assert.equal(p.meta.steps, 5);
  assert.equal(p.meta.prompts, 1);
  for (const b of ["cond", "uncond"] as const) {
    assert.equal(p.ratios[b].length, 5);
    assert.equal(p.ratios[b][0], 1);
    for (const r of p.ratios[b]) assert.ok(Number.isFinite(r) && r > 0 && r < 100, `${b} ratio ${r}`);
    assert.equal(p.ratio_std![b].length, 5);
    assert.equal(p.cosine_dist![b].length, 5);
    assert.equal(p.ratio_std![b][0], 0);
    for (const c of p.cosine_dist![b]) assert.ok(c >= -1e-6 && c <= 2 + 1e-6);
  }
  assert.notDeepEqual(p.ratios.cond, p.ratios.uncond);
  assert.ok(summarizeMagCache(p).join("\n").includes("gamma"));
  // averaging two seeds stays in range; guidance 1 copies cond to uncond
  const g1 = await calibrateMagCache(model, { prompts: [PROMPTS[0]], seeds: [0, 1], steps: 3, guidance: 1 });
  assert.deepEqual(g1.ratios.uncond, g1.ratios.cond);
  assert.equal(g1.ratios.cond.length, 3);
  // round trip through the profile files
  const pdir = tempDir("mixcache-prof-");
  writeProfile(pdir, "magcache", p);
  assert.deepEqual(readProfile<MagCacheProfile>(pdir, "magcache"), p);
});

test("calibrateTeaCache on the tiny model: profile round-trips and the strategy picks it up", async () => {
  const p = await calibrateTeaCache(model, { prompts: PROMPTS, steps: 7, seeds: [0] });
  assert.equal(p.meta.method, "teacache");
  assert.equal(p.proxy, "temb");
  assert.equal(p.target, "velocity");
  assert.equal(p.coefficients.length, 5);
  assert.ok(p.coefficients.every(Number.isFinite));
  assert.ok(p.r2 <= 1 && Number.isFinite(p.r2));
  assert.equal(p.points, 2 * 6 * 2); // prompts x (steps - 1) x branches
  assert.equal(p.curve.length, 6);
  assert.ok(summarizeTeaCache(p)[0].startsWith("teacache: f(x) ="));
  // too few steps for a degree-4 fit
  await assert.rejects(calibrateTeaCache(model, { prompts: [PROMPTS[0]], steps: 4 }), /at least 6 steps/);

  // through the registry: written atomically to <dir>/cache_profiles/teacache.json
  const r = await calibrate(model, "teacache", { prompts: PROMPTS, steps: 6 }, { options: { proxy: "tproj" } });
  assert.equal(r.path, join(dir, "cache_profiles", "teacache.json"));
  const back = readProfile<TeaCacheProfile>(model.profilesDir, "teacache");
  assert.deepEqual(back, r.profile);
  assert.equal(back!.proxy, "tproj");
  const withProfile = makeCache("teacache", { proxy: "tproj" }, { profilesDir: model.profilesDir }).attach().report();
  assert.deepEqual(withProfile.warnings, []);
  // a profile for the other proxy is not used (the strategy warns)
  const other = makeCache("teacache", { proxy: "temb" }, { profilesDir: model.profilesDir }).attach().report();
  assert.equal(other.warnings.length, 1);
  await assert.rejects(calibrate(model, "teacache", { prompts: PROMPTS, steps: 6 }, { options: { proxy: "e0" } }), /proxy/);
});

test("registry: teacache, magcache and mixcache; unknown methods list the valid ones", () => {
  assert.deepEqual(Object.keys(CALIBRATORS).sort(), ["magcache", "mixcache", "teacache"]);
  assert.throws(() => findCalibrator("teacash"), (e: Error) => /unknown calibration method "teacash"/.test(e.message) && /teacache, magcache, mixcache/.test(e.message));
});

test("default prompts come from the vocabulary and cover every attribute value", () => {
  const vocabPath = join(import.meta.dirname, "..", "models", "reference", "vocab.json");
  const alt = join(import.meta.dirname, "..", "data", "vocab.json");
  const path = existsSync(vocabPath) ? vocabPath : alt;
  if (!existsSync(path)) return;
  const v = JSON.parse(readFileSync(path, "utf8"));
  const p = defaultPrompts(path, 8);
  assert.equal(p.length, 8);
  assert.equal(new Set(p).size, 8);
  assert.deepEqual(defaultPrompts(path, 8), p);
  const words = new Set(p.join(" ").split(" "));
  for (const c of Object.keys(v.colours)) assert.ok(words.has(c), c);
  for (const s of v.shapes) assert.ok(words.has(s), s);
  for (const b of Object.keys(v.backgrounds)) assert.ok(words.has(b), b);
  for (const m of Object.keys(v.motions)) assert.ok(p.some((x) => x.includes(m)), m);
  assert.equal(new Set(defaultPrompts(path, 70)).size, 70);
});

test("CLI: mixcache calibrate runs end to end and writes the profile; usage errors exit 2", async () => {
  const cdir = makeTinyModelDir();
  const out = join(tempDir("mixcache-cal-"), "mag.json");
  // where to write is explicit: --save (the model folder) or --out FILE, checked before any work
  const where = await capture(() => main(["calibrate", "teacache", "--model", cdir, "--prompt", PROMPTS[0], "--steps", "6", "--threads", "1"]));
  assert.equal(where.code, 2, where.err);
  assert.match(where.err, /pass --save .* or --out FILE/);
  assert.ok(!existsSync(join(cdir, "cache_profiles", "teacache.json")), "nothing written without --save");
  const r = await capture(() => main(["calibrate", "teacache", "--model", cdir, "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--steps", "6", "--threads", "1", "--save"]));
  assert.equal(r.code, 0, r.err);
  const path = join(cdir, "cache_profiles", "teacache.json");
  assert.ok(existsSync(path));
  assert.match(r.out, /R\^2 = /);
  assert.ok(r.out.includes(`wrote ${path}`), r.out);
  const prof = JSON.parse(readFileSync(path, "utf8")) as TeaCacheProfile;
  assert.equal(prof.meta.steps, 6);
  assert.equal(prof.meta.prompts, 2);
  assert.deepEqual(makeCache("teacache", {}, { profilesDir: join(cdir, "cache_profiles") }).attach().report().warnings, []);

  const j = await capture(() => main(["calibrate", "magcache", "--model", cdir, "--prompt", PROMPTS[0], "--steps", "3", "--out", out, "--json", "--threads", "1"]));
  assert.equal(j.code, 0, j.err);
  const obj = JSON.parse(j.out);
  assert.equal(obj.path, out);
  assert.deepEqual(JSON.parse(readFileSync(out, "utf8")), obj.profile);
  assert.equal(obj.profile.ratios.cond.length, 3);

  const bad = await capture(() => main(["calibrate", "foo", "--model", cdir]));
  assert.equal(bad.code, 2);
  assert.match(bad.err, /teacache, magcache/);
  for (const argv of [
    ["calibrate"],
    ["calibrate", "teacache", "--model", cdir, "--prompts", "2", "--prompt", "a"],
    ["calibrate", "teacache", "--model", cdir, "--bogus"],
    ["calibrate", "teacache", "--model", cdir, "--opt", "proxy=e0"],
    ["calibrate", "teacache", "--model", cdir, "--sampler", "ddim"],
    ["calibrate", "teacache", "--model", cdir, "--prompts", "2"], // tiny model: no vocab.json
  ]) {
    const u = await capture(() => main(argv));
    assert.equal(u.code, 2, `${argv.join(" ")}: ${u.err}`);
  }
  const help = await capture(() => main(["calibrate", "--help"]));
  assert.equal(help.code, 0);
  assert.match(help.out, /Methods:/);
});
