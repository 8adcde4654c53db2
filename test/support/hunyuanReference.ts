/**
 * An independent, slow, plainly written HunyuanVideo transformer forward in float64 loops, used
 * only as the oracle for the ONNX stage graphs. It follows diffusers'
 * models/transformers/transformer_hunyuan_video.py (HunyuanVideoTransformer3DModel.forward and the
 * classes it calls) step by step, padded text and attention masks included, and shares no code
 * with src/models/hunyuan/.
 *
 * Conventions: row-major arrays, one batch; image tokens [L, D], text tokens [S, D]; a key mask is
 * a boolean per key (true: attend), a 2D mask a boolean per (query, key).
 */
import type { HunyuanConfig } from "../../src/models/hunyuan/config.ts";
import { layerNorm as layerNormEps, linear } from "./f64.ts";

type W = (k: string) => Float32Array;
export type F64 = Float64Array;

const EPS = 1e-6;

function dims(c: HunyuanConfig) {
  const D = c.num_attention_heads * c.attention_head_dim;
  return { D, H: c.num_attention_heads, d: c.attention_head_dim, M: Math.floor(D * c.mlp_ratio), Mr: Math.floor(D * 4) };
}

const lin = (w: W, key: string, x: ArrayLike<number>, rows: number, inp: number, out: number): F64 =>
  linear(x, rows, inp, w(`${key}.weight`), w(`${key}.bias`), out);

const silu = (v: number): number => v / (1 + Math.exp(-v));
/** GELU, tanh approximation (diffusers "gelu-approximate", nn.GELU(approximate="tanh")). */
const gelu = (v: number): number => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

const layerNorm = (x: ArrayLike<number>, rows: number, D: number, wt?: Float32Array, bs?: Float32Array): F64 => layerNormEps(x, rows, D, EPS, wt, bs);

function add(a: ArrayLike<number>, b: ArrayLike<number>): F64 {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i];
  return y;
}

/** x [rows, D] * v [D] per row (a gate broadcast over tokens). */
function scaleRows(x: F64, rows: number, D: number, v: ArrayLike<number>, off = 0): F64 {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) for (let e = 0; e < D; e++) y[r * D + e] = x[r * D + e] * v[off + e];
  return y;
}

/** norm(x) (1 + scale) + shift, scale/shift read from emb at offsets (AdaLayerNormZero style). */
function modulate(n: F64, rows: number, D: number, emb: F64, shiftAt: number, scaleAt: number): F64 {
  const y = new Float64Array(n.length);
  for (let r = 0; r < rows; r++) for (let e = 0; e < D; e++) y[r * D + e] = n[r * D + e] * (1 + emb[scaleAt * D + e]) + emb[shiftAt * D + e];
  return y;
}

/** diffusers RMSNorm(dim_head) applied to every head of every token: x [rows, H*d]. */
function rmsHeads(x: F64, rows: number, H: number, d: number, wt: Float32Array): F64 {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++)
    for (let h = 0; h < H; h++) {
      const o = r * H * d + h * d;
      let s = 0;
      for (let e = 0; e < d; e++) s += x[o + e] ** 2;
      const inv = 1 / Math.sqrt(s / d + EPS);
      for (let e = 0; e < d; e++) y[o + e] = x[o + e] * inv * wt[e];
    }
  return y;
}

/**
 * Scaled dot-product attention per head on [Nq, H*d] / [Nk, H*d]. allowed(i, j): whether query i
 * may attend to key j (SDPA's boolean attn_mask); a query with no allowed key would be NaN in torch
 * and throws here.
 */
function sdpa(q: F64, k: F64, v: F64, Nq: number, Nk: number, H: number, d: number, allowed: ((i: number, j: number) => boolean) | null): F64 {
  const D = H * d;
  const out = new Float64Array(Nq * D);
  const s = new Float64Array(Nk);
  for (let h = 0; h < H; h++)
    for (let i = 0; i < Nq; i++) {
      let mx = -Infinity;
      for (let j = 0; j < Nk; j++) {
        if (allowed && !allowed(i, j)) { s[j] = -Infinity; continue; }
        let dot = 0;
        for (let e = 0; e < d; e++) dot += q[i * D + h * d + e] * k[j * D + h * d + e];
        s[j] = dot / Math.sqrt(d);
        if (s[j] > mx) mx = s[j];
      }
      if (mx === -Infinity) throw new Error(`reference attention: query ${i} has no key to attend to`);
      let z = 0;
      for (let j = 0; j < Nk; j++) { s[j] = s[j] === -Infinity ? 0 : Math.exp(s[j] - mx); z += s[j]; }
      for (let e = 0; e < d; e++) {
        let acc = 0;
        for (let j = 0; j < Nk; j++) acc += s[j] * v[j * D + h * d + e];
        out[i * D + h * d + e] = acc / z;
      }
    }
  return out;
}

/** Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0): [cos, sin] of x exp(-ln(1e4) i / 128). */
export function refSinusoid(x: number): F64 {
  const half = 128;
  const e = new Float64Array(256);
  for (let i = 0; i < half; i++) {
    const arg = x * Math.exp((-Math.log(10000) * i) / (half - 0));
    e[i] = Math.cos(arg); // flip_sin_to_cos: the cos half first
    e[half + i] = Math.sin(arg);
  }
  return e;
}

/** TimestepEmbedding: linear_1, SiLU, linear_2. */
function timestepEmbedding(c: HunyuanConfig, w: W, key: string, x: number): F64 {
  const { D } = dims(c);
  const h = lin(w, `${key}.linear_1`, refSinusoid(x), 1, 256, D).map(silu);
  return lin(w, `${key}.linear_2`, h, 1, D, D);
}

/** PixArtAlphaTextProjection(act_fn="silu"). */
function textProjection(c: HunyuanConfig, w: W, key: string, x: ArrayLike<number>, inp: number): F64 {
  const { D } = dims(c);
  return lin(w, `${key}.linear_2`, lin(w, `${key}.linear_1`, x, 1, inp, D).map(silu), 1, D, D);
}

/**
 * HunyuanVideoConditionEmbedding: timestep_embedder(t) + text_embedder(pooled) (+
 * guidance_embedder(guidance)). `guidance` is the transformer's input (the pipeline's
 * guidance_scale x 1000).
 */
export function refConditioning(c: HunyuanConfig, w: W, t: number, guidance: number, pooled: ArrayLike<number>): F64 {
  let temb = add(timestepEmbedding(c, w, "time_text_embed.timestep_embedder", t), textProjection(c, w, "time_text_embed.text_embedder", pooled, c.pooled_projection_dim));
  if (c.guidance_embeds) temb = add(temb, timestepEmbedding(c, w, "time_text_embed.guidance_embedder", guidance));
  return temb;
}

/** timestep + guidance embedding only (what the model's time() returns; the pooled term is per prompt). */
export function refTimeOnly(c: HunyuanConfig, w: W, t: number, guidance: number): F64 {
  let temb = timestepEmbedding(c, w, "time_text_embed.timestep_embedder", t);
  if (c.guidance_embeds) temb = add(temb, timestepEmbedding(c, w, "time_text_embed.guidance_embedder", guidance));
  return temb;
}

/**
 * HunyuanVideoTokenRefiner.forward: text [Sp, text_embed_dim] with its mask (null: no mask) ->
 * refined text [Sp, D]. Masked mean pool, CombinedTimestepTextProjEmbeddings, proj_in, then the
 * refiner blocks under the 2D self-attention mask mask_i & mask_j with column 0 forced true.
 */
export function refTokenRefiner(c: HunyuanConfig, w: W, text: ArrayLike<number>, Sp: number, mask: ArrayLike<number> | null, t: number): F64 {
  const { D, H, d, Mr } = dims(c);
  const Dt = c.text_embed_dim;
  const ce = "context_embedder.";
  const pooled = new Float64Array(Dt);
  let count = 0;
  for (let s = 0; s < Sp; s++) {
    const m = mask ? mask[s] : 1;
    count += m;
    for (let e = 0; e < Dt; e++) pooled[e] += text[s * Dt + e] * m;
  }
  for (let e = 0; e < Dt; e++) pooled[e] /= count;
  const temb = add(timestepEmbedding(c, w, `${ce}time_text_embed.timestep_embedder`, t), textProjection(c, w, `${ce}time_text_embed.text_embedder`, pooled, Dt));
  let x = lin(w, `${ce}proj_in`, text, Sp, Dt, D);
  const allowed = mask ? (i: number, j: number) => j === 0 || (mask[i] === 1 && mask[j] === 1) : null;
  for (let b = 0; b < c.num_refiner_layers; b++) {
    const p = `${ce}token_refiner.refiner_blocks.${b}.`;
    const n1 = layerNorm(x, Sp, D, w(`${p}norm1.weight`), w(`${p}norm1.bias`));
    const q = lin(w, `${p}attn.to_q`, n1, Sp, D, D);
    const k = lin(w, `${p}attn.to_k`, n1, Sp, D, D);
    const v = lin(w, `${p}attn.to_v`, n1, Sp, D, D);
    const a = lin(w, `${p}attn.to_out.0`, sdpa(q, k, v, Sp, Sp, H, d, allowed), Sp, D, D);
    const gates = lin(w, `${p}norm_out.linear`, temb.map(silu), 1, D, 2 * D); // gate_msa, gate_mlp
    x = add(x, scaleRows(a, Sp, D, gates, 0));
    const n2 = layerNorm(x, Sp, D, w(`${p}norm2.weight`), w(`${p}norm2.bias`));
    const f = lin(w, `${p}ff.net.2`, lin(w, `${p}ff.net.0.proj`, n2, Sp, D, Mr).map(silu), Sp, Mr, D);
    x = add(x, scaleRows(f, Sp, D, gates, D));
  }
  return x;
}

/** HunyuanVideoPatchEmbed: the Conv3d (kernel = stride = (pt, p, p)) as an explicit sum; tokens f-major. */
export function refPatch(c: HunyuanConfig, w: W, x: ArrayLike<number>, F: number, Hh: number, Ww: number): F64 {
  const { D } = dims(c);
  const pt = c.patch_size_t, ps = c.patch_size, C = c.in_channels;
  const Fp = F / pt, Hp = Hh / ps, Wp = Ww / ps;
  const wt = w("x_embedder.proj.weight");
  const b = w("x_embedder.proj.bias");
  const out = new Float64Array(Fp * Hp * Wp * D);
  for (let f = 0; f < Fp; f++) for (let hh = 0; hh < Hp; hh++) for (let ww = 0; ww < Wp; ww++) {
    const n = (f * Hp + hh) * Wp + ww;
    for (let o = 0; o < D; o++) {
      let s = b[o];
      for (let ch = 0; ch < C; ch++) for (let a = 0; a < pt; a++) for (let bb = 0; bb < ps; bb++) for (let cc = 0; cc < ps; cc++)
        s += x[((ch * F + f * pt + a) * Hh + hh * ps + bb) * Ww + ww * ps + cc] * wt[(((o * C + ch) * pt + a) * ps + bb) * ps + cc];
      out[n * D + o] = s;
    }
  }
  return out;
}

export interface RefRope { cos: F64; sin: F64; L: number }

/**
 * HunyuanVideoRotaryPosEmbed: per axis get_1d_rotary_pos_embed(dim_a, positions, theta,
 * use_real=True) -> cos/sin [L, dim_a] with each frequency repeat-interleaved twice, concatenated
 * over the axes into [L, head_dim]; grid from meshgrid(F', H', W', indexing="ij").
 */
export function refRope(c: HunyuanConfig, Fp: number, Hp: number, Wp: number): RefRope {
  const d = c.attention_head_dim;
  const L = Fp * Hp * Wp;
  const cos = new Float64Array(L * d);
  const sin = new Float64Array(L * d);
  for (let f = 0; f < Fp; f++) for (let h = 0; h < Hp; h++) for (let x = 0; x < Wp; x++) {
    const n = (f * Hp + h) * Wp + x;
    const pos = [f, h, x];
    let col = 0;
    for (let axis = 0; axis < 3; axis++) {
      const dim = c.rope_axes_dim[axis];
      for (let k = 0; k < dim / 2; k++) {
        const freq = 1 / Math.pow(c.rope_theta, (2 * k) / dim);
        const ang = pos[axis] * freq;
        for (const _ of [0, 1]) { // repeat_interleave(2)
          cos[n * d + col] = Math.cos(ang);
          sin[n * d + col] = Math.sin(ang);
          col++;
        }
      }
    }
  }
  return { cos, sin, L };
}

/** apply_rotary_emb(use_real=True, unbind_dim=-1) on the first rope.L rows of x [rows, H*d]. */
function applyRope(x: F64, H: number, d: number, rope: RefRope): F64 {
  const y = Float64Array.from(x);
  for (let n = 0; n < rope.L; n++)
    for (let h = 0; h < H; h++) {
      const o = n * H * d + h * d;
      for (let e = 0; e < d; e += 2) {
        const re = x[o + e], im = x[o + e + 1];
        // x_rotated = stack([-x_imag, x_real]); out = x cos + x_rotated sin
        y[o + e] = re * rope.cos[n * d + e] + -im * rope.sin[n * d + e];
        y[o + e + 1] = im * rope.cos[n * d + e + 1] + re * rope.sin[n * d + e + 1];
      }
    }
  return y;
}

function concatRows(a: F64, b: F64): F64 {
  const y = new Float64Array(a.length + b.length);
  y.set(a, 0);
  y.set(b, a.length);
  return y;
}

/** Joint-attention key mask of diffusers' forward: keys at index >= L + sum(mask) are hidden. */
export function jointKeyMask(L: number, S: number, mask: ArrayLike<number> | null): ((i: number, j: number) => boolean) | null {
  if (!mask) return null;
  let eff = 0;
  for (let s = 0; s < S; s++) eff += mask[s];
  return (_i, j) => j < L + eff;
}

/**
 * HunyuanVideoTransformerBlock steps 1-3 as residuals: img [L, D], txt [S, D] -> attention
 * residuals gate_msa to_out(attn_img) and c_gate_msa to_add_out(attn_txt).
 */
export function refDoubleAttn(c: HunyuanConfig, w: W, i: number, img: ArrayLike<number>, txt: ArrayLike<number>, temb: ArrayLike<number>, rope: RefRope, S: number, allowed: ((i: number, j: number) => boolean) | null): { img: F64; txt: F64 } {
  const { D, H, d } = dims(c);
  const L = rope.L;
  const p = `transformer_blocks.${i}.`;
  const a = `${p}attn.`;
  const st = Float64Array.from(temb).map(silu);
  const emb = lin(w, `${p}norm1.linear`, st, 1, D, 6 * D);
  const cemb = lin(w, `${p}norm1_context.linear`, st, 1, D, 6 * D);
  const ni = modulate(layerNorm(img, L, D), L, D, emb, 0, 1);
  const nt = modulate(layerNorm(txt, S, D), S, D, cemb, 0, 1);
  const qi = applyRope(rmsHeads(lin(w, `${a}to_q`, ni, L, D, D), L, H, d, w(`${a}norm_q.weight`)), H, d, rope);
  const ki = applyRope(rmsHeads(lin(w, `${a}to_k`, ni, L, D, D), L, H, d, w(`${a}norm_k.weight`)), H, d, rope);
  const vi = lin(w, `${a}to_v`, ni, L, D, D);
  const qt = rmsHeads(lin(w, `${a}add_q_proj`, nt, S, D, D), S, H, d, w(`${a}norm_added_q.weight`));
  const kt = rmsHeads(lin(w, `${a}add_k_proj`, nt, S, D, D), S, H, d, w(`${a}norm_added_k.weight`));
  const vt = lin(w, `${a}add_v_proj`, nt, S, D, D);
  const N = L + S;
  const o = sdpa(concatRows(qi, qt), concatRows(ki, kt), concatRows(vi, vt), N, N, H, d, allowed);
  const oi = lin(w, `${a}to_out.0`, o.subarray(0, L * D), L, D, D);
  const ot = lin(w, `${a}to_add_out`, o.subarray(L * D), S, D, D);
  return { img: scaleRows(oi, L, D, emb, 2 * D), txt: scaleRows(ot, S, D, cemb, 2 * D) };
}

/** HunyuanVideoTransformerBlock step 4 as residuals (on the state after the attention residual). */
export function refDoubleFf(c: HunyuanConfig, w: W, i: number, img: ArrayLike<number>, txt: ArrayLike<number>, temb: ArrayLike<number>, L: number, S: number): { img: F64; txt: F64 } {
  const { D, M } = dims(c);
  const p = `transformer_blocks.${i}.`;
  const st = Float64Array.from(temb).map(silu);
  const emb = lin(w, `${p}norm1.linear`, st, 1, D, 6 * D);
  const cemb = lin(w, `${p}norm1_context.linear`, st, 1, D, 6 * D);
  const ni = modulate(layerNorm(img, L, D), L, D, emb, 3, 4);
  const nt = modulate(layerNorm(txt, S, D), S, D, cemb, 3, 4);
  const fi = lin(w, `${p}ff.net.2`, lin(w, `${p}ff.net.0.proj`, ni, L, D, M).map(gelu), L, M, D);
  const ft = lin(w, `${p}ff_context.net.2`, lin(w, `${p}ff_context.net.0.proj`, nt, S, D, M).map(gelu), S, M, D);
  return { img: scaleRows(fi, L, D, emb, 5 * D), txt: scaleRows(ft, S, D, cemb, 5 * D) };
}

/** HunyuanVideoTransformerBlock.forward on x = [img; txt] ([L + S, D]) -> the new [img; txt]. */
export function refDoubleBlock(c: HunyuanConfig, w: W, i: number, x: F64, temb: ArrayLike<number>, rope: RefRope, S: number, allowed: ((i: number, j: number) => boolean) | null): F64 {
  const D = dims(c).D;
  const L = rope.L;
  const a = refDoubleAttn(c, w, i, x.subarray(0, L * D), x.subarray(L * D), temb, rope, S, allowed);
  const img = add(x.subarray(0, L * D), a.img);
  const txt = add(x.subarray(L * D), a.txt);
  const f = refDoubleFf(c, w, i, img, txt, temb, L, S);
  return concatRows(add(img, f.img), add(txt, f.txt));
}

interface SingleInner { gate: F64; attn: F64; mlp: F64 }

/** The parts of HunyuanVideoSingleTransformerBlock before proj_out: gate, attention output [N, D], GELU(proj_mlp) [N, M]. */
function singleInner(c: HunyuanConfig, w: W, i: number, x: ArrayLike<number>, temb: ArrayLike<number>, rope: RefRope, N: number, allowed: ((i: number, j: number) => boolean) | null): SingleInner {
  const { D, H, d, M } = dims(c);
  const p = `single_transformer_blocks.${i}.`;
  const a = `${p}attn.`;
  const emb = lin(w, `${p}norm.linear`, Float64Array.from(temb).map(silu), 1, D, 3 * D); // shift, scale, gate
  const n = modulate(layerNorm(x, N, D), N, D, emb, 0, 1);
  const mlp = lin(w, `${p}proj_mlp`, n, N, D, M).map(gelu);
  // attn.add_q_proj is None: to_q/k/v on the concatenated tokens, RoPE on the image rows only
  const q = applyRope(rmsHeads(lin(w, `${a}to_q`, n, N, D, D), N, H, d, w(`${a}norm_q.weight`)), H, d, rope);
  const k = applyRope(rmsHeads(lin(w, `${a}to_k`, n, N, D, D), N, H, d, w(`${a}norm_k.weight`)), H, d, rope);
  const v = lin(w, `${a}to_v`, n, N, D, D);
  return { gate: emb.slice(2 * D, 3 * D), attn: sdpa(q, k, v, N, N, H, d, allowed), mlp };
}

/** HunyuanVideoSingleTransformerBlock.forward literally: x + gate proj_out(concat(attn, mlp)). */
export function refSingleBlock(c: HunyuanConfig, w: W, i: number, x: F64, temb: ArrayLike<number>, rope: RefRope, S: number, allowed: ((i: number, j: number) => boolean) | null): F64 {
  const { D, M } = dims(c);
  const N = rope.L + S;
  const s = singleInner(c, w, i, x, temb, rope, N, allowed);
  const cat = new Float64Array(N * (D + M));
  for (let r = 0; r < N; r++) {
    cat.set(s.attn.subarray(r * D, (r + 1) * D), r * (D + M));
    cat.set(s.mlp.subarray(r * M, (r + 1) * M), r * (D + M) + D);
  }
  const y = lin(w, `single_transformer_blocks.${i}.proj_out`, cat, N, D + M, D);
  return add(x, scaleRows(y, N, D, s.gate));
}

/**
 * The single-stream block's residual split by proj_out's columns, as the model's two modules
 * compute it: attn = gate (W[:, :D] attn + b), mlp = gate (W[:, D:] mlp).
 */
export function refSingleParts(c: HunyuanConfig, w: W, i: number, x: F64, temb: ArrayLike<number>, rope: RefRope, S: number): { attn: F64; mlp: F64 } {
  const { D, M } = dims(c);
  const N = rope.L + S;
  const s = singleInner(c, w, i, x, temb, rope, N, null);
  const W0 = w(`single_transformer_blocks.${i}.proj_out.weight`);
  const b = w(`single_transformer_blocks.${i}.proj_out.bias`);
  const attn = new Float64Array(N * D);
  const mlp = new Float64Array(N * D);
  for (let r = 0; r < N; r++)
    for (let o = 0; o < D; o++) {
      let sa = b[o], sm = 0;
      for (let e = 0; e < D; e++) sa += s.attn[r * D + e] * W0[o * (D + M) + e];
      for (let e = 0; e < M; e++) sm += s.mlp[r * M + e] * W0[o * (D + M) + D + e];
      attn[r * D + o] = sa * s.gate[o];
      mlp[r * D + o] = sm * s.gate[o];
    }
  return { attn, mlp };
}

/** norm_out (AdaLayerNormContinuous: scale, then shift), proj_out, HunyuanVideo's unpatchify -> [C, F, H, W]. */
export function refHead(c: HunyuanConfig, w: W, img: ArrayLike<number>, temb: ArrayLike<number>, Fp: number, Hp: number, Wp: number): F64 {
  const { D } = dims(c);
  const L = Fp * Hp * Wp;
  const pt = c.patch_size_t, ps = c.patch_size, C = c.out_channels;
  const emb = lin(w, "norm_out.linear", Float64Array.from(temb).map(silu), 1, D, 2 * D);
  const n = modulate(layerNorm(img, L, D), L, D, emb, 1, 0); // chunk 0 = scale, chunk 1 = shift
  const K = C * pt * ps * ps;
  const y = lin(w, "proj_out", n, L, D, K);
  const F = Fp * pt, Hh = Hp * ps, Ww = Wp * ps;
  const out = new Float64Array(C * F * Hh * Ww);
  // reshape [F', H', W', C, pt, p, p], permute (C, F', pt, H', p, W', p)
  for (let f = 0; f < Fp; f++) for (let h = 0; h < Hp; h++) for (let x = 0; x < Wp; x++) {
    const tok = (f * Hp + h) * Wp + x;
    for (let ch = 0; ch < C; ch++) for (let a = 0; a < pt; a++) for (let b = 0; b < ps; b++) for (let e = 0; e < ps; e++)
      out[((ch * F + f * pt + a) * Hh + h * ps + b) * Ww + x * ps + e] = y[tok * K + ((ch * pt + a) * ps + b) * ps + e];
  }
  return out;
}

export interface RefPrompt {
  /** [Sp, text_embed_dim], padded rows included */
  text: ArrayLike<number>;
  Sp: number;
  /** encoder_attention_mask [Sp] (1 real, 0 padding) or null for none */
  mask: ArrayLike<number> | null;
  pooled: ArrayLike<number>;
}

/**
 * HunyuanVideoTransformer3DModel.forward: latent [C, F, H, W], timestep t, guidance (the
 * transformer's input: guidance_scale x 1000), the prompt -> velocity [C, F, H, W]. The padded text
 * tokens stay in the sequence and the masks are applied as diffusers builds them.
 */
export function refForward(c: HunyuanConfig, w: W, x: ArrayLike<number>, F: number, Hh: number, Ww: number, t: number, guidance: number, pr: RefPrompt): F64 {
  const Fp = F / c.patch_size_t, Hp = Hh / c.patch_size, Wp = Ww / c.patch_size;
  const rope = refRope(c, Fp, Hp, Wp);
  const temb = refConditioning(c, w, t, guidance, pr.pooled);
  const img = refPatch(c, w, x, F, Hh, Ww);
  const txt = refTokenRefiner(c, w, pr.text, pr.Sp, pr.mask, t);
  const allowed = jointKeyMask(rope.L, pr.Sp, pr.mask ?? Array(pr.Sp).fill(1));
  let h = concatRows(img, txt);
  for (let i = 0; i < c.num_layers; i++) h = refDoubleBlock(c, w, i, h, temb, rope, pr.Sp, allowed);
  for (let i = 0; i < c.num_single_layers; i++) h = refSingleBlock(c, w, i, h, temb, rope, pr.Sp, allowed);
  return refHead(c, w, h.subarray(0, rope.L * dims(c).D), temb, Fp, Hp, Wp);
}
