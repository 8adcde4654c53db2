/**
 * HunyuanVideo VAE decoder units as ONNX graphs (diffusers autoencoder_kl_hunyuan_video.py,
 * decoder side). Tensors are [1, C, T, H, W] (NCDHW) with T, H and W symbolic, so one session per
 * unit serves every clip length and tile size.
 *
 * - HunyuanVideoCausalConv3d: Pad mode "edge" (= F.pad mode "replicate") by (k - 1) frames in front
 *   and k // 2 pixels on each side of H and W, then a Conv without padding.
 * - GroupNorm (nn.GroupNorm, eps 1e-6): InstanceNormalization over [1, groups, C / groups x T x H x W]
 *   (statistics over every frame of the input), then the per-channel affine.
 * - HunyuanVideoUpsampleCausal3D: the first frame is upsampled in space only and the others in time
 *   and space (nearest); with a time factor that is nearest 2x in time of every frame with the
 *   first output frame dropped (frames 0, 1, 1, 2, 2, ...), in one Resize and a Slice.
 * - The middle attention (diffusers Attention, AttnProcessor2_0, one head of width C, mask from
 *   prepare_causal_attention_mask: a token of frame t sees every token of frames <= t) is three
 *   graphs: group norm + q/k/v projections, an attention core run once per query frame on the keys
 *   of frames 0..t (no mask tensor, no [L, L] scores), and the output projection + residual.
 */
import { Graph, Value } from "../../graph/builder.ts";
import { linear, multiHeadAttention, silu } from "../../graph/layers.ts";
import { GROUP_NORM_EPS, HunyuanVaeConfig, HunyuanVaeUnit, unitInChannels, unitOutChannels } from "./config.ts";

export type WeightGetter = (key: string) => Float32Array;

/** Past the end of any axis (Slice clamps it). */
const END = Number.MAX_SAFE_INTEGER;

/** Shape dims for a tensor at spatial level l (symbolic H, W per level). */
const hw = (level: number): [string, string] => [`H${level}`, `W${level}`];

class Ctx {
  constructor(
    readonly g: Graph,
    readonly c: HunyuanVaeConfig,
    readonly w: WeightGetter,
  ) {}

  /** nn.Conv3d without padding, PyTorch weight layout [O, I, kt, kh, kw]; weights `${key}.weight` / `.bias`. */
  conv(x: Value, key: string, o: number, i: number, k: number): Value {
    const W = this.g.weight(`${key}.weight`, this.w(`${key}.weight`), [o, i, k, k, k]);
    const B = this.g.weight(`${key}.bias`, this.w(`${key}.bias`), [o]);
    return this.g.op1("Conv", [x, W, B], { kernel_shape: [k, k, k], pads: [0, 0, 0, 0, 0, 0], strides: [1, 1, 1], dilations: [1, 1, 1], group: 1 });
  }

  /** HunyuanVideoCausalConv3d (stride 1): replicate-pad (k-1, 0) in time, k//2 each side in space; `${p}.conv.*`. */
  causal(x: Value, p: string, cin: number, cout: number, k: 1 | 3): Value {
    if (k === 1) return this.conv(x, `${p}.conv`, cout, cin, 1);
    const padded = this.g.op1("Pad", [x, this.g.i64([0, 0, 2, 1, 1, 0, 0, 0, 1, 1])], { mode: "edge" });
    return this.conv(padded, `${p}.conv`, cout, cin, 3);
  }

  /** nn.GroupNorm(norm_num_groups, C, eps 1e-6, affine) on [1, C, T, H, W]; weights `${p}.weight` / `.bias`. */
  groupNorm(x: Value, p: string, C: number): Value {
    const g = this.g;
    const G = this.c.norm_num_groups;
    const grouped = g.reshape(x, [1, G, -1]);
    const normed = g.op1("InstanceNormalization", [grouped, g.weight(`gn.ones.${G}`, new Float32Array(G).fill(1), [G]), g.weight(`gn.zeros.${G}`, new Float32Array(G), [G])], {
      epsilon: { float: GROUP_NORM_EPS },
    });
    const back = g.op1("Reshape", [normed, g.op1("Shape", [x])]);
    const gamma = g.weight(`${p}.weight`, this.w(`${p}.weight`), [C, 1, 1, 1]);
    const beta = g.weight(`${p}.bias`, this.w(`${p}.bias`), [C, 1, 1, 1]);
    return g.add(g.mul(back, gamma), beta);
  }
}

/** post_quant_conv (1x1x1) then the causal conv_in (the 1 / scaling_factor is applied by the caller). */
function unitIn(ctx: Ctx, u: Extract<HunyuanVaeUnit, { kind: "in" }>, x: Value): Value {
  const pq = ctx.conv(x, "post_quant_conv", u.cin, u.cin, 1);
  return ctx.causal(pq, u.name, u.cin, u.cout, 3);
}

/** HunyuanVideoResnetBlockCausal3D: shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))) (dropout = identity). */
function unitResnet(ctx: Ctx, u: Extract<HunyuanVaeUnit, { kind: "resnet" }>, x: Value): Value {
  const g = ctx.g;
  const p = u.name;
  let y = silu(g, ctx.groupNorm(x, `${p}.norm1`, u.cin));
  y = ctx.causal(y, `${p}.conv1`, u.cin, u.cout, 3);
  y = silu(g, ctx.groupNorm(y, `${p}.norm2`, u.cout));
  y = ctx.causal(y, `${p}.conv2`, u.cout, u.cout, 3);
  const h = u.cin !== u.cout ? ctx.causal(x, `${p}.conv_shortcut`, u.cin, u.cout, 1) : x;
  return g.add(y, h);
}

/** HunyuanVideoUpsampleCausal3D: nearest upsampling (first frame in space only), then the causal conv. */
function unitUp(ctx: Ctx, u: Extract<HunyuanVaeUnit, { kind: "up" }>, x: Value): Value {
  const g = ctx.g;
  const tf = u.time ? 2 : 1;
  const sf = u.space ? 2 : 1;
  // F.interpolate(mode="nearest") at an integer scale reads source floor(dst / scale): asymmetric + floor
  let up = g.op1("Resize", [x, null, g.f32([1, 1, tf, sf, sf])], { mode: "nearest", coordinate_transformation_mode: "asymmetric", nearest_mode: "floor" });
  // frames 0,0,1,1,...: dropping the first gives 0,1,1,2,2,...: frame 0 once (space only), the rest twice
  if (u.time) up = g.slice(up, 2, 1, END);
  return ctx.causal(up, `${u.name}.conv`, u.dim, u.dim, 3);
}

/** Head: conv_norm_out (GroupNorm), SiLU, causal conv_out (no clamp: the caller clamps after any blending). */
function unitHead(ctx: Ctx, u: Extract<HunyuanVaeUnit, { kind: "head" }>, x: Value): Value {
  const y = silu(ctx.g, ctx.groupNorm(x, "decoder.conv_norm_out", u.cin));
  return ctx.causal(y, u.name, u.cin, u.cout, 3);
}

/** One unit (not the attention) as a graph: input `x` [1, Cin, T, H, W] at the unit's level, output `y`. */
export function buildUnitGraph(c: HunyuanVaeConfig, w: WeightGetter, u: HunyuanVaeUnit): Graph {
  if (u.kind === "attn") throw new Error("internal: the attention unit is built by buildAttentionGraphs");
  const g = new Graph(u.name);
  const ctx = new Ctx(g, c, w);
  const [H, W] = hw(u.level);
  const x = g.input("x", [1, unitInChannels(u), "T", H, W]);
  let y: Value;
  let level = u.level;
  switch (u.kind) {
    case "in":
      y = unitIn(ctx, u, x);
      break;
    case "resnet":
      y = unitResnet(ctx, u, x);
      break;
    case "up":
      y = unitUp(ctx, u, x);
      if (u.space) level++;
      break;
    case "head":
      y = unitHead(ctx, u, x);
      break;
  }
  const [Ho, Wo] = hw(level);
  g.output(y, "y", [1, unitOutChannels(u), "Tout", Ho, Wo]);
  return g;
}

export interface AttentionGraphs {
  /** x [1, C, T, H, W] -> q, k, v [1, L, C] with tokens in (t, h, w) order, after the group norm. */
  qkv: Graph;
  /** q [1, Sq, C], k and v [1, Skv, C] -> o [1, Sq, C]: softmax(q k^T / sqrt(C)) v, one head. */
  core: Graph;
  /** o [1, L, C] and x [1, C, T, H, W] -> y = to_out(o) back to [1, C, T, H, W] + x. */
  out: Graph;
}

/** The middle block's Attention (AttnProcessor2_0 with residual_connection) as three graphs. */
export function buildAttentionGraphs(c: HunyuanVaeConfig, w: WeightGetter, u: Extract<HunyuanVaeUnit, { kind: "attn" }>): AttentionGraphs {
  const C = u.dim;
  const p = u.name;
  const [H, W] = hw(u.level);

  const qkv = new Graph(`${p}#qkv`);
  {
    const g = qkv;
    const ctx = new Ctx(g, c, w);
    const x = g.input("x", [1, C, "T", H, W]);
    const tokens = g.transpose(g.reshape(ctx.groupNorm(x, `${p}.group_norm`, C), [1, C, -1]), [0, 2, 1]); // [1, L, C]
    for (const k of ["q", "k", "v"]) g.output(linear(g, tokens, `${p}.to_${k}`, w(`${p}.to_${k}.weight`), w(`${p}.to_${k}.bias`), C, C), k, [1, "L", C]);
  }

  const core = new Graph(`${p}#core`);
  {
    const g = core;
    const q = g.input("q", [1, "Sq", C]);
    const k = g.input("k", [1, "Skv", C]);
    const v = g.input("v", [1, "Skv", C]);
    g.output(multiHeadAttention(g, q, k, v, 1), "o", [1, "Sq", C]);
  }

  const out = new Graph(`${p}#out`);
  {
    const g = out;
    const o = g.input("o", [1, "L", C]);
    const x = g.input("x", [1, C, "T", H, W]);
    const proj = linear(g, o, `${p}.to_out.0`, w(`${p}.to_out.0.weight`), w(`${p}.to_out.0.bias`), C, C);
    const back = g.op1("Reshape", [g.transpose(proj, [0, 2, 1]), g.op1("Shape", [x])]);
    g.output(g.add(back, x), "y", [1, C, "T", H, W]);
  }
  return { qkv, core, out };
}
