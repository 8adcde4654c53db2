/**
 * Wan2.1 stage graphs, one builder per stage (diffusers transformer_wan.py semantics; see
 * docs/design/wan21.md section 2). The pipeline calls them in order; the seams between calls
 * are where caches hook in. Every module graph returns its gated residual contribution, so the
 * caller owns the residual stream: x <- x + sa(x); x <- x + ca(x); x <- x + ffn(x).
 */
import { Graph } from "../../graph/builder.ts";
import {
  attention, fastGeluBias, geluTanh, layerNorm, layerNormScaled, linear, mergeHeads, multiHeadAttention, rmsNorm, rmsNormFused, rope, ropeFused,
  silu, splitHeads,
} from "../../graph/layers.ts";
import { WanConfig, dimOf } from "./config.ts";

export type WeightGetter = (key: string) => Float32Array;
export type Grid = [number, number, number]; // patch grid F', H', W'

/** Time path: t [1] -> temb [1, D] (time_embedder output, pre-SiLU), tproj [1, 6, D]. */
export function buildTimeGraph(c: WanConfig, w: WeightGetter): Graph {
  const g = new Graph("time");
  const D = dimOf(c);
  const half = c.freq_dim / 2;
  // diffusers get_timestep_embedding: omega_i = exp(-ln(10000) i / half), float32; [cos, sin]
  const omega = Array.from({ length: half }, (_, i) => Math.fround(Math.exp(Math.fround((-Math.log(10000) * i) / half))));
  const t = g.input("t", [1]);
  const a = g.reshape(g.mul(g.reshape(t, [1, 1]), g.f32(omega)), [1, half]);
  const feat = g.concat([g.op1("Cos", [a]), g.op1("Sin", [a])], 1);
  const p = "condition_embedder.";
  const h = silu(g, linear(g, feat, `${p}time_embedder.linear_1`, w(`${p}time_embedder.linear_1.weight`), w(`${p}time_embedder.linear_1.bias`), D, c.freq_dim));
  const temb = linear(g, h, `${p}time_embedder.linear_2`, w(`${p}time_embedder.linear_2.weight`), w(`${p}time_embedder.linear_2.bias`), D, D);
  const tproj = linear(g, silu(g, temb), `${p}time_proj`, w(`${p}time_proj.weight`), w(`${p}time_proj.bias`), 6 * D, D);
  g.output(temb, "temb", [1, D]);
  g.output(g.reshape(tproj, [1, 6, D]), "tproj", [1, 6, D]);
  // the head's modulation (scale_shift_table + temb, temb without SiLU) depends on the timestep
  // only: computed here once per step, not in every branch's head call
  const ss = g.add(g.weight("scale_shift_table", w("scale_shift_table"), [1, 2, D]), g.reshape(temb, [1, 1, D]));
  g.output(g.reshape(g.add(g.slice(ss, 1, 1, 2), g.f32(1)), [D]), "head_scale", [D]);
  g.output(g.reshape(g.slice(ss, 1, 0, 1), [D]), "head_shift", [D]);
  return g;
}

/** Patch embedding: x [1, C, F, H, W] -> tokens [1, L, D] (Conv3d with kernel = stride = patch). */
export function buildPatchGraph(c: WanConfig, w: WeightGetter, grid: Grid): Graph {
  const g = new Graph("patch");
  const D = dimOf(c);
  const [pt, ph, pw] = c.patch_size;
  const [Fp, Hp, Wp] = grid;
  const C = c.in_channels;
  const K = C * pt * ph * pw;
  const x = g.input("x", [1, C, Fp * pt, Hp * ph, Wp * pw]);
  // [1, C, F', pt, H', ph, W', pw] -> [1, F', H', W', C, pt, ph, pw]: channel-major patch vectors
  const patches = g.reshape(g.transpose(g.reshape(x, [1, C, Fp, pt, Hp, ph, Wp, pw]), [0, 2, 4, 6, 1, 3, 5, 7]), [1, Fp * Hp * Wp, K]);
  const tok = linear(g, patches, "patch_embedding", w("patch_embedding.weight"), w("patch_embedding.bias"), D, K);
  g.output(tok, "tokens", [1, Fp * Hp * Wp, D]);
  return g;
}

/** Text projection: text [1, S, text_dim] -> ctx [1, S, D] (Linear, GELU-tanh, Linear). */
export function buildTextGraph(c: WanConfig, w: WeightGetter): Graph {
  const g = new Graph("text");
  const D = dimOf(c);
  const p = "condition_embedder.text_embedder.";
  const text = g.input("text", [1, "S", c.text_dim]);
  const h = geluTanh(g, linear(g, text, `${p}linear_1`, w(`${p}linear_1.weight`), w(`${p}linear_1.bias`), D, c.text_dim));
  g.output(linear(g, h, `${p}linear_2`, w(`${p}linear_2.weight`), w(`${p}linear_2.bias`), D, D), "ctx", [1, "S", D]);
  return g;
}

/** Cross-attention K/V of block i, computed once per prompt: ctx -> k, v [1, H, S, d]. */
export function buildCrossKvGraph(c: WanConfig, w: WeightGetter, i: number, o: WanGraphOptions = {}): Graph {
  const g = blockGraph(`kv${i}`, o);
  const D = dimOf(c);
  const H = c.num_attention_heads;
  const d = c.attention_head_dim;
  const p = `blocks.${i}.attn2.`;
  const ctx = g.input("ctx", [1, "S", D]);
  const k = rmsNorm(g, linear(g, ctx, `${p}to_k`, w(`${p}to_k.weight`), w(`${p}to_k.bias`), D, D), `${p}norm_k`, w(`${p}norm_k.weight`), c.eps);
  const v = linear(g, ctx, `${p}to_v`, w(`${p}to_v.weight`), w(`${p}to_v.bias`), D, D);
  g.output(splitHeads(g, k, H, d), "k", [1, H, "S", d]);
  g.output(splitHeads(g, v, H, d), "v", [1, H, "S", d]);
  return g;
}

/**
 * How the module graphs are built. `fused` (the default) uses onnxruntime's fused operators where
 * the CPU provider has them: LayerNormalization with the modulation as its scale and bias,
 * SimplifiedLayerNormalization (RMSNorm), RotaryEmbedding, MultiHeadAttention, FastGelu. The plain
 * graphs (standard ONNX only) stay as the reference they are checked against (test/fused_ops.test.ts).
 */
export interface WanGraphOptions {
  fused?: boolean;
  /** Precision of the blocks' linear layers (Graph.linearDtype; default float32). The time, text,
   * patch and head stages stay float32: they are a small share of the compute. */
  dtype?: "float32" | "float16";
}

/** A block-stage graph with the options' linear precision. */
function blockGraph(name: string, o: WanGraphOptions): Graph {
  const g = new Graph(name);
  g.linearDtype = o.dtype ?? "float32";
  return g;
}

type V = ReturnType<Graph["input"]>;

/** Modulated non-affine LayerNorm: LN(x) (1 + scale) + shift with chunks of (table + tproj). */
function modulated(g: Graph, c: WanConfig, x: V, mod: V, name: string, shiftIdx: number, fused: boolean) {
  const D = dimOf(c);
  const shift = g.slice(mod, 1, shiftIdx, shiftIdx + 1);
  const scale = g.slice(mod, 1, shiftIdx + 1, shiftIdx + 2);
  const gate = g.slice(mod, 1, shiftIdx + 2, shiftIdx + 3);
  if (fused) return { h: layerNormScaled(g, x, g.reshape(g.add(scale, g.f32(1)), [D]), g.reshape(shift, [D]), c.eps), gate };
  const n = layerNorm(g, x, name, D, c.eps, null, null);
  return { h: g.add(g.mul(n, g.add(scale, g.f32(1))), shift), gate };
}

/** (table + tproj) [1, 6, D]: the modulation chunks of block i. */
function modulation(g: Graph, c: WanConfig, w: WeightGetter, i: number, tproj: V): V {
  const p = `blocks.${i}.`;
  return g.add(g.weight(`${p}scale_shift_table`, w(`${p}scale_shift_table`), [1, 6, dimOf(c)]), tproj);
}

/** Self-attention of block i on x [1, L, D] -> gated residual [1, L, D]. */
function selfAttn(g: Graph, c: WanConfig, w: WeightGetter, i: number, x: V, tproj: V, cos: V, sin: V, fused: boolean): V {
  const D = dimOf(c);
  const H = c.num_attention_heads;
  const d = c.attention_head_dim;
  const p = `blocks.${i}.`;
  const { h, gate } = modulated(g, c, x, modulation(g, c, w, i, tproj), `${p}norm1`, 0, fused);
  const a = `${p}attn1.`;
  const norm = fused ? rmsNormFused : rmsNorm;
  const q = norm(g, linear(g, h, `${a}to_q`, w(`${a}to_q.weight`), w(`${a}to_q.bias`), D, D), `${a}norm_q`, w(`${a}norm_q.weight`), c.eps);
  const k = norm(g, linear(g, h, `${a}to_k`, w(`${a}to_k.weight`), w(`${a}to_k.bias`), D, D), `${a}norm_k`, w(`${a}norm_k.weight`), c.eps);
  const v = linear(g, h, `${a}to_v`, w(`${a}to_v.weight`), w(`${a}to_v.bias`), D, D);
  let o: V;
  if (fused) {
    o = multiHeadAttention(g, ropeFused(g, q, cos, sin, H), ropeFused(g, k, cos, sin, H), v, H);
  } else {
    const qr = g.transpose(rope(g, g.reshape(q, [1, -1, H, d]), cos, sin, H, d), [0, 2, 1, 3]);
    const kr = g.transpose(rope(g, g.reshape(k, [1, -1, H, d]), cos, sin, H, d), [0, 2, 1, 3]);
    o = mergeHeads(g, attention(g, qr, kr, splitHeads(g, v, H, d), d), D);
  }
  const out = linear(g, o, `${a}to_out.0`, w(`${a}to_out.0.weight`), w(`${a}to_out.0.bias`), D, D);
  return g.mul(out, gate);
}

/** Cross-attention of block i: x, k, v [1, H, S, d] (precomputed per prompt) -> residual (no gate). */
function crossAttn(g: Graph, c: WanConfig, w: WeightGetter, i: number, x: V, k: V, v: V, fused: boolean): V {
  const D = dimOf(c);
  const H = c.num_attention_heads;
  const d = c.attention_head_dim;
  const p = `blocks.${i}.`;
  const n = layerNorm(g, x, `${p}norm2`, D, c.eps, w(`${p}norm2.weight`), w(`${p}norm2.bias`));
  const a = `${p}attn2.`;
  const q = (fused ? rmsNormFused : rmsNorm)(g, linear(g, n, `${a}to_q`, w(`${a}to_q.weight`), w(`${a}to_q.bias`), D, D), `${a}norm_q`, w(`${a}norm_q.weight`), c.eps);
  const o = fused ? multiHeadAttention(g, q, k, v, H) : mergeHeads(g, attention(g, splitHeads(g, q, H, d), k, v, d), D);
  return linear(g, o, `${a}to_out.0`, w(`${a}to_out.0.weight`), w(`${a}to_out.0.bias`), D, D);
}

/** FFN of block i: x, tproj -> gated residual (GELU-tanh MLP on the modulated norm). */
function ffn(g: Graph, c: WanConfig, w: WeightGetter, i: number, x: V, tproj: V, fused: boolean): V {
  const D = dimOf(c);
  const p = `blocks.${i}.`;
  const { h, gate } = modulated(g, c, x, modulation(g, c, w, i, tproj), `${p}norm3`, 3, fused);
  const l1 = `${p}ffn.net.0.proj`;
  const f = fused
    ? fastGeluBias(g, linear(g, h, l1, w(`${l1}.weight`), null, c.ffn_dim, D), g.weight(`${l1}.bias`, w(`${l1}.bias`), [c.ffn_dim]))
    : geluTanh(g, linear(g, h, l1, w(`${l1}.weight`), w(`${l1}.bias`), c.ffn_dim, D));
  const out = linear(g, f, `${p}ffn.net.2`, w(`${p}ffn.net.2.weight`), w(`${p}ffn.net.2.bias`), D, c.ffn_dim);
  return g.mul(out, gate);
}

/** Self-attention module of block i: x [1, L, D], tproj [1, 6, D], cos/sin [L, d/2] -> gated residual. */
export function buildSelfAttnGraph(c: WanConfig, w: WeightGetter, i: number, o: WanGraphOptions = {}): Graph {
  const g = blockGraph(`sa${i}`, o);
  const D = dimOf(c);
  const P = c.attention_head_dim / 2;
  const x = g.input("x", [1, "L", D]);
  const tproj = g.input("tproj", [1, 6, D]);
  const cos = g.input("cos", ["L", P]);
  const sin = g.input("sin", ["L", P]);
  g.output(selfAttn(g, c, w, i, x, tproj, cos, sin, o.fused ?? true), "r", [1, "L", D]);
  return g;
}

/** Cross-attention module of block i: x, k, v (precomputed per prompt) -> residual (no gate). */
export function buildCrossAttnGraph(c: WanConfig, w: WeightGetter, i: number, o: WanGraphOptions = {}): Graph {
  const g = blockGraph(`ca${i}`, o);
  const D = dimOf(c);
  const H = c.num_attention_heads;
  const d = c.attention_head_dim;
  const x = g.input("x", [1, "L", D]);
  const k = g.input("k", [1, H, "S", d]);
  const v = g.input("v", [1, H, "S", d]);
  g.output(crossAttn(g, c, w, i, x, k, v, o.fused ?? true), "r", [1, "L", D]);
  return g;
}

/** FFN module of block i: x, tproj -> gated residual (GELU-tanh MLP on the modulated norm). */
export function buildFfnGraph(c: WanConfig, w: WeightGetter, i: number, o: WanGraphOptions = {}): Graph {
  const g = blockGraph(`ffn${i}`, o);
  const D = dimOf(c);
  const x = g.input("x", [1, "L", D]);
  const tproj = g.input("tproj", [1, 6, D]);
  g.output(ffn(g, c, w, i, x, tproj, o.fused ?? true), "r", [1, "L", D]);
  return g;
}

/**
 * Blocks [from, to) as one graph: x [1, L, D], tproj, cos, sin and every block's cross-attention
 * k{i}, v{i} -> h [1, L, D], with the residual adds (x <- x + sa; x <- x + ca; x <- x + ffn) inside.
 * The same module subgraphs as the per-module graphs, so both paths compute the same operations
 * (test/fused_block.test.ts checks they agree bit for bit). For a single block, `given[m]` makes
 * module m's residual an input g{m} instead of computing it (its weights are not read): a cache
 * that reuses some modules of the block still runs it in one call.
 */
export function buildBlocksGraph(c: WanConfig, w: WeightGetter, from: number, to: number, o: WanGraphOptions = {}, given: readonly boolean[] = []): Graph {
  const single = to - from === 1;
  const anyGiven = given.some(Boolean);
  if (anyGiven && !single) throw new Error("buildBlocksGraph: given residuals are for a single block");
  const g = blockGraph(single ? `block${from}${anyGiven ? `_given${[0, 1, 2].map((m) => (given[m] ? 1 : 0)).join("")}` : ""}` : `blocks${from}_${to}`, o);
  const D = dimOf(c);
  const H = c.num_attention_heads;
  const d = c.attention_head_dim;
  const fused = o.fused ?? true;
  // inputs are declared when a computed module reads them (a block whose self attention is given
  // reads no RoPE tables; one whose cross attention is given reads no K/V)
  const once = <T>(make: () => T) => {
    let v: T | undefined;
    return () => (v ??= make());
  };
  let x = g.input("x", [1, "L", D]);
  const tproj = once(() => g.input("tproj", [1, 6, D]));
  const cos = once(() => g.input("cos", ["L", d / 2]));
  const sin = once(() => g.input("sin", ["L", d / 2]));
  for (let i = from; i < to; i++) {
    const k = once(() => g.input(`k${i}`, [1, H, "S", d]));
    const v = once(() => g.input(`v${i}`, [1, H, "S", d]));
    const modules = [
      (h: V) => selfAttn(g, c, w, i, h, tproj(), cos(), sin(), fused),
      (h: V) => crossAttn(g, c, w, i, h, k(), v(), fused),
      (h: V) => ffn(g, c, w, i, h, tproj(), fused),
    ];
    const rs: V[] = [];
    modules.forEach((run, m) => {
      // a given module's residual is an input (the value a cache reuses): the same Add as the
      // module path's residual add, so the result is bit-identical to it
      rs.push(given[m] ? g.input(`g${m}`, [1, "L", D]) : run(x));
      x = g.add(x, rs[m]);
    });
    // a single block also exposes its computed modules' residuals (r0 sa, r1 ca, r2 ffn): a cache
    // that keeps some of them this step takes them from the same call (fetched only then)
    if (single) {
      rs.forEach((r, m) => {
        if (!given[m]) g.output(r, `r${m}`, [1, "L", D]);
      });
    }
  }
  g.output(x, "h", [1, "L", D]);
  return g;
}

/** Head: x [1, L, D], head_scale and head_shift [D] (the time graph's 1 + scale and shift) ->
 * velocity [1, C, F, H, W] (modulated norm, proj_out, unpatchify). */
export function buildHeadGraph(c: WanConfig, w: WeightGetter, grid: Grid): Graph {
  const g = new Graph("head");
  const D = dimOf(c);
  const [pt, ph, pw] = c.patch_size;
  const [Fp, Hp, Wp] = grid;
  const C = c.out_channels;
  const x = g.input("x", [1, Fp * Hp * Wp, D]);
  const scale1 = g.input("head_scale", [D]);
  const shift = g.input("head_shift", [D]);
  const n = layerNorm(g, x, "norm_out", D, c.eps, null, null);
  // proj_out's rows reordered from diffusers' channel-last features (pt, ph, pw, C) to
  // channel-first (C, pt, ph, pw): the same dot products, and the unpatchify transpose below then
  // keeps pw innermost, copying runs of pw values (measured about 1.8x faster than the scattered
  // channel-last transpose on the reference model's head)
  const K = C * pt * ph * pw;
  const wOut = w("proj_out.weight"), bOut = w("proj_out.bias");
  const wPerm = new Float32Array(wOut.length), bPerm = new Float32Array(K);
  for (let ch = 0; ch < C; ch++)
    for (let q = 0; q < pt * ph * pw; q++) {
      const from = q * C + ch, to = ch * pt * ph * pw + q;
      wPerm.set(wOut.subarray(from * D, (from + 1) * D), to * D);
      bPerm[to] = bOut[from];
    }
  const y = linear(g, g.add(g.mul(n, scale1), shift), "proj_out", wPerm, bPerm, K, D);
  // [1, F', H', W', C, pt, ph, pw] -> [1, C, F', pt, H', ph, W', pw]
  const v = g.reshape(g.transpose(g.reshape(y, [1, Fp, Hp, Wp, C, pt, ph, pw]), [0, 4, 1, 5, 2, 6, 3, 7]), [1, C, Fp * pt, Hp * ph, Wp * pw]);
  g.output(v, "v", [1, C, Fp * pt, Hp * ph, Wp * pw]);
  return g;
}

/** 3D RoPE tables cos/sin [L, d/2], angles in float64 (diffusers WanRotaryPosEmbed). */
export function ropeTables(c: WanConfig, grid: Grid): { cos: Float32Array; sin: Float32Array } {
  const d = c.attention_head_dim;
  const dhw = 2 * Math.floor(d / 6);
  const dt = d - 2 * dhw;
  const [Fp, Hp, Wp] = grid;
  for (const n of grid)
    if (n > c.rope_max_seq_len) throw new Error(`patch grid ${grid} exceeds rope_max_seq_len ${c.rope_max_seq_len}`);
  const P = d / 2;
  const L = Fp * Hp * Wp;
  const cos = new Float32Array(L * P);
  const sin = new Float32Array(L * P);
  const freqs = (da: number) => Array.from({ length: da / 2 }, (_, k) => Math.pow(10000, (-2 * k) / da));
  const ft = freqs(dt);
  const fh = freqs(dhw);
  const fw = freqs(dhw);
  for (let f = 0; f < Fp; f++)
    for (let h = 0; h < Hp; h++)
      for (let x = 0; x < Wp; x++) {
        const base = ((f * Hp + h) * Wp + x) * P;
        let j = 0;
        for (const om of ft) { cos[base + j] = Math.cos(f * om); sin[base + j] = Math.sin(f * om); j++; }
        for (const om of fh) { cos[base + j] = Math.cos(h * om); sin[base + j] = Math.sin(h * om); j++; }
        for (const om of fw) { cos[base + j] = Math.cos(x * om); sin[base + j] = Math.sin(x * om); j++; }
      }
  return { cos, sin };
}
