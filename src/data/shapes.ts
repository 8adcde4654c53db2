/**
 * The procedural datasets, mirrored from tools/mixcache_tools/dataset.py: "shapes" (one coloured
 * shape moving over a plain background) and, through src/data/textures.ts, "textures" (a patterned
 * shape over a stochastic textured background). Deterministic from a seed and bit-for-bit identical to the
 * Python generator (same Mulberry32 stream, same float64 arithmetic, same float32 rounding); the
 * parity is checked by test/shapes.test.ts against test/golden/shapes.json, written by
 * `/usr/bin/python3 tools/dataset_golden.py`.
 *
 * Clips are float32 [3, T, H, W] in [-1, 1], channel-major (index ((c*T + t)*H + y)*W + x).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { MixCacheError } from "../errors.ts";

export type RGB = readonly [number, number, number];

/** The datasets of data/vocab.json: the top level is "shapes", its "textures" object the other. */
const DATASETS = ["shapes", "textures"] as const;
export type DatasetName = (typeof DATASETS)[number];

export interface Vocab {
  version: number;
  /** which dataset a flat vocabulary describes (set by datasetVocab and in a model's vocab.json) */
  dataset?: DatasetName;
  clip: { frames: number; height: number; width: number; fps: number };
  caption_template: string;
  shapes: string[];
  colours: Record<string, RGB>;
  sizes: Record<string, number>;
  motions: Record<string, readonly [number, number]>;
  speed_px_per_frame: number;
  backgrounds: Record<string, RGB>;
  heldout: { fraction: number; seed: number };
  max_text_tokens: number;
  /** textures dataset: the shape's surface patterns, the dark shade factor, the texture colours */
  patterns?: string[];
  pattern_shade?: number;
  background_detail?: Record<string, RGB>;
  /** data/vocab.json only: the textures dataset's fields over the top level */
  textures?: Partial<Vocab>;
}

export interface Attrs {
  shape: string;
  colour: string;
  size: string;
  motion: string;
  background: string;
  /** textures dataset only */
  pattern?: string;
}

/** A clip tensor: `data` is float32 [3, T, H, W] (channel-major), values in [-1, 1]. */
export interface ClipTensor {
  data: Float32Array;
  dims: [number, number, number, number];
}

export const DEFAULT_VOCAB_PATH = fileURLToPath(new URL("../../data/vocab.json", import.meta.url));

export function loadVocab(path: string = DEFAULT_VOCAB_PATH): Vocab {
  let text: string;
  try {
    text = readFileSync(path, "utf-8");
  } catch (e) {
    throw new MixCacheError("IO", `cannot read vocabulary ${path}: ${(e as Error).message}`, "pass the path of data/vocab.json");
  }
  let v: Vocab;
  try {
    v = JSON.parse(text) as Vocab;
  } catch (e) {
    throw new MixCacheError("VOCAB", `vocabulary ${path} is not valid JSON: ${(e as Error).message}`, "restore data/vocab.json");
  }
  for (const key of ["clip", "caption_template", "shapes", "colours", "sizes", "motions", "backgrounds", "heldout"] as const) {
    if (v == null || typeof v !== "object" || !(key in v)) {
      throw new MixCacheError("VOCAB", `vocabulary ${path} lacks "${key}"`, "restore data/vocab.json");
    }
  }
  return v;
}

/**
 * The flat vocabulary of one dataset, as the Python dataset_vocab: "shapes" is the top level of
 * data/vocab.json, "textures" the top level with its "textures" fields replacing or extending it.
 * A flat vocabulary (a model's vocab.json) passes through when it already names that dataset.
 */
export function datasetVocab(vocab: Vocab, name: DatasetName): Vocab {
  if (!(DATASETS as readonly string[]).includes(name)) {
    throw new MixCacheError("USAGE", `unknown dataset "${name}"`, `use one of: ${DATASETS.join(", ")}`);
  }
  if (vocab.textures === undefined) {
    const have = vocab.dataset ?? "shapes";
    if (have !== name) throw new MixCacheError("VOCAB", `this vocabulary describes the ${have} dataset, not ${name}`, "pass data/vocab.json, which holds both");
    return vocab;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(vocab)) if (k !== "textures" && k !== "$comment") out[k] = v;
  if (name === "textures") for (const [k, v] of Object.entries(vocab.textures)) if (k !== "$comment") out[k] = v;
  out.dataset = name;
  return out as unknown as Vocab;
}

/** mulberry32, identical to the Python class (uint32 arithmetic with Math.imul and >>> 0). */
export class Mulberry32 {
  a: number;
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new MixCacheError("USAGE", `Mulberry32 seed must be an integer, got ${seed}`);
    // Python: seed & 0xFFFFFFFF (also for negative seeds: two's complement, i.e. mod 2^32)
    this.a = Number(BigInt.asUintN(32, BigInt(seed)));
  }

  nextU32(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  random(): number {
    return this.nextU32() / 4294967296.0;
  }
}

/** Python's round() for a float to an int: round half to even. */
function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Every attribute combination, in the fixed order shape, colour, size, motion, background (then
 * pattern, where the vocabulary has patterns). */
export function allCombos(vocab: Vocab): Attrs[] {
  const out: Attrs[] = [];
  const patterns = vocab.patterns;
  for (const shape of vocab.shapes)
    for (const colour of Object.keys(vocab.colours))
      for (const size of Object.keys(vocab.sizes))
        for (const motion of Object.keys(vocab.motions))
          for (const background of Object.keys(vocab.backgrounds)) {
            if (patterns && patterns.length) for (const pattern of patterns) out.push({ shape, colour, size, motion, background, pattern });
            else out.push({ shape, colour, size, motion, background });
          }
  return out;
}

/** [train, heldout]: held-out = the first round(fraction*N) entries of a seeded Fisher-Yates shuffle. */
export function splitCombos(vocab: Vocab): [Attrs[], Attrs[]] {
  const combos = allCombos(vocab);
  const idx = combos.map((_, i) => i);
  const rng = new Mulberry32(vocab.heldout.seed);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rng.random() * (i + 1));
    const tmp = idx[i];
    idx[i] = idx[j];
    idx[j] = tmp;
  }
  const nHold = pyRound(vocab.heldout.fraction * combos.length);
  const held = new Set(idx.slice(0, nHold));
  const train = combos.filter((_, k) => !held.has(k));
  const heldout = combos.filter((_, k) => held.has(k));
  return [train, heldout];
}

export function lookup<T>(table: Record<string, T>, key: string, what: string): T {
  if (!Object.prototype.hasOwnProperty.call(table, key)) {
    throw new MixCacheError("VOCAB", `unknown ${what} "${key}"`, `use one of: ${Object.keys(table).join(", ")}`);
  }
  return table[key];
}

/** Shape centre (x, y) per frame: constant speed, random start chosen so the shape stays in view. */
export function trajectory(vocab: Vocab, attrs: Attrs, rng: Mulberry32): Array<[number, number]> {
  const { frames: T, height: H, width: W } = vocab.clip;
  const r = lookup(vocab.sizes, attrs.size, "size");
  const [dx, dy] = lookup(vocab.motions, attrs.motion, "motion");
  const v = vocab.speed_px_per_frame;
  const travel = v * (T - 1);
  const start = (extent: number, d: number): number => {
    const lo = r + 0.5;
    const hi = extent - r - 0.5;
    const u = rng.random();
    if (d === 0) return lo + u * (hi - lo);
    const span = hi - lo - travel;
    const base = lo + u * span;
    return d > 0 ? base : base + travel;
  };
  const x0 = start(W, dx);
  const y0 = start(H, dy);
  const out: Array<[number, number]> = [];
  for (let f = 0; f < T; f++) out.push([x0 + dx * v * f, y0 + dy * v * f]);
  return out;
}

export type InsideFn = (x: number, y: number, cx: number, cy: number, r: number) => boolean;

export function insideFn(shape: string): InsideFn {
  switch (shape) {
    case "circle":
      return (x, y, cx, cy, r) => {
        const ax = x - cx;
        const ay = y - cy;
        return ax * ax + ay * ay <= r * r;
      };
    case "square":
      return (x, y, cx, cy, r) => {
        const s = 0.85 * r;
        return Math.abs(x - cx) <= s && Math.abs(y - cy) <= s;
      };
    case "triangle":
      // upright triangle: apex (cx, cy - r), base at y = cy + 0.75 r, half-width r at the base
      return (x, y, cx, cy, r) => {
        const top = cy - r;
        return y <= cy + 0.75 * r && y >= top && Math.abs(x - cx) <= (y - top) / 1.75;
      };
    default:
      throw new MixCacheError("VOCAB", `unknown shape "${shape}"`, "use circle, square or triangle");
  }
}

/** Clip as float32 [3, T, H, W] in [-1, 1], 2x2 supersampling for smooth edges (draws the trajectory from rng). */
export function render(vocab: Vocab, attrs: Attrs, rng: Mulberry32): ClipTensor {
  const { frames: T, height: H, width: W } = vocab.clip;
  const r = lookup(vocab.sizes, attrs.size, "size");
  const fg = lookup(vocab.colours, attrs.colour, "colour");
  const bg = lookup(vocab.backgrounds, attrs.background, "background");
  const inside = insideFn(attrs.shape);
  lookup(vocab.motions, attrs.motion, "motion");
  const data = new Float32Array(3 * T * H * W);
  const traj = trajectory(vocab, attrs, rng);
  for (let f = 0; f < T; f++) {
    const [cx, cy] = traj[f];
    // every shape lies within r of its centre: pixels further than that (plus a safety pixel) have
    // zero coverage, so skipping their point tests changes nothing
    const xLo = Math.floor(cx - r) - 1;
    const xHi = Math.ceil(cx + r) + 1;
    const yLo = Math.floor(cy - r) - 1;
    const yHi = Math.ceil(cy + r) + 1;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        let cov = 0;
        if (x >= xLo && x <= xHi && y >= yLo && y <= yHi) {
          for (let sy = 0; sy < 2; sy++) {
            const oy = sy === 0 ? 0.25 : 0.75;
            for (let sx = 0; sx < 2; sx++) if (inside(x + (sx === 0 ? 0.25 : 0.75), y + oy, cx, cy, r)) cov += 1;
          }
        }
        cov *= 0.25;
        for (let c = 0; c < 3; c++) {
          const rgb = bg[c] * (1 - cov) + fg[c] * cov;
          data[((c * T + f) * H + y) * W + x] = (rgb / 255.0) * 2.0 - 1.0;
        }
      }
    }
  }
  return { data, dims: [3, T, H, W] };
}

/** The caption of a combination: vocab.caption_template filled in. */
export function caption(vocab: Vocab, attrs: Attrs): string {
  const fields: Record<string, string> = { ...attrs } as Record<string, string>;
  return vocab.caption_template.replace(/\{(\w+)\}/g, (m, name: string) => {
    if (!(name in fields)) throw new MixCacheError("VOCAB", `caption template field {${name}} is not an attribute`);
    return fields[name];
  });
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

const FIELD_TABLE: Record<string, (v: Vocab) => string[]> = {
  shape: (v) => v.shapes,
  colour: (v) => Object.keys(v.colours),
  size: (v) => Object.keys(v.sizes),
  motion: (v) => Object.keys(v.motions),
  background: (v) => Object.keys(v.backgrounds),
  pattern: (v) => v.patterns ?? [],
};

/**
 * The attributes of a caption that follows the template with vocabulary words, or null. Matching
 * ignores case, surrounding whitespace and repeated inner whitespace; anything else must match exactly.
 */
export function parseCaption(vocab: Vocab, text: string): Attrs | null {
  const norm = text.trim().replace(/\s+/g, " ");
  const names: string[] = [];
  let pattern = "^";
  let last = 0;
  const re = /\{(\w+)\}/g;
  for (let m = re.exec(vocab.caption_template); m; m = re.exec(vocab.caption_template)) {
    pattern += escapeRegExp(vocab.caption_template.slice(last, m.index));
    const name = m[1];
    const table = FIELD_TABLE[name];
    if (!table) throw new MixCacheError("VOCAB", `caption template field {${name}} is not an attribute`);
    // longest alternatives first so a word that prefixes another never wins early
    const words = [...table(vocab)].sort((a, b) => b.length - a.length).map(escapeRegExp);
    pattern += `(${words.join("|")})`;
    names.push(name);
    last = m.index + m[0].length;
  }
  pattern += escapeRegExp(vocab.caption_template.slice(last)) + "$";
  const match = new RegExp(pattern, "i").exec(norm);
  if (!match) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < names.length; i++) {
    const got = match[i + 1].toLowerCase();
    const v = FIELD_TABLE[names[i]](vocab).find((w) => w.toLowerCase() === got);
    if (v === undefined) return null;
    if (names[i] in out && out[names[i]] !== v) return null; // a field used twice must agree
    out[names[i]] = v;
  }
  for (const k of Object.keys(FIELD_TABLE)) if (!(k in out) && (k !== "pattern" || vocab.patterns?.length)) return null;
  const attrs: Attrs = { shape: out.shape, colour: out.colour, size: out.size, motion: out.motion, background: out.background };
  if (out.pattern !== undefined) attrs.pattern = out.pattern;
  return attrs;
}
