/**
 * umT5 text encoder (transformers UMT5EncoderModel) and WanPipeline's text path against the float64
 * reference (test/support/umt5Reference.ts), on tiny random checkpoints written in the exact
 * transformers folder layout (test/support/writeTinyUmt5.ts): module by module (attention layer,
 * FFN layer, block, final norm), end to end on padded prompts (mask), 2-3 layers each with its own
 * relative position bias, single-file F32, sharded BF16 and F16 checkpoints.
 * Tolerance: max |diff| <= 2e-5 x (1 + max |ref|) (the ONNX side is fp32; the reference reads the
 * same bf16/fp16-rounded weights, so differences are fp32 rounding only).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./support/tmp.ts";
import { StageSession, type Feed } from "../src/backend/ort.ts";
import { MixCacheError } from "../src/errors.ts";
import { openCheckpoint } from "../src/weights/safetensors.ts";
import { UMT5_XXL, layerKeys, parseUmt5Config, relativePositionBuckets, umt5ParameterCount } from "../src/models/umt5/config.ts";
import { buildAttentionGraph, buildBlockGraph, buildFeedForwardGraph, buildFinalNormGraph } from "../src/models/umt5/graphs.ts";
import { Umt5Encoder } from "../src/models/umt5/encoder.ts";
import { CheckpointSource } from "../src/models/umt5/weights.ts";
import { WanTextEncoder } from "../src/models/umt5/wan-text.ts";
import { benchUmt5Encoder } from "../src/models/umt5/bench.ts";
import { refAttentionLayer, refBucket, refEncoder, refFeedForwardLayer, refRmsNorm, refWanEmbedding } from "./support/umt5Reference.ts";
import { tinyUmt5ConfigJson, writeTinyUmt5, type TinyUmt5Options } from "./support/writeTinyUmt5.ts";
import { randomArray, rng } from "./support/randomWeights.ts";
import { checkClose, isCode } from "./support/compare.ts";

const TOL = 2e-5;

// temp folders (tiny checkpoints included) are removed when the process exits (support/tmp.ts)
const tiny = (opts: TinyUmt5Options = {}) => writeTinyUmt5(undefined, opts);

const check = (name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = TOL): number => checkClose(name, got, want, tol, 34);

test("config: transformers' config.json parses; the XXL shape has 5.7B parameters; bad fields are errors", () => {
  const c = parseUmt5Config(tinyUmt5ConfigJson());
  assert.equal(c.d_model, 24);
  assert.equal(c.feed_forward_proj, "gated-gelu");
  const xxl = umt5ParameterCount(UMT5_XXL);
  console.log(`  umT5-XXL encoder parameters: ${(xxl / 1e9).toFixed(3)}B`);
  assert.ok(xxl > 5.6e9 && xxl < 5.8e9);
  assert.throws(() => parseUmt5Config(tinyUmt5ConfigJson({ model_type: "t5" })), isCode("CONFIG", /not "umt5"/));
  assert.throws(() => parseUmt5Config({ ...tinyUmt5ConfigJson(), d_ff: undefined }), isCode("CONFIG", /missing field "d_ff"/));
  assert.throws(() => parseUmt5Config(tinyUmt5ConfigJson({ feed_forward_proj: "relu", dense_act_fn: "relu", is_gated_act: false })), isCode("CONFIG", /feed_forward_proj/));
  assert.throws(() => parseUmt5Config(tinyUmt5ConfigJson({ num_heads: 0 })), isCode("CONFIG", /num_heads/));
});

test("relative position buckets: bidirectional T5 buckets, known values, float64 formula agrees", () => {
  const S = 300;
  const b = relativePositionBuckets(S, 32, 128);
  const at = (rel: number) => (rel >= 0 ? b[rel] : b[-rel * S]); // row 0 (key - 0) / column 0 (0 - query)
  // exact buckets below 8, log buckets up to 128, keys after the query in the upper half
  const known: [number, number][] = [[0, 0], [1, 17], [-1, 1], [7, 23], [-7, 7], [8, 24], [-8, 8], [12, 25], [-16, 10], [16, 26], [-32, 12], [-64, 14], [-127, 15], [-128, 15], [-299, 15], [299, 31]];
  for (const [rel, want] of known) assert.equal(at(rel), want, `bucket(${rel})`);
  for (const [nb, md] of [[32, 128], [16, 20], [8, 10], [6, 7]] as const) {
    const t = relativePositionBuckets(64, nb, md);
    for (let q = 0; q < 64; q++) for (let k = 0; k < 64; k++) assert.equal(t[q * 64 + k], refBucket(k - q, nb, md), `nb ${nb} md ${md} rel ${k - q}`);
    assert.ok(Math.max(...t) < nb && Math.min(...t) >= 0);
  }
});

test("module parity: attention layer, FFN layer, block, final norm vs the float64 reference (padded keys masked)", async () => {
  const { config: c, weights } = tiny({ seed: 3, config: { num_layers: 2 } });
  const w = (k: string) => weights.get(k)!;
  const S = 11, D = c.d_model;
  const r = rng(5);
  const x = randomArray(S * D, r, 2);
  const mask = Float32Array.from({ length: S }, (_, s) => (s < 7 ? 1 : 0));
  const buckets = Float32Array.from(relativePositionBuckets(S, c.relative_attention_num_buckets, c.relative_attention_max_distance));
  const run = async (g: ReturnType<typeof buildBlockGraph>, withAttn: boolean) => {
    const s = await StageSession.create(g.name, g.toModel(), { threads: 1 });
    const feeds: Record<string, Feed> = withAttn
      ? { x: { data: x, dims: [S, D] }, buckets: { data: buckets, dims: [S, S] }, mask: { data: mask, dims: [S] } }
      : { x: { data: x, dims: [S, D] } };
    const [y] = await s.run(feeds, ["y"]);
    await s.release();
    return y;
  };
  for (let i = 0; i < c.num_layers; i++) {
    const attn = await run(buildAttentionGraph(c, w, i), true);
    check(`layer ${i} self-attention (+bias ${i})`, attn, refAttentionLayer(c, w, i, x, S, mask));
    check(`layer ${i} feed-forward`, await run(buildFeedForwardGraph(c, w, i), false), refFeedForwardLayer(c, w, i, x, S));
    check(`block ${i}`, await run(buildBlockGraph(c, w, i), true), refFeedForwardLayer(c, w, i, refAttentionLayer(c, w, i, x, S, mask), S));
    // each layer uses its own relative_attention_bias: layer i with the other layer's bias is far off
    const other = layerKeys(1 - i).relBias;
    const swapped = refAttentionLayer(c, (k) => (k === layerKeys(i).relBias ? w(other) : w(k)), i, x, S, mask);
    let dev = 0;
    for (let j = 0; j < S * D; j++) dev = Math.max(dev, Math.abs(attn[j] - swapped[j]));
    assert.ok(dev > 100 * TOL, `layer ${i}: output does not depend on its own bias (dev ${dev})`);
  }
  check("final layer norm", await run(buildFinalNormGraph(c, w), false), refRmsNorm(x, S, D, w("encoder.final_layer_norm.weight"), c.layer_norm_epsilon));
});

for (const variant of [
  { label: "single-file F32, 2 layers", dtype: "F32", shards: 1, layers: 2 },
  { label: "sharded BF16 (3 shards), 3 layers", dtype: "BF16", shards: 3, layers: 3 },
  { label: "sharded F16 (2 shards), 2 layers", dtype: "F16", shards: 2, layers: 2 },
] as const) {
  test(`end to end (${variant.label}): transformers folder -> last_hidden_state and WanPipeline embeddings`, async () => {
    const m = tiny({ seed: 7, dtype: variant.dtype, shards: variant.shards, config: { num_layers: variant.layers } });
    const ck = openCheckpoint(m.encDir); // the reference reads the same (rounded) weights
    const w = (k: string) => ck.readF32(k);
    const wan = WanTextEncoder.open({ modelDir: m.dir, threads: 1 });
    const prompts = ["a red circle moving left on the black background", "", "a big  dog &amp;amp; a small cat"];
    const encs = prompts.map((p) => wan.tokenize(p));
    // transformers' forward on the padded ids (S = 24 here to keep the float64 reference quick)
    const S = 24;
    const ids = encs.map((e) => e.ids.subarray(0, S));
    const masks = encs.map((e) => e.mask.subarray(0, S));
    const padded = await wan.encoder.forward(ids.map((x, j) => ({ ids: x, mask: masks[j] })), { mode: "padded" });
    const trimmed = await wan.encoder.forward(ids.map((x, j) => ({ ids: x, mask: masks[j] })));
    for (let j = 0; j < prompts.length; j++) {
      const ref = refEncoder(m.config, w, ids[j], masks[j]);
      check(`prompt ${j} padded (len ${encs[j].length}/${S})`, padded[j], ref);
      const D = m.config.d_model;
      check(`prompt ${j} trimmed vs padded`, trimmed[j], padded[j].subarray(0, encs[j].length * D), 1e-5);
    }
    // WanPipeline output: 512 rows, real rows then zeros, against the reference at the full 512
    const emb = await wan.encode(prompts);
    for (let j = 0; j < prompts.length; j++) {
      assert.equal(emb[j].tokens, 512);
      assert.equal(emb[j].data.length, 512 * m.config.d_model);
      assert.equal(emb[j].length, encs[j].length);
      if (j < 2) check(`prompt ${j} WanPipeline embedding (512)`, emb[j].data, refWanEmbedding(m.config, w, encs[j].ids, encs[j].mask));
      assert.ok(emb[j].data.subarray(emb[j].length * m.config.d_model).every((v) => v === 0), "zero padding");
    }
    ck.close();
    await wan.close();
  });
}

test("embedding rows: only the requested rows are read, in F32/BF16/F16, with repeats", () => {
  for (const dtype of ["F32", "BF16", "F16"] as const) {
    const m = tiny({ seed: 2, dtype, pieces: null });
    const src = CheckpointSource.open(m.encDir);
    const full = src.read("shared.weight");
    const D = m.config.d_model;
    const rows = [5, 0, 63, 5, 17];
    const got = src.readRows("shared.weight", rows);
    rows.forEach((r, j) => assert.deepEqual(got.subarray(j * D, (j + 1) * D), full.subarray(r * D, (r + 1) * D), `${dtype} row ${r}`));
    assert.throws(() => src.readRows("shared.weight", [64]), isCode("WEIGHTS", /outside/));
    src.close();
  }
});

test("prompt embedding cache: keyed by encoder and prompt, atomic files, corrupt files are misses", async () => {
  const m = tiny({ seed: 4 });
  const cacheDir = tempDir("mixcache-embcache-");
  const wan = WanTextEncoder.open({ modelDir: m.dir, cacheDir, threads: 1 });
  const [a1, n1] = await wan.encode(["a blue square", ""]);
  assert.equal(a1.fromCache, false);
  const files = readdirSync(cacheDir);
  assert.equal(files.filter((f) => f.endsWith(".emb")).length, 2);
  assert.ok(!files.some((f) => f.endsWith(".tmp")), "no temp files left");
  const [a2, n2] = await wan.encode(["a blue square", ""]);
  assert.equal(a2.fromCache, true);
  assert.equal(n2.fromCache, true);
  assert.deepEqual(a2.data, a1.data);
  assert.deepEqual(n2.data, n1.data);
  // a different prompt is a miss
  assert.equal((await wan.encodePrompt("a blue square.")).fromCache, false);
  // a corrupt file is a miss and is rewritten
  const path = (wan as unknown as { cache: { pathFor: (k: object) => string } }).cache.pathFor({ encoder: wan.encoder.fingerprint, tokenizer: wan.tokenizer.fingerprint, maxLength: 512, prompt: "a blue square" });
  assert.ok(existsSync(path));
  writeFileSync(path, "MXPE garbage");
  const a3 = await wan.encodePrompt("a blue square");
  assert.equal(a3.fromCache, false);
  assert.deepEqual(a3.data, a1.data);
  assert.equal((await wan.encodePrompt("a blue square")).fromCache, true);
  await wan.close();
  // other weights (same shapes) -> other fingerprint -> miss
  const m2 = tiny({ seed: 5 });
  const wan2 = WanTextEncoder.open({ modelDir: m2.dir, cacheDir, threads: 1 });
  assert.notEqual(wan2.encoder.fingerprint, wan.encoder.fingerprint);
  assert.equal((await wan2.encodePrompt("a blue square")).fromCache, false);
  await wan2.close();
});

test("bad inputs: vocabulary mismatch, missing keys, wrong shapes, ids out of range -> MixCacheError with a fix", async () => {
  // tokenizer has 48 ids, the embedding 40 rows
  const small = tiny({ config: { vocab_size: 40 } });
  assert.throws(() => WanTextEncoder.open({ modelDir: small.dir }), isCode("CONFIG", /48 token ids .* only 40 rows/));
  // config.json vocab_size disagrees with the embedding's rows
  const m = tiny({ config: { vocab_size: 64 } });
  writeFileSync(join(m.encDir, "config.json"), JSON.stringify(tinyUmt5ConfigJson({ vocab_size: 80 })));
  assert.throws(() => Umt5Encoder.open(m.encDir), (e: unknown) => isCode("WEIGHTS", /shared\.weight: expected \[80,24\], got \[64,24\]/)(e) && /vocab_size 80 but the embedding has 64 rows/.test((e as MixCacheError).fix!));
  // a missing key
  const miss = tiny({ drop: ["encoder.block.1.layer.1.DenseReluDense.wo.weight", "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"], pieces: null });
  assert.throws(() => Umt5Encoder.open(miss.encDir), isCode("WEIGHTS", /2 missing:[\s\S]*relative_attention_bias[\s\S]*wo\.weight/));
  // a wrong shape (q transposed)
  const bad = tiny({ replace: { "encoder.block.0.layer.0.SelfAttention.q.weight": { shape: [24, 30], data: new Float32Array(720) } }, pieces: null });
  assert.throws(() => Umt5Encoder.open(bad.encDir), isCode("WEIGHTS", /q\.weight: expected \[30,24\], got \[24,30\]/));
  // the tied copy encoder.embed_tokens.weight is accepted
  const tied = tiny({ tiedCopy: true, pieces: null });
  const enc = Umt5Encoder.open(tied.encDir, { threads: 1 });
  await assert.rejects(enc.forward([{ ids: [3, 64, 1] }]), isCode("VOCAB", /token id 64/));
  await assert.rejects(enc.forward([{ ids: [3, 1, 0], mask: [0, 0, 0] }]), isCode("USAGE", /no real token/));
  await enc.close();
  // no text_encoder folder
  assert.throws(() => Umt5Encoder.open(join(tied.dir, "nope")), (e: unknown) => e instanceof MixCacheError);
});

test("benchmark function runs on a small random encoder (weights made per layer)", async () => {
  const r = await benchUmt5Encoder({ config: { ...UMT5_XXL, d_model: 64, d_ff: 160, num_heads: 4, d_kv: 16, num_layers: 3 }, tokens: 20, threads: 1 });
  console.log(`  bench (tiny): total ${r.totalMs.toFixed(0)} ms, peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB, output finite ${r.finite}`);
  assert.equal(r.layers.length, 4);
  assert.ok(r.finite);
  assert.ok(r.peakRssBytes > 0);
});
