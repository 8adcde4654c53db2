import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MixCacheError } from "../src/errors.ts";
import { STALE_TEMP_MS, parseTempName, sweepStaleTemps, writeFileAtomic } from "../src/util/atomic.ts";
import { isRegisteredTemp, pendingCleanups, registerTemp } from "../src/util/cleanup.ts";
import { tempDir } from "./support/tmp.ts";
import { videoFormat, writeVideo } from "../src/media/write.ts";
import { hasFfmpeg, writeMp4 } from "../src/media/mp4.ts";
import { PNG_ZLIB_LEVEL, decodePng, encodePng, writeContactSheet } from "../src/media/png.ts";
import { MAX_QUANT_COLOURS, encodeGif, lzwEncode, quantize, quantizeFrame, writeGif } from "../src/media/gif.ts";
import { toByte, toRgbFrames, upscaleRgb, type Video } from "../src/media/frames.ts";
import { rng } from "./support/randomWeights.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

function tmp(): string {
  return tempDir("mixcache-media-");
}

/** No temp files left anywhere under `dir`. */
function assertNoTemp(dir: string): void {
  const left = readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith(".tmp"));
  assert.deepEqual(left, []);
}

/** A [3, T, H, W] clip whose value at (c, t, y, x) is f(c, t, y, x). */
function makeVideo(T: number, H: number, W: number, f: (c: number, t: number, y: number, x: number) => number): Video {
  const data = new Float32Array(3 * T * H * W);
  for (let c = 0; c < 3; c++)
    for (let t = 0; t < T; t++)
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[((c * T + t) * H + y) * W + x] = f(c, t, y, x);
  return { data, channels: 3, frames: T, height: H, width: W };
}

function solid(w: number, h: number, rgb: [number, number, number]): Uint8Array {
  const f = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) f.set(rgb, i * 3);
  return f;
}

function assertIoError(fn: () => unknown, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof MixCacheError, String(e));
    assert.equal(e.code, "IO");
    if (re) assert.match(e.message, re);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// A small GIF decoder, independent of the encoder, to check what it writes.

interface DecodedGif {
  width: number;
  height: number;
  globalTable: boolean;
  loop: number | null; // NETSCAPE2.0 count, null when absent
  delays: number[];
  disposals: number[];
  localTables: boolean[];
  frames: Uint8Array[]; // composited RGB
  clears: number; // clear codes seen across all frames
}

function lzwDecode(data: Uint8Array, minCodeSize: number, npix: number): { out: Uint8Array; clears: number } {
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  const prefix = new Int32Array(4096);
  const suffix = new Uint8Array(4096);
  const first = new Uint8Array(4096);
  const len = new Int32Array(4096);
  for (let i = 0; i < clear; i++) {
    prefix[i] = -1;
    suffix[i] = i;
    first[i] = i;
    len[i] = 1;
  }
  const out = new Uint8Array(npix);
  let pos = 0, bitPos = 0, codeSize = minCodeSize + 1, next = eoi + 1, prev = -1, clears = 0, ended = false;
  const read = (): number => {
    let v = 0;
    for (let i = 0; i < codeSize; i++, bitPos++) {
      const byte = bitPos >> 3;
      assert.ok(byte < data.length, "LZW stream ran out before the end code");
      v |= ((data[byte] >> (bitPos & 7)) & 1) << i;
    }
    return v;
  };
  const put = (code: number): void => {
    const n = len[code];
    assert.ok(pos + n <= npix, "LZW stream decodes to more pixels than the frame has");
    for (let i = n - 1, c = code; i >= 0; i--, c = prefix[c]) out[pos + i] = suffix[c];
    pos += n;
  };
  for (;;) {
    const code = read();
    if (code === clear) {
      clears++;
      codeSize = minCodeSize + 1;
      next = eoi + 1;
      prev = -1;
      continue;
    }
    if (code === eoi) {
      ended = true;
      break;
    }
    if (prev < 0) {
      assert.ok(code < clear, `first code after clear must be a literal, got ${code}`);
      put(code);
      prev = code;
      continue;
    }
    let k: number;
    if (code < next) k = first[code];
    else {
      assert.equal(code, next, "LZW code beyond the table");
      k = first[prev];
    }
    if (next < 4096) {
      prefix[next] = prev;
      suffix[next] = k;
      first[next] = first[prev];
      len[next] = len[prev] + 1;
      next++;
      if (next >= 1 << codeSize && codeSize < 12) codeSize++;
    }
    put(code);
    prev = code;
  }
  assert.ok(ended);
  assert.equal(pos, npix, "frame pixel count");
  return { out, clears };
}

function decodeGif(gif: Uint8Array): DecodedGif {
  let p = 0;
  const u8 = (): number => gif[p++];
  const u16 = (): number => gif[p++] | (gif[p++] << 8);
  const ascii = (n: number): string => String.fromCharCode(...gif.subarray(p, (p += n)));
  const table = (bits: number): number[][] => Array.from({ length: 1 << bits }, () => [u8(), u8(), u8()]);
  const subBlocks = (): Uint8Array => {
    const parts: number[] = [];
    for (let n = u8(); n !== 0; n = u8()) for (let i = 0; i < n; i++) parts.push(u8());
    return Uint8Array.from(parts);
  };
  assert.equal(ascii(6), "GIF89a");
  const width = u16(), height = u16(), packed = u8();
  u8(); // background
  u8(); // aspect
  const globalTable = (packed & 0x80) !== 0;
  const gtab = globalTable ? table((packed & 7) + 1) : null;
  const res: DecodedGif = { width, height, globalTable, loop: null, delays: [], disposals: [], localTables: [], frames: [], clears: 0 };
  const canvas = new Uint8Array(width * height * 3);
  for (;;) {
    const b = u8();
    if (b === 0x3b) break;
    if (b === 0x21) {
      const label = u8();
      if (label === 0xff) {
        assert.equal(u8(), 11);
        const id = ascii(11);
        const data = subBlocks();
        if (id === "NETSCAPE2.0") {
          assert.equal(data[0], 1);
          res.loop = data[1] | (data[2] << 8);
        }
      } else if (label === 0xf9) {
        assert.equal(u8(), 4);
        const pk = u8();
        res.disposals.push((pk >> 2) & 7);
        res.delays.push(u16());
        u8();
        assert.equal(u8(), 0);
      } else subBlocks();
      continue;
    }
    assert.equal(b, 0x2c, `unexpected block 0x${b.toString(16)} at ${p - 1}`);
    const left = u16(), top = u16(), w = u16(), h = u16(), ip = u8();
    assert.equal(ip & 0x40, 0, "interlace not expected");
    const local = (ip & 0x80) !== 0;
    res.localTables.push(local);
    const tab = local ? table((ip & 7) + 1) : gtab;
    assert.ok(tab, "frame without a colour table");
    const minCode = u8();
    const { out, clears } = lzwDecode(subBlocks(), minCode, w * h);
    res.clears += clears;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const idx = out[y * w + x];
        assert.ok(idx < tab.length);
        canvas.set(tab[idx], ((top + y) * width + left + x) * 3);
      }
    res.frames.push(canvas.slice());
  }
  assert.equal(p, gif.length, "bytes after the trailer");
  return res;
}

function pixel(f: Uint8Array, w: number, x: number, y: number): number[] {
  const o = (y * w + x) * 3;
  return [f[o], f[o + 1], f[o + 2]];
}

// ---------------------------------------------------------------------------------------------
// Conversion

test("toByte follows the diffusers convention", () => {
  assert.equal(toByte(-1), 0);
  assert.equal(toByte(1), 255);
  assert.equal(toByte(0), 128);
  assert.equal(toByte(-5), 0);
  assert.equal(toByte(3), 255);
  assert.equal(toByte(Number.NaN), 0);
  assert.equal(toByte(0.5), 191); // 0.75 * 255 = 191.25
  assert.equal(toByte(-0.5), 64); // 0.25 * 255 = 63.75
  assert.equal(toByte(Math.fround(2 / 255 - 1)), 1);
  assert.equal(toByte(Math.fround(1 / 255 - 1)), 0); // 0.49999997 * ... rounds down
});

test("toRgbFrames reads [C, T, H, W] and interleaves RGB", () => {
  // value encodes (c, t, x) so every byte is identifiable
  const v = makeVideo(2, 1, 3, (c, t, _y, x) => -1 + (c * 60 + t * 20 + x * 5) / 127.5);
  const frames = toRgbFrames(v);
  assert.equal(frames.length, 2);
  for (let t = 0; t < 2; t++)
    for (let x = 0; x < 3; x++)
      for (let c = 0; c < 3; c++) assert.equal(frames[t][x * 3 + c], c * 60 + t * 20 + x * 5, `t${t} x${x} c${c}`);
  assert.throws(() => toRgbFrames({ ...v, frames: 3 }), /needs/);
});

test("upscaleRgb is nearest-neighbour", () => {
  const img = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]); // 2x2
  const up = upscaleRgb(img, 2, 2, 3);
  assert.equal(up.length, 6 * 6 * 3);
  assert.deepEqual(pixel(up, 6, 0, 0), [1, 2, 3]);
  assert.deepEqual(pixel(up, 6, 2, 2), [1, 2, 3]);
  assert.deepEqual(pixel(up, 6, 3, 0), [4, 5, 6]);
  assert.deepEqual(pixel(up, 6, 5, 5), [10, 11, 12]);
  assert.deepEqual(pixel(up, 6, 0, 3), [7, 8, 9]);
});

// ---------------------------------------------------------------------------------------------
// GIF

test("GIF: flat colours round-trip exactly, header, loop and delay fields", () => {
  const w = 10, h = 6;
  const red = solid(w, h, [255, 0, 0]);
  const split = solid(w, h, [0, 0, 255]);
  for (let y = 0; y < h; y++) for (let x = 0; x < 5; x++) split.set([12, 200, 99], (y * w + x) * 3);
  const frames = [red, split, solid(w, h, [128, 128, 128])];
  const gif = encodeGif(frames, w, h, { fps: 10 });
  const d = decodeGif(gif);
  assert.equal(d.width, w);
  assert.equal(d.height, h);
  assert.equal(d.globalTable, true);
  assert.equal(d.loop, 0);
  assert.deepEqual(d.delays, [10, 10, 10]);
  assert.deepEqual(d.disposals, [1, 1, 1]);
  assert.deepEqual(d.localTables, [false, false, false]);
  d.frames.forEach((f, i) => assert.deepEqual(f, frames[i], `frame ${i}`));

  assert.deepEqual(decodeGif(encodeGif(frames, w, h, { fps: 16, loop: 3 })).delays, [6, 6, 6]);
  assert.equal(decodeGif(encodeGif(frames, w, h, { loop: 3 })).loop, 3);
  assert.equal(decodeGif(encodeGif(frames, w, h, { loop: false })).loop, null);
  assert.deepEqual(decodeGif(encodeGif([red], w, h, { fps: 1000 })).delays, [2]); // clamped
  // a one-colour clip still gets a valid (2-entry) table and LZW min code size 2
  assert.deepEqual(decodeGif(encodeGif([red, red], w, h)).frames[1], red);
  assert.throws(() => encodeGif([red], w, h, { fps: 0 }), /fps/);
  assert.throws(() => encodeGif([red.subarray(3)], w, h), /needs/);
});

test("GIF: more than 256 colours keeps flat colours exact and stays close elsewhere", () => {
  const w = 32, h = 32;
  const flat = solid(w, h, [40, 90, 200]);
  for (let y = 0; y < h; y++) for (let x = 0; x < 8; x++) flat.set([250, 250, 10], (y * w + x) * 3);
  // left half flat, right half a 512-colour gradient
  const mixed = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      if (x < 16) mixed.set([200, 30, 60], o);
      else mixed.set([(x - 16) * 16, y * 8, ((x * 37 + y * 11) * 3) & 255], o);
    }
  const gif = encodeGif([flat, mixed], w, h, { fps: 8 });
  const d = decodeGif(gif);
  assert.equal(d.globalTable, false);
  assert.deepEqual(d.localTables, [true, true]);
  assert.deepEqual(d.delays, [13, 13]);
  assert.deepEqual(d.frames[0], flat, "frame with few colours is exact");
  let err = 0, n = 0;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const got = pixel(d.frames[1], w, x, y), want = pixel(mixed, w, x, y);
      if (x < 16) assert.deepEqual(got, want, `flat pixel ${x},${y}`);
      else for (let c = 0; c < 3; c++, n++) err += Math.abs(got[c] - want[c]);
    }
  // 512 scattered colours into 255 entries: neighbours are ~31 apart, so ~9 per channel is the floor
  assert.ok(err / n < 12, `mean abs error ${err / n}`);
});

test("GIF: LZW table fills and resets (256 colours, noisy 128x128 frame)", () => {
  const w = 128, h = 128;
  const r = rng(7);
  const f = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    const k = Math.floor(r() * 256);
    f.set([k, 255 - k, (k * 7) & 255], i * 3);
  }
  const d = decodeGif(encodeGif([f, solid(w, h, [1, 2, 3]).fill(9, 0, 30)], w, h));
  assert.deepEqual(d.frames[0], f);
  assert.ok(d.clears >= 3, `expected table resets, saw ${d.clears} clear codes`);
  assert.equal(d.localTables[0], true); // 257 colours in all -> per-frame tables
});

/** Brute-force nearest palette entry, lowest index on ties (the search quantize replaced). */
function nearestLinear(colors: number[], c: number): number {
  let best = 0, bestD = Infinity;
  colors.forEach((p, i) => {
    const d = ((p >>> 16) - (c >>> 16)) ** 2 + (((p >>> 8) & 255) - ((c >>> 8) & 255)) ** 2 + ((p & 255) - (c & 255)) ** 2;
    if (d < bestD) (bestD = d), (best = i);
  });
  return best;
}

function histogram(f: Uint8Array): Map<number, number> {
  const h = new Map<number, number>();
  for (let s = 0; s < f.length; s += 3) {
    const c = (f[s] << 16) | (f[s + 1] << 8) | f[s + 2];
    h.set(c, (h.get(c) ?? 0) + 1);
  }
  return h;
}

test("GIF quantize: every colour maps to its nearest entry, ties to the lowest index", () => {
  const r = rng(5);
  // coarse channel values make many equal distances
  const hist = new Map<number, number>();
  for (let i = 0; i < 3000; i++) {
    const c = (Math.floor(r() * 9) * 30 << 16) | (Math.floor(r() * 9) * 30 << 8) | Math.floor(r() * 40) * 6;
    hist.set(c, (hist.get(c) ?? 0) + 1 + Math.floor(r() * 5));
  }
  assert.ok(hist.size > 256 && hist.size <= MAX_QUANT_COLOURS, `${hist.size} colours`);
  const pal = quantize(hist);
  assert.ok(pal.colors.length <= 256);
  assert.equal(pal.cells, undefined, "exact path: every colour in the index");
  for (const c of hist.keys()) {
    const i = pal.index.get(c)!;
    if (pal.colors[i] === c) continue; // an exact (flat) entry
    assert.equal(i, nearestLinear(pal.colors, c), `colour ${c.toString(16)}`);
  }
});

test("GIF: many-colour frames are bounded (reduced histogram), flat colours stay exact", () => {
  const w = 160, h = 120;
  const r = rng(9);
  const f = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      if (x < 40) f.set([12, 34, 56], o); // a flat band
      else if (y < 10) f.set([250, 250, 250], o);
      else f.set([x + Math.floor(r() * 40), y * 2 + Math.floor(r() * 30), Math.floor(r() * 256)], o);
    }
  const hist = histogram(f);
  assert.ok(hist.size > MAX_QUANT_COLOURS + 128, `${hist.size} colours`);
  // the histogram-free path gives the very same palette as quantize(histogram)
  const a = quantize(hist), b = quantizeFrame(f);
  assert.deepEqual(b.colors, a.colors);
  assert.deepEqual([...b.index], [...a.index]);
  assert.deepEqual(b.cells, a.cells);
  assert.ok(a.cells, "many colours: 15-bit cell table");
  const d = decodeGif(encodeGif([f, f], w, h));
  assert.deepEqual(d.localTables, [true, true]);
  let err = 0, n = 0;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const got = pixel(d.frames[0], w, x, y), want = pixel(f, w, x, y);
      if (x < 40 || y < 10) assert.deepEqual(got, want, `flat pixel ${x},${y}`);
      else for (let c = 0; c < 3; c++, n++) err += Math.abs(got[c] - want[c]);
    }
  assert.ok(err / n < 16, `mean abs error ${err / n}`);
  assert.deepEqual(d.frames[1], d.frames[0]);
});

test("LZW: every stream length and alphabet decodes (code-size change at the end code)", () => {
  const r = rng(11);
  for (const bits of [1, 2, 3, 5, 8]) {
    const minCode = Math.max(2, bits);
    for (let n = 1; n <= 700; n += bits === 2 ? 1 : 7) {
      // low-entropy runs so the table grows at varied speeds
      const idx = new Uint8Array(n);
      let cur = 0;
      for (let i = 0; i < n; i++) {
        if (r() < 0.3) cur = Math.floor(r() * (1 << bits));
        idx[i] = cur;
      }
      assert.deepEqual(lzwDecode(lzwEncode(idx, minCode), minCode, n).out, idx, `bits ${bits}, n ${n}`);
    }
  }
});

test("writeGif upscales a clip and writes atomically", () => {
  const dir = tmp();
  try {
    const v = makeVideo(3, 2, 2, (c, t, y, x) => (c === 0 ? -1 + t : c === 1 ? (x ? 1 : -1) : y ? 0 : -0.5));
    const path = join(dir, "out", "clip.gif");
    writeGif(path, v, { fps: 16, scale: 3 });
    const d = decodeGif(readFileSync(path));
    assert.equal(d.width, 6);
    assert.equal(d.height, 6);
    assert.equal(d.frames.length, 3);
    const rgb = toRgbFrames(v);
    for (let t = 0; t < 3; t++)
      for (let y = 0; y < 6; y++)
        for (let x = 0; x < 6; x++)
          assert.deepEqual(pixel(d.frames[t], 6, x, y), pixel(rgb[t], 2, Math.floor(x / 3), Math.floor(y / 3)));
    // default scale is 8
    writeGif(path, v);
    assert.equal(decodeGif(readFileSync(path)).width, 16);
    assertNoTemp(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// PNG

test("PNG: encodePng / decodePng round trip", () => {
  const r = rng(3);
  for (const [w, h] of [[1, 1], [13, 7], [40, 33]]) {
    const img = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const o = (y * w + x) * 3;
        // mix of gradients (Sub/Up/Paeth friendly) and noise
        img.set(y % 3 === 0 ? [r() * 256, r() * 256, r() * 256] : [x * 6, y * 7, (x + y) * 3], o);
      }
    const png = encodePng(img, w, h, { Comment: "hi" });
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const d = decodePng(png);
    assert.equal(d.width, w);
    assert.equal(d.height, h);
    assert.deepEqual(d.rgb, img);
    assert.equal(d.text.Comment, "hi");
  }
  const png = encodePng(new Uint8Array(12), 2, 2);
  const bad = png.slice();
  bad[bad.length - 20] ^= 0xff; // inside IDAT
  assert.throws(() => decodePng(bad), /CRC|PNG/);
});

test("PNG: deflate at level 6 (level 9 cost ~6x the time for ~1.5% fewer bytes)", () => {
  assert.equal(PNG_ZLIB_LEVEL, 6);
  const png = encodePng(new Uint8Array(64 * 64 * 3).map((_, i) => (i * 7) & 255), 64, 64);
  const idat = Buffer.from(png).indexOf("IDAT") + 4;
  // zlib header: CMF 0x78, FLEVEL 2 ("default", levels 6) in the top bits of FLG
  assert.equal(png[idat], 0x78);
  assert.equal(png[idat + 1] >> 6, 2);
});

test("contact sheet: one clip in a grid", () => {
  const dir = tmp();
  try {
    const v = makeVideo(5, 3, 4, (c, t) => (c === 0 ? -1 + t * 0.4 : -1));
    const path = join(dir, "sheet.png");
    const size = writeContactSheet(path, v, { scale: 2, columns: 3, gap: 1 });
    const d = decodePng(readFileSync(path));
    // cell 8x6, 3 columns, 2 rows, 1px gaps
    assert.deepEqual(size, { width: 28, height: 15 });
    assert.equal(d.width, 28);
    assert.equal(d.height, 15);
    const rgb = toRgbFrames(v);
    assert.deepEqual(pixel(d.rgb, 28, 1, 1), pixel(rgb[0], 4, 0, 0));
    assert.deepEqual(pixel(d.rgb, 28, 10 + 7, 8 + 5), pixel(rgb[4], 4, 3, 2)); // frame 4: column 1, row 1
    assert.deepEqual(pixel(d.rgb, 28, 0, 0), [24, 24, 24]); // background
    assert.deepEqual(pixel(d.rgb, 28, 19, 1), pixel(rgb[2], 4, 0, 0)); // frame 2: column 2, row 0
    assert.deepEqual(pixel(d.rgb, 28, 19, 8), [24, 24, 24]); // column 2 of row 1 is empty

    // defaults: scale 4, gap 4, min(T, 8) columns
    const v10 = makeVideo(10, 2, 2, () => 0);
    assert.deepEqual(writeContactSheet(path, v10), { width: 4 + 8 * 12, height: 4 + 2 * 12 });
    assertNoTemp(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("contact sheet: several clips, one labelled row each", () => {
  const dir = tmp();
  try {
    const a = makeVideo(4, 3, 4, () => 1);
    const b = makeVideo(3, 3, 4, (c) => (c === 1 ? 1 : -1));
    const path = join(dir, "cmp.png");
    writeContactSheet(path, [a, b], { scale: 1, gap: 2, labels: ["Base", "MixCache 2x"] });
    const d = decodePng(readFileSync(path));
    const labelH = 14; // 7 * labelScale 2
    assert.equal(d.width, 2 + 4 * (4 + 2));
    assert.equal(d.height, 2 + 2 * (labelH + 3 + 2));
    assert.equal(d.text.Labels, "Base | MixCache 2x");
    const yB = 2 + labelH + 5 + labelH;
    assert.deepEqual(pixel(d.rgb, d.width, 2, 2 + labelH), [255, 255, 255]); // clip a, frame 0
    assert.deepEqual(pixel(d.rgb, d.width, 2, yB), [0, 255, 0]); // clip b, frame 0
    assert.deepEqual(pixel(d.rgb, d.width, 2 + 3 * 6, yB), [24, 24, 24]); // clip b has no 4th frame
    // the label band has white text pixels
    let white = 0;
    for (let y = 2; y < 2 + labelH; y++)
      for (let x = 0; x < d.width; x++) if (pixel(d.rgb, d.width, x, y).every((c) => c === 255)) white++;
    assert.ok(white > 20, `label pixels: ${white}`);
    assert.throws(() => writeContactSheet(path, [a, b], { labels: ["one"] }), /labels/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Atomic writes and dispatch

test("failed writes leave no temp file and do not touch existing files", async () => {
  const dir = tmp();
  try {
    const v = makeVideo(2, 2, 2, () => 0);
    // the output's directory is a file
    const file = join(dir, "file");
    writeFileSync(file, "x");
    assertIoError(() => writeGif(join(file, "out.gif"), v));
    assertIoError(() => writeContactSheet(join(file, "sub", "out.png"), v));
    await assert.rejects(writeVideo(join(file, "out.mp4"), v), (e: unknown) => e instanceof MixCacheError && e.code === "IO");
    assert.equal(readFileSync(file, "utf8"), "x");

    // encoding fails: the existing output stays as it was
    const out = join(dir, "keep.gif");
    writeFileSync(out, "old");
    assert.throws(() => writeGif(out, { ...v, frames: 5 }), (e: unknown) => e instanceof MixCacheError && e.code === "USAGE");
    assert.equal(readFileSync(out, "utf8"), "old");

    // the rename fails (target is a directory): nothing left behind, directory untouched
    const asDir = join(dir, "taken.gif");
    mkdirSync(asDir);
    assertIoError(() => writeGif(asDir, v), /cannot write/);
    assert.ok(statSync(asDir).isDirectory());

    // a successful write replaces the old file
    writeGif(out, v, { scale: 1 });
    assert.equal(readFileSync(out).subarray(0, 6).toString(), "GIF89a");
    assertNoTemp(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("writeVideo dispatches on the extension", async () => {
  const dir = tmp();
  try {
    const v = makeVideo(2, 4, 4, (c) => (c ? -1 : 1));
    await writeVideo(join(dir, "a.GIF"), v, { scale: 1 });
    assert.equal(readFileSync(join(dir, "a.GIF")).subarray(0, 6).toString(), "GIF89a");
    await writeVideo(join(dir, "a.png"), [v, v], { scale: 1, gap: 0 });
    assert.equal(decodePng(readFileSync(join(dir, "a.png"))).width, 8);
    assert.equal(videoFormat("x/y.mp4"), ".mp4");
    for (const bad of ["out.avi", "out"]) {
      await assert.rejects(writeVideo(join(dir, bad), v), (e: unknown) => {
        assert.ok(e instanceof MixCacheError);
        assert.equal(e.code, "USAGE");
        assert.match(e.message, /\.gif, \.png, \.mp4/);
        return true;
      });
    }
    await assert.rejects(writeVideo(join(dir, "two.gif"), [v, v]), /one clip/);
    assert.ok(!existsSync(join(dir, "out.avi")));
    assertNoTemp(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Temp files: removed on signals and exit, swept when stale

const CHILD = join("test", "support", "signal-child.ts");

/** Run test/support/signal-child.ts; resolves once it printed "ready". */
function startChild(args: string[], env: Record<string, string> = {}): Promise<{ child: ReturnType<typeof spawn>; exited: Promise<{ code: number | null; signal: string | null; stderr: string }> }> {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let stdout = "", stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null; stderr: string }>((ok) => child.on("exit", (code, signal) => ok({ code, signal, stderr })));
  return new Promise((ok, fail) => {
    const t = setTimeout(() => fail(new Error(`child not ready: ${stdout} ${stderr}`)), 60_000);
    child.stdout!.on("data", (c: Buffer) => {
      stdout += c.toString();
      if (stdout.includes("ready\n")) {
        clearTimeout(t);
        ok({ child, exited });
      }
    });
    void exited.then(({ code }) => fail(new Error(`child exited (${code}) before ready: ${stderr}`)));
  });
}

/** Whether a process is gone (no such pid, or a zombie waiting to be reaped). */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("temp registry: SIGTERM and SIGINT remove registered temps, exiting 143 / 130; so does exit", async () => {
  const dir = tmp();
  for (const [sig, code] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
    const { child, exited } = await startChild(["temp", dir]);
    assert.equal(readdirSync(dir).filter((f) => f.endsWith(".tmp")).length, 1, "the child's temp is there");
    child.kill(sig);
    const r = await exited;
    assert.equal(r.code, code, `${sig}: ${r.stderr}`);
    assertNoTemp(dir);
  }
  const exitCode = await new Promise<number | null>((ok) => spawn(process.execPath, ["--import", "tsx", CHILD, "temp-exit", dir], { stdio: "ignore" }).on("exit", ok));
  assert.equal(exitCode, 3);
  assertNoTemp(dir);
  // in this process: dispose unregisters; a second registration of one path is counted
  const p = join(dir, "x.tmp");
  const a = registerTemp(p), b = registerTemp(p);
  const before = pendingCleanups();
  a();
  assert.ok(isRegisteredTemp(p));
  b();
  b();
  assert.ok(!isRegisteredTemp(p));
  assert.equal(pendingCleanups(), before - 2);
});

test("MP4: SIGTERM mid-encode kills ffmpeg and leaves no temp (stand-in ffmpeg)", { skip: process.platform === "win32" && "needs /bin/sh" }, async () => {
  const dir = tmp();
  // an "ffmpeg" that takes the frames into its output (the temp) and then never finishes
  const fake = join(dir, "fake-ffmpeg.sh");
  writeFileSync(fake, '#!/bin/sh\nfor a in "$@"; do out="$a"; done\ncat > "$out"\necho $$ > "$(dirname "$out")/ffmpeg.pid"\nexec sleep 60\n');
  chmodSync(fake, 0o755);
  const out = join(dir, "out");
  mkdirSync(out);
  const { child, exited } = await startChild(["mp4", out, fake]);
  await until("the stand-in to take every frame", () => existsSync(join(out, "ffmpeg.pid")));
  const ffmpegPid = Number(readFileSync(join(out, "ffmpeg.pid"), "utf8"));
  assert.ok(readdirSync(out).some((f) => parseTempName(f)?.target === "clip.mp4"), "encoding into a temp");
  child.kill("SIGTERM");
  const r = await exited;
  assert.equal(r.code, 143, r.stderr);
  assertNoTemp(out);
  assert.ok(!existsSync(join(out, "clip.mp4")), "no half-written output");
  await until("ffmpeg to be killed", () => gone(ffmpegPid));
});

test("MP4: SIGTERM mid-encode leaves no temp (real ffmpeg)", async (t) => {
  if (!hasFfmpeg()) {
    t.skip("ffmpeg not installed (set MIXCACHE_FFMPEG or apt-get install ffmpeg to run this)");
    return;
  }
  const dir = tmp();
  // long enough (300 frames of 256x256) that the signal lands mid-encode
  const { child, exited } = await startChild(["mp4", dir, process.env.MIXCACHE_FFMPEG ?? "ffmpeg"], { CHILD_FRAMES: "300", CHILD_SIZE: "32" });
  child.kill("SIGTERM");
  const r = await exited;
  assert.equal(r.code, 143, r.stderr);
  assertNoTemp(dir);
  assert.ok(!existsSync(join(dir, "clip.mp4")));
});

test("stale temps of our naming are swept before writing: dead pid or old; live and foreign ones kept", async () => {
  const dir = tmp();
  // a pid that is surely dead: a child that has exited
  const deadPid = await new Promise<number>((ok) => {
    const c = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
    c.on("exit", () => ok(c.pid!));
  });
  const { child: live, exited } = await startChild(["temp", tmp()]); // a live pid
  const now = Date.now();
  const names = {
    dead: `.clip.gif.${deadPid}.${now}.tmp`,
    old: `.sheet.png.${live.pid}.${now - 3_600_000}.tmp`,
    live: `.clip.gif.${live.pid}.${now}.tmp`,
    ownStale: `.other.gif.${process.pid}.${now - 1000}.tmp`,
    foreign: ".notes.tmp",
    notOurs: "clip.gif.123.456.tmp",
  };
  for (const n of Object.values(names)) writeFileSync(join(dir, n), "x");
  mkdirSync(join(dir, `.folder.${deadPid}.${now}.tmp`));
  const old = (now - STALE_TEMP_MS - 60_000) / 1000;
  utimesSync(join(dir, names.old), old, old);
  assert.deepEqual(parseTempName(names.dead), { target: "clip.gif", pid: deadPid, time: now });
  assert.equal(parseTempName(names.foreign), null);

  // the first write into the folder sweeps it
  writeGif(join(dir, "clip.gif"), makeVideo(2, 2, 2, () => 0), { scale: 1 });
  const left = readdirSync(dir).sort();
  for (const k of ["dead", "old", "ownStale"] as const) assert.ok(!left.includes(names[k]), `${k} temp swept`);
  for (const k of ["live", "foreign", "notOurs"] as const) assert.ok(left.includes(names[k]), `${k} kept`);
  assert.ok(left.includes(`.folder.${deadPid}.${now}.tmp`), "folders are not swept");
  assert.ok(left.includes("clip.gif"));
  // a temp this process is writing is kept; once the live writer is gone its temp goes too
  const mine = join(dir, `.mine.bin.${process.pid}.${Date.now()}.tmp`);
  const release = registerTemp(mine);
  writeFileSync(mine, "x");
  live.kill("SIGTERM");
  await exited;
  assert.deepEqual(sweepStaleTemps(dir).sort(), [join(dir, names.live)]);
  assert.ok(existsSync(mine));
  release();
  assert.deepEqual(sweepStaleTemps(dir), [mine]);
  writeFileAtomic(join(dir, "a.txt"), "ok");
  assert.equal(readFileSync(join(dir, "a.txt"), "utf8"), "ok");
});

// ---------------------------------------------------------------------------------------------
// MP4

const clip = makeVideo(4, 5, 7, (c, t, y, x) => Math.sin(c + t * 0.7 + x * 0.5 + y * 0.3));

test("MP4: clear error when ffmpeg is missing", async () => {
  const dir = tmp();
  try {
    const path = join(dir, "clip.mp4");
    writeFileSync(path, "old");
    const check = (e: unknown): boolean => {
      assert.ok(e instanceof MixCacheError, String(e));
      assert.equal(e.code, "IO");
      assert.match(e.message, /MP4 output needs ffmpeg/);
      assert.match(e.fix ?? "", /apt-get install ffmpeg/);
      assert.match(e.fix ?? "", /\.gif/);
      return true;
    };
    // always: an ffmpeg that does not exist
    assert.equal(hasFfmpeg(join(dir, "no-such-ffmpeg")), false);
    await assert.rejects(writeMp4(path, clip, { ffmpeg: join(dir, "no-such-ffmpeg") }), check);
    // and the real default, when this machine has none
    if (!hasFfmpeg()) await assert.rejects(writeVideo(path, clip), check);
    assert.equal(readFileSync(path, "utf8"), "old");
    assertNoTemp(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("MP4: writes H.264 in an MP4 container when ffmpeg is present", async (t) => {
  if (!hasFfmpeg()) {
    t.skip("ffmpeg not installed (set MIXCACHE_FFMPEG or apt-get install ffmpeg to run this)");
    return;
  }
  const dir = tmp();
  try {
    const path = join(dir, "clip.mp4");
    await writeMp4(path, clip, { fps: 8, scale: 3 }); // 21x15 * 3 is odd: bumped to scale 4
    const mp4 = readFileSync(path);
    assert.equal(mp4.subarray(4, 8).toString("latin1"), "ftyp");
    assert.ok(mp4.includes(Buffer.from("avc1")), "H.264 sample entry");
    assertNoTemp(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("GIF and PNG decode identically in ffmpeg when present", async (t) => {
  if (!hasFfmpeg()) {
    t.skip("ffmpeg not installed");
    return;
  }
  const { spawnSync } = await import("node:child_process");
  const bin = process.env.MIXCACHE_FFMPEG ?? "ffmpeg";
  const dir = tmp();
  try {
    const v = makeVideo(3, 8, 8, (c, t, y, x) => (x < 4 ? (c === t ? 1 : -1) : Math.sin(x * 1.3 + y * 0.7 + c * 2 + t)));
    const gifPath = join(dir, "v.gif");
    writeGif(gifPath, v, { scale: 2 });
    const raw = spawnSync(bin, ["-v", "error", "-i", gifPath, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], { maxBuffer: 1 << 24 });
    assert.equal(raw.status, 0, raw.stderr?.toString());
    const ours = decodeGif(readFileSync(gifPath)).frames;
    assert.deepEqual(new Uint8Array(raw.stdout), new Uint8Array(Buffer.concat(ours)));
    const pngPath = join(dir, "s.png");
    writeContactSheet(pngPath, v, { scale: 3, labels: ["abc 123"] });
    const rp = spawnSync(bin, ["-v", "error", "-i", pngPath, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], { maxBuffer: 1 << 24 });
    assert.equal(rp.status, 0, rp.stderr?.toString());
    assert.deepEqual(new Uint8Array(rp.stdout), decodePng(readFileSync(pngPath)).rgb);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
