/**
 * Tiny random umT5 text encoders in the exact transformers / diffusers Wan2.1 folder layout:
 *   <dir>/text_encoder/config.json           UMT5Config fields as transformers writes them
 *   <dir>/text_encoder/model.safetensors     or model-0000k-of-0000n.safetensors + model.safetensors.index.json
 *   <dir>/tokenizer/tokenizer.json (+ tokenizer_config.json, special_tokens_map.json)
 * Weights follow transformers' UMT5 init scales (so activations have realistic magnitudes), with
 * norms near 1 and a larger relative_attention_bias so that every layer's bias visibly matters.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeSafetensors, type WriteDtype } from "../../src/weights/safetensors.ts";
import { parseUmt5Config, umt5ExpectedShapes, type Umt5Config } from "../../src/models/umt5/config.ts";
import { randomArray, rng } from "./randomWeights.ts";
import { tempDir } from "./tmp.ts";
import { TINY_PIECES, writeUnigramTokenizer } from "./unigramTokenizer.ts";

/** config.json as transformers writes it for UMT5EncoderModel (sizes shrunk). */
export function tinyUmt5ConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ["UMT5EncoderModel"],
    classifier_dropout: 0.0,
    d_ff: 48,
    d_kv: 10,
    d_model: 24,
    decoder_start_token_id: 0,
    dense_act_fn: "gelu_new",
    dropout_rate: 0.1,
    eos_token_id: 1,
    feed_forward_proj: "gated-gelu",
    initializer_factor: 1.0,
    is_encoder_decoder: true,
    is_gated_act: true,
    layer_norm_epsilon: 1e-6,
    model_type: "umt5",
    num_decoder_layers: 2,
    num_heads: 3,
    num_layers: 2,
    output_past: true,
    pad_token_id: 0,
    relative_attention_max_distance: 128,
    relative_attention_num_buckets: 32,
    scalable_attention: true,
    tie_word_embeddings: false,
    tokenizer_class: "T5Tokenizer",
    torch_dtype: "float32",
    transformers_version: "4.44.0",
    use_cache: true,
    vocab_size: 64,
    ...overrides,
  };
}

export function tinyUmt5Weights(c: Umt5Config, seed = 1): Map<string, Float32Array> {
  const r = rng(seed);
  const D = c.d_model, I = c.num_heads * c.d_kv;
  const m = new Map<string, Float32Array>();
  for (const [k, shape] of umt5ExpectedShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let a: Float32Array;
    if (k.endsWith("layer_norm.weight")) a = randomArray(n, r, 0.2).map((v) => 1 + v);
    else if (k === "shared.weight") a = randomArray(n, r, 1);
    else if (k.endsWith(".q.weight")) a = randomArray(n, r, (D * c.d_kv) ** -0.5 * 2);
    else if (k.endsWith(".k.weight") || k.endsWith(".v.weight")) a = randomArray(n, r, D ** -0.5);
    else if (k.endsWith(".o.weight")) a = randomArray(n, r, I ** -0.5);
    else if (k.endsWith("relative_attention_bias.weight")) a = randomArray(n, r, 1);
    else if (k.endsWith("wo.weight")) a = randomArray(n, r, c.d_ff ** -0.5);
    else a = randomArray(n, r, D ** -0.5); // wi_0, wi_1
    m.set(k, a);
  }
  return m;
}

export interface TinyUmt5Options {
  seed?: number;
  config?: Record<string, unknown>;
  dtype?: WriteDtype;
  /** Split the weights over this many shards with a model.safetensors.index.json (default 1: one file). */
  shards?: number;
  /** Tokenizer pieces (default TINY_PIECES); null: write no tokenizer. */
  pieces?: [string, number][] | null;
  /** Drop these keys from the checkpoint (bad-input tests). */
  drop?: string[];
  /** Replace these tensors (bad-input tests): key -> [shape, data]. */
  replace?: Record<string, { shape: number[]; data: Float32Array }>;
  /** Write the embedding under encoder.embed_tokens.weight as well (transformers' tied copy). */
  tiedCopy?: boolean;
}

/** Write a tiny Wan2.1-style model folder; returns its paths, config and the fp32 weights written. */
export function writeTinyUmt5(dir: string = tempDir("mixcache-umt5-"), opts: TinyUmt5Options = {}) {
  const json = tinyUmt5ConfigJson(opts.config);
  const config = parseUmt5Config(json);
  const weights = tinyUmt5Weights(config, opts.seed ?? 1);
  const dtype = opts.dtype ?? "F32";
  const encDir = join(dir, "text_encoder");
  mkdirSync(encDir, { recursive: true });
  writeFileSync(join(encDir, "config.json"), JSON.stringify(json, null, 2));
  const tensors: Record<string, { dtype: WriteDtype; shape: number[]; data: Float32Array }> = {};
  for (const [k, shape] of umt5ExpectedShapes(config)) {
    if (opts.drop?.includes(k)) continue;
    const rep = opts.replace?.[k];
    tensors[k] = rep ? { dtype, ...rep } : { dtype, shape, data: weights.get(k)! };
  }
  if (opts.tiedCopy && tensors["shared.weight"]) tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"];
  const shards = opts.shards ?? 1;
  if (shards <= 1) writeSafetensors(join(encDir, "model.safetensors"), tensors);
  else {
    const keys = Object.keys(tensors).sort();
    const weightMap: Record<string, string> = {};
    let total = 0;
    for (let s = 0; s < shards; s++) {
      const name = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
      const part: typeof tensors = {};
      keys.filter((_, j) => j % shards === s).forEach((k) => {
        part[k] = tensors[k];
        weightMap[k] = name;
        total += tensors[k].data.length * (dtype === "F32" ? 4 : 2);
      });
      writeSafetensors(join(encDir, name), part);
    }
    writeFileSync(join(encDir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  }
  const tokDir = join(dir, "tokenizer");
  if (opts.pieces !== null) writeUnigramTokenizer(tokDir, opts.pieces ?? TINY_PIECES);
  return { dir, encDir, tokDir, config, weights };
}
