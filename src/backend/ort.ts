/**
 * The only module that imports onnxruntime-node. Everything else talks to `Backend` and
 * `StageSession`: Float32Array in, Float32Array out. Device -> execution provider is one table.
 */
import * as ort from "onnxruntime-node";
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { MixCacheError } from "../errors.ts";

export const DEVICES = ["cpu", "cuda"] as const;
export type Device = (typeof DEVICES)[number];
/** cuda: onnxruntime's CUDA execution provider, with the CPU one for operators it lacks. */
const EXECUTION_PROVIDERS: Record<Device, string[]> = { cpu: ["cpu"], cuda: ["cuda", "cpu"] };

/** Where onnxruntime-node keeps its native libraries for this platform (the CUDA provider's too). */
function bindingDir(): string | null {
  try {
    const root = dirname(createRequire(import.meta.url).resolve("onnxruntime-node/package.json"));
    const bin = join(root, "bin");
    for (const napi of existsSync(bin) ? readdirSync(bin).filter((d) => d.startsWith("napi-v")).sort().reverse() : []) {
      const d = join(bin, napi, process.platform, process.arch);
      if (existsSync(d)) return d;
    }
  } catch {
    // not resolvable: the import above would have failed first
  }
  return null;
}

/**
 * Check before any session is built that `device` can run here. CUDA needs onnxruntime-node's CUDA
 * provider library, which its installer fetches only when asked (it is not in the npm package):
 * the error says how to install it and which CUDA / cuDNN libraries it loads.
 */
export function checkDevice(device: string | undefined): asserts device is Device | undefined {
  if (device === undefined || device === "cpu") return;
  if (!(DEVICES as readonly string[]).includes(device))
    throw new MixCacheError("USAGE", `unknown device ${JSON.stringify(device)}`, `use one of: ${DEVICES.join(", ")}`);
  if (process.platform !== "linux" && process.platform !== "win32")
    throw new MixCacheError("USAGE", `device cuda: onnxruntime-node has no CUDA provider for ${process.platform}`, "use --device cpu");
  const dir = bindingDir();
  const lib = process.platform === "win32" ? "onnxruntime_providers_cuda.dll" : "libonnxruntime_providers_cuda.so";
  if (!dir || !existsSync(join(dir, lib)))
    throw new MixCacheError(
      "USAGE",
      `device cuda: onnxruntime-node's CUDA execution provider is not installed (${lib} is not in ${dir ?? "onnxruntime-node/bin"})`,
      "install it with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci` (or `npm install onnxruntime-node --onnxruntime-node-install=cuda12`) on a machine with an NVIDIA driver and the CUDA 12 runtime and cuDNN 9 libraries on the library path; or use --device cpu",
    );
}

export interface BackendOptions {
  device?: Device;
  /** Intra-op threads per session (default: all cores, up to 8). */
  threads?: number;
  /** Let idle pool threads spin (default false: with one session per module, spinning pools of
   * idle sessions steal the cores from the running one; measured 3-5x slower steps). */
  spinning?: boolean;
  /** Per-session CPU memory arena (default false: with one session per module, 4 x num_layers
   * arenas each keep their peak activations, which dominated memory on large configs). */
  arena?: boolean;
  /** Pre-pack MatMul weights (default true; false saves the packed copy's memory). */
  prepack?: boolean;
}

/**
 * Per-step stages on small activations (a patch embedding, a head) run on one thread: a second
 * one only adds its wake-up. Measured on the reference model's grid (256 tokens x 128, 32 Ki
 * values): head 112 vs 123 us per call, patch 90 vs 97 us at 1 vs 2 threads; level at 128 Ki
 * values, and 2 threads ahead from 512 Ki (head 1718 vs 1444 us).
 */
export const SMALL_STAGE_ELEMENTS = 131072;

/** `opts` with one intra-op thread when the stage's largest activation has at most
 * SMALL_STAGE_ELEMENTS values, else unchanged. */
export function stageOptions(opts: BackendOptions, elements: number): BackendOptions {
  return elements <= SMALL_STAGE_ELEMENTS ? { ...opts, threads: 1 } : opts;
}

export interface Feed {
  data: Float32Array;
  dims: readonly number[];
}

let callTimer: ((stage: string, ms: number) => void) | null = null;

/** Call `timer` with the stage name and wall time of every session run from now on (null: stop).
 * For benchmarks: which share of a run is spent inside onnxruntime, and in which stages. */
export function timeStageCalls(timer: ((stage: string, ms: number) => void) | null): void {
  callTimer = timer;
}

export class StageSession {
  private constructor(
    readonly name: string,
    private readonly session: ort.InferenceSession,
  ) {}

  static async create(name: string, model: Uint8Array, opts: BackendOptions = {}): Promise<StageSession> {
    checkThreads(opts.threads);
    checkDevice(opts.device);
    const device = opts.device ?? "cpu";
    const providers = EXECUTION_PROVIDERS[device];
    if (!providers) throw new MixCacheError("USAGE", `unknown device ${device}`, `use one of: ${Object.keys(EXECUTION_PROVIDERS).join(", ")}`);
    try {
      const session = await ort.InferenceSession.create(model, {
        executionProviders: providers,
        graphOptimizationLevel: "all",
        executionMode: "sequential",
        intraOpNumThreads: opts.threads ?? defaultThreads(),
        interOpNumThreads: 1,
        enableCpuMemArena: opts.arena ?? false,
        enableMemPattern: true,
        extra: {
          session: {
            intra_op: { allow_spinning: opts.spinning ? "1" : "0" },
            inter_op: { allow_spinning: "0" },
            disable_prepacking: opts.prepack === false ? "1" : "0",
          },
        },
      });
      return new StageSession(name, session);
    } catch (e) {
      const msg = (e as Error).message;
      // the CUDA provider library is there, but the CUDA / cuDNN libraries it loads are not
      if (device === "cuda" && /cuda|cudnn|cublas|providers_shared|\.so/i.test(msg))
        throw new MixCacheError("RUNTIME", `device cuda: onnxruntime could not start its CUDA provider: ${msg}`, "install the NVIDIA driver, the CUDA 12 runtime (libcudart, libcublas, libcufft) and cuDNN 9, and put them on LD_LIBRARY_PATH; or use --device cpu");
      throw new MixCacheError("RUNTIME", `onnxruntime could not load stage graph ${name}: ${msg}`, "this is a bug in the graph builder; please report it with the model config");
    }
  }

  /**
   * Run the stage. Outputs are returned in the order of `outputNames`. `into[i]`, when given, is a
   * pre-allocated array with output i's exact shape: onnxruntime writes the output there (the
   * binding's pre-allocated fetches) and its data is returned, instead of a new array.
   */
  async run(feeds: Record<string, Feed>, outputNames: readonly string[], into?: readonly (Feed | undefined)[]): Promise<Float32Array[]> {
    if (!callTimer) return this.runOnce(feeds, outputNames, into);
    const timer = callTimer;
    const t0 = performance.now();
    try {
      return await this.runOnce(feeds, outputNames, into);
    } finally {
      timer(this.name, performance.now() - t0);
    }
  }

  private async runOnce(feeds: Record<string, Feed>, outputNames: readonly string[], into?: readonly (Feed | undefined)[]): Promise<Float32Array[]> {
    const t: Record<string, ort.Tensor> = {};
    for (const [k, f] of Object.entries(feeds)) t[k] = new ort.Tensor("float32", f.data, f.dims);
    let res: ort.InferenceSession.OnnxValueMapType;
    try {
      if (into?.some((a) => a)) {
        const fetches: Record<string, ort.Tensor | null> = {};
        outputNames.forEach((n, i) => (fetches[n] = into[i] ? new ort.Tensor("float32", into[i]!.data, into[i]!.dims) : null));
        res = await this.session.run(t, fetches);
        return outputNames.map((n, i) => into[i]?.data ?? (res[n].data as Float32Array));
      }
      // name the fetches: without them the binding copies every graph output into a new array
      // (a fused block session has six, of which the plain forward reads one)
      res = await this.session.run(t, outputNames as string[]);
    } catch (e) {
      throw new MixCacheError("RUNTIME", `stage ${this.name} failed: ${(e as Error).message}`, "check the input shapes against the model config");
    }
    return outputNames.map((n) => {
      const v = res[n];
      if (!v) throw new MixCacheError("RUNTIME", `stage ${this.name} produced no output ${n}`);
      return v.data as Float32Array;
    });
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

import { availableParallelism } from "node:os";
export function defaultThreads(): number {
  return Math.max(1, Math.min(8, availableParallelism()));
}

/**
 * Most intra-op threads per session: 4 x the cores. Every stage has its own session and thread
 * pool (4 x num_layers + 4 of them), so a huge count creates that many threads per session and
 * exhausts memory before anything runs; more threads than cores only wait on each other.
 */
export function maxThreads(): number {
  return 4 * Math.max(1, availableParallelism());
}

/** The one rule for a thread count (CLI --threads and the API's BackendOptions.threads). */
export function checkThreads(threads: number | undefined): void {
  if (threads === undefined) return;
  const max = maxThreads();
  if (!Number.isInteger(threads) || threads < 1 || threads > max)
    throw new MixCacheError("USAGE", `threads must be an integer in 1..${max} (4 x ${availableParallelism()} cores), got ${threads}`, `omit it for the default (${defaultThreads()}: the cores, at most 8) or pass 1..${max}`);
}

/** The version of onnxruntime-node (the one lookup; null when the binding does not say). */
export const ortVersion: string | null = (ort.env as { versions?: { node?: string } }).versions?.node ?? null;
