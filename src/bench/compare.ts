/**
 * Several bench folders side by side (`mixcache report DIR1 DIR2 ... --compare OUT`): typically the
 * same protocol on the two embedded models. Each folder keeps its own full report
 * (DIR/report/index.html); OUT/index.html shows their Pareto charts next to each other and one
 * table of the operating points they share (compute speedup, PSNR (a), SSIM, adherence and, on
 * textures models, the reference-free quality score), linking to each report.
 */
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { escapeHtml as e, readResults } from "./report.ts";
import type { BenchResults, SummaryRow } from "./results.ts";

const fx = (x: number | null | undefined, d: number, suffix = "") => (typeof x === "number" && Number.isFinite(x) ? `${x.toFixed(d)}${suffix}` : "–");

export interface CompareOutcome {
  index: string;
  /** points shared by every folder (the table's rows) */
  shared: number;
}

/** The folders' reports must exist (buildReport) before this runs: their Pareto PNGs are copied. */
export function buildComparison(dirs: readonly string[], outDir: string, command: string): CompareOutcome {
  if (dirs.length < 2) throw new UsageError(`--compare needs at least two bench folders, got ${dirs.length}`, "mixcache report DIR1 DIR2 --compare OUT");
  const out = resolve(outDir);
  const items = dirs.map((d) => ({ dir: resolve(d), r: readResults(d) as BenchResults }));
  mkdirSync(out, { recursive: true });
  const names = items.map((it) => `${it.r.model.name} (${basename(it.dir)})`);
  // operating points by tag, in the first folder's table order, kept when every folder has them
  const byTag = items.map((it) => new Map(it.r.summary.map((s) => [s.tag, s] as const)));
  const tags = items[0].r.summary.map((s) => s.tag).filter((t) => byTag.every((m) => m.has(t)));
  const anyQuality = items.some((it) => it.r.summary.some((s) => s.adherence?.quality !== undefined));
  const cell = (s: SummaryRow | undefined) => {
    if (!s) return `<td colspan="${anyQuality ? 5 : 4}">–</td>`;
    const ref = s.method === "none";
    return `<td>${fx(s.computeSpeedup, 2, "x")}</td><td>${ref ? "ref" : fx(s.psnrFrame, 2)}</td><td>${ref ? "ref" : fx(s.ssim, 4)}</td><td>${fx(s.adherence?.mean, 2)}</td>` +
      (anyQuality ? `<td>${fx(s.adherence?.quality, 3)}</td>` : "");
  };
  const sub = `<th>compute</th><th>PSNR (a) dB</th><th>SSIM</th><th>adh.</th>${anyQuality ? "<th>quality</th>" : ""}`;
  const rows = tags.map((t) => `<tr><td>${e(t)}</td>${byTag.map((m) => cell(m.get(t))).join("")}</tr>`).join("\n");
  const charts = items.map((it, k) => {
    const png = join(it.dir, "report", "plots", "pareto.png");
    let img = "<p>(no Pareto chart: run <code>mixcache report</code> on this folder)</p>";
    if (existsSync(png)) {
      const name = `pareto-${k}.png`;
      copyFileSync(png, join(out, name));
      img = `<img src="${name}" alt="Pareto chart of ${e(names[k])}">`;
    }
    const link = relative(out, join(it.dir, "report", "index.html"));
    const p = it.r.protocol;
    return `<div class="col"><h2>${e(names[k])}</h2><p>${p.prompts.length} prompts x ${p.seeds.length} seed(s), ${p.steps} ${e(p.sampler)} steps, guidance ${p.guidance}; ` +
      `<a href="${e(link)}">full report</a></p>${img}</div>`;
  }).join("\n");
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>MixCache bench: ${e(names.join(" vs "))}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}.row{display:flex;gap:24px;flex-wrap:wrap}.col{flex:1;min-width:420px}img{max-width:100%}
table{border-collapse:collapse;margin-top:16px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}td:first-child{text-align:left}th{background:#f6f6f6}code{background:#f3f3f3;padding:1px 4px}</style></head>
<body><h1>MixCache bench side by side</h1><p>Built by <code>${e(command)}</code>. PSNR (a) is the mean over frames of per-frame PSNR to the uncached output of the same model; adh. is the mean detection rate of the prompt's attributes; quality (textures models) is the reference-free 0..1 match to the dataset's statistics for the caption.</p>
<div class="row">${charts}</div>
<h2>Shared operating points (${tags.length})</h2>
<table><tr><th rowspan="2">point</th>${names.map((n) => `<th colspan="${anyQuality ? 5 : 4}">${e(n)}</th>`).join("")}</tr><tr>${names.map(() => sub).join("")}</tr>
${rows}
</table></body></html>
`;
  const index = join(out, "index.html");
  writeFileAtomic(index, html);
  return { index, shared: tags.length };
}
