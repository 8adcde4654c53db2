/**
 * Elementwise work on whole activations through onnxruntime's vectorised kernels instead of a JS
 * loop, for the loop's residual adds and cache bookkeeping. Measured on the reference model's
 * hidden state (256 x 128 floats, bench/runtime.ts): a JS add (allocation + scalar loop) ~25-70 us,
 * the onnxruntime Add ~13 us including the call. Float32 addition rounds once either way (JS adds
 * in float64 and rounds to float32, which for a sum of two float32 values is the same number), so
 * the result is bit-identical to tensor/ops.ts add(); small arrays stay in JS, where the call
 * overhead would dominate.
 */
import { StageSession } from "../backend/ort.ts";
import { add, sub } from "../tensor/ops.ts";
import { Graph } from "./builder.ts";

/** Names of the sessions this file runs (benchmarks count their time as cache bookkeeping). */
export const ELEMENTWISE_STAGES: ReadonlySet<string> = new Set(["add", "sub", "axpy", "add_axpy", "extrapolate"]);

/** Below this many elements add() in JS is faster than a session call. */
export const ORT_ELEMENTWISE_MIN = 8192;

const binarySessions: Partial<Record<"add" | "sub", Promise<StageSession>>> = {};

/** a op b as a new array in one float32 rounding, bit-identical to the JS form `js` (a and b are
 * not modified); small arrays stay in JS. */
async function binaryLarge(op: "add" | "sub", js: (a: Float32Array, b: Float32Array) => Float32Array, a: Float32Array, b: Float32Array): Promise<Float32Array> {
  if (a.length !== b.length) throw new Error(`${op}Large: lengths ${a.length} and ${b.length} differ`);
  if (a.length < ORT_ELEMENTWISE_MIN) return js(a, b);
  // one thread: the kernel is memory-bound and a pool wake-up costs more than it saves
  binarySessions[op] ??= (() => {
    const g = new Graph(op);
    const x = g.input("a", ["N"]);
    const y = g.input("b", ["N"]);
    g.output(op === "add" ? g.add(x, y) : g.sub(x, y), "y", ["N"]);
    return StageSession.create(op, g.toModel(), { threads: 1 });
  })();
  const [y] = await (await binarySessions[op]!).run({ a: { data: a, dims: [a.length] }, b: { data: b, dims: [b.length] } }, ["y"]);
  return y;
}

/** a + b as a new array (a and b are not modified). */
export const addLarge = (a: Float32Array, b: Float32Array): Promise<Float32Array> => binaryLarge("add", add, a, b);

/** a - b as a new array (bit-identical to tensor/ops.ts sub()). */
export const subLarge = (a: Float32Array, b: Float32Array): Promise<Float32Array> => binaryLarge("sub", sub, a, b);

let axpySession: Promise<StageSession> | null = null;

function axpyGraph(): Graph {
  const g = new Graph("axpy");
  const a = g.input("a", ["N"]);
  const b = g.input("b", ["N"]);
  const s = g.input("s", [1]);
  g.output(g.add(a, g.mul(b, s)), "y", ["N"]);
  return g;
}

/**
 * a + s * b in float32 (s rounded to float32, the product rounded before the add), as a new array
 * or into `out` (an array nobody else reads). Not bit-identical to the float64 JS forms
 * (tensor/ops.ts axpy rounds once): within an ulp or two of the larger term (test/bookkeeping.test.ts).
 */
export async function axpyLarge(a: Float32Array, s: number, b: Float32Array, out?: Float32Array): Promise<Float32Array> {
  if (a.length !== b.length) throw new Error(`axpyLarge: lengths ${a.length} and ${b.length} differ`);
  if (a.length < ORT_ELEMENTWISE_MIN) {
    const y = out ?? new Float32Array(a.length);
    const sf = Math.fround(s);
    for (let i = 0; i < a.length; i++) y[i] = a[i] + Math.fround(sf * b[i]);
    return y;
  }
  axpySession ??= StageSession.create("axpy", axpyGraph().toModel(), { threads: 1 });
  const feeds = { a: { data: a, dims: [a.length] }, b: { data: b, dims: [b.length] }, s: { data: new Float32Array([s]), dims: [1] } };
  const [y] = await (await axpySession).run(feeds, ["y"], out ? [{ data: out, dims: [out.length] }] : undefined);
  return y;
}

let addAxpySession: Promise<StageSession> | null = null;

function addAxpyGraph(): Graph {
  const g = new Graph("add_axpy");
  const h = g.input("h", ["N"]);
  const a = g.input("a", ["N"]);
  const b = g.input("b", ["N"]);
  const s = g.input("s", [1]);
  g.output(g.add(h, g.add(a, g.mul(b, s))), "y", ["N"]);
  return g;
}

/**
 * h + (a + s * b) in float32 as a new array, in one call: the same operations in the same order as
 * addLarge(h, await axpyLarge(a, s, b)), so the same bits (test/bookkeeping.test.ts).
 */
export async function addAxpyLarge(h: Float32Array, a: Float32Array, s: number, b: Float32Array): Promise<Float32Array> {
  if (h.length !== a.length || a.length !== b.length) throw new Error(`addAxpyLarge: lengths ${h.length}, ${a.length} and ${b.length} differ`);
  if (a.length < ORT_ELEMENTWISE_MIN) return addLarge(h, await axpyLarge(a, s, b));
  addAxpySession ??= StageSession.create("add_axpy", addAxpyGraph().toModel(), { threads: 1 });
  const feeds = { h: { data: h, dims: [h.length] }, a: { data: a, dims: [a.length] }, b: { data: b, dims: [b.length] }, s: { data: new Float32Array([s]), dims: [1] } };
  const [y] = await (await addAxpySession).run(feeds, ["y"]);
  return y;
}

let extrapSession: Promise<StageSession> | null = null;

function extrapolateGraph(): Graph {
  const g = new Graph("extrapolate");
  const x = g.input("x", ["N"]);
  const prev = g.input("prev", ["N"]);
  const k = g.input("k", [1]);
  g.output(g.add(x, g.mul(g.sub(x, prev), k)), "y", ["N"]);
  return g;
}

/**
 * First-order extrapolation x + k (x - prev) in float32 as a new array (tensor/ops.ts extrapolate
 * computes it in float64 and rounds once; this rounds each operation: within an ulp or two).
 */
export async function extrapolateLarge(x: Float32Array, prev: Float32Array, k: number): Promise<Float32Array> {
  if (x.length !== prev.length) throw new Error(`extrapolateLarge: lengths ${x.length} and ${prev.length} differ`);
  if (x.length < ORT_ELEMENTWISE_MIN) {
    const y = new Float32Array(x.length);
    const kf = Math.fround(k);
    for (let i = 0; i < x.length; i++) y[i] = x[i] + Math.fround(Math.fround(x[i] - prev[i]) * kf);
    return y;
  }
  extrapSession ??= StageSession.create("extrapolate", extrapolateGraph().toModel(), { threads: 1 });
  const feeds = { x: { data: x, dims: [x.length] }, prev: { data: prev, dims: [prev.length] }, k: { data: new Float32Array([k]), dims: [1] } };
  const [y] = await (await extrapSession).run(feeds, ["y"]);
  return y;
}
