/**
 * `mixcache bench`: every cache method at its operating points on one model, in one process
 * (src/bench/runner.ts). Writes results.json / results.md / results.csv, per-prompt contact sheets
 * and a resumable journal into --out; a rerun into the same folder skips finished rows.
 */
import { resolveLatentShape } from "../pipeline/generate.ts";
import { join } from "node:path";
import { UsageError } from "../errors.ts";
import { inspectModel, loadModel } from "../models/load.ts";
import { strategyNames } from "../cache/registry.ts";
import { PRESETS, PRESET_NAMES, benchPrompts, resolveMethods, type PresetName } from "../bench/protocol.ts";
import { checkOracleModel, checkOraclePrompts, readOracle, type OracleFile } from "../bench/oracle.ts";
import { loadVocab } from "../data/shapes.ts";
import { runBench } from "../bench/runner.ts";
import type { SummaryRow } from "../bench/results.ts";
import { helpText, parseArgs, type FlagDef, type Command } from "./args.ts";
import { HELP_FLAG, JSON_FLAG, MODEL_FLAG, THREADS_FLAG, checkOutputDir } from "./common.ts";
import { SEED_MAX } from "../pipeline/noise.ts";
import { MAX_STEPS } from "../schedulers/sigmas.ts";
import { ProgressBar, fmtTime } from "./progress.ts";

const FLAGS: FlagDef[] = [
  { name: "preset", type: "string", placeholder: PRESET_NAMES.join("|"), doc: "prompt list and seeds (default quick: 2 prompts x 1 seed; full: 32 x 2)" },
  { name: "methods", type: "string", placeholder: "A,B,C", doc: "methods to bench, comma-separated (default: every registered one; none always runs)" },
  MODEL_FLAG,
  { name: "out", type: "string", placeholder: "DIR", doc: "output folder (default bench-out/<preset>); reruns resume from its journal" },
  { name: "steps", type: "int", placeholder: "N", min: 2, max: MAX_STEPS, doc: "sampler steps (default: the model's, 50)" },
  { name: "prompts", type: "int", placeholder: "N", min: 1, doc: "use the first N prompts of the preset's list" },
  { name: "prompt", type: "list", placeholder: "TEXT", doc: "explicit prompt instead of the preset's list, repeatable" },
  { name: "seeds", type: "string", placeholder: "A,B", doc: `seeds in 0..${SEED_MAX} instead of the preset's (full: 0,1); rows of other seeds in the journal stay valid` },
  { name: "fresh", type: "bool", doc: "ignore and delete the journal in --out: rerun every row" },
  { name: "oracle", type: "string", placeholder: "FILE", doc: "also run the schedules of an oracle file (`mixcache plan --on-bench N ... --out FILE`, e.g. docs/oracle/reference.json) as rows oracle-<set>@<target>x, on the prompts and seeds they were planned on" },
  { name: "frames", type: "int", placeholder: "N", min: 1, doc: "video frames (diffusers folders; default: the model's)" },
  { name: "height", type: "int", placeholder: "H", min: 1, doc: "video height in pixels (diffusers folders)" },
  { name: "width", type: "int", placeholder: "W", min: 1, doc: "video width in pixels (diffusers folders)" },
  THREADS_FLAG,
  JSON_FLAG,
  HELP_FLAG,
];

/** The fastest method point at a quality floor (oracle rows are a bound, not a method: left out). */
function bestAt(summary: SummaryRow[], floor: number): SummaryRow | undefined {
  return summary.filter((s) => s.method !== "none" && !s.oracle && s.psnrFrame !== null && s.psnrFrame >= floor).sort((a, b) => b.computeSpeedup - a.computeSpeedup)[0];
}

/** "0,1" -> [0, 1]; each a plain decimal integer in 0..2^32-1 (the noise seed range), no repeats. */
export function parseSeeds(text: string): number[] {
  const parts = text.split(",").map((x) => x.trim());
  const seeds = parts.map(Number);
  const bad = parts.filter((x, i) => !/^[0-9]+$/.test(x) || seeds[i] > SEED_MAX);
  if (bad.length) throw new UsageError(`--seeds ${text}: ${bad.map((b) => `"${b}"`).join(", ")} ${bad.length > 1 ? "are not integers" : "is not an integer"} in 0..${SEED_MAX}`, "pass comma-separated decimal integers, e.g. --seeds 0 or --seeds 0,1");
  if (new Set(seeds).size !== seeds.length) throw new UsageError(`--seeds ${text} lists a seed twice`, "list each seed once");
  return seeds;
}

export const benchCommand: Command = {
  name: "bench",
  summary: "benchmark every cache method at its operating points (speedup, PSNR, SSIM, adherence)",
  async run(argv) {
    const a = parseArgs("bench", argv, FLAGS);
    if (a.flags.help) {
      const presets = PRESET_NAMES.map((n) => `  ${n.padEnd(8)} ${PRESETS[n].summary}`).join("\n");
      process.stdout.write(helpText("Usage: mixcache bench [--preset quick|full] [--methods a,b,c] [options]", this.summary, FLAGS) + `\nPresets:\n${presets}\n\nMethods: ${strategyNames().join(", ")}\n`);
      return 0;
    }
    if (a.positionals.length) throw new UsageError(`bench takes no positional arguments, got "${a.positionals.join(" ")}"`, "quote prompts with --prompt TEXT");
    const f = a.flags;
    const preset = (f.preset as string | undefined) ?? "quick";
    if (!PRESET_NAMES.includes(preset as PresetName)) throw new UsageError(`--preset ${preset} is not a preset`, `use one of: ${PRESET_NAMES.join(", ")}`);
    let methods: string[] | undefined;
    if (f.methods !== undefined) {
      const list = (f.methods as string).split(",").map((s) => s.trim()).filter(Boolean);
      if (!list.length) throw new UsageError("--methods is empty", `valid methods: ${strategyNames().join(", ")}`);
      const bad = list.filter((m) => !strategyNames().includes(m));
      if (bad.length) throw new UsageError(`unknown method${bad.length > 1 ? "s" : ""} ${bad.map((b) => `"${b}"`).join(", ")} in --methods`, `valid methods: ${strategyNames().join(", ")}`);
      methods = resolveMethods(list);
    }
    const steps = f.steps as number | undefined; // ranges of --steps, --prompts, --threads: checked by parseArgs
    const nPrompts = f.prompts as number | undefined;
    const threads = f.threads as number | undefined;
    const seeds = f.seeds === undefined ? undefined : parseSeeds(f.seeds as string);
    const outDir = (f.out as string | undefined) ?? join("bench-out", preset);
    checkOutputDir("--out", outDir);

    // the oracle file, its model and step count, and (with the preset's prompts) its prompts: checked before anything loads
    const oracle: OracleFile | undefined = f.oracle === undefined ? undefined : readOracle(f.oracle as string);
    const info = inspectModel(f.model as string | undefined);
    if (oracle) {
      checkOracleModel(oracle, { name: info.name, steps: steps ?? info.defaults.steps, guidance: info.defaults.guidance, shift: info.defaults.shift, sampler: info.defaults.sampler });
      const explicit = f.prompt as string[] | undefined;
      const n = nPrompts ?? (explicit?.length ? explicit.length : PRESETS[preset as PresetName].prompts);
      const texts = explicit?.length ? explicit.slice(0, n) : info.vocabPath ? benchPrompts(loadVocab(info.vocabPath), n).map((x) => x.text) : null;
      if (texts) checkOraclePrompts(oracle, texts, seeds ?? PRESETS[preset as PresetName].seeds);
    }
    const sized = f.frames !== undefined || f.height !== undefined || f.width !== undefined;
    const shape = sized ? resolveLatentShape(info, { frames: f.frames as number | undefined, height: f.height as number | undefined, width: f.width as number | undefined }).shape : undefined;
    const loadBar = new ProgressBar("loading ");
    const model = await loadModel(info.dir, { threads }, (d, t) => loadBar.update(d, t));
    const bar = new ProgressBar("bench   ");
    try {
      const r = await runBench({
        model, outDir, preset: preset as PresetName, methods, steps, nPrompts, prompts: f.prompt as string[] | undefined,
        seeds, fresh: Boolean(f.fresh), threads, shape, oracle,
        onProgress: (d, t, label) => bar.update(d, Math.max(1, t), label),
      });
      bar.done();
      const res = r.results;
      const p = res.protocol;
      const best = bestAt(res.summary, 30);
      if (f.json) {
        process.stdout.write(JSON.stringify({
          out: outDir, files: r.files, rows_run: r.rowsRun, rows_reused: r.rowsReused, rows_total: res.session.rowsTotal,
          preset: p.preset, protocol: p.hash, points: p.points.length, prompts: p.prompts.length, seeds: p.seeds, steps: p.steps,
          wall_s: Number(res.session.wallS.toFixed(2)),
          summary: res.summary.map((s) => ({ point: s.point, method: s.method, default: s.default, ...(s.oracle ? { oracle: { set: s.oracle.set, target: s.oracle.target } } : {}), n: s.n, compute_speedup: s.computeSpeedup, wall_speedup: s.wallSpeedup, efficiency: s.efficiency, psnr_frame: s.psnrFrame, psnr_clip: s.psnrClip, ssim: s.ssim, adherence: s.adherence?.mean ?? null, adherence_ref: s.adherenceRef?.mean ?? null, cache_peak_bytes: s.cachePeakBytes })),
        }, (_k, x) => (typeof x === "number" && !Number.isFinite(x) ? null : x)) + "\n");
      } else {
        process.stdout.write(
          `bench ${p.preset}: ${p.points.length} points x ${p.prompts.length} prompts x ${p.seeds.length} seed(s), ${p.steps} steps = ${res.session.rowsTotal} rows ` +
            `(${r.rowsRun} run, ${r.rowsReused} resumed) in ${fmtTime(res.session.wallS)}` +
            (p.oracle ? ` (${p.points.filter((x) => x.oracle).length} of the points: oracle schedules of ${p.oracle.file}, on ${p.oracle.promptIndices.length} prompt(s) x ${p.oracle.runSeeds.length} seed(s))` : "") +
            (best ? `; fastest at PSNR >= 30 dB: ${best.tag} ${best.computeSpeedup.toFixed(2)}x compute, ${best.wallSpeedup.toFixed(2)}x wall, ${best.psnrFrame!.toFixed(1)} dB` : "; no point reaches PSNR 30 dB") +
            `\n  wrote ${r.files.json}, ${r.files.md}, ${r.files.csv}, ${r.files.sheets.length} contact sheet(s) in ${join(outDir, "frames")}, journal ${r.files.journal}\n`,
        );
        for (const w of res.session.warnings) process.stderr.write(`warning: ${w}\n`);
      }
      return 0;
    } finally {
      await model.release();
    }
  },
};
