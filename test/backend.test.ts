/**
 * Backend settings chosen by measurement (backend/ort.ts): small per-step stages on one thread,
 * and the stage-call timer benchmarks use to split a run into onnxruntime and JavaScript time.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { SMALL_STAGE_ELEMENTS, StageSession, stageOptions, timeStageCalls } from "../src/backend/ort.ts";
import { Graph } from "../src/graph/builder.ts";

test("stageOptions: one thread up to SMALL_STAGE_ELEMENTS values, the given options above", () => {
  const opts = { threads: 2, arena: false };
  assert.deepEqual(stageOptions(opts, 256 * 128), { threads: 1, arena: false });
  assert.deepEqual(stageOptions(opts, SMALL_STAGE_ELEMENTS), { threads: 1, arena: false });
  assert.equal(stageOptions(opts, SMALL_STAGE_ELEMENTS + 1), opts);
  assert.deepEqual(opts, { threads: 2, arena: false }, "the caller's options are not modified");
});

test("timeStageCalls reports every run with its stage name while set, nothing after", async () => {
  const g = new Graph("double");
  const x = g.input("x", ["N"]);
  g.output(g.add(x, x), "y", ["N"]);
  const s = await StageSession.create("double", g.toModel(), { threads: 1 });
  const seen: Array<[string, number]> = [];
  timeStageCalls((stage, ms) => seen.push([stage, ms]));
  try {
    const [y] = await s.run({ x: { data: new Float32Array([1, 2, 3]), dims: [3] } }, ["y"]);
    assert.deepEqual([...y], [2, 4, 6]);
    await assert.rejects(s.run({ x: { data: new Float32Array([1]), dims: [2] } }, ["y"]));
  } finally {
    timeStageCalls(null);
  }
  assert.deepEqual(seen.map(([n]) => n), ["double", "double"], "a failed run is timed too");
  assert.ok(seen.every(([, ms]) => ms >= 0 && Number.isFinite(ms)));
  await s.run({ x: { data: new Float32Array([1]), dims: [1] } }, ["y"]);
  assert.equal(seen.length, 2);
  await s.release();
});
