/**
 * The Wan2.1 VAE decoder (diffusers AutoencoderKLWan.decode) on onnxruntime: the latent video is
 * decoded one latent frame at a time (the first latent frame gives 1 video frame, every next one
 * temporalScale = 4), each chunk running the decoder's stage graphs with the causal temporal
 * caches (two frames per causal conv) passed in and out explicitly. Peak memory is one chunk's
 * activations plus the caches, whatever the clip length; with `tile` the frame is also split into
 * overlapping spatial tiles (diffusers tiled_decode: each tile decoded through all frames with its
 * own caches, then blended linearly into its upper and left neighbours), which bounds the caches
 * and activations by the tile size instead of the frame size.
 *
 * Only the decoder is implemented (post_quant_conv + decoder.*); encoder.* and quant_conv.* keys
 * in the checkpoint are ignored.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { BackendOptions, StageSession } from "../../backend/ort.ts";
import { ConfigError, UsageError, WeightsError } from "../../errors.ts";
import { checkKeys, openCheckpoint, validateKeys } from "../../weights/safetensors.ts";
import {
  DecoderUnit, WanVaeConfig, decodedFrames, decoderShapes, decoderUnits, readWanVaeConfig, spatialScale, temporalScale,
  unitOutChannels,
} from "./config.ts";
import { CacheIo, WeightGetter, buildStageGraph } from "./graphs.ts";

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

export interface WanVaeOptions extends BackendOptions {
  /**
   * Session granularity: "unit" (default) = one session per decoder unit (conv_in, each resnet,
   * the attention, each upsampler, head): the smallest peak memory, and per-unit outputs for
   * tracing; "block" = conv_in + middle block, then one session per up block (the last with the
   * head): fewer sessions, larger per-call working set, and the up blocks holding an upsample3d
   * are built twice (their first-chunk variant), so their weights are held twice.
   */
  group?: "unit" | "block";
}

export interface TileOptions {
  /** Tile size in output pixels (diffusers tile_sample_min_height / width; default 256). */
  sampleHeight?: number;
  sampleWidth?: number;
  /** Distance between tile starts in output pixels (diffusers tile_sample_stride_*; default 192). */
  strideHeight?: number;
  strideWidth?: number;
}

export interface DecodeOptions {
  /** Apply the pipeline's de-normalisation latents / (1 / latents_std) + latents_mean (default true). */
  denormalize?: boolean;
  /** Spatial tiling (off by default); `true` uses diffusers' defaults (256 px tiles, stride 192). */
  tile?: boolean | TileOptions;
  /** Progress: chunks (latent frames x tiles) done of total. */
  onChunk?: (done: number, total: number) => void;
  /** Every stage output of every chunk (tests and debugging; unclamped, [1, C, T, H, W]). */
  trace?: (stage: string, chunk: number, data: Float32Array, dims: number[]) => void;
}

/** A decoded clip: [3, T, H, W] float32 in [-1, 1] (the layout of the pipeline's Video). */
export interface DecodedVideo {
  data: Float32Array;
  channels: number;
  frames: number;
  height: number;
  width: number;
}

interface Stage {
  name: string;
  units: DecoderUnit[];
  session: StageSession;
  caches: CacheIo[];
  /** First-chunk variant, only for stages holding an upsample3d. */
  first?: { session: StageSession; caches: CacheIo[] };
}

/** Stage partition of the units. */
function partition(units: DecoderUnit[], group: "unit" | "block"): DecoderUnit[][] {
  if (group === "unit") return units.map((u) => [u]);
  const stages: DecoderUnit[][] = [];
  // conv_in + middle block | up block 0 | ... | last up block + head
  const keyOf = (u: DecoderUnit): string | null => (u.kind === "head" ? null : (/^decoder\.up_blocks\.(\d+)\./.exec(u.name)?.[1] ?? "mid"));
  let lastKey: string | null = null;
  for (const u of units) {
    const k = keyOf(u);
    if (stages.length > 0 && (k === null || k === lastKey)) stages[stages.length - 1].push(u);
    else {
      stages.push([u]);
      lastKey = k;
    }
  }
  return stages;
}

/** Cache state of one decode (or one tile): the last two input frames of every causal conv. */
interface Cache {
  frames: Map<string, Float32Array>;
  /** One shared zero buffer for the caches before their first write (read-only for onnxruntime). */
  zeros: Float32Array | null;
}

export class WanVaeDecoder {
  private constructor(
    readonly config: WanVaeConfig,
    private readonly stages: Stage[],
  ) {}

  /** Build the stage sessions from a config and a weight source (shapes checked per key). */
  static async create(config: WanVaeConfig, source: VaeWeightSource, opts: WanVaeOptions = {}): Promise<WanVaeDecoder> {
    const group = opts.group ?? "unit";
    if (group !== "unit" && group !== "block") throw new UsageError(`group must be "unit" or "block", got ${JSON.stringify(group)}`);
    const shapes = decoderShapes(config);
    const w: WeightGetter = (k) => {
      const s = shapes.get(k);
      if (!s) throw new Error(`internal: no expected shape for ${k}`);
      const v = source.read(k);
      const n = s.reduce((a, b) => a * b, 1);
      if (v.length !== n) throw new ConfigError(`VAE weight ${k} has ${v.length} values, expected shape [${s}]`, "the weights do not match vae/config.json (base_dim, z_dim, dim_mult, num_res_blocks)");
      return v;
    };
    const stages: Stage[] = [];
    try {
      for (const units of partition(decoderUnits(config), group)) {
        const mk = async (first: boolean) => {
          const sg = buildStageGraph(config, w, units, { first });
          return { session: await StageSession.create(sg.graph.name, sg.graph.toModel(), opts), caches: sg.caches };
        };
        const next = await mk(false);
        const stage: Stage = { name: next.session.name, units, ...next };
        if (units.some((u) => u.kind === "up" && u.temporal)) stage.first = await mk(true);
        stages.push(stage);
      }
    } catch (e) {
      for (const s of stages) {
        await s.session.release();
        await s.first?.session.release();
      }
      throw e;
    }
    return new WanVaeDecoder(config, stages);
  }

  /** Names of the stages in execution order (unit names with group "unit"). */
  get stageNames(): string[] {
    return this.stages.map((s) => s.name);
  }

  /** Video frames decoded from `latentFrames` latent frames: 1 + 4 (F - 1) for Wan2.1. */
  framesFor(latentFrames: number): number {
    return decodedFrames(this.config, latentFrames);
  }

  /**
   * Decode latents [C, F, H, W] (or [1, C, F, H, W]) with C = z_dim to a clip [3, 1 + 4 (F - 1),
   * 8 H, 8 W] clamped to [-1, 1]. Latents are the transformer's output space unless
   * `denormalize: false` (then they are raw VAE latents z).
   */
  async decode(latents: Float32Array, dims: readonly number[], opts: DecodeOptions = {}): Promise<DecodedVideo> {
    const [C, F, H, W] = this.checkLatents(latents, dims);
    const z = opts.denormalize === false ? latents : this.denormalize(latents, C, F * H * W);
    const s = spatialScale(this.config);
    const out: DecodedVideo = { data: new Float32Array(this.config.out_channels * this.framesFor(F) * H * s * W * s), channels: this.config.out_channels, frames: this.framesFor(F), height: H * s, width: W * s };
    const tile = opts.tile === true ? {} : opts.tile || null;
    if (tile) {
      const t = this.tileGeometry(tile);
      if (H > t.latH || W > t.latW) {
        await this.decodeTiled(z, F, H, W, t, out, opts);
        return out;
      }
    }
    await this.decodeRegion(z, F, H, W, [0, H], [0, W], opts, 0, F, out);
    return out;
  }

  /** Apply the pipeline's de-normalisation in float32: x / float32(1 / std) + mean. */
  private denormalize(x: Float32Array, C: number, plane: number): Float32Array {
    const y = new Float32Array(x.length);
    for (let c = 0; c < C; c++) {
      const inv = Math.fround(1 / Math.fround(this.config.latents_std[c]));
      const mean = Math.fround(this.config.latents_mean[c]);
      for (let i = c * plane; i < (c + 1) * plane; i++) y[i] = Math.fround(Math.fround(x[i] / inv) + mean);
    }
    return y;
  }

  private checkLatents(latents: Float32Array, dims: readonly number[]): [number, number, number, number] {
    const z = this.config.z_dim;
    const fix = `pass latents as a Float32Array with dims [${z}, F, H, W] (or [1, ${z}, F, H, W]): the transformer's output for this VAE`;
    if (!(latents instanceof Float32Array)) throw new UsageError("latents must be a Float32Array", fix);
    if (!Array.isArray(dims) || (dims.length !== 4 && dims.length !== 5))
      throw new UsageError(`latent dims must be [C, F, H, W] or [1, C, F, H, W], got ${JSON.stringify(dims)}`, fix);
    if (!dims.every((d) => Number.isInteger(d) && d >= 1)) throw new UsageError(`latent dims must be positive integers, got ${JSON.stringify(dims)}`, fix);
    if (dims.length === 5 && dims[0] !== 1) throw new UsageError(`batch ${dims[0]} is not supported: decode one video at a time`, "decode each batch entry separately (dims [1, C, F, H, W] or [C, F, H, W])");
    const [C, F, H, W] = dims.length === 5 ? dims.slice(1) : dims;
    if (C !== z)
      throw new UsageError(`latents have ${C} channels but this VAE's z_dim is ${z}`, `the latent channels must equal vae/config.json z_dim (${z}); check the dims order is [C, F, H, W] and that the transformer (out_channels) and the VAE come from the same model`);
    const n = C * F * H * W;
    if (latents.length !== n) throw new UsageError(`latents hold ${latents.length} values but dims [${dims}] need ${n}`, fix);
    return [C, F, H, W];
  }

  private tileGeometry(t: TileOptions) {
    const s = spatialScale(this.config);
    const v = { sampleHeight: 256, sampleWidth: 256, strideHeight: 192, strideWidth: 192, ...t };
    for (const [k, x] of Object.entries(v))
      if (!Number.isInteger(x) || x < s || x % s !== 0) throw new UsageError(`tile ${k} must be a positive multiple of ${s} pixels, got ${x}`, `use multiples of the VAE's spatial scale ${s} (diffusers defaults: 256 tiles, stride 192)`);
    if (v.strideHeight > v.sampleHeight || v.strideWidth > v.sampleWidth)
      throw new UsageError(`tile stride (${v.strideHeight} x ${v.strideWidth}) must not exceed the tile size (${v.sampleHeight} x ${v.sampleWidth})`, "tiles must overlap or touch: stride <= size");
    return { ...v, latH: v.sampleHeight / s, latW: v.sampleWidth / s, strideLatH: v.strideHeight / s, strideLatW: v.strideWidth / s, blendH: v.sampleHeight - v.strideHeight, blendW: v.sampleWidth - v.strideWidth };
  }

  /**
   * Decode the latent rows [h0, h1) x cols [w0, w1) over all frames with fresh caches. Returns the
   * unclamped region video [3, T, (h1-h0) s, (w1-w0) s], or writes it clamped into `into` (same shape).
   */
  private async decodeRegion(z: Float32Array, F: number, H: number, W: number, rows: [number, number], cols: [number, number], opts: DecodeOptions, chunkBase: number, totalChunks: number, into?: DecodedVideo): Promise<DecodedVideo> {
    const s = spatialScale(this.config);
    const ts = temporalScale(this.config);
    const h = rows[1] - rows[0];
    const w = cols[1] - cols[0];
    const Cz = this.config.z_dim;
    const Co = this.config.out_channels;
    const frames = decodedFrames(this.config, F);
    const video: DecodedVideo = into ?? { data: new Float32Array(Co * frames * h * s * w * s), channels: Co, frames, height: h * s, width: w * s };
    if (video.data.length !== Co * frames * h * s * w * s) throw new Error("internal: output size");
    const cache: Cache = { frames: new Map(), zeros: null };
    const plane = h * s * w * s;
    let t0 = 0;
    for (let f = 0; f < F; f++) {
      const x = new Float32Array(Cz * h * w);
      for (let c = 0; c < Cz; c++)
        for (let y = 0; y < h; y++) {
          const src = ((c * F + f) * H + rows[0] + y) * W + cols[0];
          x.set(z.subarray(src, src + w), (c * h + y) * w);
        }
      const y = await this.runChunk(cache, x, h, w, f === 0, chunkBase + f, opts.trace);
      const T = f === 0 ? 1 : ts;
      for (let c = 0; c < Co; c++) {
        const src = y.subarray(c * T * plane, (c + 1) * T * plane);
        if (into) clampInto(src, video.data, (c * frames + t0) * plane);
        else video.data.set(src, (c * frames + t0) * plane);
      }
      t0 += T;
      opts.onChunk?.(chunkBase + f + 1, totalChunks);
    }
    return video;
  }

  /** One latent frame through every stage; updates `cache` in place; returns [1, Co, T, h s, w s]. */
  private async runChunk(cache: Cache, x: Float32Array, h: number, w: number, first: boolean, chunk: number, trace?: DecodeOptions["trace"]): Promise<Float32Array> {
    let cur = x;
    let C = this.config.z_dim;
    let T = 1;
    for (const st of this.stages) {
      const v = first && st.first ? st.first : st;
      const l0 = st.units[0].level;
      const feeds: Record<string, { data: Float32Array; dims: number[] }> = { x: { data: cur, dims: [1, C, T, h << l0, w << l0] } };
      for (const io of v.caches) {
        const { key, channels, level } = io.spec;
        const dims = [1, channels, 2, h << level, w << level];
        let data = cache.frames.get(key);
        if (!data) {
          const n = channels * 2 * (h << level) * (w << level);
          if (!cache.zeros || cache.zeros.length < n) cache.zeros = new Float32Array(n);
          data = cache.zeros.subarray(0, n);
        }
        feeds[io.input] = { data, dims };
      }
      const outs = await v.session.run(feeds, ["y", ...v.caches.map((io) => io.output)]);
      v.caches.forEach((io, i) => cache.frames.set(io.spec.key, outs[i + 1]));
      cur = outs[0];
      let level = l0;
      for (const u of st.units) {
        if (u.kind === "up") {
          level++;
          if (u.temporal && !first) T *= 2;
        }
        C = unitOutChannels(u);
      }
      const dims = [1, C, T, h << level, w << level];
      if (cur.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`internal: stage ${st.name} output has ${cur.length} values, expected [${dims}]`);
      trace?.(st.name, chunk, cur, dims);
    }
    return cur;
  }

  /** diffusers tiled_decode: tiles in latent space, decoded through all frames, blended in place. */
  private async decodeTiled(z: Float32Array, F: number, H: number, W: number, t: ReturnType<WanVaeDecoder["tileGeometry"]>, out: DecodedVideo, opts: DecodeOptions): Promise<void> {
    const rowStarts: number[] = [];
    for (let i = 0; i < H; i += t.strideLatH) rowStarts.push(i);
    const colStarts: number[] = [];
    for (let j = 0; j < W; j += t.strideLatW) colStarts.push(j);
    const total = rowStarts.length * colStarts.length * F;
    let base = 0;
    let prevRow: DecodedVideo[] = [];
    for (let ri = 0; ri < rowStarts.length; ri++) {
      const i = rowStarts[ri];
      const row: DecodedVideo[] = [];
      for (let cj = 0; cj < colStarts.length; cj++) {
        const j = colStarts[cj];
        const tile = await this.decodeRegion(z, F, H, W, [i, Math.min(i + t.latH, H)], [j, Math.min(j + t.latW, W)], opts, base, total);
        base += F;
        if (ri > 0) blendV(prevRow[cj], tile, t.blendH);
        if (cj > 0) blendH(row[cj - 1], tile, t.blendW);
        row.push(tile);
        // the cropped part of this tile is final: no later tile blends into rows/cols < stride
        writeCrop(tile, out, ri * t.strideHeight, cj * t.strideWidth, t.strideHeight, t.strideWidth);
      }
      prevRow = row;
    }
  }

  async release(): Promise<void> {
    for (const s of this.stages) {
      await s.session.release();
      await s.first?.session.release();
    }
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

/** Write tile[:, :, :sh, :sw] at (y0, x0) of `out`, cut to the output, clamped to [-1, 1]. */
function writeCrop(tile: DecodedVideo, out: DecodedVideo, y0: number, x0: number, sh: number, sw: number): void {
  const h = Math.min(sh, tile.height, out.height - y0);
  const w = Math.min(sw, tile.width, out.width - x0);
  if (h <= 0 || w <= 0) return;
  const C = tile.channels * tile.frames;
  for (let c = 0; c < C; c++)
    for (let y = 0; y < h; y++) {
      const src = (c * tile.height + y) * tile.width;
      const dst = (c * out.height + y0 + y) * out.width + x0;
      for (let x = 0; x < w; x++) {
        const v = tile.data[src + x];
        out.data[dst + x] = v > 1 ? 1 : v < -1 ? -1 : v;
      }
    }
}

/** dst[offset + i] = clamp(src[i], -1, 1) (diffusers clamps the decoded video to [-1, 1]). */
function clampInto(src: Float32Array, dst: Float32Array, offset: number): void {
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    dst[offset + i] = v > 1 ? 1 : v < -1 ? -1 : v;
  }
}

/**
 * The VAE folder of a model: `<dir>/vae` when it holds a config.json, else `<dir>` itself when its
 * config.json is an AutoencoderKLWan config.
 */
function resolveVaeDir(dir: string): string {
  const root = resolve(dir);
  if (existsSync(join(root, "vae", "config.json"))) return join(root, "vae");
  if (existsSync(join(root, "config.json"))) return root;
  throw new ConfigError(`no VAE found in ${root}: looked for vae/config.json and config.json`, "point at a diffusers Wan2.1 model folder (with vae/) or at its vae/ folder");
}

/**
 * Check a diffusers Wan2.1 VAE folder (`<model>/vae` or the vae folder itself) without reading any
 * weight: config.json, then every decoder key and shape in the checkpoint's header (missing, wrong
 * shape, unexpected decoder.* keys). Returns the folder and its config.
 */
export function checkWanVaeFolder(dir: string): { vaeDir: string; config: WanVaeConfig } {
  const vaeDir = resolveVaeDir(dir);
  const config = readWanVaeConfig(join(vaeDir, "config.json"));
  const ckpt = openCheckpoint(vaeDir);
  try {
    checkDecoderKeys(ckpt, config);
  } finally {
    ckpt.close();
  }
  return { vaeDir, config };
}

function checkDecoderKeys(ckpt: ReturnType<typeof openCheckpoint>, config: WanVaeConfig): void {
  const expected = decoderShapes(config);
  validateKeys(ckpt, expected, { allowUnexpected: true });
  const extra = checkKeys(ckpt, expected).unexpected.filter((u) => u.key.startsWith("decoder.") || u.key.startsWith("post_quant_conv."));
  if (extra.length > 0)
    throw new WeightsError(
      extra[0].file,
      extra[0].key,
      `${extra.length} decoder key(s) this config does not have: ${extra.slice(0, 5).map((u) => u.key).join(", ")}${extra.length > 5 ? ", ..." : ""}`,
      "the checkpoint and vae/config.json disagree (num_res_blocks, dim_mult, temperal_downsample, attn_scales); use the config that came with the weights",
    );
}

/**
 * Chunks `decode` runs for latents of F frames of H x W (the unit of its `onChunk` progress):
 * F untiled, F x tiles with `tile` when the frame is larger than one tile.
 */
export function decodeChunkCount(config: WanVaeConfig, F: number, H: number, W: number, tile?: boolean | TileOptions): number {
  const t = tile === true ? {} : tile || null;
  if (!t) return F;
  const s = spatialScale(config);
  const v = { sampleHeight: 256, sampleWidth: 256, strideHeight: 192, strideWidth: 192, ...t };
  const latH = v.sampleHeight / s, latW = v.sampleWidth / s;
  if (H <= latH && W <= latW) return F;
  return Math.ceil(H / (v.strideHeight / s)) * Math.ceil(W / (v.strideWidth / s)) * F;
}

/**
 * Load the decoder of a diffusers Wan2.1 VAE folder (`<model>/vae` or the vae folder itself):
 * config.json + diffusion_pytorch_model.safetensors (or sharded). Every decoder key is checked
 * (missing, wrong shape, unexpected decoder.* keys) before anything is built.
 */
export async function loadWanVaeDecoder(dir: string, opts: WanVaeOptions = {}): Promise<WanVaeDecoder> {
  const vaeDir = resolveVaeDir(dir);
  const config = readWanVaeConfig(join(vaeDir, "config.json"));
  const ckpt = openCheckpoint(vaeDir);
  try {
    checkDecoderKeys(ckpt, config);
    return await WanVaeDecoder.create(config, { read: (k) => ckpt.readF32(k) }, opts);
  } finally {
    ckpt.close();
  }
}
