/**
 * Model folders. Two layouts load through the same code path:
 *  - a MixCache model folder (the shipped reference model): transformer/, text_encoder/,
 *    tokenizer/, mixcache.json (latent shape and sampler defaults), cache_profiles/;
 *  - a diffusers Wan2.1 folder (transformer/config.json + safetensors, possibly sharded) or a bare
 *    transformer folder. These have no text encoder we can run here, so they take text embeddings
 *    through the API.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { MixCacheError } from "../errors.ts";
import type { BackendOptions } from "../backend/ort.ts";
import { openCheckpoint, validateKeys } from "../weights/safetensors.ts";
import { EmbeddingTextEncoder } from "../text/encoder.ts";
import { WordTokenizer } from "../text/tokenizer.ts";
import { expectedShapes, parameterCount, readWanConfig, type WanConfig } from "./wan/config.ts";
import { WanModel } from "./wan/model.ts";
import { checkMemory } from "./wan/memory.ts";
import { validateModelMeta } from "./meta.ts";
import { checkThreads } from "../backend/ort.ts";
import type { LatentShape } from "./types.ts";
import type { TextEmbedding } from "../text/types.ts";
import type { SamplerName } from "../schedulers/types.ts";

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
}

export interface ModelInfo {
  name: string;
  dir: string;
  transformerDir: string;
  config: WanConfig;
  parameters: number;
  latent: LatentShape | null;
  fps: number;
  pixelSpace: boolean;
  defaults: ModelDefaults;
  hasTextEncoder: boolean;
  profilesDir: string;
  vocabPath: string | null;
}

export interface LoadedModel extends ModelInfo {
  transformer: WanModel;
  /** Encode a prompt with the model's own text encoder (reference model only). */
  encodePrompt(prompt: string): TextEmbedding;
  tokenizer: WordTokenizer | null;
  release(): Promise<void>;
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
  if (!existsSync(join(transformerDir, "config.json")))
    throw new MixCacheError("MODEL_NOT_FOUND", `no transformer config.json in ${abs} or ${join(abs, "transformer")}`, "point --model at a MixCache model folder or a diffusers Wan2.1 folder");
  const config = readWanConfig(join(transformerDir, "config.json"));
  const metaPath = join(abs, "mixcache.json");
  const meta = existsSync(metaPath) ? readJson(metaPath) : null;
  validateModelMeta(meta, config, metaPath);
  const d = (meta?.defaults ?? {}) as Record<string, unknown>;
  const defaults: ModelDefaults = {
    sampler: (d.sampler as SamplerName) ?? WAN_DEFAULTS.sampler,
    steps: (d.steps as number) ?? WAN_DEFAULTS.steps,
    guidance: (d.guidance as number) ?? WAN_DEFAULTS.guidance,
    shift: (d.shift as number) ?? WAN_DEFAULTS.shift,
    negativePrompt: (d.negative_prompt as string) ?? WAN_DEFAULTS.negativePrompt,
  };
  const hasTextEncoder = existsSync(join(abs, "text_encoder", "model.safetensors")) && existsSync(join(abs, "tokenizer", "tokenizer.json"));
  return {
    name: (meta?.name as string) ?? abs.split("/").pop()!,
    dir: abs,
    transformerDir,
    config,
    parameters: parameterCount(config),
    latent: (meta?.latent as LatentShape) ?? null,
    fps: (meta?.fps as number) ?? 16,
    pixelSpace: meta?.pixel_space === true,
    defaults,
    hasTextEncoder,
    profilesDir: join(abs, "cache_profiles"),
    vocabPath: existsSync(join(abs, "vocab.json")) ? join(abs, "vocab.json") : null,
  };
}

export async function loadModel(dir: string = DEFAULT_MODEL_DIR, opts: BackendOptions = {}, onProgress?: (done: number, total: number) => void): Promise<LoadedModel> {
  const info = inspectModel(dir);
  // before any weight is read or session built: the thread count, then whether a run can fit
  checkThreads(opts.threads);
  if (info.latent) checkMemory(info.config, info.latent, { threads: opts.threads, model: info.name });
  const ckpt = openCheckpoint(info.transformerDir);
  validateKeys(ckpt, expectedShapes(info.config));
  const transformer = await WanModel.load(info.config, { read: (k) => ckpt.readF32(k) }, opts, onProgress);
  // grid-specific stages (patch, head) are built later, per latent size: keep their few small tensors
  const small = new Map<string, Float32Array>();
  for (const k of ["patch_embedding.weight", "patch_embedding.bias", "proj_out.weight", "proj_out.bias", "scale_shift_table"]) small.set(k, ckpt.readF32(k));
  ckpt.close();
  transformer.setWeightSource({ read: (k) => { const v = small.get(k); if (!v) throw new MixCacheError("WEIGHTS", `weight ${k} was released after loading`); return v; } });

  let tokenizer: WordTokenizer | null = null;
  let encoder: EmbeddingTextEncoder | null = null;
  if (info.hasTextEncoder) {
    tokenizer = WordTokenizer.fromFile(join(info.dir, "tokenizer", "tokenizer.json"));
    const te = openCheckpoint(join(info.dir, "text_encoder", "model.safetensors"));
    const tok = te.readF32("token_embedding.weight");
    const pos = te.readF32("position_embedding");
    const [V, Dt] = te.info("token_embedding.weight").shape;
    te.close();
    if (Dt !== info.config.text_dim) throw new MixCacheError("WEIGHTS", `text encoder width ${Dt} != transformer text_dim ${info.config.text_dim}`);
    encoder = new EmbeddingTextEncoder(tok, pos, V, tokenizer.maxTokens, Dt);
  }
  return {
    ...info,
    transformer,
    tokenizer,
    encodePrompt(prompt: string): TextEmbedding {
      if (!tokenizer || !encoder)
        throw new MixCacheError("USAGE", `model ${info.name} has no text encoder in its folder`, "pass precomputed text embeddings through the API (generate({ textEmbedding }))");
      return encoder.encode(tokenizer.encode(prompt));
    },
    async release() {
      await transformer.release();
    },
  };
}
