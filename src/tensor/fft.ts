/**
 * A small FFT for FasterCache's CFG-Cache frequency split (and anything else that needs one).
 *
 * - Power-of-two lengths: iterative radix-2 Cooley-Tukey.
 * - Any other length: Bluestein's chirp-z transform, i.e. the DFT written as a convolution with the
 *   chirp e^{i pi m^2 / n} and evaluated with radix-2 FFTs of size M >= 2n - 1.
 *
 * Everything runs in float64, in place on separate real / imaginary arrays. Forward is
 * X[k] = sum_j x[j] e^{-2 pi i jk / n} (numpy / torch.fft convention); `ifft*` divide by n.
 * Plans (bit reversal, twiddles, chirp spectra) are cached per length.
 */

interface Radix2Plan {
  n: number;
  rev: Uint32Array;
  /** cos / sin of 2 pi k / n for k < n / 2 */
  cos: Float64Array;
  sin: Float64Array;
}

interface BluesteinPlan {
  n: number;
  m: number;
  inner: Radix2Plan;
  /** chirp c_j = e^{-i pi j^2 / n}, j < n */
  cRe: Float64Array;
  cIm: Float64Array;
  /** FFT of the zero-padded, wrapped conj(c) sequence (length m) */
  bRe: Float64Array;
  bIm: Float64Array;
  /** scratch of length m */
  aRe: Float64Array;
  aIm: Float64Array;
}

const radix2Plans = new Map<number, Radix2Plan>();
const bluesteinPlans = new Map<number, BluesteinPlan>();

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

function radix2Plan(n: number): Radix2Plan {
  let p = radix2Plans.get(n);
  if (p) return p;
  const bits = Math.round(Math.log2(n));
  const rev = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    let r = 0;
    for (let b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
    rev[i] = r;
  }
  const half = Math.max(1, n >> 1);
  const cos = new Float64Array(half), sin = new Float64Array(half);
  for (let k = 0; k < half; k++) {
    cos[k] = Math.cos((2 * Math.PI * k) / n);
    sin[k] = Math.sin((2 * Math.PI * k) / n);
  }
  p = { n, rev, cos, sin };
  radix2Plans.set(n, p);
  return p;
}

/** In-place radix-2 FFT of re/im[off .. off + n); sign -1 forward, +1 inverse (unnormalised). */
function radix2(re: Float64Array, im: Float64Array, p: Radix2Plan, inverse: boolean): void {
  const n = p.n;
  const { rev, cos, sin } = p;
  for (let i = 0; i < n; i++) {
    const j = rev[i];
    if (j > i) {
      let t = re[i]; re[i] = re[j]; re[j] = t;
      t = im[i]; im[i] = im[j]; im[j] = t;
    }
  }
  const sgn = inverse ? 1 : -1;
  for (let size = 2; size <= n; size <<= 1) {
    const half = size >> 1;
    const stride = n / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < half; k++) {
        const wr = cos[k * stride], wi = sgn * sin[k * stride];
        const a = start + k, b = a + half;
        const tr = re[b] * wr - im[b] * wi;
        const ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] += tr;
        im[a] += ti;
      }
    }
  }
}

function bluesteinPlan(n: number): BluesteinPlan {
  let p = bluesteinPlans.get(n);
  if (p) return p;
  let m = 1;
  while (m < 2 * n - 1) m <<= 1;
  const inner = radix2Plan(m);
  const cRe = new Float64Array(n), cIm = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    // j^2 mod 2n keeps the angle small (exact in float64 for any realistic n)
    const a = (Math.PI * ((j * j) % (2 * n))) / n;
    cRe[j] = Math.cos(a);
    cIm[j] = -Math.sin(a);
  }
  const bRe = new Float64Array(m), bIm = new Float64Array(m);
  bRe[0] = cRe[0];
  bIm[0] = -cIm[0];
  for (let j = 1; j < n; j++) {
    bRe[j] = bRe[m - j] = cRe[j];
    bIm[j] = bIm[m - j] = -cIm[j];
  }
  radix2(bRe, bIm, inner, false);
  p = { n, m, inner, cRe, cIm, bRe, bIm, aRe: new Float64Array(m), aIm: new Float64Array(m) };
  bluesteinPlans.set(n, p);
  return p;
}

/** Forward (or, conjugated, inverse) DFT of any length via Bluestein. Unnormalised. */
function bluestein(re: Float64Array, im: Float64Array, p: BluesteinPlan, inverse: boolean): void {
  const { n, m, cRe, cIm, bRe, bIm, aRe, aIm } = p;
  const s = inverse ? -1 : 1; // inverse DFT = conj(DFT(conj(x)))
  aRe.fill(0);
  aIm.fill(0);
  for (let j = 0; j < n; j++) {
    const xr = re[j], xi = s * im[j];
    aRe[j] = xr * cRe[j] - xi * cIm[j];
    aIm[j] = xr * cIm[j] + xi * cRe[j];
  }
  radix2(aRe, aIm, p.inner, false);
  for (let k = 0; k < m; k++) {
    const r = aRe[k] * bRe[k] - aIm[k] * bIm[k];
    aIm[k] = aRe[k] * bIm[k] + aIm[k] * bRe[k];
    aRe[k] = r;
  }
  radix2(aRe, aIm, p.inner, true);
  for (let k = 0; k < n; k++) {
    const cr = aRe[k] / m, ci = aIm[k] / m;
    re[k] = cr * cRe[k] - ci * cIm[k];
    im[k] = s * (cr * cIm[k] + ci * cRe[k]);
  }
}

function transform(re: Float64Array, im: Float64Array, inverse: boolean): void {
  const n = re.length;
  if (im.length !== n) throw new Error(`fft: re has ${n} values, im ${im.length}`);
  if (n <= 1) return;
  if (isPowerOfTwo(n)) radix2(re, im, radix2Plan(n), inverse);
  else bluestein(re, im, bluesteinPlan(n), inverse);
}

/** In-place forward DFT of any length. */
export function fft(re: Float64Array, im: Float64Array): void {
  transform(re, im, false);
}

/** In-place inverse DFT of any length, normalised by 1/n. */
export function ifft(re: Float64Array, im: Float64Array): void {
  transform(re, im, true);
  const n = re.length;
  for (let i = 0; i < n; i++) {
    re[i] /= n;
    im[i] /= n;
  }
}

/** 2-D transform of one row-major [H, W] plane in place: rows, then columns. */
function transform2(re: Float64Array, im: Float64Array, H: number, W: number, inverse: boolean): void {
  if (re.length !== H * W || im.length !== H * W) throw new Error(`fft2: plane has ${re.length} values, expected ${H} x ${W}`);
  for (let y = 0; y < H; y++) transform(re.subarray(y * W, (y + 1) * W), im.subarray(y * W, (y + 1) * W), inverse);
  const cr = new Float64Array(H), ci = new Float64Array(H);
  for (let x = 0; x < W; x++) {
    for (let y = 0; y < H; y++) {
      cr[y] = re[y * W + x];
      ci[y] = im[y * W + x];
    }
    transform(cr, ci, inverse);
    for (let y = 0; y < H; y++) {
      re[y * W + x] = cr[y];
      im[y * W + x] = ci[y];
    }
  }
}

/** In-place 2-D forward DFT of a row-major [H, W] plane (torch.fft.fft2 over the last two dims). */
export function fft2(re: Float64Array, im: Float64Array, H: number, W: number): void {
  transform2(re, im, H, W, false);
}

/** In-place 2-D inverse DFT of a row-major [H, W] plane, normalised by 1/(H W). */
export function ifft2(re: Float64Array, im: Float64Array, H: number, W: number): void {
  transform2(re, im, H, W, true);
  const s = 1 / (H * W);
  for (let i = 0; i < re.length; i++) {
    re[i] *= s;
    im[i] *= s;
  }
}

/**
 * FasterCache's low-frequency mask, in the *unshifted* index order of fft2: after fftshift, the
 * disc of radius min(H, W) // 5 around (H // 2, W // 2). fftshift moves index k to
 * (k + floor(n / 2)) mod n, so the test is done on the shifted coordinates directly.
 * (Vchitect/FasterCache faster_cache_sample_latte.py; diffusers hooks/faster_cache.py _split_low_high_freq.)
 */
export function lowFrequencyMask(H: number, W: number): Uint8Array {
  const radius = Math.floor(Math.min(H, W) / 5);
  const cy = Math.floor(H / 2), cx = Math.floor(W / 2);
  const mask = new Uint8Array(H * W);
  for (let ky = 0; ky < H; ky++) {
    const dy = ((ky + cy) % H) - cy;
    for (let kx = 0; kx < W; kx++) {
      const dx = ((kx + cx) % W) - cx;
      mask[ky * W + kx] = dx * dx + dy * dy <= radius * radius ? 1 : 0;
    }
  }
  return mask;
}
