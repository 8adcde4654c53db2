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
 *   summary   per operating point (results.ts).
 *
 * Resumable: each finished row is appended to <out>/journal.jsonl (journal.ts) and a rerun skips
 * rows whose key (protocol hash + point tag/config + seed + prompt) is already there. The
 * reference clip of each prompt and seed is kept in <out>/clips/ so that a resumed group can
 * still be compared with its reference. Rows resumed from an earlier session keep their wall
 * times, so a bench interrupted across sessions mixes timings of two processes; run with --fresh
 * (or into a new folder) for a single-session wall-time comparison.
 *
 * One run at a time per folder: <out>/bench.lock (lock.ts) is held for the run; a second run into
 * the same folder fails fast, a lock left by a dead process is taken over with a warning.
 *
 * Outputs (all written atomically): results.json (results.ts, `BenchResults`), results.md,
 * results.csv (render.ts), frames/<prompt index>.png (reference + each method's default point,
 * first seed), redundancy.json (the warm-up's signals, reused by reruns), journal.jsonl, clips/.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { MixCacheError } from "../errors.ts";
import type { LoadedModel } from "../models/load.ts";
import { generate } from "../pipeline/generate.ts";
import { writeContactSheet } from "../media/png.ts";
import type { Video } from "../media/frames.ts";
import { detectAdherence, scoreAdherence } from "../metrics/adherence.ts";
import { detectTextureAdherence, scoreTextureAdherence, textureQuality } from "../metrics/texture-adherence.ts";
import { PSNR_CAP_DB, SSIM_DEFAULTS, LUMA_BT601, compareClips, type QualityReport } from "../metrics/quality.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { lockDir, tookOverNote } from "./lock.ts";
import { RedundancyRecorder } from "./redundancy.ts";
import { ROW_SCHEMA, buildProtocol, groupPoints, rowKey, type BenchPrompt, type OperatingPoint, type Protocol, type ProtocolOptions } from "./protocol.ts";
import { RESULTS_SCHEMA, summarize, tableOrder, toJson, type BenchResults, type BenchRow, type RowAdherence } from "./results.ts";
import { appendJournal, clipName, fromBytes, loadF32, readJournal, saveF32, toBytes } from "./journal.ts";
import { renderCsv, renderMarkdown } from "./render.ts";
import { machineInfo, toolVersion } from "./machine.ts";

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
      // oracle points only where they were planned (protocol.groupPoints)
      const pts = groupPoints(p, prompt.text, seed);
      const todo = pts.filter((pt) => !done.has(rowKey(p.hash, pt, seed, prompt.text)));
      rowsTotal += pts.length;
      groups.push({ prompt, seed, todo });
    }
  const rowsTodo = groups.reduce((s, g) => s + g.todo.length, 0);
  const rowsReused = rowsTotal - rowsTodo;
  const warnings = new Set<string>([...notes, ...p.notes]);
  if (!rgb) warnings.add(`model ${model.name} works in a ${shape.channels}-channel latent space: PSNR and SSIM compare the final latents (not decoded frames), and no adherence is scored`);
  const gen = (prompt: string, seed: number, pt: OperatingPoint | null, cache = pt?.cache, onStep?: (d: number, t: number) => void) =>
    // latent-space models (a VAE) are compared on their final latents: decoding every row would
    // cost more than the denoising, and the caches act on the latent trajectory
    generate({ model, prompt, seed, steps: p.steps, guidance: p.guidance, shift: p.shift, sampler: p.sampler, negativePrompt: p.negativePrompt, shape: p.shape, cache, onStep, decode: false });

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
    const ref = loadF32(join(clipsDir, clipName(p.hash, prompt.text, firstSeed, "ref", "f32")), n);
    if (!ref) return null;
    clips.push({ data: ref, channels: 3, frames: shape.frames, height: shape.height, width: shape.width });
    labels.push("reference (none)");
    for (const pt of sheetPoints) {
      const path = join(clipsDir, clipName(p.hash, prompt.text, firstSeed, pt, "u8"));
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
    const refPath = join(clipsDir, clipName(p.hash, prompt.text, seed, "ref", "f32"));
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
        if (seed === firstSeed && pt.isDefault && rgb) writeFileAtomic(join(clipsDir, clipName(p.hash, prompt.text, seed, pt, "u8")), toBytes(r.video.data));
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
    for (const pt of groupPoints(p, g.prompt.text, g.seed)) {
      const r = done.get(rowKey(p.hash, pt, g.seed, g.prompt.text));
      // the row's point id as this protocol names it (the key holds its tag and config, not the id)
      if (r) rows.push(r.point === pt.id ? r : { ...r, point: pt.id });
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
      points: p.points.map((x) => ({ id: x.id, method: x.method, tag: x.tag, granularity: x.granularity, options: x.options, config: x.config, default: x.isDefault, configHash: x.configHash, ...(x.oracle ? { oracle: x.oracle } : {}) })),
      oracle: p.oracle,
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
