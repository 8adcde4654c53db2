/**
 * Parity of the ONNX stage graphs with the float64 reference forward (test/support/wanReference.ts)
 * on tiny random Wan configs, module by module and end to end. Tolerance: max |diff| <= 1e-4 x
 * (1 + max |ref|); the ONNX side is fp32, so differences are fp32 rounding (~1e-6 relative).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WanModel, mapSource } from "../src/models/wan/model.ts";
import { dimOf } from "../src/models/wan/config.ts";
import { randomArray, rng, tinyWan } from "./support/randomWeights.ts";
import { refCA, refFFN, refForward, refHead, refPatch, refSA, refText, refTime } from "./support/wanReference.ts";
import { maxDiff } from "./support/compare.ts";

// the worst check of each config, printed as one line (a failing check names its own numbers)
let worst = { name: "", diff: 0, scale: 0, share: -1, n: 0 };

function check(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-4) {
  const { diff, scale } = maxDiff(got, want);
  assert.ok(diff <= tol * (1 + scale), `${name}: max diff ${diff} > ${tol} x (1 + ${scale})`);
  const share = diff / (tol * (1 + scale));
  worst.n++;
  if (share > worst.share) worst = { name, diff, scale, share, n: worst.n };
}

for (const [label, overrides, latent] of [
  ["patch 1x2x2, 2 heads", {}, [4, 3, 6, 4]],
  ["patch 2x4x4, 3 heads, d 18", { patch_size: [2, 4, 4], num_attention_heads: 3, attention_head_dim: 18, in_channels: 3, out_channels: 3, num_layers: 1 }, [3, 4, 8, 8]],
] as const) {
  test(`ONNX stages match the float64 reference (${label})`, async () => {
    worst = { name: "", diff: 0, scale: 0, share: -1, n: 0 };
    const { config, weights } = tinyWan(7, overrides as Record<string, unknown>);
    const w = (k: string) => weights.get(k)!;
    const model = await WanModel.load(config, mapSource(weights), { threads: 1 });
    const [C, F, H, W] = latent;
    const r = rng(3);
    const x = randomArray(C * F * H * W, r);
    const S = 5;
    const text = randomArray(S * config.text_dim, r);
    const t = 937.5;
    const D = dimOf(config);
    const grid = model.gridFor(F, H, W);
    const g = await model.prepareGrid(grid);
    const rg = { Fp: grid[0], Hp: grid[1], Wp: grid[2] };

    const time = await model.time(t);
    const rt = refTime(config, w, t);
    check("time temb", time.temb, rt.temb);
    check("time tproj", time.tproj, rt.tproj);
    const ctx = await model.text(text, S);
    check("text ctx", ctx, refText(config, w, text, S));
    const tok = await model.patch(g, x);
    check("patch embed", tok, refPatch(config, w, x, F, H, W));

    // module by module on the same inputs (ONNX tokens fed to both sides)
    const kv = await model.crossKV(0, ctx, S);
    check("block0 sa", await model.runModule("sa", 0, g, tok, time.tproj, kv, S), refSA(config, w, 0, tok, time.tproj, rg));
    check("block0 ca", await model.runModule("ca", 0, g, tok, time.tproj, kv, S), refCA(config, w, 0, tok, ctx, g.L, S));
    check("block0 ffn", await model.runModule("ffn", 0, g, tok, time.tproj, kv, S), refFFN(config, w, 0, tok, time.tproj, g.L));
    const hx = randomArray(g.L * D, r);
    check("head", await model.runHead(g, hx, time), refHead(config, w, hx, time.temb, rg));

    // end to end: ONNX stages chained vs the reference forward
    let h = tok;
    for (let i = 0; i < config.num_layers; i++) {
      const kvi = await model.crossKV(i, ctx, S);
      for (const m of ["sa", "ca", "ffn"] as const) {
        const res = await model.runModule(m, i, g, h, time.tproj, kvi, S);
        const nh = new Float32Array(h.length);
        for (let j = 0; j < h.length; j++) nh[j] = h[j] + res[j];
        h = nh;
      }
    }
    const v = await model.runHead(g, h, time);
    check("full forward", v, refForward(config, w, x, F, H, W, t, text, S));
    console.log(`  parity (${label}): ${worst.n} checks, worst max|diff| ${worst.diff.toExponential(2)} (${worst.name}, max|ref| ${worst.scale.toFixed(3)}, ${(worst.share * 100).toFixed(1)}% of tolerance)`);
    await model.release();
  });
}
