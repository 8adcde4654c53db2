/**
 * Prompt adherence for the shapes dataset: detect, from the pixels alone (the prompt is not used),
 * the background colour, the shape's colour, the shape and its motion direction, then score those
 * against the attributes the prompt asked for.
 *
 * Pipeline (clip float [3, T, H, W] in [-1, 1], any H, W and T >= 2):
 *  1. background = per-channel median of the border pixels of every frame -> nearest vocab background;
 *  2. foreground = pixels whose RGB distance from that measured background exceeds half the clip's
 *     peak distance (and an absolute floor); per frame, the largest 8-connected component;
 *  3. colour = per-channel median of the strongest foreground pixels -> nearest vocab colour, where
 *     the distance is to the segment "colour blended with the background" (a washed-out output of
 *     the right colour still matches);
 *  4. coverage alpha (projection of each pixel onto background->foreground) in a window around the
 *     component gives anti-aliasing aware moments: the alpha-weighted centroid per frame gives the
 *     motion (least-squares displacement over the clip, nearest vocab motion direction, or "none"
 *     below a minimum), and the normalised 3rd/4th moments give the shape: triangles are skewed,
 *     squares have a larger kurtosis along the diagonals than along the axes, circles neither.
 *     Features are the median over frames.
 * Never throws on content (empty, flat, NaN): undetectable attributes come back as "unknown" /
 * "none" with ok=false. Malformed dims throw a UsageError.
 */
import type { Attrs, Vocab } from "../data/shapes.ts";
import { median, select } from "../tensor/stats.ts";
import { attributeRates, CentralMoments, checkClipDims, componentBBox, dist3, fitMotion, largestComponent, medianFeatures, NO_MOTION, UNKNOWN, type ClipLike, type ShapeFeatures } from "./shape-features.ts";

export { NO_MOTION, UNKNOWN, type ClipLike, type ShapeFeatures };

export interface AdherenceDetection {
  colour: string;
  shape: string;
  motion: string;
  background: string;
  /** 0..1 margins: how clearly the winner beat the runner-up */
  confidence: { colour: number; shape: number; motion: number; background: number };
  /** false when no foreground shape could be found in enough frames (then colour/shape are "unknown", motion "none") */
  ok: boolean;
  details: {
    backgroundRgb: [number, number, number];
    foregroundRgb: [number, number, number] | null;
    /** frames in which a foreground component was found */
    framesWithShape: number;
    /** least-squares centroid displacement first -> last frame, in pixels [dx, dy] */
    displacement: [number, number];
    /** per-frame alpha-weighted centroids (null where no shape) */
    centroids: Array<[number, number] | null>;
    features: ShapeFeatures | null;
    /** peak RGB distance from the background (0..255 units) */
    peakContrast: number;
  };
}

export interface DetectOptions {
  /** minimum peak RGB distance from the background (0..255 units) for a foreground to exist; default 60 */
  minContrast?: number;
  /** minimum displacement, as a fraction of the frame extent on that axis, for a motion; default 0.08 */
  minDisplacement?: number;
  /** skewness above which the shape is a triangle; default 0.3 */
  triangleSkew?: number;
  /** diagonal-minus-axis kurtosis above which a non-triangle is a square; default 0.3 */
  squareKurtosis?: number;
}

type Vec3 = [number, number, number];

/** Mean of the k largest values. */
function topMean(values: Float64Array, k: number): number {
  const a = Float64Array.from(values);
  const n = a.length;
  select(a, n - k);
  let s = 0;
  for (let i = n - k; i < n; i++) s += a[i];
  return s / k;
}

/** Margin between best (smallest) and second-best distance, in [0, 1]. */
function margin(best: number, second: number): number {
  if (!Number.isFinite(second) || second <= 0) return best === 0 ? 1 : 0;
  return Math.max(0, Math.min(1, 1 - best / second));
}

function nearest(
  table: Record<string, readonly number[]>,
  rgb: readonly number[],
  distance: (p: readonly number[], c: readonly number[]) => number = dist3,
): { name: string; conf: number } {
  let best = Infinity;
  let second = Infinity;
  let name = UNKNOWN;
  for (const [k, v] of Object.entries(table)) {
    const d = distance(rgb, v);
    if (d < best) {
      second = best;
      best = d;
      name = k;
    } else if (d < second) second = d;
  }
  return { name, conf: margin(best, second) };
}

/** Distance from p to the segment {a*c + (1-a)*bg : a in [aMin, 1]} (a colour washed towards the background). */
function blendDistance(p: readonly number[], c: readonly number[], bg: readonly number[], aMin = 0.6): number {
  const d = [c[0] - bg[0], c[1] - bg[1], c[2] - bg[2]];
  const q = [p[0] - bg[0], p[1] - bg[1], p[2] - bg[2]];
  const dd = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
  let a = dd > 0 ? (q[0] * d[0] + q[1] * d[1] + q[2] * d[2]) / dd : 1;
  a = Math.max(aMin, Math.min(1, a));
  return dist3(p, [bg[0] + a * d[0], bg[1] + a * d[1], bg[2] + a * d[2]]);
}

interface FrameMoments {
  cx: number;
  cy: number;
  features: ShapeFeatures | null;
}

/** Alpha-weighted moments of a frame (alpha is zero outside the component's support; the bbox grown by `grow` px bounds the loops). */
function frameMoments(alpha: Float64Array, comp: number[], H: number, W: number, grow = 1): FrameMoments | null {
  let [x0, x1, y0, y1] = componentBBox(comp, H, W);
  x0 = Math.max(0, x0 - grow);
  y0 = Math.max(0, y0 - grow);
  x1 = Math.min(W - 1, x1 + grow);
  y1 = Math.min(H - 1, y1 + grow);
  let A = 0;
  let sx = 0;
  let sy = 0;
  for (let y = y0; y <= y1; y++)
    for (let x = x0; x <= x1; x++) {
      const a = alpha[y * W + x];
      A += a;
      sx += a * (x + 0.5);
      sy += a * (y + 0.5);
    }
  if (!(A > 1e-6)) return null;
  const cx = sx / A;
  const cy = sy / A;
  const moments = new CentralMoments();
  let rowMax = 0;
  const colSum = new Float64Array(x1 - x0 + 1);
  for (let y = y0; y <= y1; y++) {
    let row = 0;
    for (let x = x0; x <= x1; x++) {
      const a = alpha[y * W + x];
      row += a;
      colSum[x - x0] += a;
      moments.add(a, x + 0.5 - cx, y + 0.5 - cy);
    }
    if (row > rowMax) rowMax = row;
  }
  let colMax = 0;
  for (const c of colSum) if (c > colMax) colMax = c;
  const features = moments.features(A, rowMax, colMax);
  return { cx, cy, features: Number.isFinite(features.skew) && Number.isFinite(features.diagKurtosis) ? features : null };
}

/** Detect background, colour, shape and motion of a clip from its pixels alone. */
export function detectAdherence(clip: ClipLike, vocab: Vocab, opts: DetectOptions = {}): AdherenceDetection {
  const [T, H, W] = checkClipDims(clip, "adherence");
  const minContrast = opts.minContrast ?? 60;
  const minDisp = opts.minDisplacement ?? 0.08;
  const triSkew = opts.triangleSkew ?? 0.3;
  const sqKurt = opts.squareKurtosis ?? 0.3;
  const HW = H * W;
  const N = T * HW;
  const src = clip.data;
  // RGB planes in 0..255, clamped (as displayed); NaN reads as mid-gray
  const rgb = new Float64Array(3 * N);
  for (let j = 0; j < 3 * N; j++) {
    const x = (src[j] + 1) * 127.5;
    rgb[j] = x >= 0 ? (x <= 255 ? x : 255) : x < 0 ? 0 : 127.5; // NaN fails both comparisons
  }
  const R = rgb.subarray(0, N);
  const G = rgb.subarray(N, 2 * N);
  const B = rgb.subarray(2 * N, 3 * N);

  // 1. background from the border ring of every frame
  const borderIdx: number[] = [];
  for (let t = 0; t < T; t++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) if (y === 0 || y === H - 1 || x === 0 || x === W - 1) borderIdx.push(t * HW + y * W + x);
  const bgRgb = [R, G, B].map((P) => median(borderIdx.map((i) => P[i]))) as Vec3;
  const bgPick = nearest(vocab.backgrounds as Record<string, readonly number[]>, bgRgb);

  // 2. distance from the background; threshold at half the peak (mean of the top 0.5%)
  const dist = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const r = R[i] - bgRgb[0];
    const g = G[i] - bgRgb[1];
    const b = B[i] - bgRgb[2];
    dist[i] = Math.sqrt(r * r + g * g + b * b);
  }
  const peak = topMean(dist, Math.min(N, Math.max(3, Math.ceil(0.005 * N))));

  const empty = (): AdherenceDetection => ({
    colour: UNKNOWN,
    shape: UNKNOWN,
    motion: NO_MOTION,
    background: bgPick.name,
    confidence: { colour: 0, shape: 0, motion: 0, background: bgPick.conf },
    ok: false,
    details: {
      backgroundRgb: bgRgb,
      foregroundRgb: null,
      framesWithShape: 0,
      displacement: [0, 0],
      centroids: new Array(T).fill(null),
      features: null,
      peakContrast: peak,
    },
  });
  if (!(peak >= minContrast)) return empty();
  const thr = 0.5 * peak;

  const comps: number[][] = [];
  const mask = new Uint8Array(HW);
  const label = new Int32Array(HW);
  const stack = new Int32Array(HW + 1);
  let framesWithShape = 0;
  const minArea = Math.max(2, Math.round(0.002 * HW));
  for (let t = 0; t < T; t++) {
    for (let p = 0; p < HW; p++) mask[p] = dist[t * HW + p] > thr ? 1 : 0;
    const comp = largestComponent(mask, H, W, label, stack);
    comps.push(comp.length >= minArea ? comp : []);
    if (comp.length >= minArea) framesWithShape++;
  }
  if (framesWithShape < 2) return empty();

  // 3. foreground colour: median of the stronger half of the component pixels
  const compDists: number[] = [];
  for (let t = 0; t < T; t++) for (const p of comps[t]) compDists.push(dist[t * HW + p]);
  const strong = median(compDists);
  const fgCh: number[][] = [[], [], []];
  for (let t = 0; t < T; t++)
    for (const p of comps[t]) {
      const i = t * HW + p;
      if (dist[i] < strong) continue;
      fgCh[0].push(R[i]);
      fgCh[1].push(G[i]);
      fgCh[2].push(B[i]);
    }
  const fgRgb: Vec3 = [median(fgCh[0]), median(fgCh[1]), median(fgCh[2])];
  const colourPick = nearest(vocab.colours as Record<string, readonly number[]>, fgRgb, (p, c) => blendDistance(p, c, bgRgb));

  // 4. coverage alpha, per-frame moments
  const d = [fgRgb[0] - bgRgb[0], fgRgb[1] - bgRgb[1], fgRgb[2] - bgRgb[2]];
  const dd = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
  const alpha = new Float64Array(HW);
  const support = new Uint8Array(HW);
  const centroids: Array<[number, number] | null> = [];
  const feats: ShapeFeatures[] = [];
  for (let t = 0; t < T; t++) {
    if (comps[t].length === 0 || !(dd > 0)) {
      centroids.push(null);
      continue;
    }
    // alpha only on the component grown by one pixel (its anti-aliased rim): a rectangular window
    // would add background noise in its corners, which reads as diagonal mass (square-like)
    alpha.fill(0);
    support.fill(0);
    for (const p of comps[t]) {
      const y = (p / W) | 0;
      const x = p - y * W;
      for (let yy = Math.max(0, y - 1); yy <= Math.min(H - 1, y + 1); yy++)
        for (let xx = Math.max(0, x - 1); xx <= Math.min(W - 1, x + 1); xx++) support[yy * W + xx] = 1;
    }
    for (let p = 0; p < HW; p++) {
      if (!support[p]) continue;
      const i = t * HW + p;
      const a = ((R[i] - bgRgb[0]) * d[0] + (G[i] - bgRgb[1]) * d[1] + (B[i] - bgRgb[2]) * d[2]) / dd;
      alpha[p] = a < 0 ? 0 : a > 1 ? 1 : a;
    }
    const m = frameMoments(alpha, comps[t], H, W);
    if (!m) {
      centroids.push(null);
      continue;
    }
    centroids.push([m.cx, m.cy]);
    if (m.features) feats.push(m.features);
  }

  // motion: least-squares slope of the centroid over frames, times (T - 1)
  const { displacement: disp, motion, confidence: motionConf } = fitMotion(centroids, T, H, W, minDisp, vocab.motions);

  // shape from the median features
  let shape = UNKNOWN;
  let shapeConf = 0;
  let features: ShapeFeatures | null = null;
  if (feats.length > 0) {
    features = medianFeatures(feats);
    const has = (s: string) => vocab.shapes.includes(s);
    if (features.skew > triSkew && has("triangle")) {
      shape = "triangle";
      shapeConf = Math.min(1, (features.skew - triSkew) / triSkew);
    } else {
      const skewConf = Math.min(1, (triSkew - features.skew) / triSkew);
      if (features.diagKurtosis > sqKurt && has("square")) shape = "square";
      else if (has("circle")) shape = "circle";
      shapeConf = Math.min(skewConf, Math.min(1, Math.abs(features.diagKurtosis - sqKurt) / sqKurt));
    }
  }

  return {
    colour: colourPick.name,
    shape,
    motion,
    background: bgPick.name,
    confidence: { colour: colourPick.conf, shape: shapeConf, motion: motionConf, background: bgPick.conf },
    ok: framesWithShape >= Math.max(2, Math.ceil(T / 2)) && shape !== UNKNOWN,
    details: {
      backgroundRgb: bgRgb,
      foregroundRgb: fgRgb,
      framesWithShape,
      displacement: disp,
      centroids,
      features,
      peakContrast: peak,
    },
  };
}

export interface AdherenceScore {
  colour: 0 | 1;
  shape: 0 | 1;
  motion: 0 | 1;
  background: 0 | 1;
}

/** 1 where the detection matches the expected attribute (size is not scored). */
export function scoreAdherence(detected: AdherenceDetection, expected: Pick<Attrs, "colour" | "shape" | "motion" | "background">): AdherenceScore {
  const s = (a: string, b: string): 0 | 1 => (a === b ? 1 : 0);
  return {
    colour: s(detected.colour, expected.colour),
    shape: s(detected.shape, expected.shape),
    motion: s(detected.motion, expected.motion),
    background: s(detected.background, expected.background),
  };
}

export interface AdherenceSummary {
  n: number;
  colour: number;
  shape: number;
  motion: number;
  background: number;
  /** fraction with all four attributes right */
  all: number;
  /** mean of the four per-attribute rates */
  mean: number;
}

/** Per-attribute accuracy over many scored clips (0 for an empty list). */
export function aggregateAdherence(scores: readonly AdherenceScore[]): AdherenceSummary {
  const attrs = ["colour", "shape", "motion", "background"] as const;
  return attributeRates(scores, attrs, attrs);
}

/** Detect and score a batch of clips against their prompts' attributes. */
export function evaluateAdherence(
  vocab: Vocab,
  items: Iterable<{ clip: ClipLike; attrs: Pick<Attrs, "colour" | "shape" | "motion" | "background"> }>,
  opts: DetectOptions = {},
): { summary: AdherenceSummary; detections: AdherenceDetection[]; scores: AdherenceScore[] } {
  const detections: AdherenceDetection[] = [];
  const scores: AdherenceScore[] = [];
  for (const { clip, attrs } of items) {
    const det = detectAdherence(clip, vocab, opts);
    detections.push(det);
    scores.push(scoreAdherence(det, attrs));
  }
  return { summary: aggregateAdherence(scores), detections, scores };
}
