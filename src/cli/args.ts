/**
 * Command-line options declared as data. Each command lists its flags; the parser rejects unknown
 * flags and bad values with a UsageError that names the valid ones.
 */
import { UsageError, closest } from "../errors.ts";

/** One `mixcache` command (main.ts dispatches to it by name). */
export interface Command {
  name: string;
  summary: string;
  run(argv: string[]): Promise<number>;
}

export interface FlagDef {
  name: string; // long name without dashes
  type: "string" | "number" | "int" | "bool" | "list";
  doc: string;
  placeholder?: string;
  /** Inclusive range of an "int" or "number" flag, checked at parse time (before any model loads). */
  min?: number;
  max?: number;
}

/** Plain decimal only: Number() alone also takes "0x10" (16), "0b11", "1e1" as an integer and " 8 ". */
const INT_RE = /^-?[0-9]+$/;
const NUMBER_RE = /^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/;

/** The range of a flag in words, for messages and help texts. */
function rangeText(d: FlagDef): string {
  if (d.min !== undefined && d.max !== undefined) return `${d.min}..${d.max}`;
  if (d.min !== undefined) return `>= ${d.min}`;
  if (d.max !== undefined) return `<= ${d.max}`;
  return "";
}

/** Parse the value of an "int" or "number" flag: plain decimal, finite, within [min, max]. */
function parseNumberFlag(d: FlagDef, value: string): number {
  const isInt = d.type === "int";
  const range = rangeText(d);
  const what = `${isInt ? "a decimal integer" : "a decimal number"}${range ? (range.includes("..") ? ` in ${range}` : ` ${range}`) : ""}`;
  const n = Number(value);
  if (!(isInt ? INT_RE : NUMBER_RE).test(value) || !Number.isFinite(n) || (isInt && !Number.isSafeInteger(n)))
    throw new UsageError(`--${d.name} must be ${what}, got "${value}"`, `for example --${d.name} ${d.min ?? (isInt ? 1 : 1.5)}`);
  if ((d.min !== undefined && n < d.min) || (d.max !== undefined && n > d.max))
    throw new UsageError(`--${d.name} must be ${what}, got ${value}`, `pass a value ${range.includes("..") ? `in ${range}` : range}`);
  return n;
}

export interface Parsed {
  positionals: string[];
  flags: Record<string, string | number | boolean | string[] | undefined>;
}

export function parseArgs(command: string, argv: string[], defs: readonly FlagDef[]): Parsed {
  const out: Parsed = { positionals: [], flags: {} };
  const byName = new Map(defs.map((d) => [d.name, d]));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith("--") || a === "--") {
      out.positionals.push(a);
      continue;
    }
    let name = a.slice(2);
    let value: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const d = byName.get(name);
    if (!d) {
      const names = defs.map((x) => x.name);
      throw new UsageError(`${command}: unknown option --${name}${names.length ? ` (did you mean --${closest(name, names, 1)[0]}?)` : ""}`, `run \`mixcache ${command} --help\` for the options`);
    }
    if (d.type === "bool") {
      if (value !== undefined && value !== "true" && value !== "false") throw new UsageError(`--${name} takes no value`);
      out.flags[name] = value !== "false";
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value (${d.placeholder ?? d.type})`);
      value = argv[++i];
    }
    if (d.type === "list") {
      const prev = (out.flags[name] as string[] | undefined) ?? [];
      out.flags[name] = [...prev, value];
    } else if (d.type === "number" || d.type === "int") out.flags[name] = parseNumberFlag(d, value);
    else out.flags[name] = value;
  }
  return out;
}

export function helpText(usage: string, summary: string, defs: readonly FlagDef[]): string {
  const rows = defs.map((d) => {
    const left = `  --${d.name}${d.type === "bool" ? "" : ` ${d.placeholder ?? d.type.toUpperCase()}`}`;
    const range = rangeText(d);
    return `${left.padEnd(30)} ${d.doc}${range && !d.doc.includes(range) ? ` [${range}]` : ""}`;
  });
  return `${usage}\n\n${summary}\n\nOptions:\n${rows.join("\n")}\n`;
}
