import { readFileSync } from "node:fs";
import { UsageError } from "../errors.ts";
import type { FlagDef } from "./args.ts";

export const MODEL_FLAG: FlagDef = { name: "model", type: "string", placeholder: "DIR", doc: "model folder (default: the embedded reference model)" };
export const JSON_FLAG: FlagDef = { name: "json", type: "bool", doc: "print exactly one JSON object to stdout" };
export const HELP_FLAG: FlagDef = { name: "help", type: "bool", doc: "show this help" };
export const THREADS_FLAG: FlagDef = { name: "threads", type: "int", placeholder: "N", doc: "onnxruntime intra-op threads (default: all cores)" };

/** Cache options from repeated --cache-opt key=value and/or a JSON --cache-config file. */
export function cacheOptions(opts: string[] | undefined, configFile: string | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (configFile) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(configFile, "utf8"));
    } catch (e) {
      throw new UsageError(`cannot read --cache-config ${configFile}: ${(e as Error).message}`, "pass a JSON object of strategy options");
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new UsageError(`--cache-config ${configFile} must hold a JSON object`);
    Object.assign(out, raw);
  }
  for (const kv of opts ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new UsageError(`--cache-opt expects key=value, got "${kv}"`, "for example --cache-opt threshold=0.1");
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

export function humanCount(n: number): string {
  if (n >= 1e12) return `${(n / 1e12).toFixed(2)}T`;
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}
