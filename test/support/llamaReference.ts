/**
 * A plainly written float64 reference of transformers' LlamaModel forward with
 * output_hidden_states (models/llama/modeling_llama.py, modeling_rope_utils.py), batch 1:
 *
 *   hidden_states[0] = embed_tokens[ids]
 *   per layer:  x += o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))   n = RMSNorm(x) * input_layernorm
 *               x += down_proj(silu(gate_proj(n)) * up_proj(n))                        n = RMSNorm(x) * post_attention_layernorm
 *               hidden_states[i + 1] = x
 *   hidden_states[L] = norm(x)          (the last entry is last_hidden_state, after the final norm)
 *
 * RMSNorm: x / sqrt(mean(x^2) + eps) * w. RoPE (rotate_half layout): q * cos + cat(-q2, q1) * sin
 * with angle = position * inv_freq[j mod d/2]. Attention: query head h reads key/value head
 * floor(h / (H / KV)) (repeat_kv); key j is visible to query i when j <= i and mask[j] = 1;
 * scores q.k / sqrt(head_dim). inv_freq = 1 / theta^(2j / d), llama3-rescaled, stored in float32,
 * and the angle position * inv_freq rounded to float32, as transformers forms them (PyTorch float32
 * tensors): at position 350 one float32 step of the angle is 3e-5 rad, so this rounding is part of
 * the model's definition rather than noise. Shares nothing with src/ but the config type.
 */
import type { LlamaTextConfig } from "../../src/models/hunyuan-text/llama-config.ts";
import { linear } from "./f64.ts";

type W = (key: string) => Float32Array;

/** inv_freq [d/2]: the default frequencies, then (llama3) wavelength-banded rescaling, in float64. */
export function refInvFreq(c: LlamaTextConfig): Float64Array {
  const d = c.head_dim;
  const inv = new Float64Array(d / 2);
  for (let j = 0; j < d / 2; j++) inv[j] = 1 / Math.pow(c.rope_theta, (2 * j) / d);
  const s = c.rope_scaling;
  if (!s) return inv;
  const lowWl = s.original_max_position_embeddings / s.low_freq_factor;
  const highWl = s.original_max_position_embeddings / s.high_freq_factor;
  for (let j = 0; j < d / 2; j++) {
    const wl = (2 * Math.PI) / inv[j];
    if (wl < highWl) continue; // high frequencies: unchanged
    if (wl > lowWl) {
      inv[j] = inv[j] / s.factor; // low frequencies: slowed by factor
      continue;
    }
    const smooth = (s.original_max_position_embeddings / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    inv[j] = (1 - smooth) * (inv[j] / s.factor) + smooth * inv[j];
  }
  return inv;
}

function rmsNorm(x: ArrayLike<number>, S: number, D: number, w: Float32Array, eps: number): Float64Array {
  const y = new Float64Array(S * D);
  for (let s = 0; s < S; s++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[s * D + i] ** 2;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) y[s * D + i] = x[s * D + i] * inv * w[i];
  }
  return y;
}

/** RoPE in place on [S, n * d] (n heads of d), rotate_half layout. */
function rope(t: Float64Array, S: number, n: number, d: number, inv: Float64Array): void {
  const half = d / 2;
  for (let s = 0; s < S; s++)
    for (let h = 0; h < n; h++) {
      const o = s * n * d + h * d;
      for (let j = 0; j < half; j++) {
        const a = Math.fround(s * Math.fround(inv[j])); // float32 inv_freq and angle, as in PyTorch
        const c = Math.cos(a), sn = Math.sin(a);
        const x1 = t[o + j], x2 = t[o + half + j];
        t[o + j] = x1 * c - x2 * sn;
        t[o + half + j] = x2 * c + x1 * sn;
      }
    }
}

/** One LlamaDecoderLayer on x [S, D]. */
export function refLlamaLayer(c: LlamaTextConfig, w: W, i: number, x: ArrayLike<number>, S: number, mask: ArrayLike<number>, prefix = ""): Float64Array {
  const D = c.hidden_size, H = c.num_attention_heads, KV = c.num_key_value_heads, d = c.head_dim, R = H / KV, I = c.intermediate_size;
  const p = `${prefix}layers.${i}.`;
  const inv = refInvFreq(c);
  const n = rmsNorm(x, S, D, w(`${p}input_layernorm.weight`), c.rms_norm_eps);
  const q = linear(n, S, D, w(`${p}self_attn.q_proj.weight`), null, H * d);
  const k = linear(n, S, D, w(`${p}self_attn.k_proj.weight`), null, KV * d);
  const v = linear(n, S, D, w(`${p}self_attn.v_proj.weight`), null, KV * d);
  rope(q, S, H, d, inv);
  rope(k, S, KV, d, inv);
  const ctx = new Float64Array(S * H * d);
  const scores = new Float64Array(S);
  const scale = 1 / Math.sqrt(d);
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / R);
    for (let qi = 0; qi < S; qi++) {
      let max = -Infinity;
      for (let kj = 0; kj <= qi; kj++) {
        if (!mask[kj]) continue;
        let dot = 0;
        for (let e = 0; e < d; e++) dot += q[qi * H * d + h * d + e] * k[kj * KV * d + g * d + e];
        scores[kj] = dot * scale;
        max = Math.max(max, scores[kj]);
      }
      let sum = 0;
      for (let kj = 0; kj <= qi; kj++) if (mask[kj]) sum += Math.exp(scores[kj] - max);
      for (let kj = 0; kj <= qi; kj++) {
        if (!mask[kj]) continue;
        const pw = Math.exp(scores[kj] - max) / sum;
        for (let e = 0; e < d; e++) ctx[qi * H * d + h * d + e] += pw * v[kj * KV * d + g * d + e];
      }
    }
  }
  const o = linear(ctx, S, H * d, w(`${p}self_attn.o_proj.weight`), null, D);
  const x1 = new Float64Array(S * D);
  for (let j = 0; j < S * D; j++) x1[j] = x[j] + o[j];
  const n2 = rmsNorm(x1, S, D, w(`${p}post_attention_layernorm.weight`), c.rms_norm_eps);
  const gate = linear(n2, S, D, w(`${p}mlp.gate_proj.weight`), null, I);
  const up = linear(n2, S, D, w(`${p}mlp.up_proj.weight`), null, I);
  for (let j = 0; j < S * I; j++) gate[j] = (gate[j] / (1 + Math.exp(-gate[j]))) * up[j];
  const down = linear(gate, S, I, w(`${p}mlp.down_proj.weight`), null, D);
  for (let j = 0; j < S * D; j++) x1[j] += down[j];
  return x1;
}

/** LlamaModel(ids, attention_mask=mask, output_hidden_states=True).hidden_states: L + 1 arrays [S, D]. */
export function refLlamaHiddenStates(c: LlamaTextConfig, w: W, ids: ArrayLike<number>, mask: ArrayLike<number>, prefix = "", upTo = c.num_hidden_layers): Float64Array[] {
  const S = ids.length, D = c.hidden_size;
  const e = w(`${prefix}embed_tokens.weight`);
  let x: Float64Array = new Float64Array(S * D);
  for (let s = 0; s < S; s++) for (let i = 0; i < D; i++) x[s * D + i] = e[ids[s] * D + i];
  const states: Float64Array[] = [x];
  for (let i = 0; i < Math.min(upTo, c.num_hidden_layers); i++) states.push((x = refLlamaLayer(c, w, i, x, S, mask, prefix)));
  if (upTo >= c.num_hidden_layers) states[c.num_hidden_layers] = rmsNorm(x, S, D, w(`${prefix}norm.weight`), c.rms_norm_eps);
  return states;
}
