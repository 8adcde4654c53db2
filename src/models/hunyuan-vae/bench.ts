/**
 * Benchmark of the HunyuanVideo VAE decoder at real size (diffusers defaults, 146M decoder
 * parameters) with random weights (no checkpoint needed): load time, time per decoder pass, peak
 * RSS of the process against the estimate (hunyuanVaeDecodePeakBytes), and the exact MACs. Run it
 * in a fresh process for a meaningful peak RSS:
 *
 *   node --import tsx src/models/hunyuan-vae/bench.ts --height 128 --width 128 --latent-frames 2 [--threads N] [--tile] [--one-pass]
 */
import { pathToFileURL } from "node:url";
import { MiB, runVaeBench } from "../bench-support.ts";
import { HunyuanVaeConfig, decodedFrames, decoderParameterCount, decoderPassMacs, decoderShapes, hunyuanVaeConfig, spatialScale } from "./config.ts";
import { FrameTileOptions, HunyuanVaeDecoder, TileOptions, hunyuanDecodePasses, hunyuanVaeDecodePeakBytes } from "./decoder.ts";

export interface HunyuanVaeBenchOptions {
  /** Output frame size in pixels (multiples of 8; default 128 x 128). */
  height?: number;
  width?: number;
  /** Latent frames to decode (default 2: 5 video frames, one pass). */
  latentFrames?: number;
  threads?: number;
  tile?: boolean | TileOptions;
  framewise?: boolean | FrameTileOptions;
  config?: HunyuanVaeConfig;
  seed?: number;
}

export interface HunyuanVaeBenchResult {
  height: number;
  width: number;
  latentFrames: number;
  frames: number;
  threads: number | "default";
  tile: boolean;
  framewise: boolean;
  params: number;
  loadMs: number;
  /** Wall time of each decoder pass (temporal piece x spatial tile). */
  passMs: number[];
  decodeMs: number;
  /** Exact MACs of the passes run (overlapping pieces and tiles included). */
  macs: number;
  gmacPerS: number;
  rssBeforeMiB: number;
  rssAfterLoadMiB: number;
  /** Peak resident set size of the whole process (getrusage maxrss). */
  peakRssMiB: number;
  /** hunyuanVaeDecodePeakBytes for this decode, added to rssBefore. */
  estimatedPeakMiB: number;
}

export async function benchHunyuanVaeDecoder(opts: HunyuanVaeBenchOptions = {}): Promise<HunyuanVaeBenchResult> {
  const c = opts.config ?? hunyuanVaeConfig();
  const [height, width] = [opts.height ?? 128, opts.width ?? 128];
  const F = opts.latentFrames ?? 2;
  const { h, w, video, loadMs, chunkMs: passMs, decodeMs, rssBeforeMiB, rssAfterLoadMiB } = await runVaeBench({
    scale: spatialScale(c), height, width, latentFrames: F, channels: c.latent_channels, seed: opts.seed ?? 1,
    shapes: decoderShapes(c),
    isNormScale: (k) => /(norm1|norm2|group_norm|conv_norm_out)\.weight$/.test(k),
    create: (source) => HunyuanVaeDecoder.create(c, source, { threads: opts.threads }),
    decode: (dec, latents, dims, onChunk) => dec.decode(latents, dims, { tile: opts.tile, framewise: opts.framewise, onChunk }),
  });
  if (video.frames !== decodedFrames(c, F)) throw new Error("internal: frame count");
  const passes = hunyuanDecodePasses(c, F, h, w, opts);
  if (passes.length !== passMs.length) throw new Error("internal: pass count");
  const macs = passes.reduce((m, p) => m + decoderPassMacs(c, p.frames, p.height, p.width), 0);
  return {
    height, width, latentFrames: F, frames: video.frames, threads: opts.threads ?? "default", tile: !!opts.tile, framewise: opts.framewise !== false,
    params: decoderParameterCount(c), loadMs: Math.round(loadMs), passMs: passMs.map(Math.round), decodeMs: Math.round(decodeMs),
    macs, gmacPerS: +(macs / 1e9 / (decodeMs / 1000)).toFixed(1),
    rssBeforeMiB: Math.round(rssBeforeMiB), rssAfterLoadMiB: Math.round(rssAfterLoadMiB),
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    estimatedPeakMiB: Math.round(rssBeforeMiB + hunyuanVaeDecodePeakBytes(c, { frames: F, height: h, width: w }, opts) / MiB),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const a = process.argv.slice(2);
  const num = (name: string): number | undefined => {
    const i = a.indexOf(name);
    return i >= 0 ? Number(a[i + 1]) : undefined;
  };
  const channelScale = num("--channel-scale");
  const config = channelScale ? hunyuanVaeConfig({ block_out_channels: [128, 256, 512, 512].map((x) => x * channelScale) }) : undefined;
  benchHunyuanVaeDecoder({
    height: num("--height"), width: num("--width"), latentFrames: num("--latent-frames"), threads: num("--threads"),
    tile: a.includes("--tile"), framewise: !a.includes("--one-pass"), config,
  })
    .then((r) => console.log(JSON.stringify(r)))
    .catch((e) => {
      console.error(e instanceof Error ? e.message : e);
      process.exit(1);
    });
}
