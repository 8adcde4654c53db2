/**
 * Exact compute accounting. Every executed stage call adds its analytic MAC count (see
 * the model family's macs()); `full` is what the uncached run executes. Module, block and branch calls are
 * counted as computed when their compute callback ran; reused = total - computed at each level.
 */

export interface StepStats {
  index: number;
  timestep: number;
  macs: number;
  modulesComputed: number;
  blocksComputed: number;
  branchesComputed: number;
  wallMs: number;
}

export interface RunStats {
  steps: number;
  branchesPerStep: number;
  numBlocks: number;
  macsFull: number;
  macsExecuted: number;
  /** macsFull / macsExecuted */
  computeSpeedup: number;
  /** per prompt: text projection and cross-attention K/V (identical with and without caching) */
  macsPrompt: number;
  computed: { branches: number; blocks: number; modules: number; modulesByKind: Record<string, number> };
  total: { branches: number; blocks: number; modules: number };
  reused: { branches: number; blocks: number; modules: number };
  perStep: StepStats[];
  wallMs: number;
}

export class StatsCollector {
  macs = 0;
  modules = 0;
  blocks = 0;
  branches = 0;
  byKind: Record<string, number> = {};
  /** moduleNames: every module name of the family (each starts at 0). */
  constructor(moduleNames: Iterable<string> = []) {
    for (const n of moduleNames) this.byKind[n] = 0;
  }
  perStep: StepStats[] = [];
  private cur: StepStats | null = null;

  beginStep(index: number, timestep: number): void {
    this.cur = { index, timestep, macs: 0, modulesComputed: 0, blocksComputed: 0, branchesComputed: 0, wallMs: performance.now() };
  }
  endStep(): void {
    if (!this.cur) return;
    this.cur.wallMs = performance.now() - this.cur.wallMs;
    this.perStep.push(this.cur);
    this.cur = null;
  }
  /** MACs executed so far in the current step. */
  get stepMacs(): number {
    return this.cur?.macs ?? 0;
  }
  addMacs(n: number): void {
    this.macs += n;
    if (this.cur) this.cur.macs += n;
  }
  module(name: string, macs: number): void {
    this.modules++;
    this.byKind[name] = (this.byKind[name] ?? 0) + 1;
    this.addMacs(macs);
    if (this.cur) this.cur.modulesComputed++;
  }
  block(): void {
    this.blocks++;
    if (this.cur) this.cur.blocksComputed++;
  }
  branch(): void {
    this.branches++;
    if (this.cur) this.cur.branchesComputed++;
  }
}
