/**
 * The report's machine section: this machine's runtime numbers (bench/runtime.ts: GEMM ceiling,
 * reference-model forward throughput, per-call overhead) and, when PyTorch is installed for
 * /usr/bin/python3, the same model's forward timed in PyTorch eager in the same run
 * (tools/torch_forward_bench.py), stored together as DIR/runtime.json:
 *
 *   { threads, node, gemm: {MxKxN: GFLOP/s}, gemmCeiling, reference: {forwardMs, gflops, tokens, ...},
 *     overhead: {perCallMs, callsPerForward, shareOfForward}, wan13b?: {...},
 *     torch?: {forward_ms, threads, by_threads, torch, tokens, params, weights, iters} | {error},
 *     measuredAt, command }
 *
 * Both run as child processes (the ORT numbers must not share a process with a loaded model).
 */
import { existsSync, readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { availableParallelism, cpus, totalmem } from "node:os";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { defaultThreads, ortVersion } from "../backend/ort.ts";
import { MixCacheError } from "../errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import type { BenchResults } from "./results.ts";

export const RUNTIME_JSON = "runtime.json";
const PYTHON = "/usr/bin/python3";

const RUNTIME_SCRIPT = fileURLToPath(new URL("../../bench/runtime.ts", import.meta.url));
const TORCH_SCRIPT = fileURLToPath(new URL("../../tools/torch_forward_bench.py", import.meta.url));

/** What bench/runtime.ts writes with --json, plus the PyTorch comparison. */
export interface RuntimeNumbers {
  threads?: number;
  node?: string;
  gemm?: Record<string, number>;
  gemmCeiling?: number;
  reference?: { tokens: number; params: number; forwardMs: number; gflops: number; macs: number; moduleCalls: number; loadMs: number; fractionOfCeiling: number; fractionOfSameShapeGemm?: number };
  overhead?: { perCallMs: number; callsPerForward: number; shareOfForward: number };
  wan13b?: { tokens: number; params: number; forwardMs: number; gflops: number; peakRss: number; weightBytes: number; fractionOfCeiling: number; peakOverWeights: number; loadMs: number };
  /** forward_ms at `threads`, the faster of 1 and the requested thread count (by_threads: both) */
  torch?: { forward_ms: number; threads: number; by_threads?: Record<string, number>; torch?: string; tokens?: number; params?: number; weights?: string; iters?: number } | { error: string };
  measuredAt?: string;
  command?: string;
}

export function readRuntime(dir: string): RuntimeNumbers | null {
  const p = join(dir, RUNTIME_JSON);
  if (!existsSync(p)) return null;
  try {
    const v = JSON.parse(readFileSync(p, "utf8")) as unknown;
    return v && typeof v === "object" && !Array.isArray(v) ? (v as RuntimeNumbers) : null;
  } catch {
    return null;
  }
}

/** True when /usr/bin/python3 can import torch. */
export function hasTorch(python = PYTHON): boolean {
  if (!existsSync(python)) return false;
  const r = spawnSync(python, ["-c", "import torch"], { stdio: "ignore", timeout: 120_000 });
  return r.status === 0;
}

/** The tsx loader as a URL, so the child runs from any working directory. */
function tsxImport(): string {
  try {
    return import.meta.resolve("tsx");
  } catch {
    return "tsx";
  }
}

export interface MeasureOptions {
  /** Threads for both runtimes (default: bench/runtime.ts's default, all cores up to 8). */
  threads?: number;
  /** Also time the PyTorch eager forward when torch is importable (default true). */
  torch?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** Run bench/runtime.ts (GEMMs and the reference forward only) and the PyTorch comparison; write and return DIR/runtime.json. */
export function measureMachine(outDir: string, o: MeasureOptions = {}): RuntimeNumbers {
  const path = join(outDir, RUNTIME_JSON);
  const SKIP = ["--skip-1.3b", "--skip-strategies", "--skip-attn", "--skip-torch", "--skip-components"];
  const args = ["--import", tsxImport(), RUNTIME_SCRIPT, ...SKIP, "--json", path];
  if (o.threads !== undefined) args.push("--threads", String(o.threads));
  o.log?.(`measuring the runtime: node ${["bench/runtime.ts", ...args.slice(3)].join(" ")}`);
  const r = spawnSync(process.execPath, args, { encoding: "utf8", maxBuffer: 1 << 22, timeout: 15 * 60_000 });
  if (r.status !== 0 || !existsSync(path))
    throw new MixCacheError("RUNTIME", `bench/runtime.ts failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout || "").trim().slice(-2000)}`, "run `npm run bench:runtime` to see the failure");
  const out = readRuntime(outDir);
  if (!out) throw new MixCacheError("RUNTIME", `bench/runtime.ts wrote no readable ${path}`);
  out.command = `node --import tsx bench/runtime.ts ${SKIP.join(" ")} --json ${path}${o.threads !== undefined ? ` --threads ${o.threads}` : ""}`;
  out.measuredAt = new Date().toISOString();
  if (o.torch !== false && hasTorch()) {
    const threads = o.threads ?? out.threads;
    const targs = [TORCH_SCRIPT, ...(threads ? ["--threads", String(threads)] : [])];
    o.log?.(`timing the PyTorch eager forward: ${PYTHON} tools/torch_forward_bench.py ${targs.slice(1).join(" ")}`);
    const t = spawnSync(PYTHON, targs, { encoding: "utf8", maxBuffer: 1 << 20, timeout: 10 * 60_000 });
    try {
      if (t.status !== 0) throw new Error((t.stderr || "").trim().slice(-1000) || `exit ${t.status ?? t.signal}`);
      const j = JSON.parse(t.stdout.trim().split("\n").pop()!) as { forward_ms: number; threads: number };
      if (typeof j.forward_ms !== "number" || !Number.isFinite(j.forward_ms)) throw new Error(`no forward_ms in ${t.stdout.trim()}`);
      out.torch = j;
    } catch (e) {
      out.torch = { error: `tools/torch_forward_bench.py failed: ${(e as Error).message}` };
    }
  }
  writeFileAtomic(path, JSON.stringify(out, null, 1) + "\n");
  return out;
}

/** The machine a bench ran on (results.json `machine`): cores, memory, node, onnxruntime and its threads. */
export function machineInfo(threads: number | undefined): BenchResults["machine"] {
  const c = cpus();
  return {
    cpus: c.length, availableParallelism: availableParallelism(), cpuModel: c[0]?.model?.trim() ?? "unknown", memoryGB: Number((totalmem() / 2 ** 30).toFixed(1)),
    node: process.version, platform: process.platform, arch: process.arch, ortThreads: threads ?? defaultThreads(), onnxruntime: ortVersion,
  };
}

/** This package's version (package.json), or null when it cannot be read. */
export function toolVersion(): string | null {
  try {
    return (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return null;
  }
}
