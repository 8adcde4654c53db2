/**
 * Tiny random HunyuanVideo transformers, in memory (`tinyHunyuan`) or on disk in the exact
 * diffusers layout (`writeTinyHunyuan`):
 *   <dir>/transformer/config.json                         _class_name HunyuanVideoTransformer3DModel + every config field
 *   <dir>/transformer/diffusion_pytorch_model.safetensors the diffusers key names (config.ts expectedShapes)
 *   <dir>/scheduler/scheduler_config.json                 FlowMatchEulerDiscreteScheduler, shift 7.0 (optional)
 *   <dir>/model_index.json                                HunyuanVideoPipeline (optional)
 * Only the files: nothing here loads them.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeSafetensors, type WriteDtype } from "../../src/weights/safetensors.ts";
import { HUNYUAN_CLASS, expectedShapes, parseHunyuanConfig, type HunyuanConfig } from "../../src/models/hunyuan/config.ts";
import { randomArray, rng } from "./randomWeights.ts";
import { tempDir } from "./tmp.ts";

/** A tiny config: 2 heads x 16 (RoPE axes 4 + 6 + 6), 2 dual + 2 single blocks, 2 refiner blocks. */
export const TINY_HUNYUAN: Readonly<Record<string, unknown>> = {
  in_channels: 4,
  out_channels: 4,
  num_attention_heads: 2,
  attention_head_dim: 16,
  num_layers: 2,
  num_single_layers: 2,
  num_refiner_layers: 2,
  mlp_ratio: 4.0,
  patch_size: 2,
  patch_size_t: 1,
  qk_norm: "rms_norm",
  guidance_embeds: true,
  text_embed_dim: 20,
  pooled_projection_dim: 12,
  rope_theta: 256.0,
  rope_axes_dim: [4, 6, 6],
  image_condition_type: null,
};

/**
 * Random weights for a tiny config: Linear weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), norm
 * weights 1 + N(0, 0.1^2), LayerNorm biases N(0, 0.1^2).
 */
export function tinyHunyuan(seed = 1, overrides: Record<string, unknown> = {}): { config: HunyuanConfig; weights: Map<string, Float32Array> } {
  const config = parseHunyuanConfig({ ...TINY_HUNYUAN, ...overrides });
  const r = rng(seed);
  const weights = new Map<string, Float32Array>();
  for (const [k, shape] of expectedShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    let a: Float32Array;
    if (shape.length === 1 && k.endsWith(".weight")) a = randomArray(n, r, 0.1).map((v) => 1 + v); // RMSNorm / LayerNorm weights
    else if (k.endsWith(".bias")) a = randomArray(n, r, 0.1);
    else a = randomArray(n, r, 1 / Math.sqrt(fanIn));
    weights.set(k, a);
  }
  return { config, weights };
}

/** scheduler_config.json of hunyuanvideo-community/HunyuanVideo (flow matching Euler, shift 7). */
export function hunyuanSchedulerConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    _class_name: "FlowMatchEulerDiscreteScheduler",
    _diffusers_version: "0.32.0.dev0",
    base_image_seq_len: 256,
    base_shift: 0.5,
    invert_sigmas: false,
    max_image_seq_len: 4096,
    max_shift: 1.15,
    num_train_timesteps: 1000,
    shift: 7.0,
    shift_terminal: null,
    stochastic_sampling: false,
    time_shift_type: "exponential",
    use_beta_sigmas: false,
    use_dynamic_shifting: false,
    use_exponential_sigmas: false,
    use_karras_sigmas: false,
    ...overrides,
  };
}

/** model_index.json of a HunyuanVideoPipeline folder. */
export function hunyuanModelIndex(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    _class_name: "HunyuanVideoPipeline",
    _diffusers_version: "0.32.0.dev0",
    scheduler: ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    text_encoder: ["transformers", "LlamaModel"],
    text_encoder_2: ["transformers", "CLIPTextModel"],
    tokenizer: ["transformers", "LlamaTokenizerFast"],
    tokenizer_2: ["transformers", "CLIPTokenizer"],
    transformer: ["diffusers", HUNYUAN_CLASS],
    vae: ["diffusers", "AutoencoderKLHunyuanVideo"],
    ...overrides,
  };
}

export interface TinyHunyuanOptions {
  seed?: number;
  /** transformer config overrides on TINY_HUNYUAN */
  overrides?: Record<string, unknown>;
  dtype?: WriteDtype;
  /** also write scheduler/scheduler_config.json (default true) */
  scheduler?: boolean;
  /** also write model_index.json (default true) */
  modelIndex?: boolean;
  dir?: string;
}

export interface TinyHunyuanFolder {
  dir: string;
  config: HunyuanConfig;
  /** the fp32 weights as written (before any F16/BF16 rounding) */
  weights: Map<string, Float32Array>;
}

export function writeTinyHunyuan(o: TinyHunyuanOptions = {}): TinyHunyuanFolder {
  const dir = o.dir ?? tempDir("mixcache-hunyuan-");
  const { config, weights } = tinyHunyuan(o.seed ?? 5, o.overrides ?? {});
  const tdir = join(dir, "transformer");
  mkdirSync(tdir, { recursive: true });
  const tensors: Record<string, { dtype: WriteDtype; shape: number[]; data: Float32Array }> = {};
  for (const [k, shape] of expectedShapes(config)) tensors[k] = { dtype: o.dtype ?? "F32", shape, data: weights.get(k)! };
  writeSafetensors(join(tdir, "diffusion_pytorch_model.safetensors"), tensors);
  writeFileSync(join(tdir, "config.json"), JSON.stringify({ _class_name: HUNYUAN_CLASS, _diffusers_version: "0.32.0.dev0", ...config }, null, 2));
  if (o.scheduler ?? true) {
    mkdirSync(join(dir, "scheduler"), { recursive: true });
    writeFileSync(join(dir, "scheduler", "scheduler_config.json"), JSON.stringify(hunyuanSchedulerConfig(), null, 2));
  }
  if (o.modelIndex ?? true) writeFileSync(join(dir, "model_index.json"), JSON.stringify(hunyuanModelIndex(), null, 2));
  return { dir, config, weights };
}
