/**
 * On-disk cache of prompt embeddings, keyed by (encoder fingerprint, tokenizer fingerprint,
 * max length, prompt text). One file per prompt, `<sha256 of the key>.emb`, written atomically
 * (temp file + rename, util/atomic.ts), holding only the real rows [length, D]; the padding is
 * zeros and is restored on load. Layout: "MXPE" | u32 LE header bytes | header JSON | fp32 rows.
 * The header repeats the whole key, so a hash collision or a foreign file is a miss, never a
 * wrong embedding; an unreadable or truncated file is a miss too (and gets rewritten).
 */
import { sha256 } from "../../util/hash.ts";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../../util/atomic.ts";

const MAGIC = "MXPE";
const VERSION = 1;

export interface PromptKey {
  encoder: string;
  tokenizer: string;
  maxLength: number;
  prompt: string;
}

export interface CachedEmbedding {
  /** Real rows [length, dim]. */
  rows: Float32Array;
  length: number;
  dim: number;
}

export class PromptEmbeddingCache {
  constructor(readonly dir: string) {}

  pathFor(key: PromptKey): string {
    const h = sha256(JSON.stringify([VERSION, key.encoder, key.tokenizer, key.maxLength, key.prompt]));
    return join(this.dir, `${h}.emb`);
  }

  get(key: PromptKey): CachedEmbedding | null {
    let buf: Buffer;
    try {
      buf = readFileSync(this.pathFor(key));
    } catch {
      return null;
    }
    try {
      if (buf.length < 8 || buf.toString("latin1", 0, 4) !== MAGIC) return null;
      const hl = buf.readUInt32LE(4);
      const h = JSON.parse(buf.toString("utf8", 8, 8 + hl));
      if (h.v !== VERSION || h.encoder !== key.encoder || h.tokenizer !== key.tokenizer || h.maxLength !== key.maxLength || h.prompt !== key.prompt) return null;
      const { length, dim } = h as { length: number; dim: number };
      const start = 8 + hl;
      if (!Number.isInteger(length) || !Number.isInteger(dim) || buf.length !== start + 4 * length * dim) return null;
      const rows = new Float32Array(length * dim);
      new Uint8Array(rows.buffer).set(buf.subarray(start));
      return { rows, length, dim };
    } catch {
      return null;
    }
  }

  put(key: PromptKey, e: CachedEmbedding): void {
    const header = Buffer.from(JSON.stringify({ v: VERSION, ...key, length: e.length, dim: e.dim }), "utf8");
    const out = Buffer.alloc(8 + header.length + 4 * e.length * e.dim);
    out.write(MAGIC, 0, "latin1");
    out.writeUInt32LE(header.length, 4);
    header.copy(out, 8);
    out.set(new Uint8Array(e.rows.buffer, e.rows.byteOffset, 4 * e.length * e.dim), 8 + header.length);
    writeFileAtomic(this.pathFor(key), out);
  }
}
