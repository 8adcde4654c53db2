/**
 * The CLIP-L text encoder (transformers CLIPTextModel, models/clip/modeling_clip.py
 * CLIPTextTransformer) on onnxruntime, streamed layer by layer like the Llama encoder (CLIP-L is
 * small, 123M parameters, so `keepSessions` is cheap when many prompts are encoded).
 *
 * Forward: token embedding + position embedding (positions 0..S-1), the encoder layers under a
 * causal mask, final_layer_norm; pooler_output = the normed state at clipPoolIndex(ids).
 * HunyuanVideoPipeline passes no attention_mask to text_encoder_2 (only the causal mask applies),
 * so a position's output depends on that position and the ones before it only: with rows
 * "pooled" (the default) the encoder runs the first poolIndex + 1 tokens and the pooled output is
 * the same as over all 77; rows "all" runs every position (last_hidden_state as transformers
 * returns it).
 */
import { sha256 } from "../../util/hash.ts";
import { MixCacheError } from "../../errors.ts";
import type { Feed, StageSession } from "../../backend/ort.ts";
import { buildClipFinalNormGraph, buildClipLayerGraph } from "./graphs.ts";
import { CLIP_POSITION_EMBED, CLIP_POSITION_IDS, CLIP_TOKEN_EMBED, ClipTextConfig, clipExpectedShapes, clipPoolIndex, readClipTextConfig } from "./clip-config.ts";
import { createStage, openEncoder, runStages, validateWeights, weightGetter, type StreamOptions } from "../stream-stages.ts";
import { F32_MIN, type LayerTiming, type WeightSource } from "./stream.ts";

export interface ClipForwardOptions {
  /** "pooled" (default): only the tokens the pooled output depends on; "all": every position. */
  rows?: "pooled" | "all";
  onLayer?: (t: LayerTiming) => void;
  onPhase?: () => void;
}

export interface ClipOutput {
  /** final_layer_norm output [rows, D] of the positions that ran (0..rows-1). */
  hidden: Float32Array;
  rows: number;
  /** pooler_output [D]. */
  pooled: Float32Array;
  /** The position pooled (the first end-of-text token). */
  poolIndex: number;
}

/** A CLIPTextModelWithProjection's or CLIPModel's extra tensors may sit beside the text model's; they are not used. */
const IGNORED = (k: string) => k === CLIP_POSITION_IDS || k === "text_projection.weight";

export class ClipTextEncoder {
  private readonly sessions = new Map<number, StageSession>();
  private fp: string | undefined;

  constructor(
    readonly config: ClipTextConfig,
    readonly source: WeightSource,
    private readonly opts: StreamOptions = {},
  ) {
    const rows = source.has(CLIP_TOKEN_EMBED) ? source.shape(CLIP_TOKEN_EMBED)[0] : undefined;
    validateWeights(
      source,
      clipExpectedShapes(config),
      IGNORED,
      `the CLIP text encoder's weights do not match its config.json (CLIPTextModel: hidden ${config.hidden_size}, ${config.num_hidden_layers} layers, ${config.num_attention_heads} heads, mlp ${config.intermediate_size}, vocab ${config.vocab_size}, ${config.max_position_embeddings} positions)`,
      rows !== undefined && rows !== config.vocab_size
        ? `config.json says vocab_size ${config.vocab_size} but token_embedding has ${rows} rows: use the config.json that came with these weights`
        : "use the text_encoder_2/ folder (config.json + model.safetensors) of one HunyuanVideo diffusers checkpoint; the weights must be transformers CLIPTextModel keys (text_model.*)",
    );
  }

  static open(dir: string, opts: StreamOptions = {}): ClipTextEncoder {
    return openEncoder(dir, readClipTextConfig, (config, src) => new ClipTextEncoder(config, src, opts));
  }

  get fingerprint(): string {
    if (!this.fp) this.fp = sha256(`clip-text-encoder/1\0${JSON.stringify(this.config)}\0${this.source.fingerprint()}`);
    return this.fp;
  }

  /** Token + position embedding of `ids` [S, D] (only those rows are read). */
  embed(ids: ArrayLike<number>): Float32Array {
    const V = this.config.vocab_size, P = this.config.max_position_embeddings, D = this.config.hidden_size;
    const S = ids.length;
    if (S > P) throw new MixCacheError("USAGE", `${S} tokens, but the CLIP text encoder has ${P} positions`, `tokenize to at most ${P} tokens (HunyuanVideo: 77)`);
    const rows = Array.from(ids);
    for (const id of rows)
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new MixCacheError("VOCAB", `token id ${id} is outside the CLIP text encoder's vocabulary (vocab_size ${V})`, "use the tokenizer_2/ folder that belongs to this text_encoder_2/");
    const tok = this.source.readRows(CLIP_TOKEN_EMBED, rows);
    const pos = this.source.readRows(CLIP_POSITION_EMBED, Array.from({ length: S }, (_, i) => i));
    for (let i = 0; i < S * D; i++) tok[i] += pos[i];
    return tok;
  }

  static causalMask(S: number): Float32Array {
    const m = new Float32Array(S * S);
    for (let i = 0; i < S; i++) for (let j = i + 1; j < S; j++) m[i * S + j] = F32_MIN;
    return m;
  }

  private async stage(i: number, timing: LayerTiming, onPhase?: () => void): Promise<StageSession> {
    const kept = this.sessions.get(i);
    if (kept) return kept;
    const w = weightGetter(this.source, clipExpectedShapes(this.config));
    const L = this.config.num_hidden_layers;
    const s = await createStage(() => (i < L ? buildClipLayerGraph(this.config, w, i) : buildClipFinalNormGraph(this.config, w)), this.opts, timing, onPhase);
    if (this.opts.keepSessions) this.sessions.set(i, s);
    return s;
  }

  /** CLIPTextModel(input_ids).last_hidden_state rows and pooler_output of each input. */
  async forward(inputs: readonly { ids: ArrayLike<number> }[], opts: ClipForwardOptions = {}): Promise<ClipOutput[]> {
    const D = this.config.hidden_size, L = this.config.num_hidden_layers;
    const items = inputs.map((inp, j) => {
      if (inp.ids.length === 0) throw new MixCacheError("USAGE", `input ${j}: no token ids`);
      const poolIndex = clipPoolIndex(inp.ids, this.config.eos_token_id);
      const S = opts.rows === "all" ? inp.ids.length : poolIndex + 1;
      return { S, poolIndex, x: this.embed(Array.from(inp.ids).slice(0, S)), mask: ClipTextEncoder.causalMask(S) };
    });
    await runStages(
      L + 1,
      items,
      {
        timing: (i): LayerTiming => ({ encoder: "clip", layer: i, stages: L + 1, buildMs: 0, sessionMs: 0, runMs: 0 }),
        session: (i, timing, onPhase) => this.stage(i, timing, onPhase),
        feeds: (i, it): Record<string, Feed> => (i < L ? { x: { data: it.x, dims: [it.S, D] }, mask: { data: it.mask, dims: [it.S, it.S] } } : { x: { data: it.x, dims: [it.S, D] } }),
        keep: !!this.opts.keepSessions,
      },
      opts,
    );
    return items.map((it) => ({ hidden: it.x, rows: it.S, pooled: it.x.slice(it.poolIndex * D, (it.poolIndex + 1) * D), poolIndex: it.poolIndex }));
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await s.release();
    this.sessions.clear();
  }

  async close(): Promise<void> {
    await this.release();
    this.source.close();
  }
}
