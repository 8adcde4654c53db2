/**
 * HunyuanVideo stage graphs, one builder per stage (diffusers transformer_hunyuan_video.py
 * semantics). Image tokens and text tokens enter the block graphs as two inputs (`img` [1, L, D]
 * and `txt` [1, S, D]: the two halves of the loop's hidden state), and every block module returns
 * its residual contribution for both streams concatenated, image first ([1, L + S, D]), so the
 * caller owns the residual stream.
 *
 * Text tokens are the prompt's real tokens only (padding trimmed by the model), so no graph takes
 * an attention mask: see model.ts encodePrompt for why that gives diffusers' masked result.
 */
import { Graph, Value } from "../../graph/builder.ts";
import { attention, geluTanh, layerNorm, mergeHeads, rmsNorm, rope, silu } from "../../graph/layers.ts";
import { HunyuanConfig, NORM_EPS, TIME_FEATURES, hunyuanDim, mlpDim, patchIn, patchOut, refinerMlpDim } from "./config.ts";

export type WeightGetter = (key: string) => Float32Array;
export type Grid = [number, number, number]; // patch grid F', H', W'

/** PyTorch Linear weight [out, in] -> MatMul operand [in, out]. */
function transposed(w: Float32Array, out: number, inp: number): Float32Array {
  const t = new Float32Array(out * inp);
  for (let o = 0; o < out; o++) {
    const row = o * inp;
    for (let i = 0; i < inp; i++) t[i * out + o] = w[row + i];
  }
  return t;
}

/** Rows [from, to) of a Linear weight [out, inp] (a chunk of its outputs). */
export function weightRows(w: Float32Array, inp: number, from: number, to: number): Float32Array {
  return w.subarray(from * inp, to * inp);
}

/** Columns [from, to) of a Linear weight [out, inp] as a weight [out, to - from] (a slice of its inputs). */
export function weightCols(w: Float32Array, out: number, inp: number, from: number, to: number): Float32Array {
  const n = to - from;
  const r = new Float32Array(out * n);
  for (let o = 0; o < out; o++) r.set(w.subarray(o * inp + from, o * inp + to), o * n);
  return r;
}

/**
 * A Linear whose initializers are created once and that can be applied to several inputs (the
 * image and the text rows of a single-stream block share to_q/to_k/to_v): x W^T + b.
 */
function lin(g: Graph, name: string, w: Float32Array, b: Float32Array | null, out: number, inp: number): (x: Value) => Value {
  if (w.length !== out * inp) throw new Error(`linear ${name}: ${w.length} weights for [${out}, ${inp}]`);
  const wt = g.weight(`${name}.weight`, transposed(w, out, inp), [inp, out]);
  const bt = b ? g.weight(`${name}.bias`, b, [out]) : null;
  return (x) => {
    const y = g.matmul(x, wt);
    return bt ? g.add(y, bt) : y;
  };
}

/** A diffusers nn.Linear by key prefix. */
function linKey(g: Graph, w: WeightGetter, key: string, out: number, inp: number): (x: Value) => Value {
  return lin(g, key, w(`${key}.weight`), w(`${key}.bias`), out, inp);
}

/** Chunk k of width D of a [1, n x D] modulation vector. */
const chunk = (g: Graph, mod: Value, k: number, D: number): Value => g.slice(mod, 1, k * D, (k + 1) * D);

/**
 * Modulation chunks [from, to) (in units of D) of an AdaLayerNormZero-style `<key>.linear` applied
 * to SiLU(c): only those rows of the weight are multiplied, so a module pays for the chunks it reads.
 */
function modulation(g: Graph, w: WeightGetter, key: string, c: Value, D: number, from: number, to: number): Value[] {
  const W = w(`${key}.weight`);
  const B = w(`${key}.bias`);
  const name = `${key}.rows${from}_${to}`;
  const mod = lin(g, name, weightRows(W, D, from * D, to * D), B.subarray(from * D, to * D), (to - from) * D, D)(silu(g, c));
  return Array.from({ length: to - from }, (_, k) => chunk(g, mod, k, D));
}

/** Non-affine LayerNorm (eps 1e-6) then x (1 + scale) + shift (AdaLayerNormZero's norm). */
function modulatedNorm(g: Graph, x: Value, name: string, D: number, shift: Value, scale: Value): Value {
  const n = layerNorm(g, x, name, D, NORM_EPS, null, null);
  return g.add(g.mul(n, g.add(scale, g.f32(1))), shift);
}

/** [1, n, D] -> [1, n, H, d], RMSNorm over each head (qk_norm "rms_norm": RMSNorm(dim_head)). */
function headsNormed(g: Graph, x: Value, H: number, d: number, name: string, wn: Float32Array): Value {
  return rmsNorm(g, g.reshape(x, [1, -1, H, d]), name, wn, NORM_EPS);
}

/** [1, n, H, d] -> [1, H, n, d]. */
const toHeads = (g: Graph, x: Value): Value => g.transpose(x, [0, 2, 1, 3]);

/** TimestepEmbedding: Linear(256, D), SiLU, Linear(D, D). */
function timestepEmbedding(g: Graph, w: WeightGetter, key: string, feat: Value, D: number): Value {
  return linKey(g, w, `${key}.linear_2`, D, D)(silu(g, linKey(g, w, `${key}.linear_1`, D, TIME_FEATURES)(feat)));
}

/** PixArtAlphaTextProjection(act_fn="silu"): Linear(in, D), SiLU, Linear(D, D). */
function textProjection(g: Graph, w: WeightGetter, key: string, x: Value, D: number, inp: number): Value {
  return linKey(g, w, `${key}.linear_2`, D, D)(silu(g, linKey(g, w, `${key}.linear_1`, D, inp)(x)));
}

/**
 * Time path (HunyuanVideoConditionEmbedding without its pooled-text term, which is per prompt):
 * tfeat [1, 256] (and gfeat [1, 256] with guidance_embeds) -> temb [1, D] =
 * timestep_embedder(tfeat) + guidance_embedder(gfeat). The sinusoidal features are computed by the
 * caller (model.ts timestepFeatures).
 */
export function buildTimeGraph(c: HunyuanConfig, w: WeightGetter): Graph {
  const g = new Graph("time");
  const D = hunyuanDim(c);
  const tfeat = g.input("tfeat", [1, TIME_FEATURES]);
  let temb = timestepEmbedding(g, w, "time_text_embed.timestep_embedder", tfeat, D);
  if (c.guidance_embeds) {
    const gfeat = g.input("gfeat", [1, TIME_FEATURES]);
    temb = g.add(temb, timestepEmbedding(g, w, "time_text_embed.guidance_embedder", gfeat, D));
  }
  g.output(temb, "temb", [1, D]);
  return g;
}

/**
 * Per-prompt work: text [1, S, text_embed_dim] (real tokens only), pooled [1, pooled_dim] ->
 * ctx0 [1, S, D] = context_embedder.proj_in(text); rpool [1, D] = the refiner's
 * time_text_embed.text_embedder(mean over the S tokens); ppool [1, D] = time_text_embed.text_embedder(pooled).
 */
export function buildPromptGraph(c: HunyuanConfig, w: WeightGetter): Graph {
  const g = new Graph("prompt");
  const D = hunyuanDim(c);
  const Dt = c.text_embed_dim;
  const text = g.input("text", [1, "S", Dt]);
  const pooled = g.input("pooled", [1, c.pooled_projection_dim]);
  const ce = "context_embedder.";
  g.output(linKey(g, w, `${ce}proj_in`, D, Dt)(text), "ctx0", [1, "S", D]);
  const mean = g.reshape(g.reduceMean(text, [1]), [1, Dt]);
  g.output(textProjection(g, w, `${ce}time_text_embed.text_embedder`, mean, D, Dt), "rpool", [1, D]);
  g.output(textProjection(g, w, "time_text_embed.text_embedder", pooled, D, c.pooled_projection_dim), "ppool", [1, D]);
  return g;
}

/**
 * Token refiner (HunyuanVideoTokenRefiner after proj_in and pooling): tfeat [1, 256], rpool [1, D],
 * ctx0 [1, S, D] -> ctx [1, S, D]. Its conditioning is timestep_embedder(tfeat) + rpool; each
 * HunyuanVideoIndividualTokenRefinerBlock is x += gate_msa attn(LN1(x)); x += gate_mlp ff(LN2(x))
 * with affine LayerNorms, plain self-attention (no qk norm, no RoPE) and a SiLU FeedForward.
 */
export function buildRefinerGraph(c: HunyuanConfig, w: WeightGetter): Graph {
  const g = new Graph("refiner");
  const D = hunyuanDim(c);
  const H = c.num_attention_heads;
  const d = c.attention_head_dim;
  const Mr = refinerMlpDim(c);
  const ce = "context_embedder.";
  const tfeat = g.input("tfeat", [1, TIME_FEATURES]);
  const rpool = g.input("rpool", [1, D]);
  let x = g.input("ctx0", [1, "S", D]);
  const cond = silu(g, g.add(timestepEmbedding(g, w, `${ce}time_text_embed.timestep_embedder`, tfeat, D), rpool));
  for (let i = 0; i < c.num_refiner_layers; i++) {
    const p = `${ce}token_refiner.refiner_blocks.${i}.`;
    const n1 = layerNorm(g, x, `${p}norm1`, D, NORM_EPS, w(`${p}norm1.weight`), w(`${p}norm1.bias`));
    const q = g.reshape(linKey(g, w, `${p}attn.to_q`, D, D)(n1), [1, -1, H, d]);
    const k = g.reshape(linKey(g, w, `${p}attn.to_k`, D, D)(n1), [1, -1, H, d]);
    const v = g.reshape(linKey(g, w, `${p}attn.to_v`, D, D)(n1), [1, -1, H, d]);
    const a = linKey(g, w, `${p}attn.to_out.0`, D, D)(mergeHeads(g, attention(g, toHeads(g, q), toHeads(g, k), toHeads(g, v), d), D));
    // HunyuanVideoAdaNorm: Linear(SiLU(temb)) -> gate_msa, gate_mlp
    const gates = linKey(g, w, `${p}norm_out.linear`, 2 * D, D)(cond);
    x = g.add(x, g.mul(a, chunk(g, gates, 0, D)));
    const n2 = layerNorm(g, x, `${p}norm2`, D, NORM_EPS, w(`${p}norm2.weight`), w(`${p}norm2.bias`));
    const f = linKey(g, w, `${p}ff.net.2`, D, Mr)(silu(g, linKey(g, w, `${p}ff.net.0.proj`, Mr, D)(n2)));
    x = g.add(x, g.mul(f, chunk(g, gates, 1, D)));
  }
  g.output(x, "ctx", [1, "S", D]);
  return g;
}

/** Patch embedding: x [1, C, F, H, W] -> tokens [1, L, D] (Conv3d with kernel = stride = patch, tokens f-major). */
export function buildPatchGraph(c: HunyuanConfig, w: WeightGetter, grid: Grid): Graph {
  const g = new Graph("patch");
  const D = hunyuanDim(c);
  const pt = c.patch_size_t;
  const p = c.patch_size;
  const [Fp, Hp, Wp] = grid;
  const C = c.in_channels;
  const x = g.input("x", [1, C, Fp * pt, Hp * p, Wp * p]);
  // [1, C, F', pt, H', p, W', p] -> [1, F', H', W', C, pt, p, p]: the Conv3d weight's (C, pt, p, p) order
  const patches = g.reshape(g.transpose(g.reshape(x, [1, C, Fp, pt, Hp, p, Wp, p]), [0, 2, 4, 6, 1, 3, 5, 7]), [1, Fp * Hp * Wp, patchIn(c)]);
  const tok = lin(g, "x_embedder.proj", w("x_embedder.proj.weight"), w("x_embedder.proj.bias"), D, patchIn(c))(patches);
  g.output(tok, "tokens", [1, Fp * Hp * Wp, D]);
  return g;
}

/** The attention modules' inputs: img [1, L, D], txt [1, S, D], c [1, D], cos/sin [L, d/2]. */
function attnInputs(g: Graph, D: number, d: number): { img: Value; txt: Value; cond: Value; cos: Value; sin: Value } {
  return {
    img: g.input("img", [1, "L", D]),
    txt: g.input("txt", [1, "S", D]),
    cond: g.input("c", [1, D]),
    cos: g.input("cos", ["L", d / 2]),
    sin: g.input("sin", ["L", d / 2]),
  };
}

/**
 * q or k [1, n, H, d] of one stream's normed tokens: projection, per-head RMSNorm (node `name`,
 * weight `wn()`), RoPE with `rot` (image rows; none for text).
 */
function qkHeads(g: Graph, proj: (x: Value) => Value, x: Value, H: number, d: number, name: string, wn: () => Float32Array, rot: { cos: Value; sin: Value } | null): Value {
  const y = headsNormed(g, proj(x), H, d, name, wn());
  return rot ? rope(g, y, rot.cos, rot.sin, H, d) : y;
}

/** Attention of q against k, v (all [1, H, n, d]), heads merged: [1, n, D]. */
const attend = (g: Graph, q: Value, k: Value, v: Value, d: number, D: number): Value => mergeHeads(g, attention(g, q, k, v, d), D);

/**
 * Dual-stream block i, module "attn" (HunyuanVideoTransformerBlock steps 1-3): img [1, L, D],
 * txt [1, S, D], c [1, D], cos/sin [L, d/2] -> r [1, L + S, D] = [gate_msa to_out(attn_img);
 * c_gate_msa to_add_out(attn_txt)]. Joint attention over the image keys (to_q/k/v, RMSNorm per
 * head, RoPE) and the text keys (add_q/k/v_proj, norm_added_q/k, no RoPE). Image and text queries
 * are attended in two products against the same keys: softmax is per query row, so this is the
 * joint attention exactly.
 */
export function buildDoubleAttnGraph(c: HunyuanConfig, w: WeightGetter, i: number): Graph {
  const g = new Graph(`double${i}.attn`);
  const D = hunyuanDim(c);
  const H = c.num_attention_heads;
  const d = c.attention_head_dim;
  const p = `transformer_blocks.${i}.`;
  const a = `${p}attn.`;
  const { img, txt, cond, cos, sin } = attnInputs(g, D, d);
  // AdaLayerNormZero chunks 0..2: shift_msa, scale_msa, gate_msa
  const [shI, scI, gateI] = modulation(g, w, `${p}norm1.linear`, cond, D, 0, 3);
  const [shT, scT, gateT] = modulation(g, w, `${p}norm1_context.linear`, cond, D, 0, 3);
  const ni = modulatedNorm(g, img, `${p}norm1.norm`, D, shI, scI);
  const nt = modulatedNorm(g, txt, `${p}norm1_context.norm`, D, shT, scT);
  const heads = (x: Value, proj: string, norm: string, rot: { cos: Value; sin: Value } | null) => qkHeads(g, linKey(g, w, `${a}${proj}`, D, D), x, H, d, `${a}${norm}`, () => w(`${a}${norm}.weight`), rot);
  const qi = heads(ni, "to_q", "norm_q", { cos, sin });
  const ki = heads(ni, "to_k", "norm_k", { cos, sin });
  const vi = g.reshape(linKey(g, w, `${a}to_v`, D, D)(ni), [1, -1, H, d]);
  const qt = heads(nt, "add_q_proj", "norm_added_q", null);
  const kt = heads(nt, "add_k_proj", "norm_added_k", null);
  const vt = g.reshape(linKey(g, w, `${a}add_v_proj`, D, D)(nt), [1, -1, H, d]);
  const k = toHeads(g, g.concat([ki, kt], 1));
  const v = toHeads(g, g.concat([vi, vt], 1));
  const oi = attend(g, toHeads(g, qi), k, v, d, D);
  const ot = attend(g, toHeads(g, qt), k, v, d, D);
  const ri = g.mul(linKey(g, w, `${a}to_out.0`, D, D)(oi), gateI);
  const rt = g.mul(linKey(g, w, `${a}to_add_out`, D, D)(ot), gateT);
  g.output(g.concat([ri, rt], 1), "r", [1, "N", D]);
  return g;
}

/**
 * Dual-stream block i, module "ff" (HunyuanVideoTransformerBlock step 4, on the hidden state that
 * already has the attention residual): img, txt, c -> r [1, L + S, D] = [gate_mlp ff(LN(img)(1 +
 * scale_mlp) + shift_mlp); c_gate_mlp ff_context(...)], the modulation from chunks 3..5 of norm1 /
 * norm1_context.
 */
export function buildDoubleFfGraph(c: HunyuanConfig, w: WeightGetter, i: number): Graph {
  const g = new Graph(`double${i}.ff`);
  const D = hunyuanDim(c);
  const M = mlpDim(c);
  const p = `transformer_blocks.${i}.`;
  const img = g.input("img", [1, "L", D]);
  const txt = g.input("txt", [1, "S", D]);
  const cond = g.input("c", [1, D]);
  const stream = (x: Value, normKey: string, normName: string, ff: string) => {
    const [shift, scale, gate] = modulation(g, w, normKey, cond, D, 3, 6);
    const n = modulatedNorm(g, x, normName, D, shift, scale);
    const f = linKey(g, w, `${p}${ff}.net.2`, D, M)(geluTanh(g, linKey(g, w, `${p}${ff}.net.0.proj`, M, D)(n)));
    return g.mul(f, gate);
  };
  const ri = stream(img, `${p}norm1.linear`, `${p}norm2`, "ff");
  const rt = stream(txt, `${p}norm1_context.linear`, `${p}norm2_context`, "ff_context");
  g.output(g.concat([ri, rt], 1), "r", [1, "N", D]);
  return g;
}

/**
 * Single-stream block i, module "attn" (HunyuanVideoSingleTransformerBlock, attention half):
 * img, txt, c, cos, sin -> r [1, L + S, D] = gate (W_attn attn(norm) + b), where W_attn is the
 * first D columns of proj_out (proj_out acts on concat(attn, mlp), so it splits by columns) and
 * the bias goes with this half. to_q/k/v and the per-head RMSNorm are shared by both streams;
 * RoPE on the image rows only.
 */
export function buildSingleAttnGraph(c: HunyuanConfig, w: WeightGetter, i: number): Graph {
  const g = new Graph(`single${i}.attn`);
  const D = hunyuanDim(c);
  const M = mlpDim(c);
  const H = c.num_attention_heads;
  const d = c.attention_head_dim;
  const p = `single_transformer_blocks.${i}.`;
  const a = `${p}attn.`;
  const { img, txt, cond, cos, sin } = attnInputs(g, D, d);
  const [shift, scale, gate] = modulation(g, w, `${p}norm.linear`, cond, D, 0, 3);
  const ni = modulatedNorm(g, img, `${p}norm.norm.img`, D, shift, scale);
  const nt = modulatedNorm(g, txt, `${p}norm.norm.txt`, D, shift, scale);
  const toQ = linKey(g, w, `${a}to_q`, D, D);
  const toK = linKey(g, w, `${a}to_k`, D, D);
  const toV = linKey(g, w, `${a}to_v`, D, D);
  const nq = w(`${a}norm_q.weight`);
  const nk = w(`${a}norm_k.weight`);
  const q = g.concat([qkHeads(g, toQ, ni, H, d, `${a}norm_q.img`, () => nq, { cos, sin }), qkHeads(g, toQ, nt, H, d, `${a}norm_q.txt`, () => nq, null)], 1);
  const k = g.concat([qkHeads(g, toK, ni, H, d, `${a}norm_k.img`, () => nk, { cos, sin }), qkHeads(g, toK, nt, H, d, `${a}norm_k.txt`, () => nk, null)], 1);
  const v = g.concat([g.reshape(toV(ni), [1, -1, H, d]), g.reshape(toV(nt), [1, -1, H, d])], 1);
  const o = attend(g, toHeads(g, q), toHeads(g, k), toHeads(g, v), d, D);
  const Wout = weightCols(w(`${p}proj_out.weight`), D, D + M, 0, D);
  const r = lin(g, `${p}proj_out.attn`, Wout, w(`${p}proj_out.bias`), D, D)(o);
  g.output(g.mul(r, gate), "r", [1, "N", D]);
  return g;
}

/**
 * Single-stream block i, module "mlp": x [1, L + S, D] (the whole hidden state: this half is
 * token-wise), c -> r = gate (W_mlp gelu_tanh(proj_mlp(norm))), W_mlp the last int(D mlp_ratio)
 * columns of proj_out (no bias: it went with the attention half).
 */
export function buildSingleMlpGraph(c: HunyuanConfig, w: WeightGetter, i: number): Graph {
  const g = new Graph(`single${i}.mlp`);
  const D = hunyuanDim(c);
  const M = mlpDim(c);
  const p = `single_transformer_blocks.${i}.`;
  const x = g.input("x", [1, "N", D]);
  const cond = g.input("c", [1, D]);
  const [shift, scale, gate] = modulation(g, w, `${p}norm.linear`, cond, D, 0, 3);
  const n = modulatedNorm(g, x, `${p}norm.norm`, D, shift, scale);
  const m = geluTanh(g, linKey(g, w, `${p}proj_mlp`, M, D)(n));
  const Wmlp = weightCols(w(`${p}proj_out.weight`), D, D + M, D, D + M);
  const r = lin(g, `${p}proj_out.mlp`, Wmlp, null, D, M)(m);
  g.output(g.mul(r, gate), "r", [1, "N", D]);
  return g;
}

/**
 * Head: img [1, L, D] (image tokens only: the norm is token-wise, text rows are dropped), c [1, D]
 * -> velocity [1, C, F, H, W]. norm_out is AdaLayerNormContinuous: Linear(SiLU(c)) -> scale (first
 * D), shift (second D); then proj_out and HunyuanVideo's unpatchify: features per token in
 * (C, pt, p, p) order, [1, F', H', W', C, pt, p, p] -> permute (0, 4, 1, 5, 2, 6, 3, 7).
 */
export function buildHeadGraph(c: HunyuanConfig, w: WeightGetter, grid: Grid): Graph {
  const g = new Graph("head");
  const D = hunyuanDim(c);
  const pt = c.patch_size_t;
  const p = c.patch_size;
  const [Fp, Hp, Wp] = grid;
  const C = c.out_channels;
  const L = Fp * Hp * Wp;
  const x = g.input("img", [1, L, D]);
  const cond = g.input("c", [1, D]);
  const emb = linKey(g, w, "norm_out.linear", 2 * D, D)(silu(g, cond));
  const n = layerNorm(g, x, "norm_out.norm", D, NORM_EPS, null, null);
  const y = linKey(g, w, "proj_out", patchOut(c), D)(g.add(g.mul(n, g.add(chunk(g, emb, 0, D), g.f32(1))), chunk(g, emb, 1, D)));
  const v = g.reshape(g.transpose(g.reshape(y, [1, Fp, Hp, Wp, C, pt, p, p]), [0, 4, 1, 5, 2, 6, 3, 7]), [1, C, Fp * pt, Hp * p, Wp * p]);
  g.output(v, "v", [1, C, Fp * pt, Hp * p, Wp * p]);
  return g;
}

/**
 * 3D RoPE tables cos/sin [L, d/2], one angle per interleaved (real, imaginary) pair (diffusers
 * HunyuanVideoRotaryPosEmbed + get_1d_rotary_pos_embed(use_real=True) repeat-interleaves each
 * angle over its pair; apply_rotary_emb rotates pairs (x[2j], x[2j+1])). Pairs 0..a0/2-1 rotate
 * by the frame index, the next a1/2 by the row, the last a2/2 by the column, each axis with
 * frequencies theta^(-2k/a_axis). Angles in float64.
 */
export function ropeTables(c: HunyuanConfig, grid: Grid): { cos: Float32Array; sin: Float32Array } {
  const P = c.attention_head_dim / 2;
  const [Fp, Hp, Wp] = grid;
  const L = Fp * Hp * Wp;
  const freqs: { axis: number; omega: number }[] = [];
  c.rope_axes_dim.forEach((da, axis) => {
    for (let k = 0; k < da / 2; k++) freqs.push({ axis, omega: Math.pow(c.rope_theta, (-2 * k) / da) });
  });
  const cos = new Float32Array(L * P);
  const sin = new Float32Array(L * P);
  for (let f = 0; f < Fp; f++)
    for (let h = 0; h < Hp; h++)
      for (let x = 0; x < Wp; x++) {
        const pos = [f, h, x];
        const base = ((f * Hp + h) * Wp + x) * P;
        freqs.forEach(({ axis, omega }, j) => {
          cos[base + j] = Math.cos(pos[axis] * omega);
          sin[base + j] = Math.sin(pos[axis] * omega);
        });
      }
  return { cos, sin };
}
