/**
 * Flow-matching sigma / timestep grids for the Wan2.1 samplers (design: docs/design/wan21.md §4.1).
 *
 * Convention: x_σ = (1−σ)·x0 + σ·ε, the model predicts v ≈ ε − x0. Both grids are strictly
 * decreasing, have N+1 sigmas with σ_N = 0, and N model timesteps. Sigma values are float32 values
 * (as diffusers stores them) held in a Float64Array; timesteps are what the transformer receives.
 */
import { ConfigError, UsageError } from "../errors.ts";

/** diffusers' `num_train_timesteps` for Wan2.1 (and SD3/Flux style flow models). */
const NUM_TRAIN_TIMESTEPS = 1000;
/** Largest accepted number of sampling steps (one per training timestep). */
export const MAX_STEPS = 1000;

export interface SigmaGrid {
  /** N+1 sigmas, float32 values, strictly decreasing, last is exactly 0. */
  readonly sigmas: Float64Array;
  /** N model timesteps (UniPC: integers, Euler: float32 values of 1000·σ). */
  readonly timesteps: Float64Array;
}

/** shift_s(σ) = s·σ / (1 + (s−1)·σ), evaluated in float64 in numpy's operation order. */
function shiftSigma(sigma: number, shift: number): number {
  return (shift * sigma) / (1 + (shift - 1) * sigma);
}

/**
 * numpy.linspace(start, stop, num) with endpoint=True, reproducing its float64 rounding:
 * y_k = k·((stop−start)/(num−1)) + start, and y_{num−1} = stop exactly; num = 1 gives [start].
 */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const y = new Float64Array(num);
  if (num === 1) {
    y[0] = start;
    return y;
  }
  const step = (stop - start) / (num - 1);
  for (let k = 0; k < num; k++) y[k] = k * step + start;
  y[num - 1] = stop;
  return y;
}

/** Throws ConfigError unless steps is an integer in [1, MAX_STEPS]. */
function validateSteps(steps: unknown): asserts steps is number {
  if (typeof steps !== "number" || !Number.isInteger(steps) || steps < 1 || steps > MAX_STEPS) {
    throw new ConfigError(
      `sampler steps must be an integer between 1 and ${MAX_STEPS}, got ${JSON.stringify(steps)}`,
      "pass e.g. steps: 50 (the Wan2.1 default)",
    );
  }
}

/** Throws ConfigError unless shift is a finite number > 0. */
export function validateShift(shift: unknown): asserts shift is number {
  if (typeof shift !== "number" || !Number.isFinite(shift) || !(shift > 0)) {
    throw new ConfigError(
      `sampler shift must be a finite number > 0, got ${JSON.stringify(shift)}`,
      "use the scheduler's flow_shift: 3.0 for Wan2.1 480p, 5.0 for 720p (1.0 disables the shift)",
    );
  }
}

function checkDecreasing(sigmas: Float64Array, what: string, steps: number, shift: number): void {
  for (let i = 0; i + 1 < sigmas.length; i++) {
    if (!(sigmas[i] > sigmas[i + 1]) || !(sigmas[i] <= 1)) {
      throw new ConfigError(
        `${what} sigma grid is not strictly decreasing in float32 for steps=${steps}, shift=${shift} ` +
          `(sigma[${i}] = ${sigmas[i]}, sigma[${i + 1}] = ${sigmas[i + 1]})`,
        "use a smaller shift or fewer steps",
      );
    }
  }
}

/**
 * Grid of diffusers `UniPCMultistepScheduler.set_timesteps` with use_flow_sigmas=True,
 * final_sigmas_type="zero" (diffusers scheduling_unipc_multistep.py; docs/design/wan21.md §4.1):
 * σ_base = linspace(1, 1/1000, N+1)[:-1] (float64), σ = shift_s(σ_base), σ_0 −= 1e-6 if within
 * 1e-6 of 1, t_i = trunc(1000·σ_i) from the float64 σ, then σ_N = 0 and all σ cast to float32.
 */
export function unipcFlowGrid(steps: number, shift: number): SigmaGrid {
  validateSteps(steps);
  validateShift(shift);
  const base = linspace(1, 1 / NUM_TRAIN_TIMESTEPS, steps + 1);
  const s64 = new Float64Array(steps);
  for (let i = 0; i < steps; i++) s64[i] = shiftSigma(base[i], shift);
  const eps = 1e-6;
  if (Math.abs(s64[0] - 1) < eps) s64[0] -= eps; // avoids log(α=0) in the first update
  const timesteps = new Float64Array(steps);
  for (let i = 0; i < steps; i++) timesteps[i] = Math.trunc(s64[i] * NUM_TRAIN_TIMESTEPS); // int64 cast
  const sigmas = new Float64Array(steps + 1);
  for (let i = 0; i < steps; i++) sigmas[i] = Math.fround(s64[i]); // .astype(np.float32)
  sigmas[steps] = 0;
  checkDecreasing(sigmas, "unipc", steps, shift);
  return { sigmas, timesteps };
}

/**
 * Grid of diffusers `FlowMatchEulerDiscreteScheduler` (use_dynamic_shifting=False; diffusers
 * scheduling_flow_match_euler_discrete.py; docs/design/wan21.md §4.1). `__init__` builds float32 sigmas
 * linspace(1, 1000, 1000)[::-1]/1000 and shifts them in float32, giving σ_max = shift_s(1) and
 * σ_min = shift_s(1/1000); `set_timesteps` takes linspace(1000·σ_max, 1000·σ_min, N)/1000 in
 * float64, applies shift_s again, casts to float32 and appends 0; timesteps = float32(1000·σ_i).
 */
export function eulerFlowGrid(steps: number, shift: number): SigmaGrid {
  validateSteps(steps);
  validateShift(shift);
  const f = Math.fround;
  // __init__: float32 tensor ops; the Python scalars shift and shift−1 are cast to float32.
  const initShift = (s: number): number => f(f(f(shift) * s) / f(1 + f(f(shift - 1) * s)));
  const sigmaMax = initShift(f(f(NUM_TRAIN_TIMESTEPS) / NUM_TRAIN_TIMESTEPS));
  const sigmaMin = initShift(f(f(1) / NUM_TRAIN_TIMESTEPS));
  // set_timesteps: float64 numpy.
  const t = linspace(sigmaMax * NUM_TRAIN_TIMESTEPS, sigmaMin * NUM_TRAIN_TIMESTEPS, steps);
  const sigmas = new Float64Array(steps + 1);
  const timesteps = new Float64Array(steps);
  for (let i = 0; i < steps; i++) {
    sigmas[i] = f(shiftSigma(t[i] / NUM_TRAIN_TIMESTEPS, shift));
    timesteps[i] = f(sigmas[i] * NUM_TRAIN_TIMESTEPS); // float32 tensor × 1000
  }
  sigmas[steps] = 0;
  checkDecreasing(sigmas, "euler", steps, shift);
  return { sigmas, timesteps };
}

/**
 * Grid of diffusers `FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=...)` as
 * HunyuanVideoPipeline calls it (diffusers pipeline_hunyuan_video.py: sigmas =
 * np.linspace(1.0, 0.0, N + 1)[:-1]): the given sigmas cast to float32, shifted in float32
 * (numpy float32 array with a Python scalar shift), timesteps = float32(1000·σ_i), then 0 appended.
 */
export function eulerLinearGrid(steps: number, shift: number): SigmaGrid {
  validateSteps(steps);
  validateShift(shift);
  const f = Math.fround;
  const base = linspace(1, 0, steps + 1);
  const sigmas = new Float64Array(steps + 1);
  const timesteps = new Float64Array(steps);
  for (let i = 0; i < steps; i++) {
    const s = f(base[i]);
    sigmas[i] = f(f(f(shift) * s) / f(1 + f(f(shift - 1) * s)));
    timesteps[i] = f(sigmas[i] * NUM_TRAIN_TIMESTEPS);
  }
  sigmas[steps] = 0;
  checkDecreasing(sigmas, "euler (linear sigmas)", steps, shift);
  return { sigmas, timesteps };
}

/**
 * Shared argument checks for `Sampler.step` (programming errors, so UsageError): i is an integer
 * step index in [0, steps), x and v (and out, if given) have the same length. Returns the output
 * buffer: `out` if given, else a new Float32Array.
 */
export function checkStepArgs(
  name: string,
  steps: number,
  i: number,
  x: Float32Array,
  v: Float32Array,
  out: Float32Array | undefined,
): Float32Array {
  if (!Number.isInteger(i) || i < 0 || i >= steps) {
    throw new UsageError(`${name}.step: step index ${i} is outside 0..${steps - 1}`, "call step(i, ...) once for each i = 0..steps-1, in order");
  }
  if (!(x instanceof Float32Array) || !(v instanceof Float32Array)) {
    throw new UsageError(`${name}.step: latent and velocity must be Float32Array`, "convert the model output with Float32Array.from(...)");
  }
  if (x.length !== v.length) {
    throw new UsageError(`${name}.step: latent has ${x.length} elements but velocity has ${v.length}`, "pass the velocity predicted for this latent (same shape)");
  }
  if (out === undefined) return new Float32Array(x.length);
  if (!(out instanceof Float32Array) || out.length !== x.length) {
    throw new UsageError(`${name}.step: out must be a Float32Array of ${x.length} elements`, "omit out to get a new array, or pass x itself to update in place");
  }
  return out;
}
