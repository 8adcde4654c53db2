/**
 * HunyuanVideo VAE decoder (src/models/hunyuan-vae/) against the float64 reference
 * (test/support/hunyuanVaeReference.ts: diffusers' decoder, _decode dispatch, temporal and spatial
 * tiled decodes, written literally), on tiny random checkpoints in the diffusers folder layout
 * (test/support/writeTinyHunyuanVae.ts).
 *
 * Tolerance: max |diff| <= 1e-4 x (1 + max |ref|) for every unit output of every pass and for the
 * clamped video (fp32 weights); 2e-4 for fp16 / bf16 checkpoints (the reference reads the same
 * rounded weights). The ONNX side is fp32; measured differences are ~1e-6.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { MixCacheError } from "../src/errors.ts";
import {
  decodedFrames, decoderParameterCount, decoderPassMacs, decoderShapes, decoderUnits, hunyuanVaeConfig, parseHunyuanVaeConfig,
  spatialScale, temporalScale,
} from "../src/models/hunyuan-vae/config.ts";
import {
  HunyuanVaeDecoder, checkHunyuanVaeFolder, hunyuanDecodePassCount, hunyuanDecodePasses, hunyuanVaeDecodePeakBytes, loadHunyuanVaeDecoder, mapVaeSource,
} from "../src/models/hunyuan-vae/decoder.ts";
import { maxDiff } from "./support/compare.ts";
import { RefHunyuanVaeDecoder, type T4 } from "./support/hunyuanVaeReference.ts";
import { randomArray, rng } from "./support/randomWeights.ts";
import { TINY_HUNYUAN_VAE_CONFIG, randomHunyuanVaeWeights, writeTinyHunyuanVae } from "./support/writeTinyHunyuanVae.ts";

const TOL = 1e-4;

function check(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = TOL, extra = ""): number {
  const { diff, scale } = maxDiff(got, want);
  console.log(`  ${name.padEnd(52)} max|diff| ${diff.toExponential(2)}  (tol ${(tol * (1 + scale)).toExponential(1)}, max|ref| ${scale.toFixed(3)})${extra}`);
  assert.ok(diff <= tol * (1 + scale), `${name}: max diff ${diff} > ${tol} x (1 + ${scale})`);
  return diff;
}

const dimsOf = (t: T4) => [1, t.c, t.t, t.h, t.w];
const clampedShare = (raw: T4) => `  [${((100 * raw.d.filter((v) => Math.abs(v) > 1).length) / raw.d.length).toFixed(1)}% clamped]`;

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

function tinyDecoder(overrides: Record<string, unknown> = {}, seed = 9) {
  const config = parseHunyuanVaeConfig({ ...TINY_HUNYUAN_VAE_CONFIG, ...overrides });
  const weights = randomHunyuanVaeWeights(config, seed);
  return { config, weights, ref: new RefHunyuanVaeDecoder(config, (k) => weights.get(k)!) };
}

test("config: the real HunyuanVideo VAE decoder layout, key names and sizes", () => {
  const c = hunyuanVaeConfig();
  const DOWN = "HunyuanVideoDownBlock3D", UP = "HunyuanVideoUpBlock3D";
  // hunyuanvideo-community/HunyuanVideo vae/config.json
  const real = parseHunyuanVaeConfig({
    _class_name: "AutoencoderKLHunyuanVideo", _diffusers_version: "0.32.0.dev0", act_fn: "silu", block_out_channels: [128, 256, 512, 512],
    down_block_types: [DOWN, DOWN, DOWN, DOWN], in_channels: 3, latent_channels: 16, layers_per_block: 2, mid_block_add_attention: true,
    norm_num_groups: 32, out_channels: 3, scaling_factor: 0.476986, spatial_compression_ratio: 8, temporal_compression_ratio: 4, up_block_types: [UP, UP, UP, UP],
  });
  assert.deepEqual(real, c);
  const shapes = decoderShapes(c);
  const expect: Record<string, number[]> = {
    "post_quant_conv.weight": [16, 16, 1, 1, 1],
    "decoder.conv_in.conv.weight": [512, 16, 3, 3, 3],
    "decoder.mid_block.resnets.0.norm1.weight": [512],
    "decoder.mid_block.resnets.0.conv1.conv.weight": [512, 512, 3, 3, 3],
    "decoder.mid_block.attentions.0.group_norm.bias": [512],
    "decoder.mid_block.attentions.0.to_q.weight": [512, 512],
    "decoder.mid_block.attentions.0.to_out.0.bias": [512],
    "decoder.up_blocks.0.upsamplers.0.conv.conv.weight": [512, 512, 3, 3, 3],
    "decoder.up_blocks.2.resnets.0.conv_shortcut.conv.weight": [256, 512, 1, 1, 1],
    "decoder.up_blocks.2.upsamplers.0.conv.conv.bias": [256],
    "decoder.up_blocks.3.resnets.0.conv1.conv.weight": [128, 256, 3, 3, 3],
    "decoder.up_blocks.3.resnets.2.conv2.conv.weight": [128, 128, 3, 3, 3],
    "decoder.conv_norm_out.weight": [128],
    "decoder.conv_out.conv.weight": [3, 128, 3, 3, 3],
  };
  for (const [k, s] of Object.entries(expect)) assert.deepEqual(shapes.get(k), s, k);
  assert.deepEqual([...shapes.keys()].filter((k) => k.includes("conv_shortcut.conv.weight")), [
    "decoder.up_blocks.2.resnets.0.conv_shortcut.conv.weight",
    "decoder.up_blocks.3.resnets.0.conv_shortcut.conv.weight",
  ]);
  assert.ok(![...shapes.keys()].some((k) => k.startsWith("decoder.up_blocks.3.upsamplers")));
  const ups = decoderUnits(c).filter((u) => u.kind === "up").map((u) => (u.kind === "up" ? `${u.name}:${u.time ? "t" : ""}${u.space ? "s" : ""}` : ""));
  assert.deepEqual(ups, ["decoder.up_blocks.0.upsamplers.0:s", "decoder.up_blocks.1.upsamplers.0:ts", "decoder.up_blocks.2.upsamplers.0:ts"]);
  assert.equal(decoderUnits(c).length, 20);
  assert.equal(shapes.size, 140);
  assert.equal(decoderParameterCount(c), 146_136_339);
  assert.equal(spatialScale(c), 8);
  assert.equal(temporalScale(c), 4);
  assert.equal(decodedFrames(c, 33), 129);
  console.log(`  real decoder: ${(decoderParameterCount(c) / 1e6).toFixed(1)}M params; one pass of 5 latent frames at 256x256 px: ${(decoderPassMacs(c, 5, 32, 32) / 1e12).toFixed(2)} TMAC`);
  const est = (o: object) => (hunyuanVaeDecodePeakBytes(c, { frames: 33, height: 90, width: 160 }, o) / 2 ** 30).toFixed(1);
  console.log(`  memory estimate, 129 x 720 x 1280: framewise ${est({})} GiB, framewise + tile ${est({ tile: true })} GiB, one pass ${est({ framewise: false })} GiB`);
  assert.ok(hunyuanVaeDecodePeakBytes(c, { frames: 33, height: 90, width: 160 }, { tile: true }) < hunyuanVaeDecodePeakBytes(c, { frames: 33, height: 90, width: 160 }));
  assert.ok(hunyuanVaeDecodePeakBytes(c, { frames: 33, height: 90, width: 160 }) < hunyuanVaeDecodePeakBytes(c, { frames: 33, height: 90, width: 160 }, { framewise: false }));
  // diffusers defaults: 4 latent frames decode in one pass; 33 in pieces [0,5), [3,8), ..., [30,33)
  assert.equal(hunyuanDecodePassCount(c, 4, 90, 160), 1);
  assert.equal(hunyuanDecodePassCount(c, 33, 90, 160), 11);
  assert.equal(hunyuanDecodePassCount(c, 33, 90, 160, { tile: true }), 11 * 4 * 7);
  assert.equal(hunyuanDecodePassCount(c, 33, 90, 160, { framewise: false }), 1);
});

test("tiny diffusers folder: per-unit and end-to-end parity, 3 latent frames of 4x6 -> 9 frames of 32x48", async () => {
  const tiny = writeTinyHunyuanVae({ seed: 5 });
  try {
    const dec = await loadHunyuanVaeDecoder(tiny.dir, { threads: 1 });
    assert.equal(dec.stageNames.length, 20);
    const [C, F, H, W] = [4, 3, 4, 6];
    const latents = randomArray(C * F * H * W, rng(3));
    const ref = new RefHunyuanVaeDecoder(tiny.config, (k) => tiny.weights.get(k)!);
    const refTrace = new Map<string, T4>();
    const want = ref.decode(latents, F, H, W, {}, (n, p, x) => refTrace.set(`${n}@${p}`, x));
    const perUnit = new Map<string, { diff: number; scale: number }>();
    let passes = 0;
    const video = await dec.decode(latents, [C, F, H, W], {
      onChunk: (d, t) => {
        passes = d;
        assert.equal(t, 1);
      },
      trace: (name, p, data, dims) => {
        const r = refTrace.get(`${name}@${p}`);
        assert.ok(r, `reference has no ${name}@${p}`);
        assert.deepEqual(dims, dimsOf(r), `${name} dims`);
        perUnit.set(name, maxDiff(data, r.d));
      },
    });
    assert.equal(passes, 1);
    assert.equal(perUnit.size, refTrace.size);
    for (const [name, { diff, scale }] of perUnit) {
      console.log(`  ${name.padEnd(52)} max|diff| ${diff.toExponential(2)}  (tol ${(TOL * (1 + scale)).toExponential(1)}, max|ref| ${scale.toFixed(2)})`);
      assert.ok(diff <= TOL * (1 + scale), `${name}: ${diff}`);
    }
    assert.deepEqual([video.channels, video.frames, video.height, video.width], [3, 9, 32, 48]);
    assert.equal(video.frames, dec.framesFor(F));
    check("end to end (clamped video)", video.data, want.video.d, TOL, clampedShare(want.raw));
    assert.ok(video.data.every((v) => v >= -1 && v <= 1));
    await dec.release();
  } finally {
    rmSync(tiny.dir, { recursive: true, force: true });
  }
});

test("framewise pieces match diffusers _temporal_tiled_decode; one pass is the exact single-pass decode", async () => {
  const { config, weights, ref } = tinyDecoder();
  const dec = await HunyuanVaeDecoder.create(config, mapVaeSource(weights), { threads: 1 });
  const C = 4;
  // 7 latent frames, diffusers defaults: pieces [0,5) and [3,7) ([6,7) would only give its dropped frame)
  {
    const [F, H, W] = [7, 2, 3];
    const latents = randomArray(C * F * H * W, rng(11));
    let passes = 0;
    const got = await dec.decode(latents, [C, F, H, W], { onChunk: (d) => (passes = d) });
    assert.equal(passes, 2);
    assert.equal(hunyuanDecodePassCount(config, F, H, W), 2);
    const want = ref.decode(latents, F, H, W);
    assert.deepEqual([got.frames, got.height, got.width], [want.video.t, want.video.h, want.video.w]);
    assert.equal(got.frames, 25);
    check("framewise (defaults 16/12), 7 frames, 2 pieces", got.data, want.video.d, TOL, clampedShare(want.raw));
    const one = await dec.decode(latents, [C, F, H, W], { framewise: false });
    const wantOne = ref.decode(latents, F, H, W, { framewise: false });
    check("framewise: false, one pass over 7 frames", one.data, wantOne.video.d);
    const { diff } = maxDiff(got.data, one.data);
    console.log(`  pieces vs one pass (diffusers' approximation, not a bug): max|diff| ${diff.toExponential(2)}`);
    assert.ok(diff > 1e-3, "the GroupNorm statistics differ per piece, so the pieces cannot equal one pass");
  }
  // shorter pieces: sampleFrames 8 / stride 4 -> pieces of 3 latent frames every frame
  {
    const [F, H, W] = [5, 2, 2];
    const latents = randomArray(C * F * H * W, rng(12));
    let passes = 0;
    const got = await dec.decode(latents, [C, F, H, W], { framewise: { sampleFrames: 8, strideFrames: 4 }, onChunk: (d) => (passes = d) });
    assert.equal(passes, 4);
    const want = ref.decode(latents, F, H, W, { tileSampleMinNumFrames: 8, tileSampleStrideNumFrames: 4 });
    check("framewise 8/4, 5 frames, 4 pieces", got.data, want.video.d);
  }
  // up to 4 latent frames the default is one pass, bit for bit
  {
    const latents = randomArray(C * 4 * 2 * 2, rng(13));
    const a = await dec.decode(latents, [C, 4, 2, 2]);
    const b = await dec.decode(latents, [C, 4, 2, 2], { framewise: false });
    assert.deepEqual(a.data, b.data);
  }
  await rejectsWith(() => dec.decode(new Float32Array(C * 8), [C, 2, 2, 2], { framewise: { sampleFrames: 10 } }), "USAGE", /multiple of 4/);
  await rejectsWith(() => dec.decode(new Float32Array(C * 8), [C, 2, 2, 2], { framewise: { sampleFrames: 8, strideFrames: 12 } }), "USAGE", /strideFrames/);
  await dec.release();
});

test("spatial tiling matches diffusers tiled_decode, alone and inside framewise pieces; a no-op for small frames", async () => {
  const { config, weights, ref } = tinyDecoder({}, 21);
  const dec = await HunyuanVaeDecoder.create(config, mapVaeSource(weights), { threads: 1 });
  const C = 4;
  const tile = { sampleHeight: 24, sampleWidth: 24, strideHeight: 16, strideWidth: 16 };
  const refTile = { tiling: true, tileSampleMinHeight: 24, tileSampleMinWidth: 24, tileSampleStrideHeight: 16, tileSampleStrideWidth: 16 };
  {
    const [F, H, W] = [2, 4, 5];
    const latents = randomArray(C * F * H * W, rng(17));
    let passes = 0, total = 0;
    const got = await dec.decode(latents, [C, F, H, W], { tile, onChunk: (d, t) => ((passes = d), (total = t)) });
    assert.equal(total, 2 * 3);
    assert.equal(passes, total);
    assert.deepEqual(hunyuanDecodePasses(config, F, H, W, { tile }).map((p) => `${p.frames}x${p.height}x${p.width}`), ["2x3x3", "2x3x3", "2x3x1", "2x2x3", "2x2x3", "2x2x1"]);
    const want = ref.decode(latents, F, H, W, refTile);
    assert.deepEqual([got.frames, got.height, got.width], [want.video.t, want.video.h, want.video.w]);
    check("tiled 2x4x5, tiles 24 px, stride 16 (6 tiles)", got.data, want.video.d, TOL, clampedShare(want.raw));
  }
  {
    const [F, H, W] = [6, 3, 4];
    const latents = randomArray(C * F * H * W, rng(18));
    let total = 0;
    const got = await dec.decode(latents, [C, F, H, W], { tile, onChunk: (_d, t) => (total = t) });
    assert.equal(total, 2 * 2 * 2);
    const want = ref.decode(latents, F, H, W, refTile);
    check("framewise pieces x tiles, 6x3x4 (2 pieces x 4 tiles)", got.data, want.video.d);
  }
  // tiles larger than the frame: the untiled path, bit for bit
  const small = randomArray(C * 2 * 3 * 4, rng(2));
  const a = await dec.decode(small, [C, 2, 3, 4], { tile: true });
  const b = await dec.decode(small, [C, 2, 3, 4]);
  assert.deepEqual(a.data, b.data);
  await rejectsWith(() => dec.decode(small, [C, 2, 3, 4], { tile: { sampleHeight: 30 } }), "USAGE", /multiple of 8/);
  await rejectsWith(() => dec.decode(small, [C, 2, 3, 4], { tile: { sampleHeight: 16, strideHeight: 24 } }), "USAGE", /stride/);
  await dec.release();
});

test("another structure: 3 blocks, spatial ratio 4, 1 layer per block, no mid attention; raw latents; batch dims", async () => {
  const { config, weights, ref } = tinyDecoder({ block_out_channels: [8, 8, 16], down_block_types: Array(3).fill("HunyuanVideoDownBlock3D"), up_block_types: Array(3).fill("HunyuanVideoUpBlock3D"), layers_per_block: 1, mid_block_add_attention: false, spatial_compression_ratio: 4 }, 31);
  assert.ok(!decoderUnits(config).some((u) => u.kind === "attn"));
  assert.deepEqual(decoderUnits(config).filter((u) => u.kind === "up").map((u) => u.kind === "up" && u.time && u.space), [true, true]);
  const dec = await HunyuanVaeDecoder.create(config, mapVaeSource(weights), { threads: 1 });
  const [C, F, H, W] = [4, 3, 3, 5];
  const z = randomArray(C * F * H * W, rng(4));
  const got = await dec.decode(z, [1, C, F, H, W], { denormalize: false });
  assert.deepEqual([got.frames, got.height, got.width], [9, 12, 20]);
  // denormalize: false means z is already latents / scaling_factor: the reference scales, so pre-multiply
  const want = ref.decode(z.map((v) => v * config.scaling_factor), F, H, W);
  check("3 blocks, ratio 4, raw z, 3x3x5 -> 9x12x20", got.data, want.video.d);
  await dec.release();
});

test("fp16 and bf16 checkpoints load and decode like the reference on the same rounded weights", async () => {
  for (const dtype of ["F16", "BF16"] as const) {
    const tiny = writeTinyHunyuanVae({ seed: 7, dtype });
    try {
      const { config } = checkHunyuanVaeFolder(tiny.dir);
      assert.deepEqual(config, tiny.config);
      const dec = await HunyuanVaeDecoder.load(tiny.dir, { threads: 1 });
      const [C, F, H, W] = [4, 2, 3, 3];
      const latents = randomArray(C * F * H * W, rng(5));
      const got = await dec.decode(latents, [C, F, H, W]);
      const want = new RefHunyuanVaeDecoder(tiny.config, (k) => tiny.weights.get(k)!).decode(latents, F, H, W);
      check(`${dtype} checkpoint, 2x3x3`, got.data, want.video.d, 2e-4);
      await dec.release();
    } finally {
      rmSync(tiny.dir, { recursive: true, force: true });
    }
  }
});

test("bad latents: channels != latent_channels, wrong dims, wrong length -> MixCacheError with a fix", async () => {
  const { config, weights } = tinyDecoder();
  const dec = await HunyuanVaeDecoder.create(config, mapVaeSource(weights), { threads: 1 });
  const x = new Float32Array(5 * 2 * 3 * 4);
  await rejectsWith(() => dec.decode(x, [5, 2, 3, 4]), "USAGE", /5 channels but this VAE's latent_channels is 4/);
  await rejectsWith(() => dec.decode(x, [2, 3, 4]), "USAGE", /\[C, F, H, W\]/);
  await rejectsWith(() => dec.decode(x, [2, 4, 2, 3, 4]), "USAGE", /batch 2/);
  await rejectsWith(() => dec.decode(x, [4, 2, 3.5, 4]), "USAGE", /positive integers/);
  await rejectsWith(() => dec.decode(x, [4, 2, 3, 4]), "USAGE", /hold 120 values but dims \[4,2,3,4\] need 96/);
  await rejectsWith(() => dec.decode(new Float64Array(96) as unknown as Float32Array, [4, 2, 3, 4]), "USAGE", /Float32Array/);
  await dec.release();
});

test("bad checkpoints and configs -> WeightsError / ConfigError naming the key or field, with a fix", async () => {
  const dirs: string[] = [];
  const tiny = (o: Parameters<typeof writeTinyHunyuanVae>[0]) => {
    const t = writeTinyHunyuanVae(o);
    dirs.push(t.dir);
    return t.dir;
  };
  try {
    const missing = tiny({ mutate: (m) => m.delete("decoder.up_blocks.2.resnets.0.conv_shortcut.conv.weight") });
    assert.throws(() => checkHunyuanVaeFolder(missing), (e: unknown) => e instanceof MixCacheError && e.code === "WEIGHTS" && /conv_shortcut/.test(e.message));
    await rejectsWith(() => loadHunyuanVaeDecoder(missing), "WEIGHTS", /1 missing:\n\s+decoder\.up_blocks\.2\.resnets\.0\.conv_shortcut\.conv\.weight \(expected shape \[16, 32, 1, 1, 1\]\)/);
    const shape = tiny({ mutate: (m) => m.set("decoder.conv_out.conv.weight", { shape: [3, 8, 3, 3, 1], data: new Float32Array(216) }) });
    await rejectsWith(() => loadHunyuanVaeDecoder(shape), "WEIGHTS", /decoder\.conv_out\.conv\.weight .*expected \[3, 8, 3, 3, 3\], got \[3, 8, 3, 3, 1\]/);
    const extra = tiny({ mutate: (m) => m.set("decoder.up_blocks.3.upsamplers.0.conv.conv.bias", { shape: [8], data: new Float32Array(8) }) });
    await rejectsWith(() => loadHunyuanVaeDecoder(extra), "WEIGHTS", /decoder key\(s\) this config does not have: decoder\.up_blocks\.3\.upsamplers/);
    // a checkpoint with the attention against a config without it
    const noAttn = tiny({ overrides: { mid_block_add_attention: false }, mutate: (m) => m.set("decoder.mid_block.attentions.0.to_q.weight", { shape: [32, 32], data: new Float32Array(1024) }) });
    await rejectsWith(() => loadHunyuanVaeDecoder(noAttn), "WEIGHTS", /attentions\.0\.to_q/);
    // encoder keys are ignored: dropping one still loads; the vae folder itself is accepted
    const noEnc = tiny({ mutate: (m) => m.delete("encoder.conv_in.conv.weight") });
    await (await loadHunyuanVaeDecoder(join(noEnc, "vae"), { threads: 1 })).release();
    await rejectsWith(() => loadHunyuanVaeDecoder(join(noEnc, "nope")), "CONFIG", /no VAE found/);
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
  const bad = (o: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => parseHunyuanVaeConfig({ ...TINY_HUNYUAN_VAE_CONFIG, ...o }), (e: unknown) => e instanceof MixCacheError && e.code === "CONFIG" && re.test(e.message) && !!e.fix);
  bad({ _class_name: "AutoencoderKLWan" }, /not AutoencoderKLHunyuanVideo/);
  bad({ latent_channel: 4 }, /unknown field "latent_channel"[\s\S]*did you mean latent_channels/);
  bad({ temporal_compression_ratio: 8 }, /temporal_compression_ratio 8 is not supported/);
  bad({ spatial_compression_ratio: 6 }, /power of 2/);
  bad({ spatial_compression_ratio: 32 }, /power of 2 of at most 2\^4/);
  bad({ norm_num_groups: 3 }, /not divisible by norm_num_groups 3/);
  bad({ up_block_types: ["HunyuanVideoUpBlock3D"] }, /one block per entry/);
  bad({ up_block_types: ["UpDecoderBlock2D", "HunyuanVideoUpBlock3D", "HunyuanVideoUpBlock3D", "HunyuanVideoUpBlock3D"] }, /UpDecoderBlock2D/);
  bad({ block_out_channels: [8, 16], up_block_types: Array(2).fill("HunyuanVideoUpBlock3D"), down_block_types: Array(2).fill("HunyuanVideoDownBlock3D") }, /at least 3 up blocks/);
  bad({ act_fn: "gelu" }, /act_fn "gelu"/);
  bad({ scaling_factor: 0 }, /scaling_factor must be a positive number/);
  bad({ layers_per_block: 0 }, /layers_per_block must be a positive integer/);
  bad({ mid_block_add_attention: "yes" }, /mid_block_add_attention must be true or false/);
  assert.doesNotThrow(() => parseHunyuanVaeConfig({ ...TINY_HUNYUAN_VAE_CONFIG, act_fn: "swish", _name_or_path: "x" }));
  const { config, weights } = tinyDecoder();
  weights.set("decoder.conv_in.conv.bias", new Float32Array(3));
  await rejectsWith(() => HunyuanVaeDecoder.create(config, mapVaeSource(weights), { threads: 1 }), "CONFIG", /decoder\.conv_in\.conv\.bias has 3 values, expected shape \[32\]/);
  weights.delete("decoder.conv_in.conv.bias");
  await rejectsWith(() => HunyuanVaeDecoder.create(config, mapVaeSource(weights), { threads: 1 }), "WEIGHTS", /decoder\.conv_in\.conv\.bias/);
});
