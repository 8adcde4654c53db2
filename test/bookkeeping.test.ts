/**
 * The allocation-free / onnxruntime forms of the cache bookkeeping against the plain JS helpers
 * they replace. Bit-identical (tolerance 0) where they do the same float operations in the same
 * order (onnxruntime's float32 Add rounds once, as JS's float64 add of two float32 values does);
 * the float32 forms of axpy / extrapolation / the Taylor forecast within 3 ulps of the larger terms.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { add, axpy, axpyDiff, extrapolate, sub } from "../src/tensor/ops.ts";
import { addAxpyLarge, addLarge, axpyLarge, extrapolateLarge, ORT_ELEMENTWISE_MIN, subLarge } from "../src/graph/elementwise.ts";
import { taylorForecast, taylorPredict, taylorUpdate, taylorUpdateInPlace } from "../src/cache/strategies/taylorseer.ts";
import { randomArray, rng } from "./support/randomWeights.ts";

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

test("addLarge (onnxruntime Add) equals add() bit for bit, small and large, and leaves its inputs alone", async () => {
  const r = rng(1);
  for (const n of [5, ORT_ELEMENTWISE_MIN, 256 * 128 + 3]) {
    const a = randomArray(n, r, 3), b = randomArray(n, r, 1e-3);
    a[0] = -0; b[0] = -0; a[1] = 1e30; b[1] = 1e30; a[2] = 1; b[2] = 2 ** -30;
    const ac = a.slice(), bc = b.slice();
    const y = await addLarge(a, b);
    assert.deepEqual(bits(y), bits(add(a, b)), `n ${n}`);
    assert.deepEqual(a, ac);
    assert.deepEqual(b, bc);
    assert.notEqual(y, a);
  }
});

test("subLarge (onnxruntime Sub, what the step and block caches store residuals with) equals sub() bit for bit", async () => {
  const r = rng(11);
  for (const n of [7, ORT_ELEMENTWISE_MIN, 256 * 128 + 5]) {
    const a = randomArray(n, r, 3), b = randomArray(n, r, 2.9);
    a[0] = 1e30; b[0] = -1e30; a[1] = 1; b[1] = 1 - 2 ** -23; a[2] = -0; b[2] = 0;
    const ac = a.slice(), bc = b.slice();
    const y = await subLarge(a, b);
    assert.deepEqual(bits(y), bits(sub(a, b)), `n ${n}`);
    assert.deepEqual(a, ac);
    assert.deepEqual(b, bc);
  }
  await assert.rejects(subLarge(new Float32Array(3), new Float32Array(4)), /lengths 3 and 4 differ/);
});

test("axpyDiff equals axpy(x, k, sub(x, prev)) bit for bit", () => {
  const r = rng(2);
  const x = randomArray(5000, r), p = randomArray(5000, r);
  for (const k of [0.5, 1 / 3, 2.75]) assert.deepEqual(bits(axpyDiff(x, k, p)), bits(axpy(x, k, sub(x, p))));
});

test("taylorUpdateInPlace equals taylorUpdate bit for bit over a run of full steps, reusing the factor arrays", () => {
  for (const order of [1, 2, 3]) {
    const r = rng(3 + order);
    let pure: Float32Array[] = [];
    let inPlace: Float32Array[] = [];
    const held = new Set<Float32Array>();
    for (let step = 0; step < 6; step++) {
      const out = randomArray(1000, r);
      const dt = step === 0 ? 0 : 1 + (step % 3);
      pure = taylorUpdate(out, pure, dt, order);
      inPlace = taylorUpdateInPlace(out, inPlace, dt, order);
      assert.equal(inPlace.length, pure.length);
      for (let k = 0; k < pure.length; k++) assert.deepEqual(bits(inPlace[k]), bits(pure[k]), `order ${order} step ${step} F${k}`);
      for (let k = 1; k < inPlace.length; k++) held.add(inPlace[k]);
      for (const d of [1, 2, 3]) assert.deepEqual(bits(taylorPredict(inPlace, d)), bits(naivePredict(pure, d)));
    }
    assert.equal(held.size, order, "one array per higher factor, reused across full steps");
  }
});

/** The original forecast loop: s = 0, s += c_k F_k[j] for every k, per element. */
function naivePredict(factors: Float32Array[], d: number): Float32Array {
  const coef: number[] = [];
  let c = 1;
  for (let k = 0; k < factors.length; k++) {
    if (k > 0) c *= d / k;
    coef.push(c);
  }
  const out = new Float32Array(factors[0].length);
  for (let j = 0; j < out.length; j++) {
    let s = 0;
    for (let k = 0; k < factors.length; k++) s += coef[k] * factors[k][j];
    out[j] = s;
  }
  return out;
}

test("axpyLarge, extrapolateLarge and taylorForecast (float32, onnxruntime) stay within an ulp or two of the float64 JS forms", async () => {
  const r = rng(6);
  const lines: string[] = [];
  for (const n of [100, 256 * 128]) {
    const a = randomArray(n, r, 2), b = randomArray(n, r, 0.5);
    const check = (name: string, got: Float32Array, want: Float32Array, mag: (j: number) => number) => {
      let worst = 0, worstUlps = 0;
      for (let j = 0; j < n; j++) {
        const d = Math.abs(got[j] - want[j]);
        worst = Math.max(worst, d);
        worstUlps = Math.max(worstUlps, d / (mag(j) * 2 ** -23));
      }
      // each float32 operation rounds to half an ulp of its result: two or three roundings
      assert.ok(worstUlps <= 3, `${name} n ${n}: ${worstUlps} ulps`);
      lines.push(`${name}(n ${n}) max|diff| ${worst.toExponential(2)} (${worstUlps.toFixed(2)} ulp)`);
    };
    check("axpyLarge", await axpyLarge(a, 3, b), axpy(a, 3, b), (j) => Math.abs(a[j]) + Math.abs(3 * b[j]));
    check("extrapolateLarge", await extrapolateLarge(a, b, 0.5), extrapolate(a, b, 0.5), (j) => Math.abs(a[j]) + Math.abs(0.5 * (a[j] - b[j])) + Math.abs(a[j] - b[j]));
    check("taylorForecast", await taylorForecast([a, b], 3), taylorPredict([a, b], 3), (j) => Math.abs(a[j]) + Math.abs(3 * b[j]));
    const into = new Float32Array(n);
    assert.equal(await axpyLarge(a, 3, b, into), into, "writes into the given array");
    // h + (a + s b) in one call: the same bits as the two calls it replaces
    const h = randomArray(n, r, 4);
    assert.deepEqual(await addAxpyLarge(h, a, 0.75, b), await addLarge(h, await axpyLarge(a, 0.75, b)), `addAxpyLarge n ${n}`);
  }
  assert.equal(await taylorForecast([Float32Array.from([1, 2])], 3).then((y) => y[1]), 2);
  console.log(`  ${lines.join("; ")}`);
});
