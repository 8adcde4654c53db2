/**
 * The `mixcache` command line: a thin layer over the API. Exit codes: 0 ok, 2 usage error,
 * 1 runtime error. Commands live in one file each; this file dispatches and maps errors to exit codes.
 */
import { MixCacheError } from "../errors.ts";
import { generateCommand } from "./generate.ts";
import { infoCommand } from "./info.ts";
import { cachesCommand } from "./caches.ts";
import { evaluateCommand } from "./evaluate.ts";
import { calibrateCommand } from "./calibrate.ts";
import { benchCommand } from "./bench.ts";
import { reportCommand } from "./report.ts";
import { viewCommand } from "./view.ts";

export interface Command {
  name: string;
  summary: string;
  run(argv: string[]): Promise<number>;
}

const COMMANDS: Command[] = [generateCommand, infoCommand, cachesCommand, evaluateCommand, calibrateCommand, benchCommand, reportCommand, viewCommand];

export function registerCommand(c: Command): void {
  COMMANDS.push(c);
}

function usage(): string {
  const rows = COMMANDS.map((c) => `  ${c.name.padEnd(12)} ${c.summary}`).join("\n");
  return `mixcache: video diffusion transformers, faster by caching\n\nUsage: mixcache <command> [options]   (mixcache <command> --help for details)\n\nCommands:\n${rows}\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`mixcache: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof MixCacheError) {
      process.stderr.write(`mixcache ${name}: error: ${e.message}\n`);
      return e.code === "USAGE" || e.code === "CONFIG" || e.code === "VOCAB" ? 2 : 1;
    }
    process.stderr.write(`mixcache ${name}: unexpected error: ${(e as Error).stack ?? e}\n`);
    return 1;
  }
}
