/**
 * The bench's plots (docs/design/evaluation.md section 5), rendered server-side from results.json
 * with Vega-Lite -> Vega (headless, renderer "none": no canvas, no browser) to SVG, and SVG -> PNG
 * with resvg (@resvg/resvg-js, a prebuilt native binary shipped in its npm optional package; when
 * it cannot load, the plots stay SVG only and `renderPlots` says so).
 *
 *   pareto      compute speedup vs PSNR (a) (mean over frames of per-frame PSNR), one line per
 *               method over its operating points ordered by speedup, MixCache variants drawn
 *               thicker and labelled, default points ringed. Outputs identical to the reference
 *               (PSNR = infinity, capped at 100 dB in results.json) are drawn as triangles on a
 *               dashed line at the top edge instead of stretching the axis to 100 dB. Oracle
 *               points (--oracle, oracle.ts) are a series of their own per granularity set
 *               ("oracle hybrid", "oracle step", ...): dashed grey lines with square markers, the
 *               subtitle saying where they were planned; they are a bound, not a method.
 *   redundancy  the uncached run's per-step change signals (redundancy.ts): step (body residual),
 *               CFG (guidance delta) and block (middle block residual), against the step index.
 *   timeline    MixCache's decision per step (full / step / cfg / block) for every MixCache point
 *               in results.traces, with its accumulated error E against the budget beneath.
 *   decisions   the same per-step timeline for every method's default point (their own actions).
 * Frame strips per prompt are the bench's contact sheets (frames/<i>.png), not plots.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { BenchResults } from "./results.ts";
import { writeFileAtomic } from "../util/atomic.ts";

export const isMixCache = (method: string): boolean => method.startsWith("mixcache");

/** The Pareto series of an oracle point: "oracle hybrid", "oracle step", ... */
export const oracleSeries = (set: string): string => `oracle ${set}`;
/** Oracle series colours (dark to light greys, by set order; drawn dashed). */
const ORACLE_COLORS: Record<string, string> = { hybrid: "#111111", step: "#4a4a4a", cfg: "#8a8a8a", block: "#6b6b6b" };

/** Options that move a MixCache point along its speed/quality curve; any other option is an ablation. */
const MIX_CURVE_OPTIONS = new Set(["preset", "target_speedup", "budget"]);

/** A planned MixCache point (`schedule: "planned"`): drawn as its own line, "<method> planned". */
export const isPlanned = (p: { options?: Record<string, unknown> }): boolean => p.options?.schedule === "planned";

/** A MixCache ablation point (an option other than preset / target / budget switched; planned
 * schedules are a curve of their own, not an ablation). */
export function isAblation(p: { method: string; options?: Record<string, unknown> }): boolean {
  return isMixCache(p.method) && !isPlanned(p) && Object.keys(p.options ?? {}).some((k) => !MIX_CURVE_OPTIONS.has(k));
}

/** Short label of an ablation: the tag's suffix after the block config (mixcache-x2-F1B1-noI -> noI). */
export function ablationLabel(tag: string): string {
  const m = /-F\d+B\d+-(.+)$/.exec(tag);
  return m ? m[1] : tag;
}

/** Colours shared by the redundancy plot and the timelines: one per granularity. */
const GRANULARITY_COLORS: Record<string, string> = { full: "#cfcfcf", step: "#d62728", cfg: "#ff7f0e", block: "#1f77b4" };
const OTHER_ACTION_COLORS = ["#9467bd", "#2ca02c", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939"];
const MIX_COLORS = ["#e0001b", "#7a0177", "#ff6f00", "#b3003c", "#4a148c", "#c51162"];
const PEER_COLORS = ["#4e79a7", "#59a14f", "#b07aa1", "#9c755f", "#76b7b2", "#e9b300", "#17becf", "#8c8c8c", "#a6761d", "#1b9e77", "#7570b3", "#66a61e", "#a0cbe8", "#d4a6c8", "#86bcb6", "#bab0ac"];

const FONT = "DejaVu Sans, Helvetica, Arial, sans-serif";

/**
 * Text widths for layout. Headless Vega has no canvas to measure text and estimates 0.8 em per
 * character, which makes every title and legend far wider than drawn (charts padded by hundreds of
 * pixels). This table approximates DejaVu Sans advances (the font the PNGs are rendered with; the
 * browsers' Helvetica/Arial are a little narrower), +8% for bold; a label limit caps the width.
 */
const NARROW = new Set("il.,:;'|!ijI ");
const CHAR_EM: Record<string, number> = { " ": 0.318, f: 0.352, t: 0.392, r: 0.411, s: 0.521, z: 0.525, c: 0.55, k: 0.579, m: 0.974, w: 0.818, W: 0.99, M: 0.863, "(": 0.39, ")": 0.39, "-": 0.361, "/": 0.337, "=": 0.838, "+": 0.838, ">": 0.838, "<": 0.838, _: 0.5, '"': 0.46 };
function textWidth(text: string, fontSize: number, bold = false): number {
  let em = 0;
  for (const ch of text) em += CHAR_EM[ch] ?? (NARROW.has(ch) ? 0.28 : ch >= "0" && ch <= "9" ? 0.636 : ch >= "A" && ch <= "Z" ? 0.7 : 0.61);
  return em * fontSize * (bold ? 1.08 : 1);
}
{
  const tm = (vega as unknown as { textMetrics: { width: (item: Record<string, unknown>, text?: unknown) => number } }).textMetrics;
  tm.width = (item, text) => {
    const raw = text ?? item.text;
    const t = raw == null ? "" : String(raw).trim();
    const size = typeof item.fontSize === "number" ? item.fontSize : 11;
    const bold = item.fontWeight === "bold" || (typeof item.fontWeight === "number" && item.fontWeight >= 600);
    const w = textWidth(t, size, bold);
    const limit = typeof item.limit === "number" && item.limit > 0 ? item.limit : Infinity;
    return Math.min(w, limit);
  };
}
const CONFIG = {
  font: FONT,
  background: "white",
  padding: 8,
  title: { fontSize: 15, subtitleFontSize: 11, subtitleColor: "#555", anchor: "start", offset: 10 },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: "normal", gridColor: "#ececec", domainColor: "#888", tickColor: "#888" },
  legend: { labelFontSize: 11, titleFontSize: 12, symbolSize: 90, labelLimit: 260 },
  view: { stroke: "#d0d0d0" },
} as const;

/** method -> colour: MixCache variants get strong reds/magentas, peers muted colours; stable per protocol order. */
function methodColors(methods: readonly string[]): { domain: string[]; range: string[] } {
  const domain: string[] = [];
  const range: string[] = [];
  let mi = 0, pi = 0;
  for (const m of methods) {
    if (m === "none" || domain.includes(m)) continue;
    domain.push(m);
    range.push(isMixCache(m) ? MIX_COLORS[mi++ % MIX_COLORS.length] : PEER_COLORS[pi++ % PEER_COLORS.length]);
  }
  return { domain, range };
}

export interface ParetoPoint {
  method: string;
  tag: string;
  point: string;
  speedup: number;
  /** PSNR (a) as plotted (identical outputs at the clip line) */
  psnr: number;
  /** PSNR (a) as stored (capped at the cap) */
  psnrStored: number;
  clipped: boolean;
  mix: boolean;
  /** a MixCache ablation: drawn as an unconnected diamond */
  ablation: boolean;
  isDefault: boolean;
  /** an oracle schedule (a bound, drawn dashed with square markers) */
  oracle: boolean;
  /** "method" or "oracle bound" (the line style) */
  kind: string;
  /** label drawn next to the point ("" = none; MixCache points only, overlaps dropped) */
  label: string;
}

export interface ParetoData {
  points: ParetoPoint[];
  /** y of the clip line (identical outputs are drawn here) and the axis bottom */
  top: number;
  bottom: number;
  xMin: number;
  xMax: number;
  clipped: number;
  cap: number;
}

/** The Pareto chart's points: every cached operating point with a PSNR, identical ones clipped. */
export function paretoData(r: BenchResults): ParetoData {
  const cap = typeof r.protocol.metrics?.psnrCapDb === "number" ? (r.protocol.metrics.psnrCapDb as number) : 100;
  const rows = r.summary.filter((s) => s.method !== "none" && s.n > 0 && s.psnrFrame !== null && Number.isFinite(s.psnrFrame) && Number.isFinite(s.computeSpeedup));
  const isClipped = (p: number, identical: number | null) => p >= cap - 1e-6 || identical === 1;
  const finite = rows.filter((s) => !isClipped(s.psnrFrame!, s.identical)).map((s) => s.psnrFrame!);
  const maxF = finite.length ? Math.max(...finite) : 40;
  const minF = finite.length ? Math.min(...finite) : 30;
  let top = Math.max(35, Math.ceil((maxF + 4) / 5) * 5);
  if (top >= cap) top = cap;
  const bottom = Math.max(0, Math.min(25, Math.floor((minF - 3) / 5) * 5));
  const points: ParetoPoint[] = rows.map((s) => {
    const clipped = isClipped(s.psnrFrame!, s.identical);
    return {
      method: s.oracle ? oracleSeries(s.oracle.set) : isPlanned(s) ? `${s.method} planned` : s.method, tag: s.tag, point: s.point, speedup: s.computeSpeedup, psnr: clipped ? top : s.psnrFrame!, psnrStored: s.psnrFrame!, clipped,
      mix: isMixCache(s.method), ablation: isAblation(s), isDefault: s.default, oracle: !!s.oracle, kind: s.oracle ? "oracle bound" : "method", label: "",
    };
  });
  const xs = points.map((p) => p.speedup);
  const xMin = Math.min(1, ...xs);
  const xMax = Math.max(3, Math.ceil(Math.max(...xs, 1) * 1.1 * 2) / 2);
  // labels for MixCache points, in plot pixels (760 x 440), greedily skipping any that would
  // overlap a kept one; defaults first, then main-curve points, then ablations; none on the clip line
  const px = (p: ParetoPoint) => [((p.speedup - xMin) / (xMax - xMin)) * 760, (1 - (p.psnr - bottom) / (top + 2 - bottom)) * 440];
  const kept: Array<[number, number, number]> = [];
  const cand = points.filter((p) => p.mix && !p.clipped).sort((a, b) => Number(b.isDefault) - Number(a.isDefault) || Number(a.ablation) - Number(b.ablation) || a.speedup - b.speedup);
  for (const p of cand) {
    const text = p.ablation ? ablationLabel(p.tag) : p.tag;
    const [x, y] = px(p);
    const w = 7 * text.length + 12;
    if (kept.some(([kx, ky, kw]) => x < kx + kw && kx < x + w && Math.abs(y - ky) < 15)) continue;
    kept.push([x, y, w]);
    p.label = text;
  }
  return { points, top, bottom, xMin, xMax, clipped: points.filter((p) => p.clipped).length, cap };
}

/** Aim of docs/design/evaluation.md section 6: 2.5x compute at PSNR >= 30 dB. */
export const AIM = { speedup: 2.5, psnr: 30 } as const;

export function paretoSpec(r: BenchResults): TopLevelSpec {
  const d = paretoData(r);
  // planned MixCache points form lines of their own ("mixcache planned"), after their method
  const colors = methodColors(r.protocol.methods.flatMap((m) => (d.points.some((p) => p.method === `${m} planned`) ? [m, `${m} planned`] : [m])));
  // oracle series after the methods, in greys (dashed lines, square markers)
  const oracleSets = [...new Set(r.summary.filter((s) => s.oracle).map((s) => s.oracle!.set))].filter((set) => d.points.some((p) => p.method === oracleSeries(set)));
  for (const set of oracleSets) {
    colors.domain.push(oracleSeries(set));
    colors.range.push(ORACLE_COLORS[set] ?? "#999999");
  }
  const hasOracle = oracleSets.length > 0;
  const oracle = r.protocol.oracle;
  const x = { field: "speedup", type: "quantitative", title: "compute speedup (full MACs / executed MACs)", scale: { domain: [d.xMin, d.xMax], zero: false, nice: false } };
  const ticks: number[] = [];
  for (let v = d.bottom; v < d.top - 2.5; v += 5) ticks.push(v);
  ticks.push(d.top);
  const y = {
    field: "psnr", type: "quantitative", title: "PSNR (a), dB vs the uncached output",
    scale: { domain: [d.bottom, d.top + 2], zero: false, nice: false },
    axis: { values: ticks, labelExpr: d.clipped ? `datum.value >= ${d.top} ? 'identical' : datum.label` : "datum.label" },
  };
  const color = { field: "method", type: "nominal", title: "method", scale: colors, legend: { orient: "right", symbolType: "stroke", symbolStrokeWidth: 3 } };
  const subtitle = [
    `${r.model.name}: ${r.protocol.steps} ${r.protocol.sampler} steps, ${r.protocol.prompts.length} prompt(s) x ${r.protocol.seeds.length} seed(s). One line per method; ringed = default point.`,
    `Shaded: the aim, >= ${AIM.speedup}x compute at >= ${AIM.psnr} dB.` + (d.clipped ? " Triangles on the top line: identical to the reference." : "") +
      (d.points.some((p) => p.ablation) ? " Diamonds: MixCache ablations." : ""),
    ...(hasOracle && oracle
      ? [`Dashed, squares: oracle bound, schedules planned on the first ${oracle.prompts.length} prompt(s) themselves (seed ${oracle.seeds.join(", ")}) and measured there: a bound for a static schedule, not a method.`]
      : []),
  ];
  const layers: unknown[] = [
    {
      data: { values: [{ x: AIM.speedup, x2: d.xMax, y: AIM.psnr, y2: d.top + 2 }] },
      mark: { type: "rect", color: "#2ca02c", opacity: 0.07 },
      encoding: { x: { field: "x", type: "quantitative" }, x2: { field: "x2" }, y: { field: "y", type: "quantitative" }, y2: { field: "y2" } },
    },
    {
      data: { values: [{ y: AIM.psnr }] },
      mark: { type: "rule", color: "#2ca02c", strokeDash: [5, 4], strokeWidth: 1.2 },
      encoding: { y: { field: "y", type: "quantitative" } },
    },
    {
      data: { values: [{ x: d.xMax, y: AIM.psnr, t: `PSNR ${AIM.psnr} dB` }] },
      mark: { type: "text", align: "right", baseline: "bottom", dx: -4, dy: -3, color: "#2ca02c", fontSize: 11 },
      encoding: { x: { field: "x", type: "quantitative" }, y: { field: "y", type: "quantitative" }, text: { field: "t" } },
    },
  ];
  if (d.clipped) {
    layers.push(
      { data: { values: [{ y: d.top }] }, mark: { type: "rule", color: "#999", strokeDash: [2, 3] }, encoding: { y: { field: "y", type: "quantitative" } } },
      {
        data: { values: [{ x: d.xMax, y: d.top, t: `identical to the reference (PSNR infinite, stored as ${d.cap} dB)` }] },
        mark: { type: "text", align: "right", baseline: "bottom", dx: -4, dy: -4, color: "#777", fontSize: 10.5, fontStyle: "italic" },
        encoding: { x: { field: "x", type: "quantitative" }, y: { field: "y", type: "quantitative" }, text: { field: "t" } },
      },
    );
  }
  const values = d.points;
  // methods first; the oracle series after them, on top (thinner dashed lines, outlined squares)
  const curve = values.filter((p) => !p.ablation && !p.oracle);
  const bound = values.filter((p) => p.oracle);
  const dash = hasOracle ? { strokeDash: { field: "kind", type: "nominal", title: "line", scale: { domain: ["method", "oracle bound"], range: [[1, 0], [6, 4]] }, legend: { orient: "right", symbolType: "stroke", symbolStrokeWidth: 2 } } } : {};
  layers.push(
    {
      data: { values: curve },
      mark: { type: "line", interpolate: "linear" },
      encoding: {
        x, y, color, detail: { field: "method" },
        order: { field: "speedup", type: "quantitative" },
        ...dash,
        strokeWidth: { condition: { test: "datum.mix", value: 3.4 }, value: 1.6 },
        opacity: { condition: { test: "datum.mix", value: 1 }, value: 0.8 },
      },
    },
    {
      data: { values: curve },
      mark: { type: "point", filled: true, opacity: 1 },
      encoding: {
        x, y, color: { ...color, legend: null },
        shape: { condition: { test: "datum.clipped", value: "triangle-up" }, value: "circle" },
        size: { condition: { test: "datum.mix", value: 120 }, value: 50 },
      },
    },
  );
  if (bound.length)
    layers.push(
      {
        data: { values: bound },
        mark: { type: "line", interpolate: "linear", strokeWidth: 2, opacity: 0.95 },
        encoding: { x, y, color, detail: { field: "method" }, order: { field: "speedup", type: "quantitative" }, ...dash },
      },
      {
        data: { values: bound },
        mark: { type: "point", filled: true, opacity: 1, stroke: "white", strokeWidth: 1 },
        encoding: {
          x, y, color: { ...color, legend: null },
          shape: { condition: { test: "datum.clipped", value: "triangle-up" }, value: "square" },
          size: { value: 75 },
        },
      },
    );
  layers.push(
    {
      data: { values: values.filter((p) => p.ablation) },
      mark: { type: "point", filled: true, shape: "diamond", size: 95, opacity: 0.85, stroke: "white", strokeWidth: 0.8 },
      encoding: { x, y, color: { ...color, legend: null } },
    },
    {
      data: { values: values.filter((p) => p.isDefault) },
      mark: { type: "point", filled: false, color: "#222", strokeWidth: 1.3, size: 230 },
      encoding: { x, y },
    },
    {
      data: { values: values.filter((p) => p.label) },
      mark: { type: "text", align: "left", baseline: "middle", dx: 10, dy: -8, fontSize: 11 },
      encoding: {
        x, y, text: { field: "label" }, color: { ...color, legend: null },
        fontWeight: { condition: { test: "datum.ablation", value: "normal" }, value: "bold" },
      },
    },
  );
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: "Pareto: compute speedup vs PSNR (higher and further right is better)", subtitle },
    width: 760,
    height: 440,
    config: CONFIG,
    layer: layers,
  } as unknown as TopLevelSpec;
}

const meanOf = (xs: Array<number | null | undefined>): number | null => {
  const v = xs.filter((x): x is number => typeof x === "number" && Number.isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
};

function redundancySpec(r: BenchResults): TopLevelSpec | null {
  const red = r.redundancy;
  if (!red || !red.rows.length) return null;
  const values: Array<{ step: number; signal: string; value: number }> = [];
  const names = { step: "step: body residual", cfg: "cfg: guidance delta (v_u - v_c)", block: `block: middle block (${red.middleBlock}) residual` };
  for (const row of red.rows) {
    const s = meanOf([row.step?.cond, row.step?.uncond]);
    const c = typeof row.cfg === "number" && Number.isFinite(row.cfg) ? row.cfg : null;
    const b = meanOf([row.block?.cond, row.block?.uncond]);
    if (s !== null) values.push({ step: row.index, signal: names.step, value: s });
    if (c !== null) values.push({ step: row.index, signal: names.cfg, value: c });
    if (b !== null) values.push({ step: row.index, signal: names.block, value: b });
  }
  if (!values.length) return null;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: "Redundancy: how much each cacheable quantity changes per step (uncached run)",
      subtitle: [
        "rel-L1 change from the previous step, mean|a - prev| / mean|prev|: lower = more reusable.",
        `First prompt, seed ${red.seed}, ${red.steps} steps; step and block: mean of the two CFG branches${red.cfg ? "" : " (no CFG)"}.`,
      ],
    },
    width: 760,
    height: 300,
    config: CONFIG,
    data: { values },
    mark: { type: "line", point: { size: 22, filled: true }, strokeWidth: 2 },
    encoding: {
      x: { field: "step", type: "quantitative", title: "step index", scale: { domain: [0, red.steps - 1], nice: false } },
      y: { field: "value", type: "quantitative", title: "relative L1 change", scale: { zero: true } },
      color: { field: "signal", type: "nominal", title: "signal", sort: [names.step, names.cfg, names.block], scale: { domain: [names.step, names.cfg, names.block], range: [GRANULARITY_COLORS.step, GRANULARITY_COLORS.cfg, GRANULARITY_COLORS.block] }, legend: { orient: "bottom", direction: "horizontal", symbolType: "stroke", symbolStrokeWidth: 3, labelLimit: 320 } },
    },
  } as unknown as TopLevelSpec;
}

function actionScale(actions: Iterable<string>): { domain: string[]; range: string[] } {
  const base = ["full", "step", "cfg", "block"];
  const seen = [...new Set(actions)];
  const domain = [...base.filter((a) => seen.includes(a)), ...seen.filter((a) => !base.includes(a)).sort()];
  let k = 0;
  return { domain, range: domain.map((a) => GRANULARITY_COLORS[a] ?? OTHER_ACTION_COLORS[k++ % OTHER_ACTION_COLORS.length]) };
}

type Trace = BenchResults["traces"][number];

function cells(traces: Trace[]) {
  const values: Array<{ row: string; step: number; step1: number; action: string }> = [];
  for (const t of traces) for (const row of t.trace) values.push({ row: t.tag, step: row.step, step1: row.step + 1, action: String(row.action) });
  return values;
}

function timelineLayer(traces: Trace[], steps: number, title: string, subtitle: string[]) {
  const values = cells(traces);
  return {
    title: { text: title, subtitle },
    width: 760,
    height: Math.max(24, 22 * traces.length),
    data: { values },
    mark: { type: "rect", stroke: "white", strokeWidth: 0.6 },
    encoding: {
      x: { field: "step", type: "quantitative", title: "step index", scale: { domain: [0, steps], nice: false }, axis: { tickMinStep: 1, format: "d" } },
      x2: { field: "step1" },
      y: { field: "row", type: "nominal", title: null, sort: traces.map((t) => t.tag), axis: { labelFontSize: 11.5, labelLimit: 300 } },
      color: { field: "action", type: "nominal", title: "decision", scale: actionScale(values.map((v) => v.action)), legend: { orient: "right" } },
    },
  };
}

/** MixCache's per-step decision for each MixCache point in traces, and E against the budget. */
function timelineSpec(r: BenchResults): TopLevelSpec | null {
  const pointOf = (t: Trace) => r.protocol.points.find((p) => p.id === t.point);
  const abl = (t: Trace) => isAblation({ method: t.method, options: pointOf(t)?.options });
  const all = r.traces.filter((t) => isMixCache(t.method) && t.trace.length > 0);
  // main points (presets, targets) first, then the ablations
  const traces = [...all.filter((t) => !abl(t)), ...all.filter(abl)];
  if (!traces.length) return null;
  const steps = Math.max(...traces.map((t) => Math.max(t.steps, t.trace.length)));
  const counts = traces.map((t) => {
    const c: Record<string, number> = {};
    for (const row of t.trace) c[String(row.action)] = (c[String(row.action)] ?? 0) + 1;
    return `${t.tag}: ${Object.entries(c).map(([a, n]) => `${n} ${a}`).join(", ")}`;
  });
  const grid = timelineLayer(traces, steps, "MixCache decision timeline: the granularity reused at each step", [
    `First prompt, seed ${traces[0].seed}. full = every module computed; step / cfg / block = that cache reused.`,
    ...(counts.length <= 3 ? counts : [`${traces.length} points; decision counts per point are in the report's table.`]),
  ]);
  const eValues: Array<{ row: string; step: number; value: number; series: string }> = [];
  // E against the budget for the defaults and main points (at most 6 lines stay readable)
  const eTraces = traces.filter((t) => !abl(t)).sort((a, b) => Number(!!pointOf(b)?.default) - Number(!!pointOf(a)?.default)).slice(0, 6);
  for (const t of eTraces)
    for (const row of t.trace) {
      const E = row.E, b = row.budget;
      if (typeof E === "number" && Number.isFinite(E)) eValues.push({ row: t.tag, step: row.step + 0.5, value: E, series: "E (accumulated error)" });
      if (typeof b === "number" && Number.isFinite(b)) eValues.push({ row: t.tag, step: row.step + 0.5, value: b, series: "budget" });
    }
  const vconcat: unknown[] = [grid];
  if (eValues.length) {
    const mix = methodColors(eTraces.map((t) => t.tag));
    const ex = { field: "step", type: "quantitative", title: "step index", scale: { domain: [0, steps], nice: false }, axis: { tickMinStep: 1, format: "d" } };
    // target-speedup points rescale the budget per step (it can explode when nothing is cached):
    // the axis follows E, showing budgets up to a few times the largest E and clipping the rest
    const es = eValues.filter((v) => v.series !== "budget").map((v) => v.value);
    const bs = eValues.filter((v) => v.series === "budget").map((v) => v.value).sort((a, b) => a - b);
    const eMax = es.length ? Math.max(...es) : 0;
    const bMed = bs.length ? bs[Math.floor(bs.length / 2)] : 0;
    let yMax = Math.max(eMax * 1.25, Math.min(bMed * 1.1, eMax > 0 ? eMax * 4 : bMed * 1.1));
    if (!(yMax > 0)) yMax = 1;
    const ey = { field: "value", type: "quantitative", title: "E and budget", scale: { domain: [0, yMax], zero: true, nice: true } };
    const ecolor = { field: "row", type: "nominal", title: "point", scale: { domain: mix.domain, range: mix.domain.map((_, i) => MIX_COLORS[i % MIX_COLORS.length]) }, legend: { orient: "right" } };
    vconcat.push({
      title: { text: "Accumulated error E (solid) against the error budget (dashed)", fontSize: 12.5 },
      width: 760,
      height: 130,
      layer: [
        { data: { values: eValues.filter((v) => v.series !== "budget") }, mark: { type: "line", strokeWidth: 1.8, interpolate: "step", clip: true }, encoding: { x: ex, y: ey, color: ecolor } },
        { data: { values: eValues.filter((v) => v.series === "budget") }, mark: { type: "line", strokeWidth: 1.4, strokeDash: [5, 4], interpolate: "step", clip: true }, encoding: { x: ex, y: ey, color: { ...ecolor, legend: null } } },
      ],
    });
  }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    config: CONFIG,
    spacing: 18,
    resolve: { scale: { color: "independent" } },
    vconcat,
  } as unknown as TopLevelSpec;
}

/** Every method's default point (and every MixCache point): its own per-step actions. */
function decisionsSpec(r: BenchResults): TopLevelSpec | null {
  const traces = r.traces.filter((t) => t.trace.length > 0 && r.protocol.points.find((p) => p.id === t.point)?.default);
  if (!traces.length) return null;
  const steps = Math.max(...traces.map((t) => Math.max(t.steps, t.trace.length)));
  const noTrace = [...new Set(r.traces.filter((t) => t.trace.length === 0).map((t) => t.method))];
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    config: CONFIG,
    ...timelineLayer(traces, steps, "Per-step decisions of every method's default point (first prompt)", [
      "Each method's own trace actions: full = computed; anything else = something reused or extrapolated." +
        (noTrace.length ? ` No per-step trace: ${noTrace.join(", ")}.` : ""),
    ]),
  } as unknown as TopLevelSpec;
}

// ---------------------------------------------------------------------------------------------
// Rendering

/** Vega-Lite spec -> SVG text, headless. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // vega-lite warns (to the console) about merged legends of layered charts: expected here
  const compiled = compile(spec, { logger: vega.logger(vega.None) }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export type PngRenderer = (svg: string) => Uint8Array;

let resvgCache: { render: PngRenderer | null; error: string | null } | null = null;

/** The SVG -> PNG renderer (resvg), or why it is unavailable. */
async function pngRenderer(): Promise<{ render: PngRenderer | null; error: string | null }> {
  if (resvgCache) return resvgCache;
  try {
    const { Resvg } = await import("@resvg/resvg-js");
    const render: PngRenderer = (svg) =>
      new Resvg(svg, {
        fitTo: { mode: "zoom", value: 2 },
        background: "white",
        font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans", sansSerifFamily: "DejaVu Sans" },
      }).render().asPng();
    render('<svg xmlns="http://www.w3.org/2000/svg" width="2" height="2"><rect width="2" height="2" fill="red"/></svg>');
    resvgCache = { render, error: null };
  } catch (e) {
    resvgCache = { render: null, error: `@resvg/resvg-js could not load (${(e as Error).message.split("\n")[0]}); plots are SVG only` };
  }
  return resvgCache;
}

export interface RenderedPlot {
  name: string;
  title: string;
  /** paths relative to the report folder */
  svg: string;
  png: string | null;
  width: number;
  height: number;
}

/** The plot specs for a results file (those that have data). */
function plotSpecs(r: BenchResults): Array<{ name: string; title: string; spec: TopLevelSpec }> {
  const out: Array<{ name: string; title: string; spec: TopLevelSpec }> = [];
  if (paretoData(r).points.length) out.push({ name: "pareto", title: "Pareto chart: compute speedup vs PSNR", spec: paretoSpec(r) });
  const red = redundancySpec(r);
  if (red) out.push({ name: "redundancy", title: "Redundancy analysis", spec: red });
  const tl = timelineSpec(r);
  if (tl) out.push({ name: "timeline", title: "MixCache decision timeline", spec: tl });
  const all = decisionsSpec(r);
  if (all) out.push({ name: "decisions", title: "Per-step decisions of every method", spec: all });
  return out;
}

/** Render every plot into <reportDir>/plots/<name>.svg (+ .png when resvg loads). */
export async function renderPlots(r: BenchResults, reportDir: string): Promise<{ plots: RenderedPlot[]; pngError: string | null }> {
  const dir = join(reportDir, "plots");
  mkdirSync(dir, { recursive: true });
  const png = await pngRenderer();
  const plots: RenderedPlot[] = [];
  for (const p of plotSpecs(r)) {
    const svg = await renderSvg(p.spec);
    writeFileAtomic(join(dir, `${p.name}.svg`), svg);
    let pngPath: string | null = null;
    if (png.render) {
      writeFileAtomic(join(dir, `${p.name}.png`), png.render(svg));
      pngPath = `plots/${p.name}.png`;
    }
    const w = /<svg[^>]*\swidth="([\d.]+)"/.exec(svg), h = /<svg[^>]*\sheight="([\d.]+)"/.exec(svg);
    plots.push({ name: p.name, title: p.title, svg: `plots/${p.name}.svg`, png: pngPath, width: w ? Number(w[1]) : 0, height: h ? Number(h[1]) : 0 });
  }
  return { plots, pngError: png.error };
}
