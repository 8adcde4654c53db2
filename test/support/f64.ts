/**
 * Float64 primitives the plainly written reference forwards (wanReference.ts, hunyuanReference.ts)
 * share: PyTorch's nn.Linear and nn.LayerNorm as loops. They share nothing with src/.
 */
export type F64 = Float64Array;

/** nn.Linear on rows x inp -> rows x out, weight [out, inp]. */
export function linear(x: ArrayLike<number>, rows: number, inp: number, w: Float32Array, b: Float32Array | null, out: number): F64 {
  if (w.length !== out * inp) throw new Error(`reference linear: ${w.length} weights for [${out}, ${inp}]`);
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < out; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inp; i++) s += x[r * inp + i] * w[o * inp + i];
      y[r * out + o] = s;
    }
  return y;
}

/** nn.LayerNorm over the last axis (biased variance), optionally affine. */
export function layerNorm(x: ArrayLike<number>, rows: number, D: number, eps: number, w?: Float32Array, b?: Float32Array): F64 {
  const y = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let i = 0; i < D; i++) m += x[r * D + i];
    m /= D;
    let v = 0;
    for (let i = 0; i < D; i++) v += (x[r * D + i] - m) ** 2;
    v /= D;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < D; i++) y[r * D + i] = (x[r * D + i] - m) * inv * (w ? w[i] : 1) + (b ? b[i] : 0);
  }
  return y;
}
