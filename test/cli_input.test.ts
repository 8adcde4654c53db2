/**
 * Bad input is refused with a clear error and a fix before any weight loads or any output is
 * written: config and mixcache.json bounds, a memory estimate, option syntax and ranges, cache
 * option keys, stray positionals, output paths, non-finite values in the denoising loop, and the
 * API defaults (a cache reads the model's own profiles; a missing negative embedding is named).
 * Most cases run the CLI in process (test/support/capture.ts); a few spawn bin/mixcache.js.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { tempDir } from "./support/tmp.ts";
import { main } from "../src/cli/main.ts";
import { MixCacheError } from "../src/errors.ts";
import { parseLatent, parseWanConfig } from "../src/models/wan/config.ts";
import { checkMemory, estimateMemory } from "../src/models/wan/memory.ts";
import { loadModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { makeCache } from "../src/cache/registry.ts";
import { evaluationPrompts } from "../src/bench/model-eval.ts";
import { loadVocab } from "../src/data/shapes.ts";
import { writeSafetensors } from "../src/weights/safetensors.ts";
import { expectedShapes } from "../src/models/wan/config.ts";
import { tinyWan } from "./support/randomWeights.ts";
import { makeTinyModelDir } from "./support/tinyModel.ts";
import { capture } from "./support/capture.ts";

const PROMPT = "a red circle moving right on a black background";
const model = makeTinyModelDir(43);
const cli = (args: string[]) => capture(() => main(args));
const spawn = (args: string[]) => spawnSync(process.execPath, ["bin/mixcache.js", ...args], { encoding: "utf8", timeout: 120_000 });
const tmp = () => tempDir("mixcache-input-");

/** A copy of the tiny model whose transformer weights cannot be read: anything that gets past the
 * input checks to the weights fails with a WEIGHTS error, so a usage error proves the order. */
function brokenWeightsModel(edit?: (dir: string) => void): string {
  const dir = tmp();
  cpSync(model, dir, { recursive: true });
  writeFileSync(join(dir, "transformer", "diffusion_pytorch_model.safetensors"), "not a safetensors file");
  edit?.(dir);
  return dir;
}
const editJson = (path: string, f: (o: Record<string, unknown>) => void) => {
  const o = JSON.parse(readFileSync(path, "utf8"));
  f(o);
  writeFileSync(path, JSON.stringify(o));
};

test("config: every integer field has an upper bound; the 14B shape passes", () => {
  assert.equal(parseWanConfig({}).num_layers, 40, "diffusers defaults are the 14B shape");
  parseWanConfig({ in_channels: 36, out_channels: 16 }); // I2V-sized channels are within bounds
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ num_layers: 1e9 }, /num_layers must be an integer in 1\.\.256, got 1000000000/],
    [{ num_attention_heads: 100000 }, /num_attention_heads must be an integer in 1\.\.256/],
    [{ attention_head_dim: 4096 }, /attention_head_dim must be an integer in 1\.\.1024/],
    [{ ffn_dim: 1e7 }, /ffn_dim/],
    [{ text_dim: 1e6 }, /text_dim/],
    [{ freq_dim: 1e5 }, /freq_dim/],
    [{ in_channels: 1e4 }, /in_channels/],
    [{ patch_size: [1, 16, 16] }, /patch_size must be three integers \[t, h, w\] in 1\.\.8/],
    [{ num_attention_heads: 256, attention_head_dim: 512 }, /num_attention_heads x attention_head_dim = 131072 is above 65536/],
    [{ eps: 5 }, /eps must be a number in \(0, 1\)/],
  ];
  for (const [raw, re] of bad) assert.throws(() => parseWanConfig(raw), (e: MixCacheError) => e.code === "CONFIG" && re.test(e.message), JSON.stringify(raw));
});

test("config: `mixcache info` on num_layers 1e9 is a usage error, not an out-of-memory", async () => {
  const dir = brokenWeightsModel((d) => editJson(join(d, "transformer", "config.json"), (o) => (o.num_layers = 1e9)));
  const r = await cli(["info", "--model", dir]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /num_layers must be an integer in 1\.\.256, got 1000000000\n {2}fix: /);
});

test("mixcache.json: the latent size must be positive integers, bounded, divisible by the patch", async () => {
  const c = parseWanConfig({ patch_size: [2, 4, 4], in_channels: 3, out_channels: 3, num_layers: 2, num_attention_heads: 2, attention_head_dim: 12, text_dim: 8, freq_dim: 16, ffn_dim: 16 });
  assert.deepEqual(parseLatent({ channels: 3, frames: 8, height: 32, width: 32 }, c), { channels: 3, frames: 8, height: 32, width: 32 });
  const bad: Array<[unknown, RegExp]> = [
    [{ channels: 3, frames: -8, height: 32, width: 32 }, /frames must be an integer in 1\.\.1024, got -8/],
    [{ channels: 3, frames: 0, height: 32, width: 32 }, /frames must be an integer in 1\.\.1024, got 0/],
    [{ channels: 3, frames: "8", height: 32, width: 32 }, /frames must be an integer in 1\.\.1024, got "8"/],
    [{ channels: 3, frames: 8.5, height: 32, width: 32 }, /frames must be an integer/],
    [{ channels: 3, frames: 8, height: 1e6, width: 32 }, /height must be an integer in 1\.\.4096/],
    [{ channels: 3, frames: 7, height: 32, width: 32 }, /frames 7 is not divisible by the patch size 2/],
    [{ channels: 3, frames: 8, height: 30, width: 32 }, /height 30 is not divisible by the patch size 4/],
    [{ channels: 4, frames: 8, height: 32, width: 32 }, /channels must be an integer in 1\.\.3|channels is 4/],
    [{ channels: 3, frames: 8, height: 32 }, /width must be an integer/],
    [{ channels: 3, frames: 8, height: 32, width: 32, depth: 1 }, /unknown field "depth"/],
    [[8, 32, 32], /expected an object/],
  ];
  for (const [raw, re] of bad) assert.throws(() => parseLatent(raw, c), (e: MixCacheError) => e.code === "CONFIG" && re.test(e.message), JSON.stringify(raw));
  for (const frames of [-8, 0, "8"]) {
    const dir = brokenWeightsModel((d) => editJson(join(d, "mixcache.json"), (o) => ((o.latent as Record<string, unknown>).frames = frames)));
    const r = await cli(["info", "--model", dir]);
    assert.equal(r.code, 2, `frames ${JSON.stringify(frames)}: ${r.err}`);
    assert.match(r.err, /mixcache\.json: latent: frames must be an integer in 1\.\.1024/);
  }
  const dir = brokenWeightsModel((d) => editJson(join(d, "mixcache.json"), (o) => ((o.defaults as Record<string, unknown>).steps = "50")));
  assert.match((await cli(["info", "--model", dir])).err, /defaults\.steps must be an integer in 1\.\.1000, got "50"/);
});

test("memory: a latent that cannot fit is refused with the estimate before any weight loads", async () => {
  const c = parseWanConfig({ patch_size: [1, 2, 2], in_channels: 3, out_channels: 3, num_layers: 4, num_attention_heads: 2, attention_head_dim: 12, text_dim: 10, freq_dim: 16, ffn_dim: 40 });
  const small = estimateMemory(c, { channels: 3, frames: 3, height: 32, width: 32 }, 1);
  const big = estimateMemory(c, { channels: 3, frames: 3, height: 64, width: 64 }, 1);
  assert.equal(big.tokens, 4 * small.tokens);
  // MultiHeadAttention holds no [H, L, L] scores: the largest stage grows linearly with the tokens
  assert.ok(Math.abs(big.activations / small.activations - 4) < 0.1, `activations ${big.activations} vs ${small.activations}`);
  assert.equal(estimateMemory(c, { channels: 3, frames: 3, height: 8, width: 8 }, 1).stage, "ca", "few tokens: cross-attention over 512 text tokens is the largest");
  assert.equal(estimateMemory(c, { channels: 3, frames: 3, height: 32, width: 32 }, 4).threads, 4 * small.threads);
  assert.throws(() => checkMemory(c, { channels: 3, frames: 3, height: 8, width: 8 }, { threads: 1, available: 1000 }),
    (e: MixCacheError) => e.code === "MEMORY" && /needs about .* more than the 1000 B available/.test(e.message) && /fewer frames or a smaller height\/width/.test(e.fix ?? ""));
  assert.equal(checkMemory(c, { channels: 3, frames: 3, height: 32, width: 32 }, { threads: 1 }).total, small.total);

  const out = join(tmp(), "x.gif");
  const dir = brokenWeightsModel((d) => editJson(join(d, "mixcache.json"), (o) => (o.latent = { channels: 3, frames: 1024, height: 2048, width: 2048 })));
  const r = await cli(["generate", PROMPT, "--model", dir, "--steps", "2", "--out", out]);
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /latent 3x1024x2048x2048 \([\d,]+ tokens\) needs about [\d.]+ TiB, more than the .* available/);
  assert.match(r.err, /fix: use a smaller latent/);
  assert.ok(!existsSync(out));
  // the estimate is also printed by info (which loads nothing)
  const info = await cli(["info", "--model", dir, "--json"]);
  assert.equal(info.code, 0, info.err);
  assert.ok(JSON.parse(info.out).memory_estimate_bytes.total > 1e12);
});

test("options: seeds, threads and every integer are plain decimal and in range, at parse time", async () => {
  const dir = brokenWeightsModel();
  const cap = 4 * availableParallelism();
  const cases: Array<[string[], RegExp]> = [
    [["generate", PROMPT, "--model", dir, "--seed", "-1"], /--seed must be a decimal integer in 0\.\.4294967295, got -1/],
    [["generate", PROMPT, "--model", dir, "--seed", "4294967296"], /--seed must be a decimal integer in 0\.\.4294967295/],
    [["generate", PROMPT, "--model", dir, "--steps", "0x10"], /--steps must be a decimal integer in 1\.\.1000, got "0x10"/],
    [["generate", PROMPT, "--model", dir, "--steps", "1e1"], /--steps must be a decimal integer/],
    [["generate", PROMPT, "--model", dir, "--steps", " 8"], /--steps must be a decimal integer/],
    [["generate", PROMPT, "--model", dir, "--guidance", "0x10"], /--guidance must be a decimal number >= 1/],
    [["generate", PROMPT, "--model", dir, "--guidance", "0.5"], /--guidance must be a decimal number >= 1, got 0\.5/],
    [["generate", PROMPT, "--model", dir, "--shift", "0"], /shift must be a finite number > 0/],
    [["generate", PROMPT, "--model", dir, "--threads", "100000"], new RegExp(`--threads must be a decimal integer in 1\\.\\.${cap}, got 100000`)],
    [["generate", PROMPT, "--model", dir, "--threads", "-1"], /--threads must be a decimal integer in 1\.\./],
    [["generate", PROMPT, "--model", dir, "--threads", "0"], /--threads must be a decimal integer in 1\.\./],
    [["bench", "--model", dir, "--threads", "0"], /--threads must be a decimal integer in 1\.\./],
    [["evaluate", "--model", dir, "--threads", "0"], /--threads must be a decimal integer in 1\.\./],
    [["bench", "--model", dir, "--seeds", "4294967296"], /--seeds 4294967296: "4294967296" is not an integer in 0\.\.4294967295/],
    [["bench", "--model", dir, "--seeds", "0x1"], /--seeds 0x1: "0x1" is not an integer/],
    [["bench", "--model", dir, "--seeds", "-1"], /--seeds -1/],
    [["calibrate", "teacache", "--model", dir, "--seeds", "0x2"], /--seeds must be a decimal integer/],
    [["view", "x", "--port", "0x50"], /--port must be a decimal integer in 0\.\.65535/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}\n${r.err}`);
    assert.match(r.err, re, args.join(" "));
    assert.match(r.err, /\n {2}fix: /, args.join(" "));
  }
  // bench --seeds with a bad value leaves no output folder behind
  const out = join(tmp(), "bench");
  assert.equal((await cli(["bench", "--model", dir, "--seeds", "0,4294967296", "--out", out])).code, 2);
  assert.ok(!existsSync(out));
  // the same thread rule in the API
  await assert.rejects(loadModel(dir, { threads: -1 }), (e: MixCacheError) => e.code === "USAGE" && /threads must be an integer in 1\.\./.test(e.message));
  await assert.rejects(loadModel(dir, { threads: 100000 }), (e: MixCacheError) => e.code === "USAGE");
  // the help texts name the ranges
  const help = (await cli(["generate", "--help"])).out;
  assert.match(help, new RegExp(`--threads N .*1\\.\\.${cap} \\(4 x cores`));
  assert.match(help, /--seed N .*\[0\.\.4294967295\]/);
  assert.match(help, /default out\/<prompt words>-<cache tag>-s<seed>\.gif \+ \.png/);
});

test("cache options: __proto__, constructor and other unknown keys are refused", async () => {
  const dir = brokenWeightsModel();
  for (const key of ["__proto__", "constructor", "toString", "hasOwnProperty"]) {
    const r = await cli(["generate", PROMPT, "--model", dir, "--cache", "teacache", "--cache-opt", `${key}=1`]);
    assert.equal(r.code, 2, `${key}: ${r.err}`);
    assert.match(r.err, new RegExp(`teacache: unknown option "${key}"`));
  }
  const cfg = join(tmp(), "c.json");
  writeFileSync(cfg, '{"__proto__": {"threshold": 5}}');
  const r = await cli(["generate", PROMPT, "--model", dir, "--cache", "teacache", "--cache-config", cfg]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /unknown option "__proto__"/);
  assert.equal((await cli(["calibrate", "teacache", "--model", dir, "--opt", "__proto__=1"])).code, 2);
  // knob numbers are plain decimal too
  const hex = await cli(["generate", PROMPT, "--model", dir, "--cache", "teacache", "--cache-opt", "warmup=0x10"]);
  assert.equal(hex.code, 2, hex.err);
  assert.match(hex.err, /teacache: warmup="0x10" is not a number/);
  assert.equal(makeCache("teacache", { warmup: "16", threshold: "1e-1" }).config.threshold, 0.1);
  // API: options hidden behind a prototype are not silently dropped
  assert.throws(() => makeCache("teacache", Object.create({ threshold: 5 })), /options must be a plain object/);
  assert.throws(() => makeCache("teacache", JSON.parse('{"__proto__": 1}')), /unknown option "__proto__"/);
});

test("stray positional arguments are refused; evaluate writes nothing", async () => {
  const dir = tmp();
  cpSync(model, dir, { recursive: true });
  cpSync("models/reference/vocab.json", join(dir, "vocab.json"));
  const before = readdirSync(dir).sort();
  for (const args of [["info", "foo"], ["caches", "foo"], ["evaluate", "foo", "--model", dir], ["evaluate", "--model", dir, "--prompts", "0"], ["evaluate", "--model", dir, "--prompts", "-1"], ["evaluate", "--model", dir, "--prompts", "100000"]]) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
    assert.match(r.err, /takes no positional arguments, got "foo"|--prompts must be|evaluation prompts must be an integer in 1\.\.\d+/);
  }
  assert.deepEqual(readdirSync(dir).sort(), before, "nothing written into the model folder");
});

test("evaluate: 1 or 2 prompts work (gcd no longer recurses), 0 and -1 are clear errors", () => {
  const vocab = loadVocab("models/reference/vocab.json");
  assert.equal(evaluationPrompts(vocab, 1).length, 1);
  const two = evaluationPrompts(vocab, 2);
  assert.equal(two.length, 2);
  assert.deepEqual(two.map((p) => p.heldOut), [false, true]);
  assert.equal(evaluationPrompts(vocab).length, 24);
  for (const n of [0, -1, 1.5]) assert.throws(() => evaluationPrompts(vocab, n), (e: MixCacheError) => e.code === "USAGE" && /evaluation prompts must be an integer in 1\.\./.test(e.message));
});

test("output paths are checked before the model loads; nothing is written on a bad one", async () => {
  const dir = brokenWeightsModel();
  const o = tmp();
  const file = join(o, "file.txt");
  writeFileSync(file, "x");
  mkdirSync(join(o, "sub.gif"));
  const good = join(o, "good.gif");
  const cases: Array<[string[], RegExp]> = [
    [["--out", good, "--out", join(o, "x.avi")], /--out .*x\.avi: unsupported extension "\.avi"/],
    [["--out", good, "--out", join(file, "a.gif")], /file\.txt is a file, not a folder/],
    [["--out", join(o, "sub.gif")], /sub\.gif is a folder, not a file/],
    [["--out", good, "--out", good], /is given twice/],
    [["--out", good, "--trace", join(o, "t.txt")], /--trace .*t\.txt: unsupported extension "\.txt"/],
    [["--out", good, "--trace", join(file, "t.json")], /--trace .*is a file, not a folder/],
  ];
  for (const [extra, re] of cases) {
    const r = await cli(["generate", PROMPT, "--model", dir, "--steps", "2", ...extra]);
    assert.equal(r.code, 2, `${extra.join(" ")}: ${r.err}`);
    assert.match(r.err, re);
  }
  assert.ok(!existsSync(good), "no partial output set");
  const b = await cli(["bench", "--model", dir, "--out", join(file, "b")]);
  assert.equal(b.code, 2, b.err);
  assert.match(b.err, /--out .*file\.txt is a file, not a folder/);
  const cal = await cli(["calibrate", "teacache", "--model", dir, "--prompt", PROMPT, "--out", join(o, "p.txt")]);
  assert.equal(cal.code, 2, cal.err);
  assert.match(cal.err, /--out .*p\.txt: unsupported extension/);
});

test("non-finite values stop the run at the step they appear; nothing is written (exit 1)", async () => {
  // guidance 1e308 overflows the CFG combination at the first step
  const out = join(tmp(), "x.gif"), trace = join(tmp(), "t.json");
  const r = spawn(["generate", PROMPT, "--model", model, "--steps", "2", "--guidance", "1e308", "--out", out, "--trace", trace, "--threads", "1"]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /the latent became non-finite at step 1 of 2 \(timestep [\d.]+\): \d+ of 576 values are NaN or Inf; nothing was written/); // 3 x 3 x 8 x 8 = 576 values
  assert.match(r.stderr, /fix: guidance 1e\+308 is far above the usual range/);
  assert.ok(!r.stderr.includes("    at "), "no stack trace");
  assert.ok(!existsSync(out) && !existsSync(trace));

  // weights with NaN: found through the API at the step it appears
  const dir = tmp();
  cpSync(model, dir, { recursive: true });
  const { config, weights } = tinyWan(43, { in_channels: 3, out_channels: 3, patch_size: [1, 2, 2], num_layers: 4 });
  weights.get("blocks.2.ffn.net.2.bias")![0] = NaN;
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [k, shape] of expectedShapes(config)) tensors[k] = { dtype: "F32", shape, data: weights.get(k)! };
  writeSafetensors(join(dir, "transformer", "diffusion_pytorch_model.safetensors"), tensors);
  const m = await loadModel(dir, { threads: 1 });
  try {
    await assert.rejects(generate({ model: m, prompt: PROMPT, steps: 2, guidance: 1 }), (e: MixCacheError) => e.code === "RUNTIME" && /non-finite at step 1 of 2/.test(e.message) && /576 of 576 values/.test(e.message));
  } finally {
    await m.release();
  }
});

test("API: a cache made without a model folder reads the model's own profiles; missing embeddings are named", async () => {
  const dir = tmp();
  cpSync(model, dir, { recursive: true });
  mkdirSync(join(dir, "cache_profiles"));
  cpSync("models/reference/cache_profiles/teacache.json", join(dir, "cache_profiles", "teacache.json"));
  cpSync("models/reference/cache_profiles/mixcache.json", join(dir, "cache_profiles", "mixcache.json"));
  const m = await loadModel(dir, { threads: 1 });
  try {
    const noTea = /no TeaCache calibration/, noMix = /no MixCache calibration profile/;
    const tea = await generate({ model: m, prompt: PROMPT, steps: 2, cache: makeCache("teacache") });
    assert.ok(!tea.cache!.warnings.some((w) => noTea.test(w)), tea.cache!.warnings.join("; "));
    const mix = await generate({ model: m, prompt: PROMPT, steps: 2, cache: makeCache("mixcache") });
    assert.ok(!mix.cache!.warnings.some((w) => noMix.test(w)), mix.cache!.warnings.join("; "));
    // a model passed as env works too, and profilesDir "" opts out on purpose
    const viaModel = await generate({ model: m, prompt: PROMPT, steps: 2, cache: makeCache("teacache", {}, m) });
    assert.ok(!viaModel.cache!.warnings.some((w) => noTea.test(w)));
    const none = await generate({ model: m, prompt: PROMPT, steps: 2, cache: makeCache("teacache", {}, { profilesDir: "" }) });
    assert.ok(none.cache!.warnings.some((w) => noTea.test(w)));
    // bad API options are usage errors before any work
    await assert.rejects(generate({ model: m, prompt: PROMPT, steps: 2, seed: -1 }), (e: MixCacheError) => e.code === "USAGE" && /seed must be an integer in 0\.\.4294967295/.test(e.message));
    await assert.rejects(generate({ model: m, prompt: PROMPT, steps: 2, shape: { channels: 3, frames: 3, height: 9, width: 8 } }), /height 9 is not divisible by the patch size 2/);
  } finally {
    await m.release();
  }

  // a model without a text encoder: the error names the missing embedding
  const bare = tmp();
  cpSync(model, bare, { recursive: true });
  rmSync(join(bare, "text_encoder"), { recursive: true });
  const mb = await loadModel(bare, { threads: 1 });
  try {
    const emb = { data: new Float32Array(4 * mb.dims.textDim), tokens: 4 };
    await assert.rejects(generate({ model: mb, textEmbedding: emb, steps: 2, guidance: 4 }), (e: MixCacheError) => /negativeEmbedding is missing/.test(e.message) && /guidance: 1/.test(e.fix ?? ""));
    await assert.rejects(generate({ model: mb, prompt: PROMPT, steps: 2 }), /textEmbedding is missing/);
    const ok = await generate({ model: mb, textEmbedding: emb, negativeEmbedding: emb, steps: 2 });
    assert.equal(ok.steps, 2);
  } finally {
    await mb.release();
  }
});

test("CLI: --json carries the cache's warnings and counters; --version; did you mean", async () => {
  const out = join(tmp(), "x.gif");
  const r = spawn(["generate", PROMPT, "--model", model, "--steps", "3", "--cache", "teacache", "--out", out, "--json", "--threads", "1"]);
  assert.equal(r.status, 0, r.stderr);
  const o = JSON.parse(r.stdout);
  assert.ok(o.cache_warnings.some((w: string) => /no TeaCache calibration/.test(w)), r.stdout);
  assert.deepEqual(Object.keys(o.cache_counters).sort(), ["skippedCond", "skippedUncond"]);

  const v = spawn(["--version"]);
  assert.equal(v.status, 0);
  assert.equal(v.stdout, `mixcache ${JSON.parse(readFileSync("package.json", "utf8")).version}\n`);
  const typo = await cli(["genrate", PROMPT]);
  assert.equal(typo.code, 2);
  assert.match(typo.err, /unknown command "genrate" \(did you mean generate\?\)/);
});

test("--device: an unknown device and a CUDA provider that is not installed are refused before any weight loads, naming the fix", async () => {
  const dir = brokenWeightsModel();
  const out = join(tmp(), "x.gif");
  const bad = await cli(["generate", PROMPT, "--model", dir, "--device", "tpu", "--out", out]);
  assert.equal(bad.code, 2, bad.err);
  assert.match(bad.err, /unknown device "tpu"/);
  assert.match(bad.err, /fix: use one of: cpu, cuda/);
  const { existsSync: has } = await import("node:fs");
  const { createRequire } = await import("node:module");
  const root = join(createRequire(import.meta.url).resolve("onnxruntime-node/package.json"), "..");
  const cudaInstalled = ["v3", "v6"].some((v) => has(join(root, "bin", `napi-${v}`, process.platform, process.arch, "libonnxruntime_providers_cuda.so")));
  if (!cudaInstalled) {
    const cuda = await cli(["generate", PROMPT, "--model", dir, "--device", "cuda", "--out", out]);
    assert.equal(cuda.code, 2, cuda.err);
    assert.match(cuda.err, /CUDA execution provider is not installed \(libonnxruntime_providers_cuda\.so is not in /);
    assert.match(cuda.err, /ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci/);
    await assert.rejects(loadModel(dir, { device: "cuda" }), /CUDA execution provider is not installed/);
  }
  assert.ok(!existsSync(out));
});
