/**
 * `mixcache view DIR [--port N]`: serve a bench folder's report on http://127.0.0.1:PORT/
 * (src/bench/viewer.ts: loopback only, only files under DIR, traversal refused). Builds the report
 * first when DIR/report/index.html is missing. Ctrl-C stops.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../errors.ts";
import { startViewer } from "../bench/viewer.ts";
import { helpText, parseArgs, type FlagDef, type Command } from "./args.ts";
import { HELP_FLAG } from "./common.ts";

const FLAGS: FlagDef[] = [
  { name: "port", type: "int", placeholder: "N", min: 0, max: 65535, doc: "port on 127.0.0.1 (default 8765; 0 = any free port)" },
  HELP_FLAG,
];

export const viewCommand: Command = {
  name: "view",
  summary: "serve a bench folder's HTML report on 127.0.0.1 (Ctrl-C stops)",
  async run(argv) {
    const a = parseArgs("view", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText("Usage: mixcache view DIR [--port N]", this.summary, FLAGS));
      return 0;
    }
    if (a.positionals.length !== 1) throw new UsageError(a.positionals.length ? `view takes one folder, got ${a.positionals.length} arguments` : "view needs the bench folder", "mixcache view DIR");
    const port = (a.flags.port as number | undefined) ?? 8765; // 0..65535: checked by parseArgs
    const dir = a.positionals[0];
    if (!existsSync(join(dir, "report", "index.html"))) {
      process.stderr.write(`no report in ${dir} yet: building it (mixcache report ${dir})\n`);
      const { buildReport } = await import("../bench/report.ts");
      await buildReport(dir, { command: `mixcache report ${dir}` });
    }
    const v = await startViewer(dir, port);
    process.stdout.write(`serving ${v.root} at ${v.url} (127.0.0.1 only; Ctrl-C stops)\n`);
    await new Promise<void>((done) => {
      const stop = () => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        void v.close().then(done);
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    process.stdout.write("stopped\n");
    return 0;
  },
};
