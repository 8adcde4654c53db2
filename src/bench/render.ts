/**
 * results.md and results.csv from the results (the summary table, the best point at each quality
 * floor, the warnings).
 */
import type { BenchResults } from "./results.ts";
import { boundTable, type BoundCell } from "./bound.ts";
import { oracleNote } from "./oracle.ts";

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
  const oracle = p.oracle ?? null;
  if (oracle) lines.push(`Method \`oracle\` (points oracle-<set>@<target>x) is the oracle bound: ${oracleNote(oracle)}; run as MixCache following each schedule (\`plan=\`), on those prompts only (n). Left out of the verdicts below.`, "");
  // oracle rows are a bound, not a method: no verdict counts them
  const cached = r.summary.filter((s) => s.method !== "none" && !s.oracle && s.psnrFrame !== null && s.n > 0);
  if (cached.length) {
    lines.push("## Highest compute speedup at a quality floor", "");
    lines.push("| PSNR (a) floor | point | compute | wall | eff. | PSNR (a) dB | SSIM |", "|--:|---|--:|--:|--:|--:|--:|");
    for (const floor of [25, 30, 35, 40]) {
      const ok = cached.filter((s) => s.psnrFrame! >= floor).sort((a, b) => b.computeSpeedup - a.computeSpeedup)[0];
      lines.push(ok ? `| ${floor} | ${ok.tag} | ${f(ok.computeSpeedup, 2)}x | ${f(ok.wallSpeedup, 2)}x | ${f(ok.efficiency, 2)} | ${f(ok.psnrFrame, 2)} | ${f(ok.ssim, 4)} |` : `| ${floor} | (none) | | | | | |`);
    }
    lines.push("");
  }
  if (oracle) lines.push(...renderOracleMarkdown(r));
  if (r.session.warnings.length) {
    lines.push("## Warnings", "");
    for (const w of r.session.warnings) lines.push(`- ${w}`);
    lines.push("");
  }
  return lines.join("\n");
}

/** A cell of the bound table: PSNR (a) and the compute speedup, optionally what the point is. */
function boundCell(c: BoundCell | null, what?: string): string {
  if (!c) return "-";
  return `${f(c.psnrFrame, 2)} dB (${what ? `${what}, ` : ""}${f(c.computeSpeedup, 2)}x)`;
}

/** The oracle sections of results.md: the bound against the methods per target, and each schedule. */
export function renderOracleMarkdown(r: BenchResults): string[] {
  const o = r.protocol.oracle;
  const t = boundTable(r);
  if (!o || !t) return [];
  const lines: string[] = [];
  lines.push("## Oracle bound against the methods at each target", "");
  lines.push(`PSNR (a), mean over the oracle's ${t.prompts} prompt(s) x seed(s) ${t.seeds.join(", ")}, with the compute speedup. ${t.note}`, "");
  lines.push("| target | oracle hybrid | best oracle single granularity | planned MixCache | planned MixCache+ | fewer steps | best peer | oracle hybrid - planned MixCache | oracle hybrid - planned MixCache+ |");
  lines.push("|--:|---|---|---|---|---|---|--:|--:|");
  for (const x of t.rows)
    lines.push(`| ${x.target}x | ${boundCell(x.hybrid)} | ${boundCell(x.single, x.single?.oracle?.set)} | ${boundCell(x.planned)} | ${boundCell(x.plannedPlus)} | ${boundCell(x.fewerSteps)} | ${boundCell(x.bestPeer, x.bestPeer?.tag)} | ${x.gapPlanned === null ? "-" : `${f(x.gapPlanned, 2)} dB`} | ${x.gapPlannedPlus === null ? "-" : `${f(x.gapPlannedPlus, 2)} dB`} |`);
  lines.push("");
  lines.push("### Oracle schedules", "");
  lines.push(`From ${o.file} (model ${o.model}, ${o.steps} steps, planned on ${o.prompts.length} prompt(s), seed(s) ${o.seeds.join(", ")}). The planner's PSNR is one unclamped MSE over the clip in [-1, 1] (peak 2), mean over its prompts: not the bench's metric (PSNR (b) clamps pixels to [0, 1] first).`, "");
  lines.push("| point | set | target | compute | PSNR (a) dB | PSNR (b) dB | SSIM | planner: speedup | planner: PSNR dB | n | schedule |");
  lines.push("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|");
  for (const s of r.summary.filter((x) => x.oracle))
    lines.push(`| ${s.tag} | ${s.oracle!.set} | ${s.oracle!.target}x | ${f(s.computeSpeedup, 2)}x | ${f(s.psnrFrame, 2)} | ${f(s.psnrClip, 2)} | ${f(s.ssim, 4)} | ${s.oracle!.plannerSpeedup === null ? "-" : `${f(s.oracle!.plannerSpeedup, 2)}x`} | ${f(s.oracle!.plannerPsnr, 2)} | ${s.n} | \`${s.oracle!.plan}\` |`);
  if (o.infeasible.length) {
    lines.push("");
    lines.push(`No schedule: ${o.infeasible.map((x) => `${x.set} at ${x.target}x`).join(", ")} (the compute budget cannot be met with the planner's warm-up, tail and longest cached run).`);
  }
  lines.push("");
  return lines;
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
