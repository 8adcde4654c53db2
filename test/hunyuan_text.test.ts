/**
 * HunyuanVideo's text encoders (LLaVA-Llama-3 as transformers LlamaModel, CLIP-L as CLIPTextModel)
 * and HunyuanVideoPipeline's prompt handling, on tiny random checkpoints in the exact diffusers /
 * transformers folder layout (test/support/writeTinyHunyuanText.ts), against plainly written
 * float64 references (test/support/llamaReference.ts, clipReference.ts): decoder layers with
 * grouped-query attention and a padding mask under default and llama3 RoPE, hidden_states[-3]
 * end to end (F32, sharded BF16, F16 with LlamaForCausalLM keys), CLIP's last_hidden_state and the
 * pooled output at the first "<|endoftext|>" (CLIP-L ids with the legacy eos_token_id 2, and
 * compact ids), the template, crop and mask, the streamed run against one all-at-once graph, the
 * prompt cache, and folders refused before any weight is read.
 * Tolerance: max |diff| <= 2e-5 x (1 + max |ref|) (the ONNX side is fp32; the reference reads the
 * same bf16/fp16-rounded weights, so differences are fp32 rounding).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./support/tmp.ts";
import { StageSession } from "../src/backend/ort.ts";
import { MixCacheError } from "../src/errors.ts";
import { openCheckpoint } from "../src/weights/safetensors.ts";
import { CheckpointSource } from "../src/models/umt5/weights.ts";
import { CLIP_L, ClipPromptTokenizer, benchLlamaEncoder, ClipTextEncoder, HUNYUAN_PROMPT_TEMPLATE, HunyuanTextEncoder, LLAVA_LLAMA3_8B, LlamaPromptTokenizer, LlamaTextEncoder, checkHunyuanTextDims, clipParameterCount, clipPoolIndex, formatTemplate, hunyuanTextMemory, llamaParameterCount, parseClipTextConfig, parseLlamaConfig, type WeightSource } from "../src/models/hunyuan-text/index.ts";
import { llamaInvFreq, llamaRopeTables } from "../src/models/hunyuan-text/llama-config.ts";
import { buildLlamaLayerGraph } from "../src/models/hunyuan-text/graphs.ts";
import { refInvFreq, refLlamaHiddenStates, refLlamaLayer } from "./support/llamaReference.ts";
import { refClipText, refPoolIndex } from "./support/clipReference.ts";
import { byteLevel, llamaTokenizerConfig, tinyClipConfigJson, tinyLlamaConfigJson, writeTinyHunyuanText, type TinyHunyuanTextOptions } from "./support/writeTinyHunyuanText.ts";
import { randomArray, rng } from "./support/randomWeights.ts";
import { checkClose, isCode } from "./support/compare.ts";

const TOL = 2e-5;
/** A short template in the default's shape (system header, "\n\n", user header, the prompt, eot). */
const TEMPLATE = { template: "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>" };
const LLAMA3_ROPE = { rope_theta: 10000.0, rope_scaling: { rope_type: "llama3", factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 16 } };

const tiny = (opts: TinyHunyuanTextOptions = {}) => writeTinyHunyuanText(undefined, opts);

const check = (name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = TOL): number => checkClose(name, got, want, tol, 52);

/** A weight source that counts the tensors read (whole or by rows) per key. */
function counting(src: WeightSource, reads: Map<string, number>): WeightSource {
  const bump = (k: string) => reads.set(k, (reads.get(k) ?? 0) + 1);
  return {
    path: src.path,
    keys: () => src.keys(),
    has: (k) => src.has(k),
    shape: (k) => src.shape(k),
    read: (k) => (bump(k), src.read(k)),
    readRows: (k, rows) => (bump(k), src.readRows(k, rows)),
    fingerprint: () => src.fingerprint(),
    close: () => src.close(),
  };
}

test("configs: transformers' config.json files parse; LLaVA-Llama-3-8B and CLIP-L sizes; unsupported fields are refused by name", () => {
  const c = parseLlamaConfig(tinyLlamaConfigJson());
  assert.equal(c.num_key_value_heads, 2);
  assert.equal(c.head_dim, 8);
  assert.equal(c.rope_scaling, null);
  const n8b = llamaParameterCount(LLAVA_LLAMA3_8B);
  const nClip = clipParameterCount(CLIP_L);
  console.log(`  LLaVA-Llama-3-8B LlamaModel parameters: ${(n8b / 1e9).toFixed(3)}B; CLIP-L text model: ${(nClip / 1e6).toFixed(2)}M`);
  assert.ok(n8b > 7.4e9 && n8b < 7.6e9);
  assert.ok(nClip > 123e6 && nClip < 123.2e6);
  // transformers 5 keeps rope_theta / rope type in rope_parameters
  const v5 = parseLlamaConfig({ ...tinyLlamaConfigJson({ rope_theta: undefined, rope_scaling: undefined }), rope_parameters: { rope_type: "llama3", rope_theta: 10000.0, factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 16 } });
  assert.equal(v5.rope_theta, 10000);
  assert.equal(v5.rope_scaling?.factor, 8);
  assert.throws(() => parseLlamaConfig(tinyLlamaConfigJson({ rope_scaling: { rope_type: "yarn", factor: 4.0 } })), isCode("CONFIG", /rope_scaling type "yarn" is not implemented/));
  assert.throws(() => parseLlamaConfig(tinyLlamaConfigJson({ rope_scaling: { type: "dynamic", factor: 2.0 } })), isCode("CONFIG", /"dynamic" is not implemented/));
  assert.throws(() => parseLlamaConfig(tinyLlamaConfigJson({ rope_scaling: { rope_type: "llama3", factor: 8.0 } })), isCode("CONFIG", /missing "low_freq_factor"/));
  assert.throws(() => parseLlamaConfig(tinyLlamaConfigJson({ hidden_act: "gelu" })), isCode("CONFIG", /hidden_act "gelu"/));
  assert.throws(() => parseLlamaConfig(tinyLlamaConfigJson({ num_key_value_heads: 3 })), isCode("CONFIG", /multiple of num_key_value_heads/));
  assert.throws(() => parseLlamaConfig({ model_type: "llava", text_config: {} }), isCode("CONFIG", /LLaVA config/));
  assert.throws(() => parseLlamaConfig(tinyLlamaConfigJson({ attention_bias: true })), isCode("CONFIG", /attention_bias/));
  assert.equal(parseClipTextConfig(tinyClipConfigJson()).hidden_act, "quick_gelu");
  assert.throws(() => parseClipTextConfig(tinyClipConfigJson({ hidden_act: "relu" })), isCode("CONFIG", /hidden_act "relu"/));
  assert.throws(() => parseClipTextConfig(tinyClipConfigJson({ model_type: "clip" })), isCode("CONFIG", /full CLIPModel/));
  assert.throws(() => parseClipTextConfig({ ...tinyClipConfigJson(), hidden_size: undefined }), isCode("CONFIG", /missing field "hidden_size"/));
});

test("rotary embeddings: inv_freq bit-identical to PyTorch's (default and llama3), rotate_half table layout", () => {
  const base = { model_type: "llama", vocab_size: 10, hidden_size: 4096, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 32, num_key_value_heads: 8 };
  // values printed by PyTorch (float32) for transformers' _compute_default_rope_parameters / _compute_llama3_parameters
  const def = llamaInvFreq(parseLlamaConfig({ ...base, rope_theta: 500000.0 }));
  const l31 = llamaInvFreq(parseLlamaConfig({ ...base, rope_theta: 500000.0, rope_scaling: { rope_type: "llama3", factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 } }));
  const torch: [Float32Array, number, number][] = [
    [def, 1, 0.8146172165870667], [def, 20, 0.016560440883040428], [def, 40, 0.00027424818836152554], [def, 63, 2.4551407022954663e-06],
    [l31, 28, 0.0032114461064338684], [l31, 30, 0.0013718936825171113], [l31, 34, 0.0001785077911335975], [l31, 40, 3.428102354519069e-05], [l31, 63, 3.068925877869333e-07],
  ];
  for (const [a, j, want] of torch) assert.equal(a[j], Math.fround(want), `inv_freq[${j}]`);
  const tinyC = parseLlamaConfig(tinyLlamaConfigJson(LLAMA3_ROPE));
  assert.deepEqual(Array.from(llamaInvFreq(tinyC)), [0.5760563611984253, 0.012500000186264515, 0.0012499999720603228, 0.0001250000059371814].map(Math.fround));
  // against the float64 reference formula: high band kept, low band / factor, the medium band between
  for (const c of [tinyC, parseLlamaConfig(tinyLlamaConfigJson())]) {
    const got = llamaInvFreq(c), want = refInvFreq(c);
    for (let j = 0; j < got.length; j++) assert.ok(Math.abs(got[j] - want[j]) <= 1e-6 * want[j], `inv_freq[${j}] ${got[j]} vs ${want[j]}`);
  }
  const { cos, sin } = llamaRopeTables(tinyC, 5);
  const d = tinyC.head_dim;
  for (let p = 0; p < 5; p++)
    for (let j = 0; j < d / 2; j++) {
      assert.equal(cos[p * d + j], cos[p * d + d / 2 + j]);
      assert.equal(sin[p * d + j], sin[p * d + d / 2 + j]);
      assert.ok(Math.abs(cos[p * d + j] - Math.cos(p * llamaInvFreq(tinyC)[j])) < 1e-6);
    }
});

test("tokenizers: the template, Llama-3 special tokens, right padding and mask; CLIP from vocab.json+merges.txt equals tokenizer.json", () => {
  const m = tiny({ clipTokenizer: "both" });
  const tok = LlamaPromptTokenizer.fromDir(m.tokDir);
  const V = (t: string) => {
    const id = m.llamaVocab.get(t);
    assert.ok(id !== undefined, `no ${t} in the tiny vocabulary`);
    return id;
  };
  assert.deepEqual(tok.prefixIds, [V("<|begin_of_text|>")]);
  assert.deepEqual(tok.suffixIds, []);
  assert.equal(tok.padId, V("<pad>"));
  // diffusers' DEFAULT_PROMPT_TEMPLATE, character for character, and str.format
  assert.equal(HUNYUAN_PROMPT_TEMPLATE.cropStart, 95);
  assert.equal(
    formatTemplate(HUNYUAN_PROMPT_TEMPLATE.template, "A cat"),
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: 1. The main content and theme of the video.2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects.3. Actions, events, behaviors temporal relationships, physical movement changes of the objects.4. background environment, light, style and atmosphere.5. camera angles, movements, and transitions used in the video:<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nA cat<|eot_id|>",
  );
  assert.equal(formatTemplate("{{x}} {} {0}", "p"), "{x} p p");
  assert.throws(() => formatTemplate("no field", "p"), isCode("USAGE", /no \{\}/));
  assert.throws(() => formatTemplate("{name}", "p"), isCode("USAGE", /unsupported field/));
  // prompt braces go in verbatim (str.format substitutes once)
  assert.equal(formatTemplate("[{}]", "{a}"), "[{a}]");
  // crop_start None: diffusers tokenizes the template and subtracts 2 ("{}" and "<|eot_id|>")
  const crop = tok.cropStart(TEMPLATE);
  assert.equal(crop, 14);
  assert.equal(tok.templatePrefixTokens(TEMPLATE.template), crop);
  const e = tok.encodePrompt("A cat walks on the grass", TEMPLATE, 12);
  const head = ["<|begin_of_text|>", "<|start_header_id|>", "system", "<|end_header_id|>", byteLevel("\n\n"), "Describe", byteLevel(" the"), byteLevel(" video"), ".", "<|eot_id|>", "<|start_header_id|>", "user", "<|end_header_id|>", byteLevel("\n\n")].map(V);
  const body = ["A", byteLevel(" cat"), byteLevel(" walks"), byteLevel(" on"), byteLevel(" the"), byteLevel(" grass"), "<|eot_id|>"].map(V);
  assert.equal(e.ids.length, 12 + crop);
  assert.deepEqual([...e.ids], [...head, ...body, ...new Array(12 - body.length).fill(V("<pad>"))]);
  assert.deepEqual([...e.mask], [...new Array(crop + body.length).fill(1), ...new Array(12 - body.length).fill(0)]);
  assert.equal(e.length, crop + body.length);
  assert.equal(e.truncated, false);
  // truncation: the text is cut on the right (no eos is appended by LlamaTokenizerFast)
  const t = tok.encodePrompt("A cat walks on the grass", TEMPLATE, 3);
  assert.deepEqual([...t.ids.subarray(crop)], body.slice(0, 3));
  assert.equal(t.truncated, true);
  assert.ok(t.mask.every((v) => v === 1));

  const clip = ClipPromptTokenizer.fromDir(m.tok2Dir);
  assert.equal(clip.format, "tokenizer.json");
  assert.deepEqual([clip.bosId, clip.eosId, clip.padId], [49406, 49407, 49407]);
  const c = clip.encode("A Cat  walks on the GRASS, big dog!");
  const cv = m.clipVocab.vocab;
  const want = [49406, ...["a</w>", "cat</w>", "walks</w>", "on</w>", "the</w>", "grass</w>", ",</w>", "big</w>", "dog</w>", "!</w>"].map((w) => cv.get(w)!), 49407];
  assert.deepEqual([...c.ids.subarray(0, want.length)], want);
  assert.equal(c.ids.length, 77);
  assert.ok(c.ids.subarray(want.length).every((v) => v === 49407), "CLIP pads with <|endoftext|>");
  assert.equal(c.length, want.length);
  const long = clip.encode(Array(60).fill("red cat").join(" "));
  assert.equal(long.ids[76], 49407, "truncation keeps <|endoftext|>");
  assert.equal(long.truncated, true);
  rmSync(join(m.tok2Dir, "tokenizer.json"));
  const slow = ClipPromptTokenizer.fromDir(m.tok2Dir);
  assert.equal(slow.format, "vocab.json+merges.txt");
  for (const p of ["A Cat  walks on the GRASS, big dog!", "moving\tleft\n\ncircle 12 ok", ""]) assert.deepEqual([...slow.encode(p).ids], [...clip.encode(p).ids], p);
});

test("Llama decoder layer vs the float64 reference: GQA, padding mask, default / llama3 RoPE, multi-query", async () => {
  for (const v of [
    { label: "4 heads / 2 kv heads, theta 500000", cfg: {} },
    { label: "4 heads / 2 kv heads, llama3 rope_scaling", cfg: LLAMA3_ROPE },
    { label: "4 heads / 1 kv head (multi-query)", cfg: { num_key_value_heads: 1 } },
  ]) {
    const m = tiny({ llama: { ...v.cfg, num_hidden_layers: 2 }, omit: ["tokenizer_2", "text_encoder_2"] });
    const c = m.llama;
    const w = (k: string) => m.llamaWeights.get(k)!;
    const S = 13, D = c.hidden_size;
    const x = randomArray(S * D, rng(5), 2);
    const mask = Array.from({ length: S }, (_, s) => (s < 9 ? 1 : 0));
    const rope = llamaRopeTables(c, S);
    for (let i = 0; i < 2; i++) {
      const g = buildLlamaLayerGraph(c, w, i);
      const s = await StageSession.create(g.name, g.toModel(), { threads: 1 });
      const [y] = await s.run({ x: { data: x, dims: [S, D] }, cos: { data: rope.cos, dims: [S, c.head_dim] }, sin: { data: rope.sin, dims: [S, c.head_dim] }, mask: { data: LlamaTextEncoder.additiveMask(mask, S), dims: [S, S] } }, ["y"]);
      await s.release();
      check(`layer ${i}, ${v.label}`, y, refLlamaLayer(c, w, i, x, S, mask));
    }
  }
});

for (const v of [
  { label: "single-file F32", opts: {} },
  { label: "sharded BF16 (3 shards), llama3 RoPE", opts: { llamaDtype: "BF16", llamaShards: 3, llama: LLAMA3_ROPE } },
  { label: 'F16, LlamaForCausalLM keys ("model." + lm_head)', opts: { llamaDtype: "F16", llamaPrefix: "model." } },
] as const) {
  test(`Llama encoder end to end (${v.label}): hidden_states[-3] and [-1] of padded prompts; the skipped layers are never read`, async () => {
    const m = tiny({ seed: 7, ...v.opts, omit: ["text_encoder_2", "tokenizer_2"] } as TinyHunyuanTextOptions);
    const ck = openCheckpoint(m.encDir); // the reference reads the same (rounded) weights
    const w = (k: string) => ck.readF32(k);
    const reads = new Map<string, number>();
    const src = CheckpointSource.open(m.encDir);
    const enc = new LlamaTextEncoder(m.llama, counting(src, reads), { threads: 1 });
    assert.equal(enc.prefix, m.prefix);
    assert.equal(reads.size, 0, "opening reads no tensor");
    const tok = LlamaPromptTokenizer.fromDir(m.tokDir);
    const prompts = ["A cat walks on the grass", "a big red dog moving left", ""];
    const encs = prompts.map((p) => tok.encodePrompt(p, TEMPLATE, 10));
    const L = m.llama.num_hidden_layers, D = m.llama.hidden_size;
    const h3 = await enc.hiddenState(encs.map((e) => ({ ids: e.ids, mask: e.mask })), -3);
    const lastKeys = [...reads.keys()].filter((k) => new RegExp(`layers\\.(${L - 2}|${L - 1})\\.|(^|\\.)norm\\.weight$`).test(k));
    assert.deepEqual(lastKeys, [], "layers L-2, L-1 and the final norm are not read for hidden_states[-3]");
    const h1 = await enc.hiddenState(encs.map((e) => ({ ids: e.ids, mask: e.mask })), -1);
    const real = await enc.hiddenState(encs.map((e) => ({ ids: e.ids, mask: e.mask })), -3, { rows: "real" });
    for (let j = 0; j < prompts.length; j++) {
      const ref = refLlamaHiddenStates(m.llama, w, encs[j].ids, encs[j].mask, m.prefix);
      check(`prompt ${j} hidden_states[-3] (${encs[j].length}/${encs[j].ids.length} real)`, h3[j], ref[L - 2]);
      check(`prompt ${j} hidden_states[-1] (final norm)`, h1[j], ref[L]);
      check(`prompt ${j} real rows only = padded run's rows`, real[j].subarray(0, encs[j].length * D), h3[j].subarray(0, encs[j].length * D), 1e-5);
      assert.ok(real[j].subarray(encs[j].length * D).every((x) => x === 0), "padded rows zero");
    }
    await enc.close();
    ck.close();
  });
}

for (const v of [
  { label: "CLIP-L ids (49406/49407), legacy eos_token_id 2, vocab.json+merges.txt, F16", opts: { clipDtype: "F16" } },
  { label: "compact ids, eos_token_id = <|endoftext|>, tokenizer.json, gelu", opts: { clipIds: "compact", clipTokenizer: "tokenizer.json", clip: { hidden_act: "gelu" } } },
] as const) {
  test(`CLIP text encoder (${v.label}): last_hidden_state and pooler_output at the first <|endoftext|>`, async () => {
    const m = tiny({ seed: 3, ...v.opts, omit: ["text_encoder", "tokenizer"] } as TinyHunyuanTextOptions);
    const ck = openCheckpoint(m.enc2Dir);
    const w = (k: string) => ck.readF32(k);
    const enc = ClipTextEncoder.open(m.enc2Dir, { threads: 1 });
    const tok = ClipPromptTokenizer.fromDir(m.tok2Dir);
    const prompts = ["A cat walks on the grass", "red circle moving left, big dog", ""];
    const ids = prompts.map((p) => tok.encode(p).ids);
    const all = await enc.forward(ids.map((x) => ({ ids: x })), { rows: "all" });
    const pooled = await enc.forward(ids.map((x) => ({ ids: x })));
    for (let j = 0; j < prompts.length; j++) {
      const ref = refClipText(m.clip, w, ids[j]);
      assert.equal(ref.poolIndex, tok.encode(prompts[j]).length - 1, "pooled at the first <|endoftext|>");
      assert.equal(all[j].poolIndex, ref.poolIndex);
      assert.equal(pooled[j].rows, ref.poolIndex + 1, "only the tokens up to the pooled one run");
      check(`prompt ${j} last_hidden_state (77 rows)`, all[j].hidden, ref.last);
      check(`prompt ${j} pooler_output (run to token ${ref.poolIndex})`, pooled[j].pooled, ref.pooled);
    }
    await enc.close();
    ck.close();
  });
}

test("CLIP pooled position: transformers' two rules", () => {
  for (const [ids, eos, want] of [
    [[49406, 320, 49407, 49407, 49407], 2, 2], // CLIP-L: the largest id is 49407 -> argmax, its first occurrence
    [[49406, 320, 49407, 2, 49407], 2, 2], // ... even with the legacy eos_token_id 2 present
    [[30, 5, 31, 31], 31, 2], // other vocabularies: first eos_token_id
    [[30, 5, 7], 31, 0], // no eos: argmax of zeros
  ] as [number[], number, number][]) {
    assert.equal(clipPoolIndex(ids, eos), want, JSON.stringify(ids));
    assert.equal(refPoolIndex(ids, eos), want);
  }
});

test("HunyuanTextEncoder: template, crop 256 rows, mask, pooled against the references; paddedRows zero; streamed = all at once", async () => {
  // default RoPE here: at 270 positions the float64 llama3 formula of the reference and PyTorch's
  // float32 one (which llamaInvFreq follows bit for bit, tested above) differ by one float32 step of
  // inv_freq[0], 1.6e-5 rad of angle at the last position; llama3 runs end to end on 24 positions above
  const m = tiny({ seed: 11, llamaDtype: "BF16", llamaShards: 2 });
  const enc = HunyuanTextEncoder.open({ modelDir: m.dir, threads: 1, promptTemplate: TEMPLATE });
  assert.equal(enc.cropStart, 14);
  assert.deepEqual(enc.warnings, []);
  assert.deepEqual(enc.dims, { text: 32, pooled: 16 });
  checkHunyuanTextDims(enc, { text_embed_dim: 32, pooled_projection_dim: 16 });
  assert.throws(() => checkHunyuanTextDims(enc, { text_embed_dim: 4096, pooled_projection_dim: 16 }), isCode("CONFIG", /text_embed_dim is 4096/));
  const ck = openCheckpoint(m.encDir), ck2 = openCheckpoint(m.enc2Dir);
  const w = (k: string) => ck.readF32(k), w2 = (k: string) => ck2.readF32(k);
  const prompts = ["A cat walks on the grass", "a big red dog"];
  const layers: string[] = [];
  const out = await enc.encode(prompts, { onLayer: (t) => layers.push(`${t.encoder}${t.layer}`) });
  const L = m.llama.num_hidden_layers, D = 32, T = 256, crop = 14;
  assert.deepEqual(layers, ["llama0", "llama1", "clip0", "clip1", "clip2", "clip3"], "Llama: layers 0..L-3 only (no final norm); CLIP: 3 layers + final norm");
  for (let j = 0; j < prompts.length; j++) {
    const t = enc.tokenize(prompts[j]);
    assert.equal(t.llama.ids.length, T + crop);
    const ref = refLlamaHiddenStates(m.llama, w, t.llama.ids, t.llama.mask, "", L - 2)[L - 2];
    assert.equal(out[j].tokens, T);
    assert.equal(out[j].data.length, T * D);
    check(`prompt ${j} prompt_embeds = hidden_states[-3][${crop}:]`, out[j].data, ref.subarray(crop * D, (crop + T) * D));
    assert.deepEqual([...out[j].mask], [...t.llama.mask.subarray(crop)], "mask cropped");
    assert.equal(out[j].length, t.llama.length - crop);
    assert.equal(out[j].mask[0], 1, "the first kept token is the prompt's");
    check(`prompt ${j} pooled_prompt_embeds`, out[j].pooled, refClipText(m.clip, w2, t.clip.ids).pooled);
    // padded rows are the encoder's, not zero
    assert.ok(out[j].data.subarray(out[j].length * D).some((x) => x !== 0), "padded rows as the pipeline leaves them");
  }
  // paddedRows "zero": the real rows are the same, the padded rows zero
  const z = await enc.encode(prompts, { paddedRows: "zero" });
  for (let j = 0; j < prompts.length; j++) {
    const n = out[j].length * D;
    check(`prompt ${j} paddedRows zero: real rows`, z[j].data.subarray(0, n), out[j].data.subarray(0, n), 1e-5);
    assert.ok(z[j].data.subarray(n).every((x) => x === 0));
    assert.deepEqual(z[j].pooled, out[j].pooled);
  }
  // the streamed run (one session per layer, released after it) equals one graph of all the layers,
  // and a batch equals its prompts one by one
  const ids = prompts.map((p) => enc.tokenize(p).llama);
  const streamed = await enc.llama.hiddenState(ids, -3);
  const once = await enc.llama.hiddenStateAllAtOnce(ids, -3);
  for (let j = 0; j < prompts.length; j++) check(`prompt ${j} streamed vs all-at-once graph`, streamed[j], once[j], 1e-6);
  const single = await enc.encode([prompts[1]]);
  assert.deepEqual(single[0].data, out[1].data, "batch of two = one prompt alone");
  assert.deepEqual(single[0].pooled, out[1].pooled);
  // the same prompt twice: encoded once, both filled
  const twice = await enc.encode([prompts[0], prompts[0]]);
  assert.deepEqual(twice[0].data, out[0].data);
  assert.deepEqual(twice[1].data, out[0].data);
  await enc.close();
  ck.close();
  ck2.close();
});

test("HunyuanTextEncoder with diffusers' default template (crop_start 95): 256 x D, mask, the crop as diffusers does it", async () => {
  const m = tiny({ seed: 2 });
  const enc = HunyuanTextEncoder.open({ modelDir: m.dir, threads: 1 });
  assert.equal(enc.cropStart, 95);
  assert.equal(enc.llamaTokens, 351);
  // the tiny tokenizer spells the default template in far more than 95 tokens: said, and cropped all the same
  assert.ok(enc.warnings.some((x) => /crop_start is 95/.test(x)), enc.warnings.join("\n"));
  const [e] = await enc.encode(["A cat walks on the grass"]);
  const t = enc.tokenize("A cat walks on the grass");
  assert.equal(e.data.length, 256 * 32);
  assert.deepEqual([...e.mask], [...t.llama.mask.subarray(95)]);
  const ck = openCheckpoint(m.encDir);
  const L = m.llama.num_hidden_layers;
  const ref = refLlamaHiddenStates(m.llama, (k) => ck.readF32(k), t.llama.ids, t.llama.mask, "", L - 2)[L - 2];
  check("default template: hidden_states[-3][95:351]", e.data, ref.subarray(95 * 32, 351 * 32));
  ck.close();
  await enc.close();
});

test("prompt cache: keyed by encoders, template and prompt; cached = computed; a corrupt file is a miss", async () => {
  const m = tiny({ seed: 4 });
  const cacheDir = tempDir("mixcache-hycache-");
  const enc = HunyuanTextEncoder.open({ modelDir: m.dir, threads: 1, promptTemplate: TEMPLATE, maxSequenceLength: 16, cacheDir });
  const [a1, n1] = await enc.encode(["a big dog", ""]);
  assert.equal(a1.fromCache, false);
  const files = readdirSync(cacheDir);
  assert.equal(files.filter((f) => f.endsWith(".emb")).length, 4, "two prompts x (Llama rows, pooled)");
  const [a2, n2] = await enc.encode(["a big dog", ""]);
  assert.ok(a2.fromCache && n2.fromCache);
  assert.deepEqual(a2.data, a1.data);
  assert.deepEqual(a2.pooled, a1.pooled);
  assert.deepEqual(a2.mask, a1.mask);
  assert.deepEqual(n2.data, n1.data);
  for (const f of readdirSync(cacheDir)) writeFileSync(join(cacheDir, f), "MXPE garbage");
  const a3 = await enc.encodePrompt("a big dog");
  assert.equal(a3.fromCache, false);
  assert.deepEqual(a3.data, a1.data);
  // "zero" padded rows and another template are other entries
  assert.equal((await enc.encodePrompt("a big dog", { paddedRows: "zero" })).fromCache, false);
  await enc.close();
  const other = HunyuanTextEncoder.open({ modelDir: m.dir, threads: 1, promptTemplate: { template: TEMPLATE.template.replace("video", "clip") }, maxSequenceLength: 16, cacheDir });
  const b = await other.encodePrompt("a big dog");
  assert.equal(b.fromCache, false);
  assert.notDeepEqual(b.data, a1.data);
  assert.deepEqual(b.pooled, a1.pooled, "the CLIP vector does not depend on the template");
  await other.close();
});

test("bad folders are refused at open, naming the component and the fix, before any weight is read", async () => {
  const reads = new Map<string, number>();
  const good = tiny();
  const enc = HunyuanTextEncoder.open({ modelDir: good.dir, wrapSource: (s) => counting(s, reads) });
  assert.equal(reads.size, 0, "open reads headers, configs and tokenizers only");
  await enc.close();
  const info = HunyuanTextEncoder.inspect(good.dir);
  assert.deepEqual(
    { ...info.text_encoder, diskBytes: info.text_encoder.diskBytes! > 0 },
    { class: "LlamaModel", parameters: llamaParameterCount(good.llama), dtype: "F32", diskBytes: true, layers: 4, layersRun: 2, hiddenSize: 32 },
  );
  assert.equal(info.text_encoder_2.parameters, clipParameterCount(good.clip));
  assert.equal(info.text_encoder_2.layersRun, 3);
  assert.deepEqual([info.cropStart, info.maxSequenceLength, info.llamaTokens, info.clipMaxLength], [95, 256, 351, 77]);

  const open = (dir: string) => () => HunyuanTextEncoder.open({ modelDir: dir, wrapSource: (s) => counting(s, reads) });
  const noClip = tiny({ omit: ["text_encoder_2", "tokenizer_2"] });
  assert.throws(open(noClip.dir), (e: unknown) => isCode("CONFIG", /no text_encoder_2\/ \(CLIP-L.*no tokenizer_2\//)(e) && /--include 'text_encoder_2\/\*' --include 'tokenizer_2\/\*'/.test((e as MixCacheError).fix!) && /prompt_embeds/.test((e as MixCacheError).fix!));
  const noTok = tiny();
  rmSync(join(noTok.tokDir, "tokenizer.json"));
  assert.throws(open(noTok.dir), isCode("CONFIG", /tokenizer .*no tokenizer\.json/));
  const left = tiny({ llamaTokenizerConfig: { padding_side: "left" } });
  assert.throws(open(left.dir), isCode("CONFIG", /padding_side is "left"/));
  const noSide = tiny({ llamaTokenizerConfig: { padding_side: undefined } });
  assert.throws(open(noSide.dir), (e: unknown) => isCode("CONFIG", /no "padding_side".*LlamaTokenizerFast/)(e) && /"padding_side": "right"/.test((e as MixCacheError).fix!));
  const noPad = tiny();
  writeFileSync(join(noPad.tokDir, "tokenizer_config.json"), JSON.stringify({ ...llamaTokenizerConfig(), pad_token: undefined }));
  writeFileSync(join(noPad.tokDir, "special_tokens_map.json"), JSON.stringify({ bos_token: "<|begin_of_text|>" }));
  assert.throws(open(noPad.dir), isCode("CONFIG", /no pad_token/));
  const badJson = tiny();
  writeFileSync(join(badJson.tokDir, "tokenizer.json"), "{ not json");
  assert.throws(open(badJson.dir), isCode("CONFIG", /not valid JSON/));
  const noMerges = tiny();
  rmSync(join(noMerges.tok2Dir, "merges.txt"));
  assert.throws(open(noMerges.dir), isCode("CONFIG", /tokenizer_2 .*neither tokenizer\.json nor vocab\.json \+ merges\.txt/));
  const smallVocab = tiny({ llama: { vocab_size: 300 } });
  assert.throws(open(smallVocab.dir), isCode("CONFIG", /has 331 token ids but the text encoder's embedding .* has only 300 rows/));
  const missingKey = tiny({ dropLlama: ["layers.3.mlp.down_proj.weight"] });
  assert.throws(open(missingKey.dir), isCode("WEIGHTS", /1 missing:\s+layers\.3\.mlp\.down_proj\.weight/));
  const wrongVocab = tiny();
  writeFileSync(join(wrongVocab.encDir, "config.json"), JSON.stringify(tinyLlamaConfigJson({ vocab_size: 448 })));
  assert.throws(open(wrongVocab.dir), (e: unknown) => isCode("WEIGHTS", /embed_tokens\.weight: expected \[448,32\], got \[384,32\]/)(e) && /vocab_size 448 but embed_tokens has 384 rows/.test((e as MixCacheError).fix!));
  const yarn = tiny();
  writeFileSync(join(yarn.encDir, "config.json"), JSON.stringify(tinyLlamaConfigJson({ rope_scaling: { rope_type: "yarn", factor: 4.0 } })));
  assert.throws(open(yarn.dir), isCode("CONFIG", /text_encoder.*rope_scaling type "yarn" is not implemented/));
  const relu = tiny();
  writeFileSync(join(relu.enc2Dir, "config.json"), JSON.stringify(tinyClipConfigJson({ hidden_act: "relu" })));
  assert.throws(open(relu.dir), isCode("CONFIG", /text_encoder_2.*hidden_act "relu"/));
  const clipShape = tiny();
  writeFileSync(join(clipShape.enc2Dir, "config.json"), JSON.stringify(tinyClipConfigJson({ intermediate_size: 44 })));
  assert.throws(open(clipShape.dir), isCode("WEIGHTS", /fc1\.weight: expected \[44,16\], got \[40,16\]/));
  const nullIndex = tiny();
  writeFileSync(join(nullIndex.dir, "model_index.json"), JSON.stringify({ _class_name: "HunyuanVideoPipeline", text_encoder: [null, null] }));
  assert.throws(open(nullIndex.dir), isCode("CONFIG", /text_encoder is null/));
  const noConfig = tiny();
  rmSync(join(noConfig.encDir, "config.json"));
  assert.throws(open(noConfig.dir), isCode("CONFIG", /text_encoder\/ has no config\.json/));
  assert.throws(open(join(good.dir, "nope")), isCode("CONFIG", /is not a folder/));
  // the CLIP-L tokenizer's ids need CLIP-L's 49408 embedding rows
  const clipRows = tiny({ clip: { vocab_size: 600 } });
  assert.throws(open(clipRows.dir), isCode("CONFIG", /tokenizer_2 .* has 49408 token ids but the CLIP text encoder's embedding .* has only 600 rows/));
  assert.equal(reads.size, 0, "no refused folder had a tensor read");
  // ids beyond the embedding at run time, and inputs that are not right padded
  const llama = LlamaTextEncoder.open(good.encDir, { threads: 1 });
  await assert.rejects(llama.hiddenState([{ ids: [1, 384] }], -3), isCode("VOCAB", /token id 384/));
  await assert.rejects(llama.hiddenState([{ ids: [1, 2, 3], mask: [1, 0, 1] }], -3), isCode("USAGE", /right padding/));
  await assert.rejects(llama.hiddenState([{ ids: [1, 2], mask: [0, 0] }], -3), isCode("USAGE", /first token is padding/));
  assert.throws(() => llama.resolveIndex(6), isCode("USAGE", /outside the 5 states/));
  await llama.close();
});

test("benchmark function runs on a small random Llama encoder (weights made per layer)", async () => {
  const r = await benchLlamaEncoder({ config: parseLlamaConfig(tinyLlamaConfigJson()), tokens: 20, realTokens: 15, layers: 2, threads: 1 });
  console.log(`  bench (tiny): total ${r.totalMs.toFixed(0)} ms, peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB, finite ${r.finite}`);
  assert.equal(r.layers.length, 2);
  assert.ok(r.finite);
});

test("memory: the real 8B streams one decoder layer at a time", () => {
  const mem = hunyuanTextMemory(LLAVA_LLAMA3_8B, CLIP_L, { prompts: 2 });
  const gib = (b: number) => (b / 2 ** 30).toFixed(2);
  console.log(
    `  Llama-3-8B: ${mem.llamaLayersRun} of 32 layers run, ${mem.llamaTokens} tokens; one layer ${gib(mem.llamaLayerBytes)} GiB fp32; ` +
      `stage ${gib(mem.llamaStageBytes)} GiB; CLIP stage ${gib(mem.clipStageBytes)} GiB; peak ${gib(mem.peakBytes)} GiB for 2 prompts (whole encoder as fp32: ${gib(mem.llamaFullBytes)} GiB)`,
  );
  assert.equal(mem.llamaLayersRun, 30);
  assert.equal(mem.llamaTokens, 351);
  assert.equal(mem.llamaLayerBytes, 4 * 218_112_000);
  assert.ok(mem.peakBytes > 1.6 * 2 ** 30 && mem.peakBytes < 2.5 * 2 ** 30, `peak ${mem.peakBytes}`);
  assert.ok(mem.llamaFullBytes > 27 * 2 ** 30);
  assert.ok(hunyuanTextMemory(LLAVA_LLAMA3_8B, CLIP_L, { prompts: 2, realTokens: 120 }).peakBytes < mem.peakBytes);
});
