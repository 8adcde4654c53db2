/**
 * What a sampler is (the interface every sampler implements) and the sampler names; no code, so
 * models/ and the samplers themselves can import it. makeSampler (sampler.ts) builds one by name.
 */
export const SAMPLER_NAMES = ["unipc", "euler"] as const;
export type SamplerName = (typeof SAMPLER_NAMES)[number];

export interface Sampler {
  readonly name: SamplerName;
  readonly steps: number;
  readonly shift: number;
  /** Maximum solver order (Euler: 1). */
  readonly order: number;
  /** N+1 sigmas (float32 values), strictly decreasing, last is 0. Do not mutate. */
  readonly sigmas: Float64Array;
  /** N model timesteps, what the transformer receives at step i. Do not mutate. */
  readonly timesteps: Float64Array;
  /**
   * Advance from step i: given the latent x_i and the (CFG-combined) velocity v_i predicted at
   * timesteps[i], return x_{i+1} (at σ_{i+1}; the last step returns the x0 estimate). The result is
   * written into `out` when given (it may be x or v itself, for an in-place update) and `out` is
   * returned; otherwise a new Float32Array is returned. x and v are never modified unless passed as
   * `out`. UniPC is multistep: steps must run in order 0..N−1 (step 0 starts a new run).
   * Throws UsageError on a bad index or mismatched lengths.
   */
  step(i: number, x: Float32Array, v: Float32Array, out?: Float32Array): Float32Array;
  /** Forget multistep history (no-op for Euler). */
  reset(): void;
}
