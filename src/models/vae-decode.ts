/**
 * What the Wan2.1 and HunyuanVideo VAE decoders share: the decoded clip, weights checked per key,
 * the latent, folder and checkpoint-key checks, and diffusers' spatial tiling (tiled_decode: tiles
 * blended linearly into their upper and left neighbours, then cropped to the stride).
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError, UsageError, WeightsError } from "../errors.ts";
import { checkKeys, openCheckpoint, validateKeys, type Checkpoint } from "../weights/safetensors.ts";

/** Where weights come from: a checkpoint or an in-memory map (tests, benchmarks). */
export interface VaeWeightSource {
  read(key: string): Float32Array;
}

export function mapVaeSource(m: Map<string, Float32Array>): VaeWeightSource {
  return {
    read(key) {
      const v = m.get(key);
      if (!v) throw new WeightsError("<in-memory weights>", key, "missing", "supply every key of decoderShapes(config)");
      return v;
    },
  };
}

export interface TileOptions {
  /** Tile size in output pixels (diffusers tile_sample_min_height / width; default 256). */
  sampleHeight?: number;
  sampleWidth?: number;
  /** Distance between tile starts in output pixels (diffusers tile_sample_stride_*; default 192). */
  strideHeight?: number;
  strideWidth?: number;
}

/** A decoded clip: [3, T, H, W] float32 in [-1, 1] (the layout of the pipeline's Video). */
export interface DecodedVideo {
  data: Float32Array;
  channels: number;
  frames: number;
  height: number;
  width: number;
}

export interface TileGeometry {
  sampleHeight: number;
  sampleWidth: number;
  strideHeight: number;
  strideWidth: number;
  latH: number;
  latW: number;
  strideLatH: number;
  strideLatW: number;
  blendH: number;
  blendW: number;
}

const TILE_DEFAULTS = { sampleHeight: 256, sampleWidth: 256, strideHeight: 192, strideWidth: 192 };

/** Tiles of `t` (diffusers' defaults filled in) for a VAE of spatial scale `s`, checked. */
export function tileGeometry(s: number, t: TileOptions): TileGeometry {
  const v = { ...TILE_DEFAULTS, ...t };
  for (const [k, x] of Object.entries(v))
    if (!Number.isInteger(x) || x < s || x % s !== 0) throw new UsageError(`tile ${k} must be a positive multiple of ${s} pixels, got ${x}`, `use multiples of the VAE's spatial scale ${s} (diffusers defaults: 256 tiles, stride 192)`);
  if (v.strideHeight > v.sampleHeight || v.strideWidth > v.sampleWidth)
    throw new UsageError(`tile stride (${v.strideHeight} x ${v.strideWidth}) must not exceed the tile size (${v.sampleHeight} x ${v.sampleWidth})`, "tiles must overlap or touch: stride <= size");
  return { ...v, latH: v.sampleHeight / s, latW: v.sampleWidth / s, strideLatH: v.strideHeight / s, strideLatW: v.strideWidth / s, blendH: v.sampleHeight - v.strideHeight, blendW: v.sampleWidth - v.strideWidth };
}

/**
 * diffusers tiled_decode over latents of H x W: each tile (latent rows [i0, i1) x cols [j0, j1))
 * from `decodeTile`, row by row, blended into its upper and left neighbours and its stride-sized
 * top-left part written into `out` (clamped to [-1, 1] with `clamp`).
 */
export async function decodeTiles(H: number, W: number, tg: TileGeometry, out: DecodedVideo, clamp: boolean, decodeTile: (rows: [number, number], cols: [number, number]) => Promise<DecodedVideo>): Promise<void> {
  let prevRow: DecodedVideo[] = [];
  for (let i = 0, ri = 0; i < H; i += tg.strideLatH, ri++) {
    const row: DecodedVideo[] = [];
    for (let j = 0, cj = 0; j < W; j += tg.strideLatW, cj++) {
      const tile = await decodeTile([i, Math.min(i + tg.latH, H)], [j, Math.min(j + tg.latW, W)]);
      if (ri > 0) blendV(prevRow[cj], tile, tg.blendH);
      if (cj > 0) blendH(row[cj - 1], tile, tg.blendW);
      row.push(tile);
      // the cropped part of this tile is final: no later tile blends into rows/cols < stride
      writeCrop(tile, out, ri * tg.strideHeight, cj * tg.strideWidth, tg.strideHeight, tg.strideWidth, clamp);
    }
    prevRow = row;
  }
}

/** b[:, :, y] = a[:, :, a.h - e + y] (1 - y / e) + b[:, :, y] (y / e) for y < e (diffusers blend_v). */
function blendV(a: DecodedVideo, b: DecodedVideo, extent: number): void {
  const e = Math.min(a.height, b.height, extent);
  const C = b.channels * b.frames;
  for (let c = 0; c < C; c++)
    for (let y = 0; y < e; y++) {
      const ra = (c * a.height + a.height - e + y) * a.width;
      const rb = (c * b.height + y) * b.width;
      for (let x = 0; x < b.width; x++) b.data[rb + x] = a.data[ra + x] * (1 - y / e) + b.data[rb + x] * (y / e);
    }
}

/** b[..., x] = a[..., a.w - e + x] (1 - x / e) + b[..., x] (x / e) for x < e (diffusers blend_h). */
function blendH(a: DecodedVideo, b: DecodedVideo, extent: number): void {
  const e = Math.min(a.width, b.width, extent);
  const rows = b.channels * b.frames * b.height;
  for (let r = 0; r < rows; r++) {
    const ra = r * a.width + a.width - e;
    const rb = r * b.width;
    for (let x = 0; x < e; x++) b.data[rb + x] = a.data[ra + x] * (1 - x / e) + b.data[rb + x] * (x / e);
  }
}

/** Write tile[:, :, :sh, :sw] at (y0, x0) of `out`, cut to the output, clamped to [-1, 1] with `clamp`. */
function writeCrop(tile: DecodedVideo, out: DecodedVideo, y0: number, x0: number, sh: number, sw: number, clamp: boolean): void {
  const h = Math.min(sh, tile.height, out.height - y0);
  const w = Math.min(sw, tile.width, out.width - x0);
  if (h <= 0 || w <= 0) return;
  const C = tile.channels * tile.frames;
  for (let c = 0; c < C; c++)
    for (let y = 0; y < h; y++) {
      const src = (c * tile.height + y) * tile.width;
      const dst = (c * out.height + y0 + y) * out.width + x0;
      if (clamp) clampInto(tile.data.subarray(src, src + w), out.data, dst);
      else out.data.set(tile.data.subarray(src, src + w), dst);
    }
}

/** dst[offset + i] = clamp(src[i], -1, 1) (diffusers' postprocess clamps the decoded video to [-1, 1]). */
export function clampInto(src: Float32Array, dst: Float32Array, offset: number): void {
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    dst[offset + i] = v > 1 ? 1 : v < -1 ? -1 : v;
  }
}

/** A weight getter that checks each tensor's size against `shapes` (`fix` names the config fields). */
export function vaeWeightGetter(shapes: ReadonlyMap<string, readonly number[]>, source: VaeWeightSource, fix: string): (key: string) => Float32Array {
  return (k) => {
    const s = shapes.get(k);
    if (!s) throw new Error(`internal: no expected shape for ${k}`);
    const v = source.read(k);
    const n = s.reduce((a, b) => a * b, 1);
    if (v.length !== n) throw new ConfigError(`VAE weight ${k} has ${v.length} values, expected shape [${s}]`, fix);
    return v;
  };
}

/** Check latents [C, F, H, W] (or [1, C, F, H, W]) with C = `z`, the config's `field`; returns [C, F, H, W]. */
export function checkVaeLatents(latents: Float32Array, dims: readonly number[], z: number, field: string): [number, number, number, number] {
  const fix = `pass latents as a Float32Array with dims [${z}, F, H, W] (or [1, ${z}, F, H, W]): the transformer's output for this VAE`;
  if (!(latents instanceof Float32Array)) throw new UsageError("latents must be a Float32Array", fix);
  if (!Array.isArray(dims) || (dims.length !== 4 && dims.length !== 5))
    throw new UsageError(`latent dims must be [C, F, H, W] or [1, C, F, H, W], got ${JSON.stringify(dims)}`, fix);
  if (!dims.every((d) => Number.isInteger(d) && d >= 1)) throw new UsageError(`latent dims must be positive integers, got ${JSON.stringify(dims)}`, fix);
  if (dims.length === 5 && dims[0] !== 1) throw new UsageError(`batch ${dims[0]} is not supported: decode one video at a time`, "decode each batch entry separately (dims [1, C, F, H, W] or [C, F, H, W])");
  const [C, F, H, W] = dims.length === 5 ? dims.slice(1) : dims;
  if (C !== z)
    throw new UsageError(
      `latents have ${C} channels but this VAE's ${field} is ${z}`,
      `the latent channels must equal vae/config.json ${field} (${z}); check the dims order is [C, F, H, W] and that the transformer (out_channels) and the VAE come from the same model`,
    );
  const n = C * F * H * W;
  if (latents.length !== n) throw new UsageError(`latents hold ${latents.length} values but dims [${dims}] need ${n}`, fix);
  return [C, F, H, W];
}

/** `<dir>/vae` when it holds a config.json, else `dir` itself when it has a config.json (`model` names the family in the error). */
function resolveVaeDir(dir: string, model: string): string {
  const root = resolve(dir);
  if (existsSync(join(root, "vae", "config.json"))) return join(root, "vae");
  if (existsSync(join(root, "config.json"))) return root;
  throw new ConfigError(`no VAE found in ${root}: looked for vae/config.json and config.json`, `point at a diffusers ${model} model folder (with vae/) or at its vae/ folder`);
}

/**
 * Open a diffusers VAE folder (`<model>/vae` or the vae folder itself) without reading any weight:
 * config.json, then every decoder key and shape in the checkpoint's header (missing, wrong shape,
 * unexpected decoder.* keys; `fix` names the config fields). The caller closes the checkpoint.
 */
export function openVaeFolder<C>(dir: string, model: string, readConfig: (path: string) => C, shapes: (c: C) => ReadonlyMap<string, readonly number[]>, fix: string): { vaeDir: string; config: C; ckpt: Checkpoint } {
  const vaeDir = resolveVaeDir(dir, model);
  const config = readConfig(join(vaeDir, "config.json"));
  const ckpt = openCheckpoint(vaeDir);
  try {
    checkDecoderKeys(ckpt, shapes(config), fix);
  } catch (e) {
    ckpt.close();
    throw e;
  }
  return { vaeDir, config, ckpt };
}

/** Every decoder key and shape of `expected` in the checkpoint's header, and no decoder key beyond them (`fix` names the config fields). */
function checkDecoderKeys(ckpt: Checkpoint, expected: ReadonlyMap<string, readonly number[]>, fix: string): void {
  validateKeys(ckpt, expected, { allowUnexpected: true });
  const extra = checkKeys(ckpt, expected).unexpected.filter((u) => u.key.startsWith("decoder.") || u.key.startsWith("post_quant_conv."));
  if (extra.length > 0)
    throw new WeightsError(
      extra[0].file,
      extra[0].key,
      `${extra.length} decoder key(s) this config does not have: ${extra.slice(0, 5).map((u) => u.key).join(", ")}${extra.length > 5 ? ", ..." : ""}`,
      `the checkpoint and vae/config.json disagree (${fix}); use the config that came with the weights`,
    );
}
