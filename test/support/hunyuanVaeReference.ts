/**
 * A plainly written float64 reference of the HunyuanVideo VAE decoder (diffusers
 * autoencoder_kl_hunyuan_video.py: HunyuanVideoDecoder3D.forward, AutoencoderKLHunyuanVideo._decode,
 * _temporal_tiled_decode, tiled_decode, blend_v / blend_h / blend_t), written from the diffusers
 * source without the runtime's layout helpers: the structure is derived here from the config as
 * HunyuanVideoDecoder3D.__init__ does, replicate padding is done by clamped indices, the attention
 * builds prepare_causal_attention_mask's full [L, L] mask, and the upsampler interpolates the first
 * frame and the other frames separately and concatenates them, literally.
 *
 * Tensors are batch-1 [C, T, H, W] Float64Arrays.
 */
import type { HunyuanVaeConfig } from "../../src/models/hunyuan-vae/config.ts";
import { type T4, zeros, catT, silu, add, clamp, crop, stitchTiles } from "./t4.ts";

export type { T4 };

const clampI = (i: number, n: number) => (i < 0 ? 0 : i >= n ? n - 1 : i);

/** Frames [a, b) along time. */
function frames(x: T4, a: number, b: number): T4 {
  a = Math.max(0, Math.min(a, x.t));
  b = Math.max(a, Math.min(b, x.t));
  const y = zeros(x.c, b - a, x.h, x.w);
  const plane = x.h * x.w;
  for (let c = 0; c < x.c; c++)
    for (let t = a; t < b; t++) y.d.set(x.d.subarray((c * x.t + t) * plane, (c * x.t + t + 1) * plane), (c * y.t + t - a) * plane);
  return y;
}

/**
 * HunyuanVideoCausalConv3d, stride 1: F.pad(x, (k//2, k//2, k//2, k//2, k-1, 0), mode="replicate")
 * then nn.Conv3d without padding. weight [O, I, k, k, k], bias [O].
 */
function causalConv(x: T4, wt: Float32Array, b: Float32Array, O: number, k: number): T4 {
  const pt = k - 1, ps = Math.floor(k / 2);
  const y = zeros(O, x.t, x.h, x.w);
  const n = x.t * x.h * x.w;
  for (let o = 0; o < O; o++) {
    const yo = y.d.subarray(o * n, (o + 1) * n);
    yo.fill(b[o]);
    for (let ci = 0; ci < x.c; ci++)
      for (let a = 0; a < k; a++)
        for (let p = 0; p < k; p++)
          for (let q = 0; q < k; q++) {
            const wv = wt[(((o * x.c + ci) * k + a) * k + p) * k + q];
            for (let t = 0; t < x.t; t++) {
              const ts = clampI(t + a - pt, x.t);
              for (let yy = 0; yy < x.h; yy++) {
                const ys = clampI(yy + p - ps, x.h);
                const src = ((ci * x.t + ts) * x.h + ys) * x.w;
                const dst = (t * x.h + yy) * x.w;
                for (let xx = 0; xx < x.w; xx++) yo[dst + xx] += wv * x.d[src + clampI(xx + q - ps, x.w)];
              }
            }
          }
  }
  return y;
}

/** nn.Conv3d kernel 1 (post_quant_conv). */
function conv1(x: T4, wt: Float32Array, b: Float32Array, O: number): T4 {
  const y = zeros(O, x.t, x.h, x.w);
  const n = x.t * x.h * x.w;
  for (let o = 0; o < O; o++)
    for (let i = 0; i < n; i++) {
      let acc = b[o];
      for (let ci = 0; ci < x.c; ci++) acc += wt[o * x.c + ci] * x.d[ci * n + i];
      y.d[o * n + i] = acc;
    }
  return y;
}

/** nn.GroupNorm(G, C, eps): statistics over (C / G channels) x T x H x W, biased variance, then the affine. */
function groupNorm(x: T4, G: number, gamma: Float32Array, beta: Float32Array, eps: number): T4 {
  const y = zeros(x.c, x.t, x.h, x.w);
  const n = x.t * x.h * x.w;
  const cg = x.c / G;
  for (let g = 0; g < G; g++) {
    const a = g * cg * n, b = (g + 1) * cg * n;
    let mean = 0;
    for (let i = a; i < b; i++) mean += x.d[i];
    mean /= b - a;
    let v = 0;
    for (let i = a; i < b; i++) v += (x.d[i] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / (b - a) + eps);
    for (let c = g * cg; c < (g + 1) * cg; c++)
      for (let i = 0; i < n; i++) y.d[c * n + i] = (x.d[c * n + i] - mean) * inv * gamma[c] + beta[c];
  }
  return y;
}

/** F.interpolate(mode="nearest") with integer scale factors (st, sh, sw): source floor(dst / scale). */
function interpolate(x: T4, st: number, sh: number, sw: number): T4 {
  const y = zeros(x.c, x.t * st, x.h * sh, x.w * sw);
  for (let c = 0; c < x.c; c++)
    for (let t = 0; t < y.t; t++)
      for (let yy = 0; yy < y.h; yy++)
        for (let xx = 0; xx < y.w; xx++)
          y.d[((c * y.t + t) * y.h + yy) * y.w + xx] = x.d[((c * x.t + Math.floor(t / st)) * x.h + Math.floor(yy / sh)) * x.w + Math.floor(xx / sw)];
  return y;
}

export type Trace = (name: string, pass: number, x: T4) => void;

export interface RefDecodeOptions {
  /** diffusers use_framewise_decoding (default true). */
  framewise?: boolean;
  /** diffusers use_tiling (default false). */
  tiling?: boolean;
  tileSampleMinHeight?: number;
  tileSampleMinWidth?: number;
  tileSampleStrideHeight?: number;
  tileSampleStrideWidth?: number;
  tileSampleMinNumFrames?: number;
  tileSampleStrideNumFrames?: number;
}

export class RefHunyuanVaeDecoder {
  private passes = 0;
  constructor(
    readonly c: HunyuanVaeConfig,
    private readonly w: (key: string) => Float32Array,
  ) {}

  private resnet(x: T4, p: string, cin: number, cout: number): T4 {
    const G = this.c.norm_num_groups;
    let h = silu(groupNorm(x, G, this.w(`${p}.norm1.weight`), this.w(`${p}.norm1.bias`), 1e-6));
    h = causalConv(h, this.w(`${p}.conv1.conv.weight`), this.w(`${p}.conv1.conv.bias`), cout, 3);
    h = silu(groupNorm(h, G, this.w(`${p}.norm2.weight`), this.w(`${p}.norm2.bias`), 1e-6));
    h = causalConv(h, this.w(`${p}.conv2.conv.weight`), this.w(`${p}.conv2.conv.bias`), cout, 3);
    const res = cin !== cout ? causalConv(x, this.w(`${p}.conv_shortcut.conv.weight`), this.w(`${p}.conv_shortcut.conv.bias`), cout, 1) : x;
    return add(h, res);
  }

  /** HunyuanVideoMidBlock3D's Attention: tokens (t, h, w), group_norm, 1 head, prepare_causal_attention_mask, residual. */
  private attention(x: T4, p: string): T4 {
    const C = x.c, HW = x.h * x.w, L = x.t * HW;
    const nx = groupNorm(x, this.c.norm_num_groups, this.w(`${p}.group_norm.weight`), this.w(`${p}.group_norm.bias`), 1e-6);
    const tok = (src: T4, l: number, ch: number) => src.d[ch * L + l]; // [C, T*H*W] read as token l, channel ch
    const lin = (key: string): Float64Array => {
      const W = this.w(`${key}.weight`), b = this.w(`${key}.bias`);
      const out = new Float64Array(L * C);
      for (let l = 0; l < L; l++)
        for (let o = 0; o < C; o++) {
          let acc = b[o];
          for (let i = 0; i < C; i++) acc += W[o * C + i] * tok(nx, l, i);
          out[l * C + o] = acc;
        }
      return out;
    };
    const q = lin(`${p}.to_q`), k = lin(`${p}.to_k`), v = lin(`${p}.to_v`);
    // prepare_causal_attention_mask: indices 1..T repeated HW times; meshgrid "xy": x[i][j] = idx[j], y[i][j] = idx[i]
    const idx = new Int32Array(L);
    for (let l = 0; l < L; l++) idx[l] = Math.floor(l / HW) + 1;
    const scale = 1 / Math.sqrt(C);
    const o = new Float64Array(L * C);
    const s = new Float64Array(L);
    for (let i = 0; i < L; i++) {
      let m = -Infinity;
      for (let j = 0; j < L; j++) {
        let dot = 0;
        for (let ch = 0; ch < C; ch++) dot += q[i * C + ch] * k[j * C + ch];
        s[j] = dot * scale + (idx[j] <= idx[i] ? 0 : -Infinity);
        m = Math.max(m, s[j]);
      }
      let z = 0;
      for (let j = 0; j < L; j++) z += s[j] = Math.exp(s[j] - m);
      for (let ch = 0; ch < C; ch++) {
        let acc = 0;
        for (let j = 0; j < L; j++) acc += s[j] * v[j * C + ch];
        o[i * C + ch] = acc / z;
      }
    }
    const Wo = this.w(`${p}.to_out.0.weight`), bo = this.w(`${p}.to_out.0.bias`);
    const y = zeros(C, x.t, x.h, x.w);
    for (let l = 0; l < L; l++)
      for (let c = 0; c < C; c++) {
        let acc = bo[c];
        for (let i = 0; i < C; i++) acc += Wo[c * C + i] * o[l * C + i];
        y.d[c * L + l] = acc + x.d[c * L + l];
      }
    return y;
  }

  /** HunyuanVideoUpsampleCausal3D.forward. */
  private upsample(x: T4, p: string, factor: [number, number, number]): T4 {
    const first = interpolate(frames(x, 0, 1), 1, factor[1], factor[2]);
    let h = first;
    if (x.t > 1) h = catT(first, interpolate(frames(x, 1, x.t), factor[0], factor[1], factor[2]));
    return causalConv(h, this.w(`${p}.conv.conv.weight`), this.w(`${p}.conv.conv.bias`), x.c, 3);
  }

  /** post_quant_conv then HunyuanVideoDecoder3D.forward; unclamped. */
  decoderForward(z: T4, trace?: Trace): T4 {
    const c = this.c;
    const pass = this.passes++;
    const rec = (name: string, y: T4) => {
      trace?.(name, pass, y);
      return y;
    };
    const boc = c.block_out_channels;
    const n = boc.length;
    let x = conv1(z, this.w("post_quant_conv.weight"), this.w("post_quant_conv.bias"), c.latent_channels);
    x = rec("decoder.conv_in", causalConv(x, this.w("decoder.conv_in.conv.weight"), this.w("decoder.conv_in.conv.bias"), boc[n - 1], 3));
    x = rec("decoder.mid_block.resnets.0", this.resnet(x, "decoder.mid_block.resnets.0", boc[n - 1], boc[n - 1]));
    if (c.mid_block_add_attention) x = rec("decoder.mid_block.attentions.0", this.attention(x, "decoder.mid_block.attentions.0"));
    x = rec("decoder.mid_block.resnets.1", this.resnet(x, "decoder.mid_block.resnets.1", boc[n - 1], boc[n - 1]));
    const rev = [...boc].reverse();
    let output = rev[0];
    for (let i = 0; i < n; i++) {
      const prev = output;
      output = rev[i];
      const final = i === n - 1;
      const spatialLayers = Math.floor(Math.log2(c.spatial_compression_ratio));
      const timeLayers = Math.floor(Math.log2(c.temporal_compression_ratio));
      const sp = i < spatialLayers;
      const tm = i >= n - 1 - timeLayers && !final;
      for (let j = 0; j < c.layers_per_block + 1; j++) {
        const p = `decoder.up_blocks.${i}.resnets.${j}`;
        x = rec(p, this.resnet(x, p, j === 0 ? prev : output, output));
      }
      if (sp || tm) {
        const p = `decoder.up_blocks.${i}.upsamplers.0`;
        x = rec(p, this.upsample(x, p, [tm ? 2 : 1, sp ? 2 : 1, sp ? 2 : 1]));
      }
    }
    x = silu(groupNorm(x, c.norm_num_groups, this.w("decoder.conv_norm_out.weight"), this.w("decoder.conv_norm_out.bias"), 1e-6));
    return rec("decoder.conv_out", causalConv(x, this.w("decoder.conv_out.conv.weight"), this.w("decoder.conv_out.conv.bias"), c.out_channels, 3));
  }

  /** Pipeline latents [C, F, H, W] -> latents / scaling_factor. */
  scale(latents: Float32Array, F: number, H: number, W: number): T4 {
    const z = zeros(this.c.latent_channels, F, H, W);
    for (let i = 0; i < z.d.length; i++) z.d[i] = latents[i] / this.c.scaling_factor;
    return z;
  }

  /** AutoencoderKLHunyuanVideo.decode on pipeline latents: { video: clamped to [-1, 1], raw }. */
  decode(latents: Float32Array, F: number, H: number, W: number, o: RefDecodeOptions = {}, trace?: Trace): { video: T4; raw: T4 } {
    this.passes = 0;
    const raw = this._decode(this.scale(latents, F, H, W), settings(o), trace);
    return { video: clamp(raw), raw };
  }

  private _decode(z: T4, s: Settings, trace?: Trace): T4 {
    const r = this.c.spatial_compression_ratio;
    const tlh = Math.floor(s.minH / r), tlw = Math.floor(s.minW / r), tlf = Math.floor(s.minF / this.c.temporal_compression_ratio);
    if (s.framewise && z.t > tlf) return this.temporalTiledDecode(z, s, trace);
    if (s.tiling && (z.w > tlw || z.h > tlh)) return this.tiledDecode(z, s, trace);
    return this.decoderForward(z, trace);
  }

  private tiledDecode(z: T4, s: Settings, trace?: Trace): T4 {
    const r = this.c.spatial_compression_ratio;
    const [sampleH, sampleW] = [z.h * r, z.w * r];
    const [latH, latW, stH, stW] = [Math.floor(s.minH / r), Math.floor(s.minW / r), Math.floor(s.strideH / r), Math.floor(s.strideW / r)];
    const blendHgt = s.minH - s.strideH, blendWid = s.minW - s.strideW;
    const rows: T4[][] = [];
    for (let i = 0; i < z.h; i += stH) {
      const row: T4[] = [];
      for (let j = 0; j < z.w; j += stW) row.push(this.decoderForward(crop(z, i, Math.min(i + latH, z.h), j, Math.min(j + latW, z.w)), trace));
      rows.push(row);
    }
    return stitchTiles(rows, blendHgt, blendWid, s.strideH, s.strideW, sampleH, sampleW);
  }

  private temporalTiledDecode(z: T4, s: Settings, trace?: Trace): T4 {
    const r = this.c.spatial_compression_ratio, tr = this.c.temporal_compression_ratio;
    const numSampleFrames = (z.t - 1) * tr + 1;
    const [tlh, tlw] = [Math.floor(s.minH / r), Math.floor(s.minW / r)];
    const tlf = Math.floor(s.minF / tr), tls = Math.floor(s.strideF / tr);
    const blendFrames = s.minF - s.strideF;
    const row: T4[] = [];
    for (let i = 0; i < z.t; i += tls) {
      const tile = frames(z, i, i + tlf + 1);
      let decoded = s.tiling && (tile.w > tlw || tile.h > tlh) ? this.tiledDecode(tile, s, trace) : this.decoderForward(tile, trace);
      if (i > 0) decoded = frames(decoded, 1, decoded.t);
      row.push(decoded);
    }
    const result: T4[] = [];
    for (let i = 0; i < row.length; i++) {
      let tile = row[i];
      if (i > 0) {
        tile = blendT(row[i - 1], tile, blendFrames);
        result.push(frames(tile, 0, s.strideF));
      } else result.push(frames(tile, 0, s.strideF + 1));
    }
    const dec = result.reduce((a, b) => catT(a, b));
    return frames(dec, 0, numSampleFrames);
  }
}

interface Settings {
  framewise: boolean;
  tiling: boolean;
  minH: number;
  minW: number;
  strideH: number;
  strideW: number;
  minF: number;
  strideF: number;
}

function settings(o: RefDecodeOptions): Settings {
  return {
    framewise: o.framewise ?? true,
    tiling: o.tiling ?? false,
    minH: o.tileSampleMinHeight ?? 256,
    minW: o.tileSampleMinWidth ?? 256,
    strideH: o.tileSampleStrideHeight ?? 192,
    strideW: o.tileSampleStrideWidth ?? 192,
    minF: o.tileSampleMinNumFrames ?? 16,
    strideF: o.tileSampleStrideNumFrames ?? 12,
  };
}

function blendT(a: T4, b: T4, extent: number): T4 {
  const e = Math.min(a.t, b.t, extent);
  const plane = b.h * b.w;
  for (let c = 0; c < b.c; c++)
    for (let t = 0; t < e; t++)
      for (let i = 0; i < plane; i++) {
        const ib = (c * b.t + t) * plane + i;
        b.d[ib] = a.d[(c * a.t + a.t - e + t) * plane + i] * (1 - t / e) + b.d[ib] * (t / e);
      }
  return b;
}
