/** Helpers of the serve tests: HTTP calls, SSE reading, CLI child processes, polling. */
import { spawn, type ChildProcess } from "node:child_process";

/** A TCP port nothing listens on right now (shared with the serve load test). */
export { freePort } from "../../bench/net.ts";

export interface Reply {
  status: number;
  headers: Headers;
  body: Buffer;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

export async function call(base: string, method: string, path: string, o: { body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  let body: string | undefined;
  if (o.raw !== undefined) body = o.raw;
  else if (o.body !== undefined) {
    body = JSON.stringify(o.body);
    headers["content-type"] ??= "application/json";
  }
  const r = await fetch(base + path, { method, headers, body });
  const buf = Buffer.from(await r.arrayBuffer());
  let json: unknown = null;
  if ((r.headers.get("content-type") ?? "").includes("json")) json = JSON.parse(buf.toString("utf8"));
  return { status: r.status, headers: r.headers, body: buf, json };
}

export interface SseEvent {
  event: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
}

/** Read a server-sent event stream until the server ends it (or `timeoutMs`). */
export async function readSse(url: string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<SseEvent[]> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const r = await fetch(url, { headers, signal: ctl.signal });
    if (r.status !== 200) throw new Error(`SSE ${url}: ${r.status} ${await r.text()}`);
    const text = await r.text();
    const events: SseEvent[] = [];
    for (const block of text.split("\n\n")) {
      const ev = /^event: (.*)$/m.exec(block);
      const data = /^data: (.*)$/m.exec(block);
      if (ev && data) events.push({ event: ev[1], data: JSON.parse(data[1]) });
    }
    return events;
  } finally {
    clearTimeout(timer);
  }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface Cli {
  child: ChildProcess;
  out: () => string;
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>;
  waitLine(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
}

/** Start `mixcache ARGS` (bin/mixcache.js) with stdout and stderr captured together. */
export function startCli(args: string[], env: Record<string, string> = {}): Cli {
  const child = spawn(process.execPath, ["bin/mixcache.js", ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString("utf8");
    for (const l of listeners) l();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<number | string>((done) => child.on("exit", (code, sig) => done(code ?? sig ?? -1)));
  return {
    child,
    out: () => out,
    exited,
    waitLine(re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(out);
          if (m) {
            cleanup();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${re} in:\n${out}`));
        }, timeoutMs);
        const onExit = () => {
          check();
          cleanup();
          reject(new Error(`process exited before ${re}:\n${out}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off("exit", onExit);
        };
        listeners.add(check);
        child.on("exit", onExit);
        check();
      });
    },
  };
}

export const PROMPT = "a large red circle moving right on a black background";
