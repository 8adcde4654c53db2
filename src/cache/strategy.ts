/**
 * What every strategy file builds on. A strategy is its knobs as data plus `build(config)`, which
 * returns a CacheStrategy (declared with the seams in pipeline/hooks.ts): `attach()` gives fresh
 * hooks for one generation (so per-branch state resets at every run) and a report (tag, peak cache
 * bytes, optional decision trace). When to skip (the decision) and how to reuse (the
 * approximation) live in separate small pieces inside each strategy file.
 */
import type { Branch, CacheStrategy, Granularity, Hooks, StrategyEnv } from "../pipeline/hooks.ts";
import { relL1 } from "../tensor/ops.ts";
import type { KnobConfig, KnobDef, KnobValue } from "./knobs.ts";
import { APPROX_MODES, type ApproxMode } from "../schedulers/types.ts";

/**
 * What UniPC does at a step a cache made approximate, unless a strategy declares otherwise:
 * measured with `npm run bench:solver` (docs/design/mixcache.md, "Solver-aware reuse"): on both embedded
 * models keeping the approximate velocity out of the corrector and the second-order term gave
 * the best PSNR for every strategy but TaylorSeer ("order1") and MixCache+ ("skip-corrector").
 */
export const DEFAULT_SOLVER: ApproxMode = "skip-corrector+order1";

/** A cache strategy declared as data (registry.ts lists them): its knobs, exact options and builder. */
export interface StrategyDef {
  name: string;
  granularity: Granularity;
  summary: string;
  /** Paper / code the method and its defaults come from. */
  source: string;
  knobs: readonly KnobDef[];
  /** Options under which the output must equal the uncached output bit for bit (contract suite). */
  exact: Record<string, KnobValue>;
  /** The default of the `solver` knob every caching strategy gets (false: the strategy reuses
   * nothing inside a step and has no such knob: none, fewer-steps). */
  solver?: ApproxMode | false;
  build(config: Record<string, KnobValue>, env?: StrategyEnv): CacheStrategy;
}

/**
 * Declare a strategy: its knobs stay data, and `build` (and `exact`) see the config typed from
 * them (KnobConfig), so a strategy reads `config.threshold` as a number without casts.
 */
export function defineStrategy<const D extends readonly KnobDef[]>(
  def: Omit<StrategyDef, "knobs" | "exact" | "build"> & {
    knobs: D;
    exact: Partial<KnobConfig<D>>;
    build(config: KnobConfig<D>, env?: StrategyEnv): CacheStrategy;
  },
): StrategyDef {
  const solverDefault = def.solver === false ? null : (def.solver ?? DEFAULT_SOLVER);
  const knobs: readonly KnobDef[] = solverDefault === null ? def.knobs : [...def.knobs, {
    name: "solver", type: "enum", values: APPROX_MODES, default: solverDefault,
    doc: "What UniPC does at a step this cache made approximate: keep (use it like a computed step), skip-corrector (do not correct x_i with it), order1 (first-order predictor from it), or both.",
    source: "npm run bench:solver (docs/design/mixcache.md)",
  }];
  // makeCache hands build() only what parseKnobs made of these same knobs
  const build = (config: Record<string, KnobValue>, env?: StrategyEnv): CacheStrategy => {
    const built = def.build(config as KnobConfig<D>, env);
    if (solverDefault === null) return built;
    const mode = config.solver as ApproxMode;
    // the tag names the mode only when it is not the strategy's default (tags of default runs unchanged)
    return Object.assign(built, { approx: mode, tag: mode === solverDefault ? built.tag : `${built.tag}-solver.${mode}` });
  };
  return { ...def, knobs, exact: def.exact as Record<string, KnobValue>, build };
}

/**
 * Bookkeeping for tensors a cache holds: tracks current and peak bytes exactly. Strategies keep
 * every cached array in one of these, keyed by name (per branch where needed).
 */
export class CacheStore {
  private map = new Map<string, Float32Array>();
  private bytes = 0;
  peak = 0;

  get(key: string): Float32Array | undefined {
    return this.map.get(key);
  }
  has(key: string): boolean {
    return this.map.has(key);
  }
  set(key: string, v: Float32Array): void {
    const old = this.map.get(key);
    if (old) this.bytes -= old.byteLength;
    this.map.set(key, v);
    this.bytes += v.byteLength;
    if (this.bytes > this.peak) this.peak = this.bytes;
  }
  delete(key: string): void {
    const old = this.map.get(key);
    if (old) {
      this.bytes -= old.byteLength;
      this.map.delete(key);
    }
  }
  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
  get currentBytes(): number {
    return this.bytes;
  }
  /** Store `v` under `key` and return rel-L1(v, previous value), or null when there was none. */
  change(key: string, v: Float32Array): number | null {
    const prev = this.map.get(key);
    const d = prev && prev.length === v.length ? relL1(v, prev) : null;
    this.set(key, v);
    return d;
  }
}

/** Wrap recording hooks (which compute everything) as a strategy for `generate({ cache })`. */
export function hooksAsCache(hooks: Hooks, tag: string, extra: () => { peakBytes?: number; counters?: Record<string, number> } = () => ({})): CacheStrategy {
  return {
    name: tag, granularity: "none", config: {}, tag,
    attach: () => ({
      hooks,
      report: () => ({ name: tag, tag, config: {}, peakBytes: extra().peakBytes ?? 0, trace: [], counters: extra().counters ?? {}, warnings: [] }),
    }),
  };
}

/** Per-branch state, created fresh by `attach()`. */
export function perBranch<T>(make: () => T): Record<Branch, T> {
  return { cond: make(), uncond: make() };
}
