/**
 * The Wan2.1 VAE config (diffusers `AutoencoderKLWan` config.json, validated strictly) and the
 * decoder's layout derived from it: the ordered list of units (conv_in, middle resnets and
 * attention, up-block resnets and upsamplers, head) with their channel counts, spatial level
 * (0 = latent resolution, each upsampler +1) and the causal convolutions that carry a temporal
 * cache between chunks. Any size works, from tiny test configs to the real 127M-parameter VAE.
 *
 * Structure (diffusers `WanDecoder3d`, `is_residual = false`, i.e. Wan2.1):
 *   d = decoder_base_dim ?? base_dim, m = dim_mult, n = m.length
 *   dims = [d m[n-1], d m[n-1], ..., d m[0]]                     (n + 1 entries)
 *   conv_in z_dim -> dims[0]; mid: resnet, attention, resnet at dims[0]
 *   up block i (0..n-1): in = dims[i] (halved for i > 0: the previous upsampler halves channels),
 *     num_res_blocks + 1 resnets in -> dims[i+1]; an upsampler on every block but the last:
 *     "upsample3d" (time_conv doubles frames, then 2x spatial) where reversed(temperal_downsample)[i],
 *     else "upsample2d"; both end with a 3x3 conv dims[i+1] -> dims[i+1] / 2
 *   head: norm_out, SiLU, conv_out dims[n] -> out_channels
 */
import { readFileSync } from "node:fs";
import { ConfigError, closest } from "../../errors.ts";

export interface WanVaeConfig {
  base_dim: number;
  decoder_base_dim: number | null;
  z_dim: number;
  dim_mult: number[];
  num_res_blocks: number;
  attn_scales: number[];
  temperal_downsample: boolean[];
  dropout: number;
  latents_mean: number[];
  latents_std: number[];
  in_channels: number;
  out_channels: number;
}

/** diffusers AutoencoderKLWan.__init__ defaults (the released Wan2.1 VAE uses exactly these). */
const WAN21_VAE_LATENTS_MEAN = [
  -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497,
  0.2503, -0.2921,
];
const WAN21_VAE_LATENTS_STD = [
  2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251,
  1.916,
];

const DEFAULTS: WanVaeConfig = {
  base_dim: 96,
  decoder_base_dim: null,
  z_dim: 16,
  dim_mult: [1, 2, 4, 4],
  num_res_blocks: 2,
  attn_scales: [],
  temperal_downsample: [false, true, true],
  dropout: 0,
  latents_mean: WAN21_VAE_LATENTS_MEAN,
  latents_std: WAN21_VAE_LATENTS_STD,
  in_channels: 3,
  out_channels: 3,
};

/** Fields of newer diffusers configs that only matter for the Wan2.2 VAE; checked, not stored. */
const EXTRA_FIELDS = ["is_residual", "patch_size", "scale_factor_temporal", "scale_factor_spatial"] as const;
const WAN_VAE_FIELDS: string[] = [...Object.keys(DEFAULTS), ...EXTRA_FIELDS];

const FIX = "use the vae/config.json of a diffusers Wan2.1 checkpoint (AutoencoderKLWan)";

export function parseWanVaeConfig(raw: unknown, source = "vae/config.json"): WanVaeConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ConfigError(`${source}: expected a JSON object`, FIX);
  const obj = raw as Record<string, unknown>;
  if (typeof obj._class_name === "string" && obj._class_name !== "AutoencoderKLWan")
    throw new ConfigError(`${source}: _class_name is ${obj._class_name}, not AutoencoderKLWan`, "point at the vae/ folder of a Wan2.1 diffusers checkpoint");
  for (const k of Object.keys(obj)) {
    if (k.startsWith("_")) continue;
    if (!WAN_VAE_FIELDS.includes(k))
      throw new ConfigError(`${source}: unknown field "${k}"`, `valid fields: ${WAN_VAE_FIELDS.join(", ")} (did you mean ${closest(k, WAN_VAE_FIELDS, 1)[0]}?)`);
  }
  if (obj.is_residual !== undefined && obj.is_residual !== false)
    throw new ConfigError(`${source}: is_residual = ${JSON.stringify(obj.is_residual)} is the Wan2.2 VAE`, "only the Wan2.1 VAE (is_residual false) is supported");
  if (obj.patch_size !== undefined && obj.patch_size !== null)
    throw new ConfigError(`${source}: patch_size = ${JSON.stringify(obj.patch_size)} is the Wan2.2 VAE`, "only the Wan2.1 VAE (patch_size null) is supported");
  const cfg = { ...DEFAULTS, ...obj } as Record<string, unknown>;
  const posInt = (k: string, v: unknown = cfg[k]): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new ConfigError(`${source}: ${k} must be a positive integer, got ${JSON.stringify(v)}`, FIX);
    return v;
  };
  for (const k of ["base_dim", "z_dim", "num_res_blocks", "in_channels", "out_channels"]) posInt(k);
  if (cfg.decoder_base_dim !== null) posInt("decoder_base_dim");
  const dm = cfg.dim_mult;
  if (!Array.isArray(dm) || dm.length < 1 || !dm.every((v) => Number.isInteger(v) && v >= 1))
    throw new ConfigError(`${source}: dim_mult must be a non-empty list of positive integers, got ${JSON.stringify(dm)}`, FIX);
  const td = cfg.temperal_downsample;
  if (!Array.isArray(td) || !td.every((v) => typeof v === "boolean"))
    throw new ConfigError(`${source}: temperal_downsample must be a list of booleans, got ${JSON.stringify(td)}`, FIX);
  if (td.length !== dm.length - 1)
    throw new ConfigError(`${source}: temperal_downsample has ${td.length} entries but dim_mult has ${dm.length} (needs ${dm.length - 1})`, "one entry per down/up-sampling stage: len(dim_mult) - 1");
  const as = cfg.attn_scales;
  if (!Array.isArray(as)) throw new ConfigError(`${source}: attn_scales must be a list`, FIX);
  if (as.length > 0)
    throw new ConfigError(`${source}: attn_scales ${JSON.stringify(as)} is not supported`, "Wan2.1 uses attn_scales [] (the diffusers decoder has no attention outside the middle block)");
  if (typeof cfg.dropout !== "number" || !(cfg.dropout >= 0 && cfg.dropout < 1)) throw new ConfigError(`${source}: dropout must be a number in [0, 1)`, FIX);
  const z = cfg.z_dim as number;
  for (const k of ["latents_mean", "latents_std"]) {
    const v = cfg[k];
    if (!Array.isArray(v) || v.length !== z || !v.every((x) => typeof x === "number" && Number.isFinite(x)))
      throw new ConfigError(`${source}: ${k} must be ${z} finite numbers (one per latent channel, z_dim = ${z}), got ${Array.isArray(v) ? `${v.length} entries` : JSON.stringify(v)}`, FIX);
  }
  if (!(cfg.latents_std as number[]).every((x) => x > 0)) throw new ConfigError(`${source}: latents_std must be positive`, FIX);
  const parsed: WanVaeConfig = {
    base_dim: cfg.base_dim as number,
    decoder_base_dim: (cfg.decoder_base_dim as number | null) ?? null,
    z_dim: z,
    dim_mult: [...(dm as number[])],
    num_res_blocks: cfg.num_res_blocks as number,
    attn_scales: [],
    temperal_downsample: [...(td as boolean[])],
    dropout: cfg.dropout as number,
    latents_mean: [...(cfg.latents_mean as number[])],
    latents_std: [...(cfg.latents_std as number[])],
    in_channels: cfg.in_channels as number,
    out_channels: cfg.out_channels as number,
  };
  // scale factors are informational in diffusers (the pipeline sizes latents with them): when
  // present they must agree with the structure, or the pipeline's frame/pixel counts would be wrong
  for (const [k, want] of [["scale_factor_spatial", spatialScale(parsed)], ["scale_factor_temporal", temporalScale(parsed)]] as const) {
    const v = obj[k];
    if (v === undefined || v === null) continue;
    if (posInt(k, v) !== want)
      throw new ConfigError(`${source}: ${k} = ${v} but the structure (dim_mult, temperal_downsample) gives ${want}`, `set ${k} to ${want} or fix dim_mult / temperal_downsample`);
  }
  return parsed;
}

export function readWanVaeConfig(path: string): WanVaeConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, "point at a diffusers Wan2.1 folder with vae/config.json");
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path} is not valid JSON: ${(e as Error).message}`, FIX);
  }
  return parseWanVaeConfig(raw, path);
}

/** The released Wan2.1 VAE config (diffusers defaults). */
export function wan21VaeConfig(overrides: Record<string, unknown> = {}): WanVaeConfig {
  return parseWanVaeConfig({ ...overrides }, "wan21 defaults");
}

/** Pixels per latent pixel: 2^(number of upsamplers). */
export const spatialScale = (c: WanVaeConfig): number => 2 ** (c.dim_mult.length - 1);
/** Frames per latent frame after the first: 2^(number of temporal upsamplers). */
export const temporalScale = (c: WanVaeConfig): number => 2 ** c.temperal_downsample.filter(Boolean).length;
/** Decoded frames for F latent frames: the first gives 1 frame, each next temporalScale. */
export const decodedFrames = (c: WanVaeConfig, latentFrames: number): number => 1 + temporalScale(c) * (latentFrames - 1);

// ---------------------------------------------------------------------------------------------
// decoder layout

/** A causal 3x3x3 (or 3x1x1) convolution whose last two input frames are carried to the next chunk. */
export interface CacheSpec {
  /** Weight prefix of the convolution, e.g. "decoder.up_blocks.0.resnets.1.conv2" (unique). */
  key: string;
  /** Channels of the cached input. */
  channels: number;
  /** Spatial level of the cached input (0 = latent resolution). */
  level: number;
}

export type DecoderUnit =
  | { kind: "in"; name: string; cin: number; cout: number; level: number }
  | { kind: "resnet"; name: string; cin: number; cout: number; level: number }
  | { kind: "attn"; name: string; dim: number; level: number }
  | { kind: "up"; name: string; dim: number; cout: number; temporal: boolean; level: number }
  | { kind: "head"; name: string; cin: number; cout: number; level: number };

/** The decoder units in execution order; `level` is the unit's input level. */
export function decoderUnits(c: WanVaeConfig): DecoderUnit[] {
  const d = c.decoder_base_dim ?? c.base_dim;
  const n = c.dim_mult.length;
  const rev = [...c.dim_mult].reverse();
  const dims = [d * c.dim_mult[n - 1], ...rev.map((u) => d * u)];
  const tUp = [...c.temperal_downsample].reverse();
  const units: DecoderUnit[] = [];
  units.push({ kind: "in", name: "decoder.conv_in", cin: c.z_dim, cout: dims[0], level: 0 });
  units.push({ kind: "resnet", name: "decoder.mid_block.resnets.0", cin: dims[0], cout: dims[0], level: 0 });
  units.push({ kind: "attn", name: "decoder.mid_block.attentions.0", dim: dims[0], level: 0 });
  units.push({ kind: "resnet", name: "decoder.mid_block.resnets.1", cin: dims[0], cout: dims[0], level: 0 });
  let level = 0;
  for (let i = 0; i < n; i++) {
    let cin = i > 0 ? Math.floor(dims[i] / 2) : dims[i];
    const cout = dims[i + 1];
    for (let j = 0; j <= c.num_res_blocks; j++) {
      units.push({ kind: "resnet", name: `decoder.up_blocks.${i}.resnets.${j}`, cin, cout, level });
      cin = cout;
    }
    if (i !== n - 1) {
      units.push({ kind: "up", name: `decoder.up_blocks.${i}.upsamplers.0`, dim: cout, cout: Math.floor(cout / 2), temporal: tUp[i], level });
      level++;
    }
  }
  const last = dims[n];
  units.push({ kind: "head", name: "decoder.conv_out", cin: last, cout: c.out_channels, level });
  return units;
}

/** The caches a unit reads and writes (first chunk: upsample3d has none, its time_conv is skipped). */
export function unitCaches(u: DecoderUnit, first = false): CacheSpec[] {
  switch (u.kind) {
    case "in":
      return [{ key: u.name, channels: u.cin, level: u.level }];
    case "resnet":
      return [
        { key: `${u.name}.conv1`, channels: u.cin, level: u.level },
        { key: `${u.name}.conv2`, channels: u.cout, level: u.level },
      ];
    case "attn":
      return [];
    case "up":
      return u.temporal && !first ? [{ key: `${u.name}.time_conv`, channels: u.dim, level: u.level }] : [];
    case "head":
      return [{ key: u.name, channels: u.cin, level: u.level }];
  }
}

/** Channels a unit outputs. */
export function unitOutChannels(u: DecoderUnit): number {
  return u.kind === "attn" ? u.dim : u.cout;
}

/** Expected decoder-side key -> shape map (post_quant_conv and decoder.*; the encoder is not used). */
export function decoderShapes(c: WanVaeConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const z = c.z_dim;
  m.set("post_quant_conv.weight", [z, z, 1, 1, 1]);
  m.set("post_quant_conv.bias", [z]);
  const conv3 = (p: string, o: number, i: number) => {
    m.set(`${p}.weight`, [o, i, 3, 3, 3]);
    m.set(`${p}.bias`, [o]);
  };
  for (const u of decoderUnits(c)) {
    const p = u.name;
    if (u.kind === "in") conv3(p, u.cout, u.cin);
    else if (u.kind === "resnet") {
      m.set(`${p}.norm1.gamma`, [u.cin, 1, 1, 1]);
      conv3(`${p}.conv1`, u.cout, u.cin);
      m.set(`${p}.norm2.gamma`, [u.cout, 1, 1, 1]);
      conv3(`${p}.conv2`, u.cout, u.cout);
      if (u.cin !== u.cout) {
        m.set(`${p}.conv_shortcut.weight`, [u.cout, u.cin, 1, 1, 1]);
        m.set(`${p}.conv_shortcut.bias`, [u.cout]);
      }
    } else if (u.kind === "attn") {
      m.set(`${p}.norm.gamma`, [u.dim, 1, 1]);
      m.set(`${p}.to_qkv.weight`, [3 * u.dim, u.dim, 1, 1]);
      m.set(`${p}.to_qkv.bias`, [3 * u.dim]);
      m.set(`${p}.proj.weight`, [u.dim, u.dim, 1, 1]);
      m.set(`${p}.proj.bias`, [u.dim]);
    } else if (u.kind === "up") {
      m.set(`${p}.resample.1.weight`, [u.cout, u.dim, 3, 3]);
      m.set(`${p}.resample.1.bias`, [u.cout]);
      if (u.temporal) {
        m.set(`${p}.time_conv.weight`, [2 * u.dim, u.dim, 3, 1, 1]);
        m.set(`${p}.time_conv.bias`, [2 * u.dim]);
      }
    } else {
      m.set("decoder.norm_out.gamma", [u.cin, 1, 1, 1]);
      conv3(p, u.cout, u.cin);
    }
  }
  return m;
}

export function decoderParameterCount(c: WanVaeConfig): number {
  let n = 0;
  for (const s of decoderShapes(c).values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * Exact multiply-accumulates of one decoder chunk at latent size h x w (first chunk: 1 latent frame
 * -> 1 frame; next chunks: 1 latent frame -> temporalScale frames). Convolutions, attention matmuls
 * and the 1x1 convs; norms and activations are not counted.
 */
export function decoderChunkMacs(c: WanVaeConfig, h: number, w: number, first: boolean): number {
  let macs = c.z_dim * c.z_dim * h * w; // post_quant_conv
  let t = 1;
  for (const u of decoderUnits(c)) {
    const px = h * 2 ** u.level * (w * 2 ** u.level);
    const n = t * px;
    if (u.kind === "in" || u.kind === "head") macs += n * u.cin * u.cout * 27;
    else if (u.kind === "resnet") macs += n * 27 * (u.cin * u.cout + u.cout * u.cout) + (u.cin !== u.cout ? n * u.cin * u.cout : 0);
    else if (u.kind === "attn") macs += t * (px * u.dim * 3 * u.dim + 2 * px * px * u.dim + px * u.dim * u.dim);
    else {
      if (u.temporal && !first) {
        macs += n * u.dim * 2 * u.dim * 3;
        t *= 2;
      }
      macs += t * px * 4 * u.dim * u.cout * 9;
    }
  }
  return macs;
}

/** Bytes of the temporal caches (float32, two frames per causal conv) at latent size h x w. */
export function decoderCacheBytes(c: WanVaeConfig, h: number, w: number): number {
  let n = 0;
  for (const u of decoderUnits(c)) for (const s of unitCaches(u)) n += s.channels * 2 * (h << s.level) * (w << s.level);
  return 4 * n;
}
