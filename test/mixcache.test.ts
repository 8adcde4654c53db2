/**
 * MixCache decision logic on synthetic signal sequences (mixcache-decision.ts), and the strategy's
 * schedule on a tiny model with a synthetic calibration profile.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Scheduler, Trigger, actionCosts, chooseGranularity } from "../src/cache/strategies/mixcache-decision.ts";
import { resample } from "../src/cache/strategies/mixcache.ts";
import { loadModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { makeCache } from "../src/cache/registry.ts";
import { makeTinyModelDir } from "./support/tinyModel.ts";

test("trigger fires when and only when warm-up and patience both hold", () => {
  const t = new Trigger({ minWarmup: 4, tau: 0.15, patience: 2 });
  // changes below tau from step 1, but warm-up of 4 steps not done until index 3
  assert.equal(t.observe(0, NaN), false);
  assert.equal(t.observe(1, 0.1), false);
  assert.equal(t.observe(2, 0.1), false); // patience met, warm-up not
  assert.equal(t.observe(3, 0.1), true);
  assert.equal(t.firedAt, 3);
  assert.equal(t.observe(4, 5), true, "stays on once fired");

  const u = new Trigger({ minWarmup: 1, tau: 0.15, patience: 2 });
  assert.equal(u.observe(0, NaN), false);
  assert.equal(u.observe(1, 0.1), false); // one below
  assert.equal(u.observe(2, 0.2), false); // reset by a change above tau
  assert.equal(u.observe(3, 0.14), false);
  assert.equal(u.observe(4, 0.149), true);
  assert.equal(u.firedAt, 4);
  const v = new Trigger({ minWarmup: 1, tau: 0.15, patience: 1 });
  assert.equal(v.observe(5, 0.15), false, "tau is a strict bound");
});

test("hybrid decision: argmin of D x I with the repeat penalty", () => {
  const I = { step: 1, cfg: 1, block: 1 };
  const all = ["step", "cfg", "block"] as const;
  let c = chooseGranularity({ D: { step: 0.1, cfg: 0.2, block: 0.3 }, I, lastCached: null, penalty: 5, allowed: all });
  assert.equal(c.gran, "step");
  assert.deepEqual(c.P, { step: 0.1, cfg: 0.2, block: 0.3 });
  // the same granularity again costs 5x: 0.5 > 0.2
  c = chooseGranularity({ D: { step: 0.1, cfg: 0.2, block: 0.3 }, I, lastCached: "step", penalty: 5, allowed: all });
  assert.equal(c.gran, "cfg");
  assert.ok(Math.abs(c.P.step! - 0.5) < 1e-12);
  // without the penalty the repeat wins
  assert.equal(chooseGranularity({ D: { step: 0.1, cfg: 0.2, block: 0.3 }, I, lastCached: "step", penalty: 1, allowed: all }).gran, "step");
  // impact factors reorder: a large I on step moves the choice to block
  assert.equal(chooseGranularity({ D: { step: 0.1, cfg: 0.2, block: 0.3 }, I: { step: 10, cfg: 2, block: 1 }, lastCached: null, penalty: 5, allowed: all }).gran, "block");
  // unavailable caches (missing D) and disallowed granularities are never chosen
  assert.equal(chooseGranularity({ D: { cfg: 0.2 }, I, lastCached: null, penalty: 5, allowed: all }).gran, "cfg");
  assert.equal(chooseGranularity({ D: { step: 0.1, cfg: 0.2 }, I, lastCached: null, penalty: 5, allowed: ["block"] }).gran, null);
});

test("scheduler: error budget, run length, and the interval halving at delta2 / growing at delta1", () => {
  const s = new Scheduler({ budget: 1, maxInterval: 4, intervalCap: 6, delta1: 0.05, delta2: 0.2, adaptiveInterval: true });
  assert.ok(s.admits(0.6));
  s.commitCached(0.6);
  assert.ok(!s.admits(0.5), "E + P > budget");
  assert.ok(s.admits(0.4), "E + P == budget is allowed");
  s.commitFull(0.3); // dev > delta2: 4 -> 2
  assert.equal(s.E, 0);
  assert.equal(s.maxInterval, 2);
  s.commitFull(0.3); // 2 -> 1
  s.commitFull(0.3); // stays >= 1
  assert.equal(s.maxInterval, 1);
  s.commitFull(0.01); // < delta1: +1
  s.commitFull(0.01);
  assert.equal(s.maxInterval, 3);
  s.commitFull(0.1); // between delta1 and delta2: unchanged
  assert.equal(s.maxInterval, 3);
  for (let k = 0; k < 10; k++) s.commitFull(0);
  assert.equal(s.maxInterval, 6, "capped");
  // run length: at most maxInterval consecutive cached steps
  const r = new Scheduler({ budget: 100, maxInterval: 2, intervalCap: 6, delta1: 0, delta2: 1, adaptiveInterval: false });
  r.commitCached(0.1);
  r.commitCached(0.1);
  assert.ok(!r.admits(0.1));
  r.commitFull(5);
  assert.equal(r.maxInterval, 2, "fixed interval ignores the deviation");
  assert.ok(!new Scheduler({ budget: 0, maxInterval: 9, intervalCap: 9, delta1: 0, delta2: 1, adaptiveInterval: true }).admits(0), "budget 0 never caches");
});

test("action costs follow the analytic MACs", () => {
  const m = { time: 0, patch: 0, branchIn: 0, module: Array.from({ length: 8 }, () => [10, 5, 5]), head: 0, prompt: 0 };
  const c = actionCosts(m, 1, 1, true);
  assert.equal(c.full, 1);
  assert.equal(c.step, 0);
  assert.equal(c.cfg, 0.5);
  assert.equal(c.block, 0.25);
  assert.deepEqual(resample([1, 2, 3], 5), [1, 2, 2, 3, 3]);
  // blocks of different cost (an MMDiT family: double then single blocks) and a per-branch input
  const h = { time: 2, patch: 2, branchIn: 3, module: [[10, 10], [10, 10], [5], [5]], head: 1, prompt: 0 };
  const full = 4 + 2 * (50 + 4); // 112
  const hc = actionCosts(h, 1, 1, true);
  assert.equal(hc.step, (4 + 2 * 4) / full);
  assert.equal(hc.cfg, (4 + 50 + 4) / full);
  assert.equal(hc.block, (4 + 2 * (20 + 5 + 4)) / full);
});

test("mixcache on a model: boundary steps (every I large) are never cached, the tail is always computed", async () => {
  const dir = makeTinyModelDir(31);
  const steps = 16;
  const big = new Set([8, 9, 10]);
  const curve = (f: (i: number) => number) => Array.from({ length: steps }, (_, i) => f(i));
  mkdirSync(join(dir, "cache_profiles"), { recursive: true });
  writeFileSync(join(dir, "cache_profiles", "mixcache.json"), JSON.stringify({
    meta: { method: "mixcache", model: "tiny", steps, shift: 3, sampler: "unipc", guidance: 4, prompts: 1, created: "test", eps: 0.05, grid: [] },
    impact: { step: curve((i) => (big.has(i) ? 1e6 : 1)), cfg: curve((i) => (big.has(i) ? 1e6 : 1)), block: curve((i) => (big.has(i) ? 1e6 : 1)) },
    rates: { step: curve(() => 0.1), cfg: curve(() => 0.1), block: curve(() => 0.1) },
    outputChange: curve(() => 0.1),
  }));
  const model = await loadModel(dir, { threads: 1 });
  try {
    const r = await generate({ model, prompt: "a red circle moving right on a black background", steps, cache: makeCache("mixcache", { budget: 50, trigger: false, warmup: 0 }, { profilesDir: model.profilesDir }) });
    const trace = r.cache!.trace;
    assert.equal(trace.length, steps);
    assert.ok(r.cache!.warnings.length === 0, "profile loaded without a warning");
    const cached = trace.filter((row) => row.action !== "full").map((row) => row.step);
    assert.ok(cached.length > 0, "a generous budget caches some steps");
    for (const i of big) assert.equal(trace[i].action, "full", `boundary step ${i} was cached`);
    assert.equal(trace[steps - 1].action, "full", "tail step cached");
    for (const row of trace) for (const k of ["step", "timestep", "action", "triggered", "D", "I", "P", "E", "interval"]) assert.ok(k in row, `trace field ${k}`);
    // a cache made without a model folder reads the model's own profile (generate() passes it) ...
    const r1 = await generate({ model, prompt: "a red circle", steps, cache: makeCache("mixcache", { budget: 50, trigger: false, warmup: 0 }) });
    assert.deepEqual(r1.cache!.trace.map((row) => row.action), trace.map((row) => row.action), "the model's profile by default");
    // ... and without a profile: a warning, still runs
    rmSync(join(dir, "cache_profiles", "mixcache.json"));
    const r2 = await generate({ model, prompt: "a red circle", steps: 6, cache: makeCache("mixcache", {}) });
    assert.match(r2.cache!.warnings.join(" "), /no MixCache calibration profile/);
  } finally {
    await model.release();
  }
});
