/**
 * Where the umT5 encoder's weights come from, read one tensor (or a few embedding rows) at a time:
 *  - a safetensors checkpoint, single file or sharded with model.safetensors.index.json, in F32,
 *    F16 or BF16 (converted to fp32 on read);
 *  - any other `Umt5WeightSource` (the benchmark generates random weights per layer).
 *
 * `readRows` reads only the requested rows of a 2-D tensor straight from the file (the embedding
 * of umT5-XXL is 256384 x 4096, 2 GiB in bf16; a prompt needs a few dozen rows). The shared
 * safetensors reader reads whole tensors, so the row read parses the (already validated) header
 * of the shard that holds the tensor again here for the tensor's byte offset.
 */
import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { basename } from "node:path";
import { WeightsError } from "../../errors.ts";
import { Checkpoint, decodeBF16, decodeF16, openCheckpoint } from "../../weights/safetensors.ts";

export interface Umt5WeightSource {
  /** Where the weights are (for messages). */
  readonly path: string;
  keys(): string[];
  has(key: string): boolean;
  shape(key: string): number[];
  /** The whole tensor as fp32. */
  read(key: string): Float32Array;
  /** Rows `rows` (in that order, repeats allowed) of a 2-D tensor as fp32 [rows.length, cols]. */
  readRows(key: string, rows: readonly number[]): Float32Array;
  /** A stable id of the weights, cheap to compute (cache keys). */
  fingerprint(): string;
  close(): void;
}

const ELEM: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

interface Located {
  fd: number;
  pos: number; // absolute file offset of the tensor's first byte
  dtype: string;
  shape: number[];
}

function readFully(fd: number, buf: Uint8Array, pos: number, file: string, key: string): void {
  let off = 0;
  while (off < buf.length) {
    const got = readSync(fd, buf, off, buf.length - off, pos + off);
    if (got === 0) throw new WeightsError(file, key, `unexpected end of file at offset ${pos + off}`, "the file was truncated or changed after it was opened; re-download it");
    off += got;
  }
}

/** Header of one safetensors file: data_offsets per key and the data section start. */
function readHeader(fd: number, file: string): { dataStart: number; header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>; raw: Buffer } {
  const len = Buffer.alloc(8);
  readFully(fd, len, 0, file, "__header__");
  const n = Number(len.readBigUInt64LE(0));
  const raw = Buffer.alloc(n);
  readFully(fd, raw, 8, file, "__header__");
  return { dataStart: 8 + n, header: JSON.parse(raw.toString("utf8")), raw };
}

/** A safetensors checkpoint (file, index.json or folder) as a Umt5WeightSource. */
export class CheckpointSource implements Umt5WeightSource {
  readonly path: string;
  private readonly fds = new Map<string, { fd: number; dataStart: number; header: ReturnType<typeof readHeader>["header"] }>();
  private fp: string | undefined;

  constructor(readonly ckpt: Checkpoint) {
    this.path = ckpt.path;
  }

  static open(pathOrDir: string): CheckpointSource {
    return new CheckpointSource(openCheckpoint(pathOrDir));
  }

  keys(): string[] {
    return this.ckpt.keys();
  }
  has(key: string): boolean {
    return this.ckpt.has(key);
  }
  shape(key: string): number[] {
    return this.ckpt.info(key).shape;
  }
  read(key: string): Float32Array {
    return this.ckpt.readF32(key);
  }

  private file(file: string) {
    let f = this.fds.get(file);
    if (!f) {
      const fd = openSync(file, "r");
      try {
        const h = readHeader(fd, file);
        f = { fd, dataStart: h.dataStart, header: h.header };
      } catch (e) {
        closeSync(fd);
        throw e;
      }
      this.fds.set(file, f);
    }
    return f;
  }

  private locate(key: string): Located {
    const info = this.ckpt.info(key); // throws a WeightsError naming the key when it is missing
    const f = this.file(info.file);
    const e = f.header[key];
    if (!e) throw new WeightsError(info.file, key, "tensor vanished from the file header", "the file changed after it was opened; reopen the checkpoint");
    return { fd: f.fd, pos: f.dataStart + e.data_offsets[0], dtype: info.dtype, shape: info.shape };
  }

  readRows(key: string, rows: readonly number[]): Float32Array {
    const t = this.locate(key);
    const file = this.ckpt.info(key).file;
    if (t.shape.length !== 2) throw new WeightsError(file, key, `row read needs a 2-D tensor, shape is [${t.shape}]`, "check the key");
    const [R, C] = t.shape;
    const es = ELEM[t.dtype];
    if (!es) throw new WeightsError(file, key, `dtype ${t.dtype} cannot be read as fp32`, "convert the checkpoint to F32, F16 or BF16");
    const out = new Float32Array(rows.length * C);
    const raw = new Uint8Array(C * es);
    const done = new Map<number, number>(); // row -> output index already filled
    rows.forEach((r, j) => {
      if (!Number.isInteger(r) || r < 0 || r >= R)
        throw new WeightsError(file, key, `row ${r} is outside the tensor's ${R} rows`, "token ids must be below the embedding's vocabulary size");
      const dst = out.subarray(j * C, (j + 1) * C);
      const prev = done.get(r);
      if (prev !== undefined) {
        dst.set(out.subarray(prev * C, (prev + 1) * C));
        return;
      }
      readFully(t.fd, raw, t.pos + r * C * es, file, key);
      if (t.dtype === "F32") dst.set(new Float32Array(raw.buffer, 0, C));
      else if (t.dtype === "F16") decodeF16(new Uint16Array(raw.buffer, 0, C), dst);
      else if (t.dtype === "BF16") decodeBF16(new Uint16Array(raw.buffer, 0, C), dst);
      else {
        const d = new Float64Array(raw.buffer, 0, C);
        for (let c = 0; c < C; c++) dst[c] = d[c];
      }
      done.set(r, j);
    });
    return out;
  }

  /**
   * sha256 over every shard's name, size and header (dtypes, shapes, offsets) and 8 samples of 4 KiB
   * spread over its data section: changes with any re-export, without reading gigabytes.
   */
  fingerprint(): string {
    if (this.fp) return this.fp;
    const h = createHash("sha256");
    for (const file of [...this.ckpt.files].sort()) {
      const fd = openSync(file, "r");
      try {
        const size = fstatSync(fd).size;
        const { dataStart, raw } = readHeader(fd, file);
        h.update(`${basename(file)}\0${size}\0`).update(raw);
        const span = size - dataStart;
        const chunk = Buffer.alloc(Math.min(4096, span));
        for (let s = 0; s < 8 && chunk.length > 0; s++) {
          const pos = dataStart + Math.floor(((span - chunk.length) * s) / 7);
          readFully(fd, chunk, pos, file, "__fingerprint__");
          h.update(chunk);
        }
      } finally {
        closeSync(fd);
      }
    }
    this.fp = h.digest("hex");
    return this.fp;
  }

  close(): void {
    for (const f of this.fds.values()) closeSync(f.fd);
    this.fds.clear();
    this.ckpt.close();
  }
}
