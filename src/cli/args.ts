/**
 * Command-line options declared as data. Each command lists its flags; the parser rejects unknown
 * flags and bad values with a UsageError that names the valid ones.
 */
import { UsageError, closest } from "../errors.ts";

export interface FlagDef {
  name: string; // long name without dashes
  type: "string" | "number" | "int" | "bool" | "list";
  doc: string;
  placeholder?: string;
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
    } else if (d.type === "number" || d.type === "int") {
      const n = Number(value);
      if (value.trim() === "" || !Number.isFinite(n) || (d.type === "int" && !Number.isInteger(n)))
        throw new UsageError(`--${name} must be ${d.type === "int" ? "an integer" : "a number"}, got "${value}"`);
      out.flags[name] = n;
    } else out.flags[name] = value;
  }
  return out;
}

export function helpText(usage: string, summary: string, defs: readonly FlagDef[]): string {
  const rows = defs.map((d) => {
    const left = `  --${d.name}${d.type === "bool" ? "" : ` ${d.placeholder ?? d.type.toUpperCase()}`}`;
    return `${left.padEnd(30)} ${d.doc}`;
  });
  return `${usage}\n\n${summary}\n\nOptions:\n${rows.join("\n")}\n`;
}
