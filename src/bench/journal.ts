/**
 * The bench's files beside its results: the journal (<out>/journal.jsonl, one finished row per
 * line, fsync'd, so an interrupted bench resumes) and the clips (<out>/clips/: the reference of
 * each prompt and seed as raw float32, so a resumed group can still be compared with it; the
 * default point of every method as 8-bit RGB for the contact sheets and the report).
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, truncateSync, writeSync } from "node:fs";
import { toByte } from "../media/frames.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { sha256 } from "../util/hash.ts";
import type { BenchRow } from "./results.ts";

export function readJournal(path: string): BenchRow[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, "utf8");
  const end = text.lastIndexOf("\n") + 1;
  // a torn last line (crash mid-append) is dropped, so the next append starts on a fresh line
  if (end < text.length) truncateSync(path, Buffer.byteLength(text.slice(0, end)));
  const rows: BenchRow[] = [];
  for (const line of text.slice(0, end).split("\n")) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as BenchRow;
      if (r && typeof r.key === "string") rows.push(r);
    } catch {
      // a corrupt line is skipped (its row reruns)
    }
  }
  return rows;
}

export function appendJournal(path: string, row: BenchRow): void {
  const fd = openSync(path, "a");
  try {
    writeSync(fd, JSON.stringify(row) + "\n");
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** File-name-safe form of a tag (clip names, the report's GIFs). */
export const safeTag = (tag: string) => tag.replace(/[^A-Za-z0-9._-]+/g, "_");

/** The file of a stored clip: the reference ("ref", .f32) or an operating point's default output (.u8). */
export function clipName(protocolHash: string, prompt: string, seed: number, point: { tag: string; configHash: string } | "ref", ext: "f32" | "u8"): string {
  const who = point === "ref" ? "ref" : `${safeTag(point.tag)}-${point.configHash}`;
  return `${protocolHash}-s${seed}-p${sha256(prompt, 10)}-${who}.${ext}`;
}

export function saveF32(path: string, data: Float32Array): void {
  writeFileAtomic(path, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

export function loadF32(path: string, n: number): Float32Array | null {
  if (!existsSync(path)) return null;
  const b = readFileSync(path);
  if (b.byteLength !== 4 * n) return null;
  const out = new Float32Array(n);
  new Uint8Array(out.buffer).set(b);
  return out;
}

/** 8-bit copy of a clip as displayed (toByte), and back to [-1, 1] floats that display identically. */
export function toBytes(data: Float32Array): Uint8Array {
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = toByte(data[i]);
  return out;
}
export function fromBytes(b: Uint8Array): Float32Array {
  const out = new Float32Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = (b[i] / 255) * 2 - 1;
  return out;
}
