/**
 * The cache engine's interface. A strategy is a typed config plus `attach()`, which returns fresh
 * hooks for one generation (so per-branch state resets at every run) and a report (tag, peak cache
 * bytes, optional decision trace). When to skip (the decision) and how to reuse (the
 * approximation) live in separate small pieces inside each strategy file.
 */
import type { Branch, Hooks } from "../pipeline/hooks.ts";
import { relL1 } from "../tensor/ops.ts";

export type Granularity = "none" | "step" | "cfg" | "block" | "module" | "hybrid";

export interface TraceRow {
  step: number;
  timestep: number;
  action: string;
  [field: string]: unknown;
}

export interface CacheReport {
  name: string;
  tag: string;
  config: Record<string, unknown>;
  /** Peak bytes of tensors held by the cache during the run. */
  peakBytes: number;
  trace: TraceRow[];
  /** Strategy-specific counters (e.g. skipped steps per branch). */
  counters: Record<string, number>;
  warnings: string[];
}

export interface AttachedCache {
  hooks: Hooks;
  report(): CacheReport;
}

export interface CacheStrategy {
  readonly name: string;
  readonly granularity: Granularity;
  readonly config: Readonly<Record<string, unknown>>;
  readonly tag: string;
  /** Steps actually sampled when the strategy changes the schedule (fewer-steps); else undefined. */
  readonly stepsOverride?: (steps: number) => number;
  /**
   * Set when the strategy was made without a model folder (makeCache without profilesDir): the
   * same strategy and options built for a model's cache_profiles/. generate() calls it with the
   * model it runs on, so a cache reads that model's calibration instead of none (MixCache impact
   * factors 1) or another model's (TeaCache's Wan2.1-1.3B coefficients).
   */
  readonly forModel?: (env: StrategyEnv) => CacheStrategy;
  attach(): AttachedCache;
}

/** What a strategy may read from the model folder (calibration profiles). A loaded model is one. */
export interface StrategyEnv {
  profilesDir?: string;
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
