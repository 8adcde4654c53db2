/**
 * The hybrid schedule planner's dynamic program (src/cache/plan/dp.ts) on synthetic cost tables
 * with a known optimum: against brute force over every schedule of small N, and on tables built so
 * that one granularity, or a mix, is the unique best answer.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { LETTER_ACTION, planCompute, planDp, planSegments, type DpProblem } from "../src/cache/plan/dp.ts";
import { localSearch } from "../src/cache/plan/plan.ts";
import { Mulberry32 } from "../src/data/shapes.ts";
import type { Gran } from "../src/cache/strategies/mixcache-decision.ts";

const COST: Record<Gran, number> = { step: 0.05, cfg: 0.5, block: 0.3 };

/** Every valid schedule of N steps (segments of one granularity, runs <= maxRun), by brute force. */
function* allPlans(p: DpProblem, prefix = ""): Generator<string> {
  if (prefix.length === p.steps) {
    yield prefix;
    return;
  }
  const i = prefix.length;
  yield* allPlans(p, prefix + "F");
  if (i === 0) return;
  const last = prefix[prefix.length - 1];
  const runStart = prefix.search(/[SCB]+$/);
  const run = runStart < 0 ? 0 : prefix.length - runStart;
  const warm = Math.max(1, p.warmup ?? 1);
  const tail = p.tail ?? 0;
  if (i >= N_limit(p, tail)) return;
  for (const g of p.grans) {
    const ch = { step: "S", cfg: "C", block: "B" }[g];
    if (last !== "F" && last !== ch) continue;
    if (run + 1 > p.maxRun) continue;
    // the segment's full step must be at or after warm-up - 1
    const segStart = runStart < 0 ? i - 1 : runStart - 1;
    if (segStart + 1 < warm) continue;
    yield* allPlans(p, prefix + ch);
  }
}
const N_limit = (p: DpProblem, tail: number) => p.steps - tail;

function bruteForce(p: DpProblem): { plan: string; error: number } {
  let best = { plan: "", error: Infinity };
  for (const plan of allPlans(p)) {
    if (planCompute(plan, p.costOf) > p.budget + 1e-9) continue;
    let e = 0;
    for (const s of planSegments(plan)) if (s.gran) e += p.error(s.start, s.gran, s.len);
    if (e < best.error - 1e-12) best = { plan, error: e };
  }
  return best;
}

test("planDp equals brute force on random cost tables (N <= 9, every granularity)", () => {
  const rng = new Mulberry32(7);
  let cases = 0;
  for (let trial = 0; trial < 40; trial++) {
    const steps = 4 + (trial % 6);
    const table = new Map<string, number>();
    const error = (i: number, g: Gran, len: number) => {
      const k = `${i}|${g}|${len}`;
      if (!table.has(k)) table.set(k, rng.random() * len * (1 + i / steps));
      return table.get(k)!;
    };
    const p: DpProblem = {
      steps, grans: ["step", "cfg", "block"], costOf: COST, error, maxRun: 1 + (trial % 3),
      budget: steps * (0.45 + 0.1 * (trial % 5)), warmup: 1 + (trial % 2), tail: trial % 2, resolution: 0.01,
    };
    let bf: { plan: string; error: number };
    try {
      bf = bruteForce(p);
    } catch {
      continue;
    }
    if (!Number.isFinite(bf.error)) {
      assert.throws(() => planDp(p), /no schedule/);
      continue;
    }
    const dp = planDp(p);
    cases++;
    assert.ok(Math.abs(dp.error - bf.error) <= 1e-9, `trial ${trial}: dp ${dp.plan} ${dp.error} vs brute force ${bf.plan} ${bf.error}`);
    assert.ok(dp.compute <= p.budget + 1e-9, `trial ${trial}: compute ${dp.compute} > budget ${p.budget}`);
    assert.equal(dp.plan.length, steps);
  }
  console.log(`planDp vs brute force: ${cases} random tables agree`);
  assert.ok(cases >= 25, `only ${cases} feasible cases`);
});

test("planDp picks the known optimum: one cheap granularity, and a mix when each wins in its own phase", () => {
  // step caching is free of error everywhere: the best plan caches steps in maximal runs
  const onlyStep = planDp({
    steps: 12, grans: ["step", "cfg", "block"], costOf: COST, maxRun: 4, budget: 12 / 2, warmup: 2, tail: 1,
    error: (_i, g, len) => (g === "step" ? 0 : len),
  });
  assert.equal(onlyStep.error, 0);
  assert.match(onlyStep.plan, /^FF[FS]*F$/);
  assert.ok(!/[CB]/.test(onlyStep.plan), onlyStep.plan);
  assert.ok(onlyStep.compute <= 12 / 2 + 1e-9);
  // early steps: CFG caching is harmless, block caching costly; late steps: the reverse
  const mixed = planDp({
    steps: 16, grans: ["step", "cfg", "block"], costOf: { step: 0.05, cfg: 0.5, block: 0.3 }, maxRun: 2, budget: 10.5, warmup: 1,
    error: (i, g, len) => len * (g === "step" ? 5 : g === "cfg" ? (i < 8 ? 0 : 3) : i < 8 ? 3 : 0),
  });
  assert.equal(mixed.error, 0, mixed.plan);
  assert.ok(/C/.test(mixed.plan.slice(0, 8)) && /B/.test(mixed.plan.slice(8)), mixed.plan);
  // restricted to one granularity, the same table costs more
  const single = planDp({
    steps: 16, grans: ["cfg"], costOf: { step: 0.05, cfg: 0.5, block: 0.3 }, maxRun: 2, budget: 11, warmup: 1,
    error: (i, g, len) => len * (g === "cfg" ? (i < 8 ? 0 : 3) : 99),
  });
  assert.ok(single.error > 0 && !/[SB]/.test(single.plan), single.plan);
});

test("schedules: compute, segments and clear errors", () => {
  assert.equal(planCompute("FSSFCB", COST).toFixed(2), (1 + 0.1 + 1 + 0.5 + 0.3).toFixed(2));
  assert.deepEqual(planSegments("FSSFFB"), [
    { start: 0, gran: "step", len: 2 },
    { start: 3, gran: null, len: 0 },
    { start: 4, gran: "block", len: 1 },
  ]);
  assert.throws(() => planSegments("SF"), /first step must be F/);
  assert.throws(() => planSegments("FSC"), /mixes step and cfg/);
  assert.throws(() => planCompute("FX", COST), /not one of F, S, C, B/);
  assert.deepEqual(Object.keys(LETTER_ACTION), ["F", "S", "C", "B"]);
  assert.throws(() => planDp({ steps: 10, grans: ["step"], costOf: COST, maxRun: 1, budget: 3, error: () => 0 }), /no schedule of 10 steps fits/);
});

// ---------------------------------------------------------------------------------------------
// MixCache following a schedule (plan=..., schedule=planned) on a tiny random model

import { after, before } from "node:test";
import { loadModel, type LoadedModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { makeCache } from "../src/cache/registry.ts";
import { ConfigError } from "../src/errors.ts";
import { makeTinyModelDir } from "./support/tinyModel.ts";

let tiny: LoadedModel;
const run = { prompt: "a red circle moving right on a black background", seed: 3, steps: 10 } as const;
let uncached: Float32Array;
before(async () => {
  tiny = await loadModel(makeTinyModelDir(31), { threads: 1 });
  uncached = (await generate({ model: tiny, ...run })).video.data;
});
after(async () => {
  await tiny.release();
});

test("mixcache plan=: all-F equals the uncached output bit for bit; cached letters are followed exactly", async () => {
  const full = await generate({ model: tiny, ...run, cache: makeCache("mixcache", { plan: "F".repeat(10) }) });
  let diff = 0;
  for (let i = 0; i < uncached.length; i++) diff = Math.max(diff, Math.abs(full.video.data[i] - uncached[i]));
  assert.equal(diff, 0, `max |diff| ${diff}`);
  const plan = "FFSSFCCFBF";
  const r = await generate({ model: tiny, ...run, cache: makeCache("mixcache", { plan }) });
  assert.equal(r.cache!.trace.map((t) => ({ full: "F", step: "S", cfg: "C", block: "B" })[t.action as string]).join(""), plan);
  assert.deepEqual([r.cache!.counters.full, r.cache!.counters.step, r.cache!.counters.cfg, r.cache!.counters.block], [5, 2, 2, 1]);
  assert.equal(r.cache!.counters.planFallbacks, 0);
  assert.ok(r.stats.computeSpeedup > 1.3, `speedup ${r.stats.computeSpeedup}`);
  assert.ok(r.video.data.every(Number.isFinite));
});

test("mixcache plan= and schedule=planned: clear errors", async () => {
  await assert.rejects(generate({ model: tiny, ...run, cache: makeCache("mixcache", { plan: "FFS" }) }), (e: Error) => e instanceof ConfigError && /3 letters but the run has 10 steps/.test(e.message));
  assert.throws(() => makeCache("mixcache", { plan: "FSX" }), (e: Error) => e instanceof ConfigError && /F\|S\|C\|B/.test(e.message));
  assert.throws(() => makeCache("mixcache", { plan: "FSC" }), /mixes step and cfg/);
  // built for the model folder: refused at once; built without one: refused when generate() binds it to the model
  assert.throws(() => makeCache("mixcache", { schedule: "planned", target_speedup: 2 }, { profilesDir: tiny.profilesDir }),
    (e: Error) => e instanceof ConfigError && /no hybrid schedule planned at 2x/.test(e.message) && /mixcache plan --targets 2 --save/.test(e.message));
  await assert.rejects(
    generate({ model: tiny, ...run, cache: makeCache("mixcache", { schedule: "planned", target_speedup: 2 }) }),
    (e: Error) => e instanceof ConfigError && /no hybrid schedule planned at 2x/.test(e.message) && /mixcache plan --targets 2/.test(e.message),
  );
  // a profile with schedules for another step count: refused when the run starts, naming what is stored
  const { mkdirSync: mk, writeFileSync: wf, rmSync: rm } = await import("node:fs");
  const { join: pj } = await import("node:path");
  mk(tiny.profilesDir, { recursive: true });
  const prof = pj(tiny.profilesDir, "mixcache-plans.json");
  wf(prof, JSON.stringify({ meta: {}, schedules: [{ steps: 12, target: 2, plan: "F".repeat(12), speedup: 1, grans: "step,cfg,block", psnrPredicted: 100, psnrMeasured: 100 }] }));
  try {
    await assert.rejects(generate({ model: tiny, ...run, cache: makeCache("mixcache", { schedule: "planned", target_speedup: 2 }) }),
      (e: Error) => e instanceof ConfigError && /for 10 steps at 2x .*stored: 12 steps x2/.test(e.message) && /mixcache plan --steps 10 --targets 2/.test(e.message));
  } finally {
    rm(prof);
  }
});

test("schedule=planned: MixCache follows the order-0 schedule, MixCache+ the one searched under order 1, else the order-0 one", async () => {
  const { mkdirSync: mk, writeFileSync: wf, rmSync: rm } = await import("node:fs");
  const { join: pj } = await import("node:path");
  mk(tiny.profilesDir, { recursive: true });
  const prof = pj(tiny.profilesDir, "mixcache-plans.json");
  const row = (plan: string, order?: 1) => ({ steps: 10, target: 2, plan, speedup: 2, grans: "step,cfg,block", psnrPredicted: 30, psnrMeasured: 30, ...(order ? { order } : {}) });
  const letters = async (name: string) => {
    const g = await generate({ model: tiny, ...run, cache: makeCache(name, { schedule: "planned", target_speedup: 2 }) });
    return g.cache!.trace.map((t) => ({ full: "F", step: "S", cfg: "C", block: "B" })[t.action as string]).join("");
  };
  try {
    wf(prof, JSON.stringify({ meta: {}, schedules: [row("FFSSFSSFSF", 1), row("FFBBFBBFBF")] }));
    assert.equal(await letters("mixcache"), "FFBBFBBFBF");
    assert.equal(await letters("mixcache-plus"), "FFSSFSSFSF");
    wf(prof, JSON.stringify({ meta: {}, schedules: [row("FFBBFBBFBF")] }));
    assert.equal(await letters("mixcache-plus"), "FFBBFBBFBF");
  } finally {
    rm(prof);
  }
});

test("schedule=planned: a block step whose probe exceeds probe_margin x the planned probe runs full; margin 0 follows the plan", async () => {
  const { mkdirSync: mk, writeFileSync: wf, rmSync: rm } = await import("node:fs");
  const { join: pj } = await import("node:path");
  mk(tiny.profilesDir, { recursive: true });
  const prof = pj(tiny.profilesDir, "mixcache-plans.json");
  const plan = "FFBBFBBFBF";
  const letters = (g: Awaited<ReturnType<typeof generate>>) => g.cache!.trace.map((t) => ({ full: "F", step: "S", cfg: "C", block: "B" })[t.action as string]).join("");
  const write = (probes: (number | null)[]) => wf(prof, JSON.stringify({ meta: {}, schedules: [{ steps: 10, target: 2, plan, speedup: 1.5, grans: "step,cfg,block", psnrPredicted: 30, psnrMeasured: 30, probes }] }));
  const runWith = (probe_margin: number) => generate({ model: tiny, ...run, cache: makeCache("mixcache", { schedule: "planned", target_speedup: 2, probe_margin }) });
  try {
    // the probes this run shows at its block steps
    write([...plan].map((ch) => (ch === "B" ? 1 : null)));
    const followed = await runWith(0);
    assert.equal(letters(followed), plan);
    const seen = followed.cache!.trace.map((t) => (typeof t.probe === "number" ? t.probe : null));
    assert.deepEqual(seen.map((x) => x !== null), [...plan].map((ch) => ch === "B"), "a probe at every block step");
    assert.ok(seen.every((x) => x === null || x > 0));
    // planned probes at half what this run sees: margin 1.5 vetoes every block step whose
    // schedule is unchanged so far (the first), margin 3 none
    write(seen.map((x) => (x === null ? null : x / 2)));
    const vetoed = await runWith(1.5);
    assert.equal(letters(vetoed)[2], "F", "the first planned block step ran full");
    assert.ok(vetoed.cache!.counters.probeVetoes >= 1);
    assert.equal(vetoed.cache!.trace[2].vetoed, true);
    assert.ok(vetoed.stats.computeSpeedup < followed.stats.computeSpeedup);
    const kept = await runWith(3);
    assert.equal(letters(kept), plan);
    assert.deepEqual(kept.video.data, followed.video.data);
    assert.equal(kept.cache!.counters.probeVetoes, 0);
  } finally {
    rm(prof);
  }
});

test("mixcache plan (CLI): plans a schedule within the budget, stores it with provenance; schedule=planned follows it", async () => {
  const { spawnSync } = await import("node:child_process");
  const { mkdtempSync, readFileSync, rmSync, mkdirSync, copyFileSync, cpSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "mixcache-plan-"));
  try {
    const out = join(dir, "plans.json");
    const cli = (args: string[]) => spawnSync(process.execPath, ["bin/mixcache.js", ...args], { encoding: "utf8", timeout: 300_000 });
    const args = ["plan", "--model", tiny.dir, "--prompt", run.prompt, "--steps", "10", "--targets", "2", "--search", "3", "--max-run", "3", "--threads", "1"];
    const noDest = cli(args);
    assert.equal(noDest.status, 2, noDest.stderr);
    assert.match(noDest.stderr, /--save .* or --out FILE/);
    const bad = cli([...args.slice(0, -4), "--targets", "2,0.5", "--out", out]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /"0.5" is not a speedup/);
    const r = cli([...args, "--out", out, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const o = JSON.parse(r.stdout.trim());
    // the hybrid, and the hybrid searched again under MixCache+'s first-order reuse
    assert.equal(o.schedules.length, 2);
    const s = o.schedules.find((x: { order?: number }) => !x.order);
    const sPlus = o.schedules.find((x: { order?: number }) => x.order === 1);
    assert.ok(s && sPlus);
    assert.equal(o.mixcache_plus[0].psnr, sPlus.psnrMeasured);
    assert.ok(sPlus.speedup >= 2 - 1e-9);
    assert.equal(s.plan.length, 10);
    assert.ok(s.speedup >= 2 - 1e-9, `planned speedup ${s.speedup}`);
    assert.ok(s.psnrMeasured >= s.dpPsnr, "the local search never ends below the DP schedule");
    const stored = JSON.parse(readFileSync(out, "utf8"));
    assert.deepEqual(stored.meta.prompts, [run.prompt]);
    assert.deepEqual(stored.schedules.map((x: { plan: string; order?: number }) => [x.plan, x.order ?? 0]), [[s.plan, 0], [sPlus.plan, 1]]);
    // a schedule with block steps carries the probe its planning runs showed at each of them
    for (const x of stored.schedules as Array<{ plan: string; probes?: (number | null)[] }>) {
      if (x.plan.includes("B")) assert.deepEqual(x.probes!.map((v) => v !== null), [...x.plan].map((ch) => ch === "B"), x.plan);
      else assert.equal(x.probes, undefined);
    }
    // schedule=planned reads it from the model's cache_profiles/
    const model2 = join(dir, "model");
    cpSync(tiny.dir, model2, { recursive: true });
    mkdirSync(join(model2, "cache_profiles"), { recursive: true });
    copyFileSync(out, join(model2, "cache_profiles", "mixcache-plans.json"));
    // the speed table: --speed S runs the stored best choice for S; an unplanned speed is a clear error
    assert.equal(stored.speeds.length, 1);
    assert.ok(["mixcache", "mixcache-plus", "fewer-steps"].includes(stored.speeds[0].cache));
    // the table keeps the best of the measured choices on the planning prompts
    const best = Math.max(o.fewer_steps[0].psnr, s.psnrMeasured, o.mixcache_plus[0].psnr);
    assert.equal(stored.speeds[0].psnr, best);
    const fast = cli(["generate", run.prompt, "--model", model2, "--steps", "10", "--speed", "2", "--json", "--out", join(dir, "a.gif"), "--threads", "1"]);
    assert.equal(fast.status, 0, fast.stderr);
    const fj = JSON.parse(fast.stdout.trim());
    assert.equal(fj.cache, ({ mixcache: "mixcache-planned-x2", "mixcache-plus": "mixcache+-planned-x2", "fewer-steps": "fewer-steps-x2" } as Record<string, string>)[stored.speeds[0].cache]);
    const unplanned = cli(["generate", run.prompt, "--model", model2, "--steps", "10", "--speed", "3", "--out", join(dir, "b.gif")]);
    assert.equal(unplanned.status, 2);
    assert.match(unplanned.stderr, /no speed table entry for 3x at 10 steps[\s\S]*mixcache plan --targets 3 --steps 10 --save/);
    const wrongCache = cli(["generate", run.prompt, "--model", model2, "--cache", "teacache", "--target-speedup", "2", "--out", join(dir, "c.gif")]);
    assert.equal(wrongCache.status, 2);
    assert.match(wrongCache.stderr, /--target-speedup steers MixCache, not teacache/);
    const short = cli(["generate", run.prompt, "--model", model2, "--steps", "10", "--target-speedup", "19", "--out", join(dir, "d.gif"), "--threads", "1"]);
    assert.equal(short.status, 0, short.stderr);
    assert.match(short.stderr, /warning: asked for 19x, reached \d+\.\d\dx/);
    const m2 = await loadModel(model2, { threads: 1 });
    try {
      const g = await generate({ model: m2, ...run, cache: makeCache("mixcache", { schedule: "planned", target_speedup: 2 }) });
      assert.equal(g.cache!.trace.map((t) => ({ full: "F", step: "S", cfg: "C", block: "B" })[t.action as string]).join(""), s.plan);
      assert.ok(Math.abs(g.stats.computeSpeedup - s.speedup) < 1e-9, `run ${g.stats.computeSpeedup} vs planned ${s.speedup}`);
      // MixCache+ follows the schedule searched under its own reuse order
      const gp = await generate({ model: m2, ...run, cache: makeCache("mixcache-plus", { schedule: "planned", target_speedup: 2 }) });
      assert.equal(gp.cache!.trace.map((t) => ({ full: "F", step: "S", cfg: "C", block: "B" })[t.action as string]).join(""), sPlus.plan);
    } finally {
      await m2.release();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("localSearch: first-improvement hill climbing reaches the known optimum, in rank order, never twice, within budget", async () => {
  // a unimodal objective over schedules: minus the letters that differ from the optimum; neighbours
  // change one letter, so climbing must end exactly at the optimum
  const optimum = "FSSBFSBBF";
  const score = (p: string) => 0 - [...p].filter((c, i) => c !== optimum[i]).length;
  const neighbours = (p: string) => {
    const out: Array<{ plan: string; rank: number }> = [];
    for (let i = 0; i < p.length; i++)
      for (const c of "FSB") if (c !== p[i]) out.push({ plan: p.slice(0, i) + c + p.slice(i + 1), rank: c === optimum[i] ? 0 : 1 + i });
    return out;
  };
  const seen: string[] = [];
  const evaluate = async (p: string) => (seen.push(p), score(p));
  const start = "FFFFFFFFF";
  const got = await localSearch({ start: { plan: start, psnr: score(start) }, budget: 1000, tried: new Set([start]), neighbours, evaluate });
  assert.equal(got.plan, optimum);
  assert.equal(got.psnr, 0);
  assert.equal(new Set(seen).size, seen.length, "no schedule evaluated twice");
  // the cost model ranks the right letter first, so each move costs one evaluation (6 letters differ)
  // 6 moves, then the optimum's neighbourhood once, less the schedule it came from (already tried)
  assert.equal(seen.length, 6 + neighbours(optimum).length - 1);
  // a budget stops it early, with the best found so far
  const few: string[] = [];
  const part = await localSearch({ start: { plan: start, psnr: score(start) }, budget: 3, tried: new Set([start]), neighbours, evaluate: async (p) => (few.push(p), score(p)) });
  assert.equal(few.length, 3);
  assert.equal(part.psnr, -3);
  // with a misleading rank it still climbs (more evaluations), because every neighbour is tried
  const blind = await localSearch({ start: { plan: start, psnr: score(start) }, budget: 10000, tried: new Set([start]), neighbours: (p) => neighbours(p).map((c) => ({ ...c, rank: -c.rank })), evaluate: async (p) => score(p) });
  assert.equal(blind.plan, optimum);
});
