import { loadModel } from "../models/load.ts";
import { evaluateModel } from "../bench/model-eval.ts";
import { helpText, parseArgs } from "./args.ts";
import { HELP_FLAG, JSON_FLAG, MODEL_FLAG, THREADS_FLAG } from "./common.ts";
import { ProgressBar } from "./progress.ts";
import type { Command } from "./main.ts";

const FLAGS = [
  MODEL_FLAG,
  { name: "prompts", type: "int" as const, placeholder: "N", doc: "number of evaluation prompts (default 24, a third held out)" },
  { name: "steps", type: "int" as const, placeholder: "N", doc: "sampler steps (default: the model's, 50)" },
  { name: "seed", type: "int" as const, placeholder: "N", doc: "noise seed (default 0)" },
  THREADS_FLAG,
  JSON_FLAG,
  HELP_FLAG,
];

export const evaluateCommand: Command = {
  name: "evaluate",
  summary: "adherence of a shapes model's uncached outputs; writes evaluation.json, samples.png and the model card",
  async run(argv) {
    const a = parseArgs("evaluate", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText("Usage: mixcache evaluate [--model DIR] [--prompts N] [--json]", this.summary, FLAGS));
      return 0;
    }
    const model = await loadModel(a.flags.model as string | undefined, { threads: a.flags.threads as number | undefined });
    const bar = new ProgressBar("evaluate");
    try {
      const ev = await evaluateModel(model, { n: a.flags.prompts as number | undefined, steps: a.flags.steps as number | undefined, seed: a.flags.seed as number | undefined, onStep: (d, t) => bar.update(d, t) });
      if (a.flags.json) process.stdout.write(JSON.stringify(ev) + "\n");
      else {
        const p = (x: number) => `${(100 * x).toFixed(0)}%`;
        process.stdout.write(
          `${ev.prompts} prompts (${ev.heldOut.n} held out), ${ev.settings.steps} steps, ${ev.wallS.toFixed(0)}s: colour ${p(ev.all.colour)}, shape ${p(ev.all.shape)}, motion ${p(ev.all.motion)}, background ${p(ev.all.background)} ` +
            `(held out: colour ${p(ev.heldOut.colour)}, shape ${p(ev.heldOut.shape)}, motion ${p(ev.heldOut.motion)}); targets ${ev.met ? "met" : "not met"}\n` +
            `  wrote ${model.dir}/evaluation.json, samples.png, README.md\n`,
        );
      }
      return 0;
    } finally {
      await model.release();
    }
  },
};
