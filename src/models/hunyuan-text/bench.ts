/**
 * Benchmark of the streamed Llama text encoder at any shape, default LLaVA-Llama-3-8B (hidden 4096,
 * 32 heads / 8 key-value heads x 128, mlp 14336, vocab 128320): random weights are made per tensor
 * when a layer is built (never the whole model; the embedding only for the prompt's rows), one
 * prompt of `tokens` positions runs through the first `layers` decoder layers (HunyuanVideo runs
 * 30), and the time per layer and the peak memory are reported.
 *
 * Peak memory as for the umT5 encoder (src/models/bench-support.ts).
 *
 * Measured (2-core machine with the other core busy, threads 1, 351 tokens, 2 layers): per layer
 * 1.5 s to make the weights and serialise the graph, 1.1 s to create the session, 1.3-1.4 s to
 * run; VmHWM 2.01 GiB over a 0.08 GiB baseline. A checkpoint reads 0.44 GB of bf16 per layer
 * from disk instead of making it.
 */
import { MixCacheError } from "../../errors.ts";
import type { BackendOptions } from "../../backend/ort.ts";
import { RandomWeightSource, benchStreamed } from "../bench-support.ts";
import { LLAVA_LLAMA3_8B, LlamaTextConfig, llamaExpectedShapes, llamaLayerParameters } from "./llama-config.ts";
import { LlamaTextEncoder } from "./llama-encoder.ts";
import type { LayerTiming } from "./stream.ts";

/** Random LlamaModel weights made on demand, deterministic per key. */
function randomLlamaSource(config: LlamaTextConfig, seed = 0): RandomWeightSource {
  const scale = (key: string, shape: number[]): { std: number; mean: number } => {
    if (key.endsWith("norm.weight") || key.endsWith("layernorm.weight")) return { std: 0.05, mean: 1 };
    if (key.endsWith("embed_tokens.weight")) return { std: 0.02, mean: 0 };
    return { std: shape[1] ** -0.5, mean: 0 };
  };
  return new RandomWeightSource(`<random Llama hidden ${config.hidden_size}, ${config.num_hidden_layers} layers, seed ${seed}>`, llamaExpectedShapes(config), scale, seed, JSON.stringify(config));
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
  const ids = Array.from({ length: tokens }, (_, s) => (s * 7919) % config.vocab_size);
  const mask = Array.from({ length: tokens }, (_, s) => (s < real ? 1 : 0));
  const { out, totalMs, layers, peakRssBytes, peakHwmBytes, baselineRssBytes } = await benchStreamed(
    () => new LlamaTextEncoder(config, randomLlamaSource(config, opts.seed ?? 0), { threads: opts.threads, arena: opts.arena, prepack: opts.prepack, spinning: opts.spinning, device: opts.device }),
    (enc, hooks: { onLayer: (t: LayerTiming) => void; onPhase: () => void }) => enc.hiddenState([{ ids, mask }], nLayers, hooks),
    opts,
  );
  return {
    config,
    layerParameters: llamaLayerParameters(config),
    tokens,
    layersRun: nLayers,
    totalMs,
    layers,
    peakRssBytes,
    peakHwmBytes,
    baselineRssBytes,
    finite: out.every(Number.isFinite),
  };
}
