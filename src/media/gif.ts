/**
 * Animated GIF89a encoder (no dependencies).
 *
 * Palette: if all frames together use at most 256 distinct colours, one global colour table holds
 * them exactly. Otherwise each frame gets its own local table: exact when that frame has <= 256
 * colours, else a quantised one where every "flat" colour (covering >= 1/256 of the frame, up to
 * 128 of them) keeps an exact entry and the remaining colours are median-cut (pixel-weighted) into
 * the free entries, refined by a few k-means passes. No dithering, so flat regions stay exact and
 * compress well. Nearest entries are found by a sorted-axis search that returns what a linear scan
 * would, in a few dozen distance evaluations instead of 256.
 *
 * The work is bounded for many-colour frames (photographic content, large outputs): above
 * MAX_QUANT_COLOURS distinct non-flat colours, median cut and k-means run on 15-bit cells (5 bits
 * per channel, merged into 12-bit cells if there are still too many), each colour takes the entry
 * nearest to its 15-bit cell's mean colour (a 32768-entry table), and the frame is never
 * histogrammed colour by colour (quantizeFrame). Frames with fewer colours encode as before.
 *
 * Each frame carries a graphic control extension (delay in centiseconds, disposal "do not
 * dispose", no transparency) and is LZW-compressed with variable code sizes, a clear code at the
 * start and whenever the 4096-entry table fills, and an end-of-information code.
 */
import { UsageError } from "../errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { checkScale, videoToFrames, type Video } from "./frames.ts";

export interface GifOptions {
  /** Frames per second (default 16). Stored as a delay of round(100 / fps) centiseconds, at least 2
   * (browsers slow delays under 2 cs down to 10 cs). */
  fps?: number;
  /** NETSCAPE2.0 loop count: 0 (default) loops forever, n > 0 repeats n times, false writes no loop
   * extension (play once). */
  loop?: number | false;
}

export interface WriteGifOptions extends GifOptions {
  /** Nearest-neighbour upscale factor (default 8: a 32x32 clip becomes 256x256). */
  scale?: number;
}

export const DEFAULT_GIF_SCALE = 8;
const DEFAULT_FPS = 16;

class ByteWriter {
  buf = new Uint8Array(1 << 16);
  len = 0;
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b & 0xff;
  }
  u16(v: number): void {
    this.byte(v);
    this.byte(v >>> 8);
  }
  bytes(a: ArrayLike<number>): void {
    this.ensure(a.length);
    this.buf.set(a, this.len);
    this.len += a.length;
  }
  ascii(s: string): void {
    for (let i = 0; i < s.length; i++) this.byte(s.charCodeAt(i));
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Delay in centiseconds for a frame rate. */
export function gifDelay(fps: number): number {
  if (!(typeof fps === "number" && Number.isFinite(fps) && fps > 0))
    throw new UsageError(`fps must be a positive number, got ${fps}`, "use e.g. --fps 16");
  return Math.min(65535, Math.max(2, Math.round(100 / fps)));
}

// ---------------------------------------------------------------------------------------------
// Palettes

interface Palette {
  colors: number[]; // 0xRRGGBB, at most 256
  index: Map<number, number>; // every colour of the frame(s) -> palette index (see `cells`)
  /** many-colour frames only: palette index per 15-bit cell (5 bits per channel, cellKey) for the
   * colours not in `index` */
  cells?: Int16Array;
}

/** 15-bit cell of a 0xRRGGBB colour: its top 5 bits per channel. */
function cellKey(c: number): number {
  return ((c >>> 9) & 0x7c00) | ((c >>> 6) & 0x3e0) | ((c >>> 3) & 0x1f);
}

function exactPalette(colors: Iterable<number>): Palette {
  const list = [...colors].sort((a, b) => a - b);
  const index = new Map<number, number>();
  list.forEach((c, i) => index.set(c, i));
  return { colors: list, index };
}

interface Entry {
  c: number;
  r: number;
  g: number;
  b: number;
  n: number;
}

/** Above this many distinct non-flat colours, quantize works on a reduced-bit histogram. */
export const MAX_QUANT_COLOURS = 4096;
/** Frames with more distinct colours than this (so more than MAX_QUANT_COLOURS non-flat ones, as
 * there are at most 128 flat ones) skip the exact histogram (quantizeFrame). */
const MAX_EXACT_HISTOGRAM = MAX_QUANT_COLOURS + 128;

/**
 * Nearest palette entry by squared RGB distance, lowest index on ties (what a linear scan over the
 * palette returns), found by walking outward from the query's green in the palette sorted by green
 * and stopping each way once the green gap alone exceeds the best distance.
 */
class NearestColour {
  private readonly order: Int32Array;
  private readonly g: Float64Array;
  private readonly r: Float64Array;
  private readonly b: Float64Array;
  constructor(colors: readonly number[]) {
    const n = colors.length;
    const idx = Array.from({ length: n }, (_, i) => i).sort((i, j) => ((colors[i] >>> 8) & 255) - ((colors[j] >>> 8) & 255) || i - j);
    this.order = Int32Array.from(idx);
    this.g = new Float64Array(n);
    this.r = new Float64Array(n);
    this.b = new Float64Array(n);
    idx.forEach((i, k) => {
      this.r[k] = colors[i] >>> 16;
      this.g[k] = (colors[i] >>> 8) & 255;
      this.b[k] = colors[i] & 255;
    });
  }
  find(r: number, g: number, b: number): number {
    const { order, r: pr, g: pg, b: pb } = this;
    const n = order.length;
    let lo = 0, hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pg[mid] < g) lo = mid + 1;
      else hi = mid;
    }
    let best = -1, bestD = Infinity;
    for (let up = lo, down = lo - 1; up < n || down >= 0; ) {
      for (let side = 0; side < 2; side++) {
        const k = side === 0 ? up : down;
        if (k < 0 || k >= n) continue;
        const dg = pg[k] - g;
        if (dg * dg > bestD) {
          // every entry further out this way is at least as far in green alone
          if (side === 0) up = n;
          else down = -1;
          continue;
        }
        if (side === 0) up++;
        else down--;
        const dr = pr[k] - r, db = pb[k] - b;
        const d = dr * dr + dg * dg + db * db;
        const i = order[k];
        if (d < bestD || (d === bestD && i < best)) {
          bestD = d;
          best = i;
        }
      }
    }
    return best;
  }
}

/** Pixel-weighted colour sums per 15-bit cell (cellKey), for many-colour frames. */
class CellSums {
  readonly r = new Float64Array(1 << 15);
  readonly g = new Float64Array(1 << 15);
  readonly b = new Float64Array(1 << 15);
  readonly n = new Float64Array(1 << 15);
  add(c: number, m: number): void {
    const k = cellKey(c);
    this.r[k] += (c >>> 16) * m;
    this.g[k] += ((c >>> 8) & 255) * m;
    this.b[k] += (c & 255) * m;
    this.n[k] += m;
  }
  /** Each occupied cell's mean colour and pixel count, by cell. */
  means(): Array<Entry | undefined> {
    const out: Array<Entry | undefined> = new Array(1 << 15);
    for (let k = 0; k < 1 << 15; k++) {
      const n = this.n[k];
      if (n === 0) continue;
      const r = Math.round(this.r[k] / n), g = Math.round(this.g[k] / n), b = Math.round(this.b[k] / n);
      out[k] = { c: (r << 16) | (g << 8) | b, r, g, b, n };
    }
    return out;
  }
}

/** What the palette search of a many-colour frame runs on: its 15-bit cells, or when there are more
 * than `max`, those merged into 12-bit cells (4 bits per channel; weighted as if every pixel of a
 * cell had the cell's mean colour). Ordered by count, then colour. */
function searchEntries(cells: Array<Entry | undefined>, max: number): Entry[] {
  let entries = cells.filter((e): e is Entry => e !== undefined);
  if (entries.length > max) {
    const sr = new Float64Array(1 << 12), sg = new Float64Array(1 << 12), sb = new Float64Array(1 << 12), sn = new Float64Array(1 << 12);
    for (const e of entries) {
      const k = ((e.r >> 4) << 8) | ((e.g >> 4) << 4) | (e.b >> 4);
      sr[k] += e.r * e.n;
      sg[k] += e.g * e.n;
      sb[k] += e.b * e.n;
      sn[k] += e.n;
    }
    entries = [];
    for (let k = 0; k < 1 << 12; k++) {
      const n = sn[k];
      if (n === 0) continue;
      const r = Math.round(sr[k] / n), g = Math.round(sg[k] / n), b = Math.round(sb[k] / n);
      entries.push({ c: (r << 16) | (g << 8) | b, r, g, b, n });
    }
  }
  return entries.sort((a, b) => b.n - a.n || a.c - b.c);
}

/** The flat colours of a histogram, each with an exact palette entry: those covering >= 1/256 of
 * the `total` pixels (and at least 2), most frequent (then lowest) first, at most
 * min(128, maxColors / 2). */
function flatColours(counts: Iterable<[number, number]>, total: number, maxColors: number): Palette {
  const flatMin = Math.max(2, total / 256);
  const maxFlat = Math.min(128, maxColors >> 1);
  const flat: Array<[number, number]> = [];
  for (const e of counts) if (e[1] >= flatMin) flat.push(e);
  flat.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  const index = new Map<number, number>();
  const colors: number[] = [];
  for (const [c] of flat.slice(0, maxFlat)) {
    index.set(c, colors.length);
    colors.push(c);
  }
  return { colors, index };
}

/** Quantise a colour histogram (> 256 colours) to at most 256 palette entries. */
export function quantize(hist: Map<number, number>, maxColors = 256): Palette {
  let total = 0;
  for (const n of hist.values()) total += n;
  const flat = flatColours(hist, total, maxColors);
  if (hist.size === flat.colors.length) return flat;
  if (hist.size - flat.colors.length > MAX_QUANT_COLOURS) {
    const sums = new CellSums();
    for (const [c, n] of hist) if (!flat.index.has(c)) sums.add(c, n);
    return fitPalette(flat, maxColors, sums);
  }
  const byCount = [...hist.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  return fitPalette(flat, maxColors, byCount.slice(flat.colors.length).map(([c, n]) => ({ c, r: c >>> 16, g: (c >>> 8) & 255, b: c & 255, n })));
}

/**
 * `quantize` of a frame's histogram, for a frame with more than MAX_QUANT_COLOURS + 128 distinct
 * colours, without building that histogram (a Map of every colour is most of the cost there): 15-bit
 * cell counts first; a flat colour fills at least 1/256 of the frame, so its cell does too, and
 * only the pixels of such cells are counted exactly. Same palette as quantize(histogram).
 */
export function quantizeFrame(rgb: Uint8Array, maxColors = 256): Palette {
  // runs of one colour (upscaled frames repeat each pixel along a row)
  const runC = new Int32Array(rgb.length / 3), runN = new Int32Array(rgb.length / 3);
  let runs = 0;
  for (let s = 0; s < rgb.length; s += 3) {
    const c = (rgb[s] << 16) | (rgb[s + 1] << 8) | rgb[s + 2];
    if (runs > 0 && runC[runs - 1] === c) runN[runs - 1]++;
    else {
      runC[runs] = c;
      runN[runs++] = 1;
    }
  }
  const total = rgb.length / 3;
  const flatMin = Math.max(2, total / 256);
  const perCell = new Float64Array(1 << 15);
  for (let i = 0; i < runs; i++) perCell[cellKey(runC[i])] += runN[i];
  const exact = new Map<number, number>();
  for (let i = 0; i < runs; i++) {
    const c = runC[i];
    if (perCell[cellKey(c)] >= flatMin) exact.set(c, (exact.get(c) ?? 0) + runN[i]);
  }
  const flat = flatColours(exact, total, maxColors);
  const sums = new CellSums();
  for (let i = 0; i < runs; i++) if (!flat.index.has(runC[i])) sums.add(runC[i], runN[i]);
  return fitPalette(flat, maxColors, sums);
}

/** Median cut (then k-means) of the non-flat colours into the entries `flat` leaves free: over the
 * colours themselves (`rest`), or for a many-colour frame over its cells (`CellSums`), whose
 * colours then take the entry nearest to their 15-bit cell's mean colour (Palette.cells). */
function fitPalette(flat: Palette, maxColors: number, input: Entry[] | CellSums): Palette {
  const { colors, index } = flat;
  const slots = maxColors - colors.length;
  const reduced = input instanceof CellSums;
  const cells = reduced ? input.means() : [];
  const rest = reduced ? searchEntries(cells, MAX_QUANT_COLOURS) : input;
  // Median cut over the rest, weighted by pixel count.
  interface Box {
    lo: number;
    hi: number; // [lo, hi) in `rest`
    n: number;
    range: number;
    axis: "r" | "g" | "b";
  }
  const makeBox = (lo: number, hi: number): Box => {
    let rmin = 255, rmax = 0, gmin = 255, gmax = 0, bmin = 255, bmax = 0, n = 0;
    for (let i = lo; i < hi; i++) {
      const e = rest[i];
      if (e.r < rmin) rmin = e.r;
      if (e.r > rmax) rmax = e.r;
      if (e.g < gmin) gmin = e.g;
      if (e.g > gmax) gmax = e.g;
      if (e.b < bmin) bmin = e.b;
      if (e.b > bmax) bmax = e.b;
      n += e.n;
    }
    const rr = rmax - rmin, gr = gmax - gmin, br = bmax - bmin;
    const axis = gr >= rr && gr >= br ? "g" : rr >= br ? "r" : "b";
    return { lo, hi, n, range: Math.max(rr, gr, br), axis };
  };
  const boxes: Box[] = [makeBox(0, rest.length)];
  while (boxes.length < slots) {
    let best = -1, bestScore = 0;
    for (let i = 0; i < boxes.length; i++) {
      const bx = boxes[i];
      if (bx.hi - bx.lo < 2 || bx.range === 0) continue;
      const score = bx.range * Math.sqrt(bx.n);
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    if (best < 0) break;
    const bx = boxes[best];
    const ax = bx.axis;
    const sub = rest.slice(bx.lo, bx.hi).sort((a, b) => a[ax] - b[ax] || a.c - b.c);
    for (let i = 0; i < sub.length; i++) rest[bx.lo + i] = sub[i];
    // Weighted median split, both halves non-empty.
    let acc = 0, cut = bx.lo + 1;
    for (let i = bx.lo; i < bx.hi - 1; i++) {
      acc += rest[i].n;
      cut = i + 1;
      if (acc * 2 >= bx.n) break;
    }
    boxes[best] = makeBox(bx.lo, cut);
    boxes.push(makeBox(cut, bx.hi));
  }
  const fixed = colors.length;
  for (const bx of boxes) {
    let r = 0, g = 0, b = 0;
    for (let i = bx.lo; i < bx.hi; i++) {
      const e = rest[i];
      r += e.r * e.n;
      g += e.g * e.n;
      b += e.b * e.n;
    }
    const c = (Math.round(r / bx.n) << 16) | (Math.round(g / bx.n) << 8) | Math.round(b / bx.n);
    const idx = colors.length;
    colors.push(c);
    if (!reduced) for (let i = bx.lo; i < bx.hi; i++) index.set(rest[i].c, idx);
  }
  // Refine the median-cut entries with a few k-means (Lloyd) passes when affordable, mapping each
  // colour to its nearest entry; the exact (flat) entries stay fixed.
  const work = rest.length * colors.length;
  const passes = work <= 4e6 ? 4 : work <= 4e7 ? 1 : 0;
  const P = colors.length;
  let search = new NearestColour(colors);
  const load = (): void => {
    search = new NearestColour(colors);
  };
  const nearest = (e: { r: number; g: number; b: number }): number => search.find(e.r, e.g, e.b);
  for (let pass = 0; pass < passes; pass++) {
    load();
    const sr = new Float64Array(P), sg = new Float64Array(P), sb = new Float64Array(P), sn = new Float64Array(P);
    for (const e of rest) {
      const i = nearest(e);
      if (!reduced) index.set(e.c, i);
      sr[i] += e.r * e.n;
      sg[i] += e.g * e.n;
      sb[i] += e.b * e.n;
      sn[i] += e.n;
    }
    for (let i = fixed; i < P; i++)
      if (sn[i] > 0) colors[i] = (Math.round(sr[i] / sn[i]) << 16) | (Math.round(sg[i] / sn[i]) << 8) | Math.round(sb[i] / sn[i]);
  }
  if (reduced) {
    // every colour of a 15-bit cell takes the entry nearest to the cell's mean colour
    load();
    const table = new Int16Array(1 << 15).fill(-1);
    cells.forEach((e, k) => {
      if (e) table[k] = nearest(e);
    });
    return { colors, index, cells: table };
  }
  if (passes > 0) {
    load();
    for (const e of rest) index.set(e.c, nearest(e));
  }
  return { colors, index };
}

function indexFrame(rgb: Uint8Array, pal: Palette): Uint8Array {
  const n = rgb.length / 3;
  const out = new Uint8Array(n);
  let last = -1, lastIdx = 0;
  for (let i = 0, s = 0; i < n; i++, s += 3) {
    const c = (rgb[s] << 16) | (rgb[s + 1] << 8) | rgb[s + 2];
    if (c !== last) {
      last = c;
      lastIdx = pal.index.get(c) ?? pal.cells![cellKey(c)];
    }
    out[i] = lastIdx;
  }
  return out;
}

/** Bits for a colour table holding `n` colours (1..8); the table is padded to 2^bits entries. */
function tableBits(n: number): number {
  let bits = 1;
  while (1 << bits < n) bits++;
  return bits;
}

function writeTable(w: ByteWriter, colors: number[], bits: number): void {
  const size = 1 << bits;
  for (let i = 0; i < size; i++) {
    const c = i < colors.length ? colors[i] : 0;
    w.byte(c >>> 16);
    w.byte(c >>> 8);
    w.byte(c);
  }
}

// ---------------------------------------------------------------------------------------------
// LZW

// Child table keyed by (prefix << 8 | pixel), allocated once; only the keys set since the last
// reset are cleared (at most 4096), so a reset is cheap.
let lzwTable: Int16Array | null = null;
const lzwUsed = new Int32Array(4096);

/** GIF-flavoured LZW: returns the packed code stream (LSB-first), not yet split into sub-blocks.
 * Every index must be < 2^minCodeSize. */
export function lzwEncode(indices: Uint8Array, minCodeSize: number): Uint8Array {
  if (minCodeSize < 2 || minCodeSize > 8) throw new RangeError(`LZW min code size ${minCodeSize}`);
  const table = (lzwTable ??= new Int16Array(4096 * 256).fill(-1));
  let nUsed = 0;
  const reset = (): void => {
    for (let i = 0; i < nUsed; i++) table[lzwUsed[i]] = -1;
    nUsed = 0;
  };
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  let codeSize = minCodeSize + 1;
  let next = eoi + 1;
  const out = new ByteWriter();
  let acc = 0, nbits = 0;
  const emit = (code: number): void => {
    acc |= code << nbits;
    nbits += codeSize;
    while (nbits >= 8) {
      out.byte(acc & 0xff);
      acc >>>= 8;
      nbits -= 8;
    }
  };
  emit(clear);
  if (indices.length === 0) {
    emit(eoi);
    if (nbits > 0) out.byte(acc);
    return out.result();
  }
  let prefix = indices[0];
  for (let i = 1; i < indices.length; i++) {
    const k = indices[i];
    const key = (prefix << 8) | k;
    const code = table[key];
    if (code >= 0) {
      prefix = code;
      continue;
    }
    emit(prefix);
    if (next === 4096) {
      // Table full: clear and start over (emitted at the current, 12-bit, code size).
      emit(clear);
      reset();
      codeSize = minCodeSize + 1;
      next = eoi + 1;
    } else {
      if (next >= 1 << codeSize) codeSize++;
      table[key] = next++;
      lzwUsed[nUsed++] = key;
    }
    prefix = k;
  }
  emit(prefix);
  reset(); // leave the shared table clean for the next call
  // A decoder adds its (one step behind) entry on reading that last code and widens its code size
  // when the table reaches 2^codeSize; the end code must be written at the width it then expects.
  if (next >= 1 << codeSize && codeSize < 12) codeSize++;
  emit(eoi);
  if (nbits > 0) out.byte(acc & 0xff);
  return out.result();
}

function writeSubBlocks(w: ByteWriter, data: Uint8Array): void {
  for (let i = 0; i < data.length; i += 255) {
    const n = Math.min(255, data.length - i);
    w.byte(n);
    w.bytes(data.subarray(i, i + n));
  }
  w.byte(0);
}

// ---------------------------------------------------------------------------------------------

/** Encode interleaved RGB frames (each width*height*3 bytes) as an animated GIF89a. */
export function encodeGif(frames: Uint8Array[], width: number, height: number, opts: GifOptions = {}): Uint8Array {
  if (frames.length === 0) throw new UsageError("cannot write a GIF with no frames");
  for (const [k, v] of [["width", width], ["height", height]] as const)
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw new UsageError(`GIF ${k} must be 1..65535, got ${v}`);
  frames.forEach((f, i) => {
    if (f.length !== width * height * 3)
      throw new UsageError(`frame ${i} has ${f.length} bytes, ${width}x${height} RGB needs ${width * height * 3}`);
  });
  const delay = gifDelay(opts.fps ?? DEFAULT_FPS);
  const loop = opts.loop ?? 0;
  if (loop !== false && !(Number.isInteger(loop) && loop >= 0 && loop <= 65535))
    throw new UsageError(`GIF loop must be false or an integer 0..65535, got ${loop}`, "use 0 to loop forever");

  // Global palette when every colour of every frame fits in 256 entries.
  let global: Set<number> | null = new Set<number>();
  for (const f of frames) {
    let last = -1;
    for (let s = 0; s < f.length && global; s += 3) {
      const c = (f[s] << 16) | (f[s + 1] << 8) | f[s + 2];
      if (c === last) continue; // runs (upscaled frames) add nothing new
      last = c;
      global.add(c);
      if (global.size > 256) global = null;
    }
    if (!global) break;
  }
  const globalPal = global ? exactPalette(global) : null;

  const w = new ByteWriter();
  w.ascii("GIF89a");
  w.u16(width);
  w.u16(height);
  if (globalPal) {
    const bits = tableBits(globalPal.colors.length);
    w.byte(0x80 | ((bits - 1) << 4) | (bits - 1)); // global table, colour resolution, table size
    w.byte(0); // background colour index
    w.byte(0); // pixel aspect ratio
    writeTable(w, globalPal.colors, bits);
  } else {
    w.byte(0x70); // no global table, 8-bit colour resolution
    w.byte(0);
    w.byte(0);
  }
  if (loop !== false) {
    w.bytes([0x21, 0xff, 0x0b]);
    w.ascii("NETSCAPE2.0");
    w.bytes([0x03, 0x01]);
    w.u16(loop);
    w.byte(0);
  }
  for (const f of frames) {
    // Graphic control extension: disposal 1 (leave in place), no transparency.
    w.bytes([0x21, 0xf9, 0x04, 0x04]);
    w.u16(delay);
    w.bytes([0x00, 0x00]);
    let pal = globalPal;
    let local = false;
    if (!pal) {
      // counted per run of one colour (upscaled frames repeat each pixel `scale` times per row); a
      // frame with too many colours for an exact histogram goes to quantizeFrame
      const hist = new Map<number, number>();
      let last = -1, run = 0;
      for (let s = 0; s < f.length && hist.size <= MAX_EXACT_HISTOGRAM; s += 3) {
        const c = (f[s] << 16) | (f[s + 1] << 8) | f[s + 2];
        if (c === last) {
          run++;
          continue;
        }
        if (run) hist.set(last, (hist.get(last) ?? 0) + run);
        last = c;
        run = 1;
      }
      if (run) hist.set(last, (hist.get(last) ?? 0) + run);
      pal = hist.size > MAX_EXACT_HISTOGRAM ? quantizeFrame(f) : hist.size <= 256 ? exactPalette(hist.keys()) : quantize(hist);
      local = true;
    }
    const bits = tableBits(pal.colors.length);
    w.byte(0x2c);
    w.u16(0);
    w.u16(0);
    w.u16(width);
    w.u16(height);
    w.byte(local ? 0x80 | (bits - 1) : 0);
    if (local) writeTable(w, pal.colors, bits);
    const minCode = Math.max(2, bits);
    w.byte(minCode);
    writeSubBlocks(w, lzwEncode(indexFrame(f, pal), minCode));
  }
  w.byte(0x3b);
  return w.result();
}

/** Write a clip as an animated GIF (atomically: temp file, then rename). */
export function writeGif(path: string, video: Video, opts: WriteGifOptions = {}): void {
  const scale = checkScale(opts.scale ?? DEFAULT_GIF_SCALE);
  const { frames, width, height } = videoToFrames(video, scale);
  writeFileAtomic(path, encodeGif(frames, width, height, opts));
}
