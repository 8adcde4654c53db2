/**
 * Tiny random HunyuanVideo text encoders in the exact diffusers / transformers folder layout:
 *   <dir>/model_index.json                    HunyuanVideoPipeline, the four text components
 *   <dir>/text_encoder/config.json            LlamaConfig as transformers writes it for LlamaModel
 *   <dir>/text_encoder/model.safetensors      or model-0000k-of-0000n.safetensors + model.safetensors.index.json
 *   <dir>/tokenizer/tokenizer.json            Llama-3 layout: byte-level BPE (ignore_merges), the Llama-3
 *                                             split regex, "<|begin_of_text|>" $A, header/eot special tokens,
 *                                             LLaVA's "<pad>" and "<image>"; tokenizer_config.json with
 *                                             padding_side "right" (as diffusers' conversion saves it)
 *   <dir>/text_encoder_2/config.json          CLIPTextConfig (CLIPTextModel)
 *   <dir>/text_encoder_2/model.safetensors    text_model.* keys
 *   <dir>/tokenizer_2/vocab.json, merges.txt  the slow CLIPTokenizer's files (and/or tokenizer.json):
 *                                             byte-level BPE with "</w>", "<|startoftext|>" / "<|endoftext|>"
 * The Llama embedding has more rows than the tokenizer has ids (384 vs 332; the real one 128320 vs 128258).
 * With `clipIds: "clip-l"` (the default) the CLIP vocabulary is sparse so that its special tokens
 * have CLIP-L's ids 49406 / 49407 and the config keeps CLIP-L's legacy eos_token_id 2: the pooled
 * output is found as transformers finds it for the real model.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeSafetensors, type WriteDtype } from "../../src/weights/safetensors.ts";
import { llamaExpectedShapes, parseLlamaConfig, type LlamaTextConfig } from "../../src/models/hunyuan-text/llama-config.ts";
import { clipExpectedShapes, parseClipTextConfig, type ClipTextConfig } from "../../src/models/hunyuan-text/clip-config.ts";
import { randomArray, rng } from "./randomWeights.ts";
import { tempDir } from "./tmp.ts";

// ---- byte-level BPE alphabet (GPT-2 bytes_to_unicode) ----

/** The 256 byte characters in bytes_to_unicode order, and byte -> character. */
export const BYTE_CHARS: string[] = (() => {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  const map: string[] = new Array(256);
  bs.forEach((b, i) => (map[b] = String.fromCodePoint(cs[i])));
  return map;
})();

/** A string's bytes as byte-level characters (" a" -> "Ġa"). */
export function byteLevel(s: string): string {
  return Array.from(new TextEncoder().encode(s), (b) => BYTE_CHARS[b]).join("");
}

/** Left-to-right merges that build each word from its characters (symbols may carry a suffix on the last one). */
function mergesFor(words: string[][], vocab: Map<string, number>): [string, string][] {
  const merges: [string, string][] = [];
  const seen = new Set<string>();
  for (const symbols of words) {
    let acc = symbols[0];
    for (let i = 1; i < symbols.length; i++) {
      const pair: [string, string] = [acc, symbols[i]];
      acc += symbols[i];
      const key = pair.join(" ");
      if (!seen.has(key)) {
        seen.add(key);
        merges.push(pair);
      }
      if (!vocab.has(acc)) vocab.set(acc, vocab.size);
    }
  }
  return merges;
}

const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

/** Words (as they appear after the Llama-3 split) the tiny Llama vocabulary holds whole. */
export const LLAMA_WORDS = [
  "A", " a", " cat", " walks", " on", " the", " grass", " red", " circle", " moving", " left", " big", " dog",
  "system", "user", "Describe", " video", ".", ",", ":", "\n\n", " of", " and", "{}",
];
export const LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<pad>", "<image>"];

/** The Llama-3 pre-tokenizer regex (tokenizer.json of meta-llama/Meta-Llama-3-8B). */
export const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** A tiny Llama-3-layout tokenizer.json; returns it with its vocabulary. */
export function llamaTokenizerJson(): { json: Record<string, unknown>; vocab: Map<string, number>; specials: Record<string, number> } {
  const vocab = new Map<string, number>();
  for (const c of BYTE_CHARS) vocab.set(c, vocab.size);
  const words = LLAMA_WORDS.map((w) => Array.from(byteLevel(w)));
  const merges = mergesFor(words, vocab);
  const specials: Record<string, number> = {};
  const added = LLAMA_SPECIALS.map((t) => {
    specials[t] = vocab.size + Object.keys(specials).length;
    return special(specials[t], t);
  });
  const bos = "<|begin_of_text|>";
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: LLAMA3_SPLIT }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "Sequence",
      processors: [
        { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: "TemplateProcessing",
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
          special_tokens: { [bos]: { id: bos, ids: [specials[bos]], tokens: [bos] } },
        },
      ],
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: true,
      vocab: Object.fromEntries(vocab),
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  for (const [t, id] of Object.entries(specials)) vocab.set(t, id);
  return { json, vocab, specials };
}

/** tokenizer_config.json of the LLaVA-Llama-3 tokenizer as diffusers saves it (abridged). */
export function llamaTokenizerConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    bos_token: "<|begin_of_text|>",
    clean_up_tokenization_spaces: true,
    eos_token: "<|end_of_text|>",
    model_input_names: ["input_ids", "attention_mask"],
    model_max_length: 1000000000000000019884624838656,
    pad_token: "<pad>",
    padding_side: "right",
    tokenizer_class: "PreTrainedTokenizerFast",
    ...overrides,
  };
}

/** Words (lower case, as CLIP's split gives them) the tiny CLIP vocabulary builds by merges. */
export const CLIP_WORDS = ["cat", "walks", "on", "the", "grass", "red", "circle", "moving", "left", "big", "dog", "video"];

/**
 * A tiny CLIP vocabulary (bytes, bytes + "</w>", merge results, then the two specials) and its
 * merges. ids "clip-l": the specials get CLIP-L's ids 49406 / 49407 (a sparse vocabulary);
 * "compact": they follow the merges.
 */
export function clipVocab(ids: "clip-l" | "compact" = "clip-l"): { vocab: Map<string, number>; merges: [string, string][]; bos: number; eos: number } {
  const vocab = new Map<string, number>();
  for (const c of BYTE_CHARS) vocab.set(c, vocab.size);
  for (const c of BYTE_CHARS) vocab.set(`${c}</w>`, vocab.size);
  const words = CLIP_WORDS.map((w) => {
    const chars = Array.from(byteLevel(w));
    chars[chars.length - 1] += "</w>";
    return chars;
  });
  const merges = mergesFor(words, vocab);
  const bos = ids === "clip-l" ? 49406 : vocab.size;
  vocab.set("<|startoftext|>", bos);
  vocab.set("<|endoftext|>", bos + 1);
  return { vocab, merges, bos, eos: bos + 1 };
}

export const CLIP_TOKENIZER_CONFIG = {
  add_prefix_space: false,
  bos_token: "<|startoftext|>",
  clean_up_tokenization_spaces: true,
  do_lower_case: true,
  eos_token: "<|endoftext|>",
  errors: "replace",
  model_max_length: 77,
  pad_token: "<|endoftext|>",
  tokenizer_class: "CLIPTokenizer",
  unk_token: "<|endoftext|>",
};

/** A CLIPTokenizerFast tokenizer.json (transformers' CLIPConverter layout) for a vocabulary. */
export function clipTokenizerJson(v: ReturnType<typeof clipVocab>): Record<string, unknown> {
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [
      { ...special(v.bos, "<|startoftext|>"), normalized: true },
      { ...special(v.eos, "<|endoftext|>"), normalized: false },
    ],
    normalizer: { type: "Sequence", normalizers: [{ type: "NFC" }, { type: "Replace", pattern: { Regex: "\\s+" }, content: " " }, { type: "Lowercase" }] },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" }, behavior: "Removed", invert: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: { type: "RobertaProcessing", sep: ["<|endoftext|>", v.eos], cls: ["<|startoftext|>", v.bos], trim_offsets: false, add_prefix_space: false },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<|endoftext|>",
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      vocab: Object.fromEntries(v.vocab),
      merges: v.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

export function writeLlamaTokenizer(dir: string, configOverrides: Record<string, unknown> = {}): ReturnType<typeof llamaTokenizerJson> {
  mkdirSync(dir, { recursive: true });
  const t = llamaTokenizerJson();
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(t.json));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(llamaTokenizerConfig(configOverrides), null, 2));
  writeFileSync(join(dir, "special_tokens_map.json"), JSON.stringify({ bos_token: "<|begin_of_text|>", eos_token: "<|end_of_text|>", pad_token: "<pad>" }));
  return t;
}

export function writeClipTokenizer(dir: string, v: ReturnType<typeof clipVocab>, format: "vocab+merges" | "tokenizer.json" | "both"): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(CLIP_TOKENIZER_CONFIG, null, 2));
  writeFileSync(join(dir, "special_tokens_map.json"), JSON.stringify({ bos_token: "<|startoftext|>", eos_token: "<|endoftext|>", pad_token: "<|endoftext|>", unk_token: "<|endoftext|>" }));
  if (format !== "tokenizer.json") {
    writeFileSync(join(dir, "vocab.json"), JSON.stringify(Object.fromEntries(v.vocab)));
    writeFileSync(join(dir, "merges.txt"), ["#version: 0.2", ...v.merges.map(([a, b]) => `${a} ${b}`)].join("\n") + "\n");
  }
  if (format !== "vocab+merges") writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(clipTokenizerJson(v)));
}

// ---- configs and weights ----

/** config.json as transformers writes it for LlamaModel (sizes shrunk; GQA 4 heads / 2 key-value heads). */
export function tinyLlamaConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    _name_or_path: "tiny-llava-llama-3",
    architectures: ["LlamaModel"],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: 128000,
    eos_token_id: 128001,
    head_dim: 8,
    hidden_act: "silu",
    hidden_size: 32,
    initializer_range: 0.02,
    intermediate_size: 48,
    max_position_embeddings: 8192,
    mlp_bias: false,
    model_type: "llama",
    num_attention_heads: 4,
    num_hidden_layers: 4,
    num_key_value_heads: 2,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_scaling: null,
    rope_theta: 500000.0,
    tie_word_embeddings: false,
    torch_dtype: "float16",
    transformers_version: "4.46.0",
    use_cache: true,
    vocab_size: 384,
    ...overrides,
  };
}

/** config.json as transformers writes it for CLIPTextModel (sizes shrunk; CLIP-L's legacy eos_token_id 2). */
export function tinyClipConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    _name_or_path: "tiny-clip-vit-large-patch14",
    architectures: ["CLIPTextModel"],
    attention_dropout: 0.0,
    bos_token_id: 0,
    dropout: 0.0,
    eos_token_id: 2,
    hidden_act: "quick_gelu",
    hidden_size: 16,
    initializer_factor: 1.0,
    initializer_range: 0.02,
    intermediate_size: 40,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 77,
    model_type: "clip_text_model",
    num_attention_heads: 2,
    num_hidden_layers: 3,
    pad_token_id: 1,
    projection_dim: 16,
    torch_dtype: "float16",
    transformers_version: "4.46.0",
    vocab_size: 49408,
    ...overrides,
  };
}

export function tinyLlamaWeights(c: LlamaTextConfig, seed: number, prefix = ""): Map<string, Float32Array> {
  const r = rng(seed);
  const D = c.hidden_size;
  const m = new Map<string, Float32Array>();
  for (const [k, shape] of llamaExpectedShapes(c, prefix)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let a: Float32Array;
    if (k.endsWith("norm.weight") || k.endsWith("layernorm.weight")) a = randomArray(n, r, 0.2).map((v) => 1 + v);
    else if (k.endsWith("embed_tokens.weight")) a = randomArray(n, r, 1);
    else if (k.endsWith("q_proj.weight") || k.endsWith("k_proj.weight")) a = randomArray(n, r, 2 / Math.sqrt(D)); // sharper attention
    else a = randomArray(n, r, 1 / Math.sqrt(shape[1])); // v, o, gate, up, down: 1 / sqrt(fan_in)
    m.set(k, a);
  }
  return m;
}

export function tinyClipWeights(c: ClipTextConfig, seed: number): Map<string, Float32Array> {
  const r = rng(seed);
  const m = new Map<string, Float32Array>();
  for (const [k, shape] of clipExpectedShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let a: Float32Array;
    if (k.endsWith("token_embedding.weight")) a = randomArray(n, r, 1);
    else if (k.endsWith("position_embedding.weight")) a = randomArray(n, r, 0.5);
    else if (/layer_norm\d?\.weight$|final_layer_norm\.weight$/.test(k)) a = randomArray(n, r, 0.1).map((v) => 1 + v);
    else if (k.endsWith(".bias")) a = randomArray(n, r, 0.1);
    else a = randomArray(n, r, (k.includes("q_proj") || k.includes("k_proj") ? 2 : 1) / Math.sqrt(shape[1]));
    m.set(k, a);
  }
  return m;
}

type Tensors = Record<string, { dtype: WriteDtype; shape: number[]; data: Float32Array }>;

/** Write tensors as transformers saves them: one model.safetensors, or shards + model.safetensors.index.json. */
function writeWeights(dir: string, tensors: Tensors, shards: number): void {
  mkdirSync(dir, { recursive: true });
  if (shards <= 1) {
    writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
    return;
  }
  const keys = Object.keys(tensors).sort();
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 0; s < shards; s++) {
    const name = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const part: Tensors = {};
    keys.filter((_, j) => j % shards === s).forEach((k) => {
      part[k] = tensors[k];
      weightMap[k] = name;
      total += tensors[k].data.length * (tensors[k].dtype === "F32" ? 4 : 2);
    });
    writeSafetensors(join(dir, name), part, { format: "pt" });
  }
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
}

export interface TinyHunyuanTextOptions {
  seed?: number;
  /** LlamaConfig overrides (e.g. rope_scaling, num_key_value_heads). */
  llama?: Record<string, unknown>;
  llamaDtype?: WriteDtype;
  llamaShards?: number;
  /** "model." writes LlamaForCausalLM-style keys (plus lm_head.weight). */
  llamaPrefix?: "" | "model.";
  clip?: Record<string, unknown>;
  clipDtype?: WriteDtype;
  /** Special-token ids of the CLIP vocabulary (default "clip-l": 49406 / 49407). */
  clipIds?: "clip-l" | "compact";
  clipTokenizer?: "vocab+merges" | "tokenizer.json" | "both";
  llamaTokenizerConfig?: Record<string, unknown>;
  /** Components not to write. */
  omit?: ("text_encoder" | "tokenizer" | "text_encoder_2" | "tokenizer_2")[];
  /** Keys to leave out of the Llama / CLIP checkpoints. */
  dropLlama?: string[];
  dropClip?: string[];
}

/** Write a tiny HunyuanVideo text folder; returns its paths, configs, fp32 weights and vocabularies. */
export function writeTinyHunyuanText(dir: string = tempDir("mixcache-hytext-"), opts: TinyHunyuanTextOptions = {}) {
  const seed = opts.seed ?? 1;
  const omit = new Set(opts.omit ?? []);
  const clipV = clipVocab(opts.clipIds ?? "clip-l");
  const clipJson = tinyClipConfigJson({
    ...(opts.clipIds === "compact" ? { vocab_size: clipV.eos + 1, eos_token_id: clipV.eos } : {}),
    ...opts.clip,
  });
  const llamaJson = tinyLlamaConfigJson(opts.llama);
  const llama = parseLlamaConfig(llamaJson);
  const clip = parseClipTextConfig(clipJson);
  const prefix = opts.llamaPrefix ?? "";
  const llamaW = tinyLlamaWeights(llama, seed, prefix);
  const clipW = tinyClipWeights(clip, seed + 100);
  writeFileSync(
    join(dir, "model_index.json"),
    JSON.stringify({
      _class_name: "HunyuanVideoPipeline",
      _diffusers_version: "0.32.0",
      scheduler: ["diffusers", "FlowMatchEulerDiscreteScheduler"],
      text_encoder: ["transformers", "LlamaModel"],
      text_encoder_2: ["transformers", "CLIPTextModel"],
      tokenizer: ["transformers", "LlamaTokenizerFast"],
      tokenizer_2: ["transformers", "CLIPTokenizer"],
      transformer: ["diffusers", "HunyuanVideoTransformer3DModel"],
      vae: ["diffusers", "AutoencoderKLHunyuanVideo"],
    }, null, 2),
  );
  const encDir = join(dir, "text_encoder"), enc2Dir = join(dir, "text_encoder_2");
  if (!omit.has("text_encoder")) {
    const dt = opts.llamaDtype ?? "F32";
    const t: Tensors = {};
    for (const [k, shape] of llamaExpectedShapes(llama, prefix)) if (!opts.dropLlama?.includes(k)) t[k] = { dtype: dt, shape, data: llamaW.get(k)! };
    if (prefix === "model.") t["lm_head.weight"] = { dtype: dt, shape: [llama.vocab_size, llama.hidden_size], data: randomArray(llama.vocab_size * llama.hidden_size, rng(seed + 7), 0.1) };
    writeWeights(encDir, t, opts.llamaShards ?? 1);
    writeFileSync(join(encDir, "config.json"), JSON.stringify(llamaJson, null, 2));
  }
  if (!omit.has("text_encoder_2")) {
    const dt = opts.clipDtype ?? "F32";
    const t: Tensors = {};
    for (const [k, shape] of clipExpectedShapes(clip)) if (!opts.dropClip?.includes(k)) t[k] = { dtype: dt, shape, data: clipW.get(k)! };
    writeWeights(enc2Dir, t, 1);
    writeFileSync(join(enc2Dir, "config.json"), JSON.stringify(clipJson, null, 2));
  }
  const tokDir = join(dir, "tokenizer"), tok2Dir = join(dir, "tokenizer_2");
  const llamaTok = omit.has("tokenizer") ? llamaTokenizerJson() : writeLlamaTokenizer(tokDir, opts.llamaTokenizerConfig);
  if (!omit.has("tokenizer_2")) writeClipTokenizer(tok2Dir, clipV, opts.clipTokenizer ?? "vocab+merges");
  return { dir, encDir, enc2Dir, tokDir, tok2Dir, llama, clip, llamaWeights: llamaW, clipWeights: clipW, llamaVocab: llamaTok.vocab, llamaSpecials: llamaTok.specials, clipVocab: clipV, prefix };
}
