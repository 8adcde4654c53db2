/**
 * The "textures" dataset, mirrored bit for bit from tools/mixcache_tools/textures.py: a patterned
 * shape (plain, striped, dotted, checkered) moving over a stochastic textured background (grass,
 * sand, water, brick, cloud, static). The caption names the texture class; the instance comes from
 * the clip's Mulberry32 stream, so a model has to draw one out of the noise, as real video models
 * draw fine detail. Only IEEE-exact operations (+ - * /, floor, min, max, comparisons) in the
 * Python order; random draws in the order combination, trajectory, pattern, background.
 * Parity: test/shapes.test.ts against test/golden/shapes.json (tools/dataset_golden.py).
 */
import { MixCacheError } from "../errors.ts";
import { insideFn, lookup, trajectory, type Attrs, type ClipTensor, type Mulberry32, type RGB, type Vocab } from "./shapes.ts";

const N_BLADES = 48;
const DOT_CELLS = 10;
const WATER_DIRS: ReadonlyArray<readonly [number, number]> = [[1, 0], [0, 1], [1, 1], [1, -1]];

/** v mod p for positive p, as the Python side: v - floor(v / p) * p. */
const fmod = (v: number, p: number): number => v - Math.floor(v / p) * p;

type PatternParams =
  | { kind: "plain" }
  | { kind: "striped"; orient: number; phase: number }
  | { kind: "checkered"; px: number; py: number }
  | { kind: "dotted"; cells: boolean[] };

function patternParams(pattern: string, rng: Mulberry32): PatternParams {
  switch (pattern) {
    case "plain":
      return { kind: "plain" };
    case "striped": {
      const orient = Math.floor(rng.random() * 3);
      return { kind: "striped", orient, phase: rng.random() * 4.0 };
    }
    case "checkered": {
      const px = rng.random() * 4.0;
      const py = rng.random() * 4.0;
      return { kind: "checkered", px, py };
    }
    case "dotted": {
      const cells: boolean[] = [];
      for (let i = 0; i < DOT_CELLS * DOT_CELLS; i++) cells.push(rng.random() < 0.3);
      return { kind: "dotted", cells };
    }
    default:
      throw new MixCacheError("VOCAB", `unknown pattern "${pattern}"`, "use plain, striped, dotted or checkered");
  }
}

/** Whether the shape's surface takes the dark shade at shape-local (lx, ly). */
function patternDark(p: PatternParams, lx: number, ly: number): boolean {
  switch (p.kind) {
    case "plain":
      return false;
    case "striped": {
      const c = p.orient === 0 ? ly : p.orient === 1 ? lx : lx + ly;
      return fmod(c + p.phase, 4.0) < 2.0;
    }
    case "checkered": {
      const k = Math.floor((lx + p.px) / 2.0) + Math.floor((ly + p.py) / 2.0);
      return fmod(k, 2.0) === 1.0;
    }
    case "dotted": {
      const clampCell = (v: number) => Math.min(DOT_CELLS - 1, Math.max(0, v));
      const i = clampCell(Math.floor((lx + 10.0) / 2.0));
      const j = clampCell(Math.floor((ly + 10.0) / 2.0));
      return p.cells[j * DOT_CELLS + i];
    }
  }
}

/** The textured background, float64 [3, T, H, W] in 0..255 (index ((c*T + t)*H + y)*W + x). */
export function textureBackground(vocab: Vocab, name: string, rng: Mulberry32): Float64Array {
  const { frames: T, height: H, width: W } = vocab.clip;
  const base = lookup(vocab.backgrounds, name, "background");
  const detail: RGB | undefined = vocab.background_detail?.[name];
  if (!detail) throw new MixCacheError("VOCAB", `background "${name}" has no texture colours`, "use a textures vocabulary (datasetVocab(vocab, \"textures\"))");
  const out = new Float64Array(3 * T * H * W);
  const at = (c: number, t: number, y: number, x: number) => ((c * T + t) * H + y) * W + x;
  const set = (t: number, y: number, x: number, v: readonly number[]) => {
    for (let c = 0; c < 3; c++) out[at(c, t, y, x)] = v[c];
  };
  /** a static image [3, H, W] repeated over frames */
  const still = (img: Float64Array) => {
    for (let c = 0; c < 3; c++) for (let t = 0; t < T; t++) out.set(img.subarray(c * H * W, (c + 1) * H * W), (c * T + t) * H * W);
  };
  const baseImage = () => {
    const img = new Float64Array(3 * H * W);
    for (let c = 0; c < 3; c++) img.fill(base[c], c * H * W, (c + 1) * H * W);
    return img;
  };
  switch (name) {
    case "grass": {
      const img = baseImage();
      for (let n = 0; n < N_BLADES; n++) {
        const x = Math.floor(rng.random() * W);
        const y0 = Math.floor(rng.random() * H);
        const length = 2 + Math.floor(rng.random() * 6);
        const a = 0.5 + 0.5 * rng.random();
        for (let y = y0; y < Math.min(H, y0 + length); y++)
          for (let c = 0; c < 3; c++) img[(c * H + y) * W + x] = base[c] + (detail[c] - base[c]) * a;
      }
      still(img);
      break;
    }
    case "sand": {
      const img = new Float64Array(3 * H * W);
      const light = [0, 1, 2].map((c) => base[c] + (255.0 - base[c]) * 0.35);
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          const u = rng.random();
          const v = u < 0.2 ? detail : u < 0.3 ? light : base;
          for (let c = 0; c < 3; c++) img[(c * H + y) * W + x] = v[c];
        }
      still(img);
      break;
    }
    case "water": {
      const waves: Array<{ dx: number; dy: number; period: number; ph: number }> = [];
      for (let k = 0; k < 2; k++) {
        const [dx, dy] = WATER_DIRS[Math.floor(rng.random() * 4)];
        const period = 5 + Math.floor(rng.random() * 4);
        waves.push({ dx, dy, period, ph: rng.random() * period });
      }
      for (let t = 0; t < T; t++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            let hi = false;
            for (const w of waves) if (fmod(x * w.dx + y * w.dy + w.ph + t, w.period) < 1.5) hi = true;
            set(t, y, x, hi ? detail : base);
          }
      break;
    }
    case "brick": {
      const ox = Math.floor(rng.random() * 8);
      const oy = Math.floor(rng.random() * 4);
      const cols = Math.floor(W / 8) + 2;
      const rows = Math.floor(H / 4) + 2;
      const shade: number[] = [];
      for (let i = 0; i < rows * cols; i++) shade.push(0.7 + 0.5 * rng.random());
      const img = new Float64Array(3 * H * W);
      for (let y = 0; y < H; y++) {
        const yy = y + oy;
        const row = Math.floor(yy / 4);
        for (let x = 0; x < W; x++) {
          const xx = x + ox + (row % 2 === 1 ? 4 : 0);
          const mortar = yy % 4 === 0 || xx % 8 === 0;
          const s = shade[row * cols + Math.floor(xx / 8)];
          for (let c = 0; c < 3; c++) img[(c * H + y) * W + x] = mortar ? detail[c] : Math.min(255.0, base[c] * s);
        }
      }
      still(img);
      break;
    }
    case "cloud": {
      const gh = Math.floor(H / 8) + 2;
      const gw = Math.floor((W + T) / 8) + 2;
      const lat = new Float64Array(gh * gw);
      for (let i = 0; i < lat.length; i++) lat[i] = rng.random();
      for (let t = 0; t < T; t++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            const gx = (x + t) / 8.0;
            const gy = y / 8.0;
            const i = Math.floor(gx);
            const j = Math.floor(gy);
            let a = gx - i;
            let b = gy - j;
            a = a * a * (3.0 - 2.0 * a);
            b = b * b * (3.0 - 2.0 * b);
            const n =
              (lat[j * gw + i] * (1.0 - a) + lat[j * gw + i + 1] * a) * (1.0 - b) +
              (lat[(j + 1) * gw + i] * (1.0 - a) + lat[(j + 1) * gw + i + 1] * a) * b;
            const cover = Math.min(1.0, Math.max(0.0, (n - 0.45) * 4.0));
            for (let c = 0; c < 3; c++) out[at(c, t, y, x)] = base[c] + (detail[c] - base[c]) * cover;
          }
      break;
    }
    case "static": {
      for (let t = 0; t < T; t++)
        for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) set(t, y, x, rng.random() >= 0.5 ? detail : base);
      break;
    }
    default:
      throw new MixCacheError("VOCAB", `unknown textured background "${name}"`, "use grass, sand, water, brick, cloud or static");
  }
  return out;
}

/** Clip as float32 [3, T, H, W] in [-1, 1]: the shape (2x2 supersampled coverage, as the shapes
 * dataset) with its surface pattern, over the textured background. */
export function renderTextured(vocab: Vocab, attrs: Attrs, rng: Mulberry32): ClipTensor {
  const { frames: T, height: H, width: W } = vocab.clip;
  const r = lookup(vocab.sizes, attrs.size, "size");
  const fg = lookup(vocab.colours, attrs.colour, "colour");
  const shade = vocab.pattern_shade;
  if (shade === undefined || attrs.pattern === undefined) {
    throw new MixCacheError("VOCAB", "a textures clip needs a pattern and the vocabulary's pattern_shade", "use datasetVocab(vocab, \"textures\") and its combinations");
  }
  const inside = insideFn(attrs.shape);
  lookup(vocab.motions, attrs.motion, "motion");
  const traj = trajectory(vocab, attrs, rng);
  const pat = patternParams(attrs.pattern, rng);
  const bg = textureBackground(vocab, attrs.background, rng);
  const data = new Float32Array(3 * T * H * W);
  for (let f = 0; f < T; f++) {
    const [cx, cy] = traj[f];
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        let cov = 0;
        for (let sy = 0; sy < 2; sy++) {
          const oy = sy === 0 ? 0.25 : 0.75;
          for (let sx = 0; sx < 2; sx++) if (inside(x + (sx === 0 ? 0.25 : 0.75), y + oy, cx, cy, r)) cov += 1;
        }
        cov *= 0.25;
        const s = patternDark(pat, x + 0.5 - cx, y + 0.5 - cy) ? shade : 1.0;
        for (let c = 0; c < 3; c++) {
          const i = ((c * T + f) * H + y) * W + x;
          const rgb = bg[i] * (1 - cov) + fg[c] * s * cov;
          data[i] = (rgb / 255.0) * 2.0 - 1.0;
        }
      }
    }
  }
  return { data, dims: [3, T, H, W] };
}
