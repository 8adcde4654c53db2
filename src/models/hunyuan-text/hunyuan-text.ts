/**
 * HunyuanVideoPipeline's text path (diffusers pipelines/hunyuan_video/pipeline_hunyuan_video.py
 * `encode_prompt`): per prompt
 *
 *   prompt_embeds, prompt_attention_mask   _get_llama_prompt_embeds: template.format(prompt) ->
 *       LLaVA-Llama-3 tokenizer (max_sequence_length 256 + crop_start 95 = 351 tokens, right padded)
 *       -> LlamaModel(ids, mask, output_hidden_states=True).hidden_states[-(2 + 1)]
 *       -> [:, crop_start:] of both embeddings and mask: [256, 4096] and [256]
 *   pooled_prompt_embeds                   _get_clip_prompt_embeds: CLIP tokenizer (77, padded,
 *       truncated) -> CLIPTextModel(ids).pooler_output: [768]
 *
 * The padded rows of prompt_embeds are left as the encoder computes them (the pipeline does not
 * zero them; the transformer masks them). `paddedRows: "zero"` skips computing them (the real
 * rows are unchanged, the padded ones are zero): the HunyuanVideo transformer gives the same
 * video, for a fraction of the encoder's work on short prompts.
 *
 * Folder layout (a diffusers HunyuanVideo folder): text_encoder/ (LlamaModel config.json +
 * safetensors), tokenizer/ (tokenizer.json + tokenizer_config.json), text_encoder_2/
 * (CLIPTextModel), tokenizer_2/ (tokenizer.json, or vocab.json + merges.txt). `open` checks every
 * one from configs, safetensors headers and tokenizer files before any weight is read. Prompt
 * embeddings are cached on disk with the umT5 encoder's cache (prompt-cache.ts) when `cacheDir`
 * is given: the cropped Llama rows and the pooled vector under separate keys.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, MixCacheError } from "../../errors.ts";
import { sha256 } from "../../util/hash.ts";
import type { TextEmbedding } from "../../text/types.ts";
import { PromptEmbeddingCache } from "../umt5/prompt-cache.ts";
import { CheckpointSource } from "../umt5/weights.ts";
import { ClipTextEncoder } from "./clip-encoder.ts";
import { CLIP_TOKEN_EMBED, ClipTextConfig, clipLayerParameters, clipParameterCount, readClipTextConfig } from "./clip-config.ts";
import { LlamaTextEncoder } from "./llama-encoder.ts";
import { LlamaTextConfig, llamaEmbedKey, llamaLayerParameters, llamaParameterCount, readLlamaConfig } from "./llama-config.ts";
import type { LayerTiming, StreamOptions, WeightSource } from "./stream.ts";
import {
  CLIP_MAX_LENGTH,
  ClipPromptTokenizer,
  HUNYUAN_HIDDEN_LAYERS_TO_SKIP,
  HUNYUAN_MAX_SEQUENCE_LENGTH,
  HUNYUAN_PROMPT_TEMPLATE,
  LlamaPromptTokenizer,
  formatTemplate,
  type PromptTemplate,
} from "./tokenizers.ts";

export interface HunyuanTextEncoderOptions extends StreamOptions {
  /** A diffusers HunyuanVideo folder holding text_encoder/, tokenizer/, text_encoder_2/, tokenizer_2/. */
  modelDir: string;
  /** Prompt-embedding cache folder (none when omitted). */
  cacheDir?: string;
  /** Default HUNYUAN_PROMPT_TEMPLATE (crop_start 95). */
  promptTemplate?: PromptTemplate;
  /** Tokens kept after the crop (default 256). */
  maxSequenceLength?: number;
  /** hidden_states[-(n + 1)] (default 2). */
  numHiddenLayersToSkip?: number;
  /** CLIP tokens (default 77). */
  clipMaxLength?: number;
  /** Wraps each weight source as it is opened (tests and tools: e.g. count reads). */
  wrapSource?: (src: WeightSource, component: "text_encoder" | "text_encoder_2") => WeightSource;
}

export interface HunyuanEncodeOptions {
  /** "compute" (default): the padded rows as the pipeline leaves them; "zero": not computed, zero. */
  paddedRows?: "compute" | "zero";
  onLayer?: (t: LayerTiming) => void;
  onPhase?: () => void;
}

export interface HunyuanPromptEmbedding extends TextEmbedding {
  /** prompt_embeds [tokens, hidden_size] (256 x 4096), after the crop. */
  data: Float32Array;
  /** max_sequence_length (256). */
  tokens: number;
  /** prompt_attention_mask [tokens] after the crop. */
  mask: Uint8Array;
  /** pooled_prompt_embeds [768]. */
  pooled: Float32Array;
  /** Ones in the mask: the prompt's tokens and "<|eot_id|>". */
  length: number;
  /** Whether the Llama or the CLIP tokenizer cut the prompt. */
  truncated: { llama: boolean; clip: boolean };
  fromCache: boolean;
}

/** Bytes a streamed encode needs (estimate, above the process's own baseline): one stage's
 * weights twice (the graph's serialised copy and onnxruntime's) plus its activations and
 * onnxruntime's working memory, the larger of the two encoders, plus the outputs. */
export interface HunyuanTextMemory {
  /** fp32 weights of one Llama decoder layer (the largest stage). */
  llamaLayerBytes: number;
  clipLayerBytes: number;
  /** Decoder layers that run (num_hidden_layers - num_hidden_layers_to_skip). */
  llamaLayersRun: number;
  /** Tokens each prompt runs through the Llama layers (max_sequence_length + crop_start). */
  llamaTokens: number;
  llamaStageBytes: number;
  clipStageBytes: number;
  outputBytes: number;
  peakBytes: number;
  /** Whole Llama encoder as fp32, were it loaded at once (what streaming avoids). */
  llamaFullBytes: number;
}

/** What `describe` / `inspect` report of one encoder (headers only). */
export interface HunyuanTextComponentInfo {
  /** transformers class the pipeline loads. */
  class: "LlamaModel" | "CLIPTextModel";
  parameters: number;
  /** Storage dtype of the embedding (the checkpoint's dtype), when the source is a safetensors checkpoint. */
  dtype: string | null;
  /** Bytes of the safetensors files, when the source is a checkpoint. */
  diskBytes: number | null;
  layers: number;
  /** Layers an encode runs. */
  layersRun: number;
  hiddenSize: number;
}

export interface HunyuanTextInfo {
  text_encoder: HunyuanTextComponentInfo;
  text_encoder_2: HunyuanTextComponentInfo;
  cropStart: number;
  maxSequenceLength: number;
  /** Tokens per prompt through the Llama layers. */
  llamaTokens: number;
  clipMaxLength: number;
  warnings: string[];
}

export interface HunyuanTextMemoryOptions {
  prompts?: number;
  maxSequenceLength?: number;
  cropStart?: number;
  numHiddenLayersToSkip?: number;
  /** Real tokens per prompt when the padded rows are not computed (default: all tokens). */
  realTokens?: number;
  clipMaxLength?: number;
}

/** Memory of a streamed encode (see HunyuanTextMemory): computed, not measured. */
export function hunyuanTextMemory(llama: LlamaTextConfig, clip: ClipTextConfig, o: HunyuanTextMemoryOptions = {}): HunyuanTextMemory {
  const P = o.prompts ?? 1;
  const maxSeq = o.maxSequenceLength ?? HUNYUAN_MAX_SEQUENCE_LENGTH;
  const crop = o.cropStart ?? HUNYUAN_PROMPT_TEMPLATE.cropStart!;
  const skip = o.numHiddenLayersToSkip ?? HUNYUAN_HIDDEN_LAYERS_TO_SKIP;
  const S = Math.min(o.realTokens ?? maxSeq + crop, maxSeq + crop);
  const D = llama.hidden_size, H = llama.num_attention_heads, KV = llama.num_key_value_heads, d = llama.head_dim, I = llama.intermediate_size;
  const llamaLayerBytes = 4 * llamaLayerParameters(llama);
  // one run: x in and out, normed h, q (projection, rotated, transposed), k/v, scores/probs x3, ctx x2, mlp gate/up/act/product
  const llamaRun = 4 * (3 * S * D + 3 * S * H * d + 4 * S * KV * d + 3 * H * S * S + 2 * S * H * d + 4 * S * I);
  // held per prompt between layers: the hidden state, the [S, S] mask, the cos/sin tables
  const llamaHeld = 4 * P * (S * D + S * S + 2 * S * d);
  // onnxruntime's working memory beyond these tensors, fitted: one LLaVA-Llama-3-8B layer at 351
  // tokens (bench.ts, 1 thread) peaked 1.93 GiB above the process baseline, the terms above give 1.80
  const ortSlack = 0.2 * llamaLayerBytes;
  const llamaStageBytes = 2 * llamaLayerBytes + llamaRun + llamaHeld + ortSlack;
  const C = o.clipMaxLength ?? CLIP_MAX_LENGTH;
  const Dc = clip.hidden_size, Ic = clip.intermediate_size, Hc = clip.num_attention_heads;
  const clipLayerBytes = 4 * clipLayerParameters(clip);
  const clipStageBytes = 2.2 * clipLayerBytes + 4 * (8 * C * Dc + 3 * Hc * C * C + 3 * C * Ic) + 4 * P * (C * Dc + C * C);
  const outputBytes = 4 * P * (maxSeq * D + Dc) + P * maxSeq;
  return {
    llamaLayerBytes,
    clipLayerBytes,
    llamaLayersRun: llama.num_hidden_layers - skip,
    llamaTokens: S,
    llamaStageBytes,
    clipStageBytes,
    outputBytes,
    peakBytes: Math.max(llamaStageBytes, clipStageBytes) + outputBytes,
    llamaFullBytes: 4 * (llama.vocab_size * D + llama.num_hidden_layers * llamaLayerParameters(llama) + D),
  };
}

const DOWNLOAD = (dir: string, parts: string[]) =>
  `download ${parts.map((p) => `${p}/`).join(", ")} of the HunyuanVideo diffusers checkpoint (e.g. huggingface-cli download hunyuanvideo-community/HunyuanVideo ${parts.map((p) => `--include '${p}/*'`).join(" ")} --local-dir ${dir}), or pass precomputed prompt_embeds, pooled_prompt_embeds and prompt_attention_mask instead of prompts`;

const COMPONENTS: Record<string, string> = {
  text_encoder: "LLaVA-Llama-3-8B text encoder (transformers LlamaModel: config.json + model*.safetensors)",
  tokenizer: "its tokenizer (tokenizer.json + tokenizer_config.json)",
  text_encoder_2: "CLIP-L text encoder (transformers CLIPTextModel: config.json + model.safetensors)",
  tokenizer_2: "its CLIP tokenizer (vocab.json + merges.txt or tokenizer.json)",
};

/** model_index.json's classes for the four components, when the folder has one. */
function checkModelIndex(dir: string): void {
  const path = join(dir, "model_index.json");
  if (!existsSync(path)) return;
  let idx: Record<string, unknown>;
  try {
    idx = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(`${path} is not valid JSON: ${(e as Error).message}`, "re-download model_index.json");
  }
  const want: Record<string, string[]> = { text_encoder: ["LlamaModel", "LlamaForCausalLM"], text_encoder_2: ["CLIPTextModel"] };
  for (const [k, classes] of Object.entries(want)) {
    const v = idx[k];
    if (v === undefined) continue;
    const cls = Array.isArray(v) ? v[1] : undefined;
    if (cls === null || v === null)
      throw new ConfigError(`${path}: ${k} is null: the folder was saved without the ${COMPONENTS[k]}`, DOWNLOAD(dir, [k, k === "text_encoder" ? "tokenizer" : "tokenizer_2"]));
    if (typeof cls !== "string" || !classes.includes(cls))
      throw new ConfigError(`${path}: ${k} is ${JSON.stringify(v)}; HunyuanVideoPipeline's ${k} is transformers ${classes[0]}`, `use a HunyuanVideo folder whose ${k}/ holds a ${classes[0]}`);
  }
}

export class HunyuanTextEncoder {
  readonly template: PromptTemplate;
  readonly cropStart: number;
  readonly maxSequenceLength: number;
  readonly numHiddenLayersToSkip: number;
  readonly clipMaxLength: number;
  /** Notes from opening (e.g. a crop_start that does not match the template's prefix). */
  readonly warnings: string[] = [];
  private readonly cache: PromptEmbeddingCache | null;

  constructor(
    readonly llamaTokenizer: LlamaPromptTokenizer,
    readonly llama: LlamaTextEncoder,
    readonly clipTokenizer: ClipPromptTokenizer,
    readonly clip: ClipTextEncoder,
    opts: Omit<HunyuanTextEncoderOptions, "modelDir"> = {},
  ) {
    this.template = opts.promptTemplate ?? HUNYUAN_PROMPT_TEMPLATE;
    this.maxSequenceLength = opts.maxSequenceLength ?? HUNYUAN_MAX_SEQUENCE_LENGTH;
    this.numHiddenLayersToSkip = opts.numHiddenLayersToSkip ?? HUNYUAN_HIDDEN_LAYERS_TO_SKIP;
    this.clipMaxLength = opts.clipMaxLength ?? CLIP_MAX_LENGTH;
    const L = llama.config.num_hidden_layers;
    if (!Number.isInteger(this.maxSequenceLength) || this.maxSequenceLength < 1)
      throw new MixCacheError("USAGE", `maxSequenceLength must be a positive integer, got ${this.maxSequenceLength}`, "use 256 (HunyuanVideoPipeline's default)");
    if (!Number.isInteger(this.numHiddenLayersToSkip) || this.numHiddenLayersToSkip < 0 || this.numHiddenLayersToSkip > L)
      throw new MixCacheError("USAGE", `numHiddenLayersToSkip must be an integer in 0..${L}, got ${this.numHiddenLayersToSkip}`, "use 2 (HunyuanVideoPipeline's default)");
    formatTemplate(this.template.template, ""); // a template str.format could not fill is an error now, not at encode
    this.cropStart = llamaTokenizer.cropStart(this.template);
    const prefixTokens = llamaTokenizer.templatePrefixTokens(this.template.template);
    if (prefixTokens !== this.cropStart)
      this.warnings.push(`crop_start is ${this.cropStart} but the template's text before the prompt is ${prefixTokens} tokens with this tokenizer: the embeddings keep ${prefixTokens > this.cropStart ? "template tokens" : "no longer start at the prompt"} (diffusers crops crop_start tokens all the same)`);
    this.warnings.push(...llamaTokenizer.warnings);
    const check = (cond: boolean, msg: string, fix: string) => {
      if (!cond) throw new ConfigError(msg, fix);
    };
    const lv = llama.config.vocab_size, cv = clip.config.vocab_size;
    check(
      llamaTokenizer.vocabSize <= lv,
      `tokenizer ${llamaTokenizer.source} has ${llamaTokenizer.vocabSize} token ids but the text encoder's embedding (${llama.source.path}) has only ${lv} rows`,
      "use the tokenizer/ and text_encoder/ folders of the same HunyuanVideo checkpoint (LLaVA-Llama-3: 128320 embedding rows)",
    );
    check(
      clipTokenizer.vocabSize <= cv,
      `tokenizer_2 ${clipTokenizer.source} has ${clipTokenizer.vocabSize} token ids but the CLIP text encoder's embedding (${clip.source.path}) has only ${cv} rows`,
      "use the tokenizer_2/ and text_encoder_2/ folders of the same HunyuanVideo checkpoint (CLIP-L: 49408 rows)",
    );
    check(
      clip.config.max_position_embeddings >= this.clipMaxLength,
      `the CLIP text encoder has ${clip.config.max_position_embeddings} positions, fewer than the ${this.clipMaxLength} tokens HunyuanVideoPipeline gives it`,
      "use the text_encoder_2/ of a HunyuanVideo checkpoint (CLIP-L: 77 positions)",
    );
    this.cache = opts.cacheDir ? new PromptEmbeddingCache(opts.cacheDir) : null;
  }

  /**
   * Open a diffusers HunyuanVideo folder. Reads the configs, the safetensors headers and the
   * tokenizer files of all four components and checks them against each other; no weight is read
   * until `encode`.
   */
  static open(opts: HunyuanTextEncoderOptions): HunyuanTextEncoder {
    const dir = opts.modelDir;
    if (typeof dir !== "string" || !existsSync(dir) || !statSync(dir).isDirectory())
      throw new ConfigError(`HunyuanVideo text encoders: ${dir} is not a folder`, "pass the diffusers HunyuanVideo folder as modelDir");
    const missing = Object.keys(COMPONENTS).filter((k) => !existsSync(join(dir, k)) || !statSync(join(dir, k)).isDirectory());
    if (missing.length)
      throw new ConfigError(`HunyuanVideo text encoders: ${dir} has no ${missing.map((k) => `${k}/ (${COMPONENTS[k]})`).join(", no ")}`, DOWNLOAD(dir, missing));
    checkModelIndex(dir);
    const encDir = join(dir, "text_encoder"), enc2Dir = join(dir, "text_encoder_2");
    for (const [k, d] of [["text_encoder", encDir], ["text_encoder_2", enc2Dir]] as const)
      if (!existsSync(join(d, "config.json"))) throw new ConfigError(`HunyuanVideo text encoders: ${k}/ has no config.json`, DOWNLOAD(dir, [k]));
    const { wrapSource, ...rest } = opts;
    const llamaConfig = readLlamaConfig(join(encDir, "config.json"));
    const clipConfig = readClipTextConfig(join(enc2Dir, "config.json"));
    const llamaTokenizer = LlamaPromptTokenizer.fromDir(join(dir, "tokenizer"));
    const clipTokenizer = ClipPromptTokenizer.fromDir(join(dir, "tokenizer_2"));
    const opened: WeightSource[] = [];
    try {
      const src1 = CheckpointSource.open(encDir);
      opened.push(src1);
      const llama = new LlamaTextEncoder(llamaConfig, wrapSource ? wrapSource(src1, "text_encoder") : src1, rest);
      const src2 = CheckpointSource.open(enc2Dir);
      opened.push(src2);
      const clip = new ClipTextEncoder(clipConfig, wrapSource ? wrapSource(src2, "text_encoder_2") : src2, rest);
      return new HunyuanTextEncoder(llamaTokenizer, llama, clipTokenizer, clip, rest);
    } catch (e) {
      for (const s of opened) s.close();
      throw e;
    }
  }

  /** Widths: prompt_embeds' (Llama hidden_size, the transformer's text_embed_dim) and the pooled vector's (CLIP hidden_size, pooled_projection_dim). */
  get dims(): { text: number; pooled: number } {
    return { text: this.llama.config.hidden_size, pooled: this.clip.config.hidden_size };
  }

  /** Tokens through the Llama layers per prompt: max_sequence_length + crop_start. */
  get llamaTokens(): number {
    return this.maxSequenceLength + this.cropStart;
  }

  /** The streamed memory estimate for `prompts` prompts encoded in one pass. */
  memory(prompts = 1): HunyuanTextMemory {
    return hunyuanTextMemory(this.llama.config, this.clip.config, {
      prompts,
      maxSequenceLength: this.maxSequenceLength,
      cropStart: this.cropStart,
      numHiddenLayersToSkip: this.numHiddenLayersToSkip,
      clipMaxLength: this.clipMaxLength,
    });
  }

  /** Classes, parameters, dtypes and sizes of both encoders (from the headers), and the prompt settings. */
  describe(): HunyuanTextInfo {
    const onDisk = (src: WeightSource, key: string) => {
      if (!(src instanceof CheckpointSource)) return { dtype: null, diskBytes: null };
      let bytes = 0;
      for (const f of src.ckpt.files) bytes += statSync(f).size;
      return { dtype: src.ckpt.info(key).dtype as string, diskBytes: bytes };
    };
    const lc = this.llama.config, cc = this.clip.config;
    return {
      text_encoder: {
        class: "LlamaModel",
        parameters: llamaParameterCount(lc),
        ...onDisk(this.llama.source, llamaEmbedKey(this.llama.prefix)),
        layers: lc.num_hidden_layers,
        layersRun: lc.num_hidden_layers - this.numHiddenLayersToSkip,
        hiddenSize: lc.hidden_size,
      },
      text_encoder_2: {
        class: "CLIPTextModel",
        parameters: clipParameterCount(cc),
        ...onDisk(this.clip.source, CLIP_TOKEN_EMBED),
        layers: cc.num_hidden_layers,
        layersRun: cc.num_hidden_layers,
        hiddenSize: cc.hidden_size,
      },
      cropStart: this.cropStart,
      maxSequenceLength: this.maxSequenceLength,
      llamaTokens: this.llamaTokens,
      clipMaxLength: this.clipMaxLength,
      warnings: [...this.warnings],
    };
  }

  /** `describe` of a folder without keeping it open (every check of `open`, no weight read). */
  static inspect(modelDir: string, opts: Omit<HunyuanTextEncoderOptions, "modelDir"> = {}): HunyuanTextInfo {
    const enc = HunyuanTextEncoder.open({ ...opts, modelDir });
    try {
      return enc.describe();
    } finally {
      enc.llama.source.close();
      enc.clip.source.close();
    }
  }

  /** Both tokenizations of a prompt, as the pipeline makes them. */
  tokenize(prompt: string) {
    return {
      llama: this.llamaTokenizer.encodePrompt(prompt, this.template, this.maxSequenceLength),
      clip: this.clipTokenizer.encode(prompt, this.clipMaxLength),
    };
  }

  private keys(prompt: string, paddedRows: string) {
    const llamaEncoder = sha256(JSON.stringify(["hunyuan-llama/1", this.llama.fingerprint, this.template.template, this.cropStart, this.numHiddenLayersToSkip, paddedRows]));
    const clipEncoder = sha256(JSON.stringify(["hunyuan-clip/1", this.clip.fingerprint]));
    return {
      llama: { encoder: llamaEncoder, tokenizer: this.llamaTokenizer.fingerprint, maxLength: this.maxSequenceLength, prompt },
      clip: { encoder: clipEncoder, tokenizer: this.clipTokenizer.fingerprint, maxLength: this.clipMaxLength, prompt },
    };
  }

  /**
   * prompt_embeds, prompt_attention_mask and pooled_prompt_embeds of each prompt, the Llama and
   * CLIP encoders each in one streamed pass over all prompts not in the cache.
   */
  async encode(prompts: readonly string[], opts: HunyuanEncodeOptions = {}): Promise<HunyuanPromptEmbedding[]> {
    const paddedRows = opts.paddedRows ?? "compute";
    if (paddedRows !== "compute" && paddedRows !== "zero") throw new MixCacheError("USAGE", `paddedRows must be "compute" or "zero", got ${JSON.stringify(paddedRows)}`);
    const D = this.dims.text, Dp = this.dims.pooled, T = this.maxSequenceLength, crop = this.cropStart;
    const toks = prompts.map((p) => this.tokenize(p));
    const data: (Float32Array | null)[] = prompts.map(() => null);
    const pooled: (Float32Array | null)[] = prompts.map(() => null);
    const cached = prompts.map(() => true);
    prompts.forEach((p, j) => {
      if (!this.cache) return;
      const k = this.keys(p, paddedRows);
      const a = this.cache.get(k.llama);
      if (a && a.dim === D && a.length === T) data[j] = a.rows;
      const b = this.cache.get(k.clip);
      if (b && b.dim === Dp && b.length === 1) pooled[j] = b.rows;
    });
    // one run per distinct prompt
    const firstOf = (need: (j: number) => boolean) => {
      const m = new Map<string, number>();
      prompts.forEach((p, j) => {
        if (need(j) && !m.has(p)) m.set(p, j);
      });
      return [...m.values()];
    };
    const llamaTodo = firstOf((j) => data[j] === null);
    if (llamaTodo.length) {
      const index = -(this.numHiddenLayersToSkip + 1);
      const hidden = await this.llama.hiddenState(
        llamaTodo.map((j) => ({ ids: toks[j].llama.ids, mask: toks[j].llama.mask })),
        index,
        { rows: paddedRows === "zero" ? "real" : "all", onLayer: opts.onLayer, onPhase: opts.onPhase },
      );
      llamaTodo.forEach((j, b) => {
        const rows = hidden[b].slice(crop * D, (crop + T) * D); // prompt_embeds[:, crop_start:]
        this.cache?.put(this.keys(prompts[j], paddedRows).llama, { rows, length: T, dim: D });
        prompts.forEach((p, jj) => {
          if (p === prompts[j] && data[jj] === null) (data[jj] = jj === j ? rows : rows.slice()), (cached[jj] = false);
        });
      });
    }
    const clipTodo = firstOf((j) => pooled[j] === null);
    if (clipTodo.length) {
      const out = await this.clip.forward(clipTodo.map((j) => ({ ids: toks[j].clip.ids })), { onLayer: opts.onLayer, onPhase: opts.onPhase });
      clipTodo.forEach((j, b) => {
        this.cache?.put(this.keys(prompts[j], paddedRows).clip, { rows: out[b].pooled, length: 1, dim: Dp });
        prompts.forEach((p, jj) => {
          if (p === prompts[j] && pooled[jj] === null) (pooled[jj] = jj === j ? out[b].pooled : out[b].pooled.slice()), (cached[jj] = false);
        });
      });
    }
    return prompts.map((_, j) => {
      const mask = toks[j].llama.mask.slice(crop, crop + T); // prompt_attention_mask[:, crop_start:]
      let length = 0;
      for (const v of mask) length += v;
      return {
        data: data[j]!,
        tokens: T,
        mask,
        pooled: pooled[j]!,
        length,
        truncated: { llama: toks[j].llama.truncated, clip: toks[j].clip.truncated },
        fromCache: cached[j],
      };
    });
  }

  async encodePrompt(prompt: string, opts: HunyuanEncodeOptions = {}): Promise<HunyuanPromptEmbedding> {
    return (await this.encode([prompt], opts))[0];
  }

  /** Release kept sessions (the weights stay on disk; encode again re-reads them). */
  async release(): Promise<void> {
    await this.llama.release();
    await this.clip.release();
  }

  async close(): Promise<void> {
    await this.llama.close();
    await this.clip.close();
  }
}

/** Check the encoders' widths against a HunyuanVideo transformer's text_embed_dim and pooled_projection_dim. */
export function checkHunyuanTextDims(enc: { dims: { text: number; pooled: number } }, transformer: { text_embed_dim: number; pooled_projection_dim: number }): void {
  if (enc.dims.text !== transformer.text_embed_dim)
    throw new ConfigError(`the text encoder's hidden_size is ${enc.dims.text} but the transformer's text_embed_dim is ${transformer.text_embed_dim}`, "use text_encoder/ and transformer/ of the same HunyuanVideo checkpoint (4096)");
  if (enc.dims.pooled !== transformer.pooled_projection_dim)
    throw new ConfigError(`the CLIP text encoder's hidden_size is ${enc.dims.pooled} but the transformer's pooled_projection_dim is ${transformer.pooled_projection_dim}`, "use text_encoder_2/ and transformer/ of the same HunyuanVideo checkpoint (768)");
}
