/**
 * The LLaVA-Llama-3-8B text encoder's config: the fields of transformers' `LlamaConfig`
 * (text_encoder/config.json of a diffusers HunyuanVideoPipeline folder, a `LlamaModel`) that the
 * forward uses, read strictly: size fields are required, the rest default as LlamaConfig does, and
 * fields that would change the computation to something not implemented are refused by name.
 *
 * Also the rotary embedding tables (transformers modeling_rope_utils.py
 * `_compute_default_rope_parameters`, `_compute_llama3_parameters`; modeling_llama.py
 * `LlamaRotaryEmbedding.forward`), computed with the float32 roundings PyTorch applies, and the
 * key names of LlamaModel's state dict.
 */
import { readFileSync } from "node:fs";
import { ConfigError } from "../../errors.ts";

/** rope_scaling {"rope_type": "llama3", ...} (Llama 3.1 frequency rescaling). */
export interface Llama3RopeScaling {
  rope_type: "llama3";
  factor: number;
  low_freq_factor: number;
  high_freq_factor: number;
  original_max_position_embeddings: number;
}

export interface LlamaTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: Llama3RopeScaling | null;
  max_position_embeddings: number;
}

/**
 * The text encoder of hunyuanvideo-community/HunyuanVideo (xtuner/llava-llama-3-8b-v1_1's language
 * model): Llama-3-8B with 128320 embedding rows (128256 + "<pad>", "<image>", padded to 64).
 */
export const LLAVA_LLAMA3_8B: LlamaTextConfig = {
  vocab_size: 128320,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 128,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  rope_scaling: null,
  max_position_embeddings: 8192,
};

const FIX = "use the text_encoder/config.json of a HunyuanVideo diffusers folder (a transformers LlamaModel config)";
const MAX: Record<string, number> = {
  vocab_size: 1 << 22,
  hidden_size: 65536,
  intermediate_size: 1 << 20,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 4096,
  max_position_embeddings: 1 << 24,
};

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function positiveNumber(v: unknown, what: string, source: string, fix = FIX): number {
  if (typeof v !== "number" || !Number.isFinite(v) || !(v > 0)) throw new ConfigError(`${source}: ${what} must be a positive number, got ${JSON.stringify(v)}`, fix);
  return v;
}

/** rope_scaling (or transformers 5's rope_parameters) -> llama3 scaling or none; other types refused. */
function parseRopeScaling(raw: unknown, source: string, field: string): Llama3RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (!isObject(raw)) throw new ConfigError(`${source}: ${field} must be an object or null, got ${JSON.stringify(raw)}`, FIX);
  // transformers: rope_type, formerly "type"
  const type = raw.rope_type ?? raw.type ?? "default";
  if (type === "default") return null;
  if (type !== "llama3")
    throw new ConfigError(
      `${source}: ${field} type ${JSON.stringify(type)} is not implemented`,
      'this encoder implements the default RoPE and "llama3" scaling (Llama 3.1); LLaVA-Llama-3-8B (HunyuanVideo) uses none (rope_scaling null)',
    );
  const FIX3 = 'a "llama3" rope_scaling has factor, low_freq_factor, high_freq_factor and original_max_position_embeddings (Llama 3.1: 8, 1, 4, 8192)';
  for (const k of ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"])
    if (raw[k] === undefined) throw new ConfigError(`${source}: ${field} (llama3) is missing "${k}"`, FIX3);
  const factor = positiveNumber(raw.factor, `${field}.factor`, source, FIX3);
  const low = positiveNumber(raw.low_freq_factor, `${field}.low_freq_factor`, source, FIX3);
  const high = positiveNumber(raw.high_freq_factor, `${field}.high_freq_factor`, source, FIX3);
  const old = positiveNumber(raw.original_max_position_embeddings, `${field}.original_max_position_embeddings`, source, FIX3);
  if (!(high > low)) throw new ConfigError(`${source}: ${field}.high_freq_factor (${high}) must be greater than low_freq_factor (${low})`, FIX3);
  return { rope_type: "llama3", factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: old };
}

export function parseLlamaConfig(raw: unknown, source = "config.json"): LlamaTextConfig {
  if (!isObject(raw)) throw new ConfigError(`${source}: expected a JSON object`, FIX);
  const o = raw;
  if (o.model_type !== undefined && o.model_type !== "llama") {
    if (o.model_type === "llava" || isObject(o.text_config))
      throw new ConfigError(
        `${source}: this is a LLaVA config (model_type ${JSON.stringify(o.model_type)}), not the LlamaModel HunyuanVideoPipeline loads as text_encoder`,
        "use the text_encoder/ folder of a HunyuanVideo diffusers checkpoint (e.g. hunyuanvideo-community/HunyuanVideo): its language model saved as a transformers LlamaModel",
      );
    throw new ConfigError(`${source}: model_type is ${JSON.stringify(o.model_type)}, not "llama"`, FIX);
  }
  for (const k of ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"])
    if (o[k] === undefined) throw new ConfigError(`${source}: missing field "${k}"`, FIX);
  const int = (k: string, v: unknown): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX[k]) throw new ConfigError(`${source}: ${k} must be an integer in 1..${MAX[k]}, got ${JSON.stringify(v)}`, FIX);
    return v;
  };
  const hidden = int("hidden_size", o.hidden_size);
  const heads = int("num_attention_heads", o.num_attention_heads);
  // LlamaConfig: num_key_value_heads defaults to num_attention_heads (plain multi-head attention)
  const kv = int("num_key_value_heads", o.num_key_value_heads ?? heads);
  if (heads % kv !== 0)
    throw new ConfigError(`${source}: num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kv})`, "grouped-query attention shares each key/value head among num_attention_heads / num_key_value_heads query heads");
  // LlamaAttention: head_dim = config.head_dim or hidden_size // num_attention_heads
  let headDim: number;
  if (o.head_dim !== undefined && o.head_dim !== null) headDim = int("head_dim", o.head_dim);
  else {
    if (hidden % heads !== 0) throw new ConfigError(`${source}: hidden_size (${hidden}) is not a multiple of num_attention_heads (${heads}) and there is no head_dim`, FIX);
    headDim = hidden / heads;
  }
  if (headDim % 2 !== 0) throw new ConfigError(`${source}: head_dim ${headDim} must be even (rotary embeddings rotate pairs of halves)`, FIX);
  const act = o.hidden_act ?? "silu";
  if (act !== "silu") throw new ConfigError(`${source}: hidden_act ${JSON.stringify(act)} is not supported`, 'Llama uses "silu" (gate_proj through SiLU times up_proj)');
  if (o.attention_bias === true) throw new ConfigError(`${source}: attention_bias true is not supported`, "Llama 3 has no q/k/v/o biases (attention_bias false)");
  if (o.mlp_bias === true) throw new ConfigError(`${source}: mlp_bias true is not supported`, "Llama 3 has no MLP biases (mlp_bias false)");
  if (o.partial_rotary_factor !== undefined && o.partial_rotary_factor !== 1 && o.partial_rotary_factor !== 1.0)
    throw new ConfigError(`${source}: partial_rotary_factor ${JSON.stringify(o.partial_rotary_factor)} is not supported`, "Llama rotates the whole head (partial_rotary_factor 1)");
  if (o.is_decoder === false || o.is_encoder_decoder === true) throw new ConfigError(`${source}: not a decoder-only Llama config`, FIX);

  // transformers 5 keeps rope_theta and the scaling in rope_parameters; 4.x in rope_theta / rope_scaling
  const rp = isObject(o.rope_parameters) ? o.rope_parameters : undefined;
  const theta = positiveNumber(rp?.rope_theta ?? o.rope_theta ?? 10000, "rope_theta", source);
  const scaling = rp ? parseRopeScaling(rp, source, "rope_parameters") : parseRopeScaling(o.rope_scaling, source, "rope_scaling");
  const eps = o.rms_norm_eps ?? 1e-6;
  if (typeof eps !== "number" || !(eps > 0 && eps < 1)) throw new ConfigError(`${source}: rms_norm_eps must be in (0, 1), got ${JSON.stringify(eps)}`, FIX);
  const maxPos = int("max_position_embeddings", o.max_position_embeddings ?? 2048);
  return {
    vocab_size: int("vocab_size", o.vocab_size),
    hidden_size: hidden,
    intermediate_size: int("intermediate_size", o.intermediate_size),
    num_hidden_layers: int("num_hidden_layers", o.num_hidden_layers),
    num_attention_heads: heads,
    num_key_value_heads: kv,
    head_dim: headDim,
    rms_norm_eps: eps,
    rope_theta: theta,
    rope_scaling: scaling,
    max_position_embeddings: maxPos,
  };
}

export function readJsonConfig(path: string, fix: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, fix);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path} is not valid JSON: ${(e as Error).message}`, fix);
  }
}

export function readLlamaConfig(path: string): LlamaTextConfig {
  return parseLlamaConfig(readJsonConfig(path, "point at the text_encoder/ folder of a HunyuanVideo diffusers checkpoint (config.json + model*.safetensors)"), path);
}

// ---- state dict keys (transformers LlamaModel; LlamaForCausalLM saves the same under "model.") ----

export function llamaLayerKeys(i: number, prefix = "") {
  const p = `${prefix}layers.${i}.`;
  return {
    inputNorm: `${p}input_layernorm.weight`,
    q: `${p}self_attn.q_proj.weight`,
    k: `${p}self_attn.k_proj.weight`,
    v: `${p}self_attn.v_proj.weight`,
    o: `${p}self_attn.o_proj.weight`,
    postNorm: `${p}post_attention_layernorm.weight`,
    gate: `${p}mlp.gate_proj.weight`,
    up: `${p}mlp.up_proj.weight`,
    down: `${p}mlp.down_proj.weight`,
  };
}

export const llamaEmbedKey = (prefix = "") => `${prefix}embed_tokens.weight`;
export const llamaNormKey = (prefix = "") => `${prefix}norm.weight`;

/** Every tensor of LlamaModel with its shape. */
export function llamaExpectedShapes(c: LlamaTextConfig, prefix = ""): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const D = c.hidden_size, Q = c.num_attention_heads * c.head_dim, KV = c.num_key_value_heads * c.head_dim, I = c.intermediate_size;
  m.set(llamaEmbedKey(prefix), [c.vocab_size, D]);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const k = llamaLayerKeys(i, prefix);
    m.set(k.inputNorm, [D]);
    m.set(k.q, [Q, D]);
    m.set(k.k, [KV, D]);
    m.set(k.v, [KV, D]);
    m.set(k.o, [D, Q]);
    m.set(k.postNorm, [D]);
    m.set(k.gate, [I, D]);
    m.set(k.up, [I, D]);
    m.set(k.down, [D, I]);
  }
  m.set(llamaNormKey(prefix), [D]);
  return m;
}

/** Parameters of one decoder layer. */
export function llamaLayerParameters(c: LlamaTextConfig): number {
  const D = c.hidden_size, Q = c.num_attention_heads * c.head_dim, KV = c.num_key_value_heads * c.head_dim;
  return 2 * D + 2 * Q * D + 2 * KV * D + 3 * c.intermediate_size * D;
}

/** Parameters of LlamaModel (embedding included, no lm_head). */
export function llamaParameterCount(c: LlamaTextConfig): number {
  return c.vocab_size * c.hidden_size + c.num_hidden_layers * llamaLayerParameters(c) + c.hidden_size;
}

// ---- rotary embeddings ----

const f = Math.fround;

/**
 * inv_freq [head_dim / 2] as transformers computes it in float32:
 * 1 / base ** (arange(0, dim, 2).float() / dim), then the llama3 rescaling when configured:
 * wavelengths above original_max_position_embeddings / low_freq_factor are slowed by `factor`,
 * those below original / high_freq_factor kept, the band between interpolated smoothly.
 * (`scalar / tensor` is reciprocal() * scalar in PyTorch, hence the two roundings.)
 */
export function llamaInvFreq(c: LlamaTextConfig): Float32Array {
  const dim = c.head_dim;
  const n = dim / 2;
  const inv = new Float32Array(n);
  const base = f(c.rope_theta);
  for (let j = 0; j < n; j++) {
    const e = f(f(2 * j) / dim);
    inv[j] = f(1 / f(Math.pow(base, e)));
  }
  const s = c.rope_scaling;
  if (!s) return inv;
  const factor = f(s.factor);
  const lowWl = f(s.original_max_position_embeddings / s.low_freq_factor);
  const highWl = f(s.original_max_position_embeddings / s.high_freq_factor);
  const twoPi = f(2 * Math.PI);
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const wavelen = f(f(1 / inv[j]) * twoPi);
    let llama = wavelen > lowWl ? f(inv[j] / factor) : inv[j];
    const smooth = f(f(f(f(1 / wavelen) * f(s.original_max_position_embeddings)) - f(s.low_freq_factor)) / f(s.high_freq_factor - s.low_freq_factor));
    const smoothed = f(f(f(f(1 - smooth) * llama) / factor) + f(smooth * llama));
    const medium = !(wavelen < highWl) && !(wavelen > lowWl);
    if (medium) llama = smoothed;
    out[j] = llama;
  }
  return out;
}

/**
 * cos and sin [S, head_dim] for positions 0..S-1 (position_ids = arange, as LlamaModel uses without
 * a cache): freqs = inv_freq * position in float32, emb = cat(freqs, freqs) (the rotate_half
 * layout). The attention scaling of the default and llama3 types is 1.
 */
export function llamaRopeTables(c: LlamaTextConfig, S: number, inv = llamaInvFreq(c)): { cos: Float32Array; sin: Float32Array } {
  const d = c.head_dim, n = d / 2;
  const cos = new Float32Array(S * d);
  const sin = new Float32Array(S * d);
  for (let p = 0; p < S; p++)
    for (let j = 0; j < n; j++) {
      const a = f(inv[j] * p);
      const cv = Math.cos(a), sv = Math.sin(a);
      cos[p * d + j] = cos[p * d + n + j] = cv;
      sin[p * d + j] = sin[p * d + n + j] = sv;
    }
  return { cos, sin };
}
