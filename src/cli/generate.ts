import { basename, extname, join, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { loadModel, inspectModel } from "../models/load.ts";
import { generate } from "../pipeline/generate.ts";
import { makeCache } from "../cache/registry.ts";
import { SAMPLER_NAMES, type SamplerName } from "../schedulers/types.ts";
import { validateShift, MAX_STEPS } from "../schedulers/sigmas.ts";
import { VIDEO_EXTENSIONS, writeVideo } from "../media/write.ts";
import { hasFfmpeg } from "../media/mp4.ts";
import { WordTokenizer } from "../text/tokenizer.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { helpText, parseArgs, type FlagDef, type Command } from "./args.ts";
import { HELP_FLAG, JSON_FLAG, MODEL_FLAG, THREADS_FLAG, cacheOptions, checkOutputFile, humanCount } from "./common.ts";
import { SEED_MAX } from "../pipeline/noise.ts";
import { ProgressBar } from "./progress.ts";
import { readProfile } from "../cache/profiles.ts";
import type { PlanProfile } from "../cache/strategies/mixcache.ts";

/** The speed table entry `mixcache plan` stored for this model, step count and speed. */
function speedChoice(profilesDir: string, steps: number, speed: number): { cache: string; options: Record<string, string | number> } {
  const prof = readProfile<PlanProfile>(profilesDir, "mixcache-plans");
  const rows = (prof?.speeds ?? []).filter((x) => x.steps === steps);
  const hit = rows.find((x) => Math.abs(x.target - speed) < 1e-9);
  if (!hit)
    throw new UsageError(`no speed table entry for ${speed}x at ${steps} steps for this model (planned: ${rows.map((x) => `${x.target}x`).join(", ") || "none"})`,
      `run \`mixcache plan --targets ${speed} --steps ${steps} --save\` for this model, or pick a planned speed`);
  return { cache: hit.cache, options: hit.options };
}

const FLAGS: FlagDef[] = [
  MODEL_FLAG,
  { name: "steps", type: "int", placeholder: "N", min: 1, max: MAX_STEPS, doc: "sampler steps (model default: 50)" },
  { name: "guidance", type: "number", placeholder: "G", min: 1, doc: "classifier-free guidance scale, 1 = off (default 5)" },
  { name: "shift", type: "number", placeholder: "S", doc: "flow shift of the sigma schedule, > 0 (default 3)" },
  { name: "seed", type: "int", placeholder: "N", min: 0, max: SEED_MAX, doc: "noise seed (default 0)" },
  { name: "sampler", type: "string", placeholder: SAMPLER_NAMES.join("|"), doc: "flow-matching sampler (default unipc)" },
  { name: "negative", type: "string", placeholder: "TEXT", doc: "negative prompt for CFG (default: empty)" },
  { name: "cache", type: "string", placeholder: "NAME", doc: "cache strategy (default none; list: mixcache caches)" },
  { name: "cache-opt", type: "list", placeholder: "K=V", doc: "strategy option, repeatable (e.g. threshold=0.1)" },
  { name: "cache-config", type: "string", placeholder: "FILE", doc: "strategy options as a JSON object" },
  { name: "target-speedup", type: "number", placeholder: "S", min: 1, max: 20, doc: "MixCache's compute speedup target (mixcache / mixcache-plus; the default cache then is mixcache); warns when it is not reached" },
  { name: "speed", type: "number", placeholder: "S", min: 1, max: 20, doc: "run S times faster the best way `mixcache plan` found for this model and step count (a planned MixCache schedule or fewer steps)" },
  { name: "trace", type: "string", placeholder: "FILE", doc: "write the per-step cache decision trace to a .json file" },
  { name: "out", type: "list", placeholder: "FILE", doc: "output .gif, .png (contact sheet) or .mp4 (needs ffmpeg); repeatable (default out/<prompt words>-<cache tag>-s<seed>.gif + .png)" },
  THREADS_FLAG,
  JSON_FLAG,
  HELP_FLAG,
];

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60) || "video";
}

export const generateCommand: Command = {
  name: "generate",
  summary: "generate a video from a prompt (optionally with a cache strategy)",
  async run(argv) {
    const a = parseArgs("generate", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText('Usage: mixcache generate "<prompt>" [options]', this.summary, FLAGS));
      return 0;
    }
    if (a.positionals.length !== 1) throw new UsageError(`generate takes one prompt, got ${a.positionals.length}`, 'quote it: mixcache generate "a large red circle moving right on a black background"');
    const prompt = a.positionals[0];
    const f = a.flags;
    if (f.sampler !== undefined && !SAMPLER_NAMES.includes(f.sampler as SamplerName))
      throw new UsageError(`--sampler ${f.sampler} is not supported`, `use one of: ${SAMPLER_NAMES.join(", ")}`);
    if (f.shift !== undefined) validateShift(f.shift);
    const info = inspectModel(f.model as string | undefined);
    let cacheName = (f.cache as string | undefined) ?? "none";
    let options = cacheOptions(f["cache-opt"] as string[] | undefined, f["cache-config"] as string | undefined);
    const asked = (f["target-speedup"] as number | undefined) ?? (f.speed as number | undefined);
    if (f["target-speedup"] !== undefined) {
      if (f.speed !== undefined) throw new UsageError("pass either --speed or --target-speedup, not both", "--speed picks the best planned way for this model; --target-speedup steers MixCache online");
      if (f.cache === undefined) cacheName = "mixcache";
      if (cacheName !== "mixcache" && cacheName !== "mixcache-plus")
        throw new UsageError(`--target-speedup steers MixCache, not ${cacheName}`, "use --cache mixcache or mixcache-plus, or the strategy's own knobs (mixcache caches), or --speed S");
      if ("target_speedup" in options) throw new UsageError("--target-speedup and --cache-opt target_speedup=... both set the target", "pass it once");
      options.target_speedup = f["target-speedup"];
    }
    if (f.speed !== undefined) {
      if (f.cache !== undefined || f["cache-opt"] !== undefined || f["cache-config"] !== undefined)
        throw new UsageError("--speed chooses the cache itself", "drop --cache / --cache-opt / --cache-config, or use them without --speed");
      const choice = speedChoice(info.profilesDir, (f.steps as number | undefined) ?? info.defaults.steps, f.speed as number);
      cacheName = choice.cache;
      options = { ...choice.options };
    }
    const cache = makeCache(cacheName, options, { profilesDir: info.profilesDir });
    const seed = (f.seed as number | undefined) ?? 0;
    const outs = (f.out as string[] | undefined) ?? (() => {
      const base = join("out", `${slug(prompt)}-${cache.tag}-s${seed}`);
      return [`${base}.gif`, `${base}.png`];
    })();
    // every input and output is checked here, before the weights load and before anything is written
    const seen = new Set<string>();
    for (const o of outs) {
      checkOutputFile("--out", o, VIDEO_EXTENSIONS);
      if (seen.has(resolve(o))) throw new UsageError(`--out ${o} is given twice`, "name each output once");
      seen.add(resolve(o));
    }
    if (outs.some((o) => extname(o).toLowerCase() === ".mp4") && !hasFfmpeg())
      throw new UsageError("MP4 output needs ffmpeg on the PATH, and none was found", "install ffmpeg (or set MIXCACHE_FFMPEG) or write .gif / .png");
    if (f.trace !== undefined) {
      checkOutputFile("--trace", f.trace as string, [".json"]);
      if (seen.has(resolve(f.trace as string))) throw new UsageError(`--trace ${f.trace} is also an --out file`, "write the trace to its own .json file");
    }
    if (!info.pixelSpace || info.config.out_channels !== 3)
      throw new UsageError(`model ${info.name} produces ${info.config.out_channels}-channel latents, not RGB frames`, "video outputs need a pixel-space model (a VAE decoder is not part of MixCache yet); use the API to get the latent");
    if (!info.hasTextEncoder)
      throw new UsageError(`model ${info.name} has no text encoder in its folder, so \`mixcache generate\` cannot encode a prompt for it`, "generate through the API with precomputed embeddings: generate({ model, textEmbedding, negativeEmbedding })");
    const tokenizer = WordTokenizer.fromFile(join(info.dir, "tokenizer", "tokenizer.json"));
    tokenizer.encode(prompt); // a word outside the vocabulary is an error now, not after loading
    if (((f.guidance as number | undefined) ?? info.defaults.guidance) > 1) tokenizer.encode((f.negative as string | undefined) ?? info.defaults.negativePrompt);

    const loadBar = new ProgressBar("loading ");
    const model = await loadModel(info.dir, { threads: f.threads as number | undefined }, (d, t) => loadBar.update(d, t));
    const bar = new ProgressBar(`${cache.tag.padEnd(10)}`);
    const t0 = performance.now();
    try {
      const r = await generate({
        model, prompt, seed, cache,
        steps: f.steps as number | undefined, guidance: f.guidance as number | undefined, shift: f.shift as number | undefined,
        sampler: f.sampler as SamplerName | undefined, negativePrompt: f.negative as string | undefined,
        onStep: (d, t) => bar.update(d, t),
      });
      const wall = performance.now() - t0;
      for (const o of outs) await writeVideo(o, { ...r.video, channels: 3 }, { fps: model.fps });
      if (f.trace) writeFileAtomic(f.trace as string, JSON.stringify({ tag: cache.tag, prompt, seed, steps: r.steps, trace: r.cache?.trace ?? [] }, null, 1) + "\n");
      const s = r.stats;
      if (f.json) {
        process.stdout.write(JSON.stringify({
          prompt, seed, steps: r.steps, guidance: r.guidance, shift: r.shift, sampler: r.sampler, model: model.name,
          cache: cache.tag, wall_ms: Math.round(wall), macs_executed: s.macsExecuted, macs_full: s.macsFull,
          compute_speedup: Number(s.computeSpeedup.toFixed(4)), cache_peak_bytes: r.cache?.peakBytes ?? 0,
          computed: s.computed, reused: s.reused, outputs: outs,
          cache_counters: r.cache?.counters ?? {}, cache_warnings: r.cache?.warnings ?? [],
        }) + "\n");
      } else {
        process.stdout.write(
          `${basename(outs[0])}${outs.length > 1 ? ` (+${outs.length - 1})` : ""}: ${r.steps} steps in ${(wall / 1000).toFixed(1)}s, ` +
          `cache ${cache.tag}, compute ${humanCount(s.macsExecuted)}/${humanCount(s.macsFull)} MACs (${s.computeSpeedup.toFixed(2)}x), ` +
          `modules computed ${s.computed.modules}/${s.total.modules}` +
          (r.cache && r.cache.peakBytes ? `, cache memory ${humanCount(r.cache.peakBytes)}B` : "") +
          (r.cache && "full" in r.cache.counters ? `\n  steps: full ${r.cache.counters.full}, step ${r.cache.counters.step}, cfg ${r.cache.counters.cfg}, block ${r.cache.counters.block}` : "") +
          `\n  wrote ${outs.join(", ")}\n`,
        );
        for (const w of r.cache?.warnings ?? []) process.stderr.write(`warning: ${w}\n`);
      }
      // a speed that was asked for and not reached is said, on stderr (also with --json)
      if (asked !== undefined && s.computeSpeedup < asked * 0.97)
        process.stderr.write(`warning: asked for ${asked}x, reached ${s.computeSpeedup.toFixed(2)}x of compute (${cache.tag}); MixCache's warm-up and interval cap bound the reachable speed, or the planned table has no faster entry\n`);
      return 0;
    } finally {
      await model.release();
    }
  },
};
