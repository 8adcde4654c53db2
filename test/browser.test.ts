/**
 * The bench report in a real browser: Playwright (playwright-core) driving Debian's Chromium
 * (/usr/bin/chromium, installed by .ci/run) opens the report served by `startViewer`, finds the
 * Pareto chart and the clips (loaded: naturalWidth > 0), and saves a screenshot into the report
 * folder (report/screenshot.png). Skipped, saying why, where Chromium is not installed.
 * MIXCACHE_KEEP_REPORT=1 keeps the temporary bench folder (its path is printed as a diagnostic).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../src/cli/main.ts";
import { buildReport } from "../src/bench/report.ts";
import { startViewer, type Viewer } from "../src/bench/viewer.ts";
import { makeTinyModelDir } from "./support/tinyModel.ts";

const CHROMIUM = "/usr/bin/chromium";
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium; .ci/run does)`;

let base: string;
let out: string;
let viewer: Viewer | undefined;

before(async () => {
  if (skip) return;
  base = mkdtempSync(join(tmpdir(), "mixcache-browser-"));
  out = join(base, "bench");
  const model = makeTinyModelDir(7);
  const so = process.stdout.write.bind(process.stdout);
  process.stdout.write = (() => true) as typeof process.stdout.write; // the bench's --json line and progress
  try {
    const code = await main(["bench", "--model", model, "--methods", "none,fewer-steps,teacache,mixcache", "--steps", "8", "--prompts", "2", "--out", out, "--threads", "1", "--json"]);
    assert.equal(code, 0);
  } finally {
    process.stdout.write = so;
  }
  await buildReport(out);
  viewer = await startViewer(out);
});

after(async () => {
  await viewer?.close();
  if (base && !process.env.MIXCACHE_KEEP_REPORT) rmSync(base, { recursive: true, force: true });
});

test("the report in Chromium: Pareto chart and clips load; screenshot saved", { skip, timeout: 180_000 }, async (t) => {
  const { chromium } = await import("playwright-core");
  const profile = mkdtempSync(join(tmpdir(), "mixcache-chromium-profile-")); // a new, empty --user-data-dir
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1400, height: 1000 },
    timeout: 120_000,
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const failed: string[] = [];
    page.on("response", (r) => {
      if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`);
    });
    const res = await page.goto(viewer!.url, { waitUntil: "load", timeout: 60_000 });
    assert.equal(res?.status(), 200);
    assert.match(await page.title(), /MixCache bench report/);

    const pareto = page.locator("#pareto-chart");
    await pareto.waitFor({ state: "visible", timeout: 30_000 });
    const chart = await pareto.evaluate((el) => {
      const img = el as HTMLImageElement;
      const r = img.getBoundingClientRect();
      return { complete: img.complete, naturalWidth: img.naturalWidth, width: r.width, src: img.currentSrc };
    });
    assert.ok(chart.complete && chart.naturalWidth > 0, `Pareto chart loaded: ${JSON.stringify(chart)}`);
    assert.ok(chart.width >= 600, `the Pareto chart is prominent (${chart.width} px wide)`);
    assert.match(chart.src, /\/report\/plots\/pareto\.svg$/);

    const clips = await page.$$eval("img.clip-gif", (imgs) => imgs.map((i) => ({ src: (i as HTMLImageElement).currentSrc, w: (i as HTMLImageElement).naturalWidth, complete: (i as HTMLImageElement).complete })));
    assert.equal(clips.length, 2 * 4, "2 prompts x (reference + 3 default points)");
    for (const c of clips) assert.ok(c.complete && c.w > 0, `clip loaded: ${JSON.stringify(c)}`);
    assert.ok(clips.some((c) => c.src.endsWith("/report/clips/p0-ref.gif")));

    const plots = await page.$$eval("figure.plot img", (imgs) => imgs.map((i) => (i as HTMLImageElement).naturalWidth));
    assert.ok(plots.length >= 3 && plots.every((w) => w > 0), `every plot loaded: ${plots.join(", ")}`);
    assert.deepEqual(failed, [], "no failed requests");

    const shot = join(out, "report", "screenshot.png");
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(statSync(shot).size > 10_000);
    assert.deepEqual([...readFileSync(shot).subarray(1, 4)], [0x50, 0x4e, 0x47]);
    t.diagnostic(`screenshot: ${shot}`);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
