/**
 * The oracle bound as bench rows (`mixcache bench --oracle FILE`).
 *
 * `mixcache plan --on-bench N --sets hybrid,step,cfg,block --out FILE` plans static MixCache
 * schedules on the first N bench prompts themselves: the best static schedule its search finds
 * there, per target speed and granularity set. Measured by the planner they are not comparable
 * with the bench (the planner reads unclamped clip PSNR over [-1, 1] with peak 2, about 1 dB below
 * the bench's clamped PSNR (b), and has no PSNR (a)). Here each schedule of the file becomes one
 * bench point, run as `mixcache` with `plan=<letters>` (with the file's fn / bn / solver when it
 * records them) and measured with the bench's own metrics, on the prompts and seeds it was planned
 * on only: there it is an upper bound for a static schedule (of that search), not a method. Its
 * rows carry the method name `oracle` and the point name `oracle-<set>@<target>x`
 * (`oracle-hybrid@2x`, `oracle-step@2x`); verdicts on the best method leave them out.
 *
 * Two file forms are read: what `mixcache plan ... --json` prints (`model`, `prompts`, `seeds`,
 * `steps`, `schedules[]`, `infeasible[]`; docs/oracle/*.json) and the profile `--out FILE` writes
 * (`meta` with model, prompts, seeds, steps, fn, bn, solver; `schedules[]` with `steps`). Every
 * check runs before the bench loads the model or writes a file: `readOracle` (the file itself),
 * `checkOracleModel` (model name and step count) and `checkOraclePrompts` (the bench's prompts
 * start with the oracle's, and it runs at least one of its seeds).
 *
 * This file imports no other bench file (protocol.ts builds the points from `oraclePoints`).
 */
import { existsSync, readFileSync } from "node:fs";
import { UsageError } from "../errors.ts";
import { fmt } from "../cache/knobs.ts";
import { LETTER_ACTION, planSegments } from "../cache/plan/dp.ts";
import { GRANULARITIES } from "../cache/strategies/mixcache-decision.ts";

/** The method name of oracle rows (not a registered strategy: they run as `mixcache`). */
export const ORACLE_METHOD = "oracle";

/** Granularity sets in display order. */
export const ORACLE_SETS = ["hybrid", "step", "cfg", "block"] as const;

const PLAN_FIX = "write it with `mixcache plan --model NAME --on-bench 8 --sets hybrid,step,cfg,block --targets 1.5,2,3,4 --out FILE` (or `--json`, whose output is read too)";

export interface OracleSchedule {
  /** "hybrid" (every granularity allowed) or a single granularity (step | cfg | block); other subsets joined by "+" */
  set: string;
  /** the granularities as the file lists them */
  grans: string;
  target: number;
  /** one letter per step: F full, S step, C CFG, B block cache */
  plan: string;
  /** compute speedup and PSNR as the planner measured them (unclamped clip PSNR, peak 2, mean over its prompts) */
  speedup: number | null;
  psnrPlanner: number | null;
}

export interface OracleFile {
  path: string;
  /** the model name the schedules were planned for (mixcache.json `name`) */
  model: string;
  steps: number;
  /** the planning prompts: the first N bench prompts */
  prompts: string[];
  seeds: number[];
  /** block-cache and solver settings the schedules were measured with (null: the MixCache defaults) */
  fn: number | null;
  bn: number | null;
  solver: string | null;
  /** sampler settings, when the file records them */
  guidance: number | null;
  shift: number | null;
  sampler: string | null;
  schedules: OracleSchedule[];
  /** target and set pairs no schedule reaches */
  infeasible: Array<{ target: number; set: string; reason: string }>;
}

/** What an oracle point carries in the protocol, the results' points and the summary. */
export interface OracleTag {
  set: string;
  target: number;
  plan: string;
  plannerSpeedup: number | null;
  plannerPsnr: number | null;
}

/** The oracle in results.json (`protocol.oracle`). */
export interface OracleInfo {
  file: string;
  model: string;
  steps: number;
  prompts: string[];
  seeds: number[];
  infeasible: Array<{ target: number; set: string; reason: string }>;
  /** bench prompts (indices) and seeds the oracle rows ran on */
  promptIndices: number[];
  runSeeds: number[];
  note: string;
}

/** `oracle-hybrid@2x`, `oracle-step@1.5x`. */
export const oracleLabel = (set: string, target: number): string => `oracle-${set}@${fmt(target)}x`;

/** "step,cfg,block" or "hybrid" -> "hybrid"; "step" -> "step"; "step,cfg" -> "step+cfg". */
export function oracleSet(grans: string): string {
  const gs = grans.split(/[,+]/).map((g) => g.trim()).filter(Boolean);
  if (gs.length === 1 && gs[0] === "hybrid") return "hybrid";
  for (const g of gs) if (!(GRANULARITIES as readonly string[]).includes(g)) throw new Error(`"${g}" is not a granularity (${GRANULARITIES.join(", ")}, or hybrid)`);
  const uniq = GRANULARITIES.filter((g) => gs.includes(g));
  if (!uniq.length) throw new Error("no granularity");
  return uniq.length === GRANULARITIES.length ? "hybrid" : uniq.join("+");
}

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v);
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** Read and check an oracle file; UsageError naming the problem and how to write a good one. */
export function readOracle(path: string): OracleFile {
  if (!existsSync(path)) throw new UsageError(`--oracle ${path}: no such file`, `pass the file \`mixcache plan --on-bench N\` wrote (docs/oracle/reference.json, docs/oracle/textures.json), or ${PLAN_FIX}`);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`--oracle ${path}: cannot read it (${(e as Error).message})`, "pass a readable JSON file");
  }
  return parseOracle(text, path);
}

/** Parse the text of an oracle file (either form, see the file comment). */
export function parseOracle(text: string, path: string): OracleFile {
  const bad = (what: string): never => {
    throw new UsageError(`--oracle ${path} is not an oracle schedule file: ${what}`, PLAN_FIX);
  };
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    return bad(`not JSON (${(e as Error).message})`);
  }
  if (!isObj(j)) return bad("not a JSON object");
  const profile = isObj(j.meta);
  const head = (profile ? j.meta : j) as Record<string, unknown>;
  const model = head.model;
  if (typeof model !== "string" || !model) return bad("no `model` (the model name it was planned for)");
  const prompts = head.prompts;
  if (!Array.isArray(prompts) || !prompts.length || !prompts.every((p) => typeof p === "string" && p.length > 0)) return bad("no `prompts` (the prompts it was planned on, a list of strings)");
  if (new Set(prompts).size !== prompts.length) return bad("a prompt is listed twice");
  const seeds = head.seeds;
  if (!Array.isArray(seeds) || !seeds.length || !seeds.every((s) => Number.isSafeInteger(s) && (s as number) >= 0)) return bad("no `seeds` (a list of non-negative integers)");
  if (!Array.isArray(j.schedules) || !j.schedules.length) return bad("no `schedules`");
  let steps = num(head.steps);
  if (steps === null && profile) steps = num((j.schedules[0] as Record<string, unknown> | undefined)?.steps);
  if (steps === null || !Number.isInteger(steps) || steps < 2) return bad("no `steps` (the step count it was planned for)");
  const fn = num(head.fn), bn = num(head.bn);
  // the profile form records the UniPC mode of its cached steps; absent there means "keep"
  const solver = typeof head.solver === "string" ? head.solver : profile ? "keep" : null;
  const schedules: OracleSchedule[] = [];
  const seen = new Set<string>();
  j.schedules.forEach((raw: unknown, k: number) => {
    const at = `schedules[${k}]`;
    if (!isObj(raw)) return bad(`${at} is not an object`);
    const target = num(raw.target);
    if (target === null || !(target > 1)) return bad(`${at}.target is not a speedup above 1`);
    const plan = raw.plan;
    if (typeof plan !== "string" || !/^[FSCB]+$/.test(plan)) return bad(`${at}.plan is not a string of F, S, C, B letters`);
    if (plan.length !== steps) return bad(`${at}.plan has ${plan.length} letters for ${steps} steps`);
    if (raw.steps !== undefined && raw.steps !== steps) return bad(`${at} was planned for ${String(raw.steps)} steps, the file for ${steps}`);
    if (typeof raw.grans !== "string") return bad(`${at}.grans is missing (hybrid, step, cfg, block or a comma list)`);
    let set: string;
    try {
      set = oracleSet(raw.grans);
    } catch (e) {
      return bad(`${at}.grans "${raw.grans}": ${(e as Error).message}`);
    }
    const allowed = set === "hybrid" ? [...GRANULARITIES] : set.split("+");
    for (const ch of plan) {
      const a = LETTER_ACTION[ch];
      if (a !== "full" && !allowed.includes(a)) return bad(`${at} (${set}) caches with "${ch}" (${a}), outside its granularities`);
    }
    try {
      planSegments(plan);
    } catch (e) {
      return bad(`${at}.plan: ${(e as Error).message.split("\n")[0]}`);
    }
    const key = `${set}@${target}`;
    if (seen.has(key)) return bad(`two schedules for ${set} at ${fmt(target)}x`);
    seen.add(key);
    schedules.push({ set, grans: raw.grans, target, plan, speedup: num(raw.speedup), psnrPlanner: num(raw.psnrMeasured) });
  });
  const infeasible = (Array.isArray(j.infeasible) ? j.infeasible : [])
    .filter(isObj)
    .map((x) => {
      let set = String(x.set ?? "?");
      try {
        set = oracleSet(set);
      } catch {
        // kept as written
      }
      return { target: num(x.target) ?? NaN, set, reason: String(x.reason ?? "") };
    })
    .filter((x) => Number.isFinite(x.target));
  const order = (s: string) => {
    const i = (ORACLE_SETS as readonly string[]).indexOf(s);
    return i < 0 ? ORACLE_SETS.length : i;
  };
  schedules.sort((a, b) => a.target - b.target || order(a.set) - order(b.set) || a.set.localeCompare(b.set));
  return {
    path, model, steps, prompts: [...prompts] as string[], seeds: [...seeds] as number[], fn, bn, solver,
    guidance: num(head.guidance), shift: num(head.shift), sampler: typeof head.sampler === "string" ? head.sampler : null,
    schedules, infeasible,
  };
}

/** The model and the step count must be the ones the schedules were planned for. */
export function checkOracleModel(o: OracleFile, model: { name: string; steps: number; guidance?: number; shift?: number; sampler?: string }): void {
  if (o.model !== model.name)
    throw new UsageError(`--oracle ${o.path} was planned for model ${o.model}; this bench runs model ${model.name}`,
      `pass the oracle file of ${model.name}, or plan one: mixcache plan --model ${model.name} --on-bench ${o.prompts.length} --sets hybrid,step,cfg,block --targets ${targetsOf(o)} --out FILE`);
  if (o.steps !== model.steps)
    throw new UsageError(`--oracle ${o.path} was planned for ${o.steps} steps; this bench runs ${model.steps}`,
      `run the bench with --steps ${o.steps}, or plan the oracle for ${model.steps} steps (mixcache plan --steps ${model.steps} --on-bench ${o.prompts.length} ... --out FILE)`);
  const diff: string[] = [];
  if (o.guidance !== null && model.guidance !== undefined && o.guidance !== model.guidance) diff.push(`guidance ${o.guidance} vs ${model.guidance}`);
  if (o.shift !== null && model.shift !== undefined && o.shift !== model.shift) diff.push(`shift ${o.shift} vs ${model.shift}`);
  if (o.sampler !== null && model.sampler !== undefined && o.sampler !== model.sampler) diff.push(`sampler ${o.sampler} vs ${model.sampler}`);
  if (diff.length) throw new UsageError(`--oracle ${o.path} was planned with other sampling settings (${diff.join(", ")})`, "plan the oracle again for this model's settings");
}

const targetsOf = (o: OracleFile) => [...new Set(o.schedules.map((s) => s.target))].map((t) => fmt(t)).join(",");

/**
 * The bench's prompts must start with the oracle's (in order) and it must run one of its seeds.
 * Returns the notes to show when the oracle rows cover only part of the bench (other prompts or
 * seeds): they run on the oracle's prompts and seeds only.
 */
export function checkOraclePrompts(o: OracleFile, benchPrompts: readonly string[], benchSeeds: readonly number[]): string[] {
  const n = o.prompts.length;
  if (benchPrompts.length < n)
    throw new UsageError(`--oracle ${o.path} was planned on ${n} bench prompts; this bench has ${benchPrompts.length}`, `run the bench on at least its ${n} prompts (--prompts ${n})`);
  for (let i = 0; i < n; i++)
    if (benchPrompts[i] !== o.prompts[i])
      throw new UsageError(`--oracle ${o.path}: the bench's prompt ${i} is "${benchPrompts[i]}", the oracle's "${o.prompts[i]}" (its prompts must be the first ${n} bench prompts, in order)`,
        `use the preset's prompt list (no --prompt), or plan the oracle on these prompts (mixcache plan --on-bench ${n} ... --out FILE)`);
  const seeds = benchSeeds.filter((s) => o.seeds.includes(s));
  if (!seeds.length)
    throw new UsageError(`--oracle ${o.path} was planned with seed${o.seeds.length > 1 ? "s" : ""} ${o.seeds.join(", ")}; this bench runs ${benchSeeds.join(", ")}, so no oracle row would run`, `add --seeds ${o.seeds.join(",")}`);
  const notes: string[] = [];
  if (benchPrompts.length > n || seeds.length < benchSeeds.length)
    notes.push(`oracle rows run on the prompts and seeds they were planned on only (the first ${n} prompts, seed${seeds.length > 1 ? "s" : ""} ${seeds.join(", ")}); their means are over those rows, the other points' over all ${benchPrompts.length} x ${benchSeeds.length}`);
  return notes;
}

/** Is a bench group (prompt text, seed) one the oracle was planned on? */
export function oracleCovers(o: Pick<OracleInfo, "prompts" | "seeds">, prompt: string, seed: number): boolean {
  return o.prompts.includes(prompt) && o.seeds.includes(seed);
}

/** One bench point per schedule: its name, the MixCache options that follow it, and its tag. */
export function oraclePoints(o: OracleFile): Array<{ id: string; options: Record<string, unknown>; oracle: OracleTag }> {
  return o.schedules.map((s) => {
    const options: Record<string, unknown> = { plan: s.plan };
    if (o.fn !== null) options.fn = o.fn;
    if (o.bn !== null) options.bn = o.bn;
    if (o.solver !== null) options.solver = o.solver;
    return { id: oracleLabel(s.set, s.target), options, oracle: { set: s.set, target: s.target, plan: s.plan, plannerSpeedup: s.speedup, plannerPsnr: s.psnrPlanner } };
  });
}

/** What the oracle rows are (the line under every oracle table and chart, after "oracle bound: "). */
export function oracleNote(info: Pick<OracleInfo, "prompts" | "seeds">): string {
  const n = info.prompts.length;
  return `static MixCache schedules planned on these ${n} bench prompts themselves (seed${info.seeds.length > 1 ? "s" : ""} ${info.seeds.join(", ")}) and measured on them: an upper bound for a static schedule there (of the planner's search), not a method`;
}
