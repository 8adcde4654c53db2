import { inspectModel } from "../models/load.ts";
import { stageMacs, stepMacs, promptMacs } from "../models/wan/macs.ts";
import { dimOf } from "../models/wan/config.ts";
import { estimateMemory, humanBytes } from "../models/wan/memory.ts";
import { estimatePipelineMemory } from "../models/wan-pipeline.ts";
import { helpText, parseArgs, type Command } from "./args.ts";
import { readProfile } from "../cache/profiles.ts";
import type { PlanProfile } from "../cache/strategies/mixcache.ts";
import { HELP_FLAG, JSON_FLAG, MODEL_FLAG, humanCount, noPositionals } from "./common.ts";
import type { HunyuanModelInfo } from "../models/load.ts";
import { hunyuanFamilyMacs } from "../models/hunyuan/macs.ts";
import { HUNYUAN_TEXT_TOKENS, describeHunyuan, estimateHunyuanMemory } from "../models/hunyuan/folder.ts";

/** `mixcache info` of a HunyuanVideo folder: the transformer, what runs, MACs and memory at the default size. */
function printHunyuan(m: HunyuanModelInfo, json: boolean): number {
  const c = m.config;
  const lat = m.latent!;
  const [pt, ph, pw] = m.dims.patch;
  const L = (lat.frames / pt) * (lat.height / ph) * (lat.width / pw);
  const S = HUNYUAN_TEXT_TOKENS;
  const fm = hunyuanFamilyMacs(c, L, S);
  const branch = fm.branchIn + fm.module.flat().reduce((x, y) => x + y, 0) + fm.head;
  const perStep = fm.time + fm.patch + (m.defaults.guidance > 1 ? 2 : 1) * branch;
  const mem = estimateHunyuanMemory(c, L, S);
  const t = m.text;
  const textLine = t
    ? `LLaVA-Llama-3 (${humanCount(t.text_encoder.parameters)} params, ${t.text_encoder.dtype ?? "?"}, ${t.text_encoder.layersRun} of ${t.text_encoder.layers} layers run: hidden_states[-3]) + CLIP-L (${humanCount(t.text_encoder_2.parameters)} params, pooled), template crop ${t.cropStart}, ${t.maxSequenceLength} tokens, streamed layer by layer`
    : "none in this folder: pass --prompt-embeds (prompt_embeds, pooled_prompt_embeds, prompt_attention_mask)";
  const vaeLine = m.vae ? `AutoencoderKLHunyuanVideo (${m.vae.latent_channels} latent channels, scaling ${m.vae.scaling_factor}), temporal pieces; --tile for large frames` : "none in this folder: the result is the latent (.safetensors)";
  const runs = [t ? "prompts" : "prompt embeddings", "transformer", m.vae ? "VAE -> video" : "latent out"].join(" -> ");
  if (json) {
    process.stdout.write(JSON.stringify({
      name: m.name, dir: m.dir, layout: m.layout, family: m.family, config: c, parameters: m.parameters, latent: lat, video: m.video, tokens: L, text_tokens: S,
      defaults: m.defaults, runs, text_encoders: t, vae: m.vae, macs_per_step: perStep, memory_estimate_bytes: mem,
    }) + "\n");
    return 0;
  }
  const lines = [
    `model       ${m.name}  (${m.dir})${m.layout === "diffusers" ? "  diffusers HunyuanVideoPipeline folder" : ""}`,
    `family      ${describeHunyuan(c)}`,
    `parameters  ${m.parameters.toLocaleString("en-US")} (${humanCount(m.parameters)})`,
    `patch       [${m.dims.patch}]  in/out channels ${c.in_channels}/${c.out_channels}  text ${c.text_embed_dim} + pooled ${c.pooled_projection_dim}  rope theta ${c.rope_theta} axes [${c.rope_axes_dim}]`,
    `video       ${m.video!.frames}x${m.video!.height}x${m.video!.width} (HunyuanVideoPipeline's default; the VAE's strides ${m.strides.temporal}x time, ${m.strides.spatial}x space)`,
    `latent      ${lat.channels}x${lat.frames}x${lat.height}x${lat.width} -> ${L} video tokens + up to ${S} text tokens`,
    `runs        ${runs}`,
    `text        ${textLine}`,
    `vae         ${vaeLine}`,
    `defaults    ${m.defaults.sampler} over linear sigmas, ${m.defaults.steps} steps, shift ${m.defaults.shift}, embedded guidance ${m.defaults.embeddedGuidance} (one branch per step), true CFG ${m.defaults.guidance > 1 ? m.defaults.guidance : "off"}`,
    `MACs/step   ${humanCount(perStep)} (${m.defaults.guidance > 1 ? "both CFG branches" : "one branch"}; at ${S} text tokens)`,
    `memory      about ${humanBytes(mem.total)} at this size (fp32 weights ${humanBytes(mem.weights)}, largest block call ${humanBytes(mem.activations)})`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
  return 0;
}

const FLAGS = [MODEL_FLAG, JSON_FLAG, HELP_FLAG];

export const infoCommand: Command = {
  name: "info",
  summary: "print a model's config, components, parameter count, MACs per step and memory estimate",
  async run(argv) {
    const a = parseArgs("info", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText("Usage: mixcache info [--model DIR] [--json]", this.summary, FLAGS));
      return 0;
    }
    noPositionals("info", a.positionals, "mixcache info [--model DIR] [--json]");
    const m = inspectModel(a.flags.model as string | undefined);
    if (m.family === "hunyuan-video") return printHunyuan(m, a.flags.json === true);
    const c = m.config;
    const lat = m.latent;
    const grid = lat ? [lat.frames / c.patch_size[0], lat.height / c.patch_size[1], lat.width / c.patch_size[2]] : null;
    const L = grid ? grid[0] * grid[1] * grid[2] : null;
    const S = m.layout === "diffusers" ? 512 : 16;
    const macs = L !== null ? stageMacs(c, L, S) : null;
    const perStep = L !== null ? stepMacs(c, L, S, m.defaults.guidance > 1) : null;
    const mem = lat ? estimateMemory(c, lat) : null;
    const p = m.pipeline;
    const pmem = p && lat ? estimatePipelineMemory(c, lat, { umt5: p.umt5, vae: m.vae, expert2: p.expert2?.config }) : null;
    const components = p
      ? Object.values(p.components).map((x) => ({
          name: x.name, state: x.state, class: x.className, parameters: x.parameters, dtype: x.dtype, bytes: x.bytes, detail: x.detail,
          error: x.error ? x.error.message.split("\n")[0] : null, fix: x.error?.fix ?? null,
        }))
      : null;
    // what `mixcache plan --save` stored: the speed table (--speed S) and the planned schedules
    const plans = readProfile<PlanProfile>(m.profilesDir, "mixcache-plans");
    const speeds = plans?.speeds ?? [];
    const out = {
      speeds, planned: plans ? plans.schedules.map((x) => ({ steps: x.steps, target: x.target, grans: x.grans, speedup: x.speedup, psnr: x.psnrMeasured })) : [],
      name: m.name, dir: m.dir, layout: m.layout, family: "wan2.1", config: c, width: dimOf(c), parameters: m.parameters,
      latent: lat, video: m.video, tokens: L, text_tokens: S, defaults: m.defaults, text_encoder: m.hasTextEncoder,
      components, missing: p?.missing ?? null, capabilities: p?.capabilities ?? null,
      macs_per_step: perStep, macs_per_prompt: promptMacs(c, S), macs_per_call: macs,
      memory_estimate_bytes: pmem
        ? { total: pmem.total, weights: pmem.weights, text: pmem.text, denoise: pmem.denoise, decode: pmem.decode, stage: pmem.stage }
        : mem ? { total: mem.total, weights: mem.weights, activations: mem.activations, stage: mem.stage, state: mem.state, threads: mem.threads } : null,
    };
    if (a.flags.json) {
      process.stdout.write(JSON.stringify(out) + "\n");
      return 0;
    }
    const componentLines = components
      ? [
          "components",
          ...components.map((x) => {
            const head = `  ${x.name.padEnd(13)}`;
            if (x.state === "missing") return `${head}MISSING  ${x.error}`;
            const stats = `${(x.class ?? "?").padEnd(26)} ${(x.parameters !== null ? humanCount(x.parameters) : "-").padStart(7)} params  ${(x.dtype ?? "-").padEnd(8)} ${humanBytes(x.bytes).padStart(10)}  ${x.detail}`;
            return x.state === "broken" ? `${head}UNUSABLE ${x.error}\n${" ".repeat(15)}fix: ${x.fix}` : `${head}${stats}`;
          }),
          ...(p!.expert2 ? [`  ${"transformer_2".padEnd(13)}${"WanTransformer3DModel".padEnd(26)} ${humanCount(p!.expert2.parameters).padStart(7)} params  ${(p!.expert2.dtype ?? "-").padEnd(8)} ${humanBytes(p!.expert2.bytes).padStart(10)}  Wan2.2 low-noise expert from t < ${p!.expert2.boundaryRatio} x 1000`] : []),
          `missing     ${p!.missing.length ? p!.missing.join(", ") : "none"}`,
          ...p!.capabilities.map((line, i) => `${i === 0 ? "can do      " : "            "}${line}`),
        ]
      : [];
    const textLine = m.textEncoder === "umt5"
      ? `umT5 (${p!.umt5!.num_layers} layers, d_model ${p!.umt5!.d_model}) over tokenizer.json, prompts padded to ${S} tokens, streamed layer by layer`
      : m.textEncoder === "word" ? "built-in word tokenizer + embedding encoder" : "no text encoder in this folder (takes prompt embeddings: --prompt-embeds, or the API)";
    const lines = [
      `model       ${m.name}  (${m.dir})${m.layout === "diffusers" ? "  diffusers WanPipeline folder" : ""}`,
      ...componentLines,
      `family      Wan2.1 transformer, ${c.num_layers} blocks, width ${dimOf(c)} (${c.num_attention_heads} heads x ${c.attention_head_dim}), ffn ${c.ffn_dim}`,
      `parameters  ${m.parameters.toLocaleString("en-US")} (${humanCount(m.parameters)})`,
      `patch       [${c.patch_size}]  in/out channels ${c.in_channels}/${c.out_channels}  text_dim ${c.text_dim}  freq_dim ${c.freq_dim}`,
      m.video && !m.pixelSpace ? `video       ${m.video.frames}x${m.video.height}x${m.video.width} (frames x height x width; the VAE's strides ${m.strides.temporal}x time, ${m.strides.spatial}x space)` : "",
      lat ? `latent      ${lat.channels}x${lat.frames}x${lat.height}x${lat.width} -> ${L} tokens (grid ${grid!.join("x")})` : "latent      (not declared: pass a shape through the API)",
      `text        ${textLine}`,
      `defaults    ${m.defaults.sampler}, ${m.defaults.steps} steps, guidance ${m.defaults.guidance}, shift ${m.defaults.shift}${m.layout === "diffusers" ? `, negative prompt: ${m.defaults.negativePrompt ? "WanPipeline's Wan negative prompt" : "empty"}` : ""}`,
      perStep !== null ? `MACs/step   ${humanCount(perStep)} (both CFG branches; per call: sa ${humanCount(macs!.sa)}, ca ${humanCount(macs!.ca)}, ffn ${humanCount(macs!.ffn)})` : "",
      perStep !== null ? `MACs/run    ${humanCount(perStep * m.defaults.steps)} at ${m.defaults.steps} steps` : "",
      pmem
        ? `memory      about ${humanBytes(pmem.total)} at the largest stage, ${pmem.stage} (transformer weights ${humanBytes(pmem.weights)}; then the largest of text encoder ${humanBytes(pmem.text)}, denoising ${humanBytes(pmem.denoise)}, VAE decode ${humanBytes(pmem.decode)})`
        : mem ? `memory      about ${humanBytes(mem.total)} (weights ${humanBytes(mem.weights)}, largest stage ${mem.stage} ${humanBytes(mem.activations)}, held tensors ${humanBytes(mem.state)}, threads ${humanBytes(mem.threads)})` : "",
      speeds.length
        ? `--speed     ${speeds.map((x) => `${x.target}x -> ${x.cache === "fewer-steps" ? "fewer steps" : `planned ${x.cache}`} (${x.psnr.toFixed(1)} dB at ${x.steps} steps)`).join(", ")}  [mixcache plan]`
        : "--speed     no speed table (run `mixcache plan --save` for this model)",
    ].filter(Boolean);
    process.stdout.write(lines.join("\n") + "\n");
    return 0;
  },
};
