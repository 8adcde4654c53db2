/**
 * umT5 encoder config: the fields of transformers' `UMT5Config` (text_encoder/config.json of a
 * diffusers Wan2.1 folder) that the encoder uses. Size fields are required; the rest default as
 * UMT5Config does. Other fields transformers writes (dropout_rate, tie_word_embeddings, ...) are
 * ignored; fields that would change the computation are checked.
 */
import { readFileSync } from "node:fs";
import { ConfigError } from "../../errors.ts";

export interface Umt5Config {
  vocab_size: number;
  d_model: number;
  d_kv: number;
  d_ff: number;
  num_layers: number;
  num_heads: number;
  relative_attention_num_buckets: number;
  relative_attention_max_distance: number;
  feed_forward_proj: "gated-gelu";
  layer_norm_epsilon: number;
}

/** google/umt5-xxl, the text encoder of every Wan2.1 model (text_encoder/config.json). */
export const UMT5_XXL: Umt5Config = {
  vocab_size: 256384,
  d_model: 4096,
  d_kv: 64,
  d_ff: 10240,
  num_layers: 24,
  num_heads: 64,
  relative_attention_num_buckets: 32,
  relative_attention_max_distance: 128,
  feed_forward_proj: "gated-gelu",
  layer_norm_epsilon: 1e-6,
};

const REQUIRED = ["vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads"] as const;
const MAX: Record<string, number> = {
  vocab_size: 1 << 22,
  d_model: 65536,
  d_kv: 4096,
  d_ff: 1 << 20,
  num_layers: 512,
  num_heads: 1024,
  relative_attention_num_buckets: 4096,
  relative_attention_max_distance: 1 << 20,
};

export function parseUmt5Config(raw: unknown, source = "config.json"): Umt5Config {
  const FIX = "use the text_encoder/config.json of a Wan2.1 (umT5) checkpoint";
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ConfigError(`${source}: expected a JSON object`, FIX);
  const o = raw as Record<string, unknown>;
  if (o.model_type !== undefined && o.model_type !== "umt5")
    throw new ConfigError(
      `${source}: model_type is ${JSON.stringify(o.model_type)}, not "umt5"`,
      'this encoder implements umT5 (a relative position bias in every layer); T5/mT5 share one bias from layer 0 and are not supported. Use the umT5 text encoder of Wan2.1',
    );
  if (o.is_decoder === true) throw new ConfigError(`${source}: is_decoder is true`, "only the umT5 encoder (UMT5EncoderModel) is supported");
  for (const k of REQUIRED) if (o[k] === undefined) throw new ConfigError(`${source}: missing field "${k}"`, FIX);
  const c: Record<string, unknown> = {
    relative_attention_num_buckets: 32,
    relative_attention_max_distance: 128,
    feed_forward_proj: "gated-gelu",
    layer_norm_epsilon: 1e-6,
  };
  for (const k of [...REQUIRED, "relative_attention_num_buckets", "relative_attention_max_distance", "feed_forward_proj", "layer_norm_epsilon"])
    if (o[k] !== undefined) c[k] = o[k];
  for (const [k, max] of Object.entries(MAX)) {
    const v = c[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > max)
      throw new ConfigError(`${source}: ${k} must be an integer in 1..${max}, got ${JSON.stringify(v)}`, FIX);
  }
  if (c.feed_forward_proj !== "gated-gelu")
    throw new ConfigError(`${source}: feed_forward_proj ${JSON.stringify(c.feed_forward_proj)} is not supported`, 'umT5 (Wan2.1) uses "gated-gelu" (wi_0, wi_1, wo with gelu_new)');
  if (o.dense_act_fn !== undefined && o.dense_act_fn !== "gelu_new")
    throw new ConfigError(`${source}: dense_act_fn ${JSON.stringify(o.dense_act_fn)} does not match feed_forward_proj "gated-gelu" (gelu_new)`, FIX);
  if (o.is_gated_act !== undefined && o.is_gated_act !== true)
    throw new ConfigError(`${source}: is_gated_act is ${JSON.stringify(o.is_gated_act)} but feed_forward_proj is "gated-gelu"`, FIX);
  const eps = c.layer_norm_epsilon;
  if (typeof eps !== "number" || !(eps > 0 && eps < 1)) throw new ConfigError(`${source}: layer_norm_epsilon must be in (0, 1), got ${JSON.stringify(eps)}`, FIX);
  if ((c.relative_attention_num_buckets as number) < 4)
    throw new ConfigError(`${source}: relative_attention_num_buckets must be >= 4 (bidirectional halves, exact and log buckets)`, FIX);
  return c as unknown as Umt5Config;
}

export function readUmt5Config(path: string): Umt5Config {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, "point at the model's text_encoder/ folder (config.json + model.safetensors)");
  }
  return parseUmt5Config(raw, path);
}

export const innerDim = (c: Umt5Config): number => c.num_heads * c.d_kv;

/** Key names of one encoder block (transformers UMT5EncoderModel). */
export function layerKeys(i: number) {
  const p = `encoder.block.${i}.layer.`;
  return {
    attnNorm: `${p}0.layer_norm.weight`,
    q: `${p}0.SelfAttention.q.weight`,
    k: `${p}0.SelfAttention.k.weight`,
    v: `${p}0.SelfAttention.v.weight`,
    o: `${p}0.SelfAttention.o.weight`,
    relBias: `${p}0.SelfAttention.relative_attention_bias.weight`,
    ffnNorm: `${p}1.layer_norm.weight`,
    wi0: `${p}1.DenseReluDense.wi_0.weight`,
    wi1: `${p}1.DenseReluDense.wi_1.weight`,
    wo: `${p}1.DenseReluDense.wo.weight`,
  };
}

export const EMBED_KEY = "shared.weight";
/** The tied copy transformers may also write (same values as shared.weight). */
export const EMBED_ALIAS = "encoder.embed_tokens.weight";
export const FINAL_NORM_KEY = "encoder.final_layer_norm.weight";

/** Every tensor of UMT5EncoderModel with its shape (embedding under shared.weight). */
export function umt5ExpectedShapes(c: Umt5Config): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const D = c.d_model, I = innerDim(c);
  m.set(EMBED_KEY, [c.vocab_size, D]);
  for (let i = 0; i < c.num_layers; i++) {
    const k = layerKeys(i);
    m.set(k.attnNorm, [D]);
    m.set(k.q, [I, D]);
    m.set(k.k, [I, D]);
    m.set(k.v, [I, D]);
    m.set(k.o, [D, I]);
    m.set(k.relBias, [c.relative_attention_num_buckets, c.num_heads]);
    m.set(k.ffnNorm, [D]);
    m.set(k.wi0, [c.d_ff, D]);
    m.set(k.wi1, [c.d_ff, D]);
    m.set(k.wo, [D, c.d_ff]);
  }
  m.set(FINAL_NORM_KEY, [D]);
  return m;
}

/** Parameter count (embedding included). */
export function umt5ParameterCount(c: Umt5Config): number {
  let n = 0;
  for (const s of umt5ExpectedShapes(c).values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * Bidirectional T5 relative position buckets (transformers UMT5Attention._relative_position_bucket
 * with is_decoder False) for relative_position = key - query, as a [S, S] table (row = query).
 * Half of the buckets for keys before the query, half for keys after; in each half, exact buckets
 * for |d| < nb/4 and log-spaced ones up to max_distance. The log step is computed in float32 as in
 * PyTorch (torch.log of a float tensor, truncation toward zero).
 */
export function relativePositionBuckets(S: number, numBuckets: number, maxDistance: number): Int32Array {
  const nb = Math.floor(numBuckets / 2);
  const maxExact = Math.floor(nb / 2);
  const logScale = Math.fround(Math.log(maxDistance / maxExact));
  const bucketOf = (rel: number): number => {
    let b = rel > 0 ? nb : 0;
    const a = Math.abs(rel);
    if (a < maxExact) return b + a;
    const ratio = Math.fround(Math.fround(Math.log(Math.fround(a / maxExact))) / logScale);
    const large = maxExact + Math.trunc(Math.fround(ratio * (nb - maxExact)));
    b += Math.min(large, nb - 1);
    return b;
  };
  const byRel = new Int32Array(2 * S - 1);
  for (let r = -(S - 1); r <= S - 1; r++) byRel[r + S - 1] = bucketOf(r);
  const out = new Int32Array(S * S);
  for (let q = 0; q < S; q++) for (let k = 0; k < S; k++) out[q * S + k] = byRel[k - q + S - 1];
  return out;
}
