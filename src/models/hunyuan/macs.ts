/**
 * Exact analytic multiply-accumulate counts of the HunyuanVideo stage graphs (graphs.ts), per call,
 * for L image tokens and S text tokens (N = L + S): every Linear (the one-row modulation and
 * timestep Linears included), the patch embedding, and the two attention products QK^T and AV.
 * Elementwise work (norms, RoPE, activations, softmax) is not counted. A module's count is what its
 * graph executes: a single-stream block's "attn" and "mlp" each apply the block's norm.linear (the
 * parallel split computes the modulation twice), the dual-stream "attn" and "ff" each apply half of
 * the rows of norm1.linear and norm1_context.linear.
 */
import type { FamilyMacs } from "../family.ts";
import { HunyuanConfig, TIME_FEATURES, hunyuanDim, mlpDim, patchIn, patchOut, refinerMlpDim } from "./config.ts";

export interface HunyuanStageMacs {
  /** time(): timestep (+ guidance) embedder */
  time: number;
  /** patch embedding */
  patch: number;
  /** per prompt: proj_in, the refiner's pooled-text projection, the pooled (CLIP) projection */
  prompt: number;
  /** per branch: the refiner's timestep embedder and its blocks */
  refiner: number;
  doubleAttn: number;
  doubleFf: number;
  singleAttn: number;
  singleMlp: number;
  head: number;
}

export function hunyuanStageMacs(c: HunyuanConfig, L: number, S: number): HunyuanStageMacs {
  const D = hunyuanDim(c);
  const M = mlpDim(c);
  const Mr = refinerMlpDim(c);
  const N = L + S;
  const timestepEmbedder = TIME_FEATURES * D + D * D;
  const textProjection = (inp: number) => inp * D + D * D;
  const refinerBlock = 2 * D * D + 4 * S * D * D + 2 * S * S * D + 2 * S * D * Mr; // norm_out.linear, q/k/v/out, attention, ff
  return {
    time: timestepEmbedder * (c.guidance_embeds ? 2 : 1),
    patch: L * patchIn(c) * D,
    prompt: S * c.text_embed_dim * D + textProjection(c.text_embed_dim) + textProjection(c.pooled_projection_dim),
    refiner: timestepEmbedder + c.num_refiner_layers * refinerBlock,
    // 2 x 3 modulation rows, q/k/v of both streams, to_out + to_add_out, QK^T and AV over N keys
    doubleAttn: 6 * D * D + 3 * N * D * D + N * D * D + 2 * N * N * D,
    // 2 x 3 modulation rows, ff and ff_context
    doubleFf: 6 * D * D + 2 * N * D * M,
    // norm.linear, q/k/v, QK^T and AV, proj_out's attention columns
    singleAttn: 3 * D * D + 3 * N * D * D + 2 * N * N * D + N * D * D,
    // norm.linear, proj_mlp, proj_out's mlp columns
    singleMlp: 3 * D * D + 2 * N * D * M,
    // norm_out.linear, proj_out on the image tokens
    head: 2 * D * D + L * D * patchOut(c),
  };
}

/** MACs of every call the denoising loop makes, in the shape of the family interface. */
export function hunyuanFamilyMacs(c: HunyuanConfig, L: number, S: number): FamilyMacs {
  const m = hunyuanStageMacs(c, L, S);
  const module: number[][] = [];
  for (let i = 0; i < c.num_layers; i++) module.push([m.doubleAttn, m.doubleFf]);
  for (let i = 0; i < c.num_single_layers; i++) module.push([m.singleAttn, m.singleMlp]);
  return { time: m.time, patch: m.patch, branchIn: m.refiner, module, head: m.head, prompt: m.prompt };
}
