/**
 * Cache calibration profiles: small JSON files in the model folder's cache_profiles/ (one per
 * method: teacache.json, magcache.json, mixcache.json), written by `mixcache calibrate` and read by
 * the strategies. Each records the settings it was measured under so a mismatch can be reported.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MixCacheError } from "../errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";

export interface ProfileMeta {
  method: string;
  model: string;
  steps: number;
  shift: number;
  sampler: string;
  guidance: number;
  prompts: number;
  created: string;
}

export function profilePath(dir: string, method: string): string {
  return join(dir, `${method}.json`);
}

export function readProfile<T extends { meta: ProfileMeta }>(dir: string | undefined, method: string): T | null {
  if (!dir) return null;
  const p = profilePath(dir, method);
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, "utf8")) as T;
  } catch (e) {
    throw new MixCacheError("CONFIG", `cache profile ${p} is not valid JSON: ${(e as Error).message}`, `re-run \`mixcache calibrate ${method}\``);
  }
}

export function writeProfile(dir: string, method: string, profile: { meta: ProfileMeta }): string {
  const p = profilePath(dir, method);
  writeFileAtomic(p, JSON.stringify(profile, null, 1) + "\n");
  return p;
}
