/**
 * What the two HunyuanVideo text encoders share beyond the streaming of src/models/stream-stages.ts
 * (which the umT5 encoder uses too): the weight source (the umT5 encoder's: safetensors single or
 * sharded, F32/F16/BF16 converted on read, embedding rows read alone), the mask constant and the
 * per-stage timing.
 */
import type { Umt5WeightSource } from "../umt5/weights.ts";

export type { StreamOptions } from "../stream-stages.ts";

/** A source of tensors read one at a time (CheckpointSource of src/models/umt5/weights.ts). */
export type WeightSource = Umt5WeightSource;

/** torch.finfo(torch.float32).min: the additive mask of hidden keys (transformers' eager masks). */
export const F32_MIN = -3.4028234663852886e38;

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
