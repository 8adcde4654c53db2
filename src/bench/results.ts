/**
 * The bench's results: the schema of results.json (`BenchResults`, versioned by RESULTS_SCHEMA;
 * every raw number of every row) and the summary per operating point computed from the rows
 * (docs/design/evaluation.md sections 4-5).
 *
 *   summary   per operating point: compute speedup = sum of full MACs / sum of executed MACs over
 *             its rows; wall speedup = median wall of `none` / median wall of the point over the
 *             same prompt x seed rows; efficiency = wall / compute; means of PSNR (capped at
 *             100 dB, see metrics/quality.ts), SSIM and adherence rates; peak cache bytes (max).
 *
 * Null in results: quality of `none` rows (they are the reference); adherence where the prompt
 * names no dataset attributes; summary metrics a point has no rows for (toJson writes every
 * non-finite number as null).
 */
import type { AdherenceScore, AdherenceSummary } from "../metrics/adherence.ts";
import { computeSpeedup, efficiency, mean, type QualityReport } from "../metrics/quality.ts";
import type { TraceRow } from "../pipeline/hooks.ts";
import { median } from "../tensor/stats.ts";
import type { RedundancyResult } from "./redundancy.ts";
import type { BenchPrompt, PresetName, Protocol } from "./protocol.ts";
import { ORACLE_SETS, type OracleInfo, type OracleTag } from "./oracle.ts";

/** Version of results.json. */
export const RESULTS_SCHEMA = 1;

export interface RowAdherence {
  /** 1 where the detected attribute matches the prompt (pattern: textures models only) */
  score: AdherenceScore & { pattern?: 0 | 1 };
  /** 1 when every scored attribute matches */
  all: 0 | 1;
  /** mean of the scores (four, or five with the pattern) */
  mean: number;
  detected: { colour: string; shape: string; motion: string; background: string; pattern?: string; ok: boolean };
  /** textures models: the reference-free quality score of the output (metrics/texture-adherence.ts textureQuality) */
  quality?: number;
}

export interface BenchRow {
  key: string;
  protocolHash: string;
  rowSchema: number;
  /** operating point id (protocol.points[].id) */
  point: string;
  method: string;
  tag: string;
  default: boolean;
  options: Record<string, unknown>;
  promptIndex: number;
  prompt: string;
  heldout: boolean | null;
  seed: number;
  /** steps of the uncached run (compute is accounted against these) */
  steps: number;
  /** sampler steps actually run (fewer-steps runs fewer) */
  stepsSampled: number;
  /** wall time of the whole `generate` call, ms */
  wallMs: number;
  /** wall time of the denoising loop alone (RunStats.wallMs), ms */
  denoiseMs: number;
  macsFull: number;
  macsExecuted: number;
  computeSpeedup: number;
  computed: { branches: number; blocks: number; modules: number };
  total: { branches: number; blocks: number; modules: number };
  cachePeakBytes: number;
  counters: Record<string, number>;
  warnings: string[];
  /** vs the uncached output of the same prompt and seed; null for the reference (`none`) itself */
  quality: QualityReport | null;
  /** null when the prompt names no dataset attributes or the clip is not RGB */
  adherence: RowAdherence | null;
  session: string;
  finishedAt: string;
  /** per-step decision trace (journal only, first prompt and first seed; results.json moves it to `traces`) */
  trace?: TraceRow[];
}

/** Adherence rates of a set of rows; `pattern` and the reference-free `quality` on textures models. */
export type AdherenceAgg = AdherenceSummary & { pattern?: number; quality?: number };

export interface SummaryRow {
  point: string;
  method: string;
  tag: string;
  granularity: string;
  default: boolean;
  options: Record<string, unknown>;
  /** rows (prompt x seed) aggregated */
  n: number;
  computeSpeedup: number;
  computeSpeedupMean: number;
  computeSpeedupMin: number;
  computeSpeedupMax: number;
  wallMsMedian: number;
  referenceWallMsMedian: number;
  wallSpeedup: number;
  efficiency: number;
  /** means over rows, PSNRs capped at 100 dB; null for `none` */
  psnrFrame: number | null;
  psnrClip: number | null;
  psnrFrameMin: number | null;
  ssim: number | null;
  ssimRgb: number | null;
  ssimMin: number | null;
  /** fraction of rows bit-identical (as displayed) to the reference */
  identical: number | null;
  /** adherence of this point's outputs / of the references of the same rows */
  adherence: AdherenceAgg | null;
  adherenceRef: AdherenceAgg | null;
  /** the same PSNR (a) and adherence restricted to held-out prompts */
  heldout: { n: number; psnrFrame: number | null; adherence: number | null; adherenceRef: number | null };
  cachePeakBytes: number;
  cacheMB: number;
  /** oracle points (method `oracle`): the schedule's set, target and the planner's own numbers */
  oracle?: OracleTag;
}

export interface BenchResults {
  schema: number;
  created: string;
  tool: { name: string; version: string | null };
  machine: { cpus: number; availableParallelism: number; cpuModel: string; memoryGB: number; node: string; platform: string; arch: string; ortThreads: number; onnxruntime: string | null };
  model: { name: string; dir: string; parameters: number; config: Record<string, unknown>; latent: unknown; defaults: unknown; fingerprint: string };
  protocol: {
    preset: PresetName;
    hash: string;
    rowSchema: number;
    steps: number;
    guidance: number;
    shift: number;
    sampler: string;
    negativePrompt: string;
    shape: unknown;
    seeds: number[];
    promptSource: string;
    vocabPath: string;
    prompts: Array<BenchPrompt & { sheet: string | null }>;
    methods: string[];
    /** operating points left out because their strategy refused to build (see protocol.buildPoints) */
    skipped: Array<{ method: string; options: Record<string, unknown>; error: string }>;
    points: Array<{ id: string; method: string; tag: string; granularity: string; options: Record<string, unknown>; config: Record<string, unknown>; default: boolean; configHash: string; oracle?: OracleTag }>;
    metrics: Record<string, unknown>;
    /** the oracle file benched with --oracle (absent or null: none) */
    oracle?: OracleInfo | null;
  };
  session: { id: string; rowsTotal: number; rowsDone: number; rowsRun: number; rowsReused: number; wallS: number; warmupMs: number | null; complete: boolean; warnings: string[] };
  rows: BenchRow[];
  summary: SummaryRow[];
  /** per-step decision trace of every point on the first prompt and seed (for the timeline plot) */
  traces: Array<{ point: string; method: string; tag: string; promptIndex: number; seed: number; steps: number; trace: TraceRow[] }>;
  /** the uncached reference's redundancy signals on the first prompt and seed (redundancy.ts) */
  redundancy: (RedundancyResult & { promptIndex: number; prompt: string; seed: number }) | null;
}

function aggAdherence(list: Array<RowAdherence | null>): AdherenceAgg | null {
  const xs = list.filter((a): a is RowAdherence => a !== null);
  if (!xs.length) return null;
  const m = (f: (a: RowAdherence) => number) => xs.reduce((s, a) => s + f(a), 0) / xs.length;
  const out: AdherenceAgg = { n: xs.length, colour: m((a) => a.score.colour), shape: m((a) => a.score.shape), motion: m((a) => a.score.motion), background: m((a) => a.score.background), all: m((a) => a.all), mean: m((a) => a.mean) };
  if (xs.every((a) => a.score.pattern !== undefined)) out.pattern = m((a) => a.score.pattern!);
  if (xs.every((a) => a.quality !== undefined)) out.quality = m((a) => a.quality!);
  return out;
}

export function summarize(p: Protocol, rows: BenchRow[]): SummaryRow[] {
  const ref = new Map<string, BenchRow>();
  for (const r of rows) if (r.method === "none") ref.set(`${r.seed}|${r.prompt}`, r);
  const out: SummaryRow[] = [];
  for (const pt of p.points) {
    const rs = rows.filter((r) => r.point === pt.id);
    const refs = rs.map((r) => ref.get(`${r.seed}|${r.prompt}`)).filter((r): r is BenchRow => r !== undefined);
    const q = rs.map((r) => r.quality).filter((x): x is QualityReport => x !== null);
    const held = rs.filter((r) => r.heldout === true);
    const heldRefs = held.map((r) => ref.get(`${r.seed}|${r.prompt}`)).filter((r): r is BenchRow => r !== undefined);
    const cs = rs.map((r) => r.computeSpeedup);
    const wallMsMedian = median(rs.map((r) => r.wallMs));
    const referenceWallMsMedian = median(refs.map((r) => r.wallMs));
    const compute = computeSpeedup(rs.map((r) => r.macsFull), rs.map((r) => r.macsExecuted));
    const wall = wallMsMedian > 0 ? referenceWallMsMedian / wallMsMedian : NaN;
    const qa = (f: (x: QualityReport) => number) => (q.length ? mean(q.map(f)) : null);
    const heldQ = held.map((r) => r.quality).filter((x): x is QualityReport => x !== null);
    const peak = rs.reduce((m, r) => Math.max(m, r.cachePeakBytes), 0);
    out.push({
      point: pt.id, method: pt.method, tag: pt.tag, granularity: pt.granularity, default: pt.isDefault, options: pt.options,
      n: rs.length,
      computeSpeedup: compute,
      computeSpeedupMean: mean(cs),
      computeSpeedupMin: cs.length ? Math.min(...cs) : NaN,
      computeSpeedupMax: cs.length ? Math.max(...cs) : NaN,
      wallMsMedian, referenceWallMsMedian, wallSpeedup: wall, efficiency: efficiency(wall, compute),
      psnrFrame: qa((x) => x.psnrFrame),
      psnrClip: qa((x) => x.psnrClip),
      psnrFrameMin: q.length ? Math.min(...q.map((x) => x.psnrFrame)) : null,
      ssim: qa((x) => x.ssim),
      ssimRgb: qa((x) => x.ssimRgb),
      ssimMin: q.length ? Math.min(...q.map((x) => x.ssim)) : null,
      identical: q.length ? q.filter((x) => x.identical).length / q.length : null,
      adherence: aggAdherence(rs.map((r) => r.adherence)),
      adherenceRef: aggAdherence(refs.map((r) => r.adherence)),
      heldout: {
        n: held.length,
        psnrFrame: heldQ.length ? mean(heldQ.map((x) => x.psnrFrame)) : null,
        adherence: aggAdherence(held.map((r) => r.adherence))?.mean ?? null,
        adherenceRef: aggAdherence(heldRefs.map((r) => r.adherence))?.mean ?? null,
      },
      cachePeakBytes: peak,
      cacheMB: peak / 2 ** 20,
      ...(pt.oracle ? { oracle: pt.oracle } : {}),
    });
  }
  // JSON has no NaN: numbers a point has no rows for become null in the file (see toJson)
  return out;
}

/** Points in table order: methods in protocol order (`none` first), points by compute speedup;
 * oracle points last, by target and set (hybrid, step, cfg, block). */
export function tableOrder(p: Pick<Protocol, "methods">, summary: SummaryRow[]): SummaryRow[] {
  const mi = new Map(p.methods.map((m, i) => [m, m === "none" ? -1 : i]));
  const rank = (s: SummaryRow) => (s.oracle ? p.methods.length : mi.get(s.method) ?? p.methods.length);
  const setRank = (s: SummaryRow) => {
    const i = (ORACLE_SETS as readonly string[]).indexOf(s.oracle?.set ?? "");
    return i < 0 ? ORACLE_SETS.length : i;
  };
  return [...summary].sort((a, b) =>
    rank(a) - rank(b) ||
    (a.oracle && b.oracle ? a.oracle.target - b.oracle.target || setRank(a) - setRank(b) : 0) ||
    (a.computeSpeedup - b.computeSpeedup) || a.point.localeCompare(b.point));
}

/** JSON with non-finite numbers written as null (documented nulls, never NaN/Infinity strings). */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === "number" && !Number.isFinite(x) ? null : x), 1) + "\n";
}
