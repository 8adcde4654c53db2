/**
 * Seeded, documented noise: the initial latent is N(0, 1) float32 drawn from mulberry32(seed)
 * with the Box-Muller transform, consuming two uniforms per pair of values in element order of
 * the [C, F, H, W] latent: z0 = r cos(2 pi u2), z1 = r sin(2 pi u2), r = sqrt(-2 ln u1),
 * u1 = (k + 1) / 2^32 for the 32-bit output k (so u1 is in (0, 1]). Same seed, same latent,
 * on every platform.
 */

/** Noise seeds are 32-bit: 0..SEED_MAX (mulberry32 takes a uint32). */
export const SEED_MAX = 0xffffffff;

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

export function gaussianNoise(n: number, seed: number): Float32Array {
  if (!Number.isInteger(seed) || seed < 0 || seed > SEED_MAX) throw new RangeError(`seed must be an integer in [0, 2^32), got ${seed}`);
  const next = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = (next() + 1) / 4294967296;
    const u2 = next() / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}
