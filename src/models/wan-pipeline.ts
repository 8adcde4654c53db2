/**
 * diffusers Wan2.1 pipeline folders (the `WanPipeline` layout of Wan-AI/Wan2.1-T2V-*-Diffusers),
 * inspected without reading a single weight:
 *
 *   model_index.json            _class_name "WanPipeline" and one [library, class] entry per component
 *   transformer/                WanTransformer3DModel: config.json + diffusion_pytorch_model*.safetensors
 *   text_encoder/               UMT5EncoderModel: config.json + model*.safetensors
 *   tokenizer/                  tokenizer.json (+ tokenizer_config.json)
 *   vae/                        AutoencoderKLWan: config.json + diffusion_pytorch_model.safetensors
 *   scheduler/                  scheduler_config.json: UniPCMultistepScheduler (-> unipc) or
 *                               FlowMatchEulerDiscreteScheduler (-> euler), with its flow shift
 *
 * Every component is reported with its class, parameter count (from the safetensors headers),
 * dtypes and bytes on disk, or why it cannot be used (missing, unreadable, or inconsistent with
 * another component: vocabulary, text width, latent channels). What a folder can still do follows
 * from that (`capabilities`): a transformer-only folder runs through the API with precomputed
 * prompt embeddings and gives latents.
 *
 * Also here: the mapping between a video size and its latent (the VAE's strides, Wan2.1's
 * 4k+1 frames), WanPipeline's defaults, and the memory estimate of a whole run (text encoder,
 * transformer, VAE decode).
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, MixCacheError, UsageError } from "../errors.ts";
import { openCheckpoint, type Checkpoint } from "../weights/safetensors.ts";
import type { SamplerName } from "../schedulers/types.ts";
import { dimOf, parseLatent, readWanConfig, type LatentRules, type WanConfig } from "./wan/config.ts";
import { estimateMemory, humanBytes, availableMemory } from "./wan/memory.ts";
import { EMBED_ALIAS, EMBED_KEY, innerDim, parseUmt5Config, type Umt5Config } from "./umt5/config.ts";
import { decodedFrames, decoderCacheBytes, decoderParameterCount, parseWanVaeConfig, spatialScale, temporalScale, type WanVaeConfig } from "./wan-vae/config.ts";
import type { LatentShape } from "./types.ts";

/**
 * WanPipeline's negative prompt for Wan2.1 (the English text of the diffusers WanPipeline usage
 * example, pipelines/wan/pipeline_wan.py; the original Wan repository uses the same list in
 * Chinese). diffusers itself falls back to "" when no negative prompt is given; MixCache uses this
 * one by default for diffusers Wan2.1 folders, as Wan's own examples do.
 */
export const WAN_NEGATIVE_PROMPT =
  "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three legs, many people in the background, walking backwards";

/** WanPipeline.__call__ defaults: 81 frames of 480 x 832, 16 fps. */
export const WAN_VIDEO_DEFAULTS = { frames: 81, height: 480, width: 832 } as const;
export const WAN_FPS = 16;

export const COMPONENT_NAMES = ["transformer", "text_encoder", "tokenizer", "vae", "scheduler"] as const;
export type ComponentName = (typeof COMPONENT_NAMES)[number];

/** Classes each component may have in model_index.json. */
const COMPONENT_CLASSES: Record<ComponentName, readonly string[]> = {
  transformer: ["WanTransformer3DModel"],
  text_encoder: ["UMT5EncoderModel"],
  tokenizer: ["T5TokenizerFast", "T5Tokenizer", "AutoTokenizer", "PreTrainedTokenizerFast"],
  vae: ["AutoencoderKLWan"],
  scheduler: ["UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"],
};

export interface VideoSize {
  frames: number;
  height: number;
  width: number;
}

/** The VAE's strides: video frames per latent frame after the first, pixels per latent pixel. */
export interface Strides {
  temporal: number;
  spatial: number;
}

/** The Wan2.1 VAE's strides (4x in time, 8x in space), used when a folder has no VAE. */
export const WAN21_STRIDES: Strides = { temporal: 4, spatial: 8 };
/** Pixel-space models (the embedded ones): the video is the latent. */
export const PIXEL_STRIDES: Strides = { temporal: 1, spatial: 1 };

export interface ComponentInfo {
  name: ComponentName;
  /** The component's folder. */
  dir: string;
  /** Found with its config and weights (it may still be unusable: see `error`). */
  present: boolean;
  /** Its class (config _class_name, model_index.json entry or tokenizer class). */
  className: string | null;
  /** Parameters in the checkpoint (from the safetensors headers), null without weights. */
  parameters: number | null;
  /** Storage dtypes of the checkpoint, e.g. "BF16" or "F32+BF16". */
  dtype: string | null;
  /** Bytes of the component's files on disk. */
  bytes: number;
  /** One line: shape of the component (layers, width, vocabulary, shift). */
  detail: string;
  /** ok; missing (absent from the folder); broken (present but unreadable or inconsistent). */
  state: "ok" | "missing" | "broken";
  /** Why it cannot be used: missing, unreadable, or inconsistent with another component. */
  error: MixCacheError | null;
}

export interface SchedulerInfo {
  className: string;
  sampler: SamplerName;
  shift: number;
}

export interface WanPipelineInfo {
  dir: string;
  /** model_index.json's _class_name ("WanPipeline"). */
  className: string;
  components: Record<ComponentName, ComponentInfo>;
  umt5: Umt5Config | null;
  vae: WanVaeConfig | null;
  scheduler: SchedulerInfo | null;
  /** Token ids of tokenizer.json (its largest id + 1), null without a tokenizer. */
  tokenizerVocab: number | null;
  /** Components that are absent or unusable. */
  missing: ComponentName[];
  /** What this folder can do, one line each. */
  capabilities: string[];
  /** Wan2.2 two-expert folders: the low-noise expert (transformer_2/) and where it takes over. */
  expert2: Expert2Info | null;
}

/**
 * Wan2.2 A14B: transformer/ is the high-noise expert, transformer_2/ the low-noise one; diffusers
 * WanPipeline runs transformer while t >= boundary_ratio x 1000, then transformer_2 (with
 * guidance_scale_2, default guidance_scale).
 */
export interface Expert2Info {
  dir: string;
  config: WanConfig;
  boundaryRatio: number;
  parameters: number;
  bytes: number;
  dtype: string | null;
}

type Json = Record<string, unknown>;

function readJson(path: string, what: string, fix: string): Json {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(e as Error).message}`, fix);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${what} ${path} is not valid JSON: ${(e as Error).message}`, fix);
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new ConfigError(`${what} ${path}: expected a JSON object`, fix);
  return v as Json;
}

/** Bytes of every regular file in a folder (not recursive). */
function folderBytes(dir: string): number {
  let n = 0;
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isFile()) n += statSync(join(dir, e.name)).size;
  } catch {
    return 0;
  }
  return n;
}

/** Parameters, dtypes and file bytes of a checkpoint, from its headers. */
function checkpointStats(ck: Checkpoint): { parameters: number; dtype: string; bytes: number } {
  let parameters = 0;
  const dtypes = new Set<string>();
  for (const k of ck.keys()) {
    const i = ck.info(k);
    parameters += i.shape.reduce((a, b) => a * b, 1);
    dtypes.add(i.dtype);
  }
  let bytes = 0;
  for (const f of ck.files) bytes += statSync(f).size;
  return { parameters, dtype: [...dtypes].sort().join("+") || "-", bytes };
}

/** The WanPipeline folder of `dir`: model_index.json says so. */
export function isWanPipelineFolder(dir: string): boolean {
  return existsSync(join(dir, "model_index.json"));
}

/** model_index.json: a text-to-video Wan2.1 WanPipeline, its component classes. */
export function readModelIndex(dir: string): { className: string; entries: Partial<Record<ComponentName, string | null>>; boundaryRatio: number | null } {
  const path = join(dir, "model_index.json");
  const FIX = "point --model at a diffusers Wan2.1 text-to-video folder (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers)";
  const o = readJson(path, "model_index.json", FIX);
  const cls = o._class_name;
  if (cls !== "WanPipeline")
    throw new ConfigError(
      `${path}: _class_name is ${JSON.stringify(cls)}, not "WanPipeline"`,
      typeof cls === "string" && cls.startsWith("Wan") ? `${cls} (image-to-video, video-to-video, VACE) is not supported: only text-to-video WanPipeline folders are` : FIX,
    );
  // Wan2.2 A14B: a second expert and the boundary where it takes over (both or neither)
  const t2 = o.transformer_2;
  const hasT2 = t2 !== undefined && t2 !== null && !(Array.isArray(t2) && t2.every((v) => v === null));
  if (hasT2 && !(Array.isArray(t2) && t2.length === 2 && t2[1] === "WanTransformer3DModel"))
    throw new ConfigError(`${path}: transformer_2 must be ["diffusers", "WanTransformer3DModel"], got ${JSON.stringify(t2)}`, "use the model_index.json of a Wan2.2 text-to-video A14B folder");
  const br = o.boundary_ratio;
  const hasBr = br !== undefined && br !== null;
  if (hasT2 !== hasBr)
    throw new ConfigError(
      hasT2 ? `${path}: transformer_2 is set but boundary_ratio is not: the step where the low-noise expert takes over is unknown` : `${path}: boundary_ratio ${JSON.stringify(br)} is set without transformer_2`,
      hasT2 ? "set boundary_ratio (Wan2.2 T2V A14B: 0.875)" : "remove boundary_ratio (Wan2.1) or add the transformer_2 entry and folder (Wan2.2)",
    );
  if (hasBr && (typeof br !== "number" || !(br > 0 && br < 1)))
    throw new ConfigError(`${path}: boundary_ratio must be a number in (0, 1), got ${JSON.stringify(br)}`, "Wan2.2 T2V A14B uses 0.875");
  if (o.expand_timesteps === true) throw new ConfigError(`${path}: expand_timesteps is true (Wan2.2 TI2V-5B, per-token timesteps)`, "text-to-video Wan2.1 and Wan2.2 A14B folders are supported (expand_timesteps false)");
  const entries: Partial<Record<ComponentName, string | null>> = {};
  for (const name of COMPONENT_NAMES) {
    const e = o[name];
    if (e === undefined) continue;
    if (e === null || (Array.isArray(e) && e.length === 2 && e[0] === null && e[1] === null)) {
      entries[name] = null;
      continue;
    }
    if (!Array.isArray(e) || e.length !== 2 || typeof e[1] !== "string")
      throw new ConfigError(`${path}: ${name} must be a [library, class] pair, got ${JSON.stringify(e)}`, FIX);
    entries[name] = e[1];
  }
  return { className: cls, entries, boundaryRatio: hasBr ? (br as number) : null };
}

/**
 * A scheduler_config.json as a MixCache sampler: UniPCMultistepScheduler as Wan2.1 configures it
 * (flow sigmas, flow_prediction, bh2, order 2) -> "unipc"; FlowMatchEulerDiscreteScheduler without
 * dynamic shifting -> "euler". Other settings change the computation and are refused.
 */
export function parseSchedulerConfig(raw: Json, source: string): SchedulerInfo {
  const cls = raw._class_name;
  const bad = (field: string, want: string): never => {
    throw new ConfigError(`${source}: ${field} is ${JSON.stringify(raw[field])}, MixCache's ${cls === "UniPCMultistepScheduler" ? "unipc" : "euler"} sampler implements ${want}`, "use the scheduler_config.json of a Wan2.1 diffusers folder (UniPCMultistepScheduler with use_flow_sigmas, or FlowMatchEulerDiscreteScheduler)");
  };
  const expect = (field: string, want: unknown, absentOk = true) => {
    const v = raw[field];
    if (v === undefined && absentOk) return;
    if (JSON.stringify(v) !== JSON.stringify(want)) bad(field, JSON.stringify(want));
  };
  const shiftOf = (field: string): number => {
    const v = raw[field] ?? 1;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0)
      throw new ConfigError(`${source}: ${field} must be a number > 0, got ${JSON.stringify(raw[field])}`, "Wan2.1 uses 3.0 at 480p and 5.0 at 720p");
    return v;
  };
  if (cls === "UniPCMultistepScheduler") {
    expect("use_flow_sigmas", true, false);
    expect("prediction_type", "flow_prediction", false);
    expect("solver_order", 2);
    expect("solver_type", "bh2");
    expect("predict_x0", true);
    expect("final_sigmas_type", "zero");
    expect("lower_order_final", true);
    expect("thresholding", false);
    expect("num_train_timesteps", 1000);
    expect("steps_offset", 0);
    for (const f of ["use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"]) expect(f, false);
    if (raw.disable_corrector !== undefined && !(Array.isArray(raw.disable_corrector) && raw.disable_corrector.length === 0)) bad("disable_corrector", "[]");
    return { className: cls, sampler: "unipc", shift: shiftOf("flow_shift") };
  }
  if (cls === "FlowMatchEulerDiscreteScheduler") {
    expect("use_dynamic_shifting", false);
    expect("invert_sigmas", false);
    expect("stochastic_sampling", false);
    expect("num_train_timesteps", 1000);
    expect("shift_terminal", null);
    for (const f of ["use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"]) expect(f, false);
    return { className: cls, sampler: "euler", shift: shiftOf("shift") };
  }
  throw new ConfigError(`${source}: _class_name ${JSON.stringify(cls)} is not a supported scheduler`, "use UniPCMultistepScheduler (sampler unipc, Wan2.1's default) or FlowMatchEulerDiscreteScheduler (sampler euler)");
}

/** Token ids a tokenizer.json defines (largest id + 1), without building the tokenizer. */
function tokenizerVocabSize(json: Json): number {
  let max = -1;
  const model = json.model as Json | undefined;
  const vocab = model?.vocab;
  if (Array.isArray(vocab)) max = vocab.length - 1;
  else if (vocab && typeof vocab === "object") for (const id of Object.values(vocab as Record<string, number>)) if (typeof id === "number" && id > max) max = id;
  if (Array.isArray(json.added_tokens)) for (const t of json.added_tokens as Json[]) if (typeof t?.id === "number" && t.id > max) max = t.id;
  return max + 1;
}

function emptyComponent(name: ComponentName, dir: string): ComponentInfo {
  return { name, dir, present: false, className: null, parameters: null, dtype: null, bytes: 0, detail: "", state: "ok", error: null };
}

const missingError = (name: ComponentName, dir: string, what: string): UsageError =>
  new UsageError(`${name}/ is missing from ${dir} (${what})`, `copy the ${name}/ folder of the same Wan2.1 diffusers checkpoint into ${dir}`);

/**
 * Inspect a WanPipeline folder: model_index.json and every component's config and safetensors
 * headers. Throws only on a bad model_index.json (not a text-to-video Wan2.1 pipeline) or a bad
 * transformer; the other components carry their problem in `error`.
 */
export function inspectWanPipeline(dir: string, transformer: { dir: string; config: WanConfig }): WanPipelineInfo {
  const index = readModelIndex(dir);
  const comps = Object.fromEntries(COMPONENT_NAMES.map((n) => [n, emptyComponent(n, join(dir, n))])) as Record<ComponentName, ComponentInfo>;
  const classCheck = (name: ComponentName, cls: string | null) => {
    const listed = index.entries[name];
    const c = comps[name];
    c.className = cls ?? listed ?? null;
    if (listed && !COMPONENT_CLASSES[name].includes(listed) && !c.error)
      c.error = new ConfigError(`model_index.json: ${name} is ${listed}, expected ${COMPONENT_CLASSES[name].join(" or ")}`, "only Wan2.1 text-to-video components are supported");
  };
  const guard = (name: ComponentName, f: () => void) => {
    try {
      f();
    } catch (e) {
      if (!(e instanceof MixCacheError)) throw e;
      comps[name].error = e;
    }
  };

  // transformer (its config was read and validated by the caller)
  {
    const c = comps.transformer;
    c.dir = transformer.dir;
    const ck = openCheckpoint(transformer.dir);
    try {
      Object.assign(c, checkpointStats(ck), { present: true });
    } finally {
      ck.close();
    }
    const cfg = transformer.config;
    c.detail = `${cfg.num_layers} blocks, width ${dimOf(cfg)}, text_dim ${cfg.text_dim}, ${cfg.in_channels} latent channels, patch [${cfg.patch_size}]`;
    classCheck("transformer", "WanTransformer3DModel");
  }

  // Wan2.2: the low-noise expert, the same architecture as transformer/ (a mismatch is an error)
  let expert2: Expert2Info | null = null;
  if (index.boundaryRatio !== null) {
    const d2 = join(dir, "transformer_2");
    if (!existsSync(join(d2, "config.json")))
      throw new UsageError(`model_index.json names transformer_2 (Wan2.2's low-noise expert), but ${d2}/config.json is missing`, "copy the transformer_2/ folder of the same Wan2.2 checkpoint");
    const c2 = readWanConfig(join(d2, "config.json"));
    const c1 = transformer.config;
    for (const k of ["in_channels", "out_channels", "patch_size", "text_dim", "freq_dim"] as const)
      if (JSON.stringify(c1[k]) !== JSON.stringify(c2[k]))
        throw new ConfigError(`transformer_2/config.json: ${k} is ${JSON.stringify(c2[k])}, transformer/ has ${JSON.stringify(c1[k])}: the experts must take the same latents and text`, "use transformer/ and transformer_2/ of the same Wan2.2 checkpoint");
    const ck = openCheckpoint(d2);
    try {
      const st = checkpointStats(ck);
      expert2 = { dir: d2, config: c2, boundaryRatio: index.boundaryRatio, parameters: st.parameters ?? 0, bytes: st.bytes, dtype: st.dtype };
    } finally {
      ck.close();
    }
  }

  // text encoder
  let umt5: Umt5Config | null = null;
  let embedRows: number | null = null;
  guard("text_encoder", () => {
    const c = comps.text_encoder;
    if (!existsSync(join(c.dir, "config.json"))) {
      c.error = missingError("text_encoder", dir, "the umT5 encoder that turns prompts into embeddings");
      return;
    }
    const raw = readJson(join(c.dir, "config.json"), "text encoder config", "use the text_encoder/config.json of a Wan2.1 checkpoint");
    c.className = Array.isArray(raw.architectures) && typeof raw.architectures[0] === "string" ? raw.architectures[0] : null;
    umt5 = parseUmt5Config(raw, join(c.dir, "config.json"));
    const ck = openCheckpoint(c.dir);
    try {
      Object.assign(c, checkpointStats(ck), { present: true });
      const key = ck.has(EMBED_KEY) ? EMBED_KEY : ck.has(EMBED_ALIAS) ? EMBED_ALIAS : null;
      if (key) embedRows = ck.info(key).shape[0];
    } finally {
      ck.close();
    }
    const u = umt5 as Umt5Config;
    c.detail = `umT5 ${u.num_layers} layers, d_model ${u.d_model}, ${u.num_heads} heads x ${u.d_kv}, d_ff ${u.d_ff}, vocab ${u.vocab_size}`;
    if (u.d_model !== transformer.config.text_dim)
      throw new ConfigError(
        `the text encoder's output width d_model ${u.d_model} (text_encoder/config.json) does not match the transformer's text_dim ${transformer.config.text_dim}`,
        "use the text_encoder/ and transformer/ of the same Wan2.1 checkpoint (umT5-XXL: 4096)",
      );
    if (embedRows !== null && embedRows !== u.vocab_size)
      throw new ConfigError(`text_encoder/config.json says vocab_size ${u.vocab_size} but the embedding in its weights has ${embedRows} rows`, "use the config.json that came with these weights");
  });
  classCheck("text_encoder", comps.text_encoder.className);

  // tokenizer
  let tokenizerVocab: number | null = null;
  guard("tokenizer", () => {
    const c = comps.tokenizer;
    const file = join(c.dir, "tokenizer.json");
    if (!existsSync(file)) {
      c.error = missingError("tokenizer", dir, "tokenizer.json, which splits prompts into umT5 token ids");
      return;
    }
    const json = readJson(file, "tokenizer", "use the tokenizer/tokenizer.json of a Wan2.1 checkpoint");
    const cfgPath = join(c.dir, "tokenizer_config.json");
    const cfg = existsSync(cfgPath) ? readJson(cfgPath, "tokenizer config", "use the tokenizer_config.json of a Wan2.1 checkpoint") : {};
    c.className = typeof cfg.tokenizer_class === "string" ? cfg.tokenizer_class : null;
    tokenizerVocab = tokenizerVocabSize(json);
    c.present = true;
    c.bytes = folderBytes(c.dir);
    const model = (json.model as Json | undefined)?.type;
    c.detail = `${typeof model === "string" ? model : "?"} tokenizer, ${tokenizerVocab} token ids`;
    const u = umt5 as Umt5Config | null;
    if (u && tokenizerVocab > u.vocab_size)
      throw new ConfigError(
        `the tokenizer has ${tokenizerVocab} token ids but the text encoder's embedding has only ${u.vocab_size} rows (vocab_size): the two do not belong together`,
        "use the tokenizer/ and text_encoder/ folders of the same Wan2.1 checkpoint (umT5-XXL: 256384 embedding rows)",
      );
  });
  classCheck("tokenizer", comps.tokenizer.className);

  // VAE
  let vae: WanVaeConfig | null = null;
  guard("vae", () => {
    const c = comps.vae;
    if (!existsSync(join(c.dir, "config.json"))) {
      c.error = missingError("vae", dir, "the VAE decoder that turns latents into video frames");
      return;
    }
    const raw = readJson(join(c.dir, "config.json"), "VAE config", "use the vae/config.json of a Wan2.1 checkpoint");
    c.className = typeof raw._class_name === "string" ? raw._class_name : null;
    vae = parseWanVaeConfig(raw, join(c.dir, "config.json"));
    const ck = openCheckpoint(c.dir);
    try {
      Object.assign(c, checkpointStats(ck), { present: true });
    } finally {
      ck.close();
    }
    const v = vae as WanVaeConfig;
    c.detail = `z_dim ${v.z_dim}, base_dim ${v.decoder_base_dim ?? v.base_dim}, strides ${temporalScale(v)}x time / ${spatialScale(v)}x space, decoder ${decoderParameterCount(v).toLocaleString("en-US")} parameters`;
    const tc = transformer.config;
    if (v.z_dim !== tc.in_channels || v.z_dim !== tc.out_channels)
      throw new ConfigError(
        `the VAE's latent channels z_dim ${v.z_dim} do not match the transformer's in/out channels ${tc.in_channels}/${tc.out_channels}`,
        "use the vae/ and transformer/ of the same Wan2.1 checkpoint (16 latent channels)",
      );
  });
  classCheck("vae", comps.vae.className);

  // scheduler
  let scheduler: SchedulerInfo | null = null;
  guard("scheduler", () => {
    const c = comps.scheduler;
    const file = join(c.dir, "scheduler_config.json");
    if (!existsSync(file)) {
      c.error = missingError("scheduler", dir, `the sampler and its flow shift; without it: unipc, shift 3 (Wan2.1 480p)`);
      return;
    }
    const raw = readJson(file, "scheduler config", "use the scheduler/scheduler_config.json of a Wan2.1 checkpoint");
    c.className = typeof raw._class_name === "string" ? raw._class_name : null;
    c.present = true;
    c.bytes = folderBytes(c.dir);
    scheduler = parseSchedulerConfig(raw, file);
    const s = scheduler as SchedulerInfo;
    c.detail = `sampler ${s.sampler}, shift ${s.shift}`;
  });
  classCheck("scheduler", comps.scheduler.className);

  for (const c of Object.values(comps)) c.state = !c.error ? "ok" : c.error instanceof UsageError ? "missing" : "broken";
  const usable = (n: ComponentName) => comps[n].state === "ok";
  const missing = COMPONENT_NAMES.filter((n) => !usable(n));
  const text = usable("text_encoder") && usable("tokenizer");
  const capabilities: string[] = [];
  if (text && usable("vae")) capabilities.push("text to video from the CLI and the API (prompt -> umT5 -> transformer -> VAE -> video)");
  else {
    capabilities.push(
      text
        ? "prompts are encoded here (umT5)"
        : "no prompt encoding: pass precomputed embeddings ([S, text_dim]: --prompt-embeds / --negative-prompt-embeds, or textEmbedding / negativeEmbedding in the API)",
    );
    capabilities.push(usable("vae") ? "latents are decoded to video by the VAE" : "no VAE: the result is the latent (a .safetensors output, or generate({ decode: false }) in the API)");
  }
  if (!usable("scheduler")) capabilities.push("no usable scheduler config: sampler unipc with shift 3 (Wan2.1 480p) unless --sampler / --shift say otherwise");
  if (expert2) capabilities.push(`Wan2.2 two experts: transformer/ while t >= ${expert2.boundaryRatio} x 1000, then transformer_2/; every cache keeps its state per expert`);
  return {
    dir,
    className: index.className,
    components: comps,
    umt5: usable("text_encoder") ? umt5 : null,
    vae: usable("vae") ? vae : null,
    scheduler: usable("scheduler") ? scheduler : null,
    tokenizerVocab,
    missing,
    capabilities,
    expert2,
  };
}

// ---------------------------------------------------------------------------------------------
// video size <-> latent

export function stridesOf(vae: WanVaeConfig | null, pixelSpace: boolean): Strides {
  if (pixelSpace) return PIXEL_STRIDES;
  return vae ? { temporal: temporalScale(vae), spatial: spatialScale(vae) } : WAN21_STRIDES;
}

/** The video size a latent decodes to. */
export function videoForLatent(s: Strides, l: LatentShape): VideoSize {
  return { frames: 1 + s.temporal * (l.frames - 1), height: l.height * s.spatial, width: l.width * s.spatial };
}

/** Nearest values of the form a k + b around v (for fix-it messages). */
function nearest(v: number, a: number, b: number): number[] {
  const lo = Math.floor((v - b) / a) * a + b;
  return [lo, lo + a].filter((x) => x >= Math.max(1, b));
}

/**
 * The latent [C, F, H, W] of a video size, checked against the VAE's strides and the patch size:
 * frames = 1 + temporal (F - 1) (Wan2.1: 4k + 1), height and width multiples of spatial x patch
 * (Wan2.1: 8 x 2 = 16). A UsageError with the nearest valid sizes otherwise.
 */
export function latentForVideo(c: LatentRules, s: Strides, v: VideoSize, source = "video size"): LatentShape {
  const int = (k: keyof VideoSize) => {
    const x = v[k];
    if (typeof x !== "number" || !Number.isInteger(x) || x < 1) throw new UsageError(`${source}: ${k} must be a positive integer, got ${JSON.stringify(x)}`);
    return x;
  };
  const frames = int("frames"), height = int("height"), width = int("width");
  const why = s.temporal > 1 ? `the VAE's temporal stride ${s.temporal}: frames = ${s.temporal}k + 1` : `the patch size ${c.patch_size[0]}`;
  if ((frames - 1) % s.temporal !== 0)
    throw new UsageError(`${source}: ${frames} frames cannot be made by the VAE (${why})`, `use ${nearest(frames, s.temporal, 1).join(" or ")} frames (Wan2.1: 81)`);
  const F = (frames - 1) / s.temporal + 1;
  if (F % c.patch_size[0] !== 0) {
    const step = s.temporal * c.patch_size[0];
    const offset = (((1 - s.temporal) % step) + step) % step; // frames = temporal (patch m - 1) + 1
    throw new UsageError(`${source}: ${frames} frames give ${F} latent frames, not a multiple of the patch size ${c.patch_size[0]}`, `use frames of the form ${step}k${offset ? ` + ${offset}` : ""}`);
  }
  for (const [k, x, p] of [["height", height, c.patch_size[1]], ["width", width, c.patch_size[2]]] as const) {
    const m = s.spatial * p;
    if (x % m !== 0)
      throw new UsageError(
        `${source}: ${k} ${x} is not a multiple of ${m}${s.spatial > 1 ? ` (the VAE's spatial stride ${s.spatial} x the patch size ${p})` : ` (the patch size ${p})`}`,
        `use ${nearest(x, m, 0).filter((y) => y > 0).join(" or ")}`,
      );
  }
  try {
    return parseLatent({ channels: c.in_channels, frames: F, height: height / s.spatial, width: width / s.spatial }, c, `${source} ${frames}x${height}x${width}: latent`);
  } catch (e) {
    if (e instanceof MixCacheError) throw new UsageError(e.message.split("\n")[0], e.fix);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// memory of a whole run

export interface PipelineMemoryEstimate {
  /** Transformer weights, resident through the run. */
  weights: number;
  /** The text encoder's peak while it runs (streamed: one layer's weights twice + activations). */
  text: number;
  /** The transformer's activations, held tensors and threads at this latent. */
  denoise: number;
  /** The VAE decode's peak (decoder weights, temporal caches, working set, the output video). */
  decode: number;
  /** weights + the largest of text, denoise, decode. */
  total: number;
  stage: "text" | "denoise" | "decode";
  tokens: number;
}

/** Peak bytes of the streamed umT5 encoder on `tokens` real tokens (two prompts). */
export function umt5PeakBytes(u: Umt5Config, tokens = 64): number {
  const D = u.d_model, I = innerDim(u);
  const layer = 4 * (4 * I * D + 3 * u.d_ff * D + u.relative_attention_num_buckets * u.num_heads + 2 * D);
  const act = 4 * tokens * (8 * D + 3 * u.d_ff + 2 * u.num_heads * tokens);
  return 2 * layer + act; // graph bytes + onnxruntime's copy of one layer (src/models/umt5/encoder.ts)
}

/**
 * Peak bytes of decoding `latent` with the VAE (untiled, or tiled with diffusers' 256 px tiles).
 * An empirical model of the peak RSS of src/models/wan-vae/bench.ts above the bare process:
 * 1.5x the decoder's fp32 weights (its sessions), the temporal caches (decoderCacheBytes), and a
 * working set of a + b x output pixels per chunk at 96 top channels (first, 1-frame chunk: 47 MB
 * + 5.0 KB/px; next, 4-frame chunks: 461 MB + 10.2 KB/px), plus the output video and, tiled, two
 * rows of whole-clip tiles. Fitted to measurements at 96x160 and 192x320 with one and two latent
 * frames (1 thread); at 480x832 it gives 5.8 GiB for the first chunk, where 4.95 GiB was measured,
 * and 8.5 GiB for 81 frames (extrapolated; tiled: 3.0 GiB, ~3.5 GiB measured).
 */
export function vaeDecodePeakBytes(v: WanVaeConfig, latent: LatentShape, tile = false): number {
  const s = spatialScale(v);
  const scale = ((v.decoder_base_dim ?? v.base_dim) * v.dim_mult[0]) / 96;
  const frames = decodedFrames(v, latent.frames);
  const video = 4 * v.out_channels * frames * latent.height * s * latent.width * s;
  const th = tile ? Math.min(latent.height, 256 / s) : latent.height;
  const tw = tile ? Math.min(latent.width, 256 / s) : latent.width;
  const px = th * s * tw * s;
  const working = scale * (latent.frames > 1 ? 461e6 + 10_160 * px : 47e6 + 5_030 * px);
  const tiles = tile ? 4 * v.out_channels * frames * px * 2 * Math.ceil((latent.width * s) / 192) : 0;
  return 1.5 * 4 * decoderParameterCount(v) + decoderCacheBytes(v, th, tw) + working + video + tiles;
}

export function estimatePipelineMemory(
  c: WanConfig,
  latent: LatentShape,
  o: { threads?: number; umt5?: Umt5Config | null; vae?: WanVaeConfig | null; decode?: boolean; tile?: boolean; textTokens?: number; expert2?: WanConfig | null; dtype?: "float32" | "float16" } = {},
): PipelineMemoryEstimate {
  const t = estimateMemory(c, latent, o.threads, o.textTokens, o.dtype);
  // Wan2.2: both experts stay loaded (the switch happens once per run, mid-way)
  if (o.expert2) t.weights += estimateMemory(o.expert2, latent, o.threads, o.textTokens, o.dtype).weights;
  const text = o.umt5 ? umt5PeakBytes(o.umt5) : 0;
  const denoise = t.activations + t.state + t.threads;
  const decode = o.vae && o.decode !== false ? vaeDecodePeakBytes(o.vae, latent, o.tile) : 0;
  const stage = text >= denoise && text >= decode ? "text" : denoise >= decode ? "denoise" : "decode";
  return { weights: t.weights, text, denoise, decode, total: t.weights + Math.max(text, denoise, decode), stage, tokens: t.tokens };
}

/** Refuse a run whose whole-pipeline estimate exceeds the available memory (`loaded`: weights are in). */
export function checkPipelineMemory(
  c: WanConfig,
  latent: LatentShape,
  o: Parameters<typeof estimatePipelineMemory>[2] & { loaded?: boolean; available?: number; model?: string },
): PipelineMemoryEstimate {
  const e = estimatePipelineMemory(c, latent, o);
  const need = o.loaded ? e.total - e.weights : e.total;
  const avail = o.available ?? availableMemory();
  if (need > avail) {
    const size = `${latent.channels}x${latent.frames}x${latent.height}x${latent.width}`;
    const parts = [o.loaded ? "" : `transformer weights ${humanBytes(e.weights)}`, e.text ? `text encoder ${humanBytes(e.text)}` : "", `denoising ${humanBytes(e.denoise)}`, e.decode ? `VAE decode ${humanBytes(e.decode)}` : ""].filter(Boolean);
    throw new MixCacheError(
      "MEMORY",
      `a run of ${o.model ? `model ${o.model}` : "this model"} at latent ${size} (${e.tokens.toLocaleString("en-US")} tokens) needs about ${humanBytes(need)} at its largest stage (${e.stage}), more than the ${humanBytes(avail)} available (${parts.join(", ")})`,
      e.stage === "decode"
        ? "decode with spatial tiling (--tile), or use fewer frames or a smaller height/width, or a machine with more free memory"
        : "use a smaller video: fewer frames or a smaller height/width (activations grow with the tokens), fewer --threads, or a machine with more free memory",
    );
  }
  return e;
}
