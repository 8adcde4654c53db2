/**
 * A tiny random MixCache model folder on disk (transformer, text encoder, tokenizer, mixcache.json),
 * loaded through the real loader. Used by pipeline, cache-contract and CLI tests. The folder is
 * removed when the test process exits (support/tmp.ts).
 */
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { writeSafetensors } from "../../src/weights/safetensors.ts";
import { expectedShapes } from "../../src/models/wan/config.ts";
import { randomArray, rng, tinyWan } from "./randomWeights.ts";
import { tempDir } from "./tmp.ts";

export const TINY_TOKENS = ["<pad>", "a", "red", "blue", "circle", "square", "moving", "left", "right", "on", "black", "background"];

export function makeTinyModelDir(seed = 11, overrides: Record<string, unknown> = {}): string {
  const dir = tempDir("mixcache-tiny-");
  const { config, weights } = tinyWan(seed, { in_channels: 3, out_channels: 3, patch_size: [1, 2, 2], num_layers: 4, ...overrides });
  mkdirSync(join(dir, "transformer"), { recursive: true });
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [k, shape] of expectedShapes(config)) tensors[k] = { dtype: "F32", shape, data: weights.get(k)! };
  writeSafetensors(join(dir, "transformer", "diffusion_pytorch_model.safetensors"), tensors);
  writeFileSync(join(dir, "transformer", "config.json"), JSON.stringify({ _class_name: "WanTransformer3DModel", ...config }));
  const r = rng(seed + 1);
  const maxTokens = 10;
  mkdirSync(join(dir, "text_encoder"));
  writeSafetensors(join(dir, "text_encoder", "model.safetensors"), {
    "token_embedding.weight": { dtype: "F32", shape: [TINY_TOKENS.length, config.text_dim], data: randomArray(TINY_TOKENS.length * config.text_dim, r) },
    position_embedding: { dtype: "F32", shape: [maxTokens, config.text_dim], data: randomArray(maxTokens * config.text_dim, r, 0.1) },
  });
  mkdirSync(join(dir, "tokenizer"));
  writeFileSync(join(dir, "tokenizer", "tokenizer.json"), JSON.stringify({ type: "word", tokens: TINY_TOKENS, max_tokens: maxTokens }));
  writeFileSync(join(dir, "mixcache.json"), JSON.stringify({
    format: 1, name: "tiny-test", family: "wan", pixel_space: true,
    latent: { channels: 3, frames: 3, height: 8, width: 8 }, fps: 8,
    defaults: { sampler: "unipc", steps: 8, guidance: 4, shift: 3, negative_prompt: "" },
  }));
  return dir;
}
