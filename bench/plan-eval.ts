/**
 * `npm run bench:plan-eval -- --model NAME [--prompts N] [--plans FILE] [--margins M,M,...]`: the
 * schedules stored in the model's cache_profiles/mixcache-plans.json (or a file `mixcache plan
 * --out` wrote), followed by MixCache and MixCache+ (a schedule searched under first-order reuse by
 * MixCache+ only), and with --margins the hybrid schedules run as schedule=planned with each
 * probe_margin (the planned probe veto: PSNR and the speed it leaves), measured on the first N
 * bench prompts (default 8, seed 0) with the metric `mixcache plan` reports (PSNR of one MSE over
 * the clip, values in [-1, 1] read with peak 2, mean over prompts), beside fewer steps at each
 * target: what a schedule planned on calibration prompts reaches where `mixcache plan --on-bench`
 * computes the oracle bound.
 */
import { loadModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { makeCache } from "../src/cache/registry.ts";
import { mse01, psnrOf } from "../src/cache/plan/measure.ts";
import { benchPrompts } from "../src/bench/protocol.ts";
import { loadVocab } from "../src/data/shapes.ts";
import { readProfile } from "../src/cache/profiles.ts";
import { inspectModel } from "../src/models/load.ts";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PlanProfile } from "../src/cache/strategies/mixcache.ts";

const args = process.argv.slice(2);
const opt = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const info = inspectModel(opt("--model") ?? "reference");
if (!info.vocabPath) throw new Error(`model ${info.name} has no vocab.json, so it has no bench prompts`);
const plansFile = opt("--plans");
const stored = plansFile ? (JSON.parse(readFileSync(plansFile, "utf8")) as PlanProfile) : readProfile<PlanProfile>(info.profilesDir, "mixcache-plans");
if (!stored) throw new Error(`model ${info.name} has no stored schedules: run \`mixcache plan --model ${info.name} --save\` first`);
const prompts = benchPrompts(loadVocab(info.vocabPath), Number(opt("--prompts") ?? 8)).map((p) => p.text);
const model = await loadModel(info.dir, { threads: Number(opt("--threads") ?? 1) });
const refs: Float32Array[] = [];
for (const prompt of prompts) refs.push((await generate({ model, prompt, seed: 0 })).video.data);
const measure = async (name: string, options: Record<string, unknown>) => {
  let psnr = 0, speed = 0;
  for (const [k, prompt] of prompts.entries()) {
    const r = await generate({ model, prompt, seed: 0, cache: makeCache(name, options) });
    psnr += psnrOf(mse01(r.video.data, refs[k]));
    speed += r.stats.computeSpeedup;
  }
  return { psnr: psnr / prompts.length, speedup: speed / prompts.length };
};
console.log(`${info.name}: ${plansFile ? `schedules of ${plansFile}` : "stored schedules"} (planned on ${stored.meta.prompts.length} calibration prompts) on the first ${prompts.length} bench prompts, seed 0`);
const rows = [];
for (const s of stored.schedules) {
  const opts = { plan: s.plan, fn: stored.meta.fn, bn: stored.meta.bn };
  if (s.order === 1) {
    // searched under MixCache+'s reuse: followed by MixCache+ only
    const plus = await measure("mixcache-plus", opts);
    rows.push({ target: s.target, grans: s.grans, order: 1, speedup: plus.speedup, psnr: null, plus: plus.psnr, planned: s.psnrMeasured });
    console.log(`  x${String(s.target).padEnd(4)} ${"hybrid order 1".padEnd(15)} ${plus.speedup.toFixed(2)}x  MixCache+ ${plus.psnr.toFixed(2)} dB  [${s.psnrMeasured.toFixed(2)} dB on its planning prompts]`);
    continue;
  }
  const plain = await measure("mixcache", opts);
  const plus = s.grans.includes(",") ? await measure("mixcache-plus", opts) : null;
  rows.push({ target: s.target, grans: s.grans, speedup: plain.speedup, psnr: plain.psnr, plus: plus?.psnr ?? null, planned: s.psnrMeasured });
  console.log(`  x${String(s.target).padEnd(4)} ${s.grans.padEnd(15)} ${plain.speedup.toFixed(2)}x  ${plain.psnr.toFixed(2)} dB${plus ? `  (MixCache+ ${plus.psnr.toFixed(2)} dB on this schedule)` : ""}  [${s.psnrMeasured.toFixed(2)} dB on its planning prompts]`);
}
const margins = opt("--margins")?.split(",").map(Number) ?? [];
if (margins.length) {
  // schedule=planned reads the schedules (and their probes) from a profile folder
  const dir = mkdtempSync(join(tmpdir(), "plan-eval-"));
  writeFileSync(join(dir, "mixcache-plans.json"), JSON.stringify(stored));
  try {
    for (const s of stored.schedules.filter((x) => x.grans.includes(",") && x.probes)) {
      const name = s.order === 1 ? "mixcache-plus" : "mixcache";
      const cells: string[] = [];
      for (const m of margins) {
        let psnr = 0, speed = 0;
        for (const [k, prompt] of prompts.entries()) {
          const r = await generate({ model, prompt, seed: 0, cache: makeCache(name, { schedule: "planned", target_speedup: s.target, probe_margin: m }, { profilesDir: dir }) });
          psnr += psnrOf(mse01(r.video.data, refs[k]));
          speed += r.stats.computeSpeedup;
        }
        cells.push(`margin ${m}: ${(psnr / prompts.length).toFixed(2)} dB at ${(speed / prompts.length).toFixed(2)}x`);
        rows.push({ target: s.target, grans: s.grans, order: s.order ?? 0, margin: m, speedup: speed / prompts.length, psnr: psnr / prompts.length });
      }
      console.log(`  x${String(s.target).padEnd(4)} ${name.padEnd(15)} probe veto  ${cells.join(" | ")}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
for (const t of [...new Set(stored.schedules.map((s) => s.target))]) {
  const f = await measure("fewer-steps", { speedup: t });
  console.log(`  x${String(t).padEnd(4)} ${"fewer-steps".padEnd(15)} ${f.speedup.toFixed(2)}x  ${f.psnr.toFixed(2)} dB`);
}
if (args.includes("--json")) process.stdout.write(JSON.stringify({ model: info.name, prompts, rows }) + "\n");
await model.release();
