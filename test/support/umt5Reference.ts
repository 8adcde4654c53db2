/**
 * A plainly written float64 reference of transformers' UMT5EncoderModel forward (encoder only,
 * batch 1), straight from modeling_umt5.py: embedding lookup, per block
 *   x += o(softmax(q k^T + bias_i + mask) v)   on layer_norm(x)      (no 1/sqrt(d) scaling)
 *   x += wo(gelu_new(wi_0 h) * wi_1 h)         h = layer_norm(x)
 * then final_layer_norm. T5 layer norm: x / sqrt(mean(x^2) + eps) * w. Masked keys get weight 0
 * (transformers adds finfo.min, whose exp underflows to exactly 0). Arrays are row-major [S, D].
 */
import type { Umt5Config } from "../../src/models/umt5/config.ts";

type W = (key: string) => ArrayLike<number>;

/** The bucket formula of UMT5Attention._relative_position_bucket (bidirectional), in float64. */
export function refBucket(rel: number, numBuckets: number, maxDistance: number): number {
  const nb = Math.floor(numBuckets / 2);
  let bucket = rel > 0 ? nb : 0;
  const a = Math.abs(rel);
  const maxExact = Math.floor(nb / 2);
  if (a < maxExact) return bucket + a;
  const large = maxExact + Math.trunc((Math.log(a / maxExact) / Math.log(maxDistance / maxExact)) * (nb - maxExact));
  bucket += Math.min(large, nb - 1);
  return bucket;
}

export function refRmsNorm(x: ArrayLike<number>, S: number, D: number, w: ArrayLike<number>, eps: number): Float64Array {
  const out = new Float64Array(S * D);
  for (let s = 0; s < S; s++) {
    let ss = 0;
    for (let d = 0; d < D; d++) ss += x[s * D + d] ** 2;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let d = 0; d < D; d++) out[s * D + d] = x[s * D + d] * inv * w[d];
  }
  return out;
}

/** y = x W^T, W [out, in]. */
function lin(x: ArrayLike<number>, S: number, inp: number, w: ArrayLike<number>, out: number): Float64Array {
  const y = new Float64Array(S * out);
  for (let s = 0; s < S; s++)
    for (let o = 0; o < out; o++) {
      let acc = 0;
      for (let i = 0; i < inp; i++) acc += x[s * inp + i] * w[o * inp + i];
      y[s * out + o] = acc;
    }
  return y;
}

const geluNew = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** UMT5LayerSelfAttention of block i: x + attention(layer_norm(x)); mask 1 real / 0 padded key. */
export function refAttentionLayer(c: Umt5Config, w: W, i: number, x: ArrayLike<number>, S: number, mask: ArrayLike<number>): Float64Array {
  const D = c.d_model, H = c.num_heads, dk = c.d_kv, I = H * dk;
  const p = `encoder.block.${i}.layer.0.`;
  const h = refRmsNorm(x, S, D, w(`${p}layer_norm.weight`), c.layer_norm_epsilon);
  const q = lin(h, S, D, w(`${p}SelfAttention.q.weight`), I);
  const k = lin(h, S, D, w(`${p}SelfAttention.k.weight`), I);
  const v = lin(h, S, D, w(`${p}SelfAttention.v.weight`), I);
  const rb = w(`${p}SelfAttention.relative_attention_bias.weight`); // [buckets, H]
  const ctx = new Float64Array(S * I);
  const scores = new Float64Array(S);
  for (let hh = 0; hh < H; hh++)
    for (let qi = 0; qi < S; qi++) {
      let max = -Infinity;
      for (let ki = 0; ki < S; ki++) {
        if (!mask[ki]) continue;
        let dot = 0;
        for (let d = 0; d < dk; d++) dot += q[qi * I + hh * dk + d] * k[ki * I + hh * dk + d];
        const b = refBucket(ki - qi, c.relative_attention_num_buckets, c.relative_attention_max_distance);
        scores[ki] = dot + rb[b * H + hh];
        max = Math.max(max, scores[ki]);
      }
      let sum = 0;
      for (let ki = 0; ki < S; ki++) if (mask[ki]) sum += Math.exp(scores[ki] - max);
      for (let ki = 0; ki < S; ki++) {
        if (!mask[ki]) continue;
        const pw = Math.exp(scores[ki] - max) / sum;
        for (let d = 0; d < dk; d++) ctx[qi * I + hh * dk + d] += pw * v[ki * I + hh * dk + d];
      }
    }
  const o = lin(ctx, S, I, w(`${p}SelfAttention.o.weight`), D);
  const y = new Float64Array(S * D);
  for (let j = 0; j < S * D; j++) y[j] = x[j] + o[j];
  return y;
}

/** UMT5LayerFF of block i: x + wo(gelu_new(wi_0 h) * wi_1 h), h = layer_norm(x). */
export function refFeedForwardLayer(c: Umt5Config, w: W, i: number, x: ArrayLike<number>, S: number): Float64Array {
  const D = c.d_model, F = c.d_ff;
  const p = `encoder.block.${i}.layer.1.`;
  const h = refRmsNorm(x, S, D, w(`${p}layer_norm.weight`), c.layer_norm_epsilon);
  const a = lin(h, S, D, w(`${p}DenseReluDense.wi_0.weight`), F);
  const b = lin(h, S, D, w(`${p}DenseReluDense.wi_1.weight`), F);
  for (let j = 0; j < S * F; j++) a[j] = geluNew(a[j]) * b[j];
  const o = lin(a, S, F, w(`${p}DenseReluDense.wo.weight`), D);
  const y = new Float64Array(S * D);
  for (let j = 0; j < S * D; j++) y[j] = x[j] + o[j];
  return y;
}

export function refEmbed(c: Umt5Config, w: W, ids: ArrayLike<number>): Float64Array {
  const D = c.d_model;
  const e = w("shared.weight");
  const x = new Float64Array(ids.length * D);
  for (let s = 0; s < ids.length; s++) for (let d = 0; d < D; d++) x[s * D + d] = e[ids[s] * D + d];
  return x;
}

/** last_hidden_state [S, D] of UMT5EncoderModel(input_ids=ids, attention_mask=mask). */
export function refEncoder(c: Umt5Config, w: W, ids: ArrayLike<number>, mask: ArrayLike<number>): Float64Array {
  const S = ids.length;
  let x = refEmbed(c, w, ids);
  for (let i = 0; i < c.num_layers; i++) x = refFeedForwardLayer(c, w, i, refAttentionLayer(c, w, i, x, S, mask), S);
  return refRmsNorm(x, S, c.d_model, w("encoder.final_layer_norm.weight"), c.layer_norm_epsilon);
}

/** WanPipeline's prompt_embeds for one prompt: the first seq_len rows, zeros up to S. */
export function refWanEmbedding(c: Umt5Config, w: W, ids: ArrayLike<number>, mask: ArrayLike<number>): Float64Array {
  const h = refEncoder(c, w, ids, mask);
  let len = 0;
  for (let s = 0; s < mask.length; s++) len += mask[s] > 0 ? 1 : 0;
  h.fill(0, len * c.d_model);
  return h;
}
