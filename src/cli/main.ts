/**
 * The `mixcache` command line: a thin layer over the API. Exit codes: 0 ok, 2 usage error,
 * 1 runtime error. Commands live in one file each; this file dispatches and maps errors to exit codes.
 */
import { readFileSync } from "node:fs";
import { MixCacheError, closest } from "../errors.ts";
import { generateCommand } from "./generate.ts";
import { infoCommand } from "./info.ts";
import { cachesCommand } from "./caches.ts";
import { evaluateCommand } from "./evaluate.ts";
import { calibrateCommand } from "./calibrate.ts";
import { planCommand } from "./plan.ts";
import { benchCommand } from "./bench.ts";
import { reportCommand } from "./report.ts";
import { viewCommand } from "./view.ts";
import { serveCommand } from "./serve.ts";
import { workerCommand } from "./worker.ts";
import type { Command } from "./args.ts";

const COMMANDS: readonly Command[] = [generateCommand, infoCommand, cachesCommand, evaluateCommand, calibrateCommand, planCommand, benchCommand, reportCommand, viewCommand, serveCommand, workerCommand];

function usage(): string {
  const rows = COMMANDS.map((c) => `  ${c.name.padEnd(12)} ${c.summary}`).join("\n");
  return `mixcache: video diffusion transformers, faster by caching\n\nUsage: mixcache <command> [options]   (mixcache <command> --help for details)\n       mixcache --version\n\nCommands:\n${rows}\n`;
}

/** The package version (package.json at the package root). */
export function version(): string {
  return (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  if (name === "--version" || name === "-v") {
    process.stdout.write(`mixcache ${version()}\n`);
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    const guess = closest(name, COMMANDS.map((c) => c.name), 1)[0];
    process.stderr.write(`mixcache: unknown command "${name}" (did you mean ${guess}?)\n  fix: run \`mixcache ${guess} --help\`, or \`mixcache --help\` for every command\n\n${usage()}`);
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
