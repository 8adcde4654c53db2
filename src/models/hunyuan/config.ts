/**
 * The HunyuanVideo family config: the fields of diffusers' `HunyuanVideoTransformer3DModel`
 * config.json (diffusers/src/diffusers/models/transformers/transformer_hunyuan_video.py, the
 * `__init__` signature), validated strictly, plus the expected key -> shape table of its weights
 * and the parameter count derived from it. Any size works, from tiny test configs to the real 13B.
 */
import { readFileSync } from "node:fs";
import { ConfigError, closest } from "../../errors.ts";

export interface HunyuanConfig {
  in_channels: number;
  out_channels: number;
  num_attention_heads: number;
  attention_head_dim: number;
  /** dual-stream blocks (transformer_blocks) */
  num_layers: number;
  /** single-stream blocks (single_transformer_blocks) */
  num_single_layers: number;
  /** token refiner blocks (context_embedder.token_refiner.refiner_blocks) */
  num_refiner_layers: number;
  mlp_ratio: number;
  /** spatial patch (one integer: height and width) */
  patch_size: number;
  /** temporal patch */
  patch_size_t: number;
  qk_norm: "rms_norm";
  guidance_embeds: boolean;
  text_embed_dim: number;
  pooled_projection_dim: number;
  rope_theta: number;
  rope_axes_dim: [number, number, number];
  image_condition_type: null;
}

/** diffusers HunyuanVideoTransformer3DModel.__init__ defaults: the 13B text-to-video model. */
export const HUNYUAN_DEFAULTS: Readonly<HunyuanConfig> = {
  in_channels: 16,
  out_channels: 16,
  num_attention_heads: 24,
  attention_head_dim: 128,
  num_layers: 20,
  num_single_layers: 40,
  num_refiner_layers: 2,
  mlp_ratio: 4.0,
  patch_size: 2,
  patch_size_t: 1,
  qk_norm: "rms_norm",
  guidance_embeds: true,
  text_embed_dim: 4096,
  pooled_projection_dim: 768,
  rope_theta: 256.0,
  rope_axes_dim: [16, 56, 56],
  image_condition_type: null,
};

export const HUNYUAN_CLASS = "HunyuanVideoTransformer3DModel";

const FIELDS = Object.keys(HUNYUAN_DEFAULTS);

/** Channels of the sinusoidal timestep features (diffusers Timesteps(num_channels=256)). */
export const TIME_FEATURES = 256;
/** LayerNorm / RMSNorm epsilon of every norm in the transformer (eps=1e-6 throughout the file). */
export const NORM_EPS = 1e-6;
/** The token refiner's FeedForward ratio: HunyuanVideoTokenRefiner is built with its default
 * mlp_ratio 4.0, not the config's mlp_ratio. */
export const REFINER_MLP_RATIO = 4.0;

/**
 * Upper bounds of the integer fields, generous over the 13B (24 heads x 128, 20 + 40 blocks, text
 * 4096, pooled 768), so that a corrupt config is an error and not an allocation that never ends.
 */
const MAX: Readonly<Record<string, number>> = {
  in_channels: 256,
  out_channels: 256,
  num_attention_heads: 256,
  attention_head_dim: 1024,
  num_layers: 256,
  num_single_layers: 256,
  num_refiner_layers: 64,
  patch_size: 8,
  patch_size_t: 8,
  text_embed_dim: 65536,
  pooled_projection_dim: 65536,
  width: 65536, // num_attention_heads x attention_head_dim (13B: 3072)
  mlp: 262144, // int(width x mlp_ratio) (13B: 12288)
};

export function parseHunyuanConfig(raw: unknown, source = "config.json"): HunyuanConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new ConfigError(`${source}: expected a JSON object`, `use a diffusers ${HUNYUAN_CLASS} config.json`);
  const obj = raw as Record<string, unknown>;
  if (obj._class_name !== undefined && obj._class_name !== HUNYUAN_CLASS)
    throw new ConfigError(`${source}: _class_name is ${JSON.stringify(obj._class_name)}, not ${HUNYUAN_CLASS}`, "point the model at a HunyuanVideo transformer folder (transformer/config.json of a HunyuanVideoPipeline)");
  for (const k of Object.keys(obj)) {
    if (k.startsWith("_")) continue;
    if (!FIELDS.includes(k))
      throw new ConfigError(`${source}: unknown field "${k}"`, `valid fields: ${FIELDS.join(", ")} (did you mean ${closest(k, FIELDS, 1)[0]}?)`);
  }
  const ict = obj.image_condition_type;
  if (ict !== undefined && ict !== null) {
    if (ict === "latent_concat" || ict === "token_replace")
      throw new ConfigError(
        `${source}: image_condition_type = ${JSON.stringify(ict)} is HunyuanVideo image-to-video, which is not supported`,
        "use a text-to-video HunyuanVideo checkpoint (image_condition_type null or absent)",
      );
    throw new ConfigError(`${source}: image_condition_type = ${JSON.stringify(ict)} is not a valid value`, 'set image_condition_type to null (text-to-video); diffusers also knows "latent_concat" and "token_replace" (image-to-video, not supported here)');
  }
  // diffusers: out_channels = out_channels or in_channels
  const cfg = { ...HUNYUAN_DEFAULTS, ...obj } as Record<string, unknown>;
  if (obj.out_channels === null) cfg.out_channels = cfg.in_channels;

  const int = (k: string, min: number) => {
    const v = cfg[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > MAX[k])
      throw new ConfigError(`${source}: ${k} must be an integer in ${min}..${MAX[k]}, got ${JSON.stringify(v)}`, `HunyuanVideo 13B uses ${k} = ${JSON.stringify(HUNYUAN_DEFAULTS[k as keyof HunyuanConfig])}; check the config file`);
    return v;
  };
  for (const k of ["in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "text_embed_dim", "pooled_projection_dim"]) int(k, 1);
  for (const k of ["num_layers", "num_single_layers", "num_refiner_layers"]) int(k, 0);
  if (Array.isArray(cfg.patch_size))
    throw new ConfigError(`${source}: patch_size must be one integer (the spatial patch), got ${JSON.stringify(cfg.patch_size)}`, "HunyuanVideo uses patch_size 2 and patch_size_t 1 (the temporal patch is its own field)");
  int("patch_size", 1);
  int("patch_size_t", 1);
  if ((cfg.num_layers as number) + (cfg.num_single_layers as number) < 1)
    throw new ConfigError(`${source}: num_layers + num_single_layers must be at least 1, got 0 blocks`, "HunyuanVideo 13B has 20 dual-stream and 40 single-stream blocks");

  const heads = cfg.num_attention_heads as number;
  const d = cfg.attention_head_dim as number;
  const width = heads * d;
  if (width > MAX.width)
    throw new ConfigError(`${source}: num_attention_heads x attention_head_dim = ${width} is above ${MAX.width}`, "HunyuanVideo 13B is 24 x 128 = 3072; check the config file");

  const ratio = cfg.mlp_ratio;
  if (typeof ratio !== "number" || !Number.isFinite(ratio) || !(ratio > 0))
    throw new ConfigError(`${source}: mlp_ratio must be a positive number, got ${JSON.stringify(ratio)}`, "HunyuanVideo uses mlp_ratio 4.0");
  const mlp = Math.floor(width * ratio);
  if (mlp < 1 || mlp > MAX.mlp)
    throw new ConfigError(`${source}: int(width x mlp_ratio) = ${mlp} must be in 1..${MAX.mlp}`, "HunyuanVideo uses mlp_ratio 4.0");

  if (cfg.qk_norm !== "rms_norm")
    throw new ConfigError(`${source}: qk_norm ${JSON.stringify(cfg.qk_norm)} is not supported`, 'HunyuanVideo uses qk_norm "rms_norm" (RMSNorm per head); set it to "rms_norm"');
  if (typeof cfg.guidance_embeds !== "boolean")
    throw new ConfigError(`${source}: guidance_embeds must be true or false, got ${JSON.stringify(cfg.guidance_embeds)}`, "HunyuanVideo (guidance-distilled) uses true");

  const theta = cfg.rope_theta;
  if (typeof theta !== "number" || !Number.isFinite(theta) || !(theta > 0))
    throw new ConfigError(`${source}: rope_theta must be a positive number, got ${JSON.stringify(theta)}`, "HunyuanVideo uses rope_theta 256.0");
  const axes = cfg.rope_axes_dim;
  if (!Array.isArray(axes) || axes.length !== 3 || !axes.every((v) => typeof v === "number" && Number.isInteger(v) && v >= 2 && v % 2 === 0))
    throw new ConfigError(`${source}: rope_axes_dim must be three even positive integers [t, h, w], got ${JSON.stringify(axes)}`, "HunyuanVideo uses [16, 56, 56]");
  const axesSum = axes[0] + axes[1] + axes[2];
  if (axesSum !== d)
    throw new ConfigError(`${source}: rope_axes_dim ${JSON.stringify(axes)} sums to ${axesSum}, but the RoPE covers the whole head: attention_head_dim is ${d}`, `choose rope_axes_dim summing to ${d} (HunyuanVideo: 16 + 56 + 56 = 128)`);

  return {
    in_channels: cfg.in_channels as number,
    out_channels: cfg.out_channels as number,
    num_attention_heads: heads,
    attention_head_dim: d,
    num_layers: cfg.num_layers as number,
    num_single_layers: cfg.num_single_layers as number,
    num_refiner_layers: cfg.num_refiner_layers as number,
    mlp_ratio: ratio,
    patch_size: cfg.patch_size as number,
    patch_size_t: cfg.patch_size_t as number,
    qk_norm: "rms_norm",
    guidance_embeds: cfg.guidance_embeds,
    text_embed_dim: cfg.text_embed_dim as number,
    pooled_projection_dim: cfg.pooled_projection_dim as number,
    rope_theta: theta,
    rope_axes_dim: [axes[0], axes[1], axes[2]],
    image_condition_type: null,
  };
}

export function readHunyuanConfig(path: string): HunyuanConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, "point the model at a folder containing transformer/config.json");
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  return parseHunyuanConfig(raw, path);
}

/** Hidden width D = heads x head_dim (inner_dim in diffusers). */
export const hunyuanDim = (c: HunyuanConfig): number => c.num_attention_heads * c.attention_head_dim;
/** FeedForward / proj_mlp width of the dual- and single-stream blocks: int(D x mlp_ratio). */
export const mlpDim = (c: HunyuanConfig): number => Math.floor(hunyuanDim(c) * c.mlp_ratio);
/** FeedForward width of the token refiner blocks: int(D x 4.0). */
export const refinerMlpDim = (c: HunyuanConfig): number => Math.floor(hunyuanDim(c) * REFINER_MLP_RATIO);
/** Values per token of proj_out: out_channels x patch_size_t x patch_size^2. */
export const patchOut = (c: HunyuanConfig): number => c.out_channels * c.patch_size_t * c.patch_size * c.patch_size;
/** Values per patch of x_embedder.proj: in_channels x patch_size_t x patch_size^2. */
export const patchIn = (c: HunyuanConfig): number => c.in_channels * c.patch_size_t * c.patch_size * c.patch_size;

/** Expected diffusers key -> shape map of HunyuanVideoTransformer3DModel (text-to-video). */
export function expectedShapes(c: HunyuanConfig): Map<string, number[]> {
  const D = hunyuanDim(c);
  const d = c.attention_head_dim;
  const M = mlpDim(c);
  const Mr = refinerMlpDim(c);
  const m = new Map<string, number[]>();
  const lin = (name: string, out: number, inp: number) => {
    m.set(`${name}.weight`, [out, inp]);
    m.set(`${name}.bias`, [out]);
  };
  // HunyuanVideoPatchEmbed: Conv3d(in, D, kernel = stride = (pt, p, p))
  m.set("x_embedder.proj.weight", [D, c.in_channels, c.patch_size_t, c.patch_size, c.patch_size]);
  m.set("x_embedder.proj.bias", [D]);
  // HunyuanVideoTokenRefiner: CombinedTimestepTextProjEmbeddings(D, text_embed_dim), proj_in, refiner blocks
  const ce = "context_embedder.";
  lin(`${ce}time_text_embed.timestep_embedder.linear_1`, D, TIME_FEATURES);
  lin(`${ce}time_text_embed.timestep_embedder.linear_2`, D, D);
  lin(`${ce}time_text_embed.text_embedder.linear_1`, D, c.text_embed_dim);
  lin(`${ce}time_text_embed.text_embedder.linear_2`, D, D);
  lin(`${ce}proj_in`, D, c.text_embed_dim);
  for (let i = 0; i < c.num_refiner_layers; i++) {
    const p = `${ce}token_refiner.refiner_blocks.${i}.`;
    m.set(`${p}norm1.weight`, [D]);
    m.set(`${p}norm1.bias`, [D]);
    for (const l of ["to_q", "to_k", "to_v", "to_out.0"]) lin(`${p}attn.${l}`, D, D);
    m.set(`${p}norm2.weight`, [D]);
    m.set(`${p}norm2.bias`, [D]);
    lin(`${p}ff.net.0.proj`, Mr, D);
    lin(`${p}ff.net.2`, D, Mr);
    lin(`${p}norm_out.linear`, 2 * D, D);
  }
  // HunyuanVideoConditionEmbedding
  lin("time_text_embed.timestep_embedder.linear_1", D, TIME_FEATURES);
  lin("time_text_embed.timestep_embedder.linear_2", D, D);
  if (c.guidance_embeds) {
    lin("time_text_embed.guidance_embedder.linear_1", D, TIME_FEATURES);
    lin("time_text_embed.guidance_embedder.linear_2", D, D);
  }
  lin("time_text_embed.text_embedder.linear_1", D, c.pooled_projection_dim);
  lin("time_text_embed.text_embedder.linear_2", D, D);
  // HunyuanVideoTransformerBlock (dual stream)
  for (let i = 0; i < c.num_layers; i++) {
    const p = `transformer_blocks.${i}.`;
    lin(`${p}norm1.linear`, 6 * D, D);
    lin(`${p}norm1_context.linear`, 6 * D, D);
    for (const l of ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"]) lin(`${p}attn.${l}`, D, D);
    for (const n of ["norm_q", "norm_k", "norm_added_q", "norm_added_k"]) m.set(`${p}attn.${n}.weight`, [d]);
    for (const f of ["ff", "ff_context"]) {
      lin(`${p}${f}.net.0.proj`, M, D);
      lin(`${p}${f}.net.2`, D, M);
    }
  }
  // HunyuanVideoSingleTransformerBlock
  for (let i = 0; i < c.num_single_layers; i++) {
    const p = `single_transformer_blocks.${i}.`;
    for (const l of ["to_q", "to_k", "to_v"]) lin(`${p}attn.${l}`, D, D);
    m.set(`${p}attn.norm_q.weight`, [d]);
    m.set(`${p}attn.norm_k.weight`, [d]);
    lin(`${p}norm.linear`, 3 * D, D);
    lin(`${p}proj_mlp`, M, D);
    lin(`${p}proj_out`, D, D + M);
  }
  // AdaLayerNormContinuous + output projection
  lin("norm_out.linear", 2 * D, D);
  lin("proj_out", patchOut(c), D);
  return m;
}

/** Parameter count, summed over the shape table (what diffusers' model.num_parameters() reports). */
export function parameterCount(c: HunyuanConfig): number {
  let n = 0;
  for (const s of expectedShapes(c).values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}
