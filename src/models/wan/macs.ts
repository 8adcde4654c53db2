/**
 * Exact analytic multiply-accumulate counts per stage call (matmuls only: every Linear, the patch
 * embedding, and the two attention products; elementwise work is not counted). Compute speedup in
 * the bench is full-run MACs / executed MACs, so these counts are the contract.
 */
import { WanConfig, dimOf } from "./config.ts";

export interface StageMacs {
  time: number;
  patch: number;
  text: number; // text projection, per prompt
  kv: number; // cross-attn K/V of one block, per prompt
  sa: number;
  ca: number;
  ffn: number;
  head: number;
}

export function stageMacs(c: WanConfig, L: number, S: number): StageMacs {
  const D = dimOf(c);
  const [pt, ph, pw] = c.patch_size;
  const K = c.in_channels * pt * ph * pw;
  const Ko = c.out_channels * pt * ph * pw;
  return {
    time: c.freq_dim * D + D * D + D * 6 * D,
    patch: L * K * D,
    text: S * c.text_dim * D + S * D * D,
    kv: 2 * S * D * D,
    sa: 4 * L * D * D + 2 * L * L * D, // q, k, v, out + QK^T and AV over all heads
    ca: 2 * L * D * D + 2 * L * S * D, // q, out + QK^T and AV over S text tokens
    ffn: 2 * L * D * c.ffn_dim,
    head: L * D * Ko,
  };
}

/** MACs of one full denoising step: the time path and the patch embedding once (they do not depend
 * on the prompt), then body and head per CFG branch. Text and K/V are per prompt, not per step. */
export function stepMacs(c: WanConfig, L: number, S: number, cfg: boolean): number {
  const m = stageMacs(c, L, S);
  const branch = c.num_layers * (m.sa + m.ca + m.ffn) + m.head;
  return m.time + m.patch + (cfg ? 2 : 1) * branch;
}

/** MACs spent once per prompt: text projection and every block's cross-attention K/V. */
export function promptMacs(c: WanConfig, S: number): number {
  const m = stageMacs(c, 0, S);
  return m.text + c.num_layers * m.kv;
}
