/**
 * A loaded Wan2.1 transformer: one onnxruntime session per stage and per block module (and, for
 * small models, one per whole block: FUSED_BLOCKS_MAX_WEIGHT_BYTES), built from the stage graphs
 * with the weights as initializers. Weights are read one stage at a time, so a
 * multi-GB checkpoint never needs a second full copy in memory.
 */
import { StageSession, BackendOptions, stageOptions, type Feed } from "../../backend/ort.ts";
import { ConfigError } from "../../errors.ts";
import { collectGarbage } from "../../util/gc.ts";
import { WanConfig, dimOf, expectedShapes, parameterCount } from "./config.ts";
import type { BlockDecl, BlockModulesOut, DiTModel, ModulePlan, TimeOut as FamilyTimeOut, FamilyMacs, GridHandle, PromptHandle, PromptInput } from "../family.ts";
import { promptMacs, stageMacs } from "./macs.ts";
import {
  Grid, WeightGetter, buildBlocksGraph, buildCrossAttnGraph, buildCrossKvGraph, buildFfnGraph, buildHeadGraph, buildPatchGraph,
  buildSelfAttnGraph, buildTextGraph, buildTimeGraph, ropeTables, type WanGraphOptions,
} from "./graphs.ts";

/**
 * Fused block sessions (one session per block: sa, ca, ffn and the residual adds in one call) are
 * built next to the per-module sessions when the fp32 weights are at most this size: each block's
 * weights are then held twice. Below it the per-call cost (dispatch, the JS residual adds, output
 * copies) is a large share of a module call; above it a module call is long enough that the saving
 * is negligible and the second copy would break the memory budget (peak <= 1.3x the weights).
 */
export const FUSED_BLOCKS_MAX_WEIGHT_BYTES = 256 * 2 ** 20;

export interface WanLoadOptions extends BackendOptions {
  /** Build the fused block sessions (default: when the fp32 weights fit FUSED_BLOCKS_MAX_WEIGHT_BYTES). */
  fusedBlocks?: boolean;
  /** Weight bytes all sessions of a block with some modules given may hold together (default
   * FUSED_BLOCKS_MAX_WEIGHT_BYTES; see blockModules). */
  partialBlocksMaxBytes?: number;
  /** Stage graph options (default: onnxruntime's fused operators). */
  graphs?: WanGraphOptions;
}

/** Where weights come from: a safetensors checkpoint or an in-memory map (tests). */
export interface WeightSource {
  read(key: string): Float32Array;
}

export function mapSource(m: Map<string, Float32Array>): WeightSource {
  return {
    read(key) {
      const v = m.get(key);
      if (!v) throw new ConfigError(`weight ${key} is missing`);
      return v;
    },
  };
}

export type ModuleKind = "sa" | "ca" | "ffn";
export const MODULES: readonly ModuleKind[] = ["sa", "ca", "ffn"];

/** Wan's block as the loop sees it: self-attention, cross-attention, feed-forward, in sequence. */
export const WAN_BLOCK: BlockDecl = {
  kind: "wan",
  modules: [{ name: "sa", role: "self-attn" }, { name: "ca", role: "cross-attn" }, { name: "ffn", role: "mlp" }],
};

/** Wan's time path: temb [1, D] (time_embedder output), tproj [1, 6, D] (time_proj). */
export type TimeOut = FamilyTimeOut;
/** ...and the head's modulation of the same timestep: 1 + scale and shift, [D] each. */
export interface WanTimeOut extends TimeOut {
  headScale: Float32Array;
  headShift: Float32Array;
}
/** Timestep values whose time-path outputs a model keeps (more clears the memo). */
const TIME_MEMO_ENTRIES = 4096;

/** A prompt as the Wan blocks use it: its token count and every block's cross-attention K/V. */
export interface WanPrompt extends PromptHandle {
  readonly S: number;
  readonly kv: BlockKV[];
}
export interface BlockKV {
  k: Float32Array; // [1, H, S, d]
  v: Float32Array;
}
export interface GridState extends GridHandle {
  grid: Grid;
  L: number;
  cos: Float32Array;
  sin: Float32Array;
  patch: StageSession;
  head: StageSession;
}

export class WanModel implements DiTModel {
  readonly family = "wan";
  readonly blocks: readonly BlockDecl[];
  private gridCache = new Map<string, GridState>();
  private timeMemo = new Map<number, WanTimeOut>();
  /** Fused sessions of a block with some modules given (partialBlock), and their weight bytes. */
  private partialS = new Map<string, StageSession | null>();
  private partialBytes = 0;
  private constructor(
    readonly config: WanConfig,
    private source: WeightSource,
    private readonly opts: WanLoadOptions,
    private readonly timeS: StageSession,
    private readonly textS: StageSession,
    private readonly kvS: StageSession[],
    private readonly saS: StageSession[],
    private readonly caS: StageSession[],
    private readonly ffnS: StageSession[],
    /** blockS[i]: block i as one session (sa, ca, ffn, residual adds); empty when not built. */
    private readonly blockS: StageSession[],
  ) {
    this.blocks = Array.from({ length: config.num_layers }, () => WAN_BLOCK);
  }

  get dim(): number {
    return dimOf(this.config);
  }

  get inChannels(): number {
    return this.config.in_channels;
  }

  static async load(config: WanConfig, source: WeightSource, opts: WanLoadOptions = {}, onProgress?: (done: number, total: number) => void): Promise<WanModel> {
    const w: WeightGetter = (k) => source.read(k);
    const shapes = expectedShapes(config);
    const checked: WeightGetter = (k) => {
      const v = w(k);
      const s = shapes.get(k);
      const n = s ? s.reduce((a, b) => a * b, 1) : -1;
      if (n !== v.length) throw new ConfigError(`weight ${k} has ${v.length} values, expected shape [${s}]`, "the weights do not match config.json");
      return v;
    };
    const fusedBlocks = opts.fusedBlocks ?? 4 * parameterCount(config) <= FUSED_BLOCKS_MAX_WEIGHT_BYTES;
    const go = opts.graphs ?? {};
    const total = 2 + (fusedBlocks ? 5 : 4) * config.num_layers;
    let done = 0;
    const mk = async (g: ReturnType<typeof buildTimeGraph>) => {
      const s = await StageSession.create(g.name, g.toModel(), opts);
      collectGarbage(); // drop this stage's JS weight copies before reading the next stage
      onProgress?.(++done, total);
      return s;
    };
    const timeS = await mk(buildTimeGraph(config, checked));
    const textS = await mk(buildTextGraph(config, checked));
    const kvS: StageSession[] = [], saS: StageSession[] = [], caS: StageSession[] = [], ffnS: StageSession[] = [], blockS: StageSession[] = [];
    for (let i = 0; i < config.num_layers; i++) {
      kvS.push(await mk(buildCrossKvGraph(config, checked, i, go)));
      saS.push(await mk(buildSelfAttnGraph(config, checked, i, go)));
      caS.push(await mk(buildCrossAttnGraph(config, checked, i, go)));
      ffnS.push(await mk(buildFfnGraph(config, checked, i, go)));
      if (fusedBlocks) blockS.push(await mk(buildBlocksGraph(config, checked, i, i + 1, go)));
    }
    const model = new WanModel(config, { read: checked }, opts, timeS, textS, kvS, saS, caS, ffnS, blockS);
    return model;
  }

  /** Replace the weight source used for grid-specific stages built later (patch, head). */
  setWeightSource(source: WeightSource): void {
    this.source = source;
  }

  /** Patch grid for a latent of frames x height x width (each divisible by the patch size). */
  gridFor(frames: number, height: number, width: number): Grid {
    const [pt, ph, pw] = this.config.patch_size;
    if (frames % pt || height % ph || width % pw)
      throw new ConfigError(`latent ${frames}x${height}x${width} is not divisible by patch_size [${this.config.patch_size}]`, "choose frames/height/width that are multiples of the patch size");
    return [frames / pt, height / ph, width / pw];
  }

  /** Grid-specific state: RoPE tables and the patch/head sessions, built once per grid. */
  async prepareGrid(grid: Grid): Promise<GridState> {
    const key = grid.join("x");
    let st = this.gridCache.get(key);
    if (!st) {
      const w = (k: string) => this.source.read(k);
      const { cos, sin } = ropeTables(this.config, grid);
      const pg = buildPatchGraph(this.config, w, grid);
      const hg = buildHeadGraph(this.config, w, grid);
      const L = grid[0] * grid[1] * grid[2];
      const small = stageOptions(this.opts, L * this.dim);
      st = {
        grid,
        L,
        cos,
        sin,
        patch: await StageSession.create(pg.name, pg.toModel(), small),
        head: await StageSession.create(hg.name, hg.toModel(), small),
      };
      this.gridCache.set(key, st);
    }
    return st;
  }

  /**
   * Time path (Wan has no guidance embedding: `_guidance` is ignored). It depends on the timestep
   * alone, so its outputs are kept per timestep value (a few hundred floats each): a run's steps,
   * and every later run on the same schedule, compute each only once. Callers must not modify
   * the arrays.
   */
  async time(t: number, _guidance = 1): Promise<WanTimeOut> {
    const hit = this.timeMemo.get(t);
    if (hit) return hit;
    const [temb, tproj, headScale, headShift] = await this.timeS.run({ t: { data: new Float32Array([t]), dims: [1] } }, ["temb", "tproj", "head_scale", "head_shift"]);
    if (this.timeMemo.size >= TIME_MEMO_ENTRIES) this.timeMemo.clear();
    const out = { temb, tproj, headScale, headShift };
    this.timeMemo.set(t, out);
    return out;
  }

  /** Text embedding [S, text_dim] -> ctx [1, S, D]. */
  async text(text: Float32Array, S: number): Promise<Float32Array> {
    const [ctx] = await this.textS.run({ text: { data: text, dims: [1, S, this.config.text_dim] } }, ["ctx"]);
    return ctx;
  }

  async crossKV(i: number, ctx: Float32Array, S: number): Promise<BlockKV> {
    const [k, v] = await this.kvS[i].run({ ctx: { data: ctx, dims: [1, S, this.dim] } }, ["k", "v"]);
    return { k, v };
  }

  async patch(g: GridState, x: Float32Array): Promise<Float32Array> {
    const [pt, ph, pw] = this.config.patch_size;
    const dims = [1, this.config.in_channels, g.grid[0] * pt, g.grid[1] * ph, g.grid[2] * pw];
    const [tok] = await g.patch.run({ x: { data: x, dims } }, ["tokens"]);
    return tok;
  }

  /** One block module: returns its residual contribution [1, L, D]. */
  async runModule(kind: ModuleKind, i: number, g: GridState, x: Float32Array, tproj: Float32Array, kv: BlockKV, S: number): Promise<Float32Array> {
    const D = this.dim;
    const xd = { data: x, dims: [1, g.L, D] };
    if (kind === "sa") {
      const P = this.config.attention_head_dim / 2;
      const [r] = await this.saS[i].run({ x: xd, tproj: { data: tproj, dims: [1, 6, D] }, cos: { data: g.cos, dims: [g.L, P] }, sin: { data: g.sin, dims: [g.L, P] } }, ["r"]);
      return r;
    }
    if (kind === "ca") {
      const H = this.config.num_attention_heads;
      const d = this.config.attention_head_dim;
      const [r] = await this.caS[i].run({ x: xd, k: { data: kv.k, dims: [1, H, S, d] }, v: { data: kv.v, dims: [1, H, S, d] } }, ["r"]);
      return r;
    }
    const [r] = await this.ffnS[i].run({ x: xd, tproj: { data: tproj, dims: [1, 6, D] } }, ["r"]);
    return r;
  }

  /** Whether blocks run as one session each (runBlocks) or module by module. */
  get fusedBlocks(): boolean {
    return this.blockS.length > 0;
  }

  /**
   * Blocks [from, to) on hidden state x -> the hidden state after them: one session call per block
   * when the fused block sessions exist, else the module sessions with the residual adds in JS.
   * Both paths run the same operations (test/fused_block.test.ts: bit-identical).
   */
  async runBlockRange(from: number, to: number, g: GridState, x: Float32Array, tproj: Float32Array, kv: BlockKV[], S: number, path: "auto" | "modules" = "auto"): Promise<Float32Array> {
    const c = this.config;
    const D = this.dim;
    const H = c.num_attention_heads;
    const d = c.attention_head_dim;
    let h = x;
    for (let i = from; i < to; i++) {
      if (this.blockS.length && path === "auto") {
        const feeds: Record<string, Feed> = {
          x: { data: h, dims: [1, g.L, D] },
          tproj: { data: tproj, dims: [1, 6, D] },
          cos: { data: g.cos, dims: [g.L, d / 2] },
          sin: { data: g.sin, dims: [g.L, d / 2] },
          [`k${i}`]: { data: kv[i].k, dims: [1, H, S, d] },
          [`v${i}`]: { data: kv[i].v, dims: [1, H, S, d] },
        };
        [h] = await this.blockS[i].run(feeds, ["h"]);
      } else {
        for (const m of MODULES) {
          const r = await this.runModule(m, i, g, h, tproj, kv[i], S);
          const nh = new Float32Array(h.length);
          for (let j = 0; j < h.length; j++) nh[j] = h[j] + r[j];
          h = nh;
        }
      }
    }
    return h;
  }

  async runHead(g: GridState, x: Float32Array, time: WanTimeOut): Promise<Float32Array> {
    const D = this.dim;
    const [v] = await g.head.run({ x: { data: x, dims: [1, g.L, D] }, head_scale: { data: time.headScale, dims: [D] }, head_shift: { data: time.headShift, dims: [D] } }, ["v"]);
    return v;
  }

  // ---- DiTModel: the loop's view (family.ts) ----

  /** Text projection and every block's cross-attention K/V, once per prompt (Wan has no mask or pooled text). */
  async encodePrompt(p: PromptInput): Promise<WanPrompt> {
    const c = this.config;
    if (p.data.length !== p.tokens * c.text_dim)
      throw new ConfigError(`text embedding has ${p.data.length} values, expected tokens x text_dim = ${p.tokens} x ${c.text_dim}`);
    const ctx = await this.text(p.data, p.tokens);
    const kv: BlockKV[] = [];
    for (let i = 0; i < c.num_layers; i++) kv.push(await this.crossKV(i, ctx, p.tokens));
    return { S: p.tokens, kv };
  }

  /** Wan's blocks start from the patch tokens; the time path is the same for both branches. */
  async branchIn(_g: GridHandle, tokens: Float32Array, time: TimeOut): Promise<{ h: Float32Array; time: TimeOut }> {
    return { h: tokens, time };
  }

  module(b: number, m: number, g: GridHandle, h: Float32Array, time: TimeOut, p: PromptHandle): Promise<Float32Array> {
    const wp = p as WanPrompt;
    return this.runModule(MODULES[m], b, g as GridState, h, time.tproj, wp.kv[b], wp.S);
  }

  /**
   * Block b in one call of its fused session: the block output and the residuals of the modules
   * planned "keep" (fetched only then): the same operations as three module calls and their
   * residual adds (bit-identical). Modules planned with a residual are not computed: a session of
   * the block with those residuals as inputs runs instead (built on first use; see partialBlock).
   * Null when blocks are not fused or that session would exceed the weight budget.
   */
  async blockModules(b: number, g: GridHandle, h: Float32Array, time: TimeOut, p: PromptHandle, plan: readonly ModulePlan[]): Promise<BlockModulesOut | null> {
    if (!this.blockS.length) return null;
    const mask = MODULES.map((_, m) => plan[m] instanceof Float32Array);
    const session = mask.some(Boolean) ? await this.partialBlock(b, mask) : this.blockS[b];
    if (!session) return null;
    const wp = p as WanPrompt;
    const gs = g as GridState;
    const c = this.config;
    const H = c.num_attention_heads, d = c.attention_head_dim, D = this.dim;
    const feeds: Record<string, Feed> = { x: { data: h, dims: [1, gs.L, D] } };
    // only what the computed modules read (the graph declares no other input)
    if (!mask[0] || !mask[2]) feeds.tproj = { data: time.tproj, dims: [1, 6, D] };
    if (!mask[0]) {
      feeds.cos = { data: gs.cos, dims: [gs.L, d / 2] };
      feeds.sin = { data: gs.sin, dims: [gs.L, d / 2] };
    }
    if (!mask[1]) {
      feeds[`k${b}`] = { data: wp.kv[b].k, dims: [1, H, wp.S, d] };
      feeds[`v${b}`] = { data: wp.kv[b].v, dims: [1, H, wp.S, d] };
    }
    const fetch = ["h"];
    MODULES.forEach((_, m) => {
      const e = plan[m];
      if (e instanceof Float32Array) feeds[`g${m}`] = { data: e, dims: [1, gs.L, D] };
      else if (e === "keep") fetch.push(`r${m}`);
    });
    const got = await session.run(feeds, fetch);
    let k = 1;
    return { residuals: MODULES.map((_, m) => (plan[m] === "keep" ? got[k++] : null)), out: got[0] };
  }

  /**
   * The session of block b with the modules in `mask` given as inputs, built on first use. These
   * hold the weights of their computed modules once more, so all of them together stay within
   * FUSED_BLOCKS_MAX_WEIGHT_BYTES (partialBlocksMaxBytes); past it a combination gets null (the loop then runs the block
   * module by module, which gives the same values).
   */
  private async partialBlock(b: number, mask: readonly boolean[]): Promise<StageSession | null> {
    const key = `${b}:${mask.map(Number).join("")}`;
    const hit = this.partialS.get(key);
    if (hit !== undefined) return hit;
    const graph = buildBlocksGraph(this.config, (k) => this.source.read(k), b, b + 1, this.opts.graphs ?? {}, mask);
    const bytes = graph.initializerBytes;
    let s: StageSession | null = null;
    if (this.partialBytes + bytes <= (this.opts.partialBlocksMaxBytes ?? FUSED_BLOCKS_MAX_WEIGHT_BYTES)) {
      s = await StageSession.create(graph.name, graph.toModel(), this.opts);
      this.partialBytes += bytes;
    }
    this.partialS.set(key, s);
    return s;
  }

  /** Blocks [from, to) in one go (the loop uses it where no strategy hooks a module). */
  runBlocks(from: number, to: number, g: GridHandle, h: Float32Array, time: TimeOut, p: PromptHandle): Promise<Float32Array> {
    const wp = p as WanPrompt;
    return this.runBlockRange(from, to, g as GridState, h, time.tproj, wp.kv, wp.S);
  }

  head(g: GridHandle, h: Float32Array, time: TimeOut): Promise<Float32Array> {
    return this.runHead(g as GridState, h, time as WanTimeOut);
  }

  macs(g: GridHandle, p: PromptHandle): FamilyMacs {
    const m = stageMacs(this.config, g.L, p.S);
    return {
      time: m.time,
      patch: m.patch,
      branchIn: 0,
      module: this.blocks.map(() => [m.sa, m.ca, m.ffn]),
      head: m.head,
      prompt: promptMacs(this.config, p.S),
    };
  }

  async release(): Promise<void> {
    const all = [this.timeS, this.textS, ...this.kvS, ...this.saS, ...this.caS, ...this.ffnS, ...this.blockS];
    for (const s of this.partialS.values()) if (s) all.push(s);
    this.partialS.clear();
    for (const g of this.gridCache.values()) all.push(g.patch, g.head);
    for (const s of all) await s.release();
  }
}
