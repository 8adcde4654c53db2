/**
 * Output-quality and speed metrics of the bench (definitions: docs/design/evaluation.md section 4).
 *
 * Clips are float [C, T, H, W] (channel-major, as `generate` returns them) with values nominally in
 * [-1, 1]. Every metric first maps them to displayed pixels in [0, 1]: p = clamp(x / 2 + 0.5, 0, 1)
 * (what the PNG/GIF writers show, before 8-bit rounding). Accumulation is in float64.
 *
 * PSNR (peak 1), both definitions of the protocol:
 *   (a) `psnrFrameMean`: mean over frames of the per-frame PSNR, where a frame's MSE runs over its
 *       channels and pixels;
 *   (b) `psnrClip`: one MSE over the whole clip (all channels, frames and pixels).
 * Identical inputs have MSE 0 and PSNR +Infinity: `psnrClip` returns Infinity, and so does
 * `psnrFrameMean` when every frame is identical. Infinity cannot be averaged, so:
 *   - inside `psnrFrameMean`, a frame with MSE 0 counts as PSNR_CAP_DB (100 dB) when other frames
 *     differ (a single identical frame must not make the clip mean infinite);
 *   - every aggregate (means over prompts, the bench's rows and summaries) caps each value at
 *     PSNR_CAP_DB with `capPsnr` first, so reported PSNRs are finite and at most 100 dB. 100 dB
 *     (MSE 1e-10) means "identical or indistinguishable": one 8-bit level of error everywhere is
 *     already 48 dB (MSE (1/255)^2 = 1.5e-5). Whether a clip was bit-identical is reported
 *     separately (`identical`, `maxAbsDiff`).
 * (a) and (b) differ when the frames' errors differ: the mean of logs is not the log of the mean,
 * and (a) >= (b) always (Jensen), with equality iff every frame has the same MSE.
 *
 * SSIM: the standard Gaussian-window SSIM of Wang et al. 2004 (the MATLAB reference `ssim.m`,
 * pytorch-msssim and skimage with gaussian_weights=True, use_sample_covariance=False all agree):
 * window 11 x 11, sigma 1.5 (normalised), K1 = 0.01, K2 = 0.03, dynamic range L = 1; local means,
 * variances and covariance by separable convolution over the 'valid' region only (no padding: a
 * 32 x 32 frame gives a 22 x 22 SSIM map, as MATLAB's filter2(..., 'valid'), pytorch-msssim's
 * unpadded conv2d, and skimage, which filters with padding but crops (win - 1) / 2 pixels from
 * every border before averaging). The map is averaged per frame, and the per-frame values are
 * averaged over frames.
 * Colour: `channels: "luma"` (the default and the bench's primary SSIM) computes it on BT.601 luma
 * Y = 0.299 R + 0.587 G + 0.114 B of the [0, 1] pixels; `channels: "rgb"` computes it on each
 * channel separately and averages the three (skimage's channel_axis behaviour). The bench reports
 * both (ssim = luma, ssimRgb = channel mean).
 * Frames smaller than the window (e.g. 8 x 8 test models): the window shrinks to the largest odd
 * size that fits, min(11, H, W) rounded down to odd, with the same sigma 1.5 (renormalised); the
 * window used is reported. With 32 x 32 frames (the reference model) the standard 11 applies.
 *
 * Speed: compute speedup = full MACs / executed MACs; wall speedup = median wall time of the
 * uncached runs / median wall time of the method's runs; efficiency = wall / compute speedup.
 */
import { UsageError } from "../errors.ts";
import { median } from "../tensor/stats.ts";

/** Anything with [C, T, H, W] data, e.g. a `Video` from `generate`. */
export interface ClipData {
  data: ArrayLike<number>;
  channels: number;
  frames: number;
  height: number;
  width: number;
}

/** Reported PSNRs are capped here (identical clips, frames with MSE 0). */
export const PSNR_CAP_DB = 100;

export const SSIM_DEFAULTS = { window: 11, sigma: 1.5, k1: 0.01, k2: 0.03, range: 1 } as const;

/** BT.601 luma weights (R, G, B). */
export const LUMA_BT601 = [0.299, 0.587, 0.114] as const;

/** [-1, 1] -> displayed [0, 1] pixel: x / 2 + 0.5, clamped (NaN -> 0, as the media writers do). */
export function toUnit(x: number): number {
  const v = x / 2 + 0.5;
  return v > 0 ? (v < 1 ? v : 1) : 0;
}

function checkPair(a: ClipData, b: ClipData, what: string): void {
  for (const c of [a, b]) {
    for (const k of ["channels", "frames", "height", "width"] as const)
      if (!Number.isInteger(c[k]) || c[k] < 1) throw new UsageError(`${what}: ${k} must be a positive integer, got ${c[k]}`, "pass clips shaped [C, T, H, W]");
    const n = c.channels * c.frames * c.height * c.width;
    if (c.data.length !== n) throw new UsageError(`${what}: clip has ${c.data.length} values, [${c.channels}, ${c.frames}, ${c.height}, ${c.width}] needs ${n}`);
  }
  if (a.channels !== b.channels || a.frames !== b.frames || a.height !== b.height || a.width !== b.width)
    throw new UsageError(
      `${what}: clip shapes differ, [${a.channels}, ${a.frames}, ${a.height}, ${a.width}] vs [${b.channels}, ${b.frames}, ${b.height}, ${b.width}]`,
      "compare outputs of the same model and latent shape",
    );
}

/** PSNR in dB of an MSE on [0, 1] pixels (peak 1): 10 log10(1 / mse); Infinity for mse 0. */
export function psnrFromMse(mse: number): number {
  if (!(mse >= 0)) return NaN;
  return mse === 0 ? Infinity : -10 * Math.log10(mse);
}

/** Cap a PSNR for aggregation (Infinity and anything above -> PSNR_CAP_DB). */
export function capPsnr(db: number, cap = PSNR_CAP_DB): number {
  return db > cap ? cap : db;
}

/** Per-frame MSE on [0, 1] pixels (mean over channels and pixels of each frame). */
export function frameMse(a: ClipData, b: ClipData): number[] {
  checkPair(a, b, "frameMse");
  const { channels: C, frames: T, height: H, width: W } = a;
  const P = H * W;
  const out: number[] = [];
  for (let t = 0; t < T; t++) {
    let s = 0;
    for (let c = 0; c < C; c++) {
      const o = (c * T + t) * P;
      for (let i = 0; i < P; i++) {
        const d = toUnit(a.data[o + i]) - toUnit(b.data[o + i]);
        s += d * d;
      }
    }
    out.push(s / (C * P));
  }
  return out;
}

/** One MSE over the whole clip, [0, 1] pixels. */
export function clipMse(a: ClipData, b: ClipData): number {
  const f = frameMse(a, b);
  return f.reduce((s, x) => s + x, 0) / f.length; // every frame has the same pixel count
}

/** Per-frame PSNR in dB (Infinity for identical frames). */
export function psnrPerFrame(a: ClipData, b: ClipData): number[] {
  return frameMse(a, b).map(psnrFromMse);
}

/** PSNR definition (a): mean over frames of per-frame PSNR. Identical frames count as PSNR_CAP_DB
 * unless every frame is identical (then Infinity). */
export function psnrFrameMean(a: ClipData, b: ClipData): number {
  const p = psnrPerFrame(a, b);
  if (p.every((x) => x === Infinity)) return Infinity;
  return p.reduce((s, x) => s + capPsnr(x), 0) / p.length;
}

/** PSNR definition (b): one MSE over the whole clip. Infinity for identical clips. */
export function psnrClip(a: ClipData, b: ClipData): number {
  return psnrFromMse(clipMse(a, b));
}

/** Largest |a - b| on [0, 1] pixels (0 iff the displayed clips are identical). */
export function maxAbsDiff(a: ClipData, b: ClipData): number {
  checkPair(a, b, "maxAbsDiff");
  let m = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(toUnit(a.data[i]) - toUnit(b.data[i]));
    if (d > m) m = d;
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// SSIM

export interface SsimOptions {
  /** "luma" (BT.601 Y, default) or "rgb" (per channel, averaged). "rgb" on a 1-channel clip = luma. */
  channels?: "luma" | "rgb";
  /** Window size (odd, default 11; shrunk to fit small frames). */
  window?: number;
  /** Gaussian sigma (default 1.5). */
  sigma?: number;
  k1?: number;
  k2?: number;
}

export interface SsimResult {
  /** Mean over frames of the per-frame SSIM. */
  mean: number;
  perFrame: number[];
  /** Window size actually used (11 unless the frames are smaller). */
  window: number;
  channels: "luma" | "rgb";
}

/** Normalised 1-D Gaussian of odd size n: g_i ∝ exp(-(i - (n-1)/2)^2 / (2 sigma^2)). */
export function gaussianWindow(n: number, sigma: number): Float64Array {
  const g = new Float64Array(n);
  const c = (n - 1) / 2;
  let s = 0;
  for (let i = 0; i < n; i++) {
    g[i] = Math.exp(-((i - c) ** 2) / (2 * sigma * sigma));
    s += g[i];
  }
  for (let i = 0; i < n; i++) g[i] /= s;
  return g;
}

/** The window used for H x W frames: min(requested, H, W), rounded down to odd. */
export function ssimWindowFor(height: number, width: number, requested: number = SSIM_DEFAULTS.window): number {
  let n = Math.min(requested, height, width);
  if (n % 2 === 0) n -= 1;
  return Math.max(1, n);
}

/** 'valid' separable convolution of an H x W plane with g (outer product g g^T): (H-n+1) x (W-n+1). */
function convValid(x: Float64Array, H: number, W: number, g: Float64Array): Float64Array {
  const n = g.length;
  const Wo = W - n + 1;
  const Ho = H - n + 1;
  const tmp = new Float64Array(H * Wo);
  for (let y = 0; y < H; y++)
    for (let xo = 0; xo < Wo; xo++) {
      let s = 0;
      const o = y * W + xo;
      for (let k = 0; k < n; k++) s += g[k] * x[o + k];
      tmp[y * Wo + xo] = s;
    }
  const out = new Float64Array(Ho * Wo);
  for (let yo = 0; yo < Ho; yo++)
    for (let xo = 0; xo < Wo; xo++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += g[k] * tmp[(yo + k) * Wo + xo];
      out[yo * Wo + xo] = s;
    }
  return out;
}

/** SSIM of two single-channel H x W planes of [0, 1] pixels (mean of the valid SSIM map). */
export function ssimPlane(x: Float64Array, y: Float64Array, H: number, W: number, o: SsimOptions = {}): number {
  const n = ssimWindowFor(H, W, o.window ?? SSIM_DEFAULTS.window);
  const g = gaussianWindow(n, o.sigma ?? SSIM_DEFAULTS.sigma);
  const L = SSIM_DEFAULTS.range;
  const C1 = ((o.k1 ?? SSIM_DEFAULTS.k1) * L) ** 2;
  const C2 = ((o.k2 ?? SSIM_DEFAULTS.k2) * L) ** 2;
  const P = H * W;
  const xx = new Float64Array(P), yy = new Float64Array(P), xy = new Float64Array(P);
  for (let i = 0; i < P; i++) {
    xx[i] = x[i] * x[i];
    yy[i] = y[i] * y[i];
    xy[i] = x[i] * y[i];
  }
  const mx = convValid(x, H, W, g), my = convValid(y, H, W, g);
  const sxx = convValid(xx, H, W, g), syy = convValid(yy, H, W, g), sxy = convValid(xy, H, W, g);
  let s = 0;
  for (let i = 0; i < mx.length; i++) {
    const mux = mx[i], muy = my[i];
    const vx = sxx[i] - mux * mux, vy = syy[i] - muy * muy, cxy = sxy[i] - mux * muy;
    s += ((2 * mux * muy + C1) * (2 * cxy + C2)) / ((mux * mux + muy * muy + C1) * (vx + vy + C2));
  }
  return s / mx.length;
}

/** One frame's plane: BT.601 luma of a 3-channel clip, or channel c. [0, 1] pixels. */
function plane(v: ClipData, t: number, c: number | "luma"): Float64Array {
  const { channels: C, frames: T, height: H, width: W } = v;
  const P = H * W;
  const out = new Float64Array(P);
  if (c === "luma" && C === 3) {
    const r = t * P, gg = (T + t) * P, b = (2 * T + t) * P;
    for (let i = 0; i < P; i++)
      out[i] = LUMA_BT601[0] * toUnit(v.data[r + i]) + LUMA_BT601[1] * toUnit(v.data[gg + i]) + LUMA_BT601[2] * toUnit(v.data[b + i]);
    return out;
  }
  if (c === "luma" && C !== 1) throw new UsageError(`luma SSIM needs 1 or 3 channels, got ${C}`, 'use channels: "rgb" (per-channel mean)');
  const o = ((c === "luma" ? 0 : c) * T + t) * P;
  for (let i = 0; i < P; i++) out[i] = toUnit(v.data[o + i]);
  return out;
}

/** SSIM per frame and its mean over frames (see the file comment for the exact definition). */
export function ssim(a: ClipData, b: ClipData, o: SsimOptions = {}): SsimResult {
  checkPair(a, b, "ssim");
  const channels = o.channels ?? "luma";
  const { channels: C, frames: T, height: H, width: W } = a;
  const perFrame: number[] = [];
  for (let t = 0; t < T; t++) {
    if (channels === "luma" || C === 1) perFrame.push(ssimPlane(plane(a, t, "luma"), plane(b, t, "luma"), H, W, o));
    else {
      let s = 0;
      for (let c = 0; c < C; c++) s += ssimPlane(plane(a, t, c), plane(b, t, c), H, W, o);
      perFrame.push(s / C);
    }
  }
  return { mean: perFrame.reduce((s, x) => s + x, 0) / T, perFrame, window: ssimWindowFor(H, W, o.window ?? SSIM_DEFAULTS.window), channels };
}

/** Every quality number of one output against its reference, PSNRs capped at PSNR_CAP_DB (finite). */
export interface QualityReport {
  /** (a) mean over frames of per-frame PSNR, dB, capped */
  psnrFrame: number;
  /** (b) PSNR of one MSE over the clip, dB, capped */
  psnrClip: number;
  psnrPerFrame: number[];
  /** clip MSE on [0, 1] pixels */
  mse: number;
  maxAbsDiff: number;
  /** displayed [0, 1] pixels identical (PSNRs are then PSNR_CAP_DB) */
  identical: boolean;
  /** SSIM on BT.601 luma, mean over frames */
  ssim: number;
  /** SSIM per channel, averaged over channels and frames */
  ssimRgb: number;
  ssimPerFrame: number[];
  ssimWindow: number;
}

export function compareClips(reference: ClipData, output: ClipData): QualityReport {
  const fm = frameMse(reference, output);
  const mse = fm.reduce((s, x) => s + x, 0) / fm.length;
  const perFrame = fm.map((m) => capPsnr(psnrFromMse(m)));
  const rgb = ssim(reference, output, { channels: "rgb" });
  // luma needs RGB (or one channel); other channel counts (latents) fall back to the channel mean
  const lum = reference.channels === 3 || reference.channels === 1 ? ssim(reference, output, { channels: "luma" }) : rgb;
  const mad = maxAbsDiff(reference, output);
  return {
    psnrFrame: perFrame.reduce((s, x) => s + x, 0) / perFrame.length,
    psnrClip: capPsnr(psnrFromMse(mse)),
    psnrPerFrame: perFrame,
    mse,
    maxAbsDiff: mad,
    identical: mad === 0,
    ssim: lum.mean,
    ssimRgb: rgb.mean,
    ssimPerFrame: lum.perFrame,
    ssimWindow: lum.window,
  };
}

// ---------------------------------------------------------------------------------------------
// Speed

/** Mean; NaN for none. */
export function mean(values: readonly number[]): number {
  return values.length ? values.reduce((s, x) => s + x, 0) / values.length : NaN;
}

/** Compute speedup = full MACs / executed MACs (summed over runs when given arrays). */
export function computeSpeedup(macsFull: number | readonly number[], macsExecuted: number | readonly number[]): number {
  const f = typeof macsFull === "number" ? macsFull : macsFull.reduce((s, x) => s + x, 0);
  const e = typeof macsExecuted === "number" ? macsExecuted : macsExecuted.reduce((s, x) => s + x, 0);
  return e > 0 ? f / e : NaN;
}

/** Wall speedup = median wall time of the uncached runs / median wall time of the method's runs. */
export function wallSpeedup(referenceWallMs: readonly number[], methodWallMs: readonly number[]): number {
  const r = median(referenceWallMs), m = median(methodWallMs);
  return m > 0 ? r / m : NaN;
}

/** Efficiency = wall speedup / compute speedup (1 = the cache's own bookkeeping costs nothing). */
export function efficiency(wall: number, compute: number): number {
  return compute > 0 ? wall / compute : NaN;
}
