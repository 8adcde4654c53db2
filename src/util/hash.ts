/**
 * The one content hash of the project (sha256, hex) and the canonical JSON it is taken over, so
 * equal values hash equally whatever their key order (bench protocol and rows, serve idempotency).
 */
import { createHash } from "node:crypto";

/** sha256 of `data` as hex, the first `chars` characters (default: all 64). */
export function sha256(data: string | Uint8Array, chars = 64): string {
  return createHash("sha256").update(data).digest("hex").slice(0, chars);
}

/** JSON with sorted object keys (stable hashes). */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(",")}}`;
  return JSON.stringify(v) ?? "null";
}
