/**
 * HunyuanVideo folders, read without loading a weight: a diffusers `HunyuanVideoPipeline` folder
 * (model_index.json, transformer/, scheduler/; the text encoders and the VAE are read by
 * models/hunyuan-text/ and models/hunyuan-vae/) or a bare `HunyuanVideoTransformer3DModel` folder. Defaults follow diffusers'
 * pipeline_hunyuan_video.py: 50 Euler steps over linspace(1, 0, N + 1)[:-1] shifted by the
 * scheduler's shift (7.0), embedded guidance 6.0 (the distilled guidance input, one branch per
 * step), true CFG off (guidance 1), 129 x 720 x 1280 video (VAE: 4x time, 8x space).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../../errors.ts";
import { HUNYUAN_CLASS, hunyuanDim, mlpDim, parameterCount, type HunyuanConfig } from "./config.ts";

export const HUNYUAN_PIPELINE_CLASS = "HunyuanVideoPipeline";
export const HUNYUAN_VIDEO_DEFAULTS = { frames: 129, height: 720, width: 1280 } as const;
export const HUNYUAN_STRIDES = { temporal: 4, spatial: 8 } as const;
export const HUNYUAN_FPS = 15;
/** diffusers HunyuanVideoPipeline.__call__: guidance_scale 6.0 (embedded), true_cfg_scale 1.0. */
export const HUNYUAN_EMBEDDED_GUIDANCE = 6.0;
/** convert_hunyuan_video_to_diffusers.py: FlowMatchEulerDiscreteScheduler(shift=7.0). */
export const HUNYUAN_SHIFT = 7.0;
/** Text tokens of the LLaVA-Llama-3 encoder after the template crop (max_sequence_length 256). */
export const HUNYUAN_TEXT_TOKENS = 256;

/** Weights the grid-specific stages (patch embedding, output head) read after loading. */
export const HUNYUAN_GRID_KEYS = ["x_embedder.proj.weight", "x_embedder.proj.bias", "norm_out.linear.weight", "norm_out.linear.bias", "proj_out.weight", "proj_out.bias"] as const;

/** Does this folder's transformer config name the HunyuanVideo class? (read before any other check) */
export function isHunyuanTransformer(configPath: string): boolean {
  try {
    const raw = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
    return raw._class_name === HUNYUAN_CLASS;
  } catch {
    return false; // the Wan reader reports an unreadable config with its own message
  }
}

export interface HunyuanFolderInfo {
  pipeline: boolean;
  shift: number;
}

/** What a HunyuanVideo folder holds and what its scheduler sets, before any weight loads. */
export function inspectHunyuanFolder(dir: string): HunyuanFolderInfo {
  const indexPath = join(dir, "model_index.json");
  let pipeline = false;
  if (existsSync(indexPath)) {
    const idx = JSON.parse(readFileSync(indexPath, "utf8")) as Record<string, unknown>;
    if (idx._class_name !== HUNYUAN_PIPELINE_CLASS)
      throw new ConfigError(`${indexPath}: _class_name is ${JSON.stringify(idx._class_name)}, but transformer/ holds a ${HUNYUAN_CLASS}`, `use a ${HUNYUAN_PIPELINE_CLASS} folder`);
    pipeline = true;
  }
  let shift = HUNYUAN_SHIFT;
  const schedPath = join(dir, "scheduler", "scheduler_config.json");
  if (existsSync(schedPath)) {
    const sc = JSON.parse(readFileSync(schedPath, "utf8")) as Record<string, unknown>;
    if (sc._class_name !== undefined && sc._class_name !== "FlowMatchEulerDiscreteScheduler")
      throw new ConfigError(`${schedPath}: scheduler ${JSON.stringify(sc._class_name)} is not FlowMatchEulerDiscreteScheduler, the one HunyuanVideoPipeline uses`, "use the folder's original scheduler/scheduler_config.json");
    if (sc.use_dynamic_shifting === true)
      throw new ConfigError(`${schedPath}: use_dynamic_shifting is not supported for HunyuanVideo`, "set use_dynamic_shifting to false (the HunyuanVideo default)");
    if (sc.shift !== undefined) {
      if (typeof sc.shift !== "number" || !(sc.shift > 0)) throw new ConfigError(`${schedPath}: shift must be a number > 0, got ${JSON.stringify(sc.shift)}`);
      shift = sc.shift;
    }
  }
  return { pipeline, shift };
}

/** One line for `mixcache info`. */
export function describeHunyuan(c: HunyuanConfig): string {
  return `HunyuanVideo transformer, ${c.num_layers} double-stream + ${c.num_single_layers} single-stream blocks, ${c.num_refiner_layers} refiner layers, width ${hunyuanDim(c)} (${c.num_attention_heads} heads x ${c.attention_head_dim}), mlp ${mlpDim(c)}`;
}

/**
 * Memory of a run (bytes): fp32 weights resident, plus the largest activation of a block call: the
 * joint attention holds [heads, N, N] scores (N = video + text tokens), the MLP [N, mlp], a few
 * [N, D] hidden states; each thread's arena adds a little. An estimate for refusing sizes that
 * cannot fit, the same in spirit as the Wan one (models/wan/memory.ts).
 */
export function estimateHunyuanMemory(c: HunyuanConfig, L: number, S: number): { weights: number; activations: number; total: number } {
  const D = hunyuanDim(c);
  const N = L + S;
  const weights = parameterCount(c) * 4;
  const attention = c.num_attention_heads * N * N * 4 * 2 + 6 * N * D * 4;
  const mlp = N * mlpDim(c) * 4 * 2 + 4 * N * D * 4;
  const activations = Math.max(attention, mlp);
  return { weights, activations, total: weights + activations };
}
