/**
 * The oracle bound against the methods, per target speed (results.md and the report's tables).
 *
 * For each target of the oracle file benched with --oracle (oracle.ts): the oracle hybrid, the
 * best oracle single granularity, planned MixCache and planned MixCache+ (`schedule: planned` at
 * that target), fewer steps at that speedup and the best peer point reaching it (the highest
 * PSNR (a) among the other cache methods' points with compute speedup >= 0.95 x target). Every cell
 * is computed from the rows of the prompts and seeds the oracle was planned on, so all columns
 * are means over the same clips even when the bench ran more prompts than the oracle.
 */
import { ORACLE_METHOD, type OracleTag } from "./oracle.ts";
import type { BenchResults, BenchRow } from "./results.ts";

/** A point reaches a target when its compute speedup is at least this fraction of it. */
export const REACH = 0.95;

export interface BoundCell {
  point: string;
  tag: string;
  method: string;
  computeSpeedup: number;
  /** means over the oracle's rows, as the bench measures them */
  psnrFrame: number;
  psnrClip: number;
  ssim: number;
  n: number;
  oracle?: OracleTag;
}

export interface BoundRow {
  target: number;
  hybrid: BoundCell | null;
  /** the best single-granularity oracle schedule at this target (null: none reaches it) */
  single: BoundCell | null;
  /** every oracle set at this target */
  sets: BoundCell[];
  planned: BoundCell | null;
  plannedPlus: BoundCell | null;
  fewerSteps: BoundCell | null;
  bestPeer: BoundCell | null;
  /** oracle hybrid minus planned MixCache (MixCache+), PSNR (a) dB */
  gapPlanned: number | null;
  gapPlannedPlus: number | null;
}

export interface BoundTable {
  rows: BoundRow[];
  /** the groups the cells are means over */
  prompts: number;
  seeds: number[];
  note: string;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Methods that are neither the reference, the naive baseline, MixCache nor the oracle. */
export const isPeer = (method: string): boolean => method !== "none" && method !== "fewer-steps" && method !== ORACLE_METHOD && !method.startsWith("mixcache");

export function boundTable(r: BenchResults): BoundTable | null {
  const o = r.protocol.oracle;
  if (!o) return null;
  const inOracle = (x: BenchRow) => o.prompts.includes(x.prompt) && o.seeds.includes(x.seed);
  const rows = (r.rows ?? []).filter((x) => inOracle(x) && x.quality !== null);
  const byPoint = new Map<string, BenchRow[]>();
  for (const x of rows) byPoint.set(x.point, [...(byPoint.get(x.point) ?? []), x]);
  const cells: BoundCell[] = [];
  for (const pt of r.protocol.points) {
    const rs = byPoint.get(pt.id);
    if (!rs?.length) continue;
    const full = rs.reduce((s, x) => s + x.macsFull, 0), exec = rs.reduce((s, x) => s + x.macsExecuted, 0);
    cells.push({
      point: pt.id, tag: pt.tag, method: pt.method, computeSpeedup: exec > 0 ? full / exec : NaN,
      psnrFrame: mean(rs.map((x) => x.quality!.psnrFrame)), psnrClip: mean(rs.map((x) => x.quality!.psnrClip)), ssim: mean(rs.map((x) => x.quality!.ssim)), n: rs.length,
      ...(pt.oracle ? { oracle: pt.oracle } : {}),
    });
  }
  const cfg = (c: BoundCell) => r.protocol.points.find((p) => p.id === c.point);
  const best = (cs: BoundCell[]) => cs.reduce<BoundCell | null>((a, b) => (!a || b.psnrFrame > a.psnrFrame ? b : a), null);
  const planned = (method: string, t: number) =>
    cells.find((c) => c.method === method && cfg(c)?.options.schedule === "planned" && cfg(c)?.options.target_speedup === t && cfg(c)?.options.only === undefined) ?? null;
  const targets = [...new Set(r.protocol.points.filter((p) => p.oracle).map((p) => p.oracle!.target))].sort((a, b) => a - b);
  const out: BoundRow[] = targets.map((t) => {
    const sets = cells.filter((c) => c.oracle?.target === t);
    const hybrid = sets.find((c) => c.oracle!.set === "hybrid") ?? null;
    const single = best(sets.filter((c) => c.oracle!.set !== "hybrid"));
    const fs = cells.filter((c) => c.method === "fewer-steps" && Number((cfg(c)?.config.speedup ?? NaN)) === t);
    const fewerSteps = fs[0] ?? cells.filter((c) => c.method === "fewer-steps" && c.computeSpeedup >= REACH * t).sort((a, b) => a.computeSpeedup - b.computeSpeedup)[0] ?? null;
    const bestPeer = best(cells.filter((c) => isPeer(c.method) && c.computeSpeedup >= REACH * t));
    const p = planned("mixcache", t), pp = planned("mixcache-plus", t);
    return {
      target: t, hybrid, single, sets, planned: p, plannedPlus: pp, fewerSteps, bestPeer,
      gapPlanned: hybrid && p ? hybrid.psnrFrame - p.psnrFrame : null,
      gapPlannedPlus: hybrid && pp ? hybrid.psnrFrame - pp.psnrFrame : null,
    };
  });
  const groups = new Set(rows.map((x) => `${x.seed}|${x.prompt}`));
  return {
    rows: out, prompts: o.prompts.length, seeds: o.seeds,
    note: `Oracle bound: ${o.note}. Every cell is a mean over the same ${groups.size} clip(s) (the oracle's prompts and seeds); a peer reaches a target at >= ${REACH} x its speed.`,
  };
}
