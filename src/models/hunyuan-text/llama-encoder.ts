/**
 * The LLaVA-Llama-3-8B text encoder (transformers LlamaModel, models/llama/modeling_llama.py) on
 * onnxruntime, streamed layer by layer like the umT5 encoder: for each decoder layer, read its
 * weights, build its graph, run every prompt of the batch through it, release it. Only one
 * layer's weights (Llama-3-8B: 218M parameters, 0.87 GB as fp32) and the embedding rows of the
 * prompts' tokens are in memory at a time; bf16/fp16 weights stay on disk until their layer runs.
 *
 * `hiddenState(inputs, index)` is `LlamaModel(ids, attention_mask, output_hidden_states=True)
 * .hidden_states[index]`: entry 0 is the embedding output, entry i (1 <= i < L) the raw output of
 * decoder layer i - 1, entry L the last layer's output through the final norm (transformers
 * collects the layers' outputs and swaps the last for last_hidden_state). So entry i needs only
 * layers 0..i-1: HunyuanVideo's hidden_states[-3] of the 32-layer model runs 30 layers and never
 * reads (or builds) the last two or the final norm.
 *
 * Masking is LlamaModel's with an attention_mask: key j is visible to query i when j <= i and
 * mask[j] = 1 (causal and padding combined, additive finfo.min elsewhere). Inputs must be right
 * padded with a real first token (what HunyuanVideo's tokenizer gives), so no query row is fully
 * hidden and the eager and SDPA paths of transformers agree. Padded query rows still attend to the
 * real keys before them and are computed like any other row ("rows: all", the pipeline's output);
 * "rows: real" computes only the real tokens (their outputs are the same: no real query sees a
 * padded key) and leaves the padded rows zero.
 */
import { sha256 } from "../../util/hash.ts";
import { MixCacheError } from "../../errors.ts";
import type { Feed, StageSession } from "../../backend/ort.ts";
import { buildLlamaLayerGraph, buildLlamaNormGraph, buildLlamaStackGraph } from "./graphs.ts";
import { LlamaTextConfig, llamaEmbedKey, llamaExpectedShapes, llamaInvFreq, llamaRopeTables, readLlamaConfig } from "./llama-config.ts";
import { createStage, openEncoder, runStages, validateWeights, weightGetter, type StreamOptions } from "../stream-stages.ts";
import { F32_MIN, type LayerTiming, type WeightSource } from "./stream.ts";
import type { Graph } from "../../graph/builder.ts";

export interface LlamaInput {
  ids: ArrayLike<number>;
  /** 1 real / 0 padding, right padded (default all ones). */
  mask?: ArrayLike<number>;
}

export interface LlamaForwardOptions {
  /** "all" (default): every position, as transformers computes it; "real": the real tokens only, padded rows zero. */
  rows?: "all" | "real";
  onLayer?: (t: LayerTiming) => void;
  onPhase?: () => void;
}

/** Keys a LlamaModel checkpoint may hold beyond the model's: rotary buffers of old exports, a causal-LM head. */
const IGNORED = (k: string) => k.endsWith(".rotary_emb.inv_freq") || k === "lm_head.weight";

export class LlamaTextEncoder {
  /** "" for LlamaModel's own keys, "model." for a LlamaForCausalLM checkpoint (transformers loads either). */
  readonly prefix: string;
  private readonly sessions = new Map<number, StageSession>();
  private readonly invFreq: Float32Array;
  private fp: string | undefined;

  constructor(
    readonly config: LlamaTextConfig,
    readonly source: WeightSource,
    private readonly opts: StreamOptions = {},
  ) {
    this.prefix = source.has(llamaEmbedKey("")) || !source.has(llamaEmbedKey("model.")) ? "" : "model.";
    const rows = source.has(llamaEmbedKey(this.prefix)) ? source.shape(llamaEmbedKey(this.prefix))[0] : undefined;
    validateWeights(
      source,
      llamaExpectedShapes(config, this.prefix),
      IGNORED,
      `the text encoder's weights do not match its config.json (LlamaModel: hidden ${config.hidden_size}, ${config.num_hidden_layers} layers, ${config.num_attention_heads} heads / ${config.num_key_value_heads} key-value heads x ${config.head_dim}, mlp ${config.intermediate_size}, vocab ${config.vocab_size})`,
      rows !== undefined && rows !== config.vocab_size
        ? `config.json says vocab_size ${config.vocab_size} but embed_tokens has ${rows} rows: use the config.json that came with these weights`
        : "use the text_encoder/ folder (config.json + weights) of one HunyuanVideo diffusers checkpoint; the weights must be transformers LlamaModel keys (embed_tokens, layers.N..., norm)",
    );
    this.invFreq = llamaInvFreq(config);
  }

  /** Open a transformers text_encoder/ folder: config.json + model.safetensors (or sharded with its index). Reads headers only. */
  static open(dir: string, opts: StreamOptions = {}): LlamaTextEncoder {
    return openEncoder(dir, readLlamaConfig, (config, src) => new LlamaTextEncoder(config, src, opts));
  }

  get layers(): number {
    return this.config.num_hidden_layers;
  }

  /** sha256 of the config and the weights' fingerprint. */
  get fingerprint(): string {
    if (!this.fp) this.fp = sha256(`llama-text-encoder/1\0${JSON.stringify(this.config)}\0${this.prefix}\0${this.source.fingerprint()}`);
    return this.fp;
  }

  /** hidden_states index from a Python-style index (-1 = last). */
  resolveIndex(index: number): number {
    const L = this.layers;
    const i = index < 0 ? L + 1 + index : index;
    if (!Number.isInteger(index) || i < 0 || i > L) throw new MixCacheError("USAGE", `hidden_states index ${index} is outside the ${L + 1} states of a ${L}-layer LlamaModel`, `use 0..${L} or -${L + 1}..-1`);
    return i;
  }

  /** Embedding rows of `ids` [S, D] (only those rows are read from disk). */
  embed(ids: ArrayLike<number>): Float32Array {
    const V = this.config.vocab_size;
    const rows = Array.from(ids);
    for (const id of rows)
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new MixCacheError("VOCAB", `token id ${id} is outside the text encoder's vocabulary (vocab_size ${V})`, "use the tokenizer/ folder that belongs to this text_encoder/");
    return this.source.readRows(llamaEmbedKey(this.prefix), rows);
  }

  /** Additive [S, S] mask: 0 where key j <= query i and mask[j] = 1, finfo.min elsewhere. */
  static additiveMask(mask: ArrayLike<number>, S: number): Float32Array {
    const m = new Float32Array(S * S);
    for (let i = 0; i < S; i++) for (let j = 0; j < S; j++) m[i * S + j] = j <= i && mask[j] > 0 ? 0 : F32_MIN;
    return m;
  }

  private prepare(inputs: readonly LlamaInput[], rows: "all" | "real") {
    return inputs.map((inp, j) => {
      const n = inp.ids.length;
      if (n === 0) throw new MixCacheError("USAGE", `input ${j}: no token ids`);
      if (inp.mask && inp.mask.length !== n) throw new MixCacheError("USAGE", `input ${j}: mask has ${inp.mask.length} entries for ${n} ids`);
      const mask = new Uint8Array(n);
      for (let s = 0; s < n; s++) mask[s] = inp.mask ? (inp.mask[s] > 0 ? 1 : 0) : 1;
      let len = 0;
      while (len < n && mask[len]) len++;
      for (let s = len; s < n; s++)
        if (mask[s]) throw new MixCacheError("USAGE", `input ${j}: the mask is not right padding (1...1 0...0)`, "pad on the right, as the HunyuanVideo tokenizer does (padding_side \"right\")");
      if (len === 0) throw new MixCacheError("USAGE", `input ${j}: the first token is padding (mask[0] = 0)`, "tokenize with add_special_tokens, so <|begin_of_text|> comes first");
      const S = rows === "real" ? len : n;
      const ids = Array.from(inp.ids).slice(0, S);
      return { n, S, len, x: this.embed(ids), mask: LlamaTextEncoder.additiveMask(mask, S), rope: llamaRopeTables(this.config, S, this.invFreq) };
    });
  }

  private async stage(i: number, finalNorm: boolean, timing: LayerTiming, onPhase?: () => void): Promise<StageSession> {
    const key = finalNorm ? -1 : i;
    const kept = this.sessions.get(key);
    if (kept) return kept;
    const w = weightGetter(this.source, llamaExpectedShapes(this.config, this.prefix));
    const s = await createStage(() => (finalNorm ? buildLlamaNormGraph(this.config, w, this.prefix) : buildLlamaLayerGraph(this.config, w, i, this.prefix)), this.opts, timing, onPhase);
    if (this.opts.keepSessions) this.sessions.set(key, s);
    return s;
  }

  /**
   * hidden_states[index] of each input ([S, D]; with rows "real" the padded rows are zero). Runs
   * layers 0..index-1 (and the final norm when index is the last entry), streamed.
   */
  async hiddenState(inputs: readonly LlamaInput[], index: number, opts: LlamaForwardOptions = {}): Promise<Float32Array[]> {
    const idx = this.resolveIndex(index);
    const L = this.layers;
    const D = this.config.hidden_size, d = this.config.head_dim;
    const items = this.prepare(inputs, opts.rows ?? "all");
    const nLayers = idx === L ? L : idx;
    const stages = nLayers + (idx === L ? 1 : 0);
    await runStages(
      stages,
      items,
      {
        timing: (i): LayerTiming => ({ encoder: "llama", layer: i, stages, buildMs: 0, sessionMs: 0, runMs: 0 }),
        session: (i, timing, onPhase) => this.stage(i, i === L, timing, onPhase),
        feeds: (i, it): Record<string, Feed> =>
          i === L
            ? { x: { data: it.x, dims: [it.S, D] } }
            : {
                x: { data: it.x, dims: [it.S, D] },
                cos: { data: it.rope.cos, dims: [it.S, d] },
                sin: { data: it.rope.sin, dims: [it.S, d] },
                mask: { data: it.mask, dims: [it.S, it.S] },
              },
        keep: !!this.opts.keepSessions,
      },
      opts,
    );
    return items.map((it) => {
      if (it.S === it.n) return it.x;
      const out = new Float32Array(it.n * D);
      out.set(it.x);
      return out;
    });
  }

  /**
   * The same hidden state from one graph holding every layer it needs (not streamed: the weights of
   * all those layers at once). For checks against the streamed run and for small encoders.
   */
  async hiddenStateAllAtOnce(inputs: readonly LlamaInput[], index: number): Promise<Float32Array[]> {
    const idx = this.resolveIndex(index);
    const L = this.layers;
    const items = this.prepare(inputs, "all");
    const w = weightGetter(this.source, llamaExpectedShapes(this.config, this.prefix));
    const timing: LayerTiming = { encoder: "llama", layer: 0, stages: 1, buildMs: 0, sessionMs: 0, runMs: 0 };
    const build = (): Graph => buildLlamaStackGraph(this.config, w, idx === L ? L : idx, idx === L, this.prefix);
    const s = await createStage(build, { ...this.opts, keepSessions: false }, timing);
    const D = this.config.hidden_size, d = this.config.head_dim;
    try {
      const out: Float32Array[] = [];
      for (const it of items) {
        const [y] = await s.run(
          { x: { data: it.x, dims: [it.S, D] }, cos: { data: it.rope.cos, dims: [it.S, d] }, sin: { data: it.rope.sin, dims: [it.S, d] }, mask: { data: it.mask, dims: [it.S, it.S] } },
          ["y"],
        );
        out.push(y);
      }
      return out;
    } finally {
      await s.release();
    }
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
