/**
 * float16 compute for the Wan transformer blocks (`--dtype float16`): the float32 -> float16
 * conversion against the IEEE rules, the float16 linear layer against float32 within float16's
 * precision, and a tiny Wan model and full pipeline end to end against their float32 runs (max
 * differences printed). Memory estimates count the halved weights.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { existsSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { halfBits, halfToNumber, toHalf } from "../src/tensor/f16.ts";
import { Graph } from "../src/graph/builder.ts";
import { linear } from "../src/graph/layers.ts";
import { WanModel, mapSource } from "../src/models/wan/model.ts";
import { estimateMemory, weightBytes, blockLinearParams } from "../src/models/wan/memory.ts";
import { parameterCount } from "../src/models/wan/config.ts";
import { loadModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { randomArray, rng, tinyWan } from "./support/randomWeights.ts";
import { writeTinyWanPipeline } from "./support/writeTinyWanPipeline.ts";
import { writeTinyHunyuan } from "./support/writeTinyHunyuan.ts";
import { checkClose } from "./support/compare.ts";
import { tempDir } from "./support/tmp.ts";

test("float32 -> float16: exact on every float16 value, ties to even, overflow, subnormals, signed zero, NaN", () => {
  // every finite float16 value converts back to its own bits
  for (let h = 0; h < 0x10000; h++) {
    const x = halfToNumber(h);
    if (Number.isNaN(x)) continue;
    assert.equal(halfBits(x), h, `0x${h.toString(16)} (${x})`);
  }
  assert.equal(halfBits(1), 0x3c00);
  assert.equal(halfBits(65504), 0x7bff);
  assert.equal(halfBits(65520), 0x7c00, "halfway past the largest finite value rounds to infinity");
  assert.equal(halfBits(65519.99), 0x7bff);
  assert.equal(halfBits(-Infinity), 0xfc00);
  assert.ok((halfBits(NaN) & 0x7c00) === 0x7c00 && (halfBits(NaN) & 0x3ff) !== 0);
  assert.equal(halfBits(-0), 0x8000);
  assert.equal(halfBits(1 + 2 ** -11), 0x3c00, "a tie rounds to the even neighbour (down)");
  assert.equal(halfBits(1 + 3 * 2 ** -11), 0x3c02, "a tie rounds to the even neighbour (up)");
  assert.equal(halfBits(2 ** -24), 0x0001, "smallest subnormal");
  assert.equal(halfBits(2 ** -25), 0x0000, "half the smallest subnormal: a tie, to even (zero)");
  assert.equal(halfBits(1.5 * 2 ** -25), 0x0001);
  assert.equal(halfBits(2 ** -14 - 2 ** -25), 0x0400, "the largest subnormal rounds up into the normals");
  // random values: the result is a nearest float16 value
  const r = rng(5);
  for (let i = 0; i < 20000; i++) {
    const x = Math.fround((r() * 2 - 1) * 2 ** Math.floor(r() * 40 - 26));
    const h = halfBits(x);
    const v = halfToNumber(h);
    const up = halfToNumber(h + 1 > 0x7bff && h < 0x8000 ? h : h + 1);
    const down = halfToNumber((h & 0x7fff) === 0 ? h : h - 1);
    assert.ok(Math.abs(v - x) <= Math.abs(up - x) && Math.abs(v - x) <= Math.abs(down - x), `${x} -> ${v}`);
  }
  assert.deepEqual(Array.from(toHalf(Float32Array.from([0.5, -2, 3]))), [0x3800, 0xc000, 0x4200]);
});

test("a float16 linear layer equals float32 within float16 precision, and exactly on float16-exact inputs", async () => {
  const r = rng(3);
  const [M, K, N] = [16, 64, 48];
  const run = async (dtype: "float32" | "float16", x: Float32Array, w: Float32Array, b: Float32Array) => {
    const g = new Graph("lin");
    g.linearDtype = dtype;
    g.output(linear(g, g.input("x", [M, K]), "l", w, b, N, K), "y", [M, N]);
    const s = await ort.InferenceSession.create(g.toModel(), { executionProviders: ["cpu"], intraOpNumThreads: 1 });
    const y = (await s.run({ x: new ort.Tensor("float32", x, [M, K]) })).y.data as Float32Array;
    await s.release();
    return y;
  };
  const x = randomArray(M * K, r), w = randomArray(N * K, r), b = randomArray(N, r);
  const full = await run("float32", x, w, b);
  checkClose("float16 linear vs float32", await run("float16", x, w, b), full, 1e-3, 28);
  // small integers are exact in float16, and so is their product sum (|sum| < 2048): no rounding anywhere
  const xi = Float32Array.from({ length: M * K }, () => Math.floor(r() * 5) - 2);
  const wi = Float32Array.from({ length: N * K }, () => Math.floor(r() * 5) - 2);
  assert.deepEqual(await run("float16", xi, wi, b), await run("float32", xi, wi, b));
  // the weight initializer is float16: the model is about half the bytes
  const size = (dtype: "float32" | "float16") => {
    const g = new Graph("lin");
    g.linearDtype = dtype;
    g.output(linear(g, g.input("x", [M, K]), "l", w, null, N, K), "y", [M, N]);
    return g.toModel().byteLength;
  };
  assert.ok(size("float16") < 0.55 * size("float32"), `${size("float16")} vs ${size("float32")} bytes`);
});

test("tiny Wan: float16 blocks follow the float32 forward and denoising run closely", async () => {
  const { config, weights } = tinyWan(5, { num_layers: 3 });
  const m32 = await WanModel.load(config, mapSource(weights), { threads: 1 });
  const m16 = await WanModel.load(config, mapSource(weights), { threads: 1, graphs: { dtype: "float16" } });
  const r = rng(4);
  const S = 5;
  const cond = { data: randomArray(S * config.text_dim, r), tokens: S };
  const uncond = { data: randomArray(S * config.text_dim, r), tokens: S };
  const shape = { channels: config.in_channels, frames: 2, height: 6, width: 4 };
  const { denoise } = await import("../src/pipeline/denoise.ts");
  const base = { cond, uncond, shape, steps: 6, guidance: 4, shift: 3, seed: 3, sampler: "unipc" as const };
  const a = await denoise({ ...base, model: m32 });
  const b = await denoise({ ...base, model: m16 });
  checkClose("tiny Wan, 6 steps: float16 vs float32", b.latent, a.latent, 2e-3, 40);
  assert.notDeepEqual(b.latent, a.latent, "the float16 graphs really ran");
  assert.deepEqual((await denoise({ ...base, model: m16 })).latent, b.latent, "float16 repeats bit for bit");
  await m32.release();
  await m16.release();
});

test("memory estimates: float16 counts the float16 weights and the widened copy the CPU provider keeps", () => {
  const { config } = tinyWan(1, { num_layers: 4, ffn_dim: 96 });
  assert.equal(weightBytes(config), 4 * parameterCount(config));
  assert.equal(weightBytes(config, "float16"), 4 * parameterCount(config) + 2 * blockLinearParams(config));
  const lat = { channels: 4, frames: 2, height: 8, width: 8 };
  assert.ok(estimateMemory(config, lat, 1, 512, "float16").weights > estimateMemory(config, lat, 1, 512).weights);
  // Wan2.1-1.3B: 1.42B parameters, 1.39B (98%) of them in the blocks' linear layers
  const wan13 = { ...config, num_attention_heads: 12, attention_head_dim: 128, ffn_dim: 8960, num_layers: 30, text_dim: 4096, freq_dim: 256, in_channels: 16, out_channels: 16 };
  assert.ok(blockLinearParams(wan13) / parameterCount(wan13) > 0.9);
});

test("generate --dtype float16 on a tiny full Wan folder; bad values and HunyuanVideo refused before loading", async () => {
  const pipe = writeTinyWanPipeline({ seed: 7 });
  const run = (dtype?: "float16") => loadModel(pipe.dir, { threads: 1, dtype }).then(async (m) => {
    const r = await generate({ model: m, prompt: "a red ball", ...pipe.video, frames: 5, steps: 4, seed: 1 } as Parameters<typeof generate>[0]);
    await m.release();
    return r;
  });
  const a = await run(), b = await run("float16");
  checkClose("tiny pipeline video: float16 vs float32", b.video.data, a.video.data, 5e-3, 40);
  assert.notDeepEqual(b.latent.data, a.latent.data);
  const out = join(tempDir("mixcache-fp16-"), "v.safetensors");
  const cli = (args: string[]) => spawnSync(process.execPath, ["bin/mixcache.js", ...args], { encoding: "utf8", timeout: 120_000 });
  const ok = cli(["generate", "--model", pipe.dir, "a red ball", "--frames", "5", "--height", "32", "--width", "32", "--steps", "3", "--dtype", "float16", "--out", out]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(existsSync(out));
  const bad = cli(["generate", "--model", pipe.dir, "a red ball", "--dtype", "bf16", "--out", join(tempDir("mixcache-fp16-"), "x.safetensors")]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown dtype "bf16"[\s\S]*float32, float16/);
  const hy = writeTinyHunyuan({ seed: 2 });
  await assert.rejects(loadModel(hy.dir, { dtype: "float16" }), /float16 compute is built for Wan transformers only/);
});
