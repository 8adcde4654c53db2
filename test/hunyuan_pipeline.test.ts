/**
 * HunyuanVideo through the loader, the denoising loop and every cache strategy, on a tiny random
 * diffusers folder: the family is read from transformer/config.json, defaults from the scheduler,
 * prompt embeddings (with pooled vector and padding mask) in, latents out. The cache contract of
 * test/cache_contract.test.ts is run again on this second architecture, with the embedded guidance
 * (one branch per step) and with true CFG (two branches).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { inspectModel, loadModel, type LoadedModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { STRATEGIES, makeCache } from "../src/cache/registry.ts";
import { writeSafetensors, openSafetensors } from "../src/weights/safetensors.ts";
import { writeTinyHunyuan, type TinyHunyuanFolder } from "./support/writeTinyHunyuan.ts";
import { rng } from "./support/randomWeights.ts";
import { tempDir } from "./support/tmp.ts";
import type { TextEmbedding } from "../src/text/types.ts";

let folder: TinyHunyuanFolder;
let model: LoadedModel;
const SHAPE = { channels: 4, frames: 3, height: 4, width: 6 };

function embedding(seed: number, real: number, pad: number): TextEmbedding {
  const r = rng(seed);
  const D = folder.config.text_embed_dim;
  const S = real + pad;
  const data = new Float32Array(S * D);
  for (let i = 0; i < S * D; i++) data[i] = (r() * 2 - 1) * (i >= real * D ? 50 : 1); // large garbage in the padding
  const mask = new Uint8Array(S);
  mask.fill(1, 0, real);
  const pooled = Float32Array.from({ length: folder.config.pooled_projection_dim }, () => r() * 2 - 1);
  return { data, tokens: S, mask, pooled };
}

const cond = () => embedding(3, 5, 3);
const uncond = () => embedding(4, 2, 6);

before(async () => {
  folder = writeTinyHunyuan({ seed: 11 });
  model = await loadModel(folder.dir, { threads: 1 });
});
after(async () => {
  await model.release();
});

test("a HunyuanVideoPipeline folder is read as the hunyuan-video family with the pipeline's defaults", () => {
  const info = inspectModel(folder.dir);
  assert.equal(info.family, "hunyuan-video");
  assert.equal(info.layout, "diffusers");
  assert.deepEqual(info.dims.patch, [1, 2, 2]);
  assert.equal(info.dims.pooledDim, folder.config.pooled_projection_dim);
  assert.deepEqual(
    { sampler: info.defaults.sampler, steps: info.defaults.steps, guidance: info.defaults.guidance, shift: info.defaults.shift, sigmas: info.defaults.sigmas, eg: info.defaults.embeddedGuidance },
    { sampler: "euler", steps: 50, guidance: 1, shift: 7, sigmas: "linear", eg: 6 },
  );
  assert.equal(info.hasTextEncoder, false);
  assert.equal(model.transformer.blocks.length, 4);
  assert.deepEqual(model.transformer.blocks.map((b) => b.kind), ["double", "double", "single", "single"]);
});

test("generate on HunyuanVideo: finite, deterministic, padded text tokens change nothing, prompts and VAE refused with the fix", async () => {
  const run = (e: TextEmbedding, seed = 2) => generate({ model, textEmbedding: e, shape: SHAPE, steps: 6, seed });
  const a = await run(cond());
  assert.equal(a.decoded, false);
  assert.deepEqual([a.latent.channels, a.latent.frames, a.latent.height, a.latent.width], [4, 3, 4, 6]);
  assert.ok(a.latent.data.every(Number.isFinite));
  assert.deepEqual((await run(cond())).latent.data, a.latent.data);
  assert.notDeepEqual((await run(cond(), 3)).latent.data, a.latent.data);
  // the same prompt without its padding rows: the same run (the mask hides them everywhere)
  const full = cond();
  const trimmed: TextEmbedding = { data: full.data.slice(0, 5 * folder.config.text_embed_dim), tokens: 5, pooled: full.pooled };
  const t = await run(trimmed);
  let diff = 0;
  for (let i = 0; i < a.latent.data.length; i++) diff = Math.max(diff, Math.abs(t.latent.data[i] - a.latent.data[i]));
  console.log(`padded (5 real + 3 garbage tokens, masked) vs trimmed prompt, end to end: max |diff| ${diff.toExponential(2)} (tolerance 1e-6)`);
  assert.ok(diff <= 1e-6);
  // one branch per step by default (embedded guidance), two with true CFG
  assert.equal(a.stats.branchesPerStep, 1);
  const c = await generate({ model, textEmbedding: cond(), negativeEmbedding: uncond(), guidance: 3, shape: SHAPE, steps: 4 });
  assert.equal(c.stats.branchesPerStep, 2);
  assert.ok(c.latent.data.every(Number.isFinite));
  await assert.rejects(generate({ model, prompt: "a cat", shape: SHAPE, steps: 2 }), /textEmbedding is missing/);
  await assert.rejects(generate({ model, textEmbedding: { ...cond(), pooled: undefined }, shape: SHAPE, steps: 2 }), /pooled must be a Float32Array of 12 values/);
  await assert.rejects(generate({ model, textEmbedding: cond(), shape: SHAPE, steps: 2, decode: true }), /has no VAE/);
  // the embedded guidance value reaches the model: another value, another run
  const g = await generate({ model, textEmbedding: cond(), shape: SHAPE, steps: 6, seed: 2, embeddedGuidance: 2 });
  assert.notDeepEqual(g.latent.data, a.latent.data);
});

for (const cfg of [false, true]) {
  const base = () => ({
    model, textEmbedding: cond(), shape: SHAPE, steps: 8, seed: 5,
    ...(cfg ? { guidance: 3, negativeEmbedding: uncond() } : {}),
  });
  let reference: Float32Array | null = null;
  const ref = async () => (reference ??= (await generate(base())).latent.data);
  for (const def of STRATEGIES) {
    test(`hunyuan-video ${cfg ? "true CFG" : "embedded guidance"}: ${def.name} exact options are bit-exact; defaults finite with exact accounting`, async () => {
      const want = await ref();
      const exact = await generate({ ...base(), cache: makeCache(def.name, def.exact, { profilesDir: "" }) });
      let diff = 0;
      for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(exact.latent.data[i] - want[i]));
      assert.equal(diff, 0, `max |diff| ${diff}`);
      assert.equal(exact.stats.computeSpeedup, 1);
      const cache = makeCache(def.name, {}, { profilesDir: "" });
      const r = await generate({ ...base(), cache });
      assert.ok(r.latent.data.every(Number.isFinite), "non-finite output");
      const s = r.stats;
      for (const level of ["branches", "blocks", "modules"] as const) assert.equal(s.computed[level] + s.reused[level], s.total[level], `${level}`);
      assert.equal(s.computed.modules, s.computed.modulesByKind.attn + s.computed.modulesByKind.ff + s.computed.modulesByKind.mlp);
      assert.equal(s.total.modules, s.total.blocks * 2);
      assert.equal(s.perStep.reduce((x, p) => x + p.macs, 0), s.macsExecuted);
      assert.ok(s.macsExecuted <= s.macsFull && s.computeSpeedup >= 1);
      const again = await generate({ ...base(), cache });
      assert.deepEqual(again.latent.data, r.latent.data);
    });
  }
}

test("CLI on a HunyuanVideo folder: info names the family; generate takes --prompt-embeds with pooled and mask, writes the latent", () => {
  const cli = (args: string[]) => spawnSync(process.execPath, ["bin/mixcache.js", ...args], { encoding: "utf8", timeout: 120_000 });
  const info = cli(["info", "--model", folder.dir, "--json"]);
  assert.equal(info.status, 0, info.stderr);
  const j = JSON.parse(info.stdout);
  assert.equal(j.family, "hunyuan-video");
  assert.equal(j.parameters, model.parameters);
  const text = cli(["info", "--model", folder.dir]);
  assert.match(text.stdout, /HunyuanVideo transformer, 2 double-stream \+ 2 single-stream blocks/);
  assert.match(text.stdout, /text        none in this folder/);
  const dir = tempDir("mixcache-hy-cli-");
  const e = cond();
  const emb = join(dir, "prompt.safetensors");
  writeSafetensors(emb, {
    prompt_embeds: { dtype: "F32", shape: [1, e.tokens, folder.config.text_embed_dim], data: e.data },
    pooled_prompt_embeds: { dtype: "F32", shape: [1, folder.config.pooled_projection_dim], data: e.pooled! },
    prompt_attention_mask: { dtype: "F32", shape: [1, e.tokens], data: Float32Array.from(e.mask!) },
  });
  const out = join(dir, "run.safetensors");
  const g = cli(["generate", "--model", folder.dir, "--prompt-embeds", emb, "--frames", "9", "--height", "32", "--width", "48", "--steps", "3", "--out", out, "--json"]);
  assert.equal(g.status, 0, g.stderr);
  assert.deepEqual(JSON.parse(g.stdout).latent, [4, 3, 4, 6]);
  const f = openSafetensors(out);
  assert.deepEqual(f.info("latent").shape, [4, 3, 4, 6]);
  f.close();
  // without the pooled vector: refused before loading, naming the tensor and how to save it
  const bad = join(dir, "bad.safetensors");
  writeSafetensors(bad, { prompt_embeds: { dtype: "F32", shape: [e.tokens, folder.config.text_embed_dim], data: e.data } });
  const b = cli(["generate", "--model", folder.dir, "--prompt-embeds", bad, "--frames", "9", "--height", "32", "--width", "48", "--out", join(dir, "x.safetensors")]);
  assert.equal(b.status, 2, b.stderr);
  assert.match(b.stderr, /no pooled_prompt_embeds/);
  assert.ok(!existsSync(join(dir, "x.safetensors")));
});

test("forward(): one transformer call equals the loop's first-step output bit for bit (HunyuanVideo and Wan)", async () => {
  const { forward } = await import("../src/pipeline/forward.ts");
  const { hooksAsCache } = await import("../src/cache/strategy.ts");
  const { makeTinyModelDir } = await import("./support/tinyModel.ts");
  const check = async (m: LoadedModel, opts: Record<string, unknown>, text: TextEmbedding, shape: typeof SHAPE) => {
    const n = shape.channels * shape.frames * shape.height * shape.width;
    const r = rng(17);
    const latents = Float32Array.from({ length: n }, () => r() * 2 - 1);
    let first: Float32Array | null = null;
    let t0 = 0;
    const cache = hooksAsCache({ endStep: (step, out) => { if (step.index === 0) { first = out.cond; t0 = step.timestep; } } }, "capture");
    await generate({ model: m, ...opts, shape, latents, steps: 2, guidance: 1, cache });
    const v = await forward({ model: m.transformer, latent: latents, shape, timestep: t0, text, embeddedGuidance: m.defaults.embeddedGuidance });
    assert.deepEqual(v, first);
  };
  const e = cond();
  await check(model, { textEmbedding: e }, e, SHAPE);
  const wan = await loadModel(makeTinyModelDir(21), { threads: 1 });
  try {
    const prompt = "a red circle moving right on a black background";
    await check(wan, { prompt }, wan.encodePrompt(prompt), wan.latent!);
  } finally {
    await wan.release();
  }
});

test("a full tiny HunyuanVideoPipeline folder runs end to end from the CLI: LLaVA-Llama-3 + CLIP-L prompts, transformer, VAE; GIF and .safetensors out, same seed same bytes", async () => {
  const { writeTinyHunyuanText } = await import("./support/writeTinyHunyuanText.ts");
  const { writeTinyHunyuanVae } = await import("./support/writeTinyHunyuanVae.ts");
  const { readFileSync } = await import("node:fs");
  const full = writeTinyHunyuan({ seed: 12, overrides: { text_embed_dim: 32, pooled_projection_dim: 16 } });
  writeTinyHunyuanText(full.dir);
  writeTinyHunyuanVae({ dir: full.dir });
  const info = inspectModel(full.dir);
  assert.equal(info.family, "hunyuan-video");
  assert.equal(info.textEncoder, "llama+clip");
  assert.ok(info.vae);
  const cli = (args: string[]) => spawnSync(process.execPath, ["bin/mixcache.js", ...args], { encoding: "utf8", timeout: 300_000 });
  const dir = tempDir("mixcache-hy-full-");
  const run = (name: string) => {
    const outs = [join(dir, `${name}.gif`), join(dir, `${name}.safetensors`)];
    const r = cli(["generate", "--model", full.dir, "a cat walks on the grass", "--frames", "9", "--height", "32", "--width", "48", "--steps", "3", "--seed", "4", "--cache", "teacache", "--json", ...outs.flatMap((o) => ["--out", o])]);
    assert.equal(r.status, 0, r.stderr);
    return { json: JSON.parse(r.stdout), outs };
  };
  const a = run("a");
  assert.deepEqual(a.json.video, { frames: 9, height: 32, width: 48 });
  assert.equal(a.json.decoded, true);
  const b = run("b");
  for (let i = 0; i < 2; i++) assert.deepEqual(readFileSync(a.outs[i]), readFileSync(b.outs[i]), `${a.outs[i]} differs between two runs of the same seed`);
  const f = openSafetensors(a.outs[1]);
  assert.deepEqual(f.info("video").shape, [3, 9, 32, 48]);
  const v = f.readF32("video");
  f.close();
  assert.ok(v.every((x) => Number.isFinite(x) && x >= -1 && x <= 1));
  // the API: prompts in, the embedding matches what the CLI used (encode once, run from embeddings)
  const m = await loadModel(full.dir, { threads: 1 });
  try {
    const [e] = await m.encodePrompts(["a cat walks on the grass"]);
    assert.equal(e.tokens, 256);
    assert.equal(e.pooled!.length, 16);
    const r1 = await generate({ model: m, prompt: "a cat walks on the grass", frames: 9, height: 32, width: 48, steps: 3, seed: 4, decode: false });
    const r2 = await generate({ model: m, textEmbedding: e, frames: 9, height: 32, width: 48, steps: 3, seed: 4, decode: false });
    assert.deepEqual(r1.latent.data, r2.latent.data);
  } finally {
    await m.release();
  }
});
