/**
 * Prompt adherence and a reference-free quality score for the "textures" dataset
 * (src/data/textures.ts): from the pixels alone, detect the background texture class, the shape's
 * surface pattern, its colour, shape and motion; score those against the caption; and rate how well
 * a clip matches the dataset's own statistics for its caption.
 *
 * Everything is measured against PROTOTYPES computed deterministically, at first use, from the
 * generator itself (`texturePrototypes`, cached per vocabulary): PROTO_CLIPS clips per background
 * class (fixed seeds, the class's combinations drawn uniformly, as sampleClip draws them) and
 * PALETTE_BACKGROUNDS pure backgrounds per class (`textureBackground`, fixed seeds).
 *
 * Detection (clip float [3, T, H, W] in [-1, 1], T >= 2; pixels read as 0..255, clamped, NaN as 128):
 *  1. background class: features of the border ring (the RING outermost pixels of every frame; the
 *     generator keeps the shape inside the frame, so the ring is background up to a few anti-aliased
 *     pixels): mean RGB; the fractions of ring pixels nearest (within REF_RADIUS) to each class's base
 *     and detail colour, or to none; spatial high-frequency energy (mean |difference| of adjacent ring
 *     pixels); temporal change (mean |frame difference|: static changes every frame, water and cloud
 *     drift, grass/sand/brick are still). Nearest class prototype by the RMS of z-scores, each
 *     feature's spread over the class's prototype clips floored (DET_FLOOR_*: model outputs depart
 *     from the generator's narrow spreads) and each |z| capped at DET_Z_CAP, so that no single
 *     feature outvotes the rest (a model's static is grey noise that rarely hits the exact base or
 *     detail colour; its still textures flicker); "unknown" past MAX_BG_RMS_Z (uncapped RMS z).
 *  2. foreground, from the clip's own BACKGROUND MODEL, not from exact colours (model outputs blur
 *     edges, shift colours, approximate textures and carry per-pixel noise): a pixel's background
 *     distance is its distance to the nearer of (a) the clip's own palette: the ring colours whose
 *     neighbourhood (PAL_RADIUS) recurs in at least PAL_MIN_SPREAD of the (angular sector, frame)
 *     pairs of the ring (a shape touching the border, even moving along it, covers a sector or two
 *     a frame), and (b) the detected class's generator PALETTE (every colour its pure generator
 *     backgrounds take, quantised to 4 levels); measured on the pixels and on a [1,2,1]^2-smoothed
 *     copy (against the smoothed generator backgrounds' palette), the foreground score being the
 *     larger of the two (noise averages out when smoothed; a pattern's dark cells stand out on the
 *     pixels). Foreground = score > FG_TAU; closed per frame (3x3); the TRACK is its largest
 *     spatio-temporal component (8-connected in a frame, linked to the 3x3 neighbourhood in the
 *     adjacent frames), empty unless the model explains at least MIN_RING_BACKGROUND of the ring
 *     (noise). Colour = the vocab colour with most votes from the track's foreground pixels (each
 *     votes for the nearest vocab colour, 1, or dark shade pattern_shade * c, 0.5, within
 *     COLOUR_RADIUS). The shape = per frame, within the track grown by 1 px, the pixels nearer to
 *     the colour as the clip renders it (the median of the pixels that voted light for it) or its
 *     shade than to the background; its largest 8-connected component with enclosed holes filled.
 *  3. pattern: on the eroded component (no anti-aliased rim), the dark fraction and the rate at
 *     which the light/dark state flips between pixel pairs offset by (2,0), (0,2), (1,1), (1,-1),
 *     (4,0), (0,4). Stripes are 2 px wide with period 4, checks 2 px, so horizontal stripes flip as
 *     (0,1,.5,.5,0,0), vertical (1,0,.5,.5,0,0), diagonal (1,1,1,0,0,0) (or (1,1,0,1,0,0)),
 *     checkered (1,1,.5,.5,0,0); dotted (independent 2x2 cells, dark with p=0.3) ~(.42,.42,.32,.32,
 *     .42,.42) with dark fraction ~0.3 (0.5 for the others); plain: dark fraction < PLAIN_DARK.
 *     The nearest prototype (Euclidean over flips and dark fraction) wins.
 *  4. motion: least-squares slope of the component centroid over frames -> nearest vocab direction
 *     (or "none" below MIN_DISPLACEMENT of the frame); shape: median over frames of binary-mask
 *     moments (skewness: triangles; diagonal-minus-axis kurtosis and fill of the bounding box:
 *     squares ~0.6 and ~1, circles ~0 and ~0.79; the kurtosis weighs more, as a soft edge cuts a
 *     square's corners).
 * Never throws on content: NaN-dominated or flat clips, clips without a shape, give "unknown" (motion
 * "none") with ok=false. Malformed dims or a vocabulary without textures throw.
 *
 * Scoring (`scoreTextureAdherence`): per-attribute 0/1 for colour, shape, motion, background
 * (texture class) and pattern, and the COMBINED `texture` = background AND pattern (both texture
 * attributes of the caption right): the "texture attribute" is this combined one; the two
 * parts are reported separately too. `aggregateTextureAdherence` gives the rates over clips.
 *
 * Quality (`textureQuality`, 0..1, reference-free, conditioned on the caption's attributes): the
 * weighted geometric mean (weights Q_WEIGHTS) of six terms, each 1 where the clip looks like
 * generator clips of its caption and falling towards 0 as it departs (`textureQualityParts` gives
 * the terms and the raw measurements):
 *  - bgClass:   the ring's colour statistics (mean RGB, base/detail fractions) vs the captioned
 *               class's prototype: exp(-0.5 * max(0, rmsZ - Q_Z0)^2 / Q_ZS^2);
 *  - bgDetail:  the ring's spatial high-frequency energy e = ln(1 + hf) vs the class's prototype
 *               clips: 1 within max(Q_LOG_TOL_Z * their spread, Q_LOG_TOL) of their mean, then a
 *               Gaussian fall-off of width Q_LOG_SCALE: a blurred texture (too little energy) and a
 *               noisy one (too much) both score low, a flat background ~0;
 *  - bgMotion:  the same for the ring's temporal change, e = ln(1 + temporal / 4) (a still texture
 *               that flickers, or static that stands still, scores low; weight 0.5);
 *  - bgPalette: the fraction of ring pixels within BG_RADIUS of the class's palette, over
 *               Q_PALETTE_TOL times the prototype clips' fraction (capped at 1): generator textures
 *               are made of a few exact colours, noise and blur (on sharp textures) leave them;
 *  - fgArea:    the median per-frame clean area of the shape: the pixels of its extent (found as in
 *               detection step 2, with the caption's colour) within FG_RADIUS of the caption's colour
 *               or its shade and not FG_MARGIN farther from it than from the background model, vs
 *               FG_REF_CLIPS generator clips of exactly the caption's attributes (fixed seeds,
 *               cached): 1 within [Q_AREA_TOL_LO * their smallest, Q_AREA_TOL_HI * their largest],
 *               falling linearly (ratio) outside: blurring (pattern and rim turn to mixed colours),
 *               noise, washing out, a missing or oversized shape;
 *  - fgEdge:    the rim width: pixels within 2 px of the shape's extent that are neither in it, nor
 *               nearer to the colour than to the background, nor within BG_RADIUS of the background
 *               model, per boundary pixel of the extent, against the same generator clips:
 *               min(1, (Q_RIM_TOL * their largest + Q_RIM_SLACK) / width). A sharp anti-aliased
 *               edge is under 1 px wide; blur widens it.
 *  The shape is measured against the clip's background model (as in detection) so that a texture
 *  the generator would not draw exactly costs in the background terms only, not a second time as
 *  a lost shape or a wide rim.
 *  A caption whose shape the generator itself leaves invisible (plain white on cloud) has fgArea =
 *  fgEdge = 1.
 * The score compares with the dataset's statistics, not with any reference output, so a method that
 * takes fewer steps or caches more is not favoured: it only scores as high if its output is as sharp,
 * as clean and as textured as the generator's. A clip with any non-finite value scores 0.
 * Resolution: the prototypes are at vocab.clip size; other sizes are scored, less meaningfully.
 */
import { MixCacheError } from "../errors.ts";
import { allCombos, Mulberry32, type Attrs, type Vocab } from "../data/shapes.ts";
import { renderTextured, textureBackground } from "../data/textures.ts";
import { sampleClip } from "../data/datasets.ts";
import { attributeRates, CentralMoments, checkClipDims, componentBBox, dist3, fitMotion, largestComponent, medianFeatures, NO_MOTION, UNKNOWN, type ClipLike, type ShapeFeatures } from "./shape-features.ts";
import { median } from "../tensor/stats.ts";

export { NO_MOTION, UNKNOWN };

// ---- constants (0..255 pixel units) -----------------------------------------------------------

/** width of the border ring, pixels */
const RING = 2;
/** a ring pixel counts towards a reference (base/detail) colour within this RGB distance */
const REF_RADIUS = 40;
/** quality: a shape pixel is clean within this RGB distance of the caption's colour or its shade */
const FG_RADIUS = 40;
/** quality: ... and not farther than this beyond its distance to the background model */
const FG_MARGIN = 8;
/** quality: a ring pixel within this distance of the class palette is on it (bgPalette); a rim pixel
 * within this distance of the background model counts as background (fgEdge) */
const BG_RADIUS = 25;
/** the clip's own background palette: ring colours whose neighbourhood (PAL_RADIUS) recurs in at least
 * PAL_MIN_SPREAD of the (sector, frame) pairs of the ring, RING_SECTORS angular sectors a frame */
const RING_SECTORS = 16;
const PAL_RADIUS = 16;
const PAL_MIN_SPREAD = 0.25;
/** foreground: farther than this from the background model */
const FG_TAU = 40;
/** the background model must explain at least this fraction of the border ring */
const MIN_RING_BACKGROUND = 0.3;
/** a track pixel votes for the nearest vocab colour (or shade) within this distance */
const COLOUR_RADIUS = 80;
/** clips per background class for the prototypes */
const PROTO_CLIPS = 20;
/** pure backgrounds per class for the palettes */
const PALETTE_BACKGROUNDS = 12;
const PROTO_SEED = 0x7e57;
/** dark fraction below which a shape is plain */
const PLAIN_DARK = 0.06;
/** minimum displacement over the clip, as a fraction of the frame extent, for a motion */
const MIN_DISPLACEMENT = 0.08;
/** background detection rejects clips whose RMS z to the best class exceeds this */
const MAX_BG_RMS_Z = 12;
/** z-score floors: mean RGB, fractions, log energies */
const FLOOR_RGB = 6;
const FLOOR_FRAC = 0.03;
const FLOOR_LOG = 0.15;
/** detection compares with wider floors and caps every |z| at DET_Z_CAP, so that no single feature (the
 * exact base/detail fractions, a still texture that flickers) outvotes the others on model outputs */
const DET_FLOOR_RGB = 15;
const DET_FLOOR_FRAC = 0.15;
const DET_FLOOR_LOG = 0.5;
const DET_Z_CAP = 3;
/** quality: bgClass tolerance and fall-off (RMS z units) */
const Q_Z0 = 1.5;
const Q_ZS = 2;
/** quality: log-energy tolerance (max of this many class spreads and Q_LOG_TOL) and fall-off */
const Q_LOG_TOL_Z = 1.5;
const Q_LOG_TOL = 0.25;
const Q_LOG_SCALE = 0.6;
/** quality: the clean-shape area may be this fraction of the generator's smallest .. multiple of its largest */
const Q_AREA_TOL_LO = 0.9;
const Q_AREA_TOL_HI = 1.1;
/** quality: rim width tolerated: Q_RIM_TOL * the generator's largest + Q_RIM_SLACK */
const Q_RIM_TOL = 1.2;
const Q_RIM_SLACK = 0.2;
/** quality: the on-palette fraction may be this fraction of the generator's */
const Q_PALETTE_TOL = 0.95;
/** quality: weights of the parts in the geometric mean */
const Q_WEIGHTS = { bgClass: 1, bgDetail: 1, bgMotion: 0.5, bgPalette: 1, fgArea: 1, fgEdge: 1 } as const;

type Vec3 = [number, number, number];

// ---- public types ----------------------------------------------------------------------------

export interface TextureDetection {
  /** background texture class (a key of vocab.backgrounds) or "unknown" */
  background: string;
  /** surface pattern (vocab.patterns) or "unknown" */
  pattern: string;
  colour: string;
  shape: string;
  /** vocab motion or "none" */
  motion: string;
  /** 0..1 margins: how clearly the winner beat the runner-up */
  confidence: { background: number; pattern: number; colour: number; shape: number; motion: number };
  /** false when no shape was found in enough frames (colour/shape/pattern "unknown", motion "none") */
  ok: boolean;
  details: {
    /** ring features: mean RGB, reference fractions (base/detail per class, then "other"), HF, temporal */
    ring: RingFeatures | null;
    /** the detection distance of the ring to each class prototype (RMS of capped z-scores, detectionDistance) */
    backgroundDistance: Record<string, number>;
    /** frames in which the shape component was found */
    framesWithShape: number;
    /** median component area (pixels) over frames with a shape */
    area: number;
    /** dark fraction inside the shape, and the flip rates at offsets (2,0), (0,2), (1,1), (1,-1),
     * (4,0), (0,4) (NaN where no pixel pair has that offset) */
    darkFraction: number;
    flips: PatternFlips;
    centroids: Array<[number, number] | null>;
    /** least-squares centroid displacement first -> last frame, pixels [dx, dy] */
    displacement: [number, number];
    features: ShapeFeatures | null;
  };
}

export interface RingFeatures {
  rgb: Vec3;
  /** fractions of ring pixels nearest to [base_0, detail_0, base_1, ..., other] within REF_RADIUS */
  refs: number[];
  /** mean per-channel |difference| of adjacent ring pixels */
  hf: number;
  /** mean per-channel |difference| of a ring pixel between consecutive frames */
  temporal: number;
}

export type PatternFlips = [number, number, number, number, number, number];

interface Stat {
  mean: number;
  std: number;
}

interface ClassProto {
  name: string;
  /** stats of the colour feature vector (rgb, refs) */
  colour: Stat[];
  /** stats of logHf(hf) and logTemporal(temporal) */
  hf: Stat;
  temporal: Stat;
  /** quantised palette of the pure backgrounds, and the lazily filled distance table */
  palette: Int32Array;
  lut: Float32Array;
  /** the same for the smoothed pure backgrounds (smoothPixels) */
  smoothPalette: Int32Array;
  /** distance tables of both palettes over the 64^3 colour cells (classGrids) */
  grids?: { raw: Uint8Array; smooth: Uint8Array };
  /** mean fraction of the generator's ring pixels within BG_RADIUS of the palette */
  onPalette: number;
}

/** The generator's shape statistics for one caption (FG_REF_CLIPS clips of exactly those attributes). */
export interface ShapeReference {
  /** smallest and largest median clean-shape area per frame (pixels) */
  area: [number, number];
  /** largest rim width */
  rim: number;
}

export interface TexturePrototypes {
  classes: ClassProto[];
  /** base and detail colour of each class, in class order (the ring reference colours) */
  refs: Vec3[];
  /** per-caption shape references, filled on demand (key: the caption's attributes) */
  shapeRefs: Map<string, ShapeReference>;
}

// ---- small helpers ------------------------------------------------------------------------------

function stat(values: readonly number[], floor: number): Stat {
  const n = values.length;
  const mean = values.reduce((s, v) => s + v, 0) / Math.max(1, n);
  const v = values.reduce((s, x) => s + (x - mean) * (x - mean), 0) / Math.max(1, n - 1);
  return { mean, std: Math.max(floor, Math.sqrt(v)) };
}

function margin(best: number, second: number): number {
  if (!Number.isFinite(second) || second <= 0) return best === 0 && Number.isFinite(second) ? 1 : Number.isFinite(best) ? 1 : 0;
  return Math.max(0, Math.min(1, 1 - best / second));
}

/** Log energies: ln(1 + hf / 1) and ln(1 + temporal / 4) (0..255 units; flicker under ~4 levels is not visible). */
const logHf = (x: number) => Math.log1p(x);
const logTemporal = (x: number) => Math.log1p(x / 4);

function checkVocab(vocab: Vocab): { shade: number; patterns: string[]; detail: Record<string, readonly number[]> } {
  if (!vocab.background_detail || vocab.pattern_shade === undefined || !vocab.patterns?.length) {
    throw new MixCacheError("VOCAB", "texture adherence needs the textures vocabulary (background_detail, pattern_shade, patterns)", 'use datasetVocab(loadVocab(), "textures")');
  }
  return { shade: vocab.pattern_shade, patterns: vocab.patterns, detail: vocab.background_detail as Record<string, readonly number[]> };
}

/** Pixels in 0..255 (clamped; NaN reads as 127.5), planar R, G, B, and the count of non-finite values. */
interface Pixels {
  R: Float64Array;
  G: Float64Array;
  B: Float64Array;
  /** quantised colour cell (4 levels per step, 64 per channel) */
  cell: Int32Array;
  nonFinite: number;
  T: number;
  H: number;
  W: number;
}

function toPixels(clip: ClipLike, T: number, H: number, W: number): Pixels {
  const N = T * H * W;
  const src = clip.data;
  const rgb = new Float64Array(3 * N);
  let nonFinite = 0;
  for (let j = 0; j < 3 * N; j++) {
    const v = src[j];
    if (!Number.isFinite(v)) nonFinite++;
    const x = (v + 1) * 127.5;
    rgb[j] = x >= 0 ? (x <= 255 ? x : 255) : x < 0 ? 0 : 127.5;
  }
  const R = rgb.subarray(0, N);
  const G = rgb.subarray(N, 2 * N);
  const B = rgb.subarray(2 * N, 3 * N);
  const cell = new Int32Array(N);
  const q = (v: number) => Math.min(63, Math.floor(v / 4));
  for (let i = 0; i < N; i++) cell[i] = (q(R[i]) << 12) | (q(G[i]) << 6) | q(B[i]);
  return { R, G, B, cell, nonFinite, T, H, W };
}

const cellCentre = (c: number): Vec3 => [((c >> 12) & 63) * 4 + 2, ((c >> 6) & 63) * 4 + 2, (c & 63) * 4 + 2];

/** Distance from a pixel's colour cell to the class palette (cell centres), memoised per cell. */
function paletteDistance(cls: ClassProto, cell: number): number {
  const hit = cls.lut[cell];
  if (hit >= 0) return hit;
  const p = cellCentre(cell);
  let best = Infinity;
  const pal = cls.palette;
  for (let k = 0; k < pal.length; k++) {
    const q = cellCentre(pal[k]);
    const d = dist3(p, q);
    if (d < best) best = d;
  }
  cls.lut[cell] = best;
  return best;
}

// ---- ring features ------------------------------------------------------------------------------

function ringFeatures(px: Pixels, refs: readonly Vec3[]): RingFeatures {
  const { R, G, B, T, H, W } = px;
  const HW = H * W;
  const inRing = (x: number, y: number) => Math.min(x, y, W - 1 - x, H - 1 - y) < RING;
  const ring: number[] = [];
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if (inRing(x, y)) ring.push(y * W + x);
  const counts = new Array(refs.length + 1).fill(0);
  const sum: Vec3 = [0, 0, 0];
  let n = 0;
  for (let t = 0; t < T; t++)
    for (const p of ring) {
      const i = t * HW + p;
      const c: Vec3 = [R[i], G[i], B[i]];
      sum[0] += c[0];
      sum[1] += c[1];
      sum[2] += c[2];
      n++;
      let best = REF_RADIUS;
      let k = refs.length;
      for (let r = 0; r < refs.length; r++) {
        const d = dist3(c, refs[r]);
        if (d < best) {
          best = d;
          k = r;
        }
      }
      counts[k]++;
    }
  const l1 = (i: number, j: number) => (Math.abs(R[i] - R[j]) + Math.abs(G[i] - G[j]) + Math.abs(B[i] - B[j])) / 3;
  let hf = 0;
  let nh = 0;
  for (let t = 0; t < T; t++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        if (!inRing(x, y)) continue;
        const i = t * HW + y * W + x;
        if (x + 1 < W && inRing(x + 1, y)) {
          hf += l1(i, i + 1);
          nh++;
        }
        if (y + 1 < H && inRing(x, y + 1)) {
          hf += l1(i, i + W);
          nh++;
        }
      }
  let tf = 0;
  let nt = 0;
  for (let t = 1; t < T; t++)
    for (const p of ring) {
      tf += l1(t * HW + p, (t - 1) * HW + p);
      nt++;
    }
  return {
    rgb: [sum[0] / n, sum[1] / n, sum[2] / n],
    refs: counts.map((c) => c / n),
    hf: nh ? hf / nh : 0,
    temporal: nt ? tf / nt : 0,
  };
}

/** Fraction of ring pixels within BG_RADIUS of the class palette. */
function onPaletteFraction(px: Pixels, cls: ClassProto): number {
  const { T, H, W } = px;
  let on = 0;
  let n = 0;
  for (let t = 0; t < T; t++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        if (Math.min(x, y, W - 1 - x, H - 1 - y) >= RING) continue;
        n++;
        if (paletteDistance(cls, px.cell[(t * H + y) * W + x]) <= BG_RADIUS) on++;
      }
  return n ? on / n : 0;
}

const colourVector = (f: RingFeatures): number[] => [...f.rgb, ...f.refs];

/** RMS z of the ring's colour features and of its log energies against a class. */
function classDistance(f: RingFeatures, cls: ClassProto): { colour: number; hf: number; temporal: number; rms: number } {
  const v = colourVector(f);
  let s = 0;
  for (let j = 0; j < v.length; j++) {
    const z = (v[j] - cls.colour[j].mean) / cls.colour[j].std;
    s += z * z;
  }
  const colour = Math.sqrt(s / v.length);
  const hf = (logHf(f.hf) - cls.hf.mean) / cls.hf.std;
  const temporal = (logTemporal(f.temporal) - cls.temporal.mean) / cls.temporal.std;
  const rms = Math.sqrt((s + hf * hf + temporal * temporal) / (v.length + 2));
  return { colour, hf, temporal, rms };
}

/** The detection's distance to a class: RMS of the capped z-scores (detection floors), all features equally weighted. */
function detectionDistance(f: RingFeatures, cls: ClassProto): number {
  const v = colourVector(f);
  const z = (x: number, st: Stat, floor: number) => Math.min(DET_Z_CAP, Math.abs(x - st.mean) / Math.max(floor, st.std));
  let s = 0;
  for (let j = 0; j < v.length; j++) s += z(v[j], cls.colour[j], j < 3 ? DET_FLOOR_RGB : DET_FLOOR_FRAC) ** 2;
  s += z(logHf(f.hf), cls.hf, DET_FLOOR_LOG) ** 2;
  s += z(logTemporal(f.temporal), cls.temporal, DET_FLOOR_LOG) ** 2;
  return Math.sqrt(s / (v.length + 2));
}

// ---- foreground -----------------------------------------------------------------------------------

interface ShapeMasks {
  /** per frame: 1 light, 2 dark, 0 not the shape (largest component, holes filled) */
  frames: Uint8Array[];
  comps: number[][];
  /** per frame: the pixels nearer to the colour (light or dark) than to the background, before the component step */
  clean: Uint8Array[];
}

// ---- the clip's own background model ------------------------------------------------------------
//
// Model outputs do not draw the generator's exact palette: textures are approximated (water as a
// grid of light lines, static as fine grey noise, still textures that flicker), colours shift and
// every pixel carries noise. So the foreground is found against a background model built from the
// clip itself: the colours of its border ring that recur all around the frame (a shape that
// touches the border adds colours to a few sectors of the ring only), together with the detected
// class's generator palette; both on the pixels and on a smoothed copy (noise averages out there,
// while a pattern's dark cells stay apart from the texture on the pixels).

/** colour cells of Pixels.cell: 4 levels per step, 64 per channel */
const GRID = 64;

/** [1,2,1] x [1,2,1] smoothing of every frame (weights renormalised at the borders). */
function smoothPixels(px: Pixels): Pixels {
  const { T, H, W } = px;
  const N = T * H * W;
  const planes = [px.R, px.G, px.B].map((P) => {
    const tmp = new Float64Array(N);
    const out = new Float64Array(N);
    for (let t = 0; t < T; t++)
      for (let y = 0; y < H; y++) {
        const row = (t * H + y) * W;
        for (let x = 0; x < W; x++) {
          const a = x > 0 ? P[row + x - 1] : NaN;
          const b = x + 1 < W ? P[row + x + 1] : NaN;
          tmp[row + x] = (2 * P[row + x] + (a === a ? a : 0) + (b === b ? b : 0)) / (2 + (a === a ? 1 : 0) + (b === b ? 1 : 0));
        }
      }
    for (let t = 0; t < T; t++)
      for (let y = 0; y < H; y++) {
        const row = (t * H + y) * W;
        for (let x = 0; x < W; x++) {
          let s = 2 * tmp[row + x];
          let w = 2;
          if (y > 0) (s += tmp[row - W + x]), w++;
          if (y + 1 < H) (s += tmp[row + W + x]), w++;
          out[row + x] = s / w;
        }
      }
    return out;
  });
  const [R, G, B] = planes;
  const cell = new Int32Array(N);
  const q = (v: number) => Math.min(GRID - 1, Math.floor(v / 4));
  for (let i = 0; i < N; i++) cell[i] = (q(R[i]) << 12) | (q(G[i]) << 6) | q(B[i]);
  return { R, G, B, cell, nonFinite: 0, T, H, W };
}

/** Squared distance transform of one line (Felzenszwalb & Huttenlocher), in place. */
function dt1d(f: Float64Array, n: number, v: Int32Array, z: Float64Array, d: Float64Array): void {
  let k = 0;
  v[0] = 0;
  z[0] = -Infinity;
  z[1] = Infinity;
  for (let q = 1; q < n; q++) {
    if (f[q] === Infinity) continue;
    if (f[v[k]] === Infinity) {
      v[k] = q;
      continue;
    }
    let s = (f[q] + q * q - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k]);
    while (s <= z[k]) {
      k--;
      s = (f[q] + q * q - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k]);
    }
    k++;
    v[k] = q;
    z[k] = s;
    z[k + 1] = Infinity;
  }
  if (f[v[0]] === Infinity) return; // no seed on this line
  k = 0;
  for (let q = 0; q < n; q++) {
    while (z[k + 1] < q) k++;
    d[q] = (q - v[k]) * (q - v[k]) + f[v[k]];
  }
  for (let q = 0; q < n; q++) f[q] = d[q];
}

/** Squared distance (in cells) from every cell of an n^3 colour grid to the nearest seed cell (Infinity
 * without seeds): a separable exact transform that skips the lines holding no finite value yet. */
function colourDistanceGrid(seeds: Iterable<number>, n: number): Float64Array {
  const f = new Float64Array(n * n * n).fill(Infinity);
  for (const s of seeds) f[s] = 0;
  const line = new Float64Array(n);
  const v = new Int32Array(n);
  const z = new Float64Array(n + 1);
  const d = new Float64Array(n);
  for (const stride of [1, n, n * n]) {
    for (let a = 0; a < n; a++)
      for (let b = 0; b < n; b++) {
        // the two other axes
        const base = stride === 1 ? (a * n + b) * n : stride === n ? a * n * n + b : a * n + b;
        let any = false;
        for (let q = 0; q < n; q++) {
          const x = f[base + q * stride];
          line[q] = x;
          if (x !== Infinity) any = true;
        }
        if (!any) continue;
        dt1d(line, n, v, z, d);
        for (let q = 0; q < n; q++) f[base + q * stride] = line[q];
      }
  }
  return f;
}

/** A class palette's distance table over the 64^3 grid of colour cells (0..255 units, capped at 255). */
function paletteGrid(palette: Int32Array): Uint8Array {
  const d2 = colourDistanceGrid(palette, GRID);
  const out = new Uint8Array(d2.length);
  for (let i = 0; i < d2.length; i++) out[i] = Math.min(255, Math.round(4 * Math.sqrt(d2[i])));
  return out;
}

/** coarse cells of the clip's own palette: 8 levels per step, 32 per channel */
const COARSE = 32;
const coarseCell = (r: number, g: number, b: number) =>
  (Math.min(COARSE - 1, Math.floor(r / 8)) << 10) | (Math.min(COARSE - 1, Math.floor(g / 8)) << 5) | Math.min(COARSE - 1, Math.floor(b / 8));

/** The ring colours that recur around the frame and over time, as coarse cells: a coarse cell of ring
 * pixels is kept when the ring pixels within PAL_RADIUS of its mean colour occupy at least
 * PAL_MIN_SPREAD of the (angular sector, frame) pairs, RING_SECTORS sectors per frame. A shape that
 * touches the border, even one moving along it, covers a sector or two of each frame. */
function ringPalette(P: Pixels): number[] {
  const { R, G, B, T, H, W } = P;
  const HW = H * W;
  const acc = new Map<number, { n: number; r: number; g: number; b: number; sec: Uint32Array }>();
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      if (Math.min(x, y, W - 1 - x, H - 1 - y) >= RING) continue;
      const ang = Math.atan2(y + 0.5 - H / 2, x + 0.5 - W / 2);
      const sector = Math.min(RING_SECTORS - 1, Math.floor(((ang + Math.PI) / (2 * Math.PI)) * RING_SECTORS));
      for (let t = 0; t < T; t++) {
        const i = t * HW + y * W + x;
        const c = coarseCell(R[i], G[i], B[i]);
        let e = acc.get(c);
        if (!e) acc.set(c, (e = { n: 0, r: 0, g: 0, b: 0, sec: new Uint32Array(T) }));
        e.n++;
        e.r += R[i];
        e.g += G[i];
        e.b += B[i];
        e.sec[t] |= 1 << sector;
      }
    }
  const cells = [...acc.entries()].map(([c, e]) => ({ c, r: e.r / e.n, g: e.g / e.n, b: e.b / e.n, sec: e.sec }));
  const r2 = PAL_RADIUS * PAL_RADIUS;
  const need = PAL_MIN_SPREAD * RING_SECTORS * T;
  const out: number[] = [];
  const sec = new Uint32Array(T);
  for (const a of cells) {
    sec.fill(0);
    for (const b of cells) {
      const dr = a.r - b.r;
      const dg = a.g - b.g;
      const db = a.b - b.b;
      if (dr * dr + dg * dg + db * db <= r2) for (let t = 0; t < T; t++) sec[t] |= b.sec[t];
    }
    let k = 0;
    for (let t = 0; t < T; t++) for (let v = sec[t]; v; v &= v - 1) k++;
    if (k >= need) out.push(a.c);
  }
  return out;
}

interface BackgroundModel {
  /** per pixel: distance to the background model on the pixels, and the larger of that and the
   * distance on the smoothed copy (the foreground score) */
  raw: Float32Array;
  score: Float32Array;
}

/** Distances of every pixel to the clip's background model (see above): the nearer of the clip's own
 * palette (coarse cells: within ~7 levels) and the class's generator palette (exact cells). */
function backgroundModel(px: Pixels, cls: ClassProto | null): BackgroundModel {
  const sm = smoothPixels(px);
  const N = px.T * px.H * px.W;
  const dist = (P: Pixels, grid: Uint8Array | null): Float32Array => {
    const own = colourDistanceGrid(ringPalette(P), COARSE);
    const out = new Float32Array(N);
    for (let i = 0; i < N; i++) {
      const d = 8 * Math.sqrt(own[coarseCell(P.R[i], P.G[i], P.B[i])]);
      out[i] = grid ? Math.min(d, grid[P.cell[i]]) : d;
    }
    return out;
  };
  const raw = dist(px, cls ? classGrids(cls).raw : null);
  const smooth = dist(sm, cls ? classGrids(cls).smooth : null);
  const score = new Float32Array(N);
  for (let i = 0; i < N; i++) score[i] = Math.max(raw[i], smooth[i]);
  return { raw, score };
}

/** The class's palette distance tables (built on first use). */
function classGrids(cls: ClassProto): { raw: Uint8Array; smooth: Uint8Array } {
  return (cls.grids ??= { raw: paletteGrid(cls.palette), smooth: paletteGrid(cls.smoothPalette) });
}

/** Per frame 3x3 closing of a mask (dilate, then erode). */
function closeMask(m: Uint8Array, T: number, H: number, W: number): Uint8Array {
  const HW = H * W;
  const morph = (src: Uint8Array, dilate: boolean) => {
    const out = new Uint8Array(src.length);
    for (let t = 0; t < T; t++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          let v = dilate ? 0 : 1;
          for (let dy = -1; dy <= 1 && v === (dilate ? 0 : 1); dy++) {
            const yy = y + dy;
            if (yy < 0 || yy >= H) continue;
            for (let dx = -1; dx <= 1; dx++) {
              const xx = x + dx;
              if (xx < 0 || xx >= W) continue;
              const s = src[t * HW + yy * W + xx];
              if (dilate ? s : !s) {
                v = dilate ? 1 : 0;
                break;
              }
            }
          }
          out[t * HW + y * W + x] = v;
        }
    return out;
  };
  return morph(morph(m, true), false);
}

/** The largest spatio-temporal component of a mask [T, H, W]: 8-connected in a frame, and linked to the
 * 3x3 neighbourhood in the neighbouring frames (the shape moves 2 px a frame). */
function largestTrack(m: Uint8Array, T: number, H: number, W: number): Uint8Array {
  const HW = H * W;
  const N = T * HW;
  const label = new Int32Array(N);
  const stack = new Int32Array(N + 1);
  let best = 0;
  let bestSize = 0;
  let next = 0;
  for (let i0 = 0; i0 < N; i0++) {
    if (!m[i0] || label[i0]) continue;
    next++;
    let size = 0;
    let sp = 0;
    stack[sp++] = i0;
    label[i0] = next;
    while (sp > 0) {
      const i = stack[--sp];
      size++;
      const t = (i / HW) | 0;
      const p = i - t * HW;
      const y = (p / W) | 0;
      const x = p - y * W;
      for (let dt = -1; dt <= 1; dt++) {
        const tt = t + dt;
        if (tt < 0 || tt >= T) continue;
        for (let dy = -1; dy <= 1; dy++) {
          const yy = y + dy;
          if (yy < 0 || yy >= H) continue;
          for (let dx = -1; dx <= 1; dx++) {
            const xx = x + dx;
            if (xx < 0 || xx >= W) continue;
            const j = tt * HW + yy * W + xx;
            if (m[j] && !label[j]) {
              label[j] = next;
              stack[sp++] = j;
            }
          }
        }
      }
    }
    if (size > bestSize) {
      bestSize = size;
      best = next;
    }
  }
  const out = new Uint8Array(N);
  if (best) for (let i = 0; i < N; i++) if (label[i] === best) out[i] = 1;
  return out;
}

/** The foreground track: pixels farther than FG_TAU from the background model, closed per frame, largest
 * spatio-temporal component. Empty when the model explains less than MIN_RING_BACKGROUND of the ring
 * (noise: no background to find a shape against). */
function foregroundTrack(bg: BackgroundModel, T: number, H: number, W: number): { track: Uint8Array; fg: Uint8Array } {
  const N = T * H * W;
  const fg = new Uint8Array(N);
  for (let i = 0; i < N; i++) if (bg.score[i] > FG_TAU) fg[i] = 1;
  let ring = 0;
  let out = 0;
  for (let t = 0; t < T; t++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        if (Math.min(x, y, W - 1 - x, H - 1 - y) >= RING) continue;
        ring++;
        out += fg[(t * H + y) * W + x];
      }
  if (ring === 0 || 1 - out / ring < MIN_RING_BACKGROUND) return { track: new Uint8Array(N), fg };
  return { track: largestTrack(closeMask(fg, T, H, W), T, H, W), fg };
}

/** Colour votes over the track's foreground pixels: the nearest vocab colour (light, 1) or its shade
 * (dark, 0.5) within COLOUR_RADIUS; and the clip's own rendering of each colour (the per-channel median
 * of the pixels that voted light for it; the vocab colour where fewer than 4 did). */
function trackColourVotes(px: Pixels, track: Uint8Array, fg: Uint8Array, colours: Array<[string, readonly number[]]>, shade: number): { votes: number[]; seen: Vec3[] } {
  const { R, G, B } = px;
  const refs: Array<{ k: number; light: boolean; c: readonly number[] }> = [];
  colours.forEach(([, c], k) => {
    refs.push({ k, light: true, c });
    refs.push({ k, light: false, c: [c[0] * shade, c[1] * shade, c[2] * shade] });
  });
  const votes = new Array(colours.length).fill(0);
  const lights: number[][][] = colours.map(() => [[], [], []]);
  const v = [0, 0, 0];
  for (let i = 0; i < track.length; i++) {
    if (!track[i] || !fg[i]) continue;
    v[0] = R[i];
    v[1] = G[i];
    v[2] = B[i];
    let best = COLOUR_RADIUS;
    let pick = -1;
    for (let r = 0; r < refs.length; r++) {
      const d = dist3(v, refs[r].c);
      if (d < best) {
        best = d;
        pick = r;
      }
    }
    if (pick < 0) continue;
    const ref = refs[pick];
    votes[ref.k] += ref.light ? 1 : 0.5;
    if (ref.light) for (let c = 0; c < 3; c++) lights[ref.k][c].push(v[c]);
  }
  const seen = colours.map(([, c], k) => (lights[k][0].length >= 4 ? (lights[k].map((a) => median(a)) as Vec3) : ([...c] as Vec3)));
  return { votes, seen };
}

/** Frame t of the track, grown by 1 px (8-neighbourhood). */
function trackRegion(track: Uint8Array, t: number, H: number, W: number): Uint8Array {
  const HW = H * W;
  const region = new Uint8Array(HW);
  for (let p = 0; p < HW; p++) {
    if (!track[t * HW + p]) continue;
    const y = (p / W) | 0;
    const x = p - y * W;
    for (let yy = Math.max(0, y - 1); yy <= Math.min(H - 1, y + 1); yy++) for (let xx = Math.max(0, x - 1); xx <= Math.min(W - 1, x + 1); xx++) region[yy * W + xx] = 1;
  }
  return region;
}

/** Per frame: within the track (grown by 1 px), the pixels nearer to the colour `c` or its shade than to the
 * background model (on the pixels), labelled light (1) or dark (2); the largest 8-connected component of
 * those with its enclosed holes filled (holes take the nearer of light and dark). */
function trackMasks(px: Pixels, bg: BackgroundModel, track: Uint8Array, c: readonly number[], shade: number): ShapeMasks {
  const { R, G, B, T, H, W } = px;
  const HW = H * W;
  const dark = [c[0] * shade, c[1] * shade, c[2] * shade];
  const frames: Uint8Array[] = [];
  const comps: number[][] = [];
  const clean: Uint8Array[] = [];
  const label = new Int32Array(HW);
  const stack = new Int32Array(HW + 1);
  const v = [0, 0, 0];
  for (let t = 0; t < T; t++) {
    const region = trackRegion(track, t, H, W);
    const m = new Uint8Array(HW);
    const lightOrDark = (i: number): 1 | 2 => {
      v[0] = R[i];
      v[1] = G[i];
      v[2] = B[i];
      return dist3(v, c) <= dist3(v, dark) ? 1 : 2;
    };
    for (let p = 0; p < HW; p++) {
      if (!region[p]) continue;
      const i = t * HW + p;
      v[0] = R[i];
      v[1] = G[i];
      v[2] = B[i];
      const dl = dist3(v, c);
      const dd = dist3(v, dark);
      if (Math.min(dl, dd) < bg.raw[i]) m[p] = dl <= dd ? 1 : 2;
    }
    clean.push(m);
    const comp = largestComponent(m, H, W, label, stack);
    const f = new Uint8Array(HW);
    for (const p of comp) f[p] = m[p];
    if (comp.length > 0) {
      // fill the holes: pixels of the bounding box not reachable from its border outside the shape
      const [x0, x1, y0, y1] = componentBBox(comp, H, W);
      const outside = new Uint8Array(HW);
      let sp = 0;
      for (let y = y0; y <= y1; y++)
        for (let x = x0; x <= x1; x++) {
          const p = y * W + x;
          if ((x === x0 || x === x1 || y === y0 || y === y1) && !f[p] && !outside[p]) {
            outside[p] = 1;
            stack[sp++] = p;
          }
        }
      while (sp > 0) {
        const p = stack[--sp];
        const y = (p / W) | 0;
        const x = p - y * W;
        for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
          const xx = x + dx;
          const yy = y + dy;
          if (xx < x0 || xx > x1 || yy < y0 || yy > y1) continue;
          const q = yy * W + xx;
          if (!f[q] && !outside[q]) {
            outside[q] = 1;
            stack[sp++] = q;
          }
        }
      }
      for (let y = y0; y <= y1; y++)
        for (let x = x0; x <= x1; x++) {
          const p = y * W + x;
          if (!f[p] && !outside[p]) {
            f[p] = lightOrDark(t * HW + p);
            comp.push(p);
          }
        }
    }
    frames.push(f);
    comps.push(comp);
  }
  return { frames, comps, clean };
}

/** Binary-mask moments of one frame's component. */
function maskMoments(comp: number[], W: number): { cx: number; cy: number; features: ShapeFeatures } | null {
  const A = comp.length;
  if (A < 3) return null;
  let sx = 0;
  let sy = 0;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const p of comp) {
    const y = (p / W) | 0;
    const x = p - y * W;
    sx += x + 0.5;
    sy += y + 0.5;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  const cx = sx / A;
  const cy = sy / A;
  const moments = new CentralMoments();
  const rows = new Map<number, number>();
  const cols = new Map<number, number>();
  for (const p of comp) {
    const y = (p / W) | 0;
    const x = p - y * W;
    rows.set(y, (rows.get(y) ?? 0) + 1);
    cols.set(x, (cols.get(x) ?? 0) + 1);
    moments.add(1, x + 0.5 - cx, y + 0.5 - cy);
  }
  return { cx, cy, features: moments.features(A, Math.max(...rows.values()), Math.max(...cols.values())) };
}

/** Dark fraction and flip rates on the eroded shape (the whole shape when erosion leaves too little). */
function patternStats(masks: ShapeMasks, H: number, W: number): { dark: number; flips: PatternFlips; n: number } {
  const offsets: Array<[number, number]> = [[2, 0], [0, 2], [1, 1], [1, -1], [4, 0], [0, 4]];
  const collect = (erode: boolean) => {
    let nIn = 0;
    let nDark = 0;
    const same = offsets.map(() => 0);
    const tot = offsets.map(() => 0);
    for (const f of masks.frames) {
      let use = f;
      if (erode) {
        use = new Uint8Array(H * W);
        for (let y = 1; y < H - 1; y++)
          for (let x = 1; x < W - 1; x++) {
            const p = y * W + x;
            if (f[p] && f[p - 1] && f[p + 1] && f[p - W] && f[p + W]) use[p] = f[p];
          }
      }
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          const a = use[y * W + x];
          if (!a) continue;
          nIn++;
          if (a === 2) nDark++;
          offsets.forEach(([dx, dy], k) => {
            const xx = x + dx;
            const yy = y + dy;
            if (xx < 0 || xx >= W || yy < 0 || yy >= H) return;
            const b = use[yy * W + xx];
            if (!b) return;
            tot[k]++;
            if (a === b) same[k]++;
          });
        }
    }
    return { nIn, nDark, same, tot };
  };
  let s = collect(true);
  if (s.nIn < 24) s = collect(false);
  const flips = s.tot.map((n, k) => (n > 0 ? 1 - s.same[k] / n : NaN)) as PatternFlips;
  return { dark: s.nIn ? s.nDark / s.nIn : 0, flips, n: s.nIn };
}

/** Pattern prototypes in (flip(2,0), flip(0,2), flip(1,1), flip(1,-1), flip(4,0), flip(0,4), dark
 * fraction). Stripes and checks repeat every 4 px (flip 0 at offset 4); dotted cells are independent. */
const PATTERN_PROTOS: Array<[string, number[]]> = [
  ["striped", [0, 1, 0.5, 0.5, 0, 0, 0.5]],
  ["striped", [1, 0, 0.5, 0.5, 0, 0, 0.5]],
  ["striped", [1, 1, 1, 0, 0, 0, 0.5]],
  ["striped", [1, 1, 0, 1, 0, 0, 0.5]],
  ["checkered", [1, 1, 0.5, 0.5, 0, 0, 0.5]],
  ["dotted", [0.42, 0.42, 0.32, 0.32, 0.42, 0.42, 0.3]],
];

function classifyPattern(dark: number, flips: readonly number[], patterns: readonly string[]): { name: string; conf: number } {
  if (dark < PLAIN_DARK) return { name: patterns.includes("plain") ? "plain" : UNKNOWN, conf: Math.min(1, (PLAIN_DARK - dark) / PLAIN_DARK) };
  const f = [...flips, dark];
  const best = new Map<string, number>();
  for (const [name, proto] of PATTERN_PROTOS) {
    if (!patterns.includes(name)) continue;
    let s = 0;
    for (let j = 0; j < proto.length; j++) if (Number.isFinite(f[j])) s += (f[j] - proto[j]) ** 2;
    const d = Math.sqrt(s);
    if (!(best.get(name)! <= d)) best.set(name, d);
  }
  const ranked = [...best.entries()].sort((a, b) => a[1] - b[1]);
  if (ranked.length === 0) return { name: UNKNOWN, conf: 0 };
  const plainConf = Math.min(1, (dark - PLAIN_DARK) / PLAIN_DARK);
  return { name: ranked[0][0], conf: Math.min(plainConf, margin(ranked[0][1], ranked[1]?.[1] ?? Infinity)) };
}

// ---- prototypes ----------------------------------------------------------------------------------

const PROTO_CACHE = new Map<string, TexturePrototypes>();

function vocabKey(v: Vocab): string {
  return JSON.stringify([v.clip, v.shapes, v.colours, v.sizes, v.motions, v.speed_px_per_frame, v.backgrounds, v.background_detail, v.patterns, v.pattern_shade]);
}

/** The quality's shape measurement for a caption's colour (see the file header: fgArea, fgEdge): the
 * background model of the captioned class, the foreground track, and the shape's extent (trackMasks,
 * with the colour as the clip renders it: the median of the track pixels that vote light for it, the
 * vocab colour where fewer than 4 do). The clean area of a frame counts the extent's pixels within
 * FG_RADIUS of the caption's vocab colour or its shade and not FG_MARGIN farther from it than from the
 * background model; the rim counts the pixels within 2 px of the extent that are neither in it, nor
 * nearer to the colour than to the background, nor within BG_RADIUS of the background model, per
 * boundary pixel of the extent. */
function shapeStats(px: Pixels, vocab: Vocab, colour: string, shade: number, cls: ClassProto | null): { area: number; rim: number } {
  const { R, G, B, T, H, W } = px;
  const HW = H * W;
  const bg = backgroundModel(px, cls);
  const { track, fg } = foregroundTrack(bg, T, H, W);
  const colours = Object.entries(vocab.colours) as Array<[string, readonly number[]]>;
  const k = colours.findIndex(([name]) => name === colour);
  const seen = trackColourVotes(px, track, fg, colours, shade).seen[k];
  const c = colours[k][1];
  const dark = [c[0] * shade, c[1] * shade, c[2] * shade];
  const masks = trackMasks(px, bg, track, seen, shade);
  const areas: number[] = [];
  let trans = 0;
  let boundary = 0;
  const v = [0, 0, 0];
  for (let t = 0; t < T; t++) {
    const f = masks.frames[t];
    const comp = masks.comps[t];
    let clean = 0;
    const near = new Uint8Array(HW);
    for (const p of comp) {
      const i = t * HW + p;
      v[0] = R[i];
      v[1] = G[i];
      v[2] = B[i];
      const d = Math.min(dist3(v, c), dist3(v, dark));
      if (d < FG_RADIUS && d < bg.raw[i] + FG_MARGIN) clean++;
      const y = (p / W) | 0;
      const x = p - y * W;
      if (x === 0 || y === 0 || x === W - 1 || y === H - 1 || !f[p - 1] || !f[p + 1] || !f[p - W] || !f[p + W]) boundary++;
      for (let yy = Math.max(0, y - 2); yy <= Math.min(H - 1, y + 2); yy++)
        for (let xx = Math.max(0, x - 2); xx <= Math.min(W - 1, x + 2); xx++) near[yy * W + xx] = 1;
    }
    areas.push(clean);
    if (comp.length === 0) continue;
    for (let p = 0; p < HW; p++) {
      if (!near[p] || f[p] || masks.clean[t][p]) continue;
      const i = t * HW + p;
      if (bg.raw[i] > BG_RADIUS) trans++;
    }
  }
  return { area: median(areas), rim: boundary > 0 ? trans / boundary : Infinity };
}

/** The generator's statistics for this vocabulary (computed once, deterministic, cached). */
export function texturePrototypes(vocab: Vocab): TexturePrototypes {
  const { detail } = checkVocab(vocab);
  const key = vocabKey(vocab);
  const hit = PROTO_CACHE.get(key);
  if (hit) return hit;
  const names = Object.keys(vocab.backgrounds);
  const refs: Vec3[] = [];
  for (const name of names) {
    const d = detail[name];
    if (!d) throw new MixCacheError("VOCAB", `background "${name}" has no texture colours`, 'use datasetVocab(loadVocab(), "textures")');
    refs.push([...vocab.backgrounds[name]] as Vec3, [...d] as Vec3);
  }
  const { frames: T, height: H, width: W } = vocab.clip;
  const combos = allCombos(vocab);
  const classes: ClassProto[] = [];
  names.forEach((name, k) => {
    // palette: every quantised colour of PALETTE_BACKGROUNDS pure backgrounds
    // and of their smoothed copies (the background model's second view)
    const cells = new Set<number>();
    const smoothCells = new Set<number>();
    for (let s = 0; s < PALETTE_BACKGROUNDS; s++) {
      const bg = textureBackground(vocab, name, new Mulberry32(PROTO_SEED * 1000 + k * 100 + s));
      const N = T * H * W;
      const q = (v: number) => Math.min(63, Math.floor(Math.max(0, Math.min(255, v)) / 4));
      for (let i = 0; i < N; i++) cells.add((q(bg[i]) << 12) | (q(bg[N + i]) << 6) | q(bg[2 * N + i]));
      const clamp = (a: Float64Array) => a.map((v) => Math.max(0, Math.min(255, v)));
      const R = clamp(bg.subarray(0, N));
      const G = clamp(bg.subarray(N, 2 * N));
      const B = clamp(bg.subarray(2 * N, 3 * N));
      const sm = smoothPixels({ R, G, B, cell: new Int32Array(N), nonFinite: 0, T, H, W });
      for (let i = 0; i < N; i++) smoothCells.add(sm.cell[i]);
    }
    const cls: ClassProto = {
      name,
      colour: [],
      hf: { mean: 0, std: 1 },
      temporal: { mean: 0, std: 1 },
      palette: Int32Array.from(cells),
      lut: new Float32Array(1 << 18).fill(-1),
      smoothPalette: Int32Array.from(smoothCells),
      onPalette: 1,
    };
    classes.push(cls);
  });
  names.forEach((name, k) => {
    const cls = classes[k];
    const mine = combos.filter((c) => c.background === name);
    const feats: RingFeatures[] = [];
    let on = 0;
    for (let s = 0; s < PROTO_CLIPS; s++) {
      const { clip } = sampleClip(vocab, mine, PROTO_SEED + k * 1000 + s);
      const px = toPixels(clip, T, H, W);
      feats.push(ringFeatures(px, refs));
      on += onPaletteFraction(px, cls);
    }
    cls.onPalette = on / PROTO_CLIPS;
    const vecs = feats.map(colourVector);
    cls.colour = vecs[0].map((_, j) => stat(vecs.map((v) => v[j]), j < 3 ? FLOOR_RGB : FLOOR_FRAC));
    cls.hf = stat(feats.map((f) => logHf(f.hf)), FLOOR_LOG);
    cls.temporal = stat(feats.map((f) => logTemporal(f.temporal)), FLOOR_LOG);
  });
  const out: TexturePrototypes = { classes, refs, shapeRefs: new Map() };
  PROTO_CACHE.set(key, out);
  return out;
}

// ---- detection -----------------------------------------------------------------------------------

/** Detect background texture class, pattern, colour, shape and motion of a textures clip from its pixels. */
export function detectTextureAdherence(clip: ClipLike, vocab: Vocab): TextureDetection {
  const [T, H, W] = checkClipDims(clip, "texture adherence");
  const { shade, patterns } = checkVocab(vocab);
  const protos = texturePrototypes(vocab);
  const px = toPixels(clip, T, H, W);
  const N = T * H * W;

  const det: TextureDetection = {
    background: UNKNOWN,
    pattern: UNKNOWN,
    colour: UNKNOWN,
    shape: UNKNOWN,
    motion: NO_MOTION,
    confidence: { background: 0, pattern: 0, colour: 0, shape: 0, motion: 0 },
    ok: false,
    details: {
      ring: null,
      backgroundDistance: {},
      framesWithShape: 0,
      area: 0,
      darkFraction: 0,
      flips: [NaN, NaN, NaN, NaN, NaN, NaN],
      centroids: new Array(T).fill(null),
      displacement: [0, 0],
      features: null,
    },
  };
  if (px.nonFinite > 1.5 * N) return det; // more than half the values are not numbers
  let lo = Infinity;
  let hi = -Infinity;
  for (const P of [px.R, px.G, px.B])
    for (let i = 0; i < N; i++) {
      if (P[i] < lo) lo = P[i];
      if (P[i] > hi) hi = P[i];
    }
  if (!(hi - lo > 1)) return det; // flat: no texture, no shape

  // 1. background class
  const ring = ringFeatures(px, protos.refs);
  det.details.ring = ring;
  let best = Infinity;
  let second = Infinity;
  let cls: ClassProto | null = null;
  for (const c of protos.classes) {
    const d = detectionDistance(ring, c);
    det.details.backgroundDistance[c.name] = d;
    if (d < best) {
      second = best;
      best = d;
      cls = c;
    } else if (d < second) second = d;
  }
  if (cls && classDistance(ring, cls).rms <= MAX_BG_RMS_Z) {
    det.background = cls.name;
    det.confidence.background = margin(best, second);
  } else cls = null;

  // 2. foreground track, its colour, the shape masks
  const colours = Object.entries(vocab.colours) as Array<[string, readonly number[]]>;
  const bgm = backgroundModel(px, cls);
  const { track, fg } = foregroundTrack(bgm, T, H, W);
  const { votes, seen } = trackColourVotes(px, track, fg, colours, shade);
  let vBest = 0;
  let vSecond = 0;
  let ci = -1;
  votes.forEach((v, k) => {
    if (v > vBest) {
      vSecond = vBest;
      vBest = v;
      ci = k;
    } else if (v > vSecond) vSecond = v;
  });
  if (ci < 0 || vBest < 4) return det;
  const masks = trackMasks(px, bgm, track, seen[ci], shade);
  const minArea = Math.max(4, Math.round(0.004 * H * W));
  const centroids: Array<[number, number] | null> = [];
  const feats: ShapeFeatures[] = [];
  const areas: number[] = [];
  for (let t = 0; t < T; t++) {
    const comp = masks.comps[t];
    if (comp.length < minArea) {
      masks.comps[t] = [];
      masks.frames[t].fill(0);
      centroids.push(null);
      continue;
    }
    const m = maskMoments(comp, W);
    if (!m) {
      centroids.push(null);
      continue;
    }
    centroids.push([m.cx, m.cy]);
    feats.push(m.features);
    areas.push(comp.length);
  }
  const framesWithShape = areas.length;
  det.details.framesWithShape = framesWithShape;
  det.details.centroids = centroids;
  if (framesWithShape < 2) return det;
  det.colour = colours[ci][0];
  det.confidence.colour = vBest > 0 ? Math.max(0, Math.min(1, 1 - vSecond / vBest)) : 0;
  det.details.area = median(areas);

  // 3. pattern
  const ps = patternStats(masks, H, W);
  det.details.darkFraction = ps.dark;
  det.details.flips = ps.flips;
  const pat = classifyPattern(ps.dark, ps.flips, patterns);
  det.pattern = pat.name;
  det.confidence.pattern = pat.conf;

  // 4. motion: least-squares slope of the centroid
  const mo = fitMotion(centroids, T, H, W, MIN_DISPLACEMENT, vocab.motions);
  det.details.displacement = mo.displacement;
  det.motion = mo.motion;
  det.confidence.motion = mo.confidence;

  // 5. shape from the median features
  const features = medianFeatures(feats);
  det.details.features = features;
  const sh = classifyShape(features, vocab.shapes);
  det.shape = sh.name;
  det.confidence.shape = sh.conf;
  det.ok = framesWithShape >= Math.max(2, Math.ceil(T / 2)) && det.shape !== UNKNOWN;
  return det;
}

/** Triangles are skewed (~0.57, others ~0); among the rest, squares have a larger kurtosis along
 * the diagonals than along the axes (~0.6, circles ~0) and fill their bounding box (~1, circles
 * ~0.79): the square score weighs both, each scaled to 0 (circle) .. 1 (square), and a square scores
 * over SQUARE_SCORE. The kurtosis weighs more (SQUARE_KURT_WEIGHT): a soft edge cuts a square's corners,
 * which lowers its fill much more than its kurtosis. */
function classifyShape(f: ShapeFeatures, shapes: readonly string[]): { name: string; conf: number } {
  const TRI_SKEW = 0.3;
  if (!Number.isFinite(f.skew) || !Number.isFinite(f.fill) || !Number.isFinite(f.diagKurtosis)) return { name: UNKNOWN, conf: 0 };
  if (f.skew > TRI_SKEW && shapes.includes("triangle")) return { name: "triangle", conf: Math.min(1, (f.skew - TRI_SKEW) / TRI_SKEW) };
  const skewConf = Math.min(1, (TRI_SKEW - f.skew) / TRI_SKEW);
  const SQUARE_KURT_WEIGHT = 0.7;
  const SQUARE_SCORE = 0.4;
  const squareness = SQUARE_KURT_WEIGHT * (f.diagKurtosis / 0.6) + (1 - SQUARE_KURT_WEIGHT) * ((f.fill - 0.79) / 0.21);
  const conf = Math.min(skewConf, Math.min(1, 2 * Math.abs(squareness - SQUARE_SCORE)));
  if (squareness > SQUARE_SCORE && shapes.includes("square")) return { name: "square", conf };
  if (shapes.includes("circle")) return { name: "circle", conf };
  return { name: UNKNOWN, conf: 0 };
}

// ---- scoring -------------------------------------------------------------------------------------

export interface TextureAdherenceScore {
  colour: 0 | 1;
  shape: 0 | 1;
  motion: 0 | 1;
  /** background texture class */
  background: 0 | 1;
  pattern: 0 | 1;
  /** background AND pattern: the caption's texture attributes both right */
  texture: 0 | 1;
}

export type TextureAttrs = Pick<Attrs, "colour" | "shape" | "motion" | "background"> & { pattern?: string };

/** 1 where the detection matches the expected attribute (size is not scored). */
export function scoreTextureAdherence(detected: TextureDetection, expected: TextureAttrs): TextureAdherenceScore {
  const s = (a: string, b: string | undefined): 0 | 1 => (b !== undefined && a === b ? 1 : 0);
  const background = s(detected.background, expected.background);
  const pattern = s(detected.pattern, expected.pattern);
  return {
    colour: s(detected.colour, expected.colour),
    shape: s(detected.shape, expected.shape),
    motion: s(detected.motion, expected.motion),
    background,
    pattern,
    texture: (background & pattern) as 0 | 1,
  };
}

export interface TextureAdherenceSummary {
  n: number;
  colour: number;
  shape: number;
  motion: number;
  background: number;
  pattern: number;
  texture: number;
  /** fraction with all five attributes right */
  all: number;
  /** mean of the five per-attribute rates (colour, shape, motion, background, pattern) */
  mean: number;
}

/** Per-attribute accuracy over many scored clips (zeros for an empty list). */
export function aggregateTextureAdherence(scores: readonly TextureAdherenceScore[]): TextureAdherenceSummary {
  return attributeRates(scores, ["colour", "shape", "motion", "background", "pattern", "texture"], ["colour", "shape", "motion", "background", "pattern"]);
}

/** Detect and score a batch of clips against their captions' attributes. */
export function evaluateTextureAdherence(
  vocab: Vocab,
  items: Iterable<{ clip: ClipLike; attrs: TextureAttrs }>,
): { summary: TextureAdherenceSummary; detections: TextureDetection[]; scores: TextureAdherenceScore[] } {
  const detections: TextureDetection[] = [];
  const scores: TextureAdherenceScore[] = [];
  for (const { clip, attrs } of items) {
    const det = detectTextureAdherence(clip, vocab);
    detections.push(det);
    scores.push(scoreTextureAdherence(det, attrs));
  }
  return { summary: aggregateTextureAdherence(scores), detections, scores };
}

// ---- quality -------------------------------------------------------------------------------------

const FG_REF_CLIPS = 6;
const FG_REF_SEED = 0x5eed;

/** The generator's clean-shape area and rim width for exactly these attributes (cached). */
function shapeReference(vocab: Vocab, protos: TexturePrototypes, attrs: Attrs): ShapeReference {
  const key = JSON.stringify([attrs.shape, attrs.colour, attrs.size, attrs.motion, attrs.background, attrs.pattern]);
  const hit = protos.shapeRefs.get(key);
  if (hit) return hit;
  const { frames: T, height: H, width: W } = vocab.clip;
  const cls = protos.classes.find((c) => c.name === attrs.background) ?? null;
  const areas: number[] = [];
  let rim = 0;
  for (let s = 0; s < FG_REF_CLIPS; s++) {
    const clip = renderTextured(vocab, attrs, new Mulberry32(FG_REF_SEED + 7919 * s));
    const px = toPixels(clip, T, H, W);
    const e = shapeStats(px, vocab, attrs.colour, vocab.pattern_shade ?? 0.3, cls);
    areas.push(e.area);
    if (Number.isFinite(e.rim)) rim = Math.max(rim, e.rim);
  }
  const ref: ShapeReference = { area: [Math.min(...areas), Math.max(...areas)], rim };
  protos.shapeRefs.set(key, ref);
  return ref;
}

export interface TextureQualityParts {
  /** the weighted geometric mean of the parts, 0..1 */
  score: number;
  bgClass: number;
  bgDetail: number;
  bgMotion: number;
  bgPalette: number;
  fgArea: number;
  fgEdge: number;
  /** the measurements behind the parts, and the generator's reference for this caption */
  raw: {
    /** RMS z of the ring's colour features to the captioned class */
    colourZ: number;
    /** fraction of ring pixels within BG_RADIUS of the class palette, and the generator's mean */
    onPalette: number;
    onPaletteRef: number;
    /** ring energies (mean per-channel |difference|, 0..255 units) and the class's generator mean */
    hf: number;
    hfRef: number;
    temporal: number;
    temporalRef: number;
    /** median clean-shape area per frame, and the generator's range for this caption */
    area: number;
    areaRef: [number, number];
    /** rim width, and the generator's largest for this caption */
    rim: number;
    rimRef: number;
  };
}

/** 1 within `tol` of 0, then a Gaussian fall-off of width `scale`. */
const soft = (z: number, tol: number, scale: number) => Math.exp(-0.5 * Math.max(0, Math.abs(z) - tol) ** 2 / (scale * scale));

/** A log energy against a class's generator statistics. */
const energyTerm = (e: number, ref: Stat) => soft(e - ref.mean, Math.max(Q_LOG_TOL_Z * ref.std, Q_LOG_TOL), Q_LOG_SCALE);

/** The quality score with its parts (see the file header). Never throws on content; non-finite clips score 0. */
export function textureQualityParts(clip: ClipLike, vocab: Vocab, attrs: Attrs): TextureQualityParts {
  const [T, H, W] = checkClipDims(clip, "texture adherence");
  const { shade } = checkVocab(vocab);
  const protos = texturePrototypes(vocab);
  const cls = protos.classes.find((c) => c.name === attrs.background);
  const colour = vocab.colours[attrs.colour];
  if (!cls || !colour || !vocab.shapes.includes(attrs.shape) || !(attrs.size in vocab.sizes) || !(attrs.motion in vocab.motions) || !attrs.pattern || !vocab.patterns!.includes(attrs.pattern)) {
    throw new MixCacheError("VOCAB", `textureQuality needs attributes of the textures vocabulary, got ${JSON.stringify(attrs)}`, "pass the caption's attributes (parseCaption with the textures vocabulary)");
  }
  const ref = shapeReference(vocab, protos, attrs);
  const zero: TextureQualityParts = {
    score: 0, bgClass: 0, bgDetail: 0, bgMotion: 0, bgPalette: 0, fgArea: 0, fgEdge: 0,
    raw: { colourZ: Infinity, onPalette: 0, onPaletteRef: cls.onPalette, hf: NaN, hfRef: NaN, temporal: NaN, temporalRef: NaN, area: 0, areaRef: ref.area, rim: Infinity, rimRef: ref.rim },
  };
  const px = toPixels(clip, T, H, W);
  if (px.nonFinite > 0) return zero;
  const ring = ringFeatures(px, protos.refs);
  const d = classDistance(ring, cls);
  const bgClass = soft(d.colour, Q_Z0, Q_ZS);
  const bgDetail = energyTerm(logHf(ring.hf), cls.hf);
  const bgMotion = energyTerm(logTemporal(ring.temporal), cls.temporal);
  const onPalette = onPaletteFraction(px, cls);
  const bgPalette = Math.min(1, onPalette / (Q_PALETTE_TOL * cls.onPalette));
  const e = shapeStats(px, vocab, attrs.colour, shade, cls);
  const minArea = Math.max(4, Math.round(0.004 * H * W));
  // a caption whose shape the generator itself leaves invisible (plain white on cloud) is not scored on it
  const visible = ref.area[1] >= minArea;
  const lo = Q_AREA_TOL_LO * ref.area[0];
  const fgArea = !visible ? 1 : Math.max(0, Math.min(1, e.area >= lo ? 1 : e.area / lo, e.area > 0 ? (Q_AREA_TOL_HI * ref.area[1]) / e.area : 0));
  const fgEdge = !visible ? 1 : Number.isFinite(e.rim) ? Math.min(1, (Q_RIM_TOL * ref.rim + Q_RIM_SLACK) / Math.max(e.rim, 1e-9)) : 0;
  const parts = { bgClass, bgDetail, bgMotion, bgPalette, fgArea, fgEdge };
  let lw = 0;
  let wsum = 0;
  for (const [k, w] of Object.entries(Q_WEIGHTS)) {
    lw += w * Math.log(Math.max(1e-9, parts[k as keyof typeof parts]));
    wsum += w;
  }
  const score = Math.exp(lw / wsum);
  return {
    score: score < 1e-6 ? 0 : score,
    ...parts,
    raw: {
      colourZ: d.colour,
      onPalette,
      onPaletteRef: cls.onPalette,
      hf: ring.hf,
      hfRef: Math.expm1(cls.hf.mean),
      temporal: ring.temporal,
      temporalRef: 4 * Math.expm1(cls.temporal.mean),
      area: e.area,
      areaRef: ref.area,
      rim: e.rim,
      rimRef: ref.rim,
    },
  };
}

/** Reference-free quality of a textures clip for its caption's attributes, 0..1 (see the file header). */
export function textureQuality(clip: ClipLike, vocab: Vocab, attrs: Attrs): number {
  return textureQualityParts(clip, vocab, attrs).score;
}
