/**
 * A plainly written float64 reference of transformers' CLIPTextModel forward
 * (models/clip/modeling_clip.py, CLIPTextTransformer), batch 1, no attention_mask (as
 * HunyuanVideoPipeline calls it):
 *
 *   x = token_embedding[ids] + position_embedding[0..S-1]
 *   per layer:  x += out_proj(softmax(q k^T / sqrt(d) + causal) v),  q, k, v = proj(layer_norm1(x))
 *               x += fc2(act(fc1(layer_norm2(x))))
 *   last_hidden_state = final_layer_norm(x)
 *   pooler_output = last_hidden_state[argmax(ids)] when max(ids) is 49407, else at the first id
 *                   equal to eos_token_id (0 when none)
 *
 * act: quick_gelu x * sigmoid(1.702 x), gelu 0.5 x (1 + erf(x / sqrt 2)), gelu_new (tanh form).
 */
import type { ClipTextConfig } from "../../src/models/hunyuan-text/clip-config.ts";
import { layerNorm, linear } from "./f64.ts";

type W = (key: string) => Float32Array;

/** erf in float64: its Taylor series below 3, the erfc continued fraction above. */
function erf(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a < 3) {
    // Taylor: erf(x) = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1))
    let term = a, sum = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc continued fraction
    let f = 0;
    for (let n = 60; n >= 1; n--) f = n / 2 / (a + f);
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f);
  }
  return x < 0 ? -r : r;
}

function act(c: ClipTextConfig, x: number): number {
  switch (c.hidden_act) {
    case "quick_gelu":
      return x / (1 + Math.exp(-1.702 * x));
    case "gelu":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    default:
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  }
}

export function refClipLayer(c: ClipTextConfig, w: W, i: number, x: ArrayLike<number>, S: number): Float64Array {
  const D = c.hidden_size, H = c.num_attention_heads, d = D / H, I = c.intermediate_size;
  const p = `text_model.encoder.layers.${i}.`;
  const n = layerNorm(x, S, D, c.layer_norm_eps, w(`${p}layer_norm1.weight`), w(`${p}layer_norm1.bias`));
  const proj = (name: string, v: ArrayLike<number>, inp: number, out: number) => linear(v, S, inp, w(`${p}${name}.weight`), w(`${p}${name}.bias`), out);
  const q = proj("self_attn.q_proj", n, D, D), k = proj("self_attn.k_proj", n, D, D), v = proj("self_attn.v_proj", n, D, D);
  const ctx = new Float64Array(S * D);
  const sc = new Float64Array(S);
  for (let h = 0; h < H; h++)
    for (let qi = 0; qi < S; qi++) {
      let max = -Infinity;
      for (let kj = 0; kj <= qi; kj++) {
        let dot = 0;
        for (let e = 0; e < d; e++) dot += q[qi * D + h * d + e] * k[kj * D + h * d + e];
        sc[kj] = dot / Math.sqrt(d);
        max = Math.max(max, sc[kj]);
      }
      let sum = 0;
      for (let kj = 0; kj <= qi; kj++) sum += Math.exp(sc[kj] - max);
      for (let kj = 0; kj <= qi; kj++) {
        const pw = Math.exp(sc[kj] - max) / sum;
        for (let e = 0; e < d; e++) ctx[qi * D + h * d + e] += pw * v[kj * D + h * d + e];
      }
    }
  const o = proj("self_attn.out_proj", ctx, D, D);
  const x1 = new Float64Array(S * D);
  for (let j = 0; j < S * D; j++) x1[j] = x[j] + o[j];
  const f = proj("mlp.fc1", layerNorm(x1, S, D, c.layer_norm_eps, w(`${p}layer_norm2.weight`), w(`${p}layer_norm2.bias`)), D, I);
  for (let j = 0; j < S * I; j++) f[j] = act(c, f[j]);
  const f2 = proj("mlp.fc2", f, I, D);
  for (let j = 0; j < S * D; j++) x1[j] += f2[j];
  return x1;
}

/** The pooled position, written from the rule in CLIPTextTransformer.forward. */
export function refPoolIndex(ids: ArrayLike<number>, eosTokenId: number): number {
  const list = Array.from(ids);
  const max = Math.max(...list);
  if (max === 49407) return list.indexOf(max);
  const at = list.indexOf(eosTokenId);
  return at < 0 ? 0 : at;
}

/** CLIPTextModel(input_ids=ids): last_hidden_state [S, D] and pooler_output [D]. */
export function refClipText(c: ClipTextConfig, w: W, ids: ArrayLike<number>): { last: Float64Array; pooled: Float64Array; poolIndex: number } {
  const S = ids.length, D = c.hidden_size;
  const te = w("text_model.embeddings.token_embedding.weight"), pe = w("text_model.embeddings.position_embedding.weight");
  let x: Float64Array = new Float64Array(S * D);
  for (let s = 0; s < S; s++) for (let i = 0; i < D; i++) x[s * D + i] = te[ids[s] * D + i] + pe[s * D + i];
  for (let i = 0; i < c.num_hidden_layers; i++) x = refClipLayer(c, w, i, x, S);
  const last = layerNorm(x, S, D, c.layer_norm_eps, w("text_model.final_layer_norm.weight"), w("text_model.final_layer_norm.bias"));
  const poolIndex = refPoolIndex(ids, c.eos_token_id);
  return { last, pooled: last.slice(poolIndex * D, (poolIndex + 1) * D), poolIndex };
}
