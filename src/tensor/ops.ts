/**
 * Small typed-array helpers used by caches and metrics. All take Float32Array and return new arrays
 * unless named *Into; reductions accumulate in float64.
 */

export function sub(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] - b[i];
  return out;
}

export function add(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

/** a + s * b */
export function axpy(a: Float32Array, s: number, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + s * b[i];
  return out;
}

export function scale(a: Float32Array, s: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] * s;
  return out;
}

/**
 * axpy(x, k, sub(x, prev)) in one pass and one allocation: x + k * fround(x - prev), the difference
 * rounded to float32 as the two-step form rounds it, so the result is bit-identical to it.
 */
export function axpyDiff(x: Float32Array, k: number, prev: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] + k * Math.fround(x[i] - prev[i]);
  return out;
}

/** First-order extrapolation x + k (x - prev). */
export function extrapolate(x: Float32Array, prev: Float32Array, k: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] + k * (x[i] - prev[i]);
  return out;
}

export function meanAbs(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]);
  return s / Math.max(1, a.length);
}

/** Relative L1 distance mean|a - b| / mean|b| (TeaCache, FBCache, MixCache signals). */
export function relL1(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += Math.abs(a[i] - b[i]);
    den += Math.abs(b[i]);
  }
  return den > 0 ? num / den : num > 0 ? Infinity : 0;
}

/** L2 norm. */
export function norm2(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

export function copy(a: Float32Array): Float32Array {
  return Float32Array.from(a);
}
