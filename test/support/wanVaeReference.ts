/**
 * A plainly written float64 reference of the Wan2.1 VAE decoder (diffusers
 * autoencoder_kl_wan.py, AutoencoderKLWan._decode / tiled_decode, is_residual = false). It keeps
 * diffusers' own feat_cache bookkeeping (a list of null | "Rep" | tensor of 1 or 2 frames, walked
 * with feat_idx), so it checks the ONNX side's fixed-size cache scheme independently.
 *
 * Tensors are batch-1 [C, T, H, W] Float64Arrays.
 */
import type { WanVaeConfig } from "../../src/models/wan-vae/config.ts";
import { type T4, zeros, catT, silu, add, clamp, crop, stitchTiles } from "./t4.ts";

export type { T4 };

const CACHE_T = 2;

/** Frames [a, b) along time. */
function frames(x: T4, a: number, b: number): T4 {
  a = Math.max(0, a < 0 ? x.t + a : a);
  b = Math.min(x.t, b);
  const y = zeros(x.c, b - a, x.h, x.w);
  const plane = x.h * x.w;
  for (let c = 0; c < x.c; c++)
    for (let t = a; t < b; t++) y.d.set(x.d.subarray((c * x.t + t) * plane, (c * x.t + t + 1) * plane), (c * y.t + t - a) * plane);
  return y;
}

/**
 * Conv3d, kernel [kt, kh, kw], zero padding padT frames in front only (causal) and ph / pw on
 * both sides spatially, stride 1. weight [O, I, kt, kh, kw], bias [O].
 */
function conv3d(x: T4, wt: Float32Array, b: Float32Array, O: number, k: [number, number, number], padT: number, ph: number, pw: number): T4 {
  const [kt, kh, kw] = k;
  const T = x.t + padT - kt + 1;
  const y = zeros(O, T, x.h + 2 * ph - kh + 1, x.w + 2 * pw - kw + 1);
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < y.t * y.h * y.w; i++) y.d[o * y.t * y.h * y.w + i] = b[o];
    for (let ci = 0; ci < x.c; ci++)
      for (let a = 0; a < kt; a++)
        for (let p = 0; p < kh; p++)
          for (let q = 0; q < kw; q++) {
            const wv = wt[(((o * x.c + ci) * kt + a) * kh + p) * kw + q];
            for (let t = 0; t < T; t++) {
              const ts = t + a - padT;
              if (ts < 0 || ts >= x.t) continue;
              for (let yy = 0; yy < y.h; yy++) {
                const ys = yy + p - ph;
                if (ys < 0 || ys >= x.h) continue;
                const src = ((ci * x.t + ts) * x.h + ys) * x.w;
                const dst = ((o * y.t + t) * y.h + yy) * y.w;
                for (let xx = 0; xx < y.w; xx++) {
                  const xs = xx + q - pw;
                  if (xs < 0 || xs >= x.w) continue;
                  y.d[dst + xx] += wv * x.d[src + xs];
                }
              }
            }
          }
  }
  return y;
}

/** F.normalize over channels (eps 1e-12) * sqrt(C) * gamma. */
function rmsNorm(x: T4, gamma: Float32Array): T4 {
  const y = zeros(x.c, x.t, x.h, x.w);
  const n = x.t * x.h * x.w;
  const s = Math.sqrt(x.c);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let c = 0; c < x.c; c++) ss += x.d[c * n + i] ** 2;
    const norm = Math.max(Math.sqrt(ss), 1e-12);
    for (let c = 0; c < x.c; c++) y.d[c * n + i] = (x.d[c * n + i] / norm) * s * gamma[c];
  }
  return y;
}

/** nearest-exact, scale 2 in H and W: source index floor((dst + 0.5) / 2). */
function upsample2x(x: T4): T4 {
  const y = zeros(x.c, x.t, 2 * x.h, 2 * x.w);
  for (let ct = 0; ct < x.c * x.t; ct++)
    for (let yy = 0; yy < y.h; yy++)
      for (let xx = 0; xx < y.w; xx++)
        y.d[(ct * y.h + yy) * y.w + xx] = x.d[(ct * x.h + Math.floor((yy + 0.5) / 2)) * x.w + Math.floor((xx + 0.5) / 2)];
  return y;
}

type FeatCache = (T4 | "Rep" | null)[];
interface Idx {
  i: number;
}

export type Trace = (name: string, chunk: number, x: T4) => void;

export class RefWanVaeDecoder {
  constructor(
    readonly c: WanVaeConfig,
    private readonly w: (key: string) => Float32Array,
  ) {}

  /** WanCausalConv3d.forward(x, cache_x): padding (kt - 1) frames in front, minus the cached ones. */
  private causalConv(x: T4, key: string, O: number, k: [number, number, number], cache: T4 | null): T4 {
    let padT = k[0] - 1;
    if (cache && padT > 0) {
      x = catT(cache, x);
      padT -= cache.t;
    }
    return conv3d(x, this.w(`${key}.weight`), this.w(`${key}.bias`), O, k, padT, (k[1] - 1) / 2, (k[2] - 1) / 2);
  }

  /** The feat_cache step shared by every cached conv of the decoder. */
  private cachedConv(x: T4, key: string, O: number, fc: FeatCache, idx: Idx): T4 {
    const prev = fc[idx.i] as T4 | null;
    let cacheX = frames(x, -CACHE_T, x.t);
    if (cacheX.t < 2 && prev !== null) cacheX = catT(frames(prev, prev.t - 1, prev.t), cacheX);
    const y = this.causalConv(x, key, O, [3, 3, 3], prev);
    fc[idx.i] = cacheX;
    idx.i++;
    return y;
  }

  private resnet(x: T4, p: string, cin: number, cout: number, fc: FeatCache, idx: Idx): T4 {
    const h = cin !== cout ? this.causalConv(x, `${p}.conv_shortcut`, cout, [1, 1, 1], null) : x;
    let y = silu(rmsNorm(x, this.w(`${p}.norm1.gamma`)));
    y = this.cachedConv(y, `${p}.conv1`, cout, fc, idx);
    y = silu(rmsNorm(y, this.w(`${p}.norm2.gamma`)));
    y = this.cachedConv(y, `${p}.conv2`, cout, fc, idx);
    return add(y, h);
  }

  private attention(x: T4, p: string): T4 {
    const C = x.c;
    const n = rmsNorm(x, this.w(`${p}.norm.gamma`));
    const qkv = conv3d(n, this.w(`${p}.to_qkv.weight`), this.w(`${p}.to_qkv.bias`), 3 * C, [1, 1, 1], 0, 0, 0);
    const L = x.h * x.w;
    const o = zeros(C, x.t, x.h, x.w);
    const at = (ch: number, t: number, l: number) => qkv.d[(ch * x.t + t) * L + l];
    const scale = 1 / Math.sqrt(C);
    const s = new Float64Array(L);
    for (let t = 0; t < x.t; t++)
      for (let i = 0; i < L; i++) {
        let m = -Infinity;
        for (let j = 0; j < L; j++) {
          let dot = 0;
          for (let ch = 0; ch < C; ch++) dot += at(ch, t, i) * at(C + ch, t, j);
          s[j] = dot * scale;
          m = Math.max(m, s[j]);
        }
        let z = 0;
        for (let j = 0; j < L; j++) z += s[j] = Math.exp(s[j] - m);
        for (let ch = 0; ch < C; ch++) {
          let acc = 0;
          for (let j = 0; j < L; j++) acc += s[j] * at(2 * C + ch, t, j);
          o.d[(ch * x.t + t) * L + i] = acc / z;
        }
      }
    return add(conv3d(o, this.w(`${p}.proj.weight`), this.w(`${p}.proj.bias`), C, [1, 1, 1], 0, 0, 0), x);
  }

  /** WanResample.forward for upsample2d / upsample3d, with diffusers' "Rep" first-chunk rule. */
  private upsample(x: T4, p: string, temporal: boolean, cout: number, fc: FeatCache, idx: Idx): T4 {
    const C = x.c;
    if (temporal) {
      const entry = fc[idx.i];
      if (entry === null) {
        fc[idx.i] = "Rep";
        idx.i++;
      } else {
        let cacheX = frames(x, -CACHE_T, x.t);
        if (cacheX.t < 2 && entry !== "Rep") cacheX = catT(frames(entry, entry.t - 1, entry.t), cacheX);
        if (cacheX.t < 2 && entry === "Rep") cacheX = catT(zeros(C, 1, x.h, x.w), cacheX);
        const tc = this.causalConv(x, `${p}.time_conv`, 2 * C, [3, 1, 1], entry === "Rep" ? null : entry);
        fc[idx.i] = cacheX;
        idx.i++;
        // reshape (2, C, T) and stack on a new axis after T: frame 2t <- channels [0, C), 2t+1 <- [C, 2C)
        const y = zeros(C, 2 * x.t, x.h, x.w);
        const plane = x.h * x.w;
        for (let c = 0; c < C; c++)
          for (let t = 0; t < x.t; t++)
            for (let half = 0; half < 2; half++)
              y.d.set(tc.d.subarray(((half * C + c) * x.t + t) * plane, ((half * C + c) * x.t + t + 1) * plane), (c * y.t + 2 * t + half) * plane);
        x = y;
      }
    }
    const up = upsample2x(x);
    const w2 = this.w(`${p}.resample.1.weight`); // [O, C, 3, 3] == [O, C, 1, 3, 3]
    return conv3d(up, w2, this.w(`${p}.resample.1.bias`), cout, [1, 3, 3], 0, 1, 1);
  }

  /** WanDecoder3d.forward on one chunk. */
  decoderChunk(x: T4, fc: FeatCache, chunk: number, trace?: Trace): T4 {
    const c = this.c;
    const idx: Idx = { i: 0 };
    const d = c.decoder_base_dim ?? c.base_dim;
    const n = c.dim_mult.length;
    const dims = [d * c.dim_mult[n - 1], ...[...c.dim_mult].reverse().map((u) => d * u)];
    const tUp = [...c.temperal_downsample].reverse();
    const rec = (name: string, y: T4) => {
      trace?.(name, chunk, y);
      return y;
    };
    x = rec("decoder.conv_in", this.cachedConv(x, "decoder.conv_in", dims[0], fc, idx));
    x = rec("decoder.mid_block.resnets.0", this.resnet(x, "decoder.mid_block.resnets.0", dims[0], dims[0], fc, idx));
    x = rec("decoder.mid_block.attentions.0", this.attention(x, "decoder.mid_block.attentions.0"));
    x = rec("decoder.mid_block.resnets.1", this.resnet(x, "decoder.mid_block.resnets.1", dims[0], dims[0], fc, idx));
    for (let i = 0; i < n; i++) {
      let cin = i > 0 ? Math.floor(dims[i] / 2) : dims[i];
      const cout = dims[i + 1];
      for (let j = 0; j <= c.num_res_blocks; j++) {
        const p = `decoder.up_blocks.${i}.resnets.${j}`;
        x = rec(p, this.resnet(x, p, cin, cout, fc, idx));
        cin = cout;
      }
      if (i !== n - 1) {
        const p = `decoder.up_blocks.${i}.upsamplers.0`;
        x = rec(p, this.upsample(x, p, tUp[i], Math.floor(cout / 2), fc, idx));
      }
    }
    x = silu(rmsNorm(x, this.w("decoder.norm_out.gamma")));
    return rec("decoder.conv_out", this.cachedConv(x, "decoder.conv_out", c.out_channels, fc, idx));
  }

  /** post_quant_conv on the whole latent, then one latent frame per chunk; unclamped [3, T', H', W']. */
  decodeRaw(z: T4, trace?: Trace, chunkBase = 0): T4 {
    const x = conv3d(z, this.w("post_quant_conv.weight"), this.w("post_quant_conv.bias"), this.c.z_dim, [1, 1, 1], 0, 0, 0);
    const fc: FeatCache = [];
    for (let i = 0; i < 4096; i++) fc.push(null);
    let out: T4 | null = null;
    for (let f = 0; f < z.t; f++) {
      const y = this.decoderChunk(frames(x, f, f + 1), fc, chunkBase + f, trace);
      out = out ? catT(out, y) : y;
    }
    return out!;
  }

  /** Pipeline latents [C, F, H, W] -> z = latents / (1 / std) + mean. */
  denormalize(latents: Float32Array, F: number, H: number, W: number): T4 {
    const C = this.c.z_dim;
    const z = zeros(C, F, H, W);
    const n = F * H * W;
    for (let c = 0; c < C; c++) for (let i = 0; i < n; i++) z.d[c * n + i] = latents[c * n + i] / (1 / this.c.latents_std[c]) + this.c.latents_mean[c];
    return z;
  }

  /** AutoencoderKLWan.decode (no tiling) of pipeline latents: clamped [3, T', H', W'] and unclamped. */
  decode(latents: Float32Array, F: number, H: number, W: number, trace?: Trace): { video: T4; raw: T4 } {
    const raw = this.decodeRaw(this.denormalize(latents, F, H, W), trace);
    return { video: clamp(raw), raw };
  }

  /**
   * AutoencoderKLWan.tiled_decode: latent tiles of tileLat with stride strideLat (latent pixels),
   * each decoded through all frames with fresh caches; blend_v / blend_h in place (blend extents
   * in output pixels), crop to the stride, concatenate, crop to the frame, clamp.
   */
  tiledDecode(latents: Float32Array, F: number, H: number, W: number, t: { sampleH: number; sampleW: number; strideH: number; strideW: number }): T4 {
    const s = 2 ** (this.c.dim_mult.length - 1);
    const z = this.denormalize(latents, F, H, W);
    const [latH, latW, stH, stW] = [t.sampleH / s, t.sampleW / s, t.strideH / s, t.strideW / s];
    const blendHgt = t.sampleH - t.strideH;
    const blendWid = t.sampleW - t.strideW;
    const rows: T4[][] = [];
    for (let i = 0; i < H; i += stH) {
      const row: T4[] = [];
      for (let j = 0; j < W; j += stW) row.push(this.decodeRaw(crop(z, i, Math.min(i + latH, H), j, Math.min(j + latW, W))));
      rows.push(row);
    }
    return clamp(stitchTiles(rows, blendHgt, blendWid, t.strideH, t.strideW, H * s, W * s));
  }
}

