/**
 * HunyuanVideo (src/models/hunyuan/): parity of the ONNX stage graphs with the float64 reference
 * (test/support/hunyuanReference.ts) on tiny random configs, stage by stage and end to end through
 * the DiTModel seams in the loop's order; the padded-text mask; the 13B parameter count; config and
 * prompt errors; MACs; the tiny diffusers folder. Tolerance: max |diff| <= 1e-4 x (1 + max |ref|)
 * (the ONNX side is fp32, so differences are fp32 rounding).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { mapSource } from "../src/models/wan/model.ts";
import { HunyuanVideoModel } from "../src/models/hunyuan/model.ts";
import {
  HUNYUAN_DEFAULTS, expectedShapes, hunyuanDim, mlpDim, parameterCount, parseHunyuanConfig, readHunyuanConfig, type HunyuanConfig,
} from "../src/models/hunyuan/config.ts";
import { hunyuanFamilyMacs } from "../src/models/hunyuan/macs.ts";
import type { PromptInput } from "../src/models/family.ts";
import { ConfigError, MixCacheError } from "../src/errors.ts";
import { openCheckpoint, validateKeys } from "../src/weights/safetensors.ts";
import { randomArray, rng } from "./support/randomWeights.ts";
import { maxDiff } from "./support/compare.ts";
import { tinyHunyuan, writeTinyHunyuan } from "./support/writeTinyHunyuan.ts";
import {
  jointKeyMask, refConditioning, refDoubleAttn, refDoubleFf, refForward, refHead, refPatch, refRope, refSingleBlock, refSingleParts,
  refTimeOnly, refTokenRefiner, type RefPrompt,
} from "./support/hunyuanReference.ts";

const TOL = 1e-4;
let worst = { name: "", diff: 0, scale: 0, share: -1, n: 0 };

function check(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = TOL) {
  const { diff, scale } = maxDiff(got, want);
  assert.ok(diff <= tol * (1 + scale), `${name}: max diff ${diff} > ${tol} x (1 + ${scale})`);
  const share = diff / (tol * (1 + scale));
  worst.n++;
  if (share > worst.share) worst = { name, diff, scale, share, n: worst.n };
}

const cat = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from([...Array.from(a), ...Array.from(b)]);

/**
 * A padded prompt: `real` tokens then `pad` rows of large garbage (what a padded encoder output
 * may hold), with its mask, and the CLIP pooled vector.
 */
function paddedPrompt(c: HunyuanConfig, real: number, pad: number, seed: number): { input: PromptInput; ref: RefPrompt; trimmed: RefPrompt } {
  const r = rng(seed);
  const Dt = c.text_embed_dim;
  const data = new Float32Array((real + pad) * Dt);
  data.set(randomArray(real * Dt, r), 0);
  data.set(randomArray(pad * Dt, r, 50), real * Dt);
  const mask = new Uint8Array(real + pad);
  mask.fill(1, 0, real);
  const pooled = randomArray(c.pooled_projection_dim, r);
  return {
    input: { data, tokens: real + pad, mask, pooled },
    ref: { text: data, Sp: real + pad, mask, pooled },
    trimmed: { text: data.subarray(0, real * Dt), Sp: real, mask: null, pooled },
  };
}

const CASES = [
  { label: "patch 1x2x2, 2 heads x 16, guidance", overrides: {}, latent: [4, 3, 4, 6] },
  {
    label: "patch 2x2x2, 3 heads x 12, mlp_ratio 2.5, no guidance, in 3 / out 5",
    overrides: { patch_size_t: 2, num_attention_heads: 3, attention_head_dim: 12, rope_axes_dim: [2, 4, 6], mlp_ratio: 2.5, guidance_embeds: false, in_channels: 3, out_channels: 5, num_single_layers: 3 },
    latent: [3, 4, 4, 6],
  },
] as const;

for (const { label, overrides, latent } of CASES) {
  test(`ONNX stages match the float64 reference (${label})`, async () => {
    worst = { name: "", diff: 0, scale: 0, share: -1, n: 0 };
    const { config: c, weights } = tinyHunyuan(7, overrides as Record<string, unknown>);
    const w = (k: string) => weights.get(k)!;
    const model = await HunyuanVideoModel.load(c, mapSource(weights), { threads: 1 });
    const [C, F, H, W] = latent;
    const r = rng(3);
    const x = randomArray(C * F * H * W, r);
    const D = hunyuanDim(c);
    const t = 937.5;
    const guidance = 6.0;
    const { input, ref, trimmed } = paddedPrompt(c, 4, 3, 11);

    const grid = model.gridFor(F, H, W);
    const g = await model.prepareGrid(grid);
    const [Fp, Hp, Wp] = grid;
    const rope = refRope(c, Fp, Hp, Wp);
    assert.equal(g.L, Fp * Hp * Wp);

    const time = await model.time(t, guidance);
    check("time temb", time.temb, refTimeOnly(c, w, t, guidance * 1000));
    assert.equal(time.tproj, time.temb, "tproj is temb");
    const p = await model.encodePrompt(input);
    assert.equal(p.S, 4, "padding trimmed");
    const tok = await model.patch(g, x);
    check("patch embed", tok, refPatch(c, w, x, F, H, W));
    const { h: h0, time: bt } = await model.branchIn(g, tok, time, p, t);
    check("branch conditioning", bt.temb, refConditioning(c, w, t, guidance * 1000, input.pooled!));
    // the refiner on the padded, masked text (as diffusers runs it): real rows equal the trimmed run
    const refinedPadded = refTokenRefiner(c, w, ref.text, ref.Sp, ref.mask, t);
    check("token refiner (real rows of the masked padded run)", h0.subarray(g.L * D), refinedPadded.subarray(0, p.S * D));
    check("branchIn image rows", h0.subarray(0, g.L * D), tok, 0);

    // module by module on the same input h0 (ONNX values fed to both sides)
    const L = g.L, S = p.S;
    const img0 = h0.subarray(0, L * D), txt0 = h0.subarray(L * D);
    const da = refDoubleAttn(c, w, 0, img0, txt0, bt.temb, rope, S, null);
    check("double0 attn", await model.module(0, 0, g, h0, bt, p), cat(da.img, da.txt));
    const df = refDoubleFf(c, w, 0, img0, txt0, bt.temb, L, S);
    check("double0 ff", await model.module(0, 1, g, h0, bt, p), cat(df.img, df.txt));
    const sb = c.num_layers; // first single-stream block
    const parts = refSingleParts(c, w, 0, Float64Array.from(h0), bt.temb, rope, S);
    const sa = await model.module(sb, 0, g, h0, bt, p);
    const sm = await model.module(sb, 1, g, h0, bt, p);
    check("single0 attn (proj_out attention columns + bias)", sa, parts.attn);
    check("single0 mlp (proj_out mlp columns)", sm, parts.mlp);
    const literal = refSingleBlock(c, w, 0, Float64Array.from(h0), bt.temb, rope, S, null);
    const residual = literal.map((v, i) => v - h0[i]);
    check("single0 attn + mlp = gate proj_out(concat(attn, mlp))", sa.map((v, i) => v + sm[i]), residual);
    const hx = randomArray((L + S) * D, r);
    check("head", await model.head(g, hx, bt, p), refHead(c, w, hx.subarray(0, L * D), bt.temb, Fp, Hp, Wp));

    // end to end through the seams in the loop's order: double blocks sequential, single parallel
    let h = h0;
    for (let b = 0; b < model.blocks.length; b++) {
      const decl = model.blocks[b];
      if (decl.parallel) {
        const rs = [];
        for (let m = 0; m < decl.modules.length; m++) rs.push(await model.module(b, m, g, h, bt, p));
        const nh = Float32Array.from(h);
        for (const res of rs) for (let j = 0; j < nh.length; j++) nh[j] += res[j];
        h = nh;
      } else {
        for (let m = 0; m < decl.modules.length; m++) {
          const res = await model.module(b, m, g, h, bt, p);
          const nh = new Float32Array(h.length);
          for (let j = 0; j < h.length; j++) nh[j] = h[j] + res[j];
          h = nh;
        }
      }
    }
    const v = await model.head(g, h, bt, p);
    // the reference keeps the padded text (garbage rows) and applies diffusers' masks literally
    check("full forward vs padded + masked reference", v, refForward(c, w, x, F, H, W, t, guidance * 1000, ref));
    check("full forward vs trimmed reference", v, refForward(c, w, x, F, H, W, t, guidance * 1000, trimmed));
    console.log(`  hunyuan parity (${label}): ${worst.n} checks, worst max|diff| ${worst.diff.toExponential(2)} (${worst.name}, max|ref| ${worst.scale.toFixed(3)}, ${(worst.share * 100).toFixed(1)}% of tolerance ${TOL} x (1 + max|ref|))`);

    const macs = model.macs(g, p);
    assert.equal(macs.module.length, model.blocks.length);
    await model.release();
  });
}

test("padded text: diffusers' masks make the padding invisible, so trimming it is exact", () => {
  const { config: c, weights } = tinyHunyuan(9);
  const w = (k: string) => weights.get(k)!;
  const r = rng(4);
  const [C, F, H, W] = [4, 3, 4, 6];
  const x = randomArray(C * F * H * W, r);
  const { ref, trimmed } = paddedPrompt(c, 3, 4, 21);
  const padded = refForward(c, w, x, F, H, W, 500, 4500, ref);
  const clean = refForward(c, w, x, F, H, W, 500, 4500, trimmed);
  const same = maxDiff(padded, clean);
  console.log(`  mask: padded+masked vs trimmed reference (float64): max|diff| ${same.diff.toExponential(2)} (max|ref| ${same.scale.toFixed(3)}, tolerance 1e-9 x (1 + max|ref|))`);
  assert.ok(same.diff <= 1e-9 * (1 + same.scale), `masked padded run differs from the trimmed run by ${same.diff}`);
  // the check has teeth: without the mask the garbage rows change the output
  const unmasked = refForward(c, w, x, F, H, W, 500, 4500, { ...ref, mask: null });
  const apart = maxDiff(unmasked, clean);
  console.log(`  mask: unmasked padded vs trimmed reference: max|diff| ${apart.diff.toExponential(2)} (must be large)`);
  assert.ok(apart.diff > 1e-2, `the garbage padding did not matter without the mask (${apart.diff})`);
  // and the mask is the one diffusers builds: keys past L + sum(mask) are hidden from every query
  const allowed = jointKeyMask(10, 7, [1, 1, 1, 0, 0, 0, 0])!;
  assert.equal(allowed(0, 12), true);
  assert.equal(allowed(16, 13), false);
});

test("the 13B config: diffusers defaults, 12,821,012,544 parameters", () => {
  const c = parseHunyuanConfig({ _class_name: "HunyuanVideoTransformer3DModel", _diffusers_version: "0.32.0.dev0" });
  assert.deepEqual(c, HUNYUAN_DEFAULTS);
  // the hunyuanvideo-community/HunyuanVideo transformer/config.json fields parse to the same config
  const real = parseHunyuanConfig({
    _class_name: "HunyuanVideoTransformer3DModel", _diffusers_version: "0.32.0.dev0", attention_head_dim: 128, guidance_embeds: true,
    in_channels: 16, mlp_ratio: 4.0, num_attention_heads: 24, num_layers: 20, num_refiner_layers: 2, num_single_layers: 40, out_channels: 16,
    patch_size: 2, patch_size_t: 1, pooled_projection_dim: 768, qk_norm: "rms_norm", rope_axes_dim: [16, 56, 56], rope_theta: 256.0, text_embed_dim: 4096,
  });
  assert.deepEqual(real, c);
  assert.equal(parameterCount(c), 12_821_012_544);
  // the same number in closed form, module by module of the diffusers class
  const D = 3072, d = 128, M = 12288, Dt = 4096, Dp = 768;
  const L = (o: number, i: number) => o * i + o; // nn.Linear with bias
  const timestep = L(D, 256) + L(D, D);
  const refinerBlock = 2 * D + 4 * L(D, D) + 2 * D + L(M, D) + L(D, M) + L(2 * D, D);
  const contextEmbedder = timestep + L(D, Dt) + L(D, D) + L(D, Dt) + 2 * refinerBlock;
  const timeTextEmbed = 2 * timestep + L(D, Dp) + L(D, D);
  const double = 2 * L(6 * D, D) + 8 * L(D, D) + 4 * d + 2 * (L(M, D) + L(D, M));
  const single = 3 * L(D, D) + 2 * d + L(3 * D, D) + L(M, D) + L(D, D + M);
  const total = D * 16 * 2 * 2 + D + contextEmbedder + timeTextEmbed + 20 * double + 40 * single + L(2 * D, D) + L(16 * 4, D);
  assert.equal(total, 12_821_012_544);
  assert.equal(expectedShapes(c).size, 1264);
  assert.equal(mlpDim(c), 12288);
});

test("config errors name the field and the fix", () => {
  const bad = (raw: Record<string, unknown>, ...words: string[]) => {
    assert.throws(() => parseHunyuanConfig(raw), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
      for (const word of words) assert.ok((e as Error).message.includes(word), `"${(e as Error).message}" should mention ${word}`);
      return true;
    });
  };
  bad({ image_condition_type: "latent_concat" }, "image_condition_type", "image-to-video", "null");
  bad({ image_condition_type: "token_replace" }, "image_condition_type", "null");
  bad({ image_condition_type: "other" }, "image_condition_type", "null");
  bad({ num_heads: 24 }, 'unknown field "num_heads"', "num_attention_heads");
  bad({ _class_name: "WanTransformer3DModel" }, "_class_name", "HunyuanVideoTransformer3DModel");
  bad({ qk_norm: "layer_norm" }, "qk_norm", '"rms_norm"');
  bad({ rope_axes_dim: [16, 56, 48] }, "rope_axes_dim", "attention_head_dim", "128");
  bad({ rope_axes_dim: [16, 56] }, "rope_axes_dim", "[16, 56, 56]");
  bad({ rope_axes_dim: [15, 57, 56] }, "rope_axes_dim", "even");
  bad({ patch_size: [1, 2, 2] }, "patch_size", "patch_size_t");
  bad({ patch_size: 0 }, "patch_size", "1..8");
  bad({ num_layers: 1e9 }, "num_layers", "0..256");
  bad({ num_layers: 0, num_single_layers: 0 }, "num_layers + num_single_layers");
  bad({ mlp_ratio: -1 }, "mlp_ratio", "4.0");
  bad({ guidance_embeds: "yes" }, "guidance_embeds", "true");
  bad({ rope_theta: 0 }, "rope_theta", "256");
  bad({ in_channels: "16" }, "in_channels", "16");
  assert.throws(() => parseHunyuanConfig([]), ConfigError);
  // diffusers: out_channels = out_channels or in_channels
  assert.equal(parseHunyuanConfig({ in_channels: 32, out_channels: null }).out_channels, 32);
});

test("encodePrompt checks shapes and the mask, and trims right padding", async () => {
  const { config: c, weights } = tinyHunyuan(2, { num_layers: 1, num_single_layers: 1, num_refiner_layers: 1 });
  const model = await HunyuanVideoModel.load(c, mapSource(weights), { threads: 1 });
  const Dt = c.text_embed_dim;
  const data = randomArray(5 * Dt, rng(1));
  const pooled = randomArray(c.pooled_projection_dim, rng(2));
  const rejects = async (p: PromptInput, ...words: string[]) =>
    assert.rejects(model.encodePrompt(p), (e: unknown) => {
      assert.ok(e instanceof MixCacheError);
      for (const word of words) assert.ok((e as Error).message.includes(word), `"${(e as Error).message}" should mention ${word}`);
      return true;
    });
  await rejects({ data, tokens: 5 }, "pooled");
  await rejects({ data, tokens: 5, pooled: new Float32Array(3) }, "pooled_projection_dim");
  await rejects({ data, tokens: 4, pooled }, "text_embed_dim");
  await rejects({ data, tokens: 5, pooled, mask: new Uint8Array([1, 1, 1]) }, "mask");
  await rejects({ data, tokens: 5, pooled, mask: new Uint8Array([1, 0, 1, 0, 0]) }, "pad on the right");
  await rejects({ data, tokens: 5, pooled, mask: new Uint8Array(5) }, "no real token");
  assert.equal((await model.encodePrompt({ data, tokens: 5, pooled })).S, 5);
  assert.equal((await model.encodePrompt({ data, tokens: 5, pooled, mask: new Uint8Array([1, 1, 0, 0, 0]) })).S, 2);
  assert.throws(() => model.gridFor(3, 5, 6), /patch/);
  await model.release();
});

test("MACs: every Linear's weight x the rows it is applied to, plus QK^T and AV", async () => {
  const { config: c } = tinyHunyuan(1);
  const D = hunyuanDim(c), M = mlpDim(c), Mr = 4 * D;
  const L = 18, S = 5, N = L + S;
  const shapes = expectedShapes(c);
  const numel = (k: string) => shapes.get(`${k}.weight`)!.reduce((a, b) => a * b, 1);
  const m = hunyuanFamilyMacs(c, L, S);
  const te = numel("time_text_embed.timestep_embedder.linear_1") + numel("time_text_embed.timestep_embedder.linear_2");
  assert.equal(m.time, 2 * te);
  assert.equal(m.patch, L * numel("x_embedder.proj"));
  const ce = "context_embedder.";
  assert.equal(m.prompt, S * numel(`${ce}proj_in`) + numel(`${ce}time_text_embed.text_embedder.linear_1`) + numel(`${ce}time_text_embed.text_embedder.linear_2`)
    + numel("time_text_embed.text_embedder.linear_1") + numel("time_text_embed.text_embedder.linear_2"));
  let refiner = numel(`${ce}time_text_embed.timestep_embedder.linear_1`) + numel(`${ce}time_text_embed.timestep_embedder.linear_2`);
  for (let i = 0; i < c.num_refiner_layers; i++) {
    const p = `${ce}token_refiner.refiner_blocks.${i}.`;
    refiner += numel(`${p}norm_out.linear`) + S * (numel(`${p}attn.to_q`) + numel(`${p}attn.to_k`) + numel(`${p}attn.to_v`) + numel(`${p}attn.to_out.0`))
      + 2 * S * S * D + S * (numel(`${p}ff.net.0.proj`) + numel(`${p}ff.net.2`));
  }
  assert.equal(m.branchIn, refiner);
  const p0 = "transformer_blocks.0.";
  assert.equal(m.module[0][0] + m.module[0][1], numel(`${p0}norm1.linear`) + numel(`${p0}norm1_context.linear`)
    + L * (numel(`${p0}attn.to_q`) + numel(`${p0}attn.to_k`) + numel(`${p0}attn.to_v`) + numel(`${p0}attn.to_out.0`))
    + S * (numel(`${p0}attn.add_q_proj`) + numel(`${p0}attn.add_k_proj`) + numel(`${p0}attn.add_v_proj`) + numel(`${p0}attn.to_add_out`)) + 2 * N * N * D
    + L * (numel(`${p0}ff.net.0.proj`) + numel(`${p0}ff.net.2`)) + S * (numel(`${p0}ff_context.net.0.proj`) + numel(`${p0}ff_context.net.2`)));
  const s0 = "single_transformer_blocks.0.";
  const b = c.num_layers;
  // the modulation Linear runs in both halves of the parallel block
  assert.equal(m.module[b][0] + m.module[b][1], 2 * numel(`${s0}norm.linear`) + N * 3 * numel(`${s0}attn.to_q`) + 2 * N * N * D
    + N * numel(`${s0}proj_mlp`) + N * numel(`${s0}proj_out`));
  assert.equal(m.module[b][1], numel(`${s0}norm.linear`) + N * D * M * 2);
  assert.equal(m.head, numel("norm_out.linear") + L * numel("proj_out"));
  assert.equal(Mr, 4 * D);
});

test("tiny diffusers folder: exact layout and keys, loads from the checkpoint", async () => {
  const folder = writeTinyHunyuan({ seed: 5 });
  const cfgPath = join(folder.dir, "transformer", "config.json");
  const raw = JSON.parse(readFileSync(cfgPath, "utf8"));
  assert.equal(raw._class_name, "HunyuanVideoTransformer3DModel");
  assert.equal(typeof raw._diffusers_version, "string");
  const c = readHunyuanConfig(cfgPath);
  assert.deepEqual(c, folder.config);
  const ckpt = openCheckpoint(join(folder.dir, "transformer", "diffusion_pytorch_model.safetensors"));
  validateKeys(ckpt, expectedShapes(c)); // every key, no extra, exact shapes
  for (const k of ["x_embedder.proj.weight", "context_embedder.token_refiner.refiner_blocks.1.norm_out.linear.weight", "transformer_blocks.1.attn.to_add_out.bias",
    "transformer_blocks.0.attn.norm_added_k.weight", "transformer_blocks.0.ff_context.net.2.weight", "single_transformer_blocks.1.proj_out.weight",
    "time_text_embed.guidance_embedder.linear_2.bias", "norm_out.linear.weight", "proj_out.bias"])
    assert.ok(ckpt.has(k), k);
  const sched = JSON.parse(readFileSync(join(folder.dir, "scheduler", "scheduler_config.json"), "utf8"));
  assert.equal(sched._class_name, "FlowMatchEulerDiscreteScheduler");
  assert.equal(sched.shift, 7.0);
  const index = JSON.parse(readFileSync(join(folder.dir, "model_index.json"), "utf8"));
  assert.equal(index._class_name, "HunyuanVideoPipeline");
  assert.deepEqual(index.transformer, ["diffusers", "HunyuanVideoTransformer3DModel"]);
  assert.ok(!existsSync(join(writeTinyHunyuan({ scheduler: false, modelIndex: false }).dir, "model_index.json")));

  // the model read from the file computes what the in-memory weights compute
  const fromFile = await HunyuanVideoModel.load(c, { read: (k) => ckpt.readF32(k) }, { threads: 1 });
  const fromMap = await HunyuanVideoModel.load(c, mapSource(folder.weights), { threads: 1 });
  const run = async (model: HunyuanVideoModel) => {
    const g = await model.prepareGrid(model.gridFor(1, 4, 4));
    const p = await model.encodePrompt({ data: randomArray(3 * c.text_embed_dim, rng(8)), tokens: 3, pooled: randomArray(c.pooled_projection_dim, rng(9)) });
    const time = await model.time(400, 5);
    const { h, time: bt } = await model.branchIn(g, await model.patch(g, randomArray(4 * 16, rng(10))), time, p, 400);
    return model.head(g, h, bt, p);
  };
  assert.deepEqual(await run(fromFile), await run(fromMap));
  ckpt.close();
  await fromFile.release();
  await fromMap.release();
});
