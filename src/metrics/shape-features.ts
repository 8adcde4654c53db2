/**
 * What the two adherence evaluators (`adherence.ts` for the shapes dataset, `texture-adherence.ts`
 * for the textures dataset) measure the same way once each has found the shape: the clip's dims,
 * the largest 8-connected component of a mask, the shape features from central moments (skewness,
 * diagonal-minus-axis kurtosis, fill), their median over frames, and the motion from the centroids
 * (least-squares displacement over the clip -> nearest vocabulary direction, or "none"); and, once
 * scored, the per-attribute rates over many clips.
 */
import { UsageError } from "../errors.ts";
import { median } from "../tensor/stats.ts";

export interface ClipLike {
  data: ArrayLike<number>;
  dims: readonly number[];
}

export const UNKNOWN = "unknown";
export const NO_MOTION = "none";

export interface ShapeFeatures {
  /** alpha-weighted skewness magnitude (upright triangle ~0.57, circle/square ~0) */
  skew: number;
  /** mean kurtosis along the diagonals minus along the axes (square ~0.6, circle ~0) */
  diagKurtosis: number;
  /** area over (widest row * tallest column), alpha-weighted (circle ~0.79, square ~1, triangle ~0.5) */
  fill: number;
  /** shape area in pixels (sum of alpha) */
  area: number;
}

export function dist3(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const x = a[0] - b[0];
  const y = a[1] - b[1];
  const z = a[2] - b[2];
  return Math.sqrt(x * x + y * y + z * z);
}

/** [T, H, W] of a [3, T, H, W] clip with T >= 2; a UsageError naming `what` (the evaluator) otherwise. */
export function checkClipDims(clip: ClipLike, what: string): [number, number, number] {
  const dims = clip.dims;
  if (!dims || dims.length !== 4 || dims[0] !== 3) {
    throw new UsageError(`${what} needs a clip of dims [3, T, H, W], got [${dims ? Array.from(dims).join(", ") : ""}]`, "pass channel-major RGB clips");
  }
  const [, T, H, W] = dims;
  if (![T, H, W].every((n) => Number.isInteger(n) && n >= 1) || T < 2) {
    throw new UsageError(`${what} needs T >= 2 and positive H, W, got [${Array.from(dims).join(", ")}]`, "pass a clip with at least 2 frames");
  }
  if (clip.data.length !== 3 * T * H * W) {
    throw new UsageError(`clip data has ${clip.data.length} values, dims [${Array.from(dims).join(", ")}] need ${3 * T * H * W}`);
  }
  return [T, H, W];
}

/**
 * Largest 8-connected component of mask (H*W), as pixel indices in the order the fill reached them
 * (the first of equally large components wins). `label` (H*W) and `stack` (H*W+1) are scratch
 * buffers a caller may pass to reuse across frames.
 */
export function largestComponent(mask: Uint8Array, H: number, W: number, label = new Int32Array(H * W), stack = new Int32Array(H * W + 1)): number[] {
  label.fill(0);
  let best: number[] = [];
  let next = 0;
  for (let p0 = 0; p0 < H * W; p0++) {
    if (!mask[p0] || label[p0]) continue;
    next++;
    const comp: number[] = [];
    let sp = 0;
    stack[sp++] = p0;
    label[p0] = next;
    while (sp > 0) {
      const p = stack[--sp];
      comp.push(p);
      const y = (p / W) | 0;
      const x = p - y * W;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= H) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= W) continue;
          const q = yy * W + xx;
          if (mask[q] && !label[q]) {
            label[q] = next;
            stack[sp++] = q;
          }
        }
      }
    }
    if (comp.length > best.length) best = comp;
  }
  return best;
}

/**
 * Weighted central moments of a shape about its centroid, along x, y and the two diagonals
 * u = (dx + dy) / sqrt 2, v = (dx - dy) / sqrt 2: `add` each pixel's weight (coverage alpha, or 1
 * for a binary mask) and offset from the centroid, then `features`.
 */
export class CentralMoments {
  private m2x = 0;
  private m3x = 0;
  private m4x = 0;
  private m2y = 0;
  private m3y = 0;
  private m4y = 0;
  private m2u = 0;
  private m4u = 0;
  private m2v = 0;
  private m4v = 0;

  add(a: number, dx: number, dy: number): void {
    const u = (dx + dy) * Math.SQRT1_2;
    const v = (dx - dy) * Math.SQRT1_2;
    const dx2 = dx * dx, dy2 = dy * dy, u2 = u * u, v2 = v * v;
    this.m2x += a * dx2;
    this.m3x += a * dx2 * dx;
    this.m4x += a * dx2 * dx2;
    this.m2y += a * dy2;
    this.m3y += a * dy2 * dy;
    this.m4y += a * dy2 * dy2;
    this.m2u += a * u2;
    this.m4u += a * u2 * u2;
    this.m2v += a * v2;
    this.m4v += a * v2 * v2;
  }

  /** The shape features of total weight A whose widest row and tallest column weigh rowMax and colMax. */
  features(A: number, rowMax: number, colMax: number): ShapeFeatures {
    const kurt = (m4: number, m2: number) => (m2 > 1e-9 ? (m4 * A) / (m2 * m2) : 0);
    const skew = (m3: number, m2: number) => (m2 > 1e-9 ? m3 / A / Math.pow(m2 / A, 1.5) : 0);
    return {
      skew: Math.hypot(skew(this.m3x, this.m2x), skew(this.m3y, this.m2y)),
      diagKurtosis: 0.5 * (kurt(this.m4u, this.m2u) + kurt(this.m4v, this.m2v)) - 0.5 * (kurt(this.m4x, this.m2x) + kurt(this.m4y, this.m2y)),
      fill: rowMax > 0 && colMax > 0 ? A / (rowMax * colMax) : 0,
      area: A,
    };
  }
}

/** Per-feature median over frames (`feats` non-empty). */
export function medianFeatures(feats: readonly ShapeFeatures[]): ShapeFeatures {
  return {
    skew: median(feats.map((f) => f.skew)),
    diagKurtosis: median(feats.map((f) => f.diagKurtosis)),
    fill: median(feats.map((f) => f.fill)),
    area: median(feats.map((f) => f.area)),
  };
}

export interface MotionFit {
  /** least-squares centroid displacement first -> last frame, in pixels [dx, dy] */
  displacement: [number, number];
  /** the nearest vocabulary direction, or NO_MOTION below the minimum */
  motion: string;
  /** 0..1: separation of the best direction from the runner-up, damped near the minimum displacement */
  confidence: number;
}

/**
 * Motion from per-frame centroids (null where no shape) of a clip of T frames, H x W: the
 * least-squares slope of the centroid over frames times (T - 1), then the vocabulary direction with
 * the largest cosine, or NO_MOTION when the displacement is under `minDisplacement` of the frame
 * extent (per axis, so the test is resolution independent).
 */
export function fitMotion(
  centroids: ReadonlyArray<readonly [number, number] | null>,
  T: number,
  H: number,
  W: number,
  minDisplacement: number,
  motions: Record<string, readonly number[]>,
): MotionFit {
  let n = 0, st = 0, stt = 0, sx = 0, sy = 0, stx = 0, sty = 0;
  centroids.forEach((c, t) => {
    if (!c) return;
    n++;
    st += t;
    stt += t * t;
    sx += c[0];
    sy += c[1];
    stx += t * c[0];
    sty += t * c[1];
  });
  const den = n * stt - st * st;
  const displacement: [number, number] = den > 0 ? [((n * stx - st * sx) / den) * (T - 1), ((n * sty - st * sy) / den) * (T - 1)] : [0, 0];
  let motion = NO_MOTION;
  let confidence = 0;
  const rel = Math.hypot(displacement[0] / Math.max(1, minDisplacement * W), displacement[1] / Math.max(1, minDisplacement * H));
  if (rel >= 1) {
    let best = -Infinity;
    let second = -Infinity;
    for (const [name, vec] of Object.entries(motions)) {
      const len = Math.hypot(vec[0], vec[1]);
      if (!(len > 0)) continue;
      const cos = (displacement[0] * vec[0] + displacement[1] * vec[1]) / (len * Math.hypot(displacement[0], displacement[1]));
      if (cos > best) {
        second = best;
        best = cos;
        motion = name;
      } else if (cos > second) second = cos;
    }
    confidence = Math.max(0, Math.min(1, (best - Math.max(second, 0)) * Math.min(1, rel / 2)));
  }
  return { displacement, motion, confidence };
}

/**
 * Per-attribute rates of 0/1 scores over many clips (zeros for an empty list), in the order
 * n, ...keys, all, mean: `all` is the fraction with every `scored` attribute right, `mean` the mean
 * of the `scored` rates (`keys` may hold derived attributes that count in neither).
 */
export function attributeRates<K extends string>(
  scores: ReadonlyArray<Readonly<Record<K, 0 | 1>>>,
  keys: readonly K[],
  scored: readonly K[],
): { n: number } & Record<K, number> & { all: number; mean: number } {
  const n = scores.length;
  const out: Record<string, number> = { n };
  for (const k of keys) out[k] = 0;
  out.all = 0;
  out.mean = 0;
  const rates = out as { n: number } & Record<K, number> & { all: number; mean: number };
  if (n === 0) return rates;
  for (const s of scores) {
    for (const k of keys) out[k] += s[k];
    out.all += scored.every((k) => s[k] === 1) ? 1 : 0;
  }
  for (const k of keys) out[k] /= n;
  out.all /= n;
  out.mean = scored.reduce((m, k) => m + out[k], 0) / scored.length;
  return rates;
}

/** Bounding box [x0, x1, y0, y1] of a component's pixel indices (x1 < x0 for an empty one). */
export function componentBBox(comp: readonly number[], H: number, W: number): [number, number, number, number] {
  let x0 = W, x1 = -1, y0 = H, y1 = -1;
  for (const p of comp) {
    const y = (p / W) | 0;
    const x = p - y * W;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return [x0, x1, y0, y1];
}
