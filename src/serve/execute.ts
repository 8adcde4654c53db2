/**
 * Run one job on a warm model: the `generate()` API with the job's options, the result packed as a
 * safetensors file (src/serve/output.ts) and a JSON summary of the stats and the cache. Used by
 * the in-process backend and by `mixcache worker` alike. One generation at a time per process
 * (they are compute bound; two would only share the cores), queued on a small mutex.
 *
 * Cancellation and shutdown are checked between sampler steps: `interrupt()` returning a reason
 * makes the run throw a JobInterrupted with it.
 */
import { MixCacheError } from "../errors.ts";
import type { LoadedModel } from "../models/load.ts";
import { generate } from "../pipeline/generate.ts";
import { makeCache } from "../cache/registry.ts";
import { encodeVideoSafetensors } from "./output.ts";
import type { JobSpec } from "./spec.ts";

export interface JobStats {
  steps: number;
  sampled_steps: number;
  wall_ms: number;
  macs_full: number;
  macs_executed: number;
  compute_speedup: number;
  computed: { branches: number; blocks: number; modules: number };
  reused: { branches: number; blocks: number; modules: number };
  total: { branches: number; blocks: number; modules: number };
}

export interface CacheSummary {
  name: string;
  tag: string;
  peak_bytes: number;
  counters: Record<string, number>;
  warnings: string[];
}

export interface JobOutput {
  bytes: Uint8Array;
  stats: JobStats;
  cache: CacheSummary | null;
}

export type InterruptReason = "cancelled" | "requeue";

export class JobInterrupted extends Error {
  constructor(readonly reason: InterruptReason) {
    super(reason === "cancelled" ? "cancelled by request" : "interrupted to be requeued");
    this.name = "JobInterrupted";
  }
}

let chain: Promise<unknown> = Promise.resolve();

/** Run `fn` after every generation queued before it (one at a time per process). */
function serialized<T>(fn: () => Promise<T>): Promise<T> {
  const run = chain.then(fn, fn);
  chain = run.catch(() => undefined);
  return run;
}

export interface ExecuteHooks {
  onProgress?: (step: number, steps: number) => void;
  /** Checked before the run and after every step; a reason stops the run. */
  interrupt?: () => InterruptReason | null;
}

export function executeJob(spec: JobSpec, model: LoadedModel, hooks: ExecuteHooks = {}): Promise<JobOutput> {
  return serialized(async () => {
    const stop = hooks.interrupt?.();
    if (stop) throw new JobInterrupted(stop);
    const cache = makeCache(spec.cache, spec.cache_options, { profilesDir: model.profilesDir });
    const t0 = performance.now();
    const r = await generate({
      model, prompt: spec.prompt, negativePrompt: spec.negative, seed: spec.seed, steps: spec.steps,
      guidance: spec.guidance, shift: spec.shift, sampler: spec.sampler, cache,
      shape: { channels: model.config.in_channels, frames: spec.frames, height: spec.height, width: spec.width },
      onStep: (done, total) => {
        hooks.onProgress?.(done, total);
        const why = hooks.interrupt?.();
        if (why) throw new JobInterrupted(why);
      },
    });
    const wall = performance.now() - t0;
    if (r.video.channels !== 3) throw new MixCacheError("RUNTIME", `model ${model.name} returned ${r.video.channels} channels, not RGB`);
    const s = r.stats;
    const bytes = encodeVideoSafetensors(
      { ...r.video, channels: 3 },
      {
        format: "mixcache-video", prompt: spec.prompt, negative: spec.negative, model: model.name, seed: String(spec.seed),
        steps: String(r.steps), guidance: String(r.guidance), shift: String(r.shift), sampler: r.sampler, cache: cache.tag, fps: String(model.fps),
      },
    );
    return {
      bytes,
      stats: {
        steps: s.steps, sampled_steps: s.perStep.length, wall_ms: Math.round(wall), macs_full: s.macsFull, macs_executed: s.macsExecuted,
        compute_speedup: Number(s.computeSpeedup.toFixed(4)),
        computed: { branches: s.computed.branches, blocks: s.computed.blocks, modules: s.computed.modules },
        reused: s.reused, total: s.total,
      },
      cache: r.cache
        ? { name: r.cache.name, tag: r.cache.tag, peak_bytes: r.cache.peakBytes, counters: r.cache.counters, warnings: r.cache.warnings }
        : null,
    };
  });
}
