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
import { BackendOptions, StageSession } from "../../backend/ort.ts";
import { UsageError } from "../../errors.ts";
import { DecodedVideo, TileOptions, VaeWeightSource, checkVaeLatents, clampInto, decodeTiles, openVaeFolder, tileGeometry, vaeWeightGetter } from "../vae-decode.ts";
import {
  DecoderUnit, WanVaeConfig, decodedFrames, decoderShapes, decoderUnits, readWanVaeConfig, spatialScale, temporalScale,
  unitOutChannels,
} from "./config.ts";
import { CacheIo, WeightGetter, buildStageGraph } from "./graphs.ts";

export type { DecodedVideo, TileOptions, VaeWeightSource };
export { mapVaeSource } from "../vae-decode.ts";

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
    const w: WeightGetter = vaeWeightGetter(decoderShapes(config), source, "the weights do not match vae/config.json (base_dim, z_dim, dim_mult, num_res_blocks)");
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
    const [C, F, H, W] = checkVaeLatents(latents, dims, this.config.z_dim, "z_dim");
    const z = opts.denormalize === false ? latents : this.denormalize(latents, C, F * H * W);
    const s = spatialScale(this.config);
    const out: DecodedVideo = { data: new Float32Array(this.config.out_channels * this.framesFor(F) * H * s * W * s), channels: this.config.out_channels, frames: this.framesFor(F), height: H * s, width: W * s };
    const tile = opts.tile === true ? {} : opts.tile || null;
    if (tile) {
      const t = tileGeometry(s, tile);
      if (H > t.latH || W > t.latW) {
        // diffusers tiled_decode: each tile decoded through all frames with fresh caches
        const total = Math.ceil(H / t.strideLatH) * Math.ceil(W / t.strideLatW) * F;
        let base = 0;
        await decodeTiles(H, W, t, out, true, async (rows, cols) => {
          const v = await this.decodeRegion(z, F, H, W, rows, cols, opts, base, total);
          base += F;
          return v;
        });
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

  async release(): Promise<void> {
    for (const s of this.stages) {
      await s.session.release();
      await s.first?.session.release();
    }
  }
}

/** The config fields a checkpoint with other decoder keys disagrees on. */
const DECODER_KEYS_FIX = "num_res_blocks, dim_mult, temperal_downsample, attn_scales";

/**
 * Check a diffusers Wan2.1 VAE folder (`<model>/vae` or the vae folder itself) without reading any
 * weight: config.json, then every decoder key and shape in the checkpoint's header (missing, wrong
 * shape, unexpected decoder.* keys). Returns the folder and its config.
 */
export function checkWanVaeFolder(dir: string): { vaeDir: string; config: WanVaeConfig } {
  const { vaeDir, config, ckpt } = openVaeFolder(dir, "Wan2.1", readWanVaeConfig, decoderShapes, DECODER_KEYS_FIX);
  ckpt.close();
  return { vaeDir, config };
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
  const { config, ckpt } = openVaeFolder(dir, "Wan2.1", readWanVaeConfig, decoderShapes, DECODER_KEYS_FIX);
  try {
    return await WanVaeDecoder.create(config, { read: (k) => ckpt.readF32(k) }, opts);
  } finally {
    ckpt.close();
  }
}
