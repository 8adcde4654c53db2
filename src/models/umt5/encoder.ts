/**
 * The umT5 encoder (transformers UMT5EncoderModel) on onnxruntime, streamed layer by layer: for
 * each block, read its weights, build its graph, create its session, run every prompt of the batch
 * through it, release it. Only one block's weights (umT5-XXL: ~770 MB as fp32) and the embedding
 * rows of the prompts' tokens are ever in memory, so the 5.7B-parameter XXL encoder runs in a few
 * GB. `keepSessions` keeps the sessions instead (small encoders, many prompts).
 *
 * Sequence handling, `mode`:
 *  - "padded": transformers' computation exactly: all S positions, padded keys masked;
 *  - "trimmed" (default): only the real tokens (a right-padded prompt's first `length` ids). The
 *    real positions' outputs are the same as in "padded" (masked keys get softmax weight exactly 0
 *    and relative positions do not change), for a fraction of the work; padded rows are not
 *    computed. WanPipeline discards them anyway.
 */
import { sha256 } from "../../util/hash.ts";
import type { Feed, StageSession } from "../../backend/ort.ts";
import { MixCacheError } from "../../errors.ts";
import { createStage, openEncoder, runStages, validateWeights, weightGetter, type StreamOptions } from "../stream-stages.ts";
import { EMBED_ALIAS, EMBED_KEY, Umt5Config, readUmt5Config, relativePositionBuckets, umt5ExpectedShapes } from "./config.ts";
import { buildBlockGraph, buildFinalNormGraph } from "./graphs.ts";
import type { Umt5WeightSource } from "./weights.ts";

export interface EncoderInput {
  /** Token ids (padded or not). */
  ids: ArrayLike<number>;
  /** 1 real / 0 padding, same length as ids (default all ones). */
  mask?: ArrayLike<number>;
}

export type SequenceMode = "trimmed" | "padded";

export type Umt5EncoderOptions = StreamOptions;

export interface LayerTiming {
  layer: number; // num_layers = final norm
  buildMs: number; // read weights + build graph + serialise
  sessionMs: number; // onnxruntime session creation
  runMs: number; // all prompts of the batch
}

export interface ForwardOptions {
  mode?: SequenceMode;
  onLayer?: (t: LayerTiming) => void;
  /** Called at every phase boundary (weights read and graph serialised, session created, prompt run). */
  onPhase?: () => void;
}

/** Validate a weight source against the config: every key with its shape; the embedding may be
 * stored under shared.weight or encoder.embed_tokens.weight; decoder.* / lm_head.* are ignored. */
function validateUmt5Weights(c: Umt5Config, src: Umt5WeightSource): { embedKey: string } {
  const embedKey = src.has(EMBED_KEY) ? EMBED_KEY : src.has(EMBED_ALIAS) ? EMBED_ALIAS : EMBED_KEY;
  const expected = new Map([...umt5ExpectedShapes(c)].map(([k, shape]) => [k === EMBED_KEY ? embedKey : k, shape]));
  const embRows = src.has(embedKey) ? src.shape(embedKey)[0] : undefined;
  validateWeights(
    src,
    expected,
    (k) => k === EMBED_KEY || k === EMBED_ALIAS || k.startsWith("decoder.") || k === "lm_head.weight",
    `umT5 weights do not match config.json (d_model ${c.d_model}, ${c.num_layers} layers, ${c.num_heads} heads x ${c.d_kv}, d_ff ${c.d_ff}, vocab ${c.vocab_size})`,
    embRows !== undefined && embRows !== c.vocab_size
      ? `config.json says vocab_size ${c.vocab_size} but the embedding has ${embRows} rows: use the config.json that came with these weights`
      : "use the text_encoder/ folder (config.json + weights) of one Wan2.1 checkpoint; the weights must be transformers UMT5EncoderModel keys",
  );
  return { embedKey };
}

export class Umt5Encoder {
  private sessions: (StageSession | null)[];
  private readonly bucketCache = new Map<number, Float32Array>();
  readonly embedKey: string;
  private fp: string | undefined;

  constructor(
    readonly config: Umt5Config,
    readonly source: Umt5WeightSource,
    private readonly opts: Umt5EncoderOptions = {},
  ) {
    this.embedKey = validateUmt5Weights(config, source).embedKey;
    this.sessions = new Array(config.num_layers + 1).fill(null);
  }

  /** Open a transformers text_encoder/ folder: config.json + model.safetensors (or sharded with model.safetensors.index.json). */
  static open(dir: string, opts: Umt5EncoderOptions = {}): Umt5Encoder {
    return openEncoder(dir, readUmt5Config, (config, src) => new Umt5Encoder(config, src, opts));
  }

  /** sha256 of the config and the weights' fingerprint. */
  get fingerprint(): string {
    if (!this.fp) {
      const c = this.config;
      const cfg = JSON.stringify([c.vocab_size, c.d_model, c.d_kv, c.d_ff, c.num_layers, c.num_heads, c.relative_attention_num_buckets, c.relative_attention_max_distance, c.feed_forward_proj, c.layer_norm_epsilon]);
      this.fp = sha256(`umt5-encoder/1\0${cfg}\0${this.source.fingerprint()}`);
    }
    return this.fp;
  }

  private buckets(S: number): Float32Array {
    let b = this.bucketCache.get(S);
    if (!b) {
      b = Float32Array.from(relativePositionBuckets(S, this.config.relative_attention_num_buckets, this.config.relative_attention_max_distance));
      if (this.bucketCache.size > 8) this.bucketCache.clear();
      this.bucketCache.set(S, b);
    }
    return b;
  }

  /** Embedding rows of `ids` [S, D] (only those rows are read from disk). */
  embed(ids: ArrayLike<number>): Float32Array {
    const V = this.config.vocab_size;
    const rows = Array.from(ids);
    for (const id of rows)
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new MixCacheError("VOCAB", `token id ${id} is outside the text encoder's vocabulary (vocab_size ${V})`, "use the tokenizer that belongs to this text encoder");
    return this.source.readRows(this.embedKey, rows);
  }

  private async session(i: number, timing: LayerTiming, onPhase?: () => void): Promise<StageSession> {
    const kept = this.sessions[i];
    if (kept) return kept;
    const w = weightGetter(this.source, umt5ExpectedShapes(this.config));
    const s = await createStage(() => (i < this.config.num_layers ? buildBlockGraph(this.config, w, i) : buildFinalNormGraph(this.config, w)), this.opts, timing, onPhase);
    if (this.opts.keepSessions) this.sessions[i] = s;
    return s;
  }

  /**
   * last_hidden_state of each input: mode "padded" [S, D] over all positions (transformers'
   * output, padded rows included); mode "trimmed" [length, D] over the real tokens only.
   */
  async forward(inputs: readonly EncoderInput[], opts: ForwardOptions = {}): Promise<Float32Array[]> {
    const mode = opts.mode ?? "trimmed";
    const D = this.config.d_model;
    const items = inputs.map((inp, j) => {
      const n = inp.ids.length;
      const mask = new Float32Array(n);
      for (let s = 0; s < n; s++) mask[s] = inp.mask ? (inp.mask[s] > 0 ? 1 : 0) : 1;
      if (inp.mask && inp.mask.length !== n) throw new MixCacheError("USAGE", `input ${j}: mask has ${inp.mask.length} entries for ${n} ids`);
      let len = 0;
      for (let s = 0; s < n; s++) len += mask[s];
      if (len === 0) throw new MixCacheError("USAGE", `input ${j}: the mask has no real token`, "tokenize with add_special_tokens so at least </s> is present");
      let S = n;
      if (mode === "trimmed") {
        for (let s = 0; s < len; s++)
          if (mask[s] !== 1) throw new MixCacheError("USAGE", `input ${j}: mode "trimmed" needs right padding (mask 1...1 0...0)`, 'use mode "padded" for other masks');
        S = len;
      }
      const ids = Array.from(inp.ids).slice(0, S);
      return { S, x: this.embed(ids), mask: mask.subarray(0, S) };
    });
    const L = this.config.num_layers;
    await runStages(
      L + 1,
      items,
      {
        timing: (i): LayerTiming => ({ layer: i, buildMs: 0, sessionMs: 0, runMs: 0 }),
        session: (i, timing, onPhase) => this.session(i, timing, onPhase),
        feeds: (i, it): Record<string, Feed> =>
          i < L
            ? { x: { data: it.x, dims: [it.S, D] }, buckets: { data: this.buckets(it.S), dims: [it.S, it.S] }, mask: { data: it.mask, dims: [it.S] } }
            : { x: { data: it.x, dims: [it.S, D] } },
        keep: !!this.opts.keepSessions,
      },
      opts,
    );
    return items.map((it) => it.x);
  }

  async release(): Promise<void> {
    for (let i = 0; i < this.sessions.length; i++) {
      const s = this.sessions[i];
      if (s) await s.release();
      this.sessions[i] = null;
    }
  }

  /** Release sessions and close the weight files. */
  async close(): Promise<void> {
    await this.release();
    this.source.close();
  }
}
