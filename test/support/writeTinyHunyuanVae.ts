/**
 * A tiny random HunyuanVideo VAE in the exact diffusers folder layout: <dir>/vae/config.json (the
 * real AutoencoderKLHunyuanVideo field names) and <dir>/vae/diffusion_pytorch_model.safetensors
 * with every key of the real checkpoint (encoder, quant_conv, post_quant_conv, decoder), only
 * smaller.
 *
 * Default size: block_out_channels [8, 16, 32, 32], latent_channels 4, norm_num_groups 4,
 * layers_per_block 2: the real structure (the same key set: conv_shortcut in up_blocks.2 and 3,
 * a space-only upsampler in up_blocks.0, space-and-time ones in up_blocks.1 and 2, none in 3)
 * with 16x fewer channels.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type HunyuanVaeConfig, decoderShapes, parseHunyuanVaeConfig } from "../../src/models/hunyuan-vae/config.ts";
import { decodeBF16, decodeF16, encodeBF16, encodeF16, writeSafetensors, type WriteDtype } from "../../src/weights/safetensors.ts";
import { randomArray, rng } from "./randomWeights.ts";
import { tempDir } from "./tmp.ts";

const DOWN = "HunyuanVideoDownBlock3D";
const UP = "HunyuanVideoUpBlock3D";

export const TINY_HUNYUAN_VAE_CONFIG = {
  _class_name: "AutoencoderKLHunyuanVideo",
  _diffusers_version: "0.32.0.dev0",
  act_fn: "silu",
  block_out_channels: [8, 16, 32, 32],
  down_block_types: [DOWN, DOWN, DOWN, DOWN],
  in_channels: 3,
  latent_channels: 4,
  layers_per_block: 2,
  mid_block_add_attention: true,
  norm_num_groups: 4,
  out_channels: 3,
  scaling_factor: 0.476986,
  spatial_compression_ratio: 8,
  temporal_compression_ratio: 4,
  up_block_types: [UP, UP, UP, UP],
};

/** Encoder-side keys (diffusers HunyuanVideoEncoder3D + quant_conv), only so the file has the real layout. */
export function encoderShapes(c: HunyuanVaeConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const conv = (p: string, o: number, i: number, k = 3) => {
    m.set(`${p}.conv.weight`, [o, i, k, k, k]);
    m.set(`${p}.conv.bias`, [o]);
  };
  const norm = (p: string, ch: number) => {
    m.set(`${p}.weight`, [ch]);
    m.set(`${p}.bias`, [ch]);
  };
  const resnet = (p: string, i: number, o: number) => {
    norm(`${p}.norm1`, i);
    conv(`${p}.conv1`, o, i);
    norm(`${p}.norm2`, o);
    conv(`${p}.conv2`, o, o);
    if (i !== o) conv(`${p}.conv_shortcut`, o, i, 1);
  };
  const b = c.block_out_channels;
  const n = b.length;
  conv("encoder.conv_in", b[0], c.in_channels);
  let out = b[0];
  for (let i = 0; i < n; i++) {
    const inp = out;
    out = b[i];
    for (let j = 0; j < c.layers_per_block; j++) resnet(`encoder.down_blocks.${i}.resnets.${j}`, j === 0 ? inp : out, out);
    const space = i < Math.log2(c.spatial_compression_ratio);
    const time = i >= n - 1 - Math.log2(c.temporal_compression_ratio) && i !== n - 1;
    if (space || time) conv(`encoder.down_blocks.${i}.downsamplers.0.conv`, out, out);
  }
  const top = b[n - 1];
  resnet("encoder.mid_block.resnets.0", top, top);
  if (c.mid_block_add_attention) {
    norm("encoder.mid_block.attentions.0.group_norm", top);
    for (const k of ["to_q", "to_k", "to_v", "to_out.0"]) {
      m.set(`encoder.mid_block.attentions.0.${k}.weight`, [top, top]);
      m.set(`encoder.mid_block.attentions.0.${k}.bias`, [top]);
    }
  }
  resnet("encoder.mid_block.resnets.1", top, top);
  norm("encoder.conv_norm_out", top);
  conv("encoder.conv_out", 2 * c.latent_channels, top);
  m.set("quant_conv.weight", [2 * c.latent_channels, 2 * c.latent_channels, 1, 1, 1]);
  m.set("quant_conv.bias", [2 * c.latent_channels]);
  return m;
}

const isNormWeight = (k: string) => /(norm1|norm2|group_norm|conv_norm_out)\.weight$/.test(k);

/**
 * Random weights: convs and linears ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), GroupNorm weights ~
 * 1 + N(0, 0.1^2), conv_out at 0.5 / sqrt(fan_in), so a few percent of the outputs exercise the clamp.
 */
export function randomHunyuanVaeWeights(c: HunyuanVaeConfig, seed: number, shapes: Map<string, number[]> = decoderShapes(c)): Map<string, Float32Array> {
  const r = rng(seed);
  const out = new Map<string, Float32Array>();
  for (const [k, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    let a: Float32Array;
    if (isNormWeight(k)) a = randomArray(n, r, 0.1).map((v) => 1 + v);
    else if (k.endsWith(".bias")) a = randomArray(n, r, 0.1);
    else if (k === "decoder.conv_out.conv.weight") a = randomArray(n, r, 0.5 / Math.sqrt(fanIn));
    else a = randomArray(n, r, 1 / Math.sqrt(fanIn));
    out.set(k, a);
  }
  return out;
}

export interface TinyHunyuanVae {
  /** Model root (holds vae/). */
  dir: string;
  vaeDir: string;
  config: HunyuanVaeConfig;
  /** Decoder-side weights (post_quant_conv + decoder.*) as stored (rounded to the file's dtype). */
  weights: Map<string, Float32Array>;
}

/** The values a dtype stores (round to nearest even), widened back to fp32. */
function roundTo(dtype: WriteDtype, a: Float32Array): Float32Array {
  if (dtype === "F16") return decodeF16(encodeF16(a));
  if (dtype === "BF16") return decodeBF16(encodeBF16(a));
  return a;
}

/**
 * Write a tiny random HunyuanVideo VAE under a fresh temp dir (or `dir`). `overrides` replace config
 * fields; `mutate` may edit the tensors before writing (drop or reshape keys for error tests);
 * `dtype` stores every tensor as F32 (default), F16 or BF16.
 */
export function writeTinyHunyuanVae(
  opts: { seed?: number; overrides?: Record<string, unknown>; dir?: string; dtype?: WriteDtype; mutate?: (t: Map<string, { shape: number[]; data: Float32Array }>) => void } = {},
): TinyHunyuanVae {
  const dir = opts.dir ?? tempDir("mixcache-hvae-");
  const vaeDir = join(dir, "vae");
  mkdirSync(vaeDir, { recursive: true });
  const raw = { ...TINY_HUNYUAN_VAE_CONFIG, ...(opts.overrides ?? {}) };
  const config = parseHunyuanVaeConfig(raw);
  const seed = opts.seed ?? 5;
  const dtype = opts.dtype ?? "F32";
  const weights = new Map<string, Float32Array>();
  for (const [k, v] of randomHunyuanVaeWeights(config, seed)) weights.set(k, roundTo(dtype, v));
  const enc = randomHunyuanVaeWeights(config, seed + 1000, encoderShapes(config));
  const all = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, s] of decoderShapes(config)) all.set(k, { shape: s, data: weights.get(k)! });
  for (const [k, s] of encoderShapes(config)) all.set(k, { shape: s, data: enc.get(k)! });
  opts.mutate?.(all);
  const tensors: Record<string, { dtype: WriteDtype; shape: number[]; data: Float32Array }> = {};
  for (const [k, t] of all) tensors[k] = { dtype, ...t };
  writeSafetensors(join(vaeDir, "diffusion_pytorch_model.safetensors"), tensors);
  writeFileSync(join(vaeDir, "config.json"), JSON.stringify(raw, null, 2));
  return { dir, vaeDir, config, weights };
}
