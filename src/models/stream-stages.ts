/**
 * What the streamed text encoders (umT5, Llama, CLIP) share: checking a weight source's keys and
 * shapes against a config from the headers only, a weight getter checked per tensor, one stage's
 * session (read its weights, build and serialise its graph, let the JS copies go, create the
 * onnxruntime session), the loop that runs a batch through the stages one at a time, and opening
 * an encoder's folder.
 */
import { join } from "node:path";
import { collectGarbage } from "../util/gc.ts";
import { StageSession, type BackendOptions, type Feed } from "../backend/ort.ts";
import { WeightsError } from "../errors.ts";
import type { Graph } from "../graph/builder.ts";
import { CheckpointSource, type Umt5WeightSource } from "./umt5/weights.ts";

export interface StreamOptions extends BackendOptions {
  /** Keep every stage's session after the first call (memory: the whole encoder as fp32). */
  keepSessions?: boolean;
}

/** What a stage's timing holds at least. */
export interface StageTiming {
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
export function validateWeights(src: Umt5WeightSource, expected: ReadonlyMap<string, readonly number[]>, ignore: (key: string) => boolean, what: string, fix: string): void {
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
export function weightGetter(src: Umt5WeightSource, shapes: ReadonlyMap<string, readonly number[]>): (key: string) => Float32Array {
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
 * not three). Prepacking (a re-layout of every MatMul weight) pays off over many runs; a streamed
 * stage runs once per batch, so it is off unless the sessions are kept (measured on umT5-XXL
 * layers: session creation 4.0 s -> 0.8 s, run time unchanged).
 */
export async function createStage(build: () => Graph, opts: StreamOptions, timing: StageTiming, onPhase?: () => void): Promise<StageSession> {
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

/**
 * Run every item through stages 0..n-1 in turn, output y replacing input x: each stage's session
 * (`session` makes it, or returns a kept one) runs the whole batch, then is released unless
 * `keep`. `onLayer` gets each stage's timing, `onPhase` every phase boundary.
 */
export async function runStages<I extends { x: Float32Array }, T extends StageTiming>(
  n: number,
  items: readonly I[],
  stage: {
    timing: (i: number) => T;
    session: (i: number, timing: T, onPhase?: () => void) => Promise<StageSession>;
    feeds: (i: number, it: I) => Record<string, Feed>;
    keep: boolean;
  },
  opts: { onLayer?: (t: T) => void; onPhase?: () => void },
): Promise<void> {
  for (let i = 0; i < n; i++) {
    const timing = stage.timing(i);
    const s = await stage.session(i, timing, opts.onPhase);
    const t0 = performance.now();
    try {
      for (const it of items) {
        [it.x] = await s.run(stage.feeds(i, it), ["y"]);
        opts.onPhase?.();
      }
    } finally {
      if (!stage.keep) await s.release();
    }
    timing.runMs = performance.now() - t0;
    opts.onLayer?.(timing);
  }
}

/**
 * An encoder of a transformers folder: config.json + model.safetensors (or sharded with its
 * index), headers only read; the files are closed again when `make` throws.
 */
export function openEncoder<C, E>(dir: string, readConfig: (path: string) => C, make: (config: C, src: CheckpointSource) => E): E {
  const config = readConfig(join(dir, "config.json"));
  const src = CheckpointSource.open(dir);
  try {
    return make(config, src);
  } catch (e) {
    src.close();
    throw e;
  }
}
