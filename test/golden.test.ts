/**
 * Each shipped model (models/reference, models/textures) against its golden file (golden.safetensors,
 * written by tools/export.py from PyTorch): text encoder, time path, text projection, patch
 * embedding, each module of block 0, the head, a full forward per CFG branch and one CFG sampler
 * step. Tolerance: max |diff| <= 2e-4 x (1 + max |ref|) (fp32 on both sides, different kernels
 * and summation orders). Needs no PyTorch.
 */
import type { WanModel } from "../src/models/wan/model.ts";
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { MODEL_NAMES, PACKAGE_ROOT, loadModel } from "../src/models/load.ts";
import { openSafetensors } from "../src/weights/safetensors.ts";
import { makeSampler } from "../src/schedulers/sampler.ts";

// the worst check of a model, printed as one line at the end (a failing check names its own numbers)
let worst = { name: "", diff: 0, scale: 0, share: -1, n: 0 };

function check(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = 2e-4) {
  assert.equal(got.length, want.length, `${name}: length`);
  let diff = 0, scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  assert.ok(diff <= tol * (1 + scale), `${name}: ${diff} > ${tol} x (1 + ${scale})`);
  const share = diff / (tol * (1 + scale));
  worst.n++;
  if (share > worst.share) Object.assign(worst, { name, diff, scale, share });
}

for (const name of MODEL_NAMES) {
const dir = join(PACKAGE_ROOT, "models", name);
const GOLDEN = join(dir, "golden.safetensors");
test(`the runtime matches the PyTorch golden file of the shipped ${name} model`, { skip: !existsSync(GOLDEN) && `no ${name} model in this checkout` }, async () => {
  worst = { name: "", diff: 0, scale: 0, share: -1, n: 0 };
  const gf = openSafetensors(GOLDEN);
  const g = (k: string) => gf.readF32(k);
  const model = await loadModel(dir, { threads: 1 });
  try {
    const tm = model.transformer as WanModel;
    const meta = gf.metadata;
    const ids = g("input.text_ids");
    const prompt = meta.prompt;
    const emb = model.encodePrompt(prompt);
    assert.deepEqual(Array.from(model.tokenizer!.encode(prompt)), Array.from(ids));
    check("text encoder", emb.data, g("text.embedding"));
    const empty = model.encodePrompt("");
    check("empty prompt", empty.data, g("text.empty"));
    assert.ok(empty.data.every((v) => v === 0), "the empty prompt encodes to zeros");
    const t = g("input.t")[0];
    const time = await tm.time(t);
    check("time temb", time.temb, g("time.temb"));
    check("time tproj", time.tproj, g("time.tproj"));
    const ctx = await tm.text(emb.data, emb.tokens);
    check("text ctx", ctx, g("text.ctx"));
    const lat = model.latent!;
    const grid = tm.gridFor(lat.frames, lat.height, lat.width);
    const gs = await tm.prepareGrid(grid);
    const x = g("input.x");
    const tok = await tm.patch(gs, x);
    check("patch tokens", tok, g("patch.tokens"));
    const kv = await tm.crossKV(0, ctx, emb.tokens);
    const sa = await tm.runModule("sa", 0, gs, tok, time.tproj, kv, emb.tokens);
    check("block0 sa", sa, g("block0.sa"));
    const h1 = tok.map((v, i) => v + sa[i]);
    const ca = await tm.runModule("ca", 0, gs, h1, time.tproj, kv, emb.tokens);
    check("block0 ca", ca, g("block0.ca"));
    const h2 = h1.map((v, i) => v + ca[i]);
    check("block0 ffn", await tm.runModule("ffn", 0, gs, h2, time.tproj, kv, emb.tokens), g("block0.ffn"));
    check("head", await tm.runHead(gs, g("input.hidden"), time), g("head.v"));
    // full forward per branch through the same stage calls the pipeline makes
    const forward = async (e: typeof emb) => {
      const c = await tm.text(e.data, e.tokens);
      let h = tok;
      for (let i = 0; i < tm.config.num_layers; i++) {
        const kvi = await tm.crossKV(i, c, e.tokens);
        for (const m of ["sa", "ca", "ffn"] as const) {
          const r = await tm.runModule(m, i, gs, h, time.tproj, kvi, e.tokens);
          h = h.map((v, j) => v + r[j]);
        }
      }
      return tm.runHead(gs, h, time);
    };
    const vc = await forward(emb);
    const vu = await forward(empty);
    check("forward cond", vc, g("forward.cond"));
    check("forward uncond", vu, g("forward.uncond"));
    const gsc = Number(meta.guidance);
    const v = vc.map((c, i) => vu[i] + gsc * (c - vu[i]));
    const sampler = makeSampler("unipc", { steps: Number(meta.steps), shift: Number(meta.shift) });
    check("unipc step", sampler.step(0, x, v), g("step.x1"));
    console.log(`  golden ${name}: ${worst.n} checks, worst max|diff| ${worst.diff.toExponential(2)} (${worst.name}, max|ref| ${worst.scale.toFixed(3)}, ${(worst.share * 100).toFixed(1)}% of tolerance)`);
  } finally {
    gf.close();
    await model.release();
  }
});
}
