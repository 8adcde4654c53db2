/**
 * The Wan2.1 family config: the fields of diffusers' `WanTransformer3DModel` config.json, validated
 * strictly. Any size works, from tiny test configs to the real 1.3B and 14B shapes.
 */
import { readFileSync } from "node:fs";
import { ConfigError, closest } from "../../errors.ts";

export interface WanConfig {
  patch_size: [number, number, number];
  num_attention_heads: number;
  attention_head_dim: number;
  in_channels: number;
  out_channels: number;
  text_dim: number;
  freq_dim: number;
  ffn_dim: number;
  num_layers: number;
  cross_attn_norm: boolean;
  qk_norm: string;
  eps: number;
  rope_max_seq_len: number;
}

const DEFAULTS: Omit<WanConfig, never> = {
  // diffusers WanTransformer3DModel.__init__ defaults (the 1.3B/14B values differ only in size)
  patch_size: [1, 2, 2],
  num_attention_heads: 40,
  attention_head_dim: 128,
  in_channels: 16,
  out_channels: 16,
  text_dim: 4096,
  freq_dim: 256,
  ffn_dim: 13824,
  num_layers: 40,
  cross_attn_norm: true,
  qk_norm: "rms_norm_across_heads",
  eps: 1e-6,
  rope_max_seq_len: 1024,
};

/** Fields diffusers writes that the T2V path does not use; accepted only with their T2V values. */
const T2V_NULL_FIELDS = ["image_dim", "added_kv_proj_dim", "pos_embed_seq_len"] as const;

const WAN_FIELDS = [...Object.keys(DEFAULTS), ...T2V_NULL_FIELDS];

/**
 * Upper bounds of the integer fields: generous over the largest Wan2.1 (14B: 40 layers, 40 heads x
 * 128, ffn 13824, text_dim 4096, freq_dim 256, in/out channels 16, 36 for I2V, patch [1, 2, 2]),
 * so that a corrupt config (num_layers 1e9) is an error and not an allocation that never ends.
 */
const WAN_MAX: Readonly<Record<string, number>> = {
  num_attention_heads: 256,
  attention_head_dim: 1024,
  in_channels: 256,
  out_channels: 256,
  text_dim: 65536,
  freq_dim: 8192,
  ffn_dim: 262144,
  num_layers: 256,
  rope_max_seq_len: 1 << 20,
  patch_size: 8,
  width: 65536, // num_attention_heads x attention_head_dim (14B: 5120)
};

export function parseWanConfig(raw: unknown, source = "config.json"): WanConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new ConfigError(`${source}: expected a JSON object`, "use a diffusers WanTransformer3DModel config.json");
  const obj = raw as Record<string, unknown>;
  if (typeof obj._class_name === "string" && obj._class_name !== "WanTransformer3DModel")
    throw new ConfigError(`${source}: _class_name is ${obj._class_name}, not WanTransformer3DModel`, "point --model at a Wan2.1 transformer folder");
  for (const k of Object.keys(obj)) {
    if (k.startsWith("_")) continue;
    if (!WAN_FIELDS.includes(k))
      throw new ConfigError(`${source}: unknown field "${k}"`, `valid fields: ${WAN_FIELDS.join(", ")} (did you mean ${closest(k, WAN_FIELDS, 1)[0]}?)`);
  }
  for (const k of T2V_NULL_FIELDS)
    if (obj[k] !== undefined && obj[k] !== null)
      throw new ConfigError(`${source}: ${k} = ${JSON.stringify(obj[k])} is an image-to-video feature`, "only text-to-video Wan2.1 configs are supported; set it to null");
  const cfg = { ...DEFAULTS, ...obj } as Record<string, unknown>;
  const posInt = (k: string) => {
    const v = cfg[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > WAN_MAX[k])
      throw new ConfigError(`${source}: ${k} must be an integer in 1..${WAN_MAX[k]}, got ${JSON.stringify(v)}`, `Wan2.1 14B uses ${k} = ${JSON.stringify(DEFAULTS[k as keyof WanConfig])}; check the config file`);
  };
  for (const k of ["num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim", "freq_dim", "ffn_dim", "num_layers", "rope_max_seq_len"]) posInt(k);
  const ps = cfg.patch_size;
  if (!Array.isArray(ps) || ps.length !== 3 || !ps.every((v) => Number.isInteger(v) && v >= 1 && v <= WAN_MAX.patch_size))
    throw new ConfigError(`${source}: patch_size must be three integers [t, h, w] in 1..${WAN_MAX.patch_size}, got ${JSON.stringify(ps)}`, "Wan2.1 uses [1, 2, 2]");
  const width = (cfg.num_attention_heads as number) * (cfg.attention_head_dim as number);
  if (width > WAN_MAX.width)
    throw new ConfigError(`${source}: num_attention_heads x attention_head_dim = ${width} is above ${WAN_MAX.width}`, "Wan2.1 14B is 40 x 128 = 5120; check the config file");
  if ((cfg.freq_dim as number) % 2 !== 0) throw new ConfigError(`${source}: freq_dim must be even, got ${cfg.freq_dim}`);
  if ((cfg.attention_head_dim as number) % 2 !== 0 || (cfg.attention_head_dim as number) < 6)
    throw new ConfigError(`${source}: attention_head_dim must be even and >= 6 for the 3D RoPE split, got ${cfg.attention_head_dim}`);
  if (cfg.qk_norm !== "rms_norm_across_heads")
    throw new ConfigError(`${source}: qk_norm "${cfg.qk_norm}" is not supported`, 'Wan2.1 uses "rms_norm_across_heads"');
  if (cfg.cross_attn_norm !== true) throw new ConfigError(`${source}: cross_attn_norm must be true (Wan2.1 T2V)`);
  if (typeof cfg.eps !== "number" || !(cfg.eps > 0) || !(cfg.eps < 1)) throw new ConfigError(`${source}: eps must be a number in (0, 1), got ${JSON.stringify(cfg.eps)}`, "Wan2.1 uses 1e-6");
  return {
    patch_size: [ps[0], ps[1], ps[2]],
    num_attention_heads: cfg.num_attention_heads as number,
    attention_head_dim: cfg.attention_head_dim as number,
    in_channels: cfg.in_channels as number,
    out_channels: cfg.out_channels as number,
    text_dim: cfg.text_dim as number,
    freq_dim: cfg.freq_dim as number,
    ffn_dim: cfg.ffn_dim as number,
    num_layers: cfg.num_layers as number,
    cross_attn_norm: true,
    qk_norm: "rms_norm_across_heads",
    eps: cfg.eps as number,
    rope_max_seq_len: cfg.rope_max_seq_len as number,
  };
}

export function readWanConfig(path: string): WanConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, "point --model at a folder containing config.json");
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  return parseWanConfig(raw, path);
}

export const dimOf = (c: WanConfig): number => c.num_attention_heads * c.attention_head_dim;

/** Bounds of a clip's latent size (mixcache.json "latent", the API's shape): Wan2.1 at 720p x 81
 * frames is a 16 x 21 x 90 x 160 latent. */
const LATENT_MAX = { frames: 1024, height: 4096, width: 4096 } as const;

/**
 * Validate a latent size { channels, frames, height, width } against a config: integers (JSON
 * numbers, not strings), positive, bounded, channels = in_channels, frames/height/width divisible
 * by the patch size and the patch grid within rope_max_seq_len.
 */
/** What a latent size is checked against: channels, the [t, h, w] patch and, for Wan, the RoPE table length. */
export type LatentRules = Pick<WanConfig, "in_channels" | "patch_size"> & { rope_max_seq_len?: number };

export function parseLatent(raw: unknown, c: LatentRules, source = "latent"): { channels: number; frames: number; height: number; width: number } {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new ConfigError(`${source}: expected an object { channels, frames, height, width }, got ${JSON.stringify(raw)}`);
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!["channels", "frames", "height", "width"].includes(k)) throw new ConfigError(`${source}: unknown field "${k}"`, "a latent size has channels, frames, height and width");
  const dims = ["frames", "height", "width"] as const;
  const max: Record<string, number> = { channels: c.in_channels, ...LATENT_MAX };
  for (const k of ["channels", ...dims]) {
    const v = o[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > max[k])
      throw new ConfigError(`${source}: ${k} must be an integer in 1..${max[k]}, got ${JSON.stringify(v)}`, `for example { "channels": ${c.in_channels}, "frames": ${8 * c.patch_size[0]}, "height": ${16 * c.patch_size[1]}, "width": ${16 * c.patch_size[2]} }`);
  }
  if (o.channels !== c.in_channels) throw new ConfigError(`${source}: channels is ${o.channels}, the model takes ${c.in_channels}`, `set channels to ${c.in_channels}`);
  dims.forEach((k, i) => {
    const p = c.patch_size[i];
    const v = o[k] as number;
    if (v % p) throw new ConfigError(`${source}: ${k} ${v} is not divisible by the patch size ${p} (patch_size [${c.patch_size}])`, `use a multiple of ${p}, e.g. ${Math.max(p, v - (v % p))}`);
    if (c.rope_max_seq_len !== undefined && v / p > c.rope_max_seq_len) throw new ConfigError(`${source}: ${k} ${v} gives ${v / p} patches, above rope_max_seq_len ${c.rope_max_seq_len}`, `use at most ${p * c.rope_max_seq_len}`);
  });
  return { channels: o.channels as number, frames: o.frames as number, height: o.height as number, width: o.width as number };
}

/** Expected diffusers key -> shape map (T2V). */
export function expectedShapes(c: WanConfig): Map<string, number[]> {
  const D = dimOf(c);
  const [pt, ph, pw] = c.patch_size;
  const m = new Map<string, number[]>();
  m.set("patch_embedding.weight", [D, c.in_channels, pt, ph, pw]);
  m.set("patch_embedding.bias", [D]);
  m.set("condition_embedder.time_embedder.linear_1.weight", [D, c.freq_dim]);
  m.set("condition_embedder.time_embedder.linear_1.bias", [D]);
  m.set("condition_embedder.time_embedder.linear_2.weight", [D, D]);
  m.set("condition_embedder.time_embedder.linear_2.bias", [D]);
  m.set("condition_embedder.time_proj.weight", [6 * D, D]);
  m.set("condition_embedder.time_proj.bias", [6 * D]);
  m.set("condition_embedder.text_embedder.linear_1.weight", [D, c.text_dim]);
  m.set("condition_embedder.text_embedder.linear_1.bias", [D]);
  m.set("condition_embedder.text_embedder.linear_2.weight", [D, D]);
  m.set("condition_embedder.text_embedder.linear_2.bias", [D]);
  m.set("proj_out.weight", [c.out_channels * pt * ph * pw, D]);
  m.set("proj_out.bias", [c.out_channels * pt * ph * pw]);
  m.set("scale_shift_table", [1, 2, D]);
  for (let i = 0; i < c.num_layers; i++) {
    const p = `blocks.${i}.`;
    for (const a of ["attn1", "attn2"]) {
      for (const l of ["to_q", "to_k", "to_v", "to_out.0"]) {
        m.set(`${p}${a}.${l}.weight`, [D, D]);
        m.set(`${p}${a}.${l}.bias`, [D]);
      }
      m.set(`${p}${a}.norm_q.weight`, [D]);
      m.set(`${p}${a}.norm_k.weight`, [D]);
    }
    m.set(`${p}norm2.weight`, [D]);
    m.set(`${p}norm2.bias`, [D]);
    m.set(`${p}ffn.net.0.proj.weight`, [c.ffn_dim, D]);
    m.set(`${p}ffn.net.0.proj.bias`, [c.ffn_dim]);
    m.set(`${p}ffn.net.2.weight`, [D, c.ffn_dim]);
    m.set(`${p}ffn.net.2.bias`, [D]);
    m.set(`${p}scale_shift_table`, [1, 6, D]);
  }
  return m;
}

export function parameterCount(c: WanConfig): number {
  let n = 0;
  for (const s of expectedShapes(c).values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}
