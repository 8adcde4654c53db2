/**
 * Decision rules of the step- and block-range caches (MagCache, EasyCache, FBCache, DBCache, Δ-DiT),
 * driven directly through their hooks with fake contexts and fake blocks whose outputs are known,
 * so every skip/compute decision and every reused value can be checked exactly. The contract suite
 * (cache_contract.test.ts) covers these strategies end to end on a real tiny model.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeCache } from "../src/cache/registry.ts";
import type { Branch, BranchCtx, RunInfo, AttachedCache } from "../src/pipeline/hooks.ts";
import { ConfigError } from "../src/errors.ts";
import { nearestInterp, tokenNormRatio } from "../src/cache/strategies/magcache.ts";
import { tempDir } from "./support/tmp.ts";
import { WAN_BLOCK } from "../src/models/wan/model.ts";

const D = 4; // model width (temb length)
const TOKENS = 3;
const H = D * TOKENS; // hidden-state size
const X = 6; // latent size

function ctx(index: number, count: number, branch: Branch, numBlocks = 4, latent = new Float32Array(X)): BranchCtx {
  return {
    step: { index, count, timestep: 1000 * (1 - index / count), sigma: 1 - index / count, sigmaNext: 1 - (index + 1) / count, guidance: 5, cfg: true },
    branch, numBlocks, blocks: Array.from({ length: numBlocks }, () => WAN_BLOCK), latent,
    time: { temb: new Float32Array(D), tproj: new Float32Array(6 * D) },
  };
}

function runInfo(steps: number, numBlocks = 4): RunInfo {
  const blocks = Array.from({ length: numBlocks }, () => WAN_BLOCK);
  return { steps, macs: { time: 0, patch: 0, branchIn: 0, module: blocks.map(() => [1, 1, 1]), head: 0, prompt: 0 }, shape: { channels: 1, frames: 1, height: 1, width: X }, cfg: true, numBlocks, blocks, latentSize: X, timesteps: new Float64Array(steps), sigmas: new Float64Array(steps + 1) };
}

/** Fake transformer body: block b at the current step adds delta(step, b, branch) to every element. */
function fakeBody(numBlocks: number, delta: (step: number, block: number, branch: Branch) => number) {
  const calls = new Array<number>(numBlocks).fill(0);
  let step = 0;
  let branch: Branch = "cond";
  return {
    calls,
    at(s: number, b: Branch) {
      step = s;
      branch = b;
    },
    runBlocks: async (from: number, to: number, h: Float32Array) => {
      for (let b = from; b < to; b++) {
        calls[b]++;
        const d = delta(step, b, branch);
        h = h.map((v) => v + d);
      }
      return h;
    },
  };
}

/** Run a body-hook strategy over `steps` steps (both branches); returns actions and outputs per branch. */
async function driveBody(a: AttachedCache, steps: number, numBlocks: number, delta: (step: number, block: number, branch: Branch) => number, h0 = (_s: number) => new Float32Array(H).fill(1)) {
  const body = fakeBody(numBlocks, delta);
  a.hooks.beginRun?.(runInfo(steps, numBlocks));
  const out: Record<Branch, Float32Array[]> = { cond: [], uncond: [] };
  for (let s = 0; s < steps; s++) {
    for (const b of ["cond", "uncond"] as const) {
      body.at(s, b);
      out[b].push(await a.hooks.body!(ctx(s, steps, b, numBlocks), h0(s), body.runBlocks));
    }
  }
  const actions = a.report().trace.map((r) => r.action[0]).join("");
  return { actions, out, calls: body.calls, report: a.report() };
}

function profileDir(ratios: { cond: number[]; uncond: number[] }): string {
  const dir = tempDir("mixcache-magprof-");
  const meta = { method: "magcache", model: "test", steps: ratios.cond.length, shift: 3, sampler: "unipc", guidance: 5, prompts: 1, created: "2025-01-01" };
  writeFileSync(join(dir, "magcache.json"), JSON.stringify({ meta, ratios }));
  return dir;
}

const approx = (a: Float32Array, v: number, msg?: string) => assert.ok(a.every((x) => Math.abs(x - v) < 1e-5), `${msg ?? ""} expected all ${v}, got ${a[0]}`);

// ---------------------------------------------------------------------------------------------
// MagCache

test("magcache: nearestInterp matches MagCache's np.round index mapping", () => {
  assert.deepEqual(nearestInterp([10, 11, 12, 13, 14], 9), [10, 10, 11, 12, 12, 12, 13, 14, 14]);
  assert.deepEqual(nearestInterp([1, 2, 3], 1), [3]);
  assert.deepEqual(nearestInterp([1, 2, 3], 3), [1, 2, 3]);
  assert.deepEqual(nearestInterp([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 6), [1, 3, 5, 7, 9, 11]);
});

test("magcache: tokenNormRatio is the mean over tokens of per-token L2 norm ratios", () => {
  const a = new Float32Array([3, 4, 0, 0, 1, 0]); // token norms 5, 0, 1
  const b = new Float32Array([0, 5, 0, 2, 0, 2]); // token norms 5, 2, 2
  assert.ok(Math.abs(tokenNormRatio(a, b, 2) - (1 + 0 + 0.5) / 3) < 1e-12);
});

test("magcache: skips while the accumulated error stays below the threshold, resets on compute", async () => {
  const dir = profileDir({ cond: new Array(10).fill(0.95), uncond: new Array(10).fill(0.95) });
  const a = makeCache("magcache", { threshold: 0.12, max_skip: 2, retention_ratio: 0.2 }, { profilesDir: dir }).attach();
  // the body adds (step + 1) per block: residual 4 (step + 1)
  const r = await driveBody(a, 10, 4, (s) => s + 1);
  // start = floor(0.2 * 10) = 2; step 2: E = 0.05 (skip); step 3: E = 0.05 + 0.0975 >= 0.12 (compute) ...
  assert.equal(r.actions, "ffsfsfsfsf");
  assert.deepEqual(r.report.warnings, []);
  // a skip reuses the residual of the last computed step: step 2 = h0 + residual of step 1 (4 * 2)
  approx(r.out.cond[2], 1 + 8);
  approx(r.out.cond[3], 1 + 16); // computed
  const row = r.report.trace[3] as Record<string, number>;
  assert.ok(Math.abs(row.err - (0.05 + (1 - 0.95 * 0.95))) < 1e-9, "trace keeps the error that forced the compute");
  assert.equal(r.report.counters.skippedCond, 4);
  assert.equal(r.report.counters.skippedUncond, 4);
  // peak bytes: one residual per branch
  assert.equal(r.report.peakBytes, 2 * H * 4);
});

test("magcache: at most K consecutive skips even when the error never grows", async () => {
  const dir = profileDir({ cond: new Array(12).fill(1), uncond: new Array(12).fill(1) });
  const a = makeCache("magcache", { threshold: 0.12, max_skip: 2 }, { profilesDir: dir }).attach();
  const r = await driveBody(a, 12, 4, () => 1);
  assert.equal(r.actions, "ffssfssfssfs");
});

test("magcache: ratios are nearest-interpolated per branch when the step count differs", async () => {
  // calibrated at 5 steps: a huge jump at index 2 for cond only; interpolated to 9 steps it lands on steps 3..5
  const dir = profileDir({ cond: [1, 1, 2, 1, 1], uncond: [1, 1, 1, 1, 1] });
  const a = makeCache("magcache", { threshold: 0.12, max_skip: 8, retention_ratio: 0.2 }, { profilesDir: dir }).attach();
  const r = await driveBody(a, 9, 4, () => 1);
  // interp index map for 9 steps: [0,0,1,2,2,2,3,4,4] -> gamma 2 at steps 3,4,5 (cond); start = 1
  assert.equal(r.actions, "fssfffsss");
  assert.equal(r.report.counters.skippedUncond, 8);
  assert.ok(r.report.warnings.some((w) => /interpolated to 9/.test(w)));
});

test("magcache: without a profile it warns and estimates gamma online from computed residuals", async () => {
  // constant residual magnitude: online gamma = 1, so it skips up to K
  let a = makeCache("magcache", { threshold: 0.12, max_skip: 2 }, { profilesDir: tempDir("mixcache-empty-") }).attach();
  let r = await driveBody(a, 10, 4, () => 1);
  assert.ok(r.report.warnings.some((w) => /online/.test(w)));
  assert.equal(r.actions, "ffssfssfss");
  // residual halves every step: online gamma 0.5 means |1 - R| = 0.5 > threshold: never skip
  a = makeCache("magcache", { threshold: 0.12, max_skip: 2 }).attach();
  r = await driveBody(a, 10, 4, (s) => 0.5 ** s);
  assert.equal(r.actions, "ffffffffff");
  // threshold 0 never skips
  a = makeCache("magcache", { threshold: 0 }).attach();
  r = await driveBody(a, 10, 4, () => 1);
  assert.equal(r.actions, "ffffffffff");
});

// ---------------------------------------------------------------------------------------------
// EasyCache

/** Drive EasyCache's branch hook: latent x_t = a t, cond velocity 1 + a t, uncond velocity -1 - 2 a t. */
async function driveEasy(a: AttachedCache, steps: number, rate: number) {
  const calls: Record<Branch, number[]> = { cond: [], uncond: [] };
  const out: Record<Branch, Float32Array[]> = { cond: [], uncond: [] };
  for (let s = 0; s < steps; s++) {
    const x = new Float32Array(X).fill(rate * s);
    for (const b of ["cond", "uncond"] as const) {
      const v = b === "cond" ? 1 + rate * s : -1 - 2 * rate * s;
      out[b].push(await a.hooks.branch!(ctx(s, steps, b, 4, x), async () => {
        calls[b].push(s);
        return new Float32Array(X).fill(v);
      }));
    }
  }
  return { calls, out, actions: a.report().trace.map((r) => r.action[0]).join(""), report: a.report() };
}

test("easycache: skips while the predicted change accumulates below thresh; forced first and last steps", async () => {
  const a = makeCache("easycache", { thresh: 0.05, ret_ratio: 0.2 }).attach();
  // k = 1 and the predicted change per step is 0.001 / |v|: everything between the forced steps is skipped
  const r = await driveEasy(a, 10, 0.001);
  assert.equal(r.actions, "ffsssssssf");
  assert.deepEqual(r.calls.cond, [0, 1, 9]);
  const k = (r.report.trace[2] as Record<string, number>).k;
  assert.ok(Math.abs(k - 1) < 1e-4, `k = ${k}`);
});

test("easycache: the cond decision applies to uncond, which reuses its own output - input", async () => {
  const a = makeCache("easycache", { thresh: 0.05, ret_ratio: 0.2 }).attach();
  // predicted change ~0.03 per step: skip, then the accumulator crosses 0.05 and resets
  const r = await driveEasy(a, 10, 0.03);
  assert.equal(r.actions, "ffsfsfsfsf");
  assert.deepEqual(r.calls.uncond, r.calls.cond, "uncond computes exactly when cond does");
  assert.deepEqual(r.calls.cond, [0, 1, 3, 5, 7, 9]);
  // step 2 uncond: x_2 + (v_1 - x_1) = 0.06 + (-1.06 - 0.03)
  approx(r.out.uncond[2], 0.06 + (-1 - 0.06 - 0.03));
  // step 2 cond: x_2 + (v_1 - x_1) = 0.06 + (1.03 - 0.03)
  approx(r.out.cond[2], 0.06 + 1);
  assert.equal(r.report.counters.skippedUncond, 4);
  // thresh 0 never skips
  const z = await driveEasy(makeCache("easycache", { thresh: 0 }).attach(), 10, 0.001);
  assert.equal(z.actions, "ffffffffff");
});

test("easycache: ret_ratio is a fraction of the run's steps", async () => {
  const r = await driveEasy(makeCache("easycache", { thresh: 0.05, ret_ratio: 0.5 }).attach(), 10, 0.001);
  assert.equal(r.actions, "fffffssssf");
});

// ---------------------------------------------------------------------------------------------
// First-Block Cache

test("fbcache: skips blocks 1..L-1 while block 0's residual is stable and computes when it changes a lot", async () => {
  const a = makeCache("fbcache", { threshold: 0.05 }).attach();
  // block 0 adds 1 (2 at step 4); blocks 1..3 add 10 * (step + 1)
  const r = await driveBody(a, 7, 4, (s, b) => (b === 0 ? (s === 4 ? 2 : 1) : 10 * (s + 1)));
  assert.equal(r.actions, "fsssffs");
  // block 0 runs every step; blocks 1..3 only on full steps (steps 0, 4, 5), both branches
  assert.deepEqual(r.calls, [14, 6, 6, 6]);
  // skip: block-0 output of this step + residual of blocks 1..3 from step 0 (3 * 10)
  approx(r.out.cond[1], 1 + 1 + 30);
  approx(r.out.cond[4], 1 + 2 + 3 * 50, "computed");
});

test("fbcache: compares with the block-0 residual of the last FULL step, not the previous step", async () => {
  const a = makeCache("fbcache", { threshold: 0.05 }).attach();
  // block-0 residual drifts 2% per step: steps 1, 2 skip (2%, 4% from step 0); step 3 (6%) computes
  const r = await driveBody(a, 7, 3, (s, b) => (b === 0 ? 1 + 0.02 * s : 1));
  assert.equal(r.actions, "fssfssf");
  const z = await driveBody(makeCache("fbcache", { threshold: 0 }).attach(), 5, 3, () => 1);
  assert.equal(z.actions, "fffff", "threshold 0 never skips, even at zero distance");
});

// ---------------------------------------------------------------------------------------------
// DBCache

test("dbcache: warm-up steps are always computed, then the middle blocks are reused", async () => {
  const a = makeCache("dbcache", { fn: 1, bn: 0, threshold: 0.08, warmup: 3 }).attach();
  const r = await driveBody(a, 8, 4, (s, b) => (b === 0 ? 1 : s + 1));
  assert.equal(r.actions, "fffbbbbb");
  // skip: h_Fn + middle residual of step 2 (3 blocks x 3)
  approx(r.out.cond[5], 1 + 1 + 9);
});

test("dbcache: max_continuous and max_cached cap the skips", async () => {
  let r = await driveBody(makeCache("dbcache", { warmup: 1, max_continuous: 2 }).attach(), 10, 4, () => 1);
  assert.equal(r.actions, "fbbfbbfbbf");
  r = await driveBody(makeCache("dbcache", { warmup: 1, max_cached: 3 }).attach(), 10, 4, () => 1);
  assert.equal(r.actions, "fbbbffffff");
  assert.equal(r.report.counters.skippedCond, 3);
  assert.equal(r.report.counters.skippedUncond, 3);
});

test("dbcache: Fn front and Bn back blocks always run; the decision uses the Fn residual", async () => {
  const a = makeCache("dbcache", { fn: 2, bn: 1, warmup: 1, threshold: 0.08 }).attach();
  // front residual changes 50% at step 3 -> compute there
  const r = await driveBody(a, 6, 5, (s, b) => (b < 2 ? (s === 3 ? 1.5 : 1) : b === 4 ? 100 * (s + 1) : 1));
  assert.equal(r.actions, "fbbffb");
  assert.deepEqual(r.calls, [12, 12, 6, 6, 12]);
  // step 1 (skip): front 2 + middle residual 2 (from step 0) + back block of step 1 (200)
  approx(r.out.cond[1], 1 + 2 + 2 + 200);
  assert.ok(r.report.tag.startsWith("dbcache-F2B1-t0.08-w1"));
});

test("dbcache: fn + bn must leave a middle block", () => {
  const a = makeCache("dbcache", { fn: 3, bn: 1 }).attach();
  assert.throws(() => a.hooks.beginRun!(runInfo(10, 4)), (e: Error) => e instanceof ConfigError && /no middle block/.test(e.message));
});

// ---------------------------------------------------------------------------------------------
// Δ-DiT

test("delta-dit: caches the rear range before the boundary and the front range after it", async () => {
  const a = makeCache("delta-dit", { interval: 2, boundary: 0.5, range: 0.5 }).attach();
  // L = 4, cached range = 2 blocks; block b adds (b + 1) * (step + 1)
  const r = await driveBody(a, 10, 4, (s, b) => (b + 1) * (s + 1));
  // steps 0..4 early (rear [2,4) cached), 5..9 late (front [0,2) cached); step 5 is a forced refresh
  assert.equal(r.actions, "fbfbffbfbf");
  const rows = r.report.trace as Array<Record<string, unknown>>;
  assert.deepEqual(rows.map((x) => x.range), ["rear", "rear", "rear", "rear", "rear", "front", "front", "front", "front", "front"]);
  // step 1 (rear cached): front blocks of step 1 (1*2 + 2*2) + rear deviation of step 0 (3 + 4)
  approx(r.out.cond[1], 1 + 6 + 7);
  // step 6 (front cached): front deviation of step 5 (1*6 + 2*6) + rear blocks of step 6 (3*7 + 4*7)
  approx(r.out.cond[6], 1 + 18 + 49);
  // blocks per branch: front blocks skipped at steps 6 and 8, rear blocks at 1 and 3
  assert.deepEqual(r.calls, [16, 16, 16, 16]);
  assert.equal(r.report.peakBytes, 2 * H * 4, "one deviation tensor per branch");
});

test("delta-dit: interval 1 computes every step", async () => {
  const r = await driveBody(makeCache("delta-dit", { interval: 1 }).attach(), 6, 4, () => 1);
  assert.equal(r.actions, "ffffff");
});

test("step-level tags are compact and distinct per configuration", () => {
  const tags = [
    makeCache("magcache").tag, makeCache("magcache", { max_skip: 4 }).tag,
    makeCache("easycache").tag, makeCache("easycache", { ret_ratio: 0.1 }).tag,
    makeCache("fbcache").tag, makeCache("dbcache").tag, makeCache("dbcache", { max_continuous: 3 }).tag,
    makeCache("delta-dit").tag, makeCache("delta-dit", { boundary: 0.3 }).tag,
  ];
  assert.equal(new Set(tags).size, tags.length);
  assert.equal(makeCache("magcache").tag, "magcache-t0.12-K2-r0.2");
  assert.equal(makeCache("fbcache").tag, "fbcache-t0.05");
  assert.equal(makeCache("dbcache").tag, "dbcache-F1B0-t0.08");
  assert.equal(makeCache("easycache").tag, "easycache-t0.05-r0.2");
  assert.equal(makeCache("delta-dit").tag, "delta-dit-N2-b0.5-r0.75");
});
