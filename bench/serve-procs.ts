/**
 * Process plumbing of `npm run bench:serve` (bench/serve.ts): one run-wide deadline, child
 * processes (mixcache serve / worker, a private redis-server) that are always stopped, and temp
 * folders that are always removed, on a normal end, on an error, on the deadline and on
 * SIGINT/SIGTERM/SIGHUP. Nothing here imports src/: the bench drives the runtime only through its
 * CLI and HTTP API.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./net.ts";

// ---------------------------------------------------------------------------------------------
// the deadline

export class BenchTimeout extends Error {
  constructor(readonly limitS: number, readonly during: string) {
    super(`the bench ran past --timeout ${limitS} s (while ${during})`);
    this.name = "BenchTimeout";
  }
}

const ctl = new AbortController();
/** Aborted when the run must stop (deadline or signal); every wait and fetch listens to it. */
export const stopSignal: AbortSignal = ctl.signal;
let phase = "starting";
let deadlineTimer: NodeJS.Timeout | undefined;

/** What the run is doing now (named in the timeout message). */
export function setPhase(p: string): void {
  phase = p;
}

export function startDeadline(limitS: number): void {
  deadlineTimer = setTimeout(() => ctl.abort(new BenchTimeout(limitS, phase)), limitS * 1000);
}

export function abortRun(reason: Error): void {
  if (!ctl.signal.aborted) ctl.abort(reason);
}

/** Throw the abort reason if the run was stopped. */
export function checkStopped(): void {
  if (ctl.signal.aborted) throw ctl.signal.reason as Error;
}

/** `p`, or the abort reason as soon as the run is stopped. */
export function abortable<T>(p: Promise<T>): Promise<T> {
  if (ctl.signal.aborted) return Promise.reject(ctl.signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(ctl.signal.reason as Error);
    ctl.signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        ctl.signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        ctl.signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

export function sleep(ms: number): Promise<void> {
  return abortable(new Promise((r) => setTimeout(r, ms)));
}

// ---------------------------------------------------------------------------------------------
// children and temp folders

export interface Child {
  name: string;
  proc: ChildProcess;
  /** Everything it wrote (stdout and stderr together). */
  out(): string;
  exited: Promise<number | string>;
  alive(): boolean;
  /** Resolve with the first match of `re` in its output; reject if it exits first or the run stops. */
  waitLine(re: RegExp): Promise<RegExpExecArray>;
}

const children: Child[] = [];
const temps: string[] = [];
let verbose = false;

export function setVerbose(v: boolean): void {
  verbose = v;
}

export function makeTemp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

/** Start `cmd args` in its own process group (a terminal's Ctrl-C reaches only the bench, which
 * then stops the children in order); stdout and stderr are captured and, when `logFile` is set,
 * copied there. */
export function startChild(name: string, cmd: string, args: string[], o: { cwd?: string; logFile?: string; env?: Record<string, string> } = {}): Child {
  checkStopped();
  const proc = spawn(cmd, args, { cwd: o.cwd, env: { ...process.env, ...(o.env ?? {}) }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let out = "";
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    const s = d.toString("utf8");
    out += s;
    if (out.length > 4_000_000) out = out.slice(-2_000_000);
    if (o.logFile) appendFileSync(o.logFile, s);
    if (verbose) process.stderr.write(s.replace(/^(?=.)/gm, `  [${name}] `));
    for (const l of listeners) l();
  };
  proc.stdout!.on("data", onData);
  proc.stderr!.on("data", onData);
  let code: number | string | null = null;
  const exited = new Promise<number | string>((done) => {
    proc.on("exit", (c, sig) => {
      code = c ?? sig ?? -1;
      done(code);
    });
    proc.on("error", (e) => {
      out += `\n(spawn error: ${e.message})\n`;
      code = -1;
      done(-1);
    });
  });
  const child: Child = {
    name, proc, exited,
    out: () => out,
    alive: () => code === null,
    waitLine(re) {
      return abortable(new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(out);
          if (m) {
            listeners.delete(check);
            resolve(m);
          }
        };
        listeners.add(check);
        void exited.then((c) => {
          listeners.delete(check);
          const m = re.exec(out);
          if (m) resolve(m);
          else reject(new Error(`${name} exited (${c}) before it was ready:\n${tail(out)}`));
        });
        check();
      }));
    },
  };
  children.push(child);
  return child;
}

export function tail(s: string, lines = 15): string {
  return s.trimEnd().split("\n").slice(-lines).map((l) => `    ${l}`).join("\n");
}

function signal(c: Child, sig: NodeJS.Signals): void {
  if (!c.alive() || c.proc.pid === undefined) return;
  try {
    process.kill(c.proc.pid, sig);
  } catch {
    // already gone
  }
}

/** Stop children (newest first): SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChildren(list: Child[] = children.slice(), graceMs = 5000): Promise<void> {
  const live = list.filter((c) => c.alive()).reverse();
  for (const c of live) signal(c, "SIGTERM");
  const timeout = new Promise<void>((r) => setTimeout(r, graceMs).unref());
  await Promise.race([Promise.all(live.map((c) => c.exited)), timeout]);
  for (const c of live) signal(c, "SIGKILL");
  await Promise.race([Promise.all(live.map((c) => c.exited)), new Promise<void>((r) => setTimeout(r, 2000).unref())]);
  for (const c of list) {
    const i = children.indexOf(c);
    if (i >= 0 && !c.alive()) children.splice(i, 1);
  }
}

export function removeTemps(): void {
  for (const d of temps.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Last resort on 'exit' (synchronous): kill what is left and remove the temp folders. */
function killAllSync(): void {
  for (const c of children) signal(c, "SIGKILL");
  removeTemps();
}

let signalled: NodeJS.Signals | null = null;

/** Install the exit and signal handlers: on a signal the run is aborted, the children stopped and
 * the temp folders removed, then the process exits 128 + signal number. */
export function installCleanup(onSignal?: (sig: NodeJS.Signals) => void): void {
  process.on("exit", killAllSync);
  const codes: Record<string, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      if (signalled) {
        killAllSync();
        process.exit(codes[sig]);
      }
      signalled = sig;
      onSignal?.(sig);
      abortRun(new Error(`stopped by ${sig}`));
      void stopChildren(children.slice(), 1500).finally(() => {
        removeTemps();
        process.exit(codes[sig]);
      });
    });
  }
}

export function wasSignalled(): NodeJS.Signals | null {
  return signalled;
}

export function clearDeadline(): void {
  clearTimeout(deadlineTimer);
}

// ---------------------------------------------------------------------------------------------
// a private redis-server (on a free port from ./net.ts)

/** One inline command to a Redis server (RESP reply as text), or null when nothing answers. */
export function redisCommand(host: string, port: number, cmd: string, timeoutMs = 1000): Promise<string | null> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    let buf = "";
    const done = (v: string | null) => {
      sock.destroy();
      clearTimeout(t);
      resolve(v);
    };
    const t = setTimeout(() => done(buf || null), timeoutMs);
    sock.on("connect", () => sock.write(`${cmd}\r\n`));
    sock.on("data", (d) => {
      buf += d.toString("utf8");
      if (buf.startsWith("+") || buf.startsWith("-")) {
        if (buf.includes("\r\n")) done(buf);
      } else if (buf.startsWith("$")) {
        const n = Number(buf.slice(1, buf.indexOf("\r\n")));
        if (buf.length >= buf.indexOf("\r\n") + 2 + n + 2) done(buf);
      }
    });
    sock.on("error", () => done(null));
  });
}

export function onPath(cmd: string): string | null {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

export interface PrivateRedis {
  url: string;
  port: number;
  version: string;
  child: Child;
}

/** A redis-server of our own: loopback only, a free port, no persistence, a temp working dir. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const dir = makeTemp("mixcache-bench-redis-");
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = startChild("redis", "redis-server", [
      "--port", String(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
      "--save", "", "--appendonly", "no", "--dir", dir, "--databases", "16", "--loglevel", "warning",
    ], { logFile: join(dir, "redis.log") });
    for (let i = 0; i < 100 && child.alive(); i++) {
      if ((await redisCommand("127.0.0.1", port, "PING")) === "+PONG\r\n") {
        const info = (await redisCommand("127.0.0.1", port, "INFO server")) ?? "";
        const version = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? "?";
        return { url: `redis://127.0.0.1:${port}`, port, version, child };
      }
      await sleep(100);
    }
    await stopChildren([child], 1000);
    if (attempt >= 2) throw new Error(`redis-server did not start on 127.0.0.1:${port}:\n${tail(child.out())}`);
  }
}
