import { expectedShapes, parseWanConfig, type WanConfig } from "../../src/models/wan/config.ts";
import { mulberry32 } from "../../src/pipeline/noise.ts";

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32) for test fixtures. */
export function rng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

export function randn(r: () => number): number {
  const u = Math.max(r(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

export function randomArray(n: number, r: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = randn(r) * scale;
  return a;
}

/** A tiny random Wan config and weights: linear weights ~ N(0, 1/fan_in), norms near 1. */
export function tinyWan(seed = 1, overrides: Record<string, unknown> = {}): { config: WanConfig; weights: Map<string, Float32Array> } {
  const config = parseWanConfig({
    patch_size: [1, 2, 2], num_attention_heads: 2, attention_head_dim: 12, in_channels: 4, out_channels: 4,
    text_dim: 10, freq_dim: 16, ffn_dim: 40, num_layers: 2, ...overrides,
  });
  const r = rng(seed);
  const weights = new Map<string, Float32Array>();
  for (const [k, shape] of expectedShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    let a: Float32Array;
    if (k.endsWith("norm_q.weight") || k.endsWith("norm_k.weight") || k.endsWith("norm2.weight")) a = randomArray(n, r, 0.1).map((v) => 1 + v);
    else if (k.endsWith("scale_shift_table")) a = randomArray(n, r, 0.3);
    else if (k.endsWith(".bias")) a = randomArray(n, r, 0.1);
    else a = randomArray(n, r, 1 / Math.sqrt(fanIn));
    weights.set(k, a);
  }
  return { config, weights };
}
