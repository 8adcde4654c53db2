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
 * Validation follows the reference implementation (huggingface/safetensors,
 * safetensors/src/tensor.rs `read_metadata` / `Metadata::validate`, parsing with serde_json):
 * JSON whitespace may pad the header at either end; non-integer shape dims or offsets (`4e0`,
 * `1.0`, `-0`), nesting past serde_json's depth limit, and byte ranges that do not tile the data
 * section exactly (gaps, overlaps, trailing bytes) are refused. Duplicate keys are refused too, as
 * the format's README requires (JSON.parse, like a serde map, would silently keep the last one).
 *
 * Every failure throws a WeightsError naming the file and, where there is one, the key; values
 * quoted in messages are bounded previews, so a hostile header cannot blow up the message itself.
 */
import { type Stats, closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { endianness } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { MixCacheError, WeightsError } from "../errors.ts";
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

/** Shapes in messages: at most 32 dims shown (a corrupt header can hold millions). */
const fmtShape = (s: readonly number[]): string =>
  s.length <= 32 ? `[${s.join(", ")}]` : `[${s.slice(0, 32).join(", ")}, ... (${s.length} dims)]`;

/** Element count, or NaN when a running product passes 2^53 (the reference's checked_mul fails
 * on u64 overflow even when a later dim is 0: safetensors/src/tensor.rs `Metadata::validate`). */
function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return NaN;
  }
  return n;
}

/**
 * A bounded, non-recursive JSON-like preview of any value for error messages: at most `max`
 * characters, containers nested deeper than 3 shown as [...] / {...}, at most 8 items each. A
 * header value can be nested thousands deep or hold millions of items; JSON.stringify would throw
 * RangeError (stack or string length) on those.
 */
export function preview(value: unknown, max = 80): string {
  let out = "";
  // Work stack, popped from the end: a literal to emit, or a value to render at a depth.
  const work: ({ lit: string } | { v: unknown; depth: number })[] = [{ v: value, depth: 0 }];
  while (work.length > 0 && out.length <= max) {
    const w = work.pop()!;
    if ("lit" in w) {
      out += w.lit;
      continue;
    }
    const v = w.v;
    if (typeof v === "string") out += JSON.stringify(v.length > max ? v.slice(0, max) : v);
    else if (typeof v === "number" || typeof v === "boolean" || v === null) out += String(v);
    else if (typeof v !== "object") out += typeof v;
    else {
      const isArr = Array.isArray(v);
      if (w.depth >= 3) {
        out += isArr ? "[...]" : "{...}";
        continue;
      }
      const items: ({ lit: string } | { v: unknown; depth: number })[] = [{ lit: isArr ? "[" : "{" }];
      let count = 0;
      if (isArr) {
        for (; count < Math.min(v.length, 8); count++) {
          if (count > 0) items.push({ lit: ", " });
          items.push({ v: v[count], depth: w.depth + 1 });
        }
        if (v.length > 8) items.push({ lit: ", ..." });
      } else {
        for (const k in v) {
          if (!Object.hasOwn(v, k)) continue;
          if (count === 8) {
            items.push({ lit: ", ..." });
            break;
          }
          if (count++ > 0) items.push({ lit: ", " });
          items.push({ lit: `${JSON.stringify(k.length > max ? k.slice(0, max) : k)}: ` });
          items.push({ v: (v as Record<string, unknown>)[k], depth: w.depth + 1 });
        }
      }
      items.push({ lit: isArr ? "]" : "}" });
      for (let i = items.length - 1; i >= 0; i--) work.push(items[i]);
    }
  }
  return out.length > max || work.length > 0 ? `${out.slice(0, max)}...` : out;
}

/** A name for messages: keys longer than 200 characters are cut (a header may hold a 100 MB key). */
const clip = (s: string): string => (s.length > 200 ? `${s.slice(0, 200)}...` : s);

function isIndex(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Index metadata as strings (non-strings JSON-encoded); `file` names the index in errors. */
function metadataToStrings(m: Record<string, unknown>, file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) {
    if (typeof v === "string") {
      out[k] = v;
      continue;
    }
    try {
      out[k] = JSON.stringify(v); // throws RangeError when nested thousands deep or too long
    } catch {
      throw new WeightsError(
        file,
        undefined,
        `index metadata ${preview(k)} is too deeply nested or too large to encode: ${preview(v)}`,
        "the index is not a valid *.safetensors.index.json; re-download or regenerate it",
      );
    }
  }
  return out;
}

/** serde_json's default recursion limit: it rejects JSON nested 128 or more deep. */
const MAX_JSON_DEPTH = 127;

interface HeaderScan {
  /** Nesting past MAX_JSON_DEPTH: the scan stopped there, before JSON.parse sees it. */
  tooDeep: boolean;
  /** First thing JSON.parse accepts but the reference parser (serde_json, typed) does not. */
  problem: { key: string | undefined; message: string } | undefined;
  /** Per tensor: first number in its shape / data_offsets not written as a plain integer. */
  badNumbers: Map<string, { field: string; token: string }>;
}

const ROOT = 1; // the header object
const ENTRY = 2; // a tensor's {dtype, shape, data_offsets}
const DIMS = 3; // a tensor's shape or data_offsets array
const OTHER = 0;

/**
 * One pass over the header text for what JSON.parse hides: duplicate keys (JSON.parse keeps the
 * last; the format forbids them: safetensors README "Duplicate keys are disallowed"), numbers in
 * shape / data_offsets written as `4e0`, `1.0`, `-0` or above 2^53 (serde reads those fields as
 * usize, so only plain integer literals pass), lone UTF-16 surrogate escapes (serde_json rejects
 * them in strings), and nesting past serde_json's recursion limit. Not a validator: on malformed
 * JSON its findings are discarded, since JSON.parse then reports the error. Linear time, no recursion.
 */
function scanHeader(text: string): HeaderScan {
  const scan: HeaderScan = { tooDeep: false, problem: undefined, badNumbers: new Map() };
  const note = (key: string | undefined, message: string): void => {
    if (!scan.problem) scan.problem = { key, message };
  };
  interface Frame {
    obj: boolean;
    role: number;
    keys: Set<string> | undefined;
    key: string | undefined; // last key read in this object
    tensor: string | undefined; // ENTRY, DIMS: the tensor's name
  }
  const stack: Frame[] = [];
  let expectKey = false;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // string: find the closing quote (one preceded by an even run of backslashes)
      let end = n;
      for (let from = i + 1; ; ) {
        const q = text.indexOf('"', from);
        if (q < 0) break;
        let b = q;
        while (b > i + 1 && text.charCodeAt(b - 1) === 0x5c) b--;
        if ((q - b) % 2 === 0) {
          end = q;
          break;
        }
        from = q + 1;
      }
      const top = stack[stack.length - 1];
      const raw = text.slice(i + 1, end);
      let str = raw;
      if (raw.includes("\\")) {
        try {
          str = JSON.parse(text.slice(i, end + 1)) as string;
        } catch {
          return scan; // malformed: JSON.parse will say so
        }
        if (/\\u[dD][89a-fA-F]/.test(raw) && hasLoneSurrogate(str))
          note(top?.tensor, `string ${preview(str)} has an unpaired UTF-16 surrogate escape`);
      }
      if (top && top.obj && expectKey) {
        if (top.keys!.has(str)) {
          const t = top.tensor;
          const where = top.role === ROOT ? "the header" : t === undefined ? "an object" : t === "__metadata__" ? t : `tensor ${clip(t)}`;
          note(top.role === ROOT ? str : top.tensor, `duplicate key ${preview(str)} in ${where}`);
        }
        top.keys!.add(str);
        top.key = str;
        expectKey = false;
      }
      i = end + 1;
    } else if (c === 0x7b || c === 0x5b) {
      if (stack.length >= MAX_JSON_DEPTH) {
        scan.tooDeep = true;
        return scan;
      }
      const obj = c === 0x7b;
      const parent = stack[stack.length - 1];
      let role = OTHER;
      let tensor: string | undefined;
      if (!parent) role = obj ? ROOT : OTHER;
      else if (parent.role === ROOT) {
        role = obj && parent.key !== "__metadata__" ? ENTRY : OTHER;
        tensor = parent.key;
      } else if (parent.role === ENTRY && !obj && (parent.key === "shape" || parent.key === "data_offsets")) {
        role = DIMS;
        tensor = parent.tensor;
      } else if (parent.tensor !== undefined) tensor = parent.tensor;
      stack.push({ obj, role, keys: obj ? new Set() : undefined, key: undefined, tensor });
      expectKey = obj;
      i++;
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
      expectKey = false;
      i++;
    } else if (c === 0x2c) {
      expectKey = stack.length > 0 && stack[stack.length - 1].obj;
      i++;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < n) {
        const d = text.charCodeAt(j);
        if ((d >= 0x30 && d <= 0x39) || d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) j++;
        else break;
      }
      const top = stack[stack.length - 1];
      if (top && top.role === DIMS && top.tensor !== undefined && !scan.badNumbers.has(top.tensor)) {
        const tok = text.slice(i, j);
        if (!/^(0|[1-9][0-9]{0,15})$/.test(tok) || Number(tok) > Number.MAX_SAFE_INTEGER)
          scan.badNumbers.set(top.tensor, { field: stack[stack.length - 2].key!, token: tok.length > 40 ? `${tok.slice(0, 40)}...` : tok });
      }
      i = j;
    } else i++;
  }
  return scan;
}

function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
      else return true;
    } else if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

/** Edit distance (two rows), used by suggestKeys on short candidate lists only. */
function editDistance(a: string, b: string): number {
  let prev = new Uint32Array(b.length + 1);
  let cur = new Uint32Array(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    const ca = a.charCodeAt(i - 1);
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca === b.charCodeAt(j - 1) ? 0 : 1));
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}

/** Suggestions considered by edit distance; the rest are ranked by shared prefix/suffix only. */
const SUGGEST_POOL = 64;

/**
 * Up to `n` keys close to `key`, for "did you mean" hints, in time linear in the number of keys:
 * every key is scored by the prefix and suffix it shares with `key` minus the length difference
 * (tensor names differ mostly in the middle: blocks.12.attn1.to_q.weight), and only the best
 * SUGGEST_POOL are ranked by edit distance, on their first 256 characters. (errors.ts `closest`
 * sorts by full edit distance: ~10 s on a 100k-key header.)
 */
function suggestKeys(key: string, keys: Iterable<string>, n = 3): string[] {
  const q = key.slice(0, 256);
  const cands: string[] = [];
  const scores: number[] = [];
  for (const k of keys) {
    const m = Math.min(q.length, k.length);
    let pre = 0;
    while (pre < m && q.charCodeAt(pre) === k.charCodeAt(pre)) pre++;
    let suf = 0;
    while (suf < m - pre && q.charCodeAt(q.length - 1 - suf) === k.charCodeAt(k.length - 1 - suf)) suf++;
    cands.push(k);
    scores.push(pre + suf - Math.abs(q.length - Math.min(k.length, 256)));
  }
  let pool = cands.map((_, i) => i);
  if (pool.length > SUGGEST_POOL) {
    const cut = Float64Array.from(scores).sort()[scores.length - SUGGEST_POOL];
    const above = pool.filter((i) => scores[i] > cut);
    pool = above.concat(pool.filter((i) => scores[i] === cut).slice(0, SUGGEST_POOL - above.length));
  }
  return pool
    .map((i) => ({ k: cands[i], d: editDistance(q, cands[i].slice(0, 256)) }))
    .sort((a, b) => a.d - b.d || (a.k < b.k ? -1 : a.k > b.k ? 1 : 0))
    .slice(0, n)
    .map((x) => clip(x.k));
}

/** What a path that is not a regular file is, for messages. */
function kindOf(st: Stats): string {
  return st.isDirectory() ? "a directory" : st.isFIFO() ? "a FIFO" : st.isSocket() ? "a socket" : "a device or special file";
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
    // Only regular files: reading a directory fails with a raw EISDIR, and opening a FIFO blocks.
    const notFile = (what: string): WeightsError =>
      new WeightsError(this.path, undefined, `is ${what}, not a .safetensors file`, "point at the .safetensors file itself");
    let fd: number;
    try {
      const st = statSync(this.path);
      if (!st.isFile()) throw notFile(kindOf(st));
      fd = openSync(this.path, "r");
    } catch (e) {
      if (e instanceof WeightsError) throw e;
      throw new WeightsError(
        this.path,
        undefined,
        `cannot open: ${(e as Error).message}`,
        "check the path; download the checkpoint or point at the directory that holds it",
      );
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw notFile(kindOf(st)); // replaced between stat and open
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
    throw new WeightsError(this.path, key === undefined ? undefined : clip(key), message, fix);
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
    // The reference parses the header with serde_json: JSON whitespace may pad it at either end
    // (safetensors/src/tensor.rs, test_whitespace_padded_header and
    // test_whitespace_leading_padded_header), but a BOM is not whitespace there.
    if (hbuf[0] === 0xef && hbuf[1] === 0xbb && hbuf[2] === 0xbf)
      this.fail(undefined, "header starts with a UTF-8 byte order mark; it must start with '{'", CORRUPT);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(hbuf);
    } catch (e) {
      this.fail(undefined, `header is not valid UTF-8: ${(e as Error).message}`, CORRUPT);
    }
    const scan = scanHeader(text);
    if (scan.tooDeep)
      this.fail(undefined, `header JSON is nested more than ${MAX_JSON_DEPTH} deep (the reference parser's limit)`, CORRUPT);
    let header: unknown;
    try {
      header = JSON.parse(text);
    } catch (e) {
      this.fail(undefined, `header is not valid UTF-8 JSON: ${clip((e as Error).message)}`, CORRUPT);
    }
    if (!isPlainObject(header))
      this.fail(undefined, `header JSON is ${Array.isArray(header) ? "an array" : typeof header}, not an object`, CORRUPT);
    if (scan.problem) this.fail(scan.problem.key, scan.problem.message, CORRUPT);

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
      if (!isPlainObject(raw)) this.fail(key, `tensor entry ${preview(raw)} is not an object`, CORRUPT);
      const dtype = raw.dtype;
      if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_SIZES, dtype))
        this.fail(
          key,
          `unknown dtype ${preview(dtype)}; safetensors dtypes are ${SAFETENSORS_DTYPES.join(", ")}` +
            ` (readF32 converts ${READABLE_DTYPES.join(", ")})`,
          "re-export the checkpoint with a standard dtype (F32, F16 or BF16)",
        );
      // serde reads shape and data_offsets as usize: only plain integer literals (no 4e0, 1.0, -0).
      const bad = scan.badNumbers.get(key);
      const badNote = (field: string): string =>
        bad && bad.field === field ? ` (${bad.token} is not written as a plain integer up to 2^53)` : "";
      const shape = raw.shape;
      if (!Array.isArray(shape) || !shape.every(isIndex) || badNote("shape"))
        this.fail(key, `shape ${preview(shape)} is not an array of non-negative integers${badNote("shape")}`, CORRUPT);
      const offs = raw.data_offsets;
      if (offs === undefined) this.fail(key, "data_offsets is missing", CORRUPT);
      if (!Array.isArray(offs) || offs.length !== 2 || !isIndex(offs[0]) || !isIndex(offs[1]) || badNote("data_offsets"))
        this.fail(
          key,
          `data_offsets ${preview(offs)} is not [begin, end] with non-negative integers${badNote("data_offsets")}`,
          CORRUPT,
        );
      const [begin, end] = offs as [number, number];
      if (end < begin) this.fail(key, `data_offsets [${begin}, ${end}] ends before it begins`, CORRUPT);
      const numel = numelOf(shape);
      if (Number.isNaN(numel)) this.fail(key, `shape ${fmtShape(shape)} has more than 2^53 elements`, CORRUPT);
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

    // The byte ranges, sorted by (begin, end), must tile the data section exactly: each begins
    // where the previous one ends, the first at 0, the last at the end of the file
    // (safetensors/src/tensor.rs `Metadata::validate` and `read_metadata`). So no overlaps, no
    // gaps, no trailing bytes; a zero-size tensor may sit only on a boundary.
    const ranges = [...entries].sort(
      (a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0),
    );
    let prevKey: string | undefined;
    let prevEnd = 0;
    for (const [key, e] of ranges) {
      if (e.begin < prevEnd)
        this.fail(
          key,
          `byte range [${e.begin}, ${e.end}] overlaps tensor ${clip(prevKey!)} (which ends at ${prevEnd})`,
          CORRUPT,
        );
      if (e.begin > prevEnd)
        this.fail(
          key,
          `byte range [${e.begin}, ${e.end}] leaves a gap: bytes [${prevEnd}, ${e.begin}) of the data section ` +
            (prevKey === undefined ? "come before the first tensor" : `follow tensor ${clip(prevKey)} and belong to no tensor`),
          CORRUPT,
        );
      prevEnd = e.end;
      prevKey = key;
    }
    if (prevEnd !== dataLength)
      this.fail(
        undefined,
        `the data section has ${dataLength - prevEnd} trailing bytes after the last tensor` +
          ` (tensors cover [0, ${prevEnd}), the data section is ${dataLength} bytes)`,
        "the file is corrupt or was written by a non-conforming writer; re-export it",
      );
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
      const near = suggestKeys(key, this.entries.keys());
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
    const refuse = (): never =>
      this.fail(
        key,
        `dtype ${e.dtype} cannot be read as fp32 (supported: ${READABLE_DTYPES.join(", ")}); readBytes returns its raw bytes`,
        "convert the checkpoint to F32, F16 or BF16",
      );
    // The dtype decides, not the size: an empty I32 tensor is refused like a non-empty one.
    if (!(READABLE_DTYPES as readonly string[]).includes(e.dtype)) refuse();
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
        return refuse();
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
      const st = statSync(this.path);
      if (!st.isFile()) throw new Error(`it is ${kindOf(st)}, not a file`); // a FIFO would block
      text = readFileSync(this.path, "utf8");
    } catch (e) {
      throw new WeightsError(this.path, undefined, `cannot read index: ${(e as Error).message}`, "check the path");
    }
    let index: unknown;
    try {
      index = JSON.parse(text);
    } catch (e) {
      throw new WeightsError(this.path, undefined, `index is not valid JSON: ${clip((e as Error).message)}`, CORRUPT);
    }
    if (!isPlainObject(index)) throw new WeightsError(this.path, undefined, "index JSON is not an object", CORRUPT);
    const wm = index.weight_map;
    if (!isPlainObject(wm))
      throw new WeightsError(this.path, undefined, 'index has no "weight_map" object', CORRUPT);
    const md = index.metadata;
    this.metadata = isPlainObject(md) ? metadataToStrings(md, this.path) : {};

    const dir = dirname(this.path);
    this.shards = new Map();
    this.weightMap = new Map();
    try {
      for (const [key, name] of Object.entries(wm)) {
        if (typeof name !== "string" || name === "" || name.includes("\0"))
          throw new WeightsError(this.path, clip(key), `weight_map value ${preview(name)} is not a file name`, CORRUPT);
        const file = resolve(dir, name);
        let shard = this.shards.get(file);
        if (!shard) {
          let st: Stats | undefined;
          try {
            st = statSync(file, { throwIfNoEntry: false });
          } catch (e) {
            throw new WeightsError(
              this.path,
              clip(key),
              `cannot look up shard file ${clip(name)}: ${clip((e as Error).message)}`,
              "each weight_map value must name a shard file in the index's directory; fix the entry or regenerate the index",
            );
          }
          if (!st)
            throw new WeightsError(
              this.path,
              clip(key),
              `shard file ${clip(name)} is missing (looked for ${clip(file)})`,
              "download every shard listed in the index into the index's directory",
            );
          if (!st.isFile())
            throw new WeightsError(
              this.path,
              clip(key),
              `weight_map entry ${preview(key)}: ${preview(name)} is ${kindOf(st)} (${clip(file)}), not a .safetensors shard`,
              "each weight_map value must name a shard file in the index's directory; fix the entry or regenerate the index",
            );
          shard = new SafetensorsFile(file);
          this.shards.set(file, shard);
        }
        if (!shard.has(key))
          throw new WeightsError(
            file,
            clip(key),
            `the index ${basename(this.path)} maps this key to ${clip(name)}, but the shard does not contain it`,
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
      const near = suggestKeys(key, this.weightMap.keys());
      throw new WeightsError(
        this.path,
        clip(key),
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
