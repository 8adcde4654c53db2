/**
 * `mixcache plan`: plan static hybrid MixCache schedules for a model (src/cache/plan/plan.ts) on
 * calibration prompts the bench never uses, one per target speed, and store them with their
 * provenance in cache_profiles/mixcache-plans.json (--save) or a file (--out), where
 * `--cache mixcache --cache-opt schedule=planned` finds them.
 */
import { existsSync } from "node:fs";
import { UsageError } from "../errors.ts";
import { inspectModel, loadModel } from "../models/load.ts";
import { defaultPrompts } from "../cache/calibrate/index.ts";
import { readProfile, profilePath } from "../cache/profiles.ts";
import { planSchedules, describePlan } from "../cache/plan/plan.ts";
import type { PlanProfile, PlannedSchedule, SpeedChoice } from "../cache/strategies/mixcache.ts";
import { DEFAULT_SOLVER } from "../cache/strategy.ts";
import { GRANULARITIES, type Gran } from "../cache/strategies/mixcache-decision.ts";
import { benchPrompts } from "../bench/protocol.ts";
import { loadVocab } from "../data/shapes.ts";
import { MAX_STEPS } from "../schedulers/sigmas.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { helpText, parseArgs, type FlagDef, type Command } from "./args.ts";
import { HELP_FLAG, JSON_FLAG, MODEL_FLAG, THREADS_FLAG, checkOutputDir, checkOutputFile } from "./common.ts";
import { ProgressBar, fmtTime } from "./progress.ts";

const FLAGS: FlagDef[] = [
  MODEL_FLAG,
  { name: "steps", type: "int", placeholder: "N", min: 4, max: MAX_STEPS, doc: "sampler steps to plan for (default: the model's, 50)" },
  { name: "targets", type: "string", placeholder: "S,S,...", doc: "compute speedups to plan for, each in (1, 20] (default 1.5,2,3,4)" },
  { name: "sets", type: "string", placeholder: "hybrid,step,cfg,block", doc: "granularity sets to plan: the hybrid and/or single granularities (default hybrid)" },
  { name: "prompts", type: "int", placeholder: "N", min: 1, max: 64, doc: "planning prompts from the model's vocab.json, none of them a bench prompt (default 2)" },
  { name: "prompt", type: "list", placeholder: "TEXT", doc: "planning prompt, repeatable (instead of --prompts)" },
  { name: "on-bench", type: "int", placeholder: "N", min: 1, max: 64, doc: "plan on the first N bench prompts themselves: the oracle bound of a static schedule there; the search also starts from the model's stored schedules (only with --out; never stored in the model)" },
  { name: "seeds", type: "int", placeholder: "N", min: 1, max: 16, doc: "noise seeds 0..N-1 per prompt (default 1)" },
  { name: "search", type: "int", placeholder: "N", min: 1, max: 1000, doc: "real runs of the local search per schedule, the DP schedule included (default 12)" },
  { name: "max-run", type: "int", placeholder: "N", min: 1, max: 50, doc: "longest run of cached steps (default 6, MixCache's interval_cap)" },
  { name: "warmup", type: "number", placeholder: "F", min: 0, max: 1, doc: "first steps always computed, as a fraction of the steps (default 0.06; at least 1 step)" },
  { name: "fn", type: "int", placeholder: "N", min: 0, max: 1000, doc: "front blocks computed under block caching (default 1)" },
  { name: "bn", type: "int", placeholder: "N", min: 0, max: 1000, doc: "back blocks computed under block caching (default 1)" },
  { name: "out", type: "string", placeholder: "FILE", doc: "write the schedules to this JSON file" },
  { name: "save", type: "bool", doc: "write them into the model's cache_profiles/mixcache-plans.json (merged with the ones stored)" },
  THREADS_FLAG,
  JSON_FLAG,
  HELP_FLAG,
];

function parseTargets(text: string | undefined): number[] {
  if (text === undefined) return [1.5, 2, 3, 4];
  const out = text.split(",").map((s) => s.trim());
  const nums = out.map((s) => (/^[0-9]+(\.[0-9]+)?$/.test(s) ? Number(s) : NaN));
  for (let k = 0; k < nums.length; k++)
    if (!(nums[k] > 1 && nums[k] <= 20)) throw new UsageError(`--targets: "${out[k]}" is not a speedup in (1, 20]`, "pass e.g. --targets 1.5,2,3");
  return [...new Set(nums)];
}

function parseSets(text: string | undefined): Array<"hybrid" | Gran> {
  if (text === undefined) return ["hybrid"];
  const valid = ["hybrid", ...GRANULARITIES];
  const out = text.split(",").map((s) => s.trim());
  for (const s of out) if (!valid.includes(s)) throw new UsageError(`--sets: "${s}" is not a granularity set`, `use a comma list of ${valid.join(", ")}`);
  return [...new Set(out)] as Array<"hybrid" | Gran>;
}

export const planCommand: Command = {
  name: "plan",
  summary: "plan MixCache schedules per target speed for a model (schedule=planned follows them)",
  async run(argv) {
    const a = parseArgs("plan", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText("Usage: mixcache plan [--model NAME|DIR] [--targets 1.5,2,3,4] (--save | --out FILE)", this.summary, FLAGS));
      return 0;
    }
    if (a.positionals.length) throw new UsageError(`plan takes no positional arguments, got ${a.positionals.map((p) => JSON.stringify(p)).join(" ")}`, "usage: mixcache plan [--model NAME|DIR] [--targets 1.5,2,3,4] (--save | --out FILE)");
    const f = a.flags;
    const targets = parseTargets(f.targets as string | undefined);
    const sets = parseSets(f.sets as string | undefined);
    if (f.out === undefined && !f.save) throw new UsageError("plan needs to know where to write the schedules", "pass --save (into the model's cache_profiles/) or --out FILE.json");
    if (f.out !== undefined && f.save) throw new UsageError("pass either --save or --out FILE, not both");
    if ([f.prompt, f.prompts, f["on-bench"]].filter((x) => x !== undefined).length > 1) throw new UsageError("pass one of --prompts N, --prompt TEXT, --on-bench N");
    if (f["on-bench"] !== undefined && f.save) throw new UsageError("--on-bench plans on the bench's own prompts (the oracle bound); it is never stored in the model", "write it with --out FILE");
    const info = inspectModel(f.model as string | undefined);
    if (!info.hasTextEncoder) throw new UsageError(`model ${info.name} has no text encoder, so \`mixcache plan\` cannot encode prompts for it`, "plan through the API (planSchedules) with a model that has one");
    let prompts = f.prompt as string[] | undefined;
    if (f["on-bench"] !== undefined) {
      if (!info.vocabPath) throw new UsageError(`model ${info.name} has no vocab.json, so it has no bench prompts`, "pass --prompt TEXT (repeatable)");
      prompts = benchPrompts(loadVocab(info.vocabPath), f["on-bench"] as number).map((p) => p.text);
    } else if (!prompts) {
      if (!info.vocabPath) throw new UsageError(`model ${info.name} has no vocab.json to build planning prompts from`, "pass planning prompts with --prompt TEXT (repeatable)");
      const bench = new Set(benchPrompts(loadVocab(info.vocabPath), 32).map((p) => p.text));
      prompts = defaultPrompts(info.vocabPath, 96).filter((p) => !bench.has(p)).slice(0, (f.prompts as number | undefined) ?? 2);
    }
    const out = f.save ? profilePath(info.profilesDir, "mixcache-plans") : (f.out as string);
    if (f.save) checkOutputDir("the profile folder", info.profilesDir);
    else checkOutputFile("--out", out, [".json"]);
    const seeds = Array.from({ length: (f.seeds as number | undefined) ?? 1 }, (_, i) => i);

    const loadBar = new ProgressBar("loading  ");
    const model = await loadModel(info.dir, { threads: f.threads as number | undefined }, (d, t) => loadBar.update(d, t));
    try {
      const steps = (f.steps as number | undefined) ?? model.defaults.steps;
      const bars = new Map<string, ProgressBar>();
      // the oracle search also starts from the schedules stored in the model (planned on the
      // calibration prompts), so the bound is never below what the stored plans reach there
      const stored = f["on-bench"] !== undefined ? readProfile<PlanProfile>(info.profilesDir, "mixcache-plans") : null;
      const starts = (target: number) => (stored?.schedules ?? []).filter((x) => x.steps === steps && x.target === target).map((x) => x.plan);
      const r = await planSchedules({
        starts,
        model, prompts, seeds, steps, targets, sets,
        fn: f.fn as number | undefined, bn: f.bn as number | undefined, maxRun: f["max-run"] as number | undefined,
        searchEvals: f.search as number | undefined, warmup: f.warmup as number | undefined,
        onProgress: (phase, d, t) => {
          if (!bars.has(phase)) bars.set(phase, new ProgressBar(phase.padEnd(16)));
          bars.get(phase)!.update(d, t);
        },
      });
      const fresh: PlannedSchedule[] = r.results.map((x) => ({
        steps, target: x.target, plan: x.plan, speedup: x.speedup, grans: x.grans, psnrPredicted: x.psnrPredicted, psnrMeasured: x.psnrMeasured, ...(x.probes ? { probes: x.probes } : {}), ...(x.order ? { order: x.order } : {}),
      }));
      // the speed table: per target, the best of the planned hybrid followed by MixCache or
      // MixCache+ (first-order reuse) and plain fewer steps, on the planning prompts
      const speeds: SpeedChoice[] = [];
      for (const fs of r.fewerSteps) {
        const cands: SpeedChoice[] = [{ steps, target: fs.target, cache: "fewer-steps", options: { speedup: fs.target }, psnr: fs.psnr, speedup: fs.speedup }];
        const planned = r.results.find((x) => x.target === fs.target && x.grans.split(",").length > 1);
        if (planned) cands.push({ steps, target: fs.target, cache: "mixcache", options: { schedule: "planned", target_speedup: fs.target }, psnr: planned.psnrMeasured, speedup: planned.speedup });
        const plus = r.plus.find((x) => x.target === fs.target);
        if (plus) cands.push({ steps, target: fs.target, cache: "mixcache-plus", options: { schedule: "planned", target_speedup: fs.target }, psnr: plus.psnr, speedup: plus.speedup });
        speeds.push(cands.reduce((a, b) => (b.psnr > a.psnr ? b : a)));
      }
      const old = f.save && existsSync(out) ? readProfile<PlanProfile>(info.profilesDir, "mixcache-plans") : null;
      const same = (p: { steps: number; target: number; grans?: string; order?: number; cache?: string }, q: { steps: number; target: number; grans?: string; order?: number; cache?: string }) =>
        p.steps === q.steps && p.target === q.target && p.grans === q.grans && (p.order ?? 0) === (q.order ?? 0);
      const profile: PlanProfile = {
        meta: {
          method: "mixcache-plans", model: model.name, steps, shift: model.defaults.shift, sampler: model.defaults.sampler, guidance: model.defaults.guidance,
          prompts, seeds, fn: r.tables.refs[0].fn, bn: r.tables.refs[0].bn, solver: DEFAULT_SOLVER, seconds: Math.round(r.seconds), created: new Date().toISOString(),
          ...(f["on-bench"] !== undefined ? { oracle: `planned on the first ${f["on-bench"]} bench prompts themselves` } : {}),
        } as PlanProfile["meta"],
        schedules: [...(old?.schedules.filter((p) => !fresh.some((q) => same(p, q))) ?? []), ...fresh],
        speeds: [...(old?.speeds?.filter((p) => !speeds.some((q) => same(p, q))) ?? []), ...speeds],
      };
      writeFileAtomic(out, JSON.stringify(profile, null, 1) + "\n");
      if (f.json) {
        process.stdout.write(JSON.stringify({ model: model.name, path: out, prompts, seeds, steps, seconds: r.seconds, schedules: r.results, infeasible: r.infeasible, fewer_steps: r.fewerSteps, online: r.online, mixcache_plus: r.plus, speeds }) + "\n");
      } else {
        const lines = r.results.filter((x) => !x.order).map((x) =>
          `  x${String(x.target).padEnd(4)} ${x.grans.padEnd(15)} ${x.speedup.toFixed(2)}x  PSNR ${x.psnrMeasured.toFixed(2)} dB (DP ${x.dpPsnr.toFixed(2)}, predicted ${x.psnrPredicted.toFixed(2)})  ${describePlan(x.plan)}`);
        for (const x of r.infeasible) lines.push(`  x${String(x.target).padEnd(4)} ${x.set.padEnd(15)} cannot reach this speed (${x.reason})`);
        for (const x of r.fewerSteps) lines.push(`  x${String(x.target).padEnd(4)} ${"fewer-steps".padEnd(15)} ${x.speedup.toFixed(2)}x  PSNR ${x.psnr.toFixed(2)} dB`);
        for (const x of r.online) lines.push(`  x${String(x.target).padEnd(4)} ${"online mixcache".padEnd(15)} ${x.speedup.toFixed(2)}x  PSNR ${x.psnr.toFixed(2)} dB`);
        for (const x of r.results.filter((y) => y.order === 1))
          lines.push(`  x${String(x.target).padEnd(4)} ${"mixcache+ plan".padEnd(15)} ${x.speedup.toFixed(2)}x  PSNR ${x.psnrMeasured.toFixed(2)} dB (hybrid searched under first-order reuse)  ${describePlan(x.plan)}`);
        lines.push(`  speed table (--speed S): ${speeds.map((x) => `x${x.target} -> ${x.cache === "fewer-steps" ? "fewer steps" : `planned ${x.cache}`} (${x.psnr.toFixed(2)} dB)`).join(", ")}`);
        process.stdout.write(`${lines.join("\n")}\n  ${prompts.length} prompt(s) x ${seeds.length} seed(s), ${steps} steps, in ${fmtTime(r.seconds)}\n  wrote ${out}\n`);
      }
      return 0;
    } finally {
      await model.release();
    }
  },
};
