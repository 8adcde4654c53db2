/**
 * Memory estimate of a run, checked before any onnxruntime session is built, so a size that cannot
 * fit is refused with the numbers instead of swapping or being killed halfway. From the graphs'
 * shapes (src/models/wan/graphs.ts), in float32 bytes:
 *  - weights: every parameter once (the sessions' initializers; twice for a model small enough to
 *    get fused block sessions, FUSED_BLOCKS_MAX_WEIGHT_BYTES, where it is negligible);
 *  - the largest stage call at the requested latent: self-attention ~8 [L, D] tensors (q, k, v,
 *    rotated q/k, output; com.microsoft MultiHeadAttention does not materialise the [H, L, L]
 *    scores: measured at L 8192, 12 heads, d 128, +0.19 GiB over its inputs vs +3.09 GiB for the
 *    plain graph, bench/runtime.ts), cross-attention ~6 [L, D], the FFN ~3 [L, ffn_dim];
 *  - what the loop and a cache hold: ~16 [L, D] hidden states (tokens, residuals of both branches,
 *    MixCache's R/M caches), ~8 latents, and the cross-attention K/V of both prompts;
 *  - threads: 1 MiB per intra-op thread of every session (stacks and GEMM buffers; a rough figure:
 *    intra-op threads split one op over shared buffers, they do not copy activations).
 * It is an estimate, not a measurement: a run that passes can still fail on a busy machine.
 */
import { freemem } from "node:os";
import { MixCacheError } from "../../errors.ts";
import { defaultThreads } from "../../backend/ort.ts";
import { dimOf, parameterCount, type WanConfig } from "./config.ts";
import { FUSED_BLOCKS_MAX_WEIGHT_BYTES } from "./model.ts";

export interface LatentSize {
  channels: number;
  frames: number;
  height: number;
  width: number;
}

export interface MemoryEstimate {
  tokens: number;
  weights: number;
  /** the largest stage call and its working set */
  stage: "sa" | "ca" | "ffn";
  activations: number;
  state: number;
  threads: number;
  total: number;
}

/** Wan2.1's text length (umT5 pads to 512 tokens): an upper bound for the reference tokenizer too. */
const TEXT_TOKENS = 512;
const THREAD_BYTES = 1 << 20;

/** Weights of the blocks' linear layers (sa and ca q, k, v, o; the FFN's two): what `float16` halves. */
export function blockLinearParams(c: WanConfig): number {
  const D = dimOf(c);
  return c.num_layers * (8 * D * D + 2 * D * c.ffn_dim);
}

/**
 * Bytes the loaded weights take: float32, or with the blocks' linear layers in float16 (`dtype`).
 * onnxruntime's CPU provider was measured to hold a widened copy beside the float16 weights (the
 * 1.3B-shaped peak rose from 1.07x to 1.30x the fp32 weights, `npm run bench:runtime`), so float16
 * counts 6 bytes per linear weight: more than float32, an upper bound where the provider keeps 2.
 */
export function weightBytes(c: WanConfig, dtype: "float32" | "float16" = "float32"): number {
  const p = parameterCount(c);
  return dtype === "float16" ? 4 * p + 2 * blockLinearParams(c) : 4 * p;
}

export function estimateMemory(c: WanConfig, latent: LatentSize, threads = defaultThreads(), textTokens = TEXT_TOKENS, dtype: "float32" | "float16" = "float32"): MemoryEstimate {
  const [pt, ph, pw] = c.patch_size;
  const L = Math.ceil(latent.frames / pt) * Math.ceil(latent.height / ph) * Math.ceil(latent.width / pw);
  const D = dimOf(c);
  const H = c.num_attention_heads;
  const S = textTokens;
  const n = latent.channels * latent.frames * latent.height * latent.width;
  const stages = {
    sa: 8 * L * D + L * c.attention_head_dim,
    ca: 6 * L * D + H * S * c.attention_head_dim,
    ffn: 3 * L * c.ffn_dim + 4 * L * D,
  };
  const stage = (Object.keys(stages) as Array<keyof typeof stages>).reduce((a, b) => (stages[b] > stages[a] ? b : a));
  // time, text, patch, head + kv, sa, ca, ffn per block (+ a fused session per block for small models)
  const sessions = (4 * parameterCount(c) <= FUSED_BLOCKS_MAX_WEIGHT_BYTES ? 5 : 4) * c.num_layers + 4;
  const est = {
    tokens: L,
    weights: weightBytes(c, dtype) * (4 * parameterCount(c) <= FUSED_BLOCKS_MAX_WEIGHT_BYTES ? 2 : 1),
    stage,
    activations: 4 * stages[stage],
    state: 4 * (16 * L * D + 8 * n + 2 * c.num_layers * 2 * S * D),
    threads: THREAD_BYTES * threads * sessions,
    total: 0,
  };
  est.total = est.weights + est.activations + est.state + est.threads;
  return est;
}

/** Memory this process can still take: MemAvailable (os.freemem), capped by a cgroup limit. */
export function availableMemory(): number {
  let avail = freemem();
  const limit = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.();
  if (limit && limit > 0 && limit < Number.MAX_SAFE_INTEGER) avail = Math.min(avail, Math.max(0, limit - process.memoryUsage().rss));
  return avail;
}

export function humanBytes(b: number): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) {
    b /= 1024;
    i++;
  }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
}

/**
 * Refuse a run whose estimate exceeds the available memory. `loaded`: the weights are already in
 * memory (a new latent size on a loaded model), so only the rest must fit.
 */
export function checkMemory(c: WanConfig, latent: LatentSize, o: { threads?: number; loaded?: boolean; available?: number; model?: string; dtype?: "float32" | "float16" } = {}): MemoryEstimate {
  const e = estimateMemory(c, latent, o.threads ?? defaultThreads(), TEXT_TOKENS, o.dtype);
  const need = o.loaded ? e.total - e.weights : e.total;
  const avail = o.available ?? availableMemory();
  if (need > avail) {
    const size = `${latent.channels}x${latent.frames}x${latent.height}x${latent.width}`;
    throw new MixCacheError(
      "MEMORY",
      `a run of ${o.model ? `model ${o.model}` : "this model"} at latent ${size} (${e.tokens.toLocaleString("en-US")} tokens) needs about ${humanBytes(need)}, ` +
        `more than the ${humanBytes(avail)} available (${o.loaded ? "" : `weights ${humanBytes(e.weights)}, `}largest stage ${e.stage} ${humanBytes(e.activations)}, ` +
        `held tensors ${humanBytes(e.state)}, threads ${humanBytes(e.threads)})`,
      "use a smaller latent: fewer frames or a smaller height/width (activation memory grows with the tokens), fewer --threads, or a machine with more free memory",
    );
  }
  return e;
}
