/**
 * Flow-matching samplers for the Wan2.1 runtime (design: docs/design/wan21.md §4).
 *
 * Sampling loop (CFG combined by the caller, §4.2):
 *
 *   const s = makeSampler("unipc", { steps: 50, shift: 3 });
 *   let x = noise;                                  // x at σ_0
 *   for (let i = 0; i < s.timesteps.length; i++) {
 *     const v = model(x, s.timesteps[i]);          // velocity ≈ ε − x0
 *     x = s.step(i, x, v);                         // x at σ_{i+1}; at the end, the x0 estimate
 *   }
 *
 * - "unipc": diffusers UniPCMultistepScheduler as configured for Wan2.1 (default; unipc.ts).
 * - "euler": diffusers FlowMatchEulerDiscreteScheduler (euler.ts).
 */
import { ConfigError, closest } from "../errors.ts";
import { EulerSampler } from "./euler.ts";
import { UniPCSampler } from "./unipc.ts";
import { APPROX_MODES, SAMPLER_NAMES, SIGMA_SCHEDULES, type ApproxMode, type Sampler, type SamplerName, type SigmaSchedule } from "./types.ts";

export interface SamplerOptions {
  /** Number of sampling steps N (integer, 1..1000). */
  steps: number;
  /** Flow shift s > 0 (Wan2.1: 3 at 480p, 5 at 720p). */
  shift: number;
  /** UniPC solver order, 1 or 2 (default 2). Euler accepts only 1. */
  order?: number;
  /** Sigma grid (default "default"; "linear" is HunyuanVideoPipeline's, Euler only). */
  sigmas?: SigmaSchedule;
  /** UniPC at a step whose velocity is approximate (a cached step); default "keep". */
  approx?: ApproxMode;
}

const OPTION_KEYS = ["steps", "shift", "order", "sigmas", "approx"] as const;

/** Build a sampler; throws ConfigError (with a fix hint) on an unknown name or bad options. */
export function makeSampler(name: SamplerName | (string & {}), opts: SamplerOptions): Sampler {
  if (!(SAMPLER_NAMES as readonly string[]).includes(name)) {
    throw new ConfigError(
      `unknown sampler ${JSON.stringify(name)}`,
      `valid samplers: ${SAMPLER_NAMES.join(", ")}` +
        (typeof name === "string" ? ` (did you mean ${closest(name, SAMPLER_NAMES, 1)[0]}?)` : ""),
    );
  }
  if (typeof opts !== "object" || opts === null || Array.isArray(opts)) {
    throw new ConfigError(`sampler options must be an object, got ${JSON.stringify(opts)}`, "pass e.g. { steps: 50, shift: 3 }");
  }
  for (const k of Object.keys(opts)) {
    if (!(OPTION_KEYS as readonly string[]).includes(k)) {
      throw new ConfigError(
        `unknown sampler option ${JSON.stringify(k)}`,
        `valid options: ${OPTION_KEYS.join(", ")} (did you mean ${closest(k, OPTION_KEYS, 1)[0]}?)`,
      );
    }
  }
  const { steps, shift, order, sigmas, approx } = opts;
  if (approx !== undefined && !(APPROX_MODES as readonly string[]).includes(approx))
    throw new ConfigError(`unknown approx mode ${JSON.stringify(approx)}`, `valid: ${APPROX_MODES.join(", ")}`);
  if (sigmas !== undefined && !(SIGMA_SCHEDULES as readonly string[]).includes(sigmas))
    throw new ConfigError(`unknown sigma schedule ${JSON.stringify(sigmas)}`, `valid: ${SIGMA_SCHEDULES.join(", ")}`);
  if (sigmas === "linear" && name !== "euler")
    throw new ConfigError(`the linear sigma schedule is HunyuanVideo's Euler grid, not available for ${name}`, 'use sampler "euler" with it, or omit sigmas');
  if (name === "euler") {
    if (order !== undefined && order !== 1) {
      throw new ConfigError(`euler is a first-order sampler, got order ${JSON.stringify(order)}`, 'omit order for euler, or use "unipc" for order 2');
    }
    return new EulerSampler(steps, shift, sigmas);
  }
  return new UniPCSampler(steps, shift, order ?? 2, approx ?? "keep");
}
