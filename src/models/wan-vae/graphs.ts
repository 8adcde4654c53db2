/**
 * Wan2.1 VAE decoder units as ONNX graphs (diffusers autoencoder_kl_wan.py semantics, decoder
 * side). Tensors are [1, C, T, H, W] (NCDHW) throughout, so every convolution is an ONNX Conv:
 * 3x3x3 causal convs as 3D Conv, the 3x3 Conv2d of the upsamplers as a [1, 3, 3] 3D Conv (per
 * frame), 1x1 convs as [1, 1, 1] Conv.
 *
 * Causal temporal cache: every 3x3x3 (and the 3x1x1 time_conv) convolution reads a cache input
 * `cache:<key>` [1, C, 2, H, W] holding the last two frames its input stream had before this
 * chunk (zeros before the first chunk: the causal zero padding), convolves concat(cache, x) along
 * time without temporal padding, and writes the last two frames of that concatenation to
 * `cache_out:<key>`. That is exactly diffusers' feat_cache bookkeeping (CACHE_T = 2; a 1-frame
 * chunk keeps the previous chunk's last frame in front), with fixed-size tensors instead of lists.
 *
 * T, H and W are symbolic, so one set of sessions serves every frame size and tile size; only
 * an upsample3d unit has a second, first-chunk variant (diffusers skips time_conv on the first
 * chunk and keeps its cache at zero: the "Rep" marker).
 */
import { Graph, Value } from "../../graph/builder.ts";
import { silu } from "../../graph/layers.ts";
import { CacheSpec, DecoderUnit, WanVaeConfig, unitCaches, unitOutChannels } from "./config.ts";

export type WeightGetter = (key: string) => Float32Array;

/** Past the end of any axis (Slice clamps it). */
const END = Number.MAX_SAFE_INTEGER;

/** Cache inputs/outputs of one stage graph. */
export interface CacheIo {
  spec: CacheSpec;
  input: string;
  output: string;
}

const cacheInputName = (key: string): string => `cache:${key}`;
const cacheOutputName = (key: string): string => `cache_out:${key}`;

/** Shape dims for a tensor at spatial level l (symbolic H, W per level). */
const hw = (level: number): [string, string] => [`H${level}`, `W${level}`];

/** Build context: weights, first-chunk flag, and the cache I/O registered while building. */
class Ctx {
  readonly caches: CacheIo[] = [];
  constructor(
    readonly g: Graph,
    readonly w: WeightGetter,
    readonly first: boolean,
  ) {}

  /** ONNX Conv with the PyTorch weight layout [O, I, k...] reshaped to 3D kernel [O, I, kt, kh, kw]. */
  conv(x: Value, key: string, o: number, i: number, k: [number, number, number], pads: number[]): Value {
    const W = this.g.weight(`${key}.weight`, this.w(`${key}.weight`), [o, i, ...k]);
    const B = this.g.weight(`${key}.bias`, this.w(`${key}.bias`), [o]);
    return this.g.op1("Conv", [x, W, B], { kernel_shape: k, pads, strides: [1, 1, 1], dilations: [1, 1, 1], group: 1 });
  }

  /**
   * Causal conv with the temporal cache: concat(cache, x) along time, conv valid in time
   * (kernel kt = 3) and "same" in space, cache_out = last 2 frames of the concatenation.
   */
  causal(x: Value, key: string, cin: number, cout: number, level: number, spatial: 3 | 1): Value {
    const spec: CacheSpec = { key, channels: cin, level };
    const io: CacheIo = { spec, input: cacheInputName(key), output: cacheOutputName(key) };
    const [H, W] = hw(level);
    const cache = this.g.input(io.input, [1, cin, 2, H, W]);
    const xc = this.g.concat([cache, x], 2);
    this.g.output(this.g.slice(xc, 2, -2, END), io.output, [1, cin, 2, H, W]);
    this.caches.push(io);
    const p = spatial === 3 ? 1 : 0;
    return this.conv(xc, key, cout, cin, [3, spatial, spatial], [0, p, p, 0, p, p]);
  }

  /** WanRMS_norm (bias-free): x / max(||x||_2 over channels, 1e-12) * sqrt(C) * gamma. */
  rmsNorm(x: Value, key: string, c: number): Value {
    const gamma = this.w(key);
    const s = Math.sqrt(c);
    const scaled = new Float32Array(c);
    for (let i = 0; i < c; i++) scaled[i] = gamma[i] * s;
    const norm = this.g.op1("Max", [this.g.sqrt(this.g.op1("ReduceSumSquare", [x], { axes: [1], keepdims: 1 })), this.g.f32(1e-12)]);
    return this.g.mul(this.g.div(x, norm), this.g.weight(`${key}*sqrtC`, scaled, [c, 1, 1, 1]));
  }
}

/** post_quant_conv (1x1x1) and the causal conv_in (de-normalisation is done by the caller). */
function unitIn(ctx: Ctx, c: WanVaeConfig, u: Extract<DecoderUnit, { kind: "in" }>, x: Value): Value {
  const pq = ctx.conv(x, "post_quant_conv", c.z_dim, c.z_dim, [1, 1, 1], [0, 0, 0, 0, 0, 0]);
  return ctx.causal(pq, u.name, u.cin, u.cout, u.level, 3);
}

/** WanResidualBlock: shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))) (dropout = identity). */
function unitResnet(ctx: Ctx, u: Extract<DecoderUnit, { kind: "resnet" }>, x: Value): Value {
  const g = ctx.g;
  const p = u.name;
  const h = u.cin !== u.cout ? ctx.conv(x, `${p}.conv_shortcut`, u.cout, u.cin, [1, 1, 1], [0, 0, 0, 0, 0, 0]) : x;
  let y = silu(g, ctx.rmsNorm(x, `${p}.norm1.gamma`, u.cin));
  y = ctx.causal(y, `${p}.conv1`, u.cin, u.cout, u.level, 3);
  y = silu(g, ctx.rmsNorm(y, `${p}.norm2.gamma`, u.cout));
  y = ctx.causal(y, `${p}.conv2`, u.cout, u.cout, u.level, 3);
  return g.add(y, h);
}

/** WanAttentionBlock: per-frame single-head attention over H x W, 1x1 to_qkv and proj, residual. */
function unitAttn(ctx: Ctx, u: Extract<DecoderUnit, { kind: "attn" }>, x: Value): Value {
  const g = ctx.g;
  const C = u.dim;
  const p = u.name;
  const n = ctx.rmsNorm(x, `${p}.norm.gamma`, C);
  const qkv = g.reshape(ctx.conv(n, `${p}.to_qkv`, 3 * C, C, [1, 1, 1], [0, 0, 0, 0, 0, 0]), [0, 0, 0, -1]); // [1, 3C, T, HW]
  const q = g.transpose(g.slice(qkv, 1, 0, C), [0, 2, 3, 1]); // [1, T, HW, C]
  const k = g.transpose(g.slice(qkv, 1, C, 2 * C), [0, 2, 1, 3]); // [1, T, C, HW]
  const v = g.transpose(g.slice(qkv, 1, 2 * C, 3 * C), [0, 2, 3, 1]); // [1, T, HW, C]
  const scores = g.matmul(g.mul(q, g.f32(1 / Math.sqrt(C))), k);
  const o = g.transpose(g.matmul(g.softmax(scores, -1), v), [0, 3, 1, 2]); // [1, C, T, HW]
  const o5 = g.op1("Reshape", [o, g.op1("Shape", [x])]);
  return g.add(ctx.conv(o5, `${p}.proj`, C, C, [1, 1, 1], [0, 0, 0, 0, 0, 0]), x);
}

/**
 * WanResample upsample2d / upsample3d. upsample3d (not on the first chunk): causal time_conv
 * C -> 2C, then frames interleaved (frame 2t = channels [0, C), frame 2t+1 = channels [C, 2C)).
 * Then nearest 2x in H and W and the 3x3 conv C -> C/2, per frame.
 */
function unitUp(ctx: Ctx, u: Extract<DecoderUnit, { kind: "up" }>, x: Value): Value {
  const g = ctx.g;
  const C = u.dim;
  const p = u.name;
  if (u.temporal && !ctx.first) {
    const tc = ctx.causal(x, `${p}.time_conv`, C, 2 * C, u.level, 1); // [1, 2C, T, H, W]
    const axis3 = g.i64([3]);
    const a = g.op1("Unsqueeze", [g.slice(tc, 1, 0, C), axis3]);
    const b = g.op1("Unsqueeze", [g.slice(tc, 1, C, 2 * C), axis3]);
    const target = g.concat([g.i64([1, C, -1]), g.op1("Shape", [x], { start: 3 })], 0);
    x = g.op1("Reshape", [g.concat([a, b], 3), target]); // [1, C, 2T, H, W]
  }
  // nearest-exact at scale 2 picks source floor((dst + 0.5) / 2) = floor(dst / 2): asymmetric + floor
  const up = g.op1("Resize", [x, null, g.f32([1, 1, 1, 2, 2])], { mode: "nearest", coordinate_transformation_mode: "asymmetric", nearest_mode: "floor" });
  return ctx.conv(up, `${p}.resample.1`, u.cout, C, [1, 3, 3], [0, 1, 1, 0, 1, 1]);
}

/** Head: norm_out, SiLU, causal conv_out (no clamp here: the caller clamps, after any tile blending). */
function unitHead(ctx: Ctx, u: Extract<DecoderUnit, { kind: "head" }>, x: Value): Value {
  const y = silu(ctx.g, ctx.rmsNorm(x, "decoder.norm_out.gamma", u.cin));
  return ctx.causal(y, u.name, u.cin, u.cout, u.level, 3);
}

export interface StageGraph {
  graph: Graph;
  units: DecoderUnit[];
  caches: CacheIo[];
}

export interface StageBuildOptions {
  /** Build the first-chunk variant (upsample3d without time_conv). */
  first: boolean;
}

/**
 * One stage graph running `units` in order: input `x` [1, C, T, H, W] at the first unit's level,
 * output `y`, plus a cache input/output pair per causal conv of the stage.
 */
export function buildStageGraph(c: WanVaeConfig, w: WeightGetter, units: DecoderUnit[], opts: StageBuildOptions): StageGraph {
  if (units.length === 0) throw new Error("empty stage");
  const name = units.length === 1 ? units[0].name : `${units[0].name}..${units[units.length - 1].name}`;
  const g = new Graph(`${name}${opts.first ? "#first" : ""}`);
  const ctx = new Ctx(g, w, opts.first);
  const u0 = units[0];
  const cin = u0.kind === "attn" || u0.kind === "up" ? u0.dim : u0.cin;
  const [H0, W0] = hw(u0.level);
  let x = g.input("x", [1, cin, "T", H0, W0]);
  let level = u0.level;
  for (const u of units) {
    switch (u.kind) {
      case "in":
        x = unitIn(ctx, c, u, x);
        break;
      case "resnet":
        x = unitResnet(ctx, u, x);
        break;
      case "attn":
        x = unitAttn(ctx, u, x);
        break;
      case "up":
        x = unitUp(ctx, u, x);
        level = u.level + 1;
        break;
      case "head":
        x = unitHead(ctx, u, x);
        break;
    }
  }
  const last = units[units.length - 1];
  const [H, W] = hw(level);
  g.output(x, "y", [1, unitOutChannels(last), "Tout", H, W]);
  // sanity: the registered caches are exactly the layout's caches for these units
  const want = units.flatMap((u) => unitCaches(u, opts.first)).map((s) => s.key);
  const got = ctx.caches.map((io) => io.spec.key);
  if (want.join("|") !== got.join("|")) throw new Error(`cache layout mismatch in ${name}: ${got} vs ${want}`);
  return { graph: g, units, caches: ctx.caches };
}
