/**
 * onnxruntime's fused operators (LayerNormalization with the modulation as scale/bias,
 * SimplifiedLayerNormalization, RotaryEmbedding, MultiHeadAttention, FastGelu) against the plain
 * standard-ONNX graphs they replace, module by module and over all blocks. They round differently
 * (fused kernels, another summation order), so the check is a tolerance: max |diff| <= 1e-5 x
 * (1 + max |plain|), i.e. fp32 rounding; the printed numbers are the measured differences.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WanModel, mapSource, MODULES } from "../src/models/wan/model.ts";
import { dimOf } from "../src/models/wan/config.ts";
import { Graph } from "../src/graph/builder.ts";
import { attention, mergeHeads, multiHeadAttention, splitHeads } from "../src/graph/layers.ts";
import { StageSession } from "../src/backend/ort.ts";
import { randomArray, rng, tinyWan } from "./support/randomWeights.ts";
import { maxDiff } from "./support/compare.ts";

const TOL = 1e-5;

for (const [label, overrides] of [
  ["2 heads, d 12", {}],
  ["3 heads, d 18, patch 2x4x4", { num_attention_heads: 3, attention_head_dim: 18, patch_size: [2, 4, 4], in_channels: 3, out_channels: 3 }],
] as const) {
  test(`fused-operator graphs match the plain graphs (${label})`, async () => {
    const { config, weights } = tinyWan(8, { num_layers: 2, ...overrides });
    const fused = await WanModel.load(config, mapSource(weights), { threads: 1, fusedBlocks: false });
    const plain = await WanModel.load(config, mapSource(weights), { threads: 1, fusedBlocks: false, graphs: { fused: false } });
    const r = rng(2);
    const S = 7;
    const [pt, ph, pw] = config.patch_size;
    const grid = fused.gridFor(2 * pt, 3 * ph, 4 * pw);
    const gf = await fused.prepareGrid(grid);
    const gp = await plain.prepareGrid(grid);
    const ctx = await plain.text(randomArray(S * config.text_dim, r), S);
    const time = await plain.time(401);
    const x = randomArray(gf.L * dimOf(config), r);
    let worst = 0;
    const lines: string[] = [];
    for (let i = 0; i < config.num_layers; i++) {
      const kv = await plain.crossKV(i, ctx, S);
      for (const m of MODULES) {
        const a = await fused.runModule(m, i, gf, x, time.tproj, kv, S);
        const b = await plain.runModule(m, i, gp, x, time.tproj, kv, S);
        const { diff, scale } = maxDiff(a, b);
        assert.ok(diff <= TOL * (1 + scale), `block ${i} ${m}: max|diff| ${diff} > ${TOL} x (1 + ${scale})`);
        worst = Math.max(worst, diff / (1 + scale));
        if (i === 0) lines.push(`${m} ${diff.toExponential(2)}`);
      }
    }
    const kvs = [];
    for (let i = 0; i < config.num_layers; i++) kvs.push(await plain.crossKV(i, ctx, S));
    const hf = await fused.runBlockRange(0, config.num_layers, gf, x, time.tproj, kvs, S);
    const hp = await plain.runBlockRange(0, config.num_layers, gp, x, time.tproj, kvs, S);
    const all = maxDiff(hf, hp);
    assert.ok(all.diff <= TOL * (1 + all.scale), `all blocks: max|diff| ${all.diff}`);
    console.log(`  fused vs plain ops (${label}): block 0 ${lines.join(", ")}; all blocks ${all.diff.toExponential(2)} (max|h| ${all.scale.toFixed(2)}); tolerance ${TOL} x (1 + max|plain|)`);
    await fused.release();
    await plain.release();
  });
}

test("MultiHeadAttention matches the plain attention graph at a longer sequence (L 1024, 4 heads, d 32)", async () => {
  const L = 1024, H = 4, d = 32, D = H * d;
  const mk = (fusedOp: boolean) => {
    const g = new Graph(fusedOp ? "mha" : "sdpa");
    const q = g.input("q", [1, L, D]), k = g.input("k", [1, L, D]), v = g.input("v", [1, L, D]);
    const y = fusedOp ? multiHeadAttention(g, q, k, v, H) : mergeHeads(g, attention(g, splitHeads(g, q, H, d), splitHeads(g, k, H, d), splitHeads(g, v, H, d), d), D);
    g.output(y, "y", [1, L, D]);
    return StageSession.create(g.name, g.toModel(), { threads: 1 });
  };
  const r = rng(3);
  const feeds = { q: { data: randomArray(L * D, r), dims: [1, L, D] }, k: { data: randomArray(L * D, r), dims: [1, L, D] }, v: { data: randomArray(L * D, r), dims: [1, L, D] } };
  const [a, b] = await Promise.all([mk(true), mk(false)]);
  const [ya] = await a.run(feeds, ["y"]);
  const [yb] = await b.run(feeds, ["y"]);
  const { diff, scale } = maxDiff(ya, yb);
  console.log(`  MultiHeadAttention vs plain, L ${L}: max|diff| ${diff.toExponential(2)} (max|y| ${scale.toFixed(2)}; tolerance ${TOL} x (1 + max))`);
  assert.ok(diff <= TOL * (1 + scale));
  await a.release();
  await b.release();
});
