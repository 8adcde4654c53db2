/**
 * Wan2.1 VAE decoder (src/models/wan-vae/) against the float64 reference
 * (test/support/wanVaeReference.ts, diffusers' feat_cache bookkeeping), on tiny random
 * checkpoints written in the diffusers folder layout (test/support/writeTinyWanVae.ts).
 *
 * Tolerance: max |diff| <= 1e-4 x (1 + max |ref|) for every unit output of every chunk and for the
 * clamped video; the ONNX side is fp32, measured differences are ~1e-6.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { MixCacheError } from "../src/errors.ts";
import {
  decodedFrames, decoderChunkMacs, decoderParameterCount, decoderShapes, decoderUnits, parseWanVaeConfig, spatialScale,
  temporalScale, wan21VaeConfig,
} from "../src/models/wan-vae/config.ts";
import { WanVaeDecoder, loadWanVaeDecoder, mapVaeSource } from "../src/models/wan-vae/decoder.ts";
import { randomArray, rng } from "./support/randomWeights.ts";
import { RefWanVaeDecoder, type T4 } from "./support/wanVaeReference.ts";
import { TINY_VAE_CONFIG, randomVaeWeights, writeTinyWanVae } from "./support/writeTinyWanVae.ts";
import { maxDiff } from "./support/compare.ts";

const TOL = 1e-4;

function check(name: string, got: ArrayLike<number>, want: ArrayLike<number>, extra = ""): number {
  const { diff, scale } = maxDiff(got, want);
  console.log(`  ${name.padEnd(40)} max|diff| ${diff.toExponential(2)}  (max|ref| ${scale.toFixed(3)})${extra}`);
  assert.ok(diff <= TOL * (1 + scale), `${name}: max diff ${diff} > ${TOL} x (1 + ${scale})`);
  return diff;
}

const dimsOf = (t: T4) => [1, t.c, t.t, t.h, t.w];

/** MixCacheError with the given code whose message matches and that carries a fix. */
async function rejectsWith(fn: () => unknown, code: string, re: RegExp): Promise<void> {
  await assert.rejects(async () => fn(), (e: unknown) => {
    assert.ok(e instanceof MixCacheError, `expected MixCacheError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    assert.ok(e.fix && e.fix.length > 10, `no fix in: ${e.message}`);
    return true;
  });
}

test("config: the real Wan2.1 VAE decoder layout, key names and sizes", () => {
  const c = wan21VaeConfig();
  const real = parseWanVaeConfig({
    _class_name: "AutoencoderKLWan", _diffusers_version: "0.33.0.dev0", attn_scales: [], base_dim: 96, dim_mult: [1, 2, 4, 4],
    dropout: 0.0, latents_mean: c.latents_mean, latents_std: c.latents_std, num_res_blocks: 2, temperal_downsample: [false, true, true], z_dim: 16,
  });
  assert.deepEqual(real, c);
  const shapes = decoderShapes(c);
  const expect: Record<string, number[]> = {
    "post_quant_conv.weight": [16, 16, 1, 1, 1],
    "decoder.conv_in.weight": [384, 16, 3, 3, 3],
    "decoder.mid_block.resnets.0.norm1.gamma": [384, 1, 1, 1],
    "decoder.mid_block.resnets.1.conv2.weight": [384, 384, 3, 3, 3],
    "decoder.mid_block.attentions.0.norm.gamma": [384, 1, 1],
    "decoder.mid_block.attentions.0.to_qkv.weight": [1152, 384, 1, 1],
    "decoder.mid_block.attentions.0.proj.bias": [384],
    "decoder.up_blocks.0.upsamplers.0.time_conv.weight": [768, 384, 3, 1, 1],
    "decoder.up_blocks.0.upsamplers.0.resample.1.weight": [192, 384, 3, 3],
    "decoder.up_blocks.1.resnets.0.conv_shortcut.weight": [384, 192, 1, 1, 1],
    "decoder.up_blocks.1.upsamplers.0.time_conv.bias": [768],
    "decoder.up_blocks.2.upsamplers.0.resample.1.weight": [96, 192, 3, 3],
    "decoder.up_blocks.3.resnets.2.conv2.weight": [96, 96, 3, 3, 3],
    "decoder.norm_out.gamma": [96, 1, 1, 1],
    "decoder.conv_out.weight": [3, 96, 3, 3, 3],
  };
  for (const [k, s] of Object.entries(expect)) assert.deepEqual(shapes.get(k), s, k);
  // conv_shortcut only where channels change; no time_conv on the 2D upsampler; no up_blocks.3 upsampler
  assert.deepEqual([...shapes.keys()].filter((k) => k.includes("conv_shortcut.weight")), ["decoder.up_blocks.1.resnets.0.conv_shortcut.weight"]);
  assert.ok(!shapes.has("decoder.up_blocks.2.upsamplers.0.time_conv.weight"));
  assert.ok(![...shapes.keys()].some((k) => k.startsWith("decoder.up_blocks.3.upsamplers")));
  assert.equal(shapes.size, 108);
  assert.equal(decoderParameterCount(c), 73_295_603);
  assert.equal(decoderUnits(c).length, 20);
  assert.equal(spatialScale(c), 8);
  assert.equal(temporalScale(c), 4);
  assert.equal(decodedFrames(c, 21), 81);
  console.log(`  real decoder: ${(decoderParameterCount(c) / 1e6).toFixed(1)}M params, 480x832 chunk MACs first ${(decoderChunkMacs(c, 60, 104, true) / 1e12).toFixed(2)}T, next ${(decoderChunkMacs(c, 60, 104, false) / 1e12).toFixed(2)}T`);
});

test("tiny diffusers folder: per-unit and end-to-end parity, 3 latent frames of 4x6 -> 9 frames of 32x48", async () => {
  const tiny = writeTinyWanVae({ seed: 5 });
  try {
    const dec = await loadWanVaeDecoder(tiny.dir, { threads: 1 });
    const [C, F, H, W] = [4, 3, 4, 6];
    const latents = randomArray(C * F * H * W, rng(3));
    const ref = new RefWanVaeDecoder(tiny.config, (k) => tiny.weights.get(k)!);
    const refTrace = new Map<string, T4>();
    const want = ref.decode(latents, F, H, W, (n, ch, x) => refTrace.set(`${n}@${ch}`, x));
    const perUnit = new Map<string, number>();
    let traced = 0, chunks = 0;
    const video = await dec.decode(latents, [C, F, H, W], {
      onChunk: () => chunks++,
      trace: (name, ch, data, dims) => {
        const r = refTrace.get(`${name}@${ch}`);
        assert.ok(r, `reference has no ${name}@${ch}`);
        assert.deepEqual(dims, dimsOf(r), `${name}@${ch} dims`);
        const { diff, scale } = maxDiff(data, r.d);
        assert.ok(diff <= TOL * (1 + scale), `${name}@${ch}: max diff ${diff} > ${TOL} x (1 + ${scale})`);
        perUnit.set(name, Math.max(perUnit.get(name) ?? 0, diff));
        traced++;
      },
    });
    assert.equal(traced, refTrace.size);
    assert.equal(chunks, F);
    for (const [name, d] of perUnit) console.log(`  ${name.padEnd(40)} max|diff| over 3 chunks ${d.toExponential(2)}`);
    assert.equal(video.frames, 1 + 4 * (F - 1));
    assert.equal(video.frames, dec.framesFor(F));
    assert.deepEqual([video.channels, video.height, video.width], [3, 32, 48]);
    let clamped = 0;
    for (const v of want.raw.d) if (Math.abs(v) > 1) clamped++;
    check("end to end (clamped video)", video.data, want.video.d, `  [${(100 * clamped / want.raw.d.length).toFixed(1)}% clamped]`);
    assert.ok(video.data.every((v) => v >= -1 && v <= 1));
    await dec.release();
  } finally {
    rmSync(tiny.dir, { recursive: true, force: true });
  }
});

test("block sessions, raw latents (denormalize false), batch dims", async () => {
  const config = parseWanVaeConfig(TINY_VAE_CONFIG);
  const weights = randomVaeWeights(config, 9);
  const dec = await WanVaeDecoder.create(config, mapVaeSource(weights), { threads: 1, group: "block" });
  assert.deepEqual(dec.stageNames.length, 5); // conv_in + mid, up_blocks 0..2, up_block 3 + head
  const [C, F, H, W] = [4, 2, 3, 5];
  const z = randomArray(C * F * H * W, rng(4));
  const ref = new RefWanVaeDecoder(config, (k) => weights.get(k)!);
  const zt: T4 = { c: C, t: F, h: H, w: W, d: Float64Array.from(z) };
  const raw = ref.decodeRaw(zt);
  const video = await dec.decode(z, [1, C, F, H, W], { denormalize: false });
  assert.deepEqual([video.frames, video.height, video.width], [5, 24, 40]);
  check("group=block, raw z, 2x3x5", video.data, raw.d.map((v) => Math.min(1, Math.max(-1, v))));
  await dec.release();
});

test("another structure: dim_mult [1,2,2,2], 1 res block, decoder_base_dim, temporal upsample last only", async () => {
  const overrides = { base_dim: 6, decoder_base_dim: 4, dim_mult: [1, 2, 2, 2], num_res_blocks: 1, temperal_downsample: [true, false, false] };
  const config = parseWanVaeConfig({ ...TINY_VAE_CONFIG, ...overrides });
  assert.equal(temporalScale(config), 2);
  const weights = randomVaeWeights(config, 13);
  // decoder dims [8, 8, 8, 8, 4]: conv_shortcut in up_blocks 1 and 2 (4 -> 8 after each halving upsampler)
  assert.deepEqual([...weights.keys()].filter((k) => k.endsWith("conv_shortcut.weight")), ["decoder.up_blocks.1.resnets.0.conv_shortcut.weight", "decoder.up_blocks.2.resnets.0.conv_shortcut.weight"]);
  const dec = await WanVaeDecoder.create(config, mapVaeSource(weights), { threads: 1 });
  const [C, F, H, W] = [4, 3, 3, 4];
  const latents = randomArray(C * F * H * W, rng(8));
  const want = new RefWanVaeDecoder(config, (k) => weights.get(k)!).decode(latents, F, H, W);
  const video = await dec.decode(latents, [C, F, H, W]);
  assert.equal(video.frames, 1 + 2 * (F - 1));
  check("dim_mult [1,2,2,2], 3x3x4 -> 5x24x32", video.data, want.video.d);
  await dec.release();
});

test("spatial tiling matches diffusers tiled_decode (6 tiles with blending), and is a no-op for small frames", async () => {
  const config = parseWanVaeConfig(TINY_VAE_CONFIG);
  const weights = randomVaeWeights(config, 21);
  const dec = await WanVaeDecoder.create(config, mapVaeSource(weights), { threads: 1 });
  const ref = new RefWanVaeDecoder(config, (k) => weights.get(k)!);
  const [C, F, H, W] = [4, 2, 6, 9];
  const latents = randomArray(C * F * H * W, rng(17));
  const tile = { sampleHeight: 32, sampleWidth: 32, strideHeight: 24, strideWidth: 24 };
  let chunks = 0, total = 0;
  const tiled = await dec.decode(latents, [C, F, H, W], { tile, onChunk: (d, t) => { chunks = d; total = t; } });
  assert.equal(total, 2 * 3 * F);
  assert.equal(chunks, total);
  const want = ref.tiledDecode(latents, F, H, W, { sampleH: 32, sampleW: 32, strideH: 24, strideW: 24 });
  assert.deepEqual([tiled.frames, tiled.height, tiled.width], [want.t, want.h, want.w]);
  check("tiled 2x6x9, tiles 32 px, stride 24", tiled.data, want.d);
  // tiles larger than the frame: the untiled path, bit for bit
  const small = randomArray(C * 2 * 3 * 4, rng(2));
  const a = await dec.decode(small, [C, 2, 3, 4], { tile: true });
  const b = await dec.decode(small, [C, 2, 3, 4]);
  assert.deepEqual(a.data, b.data);
  await rejectsWith(() => dec.decode(latents, [C, F, H, W], { tile: { sampleHeight: 30 } }), "USAGE", /multiple of 8/);
  await rejectsWith(() => dec.decode(latents, [C, F, H, W], { tile: { sampleHeight: 16, strideHeight: 24 } }), "USAGE", /stride/);
  await dec.release();
});

test("bad latents: channels != z_dim, wrong dims, wrong length -> MixCacheError with a fix", async () => {
  const config = parseWanVaeConfig(TINY_VAE_CONFIG);
  const dec = await WanVaeDecoder.create(config, mapVaeSource(randomVaeWeights(config, 1)), { threads: 1 });
  const x = new Float32Array(5 * 2 * 3 * 4);
  await rejectsWith(() => dec.decode(x, [5, 2, 3, 4]), "USAGE", /5 channels but this VAE's z_dim is 4/);
  await rejectsWith(() => dec.decode(x, [2, 3, 4]), "USAGE", /\[C, F, H, W\]/);
  await rejectsWith(() => dec.decode(x, [2, 4, 2, 3, 4]), "USAGE", /batch 2/);
  await rejectsWith(() => dec.decode(x, [4, 2, 3.5, 4]), "USAGE", /positive integers/);
  await rejectsWith(() => dec.decode(x, [4, 2, 3, 4]), "USAGE", /hold 120 values but dims \[4,2,3,4\] need 96/);
  await rejectsWith(() => dec.decode(new Float64Array(96) as unknown as Float32Array, [4, 2, 3, 4]), "USAGE", /Float32Array/);
  await dec.release();
});

test("bad checkpoints and configs -> WeightsError / ConfigError naming the key or field, with a fix", async () => {
  const dirs: string[] = [];
  const tiny = (o: Parameters<typeof writeTinyWanVae>[0]) => {
    const t = writeTinyWanVae(o);
    dirs.push(t.dir);
    return t.dir;
  };
  try {
    const missing = tiny({ mutate: (m) => m.delete("decoder.up_blocks.1.resnets.0.conv_shortcut.weight") });
    await rejectsWith(() => loadWanVaeDecoder(missing), "WEIGHTS", /1 missing:\n\s+decoder\.up_blocks\.1\.resnets\.0\.conv_shortcut\.weight \(expected shape \[32, 16, 1, 1, 1\]\)/);
    const shape = tiny({ mutate: (m) => m.set("decoder.conv_out.weight", { shape: [3, 8, 3, 3, 1], data: new Float32Array(216) }) });
    await rejectsWith(() => loadWanVaeDecoder(shape), "WEIGHTS", /decoder\.conv_out\.weight .*expected \[3, 8, 3, 3, 3\], got \[3, 8, 3, 3, 1\]/);
    const extra = tiny({ mutate: (m) => m.set("decoder.up_blocks.3.upsamplers.0.resample.1.bias", { shape: [4], data: new Float32Array(4) }) });
    await rejectsWith(() => loadWanVaeDecoder(extra), "WEIGHTS", /decoder key\(s\) this config does not have: decoder\.up_blocks\.3\.upsamplers/);
    // encoder keys are ignored: dropping one still loads
    const noEnc = tiny({ mutate: (m) => m.delete("encoder.conv_in.weight") });
    await (await loadWanVaeDecoder(join(noEnc, "vae"), { threads: 1 })).release();
    await rejectsWith(() => loadWanVaeDecoder(join(noEnc, "nope")), "CONFIG", /no VAE found/);
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
  const bad = (o: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => parseWanVaeConfig({ ...TINY_VAE_CONFIG, ...o }), (e: unknown) => e instanceof MixCacheError && e.code === "CONFIG" && re.test(e.message) && !!e.fix);
  bad({ is_residual: true }, /Wan2\.2/);
  bad({ temperal_downsample: [false, true] }, /temperal_downsample has 2 entries but dim_mult has 4/);
  bad({ latents_mean: [0, 0, 0] }, /latents_mean must be 4 finite numbers/);
  bad({ latents_std: [1, 1, 0, 1] }, /latents_std must be positive/);
  bad({ z_dims: 4 }, /unknown field "z_dims"[\s\S]*did you mean z_dim/);
  bad({ attn_scales: [0.5] }, /attn_scales/);
  bad({ scale_factor_spatial: 16 }, /scale_factor_spatial = 16 but the structure .* gives 8/);
  bad({ _class_name: "AutoencoderKL" }, /not AutoencoderKLWan/);
  assert.doesNotThrow(() => parseWanVaeConfig({ ...TINY_VAE_CONFIG, is_residual: false, patch_size: null, scale_factor_spatial: 8, scale_factor_temporal: 4, in_channels: 3, out_channels: 3 }));
  const config = parseWanVaeConfig(TINY_VAE_CONFIG);
  const w = randomVaeWeights(config, 1);
  w.set("decoder.conv_in.bias", new Float32Array(3));
  await rejectsWith(() => WanVaeDecoder.create(config, mapVaeSource(w), { threads: 1 }), "CONFIG", /decoder\.conv_in\.bias has 3 values, expected shape \[32\]/);
  w.delete("decoder.conv_in.bias");
  await rejectsWith(() => WanVaeDecoder.create(config, mapVaeSource(w), { threads: 1 }), "WEIGHTS", /decoder\.conv_in\.bias/);
});
