/**
 * The layer order of src/ (README "Architecture map": "Dependencies point one way"), enforced.
 * Every import of every file under src/ counts, `import type` and `export ... from` included (a
 * type import that runs back up a layer ties the layers together just the same), and dynamic
 * `import("...")` too. Fails on a file that imports a higher layer, on a cycle between files, and
 * on a folder that is not in the table. Also `npm run check:layers`.
 *
 * To add a folder: give it a row in LAYERS (the lowest layer its imports allow, above everything
 * it imports), and list it in the README's dependency sentence in the same order.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(ROOT, "src");

/** Bottom to top: a file may import its own layer or a lower one. */
const LAYERS: ReadonlyArray<{ layer: string; members: readonly string[] }> = [
  { layer: "util", members: ["errors.ts", "util"] },
  { layer: "tensor", members: ["tensor"] },
  { layer: "data", members: ["data"] },
  { layer: "media", members: ["media"] },
  { layer: "backend", members: ["backend"] },
  { layer: "graph", members: ["graph"] },
  { layer: "weights", members: ["weights"] },
  { layer: "text", members: ["text"] },
  { layer: "schedulers", members: ["schedulers"] },
  { layer: "models", members: ["models"] },
  { layer: "pipeline", members: ["pipeline"] },
  { layer: "cache", members: ["cache"] },
  { layer: "metrics", members: ["metrics"] },
  { layer: "bench", members: ["bench"] },
  { layer: "serve", members: ["serve"] },
  { layer: "cli", members: ["cli"] },
  { layer: "api", members: ["index.ts"] },
];

const RANK = new Map<string, number>();
LAYERS.forEach((l, i) => l.members.forEach((m) => RANK.set(m, i)));

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|mts|cts)$/.test(e.name) && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out.sort();
}

/** The table's entry of a file: its top-level folder under src/, or its name for a top-level file. */
function memberOf(file: string): string {
  return relative(SRC, file).split(sep)[0];
}

/** Relative import specifiers of a file (static, type-only, re-exports and dynamic imports). */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
  return info.importedFiles.map((f) => f.fileName).filter((s) => s.startsWith("."));
}

function resolveImport(from: string, spec: string): string | null {
  const p = resolve(dirname(from), spec);
  for (const c of [p, `${p}.ts`, join(p, "index.ts")]) if (existsSync(c) && statSync(c).isFile()) return c;
  return null;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>(), on = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

test("src/ imports follow the layer order and have no cycles", () => {
  const files = sourceFiles(SRC);
  const rel = (f: string) => relative(ROOT, f);
  const unknown = [...new Set(files.map(memberOf).filter((m) => !RANK.has(m)))];
  assert.deepEqual(unknown, [], `src/ entries missing from the layer table in test/layers.test.ts: ${unknown.join(", ")}`);

  const graph = new Map<string, string[]>();
  const upward: string[] = [];
  const unresolved: string[] = [];
  let edges = 0;
  for (const f of files) {
    const targets: string[] = [];
    for (const spec of importsOf(f)) {
      const t = resolveImport(f, spec);
      if (!t) {
        unresolved.push(`${rel(f)}: "${spec}"`);
        continue;
      }
      if (!t.startsWith(SRC + sep)) continue; // package.json and other files outside src/
      edges++;
      targets.push(t);
      const from = RANK.get(memberOf(f))!, to = RANK.get(memberOf(t))!;
      if (to > from) upward.push(`${rel(f)} (${LAYERS[from].layer}) imports ${rel(t)} (${LAYERS[to].layer})`);
    }
    graph.set(f, targets);
  }
  const found = cycles(graph);
  const order = LAYERS.map((l) => l.layer).join(" -> ");
  console.log(`layers: ${files.length} files, ${edges} imports, ${LAYERS.length} layers (${order}); ${upward.length} upward imports, ${found.length} cycles`);
  assert.deepEqual(unresolved, [], "imports that resolve to no file");
  assert.deepEqual(upward, [], `imports against the layer order (${order}); move the shared type or function down to the lower layer`);
  assert.deepEqual(found.map((c) => c.map(rel).join(" <-> ")), [], "import cycles between files");
});
