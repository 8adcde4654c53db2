/**
 * Tensor files shared with diffusers: the inputs a WanPipeline run can take instead of making them
 * (the initial noise `latents`, `prompt_embeds`, `negative_prompt_embeds`) and the result of a run
 * (the decoded `video` and the final `latent`), all as .safetensors.
 *
 * Inputs are checked from the header before any data is read: one tensor in the file (or one
 * under the expected name), a float dtype (F32, F16, BF16, F64; converted to float32), the shape
 * with an optional leading batch axis of 1, then every value finite. Every problem is a
 * UsageError naming the flag, the file and the fix.
 *
 * From diffusers (PyTorch): `safetensors.torch.save_file({"latents": latents.float().contiguous()}, "noise.safetensors")`,
 * `save_file({"prompt_embeds": prompt_embeds[0].float()}, "prompt.safetensors")`.
 */
import { UsageError, WeightsError } from "../errors.ts";
import { openSafetensors, writeSafetensors, type SafetensorsFile } from "../weights/safetensors.ts";
import type { LatentShape } from "../models/types.ts";
import type { TextEmbedding } from "../text/types.ts";

const FLOAT_DTYPES = ["F32", "F16", "BF16", "F64"];

/** Most text tokens an embedding file may have (WanPipeline: 512). */
export const MAX_TEXT_TOKENS = 4096;

interface Picked {
  file: SafetensorsFile;
  key: string;
  shape: number[];
}

function pick(flag: string, path: string, names: readonly string[]): Picked {
  let file: SafetensorsFile;
  try {
    file = openSafetensors(path);
  } catch (e) {
    if (e instanceof WeightsError) throw new UsageError(`${flag} ${path}: ${e.message.split("\n")[0]}`, e.fix ?? "pass a .safetensors file");
    throw e;
  }
  const keys = file.keys();
  const key = keys.length === 1 ? keys[0] : names.find((n) => keys.includes(n));
  if (key === undefined) {
    file.close();
    throw new UsageError(
      `${flag} ${path} holds ${keys.length === 0 ? "no tensor" : `${keys.length} tensors (${keys.slice(0, 6).join(", ")}${keys.length > 6 ? ", ..." : ""})`} and none is named ${names.join(" or ")}`,
      `save one tensor, or name it ${names[0]}`,
    );
  }
  const info = file.info(key);
  if (!FLOAT_DTYPES.includes(info.dtype)) {
    file.close();
    throw new UsageError(`${flag} ${path}: tensor ${key} has dtype ${info.dtype}, not a float`, "save it as float32 (tensor.float()); F16 and BF16 are converted too");
  }
  return { file, key, shape: info.shape };
}

function readFinite(flag: string, path: string, p: Picked): Float32Array {
  try {
    const data = p.file.readF32(p.key);
    for (let i = 0; i < data.length; i++)
      if (!Number.isFinite(data[i])) throw new UsageError(`${flag} ${path}: tensor ${p.key} holds a non-finite value at index ${i}`, "save finite values (no NaN or Inf)");
    return data;
  } finally {
    p.file.close();
  }
}

/** Drop a leading batch axis of 1: [1, ...dims] -> dims. */
function unbatch(flag: string, path: string, p: Picked, rank: number, want: string): number[] {
  const s = p.shape;
  if (s.length === rank + 1) {
    if (s[0] !== 1) {
      p.file.close();
      throw new UsageError(`${flag} ${path}: tensor ${p.key} has a batch of ${s[0]} ([${s}]); one video is made per run`, `save one batch entry: ${want} or [1, ...]`);
    }
    return s.slice(1);
  }
  if (s.length !== rank) {
    p.file.close();
    throw new UsageError(`${flag} ${path}: tensor ${p.key} has shape [${s}], expected ${want} (or with a leading batch axis of 1)`, `save a ${want} tensor`);
  }
  return s;
}

/** The latent shape a --latents file declares (header only: its data is read by readLatents). */
export function latentsFileShape(path: string, channels: number, flag = "--latents"): LatentShape {
  const p = pick(flag, path, ["latents", "latent"]);
  const [C, F, H, W] = unbatch(flag, path, p, 4, "[C, F, H, W]");
  p.file.close();
  if (C !== channels) throw new UsageError(`${flag} ${path}: ${C} channels ([${p.shape}]), the transformer takes ${channels}`, `the dims are [${channels}, F, H, W] (or [1, ${channels}, F, H, W]): WanPipeline's latents`);
  if ([F, H, W].some((d) => d < 1)) throw new UsageError(`${flag} ${path}: empty latent [${p.shape}]`);
  return { channels: C, frames: F, height: H, width: W };
}

/** An initial latent of exactly `shape` ([C, F, H, W] or [1, C, F, H, W]). */
export function readLatents(path: string, shape: LatentShape, flag = "--latents"): Float32Array {
  const got = latentsFileShape(path, shape.channels, flag);
  if (got.frames !== shape.frames || got.height !== shape.height || got.width !== shape.width)
    throw new UsageError(
      `${flag} ${path}: latent [${got.channels}, ${got.frames}, ${got.height}, ${got.width}] does not match the run's latent [${shape.channels}, ${shape.frames}, ${shape.height}, ${shape.width}]`,
      "drop --frames / --height / --width (the latents set the size) or pass latents of that size",
    );
  const p = pick(flag, path, ["latents", "latent"]);
  return readFinite(flag, path, p);
}

/** A prompt embedding [S, text_dim] (or [1, S, text_dim]), e.g. diffusers' prompt_embeds. */
/**
 * A prompt embedding file. Families conditioned on a pooled vector too (HunyuanVideo, pooledDim
 * 768) read it from the same file (`pooled_prompt_embeds`, [768] or [1, 768]) and, when present,
 * the attention mask (`prompt_attention_mask`, [S] or [1, S], saved as float: 1 real, 0 padding).
 */
export function readEmbedding(path: string, textDim: number, flag = "--prompt-embeds", names: readonly string[] = ["prompt_embeds"], pooledDim: number | null = null): TextEmbedding {
  const e = readEmbeddingData(path, textDim, flag, names);
  if (pooledDim === null) return e;
  const neg = names[0].startsWith("negative_");
  const pooledNames = neg ? ["negative_pooled_prompt_embeds", "pooled_prompt_embeds"] : ["pooled_prompt_embeds"];
  const maskNames = neg ? ["negative_prompt_attention_mask", "prompt_attention_mask"] : ["prompt_attention_mask"];
  const has = (n: readonly string[]) => {
    const f = openSafetensors(path);
    try {
      return f.keys().some((k) => n.includes(k));
    } finally {
      f.close();
    }
  };
  if (!has(pooledNames))
    throw new UsageError(`${flag} ${path} has no ${pooledNames[0]}: this model is also conditioned on the pooled text vector`, `save it in the same file: save_file({"${names[0]}": ..., "${pooledNames[0]}": pooled.float(), "${maskNames[0]}": mask.float()}, "${path}")`);
  const pp = pick(flag, path, pooledNames);
  const [P] = unbatch(flag, path, pp, 1, `[${pooledDim}]`);
  if (P !== pooledDim) {
    pp.file.close();
    throw new UsageError(`${flag} ${path}: ${pp.key} has ${P} values, the transformer's pooled_projection_dim is ${pooledDim}`, `save the pooled text vector of this model's text encoder: [${pooledDim}]`);
  }
  e.pooled = readFinite(flag, path, pp);
  if (has(maskNames)) {
    const mp = pick(flag, path, maskNames);
    const [M] = unbatch(flag, path, mp, 1, `[${e.tokens}]`);
    if (M !== e.tokens) {
      mp.file.close();
      throw new UsageError(`${flag} ${path}: ${mp.key} has ${M} values for ${e.tokens} text tokens`, `save the mask of the same prompt: [${e.tokens}]`);
    }
    const m = readFinite(flag, path, mp);
    e.mask = Uint8Array.from(m, (x) => (x !== 0 ? 1 : 0));
  }
  return e;
}

function readEmbeddingData(path: string, textDim: number, flag: string, names: readonly string[]): TextEmbedding {
  const p = pick(flag, path, names);
  const [S, D] = unbatch(flag, path, p, 2, `[S, ${textDim}]`);
  if (D !== textDim) {
    p.file.close();
    throw new UsageError(`${flag} ${path}: embedding width ${D} ([${p.shape}]) does not match the transformer's text_dim ${textDim}`, `pass the text encoder's output for this model: [S, ${textDim}] (WanPipeline: [512, 4096])`);
  }
  if (S < 1 || S > MAX_TEXT_TOKENS) {
    p.file.close();
    throw new UsageError(`${flag} ${path}: ${S} text tokens, expected 1..${MAX_TEXT_TOKENS}`, "WanPipeline's embeddings have 512");
  }
  return { data: readFinite(flag, path, p), tokens: S };
}

export interface ResultTensors {
  /** Decoded video [3, T, H, W] (absent when the model has no VAE). */
  video?: { data: Float32Array; channels: number; frames: number; height: number; width: number };
  latent: { data: Float32Array; channels: number; frames: number; height: number; width: number };
  metadata: Record<string, string>;
}

/** Write a run's result: `video` F32 [3, T, H, W] (when decoded) and `latent` F32 [C, F, H, W], with string metadata. */
export function writeResultSafetensors(path: string, r: ResultTensors): void {
  const t = (v: NonNullable<ResultTensors["video"]>) => ({ dtype: "F32" as const, shape: [v.channels, v.frames, v.height, v.width], data: v.data });
  writeSafetensors(path, { ...(r.video ? { video: t(r.video) } : {}), latent: t(r.latent) }, r.metadata);
}
