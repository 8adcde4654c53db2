/**
 * Tiny random diffusers Wan2.1 pipeline folders in the exact WanPipeline layout, all five
 * components with the real key names and config fields, only smaller:
 *   <dir>/model_index.json                       _class_name WanPipeline + [library, class] per component
 *   <dir>/transformer/config.json + diffusion_pytorch_model.safetensors   (WanTransformer3DModel)
 *   <dir>/text_encoder/config.json + model.safetensors                    (UMT5EncoderModel, writeTinyUmt5)
 *   <dir>/tokenizer/tokenizer.json + tokenizer_config.json + special_tokens_map.json
 *   <dir>/vae/config.json + diffusion_pytorch_model.safetensors           (AutoencoderKLWan, writeTinyWanVae)
 *   <dir>/scheduler/scheduler_config.json                                 (UniPCMultistepScheduler, flow_shift 3)
 * The transformer takes the VAE's z_dim 4 channels and the encoder's d_model 24 as text_dim, so a
 * 5 x 32 x 32 video is a [4, 2, 4, 4] latent, 8 tokens with patch [1, 2, 2]: runs take seconds.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeSafetensors, type WriteDtype } from "../../src/weights/safetensors.ts";
import { expectedShapes } from "../../src/models/wan/config.ts";
import type { ComponentName } from "../../src/models/wan-pipeline.ts";
import { tinyWan } from "./randomWeights.ts";
import { tempDir } from "./tmp.ts";
import { writeTinyUmt5, type TinyUmt5Options } from "./writeTinyUmt5.ts";
import { writeTinyWanVae } from "./writeTinyWanVae.ts";

/** scheduler_config.json as diffusers writes it for Wan2.1 (UniPC, flow sigmas). */
export function unipcSchedulerConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    _class_name: "UniPCMultistepScheduler",
    _diffusers_version: "0.33.0.dev0",
    beta_end: 0.02,
    beta_schedule: "linear",
    beta_start: 0.0001,
    disable_corrector: [],
    dynamic_thresholding_ratio: 0.995,
    final_sigmas_type: "zero",
    flow_shift: 3.0,
    lower_order_final: true,
    num_train_timesteps: 1000,
    predict_x0: true,
    prediction_type: "flow_prediction",
    rescale_betas_zero_snr: false,
    sample_max_value: 1.0,
    solver_order: 2,
    solver_p: null,
    solver_type: "bh2",
    steps_offset: 0,
    thresholding: false,
    timestep_spacing: "linspace",
    trained_betas: null,
    use_beta_sigmas: false,
    use_exponential_sigmas: false,
    use_flow_sigmas: true,
    use_karras_sigmas: false,
    ...overrides,
  };
}

export function modelIndexJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    _class_name: "WanPipeline",
    _diffusers_version: "0.35.0",
    boundary_ratio: null,
    expand_timesteps: false,
    scheduler: ["diffusers", "UniPCMultistepScheduler"],
    text_encoder: ["transformers", "UMT5EncoderModel"],
    tokenizer: ["transformers", "T5TokenizerFast"],
    transformer: ["diffusers", "WanTransformer3DModel"],
    transformer_2: [null, null],
    vae: ["diffusers", "AutoencoderKLWan"],
    ...overrides,
  };
}

export interface TinyWanPipelineOptions {
  seed?: number;
  /** Components not to write (a partial folder). */
  omit?: ComponentName[];
  /** Transformer config overrides (e.g. text_dim for a mismatch). */
  transformer?: Record<string, unknown>;
  transformerDtype?: WriteDtype;
  /** Text encoder / tokenizer options (config overrides, pieces). */
  umt5?: TinyUmt5Options;
  /** VAE config overrides. */
  vae?: Record<string, unknown>;
  scheduler?: Record<string, unknown>;
  modelIndex?: Record<string, unknown>;
  /** Wan2.2 A14B layout: a second expert in transformer_2/ (other random weights) switched at this boundary_ratio. */
  boundaryRatio?: number;
  dir?: string;
}

export interface TinyWanPipeline {
  dir: string;
  /** Tiny-folder video size that runs in seconds: 5 frames of 32 x 32. */
  video: { frames: number; height: number; width: number };
}

export function writeTinyWanPipeline(o: TinyWanPipelineOptions = {}): TinyWanPipeline {
  const dir = o.dir ?? tempDir("mixcache-wanpipe-");
  const seed = o.seed ?? 3;
  const omit = new Set(o.omit ?? []);
  const two = o.boundaryRatio !== undefined ? { boundary_ratio: o.boundaryRatio, transformer_2: ["diffusers", "WanTransformer3DModel"] } : {};
  writeFileSync(join(dir, "model_index.json"), JSON.stringify(modelIndexJson({ ...two, ...o.modelIndex }), null, 2));

  for (const name of ["transformer", ...(o.boundaryRatio !== undefined ? ["transformer_2"] : [])]) {
    if (omit.has("transformer")) break;
    const { config, weights } = tinyWan(name === "transformer" ? seed : seed + 50, { in_channels: 4, out_channels: 4, text_dim: 24, patch_size: [1, 2, 2], num_layers: 2, ...o.transformer });
    const tdir = join(dir, name);
    mkdirSync(tdir, { recursive: true });
    const tensors: Record<string, { dtype: WriteDtype; shape: number[]; data: Float32Array }> = {};
    for (const [k, shape] of expectedShapes(config)) tensors[k] = { dtype: o.transformerDtype ?? "F32", shape, data: weights.get(k)! };
    writeSafetensors(join(tdir, "diffusion_pytorch_model.safetensors"), tensors);
    writeFileSync(join(tdir, "config.json"), JSON.stringify({
      _class_name: "WanTransformer3DModel", _diffusers_version: "0.33.0.dev0", added_kv_proj_dim: null, image_dim: null, ...config,
    }, null, 2));
  }
  if (!omit.has("text_encoder") || !omit.has("tokenizer")) {
    writeTinyUmt5(dir, { seed: seed + 10, ...o.umt5 });
    if (omit.has("text_encoder")) rmSync(join(dir, "text_encoder"), { recursive: true });
    if (omit.has("tokenizer")) rmSync(join(dir, "tokenizer"), { recursive: true });
  }
  if (!omit.has("vae")) writeTinyWanVae({ dir, seed: seed + 20, overrides: o.vae });
  if (!omit.has("scheduler")) {
    mkdirSync(join(dir, "scheduler"), { recursive: true });
    writeFileSync(join(dir, "scheduler", "scheduler_config.json"), JSON.stringify(unipcSchedulerConfig(o.scheduler), null, 2));
  }
  return { dir, video: { frames: 5, height: 32, width: 32 } };
}
