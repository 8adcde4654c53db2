/**
 * Benchmark of the streamed umT5 encoder at any shape, default umT5-XXL (24 layers, d_model 4096,
 * d_ff 10240, 64 heads x 64, vocab 256384): random weights are generated per tensor when a layer
 * is built (never the whole model; the embedding only for the prompt's rows), one prompt is
 * encoded, and the time per layer and the peak memory are reported (src/models/bench-support.ts).
 */
import { MixCacheError } from "../../errors.ts";
import type { BackendOptions } from "../../backend/ort.ts";
import { RandomWeightSource, benchStreamed } from "../bench-support.ts";
import { EMBED_KEY, UMT5_XXL, Umt5Config, umt5ExpectedShapes, umt5ParameterCount } from "./config.ts";
import { Umt5Encoder, type LayerTiming, type SequenceMode } from "./encoder.ts";

/** Random umT5 weights made on demand, deterministic per key (transformers' init scales). */
function randomUmt5Source(c: Umt5Config, seed = 0): RandomWeightSource {
  const scale = (key: string): { std: number; mean: number } => {
    if (key.endsWith("layer_norm.weight")) return { std: 0.05, mean: 1 };
    if (key === EMBED_KEY) return { std: 1, mean: 0 };
    if (key.endsWith(".q.weight")) return { std: (c.d_model * c.d_kv) ** -0.5, mean: 0 };
    if (key.endsWith(".o.weight")) return { std: (c.num_heads * c.d_kv) ** -0.5, mean: 0 };
    if (key.endsWith("wo.weight")) return { std: c.d_ff ** -0.5, mean: 0 };
    return { std: c.d_model ** -0.5, mean: 0 }; // k, v, wi_0, wi_1, relative_attention_bias
  };
  return new RandomWeightSource(`<random umT5 d_model ${c.d_model}, ${c.num_layers} layers, seed ${seed}>`, umt5ExpectedShapes(c), scale, seed, JSON.stringify(c));
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
  const ids = new Int32Array(padTo);
  const mask = new Uint8Array(padTo);
  for (let s = 0; s < tokens; s++) {
    ids[s] = s === tokens - 1 ? 1 : 3 + ((s * 7919) % (config.vocab_size - 3));
    mask[s] = 1;
  }
  const { out, totalMs, layers, peakRssBytes, peakHwmBytes, baselineRssBytes } = await benchStreamed(
    () => new Umt5Encoder(config, randomUmt5Source(config, opts.seed ?? 0), { threads: opts.threads, arena: opts.arena, prepack: opts.prepack, spinning: opts.spinning, device: opts.device }),
    (enc, hooks: { onLayer: (t: LayerTiming) => void; onPhase: () => void }) => enc.forward([{ ids, mask }], { mode, ...hooks }),
    opts,
  );
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
    peakRssBytes,
    peakHwmBytes,
    baselineRssBytes,
    finite,
    meanAbs: sum / out.length,
  };
}
