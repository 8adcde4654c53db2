/**
 * The bench runner: every method at every operating point on one model, in one process
 * (docs/design/evaluation.md sections 4-5).
 *
 *   warm-up   one uncached generation of the first prompt and seed under the redundancy recorder
 *             (it also yields the redundancy signals, redundancy.ts); not timed;
 *   groups    for each seed, for each prompt: the uncached reference (`none`) first, then every
 *             other operating point, in an order rotated by one per group so that wall-time drift
 *             (thermal, the machine's other load) hits every method alike; each generation is timed
 *             (wall clock around `generate`, prompt encoding included);
 *   metrics   per row: compute speedup and module/block/branch counts (RunStats), cache peak bytes,
 *             PSNR (both definitions), SSIM (luma and RGB) against the reference of the same prompt
 *             and seed, adherence of the output (the reference's is in its own `none` row);
 *   summary   per operating point: compute speedup = sum of full MACs / sum of executed MACs over
 *             its rows; wall speedup = median wall of `none` / median wall of the point over the
 *             same prompt x seed rows; efficiency = wall / compute; means of PSNR (capped at
 *             100 dB, see metrics/quality.ts), SSIM and adherence rates; peak cache bytes (max).
 *
 * Resumable: each finished row is appended to <out>/journal.jsonl (one JSON line, fsync'd) and a
 * rerun skips rows whose key (protocol hash + point tag/config + seed + prompt) is already there.
 * The reference clip of each prompt and seed is kept in <out>/clips/ (raw float32) so that a
 * resumed group can still be compared with its reference; the default point of every method is
 * kept there as 8-bit RGB for the contact sheets. Rows resumed from an earlier session keep their
 * wall times, so a bench interrupted across sessions mixes timings of two processes; run with
 * --fresh (or into a new folder) for a single-session wall-time comparison.
 *
 * One run at a time per folder: <out>/bench.lock (lock.ts) is held for the run; a second run into
 * the same folder fails fast, a lock left by a dead process is taken over with a warning.
 *
 * Outputs (all written atomically): results.json (schema below, `BenchResults`), results.md,
 * results.csv, frames/<prompt index>.png (reference + each method's default point, first seed),
 * redundancy.json (the warm-up's signals, reused by reruns), journal.jsonl, clips/.
 * Null in results: quality of `none` rows (they are the reference); adherence where the prompt
 * names no dataset attributes; summary metrics a point has no rows for.
 */
import type { AdherenceSummary } from "../metrics/adherence.ts";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, truncateSync, writeSync } from "node:fs";
import { availableParallelism, cpus, totalmem } from "node:os";
import { createRequire } from "node:module";
import { join } from "node:path";
import { defaultThreads } from "../backend/ort.ts";
import { MixCacheError } from "../errors.ts";
import type { TraceRow } from "../cache/strategy.ts";
import type { LoadedModel } from "../models/load.ts";
import { generate } from "../pipeline/pipeline.ts";
import { writeContactSheet, toByte, type Video } from "../media/index.ts";
import { detectAdherence, scoreAdherence, type AdherenceScore } from "../metrics/adherence.ts";
import { detectTextureAdherence, scoreTextureAdherence, textureQuality } from "../metrics/texture-adherence.ts";
import { PSNR_CAP_DB, SSIM_DEFAULTS, LUMA_BT601, compareClips, computeSpeedup, efficiency, mean, median, type QualityReport } from "../metrics/quality.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { lockDir, tookOverNote } from "./lock.ts";
import { RedundancyRecorder, type RedundancyResult } from "./redundancy.ts";
import { ROW_SCHEMA, buildProtocol, rowKey, sha, type BenchPrompt, type OperatingPoint, type PresetName, type Protocol, type ProtocolOptions } from "./protocol.ts";

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
    points: Array<{ id: string; method: string; tag: string; granularity: string; options: Record<string, unknown>; config: Record<string, unknown>; default: boolean; configHash: string }>;
    metrics: Record<string, unknown>;
  };
  session: { id: string; rowsTotal: number; rowsDone: number; rowsRun: number; rowsReused: number; wallS: number; warmupMs: number | null; complete: boolean; warnings: string[] };
  rows: BenchRow[];
  summary: SummaryRow[];
  /** per-step decision trace of every point on the first prompt and seed (for the timeline plot) */
  traces: Array<{ point: string; method: string; tag: string; promptIndex: number; seed: number; steps: number; trace: TraceRow[] }>;
  /** the uncached reference's redundancy signals on the first prompt and seed (redundancy.ts) */
  redundancy: (RedundancyResult & { promptIndex: number; prompt: string; seed: number }) | null;
}

export interface BenchOptions extends ProtocolOptions {
  model: LoadedModel;
  outDir: string;
  /** Start over: drop the journal, stored clips and redundancy signals of outDir. */
  fresh?: boolean;
  /** ORT threads the model was loaded with (reported; default: the backend's default). */
  threads?: number;
  /** Progress over the rows to run (done, total, what is running). */
  onProgress?: (done: number, total: number, label: string) => void;
}

export interface BenchOutcome {
  results: BenchResults;
  files: { json: string; md: string; csv: string; journal: string; redundancy: string; sheets: string[] };
  rowsRun: number;
  rowsReused: number;
}

// ---------------------------------------------------------------------------------------------
// Journal

export function readJournal(path: string): BenchRow[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, "utf8");
  const end = text.lastIndexOf("\n") + 1;
  // a torn last line (crash mid-append) is dropped, so the next append starts on a fresh line
  if (end < text.length) truncateSync(path, Buffer.byteLength(text.slice(0, end)));
  const rows: BenchRow[] = [];
  for (const line of text.slice(0, end).split("\n")) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as BenchRow;
      if (r && typeof r.key === "string") rows.push(r);
    } catch {
      // a corrupt line is skipped (its row reruns)
    }
  }
  return rows;
}

export function appendJournal(path: string, row: BenchRow): void {
  const fd = openSync(path, "a");
  try {
    writeSync(fd, JSON.stringify(row) + "\n");
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// Clips on disk

function clipName(p: Protocol, prompt: string, seed: number, point: OperatingPoint | "ref", ext: string): string {
  const who = point === "ref" ? "ref" : `${point.tag.replace(/[^A-Za-z0-9._-]+/g, "_")}-${point.configHash}`;
  return `${p.hash}-s${seed}-p${sha(prompt, 10)}-${who}.${ext}`;
}

function saveF32(path: string, data: Float32Array): void {
  writeFileAtomic(path, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

function loadF32(path: string, n: number): Float32Array | null {
  if (!existsSync(path)) return null;
  const b = readFileSync(path);
  if (b.byteLength !== 4 * n) return null;
  const out = new Float32Array(n);
  new Uint8Array(out.buffer).set(b);
  return out;
}

/** 8-bit copy of a clip as displayed (toByte), and back to [-1, 1] floats that display identically. */
function toBytes(data: Float32Array): Uint8Array {
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = toByte(data[i]);
  return out;
}
function fromBytes(b: Uint8Array): Float32Array {
  const out = new Float32Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = (b[i] / 255) * 2 - 1;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Summary

function aggAdherence(list: Array<RowAdherence | null>): AdherenceAgg | null {
  const xs = list.filter((a): a is RowAdherence => a !== null);
  if (!xs.length) return null;
  const m = (f: (a: RowAdherence) => number) => xs.reduce((s, a) => s + f(a), 0) / xs.length;
  const out: AdherenceAgg = { n: xs.length, colour: m((a) => a.score.colour), shape: m((a) => a.score.shape), motion: m((a) => a.score.motion), background: m((a) => a.score.background), all: m((a) => a.all), mean: m((a) => a.mean) };
  if (xs.every((a) => a.score.pattern !== undefined)) out.pattern = m((a) => a.score.pattern!);
  if (xs.every((a) => a.quality !== undefined)) out.quality = m((a) => a.quality!);
  return out;
}

const nullable = (x: number) => (Number.isFinite(x) ? x : null);

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
    });
  }
  // JSON has no NaN: numbers a point has no rows for become null in the file (see toJson)
  return out;
}

/** Points in table order: methods in protocol order (`none` first), points by compute speedup. */
export function tableOrder(p: Protocol, summary: SummaryRow[]): SummaryRow[] {
  const mi = new Map(p.methods.map((m, i) => [m, m === "none" ? -1 : i]));
  return [...summary].sort((a, b) => (mi.get(a.method)! - mi.get(b.method)!) || (a.computeSpeedup - b.computeSpeedup) || a.point.localeCompare(b.point));
}

// ---------------------------------------------------------------------------------------------
// Reports

const f = (x: number | null | undefined, d: number) => (x === null || x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(d));

export function renderMarkdown(r: BenchResults): string {
  const p = r.protocol;
  const held = p.prompts.filter((x) => x.heldout === true).length;
  const lines: string[] = [];
  lines.push(`# MixCache bench: ${p.preset}`, "");
  lines.push(`- model: ${r.model.name} (${(r.model.parameters / 1e6).toFixed(2)}M parameters, fingerprint ${r.model.fingerprint})`);
  lines.push(`- sampling: ${p.steps} ${p.sampler} steps, guidance ${p.guidance}, shift ${p.shift}; ${p.prompts.length} prompts (${held} held-out combinations) x ${p.seeds.length} seed(s) [${p.seeds.join(", ")}]; protocol ${p.hash}`);
  lines.push(`- machine: ${r.machine.cpus} x ${r.machine.cpuModel}, node ${r.machine.node}, onnxruntime ${r.machine.onnxruntime ?? "?"} with ${r.machine.ortThreads} threads`);
  lines.push(`- rows: ${r.session.rowsDone}/${r.session.rowsTotal}${r.session.complete ? "" : " (INCOMPLETE)"}, ${r.session.rowsRun} run in this session, ${r.session.rowsReused} resumed; created ${r.created}`);
  lines.push("");
  lines.push(
    "compute = full MACs / executed MACs; wall = median wall time of `none` / of the point (same process, interleaved, after a warm-up); " +
      "eff. = wall / compute; PSNR (a) = mean over frames of per-frame PSNR, (b) = one MSE over the clip, [0, 1] pixels, vs the uncached output, capped at 100 dB; " +
      "SSIM = Gaussian window 11 (sigma 1.5; min(11, H, W) for smaller frames), valid region, BT.601 luma, mean over frames; adh. = mean of colour/shape/motion/background detection rates of the output (ref = of the uncached output); " +
      "cache = peak bytes held by the cache. `*` = the method's default point.",
  );
  lines.push("");
  // textures models: the reference-free quality score of the outputs, next to the reference's
  const withQ = r.summary.some((s) => s.adherence?.quality !== undefined);
  if (withQ) lines.push("qual. = textureQuality: a reference-free 0..1 match of the output to the dataset's own statistics for its caption (texture class, texture detail and motion, palette, shape area and edge sharpness); adh. includes the pattern.", "");
  lines.push(`| method | point | compute | wall | eff. | PSNR (a) dB | PSNR (b) dB | SSIM | adh. ref | adh. |${withQ ? " qual. ref | qual. |" : ""} cache MB | n |`);
  lines.push(`|---|---|--:|--:|--:|--:|--:|--:|--:|--:|${withQ ? "--:|--:|" : ""}--:|--:|`);
  let last = "";
  for (const s of r.summary) {
    const ref = s.method === "none";
    lines.push(
      `| ${s.method === last ? "" : s.method} | ${s.tag}${s.default && !ref ? " *" : ""} | ${f(s.computeSpeedup, 2)}x | ${f(s.wallSpeedup, 2)}x | ${f(s.efficiency, 2)} | ` +
        `${ref ? "ref" : f(s.psnrFrame, 2)} | ${ref ? "ref" : f(s.psnrClip, 2)} | ${ref ? "ref" : f(s.ssim, 4)} | ${f(s.adherenceRef?.mean, 2)} | ${f(s.adherence?.mean, 2)} | ` +
        `${withQ ? `${f(s.adherenceRef?.quality, 3)} | ${f(s.adherence?.quality, 3)} | ` : ""}${f(s.cacheMB, 2)} | ${s.n} |`,
    );
    last = s.method;
  }
  lines.push("");
  const cached = r.summary.filter((s) => s.method !== "none" && s.psnrFrame !== null && s.n > 0);
  if (cached.length) {
    lines.push("## Highest compute speedup at a quality floor", "");
    lines.push("| PSNR (a) floor | point | compute | wall | eff. | PSNR (a) dB | SSIM |", "|--:|---|--:|--:|--:|--:|--:|");
    for (const floor of [25, 30, 35, 40]) {
      const ok = cached.filter((s) => s.psnrFrame! >= floor).sort((a, b) => b.computeSpeedup - a.computeSpeedup)[0];
      lines.push(ok ? `| ${floor} | ${ok.tag} | ${f(ok.computeSpeedup, 2)}x | ${f(ok.wallSpeedup, 2)}x | ${f(ok.efficiency, 2)} | ${f(ok.psnrFrame, 2)} | ${f(ok.ssim, 4)} |` : `| ${floor} | (none) | | | | | |`);
    }
    lines.push("");
  }
  if (r.session.warnings.length) {
    lines.push("## Warnings", "");
    for (const w of r.session.warnings) lines.push(`- ${w}`);
    lines.push("");
  }
  return lines.join("\n");
}

export const CSV_COLUMNS = [
  "method", "point", "tag", "granularity", "default", "options", "n",
  "compute_speedup", "compute_speedup_mean", "wall_speedup", "efficiency", "wall_ms_median", "reference_wall_ms_median",
  "psnr_frame_db", "psnr_clip_db", "psnr_frame_min_db", "ssim_luma", "ssim_rgb", "ssim_min", "identical_fraction",
  "adherence_ref", "adherence", "adherence_colour", "adherence_shape", "adherence_motion", "adherence_background", "adherence_all",
  "heldout_n", "heldout_psnr_frame_db", "heldout_adherence", "cache_peak_bytes",
  "adherence_pattern", "quality_ref", "quality",
] as const;

function csvCell(v: unknown): string {
  if (v === null || v === undefined || (typeof v === "number" && !Number.isFinite(v))) return "";
  const s = typeof v === "object" ? JSON.stringify(v) : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function renderCsv(r: BenchResults): string {
  const rows = r.summary.map((s) => [
    s.method, s.point, s.tag, s.granularity, s.default, s.options, s.n,
    s.computeSpeedup, s.computeSpeedupMean, s.wallSpeedup, s.efficiency, s.wallMsMedian, s.referenceWallMsMedian,
    s.psnrFrame, s.psnrClip, s.psnrFrameMin, s.ssim, s.ssimRgb, s.ssimMin, s.identical,
    s.adherenceRef?.mean, s.adherence?.mean, s.adherence?.colour, s.adherence?.shape, s.adherence?.motion, s.adherence?.background, s.adherence?.all,
    s.heldout.n, s.heldout.psnrFrame, s.heldout.adherence, s.cachePeakBytes,
    s.adherence?.pattern, s.adherenceRef?.quality, s.adherence?.quality,
  ].map(csvCell).join(","));
  return [CSV_COLUMNS.join(","), ...rows].join("\n") + "\n";
}

/** JSON with non-finite numbers written as null (documented nulls, never NaN/Infinity strings). */
function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === "number" && !Number.isFinite(x) ? null : x), 1) + "\n";
}

// ---------------------------------------------------------------------------------------------
// The run

function machineInfo(threads: number | undefined): BenchResults["machine"] {
  const c = cpus();
  let ortVersion: string | null = null;
  try {
    const req = createRequire(import.meta.url);
    ortVersion = (JSON.parse(readFileSync(req.resolve("onnxruntime-node/package.json"), "utf8")) as { version: string }).version;
  } catch {
    ortVersion = null;
  }
  return {
    cpus: c.length, availableParallelism: availableParallelism(), cpuModel: c[0]?.model?.trim() ?? "unknown", memoryGB: Number((totalmem() / 2 ** 30).toFixed(1)),
    node: process.version, platform: process.platform, arch: process.arch, ortThreads: threads ?? defaultThreads(), onnxruntime: ortVersion,
  };
}

function toolVersion(): string | null {
  try {
    return (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return null;
  }
}

function adherenceOf(p: Protocol, prompt: BenchPrompt, v: Video | { data: Float32Array; channels: number; frames: number; height: number; width: number }): RowAdherence | null {
  if (!prompt.attrs || v.channels !== 3 || v.frames < 2) return null;
  const clip = { data: v.data, dims: [3, v.frames, v.height, v.width] };
  if (p.vocab.dataset === "textures" && prompt.attrs.pattern !== undefined && prompt.attrs.size !== null) {
    const attrs = { ...prompt.attrs, size: prompt.attrs.size, pattern: prompt.attrs.pattern };
    const det = detectTextureAdherence(clip, p.vocab);
    const sc = scoreTextureAdherence(det, attrs);
    const score = { colour: sc.colour, shape: sc.shape, motion: sc.motion, background: sc.background, pattern: sc.pattern };
    return {
      score,
      all: (score.colour & score.shape & score.motion & score.background & score.pattern) as 0 | 1,
      mean: (score.colour + score.shape + score.motion + score.background + score.pattern) / 5,
      detected: { colour: det.colour, shape: det.shape, motion: det.motion, background: det.background, pattern: det.pattern, ok: det.ok },
      quality: textureQuality(clip, p.vocab, attrs),
    };
  }
  const det = detectAdherence(clip, p.vocab);
  const score = scoreAdherence(det, prompt.attrs);
  return {
    score,
    all: (score.colour & score.shape & score.motion & score.background) as 0 | 1,
    mean: (score.colour + score.shape + score.motion + score.background) / 4,
    detected: { colour: det.colour, shape: det.shape, motion: det.motion, background: det.background, ok: det.ok },
  };
}

/**
 * Run (or resume) the bench into o.outDir. The folder is locked for the run (lock.ts): a second
 * run into the same folder fails fast naming the holder, instead of duplicating every row.
 */
export async function runBench(o: BenchOptions): Promise<BenchOutcome> {
  const t0 = performance.now();
  const p = buildProtocol(o.model, o);
  const lock = lockDir(o.outDir, "mixcache bench");
  try {
    const note = tookOverNote(lock);
    return await runLocked(o, p, t0, note ? [note] : []);
  } finally {
    lock.release();
  }
}

async function runLocked(o: BenchOptions, p: Protocol, t0: number, notes: string[]): Promise<BenchOutcome> {
  const model = o.model;
  const out = o.outDir;
  const journal = join(out, "journal.jsonl");
  const clipsDir = join(out, "clips");
  const framesDir = join(out, "frames");
  const redundancyPath = join(out, "redundancy.json");
  if (o.fresh) {
    rmSync(journal, { force: true });
    rmSync(clipsDir, { recursive: true, force: true });
    rmSync(redundancyPath, { force: true });
  }
  try {
    mkdirSync(clipsDir, { recursive: true });
    mkdirSync(framesDir, { recursive: true });
  } catch (e) {
    throw new MixCacheError("IO", `cannot create the bench output folder ${out}: ${(e as Error).message}`, "choose a writable --out folder");
  }
  const session = `${new Date().toISOString()}-${process.pid}`;
  const done = new Map<string, BenchRow>();
  for (const r of readJournal(journal)) if (r.protocolHash === p.hash) done.set(r.key, r);

  const shape = p.shape;
  const n = shape.channels * shape.frames * shape.height * shape.width;
  const rgb = shape.channels === 3;
  const firstSeed = p.seeds[0];
  const refPoint = p.points.find((x) => x.method === "none")!;
  const others = p.points.filter((x) => x.method !== "none");
  const sheetPoints = others.filter((x) => x.isDefault);

  // plan
  interface Group { prompt: BenchPrompt; seed: number; todo: OperatingPoint[] }
  const groups: Group[] = [];
  let rowsTotal = 0;
  for (const seed of p.seeds)
    for (const prompt of p.prompts) {
      const todo = p.points.filter((pt) => !done.has(rowKey(p.hash, pt, seed, prompt.text)));
      rowsTotal += p.points.length;
      groups.push({ prompt, seed, todo });
    }
  const rowsTodo = groups.reduce((s, g) => s + g.todo.length, 0);
  const rowsReused = rowsTotal - rowsTodo;
  const warnings = new Set<string>(notes);
  const gen = (prompt: string, seed: number, pt: OperatingPoint | null, cache = pt?.cache, onStep?: (d: number, t: number) => void) =>
    generate({ model, prompt, seed, steps: p.steps, guidance: p.guidance, shift: p.shift, sampler: p.sampler, negativePrompt: p.negativePrompt, shape: p.shape, cache, onStep });

  // warm-up (and the redundancy signals)
  let redundancy: BenchResults["redundancy"] = null;
  let warmupMs: number | null = null;
  const first = p.prompts[0];
  if (existsSync(redundancyPath)) {
    try {
      const r = JSON.parse(readFileSync(redundancyPath, "utf8")) as { protocolHash: string; result: NonNullable<BenchResults["redundancy"]> };
      if (r.protocolHash === p.hash && r.result.prompt === first.text && r.result.seed === firstSeed) redundancy = r.result;
    } catch {
      redundancy = null;
    }
  }
  if (rowsTodo > 0 || !redundancy) {
    o.onProgress?.(0, rowsTodo, "warm-up");
    const rec = new RedundancyRecorder();
    const tw = performance.now();
    await gen(first.text, firstSeed, null, rec.asCache());
    warmupMs = performance.now() - tw;
    redundancy = { promptIndex: first.index, prompt: first.text, seed: firstSeed, ...rec.result() };
    writeFileAtomic(redundancyPath, toJson({ protocolHash: p.hash, result: redundancy }));
  }

  const sheets: string[] = [];
  const writeSheet = (prompt: BenchPrompt): string | null => {
    if (!rgb) return null;
    const clips: Video[] = [];
    const labels: string[] = [];
    const ref = loadF32(join(clipsDir, clipName(p, prompt.text, firstSeed, "ref", "f32")), n);
    if (!ref) return null;
    clips.push({ data: ref, channels: 3, frames: shape.frames, height: shape.height, width: shape.width });
    labels.push("reference (none)");
    for (const pt of sheetPoints) {
      const path = join(clipsDir, clipName(p, prompt.text, firstSeed, pt, "u8"));
      if (!existsSync(path)) continue;
      const b = new Uint8Array(readFileSync(path));
      if (b.length !== n) continue;
      clips.push({ data: fromBytes(b), channels: 3, frames: shape.frames, height: shape.height, width: shape.width });
      labels.push(pt.tag);
    }
    const path = join(framesDir, `${prompt.index}.png`);
    writeContactSheet(path, clips, { labels, scale: 3 });
    return path;
  };

  let rowsRun = 0;
  const snapshot = (complete: boolean) => assemble(o, p, done, groups, { session, rowsTotal, rowsRun, rowsReused, t0, warmupMs, complete, warnings: [...warnings], redundancy });

  let gi = 0;
  for (const g of groups) {
    const prompt = g.prompt;
    const seed = g.seed;
    const refPath = join(clipsDir, clipName(p, prompt.text, seed, "ref", "f32"));
    if (g.todo.length > 0) {
      // the reference: run (and journal) it if its row is missing; else load its stored clip
      let ref: Float32Array | null = null;
      const refDone = !g.todo.includes(refPoint);
      if (refDone) ref = loadF32(refPath, n);
      if (!ref) {
        const label = `${refPoint.tag} p${prompt.index} s${seed}`;
        o.onProgress?.(rowsRun, rowsTodo, label);
        const tr = performance.now();
        const r = await gen(prompt.text, seed, refPoint);
        const wall = performance.now() - tr;
        ref = r.video.data;
        saveF32(refPath, ref);
        if (!refDone) {
          const row = makeRow(p, refPoint, prompt, seed, r, wall, null, adherenceOf(p, prompt, r.video), session, seed === firstSeed && prompt.index === first.index);
          appendJournal(journal, row);
          done.set(row.key, row);
          rowsRun++;
          o.onProgress?.(rowsRun, rowsTodo, label);
        }
      }
      const refClip = { data: ref, ...shape };
      // every other point, in an order rotated per group
      const rot = others.length ? gi % others.length : 0;
      const order = [...others.slice(rot), ...others.slice(0, rot)];
      for (const pt of order) {
        if (!g.todo.includes(pt)) continue;
        const label = `${pt.tag} p${prompt.index} s${seed}`;
        o.onProgress?.(rowsRun, rowsTodo, label);
        const tr = performance.now();
        const r = await gen(prompt.text, seed, pt);
        const wall = performance.now() - tr;
        const quality = compareClips(refClip, { data: r.video.data, ...shape });
        for (const w of r.cache?.warnings ?? []) warnings.add(`${pt.method}: ${w}`);
        if (seed === firstSeed && pt.isDefault && rgb) writeFileAtomic(join(clipsDir, clipName(p, prompt.text, seed, pt, "u8")), toBytes(r.video.data));
        const row = makeRow(p, pt, prompt, seed, r, wall, quality, adherenceOf(p, prompt, r.video), session, seed === firstSeed && prompt.index === first.index);
        appendJournal(journal, row);
        done.set(row.key, row);
        rowsRun++;
        o.onProgress?.(rowsRun, rowsTodo, label);
      }
      gi++;
      if (seed === firstSeed) {
        const s = writeSheet(prompt);
        if (s) sheets.push(s);
      }
      writeResults(out, snapshot(false));
    } else if (seed === firstSeed && !existsSync(join(framesDir, `${prompt.index}.png`))) {
      const s = writeSheet(prompt);
      if (s) sheets.push(s);
    }
  }
  for (const prompt of p.prompts) {
    const s = join(framesDir, `${prompt.index}.png`);
    if (existsSync(s) && !sheets.includes(s)) sheets.push(s);
  }
  sheets.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const results = snapshot(true);
  const files = writeResults(out, results);
  return { results, files: { ...files, journal, redundancy: redundancyPath, sheets }, rowsRun, rowsReused };
}

function makeRow(
  p: Protocol, pt: OperatingPoint, prompt: BenchPrompt, seed: number, r: Awaited<ReturnType<typeof generate>>, wallMs: number,
  quality: QualityReport | null, adherence: RowAdherence | null, session: string, keepTrace: boolean,
): BenchRow {
  const s = r.stats;
  const row: BenchRow = {
    key: rowKey(p.hash, pt, seed, prompt.text), protocolHash: p.hash, rowSchema: ROW_SCHEMA,
    point: pt.id, method: pt.method, tag: pt.tag, default: pt.isDefault, options: pt.options,
    promptIndex: prompt.index, prompt: prompt.text, heldout: prompt.heldout, seed,
    steps: s.steps, stepsSampled: s.perStep.length, wallMs, denoiseMs: s.wallMs,
    macsFull: s.macsFull, macsExecuted: s.macsExecuted, computeSpeedup: s.computeSpeedup,
    computed: { branches: s.computed.branches, blocks: s.computed.blocks, modules: s.computed.modules },
    total: { ...s.total },
    cachePeakBytes: r.cache?.peakBytes ?? 0, counters: { ...(r.cache?.counters ?? {}) }, warnings: [...(r.cache?.warnings ?? [])],
    quality, adherence, session, finishedAt: new Date().toISOString(),
  };
  if (keepTrace) row.trace = r.cache?.trace ?? [];
  return row;
}

function assemble(
  o: BenchOptions, p: Protocol, done: Map<string, BenchRow>, groups: Array<{ prompt: BenchPrompt; seed: number }>,
  s: { session: string; rowsTotal: number; rowsRun: number; rowsReused: number; t0: number; warmupMs: number | null; complete: boolean; warnings: string[]; redundancy: BenchResults["redundancy"] },
): BenchResults {
  const m = o.model;
  // rows in plan order (seed, prompt, point), only those of this protocol's plan
  const rows: BenchRow[] = [];
  for (const g of groups)
    for (const pt of p.points) {
      const r = done.get(rowKey(p.hash, pt, g.seed, g.prompt.text));
      if (r) rows.push(r);
    }
  const traces: BenchResults["traces"] = [];
  const clean = rows.map((r) => {
    const { trace, ...rest } = r;
    if (trace && r.promptIndex === p.prompts[0].index && r.seed === p.seeds[0] && r.prompt === p.prompts[0].text)
      traces.push({ point: r.point, method: r.method, tag: r.tag, promptIndex: r.promptIndex, seed: r.seed, steps: r.stepsSampled, trace });
    return rest as BenchRow;
  });
  const warnings = new Set(s.warnings);
  for (const k of p.skipped) warnings.add(`${k.method} ${JSON.stringify(k.options)} skipped: ${k.error}`);
  for (const r of rows) for (const w of r.warnings) warnings.add(`${r.method}: ${w}`);
  return {
    schema: RESULTS_SCHEMA,
    created: new Date().toISOString(),
    tool: { name: "mixcache", version: toolVersion() },
    machine: machineInfo(o.threads),
    model: { name: m.name, dir: m.dir, parameters: m.parameters, config: { ...m.config } as Record<string, unknown>, latent: m.latent, defaults: m.defaults, fingerprint: p.modelFingerprint },
    protocol: {
      preset: p.preset, hash: p.hash, rowSchema: ROW_SCHEMA, steps: p.steps, guidance: p.guidance, shift: p.shift, sampler: p.sampler,
      negativePrompt: p.negativePrompt, shape: p.shape, seeds: p.seeds, promptSource: p.promptSource, vocabPath: p.vocabPath,
      prompts: p.prompts.map((x) => ({ ...x, sheet: p.shape.channels === 3 ? `frames/${x.index}.png` : null })),
      methods: p.methods,
      skipped: p.skipped,
      points: p.points.map((x) => ({ id: x.id, method: x.method, tag: x.tag, granularity: x.granularity, options: x.options, config: x.config, default: x.isDefault, configHash: x.configHash })),
      metrics: {
        pixels: "p = clamp(x / 2 + 0.5, 0, 1)",
        psnrFrame: "mean over frames of per-frame PSNR (peak 1); frames with MSE 0 count as the cap",
        psnrClip: "PSNR of one MSE over the whole clip (peak 1)",
        psnrCapDb: PSNR_CAP_DB,
        ssim: { ...SSIM_DEFAULTS, padding: "valid", channels: "luma (BT.601) for ssim, per-channel mean for ssimRgb", luma: LUMA_BT601 },
        computeSpeedup: "sum of full MACs / sum of executed MACs over the point's rows",
        wallSpeedup: "median wall ms of none / median wall ms of the point, over the same prompt x seed rows",
        efficiency: "wallSpeedup / computeSpeedup",
        adherence: "detectAdherence of the output scored against the prompt's colour, shape, motion and background; mean = mean of the four (textures models: detectTextureAdherence, the pattern fifth; quality = textureQuality, a reference-free 0..1 match to the dataset's statistics for the caption)",
        cache: "peak bytes of tensors held by the cache (CacheReport.peakBytes)",
      },
    },
    session: {
      id: s.session, rowsTotal: s.rowsTotal, rowsDone: rows.length, rowsRun: s.rowsRun, rowsReused: s.rowsReused,
      wallS: (performance.now() - s.t0) / 1000, warmupMs: s.warmupMs, complete: s.complete && rows.length === s.rowsTotal, warnings: [...warnings],
    },
    rows: clean,
    summary: tableOrder(p, summarize(p, clean)),
    traces,
    redundancy: s.redundancy,
  };
}

function writeResults(out: string, r: BenchResults): { json: string; md: string; csv: string } {
  const json = join(out, "results.json"), md = join(out, "results.md"), csv = join(out, "results.csv");
  writeFileAtomic(json, toJson(r));
  writeFileAtomic(md, renderMarkdown(r));
  writeFileAtomic(csv, renderCsv(r));
  return { json, md, csv };
}
