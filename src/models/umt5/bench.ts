/**
 * Benchmark of the streamed umT5 encoder at any shape, default umT5-XXL (24 layers, d_model 4096,
 * d_ff 10240, 64 heads x 64, vocab 256384): random weights are generated per tensor when a layer
 * is built (never the whole model; the embedding only for the prompt's rows), one prompt is
 * encoded, and the time per layer and the peak memory are reported.
 *
 * Peak memory: process.memoryUsage().rss sampled every `sampleMs` and at every phase boundary
 * (after each layer's build, session creation and run), and on Linux the kernel's exact high-water
 * mark VmHWM from /proc/self/status (reset at the start through /proc/self/clear_refs).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { MixCacheError } from "../../errors.ts";
import type { BackendOptions } from "../../backend/ort.ts";
import { EMBED_KEY, UMT5_XXL, Umt5Config, umt5ExpectedShapes, umt5ParameterCount } from "./config.ts";
import { collectGarbage } from "../../util/gc.ts";
import { Umt5Encoder, type LayerTiming, type SequenceMode } from "./encoder.ts";
import type { Umt5WeightSource } from "./weights.ts";

/** 32-bit FNV-1a of a string (per-tensor seeds). */
function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0 || 1;
}

/** Fill with uniform values of standard deviation `std` around `mean` (xorshift32, fast). */
function fillUniform(out: Float32Array, seed: number, std: number, mean = 0): Float32Array {
  let x = seed >>> 0 || 1;
  const a = std * Math.sqrt(3) * 2 / 4294967296;
  const b = mean - std * Math.sqrt(3);
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) * a + b;
  }
  return out;
}

/** Random umT5 weights made on demand, deterministic per key (transformers' init scales). */
class RandomUmt5Source implements Umt5WeightSource {
  readonly path: string;
  private readonly shapes: Map<string, number[]>;
  constructor(readonly config: Umt5Config, readonly seed = 0) {
    this.shapes = umt5ExpectedShapes(config);
    this.path = `<random umT5 d_model ${config.d_model}, ${config.num_layers} layers, seed ${seed}>`;
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
    const c = this.config;
    if (key.endsWith("layer_norm.weight")) return { std: 0.05, mean: 1 };
    if (key === EMBED_KEY) return { std: 1, mean: 0 };
    if (key.endsWith(".q.weight")) return { std: (c.d_model * c.d_kv) ** -0.5, mean: 0 };
    if (key.endsWith(".o.weight")) return { std: (c.num_heads * c.d_kv) ** -0.5, mean: 0 };
    if (key.endsWith("wo.weight")) return { std: c.d_ff ** -0.5, mean: 0 };
    return { std: c.d_model ** -0.5, mean: 0 }; // k, v, wi_0, wi_1, relative_attention_bias
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

export interface Umt5BenchOptions extends BackendOptions {
  /** Encoder shape (default umT5-XXL). */
  config?: Umt5Config;
  /** Real tokens of the prompt, "</s>" included (default 64). */
  tokens?: number;
  /** "trimmed" (default, what WanTextEncoder runs) or "padded" (all `padTo` positions). */
  mode?: SequenceMode;
  /** Padded length in "padded" mode (default 512). */
  padTo?: number;
  seed?: number;
  sampleMs?: number;
  onLayer?: (t: LayerTiming & { rssBytes: number }) => void;
}

export interface Umt5BenchResult {
  config: Umt5Config;
  parameters: number;
  tokens: number;
  mode: SequenceMode;
  totalMs: number;
  layers: (LayerTiming & { rssBytes: number })[];
  /** Largest sampled process.memoryUsage().rss. */
  peakRssBytes: number;
  /** Kernel high-water mark of the RSS during the run (Linux), null where unavailable. */
  peakHwmBytes: number | null;
  baselineRssBytes: number;
  finite: boolean;
  /** Mean |x| of the output (sanity). */
  meanAbs: number;
}

/** Build a random encoder of `config`'s shape, encode one prompt, report time and peak memory. */
export async function benchUmt5Encoder(opts: Umt5BenchOptions = {}): Promise<Umt5BenchResult> {
  const config = opts.config ?? UMT5_XXL;
  const tokens = opts.tokens ?? 64;
  const mode = opts.mode ?? "trimmed";
  const padTo = mode === "padded" ? (opts.padTo ?? 512) : tokens;
  if (!Number.isInteger(tokens) || tokens < 1 || tokens > padTo) throw new MixCacheError("USAGE", `tokens must be in 1..${padTo}, got ${tokens}`);
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
  const source = new RandomUmt5Source(config, opts.seed ?? 0);
  const enc = new Umt5Encoder(config, source, { threads: opts.threads, arena: opts.arena, prepack: opts.prepack, spinning: opts.spinning, device: opts.device });
  const ids = new Int32Array(padTo);
  const mask = new Uint8Array(padTo);
  for (let s = 0; s < tokens; s++) {
    ids[s] = s === tokens - 1 ? 1 : 3 + ((s * 7919) % (config.vocab_size - 3));
    mask[s] = 1;
  }
  const layers: Umt5BenchResult["layers"] = [];
  const t0 = performance.now();
  let out: Float32Array;
  try {
    [out] = await enc.forward([{ ids, mask }], {
      mode,
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
  let finite = true, sum = 0;
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) finite = false;
    sum += Math.abs(out[i]);
  }
  return {
    config,
    parameters: umt5ParameterCount(config),
    tokens,
    mode,
    totalMs,
    layers,
    peakRssBytes: peak,
    peakHwmBytes: hwmOk ? vmHwm() : null,
    baselineRssBytes,
    finite,
    meanAbs: sum / out.length,
  };
}
