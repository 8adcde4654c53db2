/**
 * An independent, slow, plainly written Wan2.1 forward in float64 loops, used only as the oracle
 * for the ONNX stage graphs. It follows the design notes (docs/design/wan21.md section 2) directly and
 * shares no code with src/models/wan/graphs.ts.
 */
import type { WanConfig } from "../../src/models/wan/config.ts";
import { layerNorm, linear } from "./f64.ts";

type W = (k: string) => Float32Array;
export type F64 = Float64Array;

function rms(x: F64, rows: number, D: number, eps: number, w: Float32Array): F64 {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < D; i++) s += x[r * D + i] ** 2;
    const inv = 1 / Math.sqrt(s / D + eps);
    for (let i = 0; i < D; i++) y[r * D + i] = x[r * D + i] * inv * w[i];
  }
  return y;
}

const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
const silu = (x: number) => x / (1 + Math.exp(-x));

/** Multi-head attention on row-major [Lq, D] / [Lk, D] (heads are contiguous chunks of D). */
function mha(q: F64, k: F64, v: F64, Lq: number, Lk: number, H: number, d: number): F64 {
  const D = H * d;
  const out = new Float64Array(Lq * D);
  const s = new Float64Array(Lk);
  for (let h = 0; h < H; h++)
    for (let i = 0; i < Lq; i++) {
      let mx = -Infinity;
      for (let j = 0; j < Lk; j++) {
        let dot = 0;
        for (let e = 0; e < d; e++) dot += q[i * D + h * d + e] * k[j * D + h * d + e];
        s[j] = dot / Math.sqrt(d);
        if (s[j] > mx) mx = s[j];
      }
      let z = 0;
      for (let j = 0; j < Lk; j++) { s[j] = Math.exp(s[j] - mx); z += s[j]; }
      for (let e = 0; e < d; e++) {
        let acc = 0;
        for (let j = 0; j < Lk; j++) acc += s[j] * v[j * D + h * d + e];
        out[i * D + h * d + e] = acc / z;
      }
    }
  return out;
}

export interface RefTime { temb: F64; tproj: F64 }

export function refTime(c: WanConfig, w: W, t: number): RefTime {
  const D = c.num_attention_heads * c.attention_head_dim;
  const half = c.freq_dim / 2;
  const feat = new Float64Array(c.freq_dim);
  for (let i = 0; i < half; i++) {
    const a = t * Math.exp((-Math.log(10000) * i) / half);
    feat[i] = Math.cos(a);
    feat[half + i] = Math.sin(a);
  }
  const h = linear(feat, 1, c.freq_dim, w("condition_embedder.time_embedder.linear_1.weight"), w("condition_embedder.time_embedder.linear_1.bias"), D).map(silu);
  const temb = linear(h, 1, D, w("condition_embedder.time_embedder.linear_2.weight"), w("condition_embedder.time_embedder.linear_2.bias"), D);
  const tproj = linear(temb.map(silu), 1, D, w("condition_embedder.time_proj.weight"), w("condition_embedder.time_proj.bias"), 6 * D);
  return { temb, tproj };
}

export function refText(c: WanConfig, w: W, text: ArrayLike<number>, S: number): F64 {
  const D = c.num_attention_heads * c.attention_head_dim;
  const h = linear(Float64Array.from(text), S, c.text_dim, w("condition_embedder.text_embedder.linear_1.weight"), w("condition_embedder.text_embedder.linear_1.bias"), D).map(gelu);
  return linear(h, S, D, w("condition_embedder.text_embedder.linear_2.weight"), w("condition_embedder.text_embedder.linear_2.bias"), D);
}

/** Patchify x [C, F, H, W] into tokens [L, D] by the explicit conv sum. */
export function refPatch(c: WanConfig, w: W, x: ArrayLike<number>, F: number, Hh: number, Ww: number): F64 {
  const D = c.num_attention_heads * c.attention_head_dim;
  const [pt, ph, pw] = c.patch_size;
  const Fp = F / pt, Hp = Hh / ph, Wp = Ww / pw;
  const C = c.in_channels;
  const wt = w("patch_embedding.weight"); // [D, C, pt, ph, pw]
  const b = w("patch_embedding.bias");
  const out = new Float64Array(Fp * Hp * Wp * D);
  for (let f = 0; f < Fp; f++) for (let hh = 0; hh < Hp; hh++) for (let ww = 0; ww < Wp; ww++) {
    const n = (f * Hp + hh) * Wp + ww;
    for (let o = 0; o < D; o++) {
      let s = b[o];
      for (let ch = 0; ch < C; ch++) for (let a = 0; a < pt; a++) for (let bb = 0; bb < ph; bb++) for (let cc = 0; cc < pw; cc++) {
        const xv = x[((ch * F + f * pt + a) * Hh + hh * ph + bb) * Ww + ww * pw + cc];
        s += xv * wt[(((o * C + ch) * pt + a) * ph + bb) * pw + cc];
      }
      out[n * D + o] = s;
    }
  }
  return out;
}

function ropeApply(x: F64, Fp: number, Hp: number, Wp: number, H: number, d: number): F64 {
  const dhw = 2 * Math.floor(d / 6);
  const dt = d - 2 * dhw;
  const y = new Float64Array(x.length);
  const D = H * d;
  for (let f = 0; f < Fp; f++) for (let hh = 0; hh < Hp; hh++) for (let ww = 0; ww < Wp; ww++) {
    const n = (f * Hp + hh) * Wp + ww;
    for (let j = 0; j < d / 2; j++) {
      let ang: number;
      if (j < dt / 2) ang = f * Math.pow(10000, (-2 * j) / dt);
      else if (j < dt / 2 + dhw / 2) ang = hh * Math.pow(10000, (-2 * (j - dt / 2)) / dhw);
      else ang = ww * Math.pow(10000, (-2 * (j - dt / 2 - dhw / 2)) / dhw);
      const cs = Math.cos(ang), sn = Math.sin(ang);
      for (let h = 0; h < H; h++) {
        const i0 = n * D + h * d + 2 * j;
        y[i0] = x[i0] * cs - x[i0 + 1] * sn;
        y[i0 + 1] = x[i0] * sn + x[i0 + 1] * cs;
      }
    }
  }
  return y;
}

export interface RefGrid { Fp: number; Hp: number; Wp: number }

/** Self-attention module residual for block i. */
export function refSA(c: WanConfig, w: W, i: number, x: ArrayLike<number>, tproj: ArrayLike<number>, g: RefGrid): F64 {
  const H = c.num_attention_heads, d = c.attention_head_dim, D = H * d;
  const L = g.Fp * g.Hp * g.Wp;
  const p = `blocks.${i}.`;
  const tab = w(`${p}scale_shift_table`);
  const mod = (k: number, e: number) => tab[k * D + e] + tproj[k * D + e];
  const n = layerNorm(Float64Array.from(x), L, D, c.eps);
  for (let r = 0; r < L; r++) for (let e = 0; e < D; e++) n[r * D + e] = n[r * D + e] * (1 + mod(1, e)) + mod(0, e);
  const a = `${p}attn1.`;
  let q = rms(linear(n, L, D, w(`${a}to_q.weight`), w(`${a}to_q.bias`), D), L, D, c.eps, w(`${a}norm_q.weight`));
  let k = rms(linear(n, L, D, w(`${a}to_k.weight`), w(`${a}to_k.bias`), D), L, D, c.eps, w(`${a}norm_k.weight`));
  const v = linear(n, L, D, w(`${a}to_v.weight`), w(`${a}to_v.bias`), D);
  q = ropeApply(q, g.Fp, g.Hp, g.Wp, H, d);
  k = ropeApply(k, g.Fp, g.Hp, g.Wp, H, d);
  const o = linear(mha(q, k, v, L, L, H, d), L, D, w(`${a}to_out.0.weight`), w(`${a}to_out.0.bias`), D);
  for (let r = 0; r < L; r++) for (let e = 0; e < D; e++) o[r * D + e] *= mod(2, e);
  return o;
}

export function refCA(c: WanConfig, w: W, i: number, x: ArrayLike<number>, ctx: ArrayLike<number>, L: number, S: number): F64 {
  const H = c.num_attention_heads, d = c.attention_head_dim, D = H * d;
  const p = `blocks.${i}.`;
  const n = layerNorm(Float64Array.from(x), L, D, c.eps, w(`${p}norm2.weight`), w(`${p}norm2.bias`));
  const a = `${p}attn2.`;
  const cx = Float64Array.from(ctx);
  const q = rms(linear(n, L, D, w(`${a}to_q.weight`), w(`${a}to_q.bias`), D), L, D, c.eps, w(`${a}norm_q.weight`));
  const k = rms(linear(cx, S, D, w(`${a}to_k.weight`), w(`${a}to_k.bias`), D), S, D, c.eps, w(`${a}norm_k.weight`));
  const v = linear(cx, S, D, w(`${a}to_v.weight`), w(`${a}to_v.bias`), D);
  return linear(mha(q, k, v, L, S, H, d), L, D, w(`${a}to_out.0.weight`), w(`${a}to_out.0.bias`), D);
}

export function refFFN(c: WanConfig, w: W, i: number, x: ArrayLike<number>, tproj: ArrayLike<number>, L: number): F64 {
  const D = c.num_attention_heads * c.attention_head_dim;
  const p = `blocks.${i}.`;
  const tab = w(`${p}scale_shift_table`);
  const mod = (k: number, e: number) => tab[k * D + e] + tproj[k * D + e];
  const n = layerNorm(Float64Array.from(x), L, D, c.eps);
  for (let r = 0; r < L; r++) for (let e = 0; e < D; e++) n[r * D + e] = n[r * D + e] * (1 + mod(4, e)) + mod(3, e);
  const h = linear(n, L, D, w(`${p}ffn.net.0.proj.weight`), w(`${p}ffn.net.0.proj.bias`), c.ffn_dim).map(gelu);
  const o = linear(h, L, c.ffn_dim, w(`${p}ffn.net.2.weight`), w(`${p}ffn.net.2.bias`), D);
  for (let r = 0; r < L; r++) for (let e = 0; e < D; e++) o[r * D + e] *= mod(5, e);
  return o;
}

/** Head: tokens [L, D] -> velocity [C, F, H, W]. */
export function refHead(c: WanConfig, w: W, x: ArrayLike<number>, temb: ArrayLike<number>, g: RefGrid): F64 {
  const D = c.num_attention_heads * c.attention_head_dim;
  const [pt, ph, pw] = c.patch_size;
  const L = g.Fp * g.Hp * g.Wp;
  const C = c.out_channels;
  const tab = w("scale_shift_table");
  const n = layerNorm(Float64Array.from(x), L, D, c.eps);
  for (let r = 0; r < L; r++) for (let e = 0; e < D; e++) n[r * D + e] = n[r * D + e] * (1 + tab[D + e] + temb[e]) + tab[e] + temb[e];
  const K = C * pt * ph * pw;
  const y = linear(n, L, D, w("proj_out.weight"), w("proj_out.bias"), K);
  const F = g.Fp * pt, Hh = g.Hp * ph, Ww = g.Wp * pw;
  const out = new Float64Array(C * F * Hh * Ww);
  for (let f = 0; f < g.Fp; f++) for (let hh = 0; hh < g.Hp; hh++) for (let ww = 0; ww < g.Wp; ww++) {
    const nIdx = (f * g.Hp + hh) * g.Wp + ww;
    for (let a = 0; a < pt; a++) for (let b = 0; b < ph; b++) for (let cc = 0; cc < pw; cc++) for (let ch = 0; ch < C; ch++) {
      const feat = ((a * ph + b) * pw + cc) * C + ch; // channel-last
      out[((ch * F + f * pt + a) * Hh + hh * ph + b) * Ww + ww * pw + cc] = y[nIdx * K + feat];
    }
  }
  return out;
}

/** Full forward: x [C, F, H, W], timestep, text [S, text_dim] -> velocity [C, F, H, W]. */
export function refForward(c: WanConfig, w: W, x: ArrayLike<number>, F: number, Hh: number, Ww: number, t: number, text: ArrayLike<number>, S: number): F64 {
  const [pt, ph, pw] = c.patch_size;
  const g = { Fp: F / pt, Hp: Hh / ph, Wp: Ww / pw };
  const L = g.Fp * g.Hp * g.Wp;
  const { temb, tproj } = refTime(c, w, t);
  const ctx = refText(c, w, text, S);
  let h = refPatch(c, w, x, F, Hh, Ww);
  for (let i = 0; i < c.num_layers; i++) {
    for (const fn of [
      () => refSA(c, w, i, h, tproj, g),
      () => refCA(c, w, i, h, ctx, L, S),
      () => refFFN(c, w, i, h, tproj, L),
    ]) {
      const r = fn();
      const nh = new Float64Array(h.length);
      for (let j = 0; j < h.length; j++) nh[j] = h[j] + r[j];
      h = nh;
    }
  }
  return refHead(c, w, h, temb, g);
}
