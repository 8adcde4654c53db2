/**
 * The shapes dataset mirror (src/data/shapes.ts) against the Python generator's golden values
 * (test/golden/shapes.json, written by `/usr/bin/python3 tools/dataset_golden.py`), captions, and
 * the adherence evaluator (src/metrics/adherence.ts) on clips with known ground truth.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  allCombos,
  caption,
  loadVocab,
  Mulberry32,
  parseCaption,
  render,
  splitCombos,
  trajectory,
  type Attrs,
  type ClipTensor,
  type Vocab,
} from "../src/data/shapes.ts";
import { sampleClip } from "../src/data/datasets.ts";
import { aggregateAdherence, detectAdherence, evaluateAdherence, scoreAdherence, type AdherenceSummary } from "../src/metrics/adherence.ts";
import { MixCacheError } from "../src/errors.ts";
import { createHash } from "node:crypto";
import { datasetVocab } from "../src/data/shapes.ts";

const vocab = loadVocab();
const golden = JSON.parse(readFileSync(fileURLToPath(new URL("./golden/shapes.json", import.meta.url)), "utf-8"));

/** A bank of N(0, 1) samples (Box-Muller over Mulberry32); clips take windows of it at different
 * offsets, which keeps the noise iid within a clip while generating it once. */
const NOISE_BANK = (() => {
  const rng = new Mulberry32(424242);
  const d = new Float64Array(1 << 17);
  for (let i = 0; i < d.length; i += 2) {
    const u1 = Math.max(rng.random(), 1e-12);
    const u2 = rng.random();
    const r = Math.sqrt(-2 * Math.log(u1));
    d[i] = r * Math.cos(2 * Math.PI * u2);
    d[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return d;
})();

function gaussianNoise(clip: ClipTensor, sigma: number, seed: number): ClipTensor {
  const n = NOISE_BANK.length;
  const off = new Mulberry32(seed).nextU32() % n;
  const d = new Float32Array(clip.data.length);
  for (let i = 0; i < d.length; i++) d[i] = clip.data[i] + sigma * NOISE_BANK[(off + i) % n];
  return { data: d, dims: [...clip.dims] };
}

const fmt = (s: AdherenceSummary) =>
  `n=${s.n} colour=${s.colour.toFixed(3)} shape=${s.shape.toFixed(3)} motion=${s.motion.toFixed(3)} background=${s.background.toFixed(3)} all=${s.all.toFixed(3)}`;

test("golden parity: Mulberry32 stream matches Python", () => {
  const rng = new Mulberry32(12345);
  assert.deepEqual(Array.from({ length: 6 }, () => rng.nextU32()), golden.mulberry32.seed12345_u32);
  const neg = new Mulberry32(-1);
  assert.deepEqual(Array.from({ length: 4 }, () => neg.random()), golden.mulberry32.seedminus1_random);
});

test("golden parity: combos and held-out split match Python", () => {
  const combos = allCombos(vocab);
  const [train, heldout] = splitCombos(vocab);
  assert.equal(combos.length, golden.n_combos);
  assert.equal(train.length, golden.n_train);
  assert.deepEqual(heldout.map((a) => caption(vocab, a)), golden.heldout);
  const key = (a: Attrs) => caption(vocab, a);
  const trainKeys = new Set(train.map(key));
  assert.ok(heldout.every((a) => !trainKeys.has(key(a))), "held-out combos never in train");
  assert.equal(trainKeys.size + heldout.length, combos.length);
});

test("golden parity: sampled clips (attrs, trajectory, pixels, checksums) match Python", () => {
  const combos = allCombos(vocab);
  const [train] = splitCombos(vocab);
  for (const g of golden.clips) {
    const pool = g.combos === "train" ? train : combos;
    const { attrs, clip } = sampleClip(vocab, pool, g.seed);
    const where = `seed ${g.seed}`;
    assert.deepEqual(attrs, g.attrs, where);
    assert.equal(caption(vocab, attrs), g.caption, where);
    const rng = new Mulberry32(g.seed);
    rng.random();
    assert.deepEqual(trajectory(vocab, attrs, rng), g.trajectory, where); // bit-identical float64
    assert.deepEqual(clip.dims, g.shape, where);
    assert.ok(clip.data instanceof Float32Array);
    const [, T, H, W] = clip.dims;
    for (const [c, t, y, x, v] of g.pixels as number[][]) {
      const got = clip.data[((c * T + t) * H + y) * W + x];
      assert.ok(Math.abs(got - v) <= 1e-6, `${where} pixel [${c},${t},${y},${x}]: ${got} vs ${v}`);
    }
    let sum = 0;
    let wsum = 0;
    let asum = 0;
    for (let i = 0; i < clip.data.length; i++) {
      const v = clip.data[i];
      sum += v;
      wsum += v * ((i % 101) / 101);
      asum += Math.abs(v);
    }
    assert.ok(Math.abs(sum - g.sum) <= 1e-6, `${where} sum ${sum} vs ${g.sum}`);
    assert.ok(Math.abs(wsum - g.weighted_sum) <= 1e-6, `${where} weighted sum ${wsum} vs ${g.weighted_sum}`);
    assert.ok(Math.abs(asum - g.abs_sum) <= 1e-6, `${where} abs sum ${asum} vs ${g.abs_sum}`);
    assert.equal(clipSha(clip), g.sha256, `${where}: float32 bytes differ from Python`);
  }
});

/** sha256 of a clip's float32 bytes, little-endian (the Python golden writes "<f4"). */
const clipSha = (clip: ClipTensor) => createHash("sha256").update(Buffer.from(clip.data.buffer, clip.data.byteOffset, clip.data.byteLength)).digest("hex");

test("golden parity (textures): combos, held-out split and clips match Python bit for bit", () => {
  const tv = datasetVocab(vocab, "textures");
  const g = golden.textures;
  const combos = allCombos(tv);
  const [train, heldout] = splitCombos(tv);
  assert.equal(combos.length, g.n_combos);
  assert.equal(train.length, g.n_train);
  const caps = heldout.map((a) => caption(tv, a));
  assert.deepEqual(caps.slice(0, 12), g.heldout_first);
  assert.equal(createHash("sha256").update(caps.join("\n"), "utf-8").digest("hex"), g.heldout_sha256);
  const backgrounds = new Set<string>();
  const patterns = new Set<string>();
  for (const c of g.clips) {
    const { attrs, clip } = sampleClip(tv, c.combos === "train" ? train : combos, c.seed);
    assert.deepEqual(attrs, c.attrs, `seed ${c.seed}`);
    assert.equal(caption(tv, attrs), c.caption);
    assert.deepEqual(clip.dims, c.shape);
    assert.equal(clipSha(clip), c.sha256, `seed ${c.seed} (${c.caption}): float32 bytes differ from Python`);
    backgrounds.add(attrs.background);
    patterns.add(attrs.pattern ?? "");
  }
  // the golden clips cover every texture and pattern
  assert.deepEqual([...backgrounds].sort(), Object.keys(tv.backgrounds).sort());
  assert.deepEqual([...patterns].sort(), [...(tv.patterns ?? [])].sort());
});

test("textures: the caption fixes the class, the clip's random stream the instance", () => {
  const tv = datasetVocab(vocab, "textures");
  const combos = allCombos(tv);
  // two seeds that draw the same combination give different pixels (the instance is random) ...
  const bySeed = new Map<string, number>();
  let pair: [number, number] | null = null;
  for (let seed = 0; seed < 5000 && !pair; seed++) {
    const k = caption(tv, sampleClip(tv, combos, seed).attrs);
    const prev = bySeed.get(k);
    if (prev !== undefined) pair = [prev, seed];
    else bySeed.set(k, seed);
  }
  assert.ok(pair, "two seeds with one combination");
  const a = sampleClip(tv, combos, pair[0]).clip.data;
  const b = sampleClip(tv, combos, pair[1]).clip.data;
  let diff = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) diff++;
  assert.ok(diff > a.length * 0.2, `same caption, different seeds: ${diff} of ${a.length} values differ`);
  // ... and the textures caption parses back to its attributes, pattern included
  for (const attrs of combos.slice(0, 200)) assert.deepEqual(parseCaption(tv, caption(tv, attrs)), attrs);
  assert.equal(parseCaption(tv, "a small red circle moving left on a grass background"), null, "pattern missing");
});

test("parseCaption: round-trips every combination and rejects non-template captions", () => {
  for (const a of allCombos(vocab)) assert.deepEqual(parseCaption(vocab, caption(vocab, a)), a);
  assert.deepEqual(parseCaption(vocab, "  A small RED circle   moving left on a black background "), {
    shape: "circle",
    colour: "red",
    size: "small",
    motion: "moving left",
    background: "black",
  });
  for (const bad of [
    "",
    "a red circle moving left on a black background", // size missing
    "a small purple circle moving left on a black background", // colour not in the vocabulary
    "a small red circle moving sideways on a black background",
    "a small red circle moving left on a black background please",
    "the small red circle moving left on a black background",
    "a small red hexagon moving left on a black background",
    "a cat playing the piano",
  ]) {
    assert.equal(parseCaption(vocab, bad), null, bad);
  }
});

// every combination (held-out included), each with its own fixed trajectory seed
const items = allCombos(vocab).map((attrs, k) => ({ attrs, clip: render(vocab, attrs, new Mulberry32(10_000 + k)) }));

test("adherence: clean generator clips, all combinations", () => {
  const [, heldout] = splitCombos(vocab);
  const covered = new Set(items.map((it) => caption(vocab, it.attrs)));
  assert.ok(items.length >= 300 && heldout.every((h) => covered.has(caption(vocab, h))));
  const { summary, detections } = evaluateAdherence(vocab, items);
  console.log(`adherence clean: ${fmt(summary)}`);
  assert.ok(summary.colour >= 0.98, fmt(summary));
  assert.ok(summary.motion >= 0.98, fmt(summary));
  assert.ok(summary.shape >= 0.9, fmt(summary));
  assert.ok(summary.background >= 0.98, fmt(summary));
  assert.ok(detections.every((d) => d.ok));
});

test("adherence: same clips with Gaussian noise sigma 0.1", () => {
  const noisy = items.map((it, k) => ({ attrs: it.attrs, clip: gaussianNoise(it.clip, 0.1, 77_000 + k) }));
  const { summary } = evaluateAdherence(vocab, noisy);
  console.log(`adherence noise 0.1: ${fmt(summary)}`);
  // measured 1.000 on every attribute (and still 1.000 at sigma 0.3); asserted with some slack
  assert.ok(summary.colour >= 0.97, fmt(summary));
  assert.ok(summary.motion >= 0.97, fmt(summary));
  assert.ok(summary.shape >= 0.9, fmt(summary));
  assert.ok(summary.background >= 0.97, fmt(summary));
});

test("adherence: other resolutions and frame counts", () => {
  const big: Vocab = { ...vocab, clip: { ...vocab.clip, frames: 3, height: 64, width: 48 }, sizes: { small: 8, large: 14 }, speed_px_per_frame: 5 };
  const two: Vocab = { ...vocab, clip: { ...vocab.clip, frames: 2 }, speed_px_per_frame: 6 };
  const scores = [];
  for (const v of [big, two]) {
    const combos = allCombos(v);
    for (let k = 0; k < combos.length; k += 7) {
      const clip = render(v, combos[k], new Mulberry32(k));
      scores.push(scoreAdherence(detectAdherence(clip, v), combos[k]));
    }
  }
  const s = aggregateAdherence(scores);
  console.log(`adherence 3x64x48 and 2x32x32: ${fmt(s)}`);
  assert.ok(s.colour >= 0.98 && s.motion >= 0.98 && s.shape >= 0.9 && s.background >= 0.98, fmt(s));
});

test("adherence: no shape, degenerate content and bad dims", () => {
  const [, T, H, W] = [3, vocab.clip.frames, vocab.clip.height, vocab.clip.width];
  const plain = (rgb: readonly number[]) => {
    const data = new Float32Array(3 * T * H * W);
    for (let c = 0; c < 3; c++) data.fill((rgb[c] / 255) * 2 - 1, c * T * H * W, (c + 1) * T * H * W);
    return { data, dims: [3, T, H, W] as [number, number, number, number] };
  };
  for (const [name, rgb] of Object.entries(vocab.backgrounds)) {
    for (const clip of [plain(rgb), gaussianNoise(plain(rgb), 0.1, 5)]) {
      const d = detectAdherence(clip, vocab);
      assert.equal(d.ok, false);
      assert.equal(d.background, name);
      assert.equal(d.colour, "unknown");
      assert.equal(d.shape, "unknown");
      assert.equal(d.motion, "none");
      assert.deepEqual(scoreAdherence(d, { colour: "red", shape: "circle", motion: "moving left", background: name }), {
        colour: 0,
        shape: 0,
        motion: 0,
        background: 1,
      });
    }
  }
  // static shape: detected, but motion "none"
  const still = render({ ...vocab, speed_px_per_frame: 0 }, { shape: "square", colour: "red", size: "large", motion: "moving up", background: "navy" }, new Mulberry32(3));
  const ds = detectAdherence(still, vocab);
  assert.equal(ds.shape, "square");
  assert.equal(ds.motion, "none");
  // NaN / infinities / wild values: no throw
  const nan = new Float32Array(3 * T * H * W).fill(NaN);
  assert.equal(detectAdherence({ data: nan, dims: [3, T, H, W] }, vocab).ok, false);
  const wild = gaussianNoise(plain([0, 0, 0]), 5, 9);
  wild.data[7] = Infinity;
  wild.data[8] = -Infinity;
  assert.doesNotThrow(() => detectAdherence(wild, vocab));
  assert.throws(() => detectAdherence({ data: new Float32Array(10), dims: [3, 1, 2, 2] }, vocab), MixCacheError);
  assert.throws(() => detectAdherence({ data: new Float32Array(12), dims: [3, 2, 2, 2] }, vocab), MixCacheError);
  assert.deepEqual(aggregateAdherence([]), { n: 0, colour: 0, shape: 0, motion: 0, background: 0, all: 0, mean: 0 });
});
