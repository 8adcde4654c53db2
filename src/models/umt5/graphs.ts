/**
 * umT5 encoder graphs (transformers modeling_umt5.py, encoder side), built with the project's graph
 * builder. Batch 1, tokens as rows: activations are [S, D].
 *
 * Block i (one graph, `buildBlockGraph`):
 *   h  = RMSNorm(x) * layer.0.layer_norm          (T5 norm: no mean, no bias, eps inside the sqrt)
 *   q, k, v = h Wq^T, h Wk^T, h Wv^T               split into H heads of d_kv
 *   scores = q k^T + (bias_i[bucket(key - query)] + mask)    NOT scaled by 1/sqrt(d_kv)
 *   x  = x + softmax(scores) v Wo^T
 *   h  = RMSNorm(x) * layer.1.layer_norm
 *   x  = x + (gelu_new(h Wi0^T) * (h Wi1^T)) Wo^T  (gated GELU, tanh approximation)
 * Every layer has its own relative_attention_bias [num_buckets, H] (umT5; T5 shares layer 0's).
 * The mask input is 1 for real tokens and 0 for padding; padded keys get finfo(float32).min added,
 * as transformers' get_extended_attention_mask. The bucket table is an input ([S, S] bucket ids as
 * floats, computed once per length by relativePositionBuckets) so one session serves every length.
 *
 * Linear weights stay in PyTorch [out, in] layout and run through Gemm with transB = 1, so a
 * 4096 x 10240 weight is never transposed (copied) in JS.
 */
import { Graph, Value } from "../../graph/builder.ts";
import { DType } from "../../graph/proto.ts";
import { geluTanh, rmsNorm } from "../../graph/layers.ts";
import { FINAL_NORM_KEY, Umt5Config, innerDim, layerKeys } from "./config.ts";

export type WeightGetter = (key: string) => Float32Array;

/** torch.finfo(torch.float32).min, the additive mask of padded keys. */
const F32_MIN = -3.4028234663852886e38;

/** x [S, in] -> x W^T [S, out] for a PyTorch-layout weight W [out, in] (no copy of W). */
function linearT(g: Graph, x: Value, key: string, w: Float32Array, out: number, inp: number): Value {
  return g.op1("Gemm", [x, g.weight(key, w, [out, inp])], { transB: 1 });
}

/** UMT5LayerSelfAttention: x + SelfAttention(layer_norm(x)). */
function attentionLayer(g: Graph, c: Umt5Config, w: WeightGetter, i: number, x: Value, buckets: Value, mask: Value): Value {
  const k = layerKeys(i);
  const D = c.d_model, H = c.num_heads, dk = c.d_kv, I = innerDim(c);
  const h = rmsNorm(g, x, k.attnNorm.replace(/\.weight$/, ""), w(k.attnNorm), c.layer_norm_epsilon);
  const heads = (v: Value, perm: number[]) => g.transpose(g.reshape(v, [-1, H, dk]), perm);
  const q = heads(linearT(g, h, k.q, w(k.q), I, D), [1, 0, 2]); // [H, S, dk]
  const kt = heads(linearT(g, h, k.k, w(k.k), I, D), [1, 2, 0]); // [H, dk, S]
  const v = heads(linearT(g, h, k.v, w(k.v), I, D), [1, 0, 2]); // [H, S, dk]
  const scores = g.matmul(q, kt); // [H, S, S], no 1/sqrt(dk)
  // compute_bias: embedding lookup of the bucket table -> [S, S, H] -> [H, S, S]
  const table = g.weight(k.relBias, w(k.relBias), [c.relative_attention_num_buckets, H]);
  const bias = g.transpose(g.op1("Gather", [table, g.op1("Cast", [buckets], { to: DType.INT64 })], { axis: 0 }), [2, 0, 1]);
  // extended mask (1 - mask) * finfo.min, broadcast over heads and queries: [S] on the key axis
  const maskAdd = g.mul(g.sub(g.f32(1), mask), g.f32(F32_MIN));
  const probs = g.softmax(g.add(scores, g.add(bias, maskAdd)), -1);
  const ctx = g.reshape(g.transpose(g.matmul(probs, v), [1, 0, 2]), [-1, I]); // [S, I]
  return g.add(x, linearT(g, ctx, k.o, w(k.o), D, I));
}

/** UMT5LayerFF with UMT5DenseGatedActDense: x + wo(gelu_new(wi_0 h) * wi_1 h), h = layer_norm(x). */
function feedForwardLayer(g: Graph, c: Umt5Config, w: WeightGetter, i: number, x: Value): Value {
  const k = layerKeys(i);
  const D = c.d_model, F = c.d_ff;
  const h = rmsNorm(g, x, k.ffnNorm.replace(/\.weight$/, ""), w(k.ffnNorm), c.layer_norm_epsilon);
  const gate = geluTanh(g, linearT(g, h, k.wi0, w(k.wi0), F, D));
  const lin = linearT(g, h, k.wi1, w(k.wi1), F, D);
  return g.add(x, linearT(g, g.mul(gate, lin), k.wo, w(k.wo), D, F));
}

function blockInputs(g: Graph, c: Umt5Config) {
  return {
    x: g.input("x", ["S", c.d_model]),
    buckets: g.input("buckets", ["S", "S"]),
    mask: g.input("mask", ["S"]),
  };
}

/** One encoder block (UMT5Block): x [S, D], buckets [S, S], mask [S] -> y [S, D]. */
export function buildBlockGraph(c: Umt5Config, w: WeightGetter, i: number): Graph {
  const g = new Graph(`umt5_block${i}`);
  const { x, buckets, mask } = blockInputs(g, c);
  const y = feedForwardLayer(g, c, w, i, attentionLayer(g, c, w, i, x, buckets, mask));
  g.output(y, "y", ["S", c.d_model]);
  return g;
}

/** The self-attention half of block i alone (module-level tests): same inputs, y [S, D]. */
export function buildAttentionGraph(c: Umt5Config, w: WeightGetter, i: number): Graph {
  const g = new Graph(`umt5_attn${i}`);
  const { x, buckets, mask } = blockInputs(g, c);
  g.output(attentionLayer(g, c, w, i, x, buckets, mask), "y", ["S", c.d_model]);
  return g;
}

/** The feed-forward half of block i alone (module-level tests): x [S, D] -> y [S, D]. */
export function buildFeedForwardGraph(c: Umt5Config, w: WeightGetter, i: number): Graph {
  const g = new Graph(`umt5_ffn${i}`);
  const x = g.input("x", ["S", c.d_model]);
  g.output(feedForwardLayer(g, c, w, i, x), "y", ["S", c.d_model]);
  return g;
}

/** encoder.final_layer_norm: x [S, D] -> y [S, D]. */
export function buildFinalNormGraph(c: Umt5Config, w: WeightGetter): Graph {
  const g = new Graph("umt5_final_norm");
  const x = g.input("x", ["S", c.d_model]);
  g.output(rmsNorm(g, x, FINAL_NORM_KEY.replace(/\.weight$/, ""), w(FINAL_NORM_KEY), c.layer_norm_epsilon), "y", ["S", c.d_model]);
  return g;
}
