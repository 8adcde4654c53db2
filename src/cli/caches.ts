import { describeStrategies } from "../cache/registry.ts";
import { helpText, parseArgs, type Command } from "./args.ts";
import { HELP_FLAG, JSON_FLAG, noPositionals } from "./common.ts";

const FLAGS = [JSON_FLAG, HELP_FLAG];

export const cachesCommand: Command = {
  name: "caches",
  summary: "list every cache strategy with its knobs, defaults, granularity and source",
  async run(argv) {
    const a = parseArgs("caches", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText("Usage: mixcache caches [--json]", this.summary, FLAGS));
      return 0;
    }
    noPositionals("caches", a.positionals, "mixcache caches [--json]");
    const list = describeStrategies();
    if (a.flags.json) {
      process.stdout.write(JSON.stringify(list) + "\n");
      return 0;
    }
    const out: string[] = [];
    for (const s of list) {
      out.push(`${s.name}  [${s.granularity}]  ${s.summary}`);
      out.push(`    source: ${s.source}`);
      for (const k of s.knobs) {
        const range = k.type === "enum" ? k.values!.join("|") : k.type === "bool" ? "true|false" : k.type === "string" ? (k.patternDoc ?? "text") : `${k.min ?? "-inf"}..${k.max ?? "inf"}`;
        out.push(`    --cache-opt ${k.name}=${String(k.default).padEnd(8)} (${k.type} ${range})  ${k.doc}${k.source ? ` [${k.source}]` : ""}`);
      }
      out.push("");
    }
    process.stdout.write(out.join("\n"));
    return 0;
  },
};
