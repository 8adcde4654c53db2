import { basename, extname, join } from "node:path";
import { UsageError } from "../errors.ts";
import { loadModel, inspectModel } from "../models/load.ts";
import { generate } from "../pipeline/pipeline.ts";
import { makeCache } from "../cache/registry.ts";
import { SAMPLER_NAMES, type SamplerName } from "../schedulers/index.ts";
import { writeVideo } from "../media/index.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { helpText, parseArgs, type FlagDef } from "./args.ts";
import { HELP_FLAG, JSON_FLAG, MODEL_FLAG, THREADS_FLAG, cacheOptions, humanCount } from "./common.ts";
import { ProgressBar } from "./progress.ts";
import type { Command } from "./main.ts";

const FLAGS: FlagDef[] = [
  MODEL_FLAG,
  { name: "steps", type: "int", placeholder: "N", doc: "sampler steps (model default: 50)" },
  { name: "guidance", type: "number", placeholder: "G", doc: "classifier-free guidance scale, 1 = off (default 5)" },
  { name: "shift", type: "number", placeholder: "S", doc: "flow shift of the sigma schedule (default 3)" },
  { name: "seed", type: "int", placeholder: "N", doc: "noise seed (default 0)" },
  { name: "sampler", type: "string", placeholder: SAMPLER_NAMES.join("|"), doc: "flow-matching sampler (default unipc)" },
  { name: "negative", type: "string", placeholder: "TEXT", doc: "negative prompt for CFG (default: empty)" },
  { name: "cache", type: "string", placeholder: "NAME", doc: "cache strategy (default none; list: mixcache caches)" },
  { name: "cache-opt", type: "list", placeholder: "K=V", doc: "strategy option, repeatable (e.g. threshold=0.1)" },
  { name: "cache-config", type: "string", placeholder: "FILE", doc: "strategy options as a JSON object" },
  { name: "trace", type: "string", placeholder: "FILE", doc: "write the per-step cache decision trace as JSON" },
  { name: "out", type: "list", placeholder: "FILE", doc: "output .gif, .png (contact sheet) or .mp4; repeatable (default out/<prompt>.gif + .png)" },
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
    const info = inspectModel(f.model as string | undefined);
    const cacheName = (f.cache as string | undefined) ?? "none";
    const cache = makeCache(cacheName, cacheOptions(f["cache-opt"] as string[] | undefined, f["cache-config"] as string | undefined), { profilesDir: info.profilesDir });
    const seed = (f.seed as number | undefined) ?? 0;
    const outs = (f.out as string[] | undefined) ?? (() => {
      const base = join("out", `${slug(prompt)}-${cache.tag}-s${seed}`);
      return [`${base}.gif`, `${base}.png`];
    })();
    for (const o of outs) if (![".gif", ".png", ".mp4"].includes(extname(o).toLowerCase())) throw new UsageError(`--out ${o}: unsupported extension`, "use .gif, .png or .mp4");

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
      if (r.video.channels !== 3 || !model.pixelSpace)
        throw new UsageError(`model ${model.name} produces ${r.video.channels}-channel latents, not RGB frames`, "video outputs need a pixel-space model (a VAE decoder is not part of MixCache yet); use the API to get the latent");
      for (const o of outs) await writeVideo(o, { ...r.video, channels: 3 }, { fps: model.fps });
      if (f.trace) writeFileAtomic(f.trace as string, JSON.stringify({ tag: cache.tag, prompt, seed, steps: r.steps, trace: r.cache?.trace ?? [] }, null, 1) + "\n");
      const s = r.stats;
      if (f.json) {
        process.stdout.write(JSON.stringify({
          prompt, seed, steps: r.steps, guidance: r.guidance, shift: r.shift, sampler: r.sampler, model: model.name,
          cache: cache.tag, wall_ms: Math.round(wall), macs_executed: s.macsExecuted, macs_full: s.macsFull,
          compute_speedup: Number(s.computeSpeedup.toFixed(4)), cache_peak_bytes: r.cache?.peakBytes ?? 0,
          computed: s.computed, reused: s.reused, outputs: outs,
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
      return 0;
    } finally {
      await model.release();
    }
  },
};
