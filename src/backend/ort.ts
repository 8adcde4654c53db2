/**
 * The only module that imports onnxruntime-node. Everything else talks to `Backend` and
 * `StageSession`: Float32Array in, Float32Array out. Device -> execution provider is one table.
 */
import * as ort from "onnxruntime-node";
import { MixCacheError } from "../errors.ts";

export type Device = "cpu";
const EXECUTION_PROVIDERS: Record<Device, string[]> = { cpu: ["cpu"] };

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

export interface Feed {
  data: Float32Array;
  dims: readonly number[];
}

export class StageSession {
  private constructor(
    readonly name: string,
    private readonly session: ort.InferenceSession,
  ) {}

  static async create(name: string, model: Uint8Array, opts: BackendOptions = {}): Promise<StageSession> {
    checkThreads(opts.threads);
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
      throw new MixCacheError("RUNTIME", `onnxruntime could not load stage graph ${name}: ${(e as Error).message}`, "this is a bug in the graph builder; please report it with the model config");
    }
  }

  /** Run the stage. Outputs are returned in the order of `outputNames`. */
  async run(feeds: Record<string, Feed>, outputNames: readonly string[]): Promise<Float32Array[]> {
    const t: Record<string, ort.Tensor> = {};
    for (const [k, f] of Object.entries(feeds)) t[k] = new ort.Tensor("float32", f.data, f.dims);
    let res: ort.InferenceSession.OnnxValueMapType;
    try {
      res = await this.session.run(t);
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
