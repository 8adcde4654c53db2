/**
 * PNG encoder/decoder for 8-bit RGB (colour type 2, no interlace) and the contact sheet writer.
 *
 * Encoding picks a filter per row (None, Sub, Up, Average, Paeth) by the usual minimum sum of
 * absolute differences heuristic, then deflates with node:zlib (level 6, PNG_ZLIB_LEVEL).
 * `decodePng` reads what `encodePng` writes (any filter, any number of IDAT chunks) and checks
 * every CRC.
 */
import { deflateSync, inflateSync } from "node:zlib";
import { MixCacheError, UsageError } from "../errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { checkScale, validateVideo, videoToFrames, type Video } from "./frames.ts";

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, as PNG uses it). */
function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** zlib level of the IDAT stream. 6 (zlib's default), not 9: on a bench contact sheet level 9
 * spent most of the encode in deflate for about 1-2% fewer bytes. */
export const PNG_ZLIB_LEVEL = 6;

/** Encode interleaved 8-bit RGB as a PNG file. `text` adds tEXt chunks (Latin-1 keys/values). */
export function encodePng(rgb: Uint8Array, width: number, height: number, text: Record<string, string> = {}): Uint8Array {
  for (const [k, v] of [["width", width], ["height", height]] as const)
    if (!Number.isInteger(v) || v < 1 || v > 0x7fffffff) throw new UsageError(`PNG ${k} must be a positive integer, got ${v}`);
  if (rgb.length !== width * height * 3)
    throw new UsageError(`image has ${rgb.length} bytes, ${width}x${height} RGB needs ${width * height * 3}`);
  const stride = width * 3;
  const raw = new Uint8Array((stride + 1) * height);
  const cand = Array.from({ length: 5 }, () => new Uint8Array(stride));
  const zero = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const cur = rgb.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? rgb.subarray((y - 1) * stride, y * stride) : zero;
    let best = 0, bestSum = Infinity;
    for (let f = 0; f < 5; f++) {
      const o = cand[f];
      let sum = 0;
      for (let i = 0; i < stride; i++) {
        const a = i >= 3 ? cur[i - 3] : 0;
        const b = up[i];
        const c = i >= 3 ? up[i - 3] : 0;
        const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? b : f === 3 ? (a + b) >> 1 : paeth(a, b, c);
        const v = (cur[i] - pred) & 0xff;
        o[i] = v;
        sum += v < 128 ? v : 256 - v;
        if (sum >= bestSum) break;
      }
      if (sum < bestSum) {
        bestSum = sum;
        best = f;
      }
    }
    raw[y * (stride + 1)] = best;
    raw.set(cand[best], y * (stride + 1) + 1);
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type RGB, deflate, adaptive filtering, no interlace
  const parts: Uint8Array[] = [SIGNATURE, chunk("IHDR", ihdr)];
  for (const [k, v] of Object.entries(text)) parts.push(chunk("tEXt", Buffer.from(`${k}\0${v}`, "latin1")));
  parts.push(chunk("IDAT", deflateSync(raw, { level: PNG_ZLIB_LEVEL })), chunk("IEND", new Uint8Array(0)));
  return Buffer.concat(parts);
}

export interface DecodedPng {
  width: number;
  height: number;
  rgb: Uint8Array;
  text: Record<string, string>;
}

/** Decode an 8-bit RGB non-interlaced PNG (what encodePng writes). */
export function decodePng(png: Uint8Array): DecodedPng {
  const bad = (why: string): never => {
    throw new MixCacheError("IO", `not a supported PNG: ${why}`, "decodePng reads 8-bit RGB PNGs as written by encodePng");
  };
  if (png.length < 8 || SIGNATURE.some((b, i) => png[i] !== b)) bad("bad signature");
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  let pos = 8, width = 0, height = 0, seenEnd = false;
  const idat: Uint8Array[] = [];
  const text: Record<string, string> = {};
  while (pos < png.length && !seenEnd) {
    if (pos + 12 > png.length) bad("truncated chunk");
    const len = dv.getUint32(pos);
    const type = String.fromCharCode(...png.subarray(pos + 4, pos + 8));
    if (pos + 12 + len > png.length) bad(`truncated ${type} chunk`);
    const data = png.subarray(pos + 8, pos + 8 + len);
    if (crc32(png.subarray(pos + 4, pos + 8 + len)) !== dv.getUint32(pos + 8 + len)) bad(`CRC mismatch in ${type}`);
    if (type === "IHDR") {
      width = dv.getUint32(pos + 8);
      height = dv.getUint32(pos + 12);
      const [depth, ctype, comp, filter, interlace] = data.subarray(8, 13);
      if (depth !== 8 || ctype !== 2 || comp !== 0 || filter !== 0 || interlace !== 0)
        bad(`bit depth ${depth}, colour type ${ctype}, interlace ${interlace}`);
    } else if (type === "IDAT") idat.push(data);
    else if (type === "tEXt") {
      const s = Buffer.from(data).toString("latin1");
      const z = s.indexOf("\0");
      if (z > 0) text[s.slice(0, z)] = s.slice(z + 1);
    } else if (type === "IEND") seenEnd = true;
    pos += 12 + len;
  }
  if (!width || !height) bad("no IHDR");
  if (!seenEnd) bad("no IEND");
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 3;
  if (raw.length !== (stride + 1) * height) bad(`pixel data has ${raw.length} bytes, expected ${(stride + 1) * height}`);
  const rgb = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const o = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= 3 ? rgb[o + i - 3] : 0;
      const b = y > 0 ? rgb[o - stride + i] : 0;
      const c = i >= 3 && y > 0 ? rgb[o - stride + i - 3] : 0;
      const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? b : f === 3 ? (a + b) >> 1 : f === 4 ? paeth(a, b, c) : bad(`filter ${f}`);
      rgb[o + i] = (raw[src + i] + pred) & 0xff;
    }
  }
  return { width, height, rgb, text };
}

// ---------------------------------------------------------------------------------------------
// Contact sheet

/** 3x5 pixel font for labels (rows top to bottom); lower case is drawn as upper case, unknown
 * characters as '?'. */
const FONT_ROWS: Record<string, string> = {
  A: ".#. #.# ### #.# #.#", B: "##. #.# ##. #.# ##.", C: ".## #.. #.. #.. .##", D: "##. #.# #.# #.# ##.",
  E: "### #.. ##. #.. ###", F: "### #.. ##. #.. #..", G: ".## #.. #.# #.# .##", H: "#.# #.# ### #.# #.#",
  I: "### .#. .#. .#. ###", J: "..# ..# ..# #.# .#.", K: "#.# #.# ##. #.# #.#", L: "#.. #.. #.. #.. ###",
  M: "#.# ### ### #.# #.#", N: "##. #.# #.# #.# #.#", O: ".#. #.# #.# #.# .#.", P: "##. #.# ##. #.. #..",
  Q: ".#. #.# #.# ##. .##", R: "##. #.# ##. #.# #.#", S: ".## #.. .#. ..# ##.", T: "### .#. .#. .#. .#.",
  U: "#.# #.# #.# #.# ###", V: "#.# #.# #.# #.# .#.", W: "#.# #.# ### ### #.#", X: "#.# #.# .#. #.# #.#",
  Y: "#.# #.# .#. .#. .#.", Z: "### ..# .#. #.. ###",
  "0": "### #.# #.# #.# ###", "1": ".#. ##. .#. .#. ###", "2": "##. ..# .#. #.. ###", "3": "##. ..# .#. ..# ##.",
  "4": "#.# #.# ### ..# ..#", "5": "### #.. ##. ..# ##.", "6": ".## #.. ### #.# ###", "7": "### ..# .#. .#. .#.",
  "8": "### #.# ### #.# ###", "9": "### #.# ### ..# ##.",
  " ": "... ... ... ... ...", "-": "... ... ### ... ...", _: "... ... ... ... ###", ".": "... ... ... ... .#.",
  ",": "... ... ... .#. #..", ":": "... .#. ... .#. ...", "/": "..# ..# .#. #.. #..", "=": "... ### ... ### ...",
  "+": "... .#. ### .#. ...", "(": "..# .#. .#. .#. ..#", ")": "#.. .#. .#. .#. #..", "%": "#.. ..# .#. #.. ..#",
  "?": "##. ..# .#. ... .#.", "'": ".#. .#. ... ... ...", "*": "... #.# .#. #.# ...",
};
const FONT: Record<string, string> = Object.fromEntries(Object.entries(FONT_ROWS).map(([k, v]) => [k, v.replace(/ /g, "")]));

function drawText(img: Uint8Array, imgW: number, imgH: number, x0: number, y0: number, s: string, px: number, color: number[]): void {
  let x = x0;
  for (const ch of s) {
    const g = FONT[ch.toUpperCase()] ?? FONT["?"];
    if (x + 3 * px > imgW) break;
    for (let gy = 0; gy < 5; gy++)
      for (let gx = 0; gx < 3; gx++) {
        if (g[gy * 3 + gx] !== "#") continue;
        for (let dy = 0; dy < px; dy++) {
          const y = y0 + gy * px + dy;
          if (y < 0 || y >= imgH) continue;
          for (let dx = 0; dx < px; dx++) {
            const o = (y * imgW + x + gx * px + dx) * 3;
            img[o] = color[0];
            img[o + 1] = color[1];
            img[o + 2] = color[2];
          }
        }
      }
    x += 4 * px;
  }
}

export interface ContactSheetOptions {
  /** Nearest-neighbour upscale of each frame (default 4). */
  scale?: number;
  /** Frames per row. Default: one clip -> min(T, 8); several clips -> the longest clip's T, so each
   * clip is one row. A clip longer than `columns` wraps onto further rows. */
  columns?: number;
  /** Pixels between frames and around the border (default 4). */
  gap?: number;
  /** One label per clip, drawn above its row(s) in a 3x5 pixel font (A-Z, 0-9, some punctuation). */
  labels?: string[];
  /** Pixel size of the label font (default 2). */
  labelScale?: number;
  /** Background RGB (default [24, 24, 24]); labels are white. */
  background?: [number, number, number];
}

const DEFAULT_SHEET_SCALE = 4;

export interface Image {
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** Lay out every frame of one or more clips in a grid (one row block per clip). */
export function renderContactSheet(video: Video | Video[], opts: ContactSheetOptions = {}): Image {
  const clips = Array.isArray(video) ? video : [video];
  if (clips.length === 0) throw new UsageError("contact sheet needs at least one clip");
  clips.forEach((v, i) => validateVideo(v, clips.length > 1 ? `clip ${i}` : "video"));
  const scale = checkScale(opts.scale ?? DEFAULT_SHEET_SCALE);
  const gap = opts.gap ?? 4;
  if (!Number.isInteger(gap) || gap < 0 || gap > 1024) throw new UsageError(`gap must be an integer 0..1024, got ${gap}`);
  const maxT = Math.max(...clips.map((v) => v.frames));
  const columns = opts.columns ?? (clips.length === 1 ? Math.min(maxT, 8) : maxT);
  if (!Number.isInteger(columns) || columns < 1)
    throw new UsageError(`columns must be a positive integer, got ${columns}`);
  const labels = opts.labels;
  if (labels && labels.length !== clips.length)
    throw new UsageError(`got ${labels.length} labels for ${clips.length} clips`, "pass one label per clip");
  const px = opts.labelScale ?? 2;
  if (!Number.isInteger(px) || px < 1 || px > 16) throw new UsageError(`labelScale must be an integer 1..16, got ${px}`);
  const bg = opts.background ?? [24, 24, 24];
  const labelH = labels ? 7 * px : 0;

  const cellW = Math.max(...clips.map((v) => v.width)) * scale;
  const cellH = Math.max(...clips.map((v) => v.height)) * scale;
  const usedCols = Math.min(columns, maxT);
  const width = gap + usedCols * (cellW + gap);
  let height = gap;
  for (const v of clips) height += labelH + Math.ceil(v.frames / columns) * (cellH + gap);

  const img = new Uint8Array(width * height * 3);
  for (let i = 0; i < img.length; i += 3) {
    img[i] = bg[0];
    img[i + 1] = bg[1];
    img[i + 2] = bg[2];
  }
  let y = gap;
  clips.forEach((v, ci) => {
    if (labels) {
      drawText(img, width, height, gap, y + px, labels[ci], px, [255, 255, 255]);
      y += labelH;
    }
    const { frames, width: fw, height: fh } = videoToFrames(v, scale);
    frames.forEach((f, t) => {
      const x0 = gap + (t % columns) * (cellW + gap);
      const y0 = y + Math.floor(t / columns) * (cellH + gap);
      for (let r = 0; r < fh; r++) img.set(f.subarray(r * fw * 3, (r + 1) * fw * 3), ((y0 + r) * width + x0) * 3);
    });
    y += Math.ceil(v.frames / columns) * (cellH + gap);
  });
  return { rgb: img, width, height };
}

/** Write a contact sheet PNG of one clip (all frames in a grid) or several (one row per clip),
 * atomically. Labels are also stored as a tEXt chunk. Returns the sheet's pixel size. */
export function writeContactSheet(path: string, video: Video | Video[], opts: ContactSheetOptions = {}): { width: number; height: number } {
  const sheet = renderContactSheet(video, opts);
  const text: Record<string, string> = { Software: "mixcache" };
  if (opts.labels) text.Labels = opts.labels.join(" | ");
  writeFileAtomic(path, encodePng(sheet.rgb, sheet.width, sheet.height, text));
  return { width: sheet.width, height: sheet.height };
}
