/**
 * A loaded HunyuanVideo transformer (diffusers HunyuanVideoTransformer3DModel, text-to-video) as a
 * `DiTModel`: one onnxruntime session per stage and per block module, built from the stage graphs
 * (graphs.ts) with the weights as initializers, read one stage at a time.
 *
 * The hidden state the loop carries is [L + S, D]: the L image tokens followed by the S text
 * tokens, as the single-stream blocks concatenate them. Blocks: num_layers dual-stream blocks
 * (modules "attn", "ff", sequential) then num_single_layers single-stream blocks (modules "attn",
 * "mlp", parallel: both read the block input and the block adds both residuals, which is
 * h + gate proj_out(concat(attn, mlp)) split by proj_out's columns).
 */
import { StageSession, BackendOptions, stageOptions } from "../../backend/ort.ts";
import { ConfigError, UsageError } from "../../errors.ts";
import { collectGarbage } from "../../util/gc.ts";
import type { BlockDecl, DiTModel, FamilyMacs, GridHandle, PromptHandle, PromptInput, TimeOut } from "../family.ts";
import type { WeightSource } from "../wan/model.ts";
import { HunyuanConfig, TIME_FEATURES, expectedShapes, hunyuanDim } from "./config.ts";
import {
  Grid, WeightGetter, buildDoubleAttnGraph, buildDoubleFfGraph, buildHeadGraph, buildPatchGraph, buildPromptGraph,
  buildRefinerGraph, buildSingleAttnGraph, buildSingleMlpGraph, buildTimeGraph, ropeTables,
} from "./graphs.ts";
import { hunyuanFamilyMacs } from "./macs.ts";

export type { WeightSource };

/**
 * Sinusoidal timestep features of diffusers Timesteps(256, flip_sin_to_cos=True,
 * downscale_freq_shift=0): [cos(x w_i), sin(x w_i)], w_i = exp(-ln(10000) i / 128). Computed in
 * float64 (diffusers computes the angle in float32, which at a guidance of 6 x 1000 is off by a
 * few 1e-4 rad); the stage graphs take the rounded features.
 */
export function timestepFeatures(x: number): Float32Array {
  const half = TIME_FEATURES / 2;
  const f = new Float32Array(TIME_FEATURES);
  for (let i = 0; i < half; i++) {
    const a = x * Math.exp((-Math.log(10000) * i) / half);
    f[i] = Math.cos(a);
    f[half + i] = Math.sin(a);
  }
  return f;
}

/** Grid-specific state: RoPE tables and the patch/head sessions. */
export class HunyuanGrid implements GridHandle {
  constructor(
    readonly grid: [number, number, number],
    readonly L: number,
    readonly cos: Float32Array,
    readonly sin: Float32Array,
    readonly patch: StageSession,
    readonly head: StageSession,
  ) {}
}

/** What one prompt leaves for the run: its real tokens' projections, independent of the step. */
export class HunyuanPrompt implements PromptHandle {
  constructor(
    /** real (unpadded) text tokens */
    readonly S: number,
    /** context_embedder.proj_in(text) [S, D] */
    readonly ctx0: Float32Array,
    /** the refiner's pooled-text term: context_embedder.time_text_embed.text_embedder(mean(text)) [D] */
    readonly rpool: Float32Array,
    /** the pooled (CLIP) text term of the conditioning: time_text_embed.text_embedder(pooled) [D] */
    readonly ppool: Float32Array,
  ) {}
}

interface BlockSessions {
  attn: StageSession;
  second: StageSession; // dual-stream "ff" or single-stream "mlp"
}

export class HunyuanVideoModel implements DiTModel {
  readonly family = "hunyuan-video";
  readonly inChannels: number;
  readonly dim: number;
  readonly blocks: readonly BlockDecl[];
  private gridCache = new Map<string, HunyuanGrid>();

  private constructor(
    readonly config: HunyuanConfig,
    private source: WeightSource,
    private readonly opts: BackendOptions,
    private readonly timeS: StageSession,
    private readonly promptS: StageSession,
    private readonly refinerS: StageSession,
    private readonly blockS: BlockSessions[],
  ) {
    this.inChannels = config.in_channels;
    this.dim = hunyuanDim(config);
    const double: BlockDecl = { kind: "double", modules: [{ name: "attn", role: "joint-attn" }, { name: "ff", role: "mlp" }] };
    const single: BlockDecl = { kind: "single", parallel: true, modules: [{ name: "attn", role: "joint-attn" }, { name: "mlp", role: "mlp" }] };
    this.blocks = [...Array(config.num_layers).fill(double), ...Array(config.num_single_layers).fill(single)];
  }

  static async load(config: HunyuanConfig, source: WeightSource, opts: BackendOptions = {}, onProgress?: (done: number, total: number) => void): Promise<HunyuanVideoModel> {
    const shapes = expectedShapes(config);
    const checked: WeightGetter = (k) => {
      const s = shapes.get(k);
      if (!s) throw new ConfigError(`weight ${k} is not a HunyuanVideoTransformer3DModel key of this config`);
      const v = source.read(k);
      const n = s.reduce((a, b) => a * b, 1);
      if (n !== v.length) throw new ConfigError(`weight ${k} has ${v.length} values, expected shape [${s}]`, "the weights do not match config.json");
      return v;
    };
    const total = 3 + 2 * (config.num_layers + config.num_single_layers);
    let done = 0;
    const mk = async (g: ReturnType<typeof buildTimeGraph>) => {
      const s = await StageSession.create(g.name, g.toModel(), opts);
      onProgress?.(++done, total);
      return s;
    };
    const timeS = await mk(buildTimeGraph(config, checked));
    const promptS = await mk(buildPromptGraph(config, checked));
    const refinerS = await mk(buildRefinerGraph(config, checked));
    collectGarbage();
    const blockS: BlockSessions[] = [];
    for (let b = 0; b < config.num_layers + config.num_single_layers; b++) {
      // both modules of a block read norm1.linear / proj_out: read each key once per block
      const cache = new Map<string, Float32Array>();
      const w: WeightGetter = (k) => {
        let v = cache.get(k);
        if (!v) cache.set(k, (v = checked(k)));
        return v;
      };
      const single = b >= config.num_layers;
      const i = single ? b - config.num_layers : b;
      const attn = await mk(single ? buildSingleAttnGraph(config, w, i) : buildDoubleAttnGraph(config, w, i));
      const second = await mk(single ? buildSingleMlpGraph(config, w, i) : buildDoubleFfGraph(config, w, i));
      blockS.push({ attn, second });
      cache.clear();
      collectGarbage(); // drop this block's JS weight copies before reading the next block
    }
    return new HunyuanVideoModel(config, { read: checked }, opts, timeS, promptS, refinerS, blockS);
  }

  /** Replace the weight source used for grid-specific stages built later (patch, head). */
  setWeightSource(source: WeightSource): void {
    this.source = source;
  }

  gridFor(frames: number, height: number, width: number): [number, number, number] {
    const pt = this.config.patch_size_t;
    const p = this.config.patch_size;
    for (const [k, v] of [["frames", frames], ["height", height], ["width", width]] as const)
      if (!Number.isInteger(v) || v < 1) throw new ConfigError(`latent ${k} must be a positive integer, got ${v}`);
    if (frames % pt || height % p || width % p)
      throw new ConfigError(
        `latent ${frames}x${height}x${width} is not divisible by the patch (patch_size_t ${pt}, patch_size ${p})`,
        `use latent frames a multiple of ${pt} and height/width multiples of ${p}, e.g. ${Math.max(pt, frames - (frames % pt))}x${Math.max(p, height - (height % p))}x${Math.max(p, width - (width % p))}`,
      );
    return [frames / pt, height / p, width / p];
  }

  async prepareGrid(grid: [number, number, number]): Promise<HunyuanGrid> {
    if (grid.length !== 3 || !grid.every((n) => Number.isInteger(n) && n >= 1))
      throw new ConfigError(`patch grid ${JSON.stringify(grid)} must be three positive integers`, "get it from gridFor(frames, height, width)");
    const key = grid.join("x");
    let st = this.gridCache.get(key);
    if (!st) {
      const shapes = expectedShapes(this.config);
      const w: WeightGetter = (k) => {
        const v = this.source.read(k);
        const n = shapes.get(k)!.reduce((a, b) => a * b, 1);
        if (n !== v.length) throw new ConfigError(`weight ${k} has ${v.length} values, expected shape [${shapes.get(k)}]`, "the weights do not match config.json");
        return v;
      };
      const g: Grid = [grid[0], grid[1], grid[2]];
      const { cos, sin } = ropeTables(this.config, g);
      const pg = buildPatchGraph(this.config, w, g);
      const hg = buildHeadGraph(this.config, w, g);
      const L = g[0] * g[1] * g[2];
      const small = stageOptions(this.opts, L * this.dim);
      st = new HunyuanGrid(g, L, cos, sin,
        await StageSession.create(pg.name, pg.toModel(), small),
        await StageSession.create(hg.name, hg.toModel(), small));
      this.gridCache.set(key, st);
    }
    return st;
  }

  /**
   * One prompt: data [tokens, text_embed_dim] (the Llama hidden states HunyuanVideoPipeline
   * passes as encoder_hidden_states), mask [tokens] (its encoder_attention_mask) and pooled
   * [pooled_projection_dim] (the CLIP pooled output, pooled_projections; required).
   *
   * Padding is trimmed: only the real tokens are kept. diffusers' mask only ever hides padded
   * tokens as keys: the refiner's 2D mask (mask_i & mask_j, column 0 forced on) lets a real query
   * see exactly the real keys and makes the masked mean pool the mean of the real tokens; the joint
   * attention mask [B, 1, 1, L + S] hides the keys at positions >= L + sum(mask) from every query;
   * norms, modulation and MLPs are token-wise. So the image tokens (and the real text tokens) come
   * out identical without the padded rows, whatever those rows hold (test/hunyuan_parity.test.ts
   * checks it against a reference that applies the mask literally, with garbage in the padding).
   * diffusers counts real tokens rather than reading their positions, so the mask must be right
   * padding (ones, then zeros), as the pipeline's tokenizer gives.
   */
  async encodePrompt(p: PromptInput): Promise<HunyuanPrompt> {
    const c = this.config;
    const Dt = c.text_embed_dim;
    if (!Number.isInteger(p.tokens) || p.tokens < 1)
      throw new UsageError(`prompt tokens must be a positive integer, got ${p.tokens}`, "pass the text embedding's sequence length");
    if (!(p.data instanceof Float32Array) || p.data.length !== p.tokens * Dt)
      throw new UsageError(`prompt embedding has ${p.data?.length} values, expected tokens x text_embed_dim = ${p.tokens} x ${Dt} = ${p.tokens * Dt}`, `pass the text encoder's hidden states as [${p.tokens}, ${Dt}] (text_embed_dim of the transformer config)`);
    if (!p.pooled)
      throw new UsageError("HunyuanVideo needs the pooled text embedding (pooled_projections) and none was given", `pass pooled: the CLIP text encoder's pooled output, ${c.pooled_projection_dim} values`);
    if (!(p.pooled instanceof Float32Array) || p.pooled.length !== c.pooled_projection_dim)
      throw new UsageError(`pooled text embedding has ${p.pooled.length} values, expected pooled_projection_dim = ${c.pooled_projection_dim}`, "pass the CLIP text encoder's pooled output for this prompt");
    let S = p.tokens;
    if (p.mask) {
      if (p.mask.length !== p.tokens)
        throw new UsageError(`prompt mask has ${p.mask.length} entries for ${p.tokens} tokens`, "pass one mask entry per token (1 real, 0 padding)");
      S = 0;
      while (S < p.tokens && p.mask[S] === 1) S++;
      for (let i = S; i < p.tokens; i++)
        if (p.mask[i] !== 0)
          throw new UsageError(`prompt mask must be ones for the real tokens then zeros for the padding; entry ${i} is ${p.mask[i]} after ${S} real tokens`, "pad on the right (HunyuanVideoPipeline's tokenizer does), with mask values 0 or 1");
      if (S === 0) throw new UsageError("prompt mask has no real token", "the mask needs at least one 1 (diffusers divides by the number of real tokens)");
    }
    const [ctx0, rpool, ppool] = await this.promptS.run(
      { text: { data: p.data.subarray(0, S * Dt), dims: [1, S, Dt] }, pooled: { data: p.pooled, dims: [1, c.pooled_projection_dim] } },
      ["ctx0", "rpool", "ppool"],
    );
    return new HunyuanPrompt(S, ctx0, rpool, ppool);
  }

  /**
   * temb = timestep_embedder(sinusoid(t)) + guidance_embedder(sinusoid(guidance x 1000)) (the
   * guidance term only with guidance_embeds; HunyuanVideoPipeline passes guidance_scale x 1000).
   * The pooled-text term of diffusers' conditioning is per prompt, so branchIn adds it. HunyuanVideo
   * has no separate modulation projection (every block applies its own SiLU + Linear to the one
   * conditioning vector), so tproj is the same array as temb.
   */
  async time(t: number, guidance: number): Promise<TimeOut> {
    if (!Number.isFinite(t)) throw new UsageError(`timestep must be a finite number, got ${t}`);
    const feeds: Record<string, { data: Float32Array; dims: number[] }> = { tfeat: { data: timestepFeatures(t), dims: [1, TIME_FEATURES] } };
    if (this.config.guidance_embeds) {
      if (!Number.isFinite(guidance)) throw new UsageError(`guidance must be a finite number, got ${guidance}`, "HunyuanVideo embeds the guidance scale (e.g. 6.0)");
      feeds.gfeat = { data: timestepFeatures(guidance * 1000), dims: [1, TIME_FEATURES] };
    }
    const [temb] = await this.timeS.run(feeds, ["temb"]);
    return { temb, tproj: temb };
  }

  async patch(g: GridHandle, latent: Float32Array): Promise<Float32Array> {
    const st = this.grid(g);
    const c = this.config;
    const dims = [1, c.in_channels, st.grid[0] * c.patch_size_t, st.grid[1] * c.patch_size, st.grid[2] * c.patch_size];
    const n = dims.reduce((a, b) => a * b, 1);
    if (latent.length !== n) throw new UsageError(`latent has ${latent.length} values, expected [${dims.slice(1)}] = ${n}`);
    const [tok] = await st.patch.run({ x: { data: latent, dims } }, ["tokens"]);
    return tok;
  }

  /**
   * Per branch: the conditioning temb + time_text_embed.text_embedder(pooled), and the token
   * refiner (its own timestep embedding of t plus the pooled mean of the text, then the refiner
   * blocks) on the prompt's projected text. h = [image tokens; refined text tokens].
   */
  async branchIn(g: GridHandle, tokens: Float32Array, time: TimeOut, p: PromptHandle, t: number): Promise<{ h: Float32Array; time: TimeOut }> {
    const st = this.grid(g);
    const pr = this.prompt(p);
    const D = this.dim;
    if (tokens.length !== st.L * D) throw new UsageError(`image tokens have ${tokens.length} values, expected ${st.L} x ${D}`);
    if (time.temb.length !== D) throw new UsageError(`temb has ${time.temb.length} values, expected ${D}`);
    if (!Number.isFinite(t)) throw new UsageError(`timestep must be a finite number, got ${t}`);
    const [ctx] = await this.refinerS.run({
      tfeat: { data: timestepFeatures(t), dims: [1, TIME_FEATURES] },
      rpool: { data: pr.rpool, dims: [1, D] },
      ctx0: { data: pr.ctx0, dims: [1, pr.S, D] },
    }, ["ctx"]);
    const cond = new Float32Array(D);
    for (let i = 0; i < D; i++) cond[i] = time.temb[i] + pr.ppool[i];
    const h = new Float32Array((st.L + pr.S) * D);
    h.set(tokens, 0);
    h.set(ctx, st.L * D);
    return { h, time: { temb: cond, tproj: cond } };
  }

  async module(b: number, m: number, g: GridHandle, h: Float32Array, time: TimeOut, p: PromptHandle): Promise<Float32Array> {
    const st = this.grid(g);
    const pr = this.prompt(p);
    const D = this.dim;
    const decl = this.blocks[b];
    if (!decl || !Number.isInteger(m) || m < 0 || m >= decl.modules.length)
      throw new UsageError(`no module ${m} of block ${b} (${this.blocks.length} blocks of 2 modules)`);
    const N = st.L + pr.S;
    if (h.length !== N * D) throw new UsageError(`hidden state has ${h.length} values, expected (${st.L} image + ${pr.S} text tokens) x ${D}`);
    if (time.tproj.length !== D) throw new UsageError(`tproj has ${time.tproj.length} values, expected ${D}`);
    const c = { data: time.tproj, dims: [1, D] };
    const s = this.blockS[b];
    if (decl.kind === "single" && m === 1) {
      const [r] = await s.second.run({ x: { data: h, dims: [1, N, D] }, c }, ["r"]);
      return r;
    }
    const img = { data: h.subarray(0, st.L * D), dims: [1, st.L, D] };
    const txt = { data: h.subarray(st.L * D), dims: [1, pr.S, D] };
    if (m === 1) {
      const [r] = await s.second.run({ img, txt, c }, ["r"]);
      return r;
    }
    const P = this.config.attention_head_dim / 2;
    const [r] = await s.attn.run({ img, txt, c, cos: { data: st.cos, dims: [st.L, P] }, sin: { data: st.sin, dims: [st.L, P] } }, ["r"]);
    return r;
  }

  async head(g: GridHandle, h: Float32Array, time: TimeOut, p: PromptHandle): Promise<Float32Array> {
    const st = this.grid(g);
    const pr = this.prompt(p);
    const D = this.dim;
    if (h.length !== (st.L + pr.S) * D) throw new UsageError(`hidden state has ${h.length} values, expected (${st.L} image + ${pr.S} text tokens) x ${D}`);
    const [v] = await st.head.run({ img: { data: h.subarray(0, st.L * D), dims: [1, st.L, D] }, c: { data: time.temb, dims: [1, D] } }, ["v"]);
    return v;
  }

  macs(g: GridHandle, p: PromptHandle): FamilyMacs {
    return hunyuanFamilyMacs(this.config, g.L, p.S);
  }

  async release(): Promise<void> {
    const all = [this.timeS, this.promptS, this.refinerS];
    for (const s of this.blockS) all.push(s.attn, s.second);
    for (const g of this.gridCache.values()) all.push(g.patch, g.head);
    this.gridCache.clear();
    for (const s of all) await s.release();
  }

  private grid(g: GridHandle): HunyuanGrid {
    if (!(g instanceof HunyuanGrid) || this.gridCache.get(g.grid.join("x")) !== g)
      throw new UsageError("grid handle was not prepared by this model", "call prepareGrid on this model first");
    return g;
  }

  private prompt(p: PromptHandle): HunyuanPrompt {
    if (!(p instanceof HunyuanPrompt)) throw new UsageError("prompt handle was not made by a HunyuanVideo model", "call encodePrompt on this model first");
    return p;
  }
}
