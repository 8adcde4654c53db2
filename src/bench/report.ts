/**
 * `mixcache report DIR`: a static HTML report of a bench folder (DIR/results.json, written by
 * `mixcache bench`), in DIR/report/:
 *
 *   index.html        the page (no scripts, no network: opens from disk or through `mixcache view`)
 *   plots/*.svg|png   plots.ts: Pareto chart, redundancy analysis, MixCache decision timeline,
 *                     every method's per-step decisions
 *   clips/*.gif       per prompt (first seed): the reference and each method's default point,
 *                     from the clips the bench keeps (clips/<protocol>-s<seed>-p<prompt sha>-ref.f32
 *                     and -<tag>-<config hash>.u8, see journal.ts); missing ones are listed
 *   frames/<i>.png    the bench's contact sheets (every frame; reference on top), copied
 *
 * Sections: headline (fastest points at a quality floor, the design aim), each method at its
 * default point and at its best point reaching 2x compute, the full results table, the plots, the
 * clips side by side, decision timelines, the machine (results.machine and, when present,
 * DIR/runtime.json from machine.ts: GEMM ceiling, forward throughput, per-call overhead, and the
 * ONNX Runtime vs PyTorch eager forward ratio), metric definitions (protocol.metrics), the
 * protocol, warnings and the commands. All text is HTML-escaped; every file is written atomically.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { MixCacheError } from "../errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { writeGif } from "../media/gif.ts";
import type { Video } from "../media/frames.ts";
import type { BenchResults, SummaryRow, AdherenceAgg } from "./results.ts";
import { AIM, isAblation, isMixCache, renderPlots, type RenderedPlot } from "./plots.ts";
import { readRuntime, type RuntimeNumbers } from "./machine.ts";
import { clipName, fromBytes, loadF32, safeTag } from "./journal.ts";
import { boundTable, type BoundCell } from "./bound.ts";

const REPORT_DIR = "report";

// ---------------------------------------------------------------------------------------------
// Helpers

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escape text for HTML element content and quoted attribute values. */
export function escapeHtml(v: unknown): string {
  return String(v ?? "").replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}
const e = escapeHtml;

const fin = (x: number | null | undefined): x is number => typeof x === "number" && Number.isFinite(x);
const fx = (x: number | null | undefined, d: number, suffix = "") => (fin(x) ? `${x.toFixed(d)}${suffix}` : "–");

/** Read and sanity-check DIR/results.json. */
export function readResults(dir: string): BenchResults {
  const path = join(dir, "results.json");
  if (!existsSync(path)) throw new MixCacheError("IO", `no results.json in ${dir}`, "run `mixcache bench --out DIR` first, or pass the folder a bench wrote");
  let r: BenchResults;
  try {
    r = JSON.parse(readFileSync(path, "utf8")) as BenchResults;
  } catch (err) {
    throw new MixCacheError("IO", `cannot read ${path}: ${(err as Error).message}`, "rerun the bench into this folder (it resumes from its journal)");
  }
  if (!r || typeof r !== "object" || !Array.isArray(r.summary) || !r.protocol || !Array.isArray(r.protocol.points))
    throw new MixCacheError("IO", `${path} is not a bench results file (no summary/protocol)`, "pass the folder a `mixcache bench` wrote");
  if (r.schema !== 1) throw new MixCacheError("IO", `${path} has results schema ${r.schema}; this report reads schema 1`, "rerun the bench with this version");
  r.traces ??= [];
  r.rows ??= [];
  r.redundancy ??= null;
  return r;
}

function psnrCell(s: { psnrFrame?: number | null; psnrClip?: number | null; identical?: number | null }, which: "psnrFrame" | "psnrClip"): string {
  const v = s[which];
  if (s.identical === 1) return `<span class="ident" title="bit-identical to the reference as displayed">= ref</span>`;
  return fin(v) ? `${v.toFixed(2)}${s.identical ? '<sup title="some rows identical to the reference (counted as the cap)">†</sup>' : ""}` : "–";
}

function adhCell(out: AdherenceAgg | null, ref: AdherenceAgg | null): string {
  if (!out && !ref) return "–";
  const o = out?.mean, r = ref?.mean;
  const cls = fin(o) && fin(r) ? (o < r - 1e-9 ? "worse" : o > r + 1e-9 ? "better" : "") : "";
  return `<span class="${cls}">${fx(r, 2)} → ${fx(o, 2)}</span>`;
}

const meetsAim = (s: SummaryRow) =>
  s.computeSpeedup >= AIM.speedup && fin(s.psnrFrame) && s.psnrFrame >= AIM.psnr && fin(s.efficiency) && s.efficiency >= 0.95 &&
  !(s.adherence && s.adherenceRef && s.adherence.mean < s.adherenceRef.mean - 1e-9);

// ---------------------------------------------------------------------------------------------
// Clips

interface ClipCell {
  label: string;
  point: string | null;
  gif: string | null;
  psnr: number | null;
  speedup: number | null;
  mix: boolean;
}

interface PromptClips {
  index: number;
  text: string;
  heldout: boolean | null;
  sheet: string | null;
  cells: ClipCell[];
  missing: string[];
}

function modelFps(r: BenchResults): number {
  try {
    const m = JSON.parse(readFileSync(join(r.model.dir, "mixcache.json"), "utf8")) as { fps?: number };
    if (fin(m.fps) && m.fps > 0) return m.fps;
  } catch {
    // the model folder may be gone or elsewhere: the default rate
  }
  return 8;
}

function writeClips(dir: string, reportDir: string, r: BenchResults): { prompts: PromptClips[]; gifs: number; notes: string[] } {
  const p = r.protocol;
  const shape = p.shape as { channels: number; frames: number; height: number; width: number };
  const notes: string[] = [];
  const prompts: PromptClips[] = [];
  let gifs = 0;
  const seed = p.seeds[0];
  const rgb = shape && shape.channels === 3;
  const n = rgb ? shape.channels * shape.frames * shape.height * shape.width : 0;
  const scale = rgb ? Math.max(1, Math.min(8, Math.round(128 / Math.max(shape.width, shape.height)))) : 1;
  const fps = modelFps(r);
  const clipsDir = join(dir, "clips");
  const defaults = p.points.filter((x) => x.default && x.method !== "none");
  const summary = new Map(r.summary.map((s) => [s.point, s]));
  const used = new Set<string>();
  const gifName = (index: number, tag: string, hash: string) => {
    let name = `clips/p${index}-${safeTag(tag)}.gif`;
    if (used.has(name)) name = `clips/p${index}-${safeTag(tag)}-${hash}.gif`;
    used.add(name);
    return name;
  };
  const video = (data: Float32Array): Video => ({ data, channels: 3, frames: shape.frames, height: shape.height, width: shape.width });
  if (!rgb) notes.push("the model's output is not RGB: no clips or contact sheets");
  for (const pr of p.prompts) {
    const out: PromptClips = { index: pr.index, text: pr.text, heldout: pr.heldout, sheet: null, cells: [], missing: [] };
    const sheetSrc = join(dir, "frames", `${pr.index}.png`);
    if (existsSync(sheetSrc)) {
      writeFileAtomic(join(reportDir, "frames", `${pr.index}.png`), readFileSync(sheetSrc));
      out.sheet = `frames/${pr.index}.png`;
    }
    if (rgb) {
      const refCell: ClipCell = { label: "reference (none)", point: null, gif: null, psnr: null, speedup: 1, mix: false };
      const ref = loadF32(join(clipsDir, clipName(p.hash, pr.text, seed, "ref", "f32")), n);
      if (ref) {
        const name = `clips/p${pr.index}-ref.gif`;
        writeGif(join(reportDir, name), video(ref), { scale, fps });
        refCell.gif = name;
        gifs++;
      } else out.missing.push("reference");
      out.cells.push(refCell);
      for (const pt of defaults) {
        const row = r.rows.find((x) => x.point === pt.id && x.promptIndex === pr.index && x.seed === seed);
        const cell: ClipCell = { label: pt.tag, point: pt.id, gif: null, psnr: row?.quality?.psnrFrame ?? null, speedup: row?.computeSpeedup ?? summary.get(pt.id)?.computeSpeedup ?? null, mix: isMixCache(pt.method) };
        const src = join(clipsDir, clipName(p.hash, pr.text, seed, pt, "u8"));
        const b = existsSync(src) ? readFileSync(src) : null;
        if (b && b.byteLength === n) {
          const name = gifName(pr.index, pt.tag, pt.configHash);
          writeGif(join(reportDir, name), video(fromBytes(b)), { scale, fps });
          cell.gif = name;
          gifs++;
        } else out.missing.push(pt.tag);
        out.cells.push(cell);
      }
    }
    prompts.push(out);
  }
  const missing = prompts.reduce((s, x) => s + x.missing.length, 0);
  if (missing) notes.push(`${missing} clip(s) are not stored in ${clipsDir} (the bench keeps the reference and each method's default point for the first seed); their cells show the contact sheet only`);
  return { prompts, gifs, notes };
}

// ---------------------------------------------------------------------------------------------
// HTML

const CSS = `
:root { --fg: #1d2125; --muted: #5f6b76; --line: #dfe3e8; --bg: #ffffff; --panel: #f6f8fa; --mix: #fff1f1; --mixline: #e0001b; --good: #1a7f37; --bad: #c62828; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; color: var(--fg); background: var(--bg); }
header.top { background: #14171a; color: #fff; padding: 18px 32px 14px; }
header.top h1 { margin: 0 0 4px; font-size: 24px; font-weight: 650; letter-spacing: -0.01em; }
header.top .sub { color: #c3cad1; font-size: 13.5px; }
nav { position: sticky; top: 0; z-index: 5; background: #fff; border-bottom: 1px solid var(--line); padding: 8px 32px; font-size: 13.5px; display: flex; flex-wrap: wrap; gap: 4px 18px; }
nav a { color: #0b5cad; text-decoration: none; }
nav a:hover { text-decoration: underline; }
main { max-width: 1400px; margin: 0 auto; padding: 8px 32px 64px; }
section { margin-top: 34px; }
h2 { font-size: 20px; margin: 0 0 10px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
p.note, .caption { color: var(--muted); font-size: 13.5px; margin: 6px 0; }
.banner { background: #fff4e5; border: 1px solid #f0c36d; padding: 10px 14px; border-radius: 6px; margin-top: 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(250px, 1fr)); gap: 14px; margin-top: 16px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.card .k { font-size: 12.5px; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); }
.card .v { font-size: 22px; font-weight: 650; margin: 2px 0; }
.card .d { font-size: 13px; color: var(--muted); }
.card.mix { background: var(--mix); border-color: #f3b5b5; }
.ok { color: var(--good); font-weight: 600; } .no { color: var(--bad); font-weight: 600; }
figure { margin: 0; }
figure.plot { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px; overflow-x: auto; }
figure.plot img { display: block; width: 100%; max-width: 1250px; height: auto; margin: 0 auto; }
figure.plot figcaption { color: var(--muted); font-size: 13px; margin-top: 8px; }
figure.plot figcaption a { color: #0b5cad; }
#pareto figure.plot { border: 2px solid #c9d1d9; box-shadow: 0 1px 6px rgba(0,0,0,0.06); }
.tablewrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; }
.tablewrap.full table { font-size: 12.5px; }
.tablewrap.full th, .tablewrap.full td { padding: 5px 7px; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid #edf0f3; text-align: right; white-space: nowrap; }
th { background: var(--panel); font-weight: 600; position: sticky; top: 0; }
th.l, td.l { text-align: left; }
tbody tr:nth-child(even) { background: #fbfcfd; }
tbody tr:hover { background: #eef5ff; }
tr.mix td { background: var(--mix); }
tr.mix td.l:first-child { border-left: 3px solid var(--mixline); font-weight: 650; }
tr.grp td { border-top: 2px solid var(--line); }
tr.dim td { color: var(--muted); }
tr.oracle td { background: #f1f1f1; font-style: italic; }
td.def::after { content: " ★"; color: #b58900; }
.ident { color: var(--good); font-weight: 600; }
.abl { font-size: 11px; color: var(--muted); border: 1px solid var(--line); border-radius: 4px; padding: 0 4px; }
.worse { color: var(--bad); } .better { color: var(--good); }
.clips { display: flex; flex-wrap: wrap; gap: 12px; }
.clip { width: 164px; background: #181a1d; color: #e8eaed; border-radius: 8px; padding: 8px; text-align: center; }
.clip.mix { outline: 3px solid var(--mixline); }
.clip img { width: 128px; height: 128px; image-rendering: pixelated; display: block; margin: 0 auto; background: #000; border-radius: 3px; }
.clip .t { font-size: 12px; font-weight: 600; margin-top: 6px; overflow-wrap: anywhere; }
.clip .m { font-size: 11.5px; color: #aab2bb; }
.clip .missing { width: 128px; height: 128px; margin: 0 auto; display: flex; align-items: center; justify-content: center; font-size: 11px; color: #888; border: 1px dashed #555; }
details { margin-top: 10px; }
details summary { cursor: pointer; color: #0b5cad; font-size: 13.5px; }
img.sheet { max-width: 100%; image-rendering: pixelated; border-radius: 6px; margin-top: 8px; }
dl.defs { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; font-size: 14px; }
dl.defs dt { font-weight: 600; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
dl.defs dd { margin: 0; }
pre { background: #14171a; color: #e6edf3; padding: 12px 14px; border-radius: 8px; overflow-x: auto; font-size: 13px; white-space: pre-wrap; overflow-wrap: anywhere; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.92em; }
ul.warn li { color: #7a4b00; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 18px; }
footer { color: var(--muted); font-size: 12.5px; margin-top: 48px; border-top: 1px solid var(--line); padding-top: 10px; }
`;

function table(head: Array<[string, string?]>, rows: string[]): string {
  const th = head.map(([t, cls]) => `<th class="${cls ?? ""}">${t}</th>`).join("");
  return `<div class="tablewrap"><table><thead><tr>${th}</tr></thead><tbody>${rows.join("\n")}</tbody></table></div>`;
}

const HEADLINE_HEAD: Array<[string, string?]> = [
  ["method", "l"], ["point", "l"], ["compute", ""], ["wall", ""], ["eff.", ""], ["PSNR (a) dB", ""], ["PSNR (b) dB", ""], ["SSIM", ""], ["adherence ref → out", ""], ["cache MB", ""],
];

function headlineRow(s: SummaryRow): string {
  const mix = isMixCache(s.method);
  return `<tr class="${mix ? "mix" : ""}"><td class="l">${e(s.method)}</td><td class="l${s.default ? " def" : ""}">${e(s.tag)}</td><td>${fx(s.computeSpeedup, 2, "×")}</td><td>${fx(s.wallSpeedup, 2, "×")}</td><td>${fx(s.efficiency, 2)}</td>` +
    `<td>${psnrCell(s, "psnrFrame")}</td><td>${psnrCell(s, "psnrClip")}</td><td>${s.identical === 1 ? "1" : fx(s.ssim, 4)}</td><td>${adhCell(s.adherence, s.adherenceRef)}</td><td>${fx(s.cacheMB, 2)}</td></tr>`;
}

/** Methods with rows, in protocol order (the oracle is a bound, not a method: left out). */
function methodsInOrder(r: BenchResults): string[] {
  const seen: string[] = [];
  for (const m of [...r.protocol.methods, ...r.summary.filter((s) => !s.oracle).map((s) => s.method)]) if (m !== "none" && !seen.includes(m)) seen.push(m);
  return seen;
}

const boundTd = (c: BoundCell | null, what?: string) =>
  c ? `<td title="${e(c.tag)}, n = ${c.n}">${fx(c.psnrFrame, 2)} <span class="note">(${what ? `${e(what)}, ` : ""}${fx(c.computeSpeedup, 2, "×")})</span></td>` : "<td>–</td>";

/** The oracle bound against the methods at each target (bound.ts), when the bench ran --oracle. */
function oracleTable(r: BenchResults): string {
  const t = boundTable(r);
  if (!t || !t.rows.length) return "";
  const head: Array<[string, string?]> = [
    ["target", ""], ["oracle hybrid", ""], ["best oracle single", ""], ["planned MixCache", ""], ["planned MixCache+", ""], ["fewer steps", ""], ["best peer", ""], ["hybrid − planned", ""], ["hybrid − planned+", ""],
  ];
  const gap = (g: number | null) => (g === null ? "–" : `<span class="${g <= 1 ? "better" : "worse"}">${fx(g, 2)} dB</span>`);
  const rows = t.rows.map((x) =>
    `<tr><td>${x.target}×</td>${boundTd(x.hybrid)}${boundTd(x.single, x.single?.oracle?.set)}${boundTd(x.planned)}${boundTd(x.plannedPlus)}${boundTd(x.fewerSteps)}${boundTd(x.bestPeer, x.bestPeer?.tag)}<td>${gap(x.gapPlanned)}</td><td>${gap(x.gapPlannedPlus)}</td></tr>`);
  return `<h3>Oracle bound against the methods at each target</h3>
<p class="note">PSNR (a) in dB (compute speedup). ${e(t.note)} Green gap: planned MixCache within 1 dB of the oracle hybrid.</p>
${table(head, rows)}`;
}

function headlineTables(r: BenchResults): string {
  const methods = methodsInOrder(r);
  const withRows = r.summary.filter((s) => s.n > 0);
  const defRows = methods.map((m) => withRows.find((s) => s.method === m && s.default)).filter((s): s is SummaryRow => !!s);
  const best2 = methods.map((m) => {
    const pts = withRows.filter((s) => s.method === m && !isAblation(s) && s.computeSpeedup >= 2 && fin(s.psnrFrame)).sort((a, b) => b.psnrFrame! - a.psnrFrame! || b.computeSpeedup - a.computeSpeedup);
    return pts[0] ? headlineRow(pts[0]) : `<tr class="dim${isMixCache(m) ? " mix" : ""}"><td class="l">${e(m)}</td><td class="l" colspan="9">no operating point reaches 2× compute</td></tr>`;
  });
  return `<h3>Each method at its default point</h3>
${table(HEADLINE_HEAD, defRows.map(headlineRow))}
<h3>Best point per method at ≥ 2× compute speedup</h3>
<p class="note">Among each method's operating points with compute speedup ≥ 2×, the one with the highest PSNR (a) (MixCache ablations excluded: they are in the full table).</p>
${table(HEADLINE_HEAD, best2)}`;
}

function fullTable(r: BenchResults): string {
  const head: Array<[string, string?]> = [
    ["method", "l"], ["point", "l"], ["gran.", "l"], ["n", ""], ["compute", ""], ["wall", ""], ["eff.", ""], ["wall ms", ""],
    ["PSNR (a)", ""], ["PSNR (b)", ""], ["(a) min", ""], ["SSIM", ""], ["SSIM RGB", ""], ["ident.", ""], ["adh. ref → out", ""], ["held-out (a)", ""], ["cache MB", ""],
  ];
  let last = "";
  const rows = r.summary.map((s) => {
    const ref = s.method === "none";
    const first = s.method !== last;
    last = s.method;
    const cls = [isMixCache(s.method) ? "mix" : "", s.oracle ? "oracle" : "", first ? "grp" : ""].join(" ").trim();
    const badge = isAblation(s) ? ' <span class="abl">ablation</span>' : s.oracle ? ` <span class="abl" title="${e(`oracle bound: ${r.protocol.oracle?.note ?? ""}`)}">oracle bound</span>` : "";
    return `<tr class="${cls}"><td class="l">${first ? e(s.method) : ""}</td><td class="l${s.default && !ref ? " def" : ""}">${e(s.tag)}${badge}</td><td class="l">${e(s.granularity)}</td><td>${s.n}</td>` +
      `<td title="per row: ${fx(s.computeSpeedupMin, 2)}–${fx(s.computeSpeedupMax, 2)}×">${fx(s.computeSpeedup, 2, "×")}</td><td>${fx(s.wallSpeedup, 2, "×")}</td><td>${fx(s.efficiency, 2)}</td><td>${fx(s.wallMsMedian, 0)}</td>` +
      (ref
        ? `<td>ref</td><td>ref</td><td>ref</td><td>ref</td><td>ref</td><td>–</td>`
        : `<td>${psnrCell(s, "psnrFrame")}</td><td>${psnrCell(s, "psnrClip")}</td><td>${s.identical === 1 ? "= ref" : fx(s.psnrFrameMin, 2)}</td><td>${fx(s.ssim, 4)}</td><td>${fx(s.ssimRgb, 4)}</td><td>${fin(s.identical) ? `${Math.round(100 * s.identical)}%` : "–"}</td>`) +
      `<td>${adhCell(s.adherence, s.adherenceRef)}</td><td>${s.heldout?.n ? fx(s.heldout.psnrFrame, 2) : "–"}</td><td>${fx(s.cacheMB, 2)}</td></tr>`;
  });
  return table(head, rows).replace('<div class="tablewrap">', '<div class="tablewrap full">');
}

function cards(r: BenchResults): string {
  // oracle rows are a bound, not a method: no card counts them
  const cached = r.summary.filter((s) => s.method !== "none" && !s.oracle && s.n > 0 && fin(s.psnrFrame));
  const fastest = (floor: number, pred: (s: SummaryRow) => boolean = () => true) => cached.filter((s) => s.psnrFrame! >= floor && pred(s)).sort((a, b) => b.computeSpeedup - a.computeSpeedup)[0];
  const card = (k: string, s: SummaryRow | undefined, extra = "", mix = false) =>
    `<div class="card${mix ? " mix" : ""}"><div class="k">${e(k)}</div>` +
    (s ? `<div class="v">${fx(s.computeSpeedup, 2, "×")} <span style="font-size:14px;font-weight:500">${e(s.tag)}</span></div><div class="d">wall ${fx(s.wallSpeedup, 2, "×")}, eff. ${fx(s.efficiency, 2)}, PSNR (a) ${s.identical === 1 ? "identical" : fx(s.psnrFrame, 1, " dB")}, SSIM ${fx(s.ssim, 4)}${extra}</div>` : `<div class="v">–</div><div class="d">no point reaches it${extra}</div>`) +
    `</div>`;
  const wall = cached.filter((s) => s.psnrFrame! >= AIM.psnr && fin(s.wallSpeedup)).sort((a, b) => b.wallSpeedup - a.wallSpeedup)[0];
  const wallCard = `<div class="card"><div class="k">highest wall speedup at ≥ ${AIM.psnr} dB</div>` +
    (wall ? `<div class="v">${fx(wall.wallSpeedup, 2, "×")} <span style="font-size:14px;font-weight:500">${e(wall.tag)}</span></div><div class="d">compute ${fx(wall.computeSpeedup, 2, "×")}, eff. ${fx(wall.efficiency, 2)}, PSNR (a) ${wall.identical === 1 ? "identical" : fx(wall.psnrFrame, 1, " dB")}</div>` : `<div class="v">–</div><div class="d">no point reaches it</div>`) +
    `</div>`;
  const aim = cached.filter(meetsAim).sort((a, b) => b.computeSpeedup - a.computeSpeedup);
  const mixAim = aim.filter((s) => isMixCache(s.method) && !isAblation(s));
  const hasMix = cached.some((s) => isMixCache(s.method));
  const aimCard = `<div class="card"><div class="k">design aim: ≥ ${AIM.speedup}× at ≥ ${AIM.psnr} dB, eff. ≥ 0.95, no adherence loss</div>` +
    `<div class="v">${hasMix ? (mixAim.length ? `<span class="ok">met by MixCache</span>` : `<span class="no">not met by MixCache</span>`) : "no MixCache point"}</div>` +
    `<div class="d">${aim.length ? `points meeting it: ${aim.map((s) => e(s.tag)).join(", ")}` : "no point meets it"}</div></div>`;
  return `<div class="cards">
${card(`fastest at PSNR (a) ≥ ${AIM.psnr} dB`, fastest(AIM.psnr))}
${card(`fastest MixCache at ≥ ${AIM.psnr} dB`, fastest(AIM.psnr, (s) => isMixCache(s.method) && !isAblation(s)), "", true)}
${wallCard}
${aimCard}
</div>`;
}

/** Per MixCache point in traces: how many steps took each decision (the timeline in numbers). */
function decisionCounts(r: BenchResults): string {
  const traces = r.traces.filter((t) => isMixCache(t.method) && t.trace.length > 0);
  if (!traces.length) return "";
  const actions = ["full", "step", "cfg", "block"];
  for (const t of traces) for (const row of t.trace) if (!actions.includes(String(row.action))) actions.push(String(row.action));
  const summary = new Map(r.summary.map((s) => [s.point, s]));
  const rows = traces.map((t) => {
    const c: Record<string, number> = {};
    for (const row of t.trace) c[String(row.action)] = (c[String(row.action)] ?? 0) + 1;
    const s = summary.get(t.point);
    const row = t.trace.find((x) => x.step === t.trace.length - 1) ?? t.trace[t.trace.length - 1];
    const interval = row && typeof row.interval === "number" ? String(row.interval) : "–";
    return `<tr class="mix"><td class="l${s?.default ? " def" : ""}">${e(t.tag)}${s && isAblation(s) ? ' <span class="abl">ablation</span>' : ""}</td>${actions.map((a) => `<td>${c[a] ?? 0}</td>`).join("")}<td>${e(interval)}</td><td>${fx(s?.computeSpeedup, 2, "×")}</td><td>${s ? psnrCell(s, "psnrFrame") : "–"}</td></tr>`;
  });
  return `<h3>Decisions per MixCache point (first prompt)</h3>${table([["point", "l"], ...actions.map((a): [string, string] => [e(a), ""]), ["final interval", ""], ["compute (all rows)", ""], ["PSNR (a)", ""]], rows)}`;
}

function plotFigure(p: RenderedPlot | undefined, caption: string, id: string): string {
  if (!p) return `<p class="note">No data for this plot in results.json.</p>`;
  const w = p.width ? ` width="${Math.round(p.width)}" height="${Math.round(p.height)}"` : "";
  return `<figure class="plot"><img id="${e(id)}" src="${e(p.svg)}"${w} alt="${e(p.title)}"><figcaption>${caption} <a href="${e(p.svg)}">SVG</a>${p.png ? ` · <a href="${e(p.png)}">PNG</a>` : ""}</figcaption></figure>`;
}

function clipsSection(prompts: PromptClips[], notes: string[]): string {
  if (!prompts.length) return `<p class="note">No prompts.</p>`;
  const parts = prompts.map((pr) => {
    const cells = pr.cells.map((c) => {
      const img = c.gif ? `<img class="clip-gif" src="${e(c.gif)}" width="128" height="128" alt="${e(`${c.label}, prompt ${pr.index}`)}">` : `<div class="missing">clip not stored</div>`;
      const m = c.point === null ? "uncached" : `${fx(c.speedup, 2, "×")} · ${fin(c.psnr) ? (c.psnr >= 100 ? "identical" : `${c.psnr.toFixed(1)} dB`) : "–"}`;
      return `<figure class="clip${c.mix ? " mix" : ""}">${img}<figcaption><div class="t">${e(c.label)}</div><div class="m">${e(m)}</div></figcaption></figure>`;
    });
    const sheet = pr.sheet ? `<details${pr.cells.length ? "" : " open"}><summary>frame strip: every frame, reference on top, then each method's default point</summary><img class="sheet" src="${e(pr.sheet)}" alt="${e(`contact sheet, prompt ${pr.index}`)}"></details>` : "";
    return `<h3>Prompt ${pr.index}: “${e(pr.text)}”${pr.heldout ? ` <span class="note">(held-out combination)</span>` : ""}</h3>
<div class="clips">${cells.join("\n")}</div>${sheet}`;
  });
  return parts.join("\n") + notes.map((n) => `<p class="note">${e(n)}</p>`).join("");
}

function machineSection(r: BenchResults, rt: RuntimeNumbers | null, dir: string): string {
  const m = r.machine;
  const rows = [
    ["CPU", `${m.cpus} × ${m.cpuModel} (available parallelism ${m.availableParallelism})`],
    ["memory", `${m.memoryGB} GB`],
    ["platform", `${m.platform} ${m.arch}, Node ${m.node}`],
    ["ONNX Runtime", `${m.onnxruntime ?? "?"} (onnxruntime-node), ${m.ortThreads} intra-op thread(s)`],
    ["bench session", `${r.session.id}: ${r.session.rowsDone}/${r.session.rowsTotal} rows, ${r.session.rowsRun} run and ${r.session.rowsReused} resumed, ${fx(r.session.wallS, 1, " s")}`],
  ];
  let html = `<dl class="defs">${rows.map(([k, v]) => `<dt>${e(k)}</dt><dd>${e(v)}</dd>`).join("")}</dl>`;
  if (!rt) {
    html += `<p class="note">No runtime benchmark in this folder. Add one with <code>mixcache report ${e(dir)} --measure</code> (runs <code>bench/runtime.ts --skip-1.3b</code> and, when PyTorch is installed, <code>tools/torch_forward_bench.py</code>) or <code>node --import tsx bench/runtime.ts --json ${e(join(dir, "runtime.json"))}</code>.</p>`;
    return html;
  }
  html += `<h3>Runtime benchmark${rt.measuredAt ? ` <span class="note">(measured ${e(rt.measuredAt)}, ${e(rt.threads ?? "?")} threads)</span>` : rt.threads ? ` <span class="note">(${e(rt.threads)} threads)</span>` : ""}</h3><div class="grid2">`;
  if (rt.gemm) {
    const gr = Object.entries(rt.gemm).map(([k, v]) => `<tr${fin(rt.gemmCeiling) && v === rt.gemmCeiling ? ' class="mix"' : ""}><td class="l">${e(k)}</td><td>${fx(v, 1)}</td></tr>`);
    html += `<div><h3>GEMM (MatMul) throughput</h3>${table([["M×K×N", "l"], ["GFLOP/s", ""]], gr)}<p class="note">Ceiling (highlighted): ${fx(rt.gemmCeiling, 1, " GFLOP/s")}, a single 2048×512×2048 MatMul graph.</p></div>`;
  }
  const fw: string[][] = [];
  if (rt.reference) {
    const f = rt.reference;
    fw.push(["reference model forward", `${fx(f.forwardMs, 2, " ms")} (${f.tokens} tokens, ${fx(f.params / 1e6, 2)}M parameters, one CFG branch)`]);
    fw.push(["forward throughput", `${fx(f.gflops, 1, " GFLOP/s")} = ${fx(100 * f.fractionOfCeiling, 0, "%")} of the GEMM ceiling${fin(f.fractionOfSameShapeGemm) ? `, ${fx(100 * f.fractionOfSameShapeGemm, 0, "%")} of same-shape GEMMs` : ""}`]);
  }
  if (rt.overhead) {
    const o = rt.overhead;
    fw.push(["per-call overhead", `${fx(o.perCallMs * 1000, 0, " µs")} per module call × ${o.callsPerForward} calls = ${fx(100 * o.shareOfForward, 1, "%")} of a forward (target ≤ 5%)`]);
  }
  if (rt.wan13b) {
    const b = rt.wan13b;
    fw.push(["Wan2.1-1.3B-shaped forward", `${fx(b.forwardMs / 1000, 2, " s")}, ${fx(b.gflops, 1, " GFLOP/s")} = ${fx(100 * b.fractionOfCeiling, 0, "%")} of the ceiling; peak memory ${fx(b.peakOverWeights, 2, "×")} the fp32 weights`]);
  }
  if (rt.torch) {
    if ("error" in rt.torch) fw.push(["PyTorch eager", `not measured: ${rt.torch.error}`]);
    else if (rt.reference && fin(rt.torch.forward_ms)) {
      const ratio = rt.torch.forward_ms / rt.reference.forwardMs;
      const bt = Object.entries(rt.torch.by_threads ?? {});
      const tried = bt.length > 1 ? `; fastest of ${bt.map(([n, ms]) => `${n} thread(s) ${fx(ms, 1, " ms")}`).join(", ")}` : "";
      fw.push(["PyTorch eager forward", `${fx(rt.torch.forward_ms, 2, " ms")} (torch ${rt.torch.torch ?? "?"}, ${rt.torch.threads} thread(s)${tried}; same model, input size and timed region)`]);
      fw.push(["ONNX Runtime forward vs PyTorch eager", `${fx(ratio, 2, "×")} (PyTorch ms / ONNX Runtime ms: ${ratio >= 1 ? "ONNX Runtime is faster" : "PyTorch eager is faster"})`]);
    }
  } else fw.push(["PyTorch eager", "not measured (no torch field in runtime.json: PyTorch was not installed, or the file predates the comparison)"]);
  html += `<div><h3>Forward and overhead</h3><dl class="defs">${fw.map(([k, v]) => `<dt>${e(k)}</dt><dd>${e(v)}</dd>`).join("")}</dl></div></div>`;
  if (rt.command) html += `<p class="note">Measured with <code>${e(rt.command)}</code>.</p>`;
  return html;
}

function describe(v: unknown): string {
  if (v && typeof v === "object" && !Array.isArray(v)) return Object.entries(v as Record<string, unknown>).map(([k, x]) => `${k}: ${describe(x)}`).join("; ");
  if (Array.isArray(v)) return `[${v.map(describe).join(", ")}]`;
  return String(v);
}

function metricsSection(r: BenchResults): string {
  const m = r.protocol.metrics ?? {};
  const items = Object.entries(m).map(([k, v]) => `<dt>${e(k)}</dt><dd>${e(describe(v))}</dd>`);
  return `<p class="note">As recorded in results.json (<code>protocol.metrics</code>). Reference = the uncached output of the same model, prompt, seed and sampler. PSNR (a) is the Pareto chart's y axis.</p><dl class="defs">${items.join("\n")}</dl>`;
}

function protocolSection(r: BenchResults): string {
  const p = r.protocol;
  const prompts = p.prompts.map((x) => `<tr><td>${x.index}</td><td class="l">${e(x.text)}</td><td class="l">${x.heldout === null ? "–" : x.heldout ? "held-out" : "training"}</td></tr>`);
  let html = `<dl class="defs">
<dt>preset</dt><dd>${e(p.preset)} (protocol ${e(p.hash)}, row schema ${e(p.rowSchema)})</dd>
<dt>model</dt><dd>${e(r.model.name)}: ${fx(r.model.parameters / 1e6, 2)}M parameters, fingerprint ${e(r.model.fingerprint)}, ${e(r.model.dir)}</dd>
<dt>sampling</dt><dd>${e(`${p.steps} ${p.sampler} steps, guidance ${p.guidance}, shift ${p.shift}, negative prompt ${JSON.stringify(p.negativePrompt)}`)}</dd>
<dt>shape</dt><dd>${e(describe(p.shape))}</dd>
<dt>seeds</dt><dd>${e(p.seeds.join(", "))}</dd>
<dt>methods</dt><dd>${e(p.methods.join(", "))} (${p.points.length} operating points)</dd>
</dl>
<h3>Prompts (${e(p.promptSource)})</h3>${table([["#", ""], ["prompt", "l"], ["split", "l"]], prompts)}`;
  if (p.skipped?.length) html += `<h3>Skipped operating points</h3><ul class="warn">${p.skipped.map((s) => `<li>${e(`${s.method} ${JSON.stringify(s.options)}: ${s.error}`)}</li>`).join("")}</ul>`;
  return html;
}

/** A `mixcache bench` command line that reproduces the protocol (reconstructed from results.json). */
function benchCommandFor(r: BenchResults, dir: string): string {
  const p = r.protocol;
  const q = (s: string) => (/^[A-Za-z0-9_./,:=+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  const args = ["mixcache", "bench", "--preset", p.preset, "--model", r.model.dir, "--methods", p.methods.filter((m) => m !== "none").join(",") || "none", "--steps", String(p.steps)];
  if (p.promptSource === "explicit") for (const x of p.prompts) args.push("--prompt", x.text);
  else args.push("--prompts", String(p.prompts.length));
  args.push("--seeds", p.seeds.join(","));
  if (p.oracle) args.push("--oracle", p.oracle.file);
  args.push("--threads", String(r.machine.ortThreads), "--out", dir);
  return args.map(q).join(" ");
}

export interface ReportOptions {
  /** The command line that builds the report (shown in the page); default `mixcache report DIR`. */
  command?: string;
  /** Runtime numbers (default: DIR/runtime.json when present). */
  runtime?: RuntimeNumbers | null;
}

export interface ReportOutcome {
  dir: string;
  index: string;
  plots: RenderedPlot[];
  gifs: number;
  sheets: number;
  /** why the plots are SVG only, when resvg could not load */
  pngError: string | null;
  notes: string[];
}

/** Build DIR/report/ from DIR/results.json (and DIR/runtime.json, clips/, frames/). */
export async function buildReport(dirIn: string, o: ReportOptions = {}): Promise<ReportOutcome> {
  const dir = resolve(dirIn);
  const r = readResults(dir);
  const reportDir = join(dir, REPORT_DIR);
  const rt = o.runtime !== undefined ? o.runtime : readRuntime(dir);
  const { plots, pngError } = await renderPlots(r, reportDir);
  const clips = writeClips(dir, reportDir, r);
  const notes = [...clips.notes];
  if (pngError) notes.push(pngError);
  const plot = (name: string) => plots.find((p) => p.name === name);
  const p = r.protocol;
  const title = `MixCache bench report: ${p.preset} preset on ${r.model.name}`;
  const command = o.command ?? `mixcache report ${dirIn}`;
  const extraFiles = existsSync(dir) ? readdirSync(dir).filter((f) => /^results\.(json|md|csv)$/.test(f)) : [];
  const warnings = r.session.warnings ?? [];
  const redundancyCaption =
    "The paper's motivating figure: the relative L1 change of what each cache granularity reuses, between consecutive steps of the uncached run (redundancy.ts). " +
    "step = the body residual h_L − h_0 (TeaCache, MagCache, EasyCache, MixCache step); cfg = the guidance delta v_u − v_c (FasterCache, MixCache cfg); block = the middle block's residual (DBCache, Delta-DiT, MixCache block).";
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${e(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header class="top">
<h1>${e(title)}</h1>
<div class="sub">${e(`${p.steps} ${p.sampler} steps, guidance ${p.guidance} · ${p.prompts.length} prompt(s) × ${p.seeds.length} seed(s) · ${p.points.length} operating points of ${p.methods.length} methods · protocol ${p.hash} · results created ${r.created}`)}</div>
</header>
<nav><a href="#headline">Headline</a><a href="#pareto">Pareto chart</a><a href="#tables">Tables</a><a href="#clips">Clips</a><a href="#timelines">Decision timelines</a><a href="#redundancy">Redundancy</a><a href="#machine">Machine</a><a href="#metrics">Metrics</a><a href="#protocol">Protocol</a><a href="#command">Command</a></nav>
<main>
${r.session.complete ? "" : `<div class="banner">This bench is <b>incomplete</b>: ${e(r.session.rowsDone)} of ${e(r.session.rowsTotal)} rows. Rerun the bench into the same folder to finish it (it resumes).</div>`}
<section id="headline">
<h2>Headline</h2>
<p class="note">Compute speedup = full MACs / executed MACs (exact, machine-independent); wall speedup = median wall time of the uncached run / of the point (same process, interleaved); PSNR (a) = mean over frames of per-frame PSNR against the uncached output. ★ = the method's default point; MixCache rows are highlighted.</p>
${cards(r)}
</section>
<section id="pareto">
<h2>Pareto chart</h2>
${plotFigure(plot("pareto"), "Compute speedup vs PSNR (a), one line per method over its operating points (ordered by speedup). MixCache variants are thick and labelled; ringed points are defaults. Outputs identical to the reference have an infinite PSNR (stored as the 100 dB cap) and are drawn on the dashed top line instead of stretching the axis." + (p.oracle ? ` Dashed grey lines with squares: the oracle bound, ${e(p.oracle.note)}.` : ""), "pareto-chart")}
</section>
<section id="tables">
<h2>Tables</h2>
${headlineTables(r)}
${oracleTable(r)}
<h3>All operating points</h3>
<p class="note">PSNR (a) = mean over frames of per-frame PSNR, (b) = one MSE over the clip; “= ref” = bit-identical as displayed; † = some rows identical (counted as the cap). Adherence: the uncached output's detection rate → this point's (red = lower). Files: ${extraFiles.map((f) => `<a href="../${e(f)}">${e(f)}</a>`).join(", ") || "–"}.</p>
${fullTable(r)}
</section>
<section id="clips">
<h2>Clips side by side</h2>
<p class="note">First seed (${e(p.seeds[0])}): the uncached reference and each method's default point, as animated GIFs (nearest-neighbour upscaled). The caption gives the compute speedup and PSNR (a) of that clip.</p>
${clipsSection(clips.prompts, [])}
</section>
<section id="timelines">
<h2>Decision timelines</h2>
${plotFigure(plot("timeline"), "MixCache's choice at each step on the first prompt: a full step, or the step / CFG / block cache, with the accumulated error E and the budget that bounds it (a full step resets E).", "timeline-chart")}
${decisionCounts(r)}
<div style="height:16px"></div>
${plotFigure(plot("decisions"), "Every method's default point on the same prompt, as recorded in its per-step trace.", "decisions-chart")}
</section>
<section id="redundancy">
<h2>Redundancy analysis</h2>
${plotFigure(plot("redundancy"), e(redundancyCaption), "redundancy-chart")}
</section>
<section id="machine">
<h2>Machine</h2>
${machineSection(r, rt, dirIn)}
</section>
<section id="metrics">
<h2>Metric definitions</h2>
${metricsSection(r)}
</section>
<section id="protocol">
<h2>Protocol</h2>
${protocolSection(r)}
${warnings.length ? `<h3>Warnings</h3><ul class="warn">${warnings.map((w) => `<li>${e(w)}</li>`).join("\n")}</ul>` : ""}
${notes.length ? `<h3>Report notes</h3><ul class="warn">${notes.map((w) => `<li>${e(w)}</li>`).join("\n")}</ul>` : ""}
</section>
<section id="command">
<h2>Command</h2>
<p class="note">This report:</p>
<pre><code>${e(command)}</code></pre>
<p class="note">The bench it reports (reconstructed from results.json):</p>
<pre><code>${e(benchCommandFor(r, dirIn))}</code></pre>
</section>
<footer>${e(`mixcache ${r.tool?.version ?? ""} · results schema ${r.schema} · report built ${new Date().toISOString()}`)}</footer>
</main>
</body>
</html>
`;
  const index = join(reportDir, "index.html");
  writeFileAtomic(index, html);
  return { dir: reportDir, index, plots, gifs: clips.gifs, sheets: clips.prompts.filter((x) => x.sheet).length, pngError, notes };
}
