import { lstatSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, basename } from "node:path";
import { MixCacheError } from "../errors.ts";
import { isRegisteredTemp, registerTemp } from "./cleanup.ts";
import { pidAlive } from "./pid.ts";

/** Write a file atomically: a temp file in the same directory, then rename over the target, so a
 * crash never leaves a half-written output and an existing file is only replaced when complete.
 * The temp is registered for removal on exit and on SIGINT/SIGTERM (util/cleanup.ts). */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = tempPathFor(path);
  const done = registerTemp(tmp);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new MixCacheError("IO", `cannot write ${path}: ${(e as Error).message}`, "choose a writable output path with free space");
  } finally {
    done();
  }
}

/** Temp files left by a killed writer (SIGKILL, power loss) older than this are removed by the next
 * write into their folder, whatever their pid; those of a dead pid on this host right away. */
export const STALE_TEMP_MS = 15 * 60_000;

/** Temp name of `.<target>.<pid>.<ms since epoch>.tmp` (see tempPathFor), or null. */
export function parseTempName(name: string): { target: string; pid: number; time: number } | null {
  const m = /^\.(.+)\.(\d{1,10})\.(\d{1,16})\.tmp$/.exec(name);
  return m ? { target: m[1], pid: Number(m[2]), time: Number(m[3]) } : null;
}

/**
 * Remove stale temp files of our naming pattern from `dir` (regular files only): those whose
 * writing pid is dead on this host, this process's own pid when it is not writing them (a reused
 * pid), and any older than `maxAgeMs` (by mtime, so a long streamed write that is still growing is
 * kept). Temp names carry no host: in a folder shared between machines, a live writer on another
 * machine looks dead here. Best effort: never throws. Returns the removed paths.
 */
export function sweepStaleTemps(dir: string, maxAgeMs = STALE_TEMP_MS, now = Date.now()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const t = parseTempName(name);
    if (!t) continue;
    const path = join(dir, name);
    try {
      const st = lstatSync(path);
      if (!st.isFile()) continue;
      const stale =
        now - st.mtimeMs > maxAgeMs ||
        // a pid of 0 is not one we can ask about: treated as alive
        (t.pid === process.pid ? !isRegisteredTemp(path) : t.pid > 0 && !pidAlive(t.pid));
      if (!stale) continue;
      rmSync(path, { force: true });
      removed.push(path);
    } catch {
      // raced with its writer or another sweeper: leave it
    }
  }
  return removed;
}

const swept = new Set<string>();

/** Create the target's directory and return a unique temp path beside the target (same file
 * system, so a rename onto the target is atomic). Used by writers that stream their output, which
 * register the temp for cleanup themselves (util/cleanup.ts). The first call for a directory in a
 * process also sweeps stale temps out of it (sweepStaleTemps). */
export function tempPathFor(path: string): string {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new MixCacheError("IO", `cannot create directory ${dir}: ${(e as Error).message}`, "choose a writable output path");
  }
  if (!swept.has(dir)) {
    swept.add(dir);
    sweepStaleTemps(dir);
  }
  return join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
}
