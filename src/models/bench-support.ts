/**
 * What the component benchmarks share: random weights of the right scale made on demand (no
 * checkpoint needed), the peak-memory probe of the streamed text encoders, and the load-and-decode
 * harness of the VAE decoders.
 *
 * Peak memory of a streamed run: process.memoryUsage().rss sampled every `sampleMs` and at every
 * phase boundary (after each layer's build, session creation and run), and on Linux the kernel's
 * high-water mark VmHWM from /proc/self/status (reset at the start through /proc/self/clear_refs).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { MixCacheError, UsageError } from "../errors.ts";
import { collectGarbage } from "../util/gc.ts";
import type { Umt5WeightSource } from "./umt5/weights.ts";
import type { DecodedVideo, VaeWeightSource } from "./vae-decode.ts";

/** 32-bit FNV-1a of a string (per-tensor seeds). */
export function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0 || 1;
}

/** Fill with uniform values of standard deviation `std` around `mean` from xorshift32 state `x`; returns the next state. */
function xorshiftUniform(out: Float32Array, x: number, std: number, mean: number): number {
  const a = (std * Math.sqrt(3) * 2) / 4294967296;
  const b = mean - std * Math.sqrt(3);
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) * a + b;
  }
  return x;
}

/** Fill with uniform values of standard deviation `std` around `mean` (xorshift32, fast). */
export function fillUniform(out: Float32Array, seed: number, std: number, mean = 0): Float32Array {
  xorshiftUniform(out, seed >>> 0 || 1, std, mean);
  return out;
}

/** Uniform in [-a, a) with a = sqrt(3) std from one xorshift32 stream: cheap random weights of the right scale. */
export function randomWeights(seed: number): (n: number, std: number) => Float32Array {
  let s = seed >>> 0 || 1;
  return (n, std) => {
    const a = new Float32Array(n);
    s = xorshiftUniform(a, s, std, 0);
    return a;
  };
}

/** Random weights of `shapes` made on demand, deterministic per key (and per row for `readRows`). */
export class RandomWeightSource implements Umt5WeightSource {
  constructor(
    readonly path: string,
    private readonly shapes: Map<string, number[]>,
    /** Standard deviation and mean of a tensor. */
    private readonly scale: (key: string, shape: number[]) => { std: number; mean: number },
    readonly seed: number,
    /** What the weights stand for (config JSON): with the seed, the fingerprint. */
    private readonly id: string,
  ) {}
  keys(): string[] {
    return [...this.shapes.keys()].sort();
  }
  has(key: string): boolean {
    return this.shapes.has(key);
  }
  shape(key: string): number[] {
    const s = this.shapes.get(key);
    if (!s) throw new MixCacheError("WEIGHTS", `no tensor ${key}`);
    return s.slice();
  }
  read(key: string): Float32Array {
    const shape = this.shape(key);
    const { std, mean } = this.scale(key, shape);
    return fillUniform(new Float32Array(shape.reduce((a, b) => a * b, 1)), fnv(`${this.seed}:${key}`), std, mean);
  }
  readRows(key: string, rows: readonly number[]): Float32Array {
    const shape = this.shape(key);
    const C = shape[1];
    const out = new Float32Array(rows.length * C);
    const { std, mean } = this.scale(key, shape);
    rows.forEach((r, j) => fillUniform(out.subarray(j * C, (j + 1) * C), fnv(`${this.seed}:${key}:${r}`), std, mean));
    return out;
  }
  fingerprint(): string {
    return `random:${this.seed}:${this.id}`;
  }
  close(): void {}
}

function vmHwm(): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function resetHwm(): boolean {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

export interface StreamedRun<L> {
  out: Float32Array;
  totalMs: number;
  /** Each layer's timing with the RSS sampled when it finished. */
  layers: (L & { rssBytes: number })[];
  /** Largest sampled process.memoryUsage().rss. */
  peakRssBytes: number;
  /** Kernel high-water mark of the RSS during the run (Linux), null where unavailable. */
  peakHwmBytes: number | null;
  baselineRssBytes: number;
}

/**
 * Open a streamed encoder and run it once under the memory probe: `run` gets the hooks to pass on
 * (per layer, per phase); the encoder is closed afterwards.
 */
export async function benchStreamed<E extends { close(): Promise<void> }, L extends object>(
  open: () => E,
  run: (enc: E, hooks: { onLayer: (t: L) => void; onPhase: () => void }) => Promise<Float32Array[]>,
  opts: { sampleMs?: number; onLayer?: (t: L & { rssBytes: number }) => void },
): Promise<StreamedRun<L>> {
  collectGarbage();
  const hwmOk = resetHwm();
  const baselineRssBytes = process.memoryUsage().rss;
  let peak = baselineRssBytes;
  const sample = () => {
    const r = process.memoryUsage().rss;
    if (r > peak) peak = r;
    return r;
  };
  const timer = setInterval(sample, opts.sampleMs ?? 20);
  const layers: (L & { rssBytes: number })[] = [];
  let out: Float32Array;
  let t0 = performance.now();
  try {
    const enc = open();
    try {
      t0 = performance.now();
      [out] = await run(enc, {
        onLayer: (t) => {
          const rec = { ...t, rssBytes: sample() };
          layers.push(rec);
          opts.onLayer?.(rec);
        },
        onPhase: sample,
      });
    } finally {
      await enc.close();
    }
  } finally {
    clearInterval(timer);
  }
  const totalMs = performance.now() - t0;
  sample();
  return { out, totalMs, layers, peakRssBytes: peak, peakHwmBytes: hwmOk ? vmHwm() : null, baselineRssBytes };
}

export const MiB = 1024 * 1024;
const rss = () => process.memoryUsage.rss() / MiB;

export interface VaeBenchRun {
  /** Latent height and width. */
  h: number;
  w: number;
  video: DecodedVideo;
  loadMs: number;
  /** Wall time between progress calls (decoder chunks or passes). */
  chunkMs: number[];
  decodeMs: number;
  rssBeforeMiB: number;
  rssAfterLoadMiB: number;
}

/**
 * Build a VAE decoder from random weights (norm scales 1, biases std 0.02, other weights std
 * 1 / sqrt(fan_in)) and decode random latents of `height` x `width` px and `latentFrames` frames,
 * timing the load and each progress step.
 */
export async function runVaeBench<D extends { release(): Promise<void> }>(a: {
  scale: number;
  height: number;
  width: number;
  latentFrames: number;
  channels: number;
  seed: number;
  shapes: ReadonlyMap<string, readonly number[]>;
  /** Norm weights, filled with ones. */
  isNormScale: (key: string) => boolean;
  create: (source: VaeWeightSource) => Promise<D>;
  decode: (dec: D, latents: Float32Array, dims: number[], onChunk: () => void) => Promise<DecodedVideo>;
}): Promise<VaeBenchRun> {
  const { scale: s, height, width, latentFrames: F } = a;
  if (height % s || width % s || height < s || width < s) throw new UsageError(`height and width must be positive multiples of ${s}, got ${height} x ${width}`);
  if (!Number.isInteger(F) || F < 1) throw new UsageError(`latentFrames must be a positive integer, got ${F}`);
  const [h, w] = [height / s, width / s];
  const gen = randomWeights(a.seed);
  const rssBefore = rss();
  const t0 = performance.now();
  const dec = await a.create({
    read: (k) => {
      const shape = a.shapes.get(k)!;
      const n = shape.reduce((x, y) => x * y, 1);
      const fanIn = shape.length >= 2 ? shape.slice(1).reduce((x, y) => x * y, 1) : 1;
      if (a.isNormScale(k)) return new Float32Array(n).fill(1);
      if (k.endsWith(".bias")) return gen(n, 0.02);
      return gen(n, 1 / Math.sqrt(fanIn));
    },
  });
  const loadMs = performance.now() - t0;
  const rssAfterLoad = rss();
  const latents = gen(a.channels * F * h * w, 1);
  const chunkMs: number[] = [];
  let last = performance.now();
  const t1 = last;
  const video = await a.decode(dec, latents, [a.channels, F, h, w], () => {
    const now = performance.now();
    chunkMs.push(now - last);
    last = now;
  });
  const decodeMs = performance.now() - t1;
  await dec.release();
  return { h, w, video, loadMs, chunkMs, decodeMs, rssBeforeMiB: rssBefore, rssAfterLoadMiB: rssAfterLoad };
}
