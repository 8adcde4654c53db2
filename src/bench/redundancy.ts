/**
 * The redundancy signals behind the bench's "redundancy analysis" plot: how much the quantities a
 * cache reuses change from one denoising step to the next, at each granularity, on the uncached
 * run. A recording Hooks object that skips nothing: every hook calls its compute and returns
 * exactly what compute returned, so the recorded output is the uncached output bit for bit.
 *
 * Per step i (all null at step 0, which has no previous step; distances use the strategies'
 * definition relL1(a, prev) = mean|a - prev| / mean|prev|, tensor/ops.ts):
 *   step   rel-L1 change of the body residual r = h_L - h_0 (what TeaCache/MagCache/EasyCache
 *          reuse), per CFG branch;
 *   cfg    rel-L1 change of the CFG delta d = v_u - v_c (uncond minus cond velocity; what
 *          CFG caches such as FasterCache reuse); null without CFG;
 *   block  rel-L1 change of the middle block's residual (block floor(L / 2): h_out - h_in), per
 *          branch (what block caches such as DBCache / Delta-DiT reuse); `blocks` has the same
 *          signal for every block, for a heat map;
 *   output rel-L1 change of the branch velocity, per branch (context for the plot).
 * Also per step: `cfgRatio` = mean|v_u - v_c| / mean|v_c| (how large the guidance delta is).
 * A distance to an all-zero previous tensor is Infinity (null once written to JSON).
 */
import type { Branch, Hooks, RunInfo, CacheStrategy } from "../pipeline/hooks.ts";
import { CacheStore, hooksAsCache } from "../cache/strategy.ts";
import { meanAbs, sub } from "../tensor/ops.ts";

export type PerBranch = Record<Branch, number | null>;

export interface RedundancyRow {
  index: number;
  timestep: number;
  sigma: number;
  /** body-residual change (step granularity) */
  step: PerBranch;
  /** CFG-delta change (cfg granularity); null without CFG or at step 0 */
  cfg: number | null;
  /** middle-block residual change (block granularity) */
  block: PerBranch;
  /** residual change of every block, per branch (null entries at step 0) */
  blocks: Record<Branch, Array<number | null>>;
  /** branch velocity change */
  output: PerBranch;
  /** mean|v_u - v_c| / mean|v_c| at this step; null without CFG */
  cfgRatio: number | null;
}

export interface RedundancyResult {
  steps: number;
  numBlocks: number;
  middleBlock: number;
  cfg: boolean;
  rows: RedundancyRow[];
  /** peak bytes of the previous-step tensors held while recording */
  peakBytes: number;
}

const nullBranch = (): PerBranch => ({ cond: null, uncond: null });

export class RedundancyRecorder {
  readonly hooks: Hooks;
  private rows: RedundancyRow[] = [];
  private run: RunInfo | null = null;
  private store = new CacheStore();
  private cur: RedundancyRow | null = null;

  constructor() {
    const store = this.store;
    const dist = (key: string, v: Float32Array): number | null => store.change(key, v);
    this.hooks = {
      beginRun: (run) => {
        this.run = run;
        this.rows = [];
        store.clear();
      },
      beginStep: (step) => {
        const L = this.run?.numBlocks ?? 0;
        this.cur = {
          index: step.index, timestep: step.timestep, sigma: step.sigma,
          step: nullBranch(), cfg: null, block: nullBranch(),
          blocks: { cond: new Array(L).fill(null), uncond: new Array(L).fill(null) },
          output: nullBranch(), cfgRatio: null,
        };
      },
      branch: async (ctx, compute) => {
        const v = await compute();
        if (this.cur) this.cur.output[ctx.branch] = dist(`velocity.${ctx.branch}`, v);
        return v;
      },
      body: async (ctx, h0, runBlocks) => {
        const hL = await runBlocks(0, ctx.numBlocks, h0);
        if (this.cur) this.cur.step[ctx.branch] = dist(`residual.${ctx.branch}`, sub(hL, h0));
        return hL;
      },
      block: async (ctx, index, h, compute) => {
        const out = await compute(h);
        if (this.cur) {
          const d = dist(`block${index}.${ctx.branch}`, sub(out, h));
          this.cur.blocks[ctx.branch][index] = d;
          if (index === this.middleBlock(ctx.numBlocks)) this.cur.block[ctx.branch] = d;
        }
        return out;
      },
      endStep: (_step, out) => {
        if (!this.cur) return;
        if (out.uncond) {
          const delta = sub(out.uncond, out.cond);
          this.cur.cfg = dist("cfgDelta", delta);
          const den = meanAbs(out.cond);
          this.cur.cfgRatio = den > 0 ? meanAbs(delta) / den : null;
        }
        this.rows.push(this.cur);
        this.cur = null;
      },
      endRun: () => {
        store.clear();
      },
    };
  }

  middleBlock(numBlocks: number): number {
    return Math.floor(numBlocks / 2);
  }

  /** The signals of the last recorded run. */
  result(): RedundancyResult {
    const L = this.run?.numBlocks ?? 0;
    return { steps: this.rows.length, numBlocks: L, middleBlock: this.middleBlock(L), cfg: this.run?.cfg ?? false, rows: this.rows, peakBytes: this.store.peak };
  }

  /** The recorder as a cache strategy for `generate({ cache })` (it computes everything). */
  asCache(): CacheStrategy {
    return hooksAsCache(this.hooks, "redundancy", () => ({ peakBytes: this.store.peak, counters: { steps: this.rows.length } }));
  }
}
