#!/usr/bin/env node
// The `mixcache` command: runs the TypeScript CLI through tsx (a runtime dependency), so a fresh
// `npm ci` needs no build step.
import { spawn } from "node:child_process";
import { MALLOC_ENV } from "./malloc-env.js";

// glibc reads its malloc settings when a process starts (malloc-env.js says why we set one): on
// Linux a one-shot command runs itself once more with them, unless the environment already sets
// them. The servers (serve, worker) run as started: a process manager signals their pid directly.
const command = process.argv[2];
if (process.platform === "linux" && process.env.MALLOC_MMAP_THRESHOLD_ === undefined && command !== "serve" && command !== "worker") {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ["inherit", "inherit", "inherit", "ipc"],
    env: { ...process.env, ...MALLOC_ENV, MIXCACHE_LAUNCHED: "1" },
  });
  // signals are passed on (a Ctrl-C that reaches the whole group arrives twice: the child's
  // handler exits on the first); if this process is killed outright, the channel closes and the
  // child ends
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
} else {
  if (process.env.MIXCACHE_LAUNCHED) {
    // started by the branch above: end with the parent, also when it died before the channel came
    // up (then there is none), and let the channel not hold the process open
    delete process.env.MIXCACHE_LAUNCHED;
    const orphaned = () => process.kill(process.pid, "SIGKILL");
    if (!process.channel || !process.connected) orphaned();
    process.on("disconnect", orphaned);
    process.channel.unref();
  }
  const { register } = await import("tsx/esm/api");
  register();
  const { main } = await import("../src/cli/main.ts");
  process.exitCode = await main(process.argv.slice(2));
}
