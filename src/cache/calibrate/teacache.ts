/**
 * TeaCache calibration, by the procedure the TeaCache maintainer describes (ali-vilab/TeaCache#2):
 * generate uncached videos for a set of prompts, record at every step (all steps, every forward
 * call, i.e. both CFG branches of Wan) the relative L1 change of the proxy (x) and of the model
 * output (y) from the previous step, and fit `np.polyfit(x, y, 4)`.
 *
 * Which "output": TeaCache's y is the rel-L1 of the transformer's output, the final prediction the
 * forward returns (after the output head, before CFG combines the branches). In this runtime that is
 * the branch velocity, so y defaults to `velocity`. The body output h_L (before the head) and the
 * body residual h_L - h_0 are recorded too and selectable (`target`), for experiments; the profile
 * records which one was used.
 *
 * x: proxy `temb` (the time embedding, TeaCache's non-ret mode `e`) or `tproj` (the 6-way
 * modulation, ret mode `e0`). Both depend only on the timestep, so all prompts and seeds share the
 * same x values at a step; the fit needs more distinct x values (steps - 1) than the degree.
 */
import { MixCacheError } from "../../errors.ts";
import type { LoadedModel } from "../../models/load.ts";
import { polyfit, polyval } from "../../tensor/polyfit.ts";
import type { TeaCacheProfile } from "../strategies/teacache.ts";
import type { ProfileMeta } from "../profiles.ts";
import { recordRuns, type CalibrationSettings, type StepRecord } from "./record.ts";

export type TeaCacheProxy = "temb" | "tproj";
export type TeaCacheTarget = "velocity" | "body" | "residual";

/** Degree of the rescaling polynomial (TeaCache: 4). */
const TEACACHE_DEGREE = 4;

export interface TeaCacheCalibrationOptions extends CalibrationSettings {
  proxy?: TeaCacheProxy;
  /** What y measures (default velocity = the transformer output, as TeaCache). */
  target?: TeaCacheTarget;
}

/** The profile the strategy reads, plus diagnostics (the strategy ignores the extra fields). */
export interface TeaCacheCalibratedProfile extends TeaCacheProfile {
  proxy: TeaCacheProxy;
  target: TeaCacheTarget;
  /** Fitted (x, y) pairs. */
  points: number;
  x_range: [number, number];
  y_range: [number, number];
  /** Per step (1..steps-1): proxy rel-L1 and the mean output rel-L1 over runs and branches. */
  curve: { step: number; x: number; y: number }[];
}

export interface PolyFit {
  coefficients: number[];
  r2: number;
}

/** Coefficient of determination of a polynomial on (x, y): 1 - SS_res / SS_tot. */
export function rSquared(coef: readonly number[], x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += y[i];
  mean /= Math.max(1, n);
  let res = 0, tot = 0;
  for (let i = 0; i < n; i++) {
    res += (y[i] - polyval(coef, x[i])) ** 2;
    tot += (y[i] - mean) ** 2;
  }
  if (tot === 0) return res === 0 ? 1 : 0;
  return 1 - res / tot;
}

/** Degree-`deg` least-squares fit y ~ f(x) with R^2 (numpy.polyfit convention: highest power first). */
export function fitRescale(x: ArrayLike<number>, y: ArrayLike<number>, deg = TEACACHE_DEGREE): PolyFit {
  if (x.length !== y.length) throw new RangeError(`fitRescale: ${x.length} x values but ${y.length} y values`);
  const distinct = new Set(Array.from(x)).size;
  if (distinct <= deg)
    throw new MixCacheError("USAGE", `a degree-${deg} fit needs more than ${deg} distinct proxy distances, got ${distinct}`, `calibrate with at least ${deg + 2} steps`);
  const coefficients = polyfit(x, y, deg);
  return { coefficients, r2: rSquared(coefficients, x, y) };
}

/** The (x, y) pairs of recorded runs: every step after the first, every branch. */
function teacachePoints(records: readonly StepRecord[], proxy: TeaCacheProxy, target: TeaCacheTarget): { x: number[]; y: number[]; steps: number[]; dropped: number } {
  const x: number[] = [], y: number[] = [], steps: number[] = [];
  let dropped = 0;
  for (const r of records) {
    const px = r.proxy[proxy], py = r.out[target];
    if (px === null || py === null) continue;
    if (!Number.isFinite(px) || !Number.isFinite(py)) {
      dropped++;
      continue;
    }
    x.push(px);
    y.push(py);
    steps.push(r.step);
  }
  return { x, y, steps, dropped };
}

export async function calibrateTeaCache(model: LoadedModel, o: TeaCacheCalibrationOptions): Promise<TeaCacheCalibratedProfile> {
  const proxy = o.proxy ?? "temb";
  const target = o.target ?? "velocity";
  if (proxy !== "temb" && proxy !== "tproj") throw new MixCacheError("USAGE", `TeaCache proxy must be temb or tproj, got ${String(proxy)}`);
  if (!["velocity", "body", "residual"].includes(target)) throw new MixCacheError("USAGE", `TeaCache target must be velocity, body or residual, got ${String(target)}`);
  const steps = o.steps ?? model.defaults.steps;
  if (steps < TEACACHE_DEGREE + 2)
    throw new MixCacheError("USAGE", `TeaCache calibration needs at least ${TEACACHE_DEGREE + 2} steps for a degree-${TEACACHE_DEGREE} fit, got ${steps}`);
  const { settings, recorder } = await recordRuns(model, o);
  const pts = teacachePoints(recorder.records, proxy, target);
  if (pts.dropped) throw new MixCacheError("RUNTIME", `TeaCache calibration: ${pts.dropped} non-finite distances (a proxy or output was all zeros)`, "check the model weights");
  const fit = fitRescale(pts.x, pts.y);
  const byStep = new Map<number, { x: number; ys: number[] }>();
  pts.steps.forEach((s, i) => {
    const e = byStep.get(s) ?? { x: pts.x[i], ys: [] };
    e.ys.push(pts.y[i]);
    byStep.set(s, e);
  });
  const curve = [...byStep.entries()].sort((a, b) => a[0] - b[0]).map(([step, e]) => ({ step, x: e.x, y: e.ys.reduce((a, b) => a + b, 0) / e.ys.length }));
  const meta: ProfileMeta = {
    method: "teacache", model: model.name, steps: settings.steps, shift: settings.shift, sampler: settings.sampler,
    guidance: settings.guidance, prompts: settings.inputs.length, created: new Date().toISOString(),
  };
  return {
    meta, proxy, coefficients: fit.coefficients, r2: fit.r2, target,
    points: pts.x.length,
    x_range: [Math.min(...pts.x), Math.max(...pts.x)],
    y_range: [Math.min(...pts.y), Math.max(...pts.y)],
    curve,
  };
}

function g(n: number): string {
  return Number(n.toPrecision(6)).toString();
}

/** Human-readable summary lines of a TeaCache profile. */
export function summarizeTeaCache(p: TeaCacheProfile & Partial<TeaCacheCalibratedProfile>): string[] {
  const deg = p.coefficients.length - 1;
  const terms = p.coefficients.map((c, i) => {
    const pw = deg - i;
    return `${g(c)}${pw > 1 ? ` x^${pw}` : pw === 1 ? " x" : ""}`;
  });
  const out = [
    `teacache: f(x) = ${terms.join(" + ").replace(/\+ -/g, "- ")}`,
    `  x = rel-L1 of proxy ${p.proxy}${p.target ? `, y = rel-L1 of ${p.target === "velocity" ? "the transformer output (branch velocity)" : p.target === "body" ? "the body output h_L" : "the body residual"}` : ""}`,
    `  R^2 = ${p.r2.toFixed(4)}${p.points !== undefined ? ` on ${p.points} points` : ""} (${p.meta.prompts} prompt(s), ${p.meta.steps} steps, shift ${p.meta.shift}, guidance ${p.meta.guidance}, ${p.meta.sampler})`,
  ];
  if (p.x_range && p.y_range) out.push(`  x in [${g(p.x_range[0])}, ${g(p.x_range[1])}], y in [${g(p.y_range[0])}, ${g(p.y_range[1])}]`);
  if (p.curve && p.curve.length) {
    const pick = p.curve.length <= 6 ? p.curve : [0, 0.25, 0.5, 0.75, 1].map((q) => p.curve![Math.round(q * (p.curve!.length - 1))]);
    out.push(`  step: x -> y (fit): ${pick.map((c) => `${c.step}: ${g(c.x)} -> ${g(c.y)} (${g(polyval(p.coefficients, c.x))})`).join(", ")}`);
  }
  if (p.r2 < 0.5) out.push("  warning: the fit explains little of the output change (R^2 < 0.5); more steps or prompts may help");
  return out;
}
