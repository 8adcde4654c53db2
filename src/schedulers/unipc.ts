/**
 * UniPC multistep sampler, flow variant: diffusers `UniPCMultistepScheduler` configured as Wan2.1
 * uses it (prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift, solver_order=2,
 * solver_type="bh2", predict_x0=True, lower_order_final=True, final_sigmas_type="zero", no disabled
 * correctors). Formulas: docs/design/wan21.md §4.4, from diffusers scheduling_unipc_multistep.py (`step`,
 * `convert_model_output`, `multistep_uni_p_bh_update`, `multistep_uni_c_bh_update`); the original
 * Wan `wan/utils/fm_solvers_unipc.py` uses the same update formulas.
 *
 * Notation: α = 1 − σ, λ = ln α − ln σ (λ = +∞ at σ = 0), m = x − σ·v (the x0 prediction).
 * Step i: m_i = x_i − σ_i·v_i; for i ≥ 1 the UniC corrector of order p_{i−1} turns x_i into x̃_i
 * using m_i, without re-evaluating the model ("free corrector"); then the UniP predictor of order
 * p_i = min(order, N − i, i + 1) gives x_{i+1}. The last step returns m_{N−1}.
 *
 * Precision: scalar coefficients in float64 from the float32 sigma values; per element, one pass
 * in float64 with m and x̃ rounded to float32 (diffusers keeps them as fp32 tensors).
 */
import type { ApproxMode, Sampler, StepHint } from "./types.ts";
import { checkStepArgs, unipcFlowGrid } from "./sigmas.ts";
import { ConfigError, UsageError } from "../errors.ts";

/** λ(σ) = ln(1 − σ) − ln σ; +∞ at σ = 0. */
function lambda(sigma: number): number {
  return Math.log(1 - sigma) - Math.log(sigma);
}

export class UniPCSampler implements Sampler {
  readonly name = "unipc" as const;
  readonly steps: number;
  readonly shift: number;
  /** Maximum solver order (1 or 2). */
  readonly order: number;
  readonly sigmas: Float64Array;
  readonly timesteps: Float64Array;
  private readonly lambdas: Float64Array;

  // History, allocated on the first step and reused: x̃_{i−1} ("last_sample"), m_{i−1}, m_{i−2}.
  private last = new Float32Array(0);
  private m1 = new Float32Array(0);
  private m2 = new Float32Array(0);
  private next = 0; // the step index step() expects
  private prevOrder = 0; // p_{i−1}
  /** What a step whose velocity is approximate (a cached step) does: see ApproxMode. */
  readonly approx: ApproxMode;

  constructor(steps: number, shift: number, order = 2, approx: ApproxMode = "keep") {
    this.approx = approx;
    if (order !== 1 && order !== 2) {
      throw new ConfigError(`unipc order must be 1 or 2, got ${JSON.stringify(order)}`, "omit order for the Wan2.1 default (2), or pass order: 1");
    }
    const grid = unipcFlowGrid(steps, shift);
    this.steps = steps;
    this.shift = shift;
    this.order = order;
    this.sigmas = grid.sigmas;
    this.timesteps = grid.timesteps;
    this.lambdas = this.sigmas.map(lambda);
  }

  /** p_i = min(order, N − i, i + 1): warm-up at the start, lower_order_final at the end. */
  orderAt(i: number): number {
    return Math.min(this.order, this.steps - i, i + 1);
  }

  /** Forget the history; the next call must be step(0, ...). step(0, ...) also resets. */
  reset(): void {
    this.next = 0;
    this.prevOrder = 0;
  }

  /**
   * Advance from step i (steps must be taken in order 0, 1, ..., N−1; step 0 starts a new run).
   * Writes x_{i+1} into `out` when given (it may be `x` or `v` itself: each element is read before
   * it is written) and returns it; otherwise returns a new Float32Array. The history is kept in
   * internal buffers, so the caller may reuse or overwrite x and v after the call.
   */
  step(i: number, x: Float32Array, v: Float32Array, out?: Float32Array, hint?: StepHint): Float32Array {
    const y = checkStepArgs("unipc", this.steps, i, x, v, out);
    // a cached step's velocity is an approximation: optionally keep it out of the corrector of x_i
    // and/or out of the second-order predictor term (solver-aware reuse; docs/design/mixcache.md)
    const approx = hint?.approximate === true;
    const skipCorr = approx && (this.approx === "skip-corrector" || this.approx === "skip-corrector+order1");
    const firstOrder = approx && (this.approx === "order1" || this.approx === "skip-corrector+order1");
    const n = x.length;
    if (i === 0) {
      this.reset();
      if (this.last.length !== n) {
        this.last = new Float32Array(n);
        this.m1 = new Float32Array(n);
        this.m2 = new Float32Array(n);
      } else {
        this.m1.fill(0); // read with a zero coefficient at step 0; keep it finite
      }
    } else {
      if (i !== this.next) {
        throw new UsageError(`unipc.step: expected step ${this.next}, got ${i}`, "UniPC is multistep: call step(0..N-1) in order; step(0) starts over");
      }
      if (n !== this.last.length) {
        throw new UsageError(`unipc.step: latent has ${n} elements, earlier steps had ${this.last.length}`, "keep the latent shape fixed during a run");
      }
    }

    const S = this.sigmas;
    const L = this.lambdas;
    const sI = S[i];

    // Corrector (UniC, bh2) of order p_{i−1}, for i ≥ 1:
    //   x̃_i = (σ_i/σ_{i−1})·x̃_{i−1} − α_i·φ·m_{i−1} − α_i·B·(cD·(m_{i−2} − m_{i−1}) + cRho·(m_i − m_{i−1}))
    const hasCorr = i >= 1 && !skipCorr;
    let cL = 0, cPhi = 0, cK = 0, cD = 0, cRho = 0;
    if (hasCorr) {
      const p = this.prevOrder;
      const aI = 1 - sI;
      const h = L[i] - L[i - 1];
      const phi = Math.expm1(-h);
      const B = phi; // bh2 (bh1 would be −h)
      cL = sI / S[i - 1];
      cPhi = aI * phi;
      cK = aI * B;
      if (p === 1) {
        cRho = 0.5;
      } else {
        // Solve [[1, 1], [r, 1]]·ρ = [b1, b2] (general-order recursion of §4.4 with p = 2).
        const r = (L[i - 2] - L[i - 1]) / h;
        const g1 = phi / -h - 1;
        const g2 = g1 / -h - 0.5;
        const b1 = g1 / B;
        const b2 = (2 * g2) / B;
        const rho0 = (b1 - b2) / (1 - r);
        cD = rho0 / r; // D = (m_{i−2} − m_{i−1})/r
        cRho = b1 - rho0;
      }
    }

    // Predictor (UniP, bh2) of order p_i:
    //   x_{i+1} = (σ_{i+1}/σ_i)·x̃_i − α_{i+1}·φ·m_i − [p_i = 2]·α_{i+1}·B·½·(m_{i−1} − m_i)/r
    // written as pA·x̃_i + pM·m_i − pE·(m_{i−1} − m_i).
    const p = firstOrder ? 1 : this.orderAt(i);
    const sN = S[i + 1];
    let pA: number, pM: number, pE: number;
    if (sN === 0) {
      // Final step: h = ∞, φ = −1, so x_N = m_{N−1}. Set explicitly to avoid 0·∞ in unused terms.
      pA = 0;
      pM = 1;
      pE = 0;
    } else {
      const aN = 1 - sN;
      const h = L[i + 1] - L[i];
      const phi = Math.expm1(-h);
      const B = phi;
      pA = sN / sI;
      pM = -aN * phi;
      if (p === 2) {
        const r = (L[i - 1] - L[i]) / h;
        pE = (aN * B * 0.5) / r; // fixed ρ = ½ for order 2, no solve
      } else {
        pE = 0;
      }
    }

    const last = this.last;
    const m1 = this.m1; // m_{i−1}
    const m2 = this.m2; // m_{i−2}; overwritten with m_i below, then the two are swapped
    const f = Math.fround;
    if (hasCorr) {
      for (let j = 0; j < n; j++) {
        const m = f(x[j] - sI * v[j]);
        const a = m1[j];
        const xc = f(cL * last[j] - cPhi * a - cK * (cD * (m2[j] - a) + cRho * (m - a)));
        last[j] = xc;
        m2[j] = m;
        y[j] = pA * xc + pM * m - pE * (a - m);
      }
    } else {
      for (let j = 0; j < n; j++) {
        const xc = x[j];
        const m = f(xc - sI * v[j]);
        last[j] = xc;
        m2[j] = m;
        y[j] = pA * xc + pM * m - pE * (m1[j] - m);
      }
    }
    this.m1 = m2;
    this.m2 = m1;
    this.prevOrder = p;
    this.next = i + 1;
    return y;
  }
}
