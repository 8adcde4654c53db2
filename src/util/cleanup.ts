/**
 * What must not outlive the process: temp files of writes in progress, encoder child processes,
 * lock files. A small registry of cleanup actions that run, once each and newest first:
 *
 *   - on exit (`process.exit`, or the event loop running dry): the 'exit' event;
 *   - on SIGINT, SIGTERM and SIGHUP, when no other listener owns that signal: the actions run, then
 *     the process exits with the conventional 128 + signal number (130, 143, 129). When another
 *     listener handles the signal (e.g. `mixcache view` stopping its server), it decides what
 *     happens; if it exits, the 'exit' event runs the actions.
 *
 * The signal listeners are installed on first use and stay (removing the last listener of a signal
 * that is already pending can drop it, and the default disposition would kill the process without
 * running anything). SIGKILL cannot be caught: writers also sweep stale temps (util/atomic.ts).
 */
import { rmSync } from "node:fs";
import { constants } from "node:os";

type Action = () => void;

const actions = new Set<{ run: Action }>();
const temps = new Map<string, number>();
let installed = false;

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

function onSignal(sig: NodeJS.Signals): void {
  // another listener owns the signal: leave the decision to it ('exit' still cleans up)
  if (process.listenerCount(sig) > 1) return;
  runCleanup();
  process.exit(128 + (constants.signals[sig] ?? 0));
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on("exit", runCleanup);
  for (const sig of SIGNALS) process.on(sig, onSignal);
}

/** Run `fn` on exit or on a terminating signal, unless the returned dispose is called first (it
 * unregisters without running). `fn` must be synchronous and should not throw. */
export function onCleanup(fn: Action): () => void {
  install();
  const entry = { run: fn };
  actions.add(entry);
  return () => {
    actions.delete(entry);
  };
}

/** Remove `path` (a file or folder) on exit or on a terminating signal, unless the returned dispose
 * is called first (a write that renamed or removed its temp itself). */
export function registerTemp(path: string): () => void {
  temps.set(path, (temps.get(path) ?? 0) + 1);
  const dispose = onCleanup(() => rmSync(path, { recursive: true, force: true }));
  let done = false;
  return () => {
    if (done) return;
    done = true;
    dispose();
    const n = (temps.get(path) ?? 1) - 1;
    if (n > 0) temps.set(path, n);
    else temps.delete(path);
  };
}

/** Whether `path` is a temp this process registered and is still writing. */
export function isRegisteredTemp(path: string): boolean {
  return temps.has(path);
}

/** Run every registered action now (newest first) and clear the registry. Errors are swallowed:
 * cleanup is best effort and must not stop the other actions or the exit. */
function runCleanup(): void {
  const list = [...actions].reverse();
  actions.clear();
  temps.clear();
  for (const a of list) {
    try {
      a.run();
    } catch {
      // best effort
    }
  }
}

/** Registered actions not yet run or disposed (for tests). */
export function pendingCleanups(): number {
  return actions.size;
}
