import { accessSync, constants, existsSync, readFileSync, statSync } from "node:fs";
import { dirname, extname, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { defaultThreads, maxThreads } from "../backend/ort.ts";
import type { FlagDef } from "./args.ts";

export const MODEL_FLAG: FlagDef = { name: "model", type: "string", placeholder: "NAME|DIR", doc: "an embedded model (reference, textures) or a model folder (default: reference)" };
export const JSON_FLAG: FlagDef = { name: "json", type: "bool", doc: "print exactly one JSON object to stdout" };
export const HELP_FLAG: FlagDef = { name: "help", type: "bool", doc: "show this help" };
export const DEVICE_FLAG: FlagDef = {
  name: "device", type: "string", placeholder: "cpu|cuda",
  doc: "onnxruntime execution provider (default cpu; cuda needs onnxruntime-node's CUDA provider, CUDA 12 and cuDNN 9)",
};
export const DTYPE_FLAG: FlagDef = {
  name: "dtype", type: "string", placeholder: "float32|float16",
  doc: "precision of the Wan transformer blocks' linear layers (default float32; float16 halves their weights and multiplies in float16, like torch_dtype=float16 for the linear layers)",
};
export const THREADS_FLAG: FlagDef = {
  name: "threads", type: "int", placeholder: "N", min: 1, max: maxThreads(),
  doc: `onnxruntime intra-op threads, 1..${maxThreads()} (4 x cores; default ${defaultThreads()}: the cores, at most 8)`,
};

/** Cache options from repeated --cache-opt key=value and/or a JSON --cache-config file. */
export function cacheOptions(opts: string[] | undefined, configFile: string | undefined): Record<string, unknown> {
  // no prototype: "__proto__" / "constructor" stay plain keys, which the strict knob parser refuses
  const out: Record<string, unknown> = Object.create(null);
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

/** Refuse positional arguments of a command that takes none (before anything runs or is written). */
export function noPositionals(command: string, positionals: string[], usage: string): void {
  if (positionals.length)
    throw new UsageError(`${command} takes no positional arguments, got ${positionals.map((p) => JSON.stringify(p)).join(" ")}`, `usage: ${usage}`);
}

/**
 * Check an output file before any model loads: not a folder, a supported extension, and the
 * nearest existing folder on its path is a writable folder (missing folders are created on
 * write, as src/util/atomic.ts does).
 */
export function checkOutputFile(flag: string, path: string, exts: readonly string[]): void {
  if (!path) throw new UsageError(`${flag} is empty`, "pass a file path");
  const abs = resolve(path);
  if (existsSync(abs) && statSync(abs).isDirectory()) throw new UsageError(`${flag} ${path} is a folder, not a file`, `name a file inside it, e.g. ${path.replace(/\/+$/, "")}/out${exts[0]}`);
  const ext = extname(path).toLowerCase();
  if (!exts.includes(ext))
    throw new UsageError(`${flag} ${path}: unsupported ${ext ? `extension "${ext}"` : "file name without an extension"}`, `use ${exts.join(", ")}`);
  checkWritableFolder(flag, path, dirname(abs));
}

/** Check an output folder before any model loads: a folder (or creatable under a writable one). */
export function checkOutputDir(flag: string, path: string): void {
  if (!path) throw new UsageError(`${flag} is empty`, "pass a folder path");
  checkWritableFolder(flag, path, resolve(path));
}

function checkWritableFolder(flag: string, path: string, dir: string): void {
  let d = dir;
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  if (!statSync(d).isDirectory()) throw new UsageError(`${flag} ${path}: ${d} is a file, not a folder`, "choose an output path under a folder");
  try {
    accessSync(d, constants.W_OK);
  } catch {
    throw new UsageError(`${flag} ${path}: folder ${d} is not writable`, "choose an output path in a folder you can write to");
  }
}

export function humanCount(n: number): string {
  if (n >= 1e12) return `${(n / 1e12).toFixed(2)}T`;
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}
