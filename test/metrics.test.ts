import { test } from "node:test";
import assert from "node:assert/strict";
import {
  PSNR_CAP_DB, capPsnr, clipMse, compareClips, computeSpeedup, efficiency, frameMse, gaussianWindow, maxAbsDiff,
  psnrClip, psnrFrameMean, psnrFromMse, psnrPerFrame, ssim, ssimPlane, ssimWindowFor, toUnit, wallSpeedup, type ClipData,
} from "../src/metrics/quality.ts";
import { median } from "../src/tensor/stats.ts";

const C1 = 0.01 ** 2;
const C2 = 0.03 ** 2;

/** A [C, T, H, W] clip whose value at (c, t, y, x) is fn(c, t, y, x), in [-1, 1] units. */
function clip(C: number, T: number, H: number, W: number, fn: (c: number, t: number, y: number, x: number) => number): ClipData {
  const data = new Float32Array(C * T * H * W);
  for (let c = 0; c < C; c++) for (let t = 0; t < T; t++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[((c * T + t) * H + y) * W + x] = fn(c, t, y, x);
  return { data, channels: C, frames: T, height: H, width: W };
}

/** Deterministic pseudo-random values in [-1, 1]. */
function noise(seed: number): (c: number, t: number, y: number, x: number) => number {
  return (c, t, y, x) => {
    let h = (seed * 2654435761 + c * 97 + t * 7919 + y * 131 + x * 31337) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x45d9f3b) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x45d9f3b) >>> 0;
    return ((h ^ (h >>> 16)) >>> 0) / 4294967296 * 2 - 1;
  };
}

const close = (a: number, b: number, tol: number, msg?: string) => assert.ok(Math.abs(a - b) <= tol, `${msg ?? ""} ${a} vs ${b} (tol ${tol})`);

test("pixels: [-1, 1] -> [0, 1], clamped", () => {
  assert.equal(toUnit(-1), 0);
  assert.equal(toUnit(0), 0.5);
  assert.equal(toUnit(1), 1);
  assert.equal(toUnit(1.5), 1);
  assert.equal(toUnit(-3), 0);
  assert.equal(toUnit(NaN), 0);
});

test("PSNR: constant images with a known offset give the exact PSNR", () => {
  // 0 -> 0.5 and 0.2 -> 0.6 on [0, 1] pixels: every pixel differs by 0.1, MSE 0.01, PSNR 20 dB
  const a = clip(3, 4, 32, 32, () => 0);
  const b = clip(3, 4, 32, 32, () => 0.2);
  close(clipMse(a, b), 0.01, 1e-9);
  close(psnrClip(a, b), 20, 1e-6);
  close(psnrFrameMean(a, b), 20, 1e-6);
  for (const p of psnrPerFrame(a, b)) close(p, 20, 1e-6);
  // offset 0.02 in [-1, 1] = 0.01 on pixels: MSE 1e-4, 40 dB
  close(psnrClip(a, clip(3, 4, 32, 32, () => 0.02)), 40, 1e-5);
  close(maxAbsDiff(a, b), 0.1, 1e-7);
});

test("PSNR: identical clips are Infinity, capped at 100 dB in aggregates; clamping happens first", () => {
  const a = clip(3, 2, 8, 8, noise(1));
  assert.equal(psnrClip(a, a), Infinity);
  assert.equal(psnrFrameMean(a, a), Infinity);
  assert.equal(psnrFromMse(0), Infinity);
  assert.equal(capPsnr(Infinity), PSNR_CAP_DB);
  assert.equal(capPsnr(42), 42);
  const q = compareClips(a, a);
  assert.equal(q.identical, true);
  assert.equal(q.psnrFrame, 100);
  assert.equal(q.psnrClip, 100);
  assert.equal(q.maxAbsDiff, 0);
  close(q.ssim, 1, 1e-12);
  // values outside [-1, 1] display as the bounds: 1.5 and 1 are the same white pixel
  assert.equal(psnrClip(clip(3, 2, 4, 4, () => 1.5), clip(3, 2, 4, 4, () => 1)), Infinity);
});

test("PSNR: the two definitions differ when frames have different errors", () => {
  // frame 0: pixel error 0.1 (MSE 1e-2, 20 dB); frame 1: pixel error 0.01 (MSE 1e-4, 40 dB)
  const ref = clip(3, 2, 16, 16, () => 0);
  const out = clip(3, 2, 16, 16, (_c, t) => (t === 0 ? 0.2 : 0.02));
  const mses = frameMse(ref, out);
  close(mses[0], 1e-2, 1e-9);
  close(mses[1], 1e-4, 1e-9);
  // (a) mean of per-frame PSNR = (20 + 40) / 2 = 30 dB
  close(psnrFrameMean(ref, out), 30, 1e-5);
  // (b) one MSE over the clip = (1e-2 + 1e-4) / 2 = 5.05e-3 -> 10 log10(1 / 5.05e-3) = 22.967 dB
  close(psnrClip(ref, out), 10 * Math.log10(1 / 5.05e-3), 1e-5);
  close(psnrClip(ref, out), 22.9671, 1e-4);
  // one identical frame among differing ones counts as the 100 dB cap in (a), not as Infinity
  const half = clip(3, 2, 16, 16, (_c, t) => (t === 0 ? 0.2 : 0));
  close(psnrFrameMean(ref, half), (20 + 100) / 2, 1e-5);
  close(psnrClip(ref, half), 10 * Math.log10(1 / 5e-3), 1e-5);
});

test("SSIM: window, Gaussian and sizes", () => {
  const g = gaussianWindow(11, 1.5);
  close(g.reduce((s, x) => s + x, 0), 1, 1e-15);
  close(g[5] / g[4], Math.exp(1 / (2 * 1.5 * 1.5)), 1e-12);
  assert.equal(ssimWindowFor(32, 32), 11);
  assert.equal(ssimWindowFor(8, 8), 7);
  assert.equal(ssimWindowFor(10, 12), 9);
  assert.equal(ssimWindowFor(11, 40), 11);
  assert.equal(ssim(clip(3, 1, 32, 32, noise(2)), clip(3, 1, 32, 32, noise(3))).window, 11);
  assert.equal(ssim(clip(3, 1, 8, 8, noise(2)), clip(3, 1, 8, 8, noise(3))).window, 7);
});

test("SSIM: identical = 1; constant images = the luminance term, by hand", () => {
  const a = clip(3, 3, 32, 32, noise(5));
  close(ssim(a, a).mean, 1, 1e-12);
  close(ssim(a, a, { channels: "rgb" }).mean, 1, 1e-12);
  // constant 0.5 vs 0.6 pixels: no variance, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1) (the
  // contrast-structure term is C2 / C2 = 1); gray pixels have the same luma
  const want = (2 * 0.5 * 0.6 + C1) / (0.25 + 0.36 + C1);
  const b = clip(3, 2, 32, 32, () => 0);
  const c = clip(3, 2, 32, 32, () => 0.2);
  close(ssim(b, c).mean, want, 1e-7);
  close(ssim(b, c, { channels: "rgb" }).mean, want, 1e-7);
});

test("SSIM: an 11x11 pair computed by hand (one window position)", () => {
  // x = 0.5 everywhere but 1 at the centre, y = 0.5 everywhere. With centre weight w = g5^2 of the
  // normalised 11x11 Gaussian: mu_x = 0.5 + 0.5 w, var_x = E[x^2] - mu_x^2 = 0.25 w (1 - w),
  // mu_y = 0.5, var_y = 0, cov = E[xy] - mu_x mu_y = 0.5 mu_x - 0.5 mu_x = 0.
  let z = 0;
  for (let i = 0; i < 11; i++) z += Math.exp(-((i - 5) ** 2) / (2 * 1.5 ** 2));
  const w = (1 / z) ** 2;
  const mx = 0.5 + 0.5 * w, my = 0.5, vx = 0.25 * w * (1 - w);
  const want = ((2 * mx * my + C1) * C2) / ((mx * mx + my * my + C1) * (vx + C2));
  const x = new Float64Array(121).fill(0.5);
  x[60] = 1;
  const y = new Float64Array(121).fill(0.5);
  close(ssimPlane(x, y, 11, 11), want, 1e-12);
  close(ssimPlane(y, x, 11, 11), want, 1e-12); // symmetric
  // numerically: z = 3.7592, w = 0.07076, mu_x = 0.53538, var_x = 0.016439, so SSIM ~ 1 * C2 / (var_x + C2) = 0.0518
  close(want, 0.0518, 2e-4, "hand value");
  // the same through a clip: pixel value p is clip value 2p - 1
  const cx = clip(1, 1, 11, 11, (_c, _t, yy, xx) => (yy === 5 && xx === 5 ? 1 : 0));
  const cy = clip(1, 1, 11, 11, () => 0);
  close(ssim(cx, cy).mean, want, 1e-12);
});

test("SSIM: matches a direct (non-separable) 'valid' implementation on 32x32 frames; luma vs RGB", () => {
  const a = clip(3, 2, 32, 32, noise(7));
  // b: a blurred-ish, noisy version of a so SSIM is well inside (0, 1)
  const na = noise(8);
  const b = clip(3, 2, 32, 32, (c, t, y, x) => 0.7 * a.data[((c * 2 + t) * 32 + y) * 32 + x] + 0.3 * na(c, t, y, x));
  const g = gaussianWindow(11, 1.5);
  const direct = (px: (i: number) => number, py: (i: number) => number): number => {
    let s = 0, count = 0;
    for (let y0 = 0; y0 + 11 <= 32; y0++)
      for (let x0 = 0; x0 + 11 <= 32; x0++) {
        let mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
        for (let i = 0; i < 11; i++)
          for (let j = 0; j < 11; j++) {
            const wgt = g[i] * g[j];
            const k = (y0 + i) * 32 + x0 + j;
            const u = px(k), v = py(k);
            mx += wgt * u;
            my += wgt * v;
            sxx += wgt * u * u;
            syy += wgt * v * v;
            sxy += wgt * u * v;
          }
        const vx = sxx - mx * mx, vy = syy - my * my, cxy = sxy - mx * my;
        s += ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
        count++;
      }
    assert.equal(count, 22 * 22); // the valid map of a 32x32 frame
    return s / count;
  };
  const P = 32 * 32;
  const at = (v: ClipData, c: number, t: number) => (k: number) => toUnit(v.data[(c * 2 + t) * P + k]);
  const luma = (v: ClipData, t: number) => (k: number) => 0.299 * at(v, 0, t)(k) + 0.587 * at(v, 1, t)(k) + 0.114 * at(v, 2, t)(k);
  const lumaRes = ssim(a, b);
  const rgbRes = ssim(a, b, { channels: "rgb" });
  for (let t = 0; t < 2; t++) {
    close(lumaRes.perFrame[t], direct(luma(a, t), luma(b, t)), 1e-12, `luma frame ${t}`);
    const perChannel = [0, 1, 2].map((c) => direct(at(a, c, t), at(b, c, t)));
    close(rgbRes.perFrame[t], perChannel.reduce((s, x) => s + x, 0) / 3, 1e-12, `rgb frame ${t}`);
  }
  close(lumaRes.mean, (lumaRes.perFrame[0] + lumaRes.perFrame[1]) / 2, 1e-15);
  assert.ok(lumaRes.mean > 0.3 && lumaRes.mean < 0.99, `ssim ${lumaRes.mean}`);
  assert.notEqual(lumaRes.mean, rgbRes.mean);
  const q = compareClips(a, b);
  assert.equal(q.ssim, lumaRes.mean);
  assert.equal(q.ssimRgb, rgbRes.mean);
  assert.equal(q.ssimWindow, 11);
  assert.equal(q.identical, false);
  assert.ok(q.psnrFrame >= q.psnrClip - 1e-12, "mean of per-frame PSNR >= PSNR of the mean MSE (Jensen)");
});

test("SSIM: equals pytorch-msssim's algorithm on a fixed pair (value computed once with torch)", () => {
  // x = (sin(0.7 i + 1.3 j) + 1) / 2, y = clip(0.8 x + 0.2 (cos(0.45 i j / 7 + 0.5 j) + 1) / 2, 0, 1) on a
  // 32x32 grid (i = row). Reference: pytorch-msssim's _ssim (separable Gaussian 11 / 1.5, conv2d
  // without padding, K1 0.01, K2 0.03, data range 1) in float64 with torch 2.x: 0.9576482965983972.
  const x = new Float64Array(1024), y = new Float64Array(1024);
  for (let i = 0; i < 32; i++)
    for (let j = 0; j < 32; j++) {
      const v = (Math.sin(0.7 * i + 1.3 * j) + 1) / 2;
      x[i * 32 + j] = v;
      y[i * 32 + j] = Math.min(1, Math.max(0, 0.8 * v + (0.2 * (Math.cos((0.45 * i * j) / 7 + 0.5 * j) + 1)) / 2));
    }
  close(ssimPlane(x, y, 32, 32), 0.9576482965983972, 1e-12);
});

test("metrics reject mismatched shapes", () => {
  assert.throws(() => psnrClip(clip(3, 2, 8, 8, () => 0), clip(3, 3, 8, 8, () => 0)), /shapes differ/);
  assert.throws(() => ssim({ data: new Float32Array(5), channels: 3, frames: 1, height: 2, width: 2 }, clip(3, 1, 2, 2, () => 0)), /needs 12/);
});

test("speed helpers: compute and wall speedup, efficiency, median", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.ok(Number.isNaN(median([])));
  assert.equal(computeSpeedup(100, 40), 2.5);
  assert.equal(computeSpeedup([100, 100], [50, 30]), 2.5); // sums: 200 / 80
  assert.equal(wallSpeedup([10, 12, 11], [5, 6, 100]), 11 / 6);
  assert.equal(efficiency(2, 2.5), 0.8);
  assert.ok(Number.isNaN(computeSpeedup(1, 0)));
});
