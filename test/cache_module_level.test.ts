/**
 * Focused unit tests of the module-level caches (PAB, FasterCache, TaylorSeer, FORA) and the FFT
 * behind FasterCache's CFG-Cache. The hooks are driven directly with fake step contexts and fake
 * compute callbacks, so every decision and every approximation is checked against a formula.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { makeCache } from "../src/cache/registry.ts";
import type { Branch, BranchCtx, RunInfo, StepInfo, AttachedCache } from "../src/pipeline/hooks.ts";
import { WAN_BLOCK, type ModuleKind } from "../src/models/wan/model.ts";
import type { ModuleDecl } from "../src/models/family.ts";

/** Wan's module declaration by name. */
const decl = (kind: ModuleKind): ModuleDecl => WAN_BLOCK.modules.find((m) => m.name === kind)!;
import { fft, fft2, ifft, ifft2, lowFrequencyMask } from "../src/tensor/fft.ts";
import { addBands, addBandsTime, deltaBands, deltaSpectrum, fasterCacheExtrapolate, splitBands } from "../src/cache/strategies/fastercache.ts";
import type { LatentShape } from "../src/models/types.ts";
import { taylorPredict, taylorUpdate } from "../src/cache/strategies/taylorseer.ts";

// ---------------------------------------------------------------------------------------------
// fakes

const D = 4; // hidden width of the fake model
const TOKENS = 3;

/** Timesteps falling linearly from 999 to ~0 over `count` steps. */
function timesteps(count: number): number[] {
  return Array.from({ length: count }, (_, i) => Math.round(999 * (1 - i / count)));
}

function stepInfo(index: number, count: number, timestep: number): StepInfo {
  return { index, count, timestep, sigma: timestep / 1000, sigmaNext: 0, guidance: 5, cfg: true };
}

function ctxFor(step: StepInfo, branch: Branch, latent = new Float32Array(8), condVelocity?: Float32Array): BranchCtx {
  return { step, branch, numBlocks: 1, blocks: [WAN_BLOCK], latent, time: { temb: new Float32Array(D), tproj: new Float32Array(6 * D) }, condVelocity };
}

function runInfo(count: number, extra: Record<string, unknown> = {}): RunInfo {
  return {
    steps: count, shape: { channels: 1, frames: 1, height: 1, width: 8 }, cfg: true, numBlocks: 1, blocks: [WAN_BLOCK], latentSize: 8, macs: { time: 0, patch: 0, branchIn: 0, module: [[1, 1, 1]], head: 0, prompt: 0 },
    timesteps: Float64Array.from(timesteps(count)), sigmas: new Float64Array(count + 1), ...extra,
  } as RunInfo;
}

/** A module whose output is value(step, element); records the steps it really ran at. */
function fakeModule(value: (step: number, j: number) => number, n = TOKENS * D) {
  const ran: number[] = [];
  let step = 0;
  return {
    ran,
    at(s: number) {
      step = s;
      return async (_h: Float32Array) => {
        ran.push(step);
        const out = new Float32Array(n);
        for (let j = 0; j < n; j++) out[j] = value(step, j);
        return out;
      };
    },
  };
}

/** Drive one module kind of block 0 (cond branch) through `count` steps; returns outputs per step. */
async function driveModule(att: AttachedCache, kind: ModuleKind, count: number, mod_: ReturnType<typeof fakeModule>, ts = timesteps(count)) {
  const outs: Float32Array[] = [];
  const h = new Float32Array(TOKENS * D);
  att.hooks.beginRun?.(runInfo(count));
  for (let i = 0; i < count; i++) {
    const step = stepInfo(i, count, ts[i]);
    att.hooks.beginStep?.(step, new Float32Array(8));
    outs.push(await att.hooks.module!(ctxFor(step, "cond"), 0, decl(kind), h, mod_.at(i)));
    att.hooks.endStep?.(step, { velocity: new Float32Array(8), cond: new Float32Array(8), uncond: null, latent: new Float32Array(8) });
  }
  return outs;
}

/** Drive the body seam (cond branch) through `count` steps: the fake body adds value(step, j) to h0. */
async function driveBody(att: AttachedCache, count: number, value: (step: number, j: number) => number, h0 = new Float32Array(TOKENS * D)) {
  const outs: Float32Array[] = [];
  const ran: number[] = [];
  att.hooks.beginRun?.(runInfo(count));
  for (let i = 0; i < count; i++) {
    const step = stepInfo(i, count, timesteps(count)[i]);
    att.hooks.beginStep?.(step, new Float32Array(8));
    outs.push(await att.hooks.body!(ctxFor(step, "cond"), h0, async (from, to, h) => {
      assert.deepEqual([from, to], [0, 1], "the whole body");
      ran.push(i);
      return Float32Array.from(h, (x, j) => x + value(i, j));
    }));
    att.hooks.endStep?.(step, { velocity: new Float32Array(8), cond: new Float32Array(8), uncond: null, latent: new Float32Array(8) });
  }
  return { outs, ran };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** Deterministic pseudo-random values in [-1, 1). */
function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// PAB

test("pab: inside the window a module is recomputed exactly every r steps, outside always", async () => {
  const count = 20;
  const ts = timesteps(count);
  for (const [kind, r] of [["sa", 2], ["ca", 3], ["ffn", 1]] as const) {
    const att = makeCache("pab", { sa_range: 2, ca_range: 3 }).attach();
    const mod = fakeModule((s, j) => s * 100 + j);
    const outs = await driveModule(att, kind, count, mod);
    const expected: number[] = [];
    let last = -1;
    for (let i = 0; i < count; i++) {
      const inWindow = 100 < ts[i] && ts[i] < 800;
      if (i === 0 || !inWindow || i % r === 0) {
        expected.push(i);
        last = i;
      }
      // a broadcast returns the last computed output unchanged
      assert.equal(outs[i][5], last * 100 + 5, `${kind} step ${i}`);
    }
    assert.deepEqual(mod.ran, expected, `${kind} computed steps`);
    const inside = expected.filter((i) => 100 < ts[i] && ts[i] < 800);
    assert.ok(inside.every((i) => i % r === 0), `${kind}: recomputes inside the window only at multiples of r`);
    const rep = att.report();
    assert.equal(rep.trace.length, count);
    assert.equal(rep.peakBytes, r > 1 ? TOKENS * D * 4 : 0, `${kind}: one cached tensor per hooked module`);
  }
});

test("pab: the exact options never reuse, and tags name the configuration", async () => {
  const att = makeCache("pab", { sa_range: 1, ca_range: 1, ffn_range: 1 }).attach();
  const mod = fakeModule((s, j) => s + j);
  await driveModule(att, "sa", 12, mod);
  assert.equal(mod.ran.length, 12);
  assert.equal(makeCache("pab").tag, "pab-s2c6");
  assert.equal(makeCache("pab", { ffn_range: 3, t_lo: 200 }).tag, "pab-s2c6f3-t200-800");
});

// ---------------------------------------------------------------------------------------------
// FasterCache: attention extrapolation

test("fastercache: o_t = o_a + w (o_a - o_b) from the last two computed attention outputs", async () => {
  const last = Float32Array.from([1, 2, 3]), prev = Float32Array.from([0, 4, 3]);
  assert.deepEqual(fasterCacheExtrapolate(last, prev, 0.5), Float32Array.from([1.5, 1, 3]));

  // every step inside the (-1, 681) window, r = 2: computed at even steps, extrapolated at odd ones
  const count = 9;
  const ts = Array.from({ length: count }, (_, i) => 600 - 50 * i);
  const f = (s: number, j: number) => 7 * j + (j + 1) * 3 * s + 0.25 * s * s;
  for (const w of [0.5, 0.3]) {
    const att = makeCache("fastercache", { weight: w, uncond_range: 1 }).attach();
    const mod = fakeModule(f);
    const outs = await driveModule(att, "sa", count, mod, ts);
    assert.deepEqual(mod.ran, [0, 2, 4, 6, 8]);
    for (let i = 1; i < count; i += 2) {
      const a = i - 1, b = i - 3;
      for (let j = 0; j < TOKENS * D; j++) {
        const want = b < 0 ? f(a, j) : Math.fround(f(a, j) + w * (f(a, j) - f(b, j)));
        assert.ok(Math.abs(outs[i][j] - want) <= 1e-5 * Math.max(1, Math.abs(want)), `w=${w} step ${i} j ${j}: ${outs[i][j]} vs ${want}`);
      }
    }
    assert.equal(att.report().counters.approximatedAttnCond, 4);
  }
  // cross attention and FFN are never touched by the attention cache
  const att = makeCache("fastercache").attach();
  const mod = fakeModule(f);
  await driveModule(att, "ca", count, mod, ts);
  assert.equal(mod.ran.length, count);
});

test("fastercache: attention is computed outside its timestep window", async () => {
  const count = 10;
  const ts = timesteps(count); // 999 .. 100; window (-1, 681) opens at step 4 (t = 599)
  const att = makeCache("fastercache", { uncond_range: 1 }).attach();
  const mod = fakeModule((s, j) => s + j);
  await driveModule(att, "sa", count, mod, ts);
  const expected = Array.from({ length: count }, (_, i) => i).filter((i) => !(ts[i] < 681) || i % 2 === 0);
  assert.deepEqual(mod.ran, expected);
});

// ---------------------------------------------------------------------------------------------
// FFT

function naiveDft2(x: ArrayLike<number>, xi: ArrayLike<number> | null, H: number, W: number, inverse = false) {
  const re = new Float64Array(H * W), im = new Float64Array(H * W);
  const sgn = inverse ? 1 : -1;
  for (let ky = 0; ky < H; ky++)
    for (let kx = 0; kx < W; kx++) {
      let sr = 0, si = 0;
      for (let y = 0; y < H; y++)
        for (let x0 = 0; x0 < W; x0++) {
          const a = sgn * 2 * Math.PI * ((ky * y) / H + (kx * x0) / W);
          const vr = x[y * W + x0], vi = xi ? xi[y * W + x0] : 0;
          sr += vr * Math.cos(a) - vi * Math.sin(a);
          si += vr * Math.sin(a) + vi * Math.cos(a);
        }
      const s = inverse ? 1 / (H * W) : 1;
      re[ky * W + kx] = sr * s;
      im[ky * W + kx] = si * s;
    }
  return { re, im };
}

test("fft: radix-2 and Bluestein agree with a naive DFT (1-D, any length)", () => {
  for (let n = 1; n <= 33; n++) {
    const x = rand(n, n), y = rand(n, 100 + n);
    const re = Float64Array.from(x), im = Float64Array.from(y);
    fft(re, im);
    const want = naiveDft2(x, y, 1, n);
    assert.ok(maxAbsDiff(re, want.re) < 1e-9 && maxAbsDiff(im, want.im) < 1e-9, `n=${n}`);
    ifft(re, im);
    assert.ok(maxAbsDiff(re, x) < 1e-12 && maxAbsDiff(im, y) < 1e-12, `n=${n} round trip`);
  }
});

test("fft2: agrees with a naive 2-D DFT and inverts (8x8, 6x10, 5x7, 32x32)", () => {
  for (const [H, W] of [[8, 8], [6, 10], [5, 7], [32, 32], [1, 12]]) {
    const x = rand(H * W, H * 31 + W);
    const re = Float64Array.from(x), im = new Float64Array(H * W);
    fft2(re, im, H, W);
    const want = naiveDft2(x, null, H, W);
    const tol = 1e-9 * H * W;
    assert.ok(maxAbsDiff(re, want.re) < tol && maxAbsDiff(im, want.im) < tol, `${H}x${W}`);
    ifft2(re, im, H, W);
    assert.ok(maxAbsDiff(re, x) < 1e-12 && maxAbsDiff(im, new Float64Array(H * W)) < 1e-12, `${H}x${W} round trip`);
  }
});

test("fft: the low-frequency mask is FasterCache's centred disc of radius min(H, W) // 5 after fftshift", () => {
  for (const [H, W] of [[8, 8], [10, 15], [60, 104], [7, 9]]) {
    const mask = lowFrequencyMask(H, W);
    const r = Math.floor(Math.min(H, W) / 5);
    // build the shifted mask explicitly, then undo fftshift (index k sits at (k + n//2) % n)
    for (let ky = 0; ky < H; ky++)
      for (let kx = 0; kx < W; kx++) {
        const sy = (ky + Math.floor(H / 2)) % H, sx = (kx + Math.floor(W / 2)) % W;
        const inDisc = (sx - Math.floor(W / 2)) ** 2 + (sy - Math.floor(H / 2)) ** 2 <= r * r;
        assert.equal(mask[ky * W + kx], inDisc ? 1 : 0, `${H}x${W} (${ky}, ${kx})`);
      }
    assert.equal(mask[0], 1, "DC is always low");
  }
  assert.equal(lowFrequencyMask(8, 8).reduce((a, b) => a + b, 0), 5); // radius 1: DC + 4 neighbours
});

// ---------------------------------------------------------------------------------------------
// FasterCache: CFG-Cache band split

const DIMS: LatentShape = { channels: 2, frames: 3, height: 10, width: 10 };
const NLAT = 2 * 3 * 10 * 10;

test("fastercache: low + high bands reconstruct the delta exactly when the alphas are 1", () => {
  const x = rand(NLAT, 7);
  const { low, high } = splitBands(x, DIMS);
  const P = 100;
  for (let p = 0; p < 6; p++) {
    const re = new Float64Array(P), im = new Float64Array(P);
    for (let j = 0; j < P; j++) {
      re[j] = low.re[p * P + j] + high.re[p * P + j];
      im[j] = low.im[p * P + j] + high.im[p * P + j];
    }
    ifft2(re, im, 10, 10);
    assert.ok(maxAbsDiff(re, x.subarray(p * P, (p + 1) * P)) < 1e-12, `plane ${p}`);
  }
  // each frequency lies in exactly one band
  const mask = lowFrequencyMask(10, 10);
  for (let j = 0; j < NLAT; j++) {
    if (mask[j % P]) assert.ok(high.re[j] === 0 && high.im[j] === 0);
    else assert.ok(low.re[j] === 0 && low.im[j] === 0);
  }
  // uncond = cond + IFFT(low + high) of (uncond - cond)
  const cond = rand(NLAT, 11), uncond = rand(NLAT, 12);
  const spec = deltaSpectrum(uncond, cond, DIMS);
  assert.ok(maxAbsDiff(addBands(cond, spec.re, spec.im, DIMS, 1, 1), uncond) < 1e-5);
});

test("fastercache: scaling one band scales exactly that band (checked with a naive DFT)", () => {
  const cond = rand(NLAT, 21), uncond = rand(NLAT, 22);
  const spec = deltaSpectrum(uncond, cond, DIMS);
  const out = addBands(cond, spec.re, spec.im, DIMS, 2, 1); // = uncond + low-pass(delta)
  const mask = lowFrequencyMask(10, 10);
  const P = 100;
  for (let p = 0; p < 6; p++) {
    const delta = new Float64Array(P);
    for (let j = 0; j < P; j++) delta[j] = uncond[p * P + j] - cond[p * P + j];
    const F = naiveDft2(delta, null, 10, 10);
    for (let j = 0; j < P; j++) if (!mask[j]) F.re[j] = F.im[j] = 0;
    const lowPass = naiveDft2(F.re, F.im, 10, 10, true).re;
    for (let j = 0; j < P; j++) assert.ok(Math.abs(out[p * P + j] - (uncond[p * P + j] + lowPass[j])) < 1e-5, `plane ${p} j ${j}`);
  }
});

test("fastercache: the time-domain bands (deltaBands + addBandsTime, what the strategy runs) equal the spectral form", () => {
  const cond = rand(NLAT, 31), uncond = rand(NLAT, 32);
  const spec = deltaSpectrum(uncond, cond, DIMS);
  const bands = deltaBands(uncond, cond, DIMS);
  for (const [sLow, sHigh] of [[1, 1], [1.1, 1], [1, 1.21], [1.331, 1.1], [0, 2]]) {
    const ref = addBands(cond, spec.re, spec.im, DIMS, sLow, sHigh);
    const fast = addBandsTime(cond, bands.delta, bands.low, sLow, sHigh);
    let d = 0, m = 0;
    for (let j = 0; j < NLAT; j++) {
      d = Math.max(d, Math.abs(fast[j] - ref[j]));
      m = Math.max(m, Math.abs(ref[j]));
    }
    console.log(`  sLow ${sLow} sHigh ${sHigh}: max|diff| ${d.toExponential(2)} (max ${m.toFixed(3)}; tolerance 2e-6 x (1 + max))`);
    assert.ok(d <= 2e-6 * (1 + m));
  }
});

test("fastercache: CFG-Cache skips the uncond branch every u steps in its window and rebuilds it from the cond velocity", async () => {
  const count = 12;
  const ts = Array.from({ length: count }, (_, i) => (i < 2 ? 900 : 600 - 40 * i)); // window (-1, 641) from step 2
  const att = makeCache("fastercache", { attn_range: 1, uncond_range: 3, alpha_low: 1, alpha_high: 1 }).attach();
  att.hooks.beginRun?.(runInfo(count, { latentSize: NLAT, shape: DIMS }));
  const vcAt = (i: number) => rand(NLAT, 1000 + i);
  const vuAt = (i: number) => rand(NLAT, 2000 + i);
  const ran: number[] = [];
  let lastDelta: Float32Array | null = null;
  for (let i = 0; i < count; i++) {
    const step = stepInfo(i, count, ts[i]);
    att.hooks.beginStep?.(step, new Float32Array(NLAT));
    const vc = vcAt(i);
    const vu = await att.hooks.branch!(ctxFor(step, "uncond", new Float32Array(NLAT), vc), async () => {
      ran.push(i);
      return vuAt(i);
    });
    const skipped = i > 0 && ts[i] < 641 && i % 3 !== 0;
    if (!skipped) {
      assert.equal(vu[0], vuAt(i)[0]);
      const u = vuAt(i);
      lastDelta = new Float32Array(NLAT);
      for (let j = 0; j < NLAT; j++) lastDelta[j] = u[j] - vc[j];
    } else {
      const want = new Float32Array(NLAT);
      for (let j = 0; j < NLAT; j++) want[j] = vc[j] + lastDelta![j];
      assert.ok(maxAbsDiff(vu, want) < 1e-5, `step ${i}`);
    }
    att.hooks.endStep?.(step, { velocity: vc, cond: vc, uncond: vu, latent: new Float32Array(NLAT) });
  }
  assert.deepEqual(ran, [0, 1, 3, 6, 9]);
  const rep = att.report();
  assert.equal(rep.counters.skippedUncond, count - 5);
  assert.deepEqual(rep.trace.map((r) => r.uncond), Array.from({ length: count }, (_, i) => (ran.includes(i) ? "full" : "cfg-cache")));
  assert.equal(rep.peakBytes, 2 * NLAT * 4, "one complex spectrum of the delta");
  assert.deepEqual(rep.warnings, []);
});

test("fastercache: the band scales compound over consecutive skips inside their windows", async () => {
  const count = 6;
  const ts = [900, 500, 400, 250, 200, 150]; // low window (99, 901), high window (-1, 301)
  const att = makeCache("fastercache", { attn_range: 1, uncond_range: 6 }).attach();
  att.hooks.beginRun?.(runInfo(count, { latentSize: NLAT, shape: DIMS }));
  for (let i = 0; i < count; i++) {
    const step = stepInfo(i, count, ts[i]);
    att.hooks.beginStep?.(step, new Float32Array(NLAT));
    await att.hooks.branch!(ctxFor(step, "uncond", new Float32Array(NLAT), rand(NLAT, i)), async () => rand(NLAT, 50 + i));
    att.hooks.endStep?.(step, { velocity: new Float32Array(NLAT), cond: new Float32Array(NLAT), uncond: null, latent: new Float32Array(NLAT) });
  }
  const rows = att.report().trace;
  const close = (a: unknown, b: number) => Math.abs((a as number) - b) < 1e-12;
  assert.ok(close(rows[1].sLow, 1.1) && close(rows[1].sHigh, 1));
  assert.ok(close(rows[2].sLow, 1.1 ** 2) && close(rows[2].sHigh, 1));
  assert.ok(close(rows[3].sLow, 1.1 ** 3) && close(rows[3].sHigh, 1.1));
  assert.ok(close(rows[5].sLow, 1.1 ** 5) && close(rows[5].sHigh, 1.1 ** 3));
});

test("fastercache: the exact options return every computed tensor itself; tags are unique", async () => {
  const att = makeCache("fastercache", { attn_range: 1, uncond_range: 1 }).attach();
  att.hooks.beginRun?.(runInfo(8, { latentSize: NLAT, shape: DIMS }));
  const h = new Float32Array(TOKENS * D);
  for (let i = 0; i < 8; i++) {
    const step = stepInfo(i, 8, 500 - i);
    const r = new Float32Array(TOKENS * D).fill(i);
    assert.equal(await att.hooks.module!(ctxFor(step, "cond"), 0, decl("sa"), h, async () => r), r);
    const v = rand(NLAT, i);
    assert.equal(await att.hooks.branch!(ctxFor(step, "uncond", new Float32Array(NLAT), rand(NLAT, 9)), async () => v), v);
  }
  assert.equal(att.report().peakBytes, 0);
  assert.equal(makeCache("fastercache").tag, "fastercache-a2-u5");
  assert.equal(makeCache("fastercache", { weight: 0.3, alpha_high: 1.2, uncond_t_hi: 700 }).tag, "fastercache-a2-u5-w0.3-ah1.2-ut-1_700");
});

// ---------------------------------------------------------------------------------------------
// TaylorSeer

test("taylorseer: order 1 forecasts a linear-in-step signal exactly between full steps (modules=all: the body residual)", async () => {
  const count = 14;
  const f = (s: number, j: number) => j - 3 + 2 * (j + 1) * s; // integers: exact in float32
  const att = makeCache("taylorseer", { interval: 4, order: 1, warmup: 2 }).attach();
  assert.equal(att.hooks.module, undefined, "every module forecast together: the body seam only");
  const h0 = Float32Array.from({ length: TOKENS * D }, (_, j) => 10 * j);
  const { outs, ran } = await driveBody(att, count, f, h0);
  assert.deepEqual(ran, [0, 1, 5, 9, 13]); // warm-up 0, 1; then every 4 steps after the last full step
  for (let i = 0; i < count; i++) for (let j = 0; j < TOKENS * D; j++) assert.equal(outs[i][j], h0[j] + f(i, j), `step ${i} j ${j}`);
  const rep = att.report();
  assert.equal(rep.peakBytes, 2 * TOKENS * D * 4, "(O + 1) factors of the summed residual");
  assert.deepEqual(rep.trace.map((r) => r.action), ["full", "full", "taylor", "taylor", "taylor", "full", "taylor", "taylor", "taylor", "full", "taylor", "taylor", "taylor", "full"]);
  assert.equal(rep.counters.reusedModulesCond, 9 * 3, "9 forecast steps x 3 modules");
  // modules=attn: per module on the module seam, the FFN always computed
  const a2 = makeCache("taylorseer", { interval: 4, order: 1, warmup: 2, modules: "attn" }).attach();
  const mod = fakeModule(f);
  const outs2 = await driveModule(a2, "sa", count, mod);
  assert.deepEqual(mod.ran, [0, 1, 5, 9, 13]);
  for (let i = 0; i < count; i++) for (let j = 0; j < TOKENS * D; j++) assert.equal(outs2[i][j], f(i, j), `attn: step ${i} j ${j}`);
  assert.equal(a2.report().peakBytes, 2 * TOKENS * D * 4, "(O + 1) factors per hooked module");
});

test("taylorseer: factors are recursive divided differences; order 0 is plain reuse", () => {
  const f0 = Float32Array.from([1, 2]), f1 = Float32Array.from([3, 6]), f2 = Float32Array.from([9, 14]);
  // full steps at 0, 2, 4 (dt = 2): F1 = (F0 - F0_old) / 2, F2 = (F1 - F1_old) / 2
  let fac = taylorUpdate(f0, [], 0, 2);
  assert.equal(fac.length, 1);
  fac = taylorUpdate(f1, fac, 2, 2);
  assert.deepEqual(fac[1], Float32Array.from([1, 2]));
  fac = taylorUpdate(f2, fac, 2, 2);
  assert.deepEqual(fac[1], Float32Array.from([3, 4]));
  assert.deepEqual(fac[2], Float32Array.from([1, 1]));
  // sum_k F_k d^k / k!
  assert.deepEqual(taylorPredict(fac, 2), Float32Array.from([9 + 6 + 2, 14 + 8 + 2]));
  assert.deepEqual(taylorPredict([f2], 3), f2);
});

test("taylorseer: interval 1 computes every module every step; tags", async () => {
  const att = makeCache("taylorseer", { interval: 1 }).attach();
  const { ran } = await driveBody(att, 10, (s, j) => s * j);
  assert.equal(ran.length, 10);
  assert.equal(att.report().peakBytes, 0);
  assert.equal(makeCache("taylorseer").tag, "taylorseer-N5-O1");
  assert.equal(makeCache("taylorseer", { order: 2, warmup: 1, modules: "attn" }).tag, "taylorseer-N5-O2-W1-attn");
  // modules=attn leaves the FFN uncached
  const a2 = makeCache("taylorseer", { modules: "attn" }).attach();
  const m2 = fakeModule((s, j) => s + j);
  await driveModule(a2, "ffn", 10, m2);
  assert.equal(m2.ran.length, 10);
});

// ---------------------------------------------------------------------------------------------
// FORA

test("fora: full every N steps, the N - 1 steps between reuse the summed residual; per-branch caches", async () => {
  const count = 10;
  const att = makeCache("fora", { interval: 3 }).attach();
  assert.equal(att.hooks.module, undefined, "every module reused together: the body seam only");
  const ran: string[] = [];
  att.hooks.beginRun?.(runInfo(count));
  for (let i = 0; i < count; i++) {
    const step = stepInfo(i, count, timesteps(count)[i]);
    att.hooks.beginStep?.(step, new Float32Array(8));
    for (const branch of ["cond", "uncond"] as const) {
      const h0 = new Float32Array(TOKENS * D).fill(100 * i); // a new input every step
      const out = await att.hooks.body!(ctxFor(step, branch), h0, async (_a, _z, h) => {
        ran.push(`${branch}.${i}`);
        return Float32Array.from(h, (x) => x + (branch === "cond" ? i : -i));
      });
      const src = i - (i % 3);
      assert.equal(out[0], 100 * i + (branch === "cond" ? src : -src), `${branch} step ${i}: this step's input + the cached residual`);
    }
    att.hooks.endStep?.(step, { velocity: new Float32Array(8), cond: new Float32Array(8), uncond: null, latent: new Float32Array(8) });
  }
  assert.equal(ran.length, 2 * 4); // steps 0, 3, 6, 9
  const rep = att.report();
  assert.deepEqual(rep.trace.map((r) => r.action), ["full", "reuse", "reuse", "full", "reuse", "reuse", "full", "reuse", "reuse", "full"]);
  assert.equal(rep.counters.reusedModulesCond, 3 * 6);
  assert.equal(rep.peakBytes, 2 * TOKENS * D * 4, "one summed residual per branch");
  assert.equal(makeCache("fora").tag, "fora-N3");

  const exact = makeCache("fora", { interval: 1 }).attach();
  const { ran: ran1 } = await driveBody(exact, 7, (s, j) => s + j);
  assert.equal(ran1.length, 7);
  assert.equal(exact.report().peakBytes, 0);
});
