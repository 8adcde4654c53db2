/**
 * Least-squares polynomial fit, highest power first (numpy.polyfit convention), solved by QR
 * (modified Gram-Schmidt) on a column-scaled Vandermonde matrix in float64 for stability.
 */
export function polyfit(x: ArrayLike<number>, y: ArrayLike<number>, deg: number): number[] {
  const n = x.length;
  if (n <= deg) throw new RangeError(`polyfit: need more than ${deg} points, got ${n}`);
  const m = deg + 1;
  // columns x^deg .. x^0, each scaled to unit norm
  const cols: Float64Array[] = [];
  const scales: number[] = [];
  for (let j = 0; j < m; j++) {
    const p = deg - j;
    const c = new Float64Array(n);
    for (let i = 0; i < n; i++) c[i] = Math.pow(x[i], p);
    let s = 0;
    for (let i = 0; i < n; i++) s += c[i] * c[i];
    s = Math.sqrt(s) || 1;
    for (let i = 0; i < n; i++) c[i] /= s;
    cols.push(c);
    scales.push(s);
  }
  const Q: Float64Array[] = [];
  const R = Array.from({ length: m }, () => new Float64Array(m));
  for (let j = 0; j < m; j++) {
    const v = Float64Array.from(cols[j]);
    for (let k = 0; k < j; k++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += Q[k][i] * v[i];
      R[k][j] = d;
      for (let i = 0; i < n; i++) v[i] -= d * Q[k][i];
    }
    let nv = 0;
    for (let i = 0; i < n; i++) nv += v[i] * v[i];
    nv = Math.sqrt(nv);
    R[j][j] = nv;
    for (let i = 0; i < n; i++) v[i] = nv > 0 ? v[i] / nv : 0;
    Q.push(v);
  }
  const qty = Q.map((q) => {
    let d = 0;
    for (let i = 0; i < n; i++) d += q[i] * y[i];
    return d;
  });
  const c = new Array<number>(m).fill(0);
  for (let j = m - 1; j >= 0; j--) {
    let s = qty[j];
    for (let k = j + 1; k < m; k++) s -= R[j][k] * c[k];
    c[j] = R[j][j] !== 0 ? s / R[j][j] : 0;
  }
  return c.map((v, j) => v / scales[j]);
}

/** Evaluate a polynomial with coefficients highest power first (Horner). */
export function polyval(coef: readonly number[], x: number): number {
  let r = 0;
  for (const c of coef) r = r * x + c;
  return r;
}
