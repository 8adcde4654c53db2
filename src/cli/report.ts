/**
 * `mixcache report DIR`: the static HTML report of a bench folder (src/bench/report.ts) in
 * DIR/report/index.html: tables, plots (SVG + PNG), clips side by side, decision timelines, the
 * machine section. --measure adds DIR/runtime.json first when it is missing (src/bench/machine.ts:
 * bench/runtime.ts and, with PyTorch installed, the PyTorch eager forward for comparison).
 */
import { existsSync } from "node:fs";
import { join, relative } from "node:path";
import { UsageError } from "../errors.ts";
import { RUNTIME_JSON, measureMachine } from "../bench/machine.ts";
import { helpText, parseArgs, type FlagDef, type Command } from "./args.ts";
import { HELP_FLAG, JSON_FLAG, THREADS_FLAG } from "./common.ts";

const FLAGS: FlagDef[] = [
  { name: "compare", type: "string", placeholder: "OUT", doc: "with two or more folders (e.g. the two embedded models): build each report, then OUT/index.html with them side by side" },
  { name: "measure", type: "bool", doc: `when DIR/${RUNTIME_JSON} is missing, measure this machine first (bench/runtime.ts --skip-1.3b, and PyTorch eager if installed)` },
  { ...THREADS_FLAG, doc: "threads for --measure (default: the bench's onnxruntime threads)" },
  JSON_FLAG,
  HELP_FLAG,
];

const quote = (s: string) => (/^[A-Za-z0-9_./,:=+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

export const reportCommand: Command = {
  name: "report",
  summary: "build the static HTML report of a bench folder (tables, plots, clips, timelines)",
  async run(argv) {
    const a = parseArgs("report", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText("Usage: mixcache report DIR [--measure] [--json]\n       mixcache report DIR1 DIR2 ... --compare OUT", this.summary, FLAGS) + `\nWrites DIR/report/index.html (open it, or serve it with \`mixcache view DIR\`); with --compare also OUT/index.html.\n`);
      return 0;
    }
    if (a.flags.compare !== undefined) {
      if (a.positionals.length < 2) throw new UsageError(`--compare needs at least two bench folders, got ${a.positionals.length}`, "mixcache report DIR1 DIR2 --compare OUT");
      if (a.flags.measure) throw new UsageError("--measure works on one folder at a time", "run mixcache report DIR --measure first");
      const { buildReport, readResults } = await import("../bench/report.ts");
      const { buildComparison } = await import("../bench/compare.ts");
      for (const d of a.positionals) readResults(d); // every folder checked before anything is written
      const command = ["mixcache", "report", ...argv].map(quote).join(" ");
      for (const d of a.positionals) await buildReport(d, { command: ["mixcache", "report", d].map(quote).join(" ") });
      const c = buildComparison(a.positionals, a.flags.compare as string, command);
      if (a.flags.json) process.stdout.write(JSON.stringify({ index: c.index, shared: c.shared, reports: a.positionals.map((d) => join(d, "report", "index.html")) }) + "\n");
      else process.stdout.write(`comparison: ${c.index} (${a.positionals.length} folders, ${c.shared} shared points)\n`);
      return 0;
    }
    if (a.positionals.length !== 1) throw new UsageError(a.positionals.length ? `report takes one folder, got ${a.positionals.length} arguments (several folders: --compare OUT)` : "report needs the bench folder", "mixcache report DIR (the --out folder of `mixcache bench`)");
    const dir = a.positionals[0];
    const threads = a.flags.threads as number | undefined;
    if (threads !== undefined && threads < 1) throw new UsageError(`--threads must be at least 1, got ${threads}`);
    // loaded on use: the plotting libraries are not needed by the other commands
    const { buildReport, readResults } = await import("../bench/report.ts");
    const results = readResults(dir); // fail early, before measuring
    let measured = false;
    if (a.flags.measure && !existsSync(join(dir, RUNTIME_JSON))) {
      measureMachine(dir, { threads: threads ?? results.machine.ortThreads, log: (l) => process.stderr.write(`${l}\n`) });
      measured = true;
    }
    const command = ["mixcache", "report", ...argv].map(quote).join(" ");
    const r = await buildReport(dir, { command });
    if (a.flags.json) {
      process.stdout.write(JSON.stringify({ index: r.index, plots: r.plots.map((p) => ({ name: p.name, svg: join(r.dir, p.svg), png: p.png ? join(r.dir, p.png) : null })), gifs: r.gifs, sheets: r.sheets, png: r.pngError === null, measured, notes: r.notes }) + "\n");
    } else {
      const rel = relative(process.cwd(), r.index);
      const shown = !rel || rel.startsWith("..") ? r.index : rel;
      process.stdout.write(
        `report: ${shown} (${r.plots.length} plots as SVG${r.pngError ? "" : " + PNG"}, ${r.gifs} clip GIF(s), ${r.sheets} contact sheet(s)${measured ? `, machine measured into ${join(dir, RUNTIME_JSON)}` : ""})\n` +
          `  view it: mixcache view ${quote(dir)}\n`,
      );
      for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
    }
    return 0;
  },
};
