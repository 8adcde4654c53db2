/**
 * The HunyuanVideo VAE config (diffusers `AutoencoderKLHunyuanVideo` config.json, validated
 * strictly) and the decoder's layout derived from it: the ordered units (conv_in, middle resnets
 * and attention, up-block resnets and upsamplers, head) with their channels, spatial level
 * (0 = latent resolution, +1 per spatial upsampler) and temporal level (+1 per temporal
 * upsampler), the exact diffusers key names and shapes, parameter count and MACs.
 *
 * Structure (diffusers autoencoder_kl_hunyuan_video.py, `HunyuanVideoDecoder3D.__init__`):
 *   b = block_out_channels, n = len(b), r = reversed(b)
 *   conv_in latent_channels -> b[n-1]; mid: resnet, attention (1 head of width b[n-1], causal over
 *     frames; only with mid_block_add_attention), resnet
 *   up block i (0..n-1): layers_per_block + 1 resnets, the first r[i-1] -> r[i] (r[0] -> r[0] for
 *     i = 0), then an upsampler (channels unchanged) with factor
 *       space 2 where i < log2(spatial_compression_ratio), time 2 where n-3 <= i < n-1
 *     (temporal_compression_ratio 4: the only one the diffusers decoder accepts); none when both are 1
 *   head: conv_norm_out (GroupNorm of b[0]), SiLU, conv_out b[0] -> out_channels
 * Every 3x3x3 convolution is a HunyuanVideoCausalConv3d: replicate padding, 2 frames in front in
 * time and 1 on each side in space; every norm is a GroupNorm(norm_num_groups, eps 1e-6) over
 * channels-in-group x all frames x height x width.
 */
import { readFileSync } from "node:fs";
import { ConfigError, closest } from "../../errors.ts";

export interface HunyuanVaeConfig {
  in_channels: number;
  out_channels: number;
  latent_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: string;
  norm_num_groups: number;
  scaling_factor: number;
  spatial_compression_ratio: number;
  temporal_compression_ratio: number;
  mid_block_add_attention: boolean;
}

export const HUNYUAN_VAE_CLASS = "AutoencoderKLHunyuanVideo";
const DOWN = "HunyuanVideoDownBlock3D";
const UP = "HunyuanVideoUpBlock3D";

/** diffusers AutoencoderKLHunyuanVideo.__init__ defaults (the released HunyuanVideo VAE uses these). */
const DEFAULTS: HunyuanVaeConfig = {
  in_channels: 3,
  out_channels: 3,
  latent_channels: 16,
  down_block_types: [DOWN, DOWN, DOWN, DOWN],
  up_block_types: [UP, UP, UP, UP],
  block_out_channels: [128, 256, 512, 512],
  layers_per_block: 2,
  act_fn: "silu",
  norm_num_groups: 32,
  scaling_factor: 0.476986,
  spatial_compression_ratio: 8,
  temporal_compression_ratio: 4,
  mid_block_add_attention: true,
};

const FIELDS = Object.keys(DEFAULTS);
const FIX = "use the vae/config.json of a diffusers HunyuanVideo checkpoint (AutoencoderKLHunyuanVideo)";

/** GroupNorm epsilon of every norm in the decoder (resnet_eps and conv_norm_out in diffusers). */
export const GROUP_NORM_EPS = 1e-6;

export function parseHunyuanVaeConfig(raw: unknown, source = "vae/config.json"): HunyuanVaeConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ConfigError(`${source}: expected a JSON object`, FIX);
  const obj = raw as Record<string, unknown>;
  if (obj._class_name !== undefined && obj._class_name !== HUNYUAN_VAE_CLASS)
    throw new ConfigError(`${source}: _class_name is ${JSON.stringify(obj._class_name)}, not ${HUNYUAN_VAE_CLASS}`, "point at the vae/ folder of a diffusers HunyuanVideo checkpoint");
  for (const k of Object.keys(obj)) {
    if (k.startsWith("_")) continue;
    if (!FIELDS.includes(k))
      throw new ConfigError(`${source}: unknown field "${k}"`, `valid fields: ${FIELDS.join(", ")} (did you mean ${closest(k, FIELDS, 1)[0]}?)`);
  }
  const cfg = { ...DEFAULTS, ...obj } as Record<string, unknown>;
  const posInt = (k: string): number => {
    const v = cfg[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new ConfigError(`${source}: ${k} must be a positive integer, got ${JSON.stringify(v)}`, FIX);
    return v;
  };
  for (const k of ["in_channels", "out_channels", "latent_channels", "layers_per_block", "norm_num_groups", "spatial_compression_ratio", "temporal_compression_ratio"]) posInt(k);
  const boc = cfg.block_out_channels;
  if (!Array.isArray(boc) || boc.length < 1 || !boc.every((v) => Number.isInteger(v) && v >= 1))
    throw new ConfigError(`${source}: block_out_channels must be a non-empty list of positive integers, got ${JSON.stringify(boc)}`, FIX);
  const n = boc.length;
  for (const [k, want] of [["up_block_types", UP], ["down_block_types", DOWN]] as const) {
    const v = cfg[k];
    if (!Array.isArray(v) || v.length !== n)
      throw new ConfigError(`${source}: ${k} must list one block per entry of block_out_channels (${n}), got ${JSON.stringify(v)}`, FIX);
    const bad = v.find((t) => t !== want);
    if (bad !== undefined) throw new ConfigError(`${source}: ${k} holds ${JSON.stringify(bad)}`, `every entry must be "${want}" (the only block type diffusers' HunyuanVideo VAE accepts)`);
  }
  const tcr = cfg.temporal_compression_ratio as number;
  if (tcr !== 4)
    throw new ConfigError(`${source}: temporal_compression_ratio ${tcr} is not supported`, "diffusers' HunyuanVideoDecoder3D accepts only temporal_compression_ratio 4");
  if (n < 3)
    throw new ConfigError(`${source}: block_out_channels has ${n} entries: temporal_compression_ratio 4 needs at least 3 up blocks`, "two temporal upsamplers sit on the two up blocks before the last one; use 3 or more blocks");
  const scr = cfg.spatial_compression_ratio as number;
  const ls = Math.log2(scr);
  if (!Number.isInteger(ls) || ls > n)
    throw new ConfigError(`${source}: spatial_compression_ratio ${scr} must be a power of 2 of at most 2^${n} (one spatial upsampler per up block at most)`, "the released VAE uses 8");
  const groups = cfg.norm_num_groups as number;
  const notDiv = boc.find((c) => c % groups !== 0);
  if (notDiv !== undefined)
    throw new ConfigError(`${source}: block_out_channels entry ${notDiv} is not divisible by norm_num_groups ${groups}`, "every GroupNorm needs channels divisible by norm_num_groups");
  const act = cfg.act_fn;
  if (act !== "silu" && act !== "swish")
    throw new ConfigError(`${source}: act_fn ${JSON.stringify(act)} is not supported`, 'use "silu" (or its alias "swish"), the activation of the released VAE');
  const sf = cfg.scaling_factor;
  if (typeof sf !== "number" || !Number.isFinite(sf) || sf <= 0) throw new ConfigError(`${source}: scaling_factor must be a positive number, got ${JSON.stringify(sf)}`, FIX);
  if (typeof cfg.mid_block_add_attention !== "boolean") throw new ConfigError(`${source}: mid_block_add_attention must be true or false, got ${JSON.stringify(cfg.mid_block_add_attention)}`, FIX);
  return {
    in_channels: cfg.in_channels as number,
    out_channels: cfg.out_channels as number,
    latent_channels: cfg.latent_channels as number,
    down_block_types: [...(cfg.down_block_types as string[])],
    up_block_types: [...(cfg.up_block_types as string[])],
    block_out_channels: [...(boc as number[])],
    layers_per_block: cfg.layers_per_block as number,
    act_fn: act,
    norm_num_groups: groups,
    scaling_factor: sf,
    spatial_compression_ratio: scr,
    temporal_compression_ratio: tcr,
    mid_block_add_attention: cfg.mid_block_add_attention as boolean,
  };
}

export function readHunyuanVaeConfig(path: string): HunyuanVaeConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, "point at a diffusers HunyuanVideo folder with vae/config.json");
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path} is not valid JSON: ${(e as Error).message}`, FIX);
  }
  return parseHunyuanVaeConfig(raw, path);
}

/** The released HunyuanVideo VAE config (diffusers defaults), with optional overrides. */
export function hunyuanVaeConfig(overrides: Record<string, unknown> = {}): HunyuanVaeConfig {
  return parseHunyuanVaeConfig({ ...overrides }, "hunyuan vae defaults");
}

/** Pixels per latent pixel (spatial_compression_ratio, equal to 2^(spatial upsamplers) once parsed). */
export const spatialScale = (c: HunyuanVaeConfig): number => c.spatial_compression_ratio;
/** Frames per latent frame after the first (temporal_compression_ratio, 4). */
export const temporalScale = (c: HunyuanVaeConfig): number => c.temporal_compression_ratio;
/** Decoded frames for F latent frames: 1 + 4 (F - 1). */
export const decodedFrames = (c: HunyuanVaeConfig, latentFrames: number): number => 1 + temporalScale(c) * (latentFrames - 1);
/** Frames at temporal level tl for F latent frames: the first frame stays single, the rest double per level. */
export const framesAtLevel = (latentFrames: number, tl: number): number => 1 + 2 ** tl * (latentFrames - 1);

// ---------------------------------------------------------------------------------------------
// decoder layout

export type HunyuanVaeUnit =
  | { kind: "in"; name: string; cin: number; cout: number; level: number; tlevel: number }
  | { kind: "resnet"; name: string; cin: number; cout: number; level: number; tlevel: number }
  | { kind: "attn"; name: string; dim: number; level: number; tlevel: number }
  | { kind: "up"; name: string; dim: number; time: boolean; space: boolean; level: number; tlevel: number }
  | { kind: "head"; name: string; cin: number; cout: number; level: number; tlevel: number };

/** diffusers HunyuanVideoDecoder3D.__init__: the (time, space) factors of up block i's upsampler. */
export function upsampleFactors(c: HunyuanVaeConfig, i: number): { time: boolean; space: boolean } {
  const n = c.block_out_channels.length;
  const spaceLayers = Math.log2(c.spatial_compression_ratio);
  const timeLayers = Math.log2(c.temporal_compression_ratio);
  const final = i === n - 1;
  return { space: i < spaceLayers, time: i >= n - 1 - timeLayers && !final };
}

/** The decoder units in execution order; `level` / `tlevel` are the unit's input levels. */
export function decoderUnits(c: HunyuanVaeConfig): HunyuanVaeUnit[] {
  const b = c.block_out_channels;
  const n = b.length;
  const r = [...b].reverse();
  const top = b[n - 1];
  const units: HunyuanVaeUnit[] = [];
  units.push({ kind: "in", name: "decoder.conv_in", cin: c.latent_channels, cout: top, level: 0, tlevel: 0 });
  units.push({ kind: "resnet", name: "decoder.mid_block.resnets.0", cin: top, cout: top, level: 0, tlevel: 0 });
  if (c.mid_block_add_attention) units.push({ kind: "attn", name: "decoder.mid_block.attentions.0", dim: top, level: 0, tlevel: 0 });
  units.push({ kind: "resnet", name: "decoder.mid_block.resnets.1", cin: top, cout: top, level: 0, tlevel: 0 });
  let level = 0, tlevel = 0;
  let prev = r[0];
  for (let i = 0; i < n; i++) {
    const cout = r[i];
    let cin = prev;
    for (let j = 0; j <= c.layers_per_block; j++) {
      units.push({ kind: "resnet", name: `decoder.up_blocks.${i}.resnets.${j}`, cin, cout, level, tlevel });
      cin = cout;
    }
    const f = upsampleFactors(c, i);
    if (f.time || f.space) {
      units.push({ kind: "up", name: `decoder.up_blocks.${i}.upsamplers.0`, dim: cout, ...f, level, tlevel });
      if (f.space) level++;
      if (f.time) tlevel++;
    }
    prev = cout;
  }
  units.push({ kind: "head", name: "decoder.conv_out", cin: b[0], cout: c.out_channels, level, tlevel });
  return units;
}

/** Channels a unit outputs. */
export function unitOutChannels(u: HunyuanVaeUnit): number {
  return u.kind === "attn" || u.kind === "up" ? u.dim : u.cout;
}

/** Channels a unit reads. */
export function unitInChannels(u: HunyuanVaeUnit): number {
  return u.kind === "attn" || u.kind === "up" ? u.dim : u.cin;
}

/** Expected decoder-side key -> shape map (post_quant_conv and decoder.*; the encoder is not used). */
export function decoderShapes(c: HunyuanVaeConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const L = c.latent_channels;
  m.set("post_quant_conv.weight", [L, L, 1, 1, 1]);
  m.set("post_quant_conv.bias", [L]);
  const conv = (p: string, o: number, i: number, k = 3) => {
    m.set(`${p}.conv.weight`, [o, i, k, k, k]);
    m.set(`${p}.conv.bias`, [o]);
  };
  const norm = (p: string, ch: number) => {
    m.set(`${p}.weight`, [ch]);
    m.set(`${p}.bias`, [ch]);
  };
  for (const u of decoderUnits(c)) {
    const p = u.name;
    if (u.kind === "in") conv(p, u.cout, u.cin);
    else if (u.kind === "resnet") {
      norm(`${p}.norm1`, u.cin);
      conv(`${p}.conv1`, u.cout, u.cin);
      norm(`${p}.norm2`, u.cout);
      conv(`${p}.conv2`, u.cout, u.cout);
      if (u.cin !== u.cout) conv(`${p}.conv_shortcut`, u.cout, u.cin, 1);
    } else if (u.kind === "attn") {
      norm(`${p}.group_norm`, u.dim);
      for (const k of ["to_q", "to_k", "to_v", "to_out.0"]) {
        m.set(`${p}.${k}.weight`, [u.dim, u.dim]);
        m.set(`${p}.${k}.bias`, [u.dim]);
      }
    } else if (u.kind === "up") conv(`${p}.conv`, u.dim, u.dim);
    else {
      norm("decoder.conv_norm_out", u.cin);
      conv(p, u.cout, u.cin);
    }
  }
  return m;
}

export function decoderParameterCount(c: HunyuanVaeConfig): number {
  let n = 0;
  for (const s of decoderShapes(c).values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * Exact multiply-accumulates of one decoder pass over F latent frames of h x w (3x3x3 and 1x1x1
 * convolutions, the attention's projections and its causal score / value products; norms,
 * activations and resampling are not counted).
 */
export function decoderPassMacs(c: HunyuanVaeConfig, F: number, h: number, w: number): number {
  let macs = c.latent_channels * c.latent_channels * F * h * w; // post_quant_conv
  for (const u of decoderUnits(c)) {
    const px = (h << u.level) * (w << u.level);
    const T = framesAtLevel(F, u.tlevel);
    const n = T * px;
    if (u.kind === "in" || u.kind === "head") macs += n * u.cin * u.cout * 27;
    else if (u.kind === "resnet") macs += n * 27 * (u.cin * u.cout + u.cout * u.cout) + (u.cin !== u.cout ? n * u.cin * u.cout : 0);
    else if (u.kind === "attn") macs += 4 * n * u.dim * u.dim + px * px * u.dim * T * (T + 1); // query frame t sees (t + 1) frames, twice (scores, values)
    else {
      const To = u.time ? framesAtLevel(F, u.tlevel + 1) : T;
      const pxo = u.space ? 4 * px : px;
      macs += To * pxo * u.dim * u.dim * 27;
    }
  }
  return macs;
}
