/**
 * Embedded models by name (`--model reference|textures|DIR`): names resolve to models/NAME, paths
 * stay paths, and a missing embedded model says how to make it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { MODEL_NAMES, PACKAGE_ROOT, inspectModel, resolveModelDir } from "../src/models/load.ts";
import { MixCacheError } from "../src/errors.ts";
import { writeSafetensors } from "../src/weights/safetensors.ts";

test("model names resolve to the embedded folders; anything else is a path", () => {
  assert.deepEqual([...MODEL_NAMES], ["reference", "textures"]);
  assert.equal(resolveModelDir("reference"), join(PACKAGE_ROOT, "models", "reference"));
  assert.equal(resolveModelDir("textures"), join(PACKAGE_ROOT, "models", "textures"));
  assert.equal(resolveModelDir(), join(PACKAGE_ROOT, "models", "reference"));
  assert.equal(resolveModelDir("./textures"), resolve("textures"), "./NAME reaches a local folder of that name");
  assert.equal(resolveModelDir("/tmp/some/model"), "/tmp/some/model");
});

test("inspectModel by name reads the embedded model; a missing one names the training command", () => {
  for (const name of MODEL_NAMES) {
    const dir = join(PACKAGE_ROOT, "models", name);
    if (existsSync(dir)) {
      const info = inspectModel(name);
      assert.equal(info.dir, dir);
      assert.ok(info.hasTextEncoder, `${name} ships its text encoder`);
    } else {
      assert.throws(() => inspectModel(name), (e: unknown) => {
        assert.ok(e instanceof MixCacheError && e.code === "MODEL_NOT_FOUND", String(e));
        assert.match((e as Error).message, new RegExp(`embedded ${name} model`));
        assert.match((e as Error).message, /tools\/train\.py/);
        return true;
      });
    }
  }
  assert.throws(() => inspectModel("/nonexistent/model/dir"), /does not exist[\s\S]*reference or textures/);
});

// ---------------------------------------------------------------------------------------------
// `mixcache evaluate` on a tiny random model of the textures dataset: writes only where told

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { datasetVocab, loadVocab } from "../src/data/shapes.ts";
import { makeTinyModelDir } from "./support/tinyModel.ts";
import { capture } from "./support/capture.ts";
import { main } from "../src/cli/main.ts";

/** A tiny random model folder whose tokenizer and vocab.json are the textures dataset's. */
function tinyTexturesModel(): string {
  const dir = makeTinyModelDir(51, { patch_size: [2, 4, 4] });
  const v = datasetVocab(loadVocab(), "textures");
  const words = ["<pad>"];
  const add = (text: string) => { for (const w of text.replace(/\{\w+\}/g, " ").split(/\s+/)) if (w && !words.includes(w)) words.push(w); };
  add(v.caption_template);
  for (const k of [...Object.keys(v.sizes), ...Object.keys(v.colours), ...v.shapes, ...Object.keys(v.motions), ...Object.keys(v.backgrounds), ...(v.patterns ?? [])]) add(k);
  // the tiny model's text encoder has 12 token rows: widen it by rewriting the folder's tokenizer and encoder
  const te = join(dir, "text_encoder", "model.safetensors");
  const textDim = JSON.parse(readFileSync(join(dir, "transformer", "config.json"), "utf8")).text_dim as number;
  const rows = new Float32Array(words.length * textDim).map((_, i) => Math.sin(i * 0.37) * 0.5);
  const pos = new Float32Array(16 * textDim).map((_, i) => Math.cos(i * 0.11) * 0.1);
  writeSafetensors(te, { "token_embedding.weight": { dtype: "F32", shape: [words.length, textDim], data: rows }, position_embedding: { dtype: "F32", shape: [16, textDim], data: pos } });
  writeFileSync(join(dir, "tokenizer", "tokenizer.json"), JSON.stringify({ type: "word", tokens: words, max_tokens: 16 }));
  writeFileSync(join(dir, "vocab.json"), JSON.stringify(v));
  const meta = JSON.parse(readFileSync(join(dir, "mixcache.json"), "utf8"));
  meta.latent = { channels: 3, frames: 8, height: 32, width: 32 };
  writeFileSync(join(dir, "mixcache.json"), JSON.stringify(meta));
  return dir;
}

test("evaluate on a textures model scores the pattern, texture and quality; writes only with --out / --save", async () => {
  const model = tinyTexturesModel();
  const out = mkdtempSync(join(tmpdir(), "mixcache-eval-"));
  try {
    const before = readdirSync(model).sort();
    const plain = await capture(() => main(["evaluate", "--model", model, "--prompts", "2", "--steps", "2", "--threads", "1"]));
    assert.equal(plain.code, 0, plain.err);
    assert.match(plain.out, /pattern \d+%, texture \d+%, quality \d\.\d\d/);
    assert.match(plain.out, /nothing written/);
    assert.deepEqual(readdirSync(model).sort(), before, "no file written into the model folder");
    const both = await capture(() => main(["evaluate", "--model", model, "--prompts", "2", "--save", "--out", out]));
    assert.equal(both.code, 2);
    const r = await capture(() => main(["evaluate", "--model", model, "--prompts", "2", "--steps", "2", "--threads", "1", "--out", out]));
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(readdirSync(out).sort(), ["README.md", "evaluation.json", "samples.png"]);
    const ev = JSON.parse(readFileSync(join(out, "evaluation.json"), "utf8"));
    assert.equal(ev.dataset, "textures");
    assert.equal(ev.prompts, 2);
    for (const k of ["pattern", "texture", "quality"]) assert.equal(typeof ev.all[k], "number", k);
    assert.equal(ev.targets.texture, 0.6);
    assert.match(readFileSync(join(out, "README.md"), "utf8"), /textures dataset[\s\S]*\| pattern \| texture \|/);
    assert.deepEqual(readdirSync(model).sort(), before, "--out leaves the model folder alone");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
