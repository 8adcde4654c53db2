import { basename, extname, join, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { loadModel, inspectModel, assertComponentsUsable, checkHunyuanMemory, latentRules, checkDtype } from "../models/load.ts";
import { generate, resolveLatentShape } from "../pipeline/generate.ts";
import { latentsFileShape, readEmbedding, readLatents, writeResultSafetensors } from "../pipeline/interop.ts";
import { checkPipelineMemory, latentForVideo, videoForLatent } from "../models/wan-pipeline.ts";
import { checkMemory } from "../models/wan/memory.ts";
import { parseLatent } from "../models/wan/config.ts";
import type { LatentShape } from "../models/types.ts";
import { makeCache } from "../cache/registry.ts";
import { SAMPLER_NAMES, type SamplerName } from "../schedulers/types.ts";
import { validateShift, MAX_STEPS } from "../schedulers/sigmas.ts";
import { VIDEO_EXTENSIONS, writeVideo } from "../media/write.ts";
import { hasFfmpeg } from "../media/mp4.ts";
import { WordTokenizer } from "../text/tokenizer.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { helpText, parseArgs, type FlagDef, type Command } from "./args.ts";
import { DEVICE_FLAG, DTYPE_FLAG, HELP_FLAG, JSON_FLAG, MODEL_FLAG, THREADS_FLAG, cacheOptions, checkOutputFile, humanCount } from "./common.ts";
import { checkDevice } from "../backend/ort.ts";
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
  { name: "guidance-2", type: "number", placeholder: "G", min: 1, doc: "Wan2.2 two-expert folders: the low-noise expert's guidance (default: --guidance)" },
  { name: "embedded-guidance", type: "number", placeholder: "G", min: 0, doc: "HunyuanVideo: the distilled guidance input (default 6)" },
  { name: "shift", type: "number", placeholder: "S", doc: "flow shift of the sigma schedule, > 0 (default 3)" },
  { name: "seed", type: "int", placeholder: "N", min: 0, max: SEED_MAX, doc: "noise seed (default 0)" },
  { name: "sampler", type: "string", placeholder: SAMPLER_NAMES.join("|"), doc: "flow-matching sampler (default unipc)" },
  { name: "negative", type: "string", placeholder: "TEXT", doc: "negative prompt for CFG (default: the model's; diffusers Wan2.1 folders: WanPipeline's Wan negative prompt)" },
  { name: "frames", type: "int", placeholder: "N", min: 1, max: 4097, doc: "video frames (Wan2.1: 4k + 1; default 81 for diffusers folders)" },
  { name: "height", type: "int", placeholder: "H", min: 1, max: 32768, doc: "video height in pixels (Wan2.1: a multiple of 16; default 480)" },
  { name: "width", type: "int", placeholder: "W", min: 1, max: 32768, doc: "video width in pixels (Wan2.1: a multiple of 16; default 832)" },
  { name: "latents", type: "string", placeholder: "FILE", doc: "initial noise latent (.safetensors, [C, F, H, W] or [1, C, F, H, W]) instead of the seeded noise; it sets the size" },
  { name: "prompt-embeds", type: "string", placeholder: "FILE", doc: "prompt embedding (.safetensors, [S, text_dim] or [1, S, text_dim]) instead of a prompt" },
  { name: "negative-prompt-embeds", type: "string", placeholder: "FILE", doc: "negative prompt embedding (.safetensors) instead of --negative" },
  { name: "prompt-cache", type: "string", placeholder: "DIR", doc: "keep umT5 prompt embeddings in DIR and reuse them (diffusers folders)" },
  { name: "tile", type: "bool", doc: "decode with VAE spatial tiling (256 px tiles, stride 192): less memory" },
  { name: "cache", type: "string", placeholder: "NAME", doc: "cache strategy (default none; list: mixcache caches)" },
  { name: "cache-opt", type: "list", placeholder: "K=V", doc: "strategy option, repeatable (e.g. threshold=0.1)" },
  { name: "cache-config", type: "string", placeholder: "FILE", doc: "strategy options as a JSON object" },
  { name: "target-speedup", type: "number", placeholder: "S", min: 1, max: 20, doc: "MixCache's compute speedup target (mixcache / mixcache-plus; the default cache then is mixcache); warns when it is not reached" },
  { name: "speed", type: "number", placeholder: "S", min: 1, max: 20, doc: "run S times faster the best way `mixcache plan` found for this model and step count (a planned MixCache schedule or fewer steps)" },
  { name: "trace", type: "string", placeholder: "FILE", doc: "write the per-step cache decision trace to a .json file" },
  { name: "out", type: "list", placeholder: "FILE", doc: "output .gif, .png (contact sheet), .mp4 (needs ffmpeg) or .safetensors (float32 video [3, F, H, W] + latent); repeatable (default out/<prompt words>-<cache tag>-s<seed>.gif + .png)" },
  THREADS_FLAG,
  DEVICE_FLAG,
  DTYPE_FLAG,
  JSON_FLAG,
  HELP_FLAG,
];

const OUT_EXTENSIONS = [...VIDEO_EXTENSIONS, ".safetensors"];

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60) || "video";
}

export const generateCommand: Command = {
  name: "generate",
  summary: "generate a video from a prompt (optionally with a cache strategy)",
  async run(argv) {
    const a = parseArgs("generate", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText('Usage: mixcache generate "<prompt>" [options]\n       mixcache generate --model DIR --prompt-embeds FILE [options]', this.summary, FLAGS));
      return 0;
    }
    const f = a.flags;
    const promptEmbeds = f["prompt-embeds"] as string | undefined;
    const negativeEmbeds = f["negative-prompt-embeds"] as string | undefined;
    const latentsFile = f.latents as string | undefined;
    if (a.positionals.length > 1 || (a.positionals.length === 0 && promptEmbeds === undefined))
      throw new UsageError(`generate takes one prompt, got ${a.positionals.length}`, 'quote it: mixcache generate "a large red circle moving right on a black background" (or pass --prompt-embeds FILE)');
    if (a.positionals.length === 1 && promptEmbeds !== undefined)
      throw new UsageError("pass either a prompt or --prompt-embeds, not both", "the embedding file replaces the prompt (as diffusers' prompt_embeds)");
    if (f.negative !== undefined && negativeEmbeds !== undefined)
      throw new UsageError("pass either --negative or --negative-prompt-embeds, not both", "the embedding file replaces the negative prompt");
    const prompt = a.positionals[0] as string | undefined;
    if (f.sampler !== undefined && !SAMPLER_NAMES.includes(f.sampler as SamplerName))
      throw new UsageError(`--sampler ${f.sampler} is not supported`, `use one of: ${SAMPLER_NAMES.join(", ")}`);
    if (f.shift !== undefined) validateShift(f.shift);
    const info = inspectModel(f.model as string | undefined);
    assertComponentsUsable(info);
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
    // what the model can make: RGB frames (pixel space or a VAE), else only the latent
    const canVideo = info.pixelSpace ? info.dims.outChannels === 3 : info.vae !== null;
    const outs = (f.out as string[] | undefined) ?? (() => {
      const base = join("out", `${slug(prompt ?? "embeds")}-${cache.tag}-s${seed}`);
      return canVideo ? [`${base}.gif`, `${base}.png`] : [`${base}.safetensors`];
    })();
    // every input and output is checked here, before the weights load and before anything is written
    const seen = new Set<string>();
    for (const o of outs) {
      checkOutputFile("--out", o, OUT_EXTENSIONS);
      if (seen.has(resolve(o))) throw new UsageError(`--out ${o} is given twice`, "name each output once");
      seen.add(resolve(o));
    }
    if (outs.some((o) => extname(o).toLowerCase() === ".mp4") && !hasFfmpeg())
      throw new UsageError("MP4 output needs ffmpeg on the PATH, and none was found", "install ffmpeg (or set MIXCACHE_FFMPEG) or write .gif / .png");
    if (f.trace !== undefined) {
      checkOutputFile("--trace", f.trace as string, [".json"]);
      if (seen.has(resolve(f.trace as string))) throw new UsageError(`--trace ${f.trace} is also an --out file`, "write the trace to its own .json file");
    }
    const videoOuts = outs.filter((o) => extname(o).toLowerCase() !== ".safetensors");
    if (videoOuts.length && !canVideo) {
      if (info.pixelSpace || info.layout === "mixcache")
        throw new UsageError(`model ${info.name} produces ${info.dims.outChannels}-channel latents, not RGB frames`, "write the latent to a .safetensors file (--out x.safetensors), or use the API");
      throw new UsageError(
        `model ${info.name} has no VAE${info.pipeline ? ` (vae/ is missing from ${info.dir})` : " (a bare transformer folder)"}, so ${videoOuts.join(", ")} cannot be decoded to video`,
        "add the vae/ folder of the same Wan2.1 checkpoint, or write only the latent: --out result.safetensors",
      );
    }
    // text: a prompt needs the model's text encoder; embedding files stand in for it
    const guidance = (f.guidance as number | undefined) ?? info.defaults.guidance;
    if (f["guidance-2"] !== undefined && !(info.family === "wan" && info.pipeline?.expert2))
      throw new UsageError(`--guidance-2 sets the second expert's guidance, and model ${info.name} has one transformer`, "drop --guidance-2 (it applies to Wan2.2 folders with transformer_2/)");
    if (f["embedded-guidance"] !== undefined && info.family !== "hunyuan-video")
      throw new UsageError(`--embedded-guidance is HunyuanVideo's distilled guidance input; model ${info.name} is a ${info.family} model`, "use --guidance (classifier-free guidance)");
    const cfg = guidance > 1;
    const toEncode = [...(promptEmbeds === undefined ? [prompt!] : []), ...(cfg && negativeEmbeds === undefined ? [(f.negative as string | undefined) ?? info.defaults.negativePrompt] : [])];
    if (toEncode.length && !info.hasTextEncoder) {
      const what = promptEmbeds === undefined ? "the prompt" : `the negative prompt (guidance ${guidance} > 1)`;
      const missing = info.pipeline?.missing.filter((n) => n === "text_encoder" || n === "tokenizer") ?? [];
      throw new UsageError(
        `model ${info.name} has no text encoder${missing.length ? ` (${missing.map((n) => `${n}/`).join(" and ")} missing from ${info.dir})` : " in its folder"}, so ${what} cannot be encoded`,
        `pass precomputed embeddings: --prompt-embeds FILE${cfg ? " --negative-prompt-embeds FILE (or --guidance 1)" : ""}${info.pipeline ? ", or add the text_encoder/ and tokenizer/ folders of the same Wan2.1 checkpoint" : ""}`,
      );
    }
    if (info.textEncoder === "word") {
      const tokenizer = WordTokenizer.fromFile(join(info.dir, "tokenizer", "tokenizer.json"));
      for (const t of toEncode) tokenizer.encode(t); // a word outside the vocabulary is an error now, not after loading
    }
    // the size: --latents sets it; else --frames / --height / --width (the video), else the model's default
    let shape: LatentShape;
    const sized = f.frames !== undefined || f.height !== undefined || f.width !== undefined;
    const size = { frames: f.frames as number | undefined, height: f.height as number | undefined, width: f.width as number | undefined };
    if (latentsFile !== undefined) {
      shape = parseLatent(latentsFileShape(latentsFile, info.dims.inChannels), latentRules(info), `--latents ${latentsFile}`);
      if (sized) {
        const v = videoForLatent(info.strides, shape);
        const want = latentForVideo(latentRules(info), info.strides, { frames: size.frames ?? v.frames, height: size.height ?? v.height, width: size.width ?? v.width }, "--frames / --height / --width");
        if (want.frames !== shape.frames || want.height !== shape.height || want.width !== shape.width)
          throw new UsageError(
            `--latents ${latentsFile} is a [${shape.channels}, ${shape.frames}, ${shape.height}, ${shape.width}] latent (a ${v.frames}x${v.height}x${v.width} video), not the ${want.frames}-frame [${want.height}, ${want.width}] latent of --frames / --height / --width`,
            "drop --frames / --height / --width (the latents set the size) or pass latents of that size",
          );
      }
    } else shape = resolveLatentShape(info, sized ? size : {}).shape;
    const textEmbedding = promptEmbeds !== undefined ? readEmbedding(promptEmbeds, info.dims.textDim, "--prompt-embeds", ["prompt_embeds"], info.dims.pooledDim) : undefined;
    const negativeEmbedding = negativeEmbeds !== undefined ? readEmbedding(negativeEmbeds, info.dims.textDim, "--negative-prompt-embeds", ["negative_prompt_embeds", "prompt_embeds"], info.dims.pooledDim) : undefined;
    const latents = latentsFile !== undefined ? readLatents(latentsFile, shape) : undefined;
    // memory of the whole run at this size, before anything loads
    const decode = info.vae !== null;
    const tile = f.tile === true;
    const threads = f.threads as number | undefined;
    const device = f.device as string | undefined;
    checkDevice(device); // an execution provider that cannot run here is refused before anything loads
    const dtype = f.dtype as string | undefined;
    checkDtype(dtype, info);
    if (dtype === "float16" && (device ?? "cpu") === "cpu")
      process.stderr.write("warning: --dtype float16 on the CPU: on CPUs without float16 arithmetic it saved no memory and little time (npm run bench:runtime; README, --dtype); it is meant for --device cuda\n");
    if (info.family === "hunyuan-video") checkHunyuanMemory(info, shape, { textTokens: textEmbedding?.tokens, decode, tile });
    else if (info.layout === "diffusers") checkPipelineMemory(info.config, shape, { threads, umt5: toEncode.length ? info.pipeline!.umt5 : null, vae: info.vae, decode, tile, model: info.name, expert2: info.pipeline!.expert2?.config, dtype });
    else checkMemory(info.config, shape, { threads, model: info.name, dtype });
    if (negativeEmbedding && !cfg) process.stderr.write(`warning: --negative-prompt-embeds is not used at guidance ${guidance} (no classifier-free guidance)\n`);

    const loadBar = new ProgressBar("loading ");
    const model = await loadModel(info.dir, { threads, device, dtype, latent: shape, decode, tile, promptCacheDir: f["prompt-cache"] as string | undefined }, (d, t) => loadBar.update(d, t));
    const bar = new ProgressBar(`${cache.tag.padEnd(10)}`);
    const t0 = performance.now();
    try {
      const r = await generate({
        model, prompt, textEmbedding, negativeEmbedding, latents, shape, seed, cache, decode, tile,
        steps: f.steps as number | undefined, guidance: f.guidance as number | undefined, shift: f.shift as number | undefined,
        guidance2: f["guidance-2"] as number | undefined, embeddedGuidance: f["embedded-guidance"] as number | undefined,
        sampler: f.sampler as SamplerName | undefined, negativePrompt: f.negative as string | undefined,
        onProgress: (p) => bar.update(p.overall.done, p.overall.total, p.stage),
      });
      const wall = performance.now() - t0;
      const metadata: Record<string, string> = {
        format: "mixcache-result/1", model: model.name, prompt: prompt ?? "", seed: String(seed), steps: String(r.steps), guidance: String(r.guidance),
        shift: String(r.shift), sampler: r.sampler, cache: cache.tag, fps: String(model.fps),
        prompt_source: textEmbedding ? "embedding" : "text", initial_latent: latents ? "file" : "seed",
        ...(r.negativePrompt !== null ? { negative_prompt: r.negativePrompt } : negativeEmbedding && cfg ? { negative_prompt_source: "embedding" } : {}),
      };
      for (const o of outs) {
        if (extname(o).toLowerCase() === ".safetensors") writeResultSafetensors(o, { video: r.decoded || info.pixelSpace ? r.video : undefined, latent: r.latent, metadata });
        else await writeVideo(o, { ...r.video, channels: 3 }, { fps: model.fps });
      }
      if (f.trace) writeFileAtomic(f.trace as string, JSON.stringify({ tag: cache.tag, prompt: prompt ?? "", seed, steps: r.steps, trace: r.cache?.trace ?? [] }, null, 1) + "\n");
      const s = r.stats;
      if (f.json) {
        process.stdout.write(JSON.stringify({
          prompt: prompt ?? "", seed, steps: r.steps, guidance: r.guidance, shift: r.shift, sampler: r.sampler, model: model.name,
          video: { frames: r.video.frames, height: r.video.height, width: r.video.width }, decoded: r.decoded,
          latent: [r.latent.channels, r.latent.frames, r.latent.height, r.latent.width],
          timings_ms: { encode: Math.round(r.timings.encodeMs), denoise: Math.round(r.timings.denoiseMs), decode: Math.round(r.timings.decodeMs) },
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
          (model.layout === "diffusers" ? `\n  ${r.video.frames}x${r.video.height}x${r.video.width}, latent ${r.latent.channels}x${r.latent.frames}x${r.latent.height}x${r.latent.width}: encode ${(r.timings.encodeMs / 1000).toFixed(1)}s, denoise ${(r.timings.denoiseMs / 1000).toFixed(1)}s, decode ${(r.timings.decodeMs / 1000).toFixed(1)}s` : "") +
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
