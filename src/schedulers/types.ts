/**
 * What a sampler is (the interface every sampler implements) and the sampler names; no code, so
 * models/ and the samplers themselves can import it. makeSampler (sampler.ts) builds one by name.
 */
export const SAMPLER_NAMES = ["unipc", "euler"] as const;
export type SamplerName = (typeof SAMPLER_NAMES)[number];

/** Which sigma grid: "default", the scheduler's own (Wan2.1); "linear", linspace(1, 0, N + 1)[:-1]
 * passed to the scheduler and shifted, as HunyuanVideoPipeline does (Euler only). */
export const SIGMA_SCHEDULES = ["default", "linear"] as const;
export type SigmaSchedule = (typeof SIGMA_SCHEDULES)[number];

/**
 * What a multistep sampler does at a step whose velocity is approximate (a cache reused work):
 * "keep" uses it like any other (the default; bit-exact with the uncached sampler when nothing is
 * reused), "skip-corrector" leaves x_i uncorrected by it (the UniC corrector would fold the
 * approximation into x_i), "order1" takes a first-order predictor step from it (no difference with
 * the previous output), "skip-corrector+order1" both. Euler has no history: every mode is the same.
 */
export const APPROX_MODES = ["keep", "skip-corrector", "order1", "skip-corrector+order1"] as const;
export type ApproxMode = (typeof APPROX_MODES)[number];

export interface StepHint {
  /** The velocity of this step is approximate (a cache reused some of its compute). */
  approximate?: boolean;
}

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
  step(i: number, x: Float32Array, v: Float32Array, out?: Float32Array, hint?: StepHint): Float32Array;
  /** Forget multistep history (no-op for Euler). */
  reset(): void;
}
