/**
 * Model folders. Three layouts load through the same code path:
 *  - a MixCache model folder (the embedded models): transformer/, text_encoder/ (word embedding
 *    encoder), tokenizer/, mixcache.json (latent shape and sampler defaults), cache_profiles/;
 *  - a diffusers Wan2.1 pipeline folder (model_index.json, WanPipeline): transformer/,
 *    text_encoder/ (umT5), tokenizer/ (tokenizer.json), vae/, scheduler/ (wan-pipeline.ts);
 *    components may be missing: without text encoder it takes prompt embeddings, without VAE it
 *    gives latents;
 *  - a bare transformer folder (config.json + safetensors, possibly sharded): embeddings in,
 *    latents out, through the API.
 * Every config and safetensors header is read and checked before any weight loads.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { MixCacheError, UsageError } from "../errors.ts";
import type { BackendOptions } from "../backend/ort.ts";
import { openCheckpoint, validateKeys } from "../weights/safetensors.ts";
import { EmbeddingTextEncoder } from "../text/encoder.ts";
import { WordTokenizer } from "../text/tokenizer.ts";
import { expectedShapes, parameterCount, readWanConfig, type LatentRules, type WanConfig } from "./wan/config.ts";
import { WanModel } from "./wan/model.ts";
import { availableMemory, checkMemory, humanBytes } from "./wan/memory.ts";
import { validateModelMeta } from "./meta.ts";
import { checkDevice, checkThreads } from "../backend/ort.ts";
import { WanTextEncoder } from "./umt5/wan-text.ts";
import { checkWanVaeFolder, decodeChunkCount, loadWanVaeDecoder, type DecodedVideo, type TileOptions, type WanVaeDecoder } from "./wan-vae/decoder.ts";
import type { HunyuanVaeConfig } from "./hunyuan-vae/config.ts";
import { HunyuanTextEncoder, checkHunyuanTextDims, type HunyuanTextInfo } from "./hunyuan-text/index.ts";
import { checkHunyuanVaeFolder, hunyuanDecodePassCount, hunyuanVaeDecodePeakBytes, loadHunyuanVaeDecoder, type HunyuanVaeDecoder } from "./hunyuan-vae/decoder.ts";
import type { WanVaeConfig } from "./wan-vae/config.ts";
import {
  COMPONENT_NAMES, WAN_FPS, WAN_NEGATIVE_PROMPT, WAN_VIDEO_DEFAULTS, checkPipelineMemory, inspectWanPipeline, isWanPipelineFolder, latentForVideo,
  stridesOf, videoForLatent, type Strides, type VideoSize, type WanPipelineInfo,
} from "./wan-pipeline.ts";
import type { LatentShape } from "./types.ts";
import type { DiTModel } from "./family.ts";
import { readHunyuanConfig, expectedShapes as hunyuanShapes, parameterCount as hunyuanParameterCount, type HunyuanConfig } from "./hunyuan/config.ts";
import { HunyuanVideoModel } from "./hunyuan/model.ts";
import {
  HUNYUAN_EMBEDDED_GUIDANCE, HUNYUAN_FPS, HUNYUAN_GRID_KEYS, HUNYUAN_STRIDES, HUNYUAN_TEXT_TOKENS, HUNYUAN_VIDEO_DEFAULTS, estimateHunyuanMemory, inspectHunyuanFolder,
  isHunyuanTransformer,
} from "./hunyuan/folder.ts";
import type { TextEmbedding } from "../text/types.ts";
import type { SamplerName, SigmaSchedule } from "../schedulers/types.ts";

export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const DEFAULT_MODEL_DIR = join(PACKAGE_ROOT, "models", "reference");

/** The embedded models, by name (`--model reference|textures|DIR`): folders under models/. */
export const MODEL_NAMES = ["reference", "textures"] as const;

/**
 * A model argument to a folder: an embedded model's name resolves to models/NAME; anything else is
 * a path. A local folder that happens to carry an embedded name is reached as ./NAME.
 */
export function resolveModelDir(nameOrDir: string = "reference"): string {
  if ((MODEL_NAMES as readonly string[]).includes(nameOrDir)) return join(PACKAGE_ROOT, "models", nameOrDir);
  return resolve(nameOrDir);
}

export interface ModelDefaults {
  sampler: SamplerName;
  steps: number;
  guidance: number;
  shift: number;
  negativePrompt: string;
  /** Sigma grid of the family's pipeline (HunyuanVideo: "linear"); absent: the sampler's own. */
  sigmas?: SigmaSchedule;
  /** The distilled guidance input of families that have one (HunyuanVideo: 6.0). */
  embeddedGuidance?: number;
}

/** mixcache: an embedded-model folder; diffusers: a WanPipeline folder; transformer: a bare transformer. */
export type ModelLayout = "mixcache" | "diffusers" | "transformer";

/** The transformer families a folder can hold (family.ts; one folder each under models/). */
export type FamilyName = "wan" | "hunyuan-video";

/** What every family's config gives the layers above: channels, patch, text width. */
export interface FamilyDims {
  inChannels: number;
  outChannels: number;
  /** [t, h, w] */
  patch: [number, number, number];
  textDim: number;
  /** Width of the pooled text vector the family also takes (HunyuanVideo: CLIP-L 768), else null. */
  pooledDim: number | null;
}

interface ModelInfoBase {
  name: string;
  dir: string;
  layout: ModelLayout;
  transformerDir: string;
  dims: FamilyDims;
  parameters: number;
  /** The default latent [C, F, H, W] (diffusers folders: the latent of the default video size). */
  latent: LatentShape | null;
  /** The default video size (diffusers folders: WanPipeline's 81 x 480 x 832; pixel-space models: the latent). */
  video: VideoSize | null;
  /** Video frames per latent frame after the first and pixels per latent pixel (the VAE's; 1 in pixel space). */
  strides: Strides;
  fps: number;
  pixelSpace: boolean;
  defaults: ModelDefaults;
  /** Prompts can be encoded here (a usable text encoder and tokenizer). */
  hasTextEncoder: boolean;
  /** Which text encoder: the embedded models' word embedding encoder, umT5 (Wan folders), or
   * HunyuanVideo's LLaVA-Llama-3 + CLIP-L pair. */
  textEncoder: "word" | "umt5" | "llama+clip" | null;
  /** The components of a diffusers folder, null for the other layouts. */
  pipeline: WanPipelineInfo | null;
  profilesDir: string;
  vocabPath: string | null;
}

export interface WanModelInfo extends ModelInfoBase {
  family: "wan";
  config: WanConfig;
  /** The VAE decoder's config (a diffusers folder with a usable vae/), null otherwise. */
  vae: WanVaeConfig | null;
}

export interface HunyuanModelInfo extends ModelInfoBase {
  family: "hunyuan-video";
  config: HunyuanConfig;
  /** The two text encoders as read from their headers (null: not all of text_encoder/, tokenizer/,
   * text_encoder_2/, tokenizer_2/ are in the folder). */
  text: HunyuanTextInfo | null;
  /** AutoencoderKLHunyuanVideo's config (a folder with a usable vae/), null otherwise. */
  vae: HunyuanVaeConfig | null;
}

/** A model folder as read without loading weights; `family` tells which config it holds. */
export type ModelInfo = WanModelInfo | HunyuanModelInfo;

export type LoadedModel = ModelInfo & LoadedParts;

interface LoadedParts {
  transformer: DiTModel;
  /** Wan2.2: the low-noise expert (transformer_2/), which runs once t < boundaryRatio x 1000. */
  transformer2: DiTModel | null;
  boundaryRatio: number | null;
  /** Encode a prompt with the embedded models' word encoder (synchronous; umT5 models: encodePrompts). */
  encodePrompt(prompt: string): TextEmbedding;
  /** Encode prompts with the model's text encoder, in one pass over the encoder (umT5: streamed layer by layer). */
  encodePrompts(prompts: readonly string[], opts?: { onLayer?: (done: number, total: number) => void }): Promise<TextEmbedding[]>;
  /** Progress units of an encodePrompts call that runs the encoder (umT5: layers + final norm; the word encoder: 0). */
  encodeUnits: number;
  /** The word tokenizer of the embedded models (null for diffusers folders). */
  tokenizer: WordTokenizer | null;
  /** WanPipeline's text path (tokenizer.json + umT5), for diffusers folders with both. */
  umt5: WanTextEncoder | null;
  /** Progress units (decoder chunks or passes) of decoding a latent of this shape. */
  decodeUnits(shape: LatentShape, tile: boolean | TileOptions): number;
  /** Decode a latent [C, F, H, W] to video [3, T, H', W'] in [-1, 1] with the folder's VAE (loaded on first use). */
  decodeLatent(latent: Float32Array, shape: LatentShape, opts?: { tile?: boolean | TileOptions; onChunk?: (done: number, total: number) => void }): Promise<DecodedVideo>;
  release(): Promise<void>;
}

export interface LoadOptions extends BackendOptions {
  /** Check the memory of a run at this latent before loading (default: the model's own latent;
   * diffusers folders: the weights and the text encoder only, generate() checks its size). */
  latent?: LatentShape;
  /** Whether that run decodes with the VAE (memory check; default true when the folder has one). */
  decode?: boolean;
  /** VAE spatial tiling for that run (memory check). */
  tile?: boolean;
  /** Cache umT5 prompt embeddings in this folder (one file per prompt; none by default). */
  promptCacheDir?: string;
  /** Precision of the transformer blocks' linear layers (Wan only; default float32): float16
   * stores those weights as float16 and multiplies in float16 (WanGraphOptions.dtype). */
  dtype?: "float32" | "float16";
}

export const DTYPES = ["float32", "float16"] as const;

/** Check a dtype option for a model before anything loads: a known value, float16 for Wan only. */
export function checkDtype(dtype: string | undefined, info: ModelInfo): asserts dtype is LoadOptions["dtype"] {
  if (dtype !== undefined && !(DTYPES as readonly string[]).includes(dtype))
    throw new MixCacheError("USAGE", `unknown dtype ${JSON.stringify(dtype)}`, `use one of: ${DTYPES.join(", ")}`);
  if (dtype === "float16" && info.family !== "wan")
    throw new MixCacheError("USAGE", `model ${info.name} is a HunyuanVideo transformer: float16 compute is built for Wan transformers only`, "leave --dtype at float32 for HunyuanVideo");
}

const WAN_DEFAULTS: ModelDefaults = { sampler: "unipc", steps: 50, guidance: 5, shift: 3, negativePrompt: "" };

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new MixCacheError("CONFIG", `cannot read ${path}: ${(e as Error).message}`, "check the model folder");
  }
}

/** Resolve a model folder and read its description without loading weights. */
export function inspectModel(dir: string = DEFAULT_MODEL_DIR): ModelInfo {
  const abs = resolveModelDir(dir);
  if (!existsSync(abs)) {
    const name = MODEL_NAMES.find((n) => abs === join(PACKAGE_ROOT, "models", n));
    if (name)
      throw new MixCacheError("MODEL_NOT_FOUND", `the embedded ${name} model is not in this checkout (${abs})`, `train and export it: /usr/bin/python3 tools/train.py${name === "reference" ? "" : ` --dataset ${name}`}, then /usr/bin/python3 tools/export.py${name === "reference" ? "" : ` --dataset ${name}`} (see tools/README.md), or pass --model DIR`);
    throw new MixCacheError("MODEL_NOT_FOUND", `model folder ${abs} does not exist`, `pass --model with ${MODEL_NAMES.join(" or ")} or a MixCache or diffusers Wan2.1 folder`);
  }
  const transformerDir = existsSync(join(abs, "transformer", "config.json")) ? join(abs, "transformer") : abs;
  // the family, from the transformer's _class_name, before any family's strict reader runs
  if (isHunyuanTransformer(join(transformerDir, "config.json"))) return inspectHunyuan(abs, transformerDir);
  const diffusers = isWanPipelineFolder(abs);
  if (!existsSync(join(transformerDir, "config.json"))) {
    if (diffusers) {
      const present = COMPONENT_NAMES.filter((n) => existsSync(join(abs, n)));
      throw new MixCacheError(
        "MODEL_NOT_FOUND",
        `${abs} is a WanPipeline folder without transformer/config.json: nothing can be generated (present: ${present.join(", ") || "none"}; missing: ${COMPONENT_NAMES.filter((n) => !present.includes(n)).join(", ")})`,
        "copy the transformer/ folder (config.json + diffusion_pytorch_model*.safetensors) of the Wan2.1 checkpoint into it",
      );
    }
    throw new MixCacheError("MODEL_NOT_FOUND", `no transformer config.json in ${abs} or ${join(abs, "transformer")}`, "point --model at a MixCache model folder or a diffusers Wan2.1 folder");
  }
  const config = readWanConfig(join(transformerDir, "config.json"));
  const metaPath = join(abs, "mixcache.json");
  const meta = existsSync(metaPath) ? readJson(metaPath) : null;
  validateModelMeta(meta, config, metaPath);
  const pipeline = diffusers ? inspectWanPipeline(abs, { dir: transformerDir, config }) : null;
  const layout: ModelLayout = diffusers ? "diffusers" : existsSync(metaPath) || transformerDir !== abs ? "mixcache" : "transformer";
  const base: ModelDefaults = pipeline
    ? { ...WAN_DEFAULTS, sampler: pipeline.scheduler?.sampler ?? WAN_DEFAULTS.sampler, shift: pipeline.scheduler?.shift ?? WAN_DEFAULTS.shift, negativePrompt: WAN_NEGATIVE_PROMPT }
    : WAN_DEFAULTS;
  const d = (meta?.defaults ?? {}) as Record<string, unknown>;
  const defaults: ModelDefaults = {
    sampler: (d.sampler as SamplerName) ?? base.sampler,
    steps: (d.steps as number) ?? base.steps,
    guidance: (d.guidance as number) ?? base.guidance,
    shift: (d.shift as number) ?? base.shift,
    negativePrompt: (d.negative_prompt as string) ?? base.negativePrompt,
  };
  const pixelSpace = meta?.pixel_space === true;
  const vae = pipeline?.vae ?? null;
  const strides = stridesOf(vae, pixelSpace);
  let latent = (meta?.latent as LatentShape) ?? null;
  let video: VideoSize | null = latent ? videoForLatent(strides, latent) : null;
  if (!latent && pipeline) {
    try {
      latent = latentForVideo(config, strides, WAN_VIDEO_DEFAULTS, "WanPipeline's default video size");
      video = { ...WAN_VIDEO_DEFAULTS };
    } catch (e) {
      if (!(e instanceof MixCacheError)) throw e; // a transformer that cannot take 81 x 480 x 832: sizes come with each run
    }
  }
  const textEncoder = pipeline
    ? pipeline.components.text_encoder.state === "ok" && pipeline.components.tokenizer.state === "ok" ? "umt5" : null
    : existsSync(join(abs, "text_encoder", "model.safetensors")) && existsSync(join(abs, "tokenizer", "tokenizer.json")) ? "word" : null;
  return {
    name: (meta?.name as string) ?? abs.split("/").pop()!,
    dir: abs,
    layout,
    transformerDir,
    family: "wan",
    config,
    dims: { inChannels: config.in_channels, outChannels: config.out_channels, patch: [...config.patch_size] as [number, number, number], textDim: config.text_dim, pooledDim: null },
    parameters: parameterCount(config),
    latent,
    video,
    strides,
    fps: (meta?.fps as number) ?? (pipeline ? WAN_FPS : 16),
    pixelSpace,
    defaults,
    hasTextEncoder: textEncoder !== null,
    textEncoder,
    vae,
    pipeline,
    profilesDir: join(abs, "cache_profiles"),
    vocabPath: existsSync(join(abs, "vocab.json")) ? join(abs, "vocab.json") : null,
  };
}

/** What latent sizes of this model are checked against (channels, patch; Wan: the RoPE table length). */
export function latentRules(info: ModelInfo): LatentRules {
  return info.family === "wan" ? info.config : { in_channels: info.dims.inChannels, patch_size: info.dims.patch };
}

/** A HunyuanVideo pipeline or transformer folder: transformer and scheduler, and the text encoders and VAE where present. */
function inspectHunyuan(abs: string, transformerDir: string): HunyuanModelInfo {
  const config = readHunyuanConfig(join(transformerDir, "config.json"));
  const folder = inspectHunyuanFolder(abs);
  const dims: FamilyDims = {
    inChannels: config.in_channels, outChannels: config.out_channels, patch: [config.patch_size_t, config.patch_size, config.patch_size],
    textDim: config.text_embed_dim, pooledDim: config.pooled_projection_dim,
  };
  // the VAE: its config and every decoder key from the headers (a broken vae/ is an error here)
  const vae = existsSync(join(abs, "vae", "config.json")) ? checkHunyuanVaeFolder(abs).config : null;
  if (vae && vae.latent_channels !== config.out_channels)
    throw new MixCacheError("CONFIG", `vae/config.json: latent_channels ${vae.latent_channels} != the transformer's out_channels ${config.out_channels}`, "use the vae/ and transformer/ of the same HunyuanVideo checkpoint");
  // the text encoders: all four folders, checked from configs, headers and tokenizers (no weights)
  const textDirs = ["text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"];
  const text = textDirs.every((d) => existsSync(join(abs, d))) ? HunyuanTextEncoder.inspect(abs) : null;
  if (text && (text.text_encoder.hiddenSize !== config.text_embed_dim || text.text_encoder_2.hiddenSize !== config.pooled_projection_dim))
    checkHunyuanTextDims({ dims: { text: text.text_encoder.hiddenSize, pooled: text.text_encoder_2.hiddenSize } }, config);
  const strides = vae ? { temporal: vae.temporal_compression_ratio, spatial: vae.spatial_compression_ratio } : { ...HUNYUAN_STRIDES };
  const v = HUNYUAN_VIDEO_DEFAULTS;
  const latent: LatentShape = { channels: config.in_channels, frames: (v.frames - 1) / strides.temporal + 1, height: v.height / strides.spatial, width: v.width / strides.spatial };
  return {
    name: abs.split("/").pop()!,
    dir: abs,
    layout: folder.pipeline ? "diffusers" : "transformer",
    transformerDir,
    family: "hunyuan-video",
    config,
    dims,
    parameters: hunyuanParameterCount(config),
    latent,
    video: { ...v },
    strides,
    fps: HUNYUAN_FPS,
    pixelSpace: false,
    defaults: { sampler: "euler", steps: 50, guidance: 1, shift: folder.shift, negativePrompt: "", sigmas: "linear", embeddedGuidance: HUNYUAN_EMBEDDED_GUIDANCE },
    hasTextEncoder: text !== null,
    textEncoder: text ? "llama+clip" : null,
    text,
    vae,
    pipeline: null,
    profilesDir: join(abs, "cache_profiles"),
    vocabPath: null,
  };
}

/**
 * Throw the error of a component that is present but cannot be used (an unreadable config, a
 * tokenizer whose ids the encoder has no rows for, a text width or latent channels that do not
 * match the transformer, an unsupported scheduler): fix the folder or remove the component.
 */
export function assertComponentsUsable(info: ModelInfo): void {
  for (const c of Object.values(info.pipeline?.components ?? {})) if (c.state === "broken" && c.error) throw c.error;
}

/** Refuse a HunyuanVideo run that cannot fit (weights + the largest block call), before anything loads. */
export function checkHunyuanMemory(info: HunyuanModelInfo, latent: LatentShape, o: { loaded?: boolean; available?: number; textTokens?: number; decode?: boolean; tile?: boolean | TileOptions } = {}): void {
  const [pt, ph, pw] = info.dims.patch;
  const L = (latent.frames / pt) * (latent.height / ph) * (latent.width / pw);
  const e = estimateHunyuanMemory(info.config, L, o.textTokens ?? HUNYUAN_TEXT_TOKENS);
  // the VAE decode runs after the denoising: the larger of the two stages counts
  const decode = info.vae && o.decode ? hunyuanVaeDecodePeakBytes(info.vae, latent, { tile: o.tile }) : 0;
  if (decode > e.activations) {
    e.total += decode - e.activations;
    e.activations = decode;
  }
  const need = o.loaded ? e.total - e.weights : e.total;
  const avail = o.available ?? availableMemory();
  if (need > avail)
    throw new MixCacheError(
      "CONFIG",
      `a ${latent.channels}x${latent.frames}x${latent.height}x${latent.width} latent (${L} video tokens) on ${info.name} needs about ${humanBytes(need)} (weights ${humanBytes(e.weights)}, largest block call ${humanBytes(e.activations)}), more than the ${humanBytes(avail)} available`,
      decode > 0 && decode === e.activations ? "decode with spatial tiling (--tile), or pass a smaller video size (frames, height, width)" : "pass a smaller latent or video size (frames, height, width)",
    );
}

async function loadHunyuan(info: HunyuanModelInfo, opts: LoadOptions, backend: BackendOptions, onProgress?: (done: number, total: number) => void): Promise<LoadedModel> {
  const c = info.config;
  checkHunyuanMemory(info, opts.latent ?? { channels: c.in_channels, frames: c.patch_size_t, height: c.patch_size, width: c.patch_size }, { textTokens: 1 });
  // the text encoders are opened (configs, headers, tokenizers checked) before any weight is read
  const text = info.text ? HunyuanTextEncoder.open({ modelDir: info.dir, threads: opts.threads, cacheDir: opts.promptCacheDir }) : null;
  const ckpt = openCheckpoint(info.transformerDir);
  let transformer: HunyuanVideoModel;
  try {
    validateKeys(ckpt, hunyuanShapes(c));
    transformer = await HunyuanVideoModel.load(c, { read: (k) => ckpt.readF32(k) }, backend, onProgress);
    // grid-specific stages (patch, head) are built per latent size: keep their few small tensors
    const small = new Map<string, Float32Array>();
    for (const k of HUNYUAN_GRID_KEYS) small.set(k, ckpt.readF32(k));
    transformer.setWeightSource({ read: (k) => { const v = small.get(k); if (!v) throw new MixCacheError("WEIGHTS", `weight ${k} was released after loading`); return v; } });
  } catch (e) {
    await text?.close();
    throw e;
  } finally {
    ckpt.close();
  }
  let vae: Promise<HunyuanVaeDecoder> | null = null;
  // HunyuanVideoPipeline's text path: template -> LLaVA-Llama-3 hidden_states[-3], cropped; CLIP-L pooled
  const encodeUnits = info.text ? info.text.text_encoder.layersRun + info.text.text_encoder_2.layersRun + 1 : 0;
  const noEncoder = () =>
    new MixCacheError(
      "USAGE",
      `model ${info.name} has no text encoders in its folder (text_encoder/, tokenizer/, text_encoder_2/, tokenizer_2/: LLaVA-Llama-3 and CLIP-L), so prompts cannot be encoded`,
      "add those folders of the same HunyuanVideo checkpoint, or pass precomputed embeddings: generate({ textEmbedding: { data: prompt_embeds [S x 4096], tokens: S, mask: prompt_attention_mask, pooled: pooled_prompt_embeds [768] } }) or --prompt-embeds FILE",
    );
  return {
    ...info,
    transformer,
    transformer2: null,
    boundaryRatio: null,
    tokenizer: null,
    umt5: null,
    encodeUnits,
    encodePrompt() {
      if (text) throw new MixCacheError("USAGE", `model ${info.name} encodes prompts with LLaVA-Llama-3 and CLIP-L, which is asynchronous`, "use await model.encodePrompts([prompt])");
      throw noEncoder();
    },
    async encodePrompts(prompts, o = {}) {
      if (!text) throw noEncoder();
      let done = 0;
      return text.encode(prompts, { onLayer: () => o.onLayer?.(Math.min(++done, encodeUnits), encodeUnits) });
    },
    decodeUnits: (shape, tile) => (info.vae ? hunyuanDecodePassCount(info.vae, shape.frames, shape.height, shape.width, { tile }) : 0),
    async decodeLatent(latent, shape, o = {}) {
      if (!info.vae)
        throw new UsageError(`model ${info.name} has no vae/ (AutoencoderKLHunyuanVideo), so its latents cannot be decoded to video`, "add the vae/ folder of the same HunyuanVideo checkpoint, or keep the latent (generate({ decode: false }), a .safetensors output)");
      vae ??= loadHunyuanVaeDecoder(info.dir, backend);
      const d = await vae;
      // HunyuanVideoPipeline: latents / scaling_factor, then the VAE's temporal pieces (and tiles when asked)
      return d.decode(latent, [shape.channels, shape.frames, shape.height, shape.width], { tile: o.tile, onChunk: o.onChunk });
    },
    async release() {
      await transformer.release();
      await text?.close();
      if (vae) await (await vae.catch(() => null))?.release();
    },
  };
}

/** One Wan transformer folder: keys checked from the headers, stages built one at a time. */
async function loadWanTransformer(dir: string, config: WanConfig, backend: BackendOptions, dtype: LoadOptions["dtype"], onProgress?: (done: number, total: number) => void): Promise<WanModel> {
  const ckpt = openCheckpoint(dir);
  try {
    validateKeys(ckpt, expectedShapes(config));
    const transformer = await WanModel.load(config, { read: (k) => ckpt.readF32(k) }, { ...backend, graphs: { dtype } }, onProgress);
    // grid-specific stages (patch, head) are built later, per latent size: keep their few small
    // tensors; any other weight a later stage needs (a fused block with some modules given) is read
    // again from the checkpoint, which is opened for that read only
    const small = new Map<string, Float32Array>();
    for (const k of ["patch_embedding.weight", "patch_embedding.bias", "proj_out.weight", "proj_out.bias"]) small.set(k, ckpt.readF32(k));
    const shapes = expectedShapes(config);
    transformer.setWeightSource({
      read: (k) => {
        const v = small.get(k);
        if (v) return v;
        const again = openCheckpoint(dir);
        try {
          const w = again.readF32(k);
          const n = shapes.get(k)?.reduce((a, b) => a * b, 1);
          if (w.length !== n) throw new MixCacheError("WEIGHTS", `weight ${k} in ${dir} has ${w.length} values now, ${n} when the model was loaded`, "the checkpoint changed on disk after loading: load the model again");
          return w;
        } finally {
          again.close();
        }
      },
    });
    return transformer;
  } finally {
    ckpt.close();
  }
}

export async function loadModel(dir: string = DEFAULT_MODEL_DIR, opts: LoadOptions = {}, onProgress?: (done: number, total: number) => void): Promise<LoadedModel> {
  const info = inspectModel(dir);
  const backend: BackendOptions = { device: opts.device, threads: opts.threads, spinning: opts.spinning, arena: opts.arena, prepack: opts.prepack };
  checkDevice(opts.device);
  checkDtype(opts.dtype, info);
  if (info.family === "hunyuan-video") {
    checkThreads(opts.threads);
    return loadHunyuan(info, opts, backend, onProgress);
  }
  // before any weight is read or session built: the thread count, the components, then whether a run can fit
  checkThreads(opts.threads);
  assertComponentsUsable(info);
  if (info.layout === "diffusers") {
    const c = info.config;
    const latent = opts.latent ?? { channels: c.in_channels, frames: c.patch_size[0], height: c.patch_size[1], width: c.patch_size[2] };
    checkPipelineMemory(c, latent, { threads: opts.threads, umt5: info.pipeline!.umt5, vae: info.vae, decode: opts.latent ? opts.decode : false, tile: opts.tile, model: info.name, expert2: info.pipeline!.expert2?.config, dtype: opts.dtype });
  } else {
    const latent = opts.latent ?? info.latent;
    if (latent) checkMemory(info.config, latent, { threads: opts.threads, model: info.name, dtype: opts.dtype });
  }
  // umT5: the tokenizer is built and the encoder's keys checked from its headers (a vocabulary
  // mismatch is an error here); the VAE's keys too. No weight is read until the transformer loads.
  const umt5 = info.textEncoder === "umt5" ? WanTextEncoder.open({ modelDir: info.dir, ...backend, cacheDir: opts.promptCacheDir }) : null;
  let transformer: WanModel;
  let transformer2: WanModel | null = null;
  try {
    if (info.vae) checkWanVaeFolder(info.dir);
    const e2 = info.pipeline?.expert2 ?? null;
    const total = e2 ? 2 * (2 + 4 * info.config.num_layers) : 0;
    transformer = await loadWanTransformer(info.transformerDir, info.config, backend, opts.dtype, e2 ? (d) => onProgress?.(d, total) : onProgress);
    if (e2) {
      const half = 2 + 4 * info.config.num_layers;
      transformer2 = await loadWanTransformer(e2.dir, e2.config, backend, opts.dtype, (d) => onProgress?.(half + d, total));
    }
  } catch (e) {
    await umt5?.close();
    await transformer2?.release();
    throw e;
  }

  let tokenizer: WordTokenizer | null = null;
  let encoder: EmbeddingTextEncoder | null = null;
  if (info.textEncoder === "word") {
    tokenizer = WordTokenizer.fromFile(join(info.dir, "tokenizer", "tokenizer.json"));
    const te = openCheckpoint(join(info.dir, "text_encoder", "model.safetensors"));
    const tok = te.readF32("token_embedding.weight");
    const pos = te.readF32("position_embedding");
    const [V, Dt] = te.info("token_embedding.weight").shape;
    te.close();
    if (Dt !== info.config.text_dim) {
      await transformer.release();
      throw new MixCacheError("WEIGHTS", `text encoder width ${Dt} != transformer text_dim ${info.config.text_dim}`);
    }
    encoder = new EmbeddingTextEncoder(tok, pos, V, tokenizer.maxTokens, Dt);
  }
  const noEncoder = (what: string) =>
    new MixCacheError("USAGE", `model ${info.name} has no text encoder in its folder${info.pipeline ? ` (missing: ${info.pipeline.missing.filter((n) => n === "text_encoder" || n === "tokenizer").join(", ")})` : ""}, so ${what}`, "pass precomputed text embeddings through the API (generate({ textEmbedding, negativeEmbedding }))");
  const encodeWord = (prompt: string): TextEmbedding => {
    if (umt5) throw new MixCacheError("USAGE", `model ${info.name} encodes prompts with umT5, which is asynchronous`, "use await model.encodePrompts([prompt])");
    if (!tokenizer || !encoder) throw noEncoder("the prompt cannot be encoded");
    return encoder.encode(tokenizer.encode(prompt));
  };
  let vae: Promise<WanVaeDecoder> | null = null;
  return {
    ...info,
    transformer,
    transformer2,
    boundaryRatio: info.pipeline?.expert2?.boundaryRatio ?? null,
    tokenizer,
    umt5,
    encodeUnits: umt5 ? umt5.encoder.config.num_layers + 1 : 0,
    encodePrompt: encodeWord,
    async encodePrompts(prompts, o = {}) {
      if (umt5) {
        const total = umt5.encoder.config.num_layers + 1;
        let done = 0;
        return umt5.encode(prompts, { onLayer: () => o.onLayer?.(++done, total) });
      }
      return prompts.map(encodeWord);
    },
    decodeUnits: (shape, tile) => (info.vae ? decodeChunkCount(info.vae, shape.frames, shape.height, shape.width, tile) : 0),
    async decodeLatent(latent, shape, o = {}) {
      if (!info.vae)
        throw new UsageError(`model ${info.name} has no VAE${info.pipeline ? " (vae/ is missing from its folder)" : ""}, so its latents cannot be decoded to video`, "add the vae/ folder of the same Wan2.1 checkpoint, or keep the latent (generate({ decode: false }), a .safetensors output)");
      vae ??= loadWanVaeDecoder(info.dir, backend);
      const d = await vae;
      return d.decode(latent, [shape.channels, shape.frames, shape.height, shape.width], { tile: o.tile, onChunk: o.onChunk });
    },
    async release() {
      await transformer.release();
      await transformer2?.release();
      await umt5?.close();
      if (vae) await (await vae.catch(() => null))?.release();
    },
  };
}
