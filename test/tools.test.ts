/**
 * Smoke test of the Python tools (skipped where PyTorch is not installed; .ci/run installs it):
 * train a tiny config for a few iterations, resume it, export it, and load + sample the export
 * with the TypeScript runtime, including its golden-file parity.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../src/models/load.ts";
import { tempDir } from "./support/tmp.ts";
import { generate } from "../src/pipeline/generate.ts";
import { writeModelCard } from "../src/bench/model-eval.ts";

const PY = "/usr/bin/python3";
const hasTorch = existsSync(PY) && spawnSync(PY, ["-c", "import torch"], { encoding: "utf8" }).status === 0;

function py(args: string[]) {
  const r = spawnSync(PY, args, { encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test("tools: tiny training run, resume, export, load and sample in TypeScript", { skip: !hasTorch && "PyTorch not installed (apt-get install python3-torch)" }, async () => {
  const dir = tempDir("mixcache-tools-");
  const ckpt = join(dir, "tiny.pt");
  const out1 = py(["tools/train.py", "--config", "tiny", "--ckpt", ckpt, "--iters", "4", "--batch", "2", "--threads", "1"]);
  assert.match(out1, /new run/);
  const out2 = py(["tools/train.py", "--config", "tiny", "--ckpt", ckpt, "--iters", "2", "--batch", "2", "--threads", "1"]);
  assert.match(out2, /resumed .* iter 4/);
  const mdir = join(dir, "model");
  py(["tools/export.py", "--ckpt", ckpt, "--out", mdir]);
  const training = JSON.parse(readFileSync(join(mdir, "training.json"), "utf8"));
  assert.equal(training.iterations, 6);
  assert.equal(training.samples_seen, 12);
  const model = await loadModel(mdir, { threads: 1 });
  try {
    const r = await generate({ model, prompt: "a small blue square moving up on a gray background", steps: 2 });
    assert.equal(r.video.data.length, 3 * 8 * 32 * 32);
    assert.ok(r.video.data.every(Number.isFinite));
  } finally {
    await model.release();
  }

  // --init-from: continue under another head split with the same parameter shapes
  const ckpt2 = join(dir, "tiny-1head.pt");
  const out3 = py(["tools/train.py", "--config", "tiny-1head", "--ckpt", ckpt2, "--init-from", ckpt, "--iters", "2", "--batch", "2", "--threads", "1"]);
  assert.match(out3, /initialised from .* \(iter 6, 12 samples, other config\)/);
  const mdir2 = join(dir, "model-1head");
  py(["tools/export.py", "--ckpt", ckpt2, "--out", mdir2]);
  const training2 = JSON.parse(readFileSync(join(mdir2, "training.json"), "utf8"));
  assert.equal(training2.iterations, 8);
  assert.deepEqual(training2.stages, [{ num_attention_heads: 2, attention_head_dim: 12, dataset: "shapes", until_samples: 12 }]);
  assert.equal(training2.dataset, "shapes");
  const model2 = await loadModel(mdir2, { threads: 1 });
  try {
    assert.equal(model2.config.num_attention_heads, 1);
    assert.equal(model2.config.attention_head_dim, 24);
    writeModelCard(model2, null);
    const card = readFileSync(join(mdir2, "README.md"), "utf8");
    assert.match(card, /1 heads x 24\)/);
    assert.match(card, /Stages of the run: 2 heads x 12 up to 12 samples; 1 heads x 24 since/);
  } finally {
    await model2.release();
  }
  // a config whose parameter shapes differ is refused with the reason
  const bad = spawnSync(PY, ["tools/train.py", "--config", "reference", "--ckpt", join(dir, "bad.pt"), "--init-from", ckpt, "--iters", "1"], { encoding: "utf8", timeout: 120_000 });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /parameter shapes differ from config 'reference'/);
  assert.ok(!existsSync(join(dir, "bad.pt")));

  // another dataset: --init-from carries the token embedding over by word; the export is a
  // textures model folder whose vocab.json is the flat textures vocabulary
  const ckpt3 = join(dir, "tex.pt");
  const out4 = py(["tools/train.py", "--config", "tiny", "--dataset", "textures", "--ckpt", ckpt3, "--init-from", ckpt, "--iters", "2", "--batch", "2", "--threads", "1"]);
  assert.match(out4, /token embedding: \d+ of \d+ words carried over/);
  const wrong = spawnSync(PY, ["tools/train.py", "--config", "tiny", "--ckpt", ckpt3, "--iters", "1"], { encoding: "utf8", timeout: 120_000 });
  assert.notEqual(wrong.status, 0);
  assert.match(wrong.stderr, /trained on the 'textures' dataset, not 'shapes'/);
  const mdir3 = join(dir, "model3");
  py(["tools/export.py", "--ckpt", ckpt3, "--out", mdir3]);
  const vocab3 = JSON.parse(readFileSync(join(mdir3, "vocab.json"), "utf8"));
  assert.equal(vocab3.dataset, "textures");
  assert.ok(vocab3.patterns.includes("striped") && "grass" in vocab3.backgrounds && !("textures" in vocab3));
  const training3 = JSON.parse(readFileSync(join(mdir3, "training.json"), "utf8"));
  assert.equal(training3.dataset, "textures");
  assert.equal(training3.stages.at(-1).dataset, "shapes");
  const model3 = await loadModel(mdir3, { threads: 1 });
  try {
    const r = await generate({ model: model3, prompt: "a small striped red circle moving left on a grass background", steps: 2, seed: 1 });
    assert.ok(r.video.data.every(Number.isFinite));
    writeModelCard(model3, null);
    assert.match(readFileSync(join(mdir3, "README.md"), "utf8"), /Stages of the run: the shapes dataset with 2 heads x 12 up to 12 samples; the textures dataset with 2 heads x 12 since/);
  } finally {
    await model3.release();
  }
});
