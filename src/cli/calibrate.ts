/**
 * `mixcache calibrate <method>`: run uncached generations, fit the method's calibration profile and
 * write it to the model's cache_profiles/ (or --out), where the strategy of the same name reads it.
 */
import { UsageError } from "../errors.ts";
import { inspectModel, loadModel } from "../models/load.ts";
import { CALIBRATORS, calibrate, calibratorNames, calibratorOptionList, defaultPrompts, findCalibrator } from "../cache/calibrate/index.ts";
import { parseKnobs } from "../cache/knobs.ts";
import { SAMPLER_NAMES, type SamplerName } from "../schedulers/types.ts";
import { validateShift, MAX_STEPS } from "../schedulers/sigmas.ts";
import { helpText, parseArgs, type FlagDef, type Command } from "./args.ts";
import { HELP_FLAG, JSON_FLAG, MODEL_FLAG, THREADS_FLAG, checkOutputDir, checkOutputFile } from "./common.ts";
import { ProgressBar, fmtTime } from "./progress.ts";

const FLAGS: FlagDef[] = [
  MODEL_FLAG,
  { name: "prompts", type: "int", placeholder: "N", min: 1, doc: "number of prompts built from the model's vocab.json (default: teacache 8, magcache 1)" },
  { name: "prompt", type: "list", placeholder: "TEXT", doc: "calibration prompt, repeatable (instead of --prompts)" },
  { name: "seeds", type: "int", placeholder: "N", min: 1, max: 1000, doc: "noise seeds 0..N-1 per prompt (default 1)" },
  { name: "steps", type: "int", placeholder: "N", min: 2, max: MAX_STEPS, doc: "sampler steps to calibrate at (default: the model's, 50)" },
  { name: "shift", type: "number", placeholder: "S", doc: "flow shift of the sigma schedule, > 0 (default: the model's)" },
  { name: "guidance", type: "number", placeholder: "G", min: 1, doc: "classifier-free guidance scale (default: the model's)" },
  { name: "sampler", type: "string", placeholder: SAMPLER_NAMES.join("|"), doc: "flow-matching sampler (default: the model's)" },
  { name: "opt", type: "list", placeholder: "K=V", doc: "method option, repeatable (teacache: proxy=temb|tproj, target=velocity|body|residual)" },
  { name: "out", type: "string", placeholder: "FILE", doc: "write the profile to this JSON file" },
  { name: "save", type: "bool", doc: "write it into the model folder (<model>/cache_profiles/<method>.json), where the strategy reads it" },
  THREADS_FLAG,
  JSON_FLAG,
  HELP_FLAG,
];

function parseOpts(opts: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = Object.create(null); // "__proto__" stays a key the strict parser refuses
  for (const kv of opts ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new UsageError(`--opt expects key=value, got "${kv}"`, "for example --opt proxy=tproj");
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

function methodsHelp(): string {
  const rows = Object.values(CALIBRATORS).map((c) => `  ${c.name.padEnd(10)} ${c.summary}\n  ${"".padEnd(10)} source: ${c.source}; options: ${calibratorOptionList(c)}`);
  return `\nMethods:\n${rows.join("\n")}\n`;
}

export const calibrateCommand: Command = {
  name: "calibrate",
  summary: "calibrate a cache method for a model (--save: the model's cache_profiles/<method>.json; --out FILE)",
  async run(argv) {
    const a = parseArgs("calibrate", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText(`Usage: mixcache calibrate <${calibratorNames().join("|")}> [options]`, this.summary, FLAGS) + methodsHelp());
      return 0;
    }
    if (a.positionals.length !== 1)
      throw new UsageError(`calibrate takes one method, got ${a.positionals.length}`, `mixcache calibrate <method>, with method one of: ${calibratorNames().join(", ")}`);
    const cal = findCalibrator(a.positionals[0]);
    const f = a.flags;
    const promptList = f.prompt as string[] | undefined;
    const nPrompts = f.prompts as number | undefined;
    if (promptList && nPrompts !== undefined) throw new UsageError("pass either --prompts N or --prompt TEXT, not both");
    const nSeeds = (f.seeds as number | undefined) ?? 1; // ranges of --prompts, --seeds, --steps: checked by parseArgs
    const steps = f.steps as number | undefined;
    if (f.shift !== undefined) validateShift(f.shift);
    if (f.sampler !== undefined && !SAMPLER_NAMES.includes(f.sampler as SamplerName))
      throw new UsageError(`--sampler ${f.sampler} is not supported`, `use one of: ${SAMPLER_NAMES.join(", ")}`);
    const options = parseOpts(f.opt as string[] | undefined);
    parseKnobs(`calibrate ${cal.name}`, cal.options, options); // strict, before the model loads

    const info = inspectModel(f.model as string | undefined);
    if (!info.hasTextEncoder)
      throw new UsageError(`model ${info.name} has no text encoder, so \`mixcache calibrate\` cannot encode prompts for it`, "calibrate through the API with precomputed text embeddings: calibrate(model, method, { textEmbeddings })");
    let prompts: string[];
    if (promptList) prompts = promptList;
    else {
      if (!info.vocabPath)
        throw new UsageError(`model ${info.name} has no vocab.json to build default calibration prompts from`, "pass calibration prompts with --prompt TEXT (repeatable)");
      prompts = defaultPrompts(info.vocabPath, nPrompts ?? cal.defaultPrompts);
    }
    const seeds = Array.from({ length: nSeeds }, (_, i) => i);
    if (f.out === undefined && !f.save) throw new UsageError("calibrate needs to know where to write the profile", `pass --save (into ${info.profilesDir}, where --cache ${cal.name} reads it) or --out FILE.json`);
    if (f.out !== undefined && f.save) throw new UsageError("pass either --save or --out FILE, not both");
    if (f.out !== undefined) checkOutputFile("--out", f.out as string, [".json"]);
    else checkOutputDir("the profile folder", info.profilesDir);

    const loadBar = new ProgressBar("loading  ");
    const model = await loadModel(info.dir, { threads: f.threads as number | undefined }, (d, t) => loadBar.update(d, t));
    const runs = prompts.length * seeds.length;
    const bar = new ProgressBar(`calibrate ${cal.name}`);
    const t0 = performance.now();
    try {
      const stepsUsed = steps ?? model.defaults.steps;
      const r = await calibrate(model, cal.name, {
        prompts, seeds, steps, shift: f.shift as number | undefined, guidance: f.guidance as number | undefined,
        sampler: f.sampler as SamplerName | undefined,
        onStep: (d, t) => bar.update(d, t, `run ${Math.min(runs, Math.floor((d - 1) / stepsUsed) + 1)}/${runs}`),
      }, { options, out: f.out as string | undefined });
      const wall = performance.now() - t0;
      if (f.json) {
        process.stdout.write(JSON.stringify({
          method: cal.name, model: model.name, path: r.path, prompts, seeds, runs, steps: r.profile.meta.steps,
          wall_ms: Math.round(wall), summary: r.summary, profile: r.profile,
        }) + "\n");
      } else {
        process.stdout.write(
          `${r.summary.join("\n")}\n` +
          `  ${runs} calibration input(s) (${prompts.length} prompt(s) x ${seeds.length} seed(s)) in ${fmtTime(wall / 1000)}\n` +
          `  wrote ${r.path}\n`,
        );
      }
      return 0;
    } finally {
      await model.release();
    }
  },
};
