/** `mixcache report` and `mixcache view`: the HTML report of a bench folder and its loopback server. */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { main } from "../src/cli/main.ts";
import type { BenchResults } from "../src/bench/results.ts";
import { buildReport, escapeHtml, readResults } from "../src/bench/report.ts";
import { ablationLabel, isAblation, paretoData, paretoSpec, renderSvg } from "../src/bench/plots.ts";
import { resolveRequest, safeLocation, startViewer, type Viewer } from "../src/bench/viewer.ts";
import { MixCacheError } from "../src/errors.ts";
import { makeTinyModelDir } from "./support/tinyModel.ts";
import { capture } from "./support/capture.ts";

const EVIL = `<script>alert('x')</script> & "co"`;

let base: string; // holds the bench folder and a secret file beside it (what traversal would reach)
let out: string;
let viewer: Viewer;


/** A raw HTTP request (no URL normalisation, unlike fetch), so traversal attempts reach the server as sent. */
function raw(path: string, opts: { method?: string; host?: string } = {}): Promise<{ status: number; type: string; body: string; headers: Record<string, unknown> }> {
  const port = (viewer.server.address() as AddressInfo).port;
  return new Promise((ok, fail) => {
    const req = request({ host: "127.0.0.1", port, path, method: opts.method ?? "GET", headers: opts.host ? { Host: opts.host } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => ok({ status: res.statusCode ?? 0, type: String(res.headers["content-type"] ?? ""), body: Buffer.concat(chunks).toString("latin1"), headers: res.headers }));
    });
    req.on("error", fail);
    req.end();
  });
}

before(async () => {
  base = mkdtempSync(join(tmpdir(), "mixcache-report-"));
  out = join(base, "bench");
  writeFileSync(join(base, "secret.txt"), "SECRET outside the served folder\n");
  mkdirSync(join(base, "outside"));
  writeFileSync(join(base, "outside", "secret.txt"), "SECRET in a folder outside\n");
  const model = makeTinyModelDir(5);
  const r = await capture(() => main(["bench", "--model", model, "--methods", "none,fewer-steps,fbcache,mixcache", "--steps", "8", "--prompts", "2", "--out", out, "--threads", "1", "--json"]));
  assert.equal(r.code, 0, r.err);
  // text that must come out escaped
  const res = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as BenchResults;
  res.model.name = EVIL;
  res.session.warnings.push(`<img src=x onerror=alert(1)>`);
  writeFileSync(join(out, "results.json"), JSON.stringify(res));
  writeFileSync(join(out, "runtime.json"), JSON.stringify({
    threads: 1, gemm: { "2048x512x2048": 100 }, gemmCeiling: 100,
    reference: { tokens: 256, params: 2e6, forwardMs: 10, gflops: 40, macs: 2e8, moduleCalls: 26, loadMs: 5, fractionOfCeiling: 0.4 },
    overhead: { perCallMs: 0.02, callsPerForward: 26, shareOfForward: 0.05 },
    torch: { forward_ms: 25, threads: 1, by_threads: { "1": 25 }, torch: "test" },
  }));
  const rep = await capture(() => main(["report", out, "--json"]));
  assert.equal(rep.code, 0, rep.err);
  viewer = await startViewer(out);
});

after(async () => {
  await viewer?.close();
  rmSync(base, { recursive: true, force: true });
});

test("report: index.html with the plots, tables, clips, timelines, machine section and metrics", () => {
  const dir = join(out, "report");
  const html = readFileSync(join(dir, "index.html"), "utf8");
  assert.match(html, /^<!doctype html>/);
  assert.match(html, /<img id="pareto-chart" src="plots\/pareto\.svg"/);
  for (const name of ["pareto", "redundancy", "timeline", "decisions"]) {
    const svg = readFileSync(join(dir, "plots", `${name}.svg`), "utf8");
    assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, `${name}.svg is an SVG`);
    assert.ok(html.includes(`plots/${name}.svg`), `${name} in the page`);
    const png = join(dir, "plots", `${name}.png`);
    if (existsSync(png)) assert.deepEqual([...readFileSync(png).subarray(1, 4)], [0x50, 0x4e, 0x47]);
  }
  assert.ok(existsSync(join(dir, "plots", "pareto.png")), "resvg renders the PNGs on this machine");
  for (const h of ["Each method at its default point", "Best point per method at ≥ 2× compute speedup", "All operating points", "Clips side by side", "Decision timelines", "Decisions per MixCache point", "Redundancy analysis", "Machine", "Metric definitions", "Command"])
    assert.ok(html.includes(h), `section "${h}"`);
  assert.ok((html.match(/<table>/g) ?? []).length >= 5, "tables");
  assert.match(html, /fbcache-t0\.05/);
  // clips: the reference and each method's default point per prompt, as GIFs that exist
  const gifs = [...html.matchAll(/<img class="clip-gif" src="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(gifs.length, 2 * 4, "2 prompts x (reference + 3 default points)");
  assert.ok(gifs.includes("clips/p0-ref.gif") && gifs.includes("clips/p1-mixcache-medium-F1B1.gif"), gifs.join(" "));
  for (const g of gifs) assert.equal(readFileSync(join(dir, g)).subarray(0, 6).toString(), "GIF89a", g);
  assert.ok(html.includes('src="frames/0.png"') && existsSync(join(dir, "frames", "0.png")), "contact sheets copied");
  // machine: runtime.json numbers and the PyTorch ratio (25 ms / 10 ms)
  assert.match(html, /ONNX Runtime forward vs PyTorch eager<\/dt><dd>2\.50×/);
  assert.match(html, /per-call overhead/);
  // metric definitions from protocol.metrics; the commands
  assert.match(html, /<dt>psnrFrame<\/dt><dd>mean over frames of per-frame PSNR/);
  assert.match(html, /mixcache report /);
  assert.match(html, /mixcache bench --preset quick --model /);
  // everything from results.json is escaped
  assert.ok(!html.includes("<script>alert"), "no raw script from results.json");
  assert.ok(!html.includes("<img src=x"), "no raw img from a warning");
  assert.ok(html.includes(escapeHtml(EVIL)));
  assert.ok(html.includes("&lt;img src=x onerror=alert(1)&gt;"));
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
});

test("pareto: identical outputs are clipped to a line under the cap, ablations apart, lines by speedup", async () => {
  const r = readResults(out);
  const s0 = r.summary.find((s) => s.method === "fewer-steps" && s.default)!;
  const fake = structuredClone(r);
  fake.summary = [
    { ...s0, point: "a", tag: "a", method: "teacache", computeSpeedup: 1, psnrFrame: 100, identical: 1, default: true },
    { ...s0, point: "b", tag: "b", method: "teacache", computeSpeedup: 2, psnrFrame: 41.5, identical: 0 },
    { ...s0, point: "c", tag: "mixcache-x2-F1B1", method: "mixcache", computeSpeedup: 2.2, psnrFrame: 36, identical: 0, options: { target_speedup: 2 } },
    { ...s0, point: "d", tag: "mixcache-x2-F1B1-noI", method: "mixcache", computeSpeedup: 2.1, psnrFrame: 33, identical: 0, options: { target_speedup: 2, impact: false } },
  ];
  const d = paretoData(fake);
  assert.equal(d.clipped, 1);
  const a = d.points.find((p) => p.point === "a")!;
  assert.ok(a.clipped && a.psnr === d.top && d.top < 100 && d.top >= 41.5, `top ${d.top}`);
  assert.equal(d.points.find((p) => p.point === "b")!.psnr, 41.5);
  assert.ok(d.bottom <= 30, "the 30 dB line is in view");
  assert.ok(isAblation({ method: "mixcache", options: { impact: false } }) && !isAblation({ method: "mixcache", options: { preset: "fast" } }));
  assert.equal(ablationLabel("mixcache-x2-F1B1-noI"), "noI");
  assert.equal(d.points.find((p) => p.point === "c")!.label, "mixcache-x2-F1B1");
  const svg = await renderSvg(paretoSpec(fake));
  assert.match(svg, /mixcache-x2-F1B1/);
  assert.match(svg, /identical/);
});

test("report errors: a folder without results.json, wrong usage", async () => {
  assert.throws(() => readResults(join(base, "outside")), (e: unknown) => e instanceof MixCacheError && e.code === "IO" && /no results\.json/.test(e.message));
  await assert.rejects(buildReport(join(base, "nope")), /no results\.json/);
  assert.equal((await capture(() => main(["report"]))).code, 2);
  assert.equal((await capture(() => main(["report", out, out]))).code, 2);
  assert.equal((await capture(() => main(["report", join(base, "outside")]))).code, 1);
  assert.equal((await capture(() => main(["view"]))).code, 2);
  const help = await capture(() => main(["report", "--help"]));
  assert.equal(help.code, 0);
  assert.match(help.out, /--measure/);
});

test("viewer: bound to 127.0.0.1; serves the report at / and files under DIR with their types", async () => {
  assert.match(viewer.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.equal((viewer.server.address() as AddressInfo).address, "127.0.0.1");
  const idx = await raw("/");
  assert.equal(idx.status, 200);
  assert.equal(idx.type, "text/html; charset=utf-8");
  assert.match(idx.body, /<base href="\/report\/">/);
  assert.match(idx.body, /id="pareto-chart"/);
  assert.equal(idx.headers["x-content-type-options"], "nosniff");
  for (const [path, type] of [["/report/plots/pareto.svg", "image/svg+xml"], ["/report/plots/pareto.png", "image/png"], ["/report/clips/p0-ref.gif", "image/gif"], ["/results.json", "application/json; charset=utf-8"], ["/results.csv", "text/csv; charset=utf-8"], ["/report/index.html", "text/html; charset=utf-8"], ["/report/", "text/html; charset=utf-8"]] as const) {
    const r = await raw(path);
    assert.equal(r.status, 200, path);
    assert.equal(r.type, type, path);
  }
  const viaFetch = await fetch(new URL("report/plots/pareto.svg", viewer.url));
  assert.equal(viaFetch.status, 200);
  assert.match(await viaFetch.text(), /^<svg/);
  assert.equal((await raw("/report")).status, 301);
  assert.equal((await raw("/missing.png")).status, 404);
  assert.equal((await raw("/", { method: "HEAD" })).body, "");
  assert.equal((await raw("/", { method: "POST" })).status, 405);
  assert.equal((await raw("/", { host: "evil.example:80" })).status, 403, "DNS-rebinding Host refused");
});

test("viewer: path traversal, encoded traversal, absolute paths and escaping symlinks are refused", async () => {
  symlinkSync(join(base, "secret.txt"), join(out, "escape.txt"));
  symlinkSync(join(base, "outside"), join(out, "escape-dir"));
  symlinkSync(join(out, "results.json"), join(out, "inside-link.json"));
  const refused = [
    "/../secret.txt", "/../package.json", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt",
    "/report/../../secret.txt", "/report/%2e%2e/%2e%2e/secret.txt", "/./results.json", "/escape.txt", "/escape-dir/secret.txt",
    "//etc/passwd", "/%2fetc%2fpasswd", "/etc/passwd", "/..\\secret.txt", "/%5c..%5csecret.txt", "/a%00b", "/%zz", "/.hidden",
  ];
  for (const p of refused) {
    const r = await raw(p);
    assert.ok([400, 403, 404].includes(r.status), `${p} -> ${r.status}`);
    assert.ok(!r.body.includes("SECRET"), `${p} leaked the file outside`);
  }
  assert.equal((await raw("/../secret.txt")).status, 403);
  assert.equal((await raw("/%2e%2e/secret.txt")).status, 403);
  assert.equal((await raw("/..%2fsecret.txt")).status, 403);
  assert.equal((await raw("/escape.txt")).status, 403);
  assert.equal((await raw("/escape-dir/secret.txt")).status, 403);
  assert.equal((await raw("/inside-link.json")).status, 200, "a symlink that stays inside is served");
  assert.equal(resolveRequest(viewer.root, "http://127.0.0.1/results.json").status, 400, "absolute-form target");
});

test("viewer: folder redirects stay on this origin (no //host or /\\host Location)", async () => {
  mkdirSync(join(out, "evil.com"), { recursive: true });
  writeFileSync(join(out, "evil.com", "index.html"), "<!doctype html><p>inside</p>\n");
  const sameOrigin = /^\/(?![/\\])[^\\\x00-\x1f]*$/;
  const redirects: Array<[string, string]> = [
    ["/report", "/report/"], ["//report", "/report/"], ["///report", "/report/"], ["/%2F%2Freport", "/report/"], ["/%2f/%2freport", "/report/"],
    ["//evil.com", "/evil.com/"], ["/%2F%2Fevil.com", "/evil.com/"], ["//report?next=//evil.com", "/report/"], ["/report//plots", "/report/plots/"],
  ];
  for (const [path, want] of redirects) {
    const r = await raw(path);
    assert.equal(r.status, 301, path);
    assert.equal(r.headers.location, want, path);
    assert.match(String(r.headers.location), sameOrigin, path);
    // what a browser does with it: same host and port
    assert.equal(new URL(String(r.headers.location), viewer.url).origin, new URL(viewer.url).origin, path);
  }
  for (const path of ["/\\evil.com", "/%5C%5Cevil.com", "/%5Cevil.com", "//\\evil.com", "/%2F%5Cevil.com", "//nowhere.example", "/%2F%2Fnowhere.example"]) {
    const r = await raw(path);
    assert.ok([400, 403, 404].includes(r.status), `${path} -> ${r.status}`);
    assert.equal(r.headers.location, undefined, path);
  }
  assert.equal((await raw("//report/")).status, 200, "a collapsed folder path is served");
  assert.equal((await raw("//results.json")).status, 200, "a collapsed file path is served");
  for (const [bad, good] of [["//evil.com", "/"], ["/\\evil.com", "/"], ["http://evil.com/", "/"], ["evil.com", "/"], ["/a\\b", "/"], ["/a\r\nSet-Cookie: x", "/"], ["/report/", "/report/"], ["/a%20b/", "/a%20b/"]])
    assert.equal(safeLocation(bad), good, JSON.stringify(bad));
});

test("mixcache view: prints the URL, serves, stops on SIGINT", async () => {
  const child = spawn(process.execPath, ["bin/mixcache.js", "view", out, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "", stderr = "";
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const url = await new Promise<string>((ok, fail) => {
    const t = setTimeout(() => fail(new Error(`no URL printed: ${stdout} ${stderr}`)), 60_000);
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(stdout);
      if (m) {
        clearTimeout(t);
        ok(m[1]);
      }
    });
  });
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /pareto-chart/);
  const code = await new Promise<number | null>((ok) => {
    child.on("exit", (c) => ok(c));
    child.kill("SIGINT");
  });
  assert.equal(code, 0, stderr);
  assert.match(stdout, /stopped/);
});

test("report --compare: several bench folders side by side (both reports built, shared points in one table)", async () => {
  const { cpSync } = await import("node:fs");
  const second = join(base, "bench2");
  cpSync(out, second, { recursive: true });
  const res = JSON.parse(readFileSync(join(second, "results.json"), "utf8")) as BenchResults;
  res.model.name = "second-model";
  res.summary = res.summary.filter((s) => s.method !== "fbcache"); // a point only the first folder has
  writeFileSync(join(second, "results.json"), JSON.stringify(res));
  const cmp = join(base, "compare");
  const bad = await capture(() => main(["report", out, "--compare", cmp]));
  assert.equal(bad.code, 2);
  assert.match(bad.err, /at least two bench folders/);
  const r = await capture(() => main(["report", out, second, "--compare", cmp, "--json"]));
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out);
  const html = readFileSync(o.index, "utf8");
  const first = readResults(out);
  const sharedTags = first.summary.filter((s) => s.method !== "fbcache").map((s) => s.tag);
  assert.equal(o.shared, sharedTags.length);
  for (const t of sharedTags) assert.ok(html.includes(`<td>${escapeHtml(t)}</td>`), t);
  assert.ok(!first.summary.filter((s) => s.method === "fbcache").some((s) => html.includes(`<td>${escapeHtml(s.tag)}</td>`)), "unshared points left out");
  assert.ok(html.includes("second-model") && html.includes(escapeHtml(EVIL)) && !html.includes("<script>alert"), "names escaped");
  assert.ok(existsSync(join(cmp, "pareto-0.png")) && existsSync(join(cmp, "pareto-1.png")));
  assert.ok(existsSync(join(second, "report", "index.html")));
});
