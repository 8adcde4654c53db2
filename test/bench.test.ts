import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../src/models/load.ts";
import { generate } from "../src/pipeline/generate.ts";
import { strategyNames } from "../src/cache/registry.ts";
import { DEFAULT_VOCAB_PATH, allCombos, loadVocab, splitCombos } from "../src/data/shapes.ts";
import { OPERATING_POINTS, PRESETS, benchPrompts, buildPoints, operatingPoints, promptAttrs, promptsFromTokenizer, resolveMethods } from "../src/bench/protocol.ts";
import { runBench, type BenchOptions } from "../src/bench/runner.ts";
import { CSV_COLUMNS } from "../src/bench/render.ts";
import { RESULTS_SCHEMA, type BenchResults } from "../src/bench/results.ts";
import { LOCK_NAME, lockDir } from "../src/bench/lock.ts";
import { MixCacheError } from "../src/errors.ts";
import { RedundancyRecorder } from "../src/bench/redundancy.ts";
import { decodePng } from "../src/media/png.ts";
import { main } from "../src/cli/main.ts";
import { parseSeeds } from "../src/cli/bench.ts";
import { TINY_TOKENS, makeTinyModelDir } from "./support/tinyModel.ts";
import { capture } from "./support/capture.ts";
import { tempDir } from "./support/tmp.ts";

const vocab = loadVocab(DEFAULT_VOCAB_PATH);
let dir: string;
let model: LoadedModel;
let out: string;
before(async () => {
  dir = makeTinyModelDir();
  model = await loadModel(dir, { threads: 1 });
  out = mkdtempSync(join(tmpdir(), "mixcache-bench-"));
});
after(async () => {
  await model.release();
  rmSync(out, { recursive: true, force: true });
});


/** Minimal RFC 4180 CSV line split (quoted cells with doubled quotes). */
function csvSplit(line: string): string[] {
  const cells: string[] = [];
  let cur = "", q = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (q) {
      if (ch === '"' && line[i + 1] === '"') (cur += '"'), i++;
      else if (ch === '"') q = false;
      else cur += ch;
    } else if (ch === '"') q = true;
    else if (ch === ",") cells.push(cur), (cur = "");
    else cur += ch;
  }
  cells.push(cur);
  return cells;
}

const finite = (x: unknown, what: string) => assert.ok(typeof x === "number" && Number.isFinite(x), `${what}: ${x}`);

test("protocol: the full prompt list covers every attribute value, 1/4 held-out, deterministic", () => {
  const full = benchPrompts(vocab, PRESETS.full.prompts);
  assert.ok(full.length >= 32);
  assert.deepEqual(benchPrompts(vocab, 32), full);
  assert.equal(new Set(full.map((p) => p.text)).size, full.length);
  const [, held] = splitCombos(vocab);
  const heldKeys = new Set(held.map((a) => `${a.shape}|${a.colour}|${a.size}|${a.motion}|${a.background}`));
  for (const p of full) {
    assert.ok(p.attrs && p.attrs.size);
    const k = `${p.attrs.shape}|${p.attrs.colour}|${p.attrs.size}|${p.attrs.motion}|${p.attrs.background}`;
    assert.equal(p.heldout, heldKeys.has(k), p.text);
    assert.deepEqual(promptAttrs(vocab, p.text), p.attrs);
  }
  assert.equal(full.filter((p) => p.heldout).length, 8);
  const cover = (vals: string[], key: "shape" | "colour" | "size" | "motion" | "background") =>
    vals.forEach((v) => assert.ok(full.some((p) => p.attrs![key] === v), `${key} ${v} missing`));
  cover(vocab.shapes, "shape");
  cover(Object.keys(vocab.colours), "colour");
  cover(Object.keys(vocab.sizes), "size");
  cover(Object.keys(vocab.motions), "motion");
  cover(Object.keys(vocab.backgrounds), "background");
  // quick = the first 2: one training and one held-out combination
  const quick = benchPrompts(vocab, PRESETS.quick.prompts);
  assert.deepEqual(quick.map((p) => p.heldout), [false, true]);
  // more prompts than combinations stop at the number of combinations
  assert.equal(benchPrompts(vocab, allCombos(vocab).length + 5).length, allCombos(vocab).length);
});

test("protocol: tokenizer fallback captions and relaxed prompt parsing", () => {
  const ps = promptsFromTokenizer(vocab, TINY_TOKENS, 3);
  assert.equal(ps.length, 3);
  for (const p of ps) {
    for (const w of p.text.split(" ")) assert.ok(TINY_TOKENS.includes(w), `${w} in ${p.text}`);
    assert.equal(p.attrs!.size, null);
    assert.equal(p.heldout, null);
  }
  assert.deepEqual(promptAttrs(vocab, "a red circle moving left on a black background"), { shape: "circle", colour: "red", motion: "moving left", background: "black", size: null });
  assert.equal(promptAttrs(vocab, "a photo of a cat"), null);
  assert.throws(() => promptsFromTokenizer(vocab, ["a", "red"], 2), /knows no shape/);
});

test("protocol: every registered strategy has valid operating points with exactly one default", () => {
  const points = buildPoints(strategyNames(), join(dir, "cache_profiles"));
  assert.equal(points[0].method, "none");
  assert.equal(new Set(points.map((p) => p.id)).size, points.length);
  for (const name of strategyNames()) {
    const mine = points.filter((p) => p.method === name);
    assert.ok(mine.length >= 1, name);
    assert.equal(mine.filter((p) => p.isDefault).length, 1, `${name}: one default point`);
    if (name !== "none" && OPERATING_POINTS[name]) assert.ok(mine.length >= 3, `${name}: ${mine.length} points`);
  }
  // methods the map does not know run at their defaults; the map is extensible
  assert.deepEqual(operatingPoints("mixcache-not-registered"), [{}]);
  OPERATING_POINTS["some-new-method"] = [{ k: 1 }];
  try {
    assert.deepEqual(operatingPoints("some-new-method"), [{}, { k: 1 }]);
  } finally {
    delete OPERATING_POINTS["some-new-method"];
  }
  assert.deepEqual(resolveMethods(["teacache"]), ["none", "teacache"]);
  assert.throws(() => resolveMethods(["teacash"]), /unknown method "teacash"[\s\S]*valid methods: none/);
});

test("redundancy recorder: output is the uncached output bit for bit; signals per step", async () => {
  const plain = await generate({ model, prompt: "a red circle moving left on a black background", seed: 1, steps: 4 });
  const rec = new RedundancyRecorder();
  const r = await generate({ model, prompt: "a red circle moving left on a black background", seed: 1, steps: 4, cache: rec.asCache() });
  assert.deepEqual(r.video.data, plain.video.data);
  const red = rec.result();
  assert.equal(red.steps, 4);
  assert.equal(red.middleBlock, 2);
  assert.equal(red.cfg, true);
  assert.equal(red.rows[0].step.cond, null);
  assert.equal(red.rows[0].cfg, null);
  for (const row of red.rows.slice(1)) {
    for (const v of [row.step.cond, row.step.uncond, row.cfg, row.block.cond, row.block.uncond, row.output.cond, row.cfgRatio, ...row.blocks.cond]) finite(v, `step ${row.index}`);
    assert.equal(row.block.cond, row.blocks.cond[2]);
  }
});

test("bench end to end on the tiny model: files, schema, numbers, resume", async () => {
  const args = ["bench", "--model", dir, "--preset", "quick", "--methods", "none,teacache,fewer-steps", "--steps", "6", "--prompts", "2", "--out", out, "--threads", "1"];
  const r1 = await capture(() => main(args));
  assert.equal(r1.code, 0, r1.err);
  assert.match(r1.out, /bench quick: 8 points x 2 prompts x 1 seed\(s\), 6 steps = 16 rows \(16 run, 0 resumed\)/);
  for (const f of ["results.json", "results.md", "results.csv", "journal.jsonl", "redundancy.json", "frames/0.png", "frames/1.png"])
    assert.ok(existsSync(join(out, f)), `${f} written`);

  const res = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as BenchResults;
  assert.equal(res.schema, RESULTS_SCHEMA);
  assert.ok(!Number.isNaN(Date.parse(res.created)));
  finite(res.machine.cpus, "cpus");
  assert.equal(res.machine.ortThreads, 1);
  assert.equal(typeof res.machine.cpuModel, "string");
  assert.equal(res.model.name, "tiny-test");
  assert.equal(res.protocol.preset, "quick");
  assert.equal(res.protocol.steps, 6);
  assert.equal(res.protocol.prompts.length, 2);
  assert.equal(res.protocol.promptSource, "tokenizer");
  assert.deepEqual(res.protocol.methods, ["none", "teacache", "fewer-steps"]);
  assert.equal(res.protocol.points.length, 8);
  assert.equal(res.session.complete, true);
  assert.equal(res.session.rowsRun, 16);
  assert.equal(res.rows.length, 16);

  for (const row of res.rows) {
    for (const k of ["wallMs", "denoiseMs", "macsFull", "macsExecuted", "computeSpeedup", "cachePeakBytes", "steps", "stepsSampled", "seed", "promptIndex"] as const) finite(row[k], `${row.point} ${k}`);
    assert.ok(row.wallMs > 0 && row.macsExecuted > 0 && row.macsExecuted <= row.macsFull);
    assert.ok(!("trace" in row), "traces are moved out of rows");
    if (row.method === "none") assert.equal(row.quality, null, "the reference has no quality numbers");
    else {
      const q = row.quality!;
      for (const k of ["psnrFrame", "psnrClip", "mse", "maxAbsDiff", "ssim", "ssimRgb"] as const) finite(q[k], `${row.point} ${k}`);
      assert.ok(q.psnrFrame <= 100 && q.psnrClip <= 100 && q.ssim <= 1 + 1e-12);
      assert.equal(q.psnrPerFrame.length, 3);
      assert.equal(q.ssimWindow, 7); // 8x8 frames
    }
    // tiny prompts name colour/shape/motion/background: adherence is scored (values meaningless on random weights)
    assert.ok(row.adherence);
    for (const v of Object.values(row.adherence.score)) assert.ok(v === 0 || v === 1);
    if (row.method === "fewer-steps") assert.equal(row.computeSpeedup, row.steps / row.stepsSampled);
  }
  const byPoint = (id: string) => res.summary.find((s) => s.point === id)!;
  assert.deepEqual(res.summary.map((s) => s.point), ["none", "teacache-t0.05", "teacache-t0.08", "teacache-t0.15", "fewer-steps-x1.5", "fewer-steps-x2", "fewer-steps-x3", "fewer-steps-x4"]);
  assert.equal(byPoint("fewer-steps-x2").computeSpeedup, 2);
  assert.equal(byPoint("fewer-steps-x3").computeSpeedup, 3);
  assert.equal(byPoint("fewer-steps-x4").computeSpeedup, 3); // round(6 / 4) = 2 steps
  assert.equal(byPoint("none").wallSpeedup, 1);
  for (const s of res.summary) {
    assert.equal(s.n, 2);
    for (const k of ["computeSpeedup", "wallSpeedup", "efficiency", "wallMsMedian", "cacheMB"] as const) finite(s[k], `${s.point} ${k}`);
    if (s.method === "none") assert.equal(s.psnrFrame, null);
    else for (const k of ["psnrFrame", "psnrClip", "ssim", "ssimRgb"] as const) finite(s[k], `${s.point} ${k}`);
    finite(s.adherence!.mean, "adherence");
    finite(s.adherenceRef!.mean, "adherenceRef");
  }
  // fewer steps really changes the output; teacache at 6 steps never skips here (exact)
  assert.ok(byPoint("fewer-steps-x2").psnrFrame! < 100);
  // traces of the first prompt: one per point, teacache's has a row per step
  assert.equal(res.traces.length, 8);
  assert.equal(res.traces.find((t) => t.point === "teacache-t0.08")!.trace.length, 6);
  // redundancy signals of the reference on the first prompt
  assert.equal(res.redundancy!.rows.length, 6);
  assert.equal(res.redundancy!.prompt, res.protocol.prompts[0].text);
  finite(res.redundancy!.rows[3].cfg, "cfg signal");

  const md = readFileSync(join(out, "results.md"), "utf8");
  assert.match(md, /^# MixCache bench: quick/);
  assert.match(md, /\| method \| point \| compute \| wall \| eff\. \| PSNR \(a\) dB \| PSNR \(b\) dB \| SSIM \| adh\. ref \| adh\. \| cache MB \| n \|/);
  assert.match(md, /\| fewer-steps \| fewer-steps-x1\.5 \| 1\.50x \|/);
  const csv = readFileSync(join(out, "results.csv"), "utf8").trimEnd().split("\n");
  assert.deepEqual(csv[0].split(","), [...CSV_COLUMNS]);
  assert.equal(csv.length, 1 + 8);
  for (const line of csv.slice(1)) assert.equal(csvSplit(line).length, CSV_COLUMNS.length, line);
  assert.deepEqual(JSON.parse(csvSplit(csv[2])[5]), { threshold: 0.05 });
  const sheet = decodePng(new Uint8Array(readFileSync(join(out, "frames/0.png"))));
  assert.ok(sheet.width > 0 && sheet.height > 0);
  assert.equal(sheet.text.Labels, "reference (none) | fewer-steps-x2 | teacache-t0.08");

  // resume: nothing left to run
  const r2 = await capture(() => main([...args, "--json"]));
  assert.equal(r2.code, 0, r2.err);
  const j2 = JSON.parse(r2.out);
  assert.equal(j2.rows_run, 0);
  assert.equal(j2.rows_reused, 16);
  const res2 = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as BenchResults;
  assert.deepEqual(res2.rows.map((r) => r.key), res.rows.map((r) => r.key));
  assert.deepEqual(res2.rows.map((r) => r.wallMs), res.rows.map((r) => r.wallMs));

  // resume after a crash: the last 3 rows lost, plus a torn half-written line -> exactly 3 rerun
  const journal = join(out, "journal.jsonl");
  const lines = readFileSync(journal, "utf8").trimEnd().split("\n");
  writeFileSync(journal, lines.slice(0, -3).join("\n") + "\n");
  appendFileSync(journal, '{"key":"torn');
  const r3 = await capture(() => main([...args, "--json"]));
  assert.equal(r3.code, 0, r3.err);
  assert.equal(JSON.parse(r3.out).rows_run, 3);
  const res3 = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as BenchResults;
  assert.equal(res3.rows.length, 16);
  assert.equal(readFileSync(journal, "utf8").trimEnd().split("\n").length, 16);
  // reruns are deterministic: same outputs, same quality numbers
  for (const r of res3.rows) {
    const old = res.rows.find((x) => x.key === r.key)!;
    assert.deepEqual(r.quality, old.quality);
    assert.equal(r.macsExecuted, old.macsExecuted);
  }

  // a second seed: the seed-0 rows stay valid, only the new seed's rows run
  const r4 = await capture(() => main([...args, "--seeds", "0,1", "--json"]));
  assert.equal(r4.code, 0, r4.err);
  const j4 = JSON.parse(r4.out);
  assert.deepEqual([j4.rows_run, j4.rows_reused, j4.rows_total], [16, 16, 32]);
  assert.deepEqual(j4.seeds, [0, 1]);
});

// ---------------------------------------------------------------------------------------------
// One run per output folder

const lockOpts = (outDir: string): BenchOptions => ({ model, outDir, preset: "quick", methods: ["none", "fewer-steps"], steps: 4, nPrompts: 1, threads: 1 });
const isLockError = (pid: number) => (e: unknown): boolean => {
  assert.ok(e instanceof MixCacheError, String(e));
  assert.equal(e.code, "IO");
  assert.match(e.message, new RegExp(`in use by another mixcache bench \\(pid ${pid} on `));
  // another process: how to stop it or clear a stale lock; this process: wait for the other run
  assert.match(e.fix ?? "", pid === process.pid ? /wait for the other run/ : new RegExp(`kill ${pid}.*remove .*bench\\.lock`));
  return true;
};

/** A child process holding the lock of dir (test/support/signal-child.ts), once it holds it. */
async function lockHolder(folder: string) {
  const child = spawn(process.execPath, ["--import", "tsx", join("test", "support", "signal-child.ts"), "lock", folder], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<number | null>((ok) => child.on("exit", ok));
  await new Promise<void>((ok, fail) => {
    let so = "", se = "";
    child.stderr.on("data", (c: Buffer) => (se += c.toString()));
    child.stdout.on("data", (c: Buffer) => {
      so += c.toString();
      if (so.includes("ready")) ok();
    });
    void exited.then((code) => fail(new Error(`lock holder exited ${code}: ${se}`)));
  });
  return { child, exited };
}

test("bench lock: two runners into one folder: the second fails fast, no row is written twice", async () => {
  const folder = tempDir("mixcache-bench-lock-");
  const [a, b] = await Promise.allSettled([runBench(lockOpts(folder)), runBench(lockOpts(folder))]);
  assert.equal(a.status, "fulfilled", a.status === "rejected" ? String(a.reason) : "");
  assert.equal(b.status, "rejected");
  isLockError(process.pid)((b as PromiseRejectedResult).reason);
  const lines = readFileSync(join(folder, "journal.jsonl"), "utf8").trimEnd().split("\n");
  const keys = lines.map((l) => JSON.parse(l).key as string);
  assert.equal(keys.length, new Set(keys).size, "no duplicated rows");
  assert.equal(keys.length, (a as PromiseFulfilledResult<Awaited<ReturnType<typeof runBench>>>).value.results.session.rowsTotal);
  assert.ok(!existsSync(join(folder, LOCK_NAME)), "released when the run ends");
  // released on failure too: a rerun resumes everything
  const again = await runBench(lockOpts(folder));
  assert.equal(again.rowsRun, 0);
});

test("bench lock: held by another live process (named in the error, CLI exit 1); released on its SIGTERM", async () => {
  const folder = tempDir("mixcache-bench-lock-");
  const { child, exited } = await lockHolder(folder);
  const info = JSON.parse(readFileSync(join(folder, LOCK_NAME), "utf8"));
  assert.equal(info.pid, child.pid);
  assert.equal(info.host, hostname());
  assert.ok(!Number.isNaN(Date.parse(info.started)));
  const t = performance.now();
  await assert.rejects(runBench(lockOpts(folder)), isLockError(child.pid!));
  assert.ok(performance.now() - t < 2000, "fails fast, before any generation");
  const cli = await capture(() => main(["bench", "--model", dir, "--methods", "none", "--steps", "4", "--prompts", "1", "--out", folder, "--threads", "1"]));
  assert.equal(cli.code, 1, cli.err);
  assert.match(cli.err, new RegExp(`pid ${child.pid}`));
  assert.match(cli.err, /fix: .*kill \d+.*remove .*bench\.lock/);
  assert.ok(!existsSync(join(folder, "journal.jsonl")), "nothing written by the refused runs");
  child.kill("SIGTERM");
  assert.equal(await exited, 143);
  assert.ok(!existsSync(join(folder, LOCK_NAME)), "the holder removed its lock on SIGTERM");
  assert.equal((await runBench(lockOpts(folder))).results.session.complete, true);
});

test("bench lock: a stale lock (dead pid on this host) is taken over with a note; another host's is refused", async () => {
  const folder = tempDir("mixcache-bench-lock-");
  const deadPid = await new Promise<number>((ok) => {
    const c = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
    c.on("exit", () => ok(c.pid!));
  });
  const lockPath = join(folder, LOCK_NAME);
  writeFileSync(lockPath, JSON.stringify({ pid: deadPid, host: hostname(), started: "2020-01-01T00:00:00.000Z", token: "x" }));
  const r = await runBench(lockOpts(folder));
  assert.ok(r.results.session.warnings.some((w) => w.includes(`took over a stale lock`) && w.includes(`pid ${deadPid}`)), r.results.session.warnings.join("; "));
  assert.ok(!existsSync(lockPath));
  // another host: cannot be checked, so it is refused with how to remove it
  writeFileSync(lockPath, JSON.stringify({ pid: process.pid, host: "elsewhere.example", started: "2020-01-01T00:00:00.000Z", token: "y" }));
  assert.throws(() => lockDir(folder), (e: unknown) => e instanceof MixCacheError && /pid \d+ on elsewhere\.example.*another host/.test(e.message) && /remove .*bench\.lock/.test(e.fix ?? ""));
  assert.ok(existsSync(lockPath), "left alone");
  // our own pid, but not a lock this process holds (a pid reused after a crash): stale
  writeFileSync(lockPath, JSON.stringify({ pid: process.pid, host: hostname(), started: "2020-01-01T00:00:00.000Z", token: "z" }));
  const l = lockDir(folder);
  assert.equal(l.tookOver?.pid, process.pid);
  assert.throws(() => lockDir(folder), isLockError(process.pid));
  l.release();
  l.release();
  assert.ok(!existsSync(lockPath));
});

test("bench CLI: strict usage errors", async () => {
  const bad = await capture(() => main(["bench", "--methods", "none,teacash", "--model", dir]));
  assert.equal(bad.code, 2);
  assert.match(bad.err, /unknown method "teacash"/);
  assert.match(bad.err, /valid methods: none, .*teacache/);
  assert.equal((await capture(() => main(["bench", "--preset", "huge", "--model", dir]))).code, 2);
  assert.equal((await capture(() => main(["bench", "--prompts", "0", "--model", dir]))).code, 2);
  assert.equal((await capture(() => main(["bench", "--steps", "1", "--model", dir]))).code, 2);
  assert.equal((await capture(() => main(["bench", "extra", "--model", dir]))).code, 2);
  assert.equal((await capture(() => main(["bench", "--frobnicate"]))).code, 2);
  for (const seeds of ["", "0,x", "-1", "1.5", "0,0"]) {
    const r = await capture(() => main(["bench", "--seeds", seeds, "--model", dir]));
    assert.equal(r.code, 2, `--seeds "${seeds}"`);
    assert.match(r.err, /--seeds/);
  }
  assert.deepEqual(parseSeeds("0"), [0]);
  assert.deepEqual(parseSeeds(" 3, 1"), [3, 1]);
  const help = await capture(() => main(["bench", "--help"]));
  assert.equal(help.code, 0);
  assert.match(help.out, /--preset quick\|full/);
  assert.match(help.out, /Methods: none, .*fewer-steps/);
});

test("profilesHash: a method's rows depend on its family's profiles, the stored schedules included", async () => {
  const { profilesHash } = await import("../src/bench/protocol.ts");
  const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "profiles-"));
  try {
    for (const f of ["teacache", "magcache", "mixcache", "mixcache-plans"]) writeFileSync(join(dir, `${f}.json`), JSON.stringify({ f }));
    const names = (m: string) => profilesHash(dir, m).split(",").filter(Boolean).map((x) => x.split(":")[0]);
    assert.deepEqual(names("mixcache"), ["mixcache-plans.json", "mixcache.json"]);
    assert.deepEqual(names("mixcache-plus"), ["mixcache-plans.json", "mixcache.json"]);
    assert.deepEqual(names("teacache"), ["teacache.json"]);
    assert.deepEqual(names("fewer-steps"), []);
    // re-planning changes the hash of both MixCache methods
    const before = profilesHash(dir, "mixcache-plus");
    writeFileSync(join(dir, "mixcache-plans.json"), JSON.stringify({ f: "re-planned" }));
    assert.notEqual(profilesHash(dir, "mixcache-plus"), before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
