/**
 * Temp folders for tests: created under the OS temp folder and removed when the test process exits
 * or is stopped by SIGINT/SIGTERM, whether its tests passed or not (through the same registry the
 * writers use, src/util/cleanup.ts). MIXCACHE_KEEP_TMP=1 keeps them for a look afterwards.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerTemp } from "../../src/util/cleanup.ts";

export function tempDir(prefix = "mixcache-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (!process.env.MIXCACHE_KEEP_TMP) registerTemp(dir);
  return dir;
}
