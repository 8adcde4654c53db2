/**
 * Strategy knobs declared as data: type, default, range, doc and source. Configs are validated
 * strictly: an unknown knob or an out-of-range value is a ConfigError that lists the valid ones.
 */
import { ConfigError, closest } from "../errors.ts";

export type KnobValue = number | boolean | string;

export interface KnobDef {
  name: string;
  type: "number" | "int" | "bool" | "enum" | "string";
  default: KnobValue;
  min?: number;
  max?: number;
  values?: readonly string[];
  /** string knobs: the value must match this (anchored) */
  pattern?: RegExp;
  /** string knobs: what the pattern means, for the error message */
  patternDoc?: string;
  doc: string;
  /** Paper or code the knob and its default come from. */
  source?: string;
}

/** What a knob parses to: number (number, int), boolean (bool), one of its `values` (enum), string. */
type ValueOfType<T extends KnobDef["type"], K> = T extends "number" | "int"
  ? number
  : T extends "bool"
    ? boolean
    : T extends "enum"
      ? K extends { values: readonly (infer V extends string)[] } ? V : string
      : string;
export type KnobValueOf<K extends KnobDef> = ValueOfType<K["type"], K>;

/**
 * The config `parseKnobs` returns for these definitions, typed from them: knob name -> value type.
 * Declare the definitions with literal names and types (`as const`, or through `defineStrategy`)
 * and `config.threshold` is a number, `config.choose` is "efficiency" | "error", with no casts.
 */
export type KnobConfig<D extends readonly KnobDef[]> = { readonly [K in D[number] as K["name"]]: KnobValueOf<K> };

function describe(k: KnobDef): string {
  if (k.type === "enum") return `${k.name}=${k.values!.join("|")}`;
  if (k.type === "bool") return `${k.name}=true|false`;
  if (k.type === "string") return `${k.name}=${k.patternDoc ?? "TEXT"}`;
  const lo = k.min ?? -Infinity, hi = k.max ?? Infinity;
  return `${k.name} (${k.type} in [${lo}, ${hi}])`;
}

export function knobList(defs: readonly KnobDef[]): string {
  return defs.map(describe).join(", ") || "(none)";
}

/** Parse and validate raw options (strings from the CLI or typed values from the API): every knob
 * of `defs`, its default where `raw` does not set it. */
export function parseKnobs<const D extends readonly KnobDef[]>(strategy: string, defs: D, raw: Record<string, unknown> = {}): KnobConfig<D> {
  // a plain object only: options hidden behind a prototype ({ __proto__: {...} }) would be skipped
  const proto = typeof raw === "object" && raw !== null && !Array.isArray(raw) ? Object.getPrototypeOf(raw) : undefined;
  if (proto !== Object.prototype && proto !== null)
    throw new ConfigError(`${strategy}: options must be a plain object of knob values`, `valid options: ${knobList(defs)}`);
  const out: Record<string, KnobValue> = {};
  for (const d of defs) out[d.name] = d.default;
  const names = defs.map((d) => d.name);
  for (const [key, value] of Object.entries(raw)) {
    const d = defs.find((x) => x.name === key);
    if (!d) {
      const hint = names.length ? ` (did you mean ${closest(key, names, 1)[0]}?)` : "";
      throw new ConfigError(`${strategy}: unknown option "${key}"${hint}`, `valid options: ${knobList(defs)}`);
    }
    out[key] = coerce(strategy, d, value);
  }
  // coerce() gave each knob a value of its declared type
  return out as KnobConfig<D>;
}

function coerce(strategy: string, d: KnobDef, value: unknown): KnobValue {
  const bad = (why: string) => new ConfigError(`${strategy}: ${d.name}=${JSON.stringify(value)} ${why}`, `valid: ${describe(d)}; default ${d.default}. ${d.doc}`);
  if (d.type === "bool") {
    if (typeof value === "boolean") return value;
    if (value === "true" || value === "1") return true;
    if (value === "false" || value === "0") return false;
    throw bad("is not a boolean");
  }
  if (d.type === "enum") {
    if (typeof value === "string" && d.values!.includes(value)) return value;
    throw bad("is not one of the allowed values");
  }
  if (d.type === "string") {
    if (typeof value !== "string") throw bad("is not a string");
    if (d.pattern && value !== "" && !d.pattern.test(value)) throw bad(`is not ${d.patternDoc ?? `of the form ${d.pattern}`}`);
    return value;
  }
  // strings (the CLI) in plain decimal only: Number("0x10") is 16
  const n = typeof value === "number" ? value : typeof value === "string" && /^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n)) throw bad("is not a number");
  if (d.type === "int" && !Number.isInteger(n)) throw bad("is not an integer");
  if (d.min !== undefined && n < d.min) throw bad(`is below the minimum ${d.min}`);
  if (d.max !== undefined && n > d.max) throw bad(`is above the maximum ${d.max}`);
  return n;
}

/** Compact number for tags: 0.05 -> "0.05", 2 -> "2". */
export function fmt(n: KnobValue): string {
  if (typeof n !== "number") return String(n);
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(3)));
}
