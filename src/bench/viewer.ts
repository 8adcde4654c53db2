/**
 * `mixcache view DIR`: a static file server for a bench folder, for reading its report in a
 * browser. Bound to 127.0.0.1 only; serves only regular files under DIR:
 *
 *   GET /            DIR/report/index.html, with <base href="/report/"> so its relative links work
 *   GET /<path>      DIR/<path> (a folder: its index.html; no listings)
 *
 * Refused: anything but GET/HEAD (405); a request target that is not an origin path (400);
 * undecodable escapes, NUL or backslashes (400); `.` / `..` segments, raw or percent-encoded, and
 * hidden (dot) names (403); a path that resolves outside DIR, including through a symlink whose
 * real path leaves DIR (403); a Host header other than 127.0.0.1 / localhost (403, against DNS
 * rebinding). Missing files are 404. Responses carry nosniff, no-store and a CSP without scripts.
 *
 * Repeated slashes (`//report`, `/%2F%2Freport`) are collapsed before the lookup. The only redirect
 * (a folder without its trailing slash) goes to the collapsed path with every segment re-encoded,
 * so its Location is always a path on this origin: it never starts with `//` or `/\`, which a
 * browser would read as another host (`safeLocation`).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createReadStream, existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { extname, join, resolve, sep } from "node:path";
import type { AddressInfo } from "node:net";
import { MixCacheError } from "../errors.ts";

const VIEW_HOST = "127.0.0.1";

export const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".htm": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".jsonl": "application/x-ndjson; charset=utf-8",
  ".csv": "text/csv; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".gif": "image/gif",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".webp": "image/webp",
  ".mp4": "video/mp4",
  ".webm": "video/webm",
};

function contentType(path: string): string {
  return CONTENT_TYPES[extname(path).toLowerCase()] ?? "application/octet-stream";
}

const SECURITY_HEADERS = {
  "X-Content-Type-Options": "nosniff",
  "Cache-Control": "no-store",
  "Referrer-Policy": "no-referrer",
  "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'none'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'",
};

export type Resolved =
  | { status: 200; file: string; index?: boolean }
  | { status: 301; location: string }
  | { status: 400 | 403 | 404; reason: string };

/**
 * Map a request target to a file under root (an absolute, real path). Pure apart from stat and
 * realpath; exported for tests.
 */
export function resolveRequest(root: string, rawUrl: string): Resolved {
  if (!rawUrl.startsWith("/")) return { status: 400, reason: "request target must be a path" };
  const rawPath = rawUrl.split(/[?#]/, 1)[0];
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    return { status: 400, reason: "bad percent-encoding" };
  }
  if (path.includes("\0") || path.includes("\\")) return { status: 400, reason: "bad characters in path" };
  if (path === "/") {
    const index = join(root, "report", "index.html");
    return existsSync(index) ? checkReal(root, index, true) : { status: 404, reason: "no report/index.html: run `mixcache report DIR`" };
  }
  const segments = path.split("/");
  if (segments.some((s) => s === "." || s === "..")) return { status: 403, reason: "path traversal refused" };
  if (segments.some((s) => s.startsWith("."))) return { status: 403, reason: "hidden files are not served" };
  // "//a///b" is "/a/b": empty segments are dropped (a leading "//" would be another host in a Location)
  const parts = segments.filter((s) => s !== "");
  if (parts.length === 0) return resolveRequest(root, "/");
  const file = resolve(root, ...parts);
  if (file !== root && !file.startsWith(root + sep)) return { status: 403, reason: "outside the served folder" };
  let st;
  try {
    st = statSync(file);
  } catch {
    return { status: 404, reason: "not found" };
  }
  if (st.isDirectory()) {
    if (!path.endsWith("/")) return { status: 301, location: safeLocation(`/${parts.map(encodeURIComponent).join("/")}/`) };
    const index = join(file, "index.html");
    if (!existsSync(index)) return { status: 404, reason: "no index.html in this folder" };
    return checkReal(root, index);
  }
  if (!st.isFile()) return { status: 404, reason: "not a regular file" };
  return checkReal(root, file);
}

/**
 * A Location that a browser resolves on this origin: a path starting with exactly one "/" (browsers
 * read "//host" and "/\\host" as another host), with no backslash or control characters anywhere.
 * Anything else becomes "/".
 */
export function safeLocation(location: string): string {
  if (!location.startsWith("/") || location.startsWith("//") || location.startsWith("/\\")) return "/";
  if (/[\\\x00-\x1f\x7f]/.test(location)) return "/";
  return location;
}

function checkReal(root: string, file: string, index = false): Resolved {
  let real: string;
  try {
    real = realpathSync(file);
  } catch {
    return { status: 404, reason: "not found" };
  }
  if (real !== root && !real.startsWith(root + sep)) return { status: 403, reason: "symlink leads outside the served folder" };
  try {
    if (!statSync(real).isFile()) return { status: 404, reason: "not a regular file" };
  } catch {
    return { status: 404, reason: "not found" };
  }
  return index ? { status: 200, file: real, index: true } : { status: 200, file: real };
}

function plain(res: ServerResponse, status: number, text: string, head = false, extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, "Content-Type": "text/plain; charset=utf-8", ...extra });
  res.end(head ? undefined : `${status} ${text}\n`);
}

function handler(root: string, port: () => number) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const head = req.method === "HEAD";
    if (req.method !== "GET" && !head) return plain(res, 405, "method not allowed", false, { Allow: "GET, HEAD" });
    const host = (req.headers.host ?? "").toLowerCase();
    const okHosts = [`${VIEW_HOST}:${port()}`, `localhost:${port()}`, VIEW_HOST, "localhost"];
    if (!okHosts.includes(host)) return plain(res, 403, "unexpected Host header", head);
    const r = resolveRequest(root, req.url ?? "");
    if (r.status === 301) return plain(res, 301, "moved", head, { Location: safeLocation(r.location) });
    if (r.status !== 200) return plain(res, r.status, r.reason, head);
    if (r.index) {
      // served at "/": its links are relative to report/
      const html = readFileSync(r.file, "utf8").replace(/<head>/i, '<head>\n<base href="/report/">');
      const body = Buffer.from(html, "utf8");
      res.writeHead(200, { ...SECURITY_HEADERS, "Content-Type": CONTENT_TYPES[".html"], "Content-Length": body.byteLength });
      return res.end(head ? undefined : body);
    }
    const size = statSync(r.file).size;
    res.writeHead(200, { ...SECURITY_HEADERS, "Content-Type": contentType(r.file), "Content-Length": size });
    if (head) return res.end();
    const s = createReadStream(r.file);
    s.on("error", () => res.destroy());
    s.pipe(res);
  };
}

export interface Viewer {
  url: string;
  host: string;
  port: number;
  /** the served folder (real path) */
  root: string;
  server: Server;
  close(): Promise<void>;
}

/** Serve dir on 127.0.0.1 (port 0 = any free port). */
export async function startViewer(dir: string, port = 0): Promise<Viewer> {
  let root: string;
  try {
    root = realpathSync(resolve(dir));
  } catch {
    throw new MixCacheError("IO", `no folder ${dir}`, "pass the folder a `mixcache bench` wrote");
  }
  if (!statSync(root).isDirectory()) throw new MixCacheError("IO", `${dir} is not a folder`, "pass the folder a `mixcache bench` wrote");
  let bound = port;
  const server = createServer(handler(root, () => bound));
  await new Promise<void>((ok, fail) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      fail(err.code === "EADDRINUSE" ? new MixCacheError("IO", `port ${port} on ${VIEW_HOST} is in use`, "pass another --port, or 0 for any free port") : err),
    );
    server.listen(port, VIEW_HOST, () => ok());
  });
  bound = (server.address() as AddressInfo).port;
  return {
    url: `http://${VIEW_HOST}:${bound}/`,
    host: VIEW_HOST,
    port: bound,
    root,
    server,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  };
}
