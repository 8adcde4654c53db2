/**
 * Reusable layers on top of the graph builder. Shapes in comments: B batch (always 1 here),
 * L tokens, D width, H heads, d head dim.
 */
import { Graph, MS_DOMAIN, Value } from "./builder.ts";
import { DType } from "./proto.ts";

/** PyTorch Linear weight [out, in] -> MatMul operand [in, out]. */
function transposeWeight(w: Float32Array, out: number, inp: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let o = 0; o < out; o++) {
    const row = o * inp;
    for (let i = 0; i < inp; i++) t[i * out + o] = w[row + i];
  }
  return t;
}

/** y = x W^T + b for a PyTorch-layout weight [out, in]. */
export function linear(g: Graph, x: Value, name: string, w: Float32Array, b: Float32Array | null, out: number, inp: number): Value {
  let y: Value;
  if (g.linearDtype === "float16") {
    // float16 weight and product, float32 in and out (the bias is added in float32)
    const wh = g.weightHalf(`${name}.weight`, transposeWeight(w, out, inp), [inp, out]);
    y = g.op1("Cast", [g.matmul(g.op1("Cast", [x], { to: DType.FLOAT16 }), wh)], { to: DType.FLOAT });
  } else {
    y = g.matmul(x, g.weight(`${name}.weight`, transposeWeight(w, out, inp), [inp, out]));
  }
  return b ? g.add(y, g.weight(`${name}.bias`, b, [out])) : y;
}

/** LayerNorm over the last axis; non-affine when weight/bias are null (Wan norm1/norm3/norm_out). */
export function layerNorm(g: Graph, x: Value, name: string, dim: number, eps: number, w: Float32Array | null, b: Float32Array | null): Value {
  const scale = g.weight(`${name}.weight`, w ?? new Float32Array(dim).fill(1), [dim]);
  const bias = g.weight(`${name}.bias`, b ?? new Float32Array(dim), [dim]);
  return g.op1("LayerNormalization", [x, scale, bias], { axis: -1, epsilon: { float: eps } });
}

/** RMSNorm over the last axis (Wan: across all heads, before the head split). */
export function rmsNorm(g: Graph, x: Value, name: string, w: Float32Array, eps: number): Value {
  const ms = g.reduceMean(g.mul(x, x), [-1]);
  const inv = g.div(g.f32(1), g.sqrt(g.add(ms, g.f32(eps))));
  return g.mul(g.mul(x, inv), g.weight(`${name}.weight`, w, [w.length]));
}

/** GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
export function geluTanh(g: Graph, x: Value): Value {
  const x3 = g.mul(g.mul(x, x), x);
  const inner = g.mul(g.add(x, g.mul(x3, g.f32(0.044715))), g.f32(Math.sqrt(2 / Math.PI)));
  return g.mul(g.mul(x, g.f32(0.5)), g.add(g.tanh(inner), g.f32(1)));
}

export function silu(g: Graph, x: Value): Value {
  return g.mul(x, g.sigmoid(x));
}

/** [1, L, D] -> [1, H, L, d]. */
export function splitHeads(g: Graph, x: Value, heads: number, headDim: number): Value {
  return g.transpose(g.reshape(x, [1, -1, heads, headDim]), [0, 2, 1, 3]);
}

/** [1, H, L, d] -> [1, L, D]. */
export function mergeHeads(g: Graph, x: Value, dim: number): Value {
  return g.reshape(g.transpose(x, [0, 2, 1, 3]), [1, -1, dim]);
}

/** softmax(q k^T / sqrt(d)) v on [1, H, L, d] (no mask; SDPA default scale). */
export function attention(g: Graph, q: Value, k: Value, v: Value, headDim: number): Value {
  const qs = g.mul(q, g.f32(1 / Math.sqrt(headDim)));
  const scores = g.matmul(qs, g.transpose(k, [0, 1, 3, 2]));
  return g.matmul(g.softmax(scores, -1), v);
}

/**
 * RoPE on interleaved pairs of [1, L, H, d] with per-token angle tables cos/sin [L, d/2]:
 * y[2j] = x[2j] cos - x[2j+1] sin, y[2j+1] = x[2j] sin + x[2j+1] cos.
 */
export function rope(g: Graph, x: Value, cos: Value, sin: Value, heads: number, headDim: number): Value {
  const pairs = g.reshape(x, [1, -1, heads, headDim / 2, 2]);
  const a = g.slice(pairs, 4, 0, 1);
  const b = g.slice(pairs, 4, 1, 2);
  const c = g.reshape(cos, [1, -1, 1, headDim / 2, 1]);
  const s = g.reshape(sin, [1, -1, 1, headDim / 2, 1]);
  const ya = g.sub(g.mul(a, c), g.mul(b, s));
  const yb = g.add(g.mul(a, s), g.mul(b, c));
  return g.reshape(g.concat([ya, yb], 4), [1, -1, heads, headDim]);
}

// ---- onnxruntime fused operators (CPU execution provider). Each replaces the plain subgraph
// above it names; test/fused_ops.test.ts checks both agree within fp32 rounding. Semantics follow
// onnxruntime docs/ContribOperators.md (com.microsoft domain) and the ONNX operator spec. ----

/**
 * LayerNorm over the last axis with a per-call scale and shift ([D] each): one
 * LayerNormalization (ONNX opset 17) = layerNorm(x, non-affine) * scale + shift.
 */
export function layerNormScaled(g: Graph, x: Value, scale: Value, shift: Value, eps: number): Value {
  return g.op1("LayerNormalization", [x, scale, shift], { axis: -1, epsilon: { float: eps } });
}

/** RMSNorm over the last axis as onnxruntime's SimplifiedLayerNormalization (ONNX domain, opset 1 in onnxruntime). */
export function rmsNormFused(g: Graph, x: Value, name: string, w: Float32Array, eps: number): Value {
  return g.op1("SimplifiedLayerNormalization", [x, g.weight(`${name}.weight`, w, [w.length])], { axis: -1, epsilon: { float: eps } });
}

/** GELU-tanh of x + bias as com.microsoft FastGelu (bias [N] added inside the kernel). */
export function fastGeluBias(g: Graph, x: Value, bias: Value): Value {
  return g.op("FastGelu", [x, bias], {}, 1, MS_DOMAIN)[0];
}

/**
 * rope() on [1, L, H*d] as com.microsoft RotaryEmbedding, interleaved pairs, positions 0..L-1
 * (position_ids of shape [1] is the start offset), cos/sin [L, d/2] as cos_cache/sin_cache.
 */
export function ropeFused(g: Graph, x: Value, cos: Value, sin: Value, heads: number): Value {
  return g.op("RotaryEmbedding", [x, g.i64([0]), cos, sin], { interleaved: 1, num_heads: heads }, 1, MS_DOMAIN)[0];
}

/**
 * softmax(q k^T / sqrt(d)) v as com.microsoft MultiHeadAttention: q [1, L, H*d]; k, v either
 * [1, S, H*d] or [1, H, S, d]; output [1, L, H*d]. Its CPU kernel is flash-style (keys in
 * blocks with a running softmax), so the [H, L, S] score matrix is never materialised.
 */
export function multiHeadAttention(g: Graph, q: Value, k: Value, v: Value, heads: number): Value {
  return g.op("MultiHeadAttention", [q, k, v], { num_heads: heads }, 1, MS_DOMAIN)[0];
}
