/**
 * Graphs of HunyuanVideo's two text encoders, built with the project's graph builder. Batch 1,
 * tokens as rows: activations are [S, D]. Linear weights stay in PyTorch [out, in] layout and run
 * through Gemm with transB = 1 (no transposed copy in JS).
 *
 * Llama decoder layer (transformers models/llama/modeling_llama.py, LlamaDecoderLayer):
 *   h = RMSNorm(x) * input_layernorm            x / sqrt(mean(x^2) + eps), then the weight
 *   q, k, v = h Wq^T, h Wk^T, h Wv^T            q: H heads, k/v: KV heads of head_dim
 *   q, k = q cos + rotate_half(q) sin, ...      rotate_half(t) = cat(-t[d/2:], t[:d/2])
 *   scores = q k^T / sqrt(head_dim) + mask      query head h reads key/value head h // (H / KV)
 *   x = x + softmax(scores) v Wo^T
 *   h = RMSNorm(x) * post_attention_layernorm
 *   x = x + (silu(h Wgate^T) * h Wup^T) Wdown^T
 * The mask input [S, S] is additive (0 where the key is visible, finfo(float32).min where it is
 * not: causal and padding combined, built by the encoder), and cos/sin [S, head_dim] come from
 * llamaRopeTables, so one session serves every length.
 *
 * CLIP encoder layer (transformers models/clip/modeling_clip.py, CLIPEncoderLayer):
 *   x = x + out_proj(softmax(q k^T / sqrt(d) + mask) v),  q, k, v = proj(layer_norm1(x)) (with biases)
 *   x = x + fc2(act(fc1(layer_norm2(x))))       act: quick_gelu = x * sigmoid(1.702 x) for CLIP-L
 */
import { Graph, Value } from "../../graph/builder.ts";
import { geluTanh, layerNorm, rmsNorm, silu } from "../../graph/layers.ts";
import { CLIP_FINAL_NORM, ClipTextConfig, clipLayerKeys } from "./clip-config.ts";
import { LlamaTextConfig, llamaLayerKeys, llamaNormKey } from "./llama-config.ts";

export type WeightGetter = (key: string) => Float32Array;

/** x [S, in] -> x W^T (+ b) [S, out] for a PyTorch-layout weight W [out, in]. */
function linearT(g: Graph, x: Value, key: string, w: WeightGetter, out: number, inp: number, biasKey?: string): Value {
  const inputs = [x, g.weight(key, w(key), [out, inp])];
  if (biasKey) inputs.push(g.weight(biasKey, w(biasKey), [out]));
  return g.op1("Gemm", inputs, { transB: 1 });
}

/** rotate_half on the last axis (length d): cat(-t[..., d/2:], t[..., :d/2]). */
function rotateHalf(g: Graph, t: Value, d: number, axis: number): Value {
  const a = g.slice(t, axis, 0, d / 2);
  const b = g.slice(t, axis, d / 2, d);
  return g.concat([g.op1("Neg", [b]), a], axis);
}

/** apply_rotary_pos_emb on [heads, S, d] with cos/sin [S, d] (broadcast over heads). */
function applyRope(g: Graph, t: Value, cos: Value, sin: Value, d: number): Value {
  return g.add(g.mul(t, cos), g.mul(rotateHalf(g, t, d, 2), sin));
}

/** LlamaAttention on the normed input, with the residual: x + o_proj(attention). */
function llamaAttention(g: Graph, c: LlamaTextConfig, w: WeightGetter, i: number, prefix: string, x: Value, cos: Value, sin: Value, mask: Value): Value {
  const k = llamaLayerKeys(i, prefix);
  const D = c.hidden_size, H = c.num_attention_heads, KV = c.num_key_value_heads, d = c.head_dim, R = H / KV;
  const h = rmsNorm(g, x, k.inputNorm.replace(/\.weight$/, ""), w(k.inputNorm), c.rms_norm_eps);
  const heads = (v: Value, n: number) => g.transpose(g.reshape(v, [-1, n, d]), [1, 0, 2]); // [n, S, d]
  const q = applyRope(g, heads(linearT(g, h, k.q, w, H * d, D), H), cos, sin, d); // [H, S, d]
  const kk = applyRope(g, heads(linearT(g, h, k.k, w, KV * d, D), KV), cos, sin, d); // [KV, S, d]
  const v = heads(linearT(g, h, k.v, w, KV * d, D), KV); // [KV, S, d]
  // grouped-query attention without repeating K/V: query head h = kv * R + r reads kv head kv
  // (repeat_kv expands each kv head R times in a row), so [H, S, d] -> [KV, R, S, d] against
  // [KV, 1, d, S] keys broadcast over r
  const q4 = g.reshape(q, [KV, R, -1, d]);
  const kt = g.reshape(g.transpose(kk, [0, 2, 1]), [KV, 1, d, -1]);
  const scores = g.mul(g.matmul(q4, kt), g.f32(1 / Math.sqrt(d))); // [KV, R, S, S]
  const probs = g.softmax(g.add(scores, mask), -1);
  const ctx4 = g.matmul(probs, g.reshape(v, [KV, 1, -1, d])); // [KV, R, S, d]
  const ctx = g.reshape(g.transpose(g.reshape(ctx4, [H, -1, d]), [1, 0, 2]), [-1, H * d]); // [S, H*d]
  return g.add(x, linearT(g, ctx, k.o, w, D, H * d));
}

/** LlamaMLP on the normed input, with the residual. */
function llamaMlp(g: Graph, c: LlamaTextConfig, w: WeightGetter, i: number, prefix: string, x: Value): Value {
  const k = llamaLayerKeys(i, prefix);
  const D = c.hidden_size, I = c.intermediate_size;
  const h = rmsNorm(g, x, k.postNorm.replace(/\.weight$/, ""), w(k.postNorm), c.rms_norm_eps);
  const act = g.mul(silu(g, linearT(g, h, k.gate, w, I, D)), linearT(g, h, k.up, w, I, D));
  return g.add(x, linearT(g, act, k.down, w, D, I));
}

function llamaInputs(g: Graph, c: LlamaTextConfig) {
  return {
    x: g.input("x", ["S", c.hidden_size]),
    cos: g.input("cos", ["S", c.head_dim]),
    sin: g.input("sin", ["S", c.head_dim]),
    mask: g.input("mask", ["S", "S"]),
  };
}

/** One decoder layer: x [S, D], cos/sin [S, head_dim], mask [S, S] -> y [S, D]. */
export function buildLlamaLayerGraph(c: LlamaTextConfig, w: WeightGetter, i: number, prefix = ""): Graph {
  const g = new Graph(`llama_layer${i}`);
  const { x, cos, sin, mask } = llamaInputs(g, c);
  g.output(llamaMlp(g, c, w, i, prefix, llamaAttention(g, c, w, i, prefix, x, cos, sin, mask)), "y", ["S", c.hidden_size]);
  return g;
}

/**
 * Layers 0..layers-1 in one graph (optionally followed by the final norm): the same computation as
 * running buildLlamaLayerGraph layer by layer, all at once (checks, small encoders).
 */
export function buildLlamaStackGraph(c: LlamaTextConfig, w: WeightGetter, layers: number, finalNorm: boolean, prefix = ""): Graph {
  const g = new Graph(`llama_stack${layers}`);
  const { x, cos, sin, mask } = llamaInputs(g, c);
  let y = x;
  for (let i = 0; i < layers; i++) y = llamaMlp(g, c, w, i, prefix, llamaAttention(g, c, w, i, prefix, y, cos, sin, mask));
  if (finalNorm) y = rmsNorm(g, y, llamaNormKey(prefix).replace(/\.weight$/, ""), w(llamaNormKey(prefix)), c.rms_norm_eps);
  g.output(y, "y", ["S", c.hidden_size]);
  return g;
}

/** LlamaModel.norm: x [S, D] -> y [S, D]. */
export function buildLlamaNormGraph(c: LlamaTextConfig, w: WeightGetter, prefix = ""): Graph {
  const g = new Graph("llama_norm");
  const x = g.input("x", ["S", c.hidden_size]);
  const key = llamaNormKey(prefix);
  g.output(rmsNorm(g, x, key.replace(/\.weight$/, ""), w(key), c.rms_norm_eps), "y", ["S", c.hidden_size]);
  return g;
}

// ---- CLIP ----

function clipActivation(g: Graph, c: ClipTextConfig, x: Value): Value {
  switch (c.hidden_act) {
    case "quick_gelu": // transformers activations.py QuickGELUActivation
      return g.mul(x, g.sigmoid(g.mul(x, g.f32(1.702))));
    case "gelu": // exact GELU: 0.5 x (1 + erf(x / sqrt(2)))
      return g.mul(g.mul(x, g.f32(0.5)), g.add(g.op1("Erf", [g.mul(x, g.f32(Math.SQRT1_2))]), g.f32(1)));
    case "gelu_new":
    case "gelu_pytorch_tanh":
      return geluTanh(g, x);
  }
}

function clipLayer(g: Graph, c: ClipTextConfig, w: WeightGetter, i: number, x: Value, mask: Value): Value {
  const k = clipLayerKeys(i);
  const D = c.hidden_size, H = c.num_attention_heads, d = D / H, I = c.intermediate_size;
  const ln = (name: string, v: Value) => layerNorm(g, v, name, D, c.layer_norm_eps, w(`${name}.weight`), w(`${name}.bias`));
  const proj = (name: string, v: Value, out: number, inp: number) => linearT(g, v, `${name}.weight`, w, out, inp, `${name}.bias`);
  const h = ln(k.norm1, x);
  const heads = (v: Value, perm: number[]) => g.transpose(g.reshape(v, [-1, H, d]), perm);
  const q = heads(proj(k.q, h, D, D), [1, 0, 2]); // [H, S, d]
  const kt = heads(proj(k.k, h, D, D), [1, 2, 0]); // [H, d, S]
  const v = heads(proj(k.v, h, D, D), [1, 0, 2]);
  const scores = g.add(g.mul(g.matmul(q, kt), g.f32(1 / Math.sqrt(d))), mask);
  const ctx = g.reshape(g.transpose(g.matmul(g.softmax(scores, -1), v), [1, 0, 2]), [-1, D]);
  const x1 = g.add(x, proj(k.o, ctx, D, D));
  const f = clipActivation(g, c, proj(k.fc1, ln(k.norm2, x1), I, D));
  return g.add(x1, proj(k.fc2, f, D, I));
}

/** One CLIP encoder layer: x [S, D], mask [S, S] (additive, causal) -> y [S, D]. */
export function buildClipLayerGraph(c: ClipTextConfig, w: WeightGetter, i: number): Graph {
  const g = new Graph(`clip_layer${i}`);
  const x = g.input("x", ["S", c.hidden_size]);
  const mask = g.input("mask", ["S", "S"]);
  g.output(clipLayer(g, c, w, i, x, mask), "y", ["S", c.hidden_size]);
  return g;
}

/** text_model.final_layer_norm: x [S, D] -> y [S, D]. */
export function buildClipFinalNormGraph(c: ClipTextConfig, w: WeightGetter): Graph {
  const g = new Graph("clip_final_norm");
  const x = g.input("x", ["S", c.hidden_size]);
  const y = layerNorm(g, x, CLIP_FINAL_NORM, c.hidden_size, c.layer_norm_eps, w(`${CLIP_FINAL_NORM}.weight`), w(`${CLIP_FINAL_NORM}.bias`));
  g.output(y, "y", ["S", c.hidden_size]);
  return g;
}
