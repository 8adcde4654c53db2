/**
 * diffusers Wan2.1 pipeline folders end to end, on tiny random folders with all five components in
 * the exact WanPipeline layout (test/support/writeTinyWanPipeline.ts): inspection (components,
 * what is missing, what still works), the scheduler config, video size <-> latent, the CLI from
 * prompt to GIF and .safetensors, determinism, diffusers interop (--latents, --prompt-embeds
 * reproduce a run exactly), transformer-only folders, bad inputs (exit 2 before any weight is
 * read, nothing written), the memory refusal, progress over the three stages, and the cache
 * contract on the whole pipeline.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./support/tmp.ts";
import { capture } from "./support/capture.ts";
import { writeTinyWanPipeline, unipcSchedulerConfig } from "./support/writeTinyWanPipeline.ts";
import { TINY_PIECES } from "./support/unigramTokenizer.ts";
import { main } from "../src/cli/main.ts";
import { MixCacheError } from "../src/errors.ts";
import { inspectModel, loadModel, type LoadedModel } from "../src/models/load.ts";
import { generate, type GenerateOptions, type Progress } from "../src/pipeline/generate.ts";
import { gaussianNoise } from "../src/pipeline/noise.ts";
import { makeCache, STRATEGIES } from "../src/cache/registry.ts";
import { WAN_NEGATIVE_PROMPT, WAN21_STRIDES, checkPipelineMemory, latentForVideo, parseSchedulerConfig } from "../src/models/wan-pipeline.ts";
import { parseWanConfig } from "../src/models/wan/config.ts";
import { WanTextEncoder } from "../src/models/umt5/wan-text.ts";
import { UMT5_XXL } from "../src/models/umt5/config.ts";
import { wan21VaeConfig } from "../src/models/wan-vae/config.ts";
import { CheckpointSource } from "../src/models/umt5/weights.ts";
import { SafetensorsFile, openSafetensors, writeSafetensors } from "../src/weights/safetensors.ts";
import { StageSession } from "../src/backend/ort.ts";

const PROMPT = "a red circle moving left on the black background";
const full = writeTinyWanPipeline({ seed: 3 });
const SIZE = ["--frames", "5", "--height", "32", "--width", "32"];
const RUN = [...SIZE, "--steps", "3", "--threads", "1"];
const spawn = (args: string[]) => spawnSync(process.execPath, ["bin/mixcache.js", ...args], { encoding: "utf8", timeout: 120_000 });
const cli = (args: string[]) => capture(() => main(args));
const tmp = () => tempDir("mixcache-wanpipe-out-");

function tensors(path: string): { keys: string[]; get: (k: string) => { shape: number[]; data: Float32Array }; metadata: Record<string, string> } {
  const f = openSafetensors(path);
  const keys = f.keys();
  const out = new Map(keys.map((k) => [k, { shape: f.info(k).shape, dtype: f.info(k).dtype, data: f.readF32(k) }]));
  const metadata = { ...f.metadata };
  f.close();
  for (const t of out.values()) assert.equal(t.dtype, "F32");
  return { keys, get: (k) => out.get(k)!, metadata };
}

const f32 = (data: Float32Array, shape: number[]) => ({ dtype: "F32" as const, shape, data });

/** A .safetensors file with one I64 tensor (a dtype the inputs refuse). */
function writeI64(path: string, key: string, shape: number[]): void {
  const n = shape.reduce((a, b) => a * b, 1);
  let json = Buffer.from(JSON.stringify({ [key]: { dtype: "I64", shape, data_offsets: [0, 8 * n] } }));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([head, json, Buffer.alloc(8 * n)]));
}

test("inspect: every component with class, parameters, dtype and bytes; partial folders say what is missing and what still works", async () => {
  const info = inspectModel(full.dir);
  assert.equal(info.layout, "diffusers");
  assert.equal(info.textEncoder, "umt5");
  assert.deepEqual(info.video, { frames: 81, height: 480, width: 832 }, "WanPipeline's default size");
  assert.deepEqual(info.latent, { channels: 4, frames: 21, height: 60, width: 104 });
  assert.deepEqual(info.strides, { temporal: 4, spatial: 8 });
  assert.deepEqual({ ...info.defaults }, { sampler: "unipc", steps: 50, guidance: 5, shift: 3, negativePrompt: WAN_NEGATIVE_PROMPT });
  assert.equal(info.fps, 16);
  const p = info.pipeline!;
  assert.deepEqual(p.missing, []);
  const classes = Object.fromEntries(Object.values(p.components).map((c) => [c.name, c.className]));
  assert.deepEqual(classes, { transformer: "WanTransformer3DModel", text_encoder: "UMT5EncoderModel", tokenizer: "T5Tokenizer", vae: "AutoencoderKLWan", scheduler: "UniPCMultistepScheduler" });
  assert.equal(p.components.transformer.parameters, info.parameters);
  for (const n of ["transformer", "text_encoder", "vae"] as const) {
    assert.equal(p.components[n].dtype, "F32");
    assert.ok(p.components[n].bytes > 4 * p.components[n].parameters!, `${n}: bytes on disk`);
  }

  // a transformer-only folder: no prompt encoding, no VAE, default sampler; `info` says so
  const bare = writeTinyWanPipeline({ seed: 3, omit: ["text_encoder", "tokenizer", "vae", "scheduler"] });
  const bi = inspectModel(bare.dir);
  assert.deepEqual(bi.pipeline!.missing, ["text_encoder", "tokenizer", "vae", "scheduler"]);
  assert.equal(bi.hasTextEncoder, false);
  assert.equal(bi.vae, null);
  assert.match(bi.pipeline!.capabilities.join("\n"), /precomputed embeddings[\s\S]*no VAE: the result is the latent[\s\S]*sampler unipc with shift 3/);
  const r = await cli(["info", "--model", bare.dir, "--json"]);
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out);
  assert.equal(o.layout, "diffusers");
  assert.deepEqual(o.missing, ["text_encoder", "tokenizer", "vae", "scheduler"]);
  assert.equal(o.components.find((c: { name: string }) => c.name === "vae").state, "missing");
  assert.ok(o.memory_estimate_bytes.total > 0 && o.memory_estimate_bytes.decode === 0);
  const text = await cli(["info", "--model", full.dir]);
  assert.equal(text.code, 0, text.err);
  for (const re of [/transformer +WanTransformer3DModel +\d.* params +F32/, /text_encoder +UMT5EncoderModel/, /vae +AutoencoderKLWan/, /scheduler +UniPCMultistepScheduler .*sampler unipc, shift 3/, /missing +none/, /can do +text to video/, /video +81x480x832/, /memory +about .* at the largest stage/])
    assert.match(text.out, re);

  // other pipelines and Wan2.2 are refused by name
  const i2v = writeTinyWanPipeline({ modelIndex: { _class_name: "WanImageToVideoPipeline" }, omit: ["text_encoder", "tokenizer", "vae", "scheduler"] });
  assert.throws(() => inspectModel(i2v.dir), (e: MixCacheError) => e.code === "CONFIG" && /not "WanPipeline"/.test(e.message) && /only text-to-video/.test(e.fix ?? ""));
  const w22 = writeTinyWanPipeline({ modelIndex: { transformer_2: ["diffusers", "WanTransformer3DModel"], boundary_ratio: 0.875 }, omit: ["text_encoder", "tokenizer", "vae", "scheduler"] });
  assert.throws(() => inspectModel(w22.dir), /Wan2\.2/);
});

test("scheduler_config.json: UniPC -> unipc with flow_shift, FlowMatchEuler -> euler with shift; other settings refused", () => {
  assert.deepEqual(parseSchedulerConfig(unipcSchedulerConfig({ flow_shift: 5 }), "s"), { className: "UniPCMultistepScheduler", sampler: "unipc", shift: 5 });
  assert.deepEqual(parseSchedulerConfig({ _class_name: "FlowMatchEulerDiscreteScheduler", shift: 3, use_dynamic_shifting: false, num_train_timesteps: 1000 }, "s"), { className: "FlowMatchEulerDiscreteScheduler", sampler: "euler", shift: 3 });
  for (const [raw, re] of [
    [unipcSchedulerConfig({ solver_type: "bh1" }), /solver_type is "bh1"/],
    [unipcSchedulerConfig({ use_flow_sigmas: false }), /use_flow_sigmas/],
    [unipcSchedulerConfig({ flow_shift: -1 }), /flow_shift must be a number > 0/],
    [{ _class_name: "FlowMatchEulerDiscreteScheduler", use_dynamic_shifting: true }, /use_dynamic_shifting/],
    [{ _class_name: "DDIMScheduler" }, /not a supported scheduler/],
  ] as const)
    assert.throws(() => parseSchedulerConfig(raw as Record<string, unknown>, "s"), (e: MixCacheError) => e.code === "CONFIG" && re.test(e.message) && !!e.fix, JSON.stringify(raw));
  const euler = writeTinyWanPipeline({ scheduler: { _class_name: "FlowMatchEulerDiscreteScheduler", shift: 5 }, modelIndex: { scheduler: ["diffusers", "FlowMatchEulerDiscreteScheduler"] }, omit: ["text_encoder", "tokenizer", "vae"] });
  assert.deepEqual([inspectModel(euler.dir).defaults.sampler, inspectModel(euler.dir).defaults.shift], ["euler", 5]);
});

test("video size -> latent: frames 4k+1, height and width multiples of 16 (VAE stride 8 x patch 2), the nearest sizes in the error", () => {
  const c = parseWanConfig({ num_attention_heads: 12, attention_head_dim: 128, ffn_dim: 8960, num_layers: 30 });
  assert.deepEqual(latentForVideo(c, WAN21_STRIDES, { frames: 81, height: 480, width: 832 }), { channels: 16, frames: 21, height: 60, width: 104 });
  assert.deepEqual(latentForVideo(c, WAN21_STRIDES, { frames: 1, height: 16, width: 16 }), { channels: 16, frames: 1, height: 2, width: 2 });
  assert.throws(() => latentForVideo(c, WAN21_STRIDES, { frames: 80, height: 480, width: 832 }), (e: MixCacheError) => e.code === "USAGE" && /80 frames cannot be made by the VAE/.test(e.message) && /use 77 or 81 frames/.test(e.fix ?? ""));
  assert.throws(() => latentForVideo(c, WAN21_STRIDES, { frames: 81, height: 488, width: 832 }), (e: MixCacheError) => /height 488 is not a multiple of 16 \(the VAE's spatial stride 8 x the patch size 2\)/.test(e.message) && /use 480 or 496/.test(e.fix ?? ""));
  assert.throws(() => latentForVideo(c, WAN21_STRIDES, { frames: 81, height: 480, width: 0 }), /width must be a positive integer/);
});

test("CLI end to end: prompt -> umT5 -> transformer -> VAE -> GIF and .safetensors; the same seed twice gives identical bytes", () => {
  const outs = [tmp(), tmp()];
  const cacheDir = join(tmp(), "prompts");
  for (const dir of outs) {
    const r = spawn(["generate", PROMPT, "--model", full.dir, ...RUN, "--seed", "7", "--prompt-cache", cacheDir, "--out", join(dir, "a.gif"), "--out", join(dir, "a.safetensors"), "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.deepEqual(o.video, { frames: 5, height: 32, width: 32 });
    assert.deepEqual(o.latent, [4, 2, 4, 4]);
    assert.equal(o.decoded, true);
    assert.equal(o.sampler, "unipc");
    assert.equal(o.shift, 3);
    assert.equal(o.guidance, 5);
  }
  assert.equal(readdirSync(cacheDir).filter((f) => f.endsWith(".emb")).length, 2, "prompt and negative prompt cached (the second run read them)");
  const [a, b] = outs.map((d) => ({ gif: readFileSync(join(d, "a.gif")), st: readFileSync(join(d, "a.safetensors")) }));
  assert.equal(a.gif.subarray(0, 6).toString(), "GIF89a");
  assert.ok(a.gif.equals(b.gif), "GIF bytes differ between two runs of the same seed");
  assert.ok(a.st.equals(b.st), ".safetensors bytes differ between two runs of the same seed");
  const t = tensors(join(outs[0], "a.safetensors"));
  assert.deepEqual(t.keys, ["latent", "video"]);
  assert.deepEqual(t.get("video").shape, [3, 5, 32, 32]);
  assert.deepEqual(t.get("latent").shape, [4, 2, 4, 4]);
  const v = t.get("video").data;
  assert.ok(v.every((x) => x >= -1 && x <= 1), "video in [-1, 1]");
  assert.ok(new Set(v).size > 100, "a video, not a constant");
  assert.equal(t.metadata.prompt, PROMPT);
  assert.equal(t.metadata.negative_prompt, WAN_NEGATIVE_PROMPT);
  assert.equal(t.metadata.seed, "7");
});

test("diffusers interop: --latents (the initial noise) and --prompt-embeds / --negative-prompt-embeds reproduce a run exactly", async () => {
  const dir = tmp();
  const ref = join(dir, "ref.safetensors");
  let r = await cli(["generate", PROMPT, "--model", full.dir, ...RUN, "--seed", "7", "--out", ref]);
  assert.equal(r.code, 0, r.err);
  const want = tensors(ref);

  // the seeded noise of seed 7, as diffusers would pass `latents` ([1, C, F, H, W]); another --seed is ignored
  const noise = join(dir, "noise.safetensors");
  writeSafetensors(noise, { latents: f32(gaussianNoise(4 * 2 * 4 * 4, 7), [1, 4, 2, 4, 4]) });
  const viaLatents = join(dir, "lat.safetensors");
  r = await cli(["generate", PROMPT, "--model", full.dir, "--steps", "3", "--threads", "1", "--seed", "99", "--latents", noise, "--out", viaLatents]);
  assert.equal(r.code, 0, r.err);
  const got = tensors(viaLatents);
  assert.deepEqual(got.get("latent").data, want.get("latent").data);
  assert.deepEqual(got.get("video").data, want.get("video").data);
  assert.equal(got.metadata.initial_latent, "file");

  // WanPipeline's prompt_embeds and negative_prompt_embeds ([512, 24] and [1, 512, 24]) instead of the prompts
  const enc = WanTextEncoder.open({ modelDir: full.dir, threads: 1 });
  const [pe, ne] = await enc.encode([PROMPT, WAN_NEGATIVE_PROMPT]);
  await enc.close();
  const pFile = join(dir, "prompt.safetensors"), nFile = join(dir, "negative.safetensors");
  writeSafetensors(pFile, { prompt_embeds: f32(pe.data, [512, 24]) });
  writeSafetensors(nFile, { negative_prompt_embeds: f32(ne.data, [1, 512, 24]) });
  const viaEmbeds = join(dir, "emb.safetensors");
  r = await cli(["generate", "--model", full.dir, ...RUN, "--seed", "7", "--prompt-embeds", pFile, "--negative-prompt-embeds", nFile, "--out", viaEmbeds]);
  assert.equal(r.code, 0, r.err);
  const got2 = tensors(viaEmbeds);
  assert.deepEqual(got2.get("latent").data, want.get("latent").data);
  assert.deepEqual(got2.get("video").data, want.get("video").data);
  assert.equal(got2.metadata.prompt_source, "embedding");
});

test("a transformer-only folder: embeddings in, the latent out (API and CLI); the same transformer gives the full pipeline's latent", async () => {
  const bare = writeTinyWanPipeline({ seed: 3, omit: ["text_encoder", "tokenizer", "vae", "scheduler"] });
  const enc = WanTextEncoder.open({ modelDir: full.dir, threads: 1 });
  const [pe, ne] = await enc.encode([PROMPT, WAN_NEGATIVE_PROMPT]);
  await enc.close();
  const m = await loadModel(bare.dir, { threads: 1 });
  try {
    assert.equal(m.umt5, null);
    const r = await generate({ model: m, textEmbedding: pe, negativeEmbedding: ne, frames: 5, height: 32, width: 32, steps: 3, seed: 7 });
    assert.equal(r.decoded, false);
    assert.deepEqual([r.latent.channels, r.latent.frames, r.latent.height, r.latent.width], [4, 2, 4, 4]);
    const fm = await loadModel(full.dir, { threads: 1 });
    try {
      const fr = await generate({ model: fm, prompt: PROMPT, frames: 5, height: 32, width: 32, steps: 3, seed: 7 });
      assert.deepEqual(r.latent.data, fr.latent.data, "same transformer, same embeddings, same noise");
    } finally {
      await fm.release();
    }
    await assert.rejects(generate({ model: m, prompt: PROMPT, frames: 5, height: 32, width: 32, steps: 1 }), (e: MixCacheError) => e.code === "USAGE" && /textEmbedding is missing/.test(e.message));
    await assert.rejects(generate({ model: m, textEmbedding: pe, negativeEmbedding: ne, frames: 5, height: 32, width: 32, steps: 1, decode: true }), (e: MixCacheError) => e.code === "USAGE" && /no VAE/.test(e.message));
  } finally {
    await m.release();
  }
  // the CLI writes the latent to .safetensors (no video without a VAE)
  const dir = tmp();
  const pFile = join(dir, "p.safetensors"), nFile = join(dir, "n.safetensors"), out = join(dir, "latent.safetensors");
  writeSafetensors(pFile, { prompt_embeds: f32(pe.data, [1, 512, 24]) });
  writeSafetensors(nFile, { negative_prompt_embeds: f32(ne.data, [512, 24]) });
  const r = await cli(["generate", "--model", bare.dir, ...RUN, "--prompt-embeds", pFile, "--negative-prompt-embeds", nFile, "--out", out]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(tensors(out).keys, ["latent"]);
});

test("bad input: exit 2 with a fix before any weight is read, nothing written", async () => {
  // any weight read or session built in the model folders fails the run with exit 1
  const guarded = (path: string) => path.includes("mixcache-wanpipe-") && !path.includes("-out-");
  const orig = { read: SafetensorsFile.prototype.readF32, bytes: SafetensorsFile.prototype.readBytes, rows: CheckpointSource.prototype.readRows, create: StageSession.create };
  const refuse = () => { throw new MixCacheError("RUNTIME", "test: a weight was read before the input was checked"); };
  SafetensorsFile.prototype.readF32 = function (this: SafetensorsFile, k: string) { if (guarded(this.path)) refuse(); return orig.read.call(this, k); };
  SafetensorsFile.prototype.readBytes = function (this: SafetensorsFile, k: string) { if (guarded(this.path)) refuse(); return orig.bytes.call(this, k); };
  CheckpointSource.prototype.readRows = function () { return refuse(); };
  StageSession.create = async () => refuse();
  try {
    const dir = tmp();
    const out = join(dir, "out");
    const file = (name: string, key: string, data: Float32Array, shape: number[]) => {
      const p = join(dir, name);
      writeSafetensors(p, { [key]: f32(data, shape) });
      return p;
    };
    const lat3 = file("lat3.safetensors", "latents", new Float32Array(3 * 2 * 16), [3, 2, 4, 4]);
    const latB2 = file("latb2.safetensors", "latents", new Float32Array(2 * 4 * 2 * 16), [2, 4, 2, 4, 4]);
    const lat = file("lat.safetensors", "latents", new Float32Array(4 * 2 * 16), [4, 2, 4, 4]);
    const latNaN = file("latnan.safetensors", "latents", new Float32Array(4 * 2 * 16).fill(NaN), [4, 2, 4, 4]);
    const latI64 = join(dir, "lati64.safetensors");
    writeI64(latI64, "latents", [4, 2, 4, 4]);
    const emb10 = file("emb10.safetensors", "prompt_embeds", new Float32Array(512 * 10), [512, 10]);
    const emb = file("emb.safetensors", "prompt_embeds", new Float32Array(512 * 24), [512, 24]);
    const junk = join(dir, "junk.safetensors");
    writeFileSync(junk, "not a safetensors file");
    const noVae = writeTinyWanPipeline({ omit: ["vae"] }).dir;
    const noText = writeTinyWanPipeline({ omit: ["text_encoder", "tokenizer"] }).dir;
    const vocab = writeTinyWanPipeline({ umt5: { pieces: [...TINY_PIECES, ...Array.from({ length: 22 }, (_, i) => [`▁w${i}`, -8] as [string, number])] } }).dir;
    const textDim = writeTinyWanPipeline({ transformer: { text_dim: 10 } }).dir;
    const zdim = writeTinyWanPipeline({ transformer: { in_channels: 8, out_channels: 8 } }).dir;
    const sched = writeTinyWanPipeline({ scheduler: { solver_type: "bh1" } }).dir;
    const gif = (m = full.dir) => ["--model", m, "--steps", "2", "--threads", "1", "--out", join(out, "x.gif"), "--out", join(out, "x.safetensors")];
    const cases: [string[], RegExp, RegExp?][] = [
      [[PROMPT, ...gif(), "--frames", "6", "--height", "32", "--width", "32"], /6 frames cannot be made by the VAE \(the VAE's temporal stride 4: frames = 4k \+ 1\)/, /use 5 or 9 frames/],
      [[PROMPT, ...gif(), "--frames", "5", "--height", "36", "--width", "32"], /height 36 is not a multiple of 16/, /use 32 or 48/],
      [[PROMPT, ...gif(), "--latents", lat3], /--latents .*lat3\.safetensors: 3 channels \(\[3,2,4,4\]\), the transformer takes 4/],
      [[PROMPT, ...gif(), "--latents", latB2], /has a batch of 2/, /one batch entry/],
      [[PROMPT, ...gif(), "--latents", latI64], /tensor latents has dtype I64, not a float/, /float32/],
      [[PROMPT, ...gif(), "--latents", latNaN], /non-finite value at index 0/],
      [[PROMPT, ...gif(), "--latents", lat, "--frames", "9"], /is a \[4, 2, 4, 4\] latent \(a 5x32x32 video\), not the 3-frame/],
      [[PROMPT, ...gif(), ...SIZE, "--prompt-embeds", emb], /either a prompt or --prompt-embeds, not both/],
      [[...gif(), ...SIZE, "--prompt-embeds", emb10], /embedding width 10 \(\[512,10\]\) does not match the transformer's text_dim 24/, /\[S, 24\]/],
      [[...gif(), ...SIZE, "--prompt-embeds", junk], /--prompt-embeds .*junk\.safetensors/],
      [[PROMPT, ...gif(noVae), ...SIZE], /has no VAE \(vae\/ is missing from .*\), so .*x\.gif cannot be decoded/, /--out result\.safetensors/],
      [[PROMPT, ...gif(noText), ...SIZE], /has no text encoder \(text_encoder\/ and tokenizer\/ missing from .*\), so the prompt cannot be encoded/, /--prompt-embeds FILE --negative-prompt-embeds FILE/],
      [[...gif(noText), ...SIZE, "--prompt-embeds", emb], /so the negative prompt \(guidance 5 > 1\) cannot be encoded/, /--negative-prompt-embeds/],
      [[PROMPT, ...gif(vocab), ...SIZE], /the tokenizer has 70 token ids but the text encoder's embedding has only 64 rows/, /same Wan2\.1 checkpoint/],
      [[PROMPT, ...gif(textDim), ...SIZE], /d_model 24 \(text_encoder\/config\.json\) does not match the transformer's text_dim 10/],
      [[PROMPT, ...gif(zdim), ...SIZE], /latent channels z_dim 4 do not match the transformer's in\/out channels 8\/8/],
      [[PROMPT, ...gif(sched), ...SIZE], /solver_type is "bh1"/],
    ];
    for (const [args, re, fix] of cases) {
      const r = await cli(["generate", ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}\n${r.err}`);
      assert.match(r.err, re);
      assert.match(r.err, fix ?? /fix: /);
      assert.ok(!existsSync(out), `${args.join(" ")}: wrote ${out}`);
    }
  } finally {
    SafetensorsFile.prototype.readF32 = orig.read;
    SafetensorsFile.prototype.readBytes = orig.bytes;
    CheckpointSource.prototype.readRows = orig.rows;
    StageSession.create = orig.create;
  }
});

test("memory: a size the run cannot fit is refused with the estimate of every stage before anything loads", async () => {
  const out = join(tmp(), "x.gif");
  const r = await cli(["generate", PROMPT, "--model", full.dir, "--frames", "81", "--height", "4096", "--width", "4096", "--out", out]);
  assert.equal(r.code, 1, r.err);
  // denoising is linear in the tokens (MultiHeadAttention holds no [H, L, L] scores): at this size the VAE decode is the largest stage
  assert.match(r.err, /latent 4x21x512x512 \(1,376,256 tokens\) needs about .* at its largest stage \(decode\), more than the .* available \(transformer weights .*, text encoder .*, denoising .*, VAE decode .*\)/);
  assert.ok(!existsSync(out));
  const info = inspectModel(full.dir);
  assert.equal(info.family, "wan");
  if (info.family !== "wan") return;
  const latent = latentForVideo(info.config, info.strides, { frames: 81, height: 480, width: 832 });
  assert.throws(() => checkPipelineMemory(info.config, latent, { vae: info.vae, available: 1e6 }), (e: MixCacheError) => e.code === "MEMORY" && /VAE decode/.test(e.message));
  // Wan2.1 1.3B at 17 x 480 x 832: the VAE decode is the largest stage, the fix names --tile, and tiling fits in less
  const c13 = parseWanConfig({ num_attention_heads: 12, attention_head_dim: 128, ffn_dim: 8960, num_layers: 30 });
  const l17 = latentForVideo(c13, WAN21_STRIDES, { frames: 17, height: 480, width: 832 });
  const o = { umt5: UMT5_XXL, vae: wan21VaeConfig(), threads: 2 };
  const e = checkPipelineMemory(c13, l17, { ...o, available: 1e15 });
  assert.equal(e.stage, "decode");
  assert.throws(() => checkPipelineMemory(c13, l17, { ...o, available: e.total - 1 }), (x: MixCacheError) => x.code === "MEMORY" && /largest stage \(decode\)/.test(x.message) && /--tile/.test(x.fix ?? ""));
  assert.ok(checkPipelineMemory(c13, l17, { ...o, tile: true, available: 1e15 }).decode < e.decode / 2);
});

describeFull();

function describeFull() {
  let model: LoadedModel;
  let reference: { video: Float32Array; latent: Float32Array };
  const base = (): Omit<GenerateOptions, "model"> => ({ prompt: PROMPT, seed: 5, steps: 6, frames: 5, height: 32, width: 32 });
  before(async () => {
    model = await loadModel(full.dir, { threads: 1 });
    const r = await generate({ model, ...base() });
    reference = { video: r.video.data, latent: r.latent.data };
  });
  after(async () => {
    await model?.release();
  });

  test("progress covers encode, denoise and decode, in order, to the end", async () => {
    const seen: Progress[] = [];
    const r = await generate({ model, ...base(), steps: 2, onProgress: (p) => seen.push(p) });
    const stages = [...new Set(seen.map((p) => p.stage))];
    assert.deepEqual(stages, ["encode", "denoise", "decode"]);
    const total = seen[0].overall.total;
    assert.equal(total, 3 + 2 + 2, "umT5 2 layers + final norm, 2 steps, 2 latent frames");
    assert.deepEqual(seen.map((p) => p.overall.done), Array.from({ length: total }, (_, i) => i + 1));
    assert.ok(r.timings.encodeMs > 0 && r.timings.denoiseMs > 0 && r.timings.decodeMs > 0);
    // embeddings given: no encode stage; decode: false: no decode stage, the latent is the result
    const [pe, ne] = await model.encodePrompts([PROMPT, ""]);
    const seen2: Progress[] = [];
    const r2 = await generate({ model, ...base(), prompt: undefined, textEmbedding: pe, negativeEmbedding: ne, steps: 2, decode: false, onProgress: (p) => seen2.push(p) });
    assert.deepEqual([...new Set(seen2.map((p) => p.stage))], ["denoise"]);
    assert.equal(r2.decoded, false);
    assert.equal(r2.video, r2.latent);
  });

  test("a cache that reuses work changes the output and the compute (the contract below is not vacuous)", async () => {
    const r = await generate({ model, ...base(), cache: makeCache("fora", { interval: 2 }) });
    assert.ok(r.stats.computeSpeedup > 1.3, `speedup ${r.stats.computeSpeedup}`);
    assert.notDeepEqual(r.latent.data, reference.latent);
  });

  for (const name of ["mixcache", "mixcache-plus", "teacache", "magcache", "fbcache", "fora", "pab", "taylorseer"]) {
    test(`cache contract on the full pipeline: ${name} at its exact options reproduces the uncached video and latent bit for bit`, async () => {
      const def = STRATEGIES.find((d) => d.name === name)!;
      const r = await generate({ model, ...base(), cache: makeCache(name, def.exact) });
      assert.equal(r.stats.computeSpeedup, 1);
      assert.deepEqual(r.latent.data, reference.latent);
      assert.deepEqual(r.video.data, reference.video);
    });
  }
}
