/**
 * Benchmark of the Wan2.1 VAE decoder at real size with random weights (no checkpoint needed):
 * load time, time per latent-frame chunk, peak RSS of the process, and the analytic MACs and
 * temporal-cache bytes. Run it in a fresh process for a meaningful peak RSS:
 *
 *   node --import tsx src/models/wan-vae/bench.ts --height 480 --width 832 --latent-frames 1 [--threads N] [--tile]
 */
import { pathToFileURL } from "node:url";
import { MiB, runVaeBench } from "../bench-support.ts";
import { WanVaeConfig, decodedFrames, decoderChunkMacs, decoderCacheBytes, decoderParameterCount, decoderShapes, spatialScale, wan21VaeConfig } from "./config.ts";
import { TileOptions, WanVaeDecoder, WanVaeOptions } from "./decoder.ts";

export interface VaeBenchOptions {
  /** Output frame size in pixels (multiples of 8; default 480 x 832). */
  height?: number;
  width?: number;
  /** Latent frames to decode (default 1: one chunk, one video frame). */
  latentFrames?: number;
  threads?: number;
  group?: WanVaeOptions["group"];
  tile?: boolean | TileOptions;
  config?: WanVaeConfig;
  seed?: number;
}

export interface VaeBenchResult {
  height: number;
  width: number;
  latentFrames: number;
  frames: number;
  threads: number | "default";
  group: string;
  tile: boolean;
  params: number;
  loadMs: number;
  /** Wall time of each latent-frame chunk (all tiles of that chunk when tiled: then only the total is exact per chunk order). */
  chunkMs: number[];
  decodeMs: number;
  /** Multiply-accumulates per untiled chunk (first, next) and GMAC/s over the decode (untiled MACs:
   * with tiling the real work is larger by the tile overlap, e.g. 1.66x at 480x832 with 256/192 tiles). */
  macsFirst: number;
  macsNext: number;
  gmacPerS: number;
  /** float32 temporal caches at this size (untiled). */
  cacheMiB: number;
  rssBeforeMiB: number;
  rssAfterLoadMiB: number;
  /** Peak resident set size of the whole process (getrusage maxrss). */
  peakRssMiB: number;
}

export async function benchWanVaeDecoder(opts: VaeBenchOptions = {}): Promise<VaeBenchResult> {
  const c = opts.config ?? wan21VaeConfig();
  const [height, width] = [opts.height ?? 480, opts.width ?? 832];
  const F = opts.latentFrames ?? 1;
  const { h, w, video, loadMs, chunkMs, decodeMs, rssBeforeMiB, rssAfterLoadMiB } = await runVaeBench({
    scale: spatialScale(c), height, width, latentFrames: F, channels: c.z_dim, seed: opts.seed ?? 1,
    shapes: decoderShapes(c),
    isNormScale: (k) => k.endsWith(".gamma"),
    create: (source) => WanVaeDecoder.create(c, source, { threads: opts.threads, group: opts.group }),
    decode: (dec, latents, dims, onChunk) => dec.decode(latents, dims, { tile: opts.tile, onChunk }),
  });
  if (video.frames !== decodedFrames(c, F)) throw new Error("internal: frame count");
  const macsFirst = decoderChunkMacs(c, h, w, true);
  const macsNext = decoderChunkMacs(c, h, w, false);
  return {
    height, width, latentFrames: F, frames: video.frames, threads: opts.threads ?? "default", group: opts.group ?? "unit", tile: !!opts.tile,
    params: decoderParameterCount(c), loadMs: Math.round(loadMs), chunkMs: chunkMs.map(Math.round), decodeMs: Math.round(decodeMs),
    macsFirst, macsNext, gmacPerS: +((macsFirst + (F - 1) * macsNext) / 1e9 / (decodeMs / 1000)).toFixed(1),
    cacheMiB: Math.round(decoderCacheBytes(c, h, w) / MiB),
    rssBeforeMiB: Math.round(rssBeforeMiB), rssAfterLoadMiB: Math.round(rssAfterLoadMiB),
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const a = process.argv.slice(2);
  const num = (name: string): number | undefined => {
    const i = a.indexOf(name);
    return i >= 0 ? Number(a[i + 1]) : undefined;
  };
  const group = a.includes("--block") ? "block" : "unit";
  benchWanVaeDecoder({ height: num("--height"), width: num("--width"), latentFrames: num("--latent-frames"), threads: num("--threads"), group, tile: a.includes("--tile") })
    .then((r) => console.log(JSON.stringify(r)))
    .catch((e) => {
      console.error(e instanceof Error ? e.message : e);
      process.exit(1);
    });
}
