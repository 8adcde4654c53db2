/**
 * Order statistics over plain numbers (metrics, bench summaries): quickselect and the median.
 */

/** Partially sort `a` in place so that a[k] is the k-th smallest, a[..k] <= a[k] <= a[k+1..] (quickselect, O(n)). */
export function select(a: Float64Array, k: number): void {
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return;
  }
}

/** Median (mean of the two middle values for an even count); NaN for no values. */
export function median(values: ArrayLike<number>): number {
  const n = values.length;
  if (n === 0) return NaN;
  const a = Float64Array.from(values);
  const m = n >> 1;
  select(a, m);
  if (n % 2) return a[m];
  let below = -Infinity; // largest of a[..m], all <= a[m]
  for (let i = 0; i < m; i++) if (a[i] > below) below = a[i];
  return 0.5 * (below + a[m]);
}
