/**
 * The CLIP-L text encoder's config: the fields of transformers' `CLIPTextConfig`
 * (text_encoder_2/config.json of a diffusers HunyuanVideoPipeline folder, a `CLIPTextModel`) that
 * the forward uses, read strictly, and the key names of CLIPTextModel's state dict.
 */
import { ConfigError } from "../../errors.ts";
import { readJsonConfig } from "./llama-config.ts";

export type ClipActivation = "quick_gelu" | "gelu" | "gelu_new" | "gelu_pytorch_tanh";

export interface ClipTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: ClipActivation;
  layer_norm_eps: number;
  /** The pooled output's token (CLIPTextTransformer: see clipPoolIndex). */
  eos_token_id: number;
}

/** openai/clip-vit-large-patch14's text model (HunyuanVideo's text_encoder_2). Its config keeps the
 * legacy eos_token_id 2; the tokenizer's "<|endoftext|>" is 49407. */
export const CLIP_L: ClipTextConfig = {
  vocab_size: 49408,
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  max_position_embeddings: 77,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  eos_token_id: 2,
};

const FIX = "use the text_encoder_2/config.json of a HunyuanVideo diffusers folder (a transformers CLIPTextModel config)";
const ACTS: readonly string[] = ["quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh"];
const MAX: Record<string, number> = {
  vocab_size: 1 << 22,
  hidden_size: 65536,
  intermediate_size: 1 << 20,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  max_position_embeddings: 1 << 20,
};

/** CLIPTextConfig defaults for fields a config.json may leave out. */
const DEFAULTS: Record<string, unknown> = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  eos_token_id: 49407,
};

export function parseClipTextConfig(raw: unknown, source = "config.json"): ClipTextConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ConfigError(`${source}: expected a JSON object`, FIX);
  const o = raw as Record<string, unknown>;
  if (o.model_type !== undefined && o.model_type !== "clip_text_model") {
    if (o.model_type === "clip")
      throw new ConfigError(`${source}: this is a full CLIPModel config (model_type "clip"), not a CLIPTextModel`, "use the text_encoder_2/ folder of a HunyuanVideo diffusers checkpoint (CLIPTextModel: model_type \"clip_text_model\")");
    throw new ConfigError(`${source}: model_type is ${JSON.stringify(o.model_type)}, not "clip_text_model"`, FIX);
  }
  // size fields that differ between CLIP sizes must be given; the rest default as CLIPTextConfig does
  for (const k of ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"])
    if (o[k] === undefined) throw new ConfigError(`${source}: missing field "${k}"`, FIX);
  const c: Record<string, unknown> = { ...DEFAULTS };
  for (const k of Object.keys(DEFAULTS)) if (o[k] !== undefined && o[k] !== null) c[k] = o[k];
  for (const [k, max] of Object.entries(MAX)) {
    const v = c[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > max) throw new ConfigError(`${source}: ${k} must be an integer in 1..${max}, got ${JSON.stringify(v)}`, FIX);
  }
  const D = c.hidden_size as number, H = c.num_attention_heads as number;
  if (D % H !== 0) throw new ConfigError(`${source}: hidden_size (${D}) must be a multiple of num_attention_heads (${H})`, FIX);
  if (!ACTS.includes(c.hidden_act as string))
    throw new ConfigError(`${source}: hidden_act ${JSON.stringify(c.hidden_act)} is not supported`, `CLIP-L uses "quick_gelu" (x * sigmoid(1.702 x)); supported: ${ACTS.join(", ")}`);
  const eps = c.layer_norm_eps;
  if (typeof eps !== "number" || !(eps > 0 && eps < 1)) throw new ConfigError(`${source}: layer_norm_eps must be in (0, 1), got ${JSON.stringify(eps)}`, FIX);
  const eos = c.eos_token_id;
  if (typeof eos !== "number" || !Number.isInteger(eos) || eos < 0) throw new ConfigError(`${source}: eos_token_id must be a non-negative integer, got ${JSON.stringify(eos)}`, FIX);
  return c as unknown as ClipTextConfig;
}

export function readClipTextConfig(path: string): ClipTextConfig {
  return parseClipTextConfig(readJsonConfig(path, "point at the text_encoder_2/ folder of a HunyuanVideo diffusers checkpoint (config.json + model.safetensors)"), path);
}

const P = "text_model.";
export const CLIP_TOKEN_EMBED = `${P}embeddings.token_embedding.weight`;
export const CLIP_POSITION_EMBED = `${P}embeddings.position_embedding.weight`;
/** A non-persistent buffer older checkpoints saved; ignored. */
export const CLIP_POSITION_IDS = `${P}embeddings.position_ids`;
export const CLIP_FINAL_NORM = `${P}final_layer_norm`;

export function clipLayerKeys(i: number) {
  const p = `${P}encoder.layers.${i}.`;
  return {
    norm1: `${p}layer_norm1`,
    q: `${p}self_attn.q_proj`,
    k: `${p}self_attn.k_proj`,
    v: `${p}self_attn.v_proj`,
    o: `${p}self_attn.out_proj`,
    norm2: `${p}layer_norm2`,
    fc1: `${p}mlp.fc1`,
    fc2: `${p}mlp.fc2`,
  };
}

/** Every tensor of CLIPTextModel with its shape. */
export function clipExpectedShapes(c: ClipTextConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const D = c.hidden_size, I = c.intermediate_size;
  m.set(CLIP_TOKEN_EMBED, [c.vocab_size, D]);
  m.set(CLIP_POSITION_EMBED, [c.max_position_embeddings, D]);
  const lin = (name: string, out: number, inp: number) => {
    m.set(`${name}.weight`, [out, inp]);
    m.set(`${name}.bias`, [out]);
  };
  const norm = (name: string) => {
    m.set(`${name}.weight`, [D]);
    m.set(`${name}.bias`, [D]);
  };
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const k = clipLayerKeys(i);
    norm(k.norm1);
    lin(k.q, D, D);
    lin(k.k, D, D);
    lin(k.v, D, D);
    lin(k.o, D, D);
    norm(k.norm2);
    lin(k.fc1, I, D);
    lin(k.fc2, D, I);
  }
  norm(CLIP_FINAL_NORM);
  return m;
}

export function clipLayerParameters(c: ClipTextConfig): number {
  const D = c.hidden_size, I = c.intermediate_size;
  return 4 * (D * D + D) + 4 * D + 2 * I * D + I + D;
}

export function clipParameterCount(c: ClipTextConfig): number {
  return (c.vocab_size + c.max_position_embeddings) * c.hidden_size + c.num_hidden_layers * clipLayerParameters(c) + 2 * c.hidden_size;
}

/**
 * Which position's final_layer_norm output is the pooled output, as transformers'
 * CLIPTextTransformer.forward picks it (models/clip/modeling_clip.py): when the ids' largest value
 * is 49407 (the original CLIP vocabulary's "<|endoftext|>", the highest id) it takes argmax(ids),
 * the first occurrence of that id; otherwise the first position of config.eos_token_id (0 when
 * there is none, argmax of an all-zero row). transformers decides the branch over the whole batch
 * (torch.all); HunyuanVideoPipeline encodes each prompt list in its own call, and with the CLIP-L
 * tokenizer every sequence holds 49407, so the decision per sequence is the same.
 */
export function clipPoolIndex(ids: ArrayLike<number>, eosTokenId: number): number {
  let max = -Infinity, at = 0;
  for (let i = 0; i < ids.length; i++) if (ids[i] > max) (max = ids[i]), (at = i);
  if (max === 49407) return at;
  for (let i = 0; i < ids.length; i++) if (ids[i] === eosTokenId) return i;
  return 0;
}
