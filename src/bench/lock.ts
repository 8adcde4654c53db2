/**
 * An exclusive lock on a bench output folder, so two runs into one folder cannot both append to its
 * journal (every row twice) or overwrite each other's results.
 *
 * The lock is a file `<dir>/bench.lock` created with O_EXCL ("wx") holding JSON { pid, host,
 * started, token }. It is removed when the run ends, and on exit or SIGINT/SIGTERM
 * (util/cleanup.ts). A lock left by a process that is gone (SIGKILL, power loss) is detected when
 * its host is this machine and its pid is not alive (or is this process's own pid, reused, and not
 * held here): the next run takes it over and says so. A lock from another host (a shared file
 * system) cannot be checked: the error says how to remove it by hand.
 */
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { MixCacheError } from "../errors.ts";
import { onCleanup } from "../util/cleanup.ts";
import { pidAlive } from "../util/pid.ts";

export const LOCK_NAME = "bench.lock";

export interface LockInfo {
  pid: number;
  host: string;
  /** ISO time the lock was taken */
  started: string;
  /** random, to tell this lock from a later one at the same path */
  token: string;
}

export interface DirLock {
  path: string;
  info: LockInfo;
  /** the stale lock this one replaced, if any */
  tookOver: LockInfo | null;
  /** Remove the lock file if it is still ours; idempotent. */
  release(): void;
}

/** Lock files this process holds (path -> token): a second lock of the same folder in this process
 * is refused like one from another process. */
const held = new Map<string, string>();

function readLock(path: string): { text: string; info: LockInfo | null } | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return null; // gone meanwhile
  }
  try {
    const o = JSON.parse(text) as LockInfo;
    if (Number.isInteger(o.pid) && o.pid > 0 && typeof o.host === "string") return { text, info: o };
  } catch {
    // torn or foreign content
  }
  return { text, info: null };
}

function describe(i: LockInfo): string {
  return `pid ${i.pid} on ${i.host}, started ${i.started}`;
}

/**
 * Take the lock of `dir` (created if missing) for `what` (used in messages, e.g. "mixcache bench").
 * Throws MixCacheError IO when another live process holds it.
 */
export function lockDir(dir: string, what = "mixcache bench"): DirLock {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new MixCacheError("IO", `cannot create the output folder ${dir}: ${(e as Error).message}`, "choose a writable --out folder");
  }
  const path = resolve(join(dir, LOCK_NAME));
  const info: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString(), token: randomBytes(8).toString("hex") };
  const text = JSON.stringify(info) + "\n";
  let tookOver: LockInfo | null = null;
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, "wx");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST")
        throw new MixCacheError("IO", `cannot create the lock file ${path}: ${(e as Error).message}`, "choose a writable --out folder");
      if (attempt >= 3)
        throw new MixCacheError("IO", `${dir} is being locked and unlocked by other runs: could not take ${path}`, `pass another --out, or try again once the other ${what} runs are done`);
      const other = readLock(path);
      if (!other) continue; // released meanwhile: try again
      const o = other.info;
      const fixRemove = `if no ${what} is using it, remove ${path}`;
      if (!o) {
        // unreadable: a writer between create and write, or a crash right there
        let age = 0;
        try {
          age = Date.now() - statSync(path).mtimeMs;
        } catch {
          continue;
        }
        if (age < 10_000)
          throw new MixCacheError("IO", `${dir} is locked by another ${what} (${path} is being written)`, `wait for it, or pass another --out; ${fixRemove}`);
      } else if (o.host !== info.host) {
        throw new MixCacheError(
          "IO",
          `${dir} is in use by another ${what} (${describe(o)}); it runs on another host, so whether it is still running cannot be checked from here`,
          `wait for it to finish, or pass another --out; ${fixRemove}`,
        );
      } else if (o.pid === process.pid ? held.get(path) === o.token : pidAlive(o.pid)) {
        const self = o.pid === process.pid;
        throw new MixCacheError(
          "IO",
          `${dir} is in use by another ${what} (${describe(o)}${self ? ", in this process" : ""})`,
          self ? `wait for the other run to finish, or use another output folder` : `wait for it to finish or stop it (kill ${o.pid}), or pass another --out; ${fixRemove}`,
        );
      }
      // stale: its process is gone. Remove it only if it is still the file we judged (narrows the
      // race with another run taking it over at the same moment), then try again.
      const again = readLock(path);
      if (again && again.text === other.text) {
        rmSync(path, { force: true });
        tookOver = o ?? { pid: 0, host: "?", started: "?", token: "" };
      }
      continue;
    }
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } catch (e) {
      rmSync(path, { force: true });
      throw new MixCacheError("IO", `cannot write the lock file ${path}: ${(e as Error).message}`, "choose a writable --out folder with free space");
    } finally {
      closeSync(fd);
    }
    break;
  }
  held.set(path, info.token);
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    dispose();
    if (held.get(path) === info.token) held.delete(path);
    // only our own lock: a run that took over a lock it judged stale must not lose it to us
    const cur = readLock(path);
    if (cur?.info?.token === info.token) rmSync(path, { force: true });
  };
  const dispose = onCleanup(release);
  return { path, info, tookOver, release };
}

/** The note for a run that replaced a stale lock. */
export function tookOverNote(l: DirLock): string | null {
  const o = l.tookOver;
  if (!o) return null;
  return o.pid > 0
    ? `took over a stale lock ${l.path} left by pid ${o.pid} on ${o.host} (started ${o.started}), which is no longer running; rows it journaled are kept`
    : `took over an unreadable stale lock ${l.path}`;
}
