/**
 * WanPipeline's text path (diffusers pipelines/wan/pipeline_wan.py `_get_t5_prompt_embeds`):
 * prompt_clean -> umT5 tokenizer (pad/truncate to max_length 512, "</s>" appended) ->
 * UMT5EncoderModel(ids, mask).last_hidden_state -> keep each prompt's first seq_len rows ->
 * zero-pad back to max_length. The result is a TextEmbedding [max_length, d_model] for the
 * transformer (text_dim 4096 for every Wan2.1 size).
 *
 * Folder layout (a diffusers Wan2.1 folder): <model>/tokenizer/tokenizer.json (+ tokenizer_config.json),
 * <model>/text_encoder/config.json + model.safetensors or model.safetensors.index.json + shards.
 * Embeddings are cached on disk when `cacheDir` is given (prompt-cache.ts).
 */
import { join } from "node:path";
import { ConfigError } from "../../errors.ts";
import { HfTokenizer, WAN_MAX_SEQUENCE_LENGTH, type PaddedEncoding } from "../../text/hf-tokenizer.ts";
import type { TextEmbedding } from "../../text/types.ts";
import { Umt5Encoder, type Umt5EncoderOptions, type ForwardOptions } from "./encoder.ts";
import { PromptEmbeddingCache } from "./prompt-cache.ts";

export interface WanTextEncoderOptions extends Umt5EncoderOptions {
  /** A diffusers Wan2.1 folder holding tokenizer/ and text_encoder/. */
  modelDir?: string;
  tokenizerDir?: string;
  textEncoderDir?: string;
  /** Prompt-embedding cache folder (none when omitted). */
  cacheDir?: string;
  /** max_sequence_length (default 512). */
  maxLength?: number;
}

export interface WanPromptEmbedding extends TextEmbedding {
  /** [maxLength, d_model]: the real rows, then zeros. */
  data: Float32Array;
  tokens: number;
  /** Real sequence length (tokens + "</s>"). */
  length: number;
  encoding: PaddedEncoding;
  fromCache: boolean;
}

/** Check that every id the tokenizer can produce has an embedding row. */
function checkVocabulary(tokenizer: HfTokenizer, encoder: Umt5Encoder): void {
  const V = encoder.config.vocab_size;
  if (tokenizer.vocabSize > V)
    throw new ConfigError(
      `tokenizer ${tokenizer.source} has ${tokenizer.vocabSize} token ids but the text encoder's embedding (${encoder.source.path}) has only ${V} rows`,
      "use the tokenizer/ and text_encoder/ folders of the same Wan2.1 checkpoint (umT5-XXL: 256384 embedding rows)",
    );
}

export class WanTextEncoder {
  readonly maxLength: number;
  private readonly cache: PromptEmbeddingCache | null;

  constructor(
    readonly tokenizer: HfTokenizer,
    readonly encoder: Umt5Encoder,
    opts: { cacheDir?: string; maxLength?: number } = {},
  ) {
    checkVocabulary(tokenizer, encoder);
    this.maxLength = opts.maxLength ?? WAN_MAX_SEQUENCE_LENGTH;
    this.cache = opts.cacheDir ? new PromptEmbeddingCache(opts.cacheDir) : null;
  }

  static open(opts: WanTextEncoderOptions): WanTextEncoder {
    const tokDir = opts.tokenizerDir ?? (opts.modelDir ? join(opts.modelDir, "tokenizer") : undefined);
    const encDir = opts.textEncoderDir ?? (opts.modelDir ? join(opts.modelDir, "text_encoder") : undefined);
    if (!tokDir || !encDir) throw new ConfigError("WanTextEncoder.open needs modelDir, or tokenizerDir and textEncoderDir", "pass the diffusers Wan2.1 folder as modelDir");
    const tokenizer = HfTokenizer.fromPath(tokDir);
    const encoder = Umt5Encoder.open(encDir, opts);
    try {
      return new WanTextEncoder(tokenizer, encoder, opts);
    } catch (e) {
      void encoder.close();
      throw e;
    }
  }

  get dim(): number {
    return this.encoder.config.d_model;
  }

  /** Tokenize as WanPipeline does (prompt_clean, pad/truncate to maxLength). */
  tokenize(prompt: string): PaddedEncoding {
    return this.tokenizer.encode(prompt, { maxLength: this.maxLength });
  }

  /** Embeddings of `prompts` (e.g. [prompt, negative]) in one layer-by-layer pass over the encoder. */
  async encode(prompts: readonly string[], opts: ForwardOptions = {}): Promise<WanPromptEmbedding[]> {
    const D = this.dim;
    const S = this.maxLength;
    const keyOf = (p: string) => ({ encoder: this.encoder.fingerprint, tokenizer: this.tokenizer.fingerprint, maxLength: S, prompt: p });
    const out: (WanPromptEmbedding | null)[] = prompts.map(() => null);
    const encs = prompts.map((p) => this.tokenize(p));
    const todo = new Map<string, number[]>(); // prompt -> indices to fill
    prompts.forEach((p, j) => {
      const hit = this.cache?.get(keyOf(p));
      if (hit && hit.dim === D && hit.length === encs[j].length) {
        const data = new Float32Array(S * D);
        data.set(hit.rows);
        out[j] = { data, tokens: S, length: hit.length, encoding: encs[j], fromCache: true };
      } else todo.set(p, [...(todo.get(p) ?? []), j]);
    });
    if (todo.size > 0) {
      const first = [...todo.values()].map((js) => js[0]);
      const hidden = await this.encoder.forward(first.map((j) => ({ ids: encs[j].ids, mask: encs[j].mask })), { ...opts, mode: opts.mode ?? "trimmed" });
      first.forEach((j, b) => {
        const len = encs[j].length;
        const rows = hidden[b].subarray(0, len * D); // u[:seq_len]
        this.cache?.put(keyOf(prompts[j]), { rows, length: len, dim: D });
        for (const jj of todo.get(prompts[j])!) {
          const data = new Float32Array(S * D); // cat with zeros to max_sequence_length
          data.set(rows);
          out[jj] = { data, tokens: S, length: len, encoding: encs[jj], fromCache: false };
        }
      });
    }
    return out as WanPromptEmbedding[];
  }

  async encodePrompt(prompt: string): Promise<WanPromptEmbedding> {
    return (await this.encode([prompt]))[0];
  }

  async close(): Promise<void> {
    await this.encoder.close();
  }
}
