/**
 * Validation of a MixCache model folder's mixcache.json (name, latent size, fps, sampler
 * defaults), so a bad value is a ConfigError naming the file and field when the folder is
 * inspected, before any weight loads. Fields it does not know are left to their readers.
 */
import { ConfigError } from "../errors.ts";
import { SAMPLER_NAMES } from "../schedulers/types.ts";
import { MAX_STEPS } from "../schedulers/sigmas.ts";
import { parseLatent, type WanConfig } from "./wan/config.ts";

export function validateModelMeta(meta: Record<string, unknown> | null, c: WanConfig, source = "mixcache.json"): void {
  if (meta === null) return;
  if (typeof meta !== "object" || Array.isArray(meta)) throw new ConfigError(`${source}: expected a JSON object`);
  const bad = (field: string, value: unknown, want: string, fix?: string) => new ConfigError(`${source}: ${field} must be ${want}, got ${JSON.stringify(value)}`, fix);
  if (meta.name !== undefined && (typeof meta.name !== "string" || !meta.name.trim())) throw bad("name", meta.name, "a non-empty string");
  if (meta.latent !== undefined && meta.latent !== null) parseLatent(meta.latent, c, `${source}: latent`);
  if (meta.fps !== undefined && (typeof meta.fps !== "number" || !Number.isFinite(meta.fps) || meta.fps <= 0 || meta.fps > 240)) throw bad("fps", meta.fps, "a number in (0, 240]", "Wan2.1 clips are 16 fps");
  if (meta.pixel_space !== undefined && typeof meta.pixel_space !== "boolean") throw bad("pixel_space", meta.pixel_space, "true or false");
  if (meta.defaults === undefined) return;
  const d = meta.defaults as Record<string, unknown>;
  if (typeof d !== "object" || d === null || Array.isArray(d)) throw bad("defaults", d, "an object { sampler, steps, guidance, shift, negative_prompt }");
  if (d.sampler !== undefined && !(SAMPLER_NAMES as readonly unknown[]).includes(d.sampler)) throw bad("defaults.sampler", d.sampler, `one of ${SAMPLER_NAMES.join(", ")}`);
  if (d.steps !== undefined && (typeof d.steps !== "number" || !Number.isInteger(d.steps) || d.steps < 1 || d.steps > MAX_STEPS)) throw bad("defaults.steps", d.steps, `an integer in 1..${MAX_STEPS}`, "Wan2.1 uses 50");
  if (d.guidance !== undefined && (typeof d.guidance !== "number" || !Number.isFinite(d.guidance) || d.guidance < 1)) throw bad("defaults.guidance", d.guidance, "a finite number >= 1", "Wan2.1 uses 5");
  if (d.shift !== undefined && (typeof d.shift !== "number" || !Number.isFinite(d.shift) || d.shift <= 0)) throw bad("defaults.shift", d.shift, "a finite number > 0", "Wan2.1 uses 3 at 480p");
  if (d.negative_prompt !== undefined && typeof d.negative_prompt !== "string") throw bad("defaults.negative_prompt", d.negative_prompt, "a string");
}
