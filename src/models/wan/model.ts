/**
 * A loaded Wan2.1 transformer: one onnxruntime session per stage and per block module, built from
 * the stage graphs with the weights as initializers. Weights are read one stage at a time, so a
 * multi-GB checkpoint never needs a second full copy in memory.
 */
import { StageSession, BackendOptions } from "../../backend/ort.ts";
import { ConfigError } from "../../errors.ts";
import { collectGarbage } from "../../util/gc.ts";
import { WanConfig, dimOf, expectedShapes } from "./config.ts";
import {
  Grid, WeightGetter, buildCrossAttnGraph, buildCrossKvGraph, buildFfnGraph, buildHeadGraph, buildPatchGraph,
  buildSelfAttnGraph, buildTextGraph, buildTimeGraph, ropeTables,
} from "./graphs.ts";

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

export interface TimeOut {
  temb: Float32Array; // [1, D]
  tproj: Float32Array; // [1, 6, D]
}
export interface BlockKV {
  k: Float32Array; // [1, H, S, d]
  v: Float32Array;
}
export interface GridState {
  grid: Grid;
  L: number;
  cos: Float32Array;
  sin: Float32Array;
  patch: StageSession;
  head: StageSession;
}

export class WanModel {
  private gridCache = new Map<string, GridState>();
  private constructor(
    readonly config: WanConfig,
    private source: WeightSource,
    private readonly opts: BackendOptions,
    private readonly timeS: StageSession,
    private readonly textS: StageSession,
    private readonly kvS: StageSession[],
    private readonly saS: StageSession[],
    private readonly caS: StageSession[],
    private readonly ffnS: StageSession[],
  ) {}

  get dim(): number {
    return dimOf(this.config);
  }

  static async load(config: WanConfig, source: WeightSource, opts: BackendOptions = {}, onProgress?: (done: number, total: number) => void): Promise<WanModel> {
    const w: WeightGetter = (k) => source.read(k);
    const shapes = expectedShapes(config);
    const checked: WeightGetter = (k) => {
      const v = w(k);
      const s = shapes.get(k);
      const n = s ? s.reduce((a, b) => a * b, 1) : -1;
      if (n !== v.length) throw new ConfigError(`weight ${k} has ${v.length} values, expected shape [${s}]`, "the weights do not match config.json");
      return v;
    };
    const total = 2 + 4 * config.num_layers;
    let done = 0;
    const mk = async (g: ReturnType<typeof buildTimeGraph>) => {
      const s = await StageSession.create(g.name, g.toModel(), opts);
      collectGarbage(); // drop this stage's JS weight copies before reading the next stage
      onProgress?.(++done, total);
      return s;
    };
    const timeS = await mk(buildTimeGraph(config, checked));
    const textS = await mk(buildTextGraph(config, checked));
    const kvS: StageSession[] = [], saS: StageSession[] = [], caS: StageSession[] = [], ffnS: StageSession[] = [];
    for (let i = 0; i < config.num_layers; i++) {
      kvS.push(await mk(buildCrossKvGraph(config, checked, i)));
      saS.push(await mk(buildSelfAttnGraph(config, checked, i)));
      caS.push(await mk(buildCrossAttnGraph(config, checked, i)));
      ffnS.push(await mk(buildFfnGraph(config, checked, i)));
    }
    const model = new WanModel(config, { read: checked }, opts, timeS, textS, kvS, saS, caS, ffnS);
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
      st = {
        grid,
        L: grid[0] * grid[1] * grid[2],
        cos,
        sin,
        patch: await StageSession.create(pg.name, pg.toModel(), this.opts),
        head: await StageSession.create(hg.name, hg.toModel(), this.opts),
      };
      this.gridCache.set(key, st);
    }
    return st;
  }

  async time(t: number): Promise<TimeOut> {
    const [temb, tproj] = await this.timeS.run({ t: { data: new Float32Array([t]), dims: [1] } }, ["temb", "tproj"]);
    return { temb, tproj };
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
  async module(kind: ModuleKind, i: number, g: GridState, x: Float32Array, tproj: Float32Array, kv: BlockKV, S: number): Promise<Float32Array> {
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

  async head(g: GridState, x: Float32Array, temb: Float32Array): Promise<Float32Array> {
    const [v] = await g.head.run({ x: { data: x, dims: [1, g.L, this.dim] }, temb: { data: temb, dims: [1, this.dim] } }, ["v"]);
    return v;
  }

  async release(): Promise<void> {
    const all = [this.timeS, this.textS, ...this.kvS, ...this.saS, ...this.caS, ...this.ffnS];
    for (const g of this.gridCache.values()) all.push(g.patch, g.head);
    for (const s of all) await s.release();
  }
}
