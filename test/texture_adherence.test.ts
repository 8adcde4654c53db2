/**
 * The textures-dataset adherence evaluator and quality score (src/metrics/texture-adherence.ts)
 * against generator clips with known ground truth (src/data/textures.ts), noisy and degraded
 * copies of them (among them a "model-like" degradation that reproduces what the trained textures
 * model draws), and content it must survive (NaN, flat, noise).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { allCombos, datasetVocab, insideFn, loadVocab, Mulberry32, trajectory, type Attrs, type ClipTensor } from "../src/data/shapes.ts";
import { sampleClip } from "../src/data/datasets.ts";
import { textureBackground } from "../src/data/textures.ts";
import {
  aggregateTextureAdherence,
  detectTextureAdherence,
  evaluateTextureAdherence,
  scoreTextureAdherence,
  texturePrototypes,
  textureQuality,
  textureQualityParts,
  type TextureAdherenceSummary,
} from "../src/metrics/texture-adherence.ts";
import { MixCacheError, UsageError } from "../src/errors.ts";

const vocab = datasetVocab(loadVocab(), "textures");
const combos = allCombos(vocab);
const { frames: T, height: H, width: W } = vocab.clip;
const N = T * H * W;

/** Clip `i` of a seeded series over all combinations (seeds far from the prototypes' ones). */
const clipAt = (i: number, base = 100_000) => {
  const seed = base + i;
  return { seed, ...sampleClip(vocab, combos, seed) };
};

function gaussianNoise(clip: ClipTensor, sigma: number, seed: number): ClipTensor {
  const rng = new Mulberry32(seed);
  const data = Float32Array.from(clip.data);
  for (let j = 0; j < data.length; j += 2) {
    const r = Math.sqrt(-2 * Math.log(Math.max(rng.random(), 1e-12)));
    const a = 2 * Math.PI * rng.random();
    data[j] += sigma * r * Math.cos(a);
    if (j + 1 < data.length) data[j + 1] += sigma * r * Math.sin(a);
  }
  return { data, dims: clip.dims };
}

/** 3x3 box blur of every frame and channel (borders average the pixels that exist). */
function boxBlur(clip: ClipTensor): ClipTensor {
  const data = new Float32Array(clip.data.length);
  for (let plane = 0; plane < 3 * T; plane++) {
    const o = plane * H * W;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        let s = 0;
        let n = 0;
        for (let yy = Math.max(0, y - 1); yy <= Math.min(H - 1, y + 1); yy++)
          for (let xx = Math.max(0, x - 1); xx <= Math.min(W - 1, x + 1); xx++) {
            s += clip.data[o + yy * W + xx];
            n++;
          }
        data[o + y * W + x] = s / n;
      }
  }
  return { data, dims: clip.dims };
}

/** The clip with every pure-background pixel (zero shape coverage) replaced by their mean colour;
 * the coverage is recomputed from the same random stream as sampleClip + renderTextured. */
function flattenBackground(clip: ClipTensor, attrs: Attrs, seed: number): ClipTensor {
  const rng = new Mulberry32(seed);
  rng.random(); // the combination draw
  const traj = trajectory(vocab, attrs, rng);
  const r = vocab.sizes[attrs.size];
  const inside = insideFn(attrs.shape);
  const bg = new Uint8Array(N);
  for (let t = 0; t < T; t++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        let hit = false;
        for (const oy of [0.25, 0.75]) for (const ox of [0.25, 0.75]) hit ||= inside(x + ox, y + oy, traj[t][0], traj[t][1], r);
        bg[(t * H + y) * W + x] = hit ? 0 : 1;
      }
  const data = Float32Array.from(clip.data);
  for (let c = 0; c < 3; c++) {
    let s = 0;
    let n = 0;
    for (let i = 0; i < N; i++) if (bg[i]) (s += clip.data[c * N + i]), n++;
    for (let i = 0; i < N; i++) if (bg[i]) data[c * N + i] = s / n;
  }
  return { data, dims: clip.dims };
}

/**
 * A "model-like" degradation of generator clip `seed` (sampleClip), reproducing what the trained
 * textures model draws (see the contact sheets of `mixcache evaluate --model textures`): soft shape
 * edges (the shape's coverage blurred with a Gaussian of sigma 0.8, then a ragged rim), a shape that
 * is not rigid (jittered by up to 1 px a frame), its colour shifted by up to +-15 per channel, the
 * background approximated (still textures half smoothed and flickering, water redrawn as a moving
 * grid of lines lighter than the generator's, static as fine grey noise with a colour tint, every
 * class shifted by up to +-10), and grain (sigma 12 levels) that overshoots the [-1, 1] range.
 * The pure background comes from the clip's random stream, in the generator's order (combination,
 * trajectory, pattern: 0 draws plain, 2 striped or checkered, 10 x 10 dotted; background); pixels the
 * shape does not touch are checked against it, so a change of that order fails here, loudly.
 */
function modelLike(clip: ClipTensor, attrs: Attrs, seed: number): ClipTensor {
  const HW = H * W;
  const rng = new Mulberry32(seed);
  rng.random(); // the combination draw
  const traj = trajectory(vocab, attrs, rng);
  const patternDraws: Record<string, number> = { plain: 0, striped: 2, checkered: 2, dotted: 100 };
  for (let k = 0; k < patternDraws[attrs.pattern!]; k++) rng.random();
  const bg = textureBackground(vocab, attrs.background, rng);
  const r = vocab.sizes[attrs.size];
  const inside = insideFn(attrs.shape);
  const d = new Mulberry32(seed ^ 0x5bd1e995);
  const gauss = () => Math.sqrt(-2 * Math.log(Math.max(d.random(), 1e-12))) * Math.cos(2 * Math.PI * d.random());
  const px = (c: number, i: number) => (clip.data[c * N + i] + 1) * 127.5;
  const k5 = [-2, -1, 0, 1, 2].map((o) => Math.exp(-(o * o) / (2 * 0.8 * 0.8)));
  const k5s = k5.reduce((a, b) => a + b, 0);
  // the shape layer: its coverage (blurred) and its colour (the generator's colour and pattern,
  // extended 2 px outwards so that the blurred rim has one), per frame, jittered
  const alpha = new Float64Array(N);
  const layer = new Float64Array(3 * N);
  for (let t = 0; t < T; t++) {
    const jx = Math.floor(d.random() * 3) - 1;
    const jy = Math.floor(d.random() * 3) - 1;
    const cov = new Float64Array(HW);
    const lay = new Float64Array(3 * HW);
    const has = new Uint8Array(HW);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const i = (t * H + y) * W + x;
        let n = 0;
        for (const oy of [0.25, 0.75]) for (const ox of [0.25, 0.75]) if (inside(x + ox, y + oy, traj[t][0], traj[t][1], r)) n++;
        if (n === 0) {
          for (let c = 0; c < 3; c++) assert.ok(Math.abs(px(c, i) - bg[c * N + i]) < 0.01, "modelLike: the background stream no longer matches the generator's");
          continue;
        }
        const xx = x + jx;
        const yy = y + jy;
        if (xx < 0 || xx >= W || yy < 0 || yy >= H) continue;
        const a = n / 4;
        const p = yy * W + xx;
        cov[p] = a;
        has[p] = 1;
        for (let c = 0; c < 3; c++) lay[c * HW + p] = (px(c, i) - bg[c * N + i] * (1 - a)) / a;
      }
    for (let pass = 0; pass < 2; pass++) {
      const grown: Array<[number, number[]]> = [];
      for (let p = 0; p < HW; p++) {
        if (has[p]) continue;
        const y = (p / W) | 0;
        const x = p - y * W;
        const sum = [0, 0, 0];
        let n = 0;
        for (let yy = Math.max(0, y - 1); yy <= Math.min(H - 1, y + 1); yy++)
          for (let xx = Math.max(0, x - 1); xx <= Math.min(W - 1, x + 1); xx++) {
            if (!has[yy * W + xx]) continue;
            for (let c = 0; c < 3; c++) sum[c] += lay[c * HW + yy * W + xx];
            n++;
          }
        if (n) grown.push([p, sum.map((v) => v / n)]);
      }
      for (const [p, v] of grown) {
        has[p] = 1;
        for (let c = 0; c < 3; c++) lay[c * HW + p] = v[c];
      }
    }
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        let a = 0;
        for (let dy = -2; dy <= 2; dy++)
          for (let dx = -2; dx <= 2; dx++) a += k5[dy + 2] * k5[dx + 2] * cov[Math.min(H - 1, Math.max(0, y + dy)) * W + Math.min(W - 1, Math.max(0, x + dx))];
        a /= k5s * k5s;
        if (a > 0.05 && a < 0.95) a = Math.min(1, Math.max(0, a + 0.25 * (2 * d.random() - 1)));
        const i = (t * H + y) * W + x;
        alpha[i] = a;
        for (let c = 0; c < 3; c++) layer[c * N + i] = lay[c * HW + y * W + x];
      }
  }
  const fgShift = [0, 1, 2].map(() => Math.round(30 * d.random() - 15));
  const bgShift = [0, 1, 2].map(() => Math.round(20 * d.random() - 10));
  // the approximated background
  const name = attrs.background;
  const base = vocab.backgrounds[name];
  const detail = vocab.background_detail![name];
  const p1 = 5 + Math.floor(d.random() * 4);
  const p2 = 5 + Math.floor(d.random() * 4);
  const ph1 = d.random() * 8;
  const ph2 = d.random() * 8;
  const data = new Float32Array(3 * N);
  for (let t = 0; t < T; t++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const i = (t * H + y) * W + x;
        const grey = 30 + 200 * d.random();
        const line = (x + ph1 + t) % p1 < 1.5 || (y + ph2) % p2 < 1.5;
        for (let c = 0; c < 3; c++) {
          let v: number;
          if (name === "static") v = grey + 10 * gauss();
          else if (name === "water") v = line ? detail[c] + 0.4 * (255 - detail[c]) : base[c];
          else if (name === "cloud") v = bg[c * N + i];
          else {
            let sum = 0;
            let n = 0;
            for (let yy = Math.max(0, y - 1); yy <= Math.min(H - 1, y + 1); yy++)
              for (let xx = Math.max(0, x - 1); xx <= Math.min(W - 1, x + 1); xx++) (sum += bg[c * N + (t * H + yy) * W + xx]), n++;
            v = 0.5 * bg[c * N + i] + (0.5 * sum) / n + 6 * gauss();
          }
          const a = alpha[i];
          const out = (v + bgShift[c]) * (1 - a) + (layer[c * N + i] + fgShift[c]) * a + 12 * gauss();
          data[c * N + i] = (out / 255) * 2 - 1;
        }
      }
  return { data, dims: clip.dims };
}

const quantile = (v: readonly number[], q: number) => {
  const a = [...v].sort((x, y) => x - y);
  return a[Math.round(q * (a.length - 1))];
};
const line = (name: string, s: TextureAdherenceSummary) =>
  console.log(
    `# ${name}: n=${s.n} background ${s.background.toFixed(3)} pattern ${s.pattern.toFixed(3)} texture ${s.texture.toFixed(3)} ` +
      `colour ${s.colour.toFixed(3)} shape ${s.shape.toFixed(3)} motion ${s.motion.toFixed(3)} all ${s.all.toFixed(3)}`,
  );

test("texture adherence: ground truth on 300 generator clips over all combinations", () => {
  const items = Array.from({ length: 300 }, (_, i) => clipAt(i));
  const { summary, scores } = evaluateTextureAdherence(vocab, items);
  line("generator", summary);
  assert.ok(summary.background >= 0.95, `background ${summary.background}`);
  assert.ok(summary.pattern >= 0.93, `pattern ${summary.pattern}`);
  assert.ok(summary.texture >= 0.93, `texture ${summary.texture}`);
  assert.ok(summary.colour >= 0.95, `colour ${summary.colour}`);
  assert.ok(summary.shape >= 0.93, `shape ${summary.shape}`);
  assert.ok(summary.motion >= 0.95, `motion ${summary.motion}`);
  // no single class may be carried by the others: every background class and pattern >= 0.8
  for (const key of ["background", "pattern"] as const) {
    for (const name of key === "background" ? Object.keys(vocab.backgrounds) : vocab.patterns!) {
      const mine = scores.filter((_, i) => items[i].attrs[key] === name);
      const rate = mine.reduce((s, x) => s + x.texture, 0) / mine.length;
      assert.ok(mine.length >= 20 && rate >= 0.8, `${key} ${name}: texture ${rate} over ${mine.length}`);
    }
  }
});

test("texture adherence: robust to Gaussian noise sigma 0.05", () => {
  const items = Array.from({ length: 150 }, (_, i) => {
    const c = clipAt(i, 200_000);
    return { attrs: c.attrs, clip: gaussianNoise(c.clip, 0.05, c.seed) };
  });
  const { summary } = evaluateTextureAdherence(vocab, items);
  line("noise 0.05", summary);
  assert.ok(summary.background >= 0.95, `background ${summary.background}`);
  assert.ok(summary.pattern >= 0.9, `pattern ${summary.pattern}`);
  assert.ok(summary.texture >= 0.9, `texture ${summary.texture}`);
  assert.ok(summary.colour >= 0.9, `colour ${summary.colour}`);
  assert.ok(summary.shape >= 0.9, `shape ${summary.shape}`);
  assert.ok(summary.motion >= 0.9, `motion ${summary.motion}`);
});

test("texture adherence: robust to a model-like degradation (soft edges, shifted colours, approximated textures, grain)", () => {
  const items = Array.from({ length: 150 }, (_, i) => {
    const c = clipAt(i, 400_000);
    return { attrs: c.attrs, clip: modelLike(c.clip, c.attrs, c.seed) };
  });
  const { summary, scores } = evaluateTextureAdherence(vocab, items);
  line("model-like", summary);
  for (const k of ["background", "pattern", "colour", "shape", "motion"] as const) assert.ok(summary[k] >= 0.85, `${k} ${summary[k]}`);
  // every background class keeps its colour and class: the failure this guards against read a model's
  // static as water and the light lines of its water as a white shape
  for (const name of Object.keys(vocab.backgrounds)) {
    const mine = scores.filter((_, i) => items[i].attrs.background === name);
    const rate = (k: "background" | "colour") => mine.reduce((s, x) => s + x[k], 0) / mine.length;
    assert.ok(rate("background") >= 0.8 && rate("colour") >= 0.8, `${name}: background ${rate("background")} colour ${rate("colour")} over ${mine.length}`);
  }
  // the quality score stays graded: below the generator's, but not collapsed by failing to find the shape
  const q = items.slice(0, 40).map(({ clip, attrs }) => textureQuality(clip, vocab, attrs));
  const gen = Array.from({ length: 40 }, (_, i) => clipAt(i, 400_000)).map(({ clip, attrs }) => textureQuality(clip, vocab, attrs));
  console.log(`# quality: model-like median ${quantile(q, 0.5).toFixed(3)} (generator ${quantile(gen, 0.5).toFixed(3)})`);
  assert.ok(quantile(q, 0.5) < quantile(gen, 0.5) - 0.1, `model-like median ${quantile(q, 0.5)}`);
  assert.ok(quantile(q, 0.5) > 0.4, `model-like median ${quantile(q, 0.5)}`);
});

test("texture adherence: scoring, combined texture attribute, aggregation", () => {
  const { attrs, clip } = clipAt(7);
  const det = detectTextureAdherence(clip, vocab);
  const right = scoreTextureAdherence(det, attrs);
  assert.deepEqual(right, { colour: 1, shape: 1, motion: 1, background: 1, pattern: 1, texture: 1 });
  assert.ok(det.ok && det.confidence.background > 0 && det.confidence.colour > 0);
  const otherBg = Object.keys(vocab.backgrounds).find((b) => b !== attrs.background)!;
  const otherPat = vocab.patterns!.find((p) => p !== attrs.pattern)!;
  const s1 = scoreTextureAdherence(det, { ...attrs, background: otherBg });
  assert.equal(s1.background, 0);
  assert.equal(s1.pattern, 1);
  assert.equal(s1.texture, 0);
  const s2 = scoreTextureAdherence(det, { ...attrs, pattern: otherPat });
  assert.equal(s2.texture, 0);
  assert.equal(scoreTextureAdherence(det, { ...attrs, pattern: undefined }).pattern, 0);
  const agg = aggregateTextureAdherence([right, s1]);
  assert.equal(agg.n, 2);
  assert.equal(agg.texture, 0.5);
  assert.equal(agg.background, 0.5);
  assert.equal(agg.colour, 1);
  assert.equal(agg.all, 0.5);
  assert.deepEqual(aggregateTextureAdherence([]), { n: 0, colour: 0, shape: 0, motion: 0, background: 0, pattern: 0, texture: 0, all: 0, mean: 0 });
  // prototypes are built once per vocabulary
  assert.equal(texturePrototypes(vocab), texturePrototypes(datasetVocab(loadVocab(), "textures")));
});

test("texture adherence: never throws on content, rejects malformed input", () => {
  const mk = (fill: (i: number) => number): ClipTensor => ({ data: Float32Array.from({ length: 3 * N }, (_, i) => fill(i)), dims: [3, T, H, W] });
  const rng = new Mulberry32(5);
  const cases: Record<string, ClipTensor> = {
    nan: mk(() => NaN),
    flat: mk(() => 0.2),
    black: mk(() => -1),
    infinite: mk((i) => (i % 2 ? Infinity : -Infinity)),
    uniformNoise: mk(() => rng.random() * 2 - 1),
  };
  for (const [name, clip] of Object.entries(cases)) {
    const det = detectTextureAdherence(clip, vocab);
    assert.equal(det.ok, false, name);
    if (name !== "uniformNoise") {
      for (const k of ["background", "pattern", "colour", "shape"] as const) assert.equal(det[k], "unknown", `${name} ${k}`);
      assert.equal(det.motion, "none", name);
    }
  }
  // pure generator backgrounds, no shape: the class is found, the shape is not
  Object.keys(vocab.backgrounds).forEach((name, k) => {
    const bg = textureBackground(vocab, name, new Mulberry32(900 + k));
    const det = detectTextureAdherence({ data: Float32Array.from(bg, (v) => (v / 255) * 2 - 1), dims: [3, T, H, W] }, vocab);
    assert.equal(det.background, name);
    assert.equal(det.ok, false, name);
    assert.equal(det.colour, "unknown", name);
  });
  const { attrs, clip } = clipAt(3);
  assert.throws(() => detectTextureAdherence({ data: new Float32Array(10), dims: [3, 1, 2, 2] }, vocab), UsageError);
  assert.throws(() => detectTextureAdherence({ data: new Float32Array(12), dims: [3, 2, 2, 2] }, vocab), UsageError);
  assert.throws(() => detectTextureAdherence(clip, loadVocab()), MixCacheError);
  assert.throws(() => textureQuality(clip, vocab, { ...attrs, pattern: undefined }), MixCacheError);
});

test("texture quality: generator clips high; blurred, flattened-background, noisy and NaN clips lower", () => {
  const gen: number[] = [];
  const blur: number[] = [];
  const flat: number[] = [];
  const noisy: number[] = [];
  let blurLower = 0;
  let flatLower = 0;
  const n = 60;
  for (let i = 0; i < n; i++) {
    const { seed, attrs, clip } = clipAt(i, 300_000);
    const q = textureQuality(clip, vocab, attrs);
    const b = textureQuality(boxBlur(clip), vocab, attrs);
    const f = textureQuality(flattenBackground(clip, attrs, seed), vocab, attrs);
    gen.push(q);
    blur.push(b);
    flat.push(f);
    noisy.push(textureQuality(gaussianNoise(clip, 0.3, seed), vocab, attrs));
    if (b < q - 0.1) blurLower++;
    if (f < q - 0.1) flatLower++;
    for (const v of [q, b, f]) assert.ok(v >= 0 && v <= 1, `score ${v} out of range`);
  }
  const md = (v: number[]) => quantile(v, 0.5);
  console.log(
    `# quality: generator median ${md(gen).toFixed(3)} p10 ${quantile(gen, 0.1).toFixed(3)}; blurred median ${md(blur).toFixed(3)} (lower on ${blurLower}/${n}); ` +
      `flat background median ${md(flat).toFixed(3)} (lower on ${flatLower}/${n}); noise 0.3 median ${md(noisy).toFixed(3)}`,
  );
  assert.ok(md(gen) > 0.9, `generator median ${md(gen)}`);
  assert.ok(quantile(gen, 0.1) > 0.8, `generator p10 ${quantile(gen, 0.1)}`);
  assert.ok(md(blur) < 0.4 * md(gen), `blurred median ${md(blur)}`);
  assert.ok(md(flat) < 0.4 * md(gen), `flat-background median ${md(flat)}`);
  assert.ok(md(noisy) < 0.5 * md(gen), `noisy median ${md(noisy)}`);
  assert.ok(blurLower >= 0.85 * n, `blur lowered ${blurLower}/${n}`);
  assert.ok(flatLower >= 0.85 * n, `flat background lowered ${flatLower}/${n}`);

  // graded, not a cliff: a half-strength blur sits between the clip and its full blur
  const { attrs, clip } = clipAt(11, 300_000);
  const full = boxBlur(clip);
  const half: ClipTensor = { data: clip.data.map((v, j) => 0.5 * v + 0.5 * full.data[j]), dims: clip.dims };
  const [q0, qh, q1] = [clip, half, full].map((c) => textureQuality(c, vocab, attrs));
  assert.ok(q0 >= qh && qh >= q1, `not monotone in blur: ${q0} ${qh} ${q1}`);

  // NaN: 0 without throwing (one NaN value is enough)
  const nan: ClipTensor = { data: Float32Array.from(clip.data), dims: clip.dims };
  nan.data[123] = NaN;
  assert.equal(textureQuality(nan, vocab, attrs), 0);
  assert.equal(textureQuality({ data: new Float32Array(3 * N).fill(NaN), dims: clip.dims }, vocab, attrs), 0);
  const parts = textureQualityParts(clip, vocab, attrs);
  for (const k of ["bgClass", "bgDetail", "bgMotion", "bgPalette", "fgArea", "fgEdge"] as const) assert.ok(parts[k] >= 0 && parts[k] <= 1, k);
});
