/**
 * Every calibrator, by method name: adding one (e.g. `mixcache`) is a file here plus one entry in
 * CALIBRATORS. A calibrator runs uncached generations under the recorder (record.ts), reduces the
 * records to a profile and describes it in a few summary lines; `calibrate()` writes the profile
 * atomically to the model's cache_profiles/<method>.json, where the strategy of the same name
 * reads it.
 */
import { UsageError, closest } from "../../errors.ts";
import type { LoadedModel } from "../../models/load.ts";
import { allCombos, caption, loadVocab, type Attrs } from "../../data/shapes.ts";
import { writeFileAtomic } from "../../util/atomic.ts";
import { knobList, parseKnobs, type KnobConfig, type KnobDef, type KnobValue } from "../knobs.ts";
import { writeProfile, type ProfileMeta } from "../profiles.ts";
import type { CalibrationSettings } from "./record.ts";
import { calibrateTeaCache, summarizeTeaCache } from "./teacache.ts";
import { calibrateMagCache, summarizeMagCache } from "./magcache.ts";
import { calibrateMixCache, summarizeMixCache } from "./mixcache.ts";

export interface CalibrationResult {
  profile: { meta: ProfileMeta };
  /** Human-readable lines: the fit / curve statistics. */
  summary: string[];
}

export interface Calibrator {
  name: string;
  summary: string;
  /** Paper / code the procedure follows. */
  source: string;
  /** Prompts the CLI builds from the model's vocabulary when none are given. */
  defaultPrompts: number;
  /** Method-specific options (`--opt key=value`), validated like strategy knobs. */
  options: readonly KnobDef[];
  run(model: LoadedModel, settings: CalibrationSettings, options: Record<string, KnobValue>): Promise<CalibrationResult>;
}

/** Declare a calibrator: `run` sees its options typed from their definitions (like defineStrategy). */
function defineCalibrator<const D extends readonly KnobDef[]>(
  c: Omit<Calibrator, "options" | "run"> & { options: D; run(model: LoadedModel, settings: CalibrationSettings, options: KnobConfig<D>): Promise<CalibrationResult> },
): Calibrator {
  // calibrate() hands run() only what parseKnobs made of these same options
  return { ...c, run: (model, settings, options) => c.run(model, settings, options as KnobConfig<D>) };
}

const teacacheCalibrator = defineCalibrator({
  name: "teacache",
  summary: "fit TeaCache's degree-4 rescaling polynomial: output rel-L1 against proxy rel-L1 over all steps",
  source: "ali-vilab/TeaCache#2 (np.polyfit(x, y, 4) over all steps of 70 T2V-CompBench prompts)",
  defaultPrompts: 8,
  options: [
    { name: "proxy", type: "enum", default: "temb", values: ["temb", "tproj"], doc: "proxy: temb (non-ret mode) or tproj (use_ret_steps mode); must match the strategy's proxy", source: "teacache_generate.py" },
    { name: "target", type: "enum", default: "velocity", values: ["velocity", "body", "residual"], doc: "y: rel-L1 of the transformer output (velocity, as TeaCache), the body output or the body residual" },
  ],
  async run(model, settings, opts) {
    const profile = await calibrateTeaCache(model, { ...settings, proxy: opts.proxy, target: opts.target });
    return { profile, summary: summarizeTeaCache(profile) };
  },
});

const magcacheCalibrator = defineCalibrator({
  name: "magcache",
  summary: "record MagCache's per-step residual magnitude ratios (with token std and cosine distance)",
  source: "Ma et al., NeurIPS 2025 (Zehong-Ma/MagCache: one calibration prompt)",
  defaultPrompts: 1,
  options: [],
  async run(model, settings) {
    const profile = await calibrateMagCache(model, settings);
    return { profile, summary: summarizeMagCache(profile) };
  },
});

const mixcacheCalibrator = defineCalibrator({
  name: "mixcache",
  summary: "impact factors I_t(psi) for step / cfg / block caching by one-step-reuse perturbation (mode=gaussian: the paper's noise), plus per-step change rates",
  source: "MixCache (arXiv 2508.12691) accuracy-impact analysis; design: docs/design/mixcache.md section 4",
  defaultPrompts: 2,
  options: [
    { name: "grid", type: "int", default: 10, min: 2, max: 1000, doc: "steps perturbed (evenly spread, first and last included)" },
    { name: "mode", type: "enum", default: "reuse", values: ["reuse", "gaussian"], doc: "perturbation: the value one step earlier (reuse) or Gaussian noise of size eps (the paper's)" },
    { name: "eps", type: "number", default: 0.05, min: 1e-6, max: 10, doc: "relative noise magnitude (gaussian mode)" },
    { name: "fn", type: "int", default: 1, min: 0, max: 1000, doc: "front compute blocks of the block granularity (match the strategy)" },
    { name: "bn", type: "int", default: 1, min: 0, max: 1000, doc: "back compute blocks of the block granularity (match the strategy)" },
  ],
  async run(model, settings, opts) {
    const profile = await calibrateMixCache(model, { ...settings, grid: opts.grid, mode: opts.mode, eps: opts.eps, fn: opts.fn, bn: opts.bn });
    return { profile, summary: summarizeMixCache(profile) };
  },
});

export const CALIBRATORS: Record<string, Calibrator> = {
  teacache: teacacheCalibrator,
  magcache: magcacheCalibrator,
  mixcache: mixcacheCalibrator,
};

export function calibratorNames(): string[] {
  return Object.keys(CALIBRATORS);
}

export function findCalibrator(name: string): Calibrator {
  const c = Object.prototype.hasOwnProperty.call(CALIBRATORS, name) ? CALIBRATORS[name] : undefined;
  if (!c) {
    const names = calibratorNames();
    throw new UsageError(`unknown calibration method "${name}" (did you mean ${closest(name, names, 1)[0]}?)`, `valid methods: ${names.join(", ")}`);
  }
  return c;
}

export interface CalibrateOptions {
  /** Method options (see Calibrator.options). */
  options?: Record<string, unknown>;
  /** Write here instead of <model>/cache_profiles/<method>.json. */
  out?: string;
  /** Do not write the profile. */
  dryRun?: boolean;
}

/** Run a calibrator and write its profile (atomically). Returns the profile, summary and path. */
export async function calibrate(model: LoadedModel, method: string, settings: CalibrationSettings, o: CalibrateOptions = {}): Promise<CalibrationResult & { path: string | null }> {
  const c = findCalibrator(method);
  const opts = parseKnobs(`calibrate ${method}`, c.options, o.options ?? {});
  const r = await c.run(model, settings, opts);
  let path: string | null = null;
  if (!o.dryRun) {
    if (o.out) {
      writeFileAtomic(o.out, JSON.stringify(r.profile, null, 1) + "\n");
      path = o.out;
    } else path = writeProfile(model.profilesDir, c.name, r.profile);
  }
  return { ...r, path };
}

/** `key=value` list of a calibrator's options, for help texts. */
export function calibratorOptionList(c: Calibrator): string {
  return knobList(c.options);
}

/**
 * A deterministic list of n captions from a dataset vocabulary (vocab.json), cycling every
 * attribute independently so that the first few prompts already cover each shape, colour, size,
 * motion, background (and pattern).
 */
export function defaultPrompts(vocabPath: string, n: number): string[] {
  const v = loadVocab(vocabPath);
  const shapes = v.shapes, colours = Object.keys(v.colours), sizes = Object.keys(v.sizes), motions = Object.keys(v.motions), backgrounds = Object.keys(v.backgrounds);
  const out: string[] = [];
  const seen = new Set<string>();
  for (let k = 0; out.length < n && k < n * 4; k++) {
    // offsets decorrelate attributes whose counts share factors (sizes 2 and motions 4)
    const a: Attrs = {
      shape: shapes[k % shapes.length],
      colour: colours[k % colours.length],
      size: sizes[(k + Math.floor(k / sizes.length)) % sizes.length],
      motion: motions[(k + Math.floor(k / motions.length)) % motions.length],
      background: backgrounds[(k + Math.floor(k / backgrounds.length)) % backgrounds.length],
    };
    // textures vocabulary: the surface pattern cycles too
    if (v.patterns?.length) a.pattern = v.patterns[(k + 2 * Math.floor(k / v.patterns.length)) % v.patterns.length];
    const c = caption(v, a);
    if (!seen.has(c)) {
      seen.add(c);
      out.push(c);
    }
  }
  // past the cycle: every remaining combination, in a fixed stride order (stride coprime with N)
  const all = allCombos(v);
  const N = all.length;
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  let stride = Math.max(1, Math.floor(N / 3) + 1);
  while (gcd(stride, N) !== 1) stride++;
  for (let j = 0; out.length < n && j < N; j++) {
    const c = caption(v, all[(j * stride) % N]);
    if (!seen.has(c)) {
      seen.add(c);
      out.push(c);
    }
  }
  if (out.length < n) throw new UsageError(`the vocabulary ${vocabPath} has only ${out.length} distinct captions, ${n} prompts were asked for`, "ask for fewer prompts or pass --prompt TEXT (repeatable)");
  return out;
}
