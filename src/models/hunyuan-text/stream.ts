/**
 * What the two streamed encoders share: the weight source (the umT5 encoder's: safetensors single
 * or sharded, F32/F16/BF16 converted on read, embedding rows read alone), checking a source's keys
 * and shapes against a config from the headers only, and one stage's session (read its weights,
 * build and serialise its graph, let the JS copies go, create the onnxruntime session).
 */
import { collectGarbage } from "../../util/gc.ts";
import { StageSession, type BackendOptions } from "../../backend/ort.ts";
import { WeightsError } from "../../errors.ts";
import type { Graph } from "../../graph/builder.ts";
import type { Umt5WeightSource } from "../umt5/weights.ts";
import type { WeightGetter } from "./graphs.ts";

/** A source of tensors read one at a time (CheckpointSource of src/models/umt5/weights.ts). */
export type WeightSource = Umt5WeightSource;

/** torch.finfo(torch.float32).min: the additive mask of hidden keys (transformers' eager masks). */
export const F32_MIN = -3.4028234663852886e38;

export interface StreamOptions extends BackendOptions {
  /** Keep every stage's session after the first call (memory: the whole encoder as fp32). */
  keepSessions?: boolean;
}

export interface LayerTiming {
  encoder: "llama" | "clip";
  /** Stage index: 0..n-1 layers, then the final norm when it runs. */
  layer: number;
  /** Stages this call runs. */
  stages: number;
  /** Read weights + build graph + serialise. */
  buildMs: number;
  /** onnxruntime session creation. */
  sessionMs: number;
  /** All inputs of the batch. */
  runMs: number;
}

/**
 * Check every expected key and shape (header only: no tensor data is read). `ignore` names keys a
 * checkpoint may hold beyond the model's (buffers, heads); anything else unexpected is an error.
 */
export function validateWeights(src: WeightSource, expected: ReadonlyMap<string, readonly number[]>, ignore: (key: string) => boolean, what: string, fix: string): void {
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const [k, shape] of expected) {
    if (!src.has(k)) {
      missing.push(`${k} [${shape}]`);
      continue;
    }
    const got = src.shape(k);
    if (got.length !== shape.length || got.some((d, j) => d !== shape[j])) wrong.push(`${k}: expected [${shape}], got [${got}]`);
  }
  const unexpected = src.keys().filter((k) => !expected.has(k) && !ignore(k));
  if (!missing.length && !wrong.length && !unexpected.length) return;
  const lines: string[] = [];
  const part = (title: string, xs: string[]) => {
    if (!xs.length) return;
    lines.push(`${xs.length} ${title}:`);
    for (const x of xs.slice(0, 8)) lines.push(`  ${x}`);
    if (xs.length > 8) lines.push(`  ... and ${xs.length - 8} more`);
  };
  part("missing", missing);
  part("with wrong shape", wrong);
  part("unexpected", unexpected);
  throw new WeightsError(src.path, undefined, `${what}:\n${lines.join("\n")}`, fix);
}

/** A weight getter that checks each tensor's size against the expected shapes. */
export function weightGetter(src: WeightSource, shapes: ReadonlyMap<string, readonly number[]>): WeightGetter {
  return (key) => {
    const v = src.read(key);
    const s = shapes.get(key);
    const n = s ? s.reduce((a, b) => a * b, 1) : -1;
    if (v.length !== n) throw new WeightsError(src.path, key, `${v.length} values, expected shape [${s}]`, "the weights do not match config.json");
    return v;
  };
}

/**
 * One stage's session: build the graph (reading its weights), serialise it, drop the graph and
 * collect garbage before onnxruntime copies the model (peak: two copies of the stage's weights,
 * not three). Prepacking pays off only when the session is kept (a streamed stage runs once).
 */
export async function createStage(build: () => Graph, opts: StreamOptions, timing: LayerTiming, onPhase?: () => void): Promise<StageSession> {
  let t0 = performance.now();
  let g: Graph | null = build();
  let bytes: Uint8Array | null = g.toModel();
  const name = g.name;
  onPhase?.();
  g = null;
  collectGarbage();
  timing.buildMs = performance.now() - t0;
  t0 = performance.now();
  const { keepSessions, ...backend } = opts;
  const s = await StageSession.create(name, bytes, { ...backend, prepack: opts.prepack ?? keepSessions === true });
  onPhase?.();
  bytes = null;
  collectGarbage();
  timing.sessionMs = performance.now() - t0;
  return s;
}
