/**
 * A tiny random Wan2.1 VAE in the exact diffusers folder layout: <dir>/vae/config.json (the real
 * AutoencoderKLWan field names) and <dir>/vae/diffusion_pytorch_model.safetensors with every key
 * of the real checkpoint (encoder, quant_conv, post_quant_conv, decoder), only smaller.
 *
 * Default size: base_dim 8, z_dim 4, dim_mult [1, 2, 4, 4], num_res_blocks 2 — the real
 * structure (same key set, conv_shortcut only in up_blocks.1.resnets.0, two upsample3d and one
 * upsample2d) with 12x fewer channels.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type WanVaeConfig, decoderShapes, parseWanVaeConfig } from "../../src/models/wan-vae/config.ts";
import { writeSafetensors } from "../../src/weights/safetensors.ts";
import { randomArray, rng } from "./randomWeights.ts";
import { tempDir } from "./tmp.ts";

export const TINY_VAE_CONFIG = {
  _class_name: "AutoencoderKLWan",
  _diffusers_version: "0.33.0.dev0",
  attn_scales: [],
  base_dim: 8,
  dim_mult: [1, 2, 4, 4],
  dropout: 0.0,
  latents_mean: [-0.7571, -0.7089, -0.9113, 0.1075],
  latents_std: [2.8184, 1.4541, 2.3275, 2.6558],
  num_res_blocks: 2,
  temperal_downsample: [false, true, true],
  z_dim: 4,
};

/** Encoder-side keys (diffusers WanEncoder3d + quant_conv), only so the file has the real layout. */
export function encoderShapes(c: WanVaeConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const dims = [1, ...c.dim_mult].map((u) => c.base_dim * u);
  const conv = (p: string, o: number, i: number, k: number[]) => {
    m.set(`${p}.weight`, [o, i, ...k]);
    m.set(`${p}.bias`, [o]);
  };
  const resnet = (p: string, i: number, o: number) => {
    m.set(`${p}.norm1.gamma`, [i, 1, 1, 1]);
    conv(`${p}.conv1`, o, i, [3, 3, 3]);
    m.set(`${p}.norm2.gamma`, [o, 1, 1, 1]);
    conv(`${p}.conv2`, o, o, [3, 3, 3]);
    if (i !== o) conv(`${p}.conv_shortcut`, o, i, [1, 1, 1]);
  };
  conv("encoder.conv_in", dims[0], c.in_channels, [3, 3, 3]);
  let k = 0;
  for (let i = 0; i < c.dim_mult.length; i++) {
    let cin = dims[i];
    const cout = dims[i + 1];
    for (let j = 0; j < c.num_res_blocks; j++) {
      resnet(`encoder.down_blocks.${k++}`, cin, cout);
      cin = cout;
    }
    if (i !== c.dim_mult.length - 1) {
      const p = `encoder.down_blocks.${k++}`;
      conv(`${p}.resample.1`, cout, cout, [3, 3]);
      if (c.temperal_downsample[i]) conv(`${p}.time_conv`, cout, cout, [3, 1, 1]);
    }
  }
  const top = dims[dims.length - 1];
  resnet("encoder.mid_block.resnets.0", top, top);
  m.set("encoder.mid_block.attentions.0.norm.gamma", [top, 1, 1]);
  conv("encoder.mid_block.attentions.0.to_qkv", 3 * top, top, [1, 1]);
  conv("encoder.mid_block.attentions.0.proj", top, top, [1, 1]);
  resnet("encoder.mid_block.resnets.1", top, top);
  m.set("encoder.norm_out.gamma", [top, 1, 1, 1]);
  conv("encoder.conv_out", 2 * c.z_dim, top, [3, 3, 3]);
  conv("quant_conv", 2 * c.z_dim, 2 * c.z_dim, [1, 1, 1]);
  return m;
}

/**
 * Random decoder weights: convs ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), RMS-norm gammas ~ 1 + N(0, 0.1^2),
 * conv_out at 0.8 / sqrt(fan_in), so a few percent of the outputs exercise the [-1, 1] clamp.
 */
export function randomVaeWeights(c: WanVaeConfig, seed: number, shapes: Map<string, number[]> = decoderShapes(c)): Map<string, Float32Array> {
  const r = rng(seed);
  const out = new Map<string, Float32Array>();
  for (const [k, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    let a: Float32Array;
    if (k.endsWith(".gamma")) a = randomArray(n, r, 0.1).map((v) => 1 + v);
    else if (k.endsWith(".bias")) a = randomArray(n, r, 0.1);
    else if (k === "decoder.conv_out.weight") a = randomArray(n, r, 0.8 / Math.sqrt(fanIn));
    else a = randomArray(n, r, 1 / Math.sqrt(fanIn));
    out.set(k, a);
  }
  return out;
}

export interface TinyVae {
  /** Model root (holds vae/). */
  dir: string;
  vaeDir: string;
  config: WanVaeConfig;
  /** Decoder-side weights (post_quant_conv + decoder.*), as written. */
  weights: Map<string, Float32Array>;
}

/**
 * Write a tiny random VAE under a fresh temp dir (or `dir`). `overrides` replace config fields;
 * `mutate` may edit the tensors before writing (drop or rename keys for error tests).
 */
export function writeTinyWanVae(opts: { seed?: number; overrides?: Record<string, unknown>; dir?: string; mutate?: (t: Map<string, { shape: number[]; data: Float32Array }>) => void } = {}): TinyVae {
  const dir = opts.dir ?? tempDir("mixcache-vae-");
  const vaeDir = join(dir, "vae");
  mkdirSync(vaeDir, { recursive: true });
  const raw = { ...TINY_VAE_CONFIG, ...(opts.overrides ?? {}) };
  const config = parseWanVaeConfig(raw);
  const seed = opts.seed ?? 5;
  const weights = randomVaeWeights(config, seed);
  const enc = randomVaeWeights(config, seed + 1000, encoderShapes(config));
  const all = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, s] of decoderShapes(config)) all.set(k, { shape: s, data: weights.get(k)! });
  for (const [k, s] of encoderShapes(config)) all.set(k, { shape: s, data: enc.get(k)! });
  opts.mutate?.(all);
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [k, t] of all) tensors[k] = { dtype: "F32", ...t };
  writeSafetensors(join(vaeDir, "diffusion_pytorch_model.safetensors"), tensors);
  writeFileSync(join(vaeDir, "config.json"), JSON.stringify(raw, null, 2));
  return { dir, vaeDir, config, weights };
}
