import { test } from "node:test";
import assert from "node:assert/strict";
import { UniPCSampler } from "../src/schedulers/unipc.ts";
import { EulerSampler } from "../src/schedulers/euler.ts";
import { eulerFlowGrid, linspace, unipcFlowGrid } from "../src/schedulers/sigmas.ts";
import { makeSampler } from "../src/schedulers/sampler.ts";
import type { Sampler } from "../src/schedulers/types.ts";
import { ConfigError, MixCacheError, UsageError } from "../src/errors.ts";
import { rng } from "./support/randomWeights.ts";

/** Deterministic uniform [-1, 1) values (mulberry32). */
function rand(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Run a full sampling loop with a velocity function of (x, sigma). */
function sample(s: Sampler, x: Float32Array, vel: (x: Float32Array, sigma: number) => Float32Array): Float32Array {
  for (let i = 0; i < s.timesteps.length; i++) x = s.step(i, x, vel(x, s.sigmas[i]));
  return x;
}

function assertGridShape(s: { sigmas: Float64Array; timesteps: Float64Array }, n: number): void {
  assert.equal(s.sigmas.length, n + 1);
  assert.equal(s.timesteps.length, n);
  assert.equal(s.sigmas[n], 0);
  for (let i = 0; i < n; i++) {
    assert.ok(s.sigmas[i] > s.sigmas[i + 1], `sigma ${i} not decreasing`);
    assert.equal(s.sigmas[i], Math.fround(s.sigmas[i]), `sigma ${i} is not a float32 value`);
  }
}

test("numpy-compatible linspace", () => {
  assert.deepEqual([...linspace(1, 0, 5)], [1, 0.75, 0.5, 0.25, 0]);
  assert.deepEqual([...linspace(3, 7, 1)], [3]);
  const y = linspace(1, 1 / 1000, 51);
  assert.equal(y[50], 0.001);
  assert.equal(y[1], 1 * ((0.001 - 1) / 50) + 1);
});

test("UniPC timestep grid, N=50 shift 3 (wan21.md 4.1)", () => {
  const s = makeSampler("unipc", { steps: 50, shift: 3 });
  assertGridShape(s, 50);
  assert.deepEqual([...s.timesteps.slice(0, 5)], [999, 993, 986, 979, 971]);
  assert.deepEqual([...s.timesteps.slice(-4)], [208, 162, 113, 60]);
  for (const t of s.timesteps) assert.ok(Number.isInteger(t));
  assert.ok(Math.abs(s.sigmas[49] - 0.0604) < 5e-5, `sigma_49 = ${s.sigmas[49]}`);
  assert.equal(s.sigmas[0], Math.fround(0.999999)); // the 1e-6 nudge, stored as float32
});

test("UniPC timestep grid, N=50 shift 5", () => {
  const s = makeSampler("unipc", { steps: 50, shift: 5 });
  assertGridShape(s, 50);
  assert.deepEqual([...s.timesteps.slice(0, 5)], [999, 995, 991, 987, 982]);
  assert.deepEqual([...s.timesteps.slice(-4)], [305, 244, 175, 96]);
});

test("UniPC grid for N=1 and shift 1", () => {
  const g = unipcFlowGrid(1, 3);
  assert.deepEqual([...g.timesteps], [999]);
  assert.deepEqual([...g.sigmas], [Math.fround(0.999999), 0]);
  const u = unipcFlowGrid(4, 1); // no shift: linspace(1, 0.001, 5)[:-1]
  assert.deepEqual([...u.timesteps], [999, 750, 500, 250]);
});

test("Euler grid: shift applied at init for sigma_min and again in set_timesteps, float timesteps", () => {
  const g = eulerFlowGrid(50, 3);
  assertGridShape(g, 50);
  assert.equal(g.sigmas[0], 1);
  assert.equal(g.timesteps[0], 1000);
  // sigma_{N-1} = shift(shift(1/1000)) = 0.0089285..., not shift(1/1000) = 0.0029940...
  assert.ok(Math.abs(g.sigmas[49] - 0.00892857) < 1e-7, `sigma_49 = ${g.sigmas[49]}`);
  // float32(1000·sigma), not truncated (values from a numpy emulation of the diffusers code)
  assert.equal(g.timesteps[1], 993.1243896484375);
  assert.equal(g.timesteps[49], 8.928571701049805);
  assert.deepEqual([...eulerFlowGrid(1, 3).sigmas], [1, 0]);
  const e = makeSampler("euler", { steps: 7, shift: 5 });
  assert.equal(e.sigmas[1], 0.9617593288421631);
  assert.equal(e.timesteps[6], 24.414066314697266);
});

test("order-1 UniPC predictor step equals the Euler step on the UniPC sigmas (1e-6 relative)", () => {
  const x = rand(257, 1);
  const v = rand(257, 2);
  for (const [steps, shift] of [[50, 3], [20, 5], [8, 1], [1, 3]] as const) {
    const u = makeSampler("unipc", { steps, shift, order: 1 });
    const got = u.step(0, x, v);
    const dt = u.sigmas[1] - u.sigmas[0];
    for (let j = 0; j < x.length; j++) {
      const want = x[j] + dt * v[j];
      assert.ok(Math.abs(got[j] - want) <= 1e-6 * Math.max(1, Math.abs(want)), `N=${steps} shift=${shift} j=${j}: ${got[j]} vs ${want}`);
    }
  }
});

test("Euler step is x + (sigma_{i+1} - sigma_i) v in float32, and honours out", () => {
  const e = makeSampler("euler", { steps: 10, shift: 3 });
  const x = rand(100, 3);
  const v = rand(100, 4);
  const xCopy = x.slice();
  const y = e.step(3, x, v);
  assert.notEqual(y, x);
  assert.deepEqual(x, xCopy, "x must not be modified");
  const dt = Math.fround(e.sigmas[4] - e.sigmas[3]);
  for (let j = 0; j < x.length; j++) assert.equal(y[j], Math.fround(x[j] + Math.fround(dt * v[j])));
  const inPlace = x.slice();
  assert.equal(e.step(3, inPlace, v, inPlace), inPlace);
  assert.deepEqual(inPlace, y);
});

/**
 * Linear flow: x(σ) = (1−σ)·x0 + σ·e has the constant velocity v = e − x0, so the x0 prediction
 * x − σ·v is exact at every point of the path and both samplers must land on x0 (up to float32
 * rounding: tolerance 2e-6 absolute on values of magnitude <= 2, i.e. a few ulps per step).
 */
function linearFlow(n: number) {
  const x0 = rand(n, 11);
  const e = rand(n, 12);
  const v = new Float32Array(n);
  for (let j = 0; j < n; j++) v[j] = e[j] - x0[j];
  const start = (sigma0: number) => Float32Array.from(x0, (a, j) => (1 - sigma0) * a + sigma0 * e[j]);
  return { x0, e, v, start };
}

test("Euler integrates a constant-velocity linear flow exactly", () => {
  const { x0, e, v, start } = linearFlow(64);
  for (const [steps, shift] of [[1, 3], [7, 1], [50, 3], [30, 5]] as const) {
    const s = makeSampler("euler", { steps, shift });
    let x: Float32Array = start(s.sigmas[0]);
    for (let i = 0; i < steps; i++) {
      x = s.step(i, x, v);
      const sig = s.sigmas[i + 1];
      const onPath = Float32Array.from(x0, (a, j) => (1 - sig) * a + sig * e[j]);
      assert.ok(maxAbsDiff(x, onPath) < 2e-6, `N=${steps} step ${i} left the path`);
    }
    assert.ok(maxAbsDiff(x, x0) < 2e-6, `N=${steps} shift=${shift}: error ${maxAbsDiff(x, x0)}`);
  }
});

test("UniPC (order 1 and 2) recovers x0 exactly for the linear flow", () => {
  const { x0, v, start } = linearFlow(64);
  for (const order of [1, 2]) {
    for (const [steps, shift] of [[1, 3], [2, 3], [7, 1], [50, 3], [30, 5]] as const) {
      const s = makeSampler("unipc", { steps, shift, order });
      const x = sample(s, start(s.sigmas[0]), () => v);
      assert.ok(maxAbsDiff(x, x0) < 2e-6, `order ${order} N=${steps} shift=${shift}: error ${maxAbsDiff(x, x0)}`);
    }
  }
});

/**
 * Nonlinear toy problem: 1-D data from a two-Gaussian mixture, whose exact posterior mean
 * E[x0 | x_σ] (and hence the ideal velocity (x − E[x0|x])/σ) is closed-form. The reference
 * solution of the probability-flow ODE is a float64 RK4 integration with 4000 steps.
 */
const MIX = { mu: [-0.8, 0.9], sd: [0.45, 0.6], w: [0.4, 0.6] };
function x0Hat(x: number, s: number): number {
  let num = 0;
  let den = 0;
  for (let k = 0; k < 2; k++) {
    const m = (1 - s) * MIX.mu[k];
    const vr = (1 - s) ** 2 * MIX.sd[k] ** 2 + s * s;
    const p = (MIX.w[k] * Math.exp((-0.5 * (x - m) ** 2) / vr)) / Math.sqrt(vr);
    num += p * (MIX.mu[k] + (((1 - s) * MIX.sd[k] ** 2) / vr) * (x - m));
    den += p;
  }
  return num / den;
}
const mixVel = (x: number, s: number): number => (x - x0Hat(x, s)) / s;
function mixReference(x: number, s0: number): number {
  const sEnd = 1e-4;
  const m = 4000;
  const h = (sEnd - s0) / m;
  let s = s0;
  for (let k = 0; k < m; k++) {
    const k1 = mixVel(x, s);
    const k2 = mixVel(x + (h / 2) * k1, s + h / 2);
    const k3 = mixVel(x + (h / 2) * k2, s + h / 2);
    const k4 = mixVel(x + h * k3, s + h);
    x += (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4);
    s += h;
  }
  return x0Hat(x, sEnd); // error O(sEnd²)
}

test("nonlinear toy: all samplers converge, UniPC order 2 beats order 1 and Euler", () => {
  const z = Float32Array.from([-2.0, -1.2, -0.5, -0.1, 0.15, 0.6, 1.3, 2.2]); // x at sigma_0 ≈ 1
  const refCache = new Map<number, number[]>();
  const ref = (s0: number): number[] => {
    if (!refCache.has(s0)) refCache.set(s0, Array.from(z, (zj) => mixReference(zj, s0)));
    return refCache.get(s0)!;
  };
  const err = (name: "euler" | "unipc", steps: number, order?: number): number => {
    const s = makeSampler(name, { steps, shift: 3, ...(order === undefined ? {} : { order }) });
    const x = sample(s, z.slice(), (x, sig) => x.map((xj) => mixVel(xj, sig)));
    return maxAbsDiff(x, ref(s.sigmas[0]));
  };
  const Ns = [10, 20, 40];
  const euler = Ns.map((n) => err("euler", n));
  const uni1 = Ns.map((n) => err("unipc", n, 1));
  const uni2 = Ns.map((n) => err("unipc", n, 2));
  const table = `N=${Ns} euler=${euler.map((e) => e.toExponential(2))} unipc1=${uni1.map((e) => e.toExponential(2))} unipc2=${uni2.map((e) => e.toExponential(2))}`;
  for (const errs of [euler, uni1, uni2]) {
    for (let k = 1; k < Ns.length; k++) assert.ok(errs[k] < errs[k - 1], `error must decrease with N: ${table}`);
  }
  for (let k = 0; k < Ns.length; k++) {
    assert.ok(uni2[k] < uni1[k] && uni2[k] < euler[k], `UniPC-2 must beat UniPC-1 and Euler: ${table}`);
  }
  // Second order: doubling N from 20 to 40 cuts the error by well over 2x (observed ~5x).
  assert.ok(uni2[1] / uni2[2] > 3, `UniPC-2 convergence too slow: ${table}`);
  assert.ok(uni2[2] < 0.02, table);
});

test("UniPC matches a line-by-line float32 port of the diffusers step (2e-6)", () => {
  // Expected values from a numpy float32 emulation of diffusers UniPCMultistepScheduler.step
  // (convert_model_output, multistep_uni_c_bh_update, multistep_uni_p_bh_update) with the
  // velocity field v = 0.5·x·(1+σ) + 0.2·x² − 0.3 evaluated in float32.
  const f = Math.fround;
  const vel = (x: Float32Array, s: number) =>
    x.map((a) => f(f(f(f(f(0.5) * a) * f(1 + s)) + f(f(f(0.2) * a) * a)) - f(0.3)));
  const x = Float32Array.from([0.8, -1.3, 0.25, 2.1, -0.6, 0.0, 1.05, -2.4]);
  const cases = [
    { steps: 6, shift: 3, order: 2, want: [0.5179222822189331, -0.4547288119792938, 0.32029661536216736, 0.8818517923355103, -0.05678419768810272, 0.21939879655838013, 0.5980767011642456, -1.3178133964538574] },
    { steps: 5, shift: 5, order: 1, want: [0.46610701084136963, -0.37568363547325134, 0.31318849325180054, 0.7046428918838501, -0.008619099855422974, 0.2304285168647766, 0.5240277051925659, -1.2145349979400635] },
  ];
  for (const c of cases) {
    const got = sample(makeSampler("unipc", { steps: c.steps, shift: c.shift, order: c.order }), x.slice(), vel);
    assert.ok(maxAbsDiff(got, c.want) < 2e-6, `N=${c.steps} order ${c.order}: ${maxAbsDiff(got, c.want)}`);
  }
});

test("UniPC order schedule, final step returns the x0 prediction, no NaN", () => {
  const u = new UniPCSampler(5, 3);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => u.orderAt(i)), [1, 2, 2, 2, 1]);
  assert.deepEqual([0, 1].map((i) => new UniPCSampler(2, 3).orderAt(i)), [1, 1]);
  assert.deepEqual([0, 1, 2].map((i) => new UniPCSampler(3, 3, 1).orderAt(i)), [1, 1, 1]);
  // Run to the last step, then check x_N = m_{N-1} (the corrected x is not used at sigma = 0).
  for (const order of [1, 2]) {
    const s = makeSampler("unipc", { steps: 4, shift: 3, order });
    let x: Float32Array = rand(50, 5);
    for (let i = 0; i < 3; i++) x = s.step(i, x, rand(50, 10 + i));
    const v = rand(50, 20);
    const m = Float32Array.from(x, (a, j) => a - s.sigmas[3] * v[j]);
    const last = s.step(3, x, v);
    assert.ok(last.every(Number.isFinite));
    assert.ok(maxAbsDiff(last, m) < 1e-6);
  }
});

test("UniPC: out may alias x, step(0) restarts, reset() forgets history", () => {
  const s = makeSampler("unipc", { steps: 6, shift: 3 });
  const vs = [0, 1, 2, 3, 4, 5].map((i) => rand(33, 100 + i));
  const x0 = rand(33, 99);
  const run = (inPlace: boolean) => {
    let x: Float32Array = x0.slice();
    for (let i = 0; i < 6; i++) x = inPlace ? s.step(i, x, vs[i], x) : s.step(i, x, vs[i]);
    return x;
  };
  const a = run(false);
  const b = run(true); // step(0) starts a new run without an explicit reset
  assert.deepEqual(b, a);
  s.step(0, x0, vs[0]);
  s.step(1, x0, vs[1]);
  s.reset();
  assert.throws(() => s.step(2, x0, vs[2]), UsageError);
  assert.deepEqual(run(false), a);
  // order enforcement and shape checks
  s.step(0, x0, vs[0]);
  assert.throws(() => s.step(2, x0, vs[2]), /expected step 1/);
  assert.throws(() => s.step(1, x0.subarray(1), vs[1].subarray(1)), UsageError);
  assert.throws(() => s.step(1, x0, vs[1].subarray(1)), UsageError);
  assert.throws(() => s.step(6, x0, vs[0]), UsageError);
  assert.throws(() => s.step(1, x0, vs[1], new Float32Array(3)), UsageError);
});

test("bad options throw ConfigError with a fix hint", () => {
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ["unipc", { steps: 0, shift: 3 }, /steps/],
    ["unipc", { steps: 1001, shift: 3 }, /steps/],
    ["unipc", { steps: 2.5, shift: 3 }, /steps/],
    ["euler", { steps: "50", shift: 3 }, /steps/],
    ["euler", { steps: Number.NaN, shift: 3 }, /steps/],
    ["unipc", { steps: 50, shift: 0 }, /shift/],
    ["unipc", { steps: 50, shift: -1 }, /shift/],
    ["euler", { steps: 50, shift: Number.POSITIVE_INFINITY }, /shift/],
    ["unipc", { steps: 50, shift: Number.NaN }, /shift/],
    ["unipc", { steps: 50 }, /shift/],
    ["unipc", { steps: 50, shift: 3, order: 3 }, /order/],
    ["unipc", { steps: 50, shift: 3, order: 0 }, /order/],
    ["euler", { steps: 50, shift: 3, order: 2 }, /first-order/],
    ["unipc", { steps: 50, shfit: 3 }, /unknown sampler option "shfit"/],
    ["unipc", { steps: 1000, shift: 1e7 }, /not strictly decreasing/],
    ["dpm++", { steps: 50, shift: 3 }, /unknown sampler/],
    ["Euler", { steps: 50, shift: 3 }, /unknown sampler/],
  ];
  for (const [name, opts, re] of bad) {
    assert.throws(
      () => makeSampler(name, opts as never),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError, `${name} ${JSON.stringify(opts)}: not a ConfigError`);
        assert.ok(e instanceof MixCacheError && e.code === "CONFIG");
        assert.match(e.message, re);
        assert.ok(e.fix && e.fix.length > 0, `${name} ${JSON.stringify(opts)}: no fix hint`);
        return true;
      },
    );
  }
  // unknown name lists the valid ones and suggests the closest
  assert.throws(() => makeSampler("eular", { steps: 5, shift: 3 }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.fix!, /unipc, euler/);
    assert.match(e.fix!, /did you mean euler/);
    return true;
  });
  assert.throws(() => makeSampler("unipc", null as never), ConfigError);
  // the constructors validate too
  assert.throws(() => new EulerSampler(0, 3), ConfigError);
  assert.throws(() => new UniPCSampler(10, 3, 1.5), ConfigError);
  // good options work
  assert.equal(makeSampler("euler", { steps: 1000, shift: 3, order: 1 }).timesteps.length, 1000);
  assert.equal(makeSampler("unipc", { steps: 1, shift: 0.5 }).order, 2);
});

test("HunyuanVideo grid: euler with linear sigmas at shift 7 for 50 steps follows s' = 7s / (1 + 6s), s = 1 - i/50", () => {
  const s = makeSampler("euler", { steps: 50, shift: 7, sigmas: "linear" });
  assert.equal(s.sigmas.length, 51);
  assert.equal(s.sigmas[0], 1);
  assert.equal(s.timesteps[0], 1000);
  assert.equal(s.sigmas[50], 0);
  let maxDiff = 0;
  for (let i = 0; i < 50; i++) {
    const base = 1 - i / 50;
    const want = (7 * base) / (1 + 6 * base); // float64 reference formula
    maxDiff = Math.max(maxDiff, Math.abs(s.sigmas[i] - want), Math.abs(s.timesteps[i] / 1000 - want));
    assert.equal(s.sigmas[i], Math.fround(s.sigmas[i]), "sigmas are float32 values");
  }
  console.log(`linear euler grid, shift 7, 50 steps: max |sigma - formula| = ${maxDiff.toExponential(2)} (tolerance 1e-6, float32)`);
  assert.ok(maxDiff < 1e-6);
  // the last sampled sigma is 7 * 0.02 / 1.12 = 0.125: HunyuanVideo's large shift keeps steps at high noise
  assert.ok(Math.abs(s.sigmas[49] - 0.125) < 1e-6);
  assert.throws(() => makeSampler("unipc", { steps: 50, shift: 7, sigmas: "linear" }), /linear sigma schedule/);
  assert.throws(() => makeSampler("euler", { steps: 50, shift: 7, sigmas: "cosine" as never }), /unknown sigma schedule/);
});
