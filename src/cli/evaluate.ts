import { UsageError } from "../errors.ts";
import { inspectModel, loadModel } from "../models/load.ts";
import { evaluateModel, evaluationPrompts } from "../bench/model-eval.ts";
import { loadVocab } from "../data/shapes.ts";
import { MAX_STEPS } from "../schedulers/sigmas.ts";
import { helpText, parseArgs, type Command } from "./args.ts";
import { HELP_FLAG, JSON_FLAG, MODEL_FLAG, THREADS_FLAG, checkOutputDir, noPositionals } from "./common.ts";
import { SEED_MAX } from "../pipeline/noise.ts";
import { ProgressBar } from "./progress.ts";

const FLAGS = [
  MODEL_FLAG,
  { name: "prompts", type: "int" as const, placeholder: "N", min: 1, doc: "number of evaluation prompts, at most the vocabulary's combinations (default 24, a third held out)" },
  { name: "steps", type: "int" as const, placeholder: "N", min: 1, max: MAX_STEPS, doc: "sampler steps (default: the model's, 50)" },
  { name: "seed", type: "int" as const, placeholder: "N", min: 0, max: SEED_MAX, doc: "noise seed (default 0)" },
  { name: "out", type: "string" as const, placeholder: "DIR", doc: "write evaluation.json, samples.png and the model card (README.md) into this folder" },
  { name: "save", type: "bool" as const, doc: "write them into the model folder (updates the shipped model card)" },
  THREADS_FLAG,
  JSON_FLAG,
  HELP_FLAG,
];

export const evaluateCommand: Command = {
  name: "evaluate",
  summary: "adherence of an embedded model's uncached outputs (--save / --out DIR: evaluation.json, samples.png, model card)",
  async run(argv) {
    const a = parseArgs("evaluate", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText("Usage: mixcache evaluate [--model NAME|DIR] [--prompts N] [--save | --out DIR] [--json]", this.summary, FLAGS) + "\nPrints the adherence; writes evaluation.json, samples.png and README.md only with --save (the model folder) or --out DIR.\n");
      return 0;
    }
    noPositionals("evaluate", a.positionals, "mixcache evaluate [--model NAME|DIR] [--prompts N] [--save | --out DIR] [--json]");
    if (a.flags.save && a.flags.out !== undefined) throw new UsageError("pass either --save or --out DIR, not both");
    // checked before the weights load: the vocabulary, the prompt count, the folder it writes into
    const info = inspectModel(a.flags.model as string | undefined);
    if (!info.vocabPath) throw new UsageError(`model ${info.name} has no vocab.json: adherence needs its dataset vocabulary`, "evaluate an embedded model (reference or textures)");
    evaluationPrompts(loadVocab(info.vocabPath), (a.flags.prompts as number | undefined) ?? 24);
    const outDir = a.flags.save ? info.dir : (a.flags.out as string | undefined);
    if (outDir !== undefined) checkOutputDir(a.flags.save ? "--save (the model folder)" : "--out", outDir);
    const model = await loadModel(info.dir, { threads: a.flags.threads as number | undefined });
    const bar = new ProgressBar("evaluate");
    try {
      const ev = await evaluateModel(model, { n: a.flags.prompts as number | undefined, steps: a.flags.steps as number | undefined, seed: a.flags.seed as number | undefined, outDir, onStep: (d, t) => bar.update(d, t) });
      if (a.flags.json) process.stdout.write(JSON.stringify(ev) + "\n");
      else {
        const p = (x: number) => `${(100 * x).toFixed(0)}%`;
        const tex = ev.all.texture !== undefined ? `, pattern ${p(ev.all.pattern ?? 0)}, texture ${p(ev.all.texture)}, quality ${(ev.all.quality ?? 0).toFixed(2)}` : "";
        process.stdout.write(
          `${ev.prompts} prompts (${ev.heldOut.n} held out), ${ev.settings.steps} steps, ${ev.wallS.toFixed(0)}s: colour ${p(ev.all.colour)}, shape ${p(ev.all.shape)}, motion ${p(ev.all.motion)}, background ${p(ev.all.background)}${tex} ` +
            `(held out: colour ${p(ev.heldOut.colour)}, shape ${p(ev.heldOut.shape)}, motion ${p(ev.heldOut.motion)}); targets ${ev.met ? "met" : "not met"}\n` +
            (outDir !== undefined ? `  wrote ${outDir}/evaluation.json, samples.png, README.md\n` : "  (nothing written: --save updates the model folder, --out DIR writes elsewhere)\n"),
        );
      }
      return 0;
    } finally {
      await model.release();
    }
  },
};
