/**
 * Safetensors reader and writer.
 *
 * Format: 8-byte little-endian u64 header length N, then N bytes of UTF-8 JSON, then the data
 * section. The JSON maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets are
 * relative to the start of the data section) plus an optional "__metadata__" string map.
 *
 * Reading is header-first and lazy: opening a file reads and validates only the header through a
 * file descriptor; `readF32(key)` reads just that tensor's byte range with fs.readSync and converts
 * it to a Float32Array. So a multi-GB checkpoint needs only its header plus one tensor in memory.
 *
 * Sharded checkpoints (diffusers / Hugging Face `*.safetensors.index.json` with a `weight_map` of
 * key -> shard file name relative to the index's directory) are opened eagerly at the header level:
 * every shard named in the index must exist and hold every key the index maps to it. Keys that a
 * shard holds but the index does not list are ignored (as transformers/diffusers do): they are not
 * part of `keys()`, and are reported in `ShardedCheckpoint.unindexedKeys` for tools that care.
 *
 * Every validation failure throws a WeightsError naming the file and, where there is one, the key.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { endianness } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { MixCacheError, WeightsError, closest } from "../errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";

/** Every dtype the safetensors format defines, with its element size in bytes. */
const DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

export type Dtype = keyof typeof DTYPE_SIZES;
/** Dtypes `readF32` converts. */
export type FloatDtype = "F32" | "F16" | "BF16" | "F64";
/** Dtypes `writeSafetensors` writes. */
export type WriteDtype = "F32" | "F16" | "BF16";

export const SAFETENSORS_DTYPES: readonly Dtype[] = Object.keys(DTYPE_SIZES) as Dtype[];
export const READABLE_DTYPES: readonly FloatDtype[] = ["F32", "F16", "BF16", "F64"];
const WRITE_DTYPES: readonly WriteDtype[] = ["F32", "F16", "BF16"];

/** Same limit as the reference implementation: a header over 100 MB is corrupt, not big. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Filenames looked for (in this order) when `openCheckpoint` is given a directory. */
export const CHECKPOINT_FILENAMES: readonly string[] = [
  "diffusion_pytorch_model.safetensors",
  "diffusion_pytorch_model.safetensors.index.json",
  "model.safetensors",
  "model.safetensors.index.json",
];

export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  /** Absolute path of the .safetensors file that holds the tensor. */
  file: string;
}

/** A set of named tensors readable one at a time: a single file or a sharded checkpoint. */
export interface Checkpoint {
  /** The path that was opened (the .safetensors file or the index.json). */
  readonly path: string;
  /** Every .safetensors file behind this checkpoint. */
  readonly files: readonly string[];
  /** `__metadata__` of a single file, or the index's `metadata` (non-string values JSON-encoded). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensor names, sorted. */
  keys(): string[];
  has(key: string): boolean;
  info(key: string): TensorInfo;
  /** Read one tensor's bytes from disk and convert to fp32 (F32, F16, BF16, F64). */
  readF32(key: string): Float32Array;
  /** Read one tensor's raw little-endian bytes from disk (any dtype). */
  readBytes(key: string): Uint8Array;
  close(): void;
}

interface Entry {
  dtype: Dtype;
  shape: number[];
  numel: number;
  begin: number; // relative to the data section
  end: number;
}

if (endianness() !== "LE") {
  // Typed-array views below reinterpret file bytes in host order; every supported platform is LE.
  throw new MixCacheError("RUNTIME", "safetensors reader requires a little-endian host", "run on x86-64 or arm64");
}

const fmtShape = (s: readonly number[]): string => `[${s.join(", ")}]`;

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isIndex(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function metadataToStrings(m: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) out[k] = typeof v === "string" ? v : JSON.stringify(v);
  return out;
}

/** fs.readSync until `buf` is full (readSync may return short counts; lengths capped at 1 GiB). */
function readFully(fd: number, buf: Uint8Array, position: number, file: string, key: string | undefined): void {
  let off = 0;
  while (off < buf.length) {
    const len = Math.min(buf.length - off, 1 << 30);
    const got = readSync(fd, buf, off, len, position + off);
    if (got === 0)
      throw new WeightsError(
        file,
        key,
        `unexpected end of file reading ${buf.length} bytes at offset ${position}`,
        "the file was truncated or changed after it was opened; re-download or re-export it",
      );
    off += got;
  }
}

// ---------------------------------------------------------------------------------------------
// fp16 / bf16 conversion

let F16_TABLE: Uint32Array | undefined;

/** fp16 bit pattern -> fp32 bit pattern (exact: zeros, subnormals, normals, inf, NaN payloads). */
function halfBitsToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    let e = 113; // 127 - 15 + 1
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  if (exp === 31) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

/** 65536-entry lookup table (256 KiB), built on first use: fp16 decode is then one load per value. */
function f16Table(): Uint32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = halfBitsToFloatBits(h);
  }
  return F16_TABLE;
}

/** fp32 bit pattern -> fp16 bit pattern, round to nearest even; overflow -> inf, NaN stays NaN. */
function floatBitsToHalfBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half; // may carry into the smallest normal, which is correct
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++; // may carry to inf: correct
  return sign | half;
}

/** Decode fp16 bit patterns into `dst` (same length). `src` may alias the upper half of `dst`'s
 * buffer: element i is read before element i is written, and writes never pass unread input. */
export function decodeF16(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const t = f16Table();
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  const n = src.length;
  for (let i = 0; i < n; i++) out[i] = t[src[i]];
  return dst;
}

/** Decode bf16 bit patterns (the top 16 bits of an fp32) into `dst`; same aliasing rule. */
export function decodeBF16(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  const n = src.length;
  for (let i = 0; i < n; i++) out[i] = src[i] << 16;
  return dst;
}

/** Encode fp32 values as fp16 bit patterns (round to nearest even). */
export function encodeF16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const n = src.length;
  for (let i = 0; i < n; i++) dst[i] = floatBitsToHalfBits(bits[i]);
  return dst;
}

/** Encode fp32 values as bf16 bit patterns (round to nearest even; NaN stays a quiet NaN). */
export function encodeBF16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const n = src.length;
  for (let i = 0; i < n; i++) {
    const x = bits[i];
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) dst[i] = (x >>> 16) | 0x40;
    else dst[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return dst;
}

// ---------------------------------------------------------------------------------------------
// single file

/** One .safetensors file: header parsed and validated at open, tensors read on demand. */
export class SafetensorsFile implements Checkpoint {
  readonly path: string;
  readonly files: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly fileSize: number;
  readonly headerLength: number;
  /** Absolute file offset of the data section (8 + headerLength). */
  readonly dataStart: number;
  private readonly entries: Map<string, Entry>;
  private fd: number | undefined;

  constructor(path: string) {
    this.path = resolve(path);
    this.files = [this.path];
    let fd: number;
    try {
      fd = openSync(this.path, "r");
    } catch (e) {
      throw new WeightsError(
        this.path,
        undefined,
        `cannot open: ${(e as Error).message}`,
        "check the path; download the checkpoint or point at the directory that holds it",
      );
    }
    try {
      const parsed = this.parseHeader(fd);
      this.fileSize = parsed.fileSize;
      this.headerLength = parsed.headerLength;
      this.dataStart = 8 + parsed.headerLength;
      this.metadata = parsed.metadata;
      this.entries = parsed.entries;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    this.fd = fd;
  }

  private fail(key: string | undefined, message: string, fix: string): never {
    throw new WeightsError(this.path, key, message, fix);
  }

  private parseHeader(fd: number): {
    fileSize: number;
    headerLength: number;
    metadata: Record<string, string>;
    entries: Map<string, Entry>;
  } {
    const CORRUPT = "the file is not a valid safetensors file or is corrupt; re-download or re-export it";
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8) this.fail(undefined, `file is ${fileSize} bytes, too small for a safetensors header`, CORRUPT);
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0, this.path, undefined);
    const len64 = lenBuf.readBigUInt64LE(0);
    if (len64 > BigInt(MAX_HEADER_BYTES))
      this.fail(undefined, `header length ${len64} is absurd (limit ${MAX_HEADER_BYTES} bytes)`, CORRUPT);
    const headerLength = Number(len64);
    if (headerLength < 2) this.fail(undefined, `header length ${headerLength} is < 2; not even "{}" fits`, CORRUPT);
    if (8 + headerLength > fileSize)
      this.fail(
        undefined,
        `header length ${headerLength} goes past the end of the file (${fileSize} bytes)`,
        "the file is truncated (an interrupted download?) or not safetensors; re-download it",
      );
    const hbuf = Buffer.alloc(headerLength);
    readFully(fd, hbuf, 8, this.path, undefined);
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(hbuf));
    } catch (e) {
      this.fail(undefined, `header is not valid UTF-8 JSON: ${(e as Error).message}`, CORRUPT);
    }
    if (!isPlainObject(header))
      this.fail(undefined, `header JSON is ${Array.isArray(header) ? "an array" : typeof header}, not an object`, CORRUPT);

    const dataLength = fileSize - 8 - headerLength;
    let metadata: Record<string, string> = {};
    const entries = new Map<string, Entry>();
    for (const [key, raw] of Object.entries(header)) {
      if (key === "__metadata__") {
        if (!isPlainObject(raw) || Object.values(raw).some((v) => typeof v !== "string"))
          this.fail(key, "__metadata__ must be an object of string values", CORRUPT);
        metadata = { ...(raw as Record<string, string>) };
        continue;
      }
      if (!isPlainObject(raw)) this.fail(key, "tensor entry is not an object", CORRUPT);
      const dtype = raw.dtype;
      if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_SIZES, dtype))
        this.fail(
          key,
          `unknown dtype ${JSON.stringify(dtype)}; safetensors dtypes are ${SAFETENSORS_DTYPES.join(", ")}` +
            ` (readF32 converts ${READABLE_DTYPES.join(", ")})`,
          "re-export the checkpoint with a standard dtype (F32, F16 or BF16)",
        );
      const shape = raw.shape;
      if (!Array.isArray(shape) || !shape.every(isIndex))
        this.fail(key, `shape ${JSON.stringify(shape)} is not an array of non-negative integers`, CORRUPT);
      const offs = raw.data_offsets;
      if (offs === undefined) this.fail(key, "data_offsets is missing", CORRUPT);
      if (!Array.isArray(offs) || offs.length !== 2 || !isIndex(offs[0]) || !isIndex(offs[1]))
        this.fail(key, `data_offsets ${JSON.stringify(offs)} is not [begin, end] with non-negative integers`, CORRUPT);
      const [begin, end] = offs as [number, number];
      if (end < begin) this.fail(key, `data_offsets [${begin}, ${end}] ends before it begins`, CORRUPT);
      const numel = numelOf(shape);
      const nbytes = numel * DTYPE_SIZES[dtype as Dtype];
      if (!Number.isSafeInteger(nbytes) || nbytes !== end - begin)
        this.fail(
          key,
          `shape ${fmtShape(shape)} x ${dtype} needs ${nbytes} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
          CORRUPT,
        );
      if (end > dataLength)
        this.fail(
          key,
          `data_offsets [${begin}, ${end}] go past the end of the data section (${dataLength} bytes)`,
          "the file is truncated (an interrupted download?); re-download it",
        );
      entries.set(key, { dtype: dtype as Dtype, shape: shape.slice(), numel, begin, end });
    }

    // Overlap check: sort non-empty ranges by begin; each must start at or after every earlier end.
    const ranges = [...entries].filter(([, e]) => e.end > e.begin).sort((a, b) => a[1].begin - b[1].begin);
    let prevKey = "";
    let prevEnd = 0;
    for (const [key, e] of ranges) {
      if (e.begin < prevEnd)
        this.fail(
          key,
          `byte range [${e.begin}, ${e.end}] overlaps tensor ${prevKey} (which ends at ${prevEnd})`,
          CORRUPT,
        );
      if (e.end > prevEnd) {
        prevEnd = e.end;
        prevKey = key;
      }
    }
    return { fileSize, headerLength, metadata, entries };
  }

  keys(): string[] {
    return [...this.entries.keys()].sort();
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  private entry(key: string): Entry {
    const e = this.entries.get(key);
    if (!e) {
      const near = closest(key, [...this.entries.keys()]);
      this.fail(key, "no such tensor in this file", near.length ? `did you mean ${near.join(", ")}?` : "the file has no tensors");
    }
    return e;
  }

  info(key: string): TensorInfo {
    const e = this.entry(key);
    return { dtype: e.dtype, shape: e.shape.slice(), file: this.path };
  }

  private openFd(key: string): number {
    if (this.fd === undefined) this.fail(key, "file is closed", "open the checkpoint again");
    return this.fd;
  }

  readBytes(key: string): Uint8Array {
    const e = this.entry(key);
    const fd = this.openFd(key);
    const buf = new Uint8Array(e.end - e.begin);
    readFully(fd, buf, this.dataStart + e.begin, this.path, key);
    return buf;
  }

  readF32(key: string): Float32Array {
    const e = this.entry(key);
    const fd = this.openFd(key);
    const n = e.numel;
    const pos = this.dataStart + e.begin;
    const out = new Float32Array(n);
    if (n === 0) return out;
    switch (e.dtype) {
      case "F32":
        readFully(fd, new Uint8Array(out.buffer), pos, this.path, key);
        return out;
      case "F16":
      case "BF16": {
        // Read the 2n raw bytes into the upper half of the output buffer and widen in place, so
        // the peak memory is the output alone.
        const raw = new Uint16Array(out.buffer, 2 * n, n);
        readFully(fd, new Uint8Array(out.buffer, 2 * n, 2 * n), pos, this.path, key);
        return e.dtype === "F16" ? decodeF16(raw, out) : decodeBF16(raw, out);
      }
      case "F64": {
        const CHUNK = 65536; // elements per read
        const scratch = new Float64Array(Math.min(n, CHUNK));
        const bytes = new Uint8Array(scratch.buffer);
        for (let i = 0; i < n; i += CHUNK) {
          const m = Math.min(CHUNK, n - i);
          readFully(fd, bytes.subarray(0, 8 * m), pos + 8 * i, this.path, key);
          for (let j = 0; j < m; j++) out[i + j] = scratch[j];
        }
        return out;
      }
      default:
        this.fail(
          key,
          `dtype ${e.dtype} cannot be read as fp32 (supported: ${READABLE_DTYPES.join(", ")})`,
          "convert the checkpoint to F32, F16 or BF16",
        );
    }
  }

  close(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

/** Open one .safetensors file, reading and validating its header only. */
export function openSafetensors(path: string): SafetensorsFile {
  return new SafetensorsFile(path);
}

// ---------------------------------------------------------------------------------------------
// sharded

/** A checkpoint split across shards by a `*.safetensors.index.json`. */
export class ShardedCheckpoint implements Checkpoint {
  readonly path: string;
  readonly files: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  /** Keys present in a shard but not listed in the index: ignored, listed here for reference. */
  readonly unindexedKeys: readonly string[];
  private readonly shards: Map<string, SafetensorsFile>;
  private readonly weightMap: Map<string, SafetensorsFile>;

  constructor(indexPath: string) {
    this.path = resolve(indexPath);
    const CORRUPT = "the index is not a valid *.safetensors.index.json; re-download or regenerate it";
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (e) {
      throw new WeightsError(this.path, undefined, `cannot read index: ${(e as Error).message}`, "check the path");
    }
    let index: unknown;
    try {
      index = JSON.parse(text);
    } catch (e) {
      throw new WeightsError(this.path, undefined, `index is not valid JSON: ${(e as Error).message}`, CORRUPT);
    }
    if (!isPlainObject(index)) throw new WeightsError(this.path, undefined, "index JSON is not an object", CORRUPT);
    const wm = index.weight_map;
    if (!isPlainObject(wm))
      throw new WeightsError(this.path, undefined, 'index has no "weight_map" object', CORRUPT);
    const md = index.metadata;
    this.metadata = isPlainObject(md) ? metadataToStrings(md) : {};

    const dir = dirname(this.path);
    this.shards = new Map();
    this.weightMap = new Map();
    try {
      for (const [key, name] of Object.entries(wm)) {
        if (typeof name !== "string" || name === "")
          throw new WeightsError(this.path, key, `weight_map value ${JSON.stringify(name)} is not a file name`, CORRUPT);
        const file = resolve(dir, name);
        let shard = this.shards.get(file);
        if (!shard) {
          if (!existsSync(file))
            throw new WeightsError(
              this.path,
              key,
              `shard file ${name} is missing (looked for ${file})`,
              "download every shard listed in the index into the index's directory",
            );
          shard = new SafetensorsFile(file);
          this.shards.set(file, shard);
        }
        if (!shard.has(key))
          throw new WeightsError(
            file,
            key,
            `the index ${basename(this.path)} maps this key to ${name}, but the shard does not contain it`,
            "the index and shards are from different exports; re-download them together",
          );
        this.weightMap.set(key, shard);
      }
    } catch (e) {
      for (const s of this.shards.values()) s.close();
      throw e;
    }
    this.files = [...this.shards.keys()];
    const unindexed: string[] = [];
    for (const s of this.shards.values()) for (const k of s.keys()) if (!this.weightMap.has(k)) unindexed.push(k);
    this.unindexedKeys = unindexed.sort();
  }

  keys(): string[] {
    return [...this.weightMap.keys()].sort();
  }

  has(key: string): boolean {
    return this.weightMap.has(key);
  }

  private shard(key: string): SafetensorsFile {
    const s = this.weightMap.get(key);
    if (!s) {
      const near = closest(key, [...this.weightMap.keys()]);
      throw new WeightsError(
        this.path,
        key,
        "no such tensor in this checkpoint",
        near.length ? `did you mean ${near.join(", ")}?` : "the index lists no tensors",
      );
    }
    return s;
  }

  info(key: string): TensorInfo {
    return this.shard(key).info(key);
  }

  readF32(key: string): Float32Array {
    return this.shard(key).readF32(key);
  }

  readBytes(key: string): Uint8Array {
    return this.shard(key).readBytes(key);
  }

  close(): void {
    for (const s of this.shards.values()) s.close();
  }
}

/**
 * Open a checkpoint: a .safetensors file, a *.safetensors.index.json, or a directory holding one of
 * CHECKPOINT_FILENAMES (first match wins).
 */
export function openCheckpoint(pathOrDir: string): Checkpoint {
  const p = resolve(pathOrDir);
  let st;
  try {
    st = statSync(p);
  } catch {
    throw new WeightsError(p, undefined, "no such file or directory", "check the path to the checkpoint");
  }
  if (st.isDirectory()) {
    for (const name of CHECKPOINT_FILENAMES) {
      const f = join(p, name);
      if (existsSync(f)) return openCheckpoint(f);
    }
    throw new WeightsError(
      p,
      undefined,
      `directory holds no checkpoint; looked for ${CHECKPOINT_FILENAMES.join(", ")}`,
      "point at the model's weight directory (e.g. the transformer/ subfolder) or at a .safetensors file",
    );
  }
  if (p.endsWith(".json")) return new ShardedCheckpoint(p);
  return new SafetensorsFile(p);
}

// ---------------------------------------------------------------------------------------------
// key validation

export interface KeyProblems {
  missing: { key: string; expected: number[] }[];
  unexpected: { key: string; file: string; shape: number[] }[];
  wrongShape: { key: string; file: string; expected: number[]; actual: number[] }[];
}

/** Compare a checkpoint's keys and shapes with the expected ones; returns every problem. */
export function checkKeys(ckpt: Checkpoint, expected: ReadonlyMap<string, readonly number[]>): KeyProblems {
  const problems: KeyProblems = { missing: [], unexpected: [], wrongShape: [] };
  for (const [key, shape] of expected) {
    if (!ckpt.has(key)) {
      problems.missing.push({ key, expected: [...shape] });
      continue;
    }
    const info = ckpt.info(key);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))
      problems.wrongShape.push({ key, file: info.file, expected: [...shape], actual: info.shape });
  }
  for (const key of ckpt.keys())
    if (!expected.has(key)) {
      const info = ckpt.info(key);
      problems.unexpected.push({ key, file: info.file, shape: info.shape });
    }
  return problems;
}

/**
 * Throw a WeightsError when the checkpoint's keys or shapes differ from `expected`. The error is
 * attributed to the first problem's file and key; its message lists every problem (each category
 * capped at `cap` lines) with file, key, and expected vs actual shape.
 */
export function validateKeys(
  ckpt: Checkpoint,
  expected: ReadonlyMap<string, readonly number[]>,
  opts: { allowUnexpected?: boolean; cap?: number } = {},
): void {
  const cap = opts.cap ?? 10;
  const p = checkKeys(ckpt, expected);
  if (opts.allowUnexpected) p.unexpected = [];
  const total = p.missing.length + p.unexpected.length + p.wrongShape.length;
  if (total === 0) return;
  const lines: string[] = [];
  const section = <T>(items: T[], title: string, fmt: (t: T) => string): void => {
    if (items.length === 0) return;
    lines.push(`${items.length} ${title}:`);
    for (const t of items.slice(0, cap)) lines.push(`  ${fmt(t)}`);
    if (items.length > cap) lines.push(`  ... and ${items.length - cap} more`);
  };
  section(p.missing, "missing", (m) => `${m.key} (expected shape ${fmtShape(m.expected)}) not in ${ckpt.path}`);
  section(p.wrongShape, "with wrong shape", (w) => `${w.key} in ${w.file}: expected ${fmtShape(w.expected)}, got ${fmtShape(w.actual)}`);
  section(p.unexpected, "unexpected", (u) => `${u.key} ${fmtShape(u.shape)} in ${u.file}`);
  const first =
    p.missing.length > 0
      ? { file: ckpt.path, key: p.missing[0].key }
      : p.wrongShape.length > 0
        ? { file: p.wrongShape[0].file, key: p.wrongShape[0].key }
        : { file: p.unexpected[0].file, key: p.unexpected[0].key };
  throw new WeightsError(
    first.file,
    first.key,
    `checkpoint does not match the model (${total} problem${total === 1 ? "" : "s"}):\n${lines.join("\n")}`,
    "use the checkpoint that matches the model config (size/variant), or fix the config to match the weights",
  );
}

// ---------------------------------------------------------------------------------------------
// writer

export interface TensorToWrite {
  dtype: WriteDtype;
  shape: number[];
  data: Float32Array;
}

/**
 * Write tensors to a .safetensors file atomically (temp file + rename). fp32 data is converted to
 * the requested dtype (round to nearest even). Keys are sorted, offsets are contiguous and relative
 * to the data section, and the header JSON is space-padded to a multiple of 8 bytes. The whole file
 * is built in memory: meant for tests, tools and modest outputs.
 */
export function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  const file = resolve(path);
  const keys = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== "string")
        throw new WeightsError(file, "__metadata__", `metadata value for ${k} is not a string`, "stringify metadata values");
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const key of keys) {
    if (key === "__metadata__")
      throw new WeightsError(file, key, "__metadata__ is reserved", "rename the tensor");
    const t = tensors[key];
    if (!WRITE_DTYPES.includes(t.dtype))
      throw new WeightsError(file, key, `cannot write dtype ${t.dtype} (supported: ${WRITE_DTYPES.join(", ")})`, "use F32, F16 or BF16");
    if (!Array.isArray(t.shape) || !t.shape.every(isIndex))
      throw new WeightsError(file, key, `shape ${JSON.stringify(t.shape)} is not non-negative integers`, "fix the shape");
    const n = numelOf(t.shape);
    if (t.data.length !== n)
      throw new WeightsError(file, key, `shape ${fmtShape(t.shape)} needs ${n} values but data has ${t.data.length}`, "fix the shape or the data");
    const nbytes = n * DTYPE_SIZES[t.dtype];
    header[key] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  const base = 8 + json.length;
  let pos = base;
  for (const key of keys) {
    const t = tensors[key];
    const n = t.data.length;
    if (t.dtype === "F32") {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, 4 * n), pos);
      pos += 4 * n;
    } else {
      const h = t.dtype === "F16" ? encodeF16(t.data) : encodeBF16(t.data);
      out.set(new Uint8Array(h.buffer, h.byteOffset, 2 * n), pos);
      pos += 2 * n;
    }
  }
  writeFileAtomic(file, out);
}
