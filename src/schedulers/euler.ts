/**
 * Flow-matching Euler sampler: diffusers `FlowMatchEulerDiscreteScheduler.step`
 * (diffusers scheduling_flow_match_euler_discrete.py; docs/design/wan21.md §4.1, §4.3).
 *
 *   x_{i+1} = x_i + (σ_{i+1} − σ_i)·v_i, in float32 like diffusers (dt is a float32 scalar).
 *
 * Stateless: steps may be taken in any order and `reset()` does nothing.
 */
import type { Sampler, SigmaSchedule } from "./types.ts";
import { checkStepArgs, eulerFlowGrid, eulerLinearGrid } from "./sigmas.ts";

export class EulerSampler implements Sampler {
  readonly name = "euler" as const;
  readonly steps: number;
  readonly shift: number;
  readonly order = 1;
  readonly sigmas: Float64Array;
  readonly timesteps: Float64Array;

  /** Options are validated by the grid (ConfigError on bad steps/shift). `sigmas`: "default" is
   * the scheduler's own grid (Wan), "linear" the grid HunyuanVideoPipeline passes in. */
  constructor(steps: number, shift: number, sigmas: SigmaSchedule = "default") {
    const grid = sigmas === "linear" ? eulerLinearGrid(steps, shift) : eulerFlowGrid(steps, shift);
    this.steps = steps;
    this.shift = shift;
    this.sigmas = grid.sigmas;
    this.timesteps = grid.timesteps;
  }

  /**
   * x_{i+1} = x_i + dt·v_i with dt = float32(σ_{i+1} − σ_i). Writes into `out` when given (it may be
   * `x` or `v` itself, for an in-place update) and returns it; otherwise returns a new Float32Array.
   * Bit-exact with PyTorch's fp32 `sample + dt * model_output` (fp64 evaluation of one fp32 op
   * followed by rounding to fp32 is correctly rounded).
   */
  step(i: number, x: Float32Array, v: Float32Array, out?: Float32Array): Float32Array {
    const y = checkStepArgs("euler", this.steps, i, x, v, out);
    const dt = Math.fround(this.sigmas[i + 1] - this.sigmas[i]);
    const n = x.length;
    for (let j = 0; j < n; j++) y[j] = x[j] + Math.fround(dt * v[j]);
    return y;
  }

  reset(): void {}
}
