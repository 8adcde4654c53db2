/**
 * Benchmark of the streamed Llama text encoder at any shape, default LLaVA-Llama-3-8B (hidden 4096,
 * 32 heads / 8 key-value heads x 128, mlp 14336, vocab 128320): random weights are made per tensor
 * when a layer is built (never the whole model; the embedding only for the prompt's rows), one
 * prompt of `tokens` positions runs through the first `layers` decoder layers (HunyuanVideo runs
 * 30), and the time per layer and the peak memory are reported.
 *
 * Peak memory: process.memoryUsage().rss sampled every `sampleMs` and at every phase boundary,
 * and on Linux the kernel's high-water mark VmHWM from /proc/self/status (reset at the start
 * through /proc/self/clear_refs).
 *
 * Measured (2-core machine with the other core busy, threads 1, 351 tokens, 2 layers): per layer
 * 1.5 s to make the weights and serialise the graph, 1.1 s to create the session, 1.3-1.4 s to
 * run; VmHWM 2.01 GiB over a 0.08 GiB baseline. A checkpoint reads 0.44 GB of bf16 per layer
 * from disk instead of making it.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { MixCacheError } from "../../errors.ts";
import { collectGarbage } from "../../util/gc.ts";
import type { BackendOptions } from "../../backend/ort.ts";
import { LLAVA_LLAMA3_8B, LlamaTextConfig, llamaExpectedShapes, llamaLayerParameters } from "./llama-config.ts";
import { LlamaTextEncoder } from "./llama-encoder.ts";
import type { LayerTiming, WeightSource } from "./stream.ts";

function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0 || 1;
}

/** Uniform values of standard deviation `std` around `mean` (xorshift32). */
function fillUniform(out: Float32Array, seed: number, std: number, mean = 0): Float32Array {
  let x = seed >>> 0 || 1;
  const a = (std * Math.sqrt(3) * 2) / 4294967296;
  const b = mean - std * Math.sqrt(3);
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) * a + b;
  }
  return out;
}

/** Random LlamaModel weights made on demand, deterministic per key. */
class RandomLlamaSource implements WeightSource {
  readonly path: string;
  private readonly shapes: Map<string, number[]>;
  constructor(readonly config: LlamaTextConfig, readonly seed = 0) {
    this.shapes = llamaExpectedShapes(config);
    this.path = `<random Llama hidden ${config.hidden_size}, ${config.num_hidden_layers} layers, seed ${seed}>`;
  }
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
  private std(key: string): { std: number; mean: number } {
    if (key.endsWith("norm.weight") || key.endsWith("layernorm.weight")) return { std: 0.05, mean: 1 };
    if (key.endsWith("embed_tokens.weight")) return { std: 0.02, mean: 0 };
    return { std: this.shape(key)[1] ** -0.5, mean: 0 };
  }
  read(key: string): Float32Array {
    const n = this.shape(key).reduce((a, b) => a * b, 1);
    const { std, mean } = this.std(key);
    return fillUniform(new Float32Array(n), fnv(`${this.seed}:${key}`), std, mean);
  }
  readRows(key: string, rows: readonly number[]): Float32Array {
    const [, C] = this.shape(key);
    const out = new Float32Array(rows.length * C);
    const { std, mean } = this.std(key);
    rows.forEach((r, j) => fillUniform(out.subarray(j * C, (j + 1) * C), fnv(`${this.seed}:${key}:${r}`), std, mean));
    return out;
  }
  fingerprint(): string {
    return `random:${this.seed}:${JSON.stringify(this.config)}`;
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

export interface LlamaBenchOptions extends BackendOptions {
  /** Encoder shape (default LLaVA-Llama-3-8B). */
  config?: LlamaTextConfig;
  /** Positions of the prompt (default 351: HunyuanVideo's 256 + crop 95). */
  tokens?: number;
  /** Real (unpadded) tokens among them (default all). */
  realTokens?: number;
  /** Decoder layers to run (default 2; HunyuanVideo runs num_hidden_layers - 2). */
  layers?: number;
  seed?: number;
  sampleMs?: number;
  onLayer?: (t: LayerTiming & { rssBytes: number }) => void;
}

export interface LlamaBenchResult {
  config: LlamaTextConfig;
  layerParameters: number;
  tokens: number;
  layersRun: number;
  totalMs: number;
  layers: (LayerTiming & { rssBytes: number })[];
  peakRssBytes: number;
  peakHwmBytes: number | null;
  baselineRssBytes: number;
  finite: boolean;
}

/** Run one prompt through the first `layers` layers of a random encoder of `config`'s shape. */
export async function benchLlamaEncoder(opts: LlamaBenchOptions = {}): Promise<LlamaBenchResult> {
  const config = opts.config ?? LLAVA_LLAMA3_8B;
  const tokens = opts.tokens ?? 351;
  const real = opts.realTokens ?? tokens;
  const nLayers = opts.layers ?? 2;
  if (!Number.isInteger(nLayers) || nLayers < 1 || nLayers > config.num_hidden_layers) throw new MixCacheError("USAGE", `layers must be in 1..${config.num_hidden_layers}, got ${nLayers}`);
  if (!Number.isInteger(tokens) || tokens < 1 || !Number.isInteger(real) || real < 1 || real > tokens) throw new MixCacheError("USAGE", `need 1 <= realTokens <= tokens, got ${real} / ${tokens}`);
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
  const enc = new LlamaTextEncoder(config, new RandomLlamaSource(config, opts.seed ?? 0), { threads: opts.threads, arena: opts.arena, prepack: opts.prepack, spinning: opts.spinning, device: opts.device });
  const ids = Array.from({ length: tokens }, (_, s) => (s * 7919) % config.vocab_size);
  const mask = Array.from({ length: tokens }, (_, s) => (s < real ? 1 : 0));
  const layers: LlamaBenchResult["layers"] = [];
  const t0 = performance.now();
  let out: Float32Array;
  try {
    [out] = await enc.hiddenState([{ ids, mask }], nLayers, {
      onLayer: (t) => {
        const rec = { ...t, rssBytes: sample() };
        layers.push(rec);
        opts.onLayer?.(rec);
      },
      onPhase: sample,
    });
  } finally {
    clearInterval(timer);
    await enc.close();
  }
  const totalMs = performance.now() - t0;
  sample();
  return {
    config,
    layerParameters: llamaLayerParameters(config),
    tokens,
    layersRun: nLayers,
    totalMs,
    layers,
    peakRssBytes: peak,
    peakHwmBytes: hwmOk ? vmHwm() : null,
    baselineRssBytes,
    finite: out.every(Number.isFinite),
  };
}
