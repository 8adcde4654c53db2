/**
 * `npm run bench:solver`: solver-aware reuse. A cached step hands UniPC an approximate velocity,
 * which by default enters the UniC corrector of x_i and the second-order predictor like a real
 * one. For every strategy at its default point (and planned MixCache / MixCache+ at 2x), this
 * runs each UniPC mode for approximate steps (schedulers/types.ts ApproxMode) on the model's
 * calibration prompts (the bench never uses them) and prints the mean PSNR to the uncached run.
 *
 * Options: --model NAME|DIR (default reference), --prompts N (default 4), --steps N (default 50),
 * --json FILE, --only LABEL (the points whose label starts with it).
 */
import { loadModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { makeCache } from "../src/cache/registry.ts";
import { defaultPrompts } from "../src/cache/calibrate/index.ts";
import { psnrFrameMean } from "../src/metrics/quality.ts";
import { APPROX_MODES, type ApproxMode } from "../src/schedulers/types.ts";
import { writeFileAtomic } from "../src/util/atomic.ts";

const args = process.argv.slice(2);
const opt = (name: string, d: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : d);
const modelName = opt("--model", "reference");
const nPrompts = Number(opt("--prompts", "4"));
const steps = Number(opt("--steps", "50"));
const jsonOut = args.includes("--json") ? opt("--json", "") : null;
const only = args.includes("--only") ? opt("--only", "") : null;

const POINTS: { label: string; name: string; options: Record<string, unknown> }[] = [
  { label: "teacache", name: "teacache", options: {} },
  { label: "magcache", name: "magcache", options: {} },
  { label: "easycache", name: "easycache", options: {} },
  { label: "fbcache", name: "fbcache", options: {} },
  { label: "fora", name: "fora", options: {} },
  { label: "taylorseer", name: "taylorseer", options: {} },
  { label: "pab", name: "pab", options: {} },
  { label: "mixcache", name: "mixcache", options: {} },
  { label: "mixcache planned 2x", name: "mixcache", options: { schedule: "planned", target_speedup: 2 } },
  { label: "mixcache+ planned 2x", name: "mixcache-plus", options: { schedule: "planned", target_speedup: 2 } },
];

const model = await loadModel(modelName);
if (!model.vocabPath) throw new Error(`model ${model.name} has no vocab.json: pass an embedded model`);
const prompts = defaultPrompts(model.vocabPath, nPrompts);
const refs = [];
for (const prompt of prompts) refs.push((await generate({ model, prompt, steps, seed: 0 })).video);

interface Row { label: string; speedup: number; psnr: Record<ApproxMode, number>; approxSteps: number }
const rows: Row[] = [];
for (const p of POINTS.filter((x) => only === null || x.label.startsWith(only))) {
  const psnr = {} as Record<ApproxMode, number>;
  let speedup = 0;
  let approxSteps = 0;
  for (const mode of APPROX_MODES) {
    let sum = 0;
    for (let k = 0; k < prompts.length; k++) {
      const r = await generate({ model, prompt: prompts[k], steps, seed: 0, approx: mode, cache: makeCache(p.name, p.options) });
      sum += Math.min(100, psnrFrameMean(r.video, refs[k]));
      if (mode === "keep") {
        speedup += r.stats.computeSpeedup / prompts.length;
        const full = r.stats.macsFull / r.stats.steps;
        approxSteps += r.stats.perStep.filter((s) => s.macs < full).length / prompts.length;
      }
    }
    psnr[mode] = sum / prompts.length;
  }
  rows.push({ label: p.label, speedup, psnr, approxSteps });
  const best = APPROX_MODES.reduce((a, b) => (psnr[b] > psnr[a] ? b : a));
  console.log(`${p.label.padEnd(22)} ${speedup.toFixed(2)}x  approx steps ${approxSteps.toFixed(1).padStart(4)}  ` + APPROX_MODES.map((m) => `${m} ${psnr[m].toFixed(2)}`).join("  ") + `  best: ${best}`);
}
await model.release();
if (jsonOut) writeFileAtomic(jsonOut, JSON.stringify({ model: model.name, steps, prompts, rows }, null, 2) + "\n");
