/**
 * The HunyuanVideo VAE decoder (diffusers AutoencoderKLHunyuanVideo.decode) on onnxruntime.
 *
 * Why there is no per-frame chunking with a causal cache (as for the Wan VAE): every GroupNorm of
 * this decoder (resnets, the attention's group_norm, conv_norm_out) takes its statistics over all
 * frames of its input, so frame t depends on later frames and a causal chunked decode would not be
 * exact. Memory is bounded the way diffusers bounds it, with the same algorithm and defaults:
 *
 * - framewise (diffusers `use_framewise_decoding`, on by default there and here;
 *   `_temporal_tiled_decode`): with more than sampleFrames / 4 latent frames (default 16 / 4 = 4),
 *   latent frames [i, i + 5) are decoded as one piece for i = 0, 3, 6, ...; every piece after the
 *   first drops its first frame, its first 4 frames are blended linearly with the previous piece's
 *   last 4, and 13 (first) / 12 frames of each are kept. A piece that would only give the dropped
 *   frame is skipped (diffusers decodes and discards it; the output is the same).
 * - tile (diffusers `enable_tiling()`, off by default; `tiled_decode`): each piece larger than
 *   256 x 256 px is decoded in 256 px tiles every 192 px, blended into the tile above and to the
 *   left over 64 px, and cropped to 192 px.
 *
 * One decoder pass (a piece, or a tile of a piece) runs the units in order, each on the whole
 * pass: one onnxruntime session per unit (the attention: three, its core run once per query frame
 * on the keys of frames 0..t, which is the causal mask without the [L, L] scores), so the peak is
 * one unit's working set at the pass size plus the output video: independent of the clip length
 * with framewise pieces, and of the frame size too with tiles.
 *
 * Exact (up to float32 rounding) with diffusers' decode for the same options: the result equals
 * `vae.decode(latents / scaling_factor)` with framewise decoding on (its default) and tiling as
 * given, clamped to [-1, 1] as VaeImageProcessor.postprocess does ((x / 2 + 0.5).clamp(0, 1)).
 * Pieces and tiles are diffusers' approximation of one pass over the whole latent (each has its
 * own GroupNorm statistics and attention context, seams are blended linearly), reproduced as is.
 * `framewise: false` is that single pass (`use_framewise_decoding = False`): no blending at all,
 * but memory grows with the clip length. Computation is float32 whatever the checkpoint dtype
 * (fp16 / bf16 weights are widened on load; diffusers usually runs the VAE in fp16).
 *
 * Only the decoder is implemented (post_quant_conv + decoder.*); encoder.* and quant_conv.* keys in
 * the checkpoint are ignored.
 */
import { BackendOptions, StageSession } from "../../backend/ort.ts";
import { UsageError } from "../../errors.ts";
import { collectGarbage } from "../../util/gc.ts";
import {
  DecodedVideo, TileGeometry, TileOptions, VaeWeightSource, checkVaeLatents, clampInto, decodeTiles, tileGeometry as checkedTileGeometry,
  openVaeFolder, vaeWeightGetter,
} from "../vae-decode.ts";
import {
  HUNYUAN_VAE_CLASS, HunyuanVaeConfig, HunyuanVaeUnit, decodedFrames, decoderParameterCount, decoderShapes, decoderUnits, framesAtLevel,
  readHunyuanVaeConfig, spatialScale, temporalScale, unitInChannels, unitOutChannels,
} from "./config.ts";
import { WeightGetter, buildAttentionGraphs, buildUnitGraph } from "./graphs.ts";

export type { DecodedVideo, TileOptions, VaeWeightSource };
export { mapVaeSource } from "../vae-decode.ts";

export type HunyuanVaeOptions = BackendOptions;

/** diffusers' temporal tiles (tile_sample_min_num_frames / tile_sample_stride_num_frames), in video frames. */
export interface FrameTileOptions {
  /** Frames per piece after the first frame (default 16: 4 latent frames + 1 of overlap in front). */
  sampleFrames?: number;
  /** Distance between piece starts in video frames (default 12; the blend is sampleFrames - strideFrames). */
  strideFrames?: number;
}

export interface HunyuanDecodeOptions {
  /** Divide the latents by scaling_factor first, as HunyuanVideoPipeline does (default true). */
  denormalize?: boolean;
  /** Spatial tiling (off by default, as in diffusers); `true` = enable_tiling() defaults: 256 px tiles, stride 192. */
  tile?: boolean | TileOptions;
  /** Temporal pieces (on by default, as diffusers' use_framewise_decoding); `false` decodes all frames in one pass. */
  framewise?: boolean | FrameTileOptions;
  /** Progress: decoder passes (pieces x tiles) done of total (see hunyuanDecodePassCount). */
  onChunk?: (done: number, total: number) => void;
  /** Every unit output of every pass (tests and debugging; unclamped, [1, C, T, H, W]). */
  trace?: (stage: string, pass: number, data: Float32Array, dims: number[]) => void;
}

interface UnitStage {
  unit: HunyuanVaeUnit;
  session: StageSession;
}
interface AttnStage {
  unit: Extract<HunyuanVaeUnit, { kind: "attn" }>;
  qkv: StageSession;
  core: StageSession;
  out: StageSession;
}
type Stage = UnitStage | AttnStage;

const isAttn = (s: Stage): s is AttnStage => s.unit.kind === "attn";

interface FrameGeometry {
  sampleFrames: number;
  strideFrames: number;
  /** Latent frames per piece without the overlap frame (sampleFrames / 4). */
  latFrames: number;
  latStride: number;
  blend: number;
}

const FRAME_DEFAULTS = { sampleFrames: 16, strideFrames: 12 };

function tileGeometry(c: HunyuanVaeConfig, tile: boolean | TileOptions | undefined): TileGeometry | null {
  if (tile === undefined || tile === false) return null;
  const t = tile === true ? {} : tile;
  if (typeof t !== "object" || t === null) throw new UsageError(`tile must be true, false or { sampleHeight, sampleWidth, strideHeight, strideWidth }, got ${JSON.stringify(tile)}`);
  return checkedTileGeometry(spatialScale(c), t);
}

function frameGeometry(c: HunyuanVaeConfig, fw: boolean | FrameTileOptions | undefined): FrameGeometry | null {
  if (fw === false) return null;
  const f = fw === undefined || fw === true ? {} : fw;
  if (typeof f !== "object" || f === null) throw new UsageError(`framewise must be true, false or { sampleFrames, strideFrames }, got ${JSON.stringify(fw)}`);
  const r = temporalScale(c);
  const v = { ...FRAME_DEFAULTS, ...f };
  for (const [k, x] of Object.entries(v))
    if (!Number.isInteger(x) || x < r || x % r !== 0) throw new UsageError(`framewise ${k} must be a positive multiple of ${r} frames, got ${x}`, `use multiples of the VAE's temporal scale ${r} (diffusers defaults: 16 frames, stride 12)`);
  if (v.strideFrames > v.sampleFrames)
    throw new UsageError(`framewise strideFrames ${v.strideFrames} must not exceed sampleFrames ${v.sampleFrames}`, "pieces must overlap or touch: stride <= size");
  return { ...v, latFrames: v.sampleFrames / r, latStride: v.strideFrames / r, blend: v.sampleFrames - v.strideFrames };
}

/** Latent frame ranges [f0, f1) of the decoder's temporal pieces (one range without framewise or when short). */
function framePieces(F: number, fg: FrameGeometry | null): [number, number][] {
  if (!fg || F <= fg.latFrames) return [[0, F]];
  const out: [number, number][] = [];
  for (let i = 0; i < F; i += fg.latStride) {
    const f1 = Math.min(i + fg.latFrames + 1, F);
    if (i > 0 && f1 - i === 1) continue; // gives only the frame that is dropped
    out.push([i, f1]);
  }
  return out;
}

function spatialTileCount(H: number, W: number, tg: TileGeometry | null): number {
  if (!tg || (H <= tg.latH && W <= tg.latW)) return 1;
  return Math.ceil(H / tg.strideLatH) * Math.ceil(W / tg.strideLatW);
}

/** The decoder passes `decode` runs, in order: latent frames x height x width of each (piece x tile). */
export function hunyuanDecodePasses(c: HunyuanVaeConfig, F: number, H: number, W: number, opts: Pick<HunyuanDecodeOptions, "tile" | "framewise"> = {}): { frames: number; height: number; width: number }[] {
  const tg = tileGeometry(c, opts.tile);
  const out: { frames: number; height: number; width: number }[] = [];
  for (const [f0, f1] of framePieces(F, frameGeometry(c, opts.framewise))) {
    if (spatialTileCount(H, W, tg) === 1) out.push({ frames: f1 - f0, height: H, width: W });
    else
      for (let i = 0; i < H; i += tg!.strideLatH)
        for (let j = 0; j < W; j += tg!.strideLatW) out.push({ frames: f1 - f0, height: Math.min(i + tg!.latH, H) - i, width: Math.min(j + tg!.latW, W) - j });
  }
  return out;
}

/**
 * Decoder passes `decode` runs for latents of F frames of H x W (the unit of its `onChunk`
 * progress): temporal pieces x spatial tiles.
 */
export function hunyuanDecodePassCount(c: HunyuanVaeConfig, F: number, H: number, W: number, opts: Pick<HunyuanDecodeOptions, "tile" | "framewise"> = {}): number {
  return framePieces(F, frameGeometry(c, opts.framewise)).length * spatialTileCount(H, W, tileGeometry(c, opts.tile));
}

/** The largest single decoder pass: latent frames x height x width. */
export function largestPass(c: HunyuanVaeConfig, F: number, H: number, W: number, opts: Pick<HunyuanDecodeOptions, "tile" | "framewise"> = {}): { frames: number; height: number; width: number } {
  const fg = frameGeometry(c, opts.framewise);
  const tg = tileGeometry(c, opts.tile);
  const frames = Math.max(...framePieces(F, fg).map(([a, b]) => b - a));
  const tiled = spatialTileCount(H, W, tg) > 1;
  return { frames, height: tiled ? Math.min(H, tg!.latH) : H, width: tiled ? Math.min(W, tg!.latW) : W };
}

/**
 * Estimated peak bytes of a decode above the bare process. An empirical model of the peak RSS of
 * src/models/hunyuan-vae/bench.ts (1 thread): the decoder's fp32 weights (held by the sessions),
 * 256 MiB of runtime overhead, 3 x the largest unit's input + output in the largest pass (the
 * unit's intermediates: norm, SiLU, padded copy, convolution outputs; for the attention also q, k,
 * v and the last query frame's scores) and one more when there are several passes (the heap does
 * not return all of one pass's buffers before the next), plus the output video, two pieces of
 * video held for blending and, tiled, two rows of tiles. Measured peaks at 64x64 .. 512x512 px,
 * 5 and 17 frames, full and quarter channel width are within -15% .. +50% of it (the largest
 * overestimates at the smallest sizes).
 */
export function hunyuanVaeDecodePeakBytes(c: HunyuanVaeConfig, latent: { frames: number; height: number; width: number }, opts: Pick<HunyuanDecodeOptions, "tile" | "framewise"> = {}): number {
  const s = spatialScale(c);
  const p = largestPass(c, latent.frames, latent.height, latent.width, opts);
  const several = hunyuanDecodePassCount(c, latent.frames, latent.height, latent.width, opts) > 1;
  let unit = 0;
  for (const u of decoderUnits(c)) {
    const px = (p.height << u.level) * (p.width << u.level);
    const tin = framesAtLevel(p.frames, u.tlevel);
    const tout = u.kind === "up" && u.time ? framesAtLevel(p.frames, u.tlevel + 1) : tin;
    const pxo = u.kind === "up" && u.space ? 4 * px : px;
    const a = unitInChannels(u) * tin * px;
    const b = unitOutChannels(u) * tout * pxo;
    unit = Math.max(unit, 4 * (u.kind === "attn" ? 6 * a + px * px * tin : a + b));
  }
  const frames = decodedFrames(c, latent.frames);
  const video = 4 * c.out_channels * frames * latent.height * s * latent.width * s;
  const pieceFrames = decodedFrames(c, p.frames);
  const piece = 4 * c.out_channels * pieceFrames * latent.height * s * latent.width * s;
  const tiled = p.height < latent.height || p.width < latent.width;
  const row = tiled ? 4 * c.out_channels * pieceFrames * p.height * s * p.width * s * 2 * Math.ceil(latent.width / tileGeometry(c, opts.tile)!.strideLatW) : 0;
  return 4 * decoderParameterCount(c) + 256 * 2 ** 20 + (several ? 4 : 3) * unit + video + 2 * piece + row;
}

export class HunyuanVaeDecoder {
  private constructor(
    readonly config: HunyuanVaeConfig,
    private readonly stages: Stage[],
  ) {}

  /** Build the unit sessions from a config and a weight source (sizes checked per key). */
  static async create(config: HunyuanVaeConfig, source: VaeWeightSource, opts: HunyuanVaeOptions = {}): Promise<HunyuanVaeDecoder> {
    const w: WeightGetter = vaeWeightGetter(decoderShapes(config), source, "the weights do not match vae/config.json (block_out_channels, latent_channels, layers_per_block)");
    const stages: Stage[] = [];
    const sessions: StageSession[] = [];
    const mk = async (g: { name: string; toModel(): Uint8Array }) => {
      const s = await StageSession.create(g.name, g.toModel(), opts);
      sessions.push(s);
      return s;
    };
    try {
      for (const u of decoderUnits(config)) {
        if (u.kind === "attn") {
          const a = buildAttentionGraphs(config, w, u);
          stages.push({ unit: u, qkv: await mk(a.qkv), core: await mk(a.core), out: await mk(a.out) });
        } else stages.push({ unit: u, session: await mk(buildUnitGraph(config, w, u)) });
      }
    } catch (e) {
      for (const s of sessions) await s.release();
      throw e;
    }
    collectGarbage(); // the graphs' serialised weights are garbage once the sessions hold theirs
    return new HunyuanVaeDecoder(config, stages);
  }

  /** Load `<dir>/vae` (or `dir` itself when it is the vae folder): config.json + diffusion_pytorch_model*.safetensors. */
  static async load(dir: string, opts: HunyuanVaeOptions = {}): Promise<HunyuanVaeDecoder> {
    return loadHunyuanVaeDecoder(dir, opts);
  }

  /** Unit names in execution order. */
  get stageNames(): string[] {
    return this.stages.map((s) => s.unit.name);
  }

  /** Video frames decoded from `latentFrames` latent frames: 1 + 4 (F - 1). */
  framesFor(latentFrames: number): number {
    return decodedFrames(this.config, latentFrames);
  }

  /**
   * Decode latents [C, F, H, W] (or [1, C, F, H, W]) with C = latent_channels to a clip
   * [out_channels, 1 + 4 (F - 1), 8 H, 8 W] clamped to [-1, 1]. Latents are the transformer's
   * output (divided by scaling_factor here) unless `denormalize: false`.
   */
  async decode(latents: Float32Array, dims: readonly number[], opts: HunyuanDecodeOptions = {}): Promise<DecodedVideo> {
    const [C, F, H, W] = checkVaeLatents(latents, dims, this.config.latent_channels, "latent_channels");
    const tg = tileGeometry(this.config, opts.tile);
    const fg = frameGeometry(this.config, opts.framewise);
    const z = opts.denormalize === false ? latents : this.denormalize(latents);
    const s = spatialScale(this.config);
    const Co = this.config.out_channels;
    const frames = this.framesFor(F);
    const out: DecodedVideo = { data: new Float32Array(Co * frames * H * s * W * s), channels: Co, frames, height: H * s, width: W * s };
    const pieces = framePieces(F, fg);
    const perPiece = spatialTileCount(H, W, tg);
    const progress = { done: 0, total: pieces.length * perPiece, onChunk: opts.onChunk, trace: opts.trace };
    let prev: DecodedVideo | null = null;
    let t0 = 0;
    for (let k = 0; k < pieces.length; k++) {
      const [f0, f1] = pieces[k];
      let v = await this.decodePiece(z, C, F, H, W, f0, f1, tg, progress);
      let keep = v.frames;
      if (fg && F > fg.latFrames) {
        // diffusers _temporal_tiled_decode: drop the overlap frame, blend_t into the previous piece, keep stride (+1) frames
        if (k > 0) v = dropFirstFrame(v);
        if (k > 0 && prev) blendT(prev, v, fg.blend);
        keep = Math.min(v.frames, k === 0 ? fg.strideFrames + 1 : fg.strideFrames);
      }
      keep = Math.min(keep, frames - t0);
      const plane = out.height * out.width;
      for (let c = 0; c < Co; c++) clampInto(v.data.subarray(c * v.frames * plane, (c * v.frames + keep) * plane), out.data, (c * frames + t0) * plane);
      t0 += keep;
      prev = v;
    }
    if (t0 !== frames) throw new Error(`internal: assembled ${t0} of ${frames} frames`);
    return out;
  }

  /** latents / scaling_factor in float32 (HunyuanVideoPipeline before vae.decode). */
  private denormalize(x: Float32Array): Float32Array {
    const sf = Math.fround(this.config.scaling_factor);
    const y = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) y[i] = x[i] / sf;
    return y;
  }

  /**
   * Decode latent frames [f0, f1) over the whole frame: one pass, or diffusers tiled_decode
   * (tiles through all of the piece's frames, blended in place, cropped to the stride). Unclamped.
   */
  private async decodePiece(z: Float32Array, C: number, F: number, H: number, W: number, f0: number, f1: number, tg: TileGeometry | null, progress: Progress): Promise<DecodedVideo> {
    if (!tg || (H <= tg.latH && W <= tg.latW)) return this.runPass(cropLatent(z, C, F, H, W, f0, f1, 0, H, 0, W), C, f1 - f0, H, W, progress);
    const s = spatialScale(this.config);
    const Co = this.config.out_channels;
    const frames = decodedFrames(this.config, f1 - f0);
    const out: DecodedVideo = { data: new Float32Array(Co * frames * H * s * W * s), channels: Co, frames, height: H * s, width: W * s };
    await decodeTiles(H, W, tg, out, false, ([i, i1], [j, j1]) => this.runPass(cropLatent(z, C, F, H, W, f0, f1, i, i1, j, j1), C, f1 - f0, i1 - i, j1 - j, progress));
    return out;
  }

  /** post_quant_conv + HunyuanVideoDecoder3D.forward on latents [C, T, h, w]: unclamped [Co, T', 8h, 8w]. */
  private async runPass(x: Float32Array, C: number, T: number, h: number, w: number, progress: Progress): Promise<DecodedVideo> {
    const pass = progress.done;
    let cur = x;
    let ch = C;
    for (const st of this.stages) {
      const u = st.unit;
      const Tin = framesAtLevel(T, u.tlevel);
      const [hi, wi] = [h << u.level, w << u.level];
      const dims = [1, ch, Tin, hi, wi];
      if (isAttn(st)) cur = await this.runAttention(st, cur, dims);
      else cur = (await st.session.run({ x: { data: cur, dims } }, ["y"]))[0];
      const up = u.kind === "up";
      ch = unitOutChannels(u);
      const odims = [1, ch, up && u.time ? framesAtLevel(T, u.tlevel + 1) : Tin, up && u.space ? 2 * hi : hi, up && u.space ? 2 * wi : wi];
      if (cur.length !== odims.reduce((a, b) => a * b, 1)) throw new Error(`internal: ${u.name} output has ${cur.length} values, expected [${odims}]`);
      progress.trace?.(u.name, pass, cur, odims);
    }
    progress.done++;
    progress.onChunk?.(progress.done, progress.total);
    const s = spatialScale(this.config);
    return { data: cur, channels: ch, frames: decodedFrames(this.config, T), height: h * s, width: w * s };
  }

  /** Attention with the causal frame mask: query frame t against the keys and values of frames 0..t. */
  private async runAttention(st: AttnStage, x: Float32Array, dims: number[]): Promise<Float32Array> {
    const [, C, T, h, w] = dims;
    const L = T * h * w;
    const [q, k, v] = await st.qkv.run({ x: { data: x, dims } }, ["q", "k", "v"]);
    const o = new Float32Array(L * C);
    const n = h * w * C;
    for (let t = 0; t < T; t++) {
      const kv = (t + 1) * h * w;
      const [ot] = await st.core.run(
        {
          q: { data: q.subarray(t * n, (t + 1) * n), dims: [1, h * w, C] },
          k: { data: k.subarray(0, (t + 1) * n), dims: [1, kv, C] },
          v: { data: v.subarray(0, (t + 1) * n), dims: [1, kv, C] },
        },
        ["o"],
      );
      o.set(ot, t * n);
    }
    return (await st.out.run({ o: { data: o, dims: [1, L, C] }, x: { data: x, dims } }, ["y"]))[0];
  }

  async release(): Promise<void> {
    for (const s of this.stages) {
      if (isAttn(s)) {
        await s.qkv.release();
        await s.core.release();
        await s.out.release();
      } else await s.session.release();
    }
  }
}

interface Progress {
  done: number;
  total: number;
  onChunk?: (done: number, total: number) => void;
  trace?: HunyuanDecodeOptions["trace"];
}

/** z[:, f0:f1, i0:i1, j0:j1] of latents [C, F, H, W]. */
function cropLatent(z: Float32Array, C: number, F: number, H: number, W: number, f0: number, f1: number, i0: number, i1: number, j0: number, j1: number): Float32Array {
  const [t, h, w] = [f1 - f0, i1 - i0, j1 - j0];
  if (t === F && h === H && w === W) return z;
  const x = new Float32Array(C * t * h * w);
  for (let c = 0; c < C; c++)
    for (let f = 0; f < t; f++)
      for (let y = 0; y < h; y++) {
        const src = ((c * F + f0 + f) * H + i0 + y) * W + j0;
        x.set(z.subarray(src, src + w), ((c * t + f) * h + y) * w);
      }
  return x;
}

function dropFirstFrame(v: DecodedVideo): DecodedVideo {
  const plane = v.height * v.width;
  const T = v.frames - 1;
  const data = new Float32Array(v.channels * T * plane);
  for (let c = 0; c < v.channels; c++) data.set(v.data.subarray((c * v.frames + 1) * plane, (c + 1) * v.frames * plane), c * T * plane);
  return { ...v, data, frames: T };
}

/** b[:, :, t] = a[:, :, a.T - e + t] (1 - t / e) + b[:, :, t] (t / e) for t < e (diffusers blend_t). */
function blendT(a: DecodedVideo, b: DecodedVideo, extent: number): void {
  const e = Math.min(a.frames, b.frames, extent);
  const plane = b.height * b.width;
  for (let c = 0; c < b.channels; c++)
    for (let t = 0; t < e; t++) {
      const ra = (c * a.frames + a.frames - e + t) * plane;
      const rb = (c * b.frames + t) * plane;
      for (let i = 0; i < plane; i++) b.data[rb + i] = a.data[ra + i] * (1 - t / e) + b.data[rb + i] * (t / e);
    }
}

/** The config fields a checkpoint with other decoder keys disagrees on. */
const DECODER_KEYS_FIX = "block_out_channels, layers_per_block, mid_block_add_attention, spatial_compression_ratio";

/**
 * Check a diffusers HunyuanVideo VAE folder (`<model>/vae` or the vae folder itself) without
 * reading any weight: config.json (class AutoencoderKLHunyuanVideo), then every decoder key and
 * shape in the checkpoint's header (missing, wrong shape, unexpected decoder.* keys).
 */
export function checkHunyuanVaeFolder(dir: string): { vaeDir: string; config: HunyuanVaeConfig } {
  const { vaeDir, config, ckpt } = openVaeFolder(dir, "HunyuanVideo", readHunyuanVaeConfig, decoderShapes, DECODER_KEYS_FIX);
  ckpt.close();
  return { vaeDir, config };
}

/** Load the decoder of a diffusers HunyuanVideo VAE folder (fp32 / fp16 / bf16, single file or sharded). */
export async function loadHunyuanVaeDecoder(dir: string, opts: HunyuanVaeOptions = {}): Promise<HunyuanVaeDecoder> {
  const { config, ckpt } = openVaeFolder(dir, "HunyuanVideo", readHunyuanVaeConfig, decoderShapes, DECODER_KEYS_FIX);
  try {
    return await HunyuanVaeDecoder.create(config, { read: (k) => ckpt.readF32(k) }, opts);
  } finally {
    ckpt.close();
  }
}

export { HUNYUAN_VAE_CLASS };
