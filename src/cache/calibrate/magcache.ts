/**
 * MagCache calibration (Ma et al., NeurIPS 2025; Zehong-Ma/MagCache, magcache_generate.py): run an
 * uncached generation and record, per CFG branch and step, the magnitude ratio of the body residual
 * r = h_L - h_0 to the previous step's:
 *
 *   gamma_i = mean over tokens of ||r_i[t]||_2 / ||r_{i-1}[t]||_2,   gamma_0 = 1
 *
 * as the authors do, together with the std over tokens of that per-token ratio and the mean token
 * cosine distance 1 - cos(r_i[t], r_{i-1}[t]) (their evidence that the residual direction is stable
 * while its magnitude decays smoothly). With several prompts or seeds the per-run curves are
 * averaged step by step. The authors calibrate with one prompt; that is the CLI default too.
 *
 * Without CFG (guidance 1) only the cond branch runs; its curve is then also stored for uncond.
 */
import { MixCacheError } from "../../errors.ts";
import type { LoadedModel } from "../../models/load.ts";
import type { Branch } from "../../pipeline/hooks.ts";
import type { ProfileMeta } from "../profiles.ts";
import { recordRuns, type CalibrationSettings, type StepRecord } from "./record.ts";

export interface MagCacheProfile {
  meta: ProfileMeta;
  /** gamma per step (meta.steps values), ratios[b][0] = 1. */
  ratios: { cond: number[]; uncond: number[] };
  /** std over tokens of the per-token norm ratio, per step (0 at step 0). */
  ratio_std?: { cond: number[]; uncond: number[] };
  /** mean token cosine distance of consecutive residuals, per step (0 at step 0). */
  cosine_dist?: { cond: number[]; uncond: number[] };
}

export type MagCacheCalibrationOptions = CalibrationSettings;

type Curves = { cond: number[]; uncond: number[] };

/** Average the per-run magnitude curves of recorded runs. */
function magnitudeCurves(records: readonly StepRecord[], steps: number): { ratios: Curves; ratio_std: Curves; cosine_dist: Curves; uncondFromCond: boolean } {
  const acc = (field: "ratio" | "ratioStd" | "cosineDist", first: number, b: Branch): number[] | null => {
    const sum = new Float64Array(steps), cnt = new Float64Array(steps);
    let any = false;
    for (const r of records) {
      if (r.branch !== b) continue;
      any = true;
      const v = r.magnitude[field];
      if (v === null || r.step >= steps) continue;
      sum[r.step] += v;
      cnt[r.step]++;
    }
    if (!any) return null;
    const out: number[] = [];
    for (let i = 0; i < steps; i++) {
      if (i === 0) out.push(first);
      else if (cnt[i] === 0) throw new MixCacheError("RUNTIME", `MagCache calibration: no ${b} record at step ${i}`);
      else out.push(sum[i] / cnt[i]);
    }
    return out;
  };
  const curve = (field: "ratio" | "ratioStd" | "cosineDist", first: number): { c: Curves; copied: boolean } => {
    const cond = acc(field, first, "cond");
    if (!cond) throw new MixCacheError("RUNTIME", "MagCache calibration: nothing was recorded");
    const uncond = acc(field, first, "uncond");
    return { c: { cond, uncond: uncond ?? [...cond] }, copied: !uncond };
  };
  const ratios = curve("ratio", 1);
  return { ratios: ratios.c, ratio_std: curve("ratioStd", 0).c, cosine_dist: curve("cosineDist", 0).c, uncondFromCond: ratios.copied };
}

export async function calibrateMagCache(model: LoadedModel, o: MagCacheCalibrationOptions): Promise<MagCacheProfile> {
  const { settings, recorder } = await recordRuns(model, o);
  const c = magnitudeCurves(recorder.records, settings.steps);
  for (const b of ["cond", "uncond"] as const)
    if (!c.ratios[b].every((v) => Number.isFinite(v) && v >= 0))
      throw new MixCacheError("RUNTIME", `MagCache calibration: non-finite magnitude ratio on the ${b} branch (a residual was all zeros)`, "check the model weights");
  const meta: ProfileMeta = {
    method: "magcache", model: model.name, steps: settings.steps, shift: settings.shift, sampler: settings.sampler,
    guidance: settings.guidance, prompts: settings.inputs.length, created: new Date().toISOString(),
  };
  return { meta, ratios: c.ratios, ratio_std: c.ratio_std, cosine_dist: c.cosine_dist };
}

function g(n: number): string {
  return Number(n.toPrecision(4)).toString();
}

/** Human-readable summary lines of a MagCache profile. */
export function summarizeMagCache(p: MagCacheProfile): string[] {
  const out = [`magcache: residual magnitude ratios at ${p.meta.steps} steps (${p.meta.prompts} prompt(s), shift ${p.meta.shift}, guidance ${p.meta.guidance}, ${p.meta.sampler})`];
  for (const b of ["cond", "uncond"] as const) {
    const r = p.ratios[b].slice(1);
    if (!r.length) continue;
    const mean = r.reduce((a, x) => a + x, 0) / r.length;
    const n = p.ratios[b].length;
    const pick = n <= 8 ? p.ratios[b].map((_, i) => i) : [0, 1, 2, Math.round(n / 4), Math.round(n / 2), Math.round((3 * n) / 4), n - 2, n - 1];
    out.push(`  ${b.padEnd(6)} gamma min ${g(Math.min(...r))}, mean ${g(mean)}, max ${g(Math.max(...r))}; curve ${[...new Set(pick)].map((i) => `${i}:${g(p.ratios[b][i])}`).join(" ")}`);
    const std = p.ratio_std?.[b].slice(1), cos = p.cosine_dist?.[b].slice(1);
    if (std && cos && std.length)
      out.push(`         token ratio std mean ${g(std.reduce((a, x) => a + x, 0) / std.length)}, cosine distance mean ${g(cos.reduce((a, x) => a + x, 0) / cos.length)}, max ${g(Math.max(...cos))}`);
  }
  if (p.meta.guidance <= 1) out.push("  no CFG during calibration: the uncond curve repeats the cond curve");
  return out;
}
