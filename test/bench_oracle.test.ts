/** `mixcache bench --oracle FILE`: oracle schedules as bench rows, and the report's oracle series. */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { main } from "../src/cli/main.ts";
import { inspectModel } from "../src/models/load.ts";
import { DEFAULT_VOCAB_PATH, loadVocab } from "../src/data/shapes.ts";
import { promptsFromTokenizer } from "../src/bench/protocol.ts";
import { checkOracleModel, checkOraclePrompts, oracleCovers, oracleLabel, oracleSet, parseOracle, readOracle } from "../src/bench/oracle.ts";
import { boundTable } from "../src/bench/bound.ts";
import type { BenchResults } from "../src/bench/results.ts";
import { buildReport } from "../src/bench/report.ts";
import { paretoData } from "../src/bench/plots.ts";
import { UsageError } from "../src/errors.ts";
import { TINY_TOKENS, makeTinyModelDir } from "./support/tinyModel.ts";
import { capture } from "./support/capture.ts";
import { tempDir } from "./support/tmp.ts";

const STEPS = 6;
const HYBRID = "step,cfg,block";

/** An oracle file in the form `mixcache plan --json` prints. */
function oracleJson(prompts: string[], over: Record<string, unknown> = {}) {
  return {
    model: "tiny-test", path: "/tmp/x.json", prompts, seeds: [0], steps: STEPS, seconds: 1,
    schedules: [
      { target: 2, grans: HYBRID, plan: "FSFCFF", speedup: 1.9, psnrPredicted: 30, psnrMeasured: 31.5, dpPlan: "FSFCFF", dpPsnr: 30, evaluations: 2 },
      { target: 1.5, grans: "step", plan: "FFSFFF", speedup: 1.2, psnrMeasured: 40 },
      { target: 1.5, grans: HYBRID, plan: "FFSFFF", speedup: 1.2, psnrMeasured: 40 },
      { target: 2, grans: "block", plan: "FBBFBF", speedup: 1.4, psnrMeasured: 20 },
    ],
    infeasible: [{ target: 2, set: "cfg", reason: "no schedule fits" }],
    ...over,
  };
}

const usage = (re: RegExp, fix?: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof UsageError, String(e));
  assert.match(e.message, re);
  if (fix) assert.match(e.fix ?? "", fix);
  return true;
};

test("oracle file: both forms parse; sets named; schedules sorted by target and set", () => {
  const p = ["a red circle moving left on a black background", "a blue square moving right on a black background"];
  const o = parseOracle(JSON.stringify(oracleJson(p)), "o.json");
  assert.equal(o.model, "tiny-test");
  assert.equal(o.steps, STEPS);
  assert.deepEqual(o.seeds, [0]);
  assert.deepEqual(o.schedules.map((s) => oracleLabel(s.set, s.target)), ["oracle-hybrid@1.5x", "oracle-step@1.5x", "oracle-hybrid@2x", "oracle-block@2x"]);
  assert.equal(o.schedules[2].psnrPlanner, 31.5);
  assert.deepEqual(o.infeasible, [{ target: 2, set: "cfg", reason: "no schedule fits" }]);
  assert.equal([o.fn, o.bn, o.solver].join(), ",,", "the --json form records no fn / bn / solver: MixCache's defaults");
  assert.equal(oracleSet("step,cfg,block"), "hybrid");
  assert.equal(oracleSet("hybrid"), "hybrid");
  assert.equal(oracleSet("cfg,step"), "step+cfg");
  // the profile form (`mixcache plan --on-bench N --out FILE`)
  const prof = parseOracle(JSON.stringify({
    meta: { method: "mixcache-plans", model: "tiny-test", steps: STEPS, shift: 3, sampler: "unipc", guidance: 4, prompts: p, seeds: [0], fn: 1, bn: 2, solver: "keep", oracle: "planned on the first 2 bench prompts themselves" },
    schedules: [{ steps: STEPS, target: 2, plan: "FSSFSF", speedup: 2, grans: "step", psnrPredicted: 1, psnrMeasured: 2 }],
  }), "p.json");
  assert.deepEqual([prof.fn, prof.bn, prof.solver, prof.guidance, prof.sampler], [1, 2, "keep", 4, "unipc"]);
  assert.equal(prof.schedules[0].set, "step");
  // the stored oracle files: every schedule valid, for the embedded models by name
  for (const [file, model] of [["docs/oracle/reference.json", "reference"], ["docs/oracle/textures.json", "textures"]]) {
    const d = readOracle(file);
    assert.equal(d.model, inspectModel(model).name, file);
    assert.equal(d.prompts.length, 8);
    assert.deepEqual([...new Set(d.schedules.map((s) => s.set))].sort(), ["block", "cfg", "hybrid", "step"]);
    assert.deepEqual([...new Set(d.schedules.map((s) => s.target))], [1.5, 2, 3, 4]);
  }
});

test("oracle file: a missing or malformed file is a usage error naming the problem and how to write one", () => {
  const p = ["a red circle moving left on a black background"];
  const dir = tempDir("mixcache-oracle-");
  assert.throws(() => readOracle(join(dir, "none.json")), usage(/no such file/, /mixcache plan --model NAME --on-bench/));
  const bad = (j: unknown, re: RegExp) => assert.throws(() => parseOracle(typeof j === "string" ? j : JSON.stringify(j), "f.json"), usage(re, /mixcache plan/));
  bad("{", /not JSON/);
  bad([], /not a JSON object/);
  bad({ ...oracleJson(p), model: undefined }, /no `model`/);
  bad({ ...oracleJson(p), prompts: [] }, /no `prompts`/);
  bad({ ...oracleJson(p), prompts: ["a", "a"] }, /listed twice/);
  bad({ ...oracleJson(p), seeds: [-1] }, /no `seeds`/);
  bad({ ...oracleJson(p), steps: undefined }, /no `steps`/);
  bad({ ...oracleJson(p), schedules: [] }, /no `schedules`/);
  const one = (s: Record<string, unknown>) => ({ ...oracleJson(p), schedules: [{ target: 2, grans: "step", plan: "FSFSFF", ...s }] });
  bad(one({ target: 1 }), /target is not a speedup above 1/);
  bad(one({ plan: "FXFF" }), /plan is not a string of F, S, C, B/);
  bad(one({ plan: "FSF" }), /3 letters for 6 steps/);
  bad(one({ grans: "tile" }), /"tile" is not a granularity/);
  bad(one({ grans: undefined }), /grans is missing/);
  bad(one({ plan: "FSFCFF" }), /caches with "C" \(cfg\), outside its granularities/);
  bad(one({ plan: "SFFFFF" }), /starts with a cached step/);
  bad(one({ steps: 8 }), /planned for 8 steps, the file for 6/);
  bad({ ...oracleJson(p), schedules: [{ target: 2, grans: "step", plan: "FSFSFF" }, { target: 2, grans: "step", plan: "FSSFFF" }] }, /two schedules for step at 2x/);
});

test("oracle checks: another model, another step count, prompts that do not start with the oracle's, no shared seed", () => {
  const p = ["p0", "p1"];
  const o = parseOracle(JSON.stringify(oracleJson(p)), "o.json");
  assert.throws(() => checkOracleModel(o, { name: "mixcache-textures", steps: STEPS }), usage(/planned for model tiny-test; this bench runs model mixcache-textures/, /oracle file of mixcache-textures, or plan one: mixcache plan --model mixcache-textures --on-bench 2/));
  assert.throws(() => checkOracleModel(o, { name: "tiny-test", steps: 50 }), usage(/planned for 6 steps; this bench runs 50/, /--steps 6/));
  checkOracleModel(o, { name: "tiny-test", steps: STEPS, guidance: 4 });
  const g = parseOracle(JSON.stringify({ meta: { model: "tiny-test", steps: STEPS, guidance: 5, prompts: p, seeds: [0] }, schedules: oracleJson(p).schedules }), "g.json");
  assert.throws(() => checkOracleModel(g, { name: "tiny-test", steps: STEPS, guidance: 4 }), usage(/other sampling settings \(guidance 5 vs 4\)/));
  assert.throws(() => checkOraclePrompts(o, ["p0"], [0]), usage(/planned on 2 bench prompts; this bench has 1/, /--prompts 2/));
  assert.throws(() => checkOraclePrompts(o, ["p1", "p0"], [0]), usage(/prompt 0 is "p1", the oracle's "p0"/, /use the preset's prompt list/));
  assert.throws(() => checkOraclePrompts(o, ["p0", "p1"], [1, 2]), usage(/planned with seed 0; this bench runs 1, 2, so no oracle row would run/, /--seeds 0/));
  assert.deepEqual(checkOraclePrompts(o, ["p0", "p1"], [0]), []);
  const notes = checkOraclePrompts(o, ["p0", "p1", "p2"], [0, 1]);
  assert.equal(notes.length, 1);
  assert.match(notes[0], /the first 2 prompts, seed 0/);
  assert.ok(oracleCovers(o, "p1", 0) && !oracleCovers(o, "p2", 0) && !oracleCovers(o, "p1", 1));
});

// ---------------------------------------------------------------------------------------------
// End to end on a tiny model

let model: string;
let prompts: string[];
let out: string;
let oracleFile: string;
let res: BenchResults;
const args = () => ["bench", "--model", model, "--methods", "fewer-steps,fora,mixcache,mixcache-plus", "--steps", String(STEPS), "--prompts", "3", "--oracle", oracleFile, "--out", out, "--threads", "1"];

before(async () => {
  model = makeTinyModelDir(7);
  prompts = promptsFromTokenizer(loadVocab(DEFAULT_VOCAB_PATH), TINY_TOKENS, 3).map((x) => x.text);
  // stored schedules for the tiny model, so the planned MixCache points exist
  mkdirSync(join(model, "cache_profiles"), { recursive: true });
  const plans = { 1.5: "FFSFFF", 2: "FSFSFF", 3: "FSSFSF", 4: "FSSSSF" } as Record<string, string>;
  writeFileSync(join(model, "cache_profiles", "mixcache-plans.json"), JSON.stringify({
    meta: { method: "mixcache-plans", model: "tiny-test", steps: STEPS, shift: 3, sampler: "unipc", guidance: 4, prompts: ["x"], seeds: [0], fn: 1, bn: 1, seconds: 1, created: "2020-01-01T00:00:00.000Z", solver: "skip-corrector+order1" },
    schedules: Object.entries(plans).map(([t, plan]) => ({ steps: STEPS, target: Number(t), plan, speedup: Number(t), grans: HYBRID, psnrPredicted: 30, psnrMeasured: 30 })),
  }));
  const dir = tempDir("mixcache-oracle-bench-");
  out = join(dir, "bench");
  oracleFile = join(dir, "oracle.json");
  writeFileSync(oracleFile, JSON.stringify(oracleJson(prompts.slice(0, 2))));
  const r = await capture(() => main([...args(), "--json"]));
  assert.equal(r.code, 0, r.err);
  res = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as BenchResults;
});

test("bench --oracle: one row per schedule on the oracle's prompts and seeds only, method oracle, labelled", () => {
  const o = res.protocol.oracle!;
  assert.equal(o.file, oracleFile);
  assert.deepEqual([o.promptIndices, o.runSeeds], [[0, 1], [0]]);
  const oracle = res.summary.filter((s) => s.oracle);
  // oracle points last, by target then set
  assert.deepEqual(oracle.map((s) => s.point), ["oracle-hybrid@1.5x", "oracle-step@1.5x", "oracle-hybrid@2x", "oracle-block@2x"]);
  assert.deepEqual(res.summary.slice(-4).map((s) => s.point), oracle.map((s) => s.point));
  for (const s of oracle) {
    assert.equal(s.method, "oracle");
    assert.equal(s.n, 2, `${s.point} runs on the 2 planning prompts`);
    const pt = res.protocol.points.find((p) => p.id === s.point)!;
    assert.equal(pt.config.plan, s.oracle!.plan);
    assert.equal(pt.oracle!.set, s.oracle!.set);
  }
  for (const s of res.summary.filter((x) => !x.oracle)) assert.equal(s.n, 3, s.point);
  assert.ok(res.rows.filter((r) => r.method === "oracle").every((r) => r.promptIndex < 2));
  // the same schedule under two names gives the same clip
  const q = (id: string) => res.rows.filter((r) => r.point === id).map((r) => r.quality!.psnrFrame);
  assert.deepEqual(q("oracle-hybrid@1.5x"), q("oracle-step@1.5x"));
  // compute speedup of a followed schedule: FSFCFF runs 4 full steps, a step-cached one and a CFG-cached one
  assert.ok(res.summary.find((s) => s.point === "oracle-hybrid@2x")!.computeSpeedup > 1.2);
  assert.ok(res.session.warnings.some((w) => /oracle rows run on the prompts and seeds they were planned on only/.test(w)));
  assert.equal(res.session.complete, true);
  assert.equal(res.session.rowsTotal, res.rows.length);
});

test("bench --oracle: results.md has the bound table and keeps oracle rows out of the verdicts", () => {
  const md = readFileSync(join(out, "results.md"), "utf8");
  assert.match(md, /\| oracle \| oracle-hybrid@1\.5x \|/);
  assert.match(md, /## Oracle bound against the methods at each target/);
  assert.match(md, /\| 2x \| [\d.]+ dB \([\d.]+x\) \| [\d.]+ dB \(block, [\d.]+x\) \| [\d.]+ dB \([\d.]+x\) \| [\d.]+ dB \([\d.]+x\) \| [\d.]+ dB \([\d.]+x\) \|/);
  assert.match(md, /### Oracle schedules/);
  assert.match(md, /\| oracle-hybrid@2x \| hybrid \| 2x \| [\d.]+x \| [\d.]+ \| [\d.]+ \| [\d.]+ \| 1\.90x \| 31\.50 \| 2 \| `FSFCFF` \|/);
  assert.match(md, /No schedule: cfg at 2x/);
  const floor = md.slice(md.indexOf("## Highest compute speedup at a quality floor"), md.indexOf("## Oracle bound"));
  assert.ok(floor.length > 0 && !floor.includes("oracle-"), "the quality-floor verdicts leave the oracle out");
  const csv = readFileSync(join(out, "results.csv"), "utf8");
  assert.match(csv, /\noracle,oracle-block@2x,oracle-block@2x,block,false,/);

  const t = boundTable(res)!;
  assert.deepEqual(t.rows.map((x) => x.target), [1.5, 2]);
  const x2 = t.rows[1];
  assert.equal(x2.hybrid!.point, "oracle-hybrid@2x");
  assert.equal(x2.single!.point, "oracle-block@2x");
  assert.equal(x2.planned!.point, "mixcache-planned-x2");
  assert.equal(x2.plannedPlus!.method, "mixcache-plus");
  assert.equal(x2.fewerSteps!.point, "fewer-steps-x2");
  assert.ok(x2.bestPeer === null || x2.bestPeer.method === "fora");
  // every cell is a mean over the oracle's rows (2 prompts), not the point's 3
  for (const c of [x2.hybrid!, x2.planned!, x2.fewerSteps!]) assert.equal(c.n, 2, c.point);
  const rows = res.rows.filter((r) => r.point === "mixcache-planned-x2" && r.promptIndex < 2);
  assert.ok(Math.abs(x2.planned!.psnrFrame - (rows[0].quality!.psnrFrame + rows[1].quality!.psnrFrame) / 2) < 1e-9);
  assert.ok(Math.abs(x2.gapPlanned! - (x2.hybrid!.psnrFrame - x2.planned!.psnrFrame)) < 1e-12);
});

test("bench --oracle: resumes from the journal; a changed schedule reruns only its own rows", async () => {
  const again = await capture(() => main([...args(), "--json"]));
  assert.equal(again.code, 0, again.err);
  const j = JSON.parse(again.out);
  assert.equal(j.rows_run, 0);
  assert.equal(j.rows_reused, res.rows.length);
  assert.ok(j.summary.some((s: { point: string; oracle?: { set: string } }) => s.point === "oracle-block@2x" && s.oracle?.set === "block"));
  const changed = oracleJson(prompts.slice(0, 2));
  changed.schedules[3] = { ...changed.schedules[3], plan: "FBFBFF" };
  writeFileSync(oracleFile, JSON.stringify(changed));
  const r = await capture(() => main([...args(), "--json"]));
  assert.equal(r.code, 0, r.err);
  assert.equal(JSON.parse(r.out).rows_run, 2, "oracle-block@2x on its 2 prompts");
  writeFileSync(oracleFile, JSON.stringify(oracleJson(prompts.slice(0, 2))));
  const back = await capture(() => main([...args(), "--json"]));
  assert.equal(JSON.parse(back.out).rows_run, 0, "the first schedule's rows are still in the journal");
});

test("bench --oracle: a mismatched oracle stops the bench before anything is written", async () => {
  const dir = tempDir("mixcache-oracle-bad-");
  const o = (over: Record<string, unknown>) => {
    const f = join(dir, `o${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(f, JSON.stringify(oracleJson(prompts.slice(0, 2), over)));
    return f;
  };
  const run = (file: string, extra: string[] = []) => capture(() => main(["bench", "--model", model, "--methods", "fewer-steps", "--steps", String(STEPS), "--prompts", "3", "--oracle", file, "--out", join(dir, "b"), "--threads", "1", ...extra]));
  const cases: Array<[string, string[], RegExp]> = [
    [o({ model: "mixcache-reference-shapes" }), [], /planned for model mixcache-reference-shapes; this bench runs model tiny-test/],
    [o({ steps: 8, schedules: [{ target: 2, grans: "step", plan: "FSFSFSFF" }] }), [], /planned for 8 steps; this bench runs 6/],
    [o({ prompts: [prompts[1], prompts[0]] }), [], /prompt 0 is .*, the oracle's/],
    [o({}), ["--prompts", "1"], /planned on 2 bench prompts; this bench has 1/],
    [o({}), ["--seeds", "3"], /no oracle row would run/],
    [join(dir, "missing.json"), [], /no such file/],
  ];
  for (const [file, extra, re] of cases) {
    const r = await run(file, extra);
    assert.equal(r.code, 2, `${re}: ${r.err}`);
    assert.match(r.err, re);
    assert.match(r.err, /fix: /);
  }
  assert.ok(!existsSync(join(dir, "b")), "no output folder");
});

test("report: the oracle series in the Pareto chart and its table, labelled and out of every verdict", async () => {
  const rep = await buildReport(out);
  const html = readFileSync(rep.index, "utf8");
  assert.match(html, /<h3>Oracle bound against the methods at each target<\/h3>/);
  assert.match(html, /<span class="abl" title="oracle bound: static MixCache schedules planned on these 2 bench prompts themselves/);
  assert.match(html, /Dashed grey lines with squares: the oracle bound/);
  const best = html.slice(html.indexOf("Best point per method"), html.indexOf("Oracle bound against the methods"));
  assert.ok(best.length > 0 && !best.includes("oracle-"), "per-method verdicts leave the oracle out");
  const cards = html.slice(html.indexOf('<div class="cards">'), html.indexOf('<section id="pareto">'));
  assert.ok(!cards.includes("oracle-"), "headline cards leave the oracle out");
  assert.match(html, /--oracle /);
  const d = paretoData(res);
  const series = [...new Set(d.points.filter((p) => p.oracle).map((p) => p.method))];
  assert.deepEqual(series.sort(), ["oracle block", "oracle hybrid", "oracle step"]);
  assert.ok(d.points.filter((p) => p.oracle).every((p) => p.kind === "oracle bound" && !p.mix && !p.label));
  const svg = readFileSync(join(rep.dir, "plots", "pareto.svg"), "utf8");
  for (const t of ["oracle hybrid", "oracle block", "oracle bound", "planned on the first 2 prompt(s) themselves"]) assert.ok(svg.includes(t), t);
});
