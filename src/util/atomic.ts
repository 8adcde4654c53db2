import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, basename } from "node:path";
import { MixCacheError } from "../errors.ts";

/** Write a file atomically: a temp file in the same directory, then rename over the target, so a
 * crash never leaves a half-written output and an existing file is only replaced when complete. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = tempPathFor(path);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new MixCacheError("IO", `cannot write ${path}: ${(e as Error).message}`, "choose a writable output path with free space");
  }
}

/** Create the target's directory and return a unique temp path beside the target (same file
 * system, so a rename onto the target is atomic). Used by writers that stream their output. */
export function tempPathFor(path: string): string {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new MixCacheError("IO", `cannot create directory ${dir}: ${(e as Error).message}`, "choose a writable output path");
  }
  return join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
}
