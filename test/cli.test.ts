/** The `mixcache` command as a user runs it (child processes): outputs, --json, exit codes. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { makeTinyModelDir } from "./support/tinyModel.ts";
import { tempDir } from "./support/tmp.ts";
import { ProgressBar } from "../src/cli/progress.ts";

const run = (args: string[]) => spawnSync(process.execPath, ["bin/mixcache.js", ...args], { encoding: "utf8", timeout: 120_000 });
const model = makeTinyModelDir(41);
const PROMPT = "a red circle moving right on a black background";

test("generate --json prints exactly one JSON object and writes every output", () => {
  const dir = tempDir("mixcache-cli-");
  const gif = join(dir, "a.gif"), png = join(dir, "a.png"), trace = join(dir, "t.json");
  const r = run(["generate", PROMPT, "--model", model, "--steps", "4", "--seed", "3", "--cache", "teacache", "--cache-opt", "threshold=0.5", "--out", gif, "--out", png, "--trace", trace, "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 1, `stdout: ${r.stdout}`);
  const o = JSON.parse(lines[0]);
  for (const k of ["prompt", "seed", "steps", "wall_ms", "macs_executed", "macs_full", "outputs"]) assert.ok(k in o, `missing ${k}`);
  assert.equal(o.prompt, PROMPT);
  assert.equal(o.seed, 3);
  assert.equal(o.steps, 4);
  assert.ok(o.macs_executed > 0 && o.macs_executed <= o.macs_full);
  assert.deepEqual(o.outputs, [gif, png]);
  assert.equal(readFileSync(gif).subarray(0, 6).toString(), "GIF89a");
  assert.deepEqual([...readFileSync(png).subarray(1, 4)], [0x50, 0x4e, 0x47]);
  const t = JSON.parse(readFileSync(trace, "utf8"));
  assert.equal(t.trace.length, 4);
});

test("the plain summary names the cache, compute and outputs; info and caches work", () => {
  const dir = tempDir("mixcache-cli-");
  const r = run(["generate", PROMPT, "--model", model, "--steps", "3", "--out", join(dir, "x.gif")]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /3 steps in .*cache none, compute .* MACs \(1\.00x\)/);
  assert.ok(existsSync(join(dir, "x.gif")));
  const info = run(["info", "--model", model, "--json"]);
  assert.equal(info.status, 0, info.stderr);
  const o = JSON.parse(info.stdout);
  assert.equal(o.config.num_layers, 4);
  assert.ok(o.parameters > 0 && o.macs_per_step > 0);
  const caches = run(["caches", "--json"]);
  const list = JSON.parse(caches.stdout);
  assert.ok(list.some((s: { name: string }) => s.name === "mixcache"));
});

test("usage errors exit 2 with a fix; runtime errors exit 1", () => {
  const bad = [
    ["generate"],
    ["generate", PROMPT, "--model", model, "--stepz", "3"],
    ["generate", PROMPT, "--model", model, "--steps", "three"],
    ["generate", PROMPT, "--model", model, "--cache", "teacach"],
    ["generate", PROMPT, "--model", model, "--cache", "teacache", "--cache-opt", "thresh=1"],
    ["generate", "a purple circle", "--model", model, "--steps", "2"],
    ["generate", PROMPT, "--model", model, "--out", "x.avi"],
    ["nosuchcommand"],
  ];
  for (const args of bad) {
    const r = run(args);
    assert.equal(r.status, 2, `${args.join(" ")}: exit ${r.status}\n${r.stderr}`);
    assert.ok(r.stderr.length > 0);
  }
  assert.match(run(["generate", "a purple circle", "--model", model]).stderr, /purple.*\n.*use only these words/);
  const missing = run(["generate", PROMPT, "--model", join(model, "nope")]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /does not exist/);
});

test("progress: redrawn bar on a terminal, plain rate-limited lines in a log", () => {
  const sink = (isTTY: boolean) => {
    const out: string[] = [];
    return { out, stream: { isTTY, write: (s: string) => (out.push(s), true) } };
  };
  const tty = sink(true);
  const bar = new ProgressBar("bench", tty.stream);
  bar.update(1, 4);
  bar.update(4, 4, "done");
  assert.match(tty.out[0], /^\rbench [█░]{24} 1\/4 /);
  assert.match(tty.out.at(-2)!, /4\/4 .*ETA 0\.0s {2}done\x1b\[K$/);
  assert.equal(tty.out.at(-1), "\n");

  const log = sink(false);
  const every = new ProgressBar("bench   ", log.stream, undefined, 0);
  every.update(2, 10, "point x");
  every.update(10, 10);
  assert.equal(log.out.length, 1, "the final update is left to the command's summary");
  assert.match(log.out[0], /^bench 2\/10 {2}\d+\.\ds elapsed, ETA \d+\.\ds {2}point x\n$/);
  assert.ok(!log.out[0].includes("\x1b") && !log.out[0].includes("\r"), "no terminal codes in a log");

  const quiet = sink(false);
  const slow = new ProgressBar("bench", quiet.stream); // default: a line at most every 30 s
  for (let i = 0; i < 5; i++) slow.update(i, 10);
  assert.deepEqual(quiet.out, [], "short runs print nothing to a log");
});
